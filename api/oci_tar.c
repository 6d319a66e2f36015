/*
 * oci_tar.c - the tar push parser (see oci_tar.h). The extractor that writes
 * layers into a staging directory is in oci_unpack.c.
 */
#include "oci_tar.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../lib/buf.h"

#define BLOCK 512

enum tar_state { ST_HEADER, ST_DATA, ST_META, ST_PAD, ST_END, ST_FAILED };

/* What the metadata records ('x', 'L', 'K') said about the next entry. */
struct pending {
	char *path, *linkpath; /* pax */
	char *long_name, *long_link;
	bool has_size, has_uid, has_gid, has_mtime;
	uint64_t size;
	uint32_t uid, gid;
	int64_t mtime;
	uint32_t mtime_nsec;
	struct oci_tar_xattr xattrs[OCI_TAR_MAX_XATTRS];
	size_t nxattrs;
};

struct oci_tar {
	const struct oci_tar_ops *ops;
	void *arg;
	enum tar_state state;
	unsigned char hdr[BLOCK];
	size_t hdr_used;
	uint64_t left;	   /* data (or metadata) bytes of the current entry still to come */
	uint64_t pad;	   /* padding bytes after them */
	bool deliver;	   /* the current entry's data goes to ops->data */
	char meta_kind;	   /* ST_META: 'x', 'g', 'L' or 'K' */
	struct buf meta;   /* ST_META: the record being collected */
	struct pending pd; /* for the next entry */
	struct oci_tar_entry cur;
	char path[OCI_TAR_MAX_PATH + 1];
	char link[OCI_TAR_MAX_PATH + 1];
	uint64_t entries;
	char err[256];
};

struct oci_tar *oci_tar_new(const struct oci_tar_ops *ops, void *arg)
{
	struct oci_tar *t = calloc(1, sizeof *t);
	if (!t)
		return NULL;
	t->ops = ops;
	t->arg = arg;
	return t;
}

static void pending_clear(struct pending *pd)
{
	free(pd->path);
	free(pd->linkpath);
	free(pd->long_name);
	free(pd->long_link);
	for (size_t i = 0; i < pd->nxattrs; i++) {
		free(pd->xattrs[i].name);
		free(pd->xattrs[i].value);
	}
	memset(pd, 0, sizeof *pd);
}

void oci_tar_free(struct oci_tar *t)
{
	if (!t)
		return;
	pending_clear(&t->pd);
	buf_free(&t->meta);
	free(t);
}

uint64_t oci_tar_entries(const struct oci_tar *t)
{
	return t->entries;
}

static int fail(struct oci_tar *t, char *err, size_t errsz, const char *fmt, ...) __attribute__((format(printf, 4, 5)));
static int fail(struct oci_tar *t, char *err, size_t errsz, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(t->err, sizeof t->err, fmt, ap);
	va_end(ap);
	if (errsz)
		snprintf(err, errsz, "%s", t->err);
	t->state = ST_FAILED;
	errno = EINVAL;
	return -1;
}

/* A callback failed: its message is already in err. */
static int fail_cb(struct oci_tar *t, char *err, size_t errsz)
{
	if (errsz)
		snprintf(t->err, sizeof t->err, "%s", err);
	t->state = ST_FAILED;
	return -1;
}

/* --- header fields ----------------------------------------------------- */

/* Octal (space/NUL padded) or GNU base-256 (high bit of the first byte). */
static bool parse_number(const unsigned char *f, size_t n, uint64_t *out)
{
	uint64_t v = 0;
	if (f[0] & 0x80) {
		if (f[0] == 0xff)
			return false; /* negative: no size, id or time here needs one */
		v = f[0] & 0x7f;
		for (size_t i = 1; i < n; i++) {
			if (v >> 56)
				return false;
			v = v << 8 | f[i];
		}
		*out = v;
		return true;
	}
	size_t i = 0;
	while (i < n && (f[i] == ' ' || f[i] == '\0'))
		i++;
	for (; i < n && f[i] >= '0' && f[i] <= '7'; i++) {
		if (v >> 60)
			return false;
		v = v << 3 | (uint64_t)(f[i] - '0');
	}
	for (; i < n; i++)
		if (f[i] != ' ' && f[i] != '\0')
			return false;
	*out = v;
	return true;
}

