/*
 * test_proxy_tls.c - cube-proxy on TLS (api/proxy_tls.c) end to end.
 *
 * A test CA and a server certificate for DOMAIN and *.DOMAIN are made with
 * the openssl command line into <state>/config/, as the appliance CA lays
 * them out. The proxy runs its loop in a thread with the TLS wrap on a
 * loopback listener; a small fake sandbox on a Unix socket speaks cube-vmm's
 * vsock handshake and a little HTTP (request info, a stream released by the
 * test, a large answer). The clients are mbedtls clients that verify the
 * chain against the test CA for the sandbox host name, as the E2B SDKs do.
 * A stand-in api (fake_api.h) answers Host api.DOMAIN, the SDKs' default
 * API URL, which must arrive with X-Forwarded-Proto https.
 */
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <semaphore.h>
#include <signal.h>
#include <stdatomic.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <mbedtls/ctr_drbg.h>
#include <mbedtls/entropy.h>
#include <mbedtls/net_sockets.h>
#include <mbedtls/ssl.h>
#include <mbedtls/x509_crt.h>

#include "../../lib/buf.h"
#include "../../lib/http.h"
#include "../../lib/json.h"
#include "../../lib/log.h"
#include "../../lib/tests/test.h"
#include "../proxy.h"
#include "../proxy_tls.h"
#include "../registry.h"
#include "fake_api.h"
#include "fake_sandbox.h"

#define DOMAIN	  "cubeos.test"
#define SBX	  "sbxtls1"
#define HOST	  "49983-" SBX "." DOMAIN
#define BIG_BYTES (8u << 20)

static char state_dir[256], cert_path[320], key_path[320], ca_path[320];
static int proxy_port;
static sem_t stream_go;
static struct proxy *proxy;
static struct proxy_tls *tls;

/* --- certificates (openssl command line) ------------------------------------- */

/* A CA (made once) and a server certificate with subject CN cn. */
static int make_certs(const char *cn)
{
	char cmd[4096];
	snprintf(cmd, sizeof cmd,
		 "set -e; cd '%s/config'; exec 2>openssl.log\n"
		 "if [ ! -f ca.crt ]; then\n"
		 "  openssl ecparam -name prime256v1 -genkey -noout -out ca.key\n"
		 "  openssl req -x509 -new -key ca.key -subj '/CN=Test CA' -days 2 -out ca.crt"
		 "    -addext basicConstraints=critical,CA:TRUE -addext keyUsage=critical,keyCertSign\n"
		 "fi\n"
		 "openssl ecparam -name prime256v1 -genkey -noout -out new.key\n"
		 "openssl req -new -key new.key -subj '/CN=%s' -out new.csr\n"
		 "printf 'subjectAltName=DNS:%s,DNS:*.%s\\nextendedKeyUsage=serverAuth\\n' > ext.cnf\n"
		 "openssl x509 -req -in new.csr -CA ca.crt -CAkey ca.key -set_serial $$ -days 2 -extfile ext.cnf"
		 "  -out new.crt\n"
		 /* as the appliance CA does: key first, each replaced by a rename */
		 "mv new.key server.key; mv new.crt server.crt; echo ok > made\n",
		 state_dir, cn, DOMAIN, DOMAIN);
	/* The proxy's loop reaps every child, so system()'s status is lost:
	 * the script's last step leaves a mark instead. */
	char made[320];
	snprintf(made, sizeof made, "%s/config/made", state_dir);
	unlink(made);
	if (system(cmd) == -1 && errno != ECHILD)
		return -1;
	return access(made, F_OK);
}

/* --- the fake sandbox -------------------------------------------------------------- */

/* Reads one request head and a Content-Length body (counted, not kept). */
static bool fake_read_request(int fd, struct buf *in, struct http_head *h, uint64_t *body_len)
{
	int status;
	ssize_t used;
	while ((used = http_parse_head(in->data ? in->data : "", in->len, true, 65536, h, &status)) == 0)
		if (!fill(fd, in))
			return false;
	if (used < 0)
		return false;
	buf_consume(in, (size_t)used);
	uint64_t left = h->content_length > 0 ? (uint64_t)h->content_length : 0;
	*body_len = left;
	while (left) {
		if (!in->len && !fill(fd, in)) {
			http_head_free(h);
			return false;
		}
		size_t take = in->len < left ? in->len : (size_t)left;
		buf_consume(in, take);
		left -= take;
	}
	return true;
}

