/*
 * main.c - the cube-vmm command line: run (boot a kernel), restore (from a
 * snapshot) and ctl (talk to a running VMM's control socket).
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <unistd.h>

#include "../lib/log.h"
#include "../lib/loop.h"
#include "boot.h"
#include "config.h"
#include "control.h"
#include "dev/dev.h"
#include "snapshot.h"
#include "virtio/virtio.h"
#include "vmm.h"

#define DEFAULT_MEM_MIB	  256
#define DEFAULT_CMDLINE	  "console=ttyS0 reboot=k panic=-1"
#define DEFAULT_ROOT	  "root=/dev/vda rw"
#define DEFAULT_GUEST_CID 3

static const char usage_text[] =
    "usage:\n"
    "  cube-vmm run --kernel VMLINUX [--initrd F] [--cmdline S] [--cpus N] [--mem MiB]\n"
    "      [--disk PATH[,layer=F][,ro]]... [--net tap=NAME|fd=N[,mac=xx:xx:xx:xx:xx:xx]]...\n"
    "      [--vsock cid=N,uds=PATH] [--serial FILE|stdio|pty|none] [--control PATH] [--id ID] [--log FILE]\n"
    "  cube-vmm restore --snapshot DIR [--disk-layer N=FILE]... [--vsock-uds PATH] [--net ...]...\n"
    "      [--serial ...] [--control PATH] [--id ID] [--paused] [--log FILE]\n"
    "      A clone's disks are the snapshot's frozen layers under a new top layer (--disk-layer, else a\n"
    "      temporary file); --vsock-uds is required when the snapshot has vsock; the clone's console\n"
    "      and control socket are off unless --serial / --control are given.\n"
    "  cube-vmm ctl SOCKET ping|pause|resume|stats|shutdown|snapshot DIR\n";

static int usage(const char *why)
{
	if (why)
		fprintf(stderr, "cube-vmm: %s\n", why);
	fputs(usage_text, stderr);
	return VMM_EXIT_USAGE;
}

static const char *exit_reason(int code)
{
	switch (code) {
	case VMM_EXIT_OK: return "guest shut down or reset, or a shutdown was requested";
	case VMM_EXIT_HOST: return "host set-up failed";
	case VMM_EXIT_TRIPLE_FAULT: return "guest triple fault";
	case VMM_EXIT_KVM_ERROR: return "KVM error";
	case VMM_EXIT_BAD_SNAPSHOT: return "bad snapshot";
	case VMM_EXIT_DEVICE: return "device back end failed";
	default: return "usage error";
	}
}

/* --- option values --------------------------------------------------------- */

/* Splits "a,b=c,..." in place; returns the next item or NULL. */
static char *next_item(char **s)
{
	if (!*s || !**s)
		return NULL;
	char *item = *s, *comma = strchr(item, ',');
	if (comma) {
		*comma = 0;
		*s = comma + 1;
	} else {
		*s = NULL;
	}
	return item;
}

static int parse_mac(const char *s, uint8_t mac[6])
{
	unsigned v[6];
	char tail;
	if (sscanf(s, "%x:%x:%x:%x:%x:%x%c", &v[0], &v[1], &v[2], &v[3], &v[4], &v[5], &tail) != 6)
		return -1;
	for (int i = 0; i < 6; i++) {
		if (v[i] > 255)
			return -1;
		mac[i] = (uint8_t)v[i];
	}
	return 0;
}

static int parse_uint(const char *s, uint64_t max, uint64_t *out)
{
	char *end;
	errno = 0;
	unsigned long long v = strtoull(s, &end, 10);
	if (errno || end == s || *end || v > max || *s == '-')
		return -1;
	*out = v;
	return 0;
}

static int parse_disk(struct vm_config *cfg, char *arg)
{
	if (cfg->nr_disks == VMM_MAX_DISKS)
		return usage("too many --disk");
	struct disk_config *d = &cfg->disks[cfg->nr_disks];
	memset(d, 0, sizeof *d);
	char *item = next_item(&arg);
	if (!item || !*item)
		return usage("--disk needs a path");
	d->base = strdup(item);
	while ((item = next_item(&arg))) {
		if (!strncmp(item, "layer=", 6))
			d->layer = strdup(item + 6);
		else if (!strcmp(item, "ro"))
			d->read_only = true;
		else
			return usage("--disk options are layer=FILE and ro");
	}
	cfg->nr_disks++;
	return 0;
}

