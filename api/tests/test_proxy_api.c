/*
 * test_proxy_api.c - cube-proxy relaying Host api.<domain> to cube-api.
 *
 * The SDKs' default API URL is https://api.<domain>; the proxy sends those
 * requests to cube-api's HTTP listener. Here a stand-in api (fake_api.h)
 * answers with what it received, so the tests see the relay from both
 * ends: routing, keep-alive, large and chunked bodies both ways, the
 * X-Forwarded-* headers the proxy sets (and the client's it drops), the
 * X-API-Key passed untouched, and the 502 when the api is down (a second
 * proxy whose api port refuses connections). A fake sandbox (its vsock
 * handshake from fake_sandbox.h, then the same answers) checks that one
 * client connection can go from the api to a sandbox and back. Both
 * proxies share one loop, run in a thread (fake_sandbox.h).
 */
#include <fcntl.h>
#include <netinet/in.h>
#include <pthread.h>
#include <semaphore.h>
#include <signal.h>
#include <sys/socket.h>
#include <unistd.h>

#include "../../lib/http.h"
#include "../../lib/json.h"
#include "../../lib/log.h"
#include "../../lib/tests/test.h"
#include "../proxy.h"
#include "../registry.h"
#include "fake_api.h"
#include "fake_sandbox.h"

#define DOMAIN	 "cubeos.test"
#define API_HOST "Host: api." DOMAIN

static char state_dir[256];
static int proxy_port, dead_proxy_port;
static sem_t stream_go;
static struct proxy *proxy, *dead_proxy;

/* The fake sandbox: the vsock handshake, then the stand-in api's answers
 * (its "port" field tells them apart: the api's has none). */
static void *fake_sandbox_conn(void *arg)
{
	int fd = (int)(intptr_t)arg;
	struct buf in = BUF_INIT;
	int port;
	if (fake_handshake(fd, &in, &port, -1)) {
		struct http_head h;
		uint64_t len, sum;
		for (int nreq = 1; fake_api_read(fd, &in, &h, &len, &sum); nreq++) {
			bool stop = !h.keep_alive;
			fake_api_answer(fd, &h, len, sum, -port, nreq);
			http_head_free(&h);
			if (stop)
				break;
		}
	}
	buf_free(&in);
	close(fd);
	return NULL;
}

static void save_sandbox(const char *id, const char *vsock)
{
	struct sandbox rec = {0};
	snprintf(rec.id, sizeof rec.id, "%s", id);
	rec.template_id = strdup("base");
	rec.client_id = strdup("test");
	rec.started_ms = wall_ms();
	rec.end_ms = rec.started_ms + 3600 * 1000;
	rec.state = SANDBOX_RUNNING;
	rec.vsock = strdup(vsock);
	if (registry_save(state_dir, &rec) < 0)
		abort();
	sandbox_clear(&rec);
}

/* A loopback port where nothing listens: bound (so nobody else takes it)
 * but not listening, so connects are refused. The socket is kept open. */
static int dead_api_port(void)
{
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	socklen_t al = sizeof a;
	if (bind(fd, (struct sockaddr *)&a, sizeof a) < 0 || getsockname(fd, (struct sockaddr *)&a, &al) < 0)
		abort();
	return ntohs(a.sin_port);
}

static void setup(void)
{
	static bool done;
	if (done)
		return;
	done = true;
	signal(SIGPIPE, SIG_IGN);
	log_set_level(getenv("PROXY_TEST_LOG") ? LOG_DEBUG : LOG_ERROR);
	sem_init(&stream_go, 0, 0);
	snprintf(state_dir, sizeof state_dir, "/tmp/test_proxy_api.XXXXXX");
	if (!mkdtemp(state_dir))
		abort();
	int api_port = fake_api_listen(&stream_go);
	int dead_port = dead_api_port();
	char vsock[300];
	snprintf(vsock, sizeof vsock, "%s/vsock.sock", state_dir);
	fake_sandbox_listen(vsock, 64, fake_sandbox_conn);
	save_sandbox("sbxmix", vsock);

	proxy_loop = loop_new();
	struct proxy_config cfg = {
	    .state_dir = state_dir, .domain = DOMAIN, .api_addr = "127.0.0.1", .api_port = api_port};
	proxy = proxy_new(proxy_loop, &cfg);
	cfg.api_port = dead_port;
	dead_proxy = proxy_new(proxy_loop, &cfg);
	int lfd = listen_loopback(256, &proxy_port);
	int dfd = listen_loopback(16, &dead_proxy_port);
	if (!proxy || !dead_proxy || proxy_listen_fd(proxy, lfd, NULL, NULL) < 0 ||
	    proxy_listen_fd(dead_proxy, dfd, NULL, NULL) < 0)
		abort();
	proxy_thread_start();
}