static void fake_info(int fd, const struct http_head *h, uint64_t body_len, int port)
{
	struct buf body = BUF_INIT, out = BUF_INIT;
	struct jw w;
	jw_init(&w, &body);
	jw_obj(&w);
	jw_kstr(&w, "target", h->target);
	jw_kint(&w, "port", port);
	jw_kint(&w, "len", (int64_t)body_len);
	jw_end(&w);
	buf_printf(&out, "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: %zu\r\n\r\n", body.len);
	buf_append(&out, body.data, body.len);
	send_all(fd, out.data, out.len);
	buf_free(&out);
	buf_free(&body);
}

/* BIG_BYTES of a known pattern: byte i is (i * 7) & 0xff. */
static void fake_big(int fd)
{
	char head[128];
	int n = snprintf(head, sizeof head, "HTTP/1.1 200 OK\r\nContent-Length: %u\r\n\r\n", BIG_BYTES);
	send_all(fd, head, (size_t)n);
	static char block[65536];
	for (size_t off = 0; off < BIG_BYTES; off += sizeof block) {
		for (size_t i = 0; i < sizeof block; i++)
			block[i] = (char)(((off + i) * 7) & 0xff);
		if (send_all(fd, block, sizeof block) < 0)
			return;
	}
}

static void *fake_conn(void *arg)
{
	int fd = (int)(intptr_t)arg;
	struct buf in = BUF_INIT;
	int port;
	if (fake_handshake(fd, &in, &port, -1)) {
		for (;;) {
			struct http_head h;
			uint64_t len;
			if (!fake_read_request(fd, &in, &h, &len))
				break;
			bool stop = !h.keep_alive;
			if (strcmp(h.target, "/stream") == 0)
				fake_stream(fd, &stream_go);
			else if (strcmp(h.target, "/big") == 0)
				fake_big(fd);
			else
				fake_info(fd, &h, len, port);
			http_head_free(&h);
			if (stop)
				break;
		}
	}
	buf_free(&in);
	close(fd);
	return NULL;
}

/* --- the proxy under test --------------------------------------------------------- */

static void setup(void)
{
	static bool done;
	if (done)
		return;
	done = true;
	signal(SIGPIPE, SIG_IGN);
	log_set_level(getenv("PROXY_TEST_LOG") ? LOG_DEBUG : LOG_ERROR);
	sem_init(&stream_go, 0, 0);
	snprintf(state_dir, sizeof state_dir, "/tmp/test_proxy_tls.XXXXXX");
	if (!mkdtemp(state_dir))
		abort();
	char dir[300], vsock[300];
	snprintf(dir, sizeof dir, "%s/config", state_dir);
	mkdir(dir, 0700);
	snprintf(cert_path, sizeof cert_path, "%s/server.crt", dir);
	snprintf(key_path, sizeof key_path, "%s/server.key", dir);
	snprintf(ca_path, sizeof ca_path, "%s/ca.crt", dir);
	snprintf(vsock, sizeof vsock, "%s/vsock.sock", state_dir);

	fake_sandbox_listen(vsock, 256, fake_conn);

	struct sandbox rec = {0};
	snprintf(rec.id, sizeof rec.id, "%s", SBX);
	rec.template_id = strdup("base");
	rec.client_id = strdup("test");
	rec.started_ms = wall_ms();
	rec.end_ms = rec.started_ms + 3600 * 1000;
	rec.state = SANDBOX_RUNNING;
	rec.vsock = strdup(vsock);
	if (registry_save(state_dir, &rec) < 0)
		abort();
	sandbox_clear(&rec);

	int lfd = listen_loopback(256, &proxy_port);
	proxy_loop = loop_new();
	struct proxy_config cfg = {.state_dir = state_dir,
				   .domain = DOMAIN,
				   .connect_timeout_ms = 3000,
				   .api_addr = "127.0.0.1",
				   .api_port = fake_api_listen(&stream_go)};
	proxy = proxy_new(proxy_loop, &cfg);
	/* no certificate yet: the first test checks that connections are dropped */
	tls = proxy_tls_new(cert_path, key_path);
	if (!proxy || !tls || proxy_listen_fd(proxy, lfd, proxy_tls_wrap, tls) < 0)
		abort();
	proxy_thread_start();
}

/* --- an mbedtls client that verifies like the SDKs ---------------------------------- */