static void random_mac(uint8_t mac[6])
{
	mac[0] = 0x52, mac[1] = 0x54, mac[2] = 0x00;
	if (getrandom(mac + 3, 3, 0) != 3)
		mac[3] = mac[4] = mac[5] = 0x42;
}

static int parse_net(struct net_config *n, char *arg, bool keep_mac)
{
	if (!keep_mac)
		random_mac(n->mac);
	n->tap_fd = -1;
	n->tap_name = NULL;
	char *item;
	uint64_t v;
	while ((item = next_item(&arg))) {
		if (!strncmp(item, "tap=", 4))
			n->tap_name = strdup(item + 4);
		else if (!strncmp(item, "fd=", 3) && parse_uint(item + 3, 65535, &v) == 0)
			n->tap_fd = (int)v;
		else if (!strncmp(item, "mac=", 4) && parse_mac(item + 4, n->mac) == 0)
			continue;
		else
			return usage("--net takes tap=NAME or fd=N, and optionally mac=xx:xx:xx:xx:xx:xx");
	}
	if (!n->tap_name && n->tap_fd < 0)
		return usage("--net needs tap=NAME or fd=N");
	return 0;
}

static int parse_vsock(struct vm_config *cfg, char *arg)
{
	cfg->has_vsock = true;
	cfg->vsock.guest_cid = DEFAULT_GUEST_CID;
	char *item;
	while ((item = next_item(&arg))) {
		if (!strncmp(item, "cid=", 4) && parse_uint(item + 4, UINT32_MAX, &cfg->vsock.guest_cid) == 0 &&
		    cfg->vsock.guest_cid >= 3)
			continue;
		if (!strncmp(item, "uds=", 4) && item[4])
			cfg->vsock.uds_path = strdup(item + 4);
		else
			return usage("--vsock takes cid=N (>= 3) and uds=PATH");
	}
	if (!cfg->vsock.uds_path)
		return usage("--vsock needs uds=PATH");
	return 0;
}

static void set_str(char **dst, const char *v)
{
	free(*dst);
	*dst = strdup(v);
}

/* --- options shared by run and restore -------------------------------------- */

struct opts {
	const char *log_file;
	const char *snapshot;
	bool paused;
	int nr_nets; /* --net given this many times (restore: replaces the snapshot's) */
};

/* Returns 1 if it consumed the option, 0 if not its own, or an exit code < 0. */
static int common_option(struct vm_config *cfg, struct opts *o, const char *opt, char *val, bool restore)
{
	if (!strcmp(opt, "--serial")) {
		set_str(&cfg->serial_out, val);
	} else if (!strcmp(opt, "--control")) {
		set_str(&cfg->control_path, val);
	} else if (!strcmp(opt, "--id")) {
		set_str(&cfg->id, val);
	} else if (!strcmp(opt, "--log")) {
		o->log_file = val;
	} else if (!strcmp(opt, "--net")) {
		if (o->nr_nets == VMM_MAX_NICS)
			return -usage("too many --net");
		struct net_config *n = &cfg->nics[o->nr_nets];
		bool keep_mac = restore && o->nr_nets < cfg->nr_nics;
		if (restore && o->nr_nets < cfg->nr_nics)
			free(n->tap_name);
		if (parse_net(n, val, keep_mac))
			return -VMM_EXIT_USAGE;
		o->nr_nets++;
		if (o->nr_nets > cfg->nr_nics)
			cfg->nr_nics = o->nr_nets;
	} else {
		return 0;
	}
	return 1;
}