/* A client of the proxy, or of the one whose api is down. */
static int connect_to(bool dead)
{
	setup();
	int port = dead ? dead_proxy_port : proxy_port;
	int fd = http_connect_tcp("127.0.0.1", port, 2000);
	if (fd >= 0) {
		fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) & ~O_NONBLOCK);
		struct timeval tv = {.tv_sec = 10};
		setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
	}
	return fd;
}

static int request(int fd, const char *method, const char *target, const char *const *headers, const void *body,
		   size_t len, struct http_response *resp)
{
	return http_request(fd, method, target, headers, body, len, resp, 10000, NULL, NULL);
}

static struct json *body_json(struct http_response *r)
{
	return json_parse(r->body.data ? r->body.data : "", r->body.len, NULL, 0);
}

static uint64_t sum_of(const char *p, size_t n)
{
	uint64_t s = 0;
	for (size_t i = 0; i < n; i++)
		s = s * 31 + (unsigned char)p[i];
	return s & 0x7fffffffffffffff;
}

/* --- routing --------------------------------------------------------------------- */

TEST(api_host_names)
{
	struct proxy_route r;
	CHECK(proxy_route_host("api." DOMAIN, DOMAIN, &r) && r.api && !r.id[0] && r.port == 0);
	CHECK(proxy_route_host("API.CubeOS.Test:443", DOMAIN, &r) && r.api);
	CHECK(proxy_route_host("api." DOMAIN ".", DOMAIN, &r) && r.api);
	CHECK(!proxy_route_host("api.other.test", DOMAIN, &r));
	CHECK(!proxy_route_host("xapi." DOMAIN, DOMAIN, &r));
	CHECK(!proxy_route_host("ap." DOMAIN, DOMAIN, &r));
	CHECK(!proxy_route_host("x.api." DOMAIN, DOMAIN, &r));
	CHECK(!proxy_route_host("api-1." DOMAIN, DOMAIN, &r));
	CHECK(!proxy_route_host("api." DOMAIN ":x", DOMAIN, &r));
	/* "<port>-api" is a sandbox named api (there is none: ids are 20
	 * characters), never the appliance's API */
	CHECK(proxy_route_host("3000-api." DOMAIN, DOMAIN, &r) && !r.api && r.port == 3000 && !strcmp(r.id, "api"));
	/* a sandbox route is never the api */
	CHECK(proxy_route_host("49983-abc." DOMAIN, DOMAIN, &r) && !r.api);
}

TEST(sandbox_headers_win_over_api_host)
{
	const char *raw =
	    "GET / HTTP/1.1\r\nHost: api." DOMAIN "\r\nE2b-Sandbox-Id: abc\r\nE2b-Sandbox-Port: 49983\r\n\r\n";
	struct http_head h;
	int status;
	if (!CHECK(http_parse_head(raw, strlen(raw), true, 65536, &h, &status) > 0))
		return;
	struct proxy_route r;
	CHECK_EQ_INT(proxy_route_request(&h, DOMAIN, &r), PROXY_ROUTE_OK);
	CHECK(!r.api && r.by_header && r.port == 49983 && !strcmp(r.id, "abc"));
	http_head_free(&h);
	const char *api = "GET / HTTP/1.1\r\nHost: api." DOMAIN "\r\n\r\n";
	if (!CHECK(http_parse_head(api, strlen(api), true, 65536, &h, &status) > 0))
		return;
	CHECK_EQ_INT(proxy_route_request(&h, DOMAIN, &r), PROXY_ROUTE_OK);
	CHECK(r.api && !r.by_header);
	http_head_free(&h);
}

TEST(a_sandbox_named_api_is_not_the_api)
{
	int fd = connect_to(false);
	struct http_response resp;
	const char *h[] = {"Host: 3000-api." DOMAIN, NULL};
	if (!CHECK(fd >= 0) || !CHECK(request(fd, "GET", "/sandboxes", h, NULL, 0, &resp) == 0))
		return;
	CHECK_EQ_INT(resp.status, 502);
	struct json *j = body_json(&resp);
	CHECK_STREQ(json_get_str(j, "message"), "The sandbox was not found");
	CHECK_STREQ(json_get_str(j, "sandboxId"), "api");
	json_free(j);
	http_response_free(&resp);
	close(fd);
}

/* --- relaying to the api ------------------------------------------------------------ */

