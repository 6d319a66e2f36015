/*
 * test_selftest.c - `cubeos --selftest` stopped by Ctrl-C.
 *
 * The admin shell sends Ctrl-C to the selftest's process group, but a
 * helper the selftest spawns a moment later never sees it. Here the helper
 * (a stand-in guestctl) ignores SIGINT and the signal goes to the selftest
 * alone, sent by the stand-in VMM as it starts: the selftest must still stop at once, say it was interrupted, and
 * leave neither the helper nor the stand-in VMM behind.
 *
 * Needs /dev/kvm to be openable (the selftest checks it first); skipped
 * otherwise.
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "../../lib/loop.h"
#include "../../lib/tests/test.h"
#include "tmpdir.h"

#define CUBEOS_BIN "build/bin/cubeos"

static void write_script(const char *path, const char *text)
{
	FILE *f = fopen(path, "w");
	fputs(text, f);
	fclose(f);
	chmod(path, 0755);
}

static pid_t read_pid(const char *path)
{
	FILE *f = fopen(path, "r");
	int pid = 0;
	if (f) {
		if (fscanf(f, "%d", &pid) != 1)
			pid = 0;
		fclose(f);
	}
	return pid;
}

/* Reads the child's output into buf until `want` shows up, the pipe ends or
 * ms pass. Returns whether `want` was seen. */
static bool read_until(int fd, char *buf, size_t size, size_t *len, const char *want, uint64_t ms)
{
	uint64_t t0 = mono_ms();
	while (!strstr(buf, want) && mono_ms() - t0 < ms) {
		struct pollfd pfd = {.fd = fd, .events = POLLIN};
		if (poll(&pfd, 1, 50) <= 0)
			continue;
		ssize_t r = read(fd, buf + *len, size - 1 - *len);
		if (r <= 0)
			break;
		*len += (size_t)r;
		buf[*len] = '\0';
	}
	return strstr(buf, want) != NULL;
}

TEST(ctrl_c_stops_a_selftest_whose_helper_never_saw_it)
{
	if (access("/dev/kvm", R_OK | W_OK) < 0 || access(CUBEOS_BIN, X_OK) < 0) {
		fprintf(stderr, "  skipped: needs /dev/kvm and %s\n", CUBEOS_BIN);
		return;
	}
	char *dir = tmpdir_make("selftest");
	char vmm[256], guestctl[256], kernel[256], rootfs[256], vmm_pid[256], helper_pid[256], script[1024];
	snprintf(vmm, sizeof vmm, "%s/vmm", dir);
	snprintf(guestctl, sizeof guestctl, "%s/guestctl", dir);
	snprintf(kernel, sizeof kernel, "%s/vmlinux", dir);
	snprintf(rootfs, sizeof rootfs, "%s/rootfs.ext4", dir);
	snprintf(vmm_pid, sizeof vmm_pid, "%s/vmm.pid", dir);
	snprintf(helper_pid, sizeof helper_pid, "%s/guestctl.pid", dir);
	/* The stand-in VMM sends the Ctrl-C itself, as soon as it starts: most
	 * often before the selftest has spawned the helper. */
	snprintf(script, sizeof script, "#!/bin/sh\necho $$ > %s\nkill -INT $PPID\nexec sleep 60\n", vmm_pid);
	write_script(vmm, script);
	/* The helper does not stop on SIGINT, like one spawned after it was sent. */
	snprintf(script, sizeof script, "#!/bin/sh\ntrap '' INT\necho $$ > %s\nexec sleep 60\n", helper_pid);
	write_script(guestctl, script);
	write_script(kernel, "");
	write_script(rootfs, "");

	int p[2];
	CHECK(pipe(p) == 0);
	pid_t pid = fork();
	if (pid == 0) {
		dup2(p[1], 1);
		dup2(p[1], 2);
		close(p[0]);
		execl(CUBEOS_BIN, "cubeos", "--selftest", "--vmm", vmm, "--guestctl", guestctl, "--kernel", kernel,
		      "--rootfs", rootfs, "--dir", dir, "--wait-ms", "60000", (char *)NULL);
		_exit(127);
	}
	close(p[1]);
	char out[8192] = "";
	size_t len = 0;
	uint64_t t0 = mono_ms();
	if (!CHECK(read_until(p[0], out, sizeof out, &len,
			      "selftest: FAIL interrupted (signal 2) while waiting for the guest agent", 10000)))
		kill(pid, SIGKILL); /* hung: do not wait for it */
	int st = 0;
	CHECK(waitpid(pid, &st, 0) == pid);
	CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 1);
	CHECK(mono_ms() - t0 < 10000);
	/* Both stand-ins are gone (killed and reaped, so not even zombies). The
	 * helper may have been killed before it could write its pid. */
	pid_t helper = read_pid(helper_pid);
	CHECK(helper == 0 || (kill(helper, 0) < 0 && errno == ESRCH));
	CHECK(kill(read_pid(vmm_pid), 0) < 0 && errno == ESRCH);
	if (test_failed_checks)
		fprintf(stderr, "  selftest output: %s\n", out);
	close(p[0]);
	tmpdir_remove(dir);
	free(dir);
}
