/*
 * selftest.c - the admin shell's selftest: boots a real sandbox VM through
 * cube-vmm inside the appliance and checks its agent over vsock.
 *
 * The shell command (cmd_selftest) runs `cubeos --selftest` as a child with
 * shell_run, so PID1's loop never waits on the VM. The child (selftest_main)
 * is a plain blocking program: it starts cube-vmm with the shipped guest
 * kernel and rootfs (the rootfs as the read-only base, writes going to a
 * layer file in a temporary directory), waits for the agent with guestctl,
 * runs two commands in the guest, shuts the VM down through its control
 * socket, cleans up, and prints each phase with its time and a final
 * "selftest: PASS ..." or "selftest: FAIL <reason>" (exit 0 or 1).
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "../lib/loop.h"
#include "shell.h"

extern char **environ;

void cmd_selftest(struct shell *sh, int argc, char **argv)
{
	char *const child[] = {"/proc/self/exe", "--selftest", NULL};
	shell_printf(sh, "selftest: boots a sandbox VM (seconds to minutes under emulation; Ctrl-C stops it)\r\n");
	shell_run(sh, child);
}

/* --- the child program ------------------------------------------------------------- */

struct selftest {
	const char *vmm, *guestctl, *kernel, *rootfs, *parent;
	unsigned wait_ms, mem_mib;
	char dir[256]; /* the temporary directory: layer, sockets, logs */
	char uds[300], ctl[300], serial[300], layer[300], vmm_log[300];
	pid_t vmm_pid;
	uint64_t t0;
	const char *doing; /* the phase under way, for "interrupted while ..." */
	char kernel_release[128], cpus[32];
	uint64_t agent_ms;
};

static volatile sig_atomic_t interrupted;

static void on_interrupt(int sig)
{
	interrupted = sig;
}

static uint64_t since(uint64_t t)
{
	return mono_ms() - t;
}

static void phase(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void phase(const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	fputs("selftest: ", stdout);
	vprintf(fmt, ap);
	fputc('\n', stdout);
	va_end(ap);
	fflush(stdout);
}

/* Starts argv with stdout and stderr on out_fd (or a file when out_path is
 * given). Returns the pid, or -1. */
static pid_t start(char *const argv[], int out_fd, const char *out_path)
{
	posix_spawn_file_actions_t fa;
	posix_spawn_file_actions_init(&fa);
	posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0);
	if (out_path)
		posix_spawn_file_actions_addopen(&fa, 1, out_path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
	else
		posix_spawn_file_actions_adddup2(&fa, out_fd, 1);
	posix_spawn_file_actions_adddup2(&fa, 1, 2);
	pid_t pid;
	int rc = posix_spawn(&pid, argv[0], &fa, NULL, argv, environ);
	posix_spawn_file_actions_destroy(&fa);
	if (rc != 0) {
		errno = rc;
		return -1;
	}
	return pid;
}

/* Waits for pid at most ms (0: no limit). Returns its wait status, -1 on a
 * timeout or when interrupted (the child is still there then). */
static int wait_for(pid_t pid, uint64_t ms)
{
	uint64_t t = mono_ms();
	for (;;) {
		int st;
		pid_t r = waitpid(pid, &st, WNOHANG);
		if (r == pid)
			return st;
		if (r < 0 && errno != EINTR)
			return -1;
		if (interrupted || (ms && since(t) >= ms))
			return -1;
		usleep(20 * 1000);
	}
}

/* Runs argv to its end; its output (at most outsz-1 bytes, trailing newlines
 * cut) in out. Returns the wait status, or -1 (could not start, interrupted). */
static int run_capture(char *const argv[], char *out, size_t outsz)
{
	int p[2];
	if (pipe2(p, O_CLOEXEC) < 0)
		return -1;
	pid_t pid = start(argv, p[1], NULL);
	close(p[1]);
	if (pid < 0) {
		close(p[0]);
		snprintf(out, outsz, "cannot run %s: %s", argv[0], strerror(errno));
		return -1;
	}
	size_t len = 0;
	/* Polled, not a blocking read: a Ctrl-C that came just before the
	 * helper was spawned never reached it, so the helper will not end on
	 * its own and only the flag tells us to stop. */
	while (!interrupted) {
		struct pollfd pfd = {.fd = p[0], .events = POLLIN};
		if (poll(&pfd, 1, 100) <= 0)
			continue;
		char chunk[1024];
		ssize_t r = read(p[0], chunk, sizeof chunk);
		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0)
			break;
		size_t take = (size_t)r < outsz - 1 - len ? (size_t)r : outsz - 1 - len;
		memcpy(out + len, chunk, take);
		len += take;
	}
	close(p[0]);
	while (len > 0 && (out[len - 1] == '\n' || out[len - 1] == '\r'))
		len--;
	out[len] = '\0';
	int st = wait_for(pid, 0);
	if (st < 0) {
		kill(pid, SIGKILL);
		waitpid(pid, NULL, 0);
	}
	return st;
}

static bool exited_ok(int st)
{
	return st >= 0 && WIFEXITED(st) && WEXITSTATUS(st) == 0;
}

