/*
 * disk.c - the layered copy-on-write disk; format and rules in disk.h.
 *
 * The bitmaps of all layers live in memory (32 KiB per GiB of disk); the
 * top layer's bitmap is also written through, one byte at a time, right
 * after the cluster it describes. A crash between the two can only lose a
 * write that was never flushed, which the guest must tolerate anyway.
 */
#include "disk.h"

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define HEADER_BYTES 4096u
#define BITMAP_OFF   HEADER_BYTES

/* On-disk header, little-endian (the host is x86). */
struct layer_header {
	char magic[8];
	uint32_t version;
	uint32_t cluster_size;
	uint64_t virtual_size;
	uint64_t bitmap_off;
	uint64_t bitmap_bytes;
	uint64_t data_off;
};

static void seterr(char *err, size_t errsz, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static void seterr(char *err, size_t errsz, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(err, errsz, fmt, ap);
	va_end(ap);
}

static bool bit_get(const uint8_t *bm, uint64_t c)
{
	return bm && (bm[c / 8] >> (c % 8)) & 1;
}

/* Moves exactly len bytes between buf and the file at off, going on after
 * short transfers and EINTR. A read meets zeros past the end of the file (a
 * sparse layer may end before its last cluster, a base is shorter than its
 * last cluster). */
static int pio_full(int fd, uint8_t *p, uint64_t len, uint64_t off, bool is_write)
{
	while (len) {
		ssize_t n = is_write ? pwrite(fd, p, len, (off_t)off) : pread(fd, p, len, (off_t)off);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			return -1;
		}
		if (n == 0 && !is_write) {
			memset(p, 0, len);
			return 0;
		}
		p += n;
		off += (uint64_t)n;
		len -= (uint64_t)n;
	}
	return 0;
}

static int pread_full(int fd, void *buf, uint64_t len, uint64_t off)
{
	return pio_full(fd, buf, len, off, false);
}

/* pio_full only reads from buf when is_write: casting const away is safe. */
static int pwrite_full(int fd, const void *buf, uint64_t len, uint64_t off)
{
	return pio_full(fd, (uint8_t *)buf, len, off, true);
}

static void geometry(struct disk *d, uint64_t size)
{
	d->size = size;
	d->nr_clusters = (size + DISK_CLUSTER_SIZE - 1) / DISK_CLUSTER_SIZE;
	d->bitmap_bytes = (d->nr_clusters + 7) / 8;
	d->data_off = (BITMAP_OFF + d->bitmap_bytes + DISK_CLUSTER_SIZE - 1) / DISK_CLUSTER_SIZE * DISK_CLUSTER_SIZE;
}

static struct layer_header header_for(const struct disk *d)
{
	struct layer_header h;
	memset(&h, 0, sizeof(h));
	memcpy(h.magic, DISK_LAYER_MAGIC, 8);
	h.version = DISK_LAYER_VERSION;
	h.cluster_size = DISK_CLUSTER_SIZE;
	h.virtual_size = d->size;
	h.bitmap_off = BITMAP_OFF;
	h.bitmap_bytes = d->bitmap_bytes;
	h.data_off = d->data_off;
	return h;
}

/* Writes a fresh, empty layer into fd (truncating it). */
static int layer_format(const struct disk *d, int fd)
{
	uint8_t block[HEADER_BYTES] = {0};
	struct layer_header h = header_for(d);
	memcpy(block, &h, sizeof(h));
	if (ftruncate(fd, 0) < 0 || pwrite_full(fd, block, sizeof(block), 0) < 0 ||
	    ftruncate(fd, (off_t)(d->data_off + d->nr_clusters * DISK_CLUSTER_SIZE)) < 0)
		return -1;
	return 0;
}

