/*
 * i8042.c - just enough of the PC keyboard controller for a guest to reboot
 * (Linux's reboot=k writes 0xFE to port 0x64), and quiet answers for the
 * other legacy ports Linux touches while booting.
 *
 * There is no keyboard: the controller passes its self test, reports an
 * empty output buffer and drops keyboard commands, so the guest driver
 * concludes there is nothing attached.
 */
#include <stdio.h>
#include <string.h>

#include "../../lib/log.h"
#include "dev.h"

#define I8042_STATUS_OBF    0x01 /* output buffer full: a byte waits at 0x60 */
#define I8042_STATUS_SYS    0x04 /* system flag: self test passed */
#define I8042_CMD_READ_CTR  0x20
#define I8042_CMD_WRITE_CTR 0x60
#define I8042_CMD_SELF_TEST 0xaa
#define I8042_CMD_KBD_TEST  0xab
#define I8042_CMD_RESET_CPU 0xfe
#define I8042_SELF_TEST_OK  0x55
#define PORT61_REFRESH	    0x20 /* toggles, like DRAM refresh did: some delay loops watch it */
#define CMOS_INDEX_PORT	    0x70
#define CMOS_STATUS_D	    0x0d
#define CMOS_STATUS_D_VALID 0x80
#define POST_PORT	    0x80
#define PCI_CONFIG_PORT	    0xcf8

struct i8042 {
	struct vm *vm;
	uint8_t ctr; /* controller configuration byte */
	uint8_t out; /* byte waiting at the data port */
	bool out_full;
	bool expect_ctr; /* the next data write is a new CTR */
	uint8_t port61;
	uint8_t cmos_index;
};

static struct i8042 the_i8042;

static void i8042_reply(struct i8042 *k, uint8_t b)
{
	k->out = b;
	k->out_full = true;
}

static void i8042_command(struct i8042 *k, uint8_t cmd)
{
	switch (cmd) {
	case I8042_CMD_READ_CTR: i8042_reply(k, k->ctr); break;
	case I8042_CMD_WRITE_CTR: k->expect_ctr = true; break;
	case I8042_CMD_SELF_TEST: i8042_reply(k, I8042_SELF_TEST_OK); break;
	case I8042_CMD_KBD_TEST: i8042_reply(k, 0); break;
	case I8042_CMD_RESET_CPU:
		log_info("vm.reset", "guest reset (i8042 0xFE): ending the VM");
		vm_request_exit(k->vm, VMM_EXIT_OK);
		break;
	default: break; /* enable/disable ports, aux commands: nothing to do */
	}
}

static void i8042_access(void *dev, uint64_t off, uint8_t *data, uint32_t len, bool is_write)
{
	struct i8042 *k = dev;
	uint16_t port = (uint16_t)(I8042_DATA_PORT + off);
	if (port == I8042_CMD_PORT) {
		if (is_write)
			i8042_command(k, data[0]);
		else
			data[0] = I8042_STATUS_SYS | (k->out_full ? I8042_STATUS_OBF : 0);
	} else if (port == I8042_DATA_PORT) {
		if (is_write) {
			if (k->expect_ctr)
				k->ctr = data[0];
			k->expect_ctr = false;
		} else {
			data[0] = k->out;
			k->out_full = false;
		}
	} else if (port == 0x61) {
		if (is_write) {
			k->port61 = data[0] & ~PORT61_REFRESH;
		} else {
			k->port61 ^= PORT61_REFRESH;
			data[0] = k->port61;
		}
	} else if (!is_write) {
		memset(data, 0xff, len); /* 0x62, 0x63 */
	}
}

static void cmos_access(void *dev, uint64_t off, uint8_t *data, uint32_t len, bool is_write)
{
	struct i8042 *k = dev;
	if (is_write) {
		if (off == 0)
			k->cmos_index = data[0] & 0x7f; /* bit 7 is the NMI mask */
		return;
	}
	/* No RTC: the guest takes wall-clock time from kvm-clock and the
	 * agent's /init. Status D says "valid", everything else reads 0 so
	 * update-in-progress polling ends at once. */
	memset(data, 0, len);
	if (off == 1 && k->cmos_index == CMOS_STATUS_D)
		data[0] = CMOS_STATUS_D_VALID;
}

/* POST codes, PCI configuration and absent UARTs: writes vanish, reads
 * float high, and nothing is logged (Linux probes these on every boot). */
static void quiet_access(void *dev, uint64_t off, uint8_t *data, uint32_t len, bool is_write)
{
	if (!is_write)
		memset(data, 0xff, len);
}

int i8042_create(struct vm *vm, char *err, size_t errsz)
{
	struct i8042 *k = &the_i8042;
	memset(k, 0, sizeof *k);
	k->vm = vm;
	k->ctr = 0x30; /* both ports' clocks disabled, no interrupts */
	static const struct {
		uint16_t port, len;
	} quiet[] = {{POST_PORT, 1}, {PCI_CONFIG_PORT, 8}, {0x2f8, 8}, {0x3e8, 8}, {0x2e8, 8}};
	int r = bus_add(&vm->pio, I8042_DATA_PORT, 5, i8042_access, k);
	r |= bus_add(&vm->pio, CMOS_INDEX_PORT, 2, cmos_access, k);
	for (size_t i = 0; i < sizeof quiet / sizeof quiet[0]; i++)
		r |= bus_add(&vm->pio, quiet[i].port, quiet[i].len, quiet_access, NULL);
	if (r) {
		snprintf(err, errsz, "i8042: I/O ports already taken");
		return -1;
	}
	return 0;
}
