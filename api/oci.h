/*
 * oci.h - container images (OCI and Docker) to template root filesystems.
 *
 *   struct oci_build_opts o = {.image = "registry.lan:5000/team/app:1.2",
 *                              .out = "DIR/templates/app/rootfs.ext4",
 *                              .agent = "/usr/bin/cube-agent",
 *                              .progress = fn, .progress_arg = job};
 *   if (oci_build_rootfs(&o, err, sizeof err) != OCI_OK) ... err says why ...
 *
 * Steps, each reported as a phase with a percentage:
 *   "pulling"    the manifest (an index/list resolved to linux/amd64), the
 *                config and the layers: from a registry (distribution spec
 *                v2 over HTTPS with certificate verification, or plain HTTP
 *                with insecure_registry; anonymous or basic credentials and
 *                the Bearer token dance; redirects for blobs; every blob's
 *                sha256 checked while it streams; size limits) or from a
 *                `docker save` / OCI layout archive (.tar or .tar.gz);
 *                percentage = bytes so far / the manifest's total
 *   "unpacking"  the layers in order into WORK/rootfs (oci_tar.h: whiteouts,
 *                opaque directories, links, devices, owners, no escape)
 *   "rootfs"     the agent injected (/usr/bin/cube-agent, /sbin/init -> it;
 *                an image's own /sbin/init is kept as /sbin/init.image),
 *                root and `user` (1000:1000, /home/user) ensured in
 *                /etc/passwd and /etc/group, /tmp 1777, mount points; the
 *                image config (Env, WorkingDir, User, ExposedPorts,
 *                Entrypoint, Cmd) written as JSON to config_out; then
 *                `mke2fs -t ext4 -d WORK/rootfs` into out, sized content +
 *                writable_bytes
 *
 * Everything is blocking: run it on a worker thread or in a child. The
 * result appears atomically (written next to out, then renamed).
 */
#ifndef CUBE_API_OCI_H
#define CUBE_API_OCI_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "../lib/json.h"

/* Error classes, so the API can answer 404 for a missing image, etc. */
enum oci_status {
	OCI_OK = 0,
	OCI_EINVAL = -1,       /* bad options, bad reference, malformed manifest/archive/layer */
	OCI_ENOTFOUND = -2,    /* image, tag or blob not in the registry / archive */
	OCI_EAUTH = -3,	       /* the registry refused the credentials or the token */
	OCI_EDIGEST = -4,      /* a blob or manifest does not match its digest */
	OCI_ENOSPC = -5,       /* disk full */
	OCI_ETOOBIG = -6,      /* a limit was passed (manifest, blob, unpacked size) */
	OCI_ENET = -7,	       /* connect, TLS, timeout, protocol errors, registry 5xx */
	OCI_EIO = -8,	       /* local I/O, mke2fs failure */
	OCI_EUNSUPPORTED = -9, /* no linux/amd64 image, zstd layers, schema 1 manifests */
	OCI_ECANCELED = -10,   /* opts.cancelled said so */
};
const char *oci_status_name(int status);

typedef void (*oci_progress_fn)(void *arg, const char *phase, int pct, const char *detail);

struct oci_build_opts {
	const char *image;	 /* a registry reference, or NULL with archive */
	const char *archive;	 /* a docker-save or OCI layout tarball, or NULL */
	const char *out;	 /* the ext4 image to write */
	const char *config_out;	 /* NULL: "image.json" in out's directory */
	const char *work_dir;	 /* scratch; NULL: "<out>.work" (removed at the end unless keep_work) */
	const char *agent;	 /* the agent binary to inject */
	const char *mke2fs;	 /* NULL: the first of /usr/lib/cubeos/mke2fs, /usr/sbin/mke2fs, /sbin/mke2fs */
	uint64_t writable_bytes; /* free space on top of the content (default 512 MiB) */
	bool insecure_registry;	 /* plain HTTP to the registry */
	const char *ca_file;	 /* NULL: /etc/ssl/certs/ca-certificates.crt */
	const char *username;	 /* registry credentials, or NULL */
	const char *password;
	uint64_t max_blob_bytes;     /* per blob (default 8 GiB) */
	uint64_t max_unpacked_bytes; /* all layers' file data (default 32 GiB) */
	int timeout_ms;		     /* connect and idle timeout (default 30 s) */
	bool keep_work;
	oci_progress_fn progress;
	void *progress_arg;
	/* Polled between steps (each blob, each layer, before mke2fs) with
	 * progress_arg: true stops the build with OCI_ECANCELED. May be NULL. */
	bool (*cancelled)(void *arg);
};

/* OCI_OK, or an enum oci_status with a message in err. */
int oci_build_rootfs(const struct oci_build_opts *o, char *err, size_t errsz);

/* --- the parsers (network and archive input; fuzzed) -------------------- */

#define OCI_DIGEST_LEN 71 /* "sha256:" + 64 hex */

/* registry/name[:tag][@sha256:...]; Docker Hub names get their defaults
 * ("alpine" -> registry-1.docker.io, library/alpine, tag latest). */
struct oci_ref {
	char registry[256]; /* host[:port] */
	char name[256];	    /* repository path */
	char tag[129];	    /* "" with a digest only */
	char digest[OCI_DIGEST_LEN + 1];
};
int oci_ref_parse(const char *s, struct oci_ref *r, char *err, size_t errsz);
/* The reference part of a manifest URL: the digest if set, else the tag. */
const char *oci_ref_reference(const struct oci_ref *r);

bool oci_digest_valid(const char *d); /* "sha256:" + 64 lowercase hex */

struct oci_desc {
	char media_type[128];
	char digest[OCI_DIGEST_LEN + 1];
	uint64_t size;
};

#define OCI_MAX_LAYERS 256

/* An image manifest (OCI or Docker schema 2). */
struct oci_manifest {
	struct oci_desc config;
	struct oci_desc layers[OCI_MAX_LAYERS];
	size_t nlayers;
};

/* What a manifest request returned: an index (list) or a manifest. */
enum oci_doc_kind { OCI_DOC_INDEX, OCI_DOC_MANIFEST };

/* Tells the kind from mediaType (or the Content-Type given) and the members. */
int oci_doc_kind(const struct json *doc, const char *content_type, enum oci_doc_kind *kind, char *err, size_t errsz);
/* Picks the linux/amd64 entry of an index (variant ignored; an entry with no
 * platform counts when it is the only one, as in OCI layout archives). */
int oci_index_select(const struct json *doc, struct oci_desc *out, char *err, size_t errsz);
int oci_manifest_parse(const struct json *doc, struct oci_manifest *m, char *err, size_t errsz);
/* A whole manifest-or-index body, for the fuzzer: OCI_OK or an error. */
int oci_parse_manifest_body(const char *body, size_t len, const char *content_type, struct oci_manifest *m,
			    struct oci_desc *selected, enum oci_doc_kind *kind, char *err, size_t errsz);

/* The part of the image config a template needs, as members of the JSON
 * object open in w: "os","architecture","env":[..],"workingDir","user",
 * "exposedPorts":["80/tcp",..],"entrypoint":[..],"cmd":[..]. Refuses an
 * image for another OS or architecture. */
int oci_config_summary(const char *body, size_t len, struct jw *w, char *err, size_t errsz);

/* WWW-Authenticate: Bearer realm="..",service="..",scope=".." (or Basic). */
struct oci_challenge {
	bool bearer, basic;
	char realm[1024];
	char service[256];
	char scope[512];
};
int oci_challenge_parse(const char *header, struct oci_challenge *c);

#endif