TEST(api_request_relayed_with_key_and_forwarded_headers)
{
	int fd = connect_to(false);
	struct http_response resp;
	const char *h[] = {API_HOST, "X-API-Key: e2b_0123", NULL};
	if (!CHECK(fd >= 0) || !CHECK(request(fd, "GET", "/sandboxes?state=running", h, NULL, 0, &resp) == 0))
		return;
	CHECK_EQ_INT(resp.status, 200);
	struct json *j = body_json(&resp);
	CHECK_STREQ(json_get_str(j, "method"), "GET");
	CHECK_STREQ(json_get_str(j, "target"), "/sandboxes?state=running");
	CHECK_STREQ(json_get_str(j, "host"), "api." DOMAIN);
	CHECK_STREQ(json_get_str(j, "apiKey"), "e2b_0123");
	CHECK_STREQ(json_get_str(j, "xff"), "127.0.0.1");
	CHECK_STREQ(json_get_str(j, "xfp"), "http");
	json_free(j);
	http_response_free(&resp);
	close(fd);
}

TEST(client_forwarded_headers_are_replaced)
{
	int fd = connect_to(false);
	struct http_response resp;
	const char *h[] = {API_HOST, "X-Forwarded-For: 6.6.6.6", "x-forwarded-proto: https", "X-Forwarded-For: 7.7.7.7",
			   NULL};
	if (!CHECK(fd >= 0) || !CHECK(request(fd, "GET", "/health", h, NULL, 0, &resp) == 0))
		return;
	struct json *j = body_json(&resp);
	CHECK_STREQ(json_get_str(j, "xff"), "127.0.0.1");
	CHECK_STREQ(json_get_str(j, "xfp"), "http");
	CHECK_EQ_INT(json_get_int(j, "xffCount", 0), 1);
	CHECK_EQ_INT(json_get_int(j, "xfpCount", 0), 1);
	json_free(j);
	http_response_free(&resp);
	close(fd);
}

TEST(api_keep_alive_reuses_the_upstream)
{
	int fd = connect_to(false);
	if (!CHECK(fd >= 0))
		return;
	const char *h[] = {API_HOST, "X-API-Key: k", NULL};
	struct http_response r1, r2, r3;
	CHECK(request(fd, "GET", "/a", h, NULL, 0, &r1) == 0);
	CHECK(request(fd, "POST", "/sandboxes", h, "{\"templateID\":\"base\"}", 21, &r2) == 0);
	CHECK(request(fd, "GET", "/chunked-answer", h, NULL, 0, &r3) == 0);
	struct json *j1 = body_json(&r1), *j2 = body_json(&r2), *j3 = body_json(&r3);
	CHECK_EQ_INT(r1.status, 200);
	CHECK_EQ_INT(r2.status, 200);
	CHECK_EQ_INT(r3.status, 200);
	CHECK_EQ_INT(json_get_int(j2, "len", 0), 21);
	CHECK_EQ_INT(json_get_int(j1, "conn", -1), json_get_int(j2, "conn", -2));
	CHECK_EQ_INT(json_get_int(j2, "conn", -1), json_get_int(j3, "conn", -2));
	CHECK_EQ_INT(json_get_int(j3, "nreq", 0), 3);
	CHECK_STREQ(json_get_str(j3, "target"), "/chunked-answer");
	json_free(j1);
	json_free(j2);
	json_free(j3);
	http_response_free(&r1);
	http_response_free(&r2);
	http_response_free(&r3);
	close(fd);
}

/* The SDK's keep-alive pool may carry api calls and sandbox calls on one
 * connection (both are names of the proxy): each goes to its own upstream. */
TEST(api_and_sandbox_on_one_connection)
{
	int fd = connect_to(false);
	if (!CHECK(fd >= 0))
		return;
	const char *ha[] = {API_HOST, NULL};
	const char *hs[] = {"Host: 49983-sbxmix." DOMAIN, NULL};
	struct http_response r[3];
	CHECK(request(fd, "GET", "/one", ha, NULL, 0, &r[0]) == 0);
	CHECK(request(fd, "GET", "/two", hs, NULL, 0, &r[1]) == 0);
	CHECK(request(fd, "GET", "/three", ha, NULL, 0, &r[2]) == 0);
	struct json *j[3];
	for (int i = 0; i < 3; i++) {
		CHECK_EQ_INT(r[i].status, 200);
		j[i] = body_json(&r[i]);
	}
	CHECK(json_get_int(j[0], "conn", 0) > 0);
	CHECK_EQ_INT(json_get_int(j[1], "conn", 0), -49983); /* the sandbox answered */
	CHECK_STREQ(json_get_str(j[1], "xff"), "");	     /* and got no X-Forwarded-For */
	CHECK(json_get_int(j[2], "conn", 0) > 0);
	CHECK_STREQ(json_get_str(j[2], "target"), "/three");
	for (int i = 0; i < 3; i++) {
		json_free(j[i]);
		http_response_free(&r[i]);
	}
	close(fd);
}

