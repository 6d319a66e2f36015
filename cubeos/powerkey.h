/*
 * powerkey.h - the power button: KEY_POWER on an input device -> poweroff.
 *
 * The ACPI power button (and the one QEMU presses on `system_powerdown`)
 * reaches user space only as a key press on an evdev device, "Power Button",
 * /dev/input/eventN. cubeos watches every event device that can report
 * KEY_POWER and turns a press into the same orderly poweroff as SIGUSR2 or
 * the shell's poweroff command.
 */
#ifndef CUBEOS_POWERKEY_H
#define CUBEOS_POWERKEY_H

#include <linux/input.h>
#include <stdbool.h>
#include <stddef.h>

#include "cubeos.h"

/* Opens the devices under dir (normally /dev/input) that report KEY_POWER
 * and watches them on c->loop. Returns how many it watches. */
int powerkey_watch(struct cubeos *c, const char *dir);

/* True if the records hold a KEY_POWER press (value 1; a release or an
 * autorepeat is not one). n counts whole records. */
bool powerkey_pressed(const struct input_event *ev, size_t n);

#endif
