/*
 * main.c - cubeos, the appliance's PID1.
 *
 * Boot: mount the API filesystems, open the console, load (or create at
 * first boot) the config, start the services, and put the admin shell on
 * ttyS0 and tty1. Then run the event loop forever: it reaps every child
 * (orphans included), restarts crashed services, and turns reboot/poweroff
 * requests into an orderly shutdown.
 *
 * Requests: SIGTERM = reboot, SIGUSR1 = halt, SIGUSR2 = poweroff, SIGINT =
 * Ctrl-Alt-Del (reboot; the kernel sends it once RB_DISABLE_CAD is set), and
 * the shell's reboot/poweroff commands.
 *
 * Test mode (--test, also when not PID 1) is an ordinary process: no mounts,
 * no reboot(); the state directory is any directory; shutdown ends in exit(0).
 */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/reboot.h>
#include <sys/stat.h>
#include <unistd.h>

#include "../lib/log.h"
#include "../lib/loop.h"
#include "config.h"
#include "install.h"
#include "cubeos.h"
#include "net.h"
#include "passwd.h"
#include "powerkey.h"
#include "service.h"
#include "shell.h"

#define FINAL_KILL_MS 2000 /* after SIGTERM to every leftover process */

struct options {
	bool test;
	const char *state_dir;
	const char *services_file;
	bool shell_on_stdio;
	unsigned long stop_timeout_ms;
	unsigned long iterations;
};

static struct cubeos os;

/* --- shutdown ---------------------------------------------------------------- */

static void finish_power(void *arg)
{
	struct cubeos *c = arg;
	sync();
	if (!c->pid1) {
		log_info("shutdown.done", "services stopped; %s requested (test mode: exiting)",
			 power_action_name(c->shutting_down));
		exit(0);
	}
	kill(-1, SIGKILL);
	mount_finish_readonly();
	log_info("shutdown.done", "%s now", power_action_name(c->shutting_down));
	int cmd = c->shutting_down == POWER_REBOOT ? RB_AUTOBOOT
		  : c->shutting_down == POWER_HALT ? RB_HALT_SYSTEM
						   : RB_POWER_OFF;
	reboot(cmd);
	/* reboot() only returns on error: PID1 must not exit, so wait. */
	log_error("shutdown", "reboot() failed: %s", strerror(errno));
	for (;;)
		pause();
}

static struct loop_timer final_kill;

static void services_stopped(void *arg)
{
	struct cubeos *c = arg;
	if (!c->pid1) {
		finish_power(c);
		return;
	}
	/* Whatever is left (orphans, sandboxes' helpers) gets a SIGTERM and a moment. */
	kill(-1, SIGTERM);
	loop_timer_arm(c->loop, &final_kill, FINAL_KILL_MS, finish_power, c);
}

static void request_power(struct cubeos *c, enum power_action a)
{
	if (c->shutting_down != POWER_NONE)
		return;
	c->shutting_down = a;
	log_info("shutdown.start", "%s requested: stopping services", power_action_name(a));
	/* Running sandboxes are stopped cleanly by their services (the API) when
	 * those get SIGTERM; here they are simply the last ones stopped. */
	if (c->services)
		service_stop_all(c->services, services_stopped, c);
	else
		services_stopped(c);
}

static void on_signal(void *arg, int signo)
{
	enum power_action a = signo == SIGUSR1 ? POWER_HALT : signo == SIGUSR2 ? POWER_POWEROFF : POWER_REBOOT;
	if (signo == SIGINT)
		log_info("signal", "Ctrl-Alt-Del");
	request_power(arg, a);
}

/* The ACPI power button arrives as KEY_POWER on an input device
 * (/dev/input/event*, "Power Button"); powerkey.c turns a press into
 * request_power(POWER_POWEROFF). Test mode leaves the host's keys alone. */
static void power_button_watch(struct cubeos *c)
{
	if (c->pid1)
		powerkey_watch(c, "/dev/input");
}

/* --- boot ------------------------------------------------------------------------ */

