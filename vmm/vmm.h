/*
 * vmm.h - the types every part of cube-vmm shares.
 *
 * cube-vmm is one process per microVM. The main thread runs the event loop
 * (lib/loop.h): control socket, device back ends (ioeventfds, TAP, vsock
 * Unix sockets) and signals. Each vCPU runs KVM_RUN in its own thread and
 * handles its port-I/O and MMIO exits itself. One lock (vm->lock) serialises
 * device state between the two: a vCPU thread holds it while it emulates a
 * register access, the loop thread while a device processes its queues.
 *
 * Guest physical memory map (see README.md):
 *
 *   0x0000_0000 ..          RAM, low part (boot structures live here)
 *   0xc000_0000 .. 4 GiB    MMIO hole: virtio-mmio slots, IOAPIC, LAPIC
 *   4 GiB ..                RAM, high part (only when RAM > 3 GiB)
 */
#ifndef CUBE_VMM_H
#define CUBE_VMM_H

#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct loop;
struct kvm_run;
struct snap_w;

/* --- exit codes: one per way a VM can end, so callers can tell them apart */
enum vmm_exit {
	VMM_EXIT_OK = 0,	   /* guest reboot/shutdown, or a control "shutdown" */
	VMM_EXIT_USAGE = 1,	   /* bad command line or configuration */
	VMM_EXIT_HOST = 2,	   /* host set-up failed: /dev/kvm, memory, files */
	VMM_EXIT_TRIPLE_FAULT = 3, /* KVM_EXIT_SHUTDOWN */
	VMM_EXIT_KVM_ERROR = 4,	   /* internal error, failed entry, unknown exit */
	VMM_EXIT_BAD_SNAPSHOT = 5, /* wrong magic/version/checksum, truncated, mismatch */
	VMM_EXIT_DEVICE = 6,	   /* a device back end failed (disk I/O error...) */
};

/* --- guest physical memory map ---------------------------------------- */
#define GUEST_MMIO_HOLE	   0xc0000000ULL /* RAM below this, devices above */
#define GUEST_HIGH_RAM	   0x100000000ULL
#define VIRTIO_MMIO_BASE   0xd0000000ULL /* slot i at BASE + i * SIZE */
#define VIRTIO_MMIO_SIZE   0x1000ULL
#define VIRTIO_MMIO_IRQ0   5 /* slot i uses GSI 5 + i */
#define VMM_MAX_MMIO_SLOTS 16
#define IOAPIC_BASE	   0xfec00000ULL
#define LAPIC_BASE	   0xfee00000ULL

/* Legacy I/O ports. */
#define SERIAL_COM1_PORT 0x3f8
#define SERIAL_COM1_IRQ	 4
#define I8042_DATA_PORT	 0x60
#define I8042_CMD_PORT	 0x64

#define VMM_MAX_VCPUS 32
#define VMM_MAX_DISKS 4
#define VMM_MAX_NICS  2

/* --- configuration ------------------------------------------------------
 * Filled from the command line (boot) or from the snapshot's state file
 * (restore), then turned into devices. Strings are owned by the config. */
struct disk_config {
	char *base;  /* read-only base image (never written) */
	char *layer; /* writable copy-on-write layer; NULL = temporary, unlinked */
	/* Read-only layers between layer and base, top first (a snapshot's
	 * frozen layer). Used on restore. */
	char *lower[4];
	int nr_lower;
	bool read_only; /* guest sees a read-only disk, no layer */
};

struct net_config {
	char *tap_name; /* open /dev/net/tun with this name, or */
	int tap_fd;	/* an already-open TAP fd (-1 if none) */
	uint8_t mac[6];
};

struct vsock_config {
	uint64_t guest_cid; /* 3 unless told otherwise */
	char *uds_path;	    /* host side: Unix socket, "CONNECT <port>\n" / "OK <port>\n" */
};

struct vm_config {
	char *kernel;  /* ELF vmlinux */
	char *initrd;  /* optional */
	char *cmdline; /* user part; the VMM appends console and virtio_mmio.device= */
	int nr_vcpus;
	uint64_t mem_bytes;
	struct disk_config disks[VMM_MAX_DISKS];
	int nr_disks;
	struct net_config nics[VMM_MAX_NICS];
	int nr_nics;
	bool has_vsock;
	struct vsock_config vsock;
	char *serial_out;   /* file path, "stdio", "pty" or NULL (discard) */
	char *control_path; /* control socket path, NULL for none */
	char *id;	    /* sandbox id for logs, optional */
	/* Tests only: run without the in-kernel irqchip/PIT (a host whose KVM
	 * refuses KVM_CREATE_IRQCHIP can still run hand-made guests). */
	bool no_irqchip;
};

/* --- guest memory ------------------------------------------------------- */
struct guest_mem {
	uint8_t *host;	    /* one host mapping of all of guest RAM */
	uint64_t size;	    /* bytes of RAM */
	uint64_t low_size;  /* RAM mapped at GPA 0 (<= GUEST_MMIO_HOLE) */
	uint64_t high_size; /* RAM mapped at GUEST_HIGH_RAM */
	int backing_fd;	    /* memory file mapped MAP_PRIVATE on restore, else -1 */
};

/* Returns a host pointer to [gpa, gpa + len) if the whole range is guest
 * RAM (and does not straddle the MMIO hole), else NULL. Every access a
 * device makes on the guest's behalf goes through this. */
void *gpa_ptr(const struct guest_mem *m, uint64_t gpa, uint64_t len);