struct client {
	mbedtls_net_context net;
	mbedtls_entropy_context entropy;
	mbedtls_ctr_drbg_context drbg;
	mbedtls_x509_crt ca;
	mbedtls_ssl_config conf;
	mbedtls_ssl_context ssl;
	uint32_t verify_flags;
	struct buf in; /* decrypted, not yet consumed */
};

static const char *client_alpn[] = {"h2", "http/1.1", NULL};

/* Connects and completes the handshake for server name sni. 0 or the mbedtls error. */
static int client_open(struct client *c, const char *sni)
{
	setup();
	memset(c, 0, sizeof *c);
	mbedtls_net_init(&c->net);
	mbedtls_entropy_init(&c->entropy);
	mbedtls_ctr_drbg_init(&c->drbg);
	mbedtls_x509_crt_init(&c->ca);
	mbedtls_ssl_config_init(&c->conf);
	mbedtls_ssl_init(&c->ssl);
	char port[8];
	snprintf(port, sizeof port, "%d", proxy_port);
	int rc = mbedtls_ctr_drbg_seed(&c->drbg, mbedtls_entropy_func, &c->entropy, NULL, 0);
	if (!rc && access(ca_path, F_OK) == 0)
		rc = mbedtls_x509_crt_parse_file(&c->ca, ca_path);
	if (!rc)
		rc = mbedtls_ssl_config_defaults(&c->conf, MBEDTLS_SSL_IS_CLIENT, MBEDTLS_SSL_TRANSPORT_STREAM,
						 MBEDTLS_SSL_PRESET_DEFAULT);
	if (rc)
		return rc;
	mbedtls_ssl_conf_authmode(&c->conf, MBEDTLS_SSL_VERIFY_REQUIRED);
	mbedtls_ssl_conf_ca_chain(&c->conf, &c->ca, NULL);
	mbedtls_ssl_conf_rng(&c->conf, mbedtls_ctr_drbg_random, &c->drbg);
	mbedtls_ssl_conf_read_timeout(&c->conf, 10000);
	mbedtls_ssl_conf_alpn_protocols(&c->conf, client_alpn);
	rc = mbedtls_ssl_setup(&c->ssl, &c->conf);
	if (!rc)
		rc = mbedtls_ssl_set_hostname(&c->ssl, sni);
	if (!rc)
		rc = mbedtls_net_connect(&c->net, "127.0.0.1", port, MBEDTLS_NET_PROTO_TCP);
	if (rc)
		return rc;
	mbedtls_ssl_set_bio(&c->ssl, &c->net, mbedtls_net_send, NULL, mbedtls_net_recv_timeout);
	while ((rc = mbedtls_ssl_handshake(&c->ssl)) == MBEDTLS_ERR_SSL_WANT_READ || rc == MBEDTLS_ERR_SSL_WANT_WRITE)
		;
	c->verify_flags = mbedtls_ssl_get_verify_result(&c->ssl);
	return rc;
}

static void client_close(struct client *c)
{
	mbedtls_ssl_free(&c->ssl);
	mbedtls_ssl_config_free(&c->conf);
	mbedtls_x509_crt_free(&c->ca);
	mbedtls_ctr_drbg_free(&c->drbg);
	mbedtls_entropy_free(&c->entropy);
	mbedtls_net_free(&c->net);
	buf_free(&c->in);
}

static int client_send(struct client *c, const void *p, size_t n)
{
	const unsigned char *b = p;
	while (n) {
		int k = mbedtls_ssl_write(&c->ssl, b, n);
		if (k == MBEDTLS_ERR_SSL_WANT_WRITE || k == MBEDTLS_ERR_SSL_WANT_READ)
			continue;
		if (k <= 0)
			return -1;
		b += k;
		n -= (size_t)k;
	}
	return 0;
}

/* More decrypted bytes into c->in: > 0, 0 on close_notify/EOF, or the error. */
static int client_fill(struct client *c)
{
	char *p = buf_reserve(&c->in, 65536);
	int k;
	do
		k = mbedtls_ssl_read(&c->ssl, (unsigned char *)p, 65536);
	while (k == MBEDTLS_ERR_SSL_WANT_READ || k == MBEDTLS_ERR_SSL_WANT_WRITE);
	if (k > 0)
		buf_commit(&c->in, (size_t)k);
	return k == MBEDTLS_ERR_SSL_PEER_CLOSE_NOTIFY ? 0 : k;
}