/* Checks fd's header against the disk and loads its bitmap. */
static int layer_load(struct disk *d, struct disk_layer *l, const char *path, char *err, size_t errsz)
{
	struct layer_header h;
	if (pread_full(l->fd, &h, sizeof(h), 0) < 0) {
		seterr(err, errsz, "layer %s: read header: %s", path, strerror(errno));
		return -1;
	}
	if (memcmp(h.magic, DISK_LAYER_MAGIC, 8) != 0) {
		seterr(err, errsz, "layer %s: not a disk layer (bad magic)", path);
		return -1;
	}
	if (h.version != DISK_LAYER_VERSION) {
		seterr(err, errsz, "layer %s: format version %u, this VMM reads %u", path, h.version,
		       DISK_LAYER_VERSION);
		return -1;
	}
	if (h.virtual_size != d->size) {
		seterr(err, errsz, "layer %s: made for a %llu-byte disk, the base image is %llu bytes", path,
		       (unsigned long long)h.virtual_size, (unsigned long long)d->size);
		return -1;
	}
	if (h.cluster_size != DISK_CLUSTER_SIZE || h.bitmap_off != BITMAP_OFF || h.bitmap_bytes != d->bitmap_bytes ||
	    h.data_off != d->data_off) {
		seterr(err, errsz, "layer %s: corrupt header (cluster size %u, offsets %llu/%llu/%llu)", path,
		       h.cluster_size, (unsigned long long)h.bitmap_off, (unsigned long long)h.bitmap_bytes,
		       (unsigned long long)h.data_off);
		return -1;
	}
	l->bitmap = calloc(1, d->bitmap_bytes ? d->bitmap_bytes : 1);
	if (!l->bitmap || pread_full(l->fd, l->bitmap, d->bitmap_bytes, BITMAP_OFF) < 0) {
		seterr(err, errsz, "layer %s: read bitmap: %s", path, strerror(errno ? errno : ENOMEM));
		return -1;
	}
	/* Bits past the last cluster would make reads look beyond the disk. */
	if (d->nr_clusters % 8)
		l->bitmap[d->bitmap_bytes - 1] &= (uint8_t)((1u << (d->nr_clusters % 8)) - 1);
	return 0;
}

static int open_temp_layer(void)
{
	const char *dir = getenv("TMPDIR");
	if (!dir || !*dir)
		dir = "/tmp";
	int fd = open(dir, O_TMPFILE | O_RDWR | O_CLOEXEC, 0600);
	if (fd >= 0)
		return fd;
	/* Filesystems without O_TMPFILE: create, then unlink at once. */
	char path[4096];
	snprintf(path, sizeof(path), "%s/cube-layer-XXXXXX", dir);
	fd = mkostemp(path, O_CLOEXEC);
	if (fd >= 0)
		unlink(path);
	return fd;
}

static int open_top(struct disk *d, const char *path, char *err, size_t errsz)
{
	if (!path) {
		d->top.fd = open_temp_layer();
		if (d->top.fd < 0) {
			seterr(err, errsz, "temporary disk layer: %s", strerror(errno));
			return -1;
		}
	} else {
		d->top.fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0644);
		if (d->top.fd < 0) {
			seterr(err, errsz, "layer %s: %s", path, strerror(errno));
			return -1;
		}
		struct stat st;
		if (fstat(d->top.fd, &st) < 0) {
			seterr(err, errsz, "layer %s: %s", path, strerror(errno));
			return -1;
		}
		if (st.st_size > 0) /* an existing layer: this VM's disk continues */
			return layer_load(d, &d->top, path, err, errsz);
	}
	if (layer_format(d, d->top.fd) < 0) {
		seterr(err, errsz, "layer %s: initialise: %s", path ? path : "(temporary)", strerror(errno));
		return -1;
	}
	d->top.bitmap = calloc(1, d->bitmap_bytes ? d->bitmap_bytes : 1);
	if (!d->top.bitmap) {
		seterr(err, errsz, "out of memory");
		return -1;
	}
	return 0;
}