TEST(api_large_bodies_both_framings)
{
	size_t n = 20u << 20;
	char *body = malloc(n);
	if (!CHECK(body))
		return;
	for (size_t i = 0; i < n; i++)
		body[i] = (char)(i * 13 + (i >> 10));
	int fd = connect_to(false);
	struct http_response resp;
	const char *h[] = {API_HOST, NULL};
	if (CHECK(fd >= 0) && CHECK(request(fd, "POST", "/templates/upload?name=x", h, body, n, &resp) == 0)) {
		struct json *j = body_json(&resp);
		CHECK_EQ_INT(json_get_int(j, "len", 0), (int64_t)n);
		CHECK_EQ_INT(json_get_int(j, "sum", 0), (int64_t)sum_of(body, n));
		json_free(j);
		http_response_free(&resp);
	}
	/* Node's fetch sends a streamed body chunked */
	const char *hc[] = {API_HOST, "Transfer-Encoding: chunked", NULL};
	if (CHECK(request(fd, "POST", "/templates/upload?name=y", hc, body, n, &resp) == 0)) {
		struct json *j = body_json(&resp);
		CHECK_EQ_INT(json_get_int(j, "len", 0), (int64_t)n);
		CHECK_EQ_INT(json_get_int(j, "sum", 0), (int64_t)sum_of(body, n));
		CHECK_EQ_INT(json_get_int(j, "nreq", 0), 2);
		json_free(j);
		http_response_free(&resp);
	}
	close(fd);
	free(body);
}

struct stream_seen {
	struct buf data;
	bool released;
};

static void on_stream_data(void *arg, const char *p, size_t n)
{
	struct stream_seen *s = arg;
	buf_append(&s->data, p, n);
	/* the stand-in sends the second chunk only once the first arrived */
	if (!s->released && strstr(s->data.data, "tick1")) {
		s->released = true;
		sem_post(&stream_go);
	}
}

TEST(api_streamed_answer_is_incremental)
{
	int fd = connect_to(false);
	if (!CHECK(fd >= 0))
		return;
	const char *h[] = {API_HOST, NULL};
	struct http_response resp;
	struct stream_seen seen = {BUF_INIT, false};
	CHECK(http_request(fd, "GET", "/stream", h, NULL, 0, &resp, 10000, on_stream_data, &seen) == 0);
	CHECK_EQ_INT(resp.status, 200);
	CHECK(seen.released);
	CHECK_STREQ(seen.data.data, "tick1tick2");
	buf_free(&seen.data);
	http_response_free(&resp);
	close(fd);
}

/* --- the api down ----------------------------------------------------------------------- */

static void check_api_502(bool dead, const char *target)
{
	int fd = connect_to(dead);
	struct http_response resp;
	const char *h[] = {API_HOST, NULL};
	if (!CHECK(fd >= 0) || !CHECK(request(fd, "GET", target, h, NULL, 0, &resp) == 0))
		return;
	CHECK_EQ_INT(resp.status, 502);
	CHECK_STREQ(http_header_get(&resp.head, "Content-Type"), "application/json");
	struct json *j = body_json(&resp);
	CHECK_EQ_INT(json_get_int(j, "code", 0), 502);
	CHECK_STREQ(json_get_str(j, "message"), "the appliance API is not reachable");
	CHECK(json_get(j, "sandboxId") == NULL);
	json_free(j);
	http_response_free(&resp);
	close(fd);
}

TEST(api_down_is_502)
{
	check_api_502(true, "/sandboxes");
	/* twice: the proxy is fine after a failed connect */
	check_api_502(true, "/health");
}

TEST(api_closing_without_answer_is_502)
{
	check_api_502(false, "/hangup");
	/* and the next client is served */
	int fd = connect_to(false);
	struct http_response resp;
	const char *h[] = {API_HOST, NULL};
	if (CHECK(fd >= 0) && CHECK(request(fd, "GET", "/health", h, NULL, 0, &resp) == 0))
		CHECK_EQ_INT(resp.status, 200);
	http_response_free(&resp);
	close(fd);
}

TEST(teardown)
{
	proxy_stop = true;
	pthread_join(proxy_tid, NULL);
	proxy_free(proxy);
	proxy_free(dead_proxy);
	loop_free(proxy_loop);
	char cmd[300];
	snprintf(cmd, sizeof cmd, "rm -rf '%s'", state_dir);
	CHECK_EQ_INT(system(cmd), 0);
}