static bool checksum_ok(const unsigned char *h)
{
	uint64_t want;
	if (!parse_number(h + 148, 8, &want))
		return false;
	uint64_t usum = 0;
	int64_t ssum = 0;
	for (int i = 0; i < BLOCK; i++) {
		unsigned char c = (i >= 148 && i < 156) ? ' ' : h[i];
		usum += c;
		ssum += (signed char)c; /* some old writers summed signed chars */
	}
	return want == usum || (int64_t)want == ssum;
}

static bool all_zero(const unsigned char *h)
{
	for (int i = 0; i < BLOCK; i++)
		if (h[i])
			return false;
	return true;
}

/* Copies a NUL-padded field of at most n bytes. */
static size_t field_copy(char *dst, const unsigned char *f, size_t n)
{
	size_t l = 0;
	while (l < n && f[l])
		l++;
	memcpy(dst, f, l);
	dst[l] = '\0';
	return l;
}

/* --- pax records ------------------------------------------------------- */

static bool parse_decimal(const char *s, size_t n, uint64_t *out)
{
	uint64_t v = 0;
	if (!n)
		return false;
	for (size_t i = 0; i < n; i++) {
		if (s[i] < '0' || s[i] > '9' || v > (UINT64_MAX - 9) / 10)
			return false;
		v = v * 10 + (uint64_t)(s[i] - '0');
	}
	*out = v;
	return true;
}

static char *dup_value(const char *v, size_t n)
{
	char *s = malloc(n + 1);
	if (!s)
		abort();
	memcpy(s, v, n);
	s[n] = '\0';
	return s;
}

/* "123.456789" seconds; the fraction is cut to nanoseconds. */
static bool parse_pax_time(const char *v, size_t n, int64_t *sec, uint32_t *nsec)
{
	size_t dot = 0;
	while (dot < n && v[dot] != '.')
		dot++;
	bool neg = n && v[0] == '-';
	uint64_t s;
	if (!parse_decimal(v + neg, dot - neg, &s) || s > INT64_MAX)
		return false;
	uint32_t ns = 0;
	for (size_t i = dot + 1, d = 0; i < n; i++, d++) {
		if (v[i] < '0' || v[i] > '9')
			return false;
		if (d < 9)
			ns = ns * 10 + (uint32_t)(v[i] - '0');
	}
	for (size_t d = dot + 1 < n ? n - dot - 1 : 0; d < 9; d++)
		ns *= 10;
	*sec = neg ? -(int64_t)s : (int64_t)s;
	*nsec = neg ? 0 : ns;
	return true;
}

static bool apply_pax_record(struct pending *pd, const char *k, size_t kl, const char *v, size_t vl)
{
	uint64_t num;
#define KEY(lit) (kl == sizeof(lit) - 1 && memcmp(k, lit, kl) == 0)
	if (KEY("path")) {
		free(pd->path);
		pd->path = dup_value(v, vl);
	} else if (KEY("linkpath")) {
		free(pd->linkpath);
		pd->linkpath = dup_value(v, vl);
	} else if (KEY("size")) {
		if (!parse_decimal(v, vl, &num))
			return false;
		pd->has_size = true;
		pd->size = num;
	} else if (KEY("uid") || KEY("gid")) {
		if (!parse_decimal(v, vl, &num) || num > UINT32_MAX)
			return false;
		if (k[0] == 'u') {
			pd->has_uid = true;
			pd->uid = (uint32_t)num;
		} else {
			pd->has_gid = true;
			pd->gid = (uint32_t)num;
		}
	} else if (KEY("mtime")) {
		if (!parse_pax_time(v, vl, &pd->mtime, &pd->mtime_nsec))
			return false;
		pd->has_mtime = true;
	} else if (kl > 12 && memcmp(k, "SCHILY.xattr.", 13) == 0 && kl > 13) {
		if (pd->nxattrs < OCI_TAR_MAX_XATTRS) {
			struct oci_tar_xattr *x = &pd->xattrs[pd->nxattrs++];
			x->name = dup_value(k + 13, kl - 13);
			x->value = dup_value(v, vl);
			x->len = vl;
		}
	}
#undef KEY
	return true;
}