int disk_open(struct disk *d, const struct disk_config *cfg, char *err, size_t errsz)
{
	memset(d, 0, sizeof(*d));
	d->base_fd = d->top.fd = -1;
	for (int i = 0; i < DISK_MAX_LOWER; i++)
		d->lower[i].fd = -1;
	if (!cfg->base) {
		seterr(err, errsz, "disk has no base image");
		return -1;
	}
	if (cfg->nr_lower < 0 || cfg->nr_lower > DISK_MAX_LOWER) {
		seterr(err, errsz, "disk %s: %d lower layers, at most %d", cfg->base, cfg->nr_lower, DISK_MAX_LOWER);
		return -1;
	}
	d->base_fd = open(cfg->base, O_RDONLY | O_CLOEXEC);
	if (d->base_fd < 0) {
		seterr(err, errsz, "base image %s: %s", cfg->base, strerror(errno));
		return -1;
	}
	off_t end = lseek(d->base_fd, 0, SEEK_END); /* works for block devices too */
	if (end <= 0 || (uint64_t)end > DISK_MAX_SIZE) {
		seterr(err, errsz, "base image %s: size %lld is empty or too large", cfg->base, (long long)end);
		goto fail;
	}
	d->base_size = (uint64_t)end;
	geometry(d, d->base_size);

	for (int i = 0; i < cfg->nr_lower; i++) {
		const char *path = cfg->lower[i];
		if (!path) {
			seterr(err, errsz, "disk %s: lower layer %d has no path", cfg->base, i);
			goto fail;
		}
		d->lower[i].fd = open(path, O_RDONLY | O_CLOEXEC);
		d->nr_lower = i + 1;
		if (d->lower[i].fd < 0) {
			seterr(err, errsz, "layer %s: %s", path, strerror(errno));
			goto fail;
		}
		if (layer_load(d, &d->lower[i], path, err, errsz) < 0)
			goto fail;
	}
	d->read_only = cfg->read_only;
	if (!d->read_only && open_top(d, cfg->layer, err, errsz) < 0)
		goto fail;
	return 0;
fail:
	disk_close(d);
	return -1;
}

/* The layer that holds cluster c, looking from the top (or from the first
 * lower layer), or NULL for the base. */
static struct disk_layer *holder(struct disk *d, uint64_t c, bool from_lower)
{
	if (!from_lower && d->top.fd >= 0 && bit_get(d->top.bitmap, c))
		return &d->top;
	for (int i = 0; i < d->nr_lower; i++)
		if (bit_get(d->lower[i].bitmap, c))
			return &d->lower[i];
	return NULL;
}

/* Reads n bytes at offset in of cluster c as seen from the top or from
 * just below it. */
static int read_piece(struct disk *d, uint64_t c, uint32_t in, uint32_t n, uint8_t *buf, bool from_lower)
{
	struct disk_layer *l = holder(d, c, from_lower);
	if (l)
		return pread_full(l->fd, buf, n, d->data_off + c * DISK_CLUSTER_SIZE + in);
	uint64_t off = c * DISK_CLUSTER_SIZE + in;
	return pread_full(d->base_fd, buf, n, off);
}

static bool in_range(const struct disk *d, uint64_t off, uint64_t len)
{
	return off <= d->size && len <= d->size - off;
}

/* How much of len bytes, starting at in within a cluster, lie in that cluster:
 * reads and writes go a cluster at a time. */
static uint32_t piece_len(uint32_t in, uint64_t len)
{
	uint32_t n = DISK_CLUSTER_SIZE - in;
	return n > len ? (uint32_t)len : n;
}

int disk_read(struct disk *d, uint64_t off, uint64_t len, void *buf)
{
	if (!in_range(d, off, len)) {
		errno = EINVAL;
		return -1;
	}
	uint8_t *p = buf;
	while (len) {
		uint64_t c = off / DISK_CLUSTER_SIZE;
		uint32_t in = off % DISK_CLUSTER_SIZE;
		uint32_t n = piece_len(in, len);
		if (read_piece(d, c, in, n, p, false) < 0)
			return -1;
		p += n;
		off += n;
		len -= n;
	}
	return 0;
}

/* Marks cluster c as held by the top layer, in memory and in the file. */
static int top_mark(struct disk *d, uint64_t c)
{
	d->top.bitmap[c / 8] |= (uint8_t)(1u << (c % 8));
	return pwrite_full(d->top.fd, &d->top.bitmap[c / 8], 1, BITMAP_OFF + c / 8);
}

