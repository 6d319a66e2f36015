/* test_portbridge.c - agent/portbridge.c: the preamble grammar, and the
 * bridge for real: a Unix socket stands in for vsock, a forked echo server
 * for the guest's TCP port, a forked client speaks the wire while the
 * bridge runs on the event loop in this process. */
#include "../../portbridge.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include "../../../lib/tests/test.h"

/* --- the preamble ------------------------------------------------------------- */

static ssize_t parse(const char *s, int *port)
{
	*port = -1;
	return portbridge_parse_preamble(s, strlen(s), port);
}

TEST(preamble_valid)
{
	int port;
	CHECK_EQ_INT(parse("PORT 8000\n", &port), 10);
	CHECK_EQ_INT(port, 8000);
	CHECK_EQ_INT(parse("PORT 1\n", &port), 7);
	CHECK_EQ_INT(port, 1);
	CHECK_EQ_INT(parse("PORT 65535\n", &port), 11);
	CHECK_EQ_INT(port, 65535);
	/* bytes after the newline are the stream's, not the preamble's */
	CHECK_EQ_INT(parse("PORT 80\nGET / HTTP/1.1\r\n", &port), 8);
	CHECK_EQ_INT(port, 80);
}

TEST(preamble_needs_more)
{
	static const char full[] = "PORT 65535\n";
	int port;
	for (size_t n = 0; n < sizeof full - 2; n++)
		CHECK_EQ_INT(portbridge_parse_preamble(full, n, &port), 0);
	CHECK_EQ_INT(portbridge_parse_preamble(full, sizeof full - 1, &port), 11);
}

TEST(preamble_malformed)
{
	static const char *const bad[] = {
	    "PORT 0\n",	      /* port 0 */
	    "PORT 08000\n",   /* leading zero */
	    "PORT 65536\n",   /* out of range */
	    "PORT 99999\n",   /* out of range */
	    "PORT 123456\n",  /* six digits */
	    "PORT 1234567",   /* six digits, no newline yet */
	    "PORT \n",	      /* no digits */
	    "PORT -1\n",      /* sign */
	    "PORT +80\n",     /* sign */
	    "PORT  80\n",     /* two spaces */
	    "PORT 80 \n",     /* trailing space */
	    "PORT 80\r\n",    /* CRLF */
	    "PORT 8a\n",      /* not a digit */
	    "port 80\n",      /* case */
	    "PORT\t80\n",     /* tab */
	    "CONNECT 80\n",   /* the VMM's verb, not ours */
	    "GET / HTTP/1.1", /* HTTP sent to the bridge */
	    "\n",
	    "P\n",
	};
	for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
		int port;
		if (!CHECK_EQ_INT(parse(bad[i], &port), -1))
			fprintf(stderr, "  input %zu: %s\n", i, bad[i]);
		CHECK_EQ_INT(port, -1); /* untouched */
	}
	int port;
	CHECK_EQ_INT(portbridge_parse_preamble("PORT 8\0\n", 8, &port), -1); /* NUL */
}

/* --- the bridge ---------------------------------------------------------------- */

static char sock_path[108];

static int tcp_listen(int family, int *port)
{
	struct sockaddr_in a4 = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	struct sockaddr_in6 a6 = {.sin6_family = AF_INET6, .sin6_addr = IN6ADDR_LOOPBACK_INIT};
	struct sockaddr_storage ss;
	socklen_t sl = family == AF_INET ? sizeof a4 : sizeof a6;
	int fd = socket(family, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -1;
	if (family == AF_INET6) {
		int one = 1;
		setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof one);
	}
	if (bind(fd, family == AF_INET ? (void *)&a4 : (void *)&a6, sl) < 0 || listen(fd, 128) < 0 ||
	    getsockname(fd, (void *)&ss, &sl) < 0) {
		close(fd);
		return -1;
	}
	*port =
	    ntohs(family == AF_INET ? ((struct sockaddr_in *)&ss)->sin_port : ((struct sockaddr_in6 *)&ss)->sin6_port);
	return fd;
}

/* A port nothing listens on (bound once, then released). */
static int free_port(void)
{
	int port = 0;
	int fd = tcp_listen(AF_INET, &port);
	close(fd);
	return port;
}

