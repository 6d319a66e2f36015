/*
 * rpc.c - Connect protocol framing (JSON codec) for the envd services.
 *
 * Unary calls are plain HTTP: JSON in, JSON out, errors as a non-200 status
 * with {"code":"<connect code>","message":...}. Server-streaming calls wrap
 * every message in an envelope (1 flag byte + 4-byte big-endian length) and
 * always finish with an end-stream envelope (flag 0x02), which is where a
 * streaming error goes: by then the 200 status has long been sent.
 */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "agent.h"
#include "../lib/connect.h"

#define RPC_MAX_MESSAGE (16u << 20)

/* HTTP status for each Connect code, per the Connect protocol. */
static int code_to_status(const char *code)
{
	static const struct {
		const char *code;
		int status;
	} map[] = {
	    {"canceled", 499},
	    {"unknown", 500},
	    {"invalid_argument", 400},
	    {"deadline_exceeded", 504},
	    {"not_found", 404},
	    {"already_exists", 409},
	    {"permission_denied", 403},
	    {"resource_exhausted", 429},
	    {"failed_precondition", 400},
	    {"aborted", 409},
	    {"out_of_range", 400},
	    {"unimplemented", 501},
	    {"internal", 500},
	    {"unavailable", 503},
	    {"data_loss", 500},
	    {"unauthenticated", 401},
	};
	for (size_t i = 0; i < sizeof map / sizeof map[0]; i++)
		if (strcmp(map[i].code, code) == 0)
			return map[i].status;
	return 500;
}

const char *rpc_code_from_errno(int err)
{
	switch (err) {
	case ENOENT: return "not_found";
	case EEXIST: return "already_exists";
	case EACCES:
	case EPERM:
	case EROFS: return "permission_denied";
	case ENOTDIR:
	case EISDIR:
	case EINVAL:
	case ENAMETOOLONG:
	case ELOOP: return "invalid_argument";
	case ENOTEMPTY: return "failed_precondition";
	case ENOSPC:
	case EDQUOT:
	case EMFILE:
	case ENFILE: return "resource_exhausted";
	default: return "internal";
	}
}

static void error_json(struct buf *b, const char *code, const char *msg)
{
	struct jw w;
	jw_init(&w, b);
	jw_obj(&w);
	jw_kstr(&w, "code", code);
	jw_kstr(&w, "message", msg);
	jw_end(&w);
}

static void envelope(struct http_conn *c, unsigned flags, const char *json, size_t n)
{
	struct buf e = BUF_INIT;
	connect_envelope(&e, flags, json, n);
	/* One write per message: the stream is flushed message by message. */
	http_stream_write(c, e.data, e.len);
	buf_free(&e);
}

void rpc_stream_begin(struct http_conn *c)
{
	http_stream_start(c, 200, "application/connect+json");
}

void rpc_stream_send(struct http_conn *c, const struct buf *msg)
{
	envelope(c, 0, msg->data, msg->len);
}

static void stream_end_v(struct http_conn *c, const char *code, const char *fmt, va_list ap)
{
	struct buf b = BUF_INIT;
	if (!code) {
		buf_puts(&b, "{}");
	} else {
		struct buf msg = BUF_INIT, err = BUF_INIT;
		buf_vprintf(&msg, fmt, ap);
		error_json(&err, code, msg.data ? msg.data : "");
		buf_printf(&b, "{\"error\":%s}", err.data);
		buf_free(&msg);
		buf_free(&err);
	}
	envelope(c, CONNECT_FLAG_END_STREAM, b.data, b.len);
	http_stream_end(c);
	buf_free(&b);
}

void rpc_stream_end(struct http_conn *c, const char *code, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	stream_end_v(c, code, fmt, ap);
	va_end(ap);
}

static void error_v(struct http_conn *c, bool streaming, const char *code, const char *fmt, va_list ap)
{
	if (streaming) {
		/* Connect streams report errors in the end-stream message. */
		rpc_stream_begin(c);
		stream_end_v(c, code, fmt, ap);
		return;
	}
	struct buf msg = BUF_INIT, body = BUF_INIT;
	buf_vprintf(&msg, fmt, ap);
	error_json(&body, code, msg.data ? msg.data : "");
	http_respond(c, code_to_status(code), "application/json", body.data, body.len);
	buf_free(&msg);
	buf_free(&body);
}

void rpc_error_conn(struct http_conn *c, bool streaming, const char *code, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	error_v(c, streaming, code, fmt, ap);
	va_end(ap);
}

void rpc_error(struct rpc_call *call, const char *code, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	error_v(call->conn, call->streaming, code, fmt, ap);
	va_end(ap);
}

