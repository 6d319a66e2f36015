/* test_disk.c - the layered copy-on-write disk (vmm/virtio/disk.c). */
#include "../virtio/disk.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include "../../lib/tests/test.h"

#define BASE_SIZE (64 * 1024 + 1000) /* not a whole number of clusters */

static char dir[] = "/tmp/test_disk.XXXXXX";
static char base_path[256], layer_path[256], frozen_path[256];
static uint8_t base_data[BASE_SIZE];
static char err[512];

static void make_base(void)
{
	if (!base_path[0]) {
		if (!mkdtemp(dir))
			abort();
		snprintf(base_path, sizeof(base_path), "%s/base.img", dir);
		snprintf(layer_path, sizeof(layer_path), "%s/top.layer", dir);
		snprintf(frozen_path, sizeof(frozen_path), "%s/frozen.layer", dir);
	}
	for (size_t i = 0; i < BASE_SIZE; i++)
		base_data[i] = (uint8_t)(i * 7 + 3);
	int fd = open(base_path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
	CHECK(fd >= 0 && write(fd, base_data, BASE_SIZE) == BASE_SIZE);
	close(fd);
	unlink(layer_path);
	unlink(frozen_path);
}

static bool base_untouched(void)
{
	static uint8_t now[BASE_SIZE + 1];
	int fd = open(base_path, O_RDONLY);
	ssize_t n = read(fd, now, sizeof(now));
	close(fd);
	return n == BASE_SIZE && memcmp(now, base_data, BASE_SIZE) == 0;
}

static struct disk_config cfg(char *layer)
{
	struct disk_config c = {.base = base_path, .layer = layer};
	return c;
}

static bool reads_as(struct disk *d, uint64_t off, const void *want, size_t len)
{
	uint8_t got[16384];
	return disk_read(d, off, len, got) == 0 && memcmp(got, want, len) == 0;
}

TEST(reads_base_when_nothing_written)
{
	make_base();
	struct disk d;
	struct disk_config c = cfg(NULL);
	if (!CHECK_EQ_INT(disk_open(&d, &c, err, sizeof(err)), 0)) {
		fprintf(stderr, "%s\n", err);
		return;
	}
	CHECK_EQ_INT(d.size, BASE_SIZE);
	CHECK(reads_as(&d, 0, base_data, 4096));
	CHECK(reads_as(&d, BASE_SIZE - 100, base_data + BASE_SIZE - 100, 100));
	uint8_t b[8];
	CHECK_EQ_INT(disk_read(&d, BASE_SIZE - 4, 8, b), -1); /* past the end */
	disk_close(&d);
}

TEST(read_your_writes_base_untouched)
{
	make_base();
	struct disk d;
	struct disk_config c = cfg(NULL);
	CHECK_EQ_INT(disk_open(&d, &c, err, sizeof(err)), 0);
	uint8_t w[10000];
	memset(w, 0xab, sizeof(w));
	CHECK_EQ_INT(disk_write(&d, 5000, sizeof(w), w), 0); /* partial, full, partial clusters */
	CHECK(reads_as(&d, 5000, w, sizeof(w)));
	CHECK(reads_as(&d, 0, base_data, 5000));		      /* head of cluster 1 copied from base */
	CHECK(reads_as(&d, 15000, base_data + 15000, 16384 - 15000)); /* tail of cluster 3 */
	CHECK(base_untouched());
	/* The short last cluster. */
	CHECK_EQ_INT(disk_write(&d, BASE_SIZE - 10, 10, w), 0);
	CHECK(reads_as(&d, BASE_SIZE - 10, w, 10));
	CHECK(reads_as(&d, BASE_SIZE - 1000, base_data + BASE_SIZE - 1000, 990));
	CHECK_EQ_INT(disk_write(&d, BASE_SIZE - 10, 11, w), -1);
	CHECK_EQ_INT(disk_flush(&d), 0);
	CHECK(base_untouched());
	disk_close(&d);
}

TEST(reopen_persists)
{
	make_base();
	struct disk d;
	struct disk_config c = cfg(layer_path);
	CHECK_EQ_INT(disk_open(&d, &c, err, sizeof(err)), 0);
	CHECK_EQ_INT(disk_write(&d, 4096 * 3 + 17, 5, "hello"), 0);
	disk_close(&d);
	CHECK_EQ_INT(disk_open(&d, &c, err, sizeof(err)), 0);
	CHECK(reads_as(&d, 4096 * 3 + 17, "hello", 5));
	CHECK(reads_as(&d, 4096 * 3, base_data + 4096 * 3, 17));
	disk_close(&d);
	/* The layer file is sparse: far smaller than the disk. */
	struct stat st;
	CHECK(stat(layer_path, &st) == 0 && st.st_blocks * 512 < 64 * 1024);
	CHECK(base_untouched());
}

TEST(frozen_layer_under_a_new_top)
{
	make_base();
	struct disk d;
	struct disk_config c = cfg(layer_path);
	CHECK_EQ_INT(disk_open(&d, &c, err, sizeof(err)), 0);
	CHECK_EQ_INT(disk_write(&d, 0, 5, "first"), 0);
	CHECK_EQ_INT(disk_write(&d, 8192, 4, "keep"), 0);
	if (!CHECK_EQ_INT(disk_freeze(&d, dir, "frozen.layer", err, sizeof(err)), 0))
		fprintf(stderr, "%s\n", err);
	/* The running disk goes on; its later writes do not reach the frozen copy. */
	CHECK_EQ_INT(disk_write(&d, 0, 5, "later"), 0);
	CHECK(reads_as(&d, 0, "later", 5));
	disk_close(&d);

	/* A clone: new temporary top over the frozen layer over the base. */
	struct disk_config cc = cfg(NULL);
	cc.lower[0] = frozen_path;
	cc.nr_lower = 1;
	CHECK_EQ_INT(disk_open(&d, &cc, err, sizeof(err)), 0);
	CHECK(reads_as(&d, 0, "first", 5));
	CHECK(reads_as(&d, 5, base_data + 5, 100));
	CHECK(reads_as(&d, 8192, "keep", 4));
	CHECK_EQ_INT(disk_write(&d, 8194, 2, "XY"), 0); /* partial write filled from the lower layer */
	CHECK(reads_as(&d, 8192, "keXY", 4));
	CHECK(reads_as(&d, 8196, base_data + 8196, 4096 - 4));
	/* Freezing the clone flattens both layers into one. */
	CHECK_EQ_INT(disk_freeze(&d, dir, "frozen2.layer", err, sizeof(err)), 0);
	disk_close(&d);
	char p2[300];
	snprintf(p2, sizeof(p2), "%s/frozen2.layer", dir);
	cc.lower[0] = p2;
	CHECK_EQ_INT(disk_open(&d, &cc, err, sizeof(err)), 0);
	CHECK(reads_as(&d, 0, "first", 5));
	CHECK(reads_as(&d, 8192, "keXY", 4));
	disk_close(&d);
	unlink(p2);
	CHECK(base_untouched());
}

TEST(lower_layer_shows_through_two_levels)
{
	make_base();
	struct disk d;
	struct disk_config c = cfg(layer_path);
	CHECK_EQ_INT(disk_open(&d, &c, err, sizeof(err)), 0);
	CHECK_EQ_INT(disk_write(&d, 100, 3, "low"), 0);
	disk_close(&d);
	/* The old top becomes a lower layer below another lower layer. */
	CHECK_EQ_INT(rename(layer_path, frozen_path), 0);
	struct disk_config mid = cfg(layer_path);
	mid.lower[0] = frozen_path;
	mid.nr_lower = 1;
	CHECK_EQ_INT(disk_open(&d, &mid, err, sizeof(err)), 0);
	CHECK_EQ_INT(disk_write(&d, 5000, 3, "mid"), 0);
	disk_close(&d);
	char midp[300];
	snprintf(midp, sizeof(midp), "%s/mid.layer", dir);
	CHECK_EQ_INT(rename(layer_path, midp), 0);
	struct disk_config top = cfg(NULL);
	top.lower[0] = midp;
	top.lower[1] = frozen_path;
	top.nr_lower = 2;
	CHECK_EQ_INT(disk_open(&d, &top, err, sizeof(err)), 0);
	CHECK(reads_as(&d, 100, "low", 3));
	CHECK(reads_as(&d, 5000, "mid", 3));
	CHECK(reads_as(&d, 200, base_data + 200, 100));
	disk_close(&d);
	unlink(midp);
}

TEST(bad_layers_are_refused)
{
	make_base();
	int fd = open(layer_path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
	CHECK(write(fd, "NOTALAYER-----------------", 26) == 26);
	close(fd);
	struct disk d;
	struct disk_config c = cfg(layer_path);
	CHECK_EQ_INT(disk_open(&d, &c, err, sizeof(err)), -1);
	CHECK(strstr(err, "bad magic") != NULL);

	/* A layer made for a different base size. */
	unlink(layer_path);
	CHECK_EQ_INT(disk_open(&d, &c, err, sizeof(err)), 0);
	disk_close(&d);
	fd = open(base_path, O_WRONLY | O_APPEND);
	CHECK(write(fd, "x", 1) == 1);
	close(fd);
	CHECK_EQ_INT(disk_open(&d, &c, err, sizeof(err)), -1);
	CHECK(strstr(err, "base image is") != NULL);
	make_base();

	/* Wrong version. */
	CHECK_EQ_INT(disk_open(&d, &c, err, sizeof(err)), 0);
	disk_close(&d);
	fd = open(layer_path, O_WRONLY);
	uint32_t v = 99;
	CHECK(pwrite(fd, &v, 4, 8) == 4);
	close(fd);
	CHECK_EQ_INT(disk_open(&d, &c, err, sizeof(err)), -1);
	CHECK(strstr(err, "version 99") != NULL);

	/* A corrupt lower layer, and a missing one. */
	struct disk_config lc = cfg(NULL);
	lc.lower[0] = layer_path;
	lc.nr_lower = 1;
	CHECK_EQ_INT(disk_open(&d, &lc, err, sizeof(err)), -1);
	lc.lower[0] = "/nonexistent/x.layer";
	CHECK_EQ_INT(disk_open(&d, &lc, err, sizeof(err)), -1);
	CHECK(strstr(err, "/nonexistent/x.layer") != NULL);
	struct disk_config nb = {.base = "/nonexistent/base"};
	CHECK_EQ_INT(disk_open(&d, &nb, err, sizeof(err)), -1);
}

TEST(read_only_disk_refuses_writes)
{
	make_base();
	struct disk d;
	struct disk_config c = cfg(NULL);
	c.read_only = true;
	CHECK_EQ_INT(disk_open(&d, &c, err, sizeof(err)), 0);
	CHECK_EQ_INT(disk_write(&d, 0, 1, "x"), -1);
	CHECK(reads_as(&d, 0, base_data, 512));
	disk_close(&d);
	CHECK(base_untouched());
}

/* --- virtio-blk over the disk: the fake VM and driver of fake_guest.h (heap
 * RAM, real event loop, no KVM); each request is one three-descriptor chain
 * at descriptors 0..2, done before the next is posted. ------------------ */

#include "fake_guest.h"

#define HDR_GPA	 0x20000
#define DATA_GPA 0x30000
#define STAT_GPA 0x2f000

static struct gq blkq = {.index = 0};
static struct disk_config blk_cfg;

/* One request: header, data (len bytes, device-writable for IN), status.
 * Returns the status byte and the used length. */
static int blk_do(uint32_t type, uint64_t sector, uint32_t len, bool data_writable, uint32_t *used_len)
{
	struct {
		uint32_t type, reserved;
		uint64_t sector;
	} h = {type, 0, sector};
	memcpy(vm.mem.host + HDR_GPA, &h, 16);
	vm.mem.host[STAT_GPA] = 0xee;
	gq_put_desc(&blkq, 0, HDR_GPA, 16, VIRTQ_DESC_F_NEXT, len ? 1 : 2);
	gq_put_desc(&blkq, 1, DATA_GPA, len, VIRTQ_DESC_F_NEXT | (data_writable ? VIRTQ_DESC_F_WRITE : 0), 2);
	gq_put_desc(&blkq, 2, STAT_GPA, 1, VIRTQ_DESC_F_WRITE, 0);
	gq_publish(&blkq, 0);
	gq_kick(&blkq);
	uint32_t id;
	if (!gq_used(&blkq, 100, &id, used_len))
		return -1;
	return vm.mem.host[STAT_GPA];
}

static void *blk_dev;

static void blk_setup(bool read_only)
{
	make_base();
	fake_vm_init();
	blk_cfg = (struct disk_config){.base = base_path, .layer = layer_path, .read_only = read_only};
	CHECK_EQ_INT(virtio_blk_create(&vm, &blk_cfg, 0, err, sizeof(err)), 0);
	blk_dev = vm.devices[0].dev;
	CHECK_EQ_INT(mmio_r(0x008), 2);
	mmio_w(0x070, 3);
	CHECK(mmio_r(0x010) & (1u << 9)); /* FLUSH */
	CHECK_EQ_INT(!!(mmio_r(0x010) & (1u << 5)), read_only);
	driver_accept_version_1();
	gq_setup(&blkq);
	mmio_w(0x070, 15);
	uint64_t cap = 0;
	bus_access(&vm.mmio, VIRTIO_MMIO_BASE + 0x100, (uint8_t *)&cap, 8, false);
	CHECK_EQ_INT(cap, BASE_SIZE / 512);
}

static void blk_teardown(void)
{
	virtio_device_destroy(blk_dev);
	fake_vm_free();
}

TEST(blk_read_write_flush_id)
{
	blk_setup(false);
	uint32_t used;
	CHECK_EQ_INT(blk_do(0, 2, 1024, true, &used), 0); /* IN sectors 2..3 */
	CHECK_EQ_INT(used, 1025);
	CHECK_MEMEQ(vm.mem.host + DATA_GPA, 1024, base_data + 1024, 1024);
	memset(vm.mem.host + DATA_GPA, 0x77, 512);
	CHECK_EQ_INT(blk_do(1, 5, 512, false, &used), 0); /* OUT sector 5 */
	memset(vm.mem.host + DATA_GPA, 0, 4096);
	CHECK_EQ_INT(blk_do(0, 4, 2048, true, &used), 0);
	CHECK_MEMEQ(vm.mem.host + DATA_GPA, 512, base_data + 2048, 512);
	CHECK_EQ_INT(vm.mem.host[DATA_GPA + 512], 0x77);
	CHECK_EQ_INT(vm.mem.host[DATA_GPA + 1023], 0x77);
	CHECK_EQ_INT(blk_do(4, 0, 0, false, &used), 0); /* FLUSH */
	memset(vm.mem.host + DATA_GPA, 0, 20);
	CHECK_EQ_INT(blk_do(8, 0, 20, true, &used), 0); /* GET_ID */
	CHECK_STREQ((char *)vm.mem.host + DATA_GPA, "cube-vd0");
	CHECK(base_untouched());

	/* Beyond capacity, partial sectors, unknown types. */
	uint64_t cap = BASE_SIZE / 512;
	CHECK_EQ_INT(blk_do(0, cap, 512, true, &used), 1);
	CHECK_EQ_INT(blk_do(0, cap - 1, 1024, true, &used), 1);
	CHECK_EQ_INT(blk_do(1, UINT64_MAX, 512, false, &used), 1);
	CHECK_EQ_INT(blk_do(0, 0, 100, true, &used), 1);
	CHECK_EQ_INT(blk_do(99, 0, 0, false, &used), 2);
	CHECK_EQ_INT(blk_do(0, cap - 1, 512, true, &used), 0); /* the last sector is fine */
	blk_teardown();
}

TEST(blk_snapshot_freezes_layer_and_checks_restore_config)
{
	blk_setup(false);
	uint32_t used;
	memcpy(vm.mem.host + DATA_GPA, "snapshot-data", 13);
	CHECK_EQ_INT(blk_do(1, 8, 512, false, &used), 0);
	struct vm_device *d = &vm.devices[0];
	struct snap_w w;
	size_t start, plen;
	CHECK_EQ_INT(fake_save_device(d, &w, dir, &start, &plen), 0);
	char frozen[300];
	snprintf(frozen, sizeof(frozen), "%s/disk0.layer", dir);
	CHECK(access(frozen, R_OK) == 0);

	/* Loading into a disk that does not sit on the frozen layer is refused. */
	CHECK_EQ_INT(d->load(d->dev, w.b.data + start, plen, err, sizeof(err)), -1);
	CHECK(strstr(err, "disk0.layer") != NULL);
	/* The restore contract: same base, frozen layer as lower[0], a new top. */
	blk_cfg.lower[0] = frozen;
	blk_cfg.nr_lower = 1;
	CHECK_EQ_INT(d->load(d->dev, w.b.data + start, plen, err, sizeof(err)), 0);
	CHECK_EQ_INT(d->load(d->dev, w.b.data + start, plen - 1, err, sizeof(err)), -1);
	snap_w_free(&w);

	struct disk clone;
	struct disk_config cc = {.base = base_path, .lower = {frozen}, .nr_lower = 1};
	CHECK_EQ_INT(disk_open(&clone, &cc, err, sizeof(err)), 0);
	CHECK(reads_as(&clone, 8 * 512, "snapshot-data", 13));
	disk_close(&clone);
	unlink(frozen);
	blk_teardown();
}

TEST(blk_read_only)
{
	blk_setup(true);
	uint32_t used;
	CHECK_EQ_INT(blk_do(1, 0, 512, false, &used), 1);
	CHECK_EQ_INT(blk_do(0, 0, 512, true, &used), 0);
	CHECK(base_untouched());
	blk_teardown();
}

TEST(cleanup)
{
	unlink(base_path);
	unlink(layer_path);
	unlink(frozen_path);
	rmdir(dir);
}
