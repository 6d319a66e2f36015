/* service.c - start, watch, restart and stop the appliance daemons; see service.h. */
#include "service.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include "../lib/log.h"

/* Every service gets this environment, plus its own env entries. */
static const char *const base_env[] = {"PATH=/usr/sbin:/usr/bin:/sbin:/bin", "HOME=/", "TERM=linux", NULL};

const char *service_state_name(enum service_state s)
{
	static const char *const names[] = {"stopped", "starting", "running", "backoff", "stopping", "failed"};
	return (unsigned)s < sizeof names / sizeof names[0] ? names[s] : "?";
}

uint64_t backoff_delay(struct backoff *b, uint64_t ran_ms)
{
	if (ran_ms >= b->reset_after_ms)
		b->next_ms = b->initial_ms;
	uint64_t delay = b->next_ms;
	b->next_ms = delay * 2 > b->max_ms ? b->max_ms : delay * 2;
	return delay;
}

/* --- dependency order ------------------------------------------------------ */

static ssize_t def_index(const struct service_def *defs, size_t n, const char *name)
{
	for (size_t i = 0; i < n; i++)
		if (strcmp(defs[i].name, name) == 0)
			return (ssize_t)i;
	return -1;
}

static size_t count_strings(char *const *v)
{
	size_t k = 0;
	while (v && v[k])
		k++;
	return k;
}

/* All of i's dependencies are already placed. */
static bool deps_placed(const struct service_def *defs, size_t n, size_t i, const bool *placed)
{
	for (size_t k = 0; k < count_strings(defs[i].deps); k++)
		if (!placed[def_index(defs, n, defs[i].deps[k])])
			return false;
	return true;
}

/* Every unplaced service has an unplaced dependency, so walking from one of
 * them along unplaced dependencies must come back to a service already seen:
 * that loop is the cycle to report. */
static void describe_cycle(const struct service_def *defs, size_t n, const bool *placed, char *err, size_t errsz)
{
	size_t *path = calloc(n + 1, sizeof *path);
	size_t len = 0, cur = 0;
	while (placed[cur])
		cur++;
	for (;;) {
		for (size_t k = 0; k < len; k++) {
			if (path[k] != cur)
				continue;
			int off = snprintf(err, errsz, "dependency cycle: ");
			for (size_t m = k; m < len && off >= 0 && (size_t)off < errsz; m++)
				off += snprintf(err + off, errsz - off, "%s -> ", defs[path[m]].name);
			if (off >= 0 && (size_t)off < errsz)
				snprintf(err + off, errsz - off, "%s", defs[cur].name);
			free(path);
			return;
		}
		path[len++] = cur;
		for (size_t k = 0; k < count_strings(defs[cur].deps); k++) {
			size_t d = (size_t)def_index(defs, n, defs[cur].deps[k]);
			if (!placed[d]) {
				cur = d;
				break;
			}
		}
	}
}

static int check_names(const struct service_def *defs, size_t n, char *err, size_t errsz)
{
	for (size_t i = 0; i < n; i++) {
		if (!defs[i].name || !defs[i].name[0] || strchr(defs[i].name, '/') || !defs[i].argv ||
		    !defs[i].argv[0]) {
			snprintf(err, errsz, "service %zu: needs a name (no '/') and a non-empty argv", i + 1);
			return -1;
		}
		if (def_index(defs, n, defs[i].name) != (ssize_t)i) {
			snprintf(err, errsz, "service %s is declared twice", defs[i].name);
			return -1;
		}
		for (size_t k = 0; k < count_strings(defs[i].deps); k++) {
			if (def_index(defs, n, defs[i].deps[k]) < 0) {
				snprintf(err, errsz, "service %s depends on unknown service %s", defs[i].name,
					 defs[i].deps[k]);
				return -1;
			}
		}
	}
	return 0;
}

