/*
 * control.c - the control socket; see control.h for the protocol.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "../lib/buf.h"
#include "../lib/fileio.h"
#include "../lib/json.h"
#include "../lib/log.h"
#include "../lib/loop.h"
#include "control.h"
#include "snapshot.h"

struct control_conn {
	struct control *ctl;
	int fd;
	struct loop_io io;
	struct buf in, out;
	struct control_conn *next;
};

struct control {
	struct vm *vm;
	char *path;
	int fd;
	struct loop_io io;
	struct control_conn *conns;
};

/* --- replies ---------------------------------------------------------------- */

static void reply_error(struct buf *out, const char *msg)
{
	struct jw w;
	jw_init(&w, out);
	jw_obj(&w);
	jw_kbool(&w, "ok", false);
	jw_kstr(&w, "error", msg);
	jw_end(&w);
}

static void reply_ok_state(struct control *c, struct buf *out)
{
	struct jw w;
	jw_init(&w, out);
	jw_obj(&w);
	jw_kbool(&w, "ok", true);
	jw_kstr(&w, "state", vm_is_paused(c->vm) ? "paused" : "running");
	jw_end(&w);
}

static void write_memory_stats(struct jw *w, const struct vm *vm)
{
	struct vm_mem_stats st;
	vm_mem_stats(vm, &st);
	jw_key(w, "memory");
	jw_obj(w);
	jw_key(w, "guest_bytes");
	jw_uint(w, st.guest_bytes);
	jw_key(w, "rss_bytes");
	jw_uint(w, st.rss);
	jw_key(w, "pss_bytes");
	jw_uint(w, st.pss);
	jw_key(w, "private_bytes");
	jw_uint(w, st.private_clean + st.private_dirty);
	jw_key(w, "private_dirty_bytes");
	jw_uint(w, st.private_dirty);
	jw_key(w, "shared_bytes");
	jw_uint(w, st.shared_clean + st.shared_dirty);
	jw_end(w);
}

static void reply_stats(struct control *c, struct buf *out)
{
	struct vm *vm = c->vm;
	struct jw w;
	jw_init(&w, out);
	jw_obj(&w);
	jw_kbool(&w, "ok", true);
	jw_kstr(&w, "state", vm_is_paused(vm) ? "paused" : "running");
	jw_kint(&w, "uptime_ms", vm->start_ms ? (int64_t)(mono_ms() - vm->start_ms) : 0);
	write_memory_stats(&w, vm);
	jw_key(&w, "vcpus");
	jw_arr(&w);
	for (int i = 0; i < vm->nr_vcpus; i++) {
		jw_obj(&w);
		jw_kint(&w, "id", i);
		jw_kstr(&w, "state", vcpu_state_name(vm->vcpus[i].state));
		jw_key(&w, "exits");
		jw_uint(&w, vm->vcpus[i].exits);
		jw_end(&w);
	}
	jw_end(&w);
	jw_kint(&w, "pid", getpid());
	jw_end(&w);
}

static void do_snapshot(struct control *c, const char *dir, struct buf *out)
{
	if (!dir || !*dir) {
		reply_error(out, "snapshot needs \"dir\"");
		return;
	}
	struct vm *vm = c->vm;
	bool was_running = !vm_is_paused(vm);
	uint64_t t0 = mono_ms();
	if (was_running)
		vm_pause(vm);
	char err[512];
	int r = snapshot_save(vm, dir, err, sizeof err);
	uint64_t ms = mono_ms() - t0;
	if (was_running)
		vm_resume(vm);
	if (r < 0) {
		log_error("control.snapshot", "snapshot to %s failed: %s", dir, err);
		reply_error(out, err);
		return;
	}
	log_info("control.snapshot", "snapshot to %s in %llu ms", dir, (unsigned long long)ms);
	struct jw w;
	jw_init(&w, out);
	jw_obj(&w);
	jw_kbool(&w, "ok", true);
	jw_kstr(&w, "dir", dir);
	jw_kint(&w, "ms", (int64_t)ms);
	jw_key(&w, "memory_bytes");
	jw_uint(&w, vm->mem.size);
	jw_end(&w);
}

