/*
 * http.h - HTTP/1.1 server and client on top of the event loop.
 *
 * Server model: one struct http_conn per TCP (or vsock, or unix) connection.
 * The server reads a request head, then its body (Content-Length or chunked),
 * and calls the handler once with the complete request. The handler answers
 * at once (http_respond*) or later: it may keep the conn and stream a body
 * (http_stream_*), e.g. the output of a process, flushing each message as it
 * is written. While a response is pending the connection reads no further
 * request; pipelined requests wait in the input buffer.
 *
 * Large bodies never sit in memory: past body_spool_bytes the body goes to an
 * unlinked temp file that is mmapped for the handler, so req->body is always
 * one contiguous range.
 *
 * Malformed input is answered with a 4xx JSON error and the connection is
 * closed; it never reaches a handler.
 */
#ifndef CUBE_HTTP_H
#define CUBE_HTTP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "buf.h"
#include "loop.h"

#define HTTP_MAX_HEADERS 100

struct http_header {
	char *name;
	char *value;
};

/* A parsed request or response head. Strings point into a private copy. */
struct http_head {
	char method[16]; /* request only */
	char *target;	 /* request only: raw request-target */
	int status;	 /* response only */
	int minor;	 /* HTTP/1.<minor> */
	struct http_header headers[HTTP_MAX_HEADERS];
	size_t nheaders;
	bool chunked;		/* Transfer-Encoding: chunked */
	int64_t content_length; /* -1 when absent */
	bool keep_alive;	/* after Connection: and version rules */
	char *raw;		/* owned storage for the strings above */
};

struct http_req {
	struct http_head head;
	const char *method; /* == head.method */
	char *path;	    /* percent-decoded path without the query */
	char *query;	    /* raw query string after '?', "" if none */
	char *body;	    /* always non-NULL, NUL-terminated (len excludes it) */
	size_t body_len;
	const char *peer; /* "ip:port", "vsock:cid", "unix" */
};

/* Header lookup, case-insensitive; NULL if absent. */
const char *http_header_get(const struct http_head *h, const char *name);
struct http_conn;
/* Stores the body of the request c is handling as the file path (which must
 * not exist; mode applies). A spooled body is not copied: its spool file
 * gets the name (same file system as path), so a large upload costs the
 * loop nothing; that request's body loses its NUL terminator then, so read
 * req->body no further. 0, or -1 with errno set (path does not exist then). */
int http_req_body_save(struct http_conn *c, const char *path, mode_t mode);
static inline const char *http_req_header(const struct http_req *r, const char *name)
{
	return http_header_get(&r->head, name);
}
/* Percent-decoded value of a query parameter, malloc'd; NULL if absent. */
char *http_query_get(const char *query, const char *name);
/* Percent-decodes s into a new string ('+' becomes a space only if form). */
char *http_url_decode(const char *s, size_t n, bool form);

/* --- parsing (exposed for the client, tests and fuzzers) ---------------- */
/* Parses a complete head at buf[0..len). Returns the number of bytes the head
 * used (including the blank line), 0 if more bytes are needed, or -1 on a
 * malformed head with *status set to the 4xx/5xx to answer (400, 431, 501,
 * 505). On success h owns a copy; release it with http_head_free. */
ssize_t http_parse_head(const char *buf, size_t len, bool is_request, size_t max_head, struct http_head *h,
			int *status);
void http_head_free(struct http_head *h);

/* Incremental chunked-body decoder. */
struct http_chunked {
	int state;
	uint64_t remaining;
	size_t line_len;
	size_t trailer_len;
};
/* Feeds in[0..n), appends decoded data to out. Returns the bytes consumed,
 * or -1 on malformed framing. *done becomes true after the last chunk and
 * trailers; bytes after that are not consumed. */
ssize_t http_chunked_feed(struct http_chunked *c, const char *in, size_t n, struct buf *out, bool *done);

const char *http_status_text(int status);

/* --- server ------------------------------------------------------------- */
struct http_server;
struct http_conn;

typedef void (*http_handler_fn)(struct http_conn *c, struct http_req *req, void *arg);
/* Optional: the largest body accepted for this request head (answers 413
 * beyond it), so e.g. file uploads can be larger than RPC messages. */
typedef uint64_t (*http_body_limit_fn)(const struct http_head *h, void *arg);

struct http_server_config {
	size_t max_head_bytes;	  /* default 32 KiB; beyond: 431 */
	uint64_t max_body_bytes;  /* default 16 MiB; beyond: 413 */
	size_t body_spool_bytes;  /* default 1 MiB: larger bodies go to a temp file */
	const char *spool_dir;	  /* default "/tmp" */
	unsigned idle_timeout_ms; /* default 120 s between requests */
	http_body_limit_fn body_limit;
	const char *server_name; /* "Server:" header, may be NULL */
};

