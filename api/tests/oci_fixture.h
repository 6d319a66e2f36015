/*
 * oci_fixture.h - builds tar streams, gzip and whole images in memory for
 * the image import tests (test_oci_tar.c, test_oci_registry.c), so every
 * fixture is made by the test itself and says what it contains.
 */
#ifndef CUBE_API_TESTS_OCI_FIXTURE_H
#define CUBE_API_TESTS_OCI_FIXTURE_H

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "../../lib/buf.h"
#include "../../lib/sha256.h"

struct tw_meta {
	unsigned mode, uid, gid;
	long long mtime;
	unsigned devmajor, devminor;
};

static const struct tw_meta tw_default = {0644, 0, 0, 1700000000, 0, 0};

static inline void tw_octal(char *f, size_t n, unsigned long long v)
{
	snprintf(f, n, "%0*llo", (int)n - 1, v);
}

/* One header (+ data, padded). name and link are cut to the ustar fields:
 * longer names need tw_pax or tw_gnu_long before. */
static inline void tw_raw(struct buf *b, const char *name, char type, const struct tw_meta *m, const char *link,
			  const void *data, size_t n)
{
	char h[512];
	memset(h, 0, sizeof h);
	strncpy(h, name, 100);
	tw_octal(h + 100, 8, m->mode);
	tw_octal(h + 108, 8, m->uid);
	tw_octal(h + 116, 8, m->gid);
	tw_octal(h + 124, 12, n);
	tw_octal(h + 136, 12, (unsigned long long)m->mtime);
	h[156] = type;
	if (link)
		strncpy(h + 157, link, 100);
	memcpy(h + 257,
	       "ustar\0"
	       "00",
	       8);
	tw_octal(h + 329, 8, m->devmajor);
	tw_octal(h + 337, 8, m->devminor);
	memset(h + 148, ' ', 8);
	unsigned sum = 0;
	for (int i = 0; i < 512; i++)
		sum += (unsigned char)h[i];
	snprintf(h + 148, 8, "%06o", sum);
	h[155] = ' ';
	buf_append(b, h, 512);
	if (n) {
		buf_append(b, data, n);
		static const char zeros[512];
		buf_append(b, zeros, (512 - n % 512) % 512);
	}
}

static inline void tw_file(struct buf *b, const char *name, const char *content, const struct tw_meta *m)
{
	tw_raw(b, name, '0', m ? m : &tw_default, NULL, content, strlen(content));
}

static inline void tw_dir(struct buf *b, const char *name, const struct tw_meta *m)
{
	static const struct tw_meta d = {0755, 0, 0, 1700000000, 0, 0};
	tw_raw(b, name, '5', m ? m : &d, NULL, NULL, 0);
}

static inline void tw_symlink(struct buf *b, const char *name, const char *target)
{
	static const struct tw_meta l = {0777, 0, 0, 1700000000, 0, 0};
	tw_raw(b, name, '2', &l, target, NULL, 0);
}

static inline void tw_hardlink(struct buf *b, const char *name, const char *target)
{
	tw_raw(b, name, '1', &tw_default, target, NULL, 0);
}

/* A pax 'x' header with one record, applying to the next entry. */
static inline void tw_pax(struct buf *b, const char *key, const char *value)
{
	char rec[8192];
	size_t body = strlen(key) + strlen(value) + 3; /* ' ', '=', '\n' */
	size_t len = body + 1;
	for (;;) { /* the length counts its own digits */
		size_t l = body + (size_t)snprintf(NULL, 0, "%zu", len);
		if (l == len)
			break;
		len = l;
	}
	snprintf(rec, sizeof rec, "%zu %s=%s\n", len, key, value);
	tw_raw(b, "././@PaxHeader", 'x', &tw_default, NULL, rec, strlen(rec));
}

/* A GNU long name ('L') or long link ('K') for the next entry. */
static inline void tw_gnu_long(struct buf *b, char kind, const char *value)
{
	tw_raw(b, "././@LongLink", kind, &tw_default, NULL, value, strlen(value) + 1);
}

static inline void tw_end(struct buf *b)
{
	static const char zeros[1024];
	buf_append(b, zeros, sizeof zeros);
}

/* gzip through the host's gzip command (tests only). */
static inline void gzip_buf(const struct buf *in, struct buf *out)
{
	char tmpl[] = "/tmp/oci-gz-XXXXXX";
	int fd = mkstemp(tmpl);
	if (fd < 0 || write(fd, in->data, in->len) != (ssize_t)in->len)
		abort();
	close(fd);
	char cmd[128];
	snprintf(cmd, sizeof cmd, "gzip -n -c %s", tmpl);
	FILE *p = popen(cmd, "r");
	if (!p)
		abort();
	char chunk[65536];
	size_t n;
	while ((n = fread(chunk, 1, sizeof chunk, p)) > 0)
		buf_append(out, chunk, n);
	pclose(p);
	unlink(tmpl);
}

static inline void digest_of(const void *p, size_t n, char out[72])
{
	uint8_t d[32];
	sha256(p, n, d);
	memcpy(out, "sha256:", 7);
	for (int i = 0; i < 32; i++)
		snprintf(out + 7 + 2 * i, 3, "%02x", d[i]);
}

/* A temporary directory, removed with rm_rf. */
static inline char *tmpdir_new(void)
{
	char *t = strdup("/tmp/oci-test-XXXXXX");
	if (!t || !mkdtemp(t))
		abort();
	return t;
}

static inline void rm_rf(const char *path)
{
	char cmd[600];
	snprintf(cmd, sizeof cmd, "rm -rf '%s'", path);
	if (system(cmd) != 0)
		fprintf(stderr, "rm -rf %s failed\n", path);
}

#endif
