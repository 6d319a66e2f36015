/*
 * test_proxy.c - cube-proxy against a fake sandbox.
 *
 * The fake sandbox is a Unix socket server that speaks cube-vmm's vsock
 * handshake ("CONNECT <port>\n" -> "OK <n>\n", or a close for a port that
 * is not open) and then a tiny HTTP server with a few paths that exercise
 * the relay: request info, a stream released step by step by the test, a
 * counted upload, a 101 upgrade into an echo tunnel, and a close-delimited
 * answer. The proxy runs its event loop in a thread; the tests are blocking
 * clients on TCP. Registry records are written with registry_save, as the
 * api does.
 */
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <pthread.h>
#include <semaphore.h>
#include <signal.h>
#include <stdatomic.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "../../lib/http.h"
#include "../../lib/json.h"
#include "../../lib/log.h"
#include "../../lib/tests/test.h"
#include "../proxy.h"
#include "../registry.h"
#include "fake_sandbox.h"

#define ENVD_PORT   49983
#define CLOSED_PORT 5000
#define DOMAIN	    "cubeos.test"

static char state_dir[256];
static char vsock_path[300];
static int proxy_port;
static atomic_int upstream_serial; /* upstream connections accepted by the fake */
static sem_t stream_go;		   /* the test saw the first chunk of /stream */
static struct proxy *proxy;

/* --- the fake sandbox (its plumbing: fake_sandbox.h) ------------------------ */

struct fake_req {
	struct http_head head;
	uint64_t len, sum;
};

static bool fake_read_request(int fd, struct buf *in, struct fake_req *r)
{
	int status;
	ssize_t used;
	while ((used = http_parse_head(in->data ? in->data : "", in->len, true, 65536, &r->head, &status)) == 0)
		if (!fill(fd, in))
			return false;
	if (used < 0)
		return false;
	buf_consume(in, (size_t)used);
	r->len = r->sum = 0;
	if (strcmp(r->head.target, "/early") == 0)
		return true; /* answers without reading the body */
	struct http_chunked ck = {0};
	struct buf dec = BUF_INIT;
	uint64_t left = r->head.content_length > 0 ? (uint64_t)r->head.content_length : 0;
	bool done = !r->head.chunked && left == 0;
	while (!done) {
		if (!in->len && !fill(fd, in))
			break;
		size_t take;
		if (r->head.chunked) {
			ssize_t k = http_chunked_feed(&ck, in->data, in->len, &dec, &done);
			if (k < 0)
				break;
			take = (size_t)k;
		} else {
			take = in->len < left ? in->len : (size_t)left;
			buf_append(&dec, in->data, take);
			left -= take;
			done = left == 0;
		}
		for (size_t i = 0; i < dec.len; i++)
			r->sum = r->sum * 31 + (unsigned char)dec.data[i];
		r->len += dec.len;
		buf_reset(&dec);
		buf_consume(in, take);
	}
	buf_free(&dec);
	if (!done)
		http_head_free(&r->head);
	return done;
}

static void fake_info(int fd, struct fake_req *r, int serial, int nreq, int port)
{
	struct buf body = BUF_INIT;
	struct jw w;
	jw_init(&w, &body);
	jw_obj(&w);
	jw_kstr(&w, "method", r->head.method);
	jw_kstr(&w, "target", r->head.target);
	jw_kint(&w, "len", (int64_t)r->len);
	jw_kint(&w, "sum", (int64_t)(r->sum & 0x7fffffffffffffff));
	jw_kint(&w, "conn", serial);
	jw_kint(&w, "nreq", nreq);
	jw_kint(&w, "port", port);
	const char *tok = http_header_get(&r->head, "X-Access-Token");
	jw_kstr(&w, "accessToken", tok ? tok : "");
	jw_end(&w);
	struct buf out = BUF_INIT;
	buf_printf(&out, "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: %zu\r\n\r\n", body.len);
	buf_append(&out, body.data, body.len);
	send_all(fd, out.data, out.len);
	buf_free(&out);
	buf_free(&body);
}

/* 101, then an echo that upper-cases, until EOF; then a last word. */
static void fake_upgrade(int fd, struct buf *in)
{
	const char *h = "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\nhello";
	send_all(fd, h, strlen(h));
	for (;;) {
		if (!in->len && !fill(fd, in))
			break;
		for (size_t i = 0; i < in->len; i++)
			in->data[i] = (char)toupper((unsigned char)in->data[i]);
		send_all(fd, in->data, in->len);
		buf_reset(in);
	}
	send_all(fd, "bye", 3);
}

