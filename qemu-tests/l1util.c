/*
 * l1util - the few things the harness's shell scripts inside L1 cannot do
 * with busybox alone.
 *
 *   l1util now                 CLOCK_MONOTONIC in ms (busybox date has no %N)
 *   l1util cp-sparse SRC DST   copy, leaving runs of zero blocks as holes (a
 *                              disk image read from a block device stays small
 *                              on tmpfs; busybox cp fills every hole)
 *   l1util flip FILE OFFSET    XOR one byte with 0xff (corrupt-snapshot tests)
 *   l1util put32 FILE OFFSET V write a little-endian u32 (a foreign version)
 *   l1util mem PID             "rss_kb=.. pss_kb=.. uss_kb=.." of a process
 *   l1util kvm                 /dev/kvm opens, API version 12, a VM can be created
 */
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <time.h>
#include <unistd.h>
#include <linux/kvm.h>

#define BLOCK 4096

static int fail(const char *what, const char *path)
{
	fprintf(stderr, "l1util: %s %s: %s\n", what, path, strerror(errno));
	return 1;
}

static int cmd_now(void)
{
	struct timespec t;
	clock_gettime(CLOCK_MONOTONIC, &t);
	printf("%llu\n", (unsigned long long)t.tv_sec * 1000 + (unsigned long long)t.tv_nsec / 1000000);
	return 0;
}

static int all_zero(const char *p, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if (p[i])
			return 0;
	return 1;
}

static int cmd_cp_sparse(const char *src, const char *dst)
{
	int in = open(src, O_RDONLY | O_CLOEXEC);
	if (in < 0)
		return fail("open", src);
	int out = open(dst, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	if (out < 0)
		return fail("create", dst);
	static char b[BLOCK * 64];
	off_t size = 0;
	for (;;) {
		ssize_t n = read(in, b, sizeof b);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return fail("read", src);
		if (n == 0)
			break;
		for (ssize_t off = 0; off < n; off += BLOCK) {
			size_t len = (size_t)(n - off) < BLOCK ? (size_t)(n - off) : BLOCK;
			if (!all_zero(b + off, len) && pwrite(out, b + off, len, size + off) != (ssize_t)len)
				return fail("write", dst);
		}
		size += n;
	}
	if (ftruncate(out, size) < 0 || close(out) < 0)
		return fail("finish", dst);
	close(in);
	return 0;
}

static int patch(const char *path, const char *offset, const void *bytes, size_t n, int xor_ff)
{
	int fd = open(path, O_RDWR | O_CLOEXEC);
	if (fd < 0)
		return fail("open", path);
	off_t off = strtoll(offset, NULL, 0);
	unsigned char b[8];
	if (n > sizeof b || pread(fd, b, n, off) != (ssize_t)n)
		return fail("read", path);
	for (size_t i = 0; i < n; i++)
		b[i] = xor_ff ? b[i] ^ 0xff : ((const unsigned char *)bytes)[i];
	if (pwrite(fd, b, n, off) != (ssize_t)n)
		return fail("write", path);
	close(fd);
	return 0;
}

static int cmd_put32(const char *path, const char *offset, const char *value)
{
	uint32_t v = (uint32_t)strtoul(value, NULL, 0);
	unsigned char le[4] = {(unsigned char)v, (unsigned char)(v >> 8), (unsigned char)(v >> 16),
			       (unsigned char)(v >> 24)};
	return patch(path, offset, le, 4, 0);
}

/* Sums "Name: N kB" lines of a /proc file into the named totals. */
static long field_kb(const char *path, const char *name)
{
	FILE *f = fopen(path, "r");
	if (!f)
		return -1;
	char line[256];
	long total = -1;
	size_t n = strlen(name);
	while (fgets(line, sizeof line, f))
		if (strncmp(line, name, n) == 0 && line[n] == ':')
			total = (total < 0 ? 0 : total) + atol(line + n + 1);
	fclose(f);
	return total;
}

/* USS: pages only this process maps (private clean + private dirty). */
static int cmd_mem(const char *pid)
{
	char path[64];
	snprintf(path, sizeof path, "/proc/%s/smaps_rollup", pid);
	long rss = field_kb(path, "Rss"), pss = field_kb(path, "Pss");
	long uss = field_kb(path, "Private_Clean") + field_kb(path, "Private_Dirty");
	if (rss < 0 || pss < 0)
		return fail("read", path);
	printf("rss_kb=%ld pss_kb=%ld uss_kb=%ld\n", rss, pss, uss);
	return 0;
}

static int cmd_kvm(void)
{
	int kvm = open("/dev/kvm", O_RDWR | O_CLOEXEC);
	if (kvm < 0)
		return fail("open", "/dev/kvm");
	int api = ioctl(kvm, KVM_GET_API_VERSION, 0);
	int vm = ioctl(kvm, KVM_CREATE_VM, 0);
	int irqchip = vm >= 0 ? ioctl(vm, KVM_CREATE_IRQCHIP, 0) : -1;
	int vcpu = vm >= 0 ? ioctl(vm, KVM_CREATE_VCPU, 0) : -1;
	printf("api=%d vm=%s irqchip=%s vcpu=%s\n", api, vm >= 0 ? "ok" : "fail", irqchip == 0 ? "ok" : "fail",
	       vcpu >= 0 ? "ok" : "fail");
	return api == KVM_API_VERSION && vm >= 0 && irqchip == 0 && vcpu >= 0 ? 0 : 1;
}

int main(int argc, char **argv)
{
	const char *c = argc > 1 ? argv[1] : "";
	if (!strcmp(c, "now") && argc == 2)
		return cmd_now();
	if (!strcmp(c, "cp-sparse") && argc == 4)
		return cmd_cp_sparse(argv[2], argv[3]);
	if (!strcmp(c, "flip") && argc == 4)
		return patch(argv[2], argv[3], NULL, 1, 1);
	if (!strcmp(c, "put32") && argc == 5)
		return cmd_put32(argv[2], argv[3], argv[4]);
	if (!strcmp(c, "mem") && argc == 3)
		return cmd_mem(argv[2]);
	if (!strcmp(c, "kvm") && argc == 2)
		return cmd_kvm();
	fprintf(stderr, "usage: l1util now | cp-sparse SRC DST | flip FILE OFF | put32 FILE OFF V | mem PID | kvm\n");
	return 2;
}