/* Records are "<len> <key>=<value>\n", len counting the whole record. */
static bool parse_pax(struct pending *pd, const char *p, size_t n)
{
	while (n) {
		size_t sp = 0;
		while (sp < n && sp < 20 && p[sp] != ' ')
			sp++;
		uint64_t len;
		if (sp >= n || !parse_decimal(p, sp, &len) || len <= sp + 1 || len > n || p[len - 1] != '\n')
			return false;
		const char *k = p + sp + 1, *end = p + len - 1;
		const char *eq = memchr(k, '=', (size_t)(end - k));
		if (!eq || eq == k)
			return false;
		if (!apply_pax_record(pd, k, (size_t)(eq - k), eq + 1, (size_t)(end - eq - 1)))
			return false;
		p += len;
		n -= len;
	}
	return true;
}

/* --- entries ------------------------------------------------------------ */

static int finish_meta(struct oci_tar *t, char *err, size_t errsz)
{
	const char *p = t->meta.data ? t->meta.data : "";
	size_t n = t->meta.len;
	switch (t->meta_kind) {
	case 'x':
		if (!parse_pax(&t->pd, p, n))
			return fail(t, err, errsz, "malformed pax header in entry %llu",
				    (unsigned long long)t->entries + 1);
		break;
	case 'L':
	case 'K': {
		while (n && p[n - 1] == '\0')
			n--;
		char **slot = t->meta_kind == 'L' ? &t->pd.long_name : &t->pd.long_link;
		free(*slot);
		*slot = dup_value(p, n);
		break;
	}
	default: /* 'g': global pax headers carry nothing an image needs */ break;
	}
	buf_reset(&t->meta);
	return 0;
}

static int set_string(struct oci_tar *t, char *dst, const char *src, char *err, size_t errsz)
{
	size_t l = strlen(src);
	if (l > OCI_TAR_MAX_PATH)
		return fail(t, err, errsz, "entry %llu: name longer than %d bytes", (unsigned long long)t->entries + 1,
			    OCI_TAR_MAX_PATH);
	memcpy(dst, src, l + 1);
	return 0;
}

/* The entry's name: pax path, else GNU long name, else ustar prefix/name. */
static int entry_name(struct oci_tar *t, const unsigned char *h, bool posix, char *err, size_t errsz)
{
	if (t->pd.path)
		return set_string(t, t->path, t->pd.path, err, errsz);
	if (t->pd.long_name)
		return set_string(t, t->path, t->pd.long_name, err, errsz);
	char prefix[156], name[101];
	size_t pl = posix ? field_copy(prefix, h + 345, 155) : 0;
	field_copy(name, h, 100);
	if (pl)
		snprintf(t->path, sizeof t->path, "%s/%s", prefix, name);
	else
		snprintf(t->path, sizeof t->path, "%s", name);
	return 0;
}

static int entry_link(struct oci_tar *t, const unsigned char *h, char *err, size_t errsz)
{
	if (t->pd.linkpath)
		return set_string(t, t->link, t->pd.linkpath, err, errsz);
	if (t->pd.long_link)
		return set_string(t, t->link, t->pd.long_link, err, errsz);
	field_copy(t->link, h + 157, 100);
	return 0;
}