static bool write_all(int fd, const void *p, size_t n)
{
	const char *s = p;
	while (n) {
		ssize_t k = send(fd, s, n, MSG_NOSIGNAL);
		if (k <= 0)
			return false;
		s += k;
		n -= (size_t)k;
	}
	return true;
}

/* The guest's server: every connection echoes what it reads; at EOF it
 * answers "BYE" and closes (so both half-closes are seen). One process per
 * connection, so any number run at once. */
static pid_t start_echo_server(int lfd)
{
	pid_t pid = fork();
	if (pid != 0)
		return pid;
	signal(SIGCHLD, SIG_IGN);
	for (;;) {
		int fd = accept(lfd, NULL, NULL);
		if (fd < 0)
			continue;
		if (fork() == 0) {
			char buf[8192];
			ssize_t n;
			while ((n = read(fd, buf, sizeof buf)) > 0)
				if (!write_all(fd, buf, (size_t)n))
					_exit(1);
			write_all(fd, "BYE", 3);
			_exit(0);
		}
		close(fd);
	}
}

/* A guest server that accepts and then ignores its connections (never
 * reads, never closes) for 2 s, longer than the bridge may take. */
static pid_t start_silent_server(int lfd)
{
	pid_t pid = fork();
	if (pid != 0)
		return pid;
	alarm(2);
	for (;;)
		if (accept(lfd, NULL, NULL) < 0)
			usleep(1000);
}

/* The host side: a connection to the bridge. */
static int bridge_connect(void)
{
	struct sockaddr_un sa = {.sun_family = AF_UNIX};
	snprintf(sa.sun_path, sizeof sa.sun_path, "%s", sock_path);
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	struct timeval tv = {.tv_sec = 10};
	setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
	if (connect(fd, (void *)&sa, sizeof sa) < 0) {
		close(fd);
		return -1;
	}
	return fd;
}

/* Reads one line (the answer), byte by byte so nothing after it is eaten. */
static bool read_line(int fd, char *out, size_t n)
{
	size_t i = 0;
	while (i + 1 < n) {
		ssize_t k = read(fd, out + i, 1);
		if (k <= 0)
			break;
		if (out[i++] == '\n')
			break;
	}
	out[i] = '\0';
	return i > 0 && out[i - 1] == '\n';
}

/* Reads to EOF. Returns the length or -1. */
static ssize_t read_all(int fd, char *out, size_t n)
{
	size_t got = 0;
	for (;;) {
		ssize_t k = read(fd, out + got, n - got);
		if (k < 0)
			return -1;
		if (k == 0 || (got += (size_t)k) == n)
			return (ssize_t)got;
	}
}

/* Opens a bridged connection to port; returns the fd after "OK\n". */
static int bridged(int port)
{
	int fd = bridge_connect();
	char line[64];
	dprintf(fd, "PORT %d\n", port);
	if (!CHECK(read_line(fd, line, sizeof line)) || !CHECK_STREQ(line, "OK\n")) {
		close(fd);
		return -1;
	}
	return fd;
}

/* The answer of the bridge to a preamble: the line, and EOF after it. */
static void expect_refusal(const char *preamble, const char *want)
{
	int fd = bridge_connect();
	if (!CHECK(fd >= 0))
		return;
	write_all(fd, preamble, strlen(preamble));
	char line[64], rest[16];
	CHECK(read_line(fd, line, sizeof line));
	CHECK_STREQ(line, want);
	CHECK_EQ_INT(read_all(fd, rest, sizeof rest), 0);
	close(fd);
}

static void client_echo_and_half_close(int port)
{
	int fd = bridged(port);
	if (fd < 0)
		return;
	CHECK(write_all(fd, "hello", 5));
	shutdown(fd, SHUT_WR); /* the server sees EOF, then says BYE and closes */
	char got[64];
	ssize_t n = read_all(fd, got, sizeof got);
	CHECK(CHECK_MEMEQ(got, n < 0 ? 0 : (size_t)n, "helloBYE", 8));
	close(fd);
}

/* Data sent with the preamble, before the answer, is not lost; a preamble
 * may come in pieces. */
