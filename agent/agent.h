/*
 * agent.h - what the parts of cube-agent share.
 *
 * cube-agent is PID1 of every sandbox. It serves two HTTP ports on one event
 * loop: envd (49983: /health, /init, /files, Connect RPC for the process and
 * filesystem services) and the code interpreter (49999). main.c owns the
 * routing, rpc.c the Connect framing, user.c users/environment/paths; each
 * service lives in its own file and only sees this header.
 */
#ifndef CUBE_AGENT_H
#define CUBE_AGENT_H

#include <limits.h>
#include <stdbool.h>
#include <sys/types.h>

#include "../lib/buf.h"
#include "../lib/http.h"
#include "../lib/json.h"
#include "../lib/log.h"
#include "../lib/loop.h"

#define ENVD_VERSION "0.6.13"
#define ENVD_PORT    49983
#define INTERP_PORT  49999

/* Process-wide state, set at start and by POST /init. */
struct agent {
	struct loop *loop;
	char sandbox_id[128];
	char *access_token; /* NULL: no token required */
	char **env;	    /* sandbox env vars, "K=V", NULL-terminated */
	char default_user[64];
	/* A process started without a cwd starts here ("": the user's home). A
	 * template sets it from its image's WORKDIR before its snapshot. */
	char default_workdir[PATH_MAX];
	bool is_pid1; /* never exit; reap orphans (also true in a pid namespace) */
	bool guest;   /* --guest: own the machine (mounts, clock, entropy, vsock) */
};
extern struct agent agent;

/* --- users (user.c) ------------------------------------------------------ */
struct user {
	char name[64];
	uid_t uid;
	gid_t gid;
	char home[PATH_MAX];
	char shell[PATH_MAX];
};
/* Looks name up in /etc/passwd. Returns 0 or -1. */
int user_lookup(const char *name, struct user *u);
/* The user a request acts as: `name` if given (e.g. the username query of
 * /files), else Basic auth "<user>:" , else the default user. Answers 401 and
 * returns false if that user does not exist. */
bool request_user(struct http_conn *c, const struct http_req *req, const char *name, struct user *u);
/* The same without answering: returns -1 for an unknown user, whose name is
 * copied to who for the error message. */
int user_from_request(const struct http_req *req, const char *name, struct user *u, char *who, size_t whosz);
/* Switches the calling (forked child) process to u: groups, gid, uid. */
int user_become(const struct user *u);

/* The environment of a new process: PATH, HOME, USER, LOGNAME, SHELL, PWD,
 * then the sandbox env vars, then extra (a JSON object of strings, may be
 * NULL), later entries winning. NULL-terminated, free with env_free. */
char **env_build(const struct user *u, const char *cwd, const struct json *extra);
void env_free(char **env);
/* Sets key=value in an env_build array (only if absent unless overwrite);
 * returns the array, which may have moved. */
char **env_put(char **env, const char *key, const char *value, bool overwrite);

/* Resolves a user-supplied path: "~" and "~/x" against the user's home,
 * relative paths against the home too, then removes "." and ".." lexically.
 * Returns a malloc'd absolute path. */
char *path_resolve(const char *path, const struct user *u);

/* Checks X-Access-Token when a token is set; answers 401 and returns false
 * when it is missing or wrong. */
bool check_access_token(struct http_conn *c, const struct http_req *req);
/* The same check without answering. */
bool access_token_ok(const struct http_req *req);
/* Compares secrets without an early exit, so timing does not leak how much
 * of a guess was right. */
bool secret_equal(const char *a, const char *b);

/* --- Connect RPC (rpc.c) ------------------------------------------------- *
 * Unary: POST application/json, reply 200 application/json with the message.
 * Server streaming: POST application/connect+json with one enveloped message;
 * reply 200 application/connect+json, one envelope per message, then an
 * end-stream envelope (flag 0x02) with {} or {"error":{...}}.
 * Error codes are Connect's strings: "invalid_argument", "not_found",
 * "already_exists", "permission_denied", "unauthenticated",
 * "deadline_exceeded", "failed_precondition", "resource_exhausted",
 * "unimplemented", "internal", "unavailable", "canceled".
 */
struct rpc_call {
	struct http_conn *conn;
	struct http_req *req;
	struct json *msg; /* the request message (an object) */
	struct user user; /* who the call acts as */
	bool streaming;
};

/* call and call->msg live only while fn runs (they are on rpc_dispatch's
 * stack); a streaming method that answers later keeps call->conn and copies
 * what else it needs. The conn stays valid until the stream ends or the
 * abort callback (http_conn_on_abort) runs. */
typedef void (*rpc_fn)(struct rpc_call *call);
struct rpc_method {
	const char *path; /* "/process.Process/Start" */
	bool streaming;	  /* server streaming */
	rpc_fn fn;
};
extern const struct rpc_method process_methods[];    /* NULL-path terminated */
extern const struct rpc_method filesystem_methods[]; /* NULL-path terminated */

/* Routes an RPC request (path already known to start with a service name).
 * Returns false if no method matches (the caller answers unimplemented). */
bool rpc_dispatch(struct http_conn *c, struct http_req *req, const struct rpc_method *methods);

/* Unary replies. msg is a complete JSON object. */
void rpc_reply(struct rpc_call *call, const struct buf *msg);
void rpc_error(struct rpc_call *call, const char *code, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
/* The same for places that have only a conn (before a call exists). */
void rpc_error_conn(struct http_conn *c, bool streaming, const char *code, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

/* Streaming replies. Messages are complete JSON objects. */
void rpc_stream_begin(struct http_conn *c);
void rpc_stream_send(struct http_conn *c, const struct buf *msg);
/* Ends the stream: code NULL for success. */
void rpc_stream_end(struct http_conn *c, const char *code, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

/* Connect-Timeout-Ms of a call: 0 when absent; false when malformed. */
bool rpc_deadline_ms(const struct http_req *req, uint64_t *ms);
/* Keepalive-Ping-Interval of a stream in ms (envd's 90 s when absent). */
uint64_t rpc_keepalive_ms(const struct http_req *req);

/* Maps errno from a failed syscall to a Connect code. */
const char *rpc_code_from_errno(int err);

/* --- HTTP services --------------------------------------------------------- */
void files_handle(struct http_conn *c, struct http_req *req);		  /* GET/POST /files (files.c) */
void interp_handle(struct http_conn *c, struct http_req *req, void *arg); /* port 49999 (interp.c) */
/* Called once at start; interp.c may set up state. */
void interp_init(void);
/* Hooks for /init: the env changed, so new contexts must see it. */
void interp_env_changed(void);

#endif