static bool client_wait_for(struct client *c, const char *needle)
{
	while (!memmem(c->in.data ? c->in.data : "", c->in.len, needle, strlen(needle)))
		if (client_fill(c) <= 0)
			return false;
	return true;
}

/* One Content-Length response: its status, its body in body (if any). */
static int client_response(struct client *c, struct buf *body)
{
	if (!client_wait_for(c, "\r\n\r\n"))
		return -1;
	char *end = memmem(c->in.data, c->in.len, "\r\n\r\n", 4);
	size_t head_len = (size_t)(end - c->in.data) + 4;
	int status = 0;
	sscanf(c->in.data, "HTTP/1.1 %d", &status);
	char *cl = strcasestr(c->in.data, "Content-Length:");
	size_t len = cl && cl < end ? strtoul(cl + 15, NULL, 10) : 0;
	while (c->in.len < head_len + len)
		if (client_fill(c) <= 0)
			return -1;
	if (body)
		buf_append(body, c->in.data + head_len, len);
	buf_consume(&c->in, head_len + len);
	return status;
}

static int client_get(struct client *c, const char *target, const char *extra, struct buf *body)
{
	char req[512];
	int n = snprintf(req, sizeof req, "GET %s HTTP/1.1\r\nHost: %s\r\n%s\r\n", target, HOST, extra ? extra : "");
	if (client_send(c, req, (size_t)n) < 0)
		return -1;
	return client_response(c, body);
}

/* --- tests --------------------------------------------------------------------------- */

TEST(no_certificate_drops_then_one_appearing_is_used)
{
	struct client c;
	CHECK(client_open(&c, HOST) != 0);
	client_close(&c);
	CHECK(!proxy_tls_ready(tls));
	if (!CHECK_EQ_INT(make_certs(DOMAIN), 0))
		return;
	/* the next accept sees the new files */
	int rc = client_open(&c, HOST);
	CHECK_EQ_INT(rc, 0);
	client_close(&c);
}

TEST(chain_verifies_for_the_sandbox_host)
{
	struct client c;
	if (CHECK_EQ_INT(client_open(&c, HOST), 0)) {
		CHECK_EQ_INT(c.verify_flags, 0);
		CHECK_STREQ(mbedtls_ssl_get_version(&c.ssl), "TLSv1.2");
		const char *alpn = mbedtls_ssl_get_alpn_protocol(&c.ssl);
		CHECK_STREQ(alpn ? alpn : "(none)", "http/1.1");
		CHECK(strstr(mbedtls_ssl_get_ciphersuite(&c.ssl), "ECDHE-ECDSA") != NULL);
	}
	client_close(&c);
	/* the apex is in the certificate too; another domain is not */
	CHECK_EQ_INT(client_open(&c, DOMAIN), 0);
	client_close(&c);
	CHECK(client_open(&c, "49983-" SBX ".other.test") != 0);
	CHECK(c.verify_flags & MBEDTLS_X509_BADCERT_CN_MISMATCH);
	client_close(&c);
}

TEST(host_routing_through_tls_with_keep_alive)
{
	struct client c;
	if (!CHECK_EQ_INT(client_open(&c, HOST), 0)) {
		client_close(&c);
		return;
	}
	for (int i = 0; i < 3; i++) {
		struct buf body = BUF_INIT;
		char target[32];
		snprintf(target, sizeof target, "/info?n=%d", i);
		CHECK_EQ_INT(client_get(&c, target, NULL, &body), 200);
		struct json *j = json_parse(body.data ? body.data : "", body.len, NULL, 0);
		CHECK_STREQ(json_get_str(j, "target"), target);
		CHECK_EQ_INT(json_get_int(j, "port", 0), 49983);
		json_free(j);
		buf_free(&body);
	}
	/* getHost(8000)'s name: any other port, through the agent's port bridge */
	const char *bridged = "GET /app HTTP/1.1\r\nHost: 8000-" SBX "." DOMAIN "\r\n\r\n";
	struct buf body = BUF_INIT;
	CHECK_EQ_INT(client_send(&c, bridged, strlen(bridged)), 0);
	CHECK_EQ_INT(client_response(&c, &body), 200);
	struct json *j = json_parse(body.data ? body.data : "", body.len, NULL, 0);
	CHECK_EQ_INT(json_get_int(j, "port", 0), 8000);
	json_free(j);
	buf_free(&body);
	/* an unknown sandbox gets the proxy's 502, through TLS as well */
	const char *req = "GET / HTTP/1.1\r\nHost: 49983-nosuch." DOMAIN "\r\n\r\n";
	CHECK_EQ_INT(client_send(&c, req, strlen(req)), 0);
	CHECK_EQ_INT(client_response(&c, NULL), 502);
	client_close(&c);
}