static void print_first_boot(const struct first_boot *fb, const struct config *c)
{
	if (!fb->any)
		return;
	printf("\n==== CubeOS first boot ====\nhostname:               %s\n", c->hostname);
	if (fb->password[0])
		printf("admin console password: %s   (shown once: write it down)\n", fb->password);
	if (fb->api_key[0])
		printf("admin API key:          %s   (shown once)\n", fb->api_key);
	if (fb->ca_fingerprint[0])
		printf("appliance CA SHA-256:   %s\n", fb->ca_fingerprint);
	printf("===========================\n\n");
	fflush(stdout);
}

static char *read_file(const char *path, size_t *len)
{
	FILE *f = fopen(path, "r");
	if (!f)
		return NULL;
	char *data = calloc(1, 1 << 20);
	*len = fread(data, 1, (1 << 20) - 1, f);
	fclose(f);
	return data;
}

static struct service_set *load_services(const struct options *o, const char *log_dir)
{
	struct service_def *defs = NULL;
	size_t n = 0, len;
	char err[512];
	if (o->services_file) {
		char *text = read_file(o->services_file, &len);
		if (!text) {
			log_error("services", "cannot read %s: %s", o->services_file, strerror(errno));
			return NULL;
		}
		int rc = service_defs_from_json(text, len, &defs, &n, err, sizeof err);
		free(text);
		if (rc < 0) {
			log_error("services", "%s: %s", o->services_file, err);
			return NULL;
		}
	} else {
		n = appliance_services(os.state_dir, &defs);
	}
	struct service_set *set = service_set_new(os.loop, defs, n, log_dir, 2, err, sizeof err);
	if (!set) {
		log_error("services", "service table refused: %s", err);
		return NULL;
	}
	if (o->stop_timeout_ms)
		set->stop_timeout_ms = o->stop_timeout_ms;
	return set;
}

static void on_test_shell_eof(void *arg)
{
	request_power(&os, POWER_HALT);
}

static void attach_consoles(const struct options *o)
{
	if (!os.pid1) {
		if (o->shell_on_stdio && !shell_tty_attach(&os, 0, 1, on_test_shell_eof, NULL))
			log_error("shell", "cannot attach the shell to stdin/stdout");
		return;
	}
	static const char *const ttys[] = {"/dev/ttyS0", "/dev/tty1"};
	for (size_t i = 0; i < 2; i++) {
		int fd = open(ttys[i], O_RDWR | O_NOCTTY | O_CLOEXEC);
		if (fd < 0 || !shell_tty_attach(&os, fd, fd, NULL, NULL))
			log_warn("shell", "no admin shell on %s: %s", ttys[i], strerror(errno));
	}
}

/* NICs up, then static (network.json) or DHCP per NIC; runs on the loop. */
static void start_network(void)
{
	char *saved = os.config ? config_read(os.config, "network.json", NULL) : NULL;
	struct net_options no = {
	    .state_dir = os.state_dir, .hostname = os.config ? os.config->hostname : NULL, .config_json = saved};
	net_start(os.loop, &no);
	free(saved);
}

static int parse_options(int argc, char **argv, struct options *o)
{
	for (int i = 1; i < argc; i++) {
		const char *a = argv[i];
		const char *val = i + 1 < argc ? argv[i + 1] : NULL;
		if (strcmp(a, "--test") == 0 || strcmp(a, "--no-pid1") == 0) {
			o->test = true;
			continue;
		}
		if (strcmp(a, "--shell") == 0) {
			o->shell_on_stdio = true;
			continue;
		}
		if (!val) {
			fprintf(stderr, "cubeos: unknown option or missing value: %s\n", a);
			return -1;
		}
		i++;
		if (strcmp(a, "--state") == 0)
			o->state_dir = val;
		else if (strcmp(a, "--services") == 0)
			o->services_file = val;
		else if (strcmp(a, "--stop-timeout-ms") == 0)
			o->stop_timeout_ms = strtoul(val, NULL, 10);
		else if (strcmp(a, "--pbkdf2-iterations") == 0)
			o->iterations = strtoul(val, NULL, 10);
		else {
			fprintf(stderr, "cubeos: unknown option %s\n", a);
			return -1;
		}
	}
	return 0;
}