/* Returns true when the VM should exit after the reply went out. */
static bool handle_request(struct control *c, const char *line, size_t len, struct buf *out)
{
	char err[256];
	struct json *req = json_parse(line, len, err, sizeof err);
	if (!req) {
		reply_error(out, err);
		return false;
	}
	const char *op = json_get_str(req, "op");
	bool exit_after = false;
	if (!op) {
		reply_error(out, "request needs a string \"op\"");
	} else if (!strcmp(op, "ping")) {
		reply_ok_state(c, out);
	} else if (!strcmp(op, "pause")) {
		if (!vm_is_paused(c->vm)) {
			vm_pause(c->vm);
			log_info("control.pause", "vm paused");
		}
		reply_ok_state(c, out);
	} else if (!strcmp(op, "resume")) {
		if (vm_is_paused(c->vm)) {
			vm_resume(c->vm);
			log_info("control.resume", "vm resumed");
		}
		reply_ok_state(c, out);
	} else if (!strcmp(op, "snapshot")) {
		do_snapshot(c, json_get_str(req, "dir"), out);
	} else if (!strcmp(op, "stats")) {
		reply_stats(c, out);
	} else if (!strcmp(op, "shutdown")) {
		reply_ok_state(c, out);
		exit_after = true;
	} else {
		reply_error(out, "unknown op (ping, pause, resume, snapshot, stats, shutdown)");
	}
	buf_putc(out, '\n');
	json_free(req);
	return exit_after;
}

/* --- connections --------------------------------------------------------------- */

static void conn_close(struct control_conn *cc)
{
	struct control *c = cc->ctl;
	for (struct control_conn **pp = &c->conns; *pp; pp = &(*pp)->next)
		if (*pp == cc) {
			*pp = cc->next;
			break;
		}
	loop_io_del(c->vm->loop, &cc->io);
	close(cc->fd);
	buf_free(&cc->in);
	buf_free(&cc->out);
	free(cc);
}

/* Writes what the socket takes; the rest waits for EPOLLOUT. Returns -1
 * if the peer is gone. */
static int conn_flush(struct control_conn *cc)
{
	while (cc->out.len) {
		ssize_t n = write(cc->fd, cc->out.data, cc->out.len);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			if (errno == EAGAIN)
				break;
			return -1;
		}
		buf_consume(&cc->out, (size_t)n);
	}
	loop_io_mod(cc->ctl->vm->loop, &cc->io, EPOLLIN | (cc->out.len ? EPOLLOUT : 0));
	return 0;
}

/* Handles every complete line in the input. Returns -1 to drop the connection. */
static int conn_process(struct control_conn *cc)
{
	for (;;) {
		char *nl = cc->in.len ? memchr(cc->in.data, '\n', cc->in.len) : NULL;
		if (!nl) {
			if (cc->in.len > CONTROL_MAX_LINE) {
				reply_error(&cc->out, "request line longer than 64 KiB");
				buf_putc(&cc->out, '\n');
				conn_flush(cc);
				return -1;
			}
			return 0;
		}
		size_t len = (size_t)(nl - cc->in.data);
		bool exit_after = false;
		if (len > CONTROL_MAX_LINE) {
			reply_error(&cc->out, "request line longer than 64 KiB");
			buf_putc(&cc->out, '\n');
		} else if (len > 0) {
			exit_after = handle_request(cc->ctl, cc->in.data, len, &cc->out);
		}
		buf_consume(&cc->in, len + 1);
		if (conn_flush(cc) < 0)
			return -1;
		if (exit_after) {
			log_info("control.shutdown", "shutdown requested on the control socket");
			vm_request_exit(cc->ctl->vm, VMM_EXIT_OK);
			return 0;
		}
	}
}

static void conn_on_io(void *arg, uint32_t events)
{
	struct control_conn *cc = arg;
	if (events & EPOLLOUT) {
		if (conn_flush(cc) < 0) {
			conn_close(cc);
			return;
		}
	}
	if (!(events & (EPOLLIN | EPOLLHUP | EPOLLERR)))
		return;
	char *p = buf_reserve(&cc->in, 4096);
	ssize_t n = read(cc->fd, p, 4096);
	if (n < 0 && (errno == EAGAIN || errno == EINTR))
		return;
	if (n <= 0) {
		conn_close(cc);
		return;
	}
	buf_commit(&cc->in, (size_t)n);
	if (conn_process(cc) < 0)
		conn_close(cc);
}