int service_order(const struct service_def *defs, size_t n, size_t *order, char *err, size_t errsz)
{
	if (check_names(defs, n, err, errsz) < 0)
		return -1;
	bool *placed = calloc(n ? n : 1, sizeof *placed);
	size_t done = 0;
	bool progress = true;
	/* Repeated passes in table order: quadratic, and the table has a dozen entries. */
	while (done < n && progress) {
		progress = false;
		for (size_t i = 0; i < n; i++) {
			if (!placed[i] && deps_placed(defs, n, i, placed)) {
				placed[i] = true;
				order[done++] = i;
				progress = true;
			}
		}
	}
	if (done < n)
		describe_cycle(defs, n, placed, err, errsz);
	free(placed);
	return done < n ? -1 : 0;
}

/* --- running one service ---------------------------------------------------- */

static void set_state(struct service *s, enum service_state st)
{
	s->state = st;
	s->since_ms = mono_ms();
}

static void spawn(struct service *s);
static void on_exit_status(void *arg, pid_t pid, int wstatus);

/* Logs "services.up" once, the first time every service has been running. */
static void check_all_up(struct service_set *set)
{
	if (set->all_up)
		return;
	for (size_t i = 0; i < set->n; i++)
		if (!set->svc[i].ever_running)
			return;
	set->all_up = true;
	log_info("services.up", "all %zu services running", set->n);
}

static void on_settled(void *arg)
{
	struct service *s = arg;
	if (s->state != SVC_STARTING)
		return;
	set_state(s, SVC_RUNNING);
	s->ever_running = true;
	check_all_up(s->set);
}

/* The whole process group (services run in their own session); just the pid
 * if the child has not called setsid yet. */
static int signal_service(struct service *s, int sig)
{
	if (kill(-s->pid, sig) == 0)
		return 0;
	return kill(s->pid, sig);
}

static void on_restart_due(void *arg)
{
	struct service *s = arg;
	if (s->state == SVC_BACKOFF || s->state == SVC_FAILED)
		spawn(s);
}

static void schedule_restart(struct service *s, enum service_state st, uint64_t ran_ms)
{
	uint64_t delay = backoff_delay(&s->backoff, ran_ms);
	s->restarts++;
	set_state(s, st);
	log_warn("service.restart", "%s: restart #%u in %llu ms", s->def.name, s->restarts, (unsigned long long)delay);
	loop_timer_arm(s->set->loop, &s->timer, delay, on_restart_due, s);
}

void child_exec(char *const argv[], char *const env[], int out_fd, int err_fd)
{
	sigset_t none;
	sigemptyset(&none);
	sigprocmask(SIG_SETMASK, &none, NULL);
	for (int sig = 1; sig < NSIG; sig++)
		signal(sig, SIG_DFL);
	setsid();
	int null_fd = open("/dev/null", O_RDONLY);
	if (null_fd >= 0)
		dup2(null_fd, 0);
	dup2(out_fd, 1);
	dup2(err_fd, 2);
	if (syscall(SYS_close_range, 3u, ~0u, 0u) != 0)
		for (int fd = 3; fd < 1024; fd++)
			close(fd);
	if (chdir("/") < 0)
		_exit(126);
	execve(argv[0], argv, env);
	dprintf(2, "cannot run %s: %s\n", argv[0], strerror(errno));
	_exit(127);
}

/* A service's environment is the base one plus its own entries. */
static void __attribute__((noreturn)) exec_service(struct service *s, int out_fd, int err_fd)
{
	size_t nb = count_strings((char **)base_env), ne = count_strings(s->def.env);
	char **env = calloc(nb + ne + 1, sizeof *env);
	if (!env)
		_exit(126);
	memcpy(env, base_env, nb * sizeof *env);
	if (ne)
		memcpy(env + nb, s->def.env, ne * sizeof *env);
	child_exec(s->def.argv, env, out_fd, err_fd);
}

