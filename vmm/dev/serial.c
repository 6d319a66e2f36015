/*
 * serial.c - an 8250/16550A UART as COM1, the guest's console.
 *
 * Transmission is instant: a byte written to THR goes straight to the
 * output and THR is empty again, so LSR always says "transmitter empty" and
 * a THRE interrupt follows every write while the guest has asked for them
 * (otherwise the console driver would wait for an interrupt forever).
 * Input (stdin or the pty) is read on the loop thread into a small FIFO and
 * raises "data ready".
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <termios.h>
#include <unistd.h>

#include "../../lib/log.h"
#include "../../lib/loop.h"
#include "../snapfile.h"
#include "dev.h"

/* Register offsets from the base port. */
enum {
	UART_RBR_THR = 0,
	UART_IER = 1,
	UART_IIR_FCR = 2,
	UART_LCR = 3,
	UART_MCR = 4,
	UART_LSR = 5,
	UART_MSR = 6,
	UART_SCR = 7
};

#define IER_RDI	     0x01 /* interrupt on received data */
#define IER_THRI     0x02 /* interrupt on THR empty */
#define IIR_NO_INT   0x01
#define IIR_THRI     0x02
#define IIR_RDI	     0x04
#define IIR_FIFO_ON  0xc0
#define FCR_ENABLE   0x01
#define FCR_CLEAR_RX 0x02
#define LCR_DLAB     0x80
#define MCR_LOOP     0x10
#define LSR_DR	     0x01
#define LSR_THRE     0x20
#define LSR_TEMT     0x40
#define MSR_CTS	     0x10
#define MSR_DSR	     0x20
#define MSR_DCD	     0x80

#define RX_FIFO	      64
#define SERIAL_SAVE_V 1

struct serial {
	struct vm *vm;
	/* registers */
	uint8_t ier, lcr, mcr, scr, dll, dlm, fcr;
	bool thr_int; /* a THRE interrupt is pending (cleared by reading IIR) */
	uint8_t rx[RX_FIFO];
	unsigned rx_head, rx_len;
	int irq_level;
	/* host side */
	int out_fd, in_fd;
	bool own_out, own_in; /* close on re-create */
	int pty_slave;	      /* held open so the master never sees EIO */
	struct loop_io in_io;
};

static struct serial the_serial = {.out_fd = -1, .in_fd = -1, .pty_slave = -1};

/* --- interrupt state ------------------------------------------------------- */

static uint8_t serial_iir(const struct serial *s)
{
	uint8_t fifo = (s->fcr & FCR_ENABLE) ? IIR_FIFO_ON : 0;
	if ((s->ier & IER_RDI) && s->rx_len)
		return fifo | IIR_RDI;
	if ((s->ier & IER_THRI) && s->thr_int)
		return fifo | IIR_THRI;
	return fifo | IIR_NO_INT;
}

/* Drives IRQ 4 from the interrupt state; only changes are sent, so the
 * in-kernel IOAPIC sees a fresh edge each time an interrupt appears. */
static void serial_update_irq(struct serial *s)
{
	int level = !(serial_iir(s) & IIR_NO_INT);
	if (level != s->irq_level) {
		s->irq_level = level;
		vm_irq_line(s->vm, SERIAL_COM1_IRQ, level);
	}
}

/* --- data path -------------------------------------------------------------- */

static void rx_push(struct serial *s, uint8_t b)
{
	if (s->rx_len == RX_FIFO)
		return; /* overrun: drop, as a real FIFO would */
	s->rx[(s->rx_head + s->rx_len) % RX_FIFO] = b;
	s->rx_len++;
}

static uint8_t rx_pop(struct serial *s)
{
	if (!s->rx_len)
		return 0;
	uint8_t b = s->rx[s->rx_head];
	s->rx_head = (s->rx_head + 1) % RX_FIFO;
	s->rx_len--;
	return b;
}

static void tx_byte(struct serial *s, uint8_t b)
{
	if (s->mcr & MCR_LOOP) {
		rx_push(s, b);
		return;
	}
	/* A pty nobody reads fills up: then bytes are dropped (non-blocking
	 * fd), rather than stalling the vCPU. */
	if (s->out_fd >= 0 && write(s->out_fd, &b, 1) < 0 && errno != EAGAIN)
		s->out_fd = -1;
}

