/* powerkey.c - watch the power button's input devices and power off on a press; see powerkey.h. */
#include "powerkey.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <unistd.h>

#include "../lib/log.h"
#include "../lib/loop.h"

#define BITS_PER_LONG	 (8 * sizeof(unsigned long))
#define BIT_WORDS(nbits) (((nbits) + BITS_PER_LONG - 1) / BITS_PER_LONG)

struct powerkey {
	struct cubeos *os;
	struct loop_io io;
	char name[64];
};

bool powerkey_pressed(const struct input_event *ev, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if (ev[i].type == EV_KEY && ev[i].code == KEY_POWER && ev[i].value == 1)
			return true;
	return false;
}

static bool test_bit(const unsigned long *bits, unsigned bit)
{
	return (bits[bit / BITS_PER_LONG] >> (bit % BITS_PER_LONG)) & 1;
}

/* Asks the device which keys it has (EVIOCGBIT on EV_KEY). */
static bool reports_power_key(int fd)
{
	unsigned long keys[BIT_WORDS(KEY_MAX + 1)];
	memset(keys, 0, sizeof keys);
	if (ioctl(fd, EVIOCGBIT(EV_KEY, sizeof keys), keys) < 0)
		return false;
	return test_bit(keys, KEY_POWER);
}

static void on_readable(void *arg, uint32_t events)
{
	struct powerkey *k = arg;
	struct input_event ev[16];
	ssize_t r = read(k->io.fd, ev, sizeof ev);
	if (r < 0 && (errno == EAGAIN || errno == EINTR))
		return;
	if (r <= 0) {
		/* The device went away: stop watching rather than spin on it. */
		log_warn("powerkey", "%s: %s; no longer watched", k->name, r < 0 ? strerror(errno) : "end of file");
		loop_io_del(k->os->loop, &k->io);
		close(k->io.fd);
		free(k);
		return;
	}
	if (!powerkey_pressed(ev, (size_t)r / sizeof ev[0]))
		return;
	log_info("powerkey", "power button pressed (%s): powering off", k->name);
	if (k->os->request_power)
		k->os->request_power(k->os, POWER_POWEROFF);
}

static int watch_one(struct cubeos *c, const char *path)
{
	int fd = open(path, O_RDONLY | O_NONBLOCK | O_CLOEXEC);
	if (fd < 0)
		return 0;
	if (!reports_power_key(fd)) {
		close(fd);
		return 0;
	}
	struct powerkey *k = calloc(1, sizeof *k);
	if (!k) {
		close(fd);
		return 0;
	}
	k->os = c;
	if (ioctl(fd, EVIOCGNAME(sizeof k->name - 1), k->name) < 0)
		snprintf(k->name, sizeof k->name, "%.60s", path);
	if (loop_io_add(c->loop, &k->io, fd, EPOLLIN, on_readable, k) < 0) {
		close(fd);
		free(k);
		return 0;
	}
	log_info("powerkey", "watching %s (%s) for the power button", path, k->name);
	return 1;
}

int powerkey_watch(struct cubeos *c, const char *dir)
{
	DIR *d = opendir(dir);
	if (!d) {
		log_warn("powerkey", "no power button: cannot open %s: %s", dir, strerror(errno));
		return 0;
	}
	int watched = 0;
	struct dirent *e;
	while ((e = readdir(d))) {
		if (strncmp(e->d_name, "event", 5) != 0)
			continue;
		char path[512];
		snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
		watched += watch_one(c, path);
	}
	closedir(d);
	if (!watched)
		log_warn("powerkey", "no input device in %s reports KEY_POWER: the power button is ignored", dir);
	return watched;
}