static int run_option(struct vm_config *cfg, const char *opt, char *val)
{
	uint64_t v;
	if (!strcmp(opt, "--kernel")) {
		set_str(&cfg->kernel, val);
	} else if (!strcmp(opt, "--initrd")) {
		set_str(&cfg->initrd, val);
	} else if (!strcmp(opt, "--cmdline")) {
		set_str(&cfg->cmdline, val);
	} else if (!strcmp(opt, "--cpus")) {
		if (parse_uint(val, VMM_MAX_VCPUS, &v) || v == 0)
			return usage("--cpus must be 1..32");
		cfg->nr_vcpus = (int)v;
	} else if (!strcmp(opt, "--mem")) {
		if (parse_uint(val, 1 << 20, &v) || v < 16)
			return usage("--mem is in MiB, at least 16");
		cfg->mem_bytes = v << 20;
	} else if (!strcmp(opt, "--disk")) {
		return parse_disk(cfg, val);
	} else if (!strcmp(opt, "--vsock")) {
		return parse_vsock(cfg, val);
	} else {
		return usage("unknown option");
	}
	return 0;
}

static int parse_run_args(int argc, char **argv, struct vm_config *cfg, struct opts *o)
{
	for (int i = 2; i < argc; i += 2) {
		if (i + 1 >= argc)
			return usage("an option lacks its value");
		int r = common_option(cfg, o, argv[i], argv[i + 1], false);
		if (r < 0)
			return -r;
		if (r == 0 && run_option(cfg, argv[i], argv[i + 1]))
			return VMM_EXIT_USAGE;
	}
	if (!cfg->kernel)
		return usage("run needs --kernel");
	return 0;
}

static int restore_override(struct vm_config *cfg, const char *opt, char *val)
{
	if (!strcmp(opt, "--disk-layer")) {
		char *eq = strchr(val, '=');
		uint64_t n;
		if (!eq || (*eq = 0, parse_uint(val, VMM_MAX_DISKS - 1, &n)) || (int)n >= cfg->nr_disks || !eq[1])
			return usage("--disk-layer N=FILE: N is the index of one of the snapshot's disks");
		set_str(&cfg->disks[n].layer, eq + 1);
	} else if (!strcmp(opt, "--vsock-uds")) {
		if (!cfg->has_vsock)
			return usage("--vsock-uds: the snapshot has no vsock device");
		set_str(&cfg->vsock.uds_path, val);
	} else {
		return usage("unknown option");
	}
	return 0;
}

/* A restored disk is the snapshot's frozen layer (every cluster the VM had
 * written, see disk_freeze) over the same base, plus a fresh top layer for
 * this clone: the one given with --disk-layer, else a temporary file. The
 * snapshotted VM's own top layer is never reused: clones would share it. */
static int restore_disk_layers(struct vm_config *cfg, const char *dir, char *err, size_t errsz)
{
	for (int i = 0; i < cfg->nr_disks; i++) {
		struct disk_config *d = &cfg->disks[i];
		free(d->layer);
		d->layer = NULL;
		if (d->read_only)
			continue;
		char name[32], path[4096];
		snprintf(name, sizeof name, VIRTIO_BLK_LAYER_NAME_FMT, i);
		if (snprintf(path, sizeof path, "%s/%s", dir, name) >= (int)sizeof path) {
			snprintf(err, errsz, "snapshot path too long");
			return -1;
		}
		if (access(path, R_OK) != 0) {
			snprintf(err, errsz, "disk %d: frozen layer %s missing in the snapshot: %s", i, name,
				 strerror(errno));
			return -1;
		}
		for (int j = 0; j < d->nr_lower; j++)
			free(d->lower[j]);
		d->lower[0] = strdup(path);
		d->nr_lower = 1;
	}
	return 0;
}

/* Restore options are applied in two passes: --snapshot and --log first
 * (the config comes from the snapshot), then the overrides onto it. */
static int find_snapshot_arg(int argc, char **argv, struct opts *o)
{
	for (int i = 2; i < argc; i++) {
		if (!strcmp(argv[i], "--paused")) {
			o->paused = true;
			continue;
		}
		if (i + 1 >= argc)
			return usage("an option lacks its value");
		if (!strcmp(argv[i], "--snapshot"))
			o->snapshot = argv[i + 1];
		else if (!strcmp(argv[i], "--log"))
			o->log_file = argv[i + 1];
		i++;
	}
	return o->snapshot ? 0 : usage("restore needs --snapshot DIR");
}