static void describe_status(int st, char *out, size_t outsz)
{
	if (st < 0)
		snprintf(out, outsz, interrupted ? "interrupted" : "timed out");
	else if (WIFEXITED(st))
		snprintf(out, outsz, "exit %d", WEXITSTATUS(st));
	else
		snprintf(out, outsz, "signal %d", WIFSIGNALED(st) ? WTERMSIG(st) : 0);
}

/* The last lines of a log, for a failure report. */
static void show_tail(const char *label, const char *path, int lines)
{
	FILE *f = fopen(path, "r");
	if (!f)
		return;
	char ring[8][200];
	int n = 0;
	while (fgets(ring[n % 8], sizeof ring[0], f))
		n++;
	fclose(f);
	for (int i = n > lines ? n - lines : 0; i < n; i++) {
		char *l = ring[i % 8];
		l[strcspn(l, "\r\n")] = '\0';
		printf("selftest:   %s: %s\n", label, l);
	}
}

static int fail(struct selftest *t, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static int fail(struct selftest *t, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	if (interrupted) {
		/* Ctrl-C reached the helpers too: what they said is not the story. */
		printf("selftest: FAIL interrupted (signal %d) while %s", (int)interrupted, t->doing);
	} else {
		show_tail("vmm", t->vmm_log, 4);
		show_tail("guest console", t->serial, 6);
		fputs("selftest: FAIL ", stdout);
		vprintf(fmt, ap);
	}
	fprintf(stdout, " (after %.1f s)\n", (double)since(t->t0) / 1000);
	va_end(ap);
	fflush(stdout);
	return 1;
}

static int check_files(struct selftest *t)
{
	const char *need[] = {t->vmm, t->guestctl, t->kernel, t->rootfs};
	for (size_t i = 0; i < 4; i++)
		if (access(need[i], R_OK) < 0)
			return fail(t, "%s: %s", need[i], strerror(errno));
	if (access("/dev/kvm", R_OK | W_OK) < 0)
		return fail(t, "/dev/kvm: %s (kvm: %s)", strerror(errno), kvm_type());
	phase("kvm: %s", kvm_type());
	return 0;
}

static int make_workdir(struct selftest *t)
{
	snprintf(t->dir, sizeof t->dir, "%s/cubeos-selftest.XXXXXX", t->parent);
	if (!mkdtemp(t->dir))
		return fail(t, "cannot make a directory in %s: %s", t->parent, strerror(errno));
	snprintf(t->uds, sizeof t->uds, "%s/vsock", t->dir);
	snprintf(t->ctl, sizeof t->ctl, "%s/ctl", t->dir);
	snprintf(t->serial, sizeof t->serial, "%s/console.log", t->dir);
	snprintf(t->layer, sizeof t->layer, "%s/disk.layer", t->dir);
	snprintf(t->vmm_log, sizeof t->vmm_log, "%s/vmm.log", t->dir);
	return 0;
}

static int boot_vm(struct selftest *t)
{
	char disk[700], vsock[400], mem[16];
	snprintf(disk, sizeof disk, "%s,layer=%s", t->rootfs, t->layer);
	snprintf(vsock, sizeof vsock, "cid=3,uds=%s", t->uds);
	snprintf(mem, sizeof mem, "%u", t->mem_mib);
	char *const argv[] = {
	    (char *)t->vmm, "run",  "--kernel",	 (char *)t->kernel, "--cpus",  "1",   "--mem",	  mem,
	    "--disk",	    disk,   "--cmdline", "quiet",	    "--vsock", vsock, "--serial", t->serial,
	    "--control",    t->ctl, "--id",	 "selftest",	    NULL};
	t->vmm_pid = start(argv, -1, t->vmm_log);
	if (t->vmm_pid < 0)
		return fail(t, "cannot start %s: %s", t->vmm, strerror(errno));
	phase("boot: cube-vmm pid %d, 1 vCPU, %u MiB, rootfs %s read-only + layer in %s", (int)t->vmm_pid, t->mem_mib,
	      t->rootfs, t->dir);
	return 0;
}

static int wait_agent(struct selftest *t)
{
	uint64_t t1 = mono_ms();
	char wait[16], pid[16], out[512];
	snprintf(wait, sizeof wait, "%u", t->wait_ms);
	snprintf(pid, sizeof pid, "%d", (int)t->vmm_pid);
	char *const argv[] = {(char *)t->guestctl, t->uds, "health", "--wait", wait, "--pid", pid, "--quiet", NULL};
	int st = run_capture(argv, out, sizeof out);
	if (!exited_ok(st)) {
		char how[64];
		describe_status(st, how, sizeof how);
		return fail(t, "the guest agent did not answer within %u ms (guestctl %s: %s)", t->wait_ms, how, out);
	}
	t->agent_ms = since(t1);
	phase("agent: healthy %llu ms after the VMM started", (unsigned long long)t->agent_ms);
	return 0;
}

static int guest_run(struct selftest *t, const char *cmd, char *out, size_t outsz)
{
	uint64_t t1 = mono_ms();
	char *const argv[] = {(char *)t->guestctl, t->uds, "run", (char *)cmd, "--timeout", "60000", NULL};
	int st = run_capture(argv, out, outsz);
	if (!exited_ok(st) || !out[0]) {
		char how[64];
		describe_status(st, how, sizeof how);
		return fail(t, "guest command \"%s\": %s: %s", cmd, how, out);
	}
	phase("run: %s -> %s (%llu ms)", cmd, out, (unsigned long long)since(t1));
	return 0;
}

static int shutdown_vm(struct selftest *t)
{
	uint64_t t1 = mono_ms();
	char out[256];
	char *const argv[] = {(char *)t->vmm, "ctl", t->ctl, "shutdown", NULL};
	int st = run_capture(argv, out, sizeof out);
	if (!exited_ok(st))
		return fail(t, "cube-vmm ctl shutdown: %s", out);
	st = wait_for(t->vmm_pid, 30000);
	if (st < 0)
		return fail(t, "cube-vmm still running 30 s after ctl shutdown");
	t->vmm_pid = 0;
	if (!exited_ok(st)) {
		char how[64];
		describe_status(st, how, sizeof how);
		return fail(t, "cube-vmm ended with %s after ctl shutdown", how);
	}
	phase("shutdown: cube-vmm exited 0 (%llu ms)", (unsigned long long)since(t1));
	return 0;
}

static void cleanup(struct selftest *t)
{
	if (t->vmm_pid > 0) {
		kill(t->vmm_pid, SIGKILL);
		waitpid(t->vmm_pid, NULL, 0);
	}
	if (!t->dir[0] || strstr(t->dir, "XXXXXX"))
		return;
	const char *files[] = {t->uds, t->ctl, t->serial, t->layer, t->vmm_log};
	for (size_t i = 0; i < 5; i++)
		unlink(files[i]);
	/* The VMM's relay sockets for guest-initiated connections (<uds>_<port>). */
	char path[400];
	for (int port = 0; port < 4; port++) {
		snprintf(path, sizeof path, "%s_%d", t->uds, port);
		unlink(path);
	}
	if (rmdir(t->dir) < 0)
		phase("cleanup: %s left behind: %s", t->dir, strerror(errno));
}

static int run_phases(struct selftest *t)
{
	t->doing = "preparing";
	if (check_files(t) || make_workdir(t))
		return 1;
	t->doing = "booting the VM";
	if (boot_vm(t))
		return 1;
	t->doing = "waiting for the guest agent";
	if (wait_agent(t))
		return 1;
	t->doing = "running commands in the guest";
	if (guest_run(t, "uname -r", t->kernel_release, sizeof t->kernel_release) ||
	    guest_run(t, "grep -c ^processor /proc/cpuinfo", t->cpus, sizeof t->cpus))
		return 1;
	t->doing = "shutting the VM down";
	return shutdown_vm(t);
}

static int parse(struct selftest *t, int argc, char **argv)
{
	for (int i = 1; i + 1 < argc; i += 2) {
		const char *a = argv[i], *v = argv[i + 1];
		if (!strcmp(a, "--vmm"))
			t->vmm = v;
		else if (!strcmp(a, "--guestctl"))
			t->guestctl = v;
		else if (!strcmp(a, "--kernel"))
			t->kernel = v;
		else if (!strcmp(a, "--rootfs"))
			t->rootfs = v;
		else if (!strcmp(a, "--dir"))
			t->parent = v;
		else if (!strcmp(a, "--wait-ms"))
			t->wait_ms = (unsigned)strtoul(v, NULL, 10);
		else
			return -1;
	}
	return argc % 2 == 1 && t->wait_ms > 0 ? 0 : -1;
}

int selftest_main(int argc, char **argv)
{
	struct selftest t = {
	    .vmm = "/usr/bin/cube-vmm",
	    .guestctl = "/usr/bin/guestctl",
	    .kernel = "/usr/lib/cubeos/vmlinux",
	    .rootfs = "/usr/lib/cubeos/rootfs.ext4",
	    .parent = "/run",
	    .wait_ms = 240000, /* a cold guest boot nested under emulation takes many seconds */
	    .mem_mib = 256,
	    .t0 = mono_ms(),
	};
	if (parse(&t, argc, argv) < 0) {
		fputs("usage: cubeos --selftest [--vmm P] [--guestctl P] [--kernel P] [--rootfs P] [--dir D] "
		      "[--wait-ms N]\n",
		      stderr);
		return 2;
	}
	/* Ctrl-C in the console reaches the whole process group: the VMM and
	 * guestctl stop on their own, and we clean up after them. */
	struct sigaction sa = {.sa_handler = on_interrupt};
	sigaction(SIGINT, &sa, NULL);
	sigaction(SIGTERM, &sa, NULL);
	sigaction(SIGHUP, &sa, NULL);
	int rc = run_phases(&t);
	cleanup(&t);
	if (rc == 0)
		phase("PASS guest kernel %s, %s CPU(s), agent ready in %.1f s, total %.1f s", t.kernel_release, t.cpus,
		      (double)t.agent_ms / 1000, (double)since(t.t0) / 1000);
	return rc;
}
