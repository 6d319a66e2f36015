/*
 * api_harness.h - a cube-api instance on a thread of the test, listening on
 * a loopback port, and a blocking HTTP client for it. Used by test_api.c
 * and test_templates.c, each with its own api_config and vm_ops.
 *
 * Define API_HARNESS_KEY (the X-API-Key that call() sends) before including.
 */
#ifndef CUBE_API_TEST_HARNESS_H
#define CUBE_API_TEST_HARNESS_H

#include <arpa/inet.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "../../lib/http.h"
#include "../../lib/json.h"
#include "../../lib/loop.h"
#include "../api.h"

struct inst {
	struct loop *loop;
	struct api *api;
	pthread_t thread;
	int port;
	int stop_pipe[2];
	struct loop_io stop_io;
};

static inline void inst_on_stop_pipe(void *arg, uint32_t ev)
{
	loop_stop(((struct inst *)arg)->loop);
}

static inline void *inst_main(void *arg)
{
	loop_run(((struct inst *)arg)->loop);
	return NULL;
}

static inline int inst_listen_loopback(int *port)
{
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	socklen_t al = sizeof a;
	if (fd < 0 || bind(fd, (struct sockaddr *)&a, sizeof a) < 0 || listen(fd, 64) < 0 ||
	    getsockname(fd, (struct sockaddr *)&a, &al) < 0)
		return -1;
	*port = ntohs(a.sin_port);
	return fd;
}

/* Starts an api with cfg and ops on its own loop thread. */
static inline bool inst_run(struct inst *in, const struct api_config *cfg, const struct vm_ops *ops)
{
	memset(in, 0, sizeof *in);
	in->loop = loop_new();
	in->api = api_new(in->loop, cfg, ops);
	int lfd = inst_listen_loopback(&in->port);
	if (!in->api || lfd < 0 || http_server_listen_fd(api_server(in->api), lfd) < 0 || pipe(in->stop_pipe) < 0)
		return false;
	loop_io_add(in->loop, &in->stop_io, in->stop_pipe[0], EPOLLIN, inst_on_stop_pipe, in);
	return pthread_create(&in->thread, NULL, inst_main, in) == 0;
}

static inline void inst_stop(struct inst *in)
{
	if (write(in->stop_pipe[1], "x", 1) != 1)
		abort();
	pthread_join(in->thread, NULL);
	loop_io_del(in->loop, &in->stop_io);
	close(in->stop_pipe[0]);
	close(in->stop_pipe[1]);
	api_free(in->api);
	loop_free(in->loop);
}

struct reply {
	int status;
	struct json *j; /* parsed body, NULL if empty or not JSON */
	char next_token[256];
	char retry_after[16];
	char body[8192];
};

static inline void reply_free(struct reply *r)
{
	json_free(r->j);
	r->j = NULL;
}

/* One request; key NULL sends no X-API-Key. extra: one more header line or NULL. */
static inline int call_h(struct inst *in, const char *method, const char *target, const char *key, const char *body,
			 const char *extra, struct reply *r)
{
	memset(r, 0, sizeof *r);
	char keyline[256];
	const char *headers[4] = {0};
	int nh = 0;
	if (key) {
		snprintf(keyline, sizeof keyline, "x-api-key: %s", key);
		headers[nh++] = keyline;
	}
	if (body)
		headers[nh++] = "Content-Type: application/json";
	if (extra)
		headers[nh++] = extra;
	int fd = http_connect_tcp("127.0.0.1", in->port, 2000);
	if (fd < 0)
		return -1;
	struct http_response resp;
	memset(&resp, 0, sizeof resp);
	int rc = http_request(fd, method, target, headers, body, body ? strlen(body) : 0, &resp, 5000, NULL, NULL);
	close(fd);
	if (rc < 0)
		return -1;
	r->status = resp.status;
	const char *t = http_header_get(&resp.head, "X-Next-Token");
	snprintf(r->next_token, sizeof r->next_token, "%s", t ? t : "");
	t = http_header_get(&resp.head, "Retry-After");
	snprintf(r->retry_after, sizeof r->retry_after, "%s", t ? t : "");
	if (resp.body.len) {
		snprintf(r->body, sizeof r->body, "%.*s", (int)resp.body.len, resp.body.data);
		r->j = json_parse(resp.body.data, resp.body.len, NULL, 0);
	}
	http_response_free(&resp);
	return r->status;
}

static inline int call(struct inst *in, const char *method, const char *target, const char *body, struct reply *r)
{
	return call_h(in, method, target, API_HARNESS_KEY, body, NULL, r);
}

/* Status only, reply discarded. */
static inline int status_of(struct inst *in, const char *method, const char *target, const char *body)
{
	struct reply r;
	int s = call(in, method, target, body, &r);
	reply_free(&r);
	return s;
}

#endif