static void *fake_conn(void *arg)
{
	int fd = (int)(intptr_t)arg;
	int serial = ++upstream_serial;
	struct buf in = BUF_INIT;
	int port;
	bool drop_next = false;
	if (fake_handshake(fd, &in, &port, CLOSED_PORT)) {
		for (int nreq = 1;; nreq++) {
			struct fake_req r;
			if (!fake_read_request(fd, &in, &r))
				break;
			bool stop = !r.head.keep_alive;
			if (drop_next) {
				/* as if an idle timeout closed it just as the request came */
				http_head_free(&r.head);
				break;
			}
			drop_next = strcmp(r.head.target, "/drop-next") == 0;
			if (strcmp(r.head.target, "/stream") == 0) {
				fake_stream(fd, &stream_go);
			} else if (strcmp(r.head.target, "/ws") == 0) {
				fake_upgrade(fd, &in);
				stop = true;
			} else if (strcmp(r.head.target, "/eof") == 0) {
				const char *h = "HTTP/1.0 200 OK\r\nContent-Type: text/plain\r\n\r\nuntil the end";
				send_all(fd, h, strlen(h));
				stop = true;
			} else if (strcmp(r.head.target, "/early") == 0) {
				const char *h = "HTTP/1.1 413 Content Too Large\r\nContent-Length: 4\r\n\r\nnope";
				send_all(fd, h, strlen(h));
			} else {
				fake_info(fd, &r, serial, nreq, port);
			}
			http_head_free(&r.head);
			if (stop)
				break;
		}
	}
	buf_free(&in);
	close(fd);
	return NULL;
}

/* --- the proxy under test --------------------------------------------------- */

static void save_record(const char *id, enum sandbox_state st, const char *vsock, const char *traffic_token)
{
	struct sandbox rec = {0};
	snprintf(rec.id, sizeof rec.id, "%s", id);
	rec.template_id = strdup("base");
	rec.client_id = strdup("test");
	rec.started_ms = wall_ms();
	rec.end_ms = rec.started_ms + 3600 * 1000;
	rec.state = st;
	rec.vsock = strdup(vsock);
	rec.traffic_access_token = traffic_token ? strdup(traffic_token) : NULL;
	if (registry_save(state_dir, &rec) < 0) {
		perror("registry_save");
		abort();
	}
	sandbox_clear(&rec);
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
	snprintf(state_dir, sizeof state_dir, "/tmp/test_proxy.XXXXXX");
	if (!mkdtemp(state_dir))
		abort();
	snprintf(vsock_path, sizeof vsock_path, "%s/vsock.sock", state_dir);

	fake_sandbox_listen(vsock_path, 1024, fake_conn);

	char dead[320];
	snprintf(dead, sizeof dead, "%s/dead.sock", state_dir);
	save_record("sbxrun1", SANDBOX_RUNNING, vsock_path, NULL);
	save_record("sbxrun2", SANDBOX_RUNNING, vsock_path, NULL);
	save_record("sbxtok", SANDBOX_RUNNING, vsock_path, "s3cret");
	save_record("sbxpaused", SANDBOX_PAUSED, vsock_path, NULL);
	save_record("sbxdead", SANDBOX_RUNNING, dead, NULL);

	int lfd = listen_loopback(1024, &proxy_port);
	proxy_loop = loop_new();
	struct proxy_config cfg = {.state_dir = state_dir, .domain = DOMAIN, .connect_timeout_ms = 3000};
	proxy = proxy_new(proxy_loop, &cfg);
	if (!proxy || proxy_listen_fd(proxy, lfd, NULL, NULL) < 0)
		abort();
	proxy_thread_start();
}

/* --- clients ------------------------------------------------------------------ */