static void spawn(struct service *s)
{
	int out[2] = {-1, -1}, errp[2] = {-1, -1};
	if (pipe2(out, O_CLOEXEC) < 0 || pipe2(errp, O_CLOEXEC) < 0)
		goto fail;
	pid_t pid = fork();
	if (pid < 0)
		goto fail;
	if (pid == 0)
		exec_service(s, out[1], errp[1]);

	/* Watch before returning to the loop, so the exit cannot be missed. */
	loop_child_watch(s->set->loop, &s->child, pid, on_exit_status, s);
	close(out[1]);
	close(errp[1]);
	svclog_watch(s->set->loop, &s->log, out[0], LOG_INFO);
	svclog_watch(s->set->loop, &s->log, errp[0], LOG_WARN);
	s->pid = pid;
	s->started_ms = mono_ms();
	set_state(s, SVC_STARTING);
	loop_timer_arm(s->set->loop, &s->timer, SVC_SETTLE_MS, on_settled, s);
	log_info("service.start", "%s: started, pid %d", s->def.name, (int)pid);
	return;
fail:
	log_error("service.spawn", "%s: cannot start: %s", s->def.name, strerror(errno));
	for (int i = 0; i < 2; i++) {
		if (out[i] >= 0)
			close(out[i]);
		if (errp[i] >= 0)
			close(errp[i]);
	}
	schedule_restart(s, SVC_FAILED, 0);
}

void service_uptime(const struct service *s, char *out, size_t outsz)
{
	if (s->pid <= 0) {
		snprintf(out, outsz, "-");
		return;
	}
	unsigned long long t = (mono_ms() - s->started_ms) / 1000;
	if (t >= 86400)
		snprintf(out, outsz, "%llud%02lluh", t / 86400, t % 86400 / 3600);
	else if (t >= 3600)
		snprintf(out, outsz, "%lluh%02llum", t / 3600, t % 3600 / 60);
	else if (t >= 60)
		snprintf(out, outsz, "%llum%02llus", t / 60, t % 60);
	else
		snprintf(out, outsz, "%llus", t);
}

void service_describe_exit(const struct service *s, char *out, size_t outsz)
{
	if (!s->has_exited)
		snprintf(out, outsz, "-");
	else if (WIFEXITED(s->last_status))
		snprintf(out, outsz, "exit %d", WEXITSTATUS(s->last_status));
	else if (WIFSIGNALED(s->last_status))
		snprintf(out, outsz, "signal %d (%s)", WTERMSIG(s->last_status), strsignal(WTERMSIG(s->last_status)));
	else
		snprintf(out, outsz, "status 0x%x", s->last_status);
}

static void stop_next(struct service_set *set);

static void on_exit_status(void *arg, pid_t pid, int wstatus)
{
	struct service *s = arg;
	char how[64];
	s->pid = 0;
	s->has_exited = true;
	s->last_status = wstatus;
	service_describe_exit(s, how, sizeof how);
	loop_timer_disarm(s->set->loop, &s->timer);
	if (s->state == SVC_STOPPING && s->restart_requested && !s->set->stopping) {
		s->restart_requested = false;
		s->restarts++;
		log_info("service.restart", "%s: stopped (%s); starting it again as requested", s->def.name, how);
		spawn(s);
		return;
	}
	if (s->state == SVC_STOPPING || s->set->stopping) {
		log_info("service.stopped", "%s: stopped (%s)", s->def.name, how);
		set_state(s, SVC_STOPPED);
		stop_next(s->set);
		return;
	}
	log_warn("service.exit", "%s: pid %d exited (%s)", s->def.name, (int)pid, how);
	schedule_restart(s, SVC_BACKOFF, mono_ms() - s->started_ms);
}

/* --- the set ---------------------------------------------------------------- */

struct service *service_find(struct service_set *set, const char *name)
{
	for (size_t i = 0; set && i < set->n; i++)
		if (strcmp(set->svc[i].def.name, name) == 0)
			return &set->svc[i];
	return NULL;
}

struct service_set *service_set_new(struct loop *l, struct service_def *defs, size_t n, const char *log_dir,
				    int console_fd, char *err, size_t errsz)
{
	size_t *order = calloc(n ? n : 1, sizeof *order);
	if (service_order(defs, n, order, err, errsz) < 0) {
		free(order);
		service_defs_free(defs, n);
		return NULL;
	}
	struct service_set *set = calloc(1, sizeof *set);
	set->loop = l;
	set->n = n;
	set->order = order;
	set->stop_timeout_ms = 10000;
	set->backoff = (struct backoff)BACKOFF_DEFAULT;
	set->svc = calloc(n ? n : 1, sizeof *set->svc);
	for (size_t i = 0; i < n; i++) {
		struct service *s = &set->svc[i];
		s->def = defs[i];
		s->set = set;
		s->since_ms = mono_ms();
		s->log.fd = -1;
		if (svclog_open(&s->log, log_dir, s->def.name, SVCLOG_CAP_DEFAULT, console_fd) < 0)
			log_error("service.log", "%s: cannot open its log in %s: %s", s->def.name, log_dir,
				  strerror(errno));
	}
	free(defs); /* the strings now belong to set->svc[i].def */
	return set;
}