/* https://api.DOMAIN: the certificate's wildcard covers it, the request
 * reaches the api with the key untouched and X-Forwarded-Proto https. */
TEST(api_host_through_tls)
{
	struct client c;
	if (!CHECK_EQ_INT(client_open(&c, "api." DOMAIN), 0) || !CHECK_EQ_INT(c.verify_flags, 0)) {
		client_close(&c);
		return;
	}
	for (int i = 0; i < 2; i++) {
		const char *req = "GET /sandboxes HTTP/1.1\r\nHost: api." DOMAIN "\r\nX-API-Key: e2b_tls\r\n"
				  "X-Forwarded-Proto: http\r\n\r\n";
		struct buf body = BUF_INIT;
		CHECK_EQ_INT(client_send(&c, req, strlen(req)), 0);
		CHECK_EQ_INT(client_response(&c, &body), 200);
		struct json *j = json_parse(body.data ? body.data : "", body.len, NULL, 0);
		CHECK_STREQ(json_get_str(j, "apiKey"), "e2b_tls");
		CHECK_STREQ(json_get_str(j, "xfp"), "https");
		CHECK_STREQ(json_get_str(j, "xff"), "127.0.0.1");
		CHECK_EQ_INT(json_get_int(j, "nreq", 0), i + 1);
		json_free(j);
		buf_free(&body);
	}
	client_close(&c);
}

TEST(upload_through_tls)
{
	struct client c;
	if (!CHECK_EQ_INT(client_open(&c, HOST), 0)) {
		client_close(&c);
		return;
	}
	size_t n = 3u << 20;
	char *data = malloc(n);
	memset(data, 'u', n);
	char head[256];
	int hl =
	    snprintf(head, sizeof head, "POST /upload HTTP/1.1\r\nHost: %s\r\nContent-Length: %zu\r\n\r\n", HOST, n);
	CHECK_EQ_INT(client_send(&c, head, (size_t)hl), 0);
	CHECK_EQ_INT(client_send(&c, data, n), 0);
	struct buf body = BUF_INIT;
	CHECK_EQ_INT(client_response(&c, &body), 200);
	struct json *j = json_parse(body.data ? body.data : "", body.len, NULL, 0);
	CHECK_EQ_INT(json_get_int(j, "len", 0), (long long)n);
	json_free(j);
	buf_free(&body);
	free(data);
	client_close(&c);
}

TEST(streamed_response_arrives_as_produced)
{
	struct client c;
	if (!CHECK_EQ_INT(client_open(&c, HOST), 0)) {
		client_close(&c);
		return;
	}
	const char *req = "GET /stream HTTP/1.1\r\nHost: " HOST "\r\n\r\n";
	CHECK_EQ_INT(client_send(&c, req, strlen(req)), 0);
	/* tick1 comes through while the sandbox still holds tick2 back */
	if (CHECK(client_wait_for(&c, "tick1"))) {
		CHECK(!memmem(c.in.data, c.in.len, "tick2", 5));
		sem_post(&stream_go);
		CHECK(client_wait_for(&c, "0\r\n\r\n"));
		CHECK(memmem(c.in.data, c.in.len, "tick2", 5) != NULL);
	}
	client_close(&c);
}

/* The proxy's writes meet a full socket (the client reads late): its TLS
 * records must be retried exactly and the stream stay intact. */
TEST(large_answer_to_a_slow_reader_is_intact)
{
	struct client c;
	if (!CHECK_EQ_INT(client_open(&c, HOST), 0)) {
		client_close(&c);
		return;
	}
	const char *req = "GET /big HTTP/1.1\r\nHost: " HOST "\r\n\r\n";
	CHECK_EQ_INT(client_send(&c, req, strlen(req)), 0);
	usleep(300000);
	struct buf body = BUF_INIT;
	CHECK_EQ_INT(client_response(&c, &body), 200);
	CHECK_EQ_INT(body.len, BIG_BYTES);
	size_t bad = 0;
	for (size_t i = 0; i < body.len; i++)
		bad += (unsigned char)body.data[i] != ((i * 7) & 0xff);
	CHECK_EQ_INT(bad, 0);
	buf_free(&body);
	client_close(&c);
}

