/*
 * fake_sandbox.h - what the proxy tests (test_proxy.c, test_proxy_tls.c)
 * share: the plumbing of a fake sandbox and the proxy's loop thread.
 *
 * The fake sandbox is a Unix socket server, one thread per connection, that
 * speaks cube-vmm's vsock handshake ("CONNECT <port>\n" -> "OK <n>\n") and,
 * for port 49982, the agent's port bridge ("PORT <p>\n" -> "OK\n"); each
 * test then answers HTTP on the connection in its own way (its conn function).
 * The proxy under test runs its loop in a thread that a timer stops once the
 * test sets proxy_stop, since the loop is not thread-safe.
 *
 * Test-only: everything is static, one copy per test binary.
 */
#ifndef CUBE_API_TESTS_FAKE_SANDBOX_H
#define CUBE_API_TESTS_FAKE_SANDBOX_H

#include <errno.h>
#include <netinet/in.h>
#include <pthread.h>
#include <semaphore.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>

#include "../../lib/buf.h"
#include "../../lib/loop.h"

static struct loop *proxy_loop;
static pthread_t proxy_tid;
static atomic_bool proxy_stop;

static int send_all(int fd, const void *p, size_t n)
{
	const char *c = p;
	while (n) {
		ssize_t k = send(fd, c, n, MSG_NOSIGNAL);
		if (k < 0 && errno == EINTR)
			continue;
		if (k <= 0)
			return -1;
		c += k;
		n -= (size_t)k;
	}
	return 0;
}

/* Reads more bytes into b; false on EOF or error. */
static bool fill(int fd, struct buf *b)
{
	char *p = buf_reserve(b, 65536);
	ssize_t n;
	do
		n = recv(fd, p, 65536, 0);
	while (n < 0 && errno == EINTR);
	if (n <= 0)
		return false;
	buf_commit(b, (size_t)n);
	return true;
}

/* Bridged ports with a scripted failure (the agent's port bridge). */
#define FAKE_TIMEOUT_PORT 5001 /* "ERR timeout" */
#define FAKE_GARBAGE_PORT 5002 /* an answer that is not the protocol */

/* Reads one "\n"-ended line into line (NUL-terminated, "\n" dropped). */
static bool fake_read_line(int fd, struct buf *in, char *line, size_t n)
{
	char *nl;
	while (!(nl = in->len ? memchr(in->data, '\n', in->len) : NULL))
		if (in->len > 64 || !fill(fd, in))
			return false;
	size_t ll = (size_t)(nl - in->data);
	snprintf(line, n, "%.*s", (int)ll, in->data);
	buf_consume(in, ll + 1);
	return true;
}

/* Reads the CONNECT line into *port and answers OK, unless the port is
 * closed_port (-1: none), which is refused by a close, as cube-vmm does.
 * CONNECT 49982 is the agent's port bridge: then "PORT <p>\n" gives *port,
 * answered "OK\n", or "ERR refused\n" for closed_port, as the agent does. */
static bool fake_handshake(int fd, struct buf *in, int *port, int closed_port)
{
	char line[80];
	if (!fake_read_line(fd, in, line, sizeof line) || sscanf(line, "CONNECT %d", port) != 1)
		return false;
	if (*port == closed_port)
		return false;
	if (send_all(fd, "OK 1024\n", 8) < 0)
		return false;
	if (*port != 49982)
		return true;
	if (!fake_read_line(fd, in, line, sizeof line) || sscanf(line, "PORT %d", port) != 1)
		return false;
	const char *answer = *port == closed_port	  ? "ERR refused\n"
			     : *port == FAKE_TIMEOUT_PORT ? "ERR timeout\n"
			     : *port == FAKE_GARBAGE_PORT ? "HTTP/1.1 400 Bad Request\n"
							  : "OK\n";
	return send_all(fd, answer, strlen(answer)) == 0 && strcmp(answer, "OK\n") == 0;
}

/* A chunked answer: chunk one, then wait (at most 5 s) until the test has
 * seen it and posts go, then chunk two. */
static void fake_stream(int fd, sem_t *go)
{
	const char *a =
	    "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nTransfer-Encoding: chunked\r\n\r\n5\r\ntick1\r\n";
	send_all(fd, a, strlen(a));
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	ts.tv_sec += 5;
	const char *b = sem_timedwait(go, &ts) == 0 ? "5\r\ntick2\r\n0\r\n\r\n" : "7\r\ntimeout\r\n0\r\n\r\n";
	send_all(fd, b, strlen(b));
}

/* The test's connection handler: gets the accepted fd as (intptr_t)arg. */
static void *(*fake_conn_fn)(void *arg);

static void *fake_accept(void *arg)
{
	int lfd = (int)(intptr_t)arg;
	for (;;) {
		int fd = accept4(lfd, NULL, NULL, SOCK_CLOEXEC);
		if (fd < 0) {
			if (errno == EINTR || errno == ECONNABORTED)
				continue;
			return NULL;
		}
		pthread_t t;
		pthread_create(&t, NULL, fake_conn_fn, (void *)(intptr_t)fd);
		pthread_detach(t);
	}
}

/* Serves the fake sandbox on the Unix socket path, each connection in a
 * thread running conn. Aborts if the socket cannot be made. */
static void fake_sandbox_listen(const char *path, int backlog, void *(*conn)(void *arg))
{
	fake_conn_fn = conn;
	int ufd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	struct sockaddr_un ua = {.sun_family = AF_UNIX};
	snprintf(ua.sun_path, sizeof ua.sun_path, "%s", path);
	if (bind(ufd, (struct sockaddr *)&ua, sizeof ua) < 0 || listen(ufd, backlog) < 0)
		abort();
	pthread_t t;
	pthread_create(&t, NULL, fake_accept, (void *)(intptr_t)ufd);
	pthread_detach(t);
}

/* A listening TCP socket on 127.0.0.1, an ephemeral port put in *port. */
static int listen_loopback(int backlog, int *port)
{
	int lfd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	socklen_t al = sizeof a;
	if (bind(lfd, (struct sockaddr *)&a, sizeof a) < 0 || listen(lfd, backlog) < 0 ||
	    getsockname(lfd, (struct sockaddr *)&a, &al) < 0)
		abort();
	*port = ntohs(a.sin_port);
	return lfd;
}

static void check_stop(void *arg)
{
	struct loop_timer *t = arg;
	if (proxy_stop)
		loop_stop(proxy_loop);
	else
		loop_timer_arm(proxy_loop, t, 20, check_stop, t);
}

/* Runs proxy_loop in proxy_tid until proxy_stop is set. */
static void *proxy_thread(void *arg)
{
	static struct loop_timer t;
	loop_timer_arm(arg, &t, 20, check_stop, &t);
	loop_run(arg);
	return NULL;
}

static void proxy_thread_start(void)
{
	pthread_create(&proxy_tid, NULL, proxy_thread, proxy_loop);
}

#endif