struct http_server *http_server_new(struct loop *l, const struct http_server_config *cfg, http_handler_fn fn,
				    void *arg);
/* Listens on addr:port (IPv4 or IPv6 literal, "" or NULL for any). */
int http_server_listen_tcp(struct http_server *s, const char *addr, int port);
/* The listening socket itself, for servers of their own (the proxy): any
 * address is dual-stack (IPv4 only on a kernel without IPv6), SO_REUSEADDR,
 * a backlog of 1024. The fd, or -1 with errno (EINVAL: not an address). */
int http_listen_socket(const char *addr, int port);
struct sockaddr_storage;
/* "ip:port" of an accepted peer (an IPv6 address without brackets), "unix" or "vsock". */
void http_peer_name(const struct sockaddr_storage *ss, char *out, size_t n);
/* Accepts from an already-listening socket (unix, vsock). Takes ownership. */
int http_server_listen_fd(struct http_server *s, int listen_fd);
/* Serves an already-connected socket. Takes ownership. */
void http_server_adopt(struct http_server *s, int fd, const char *peer);
void http_server_free(struct http_server *s);

/* Adds a header to the next response started on c. */
void http_add_header(struct http_conn *c, const char *name, const char *value);
void http_respond(struct http_conn *c, int status, const char *ctype, const void *body, size_t len);
/* {"code":status,"message":msg} with Content-Type application/json. */
void http_respond_error(struct http_conn *c, int status, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
/* Sends size bytes read from fd (which it then closes). */
void http_respond_fd(struct http_conn *c, int status, const char *ctype, int fd, uint64_t size);

/* Streaming: chunked on HTTP/1.1, close-delimited on HTTP/1.0. Each write is
 * sent as one chunk, immediately. */
void http_stream_start(struct http_conn *c, int status, const char *ctype);
void http_stream_write(struct http_conn *c, const void *p, size_t n);
void http_stream_end(struct http_conn *c);
/* Bytes queued but not yet accepted by the kernel (for backpressure). */
size_t http_conn_pending(const struct http_conn *c);

/* Called once if the connection dies while a response is still pending
 * (client went away). After it returns, c must not be used. Cleared when the
 * response completes. */
void http_conn_on_abort(struct http_conn *c, void (*fn)(void *arg), void *arg);
struct loop *http_conn_loop(const struct http_conn *c);

/* --- client (blocking; for tools, tests and host->guest calls) ---------- */
struct http_response {
	struct http_head head;
	int status;
	struct buf body;
};
/* Connects to host:port (numeric or name) with a timeout; returns an fd. */
int http_connect_tcp(const char *host, int port, int timeout_ms);
/* Connects to the Unix stream socket at path (a blocking fd, close-on-exec).
 * -1 with errno set; ENAMETOOLONG when path does not fit a sockaddr_un. */
int http_connect_unix(const char *path);
/* Sends one request on fd and reads the response. headers: NULL-terminated
 * list of "Name: value" lines; with "Transfer-Encoding: chunked" among them
 * the body is sent chunked, else with Content-Length. If on_data is set, body
 * bytes are passed to it
 * as they arrive (de-chunked) instead of being stored. Returns 0, or -1 with
 * errno set (ETIMEDOUT, EPROTO for a malformed response, ENODATA for one cut
 * short). */
int http_request(int fd, const char *method, const char *target, const char *const *headers, const void *body,
		 size_t len, struct http_response *out, int timeout_ms,
		 void (*on_data)(void *arg, const char *p, size_t n), void *arg);
void http_response_free(struct http_response *r);

/* Reading one response from any byte stream: the client above, and callers
 * with a stream of their own (the registry client's TLS). */
struct http_reader {
	/* At most n bytes into p: the count, 0 at the end of the stream, or -1
	 * with errno set. */
	ssize_t (*read)(void *ctx, char *p, size_t n);
	void *ctx;
	/* Each piece of the body; a non-zero return stops the read and is
	 * what http_read_response returns. */
	int (*on_body)(void *arg, const char *p, size_t n);
	void *arg;
};
/* Reads a head into *head (1xx answers other than 101 skipped; at most
 * max_head bytes), then the body, de-chunked, by Content-Length, or to the
 * end of the stream (none for HEAD, 1xx, 204, 304). 0; on_body's value; or
 * -1 with errno EPROTO (malformed), EMSGSIZE (head too large), ENODATA (the
 * stream ended early) or the reader's. The caller frees *head. */
int http_read_response(const struct http_reader *r, bool head_only, size_t max_head, struct http_head *head);

#endif