TEST(connection_close_ends_with_close_notify)
{
	struct client c;
	if (!CHECK_EQ_INT(client_open(&c, HOST), 0)) {
		client_close(&c);
		return;
	}
	CHECK_EQ_INT(client_get(&c, "/info", "Connection: close\r\n", NULL), 200);
	char x[16];
	int k;
	do
		k = mbedtls_ssl_read(&c.ssl, (unsigned char *)x, sizeof x);
	while (k == MBEDTLS_ERR_SSL_WANT_READ);
	CHECK_EQ_INT(k, MBEDTLS_ERR_SSL_PEER_CLOSE_NOTIFY);
	client_close(&c);
}

static int raw_connect(void)
{
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	struct sockaddr_in a = {
	    .sin_family = AF_INET, .sin_port = htons((uint16_t)proxy_port), .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	struct timeval tv = {.tv_sec = 5};
	setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
	if (connect(fd, (struct sockaddr *)&a, sizeof a) < 0) {
		close(fd);
		return -1;
	}
	return fd;
}

TEST(bad_handshakes_do_not_hurt_the_next_client)
{
	setup();
	/* plain HTTP on the TLS port: the proxy gives up on it and closes */
	int plain = raw_connect();
	const char *http = "GET / HTTP/1.1\r\nHost: " HOST "\r\n\r\n";
	CHECK(send(plain, http, strlen(http), MSG_NOSIGNAL) > 0);
	char buf[256];
	ssize_t n;
	while ((n = recv(plain, buf, sizeof buf, 0)) > 0)
		; /* an alert may come first */
	/* closed with the rest of the request unread: a reset is fine too */
	CHECK(n == 0 || errno == ECONNRESET);
	close(plain);
	/* half a ClientHello, then silence: must not block anyone */
	int stall = raw_connect();
	CHECK(send(stall, "\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03", 11, MSG_NOSIGNAL) == 11);
	/* a client that gives up in the middle of the handshake */
	int gone = raw_connect();
	CHECK(send(gone, "\x16\x03\x01\x00\x05\x01\x00\x00", 8, MSG_NOSIGNAL) == 8);
	close(gone);

	struct client c;
	if (CHECK_EQ_INT(client_open(&c, HOST), 0))
		CHECK_EQ_INT(client_get(&c, "/info", NULL, NULL), 200);
	client_close(&c);
	close(stall);
}

TEST(a_reissued_certificate_is_used_by_new_connections)
{
	struct client old;
	if (!CHECK_EQ_INT(client_open(&old, HOST), 0)) {
		client_close(&old);
		return;
	}
	if (!CHECK_EQ_INT(make_certs("reissued." DOMAIN), 0)) {
		client_close(&old);
		return;
	}
	struct client c;
	if (CHECK_EQ_INT(client_open(&c, HOST), 0)) {
		char dn[256] = "";
		mbedtls_x509_dn_gets(dn, sizeof dn, &mbedtls_ssl_get_peer_cert(&c.ssl)->subject);
		CHECK_STREQ(dn, "CN=reissued." DOMAIN);
	}
	client_close(&c);
	/* the session that started before still works */
	CHECK_EQ_INT(client_get(&old, "/info", NULL, NULL), 200);
	client_close(&old);
	/* a damaged file keeps the last good pair in use */
	FILE *f = fopen(cert_path, "w");
	if (f) {
		fputs("-----BEGIN CERTIFICATE-----\nnonsense\n-----END CERTIFICATE-----\n", f);
		fclose(f);
	}
	CHECK_EQ_INT(client_open(&c, HOST), 0);
	client_close(&c);
	CHECK(proxy_tls_ready(tls));
}

TEST(teardown)
{
	if (!proxy_loop)
		return;
	proxy_stop = true;
	CHECK_EQ_INT(pthread_join(proxy_tid, NULL), 0);
	proxy_free(proxy);
	proxy_tls_free(tls);
	loop_free(proxy_loop);
	char cmd[300];
	snprintf(cmd, sizeof cmd, "rm -rf '%s'", state_dir);
	CHECK_EQ_INT(system(cmd), 0);
}