static void control_on_accept(void *arg, uint32_t events)
{
	struct control *c = arg;
	int fd = accept4(c->fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
	if (fd < 0)
		return;
	struct control_conn *cc = calloc(1, sizeof *cc);
	if (!cc) {
		close(fd);
		return;
	}
	cc->ctl = c;
	cc->fd = fd;
	if (loop_io_add(c->vm->loop, &cc->io, fd, EPOLLIN, conn_on_io, cc) < 0) {
		close(fd);
		free(cc);
		return;
	}
	cc->next = c->conns;
	c->conns = cc;
}

static int unix_addr(struct sockaddr_un *sa, const char *path)
{
	memset(sa, 0, sizeof *sa);
	sa->sun_family = AF_UNIX;
	if (strlen(path) >= sizeof sa->sun_path)
		return -1;
	strcpy(sa->sun_path, path);
	return 0;
}

struct control *control_open(struct vm *vm, const char *path, char *err, size_t errsz)
{
	struct sockaddr_un sa;
	if (unix_addr(&sa, path) < 0) {
		snprintf(err, errsz, "control socket path too long: %s", path);
		return NULL;
	}
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0) {
		snprintf(err, errsz, "control socket: %s", strerror(errno));
		return NULL;
	}
	unlink(path);
	if (bind(fd, (struct sockaddr *)&sa, sizeof sa) < 0 || listen(fd, 16) < 0) {
		snprintf(err, errsz, "control socket %s: %s", path, strerror(errno));
		close(fd);
		return NULL;
	}
	struct control *c = calloc(1, sizeof *c);
	if (!c || !(c->path = strdup(path))) {
		free(c);
		close(fd);
		snprintf(err, errsz, "out of memory");
		return NULL;
	}
	c->vm = vm;
	c->fd = fd;
	if (loop_io_add(vm->loop, &c->io, fd, EPOLLIN, control_on_accept, c) < 0) {
		snprintf(err, errsz, "control socket: cannot watch it");
		control_close(c);
		return NULL;
	}
	return c;
}

void control_close(struct control *c)
{
	if (!c)
		return;
	while (c->conns)
		conn_close(c->conns);
	loop_io_del(c->vm->loop, &c->io);
	close(c->fd);
	unlink(c->path);
	free(c->path);
	free(c);
}

/* --- client ----------------------------------------------------------------------- */

static int read_line(int fd, struct buf *b)
{
	for (;;) {
		if (b->len && memchr(b->data, '\n', b->len))
			return 0;
		char *p = buf_reserve(b, 4096);
		ssize_t n = read(fd, p, 4096);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			return b->len ? 0 : -1;
		buf_commit(b, (size_t)n);
	}
}

int control_request(const char *socket_path, const char *op, const char *arg)
{
	struct sockaddr_un sa;
	if (unix_addr(&sa, socket_path) < 0) {
		fprintf(stderr, "cube-vmm ctl: socket path too long\n");
		return -1;
	}
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0 || connect(fd, (struct sockaddr *)&sa, sizeof sa) < 0) {
		fprintf(stderr, "cube-vmm ctl: connect %s: %s\n", socket_path, strerror(errno));
		if (fd >= 0)
			close(fd);
		return -1;
	}
	struct buf req = BUF_INIT, rep = BUF_INIT;
	struct jw w;
	jw_init(&w, &req);
	jw_obj(&w);
	jw_kstr(&w, "op", op);
	if (arg)
		jw_kstr(&w, "dir", arg);
	jw_end(&w);
	buf_putc(&req, '\n');
	int r = -1;
	if (write_full(fd, req.data, req.len) == 0 && read_line(fd, &rep) == 0) {
		size_t len = rep.len;
		char *nl = memchr(rep.data, '\n', rep.len);
		if (nl)
			len = (size_t)(nl - rep.data);
		printf("%.*s\n", (int)len, rep.data);
		struct json *j = json_parse(rep.data, len, NULL, 0);
		r = json_get_bool(j, "ok", false) ? 0 : -1;
		json_free(j);
	} else {
		fprintf(stderr, "cube-vmm ctl: no reply from %s\n", socket_path);
	}
	close(fd);
	buf_free(&req);
	buf_free(&rep);
	return r;
}