int disk_write(struct disk *d, uint64_t off, uint64_t len, const void *buf)
{
	if (d->read_only || d->top.fd < 0) {
		errno = EROFS;
		return -1;
	}
	if (!in_range(d, off, len)) {
		errno = EINVAL;
		return -1;
	}
	const uint8_t *p = buf;
	uint8_t cluster[DISK_CLUSTER_SIZE];
	while (len) {
		uint64_t c = off / DISK_CLUSTER_SIZE;
		uint32_t in = off % DISK_CLUSTER_SIZE;
		uint32_t n = piece_len(in, len);
		uint64_t at = d->data_off + c * DISK_CLUSTER_SIZE;
		uint64_t cluster_len = d->size - c * DISK_CLUSTER_SIZE; /* the last cluster may be short */
		if (cluster_len > DISK_CLUSTER_SIZE)
			cluster_len = DISK_CLUSTER_SIZE;
		if (bit_get(d->top.bitmap, c) || (in == 0 && n == cluster_len)) {
			if (pwrite_full(d->top.fd, p, n, at + in) < 0)
				return -1;
		} else {
			/* Copy on write: the rest of the cluster comes from below. */
			if (read_piece(d, c, 0, DISK_CLUSTER_SIZE, cluster, true) < 0)
				return -1;
			memcpy(cluster + in, p, n);
			if (pwrite_full(d->top.fd, cluster, DISK_CLUSTER_SIZE, at) < 0)
				return -1;
		}
		if (!bit_get(d->top.bitmap, c) && top_mark(d, c) < 0)
			return -1;
		p += n;
		off += n;
		len -= n;
	}
	return 0;
}

int disk_flush(struct disk *d)
{
	if (d->top.fd < 0)
		return 0;
	return fdatasync(d->top.fd);
}

/* Copies every cluster held above the base into the layer at fd. */
static int freeze_into(struct disk *d, int fd, uint8_t *bitmap)
{
	uint8_t cluster[DISK_CLUSTER_SIZE];
	for (uint64_t byte = 0; byte < d->bitmap_bytes; byte++) {
		uint8_t any = d->top.bitmap ? d->top.bitmap[byte] : 0;
		for (int i = 0; i < d->nr_lower; i++)
			any |= d->lower[i].bitmap[byte];
		if (!any)
			continue;
		for (int b = 0; b < 8; b++) {
			if (!(any & (1u << b)))
				continue;
			uint64_t c = byte * 8 + (uint64_t)b;
			if (read_piece(d, c, 0, DISK_CLUSTER_SIZE, cluster, false) < 0 ||
			    pwrite_full(fd, cluster, DISK_CLUSTER_SIZE, d->data_off + c * DISK_CLUSTER_SIZE) < 0)
				return -1;
		}
		bitmap[byte] = any;
	}
	return pwrite_full(fd, bitmap, d->bitmap_bytes, BITMAP_OFF);
}

int disk_freeze(struct disk *d, const char *dir, const char *name, char *err, size_t errsz)
{
	char path[4096], tmp[4096];
	if ((size_t)snprintf(path, sizeof(path), "%s/%s", dir, name) >= sizeof(path) ||
	    (size_t)snprintf(tmp, sizeof(tmp), "%s.tmp", path) >= sizeof(tmp)) {
		seterr(err, errsz, "freeze: path too long");
		return -1;
	}
	int fd = open(tmp, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	if (fd < 0) {
		seterr(err, errsz, "freeze %s: %s", tmp, strerror(errno));
		return -1;
	}
	uint8_t *bitmap = calloc(1, d->bitmap_bytes ? d->bitmap_bytes : 1);
	int rc = -1;
	if (!bitmap)
		errno = ENOMEM;
	else if (layer_format(d, fd) == 0 && freeze_into(d, fd, bitmap) == 0 && fsync(fd) == 0 &&
		 rename(tmp, path) == 0)
		rc = 0;
	if (rc < 0) {
		seterr(err, errsz, "freeze %s: %s", path, strerror(errno));
		unlink(tmp);
	}
	free(bitmap);
	close(fd);
	if (rc == 0) {
		int dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
		if (dfd >= 0) {
			fsync(dfd); /* the rename itself must survive a crash */
			close(dfd);
		}
	}
	return rc;
}

static void layer_close(struct disk_layer *l)
{
	if (l->fd >= 0)
		close(l->fd);
	free(l->bitmap);
	l->fd = -1;
	l->bitmap = NULL;
}

void disk_close(struct disk *d)
{
	layer_close(&d->top);
	for (int i = 0; i < d->nr_lower; i++)
		layer_close(&d->lower[i]);
	d->nr_lower = 0;
	if (d->base_fd >= 0)
		close(d->base_fd);
	d->base_fd = -1;
}