static int client_connect(void)
{
	setup();
	int fd = http_connect_tcp("127.0.0.1", proxy_port, 2000);
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

/* One request on a fresh connection. */
static int request1(const char *method, const char *target, const char *const *headers, struct http_response *resp)
{
	int fd = client_connect();
	if (fd < 0)
		return -1;
	int rc = request(fd, method, target, headers, NULL, 0, resp);
	close(fd);
	return rc;
}

static struct json *body_json(struct http_response *r)
{
	return json_parse(r->body.data ? r->body.data : "", r->body.len, NULL, 0);
}

/* Reads until the peer closes (or times out); everything read. */
static void read_to_eof(int fd, struct buf *out)
{
	while (fill(fd, out))
		;
}

/* --- routing ---------------------------------------------------------------------- */

TEST(route_host_names)
{
	struct proxy_route r;
	CHECK(proxy_route_host("49983-abc123.cubeos.test", DOMAIN, &r) && r.port == 49983 && !strcmp(r.id, "abc123"));
	CHECK(proxy_route_host("8080-ABC.CubeOS.Test:443", DOMAIN, &r) && r.port == 8080 && !strcmp(r.id, "abc"));
	CHECK(proxy_route_host("1-a.cubeos.test.", DOMAIN, &r) && r.port == 1);
	CHECK(!proxy_route_host("cubeos.test", DOMAIN, &r));
	CHECK(!proxy_route_host("49983-abc.other.test", DOMAIN, &r));
	CHECK(!proxy_route_host("x.49983-abc.cubeos.test", DOMAIN, &r));
	CHECK(!proxy_route_host("49983-ab_c.cubeos.test", DOMAIN, &r));
	CHECK(!proxy_route_host("65536-abc.cubeos.test", DOMAIN, &r));
	CHECK(!proxy_route_host("0-abc.cubeos.test", DOMAIN, &r));
	CHECK(!proxy_route_host("049983-abc.cubeos.test", DOMAIN, &r));
	CHECK(!proxy_route_host("49983-.cubeos.test", DOMAIN, &r));
	CHECK(!proxy_route_host("-abc.cubeos.test", DOMAIN, &r));
	CHECK(!proxy_route_host("49983-abc.cubeos.test:x", DOMAIN, &r));
	CHECK(!proxy_route_host("49983-abcxcubeos.test", DOMAIN, &r));
	CHECK(!proxy_route_host("", DOMAIN, &r));
}

TEST(route_by_host)
{
	struct http_response resp;
	const char *h[] = {"Host: 49983-sbxrun1." DOMAIN, "X-Access-Token: tok1", NULL};
	if (!CHECK(request1("GET", "/info?x=1", h, &resp) == 0))
		return;
	CHECK_EQ_INT(resp.status, 200);
	struct json *j = body_json(&resp);
	CHECK_STREQ(json_get_str(j, "target"), "/info?x=1");
	CHECK_STREQ(json_get_str(j, "accessToken"), "tok1");
	CHECK_EQ_INT(json_get_int(j, "port", 0), ENVD_PORT);
	json_free(j);
	http_response_free(&resp);
}

TEST(route_by_headers)
{
	struct http_response resp;
	const char *h[] = {"Host: 127.0.0.1", "e2b-sandbox-id: SBXRUN1", "E2b-Sandbox-Port: 49983", NULL};
	if (!CHECK(request1("GET", "/info", h, &resp) == 0))
		return;
	CHECK_EQ_INT(resp.status, 200);
	struct json *j = body_json(&resp);
	CHECK_EQ_INT(json_get_int(j, "port", 0), ENVD_PORT);
	json_free(j);
	http_response_free(&resp);

	const char *bad[] = {"Host: 127.0.0.1", "E2b-Sandbox-Id: sbxrun1", NULL};
	if (CHECK(request1("GET", "/info", bad, &resp) == 0))
		CHECK_EQ_INT(resp.status, 400);
	http_response_free(&resp);
	const char *none[] = {"Host: 127.0.0.1", NULL};
	if (CHECK(request1("GET", "/info", none, &resp) == 0))
		CHECK_EQ_INT(resp.status, 400);
	http_response_free(&resp);
}

static void check_not_found(const char *id)
{
	struct http_response resp;
	char host[128];
	snprintf(host, sizeof host, "Host: 49983-%s." DOMAIN, id);
	const char *h[] = {host, NULL};
	if (!CHECK(request1("GET", "/health", h, &resp) == 0))
		return;
	CHECK_EQ_INT(resp.status, 502);
	CHECK_STREQ(http_header_get(&resp.head, "Content-Type"), "application/json");
	struct json *j = body_json(&resp);
	CHECK_STREQ(json_get_str(j, "message"), "The sandbox was not found");
	CHECK_STREQ(json_get_str(j, "sandboxId"), id);
	CHECK_EQ_INT(json_get_int(j, "code", 0), 502);
	json_free(j);
	http_response_free(&resp);
}

TEST(not_found_unknown_paused_dead)
{
	check_not_found("nosuchsandbox");
	check_not_found("sbxpaused");
	check_not_found("sbxdead");
}

TEST(port_not_open)
{
	struct http_response resp;
	const char *h[] = {"Host: 5000-sbxrun1." DOMAIN, NULL};
	if (!CHECK(request1("GET", "/", h, &resp) == 0))
		return;
	CHECK_EQ_INT(resp.status, 502);
	struct json *j = body_json(&resp);
	CHECK_STREQ(json_get_str(j, "sandboxId"), "sbxrun1");
	CHECK_STREQ(json_get_str(j, "message"), "The sandbox is running but port is not open");
	CHECK_EQ_INT(json_get_int(j, "port", 0), CLOSED_PORT);
	CHECK_EQ_INT(json_get_int(j, "code", 0), 502);
	json_free(j);
	http_response_free(&resp);
}

/* --- the agent's port bridge ------------------------------------------------------ */

TEST(bridge_answer_and_direct_ports)
{
	CHECK(proxy_port_is_direct(49983) && proxy_port_is_direct(49999));
	CHECK(!proxy_port_is_direct(49982) && !proxy_port_is_direct(8000) && !proxy_port_is_direct(1));
	CHECK_EQ_INT(proxy_bridge_answer("OK", 2), PROXY_BRIDGE_OK);
	CHECK_EQ_INT(proxy_bridge_answer("ERR refused", 11), PROXY_BRIDGE_REFUSED);
	CHECK_EQ_INT(proxy_bridge_answer("ERR timeout", 11), PROXY_BRIDGE_TIMEOUT);
	CHECK_EQ_INT(proxy_bridge_answer("ERR busy", 8), PROXY_BRIDGE_BUSY);
	CHECK_EQ_INT(proxy_bridge_answer("ERR unreachable", 15), PROXY_BRIDGE_ERROR);
	CHECK_EQ_INT(proxy_bridge_answer("ERR bad-preamble", 16), PROXY_BRIDGE_ERROR);
	CHECK_EQ_INT(proxy_bridge_answer("OK 1024", 7), PROXY_BRIDGE_MALFORMED);
	CHECK_EQ_INT(proxy_bridge_answer("OK\r", 3), PROXY_BRIDGE_MALFORMED);
	CHECK_EQ_INT(proxy_bridge_answer("ERR ", 4), PROXY_BRIDGE_MALFORMED);
	CHECK_EQ_INT(proxy_bridge_answer("ERR Refused", 11), PROXY_BRIDGE_MALFORMED);
	CHECK_EQ_INT(proxy_bridge_answer("ERR a\"b", 7), PROXY_BRIDGE_MALFORMED);
	CHECK_EQ_INT(proxy_bridge_answer("", 0), PROXY_BRIDGE_MALFORMED);
}

/* Any other port goes through the bridge, by Host name and by headers, and
 * a kept upstream to it is reused like one to envd. */
TEST(bridged_port_routes_and_reuses)
{
	int fd = client_connect();
	if (!CHECK(fd >= 0))
		return;
	const char *h1[] = {"Host: 8000-sbxrun1." DOMAIN, NULL};
	const char *h2[] = {"Host: 127.0.0.1", "E2b-Sandbox-Id: sbxrun1", "E2b-Sandbox-Port: 8000", NULL};
	struct http_response r1, r2;
	CHECK(request(fd, "GET", "/index.html", h1, NULL, 0, &r1) == 0);
	CHECK(request(fd, "POST", "/up", h2, "abcd", 4, &r2) == 0);
	struct json *j1 = body_json(&r1), *j2 = body_json(&r2);
	CHECK_EQ_INT(r1.status, 200);
	CHECK_EQ_INT(r2.status, 200);
	CHECK_EQ_INT(json_get_int(j1, "port", 0), 8000);
	CHECK_STREQ(json_get_str(j1, "target"), "/index.html");
	CHECK_EQ_INT(json_get_int(j2, "len", 0), 4);
	CHECK_EQ_INT(json_get_int(j1, "conn", -1), json_get_int(j2, "conn", -2));
	CHECK_EQ_INT(json_get_int(j2, "nreq", 0), 2);
	json_free(j1);
	json_free(j2);
	http_response_free(&r1);
	http_response_free(&r2);
	close(fd);
}

static void check_bridge_error(int port, const char *message)
{
	struct http_response resp;
	char host[128];
	snprintf(host, sizeof host, "Host: %d-sbxrun1." DOMAIN, port);
	const char *h[] = {host, NULL};
	if (!CHECK(request1("GET", "/", h, &resp) == 0))
		return;
	CHECK_EQ_INT(resp.status, 502);
	CHECK_STREQ(http_header_get(&resp.head, "Content-Type"), "application/json");
	struct json *j = body_json(&resp);
	CHECK_STREQ(json_get_str(j, "message"), message);
	CHECK_STREQ(json_get_str(j, "sandboxId"), "sbxrun1");
	CHECK_EQ_INT(json_get_int(j, "port", 0), port);
	CHECK_EQ_INT(json_get_int(j, "code", 0), 502);
	json_free(j);
	http_response_free(&resp);
}

TEST(bridge_errors)
{
	check_bridge_error(FAKE_TIMEOUT_PORT,
			   "The sandbox is running but port 5001 did not accept the connection in time");
	check_bridge_error(FAKE_GARBAGE_PORT, "The sandbox is running but port 5002 could not be reached");
}

TEST(bridged_websocket_tunnels)
{
	int fd = client_connect();
	if (!CHECK(fd >= 0))
		return;
	const char *req = "GET /ws HTTP/1.1\r\nHost: 3000-sbxrun1." DOMAIN "\r\nUpgrade: websocket\r\n"
			  "Connection: Upgrade\r\n\r\n";
	CHECK(send_all(fd, req, strlen(req)) == 0);
	struct buf in = BUF_INIT;
	while (!strstr(in.data ? in.data : "", "hello") && fill(fd, &in))
		;
	CHECK(strncmp(in.data ? in.data : "", "HTTP/1.1 101 ", 13) == 0);
	buf_reset(&in);
	CHECK(send_all(fd, "ws", 2) == 0);
	while (in.len < 2 && fill(fd, &in))
		;
	CHECK_MEMEQ(in.data, in.len, "WS", 2);
	shutdown(fd, SHUT_WR);
	buf_reset(&in);
	read_to_eof(fd, &in);
	CHECK_MEMEQ(in.data, in.len, "bye", 3);
	buf_free(&in);
	close(fd);
}

TEST(traffic_token)
{
	struct http_response resp;
	const char *none[] = {"Host: 49983-sbxtok." DOMAIN, NULL};
	if (CHECK(request1("GET", "/info", none, &resp) == 0))
		CHECK_EQ_INT(resp.status, 403);
	http_response_free(&resp);
	const char *wrong[] = {"Host: 49983-sbxtok." DOMAIN, "E2B-Traffic-Access-Token: s3cre", NULL};
	if (CHECK(request1("GET", "/info", wrong, &resp) == 0))
		CHECK_EQ_INT(resp.status, 403);
	http_response_free(&resp);
	const char *right[] = {"Host: 49983-sbxtok." DOMAIN, "e2b-traffic-access-token: s3cret", NULL};
	if (CHECK(request1("GET", "/info", right, &resp) == 0))
		CHECK_EQ_INT(resp.status, 200);
	http_response_free(&resp);
}

/* --- relaying ------------------------------------------------------------------- */

TEST(keep_alive_reuses_upstream)
{
	int fd = client_connect();
	if (!CHECK(fd >= 0))
		return;
	const char *h1[] = {"Host: 49983-sbxrun1." DOMAIN, NULL};
	const char *h2[] = {"Host: 49983-sbxrun2." DOMAIN, NULL};
	struct http_response r1, r2, r3;
	CHECK(request(fd, "GET", "/a", h1, NULL, 0, &r1) == 0);
	CHECK(request(fd, "POST", "/b", h1, "xyz", 3, &r2) == 0);
	CHECK(request(fd, "GET", "/c", h2, NULL, 0, &r3) == 0);
	struct json *j1 = body_json(&r1), *j2 = body_json(&r2), *j3 = body_json(&r3);
	CHECK_EQ_INT(r1.status, 200);
	CHECK_EQ_INT(r2.status, 200);
	CHECK_EQ_INT(r3.status, 200);
	/* same sandbox and port: the upstream connection is reused */
	CHECK_EQ_INT(json_get_int(j1, "conn", -1), json_get_int(j2, "conn", -2));
	CHECK_EQ_INT(json_get_int(j2, "nreq", 0), 2);
	CHECK_EQ_INT(json_get_int(j2, "len", 0), 3);
	/* another sandbox on the same client connection: a new upstream */
	CHECK(json_get_int(j3, "conn", -1) != json_get_int(j2, "conn", -1));
	CHECK_EQ_INT(json_get_int(j3, "nreq", 0), 1);
	json_free(j1);
	json_free(j2);
	json_free(j3);
	http_response_free(&r1);
	http_response_free(&r2);
	http_response_free(&r3);
	close(fd);
}

TEST(kept_upstream_closed_retries)
{
	int fd = client_connect();
	if (!CHECK(fd >= 0))
		return;
	const char *h[] = {"Host: 49983-sbxrun1." DOMAIN, NULL};
	struct http_response r1, r2;
	CHECK(request(fd, "GET", "/drop-next", h, NULL, 0, &r1) == 0);
	CHECK(request(fd, "GET", "/again", h, NULL, 0, &r2) == 0);
	CHECK_EQ_INT(r1.status, 200);
	CHECK_EQ_INT(r2.status, 200);
	struct json *j1 = body_json(&r1), *j2 = body_json(&r2);
	CHECK(json_get_int(j1, "conn", -1) != json_get_int(j2, "conn", -1));
	CHECK_STREQ(json_get_str(j2, "target"), "/again");
	json_free(j1);
	json_free(j2);
	http_response_free(&r1);
	http_response_free(&r2);
	close(fd);
}

struct stream_seen {
	struct buf data;
	bool released;
};

static void on_stream_data(void *arg, const char *p, size_t n)
{
	struct stream_seen *s = arg;
	buf_append(&s->data, p, n);
	/* Only once the first chunk arrived does the fake send the second:
	 * a proxy that buffered the answer would deadlock here. */
	if (!s->released && strstr(s->data.data, "tick1")) {
		s->released = true;
		sem_post(&stream_go);
	}
}

TEST(chunked_stream_is_incremental)
{
	int fd = client_connect();
	if (!CHECK(fd >= 0))
		return;
	const char *h[] = {"Host: 49983-sbxrun1." DOMAIN, NULL};
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

static uint64_t sum_of(const char *p, size_t n)
{
	uint64_t s = 0;
	for (size_t i = 0; i < n; i++)
		s = s * 31 + (unsigned char)p[i];
	return s & 0x7fffffffffffffff;
}

TEST(upload_20mb_streams)
{
	size_t n = 20u << 20;
	char *body = malloc(n);
	if (!CHECK(body))
		return;
	for (size_t i = 0; i < n; i++)
		body[i] = (char)(i * 7 + (i >> 12));
	int fd = client_connect();
	const char *h[] = {"Host: 49983-sbxrun1." DOMAIN, NULL};
	struct http_response resp;
	if (CHECK(fd >= 0) && CHECK(request(fd, "PUT", "/upload", h, body, n, &resp) == 0)) {
		CHECK_EQ_INT(resp.status, 200);
		struct json *j = body_json(&resp);
		CHECK_EQ_INT(json_get_int(j, "len", 0), (int64_t)n);
		CHECK_EQ_INT(json_get_int(j, "sum", 0), (int64_t)sum_of(body, n));
		json_free(j);
		http_response_free(&resp);
	}
	/* the same bytes once more, chunked */
	const char *hc[] = {"Host: 49983-sbxrun1." DOMAIN, "Transfer-Encoding: chunked", NULL};
	if (CHECK(request(fd, "POST", "/upload", hc, body, n, &resp) == 0)) {
		CHECK_EQ_INT(resp.status, 200);
		struct json *j = body_json(&resp);
		CHECK_EQ_INT(json_get_int(j, "len", 0), (int64_t)n);
		CHECK_EQ_INT(json_get_int(j, "sum", 0), (int64_t)sum_of(body, n));
		json_free(j);
		http_response_free(&resp);
	}
	close(fd);
	free(body);
}

TEST(websocket_upgrade_tunnels)
{
	int fd = client_connect();
	if (!CHECK(fd >= 0))
		return;
	const char *req = "GET /ws HTTP/1.1\r\nHost: 49983-sbxrun1." DOMAIN "\r\nUpgrade: websocket\r\n"
			  "Connection: Upgrade\r\n\r\n";
	CHECK(send_all(fd, req, strlen(req)) == 0);
	struct buf in = BUF_INIT;
	while (!strstr(in.data ? in.data : "", "hello") && fill(fd, &in))
		;
	CHECK(strncmp(in.data ? in.data : "", "HTTP/1.1 101 ", 13) == 0);
	CHECK(strstr(in.data ? in.data : "", "\r\n\r\nhello") != NULL);
	buf_reset(&in);
	CHECK(send_all(fd, "ping", 4) == 0);
	while (in.len < 4 && fill(fd, &in))
		;
	CHECK_MEMEQ(in.data, in.len, "PING", 4);
	/* half-close: the fake sees EOF, says its last word, the tunnel ends */
	shutdown(fd, SHUT_WR);
	buf_reset(&in);
	read_to_eof(fd, &in);
	CHECK_MEMEQ(in.data, in.len, "bye", 3);
	buf_free(&in);
	close(fd);
}

TEST(close_delimited_answer)
{
	int fd = client_connect();
	if (!CHECK(fd >= 0))
		return;
	const char *req = "GET /eof HTTP/1.1\r\nHost: 49983-sbxrun1." DOMAIN "\r\n\r\n";
	CHECK(send_all(fd, req, strlen(req)) == 0);
	struct buf in = BUF_INIT;
	read_to_eof(fd, &in);
	CHECK(in.data && strncmp(in.data, "HTTP/1.0 200 OK\r\n", 17) == 0);
	CHECK(in.data && strstr(in.data, "\r\n\r\nuntil the end") != NULL);
	buf_free(&in);
	close(fd);
}

TEST(early_answer_closes)
{
	/* The sandbox answers before reading the body: the client gets the
	 * answer, and the connection closes since its framing is lost. */
	int fd = client_connect();
	if (!CHECK(fd >= 0))
		return;
	const char *req = "POST /early HTTP/1.1\r\nHost: 49983-sbxrun1." DOMAIN "\r\nContent-Length: 100000000\r\n\r\n";
	CHECK(send_all(fd, req, strlen(req)) == 0);
	struct buf in = BUF_INIT;
	read_to_eof(fd, &in);
	CHECK(in.data && strncmp(in.data, "HTTP/1.1 413 ", 13) == 0);
	buf_free(&in);
	close(fd);
}

TEST(pipelined_requests)
{
	int fd = client_connect();
	if (!CHECK(fd >= 0))
		return;
	const char *reqs = "GET /p1 HTTP/1.1\r\nHost: 49983-sbxrun1." DOMAIN "\r\n\r\n"
			   "GET /p2 HTTP/1.1\r\nHost: 49983-sbxrun2." DOMAIN "\r\nConnection: close\r\n\r\n";
	CHECK(send_all(fd, reqs, strlen(reqs)) == 0);
	struct buf in = BUF_INIT;
	read_to_eof(fd, &in);
	const char *a = in.data ? strstr(in.data, "\"target\":\"/p1\"") : NULL;
	const char *b = in.data ? strstr(in.data, "\"target\":\"/p2\"") : NULL;
	CHECK(a && b && a < b);
	buf_free(&in);
	close(fd);
}

/* --- malformed input --------------------------------------------------------------- */

static void check_raw_status(const char *raw, size_t n, const char *want_prefix)
{
	int fd = client_connect();
	if (!CHECK(fd >= 0))
		return;
	CHECK(send_all(fd, raw, n) == 0);
	struct buf in = BUF_INIT;
	read_to_eof(fd, &in);
	if (!CHECK(in.data && strncmp(in.data, want_prefix, strlen(want_prefix)) == 0))
		fprintf(stderr, "    got: %.80s\n", in.data ? in.data : "(nothing)");
	else
		CHECK(strstr(in.data, "application/json") != NULL);
	buf_free(&in);
	close(fd);
}

TEST(malformed_input)
{
	const char *cases[] = {
	    "GARBAGE\r\n\r\n",
	    "GET / HTTP/1.1\r\nHost: 49983-sbxrun1." DOMAIN
	    "\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n",
	    "GET / HTTP/1.1\r\nHost: 49983-sbxrun1." DOMAIN "\r\nHost: 49983-sbxrun2." DOMAIN "\r\n\r\n",
	    "GET / HTTP/1.1\r\n bad: fold\r\n\r\n",
	    "GET / HTTP/1.1\r\nHost: 49983-sbxrun1." DOMAIN "\r\n", /* then EOF */
	    "CONNECT 49983-sbxrun1." DOMAIN ":80 HTTP/1.1\r\nHost: 49983-sbxrun1." DOMAIN "\r\n\r\n",
	};
	const char *want[] = {"HTTP/1.1 400 ", "HTTP/1.1 400 ", "HTTP/1.1 400 ",
			      "HTTP/1.1 400 ", "HTTP/1.1 400 ", "HTTP/1.1 405 "};
	for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
		int fd = client_connect();
		if (!CHECK(fd >= 0))
			return;
		CHECK(send_all(fd, cases[i], strlen(cases[i])) == 0);
		shutdown(fd, SHUT_WR);
		struct buf in = BUF_INIT;
		read_to_eof(fd, &in);
		if (!CHECK(in.data && strncmp(in.data, want[i], strlen(want[i])) == 0))
			fprintf(stderr, "    case %zu got: %.80s\n", i, in.data ? in.data : "(nothing)");
		buf_free(&in);
		close(fd);
	}
	/* a head larger than the limit */
	struct buf big = BUF_INIT;
	buf_puts(&big, "GET / HTTP/1.1\r\nHost: 49983-sbxrun1." DOMAIN "\r\n");
	while (big.len < 70000)
		buf_puts(&big, "X-Filler: 0123456789012345678901234567890123456789\r\n");
	buf_puts(&big, "\r\n");
	check_raw_status(big.data, big.len, "HTTP/1.1 431 ");
	buf_free(&big);
	/* a broken chunked body */
	const char *bad = "POST /info HTTP/1.1\r\nHost: 49983-sbxrun1." DOMAIN "\r\nTransfer-Encoding: chunked\r\n\r\n"
			  "zz\r\n";
	check_raw_status(bad, strlen(bad), "HTTP/1.1 400 ");
	/* the proxy is still fine */
	struct http_response resp;
	const char *h[] = {"Host: 49983-sbxrun1." DOMAIN, NULL};
	if (CHECK(request1("GET", "/info", h, &resp) == 0))
		CHECK_EQ_INT(resp.status, 200);
	http_response_free(&resp);
}

TEST(many_concurrent_clients)
{
	enum { N = 200 };
	static int fds[N];
	const char *req = "GET /info HTTP/1.1\r\nHost: 49983-sbxrun1." DOMAIN "\r\nConnection: close\r\n\r\n";
	int ok = 0;
	for (int i = 0; i < N; i++) {
		fds[i] = client_connect();
		if (fds[i] >= 0)
			send_all(fds[i], req, strlen(req));
	}
	for (int i = 0; i < N; i++) {
		if (fds[i] < 0)
			continue;
		struct buf in = BUF_INIT;
		read_to_eof(fds[i], &in);
		ok += in.data && strncmp(in.data, "HTTP/1.1 200 ", 13) == 0;
		buf_free(&in);
		close(fds[i]);
	}
	CHECK_EQ_INT(ok, N);
}

/* Last: stop the loop and free the proxy with a connection still open. */
TEST(teardown)
{
	int fd = client_connect();
	const char *req = "GET /a HTTP/1.1\r\nHost: 49983-sbxrun1." DOMAIN "\r\n\r\n";
	struct buf in = BUF_INIT;
	CHECK(fd >= 0 && send_all(fd, req, strlen(req)) == 0 && fill(fd, &in));
	proxy_stop = true;
	pthread_join(proxy_tid, NULL);
	CHECK_EQ_INT(proxy_conn_count(proxy), 1);
	proxy_free(proxy);
	loop_free(proxy_loop);
	char tmp[4096];
	ssize_t n;
	while ((n = recv(fd, tmp, sizeof tmp, 0)) > 0)
		;
	CHECK_EQ_INT(n, 0); /* the proxy closed it, no time-out */
	buf_free(&in);
	close(fd);
	char cmd[300];
	snprintf(cmd, sizeof cmd, "rm -rf %s", state_dir);
	CHECK(system(cmd) == 0);
}