/* --- buses -------------------------------------------------------------- */
/* Called on a vCPU thread with vm->lock held. off is relative to the
 * region's base; data is len bytes (1, 2, 4 or 8) to store or to fill. */
typedef void (*bus_access_fn)(void *dev, uint64_t off, uint8_t *data, uint32_t len, bool is_write);

struct bus_region {
	uint64_t base, len;
	bus_access_fn fn;
	void *dev;
};

#define BUS_MAX_REGIONS 32
struct bus {
	struct bus_region r[BUS_MAX_REGIONS];
	int n;
};

/* --- devices ------------------------------------------------------------
 * Every device with state registers one of these so that snapshot and
 * restore can walk them in creation order. */
struct vm_device {
	const char *kind; /* "serial", "virtio-blk", "virtio-net", "virtio-vsock", ... */
	void *dev;
	/* Appends the device's state as one opaque payload. */
	int (*save)(void *dev, struct snap_w *w);
	/* Restores from that payload; returns -1 with a message in err. */
	int (*load)(void *dev, const void *data, size_t len, char *err, size_t errsz);
	/* Pause/resume: stop and restart consuming host-side input (TAP, Unix
	 * sockets) so nothing touches guest memory while paused. May be NULL. */
	void (*pause)(void *dev);
	void (*resume)(void *dev);
	/* After a restore, before the vCPUs run (vsock sends a transport reset
	 * here so the guest drops connections that died with the old process). */
	void (*restored)(void *dev);
};

#define VMM_MAX_DEVICES 16

/* --- vCPUs and the VM -------------------------------------------------- */
enum vcpu_state { VCPU_RUNNING, VCPU_PAUSED, VCPU_STOPPED };

struct vm;

struct vcpu {
	struct vm *vm;
	int id;
	int fd;
	struct kvm_run *run;
	size_t run_size;
	pthread_t thread;
	enum vcpu_state state;
	uint64_t exits; /* I/O exits handled, for stats */
};

struct vm {
	int kvm_fd, vm_fd;
	struct guest_mem mem;
	int nr_vcpus;
	struct vcpu vcpus[VMM_MAX_VCPUS];

	struct loop *loop;
	pthread_mutex_t lock; /* device state; see top of file */
	pthread_cond_t cond;  /* vCPU state changes */
	bool pause_requested;
	bool paused;
	int exit_code; /* enum vmm_exit, set once by vm_request_exit */
	bool exiting;

	struct bus pio, mmio;
	struct vm_device devices[VMM_MAX_DEVICES];
	int nr_devices;
	int nr_mmio_slots;
	char mmio_cmdline[VMM_MAX_MMIO_SLOTS][64]; /* "virtio_mmio.device=4K@0x...:N" */

	struct vm_config *cfg;

	bool has_irqchip;  /* in-kernel PIC/IOAPIC/LAPIC and PIT exist */
	int exit_efd;	   /* eventfd: written by vm_request_exit, wakes the loop */
	void *exit_io;	   /* the loop watcher on exit_efd (struct loop_io) */
	uint64_t start_ms; /* mono_ms() when the vCPUs were started */
	int kick_signal;   /* signal that knocks a vCPU out of KVM_RUN */
};

/* vm.c */
/* Opens /dev/kvm, creates the VM, irqchip and PIT, and maps RAM: anonymous
 * memory, or mem_fd mapped MAP_PRIVATE (restore). Creates the vCPUs but does
 * not start them. Returns 0 or -1 with a message in err. */
int vm_init(struct vm *vm, struct vm_config *cfg, struct loop *loop, int mem_fd, char *err, size_t errsz);
int vm_start_vcpus(struct vm *vm); /* one thread each */
int vm_pause(struct vm *vm);	   /* returns when every vCPU is out of KVM_RUN */
int vm_resume(struct vm *vm);
void vm_request_exit(struct vm *vm, int code); /* first caller's code wins; wakes the loop */
void vm_destroy(struct vm *vm);
bool vm_is_paused(const struct vm *vm);

/* Interrupt and notification plumbing for devices. */
int vm_irqfd(struct vm *vm, int gsi);						  /* eventfd that raises gsi */
int vm_ioeventfd(struct vm *vm, uint64_t mmio_addr, uint32_t len, int datamatch); /* -1 = any value */
/* Reserves the next virtio-mmio slot: its base address and GSI, and records
 * the kernel command-line fragment that declares it. */
int vm_alloc_mmio_slot(struct vm *vm, uint64_t *base, int *gsi);
int vm_add_device(struct vm *vm, const struct vm_device *d);

/* Raises (level 1) or lowers (0) an interrupt line of the in-kernel irqchip. */
int vm_irq_line(struct vm *vm, int gsi, int level);

/* Memory accounting of the guest RAM mapping (from /proc/self/smaps), in bytes. */
struct vm_mem_stats {
	uint64_t guest_bytes;
	uint64_t rss, pss;
	uint64_t shared_clean, shared_dirty;
	uint64_t private_clean, private_dirty;
};
int vm_mem_stats(const struct vm *vm, struct vm_mem_stats *st);
const char *vcpu_state_name(enum vcpu_state s);

/* bus.c */
int bus_add(struct bus *b, uint64_t base, uint64_t len, bus_access_fn fn, void *dev);
/* Dispatches one access; unclaimed reads return all-ones, writes are ignored. */
bool bus_access(struct bus *b, uint64_t addr, uint8_t *data, uint32_t len, bool is_write);

#endif