static void client_preamble_pieces(int port)
{
	int fd = bridge_connect();
	char pre[32];
	int n = snprintf(pre, sizeof pre, "PORT %d\nearly", port);
	CHECK(write_all(fd, pre, 3));
	usleep(50 * 1000);
	CHECK(write_all(fd, pre + 3, (size_t)n - 3));
	shutdown(fd, SHUT_WR);
	char got[64];
	ssize_t k = read_all(fd, got, sizeof got);
	CHECK(CHECK_MEMEQ(got, k < 0 ? 0 : (size_t)k, "OK\nearlyBYE", 11));
	close(fd);
}

/* 4 MiB each way at once through a bridge with 4 KiB buffers: the client
 * writes and reads together, so only backpressure keeps memory bounded. */
static void client_bulk(int port)
{
	int fd = bridged(port);
	if (fd < 0)
		return;
	size_t total = 4u << 20;
	char *out = malloc(total), *in = malloc(total + 8);
	for (size_t i = 0; i < total; i++)
		out[i] = (char)(i * 7 + i / 4096);
	size_t sent = 0, got = 0;
	bool shut = false;
	for (;;) {
		struct pollfd p = {.fd = fd, .events = POLLIN | (sent < total ? POLLOUT : 0)};
		if (!CHECK(poll(&p, 1, 10000) == 1))
			break;
		if (p.revents & POLLOUT) {
			ssize_t k = send(fd, out + sent, total - sent < 65536 ? total - sent : 65536, MSG_DONTWAIT);
			if (k > 0)
				sent += (size_t)k;
		}
		if (sent == total && !shut) {
			shutdown(fd, SHUT_WR);
			shut = true;
		}
		if (p.revents & (POLLIN | POLLHUP)) {
			ssize_t k = recv(fd, in + got, total + 8 - got, MSG_DONTWAIT);
			if (k == 0)
				break;
			if (k > 0)
				got += (size_t)k;
		}
	}
	CHECK_EQ_INT(got, total + 3);
	CHECK(got >= total && memcmp(in, out, total) == 0);
	free(out);
	free(in);
	close(fd);
}

/* Many bridged connections open at the same time, each with its own data. */
static void client_many(int port)
{
	enum { N = 64 };
	int fds[N];
	for (int i = 0; i < N; i++)
		fds[i] = bridged(port);
	for (int i = 0; i < N; i++)
		if (fds[i] >= 0)
			dprintf(fds[i], "conn %d", i);
	for (int i = N - 1; i >= 0; i--) {
		if (fds[i] < 0)
			continue;
		shutdown(fds[i], SHUT_WR);
		char got[64], want[64];
		int wl = snprintf(want, sizeof want, "conn %dBYE", i);
		ssize_t n = read_all(fds[i], got, sizeof got);
		CHECK(CHECK_MEMEQ(got, n < 0 ? 0 : (size_t)n, want, (size_t)wl));
		close(fds[i]);
	}
}

/* A server on ::1 only is found after 127.0.0.1 refuses. */
static void client_ipv6_fallback(int unused)
{
	(void)unused;
	int port6 = 0;
	int l6 = tcp_listen(AF_INET6, &port6);
	if (l6 < 0) {
		fprintf(stderr, "  (no IPv6 loopback here: fallback not tested)\n");
		return;
	}
	pid_t srv = start_echo_server(l6);
	close(l6);
	client_echo_and_half_close(port6);
	kill(srv, SIGKILL);
	waitpid(srv, NULL, 0);
}

/* --- running a client against the bridge ---------------------------------------------- */

struct run {
	struct loop *loop;
	struct loop_child child;
	struct loop_timer settle;
	int status;
};

static void on_settled(void *arg)
{
	struct run *r = arg;
	loop_stop(r->loop);
}

static void on_client_exit(void *arg, pid_t pid, int status)
{
	(void)pid;
	struct run *r = arg;
	r->status = status;
	/* let the bridge see the last closes before counting connections */
	loop_timer_arm(r->loop, &r->settle, 200, on_settled, r);
}

/* Runs client(port) in a child while the bridge serves it here; the echo
 * server listens on 127.0.0.1:<port>. */
