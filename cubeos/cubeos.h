/*
 * cubeos.h - what the parts of cubeos share: how it runs, where its state
 * lives, and the one way to ask for a reboot or poweroff.
 *
 * There is one struct cubeos per process. main.c fills it; the supervisor,
 * the config store and the admin shell read it.
 */
#ifndef CUBEOS_H
#define CUBEOS_H

#include <stdbool.h>
#include <stdint.h>

struct loop;
struct service_set;
struct config;

enum power_action { POWER_NONE, POWER_REBOOT, POWER_HALT, POWER_POWEROFF };

struct cubeos {
	struct loop *loop;
	/* Real PID1 of the appliance: mounts, reboot(). False in test mode,
	 * where cubeos is an ordinary process (possibly PID1 of a namespace). */
	bool pid1;
	const char *state_dir; /* config/ and logs/ live below it */
	struct service_set *services;
	struct config *config;
	uint64_t started_ms; /* monotonic, for the shell's uptime */
	enum power_action shutting_down;
	/* Starts the orderly shutdown (services stopped in reverse dependency
	 * order, sync, unmount, then the action). Safe to call twice. */
	void (*request_power)(struct cubeos *c, enum power_action a);
};

const char *power_action_name(enum power_action a);

/* mount.c */
int mount_early(void);		     /* proc, sys, dev, devpts, cgroup2, bpffs, /run, /tmp */
void mount_finish_readonly(void);    /* before reboot(): sync, remount read-only */
int console_attach(void);	     /* stdio on /dev/console */
const char *state_dir_prepare(void); /* where config and logs live (data disk hook) */
void templates_mount(void);	     /* the image's template root filesystems, read-only */

#endif