static int read_numbers(struct oci_tar *t, const unsigned char *h, char *err, size_t errsz)
{
	struct oci_tar_entry *e = &t->cur;
	uint64_t mode, uid, gid, size, mtime, maj, min;
	if (!parse_number(h + 100, 8, &mode) || !parse_number(h + 108, 8, &uid) || !parse_number(h + 116, 8, &gid) ||
	    !parse_number(h + 124, 12, &size) || !parse_number(h + 136, 12, &mtime))
		return fail(t, err, errsz, "entry %llu: malformed numeric field", (unsigned long long)t->entries + 1);
	/* Device numbers are only meaningful for devices; some writers leave
	 * garbage there otherwise. */
	if (!parse_number(h + 329, 8, &maj) || !parse_number(h + 337, 8, &min))
		maj = min = 0;
	e->mode = (uint32_t)(mode & 07777);
	e->uid = t->pd.has_uid ? t->pd.uid : (uint32_t)(uid > UINT32_MAX ? 0 : uid);
	e->gid = t->pd.has_gid ? t->pd.gid : (uint32_t)(gid > UINT32_MAX ? 0 : gid);
	e->size = t->pd.has_size ? t->pd.size : size;
	e->mtime = t->pd.has_mtime ? t->pd.mtime : (int64_t)(mtime > INT64_MAX ? 0 : mtime);
	e->mtime_nsec = t->pd.has_mtime ? t->pd.mtime_nsec : 0;
	e->devmajor = (uint32_t)(maj > UINT32_MAX ? 0 : maj);
	e->devminor = (uint32_t)(min > UINT32_MAX ? 0 : min);
	if (e->size > (UINT64_MAX >> 2))
		return fail(t, err, errsz, "entry %llu: size out of range", (unsigned long long)t->entries + 1);
	return 0;
}

static void start_body(struct oci_tar *t, uint64_t size, bool deliver)
{
	t->left = size;
	t->pad = (BLOCK - size % BLOCK) % BLOCK;
	t->deliver = deliver;
	t->state = size ? ST_DATA : (t->pad ? ST_PAD : ST_HEADER);
}

static int start_meta(struct oci_tar *t, char kind, const unsigned char *h, char *err, size_t errsz)
{
	uint64_t size;
	if (!parse_number(h + 124, 12, &size))
		return fail(t, err, errsz, "entry %llu: malformed size", (unsigned long long)t->entries + 1);
	if (size > OCI_TAR_MAX_META)
		return fail(t, err, errsz, "entry %llu: metadata record of %llu bytes is too large",
			    (unsigned long long)t->entries + 1, (unsigned long long)size);
	t->meta_kind = kind;
	buf_reset(&t->meta);
	start_body(t, size, false);
	if (size)
		t->state = ST_META;
	else if (finish_meta(t, err, errsz) < 0)
		return -1;
	return 0;
}

static int handle_header(struct oci_tar *t, char *err, size_t errsz)
{
	const unsigned char *h = t->hdr;
	if (all_zero(h)) {
		t->state = ST_END; /* the end-of-archive marker; what follows is padding */
		return 0;
	}
	if (!checksum_ok(h))
		return fail(t, err, errsz, "entry %llu: bad header checksum (not a tar stream, or corrupt)",
			    (unsigned long long)t->entries + 1);
	char type = (char)h[156];
	if (type == 'x' || type == 'g' || type == 'L' || type == 'K')
		return start_meta(t, type, h, err, errsz);
	bool posix = memcmp(h + 257, "ustar\0", 6) == 0;
	if (type == '\0' || type == '7')
		type = '0';
	if (entry_name(t, h, posix, err, errsz) < 0 || entry_link(t, h, err, errsz) < 0 ||
	    read_numbers(t, h, err, errsz) < 0)
		return -1;
	size_t pl = strlen(t->path);
	if (type == '0' && pl && t->path[pl - 1] == '/')
		type = '5'; /* pre-POSIX archives mark directories by the slash alone */
	if (type == 'S')
		return fail(t, err, errsz, "%s: sparse files are not supported", t->path);
	struct oci_tar_entry *e = &t->cur;
	e->path = t->path;
	e->linkpath = t->link;
	e->type = type;
	memcpy(e->xattrs, t->pd.xattrs, sizeof e->xattrs);
	e->nxattrs = t->pd.nxattrs;
	t->entries++;
	/* Only regular files have data; for other types the size field may
	 * still count bytes in the archive, which are skipped. */
	bool is_file = type == '0';
	int rc = t->ops->entry ? t->ops->entry(t->arg, e, err, errsz) : 0;
	uint64_t body = e->size;
	/* The xattrs were handed over by copy; the pending record is spent. */
	pending_clear(&t->pd);
	memset(e->xattrs, 0, sizeof e->xattrs);
	e->nxattrs = 0;
	if (rc < 0)
		return fail_cb(t, err, errsz);
	start_body(t, body, is_file);
	if (t->state == ST_HEADER && is_file && t->ops->done && t->ops->done(t->arg, err, errsz) < 0)
		return fail_cb(t, err, errsz);
	return 0;
}