static uint8_t serial_msr(const struct serial *s)
{
	if (s->mcr & MCR_LOOP) /* loopback: modem outputs feed the inputs */
		return (uint8_t)(((s->mcr & 0x02) << 3) | ((s->mcr & 0x01) << 5) | ((s->mcr & 0x0c) << 4));
	return MSR_DCD | MSR_DSR | MSR_CTS;
}

static uint8_t serial_read(struct serial *s, uint64_t off)
{
	bool dlab = s->lcr & LCR_DLAB;
	switch (off) {
	case UART_RBR_THR: return dlab ? s->dll : rx_pop(s);
	case UART_IER: return dlab ? s->dlm : s->ier;
	case UART_IIR_FCR: {
		uint8_t iir = serial_iir(s);
		if ((iir & 0x0f) == IIR_THRI)
			s->thr_int = false; /* reading IIR acknowledges THRE */
		return iir;
	}
	case UART_LCR: return s->lcr;
	case UART_MCR: return s->mcr;
	case UART_LSR: return LSR_THRE | LSR_TEMT | (s->rx_len ? LSR_DR : 0);
	case UART_MSR: return serial_msr(s);
	default: return s->scr;
	}
}

static void serial_write(struct serial *s, uint64_t off, uint8_t v)
{
	bool dlab = s->lcr & LCR_DLAB;
	switch (off) {
	case UART_RBR_THR:
		if (dlab) {
			s->dll = v;
		} else {
			tx_byte(s, v);
			s->thr_int = true;
		}
		break;
	case UART_IER:
		if (dlab) {
			s->dlm = v;
		} else {
			/* Enabling THRE interrupts with THR empty raises one at once. */
			if ((v & IER_THRI) && !(s->ier & IER_THRI))
				s->thr_int = true;
			s->ier = v & 0x0f;
		}
		break;
	case UART_IIR_FCR:
		s->fcr = v & 0xc9;
		if (v & FCR_CLEAR_RX)
			s->rx_head = s->rx_len = 0;
		break;
	case UART_LCR: s->lcr = v; break;
	case UART_MCR: s->mcr = v & 0x1f; break;
	case UART_SCR: s->scr = v; break;
	default: break; /* LSR, MSR: read-only */
	}
}

static void serial_access(void *dev, uint64_t off, uint8_t *data, uint32_t len, bool is_write)
{
	struct serial *s = dev;
	if (len != 1) {
		if (!is_write)
			memset(data, 0xff, len);
		return;
	}
	if (is_write)
		serial_write(s, off, data[0]);
	else
		data[0] = serial_read(s, off);
	serial_update_irq(s);
}

/* --- host input (loop thread) ------------------------------------------------- */

static void serial_on_input(void *arg, uint32_t events)
{
	struct serial *s = arg;
	uint8_t buf[RX_FIFO];
	ssize_t n = read(s->in_fd, buf, sizeof buf);
	if (n == 0 || (n < 0 && errno != EAGAIN && errno != EINTR && errno != EIO)) {
		loop_io_del(s->vm->loop, &s->in_io); /* stdin closed: output only */
		return;
	}
	if (n < 0)
		return;
	pthread_mutex_lock(&s->vm->lock);
	for (ssize_t i = 0; i < n; i++)
		rx_push(s, buf[i]);
	serial_update_irq(s);
	pthread_mutex_unlock(&s->vm->lock);
}

/* --- snapshot ------------------------------------------------------------------ */

static int serial_save(void *dev, struct snap_w *w)
{
	struct serial *s = dev;
	uint8_t regs[8] = {s->ier, s->lcr, s->mcr, s->scr, s->dll, s->dlm, s->fcr, s->thr_int};
	snap_w_u32(w, SERIAL_SAVE_V);
	snap_w_put(w, regs, sizeof regs);
	snap_w_u32(w, s->rx_len);
	for (unsigned i = 0; i < s->rx_len; i++) {
		uint8_t b = s->rx[(s->rx_head + i) % RX_FIFO];
		snap_w_put(w, &b, 1);
	}
	return 0;
}

