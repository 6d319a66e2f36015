/*
 * cli.h - `cube` (alias `cubemastercli`): templates and sandboxes from the
 * command line, through the cube-api REST calls.
 *
 *   cube [--api URL] [--api-key KEY] tpl|template list|delete|watch|create-from-image|create-from-rootfs ...
 *   cube [--api URL] [--api-key KEY] sandbox list|kill ...
 *
 * cli_args.c parses (no I/O), cli_output.c formats answers (no I/O),
 * cli_run.c talks to the api and prints; api/tools/cube.c is main(). The
 * parts are separate so the tests can drive each without a network.
 */
#ifndef CUBE_API_CLI_H
#define CUBE_API_CLI_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "../lib/buf.h"
#include "../lib/json.h"

#define CLI_PORTS_MAX 64
#define CLI_ENV_MAX   128

enum cli_cmd {
	CLI_HELP,
	CLI_TPL_LIST,
	CLI_TPL_DELETE,
	CLI_TPL_WATCH,
	CLI_TPL_CREATE_IMAGE,
	CLI_TPL_CREATE_ROOTFS,
	CLI_SANDBOX_LIST,
	CLI_SANDBOX_KILL,
};

struct cli_create {
	const char *name;    /* --name; from the image reference when absent */
	const char *image;   /* --image REF */
	const char *archive; /* --archive FILE: a docker-save / OCI layout tarball to upload */
	const char *rootfs;  /* --rootfs PATH (on the appliance) */
	int64_t layer_mib;   /* --writable-layer-size SIZE, 0: the api's default */
	int ports[CLI_PORTS_MAX];
	int nports;	       /* --expose-port N (repeatable, or N,M) */
	int probe;	       /* --probe N, 0: none */
	const char *start_cmd; /* --start-cmd LINE ("": start nothing), NULL: the image's ENTRYPOINT/CMD */
	int cpus;	       /* --cpu N, 0: the api's default */
	int64_t mem_mib;       /* --memory MIB (or 2G ...), 0: the api's default */
	const char *env[CLI_ENV_MAX];
	int nenv;      /* --env K=V (repeatable) */
	bool insecure; /* --insecure-registry */
	/* A private registry: --registry-user U, the password from
	 * --registry-password-file F or $CUBE_REGISTRY_PASSWORD, and
	 * --registry-ca FILE (PEM). cli_run reads the files into the two
	 * strings below, which cli_create_body sends. */
	const char *registry_user, *registry_password_file, *registry_ca_file;
	const char *registry_password, *registry_ca_pem;
	bool wait; /* --wait: watch the build to its end */
};

struct cli_args {
	const char *prog;    /* "cube" or "cubemastercli" (argv[0]'s base name) */
	const char *api;     /* --api URL, NULL: the default */
	const char *api_key; /* --api-key, NULL: $E2B_API_KEY */
	bool json;	     /* --json: the api's JSON as it came */
	bool help;	     /* -h, --help, or `help` */
	enum cli_cmd cmd;
	const char *help_topic; /* CLI_HELP: "tpl", "sandbox" or NULL */
	const char *target;	/* ID for delete, kill, watch */
	int interval_ms;	/* watch: poll period, default 500 */
	int timeout_s;		/* watch: give up after, 0: never */
	struct cli_create create;
};

/* Parses argv[1..argc). 0, or -1 with a one-line message in err (a usage
 * error: exit status 2). */
int cli_parse(int argc, char **argv, struct cli_args *a, char *err, size_t errsz);
/* The usage text of the topic (NULL, "tpl" or "sandbox"). */
void cli_usage(const char *prog, const char *topic, struct buf *out);

/* "512", "512M", "512MiB", "2G", "2GB", "1T" -> MiB (no suffix: MiB). -1 if bad. */
int64_t cli_parse_size_mib(const char *s);
/* The template name an image reference suggests: "docker.io/library/python:3.12"
 * -> "python-3.12"; "" when nothing is left. */
void cli_name_from_image(const char *ref, char *out, size_t n);
/* The POST /templates body for a create. */
void cli_create_body(const struct cli_args *a, struct buf *out);
/* The POST /templates/upload?... target for a create with --archive. */
void cli_upload_target(const struct cli_args *a, struct buf *out);
/* The template name for a create: --name, else from the image reference or
 * the archive's file name ("app-1.2.tar.gz" -> "app-1.2"). */
void cli_create_name(const struct cli_create *c, char *out, size_t n);

/* Tables for `tpl list` and `sandbox list` (arrays as the api answers). */
void cli_format_templates(const struct json *arr, struct buf *out);
void cli_format_sandboxes(const struct json *arr, struct buf *out);
/* One `watch` line: "[ 40%] booting"; a log entry: "  <timestamp> <message>". */
void cli_format_progress(const char *phase, int64_t pct, struct buf *out);
void cli_format_log_entry(const struct json *entry, struct buf *out);

/* The endpoint the CLI talks to. */
struct cli_endpoint {
	bool is_unix;
	char path[108]; /* unix socket */
	char host[256];
	int port;
	char prefix[256]; /* a path before the API's own ("" normally) */
};
/* "http://host[:port][/prefix]" or "unix:/path" (or an absolute path). */
int cli_endpoint_parse(const char *url, struct cli_endpoint *ep, char *err, size_t errsz);
/* --api, else $CUBE_API_URL, else the admin socket when this user can open it
 * (/run/cubeos/run/api.sock, /run/cubeos/api.sock), else http://127.0.0.1:3000. */
int cli_endpoint_default(const char *api, struct cli_endpoint *ep, char *err, size_t errsz);

/* Runs the command; the exit status (0 ok, 1 failed, 2 usage). */
int cli_main(int argc, char **argv, FILE *out, FILE *errf);

#endif
