/* cmd_service.c - service list | restart NAME | kill NAME [SIGNAL]: the supervisor by hand. */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "service.h"
#include "shell.h"

static const struct {
	const char *name;
	int sig;
} signal_names[] = {
    {"HUP", SIGHUP},   {"INT", SIGINT},	  {"QUIT", SIGQUIT}, {"KILL", SIGKILL}, {"USR1", SIGUSR1},
    {"USR2", SIGUSR2}, {"TERM", SIGTERM}, {"STOP", SIGSTOP}, {"CONT", SIGCONT},
};

int shell_parse_signal(const char *text)
{
	const char *name = strncasecmp(text, "SIG", 3) == 0 ? text + 3 : text;
	for (size_t i = 0; i < sizeof signal_names / sizeof signal_names[0]; i++)
		if (strcasecmp(name, signal_names[i].name) == 0)
			return signal_names[i].sig;
	char *end;
	long n = strtol(text, &end, 10);
	return *text && !*end && n >= 1 && n < NSIG ? (int)n : -1;
}

static struct service *find_or_say(struct shell *sh, const char *name)
{
	struct service *s = sh->os ? service_find(sh->os->services, name) : NULL;
	if (!s)
		shell_printf(sh, "error: no service \"%.40s\" (see service list)\r\n", name);
	return s;
}

static void join_words(char *const *words, char *out, size_t outsz)
{
	size_t off = 0;
	out[0] = '\0';
	for (size_t i = 0; words && words[i] && off < outsz; i++) {
		int n = snprintf(out + off, outsz - off, "%s%s", i ? " " : "", words[i]);
		if (n < 0)
			break;
		off += (size_t)n;
	}
}

void cmd_service_list(struct shell *sh, int argc, char **argv)
{
	struct service_set *set = sh->os ? sh->os->services : NULL;
	if (!set || set->n == 0) {
		shell_printf(sh, "no services\r\n");
		return;
	}
	shell_printf(sh, "%-14s %-9s %-8s %-9s %-8s %-14s %s\r\n", "NAME", "STATE", "PID", "RESTARTS", "UPTIME",
		     "DEPENDS ON", "COMMAND");
	for (size_t k = 0; k < set->n; k++) {
		struct service *s = &set->svc[set->order[k]];
		char pid[16], up[32], deps[64], cmd[160];
		snprintf(pid, sizeof pid, s->pid > 0 ? "%d" : "-", (int)s->pid);
		service_uptime(s, up, sizeof up);
		join_words(s->def.deps, deps, sizeof deps);
		join_words(s->def.argv, cmd, sizeof cmd);
		shell_printf(sh, "%-14s %-9s %-8s %-9u %-8s %-14s %s\r\n", s->def.name, service_state_name(s->state),
			     pid, s->restarts, up, deps[0] ? deps : "-", cmd);
	}
}

static void say_refused(struct shell *sh, const char *what, const struct service *s)
{
	const char *why = errno == ESHUTDOWN  ? "the appliance is shutting down"
			  : errno == EALREADY ? "it is already being stopped"
			  : errno == ESRCH    ? "it has no running process (see service list)"
					      : strerror(errno);
	shell_printf(sh, "%s %s: %s\r\n", what, s->def.name, why);
}

void cmd_service_restart(struct shell *sh, int argc, char **argv)
{
	struct service *s = find_or_say(sh, argv[0]);
	if (!s)
		return;
	pid_t was = s->pid;
	if (service_restart(s) < 0) {
		say_refused(sh, "cannot restart", s);
		return;
	}
	if (was > 0)
		shell_printf(sh, "%s: stopping pid %d, then starting it again\r\n", s->def.name, (int)was);
	else
		shell_printf(sh, "%s: started, pid %d\r\n", s->def.name, (int)s->pid);
}

void cmd_service_kill(struct shell *sh, int argc, char **argv)
{
	struct service *s = find_or_say(sh, argv[0]);
	if (!s)
		return;
	int sig = argc > 1 ? shell_parse_signal(argv[1]) : SIGKILL;
	if (sig < 0) {
		shell_printf(sh, "error: unknown signal \"%.20s\" (a name such as TERM, KILL, HUP, or a number)\r\n",
			     argv[1]);
		return;
	}
	pid_t pid = s->pid;
	if (service_kill(s, sig) < 0) {
		say_refused(sh, "cannot signal", s);
		return;
	}
	shell_printf(sh, "sent signal %d (%s) to %s, pid %d; if it exits it is restarted as after a crash\r\n", sig,
		     strsignal(sig), s->def.name, (int)pid);
}
