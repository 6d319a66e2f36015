/* test_powerkey.c - which input_event records count as a power button press. */
#include "../powerkey.h"

#include "../../lib/tests/test.h"

static struct input_event key(unsigned type, unsigned code, int value)
{
	struct input_event e = {.type = (__u16)type, .code = (__u16)code, .value = value};
	return e;
}

TEST(a_power_key_press_counts)
{
	/* What the ACPI button driver sends: press, sync, release, sync. */
	struct input_event ev[] = {key(EV_KEY, KEY_POWER, 1), key(EV_SYN, SYN_REPORT, 0), key(EV_KEY, KEY_POWER, 0),
				   key(EV_SYN, SYN_REPORT, 0)};
	CHECK(powerkey_pressed(ev, 4));
	CHECK(powerkey_pressed(ev, 1));
}

TEST(releases_repeats_and_other_keys_do_not)
{
	struct input_event ev[] = {key(EV_KEY, KEY_POWER, 0), key(EV_KEY, KEY_POWER, 2), key(EV_KEY, KEY_SLEEP, 1),
				   key(EV_SW, KEY_POWER, 1), key(EV_SYN, SYN_REPORT, 0)};
	CHECK(!powerkey_pressed(ev, 5));
	CHECK(!powerkey_pressed(ev, 0));
}

TEST(no_input_directory_watches_nothing)
{
	struct cubeos os = {0};
	CHECK_EQ_INT(powerkey_watch(&os, "/nonexistent/input"), 0);
}