static void run_client(void (*client)(int), const struct portbridge_config *cfg, bool with_server)
{
	struct run r = {.loop = loop_new(), .status = -1};
	struct portbridge *pb = portbridge_new(r.loop, cfg);
	snprintf(sock_path, sizeof sock_path, "/tmp/test_portbridge.%d.sock", (int)getpid());
	unlink(sock_path);
	struct sockaddr_un sa = {.sun_family = AF_UNIX};
	snprintf(sa.sun_path, sizeof sa.sun_path, "%s", sock_path);
	int lfd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (!CHECK(bind(lfd, (void *)&sa, sizeof sa) == 0 && listen(lfd, 256) == 0) ||
	    !CHECK(portbridge_listen_fd(pb, lfd) == 0))
		return;

	int port = 0;
	pid_t srv = -1;
	if (with_server) {
		int tfd = tcp_listen(AF_INET, &port);
		CHECK(tfd >= 0);
		srv = start_echo_server(tfd);
		close(tfd);
	}
	pid_t pid = fork();
	if (pid == 0) {
		client(port);
		_exit(test_failed_checks ? 1 : 0);
	}
	loop_child_watch(r.loop, &r.child, pid, on_client_exit, &r);
	loop_run(r.loop);

	CHECK(WIFEXITED(r.status) && WEXITSTATUS(r.status) == 0);
	CHECK_EQ_INT(portbridge_conn_count(pb), 0);
	if (srv > 0) {
		kill(srv, SIGKILL);
		waitpid(srv, NULL, 0);
	}
	portbridge_free(pb);
	loop_free(r.loop);
	unlink(sock_path);
}

TEST(bridge_echo_half_close)
{
	run_client(client_echo_and_half_close, NULL, true);
}

TEST(bridge_preamble_pieces_and_early_data)
{
	run_client(client_preamble_pieces, NULL, true);
}

TEST(bridge_bulk_with_backpressure)
{
	struct portbridge_config cfg = {.buf_size = 4096};
	run_client(client_bulk, &cfg, true);
}

TEST(bridge_many_connections)
{
	run_client(client_many, NULL, true);
}

TEST(bridge_ipv6_fallback)
{
	run_client(client_ipv6_fallback, NULL, false);
}

static void client_refusals(int unused)
{
	(void)unused;
	char pre[32];
	snprintf(pre, sizeof pre, "PORT %d\n", free_port());
	expect_refusal(pre, "ERR refused\n");
	expect_refusal("PORT 0\n", "ERR bad-preamble\n");
	expect_refusal("PORT 70000\n", "ERR bad-preamble\n");
	expect_refusal("GET / HTTP/1.1\r\nHost: x\r\n\r\n", "ERR bad-preamble\n");
	/* a host that closes before the preamble ends just goes away */
	int fd = bridge_connect();
	write_all(fd, "PORT 8", 6);
	close(fd);
}

TEST(bridge_refusals)
{
	run_client(client_refusals, NULL, false);
}

static void client_silent(int unused)
{
	(void)unused;
	expect_refusal("", "ERR bad-preamble\n"); /* after the 200 ms preamble timeout */
}

TEST(bridge_preamble_timeout)
{
	struct portbridge_config cfg = {.preamble_timeout_ms = 200};
	run_client(client_silent, &cfg, false);
}

static void client_busy(int port)
{
	int first = bridged(port);
	char pre[32];
	snprintf(pre, sizeof pre, "PORT %d\n", port);
	expect_refusal(pre, "ERR busy\n");
	close(first);
}

/* The host closing altogether ends the bridged connection even when the
 * guest's server ignores the EOF (run_client checks none is left). */
static void client_close_on_silent_server(int unused)
{
	(void)unused;
	int port = 0;
	int lfd = tcp_listen(AF_INET, &port);
	pid_t srv = start_silent_server(lfd);
	close(lfd);
	for (int i = 0; i < 8; i++) {
		int fd = bridged(port);
		if (fd >= 0)
			CHECK(write_all(fd, "never read", 10));
		close(fd);
	}
	(void)srv; /* still open when the bridge's connections are counted */
}

TEST(bridge_host_close_with_silent_guest)
{
	run_client(client_close_on_silent_server, NULL, false);
}

TEST(bridge_busy)
{
	struct portbridge_config cfg = {.max_conns = 1};
	run_client(client_busy, &cfg, true);
}