void service_set_free(struct service_set *set)
{
	if (!set)
		return;
	for (size_t i = 0; i < set->n; i++) {
		struct service *s = &set->svc[i];
		loop_child_unwatch(set->loop, &s->child);
		loop_timer_disarm(set->loop, &s->timer);
		svclog_close(&s->log);
		service_def_clear(&s->def);
	}
	free(set->svc);
	free(set->order);
	free(set);
}

static void on_stop_timeout(void *arg);

int service_restart(struct service *s)
{
	if (s->set->stopping) {
		errno = ESHUTDOWN;
		return -1;
	}
	if (s->state == SVC_STOPPING) {
		errno = EALREADY;
		return -1;
	}
	s->backoff.next_ms = s->backoff.initial_ms; /* asked for: not a crash loop */
	if (s->pid > 0) {
		log_info("service.restart", "%s: restart requested: SIGTERM to pid %d", s->def.name, (int)s->pid);
		s->restart_requested = true;
		set_state(s, SVC_STOPPING);
		signal_service(s, SIGTERM);
		loop_timer_arm(s->set->loop, &s->timer, s->set->stop_timeout_ms, on_stop_timeout, s);
		return 0;
	}
	/* Waiting in backoff (or never started): start now. */
	log_info("service.restart", "%s: restart requested: starting now", s->def.name);
	loop_timer_disarm(s->set->loop, &s->timer);
	s->restarts++;
	spawn(s);
	return 0;
}

int service_kill(struct service *s, int sig)
{
	if (s->set->stopping) {
		errno = ESHUTDOWN;
		return -1;
	}
	if (s->pid <= 0) {
		errno = ESRCH;
		return -1;
	}
	log_warn("service.kill", "%s: signal %d to pid %d on request", s->def.name, sig, (int)s->pid);
	return signal_service(s, sig);
}

void service_start_all(struct service_set *set)
{
	for (size_t k = 0; k < set->n; k++) {
		struct service *s = &set->svc[set->order[k]];
		s->backoff = set->backoff;
		if (s->state == SVC_STOPPED)
			spawn(s);
	}
	check_all_up(set); /* an empty table is up at once */
}

static void on_stop_timeout(void *arg)
{
	struct service *s = arg;
	log_warn("service.kill", "%s: still running %llu ms after SIGTERM, sending SIGKILL", s->def.name,
		 (unsigned long long)s->set->stop_timeout_ms);
	signal_service(s, SIGKILL);
}

/* Stops the next service from the end of the order; finishes when none is left. */
static void stop_next(struct service_set *set)
{
	while (set->stop_left > 0) {
		struct service *s = &set->svc[set->order[set->stop_left - 1]];
		if (s->state == SVC_STOPPING)
			return; /* still waiting for this one */
		if (s->pid > 0) {
			log_info("service.stop", "%s: stopping (SIGTERM to pid %d)", s->def.name, (int)s->pid);
			set_state(s, SVC_STOPPING);
			s->restart_requested = false;
			signal_service(s, SIGTERM);
			loop_timer_arm(set->loop, &s->timer, set->stop_timeout_ms, on_stop_timeout, s);
			return;
		}
		loop_timer_disarm(set->loop, &s->timer);
		set_state(s, SVC_STOPPED);
		set->stop_left--;
	}
	if (set->stopped_fn) {
		void (*fn)(void *) = set->stopped_fn;
		set->stopped_fn = NULL;
		fn(set->stopped_arg);
	}
}

void service_stop_all(struct service_set *set, void (*fn)(void *arg), void *arg)
{
	if (set->stopping)
		return;
	set->stopping = true;
	set->stop_left = set->n;
	set->stopped_fn = fn;
	set->stopped_arg = arg;
	stop_next(set);
}
