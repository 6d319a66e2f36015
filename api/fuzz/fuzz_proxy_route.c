/*
 * fuzz_proxy_route.c - libFuzzer target for the sandbox proxy.
 *
 * Two parts:
 *  - routing: the input as a Host value, and parsed as a request head, goes
 *    through proxy_route_host / proxy_route_request; an accepted route must
 *    be a valid id and port, or the api (api.<domain>) with neither, and
 *    must round-trip through its canonical host name. The input as the port
 *    bridge's answer line is classified too.
 *  - head handling: the first byte splits the rest into what a client sends
 *    and what the "sandbox" answers. A real proxy connection (through a
 *    socketpair) gets the client bytes; sandbox sbxfuzz is an in-loop fake
 *    that answers the vsock handshake and then sends the answer bytes (for a
 *    port other than 49983/49999 they begin with the port bridge's answer);
 *    for Host api.fuzz.test the stand-in api, a TCP listener on loopback,
 *    sends the answer bytes with no handshake. Every connection must end (both sides shut their write side at the end
 * of their input) without a crash, leak or sanitizer report.
 */
#include <errno.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "../../lib/log.h"
#include "../proxy.h"
#include "../registry.h"

#define DOMAIN "fuzz.test"

static char state_dir[128];
static int fake_listen_fd = -1;
static int fake_api_fd = -1; /* the stand-in cube-api, TCP on loopback */
static int fake_api_port;

static void fail(const char *what)
{
	fprintf(stderr, "fuzz_proxy_route: %s\n", what);
	abort();
}

/* --- routing ---------------------------------------------------------------- */

static void check_api_route(const struct proxy_route *r)
{
	if (r->id[0] || r->port || r->by_header)
		fail("api route with a sandbox id, port or header");
	struct proxy_route again;
	if (!proxy_route_host("api." DOMAIN, DOMAIN, &again) || !again.api)
		fail("api route does not round-trip");
}

static void check_route(const struct proxy_route *r)
{
	if (r->api) {
		check_api_route(r);
		return;
	}
	size_t n = strlen(r->id);
	if (n == 0 || n > PROXY_ID_MAX || r->port < 1 || r->port > 65535)
		fail("route out of range");
	for (size_t i = 0; i < n; i++)
		if (!((r->id[i] >= 'a' && r->id[i] <= 'z') || (r->id[i] >= '0' && r->id[i] <= '9')))
			fail("id with a character outside [a-z0-9]");
	char host[160];
	snprintf(host, sizeof host, "%d-%s.%s", r->port, r->id, DOMAIN);
	struct proxy_route again;
	if (!proxy_route_host(host, DOMAIN, &again) || again.api || again.port != r->port ||
	    strcmp(again.id, r->id) != 0)
		fail("route does not round-trip");
}

static void fuzz_routing(const uint8_t *data, size_t size)
{
	char *s = malloc(size + 1);
	if (!s)
		return;
	memcpy(s, data, size);
	s[size] = '\0';
	struct proxy_route r;
	if (proxy_route_host(s, DOMAIN, &r))
		check_route(&r);
	/* the agent's port bridge answer: "OK" is the only success */
	enum proxy_bridge_answer a = proxy_bridge_answer(s, size);
	if ((a == PROXY_BRIDGE_OK) != (size == 2 && memcmp(s, "OK", 2) == 0))
		fail("bridge answer misread");
	if (a != PROXY_BRIDGE_MALFORMED && a != PROXY_BRIDGE_OK && (size < 5 || memcmp(s, "ERR ", 4) != 0))
		fail("bridge error without ERR");
	struct http_head h;
	int status;
	if (http_parse_head(s, size, true, 65536, &h, &status) > 0) {
		if (proxy_route_request(&h, DOMAIN, &r) == PROXY_ROUTE_OK)
			check_route(&r);
		http_head_free(&h);
	}
	free(s);
}

/* --- a proxy connection --------------------------------------------------------- */

struct fake_conn {
	struct loop *loop;
	struct loop_io io;
	int fd;
};

struct fake {
	struct loop *loop;
	struct loop_io lio, api_lio;
	const uint8_t *answer;
	size_t answer_len;
	struct fake_conn conns[8];
	size_t nconns;
};

static void fake_conn_io(void *arg, uint32_t events)
{
	(void)events;
	struct fake_conn *fc = arg;
	char tmp[4096];
	ssize_t n = read(fc->fd, tmp, sizeof tmp);
	if (n == 0 || (n < 0 && errno != EAGAIN))
		loop_io_del(fc->loop, &fc->io); /* the proxy is done with us */
}

