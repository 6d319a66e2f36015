/*
 * test_pid1.c - the static cubeos binary as PID 1 of a new PID and mount
 * namespace (test mode: no mounts of its own, no reboot()). Checks that it
 * reaps an orphan, restarts a killed service, and on SIGTERM stops the
 * services in reverse dependency order and exits cleanly.
 *
 * The mount namespace is private, so the /proc mounted for it never shows
 * on the host. Skipped (not failed) where namespaces are not allowed.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/mount.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "../../lib/tests/test.h"
#include "tmpdir.h"

#define CUBEOS_BIN "build/bin/cubeos"

static void sleep_ms(long ms)
{
	struct timespec ts = {ms / 1000, (ms % 1000) * 1000000};
	nanosleep(&ts, NULL);
}

static void write_file(const char *path, const char *text)
{
	FILE *f = fopen(path, "w");
	fputs(text, f);
	fclose(f);
}

static char *slurp(const char *path)
{
	FILE *f = fopen(path, "r");
	char *data = calloc(1, 65536);
	if (f) {
		data[fread(data, 1, 65535, f)] = '\0';
		fclose(f);
	}
	return data;
}

/* The direct children of pid (host pids), and how many are zombies. */
static int children(pid_t pid, pid_t *out, int max, int *zombies)
{
	char path[64], line[4096];
	snprintf(path, sizeof path, "/proc/%d/task/%d/children", (int)pid, (int)pid);
	FILE *f = fopen(path, "r");
	int n = 0;
	*zombies = 0;
	if (f && fgets(line, sizeof line, f))
		for (char *tok = strtok(line, " \n"); tok && n < max; tok = strtok(NULL, " \n"))
			out[n++] = atoi(tok);
	if (f)
		fclose(f);
	for (int i = 0; i < n; i++) {
		snprintf(path, sizeof path, "/proc/%d/stat", (int)out[i]);
		char *st = slurp(path);
		char *close_paren = strrchr(st, ')');
		if (close_paren && close_paren[2] == 'Z')
			(*zombies)++;
		free(st);
	}
	return n;
}

static bool is_victim(pid_t pid)
{
	char path[64];
	snprintf(path, sizeof path, "/proc/%d/cmdline", (int)pid);
	int fd = open(path, O_RDONLY);
	char buf[256] = "";
	ssize_t r = fd >= 0 ? read(fd, buf, sizeof buf - 1) : -1;
	if (fd >= 0)
		close(fd);
	return r > 0 && strcmp(buf, "sleep") == 0 && strcmp(buf + 6, "100") == 0;
}

static pid_t find_victim(pid_t init)
{
	pid_t kids[16];
	int z, n = children(init, kids, 16, &z);
	for (int i = 0; i < n; i++)
		if (is_victim(kids[i]))
			return kids[i];
	return 0;
}

/* Forks a middle process that enters new PID and mount namespaces and forks
 * cubeos as their PID 1; reports cubeos's host pid through a pipe. */
static pid_t start_in_namespace(const char *dir, pid_t *init)
{
	int p[2];
	if (pipe(p) < 0)
		return -1;
	pid_t middle = fork();
	if (middle == 0) {
		close(p[0]);
		if (unshare(CLONE_NEWPID | CLONE_NEWNS) < 0 || mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) < 0)
			_exit(77);
		pid_t child = fork();
		if (child == 0) {
			mount("proc", "/proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC, NULL);
			char state[300], services[300], out[300];
			snprintf(state, sizeof state, "%s/state", dir);
			snprintf(services, sizeof services, "%s/services.json", dir);
			snprintf(out, sizeof out, "%s/cubeos.out", dir);
			int fd = open(out, O_WRONLY | O_CREAT | O_TRUNC, 0600);
			dup2(fd, 1);
			dup2(fd, 2);
			execl(CUBEOS_BIN, "cubeos", "--test", "--state", state, "--services", services,
			      "--pbkdf2-iterations", "1000", "--stop-timeout-ms", "2000", (char *)NULL);
			_exit(127);
		}
		if (write(p[1], &child, sizeof child) != (ssize_t)sizeof child)
			_exit(1);
		int st;
		waitpid(child, &st, 0);
		_exit(WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st));
	}
	close(p[1]);
	*init = 0;
	if (read(p[0], init, sizeof *init) != (ssize_t)sizeof *init)
		*init = 0;
	close(p[0]);
	return middle;
}

TEST(cubeos_as_pid1_reaps_restarts_and_stops_in_order)
{
	if (access(CUBEOS_BIN, X_OK) < 0) {
		CHECK(!"build/bin/cubeos is missing: build it first");
		return;
	}
	char *dir = tmpdir_make("pid1");
	char marks[300], path[300], json[2048];
	snprintf(marks, sizeof marks, "%s/marks", dir);
	/* second depends on first, so it must be stopped before it. second also
	 * leaves an orphan (a sleep whose parent exits at once): PID1 inherits it. */
	snprintf(json, sizeof json,
		 "[{\"name\":\"first\",\"argv\":[\"/bin/sh\",\"-c\",\"trap 'echo first >> %s; exit 0' TERM; "
		 "while :; do sleep 0.05; done\"]},"
		 "{\"name\":\"second\",\"deps\":[\"first\"],\"argv\":[\"/bin/sh\",\"-c\",\"(sleep 0.8 &); "
		 "trap 'echo second >> %s; exit 0' TERM; while :; do sleep 0.05; done\"]},"
		 "{\"name\":\"victim\",\"argv\":[\"/bin/sh\",\"-c\",\"exec sleep 100\"]}]",
		 marks, marks);
	snprintf(path, sizeof path, "%s/services.json", dir);
	write_file(path, json);

	pid_t init;
	pid_t middle = start_in_namespace(dir, &init);
	if (init <= 0) {
		int st;
		waitpid(middle, &st, 0);
		if (WIFEXITED(st) && WEXITSTATUS(st) == 77) {
			fprintf(stderr, "  skipped: cannot create PID and mount namespaces here\n");
			return;
		}
		CHECK(!"cubeos did not start in the namespace");
		return;
	}

	sleep_ms(400);
	pid_t kids[16];
	int zombies;
	int n = children(init, kids, 16, &zombies);
	CHECK_EQ_INT(n, 4); /* three services and the adopted orphan */
	sleep_ms(1000);
	n = children(init, kids, 16, &zombies);
	CHECK_EQ_INT(n, 3); /* the orphan exited and was reaped */
	CHECK_EQ_INT(zombies, 0);

	pid_t victim = find_victim(init);
	CHECK(victim > 0);
	if (victim > 0)
		kill(victim, SIGKILL);
	sleep_ms(1200); /* first restart after 0.5 s */
	pid_t again = find_victim(init);
	CHECK(again > 0 && again != victim);

	kill(init, SIGTERM);
	int st = -1;
	for (int i = 0; i < 100 && waitpid(middle, &st, WNOHANG) == 0; i++)
		sleep_ms(100);
	CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 0);
	char *got = slurp(marks);
	CHECK_STREQ(got, "second\nfirst\n");
	free(got);
	snprintf(path, sizeof path, "%s/cubeos.out", dir);
	char *out = slurp(path);
	CHECK(strstr(out, "victim: pid") && strstr(out, "exited (signal 9"));
	CHECK(strstr(out, "services stopped; reboot requested (test mode: exiting)") != NULL);
	free(out);
	if (middle > 0 && waitpid(middle, &st, WNOHANG) == 0) {
		kill(middle, SIGKILL);
		waitpid(middle, &st, 0);
	}
	tmpdir_remove(dir);
	free(dir);
}