static int entry_data_end(struct oci_tar *t, char *err, size_t errsz)
{
	if (t->deliver && t->ops->done && t->ops->done(t->arg, err, errsz) < 0)
		return fail_cb(t, err, errsz);
	return 0;
}

int oci_tar_feed(struct oci_tar *t, const void *data, size_t n, char *err, size_t errsz)
{
	const unsigned char *p = data;
	if (t->state == ST_FAILED) {
		if (errsz)
			snprintf(err, errsz, "%s", t->err);
		errno = EINVAL;
		return -1;
	}
	while (n) {
		switch (t->state) {
		case ST_HEADER: {
			size_t take = BLOCK - t->hdr_used < n ? BLOCK - t->hdr_used : n;
			memcpy(t->hdr + t->hdr_used, p, take);
			t->hdr_used += take;
			p += take;
			n -= take;
			if (t->hdr_used == BLOCK) {
				t->hdr_used = 0;
				if (handle_header(t, err, errsz) < 0)
					return -1;
			}
			break;
		}
		case ST_DATA:
		case ST_META: {
			size_t take = t->left < n ? (size_t)t->left : n;
			if (t->state == ST_META)
				buf_append(&t->meta, p, take);
			else if (t->deliver && t->ops->data && t->ops->data(t->arg, p, take, err, errsz) < 0)
				return fail_cb(t, err, errsz);
			p += take;
			n -= take;
			t->left -= take;
			if (t->left)
				break;
			bool meta = t->state == ST_META;
			t->state = t->pad ? ST_PAD : ST_HEADER;
			if (meta ? finish_meta(t, err, errsz) < 0 : entry_data_end(t, err, errsz) < 0)
				return -1;
			break;
		}
		case ST_PAD: {
			size_t take = t->pad < n ? (size_t)t->pad : n;
			p += take;
			n -= take;
			t->pad -= take;
			if (!t->pad)
				t->state = ST_HEADER;
			break;
		}
		case ST_END: return 0; /* trailing zero blocks and whatever padding the writer added */
		case ST_FAILED: return -1;
		}
	}
	return 0;
}

int oci_tar_finish(struct oci_tar *t, char *err, size_t errsz)
{
	if (t->state == ST_FAILED) {
		if (errsz)
			snprintf(err, errsz, "%s", t->err);
		return -1;
	}
	if (t->state == ST_END || (t->state == ST_HEADER && t->hdr_used == 0))
		return 0;
	return fail(t, err, errsz, "tar stream is truncated (after %llu entries)", (unsigned long long)t->entries);
}

int oci_tar_clean_path(const char *name, char *out)
{
	size_t o = 0;
	const char *p = name;
	if (!name[0] || name[0] == '/' || strlen(name) > OCI_TAR_MAX_PATH)
		return -1;
	while (*p) {
		while (*p == '/')
			p++;
		const char *s = p;
		while (*p && *p != '/')
			p++;
		size_t l = (size_t)(p - s);
		if (l == 0 || (l == 1 && s[0] == '.'))
			continue;
		if (l == 2 && s[0] == '.' && s[1] == '.')
			return -1;
		if (o)
			out[o++] = '/';
		memcpy(out + o, s, l);
		o += l;
	}
	out[o] = '\0';
	return 0;
}