static const char usage_text[] =
    "usage: cubeos                 (as PID 1: the appliance)\n"
    "       cubeos --test --state DIR [--services FILE.json] [--shell] [--stop-timeout-ms N]\n"
    "                              [--pbkdf2-iterations N]\n"
    "       cubeos --selftest [--vmm P] [--guestctl P] [--kernel P] [--rootfs P] [--dir D] [--wait-ms N]\n"
    "                              (boot a sandbox VM through cube-vmm and check its agent)\n"
    "       cubeos --install DISK       (the shell's install command: erases DISK)\n"
    "       cubeos --sandbox-kill ID    (the shell's sandbox kill: asks the api)\n";

/* The host kernel has every driver built in; it keeps CONFIG_MODULES only
 * because 6.1's BPF JIT depends on it. Closing module loading at boot means
 * nothing, not even a compromised daemon, can add kernel code later. */
static void disable_module_loading(void)
{
	int fd = open("/proc/sys/kernel/modules_disabled", O_WRONLY | O_CLOEXEC);
	if (fd < 0 || write(fd, "1\n", 2) != 2)
		log_warn("boot", "cannot disable module loading: %s", strerror(errno));
	if (fd >= 0)
		close(fd);
}

int main(int argc, char **argv)
{
	if (argc >= 2 && strcmp(argv[1], "--selftest") == 0)
		return selftest_main(argc - 1, argv + 1); /* the shell's selftest command, in a child */
	if (argc == 3 && strcmp(argv[1], "--sandbox-kill") == 0)
		return sandbox_kill_main(SERVICES_API_SOCKET, argv[2]); /* the shell's sandbox kill, in a child */
	if (argc == 3 && strcmp(argv[1], "--install") == 0)
		return install_main(argv[2]); /* the shell's install command, in a child */
	struct options o = {0};
	if (parse_options(argc, argv, &o) < 0) {
		fputs(usage_text, stderr);
		return getpid() == 1 ? 0 : 2; /* never reached as PID1: no options there */
	}
	os.pid1 = getpid() == 1 && !o.test;
	if (!os.pid1 && !o.state_dir) {
		fputs(usage_text, stderr);
		return 2;
	}
	log_set_component("cubeos");
	os.started_ms = mono_ms();
	os.request_power = request_power;
	if (os.pid1) {
		mount_early();
		console_attach();
		setsid();
		reboot(RB_DISABLE_CAD);
		disable_module_loading();
	}
	os.loop = loop_new();
	if (!os.loop) {
		log_error("boot", "cannot create the event loop: %s", strerror(errno));
		for (;;)
			pause();
	}
	static const int sigs[] = {SIGTERM, SIGUSR1, SIGUSR2, SIGINT};
	for (size_t i = 0; i < 4; i++)
		loop_on_signal(os.loop, sigs[i], on_signal, &os);

	os.state_dir = os.pid1 ? state_dir_prepare() : o.state_dir;
	if (os.pid1)
		templates_mount();
	char dir[4096];
	snprintf(dir, sizeof dir, "%s/config", os.state_dir);
	static struct config config;
	struct first_boot fb;
	if (config_open(&config, dir, (unsigned)o.iterations, &fb) < 0)
		log_error("config", "cannot open the config in %s: %s", dir, strerror(errno));
	else
		os.config = &config;
	if (os.config) {
		print_first_boot(&fb, &config);
		if (os.pid1)
			sethostname(config.hostname, strlen(config.hostname));
	}
	if (os.pid1)
		start_network();
	snprintf(dir, sizeof dir, "%s/logs", os.state_dir);
	mkdir(dir, 0700);
	os.services = load_services(&o, dir);
	if (os.services)
		service_start_all(os.services);
	attach_consoles(&o);
	power_button_watch(&os);
	log_info("boot.done", "cubeos up (%s mode), state in %s", os.pid1 ? "PID1" : "test", os.state_dir);

	loop_run(os.loop);
	/* Only reached if epoll itself failed. PID1 must not exit. */
	log_error("loop", "event loop failed: %s", strerror(errno));
	if (!os.pid1)
		return 1;
	for (;;)
		pause();
}
