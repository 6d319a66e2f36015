/*
 * service.h - the supervisor of the appliance daemons.
 *
 * Services are declared in a table (services.c, or a JSON file in test mode):
 * name, argv, the services it depends on, extra environment. They start in
 * dependency order, are restarted with exponential backoff when they exit,
 * and are stopped in reverse order at shutdown (SIGTERM, then SIGKILL after a
 * timeout). Their stdout and stderr go through pipes into JSON-lines files
 * <log_dir>/<name>.log (see svclog.h). The first time every service of the
 * set is running at once, the event "services.up" is logged (boot benchmarks
 * measure to it).
 */
#ifndef CUBEOS_SERVICE_H
#define CUBEOS_SERVICE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "../lib/loop.h"
#include "svclog.h"

/* One table entry. Every array is NULL-terminated; deps and env may be NULL. */
struct service_def {
	char *name;
	char **argv;
	char **deps;
	char **env; /* "KEY=value", on top of a fixed base environment */
};

enum service_state {
	SVC_STOPPED,  /* not started yet, or stopped at shutdown */
	SVC_STARTING, /* forked less than SVC_SETTLE_MS ago */
	SVC_RUNNING,
	SVC_BACKOFF,  /* exited; restart timer armed */
	SVC_STOPPING, /* SIGTERM sent, waiting for the exit */
	SVC_FAILED,   /* could not be spawned (pipe/fork failed); retried like a crash */
};

#define SVC_SETTLE_MS 1000

/* Restart delays: initial, doubled after each crash up to max, and back to
 * initial once a run lasted reset_after ms. */
struct backoff {
	uint64_t initial_ms, max_ms, reset_after_ms;
	uint64_t next_ms;
};
#define BACKOFF_DEFAULT                                                                                                \
	{                                                                                                              \
		500, 30000, 60000, 500                                                                                 \
	}

/* The delay before the next restart of a service that ran for ran_ms. */
uint64_t backoff_delay(struct backoff *b, uint64_t ran_ms);

/* Topological order of defs[0..n) into order[0..n): every service comes
 * after its dependencies, ties in table order. Returns 0, or -1 with a one-line
 * reason (unknown dependency, dependency cycle "a -> b -> a", duplicate name). */
int service_order(const struct service_def *defs, size_t n, size_t *order, char *err, size_t errsz);

struct service {
	struct service_def def;
	struct service_set *set;
	enum service_state state;
	pid_t pid;
	unsigned restarts;
	bool ever_running;	/* reached SVC_RUNNING at least once (for services.up) */
	bool restart_requested; /* service_restart: start again once the stop is done */
	bool has_exited;
	int last_status;     /* wait status of the last exit */
	uint64_t since_ms;   /* monotonic time of the last state change */
	uint64_t started_ms; /* monotonic time of the last fork */
	struct backoff backoff;
	struct loop_child child;
	struct loop_timer timer; /* settle, restart or kill, depending on state */
	struct svclog log;
};

struct service_set {
	struct loop *loop;
	struct service *svc;
	size_t n;
	size_t *order;
	uint64_t stop_timeout_ms;
	struct backoff backoff; /* template copied into every service */
	bool all_up;		/* every service has been running once: "services.up" was logged */
	/* Shutdown progress: services are stopped one by one from order[n-1]. */
	bool stopping;
	size_t stop_left;
	void (*stopped_fn)(void *arg);
	void *stopped_arg;
};

/* Takes ownership of defs (an array of n, freed by service_set_free). log_dir
 * must exist. console_fd receives warn+ lines (-1: none). Returns NULL with a
 * reason in err when the table is invalid. */
struct service_set *service_set_new(struct loop *l, struct service_def *defs, size_t n, const char *log_dir,
				    int console_fd, char *err, size_t errsz);
void service_set_free(struct service_set *set);

void service_start_all(struct service_set *set);
/* Stops every service in reverse dependency order, then calls fn(arg). */
void service_stop_all(struct service_set *set, void (*fn)(void *arg), void *arg);
struct service *service_find(struct service_set *set, const char *name);

/* Manual control (the shell's service command). service_restart stops the
 * service cleanly (SIGTERM to its process group, SIGKILL after the stop
 * timeout) and starts it again at once, or starts it now if it is waiting in
 * backoff; its backoff goes back to the initial delay. service_kill sends sig
 * to the service's process group; an exit that follows is treated like a
 * crash (restart with backoff). Both return 0, or -1 with errno: ESHUTDOWN
 * (the set is shutting down), EALREADY (a stop is under way), ESRCH (no
 * process to signal). */
int service_restart(struct service *s);
int service_kill(struct service *s, int sig);

const char *service_state_name(enum service_state s);
/* How long the current process has run ("45s", "3m07s", "2h05m", "1d04h"),
 * or "-" when there is none. */
void service_uptime(const struct service *s, char *out, size_t outsz);
/* "exit 1", "signal 9 (Killed)" or "-" into out. */
void service_describe_exit(const struct service *s, char *out, size_t outsz);

/* The child side of fork() for anything PID1 starts (services, the shell's
 * long commands): undoes what PID1 set up for itself (blocked signals,
 * handlers), starts a new session, stdin from /dev/null, stdout and stderr to
 * the given fds, closes every other fd, cwd /, then execs argv with env.
 * Never returns (exit 126/127 when it cannot). */
void child_exec(char *const argv[], char *const env[], int out_fd, int err_fd) __attribute__((noreturn));

/*
 * The daemons' runtime directory (VMM sockets, console logs). Not /run/cubeos
 * itself: that is where cubeos keeps the state when there is no data disk
 * (datadisk.h), and the api would then find the sandboxes' runtime files and
 * their registry records in the same directories (RUN/sandboxes/<id> and
 * STATE/sandboxes/<id>), removing one when it cleans up the other.
 */
#define SERVICES_RUN_DIR "/run/cubeos/run"
/* The api's admin socket there (api/api.h API_ADMIN_SOCKET): HTTP without API
 * keys, root only; the console's `sandbox kill` uses it. */
#define SERVICES_API_SOCKET SERVICES_RUN_DIR "/api.sock"

/* The appliance's own table (services.c): the daemons, keeping their state in state_dir. */
size_t appliance_services(const char *state_dir, struct service_def **out);
/* A table from JSON: [{"name":..,"argv":[..],"deps":[..],"env":[..]}]. */
int service_defs_from_json(const char *text, size_t len, struct service_def **out, size_t *n, char *err, size_t errsz);
void service_defs_free(struct service_def *defs, size_t n);
void service_def_clear(struct service_def *d);

#endif