static int serial_load(void *dev, const void *data, size_t len, char *err, size_t errsz)
{
	struct serial *s = dev;
	struct snap_cur c;
	uint8_t regs[8];
	snap_cur_init(&c, data, len);
	uint32_t v = snap_cur_u32(&c);
	snap_cur_get(&c, regs, sizeof regs);
	uint32_t n = snap_cur_u32(&c);
	if (c.bad || v != SERIAL_SAVE_V || n > RX_FIFO) {
		snprintf(err, errsz, "serial: bad state (version %u, %u bytes queued)", v, n);
		return -1;
	}
	s->ier = regs[0], s->lcr = regs[1], s->mcr = regs[2], s->scr = regs[3];
	s->dll = regs[4], s->dlm = regs[5], s->fcr = regs[6], s->thr_int = regs[7];
	s->rx_head = 0;
	s->rx_len = 0;
	for (uint32_t i = 0; i < n; i++) {
		uint8_t b = 0;
		snap_cur_get(&c, &b, 1);
		rx_push(s, b);
	}
	if (c.bad) {
		snprintf(err, errsz, "serial: state truncated");
		return -1;
	}
	/* The irqchip state comes from the snapshot too: resync our idea of
	 * the line without sending anything. */
	s->irq_level = !(serial_iir(s) & IIR_NO_INT);
	return 0;
}

/* --- host side set-up ------------------------------------------------------------ */

/* Re-creating (tests run several VMs in one process) closes what the last
 * instance opened; its loop, if any, is gone by then. */
static void serial_close_host(struct serial *s)
{
	if (s->own_out && s->out_fd >= 0)
		close(s->out_fd);
	if (s->own_in && s->in_fd >= 0 && s->in_fd != s->out_fd)
		close(s->in_fd);
	if (s->pty_slave >= 0)
		close(s->pty_slave);
	s->out_fd = s->in_fd = s->pty_slave = -1;
	s->own_out = s->own_in = false;
}

static int open_pty(struct serial *s, char *err, size_t errsz)
{
	int m = posix_openpt(O_RDWR | O_NOCTTY | O_CLOEXEC);
	if (m < 0 || grantpt(m) < 0 || unlockpt(m) < 0) {
		snprintf(err, errsz, "serial: no pty: %s", strerror(errno));
		if (m >= 0)
			close(m);
		return -1;
	}
	const char *name = ptsname(m);
	s->pty_slave = name ? open(name, O_RDWR | O_NOCTTY | O_CLOEXEC) : -1;
	struct termios t;
	if (s->pty_slave >= 0 && tcgetattr(s->pty_slave, &t) == 0) {
		cfmakeraw(&t);
		tcsetattr(s->pty_slave, TCSANOW, &t);
	}
	fd_nonblock(m);
	s->out_fd = s->in_fd = m;
	s->own_out = s->own_in = true;
	printf("serial: %s\n", name ? name : "?");
	fflush(stdout);
	log_info("serial.pty", "console on %s", name ? name : "?");
	return 0;
}

static int open_host_side(struct serial *s, const char *out, char *err, size_t errsz)
{
	if (!out || !strcmp(out, "none"))
		return 0;
	if (!strcmp(out, "stdio")) {
		s->out_fd = STDOUT_FILENO;
		s->in_fd = STDIN_FILENO;
		return 0;
	}
	if (!strcmp(out, "pty"))
		return open_pty(s, err, errsz);
	s->out_fd = open(out, O_WRONLY | O_CREAT | O_TRUNC | O_APPEND | O_CLOEXEC, 0644);
	if (s->out_fd < 0) {
		snprintf(err, errsz, "serial: open %s: %s", out, strerror(errno));
		return -1;
	}
	s->own_out = true;
	return 0;
}

int serial_create(struct vm *vm, const char *out, char *err, size_t errsz)
{
	struct serial *s = &the_serial;
	serial_close_host(s);
	memset(s, 0, sizeof *s);
	s->out_fd = s->in_fd = s->pty_slave = -1;
	s->vm = vm;
	if (open_host_side(s, out, err, errsz) < 0)
		return -1;
	if (bus_add(&vm->pio, SERIAL_COM1_PORT, 8, serial_access, s) < 0) {
		snprintf(err, errsz, "serial: port 0x%x already taken", SERIAL_COM1_PORT);
		return -1;
	}
	/* Input is optional: stdin may be a file or /dev/null, which epoll
	 * refuses; then the console is output only. */
	if (s->in_fd >= 0 && vm->loop && loop_io_add(vm->loop, &s->in_io, s->in_fd, EPOLLIN, serial_on_input, s) < 0)
		log_debug("serial.input", "no console input: %s", strerror(errno));
	struct vm_device d = {.kind = "serial", .dev = s, .save = serial_save, .load = serial_load};
	if (vm_add_device(vm, &d) < 0) {
		snprintf(err, errsz, "serial: too many devices");
		return -1;
	}
	return 0;
}