/* Accepts on lfd and sends greeting (if any), then the answer bytes. */
static void fake_serve(struct fake *f, int lfd, const char *greeting)
{
	int fd = accept4(lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
	if (fd < 0)
		return;
	if (f->nconns == 8) {
		close(fd);
		return;
	}
	if (greeting)
		(void)!write(fd, greeting, strlen(greeting));
	if (f->answer_len)
		(void)!write(fd, f->answer, f->answer_len);
	shutdown(fd, SHUT_WR);
	struct fake_conn *fc = &f->conns[f->nconns++];
	*fc = (struct fake_conn){.loop = f->loop, .fd = fd};
	loop_io_add(f->loop, &fc->io, fd, EPOLLIN, fake_conn_io, fc);
}

static void fake_accept(void *arg, uint32_t events)
{
	(void)events;
	struct fake *f = arg;
	/* cube-vmm reads the CONNECT line; we answer without looking, then the
	 * whole answer, and end our side. Socket buffers hold it all. */
	fake_serve(f, f->lio.fd, "OK 1\n");
}

/* cube-api: just the answer. */
static void fake_api_accept(void *arg, uint32_t events)
{
	(void)events;
	struct fake *f = arg;
	fake_serve(f, f->api_lio.fd, NULL);
}

struct run {
	struct loop *loop;
	struct proxy *px;
	struct loop_timer tick;
	int ticks;
};

static void on_tick(void *arg)
{
	struct run *r = arg;
	if (proxy_conn_count(r->px) == 0 || ++r->ticks > 200)
		loop_stop(r->loop);
	else
		loop_timer_arm(r->loop, &r->tick, 1, on_tick, r);
}

static void fuzz_connection(const uint8_t *client, size_t clen, const uint8_t *answer, size_t alen)
{
	int sp[2];
	if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sp) < 0)
		return;
	struct run r = {.loop = loop_new()};
	struct proxy_config cfg = {
	    .state_dir = state_dir, .domain = DOMAIN, .api_addr = "127.0.0.1", .api_port = fake_api_port};
	r.px = proxy_new(r.loop, &cfg);
	struct fake f = {.loop = r.loop, .answer = answer, .answer_len = alen};
	loop_io_add(r.loop, &f.lio, fake_listen_fd, EPOLLIN, fake_accept, &f);
	loop_io_add(r.loop, &f.api_lio, fake_api_fd, EPOLLIN, fake_api_accept, &f);

	if (clen)
		(void)!write(sp[1], client, clen);
	shutdown(sp[1], SHUT_WR);
	fd_nonblock(sp[0]);
	proxy_adopt(r.px, sp[0], "fuzz", &proxy_plain_ops, NULL);
	loop_timer_arm(r.loop, &r.tick, 0, on_tick, &r);
	loop_run(r.loop);

	loop_timer_disarm(r.loop, &r.tick);
	proxy_free(r.px);
	loop_io_del(r.loop, &f.lio);
	loop_io_del(r.loop, &f.api_lio);
	for (size_t i = 0; i < f.nconns; i++) {
		loop_io_del(r.loop, &f.conns[i].io);
		close(f.conns[i].fd);
	}
	/* connections the fake never accepted */
	int fd;
	while ((fd = accept4(fake_listen_fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC)) >= 0)
		close(fd);
	while ((fd = accept4(fake_api_fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC)) >= 0)
		close(fd);
	loop_free(r.loop);
	close(sp[1]);
}

static void save(const char *id, enum sandbox_state st, const char *vsock, const char *token)
{
	struct sandbox rec = {0};
	snprintf(rec.id, sizeof rec.id, "%s", id);
	rec.template_id = strdup("base");
	rec.client_id = strdup("fuzz");
	rec.state = st;
	rec.vsock = strdup(vsock);
	rec.traffic_access_token = token ? strdup(token) : NULL;
	if (registry_save(state_dir, &rec) < 0)
		fail("registry_save");
	sandbox_clear(&rec);
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	(void)argc;
	(void)argv;
	log_set_level(LOG_ERROR);
	signal(SIGPIPE, SIG_IGN);
	snprintf(state_dir, sizeof state_dir, "/tmp/fuzz_proxy.XXXXXX");
	if (!mkdtemp(state_dir))
		fail("mkdtemp");
	struct sockaddr_un sa = {.sun_family = AF_UNIX};
	snprintf(sa.sun_path, sizeof sa.sun_path, "%s/vsock.sock", state_dir);
	fake_listen_fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (bind(fake_listen_fd, (struct sockaddr *)&sa, sizeof sa) < 0 || listen(fake_listen_fd, 64) < 0)
		fail("fake sandbox socket");
	fake_api_fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	socklen_t al = sizeof a;
	if (bind(fake_api_fd, (struct sockaddr *)&a, sizeof a) < 0 || listen(fake_api_fd, 64) < 0 ||
	    getsockname(fake_api_fd, (struct sockaddr *)&a, &al) < 0)
		fail("fake api socket");
	fake_api_port = ntohs(a.sin_port);
	char dead[200];
	snprintf(dead, sizeof dead, "%s/dead.sock", state_dir);
	save("sbxfuzz", SANDBOX_RUNNING, sa.sun_path, NULL);
	save("sbxtok", SANDBOX_RUNNING, sa.sun_path, "t0k");
	save("sbxpaused", SANDBOX_PAUSED, sa.sun_path, NULL);
	save("sbxdead", SANDBOX_RUNNING, dead, NULL);
	return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	fuzz_routing(data, size);
	if (size < 1)
		return 0;
	size_t rest = size - 1;
	size_t split = (size_t)data[0] * rest / 255;
	fuzz_connection(data + 1, split, data + 1 + split, rest - split);
	return 0;
}