void rpc_reply(struct rpc_call *call, const struct buf *msg)
{
	http_respond(call->conn, 200, "application/json", msg->len ? msg->data : "{}", msg->len ? msg->len : 2);
}

/* Content-Type without parameters, e.g. "application/json; charset=utf-8". */
static bool ctype_is(const char *ct, const char *want)
{
	size_t n = strlen(want);
	return ct && strncasecmp(ct, want, n) == 0 && (ct[n] == '\0' || ct[n] == ';' || ct[n] == ' ');
}

/* Extracts the request message; answers and returns NULL when it is bad. */
static struct json *read_message(struct http_conn *c, struct http_req *req, bool streaming)
{
	const char *body = req->body;
	size_t len = req->body_len;
	if (streaming) {
		if (len < CONNECT_HEADER_LEN) {
			rpc_error_conn(c, true, "invalid_argument", "request must be one enveloped message");
			return NULL;
		}
		size_t mlen = connect_header_length(body);
		if (body[0] & CONNECT_FLAG_COMPRESSED) {
			rpc_error_conn(c, true, "unimplemented", "compressed messages are not supported");
			return NULL;
		}
		if (mlen != len - CONNECT_HEADER_LEN) {
			rpc_error_conn(c, true, "invalid_argument",
				       "envelope length %zu does not match body length %zu", mlen,
				       len - CONNECT_HEADER_LEN);
			return NULL;
		}
		body += CONNECT_HEADER_LEN;
		len = mlen;
	}
	if (len == 0)
		return json_parse("{}", 2, NULL, 0);
	char err[160];
	struct json *msg = json_parse(body, len, err, sizeof err);
	if (!msg) {
		rpc_error_conn(c, streaming, "invalid_argument", "malformed JSON message: %s", err);
		return NULL;
	}
	if (msg->type != JSON_OBJECT) {
		json_free(msg);
		rpc_error_conn(c, streaming, "invalid_argument", "message must be a JSON object");
		return NULL;
	}
	return msg;
}

bool rpc_dispatch(struct http_conn *c, struct http_req *req, const struct rpc_method *methods)
{
	const struct rpc_method *m = methods;
	while (m->path && strcmp(m->path, req->path) != 0)
		m++;
	if (!m->path)
		return false;
	if (strcmp(req->method, "POST") != 0) {
		http_add_header(c, "Allow", "POST");
		http_respond_error(c, 405, "%s needs POST", req->path);
		return true;
	}
	const char *ct = http_req_header(req, "Content-Type");
	const char *want = m->streaming ? "application/connect+json" : "application/json";
	if (!ctype_is(ct, want)) {
		/* Connect answers a codec it does not speak with 415. */
		struct buf body = BUF_INIT, msg = BUF_INIT;
		buf_printf(&msg, "unsupported content type '%s': %s expects %s", ct ? ct : "", m->path, want);
		error_json(&body, "invalid_argument", msg.data);
		http_add_header(c, "Accept-Post", want);
		http_respond(c, 415, "application/json", body.data, body.len);
		buf_free(&body);
		buf_free(&msg);
		return true;
	}
	struct rpc_call call = {.conn = c, .req = req, .streaming = m->streaming};
	char who[64];
	if (user_from_request(req, NULL, &call.user, who, sizeof who) < 0) {
		rpc_error_conn(c, m->streaming, "unauthenticated", "invalid user: '%s'", who);
		return true;
	}
	call.msg = read_message(c, req, m->streaming);
	if (!call.msg)
		return true;
	log_debug("rpc.call", "method=%s user=%s peer=%s", m->path, call.user.name, req->peer);
	m->fn(&call);
	json_free(call.msg);
	return true;
}

bool rpc_deadline_ms(const struct http_req *req, uint64_t *ms)
{
	const char *h = http_req_header(req, "Connect-Timeout-Ms");
	*ms = 0;
	if (!h || !*h)
		return true;
	size_t n = strlen(h);
	if (n > 10 || strspn(h, "0123456789") != n) /* the Connect spec allows 10 digits */
		return false;
	*ms = strtoull(h, NULL, 10);
	return true;
}

uint64_t rpc_keepalive_ms(const struct http_req *req)
{
	const char *h = http_req_header(req, "Keepalive-Ping-Interval");
	size_t n = h ? strlen(h) : 0;
	if (n && n <= 6 && strspn(h, "0123456789") == n) {
		uint64_t s = strtoull(h, NULL, 10);
		if (s > 0)
			return (s > 86400 ? 86400 : s) * 1000; /* at least one a day */
	}
	return 90 * 1000; /* envd's default */
}