static int parse_restore_overrides(int argc, char **argv, struct vm_config *cfg, struct opts *o)
{
	for (int i = 2; i < argc; i++) {
		if (!strcmp(argv[i], "--paused"))
			continue;
		if (!strcmp(argv[i], "--snapshot")) {
			i++;
			continue;
		}
		int r = common_option(cfg, o, argv[i], argv[i + 1], true);
		if (r < 0)
			return -r;
		if (r == 0 && restore_override(cfg, argv[i], argv[i + 1]))
			return VMM_EXIT_USAGE;
		i++;
	}
	return 0;
}

/* --- the VM ------------------------------------------------------------------ */

static int setup_logging(const struct opts *o, const struct vm_config *cfg)
{
	log_set_component("vmm");
	if (cfg && cfg->id)
		log_set_sandbox(cfg->id);
	if (o->log_file) {
		int fd = open(o->log_file, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
		if (fd < 0) {
			fprintf(stderr, "cube-vmm: --log %s: %s\n", o->log_file, strerror(errno));
			return -1;
		}
		log_set_fd(fd);
	}
	return 0;
}

/* Same order on boot and restore: a snapshot's device sections are matched
 * by position. */
static int create_devices(struct vm *vm, struct vm_config *cfg, char *err, size_t errsz)
{
	if (serial_create(vm, cfg->serial_out, err, errsz) < 0 || i8042_create(vm, err, errsz) < 0)
		return -1;
	for (int i = 0; i < cfg->nr_disks; i++)
		if (virtio_blk_create(vm, &cfg->disks[i], i, err, errsz) < 0)
			return -1;
	for (int i = 0; i < cfg->nr_nics; i++)
		if (virtio_net_create(vm, &cfg->nics[i], i, err, errsz) < 0)
			return -1;
	if (cfg->has_vsock && virtio_vsock_create(vm, &cfg->vsock, err, errsz) < 0)
		return -1;
	return 0;
}

static char *boot_cmdline(const struct vm_config *cfg)
{
	struct buf b = BUF_INIT;
	buf_puts(&b, DEFAULT_CMDLINE);
	if (cfg->nr_disks)
		buf_puts(&b, " " DEFAULT_ROOT);
	if (cfg->cmdline && *cfg->cmdline)
		buf_printf(&b, " %s", cfg->cmdline);
	return buf_steal(&b);
}

static void on_signal(void *arg, int signo)
{
	struct vm *vm = arg;
	log_info("vm.signal", "%s received: shutting down", signo == SIGTERM ? "SIGTERM" : "SIGINT");
	vm_request_exit(vm, VMM_EXIT_OK);
}

/* Runs the loop until the VM ends; returns the exit code. */
static int run_vm(struct vm *vm, struct loop *loop, struct vm_config *cfg, bool paused)
{
	char err[512];
	struct control *ctl = NULL;
	if (cfg->control_path && !(ctl = control_open(vm, cfg->control_path, err, sizeof err))) {
		log_error("vm.exit", "%s", err);
		return VMM_EXIT_HOST;
	}
	loop_on_signal(loop, SIGTERM, on_signal, vm);
	loop_on_signal(loop, SIGINT, on_signal, vm);
	if (paused)
		vm_pause(vm);
	if (vm_start_vcpus(vm) == 0) {
		log_info("vm.start", "%d vCPU(s), %" PRIu64 " MiB%s", vm->nr_vcpus, vm->mem.size >> 20,
			 paused ? ", paused" : "");
		loop_run(loop);
	}
	int code = vm->exit_code;
	control_close(ctl);
	vm_destroy(vm);
	log_info("vm.exit", "exit code %d: %s", code, exit_reason(code));
	return code;
}

static int fail(int code, const char *what, const char *err)
{
	log_error("vm.exit", "%s: %s (exit code %d: %s)", what, err, code, exit_reason(code));
	return code;
}

static int cmd_run(int argc, char **argv)
{
	static struct vm vm;
	struct vm_config cfg = {.nr_vcpus = 1, .mem_bytes = (uint64_t)DEFAULT_MEM_MIB << 20};
	struct opts o = {0};
	int r = parse_run_args(argc, argv, &cfg, &o);
	if (r)
		return r;
	if (setup_logging(&o, &cfg) < 0)
		return VMM_EXIT_USAGE;
	char err[512];
	struct loop *loop = loop_new();
	if (!loop || vm_init(&vm, &cfg, loop, -1, err, sizeof err) < 0)
		return fail(VMM_EXIT_HOST, "vm_init", loop ? err : "no event loop");
	if (create_devices(&vm, &cfg, err, sizeof err) < 0)
		return fail(VMM_EXIT_HOST, "devices", err);
	char *cmdline = boot_cmdline(&cfg);
	r = boot_linux(&vm, cmdline, err, sizeof err);
	free(cmdline);
	if (r < 0)
		return fail(VMM_EXIT_HOST, "boot", err);
	r = run_vm(&vm, loop, &cfg, false);
	loop_free(loop);
	vm_config_free(&cfg);
	return r;
}

static int snapshot_code(int r)
{
	return r == SNAPSHOT_ERR_BAD ? VMM_EXIT_BAD_SNAPSHOT : VMM_EXIT_HOST;
}

static int cmd_restore(int argc, char **argv)
{
	static struct vm vm;
	struct vm_config cfg;
	struct opts o = {0};
	int r = find_snapshot_arg(argc, argv, &o);
	if (r)
		return r;
	if (setup_logging(&o, NULL) < 0)
		return VMM_EXIT_USAGE;
	char err[512];
	uint64_t t0 = mono_ms();
	r = snapshot_load_config(o.snapshot, &cfg, err, sizeof err);
	if (r < 0)
		return fail(snapshot_code(r), "snapshot", err);
	/* The console file, the control socket and the vsock socket belong to
	 * the process that made the snapshot: a clone gets its own only if
	 * asked for, and must be given a vsock socket (taking over the
	 * original's would cut its agent off). */
	free(cfg.serial_out);
	free(cfg.control_path);
	free(cfg.vsock.uds_path);
	cfg.serial_out = cfg.control_path = cfg.vsock.uds_path = NULL;
	if (restore_disk_layers(&cfg, o.snapshot, err, sizeof err) < 0)
		return fail(VMM_EXIT_BAD_SNAPSHOT, "snapshot", err);
	o.nr_nets = 0;
	r = parse_restore_overrides(argc, argv, &cfg, &o);
	if (r)
		return r;
	if (cfg.has_vsock && !cfg.vsock.uds_path)
		return usage(
		    "restore: the snapshot has a vsock device; give the clone its socket with --vsock-uds PATH");
	if (cfg.id)
		log_set_sandbox(cfg.id);
	int mem_fd = snapshot_open_memory(o.snapshot, cfg.mem_bytes, err, sizeof err);
	if (mem_fd < 0)
		return fail(snapshot_code(mem_fd), "snapshot memory", err);
	struct loop *loop = loop_new();
	if (!loop || vm_init(&vm, &cfg, loop, mem_fd, err, sizeof err) < 0)
		return fail(VMM_EXIT_HOST, "vm_init", loop ? err : "no event loop");
	if (create_devices(&vm, &cfg, err, sizeof err) < 0)
		return fail(VMM_EXIT_HOST, "devices", err);
	r = snapshot_restore(&vm, o.snapshot, err, sizeof err);
	if (r < 0)
		return fail(snapshot_code(r), "restore", err);
	log_info("vm.restore", "restored %s in %llu ms", o.snapshot, (unsigned long long)(mono_ms() - t0));
	r = run_vm(&vm, loop, &cfg, o.paused);
	loop_free(loop);
	vm_config_free(&cfg);
	return r;
}

static int cmd_ctl(int argc, char **argv)
{
	if (argc < 4)
		return usage("ctl needs SOCKET and OP");
	const char *op = argv[3], *arg = argc > 4 ? argv[4] : NULL;
	if (!strcmp(op, "snapshot") && !arg)
		return usage("ctl SOCKET snapshot DIR");
	return control_request(argv[2], op, arg) == 0 ? 0 : 1;
}

int main(int argc, char **argv)
{
	signal(SIGPIPE, SIG_IGN);
	if (argc < 2)
		return usage(NULL);
	if (!strcmp(argv[1], "run"))
		return cmd_run(argc, argv);
	if (!strcmp(argv[1], "restore"))
		return cmd_restore(argc, argv);
	if (!strcmp(argv[1], "ctl"))
		return cmd_ctl(argc, argv);
	if (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h")) {
		fputs(usage_text, stdout);
		return 0;
	}
	return usage("unknown command");
}
