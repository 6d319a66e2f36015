/* test_snapfile.c - the state file: round trip, and every kind of damage refused with the right message. */
#include "../snapfile.h"

#include <fcntl.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include "../../lib/sha256.h"
#include "../../lib/tests/test.h"

/* A small file with three sections of different sizes, one of them empty. */
static void build(struct snap_w *w)
{
	snap_w_init(w);
	snap_w_begin(w, SNAP_CONFIG, 0);
	snap_w_put(w, "{\"vcpus\":1}", 11);
	snap_w_end(w);
	snap_w_begin(w, SNAP_VCPU, 3);
	snap_w_u32(w, 0xdeadbeef);
	snap_w_u64(w, 0x0123456789abcdefULL);
	snap_w_end(w);
	snap_w_begin(w, SNAP_DEVICE, 0);
	snap_w_end(w);
}

static char *read_file(const char *path, size_t *len)
{
	int fd = open(path, O_RDONLY);
	if (fd < 0)
		return NULL;
	struct stat st;
	fstat(fd, &st);
	char *p = malloc((size_t)st.st_size + 1);
	*len = (size_t)read(fd, p, (size_t)st.st_size);
	close(fd);
	return p;
}

/* Writes the sample through snap_w_write and returns the file's bytes. */
static uint8_t *sample_file(size_t *len)
{
	char dir[] = "/tmp/test_snapfile.XXXXXX";
	if (!mkdtemp(dir))
		return NULL;
	char path[256];
	snprintf(path, sizeof(path), "%s/state", dir);
	struct snap_w w;
	build(&w);
	int rc = snap_w_write(&w, path);
	snap_w_free(&w);
	uint8_t *data = rc == 0 ? (uint8_t *)read_file(path, len) : NULL;
	unlink(path);
	rmdir(dir);
	return data;
}

/* Recomputes the trailer so a deliberately malformed body gets past the checksum. */
static void reseal(uint8_t *d, size_t len)
{
	sha256(d, len - SNAP_TRAILER_LEN, d + len - SNAP_TRAILER_LEN);
}

static bool refused_with(const uint8_t *d, size_t len, const char *needle)
{
	struct snap_r r;
	char err[256] = "";
	int rc = snap_r_open(&r, d, len, err, sizeof(err));
	if (rc == 0) {
		snap_r_free(&r);
		return test_fail(__FILE__, __LINE__, "accepted a bad file (len %zu), wanted \"%s\"", len, needle);
	}
	if (!strstr(err, needle))
		return test_fail(__FILE__, __LINE__, "message \"%s\" does not say \"%s\"", err, needle);
	return true;
}

TEST(round_trip)
{
	size_t len = 0;
	uint8_t *d = sample_file(&len);
	if (!CHECK(d != NULL))
		return;
	CHECK(memcmp(d, SNAP_MAGIC, 8) == 0);
	struct snap_r r;
	char err[256] = "";
	if (!CHECK_EQ_INT(snap_r_open(&r, d, len, err, sizeof(err)), 0)) {
		fprintf(stderr, "  %s\n", err);
		free(d);
		return;
	}
	CHECK_EQ_INT(r.nr_sections, 3);
	CHECK_EQ_INT(snap_r_count(&r, SNAP_VCPU), 1);
	const struct snap_section *c = snap_r_find(&r, SNAP_CONFIG, 0);
	if (CHECK(c != NULL))
		CHECK_MEMEQ(c->data, c->len, "{\"vcpus\":1}", 11);
	CHECK(snap_r_find(&r, SNAP_VCPU, 0) == NULL);
	const struct snap_section *v = snap_r_find(&r, SNAP_VCPU, 3);
	if (CHECK(v != NULL)) {
		struct snap_cur cur;
		snap_cur_init(&cur, v->data, v->len);
		CHECK_EQ_INT(snap_cur_u32(&cur), 0xdeadbeef);
		CHECK(snap_cur_u64(&cur) == 0x0123456789abcdefULL);
		CHECK_EQ_INT(cur.left, 0);
		CHECK_EQ_INT(cur.bad, 0);
	}
	const struct snap_section *e = snap_r_find(&r, SNAP_DEVICE, 0);
	if (CHECK(e != NULL))
		CHECK_EQ_INT(e->len, 0);
	snap_r_free(&r);
	free(d);
}

TEST(write_replaces_atomically_and_leaves_no_temp)
{
	char dir[] = "/tmp/test_snapfile.XXXXXX";
	if (!CHECK(mkdtemp(dir) != NULL))
		return;
	char path[256];
	snprintf(path, sizeof(path), "%s/state", dir);
	for (int i = 0; i < 2; i++) {
		struct snap_w w;
		build(&w);
		CHECK_EQ_INT(snap_w_write(&w, path), 0);
		snap_w_free(&w);
	}
	char cmd[300];
	snprintf(cmd, sizeof(cmd), "test $(ls -A %s | wc -l) = 1", dir);
	CHECK_EQ_INT(system(cmd), 0);
	unlink(path);
	rmdir(dir);
	struct snap_w w;
	build(&w);
	CHECK_EQ_INT(snap_w_write(&w, "/nonexistent-dir/state"), -1);
	snap_w_free(&w);
}

TEST(cursor_never_reads_past_payload)
{
	uint8_t p[6] = {1, 0, 0, 0, 2, 0};
	struct snap_cur c;
	snap_cur_init(&c, p, sizeof(p));
	CHECK_EQ_INT(snap_cur_u32(&c), 1);
	CHECK_EQ_INT(snap_cur_u32(&c), 0); /* only 2 bytes left */
	CHECK_EQ_INT(c.bad, 1);
	uint8_t two[2] = {9, 9};
	CHECK_EQ_INT(snap_cur_get(&c, two, 2), -1); /* stays bad */
	CHECK(two[0] == 0 && two[1] == 0);
	CHECK(snap_cur_ptr(&c, 0) == NULL);
	snap_cur_init(&c, p, sizeof(p));
	CHECK(snap_cur_ptr(&c, UINT64_MAX) == NULL);
	CHECK_EQ_INT(snap_cur_get(&c, NULL, 1), -1);
}

TEST(every_flipped_byte_refused)
{
	size_t len = 0;
	uint8_t *d = sample_file(&len);
	if (!CHECK(d != NULL))
		return;
	for (size_t i = 0; i < len; i++) {
		d[i] ^= 0x40;
		const char *want = "checksum mismatch";
		if (i < 8)
			want = "bad magic";
		else if (i < 12)
			want = "version";
		else if (i >= 16 && i < 24)
			want = i == 16 ? "trailing garbage" : "truncated"; /* the length field */
		if (!refused_with(d, len, want))
			fprintf(stderr, "  at byte %zu\n", i);
		d[i] ^= 0x40;
	}
	free(d);
}

TEST(every_truncation_refused)
{
	size_t len = 0;
	uint8_t *d = sample_file(&len);
	if (!CHECK(d != NULL))
		return;
	for (size_t n = 0; n < len; n++) {
		uint8_t *copy = malloc(n ? n : 1); /* exact size so ASan catches over-reads */
		memcpy(copy, d, n);
		if (!refused_with(copy, n, "truncated"))
			fprintf(stderr, "  at length %zu\n", n);
		free(copy);
	}
	free(d);
}

TEST(trailing_garbage_refused)
{
	size_t len = 0;
	uint8_t *d = sample_file(&len);
	if (!CHECK(d != NULL))
		return;
	uint8_t *longer = calloc(1, len + 1);
	memcpy(longer, d, len);
	refused_with(longer, len + 1, "trailing garbage");
	free(longer);
	free(d);
}

TEST(other_version_names_both)
{
	size_t len = 0;
	uint8_t *d = sample_file(&len);
	if (!CHECK(d != NULL))
		return;
	d[8] = 7;
	reseal(d, len);
	refused_with(d, len, "version 7, this VMM reads version 1");
	free(d);
}

TEST(foreign_file_refused)
{
	const char *elf = "\x7f"
			  "ELF and some more bytes to make it long enough for a header........";
	refused_with((const uint8_t *)elf, strlen(elf), "bad magic");
	refused_with((const uint8_t *)"CUBE", 4, "truncated");
	refused_with((const uint8_t *)"", 0, "truncated");
}

/* Framing errors behind a valid checksum: only a buggy or hostile writer makes these. */
TEST(section_length_overflow_refused)
{
	size_t len = 0;
	uint8_t *d = sample_file(&len);
	if (!CHECK(d != NULL))
		return;
	/* First section's length field: header (24) + tag + index. */
	memset(d + SNAP_HEADER_LEN + 8, 0xff, 8);
	reseal(d, len);
	refused_with(d, len, "runs past the end");
	free(d);
}

TEST(section_count_mismatch_refused)
{
	size_t len = 0;
	uint8_t *d = sample_file(&len);
	if (!CHECK(d != NULL))
		return;
	d[12] = 2; /* three sections in the file */
	reseal(d, len);
	refused_with(d, len, "section count mismatch");
	d[12] = 4;
	reseal(d, len);
	refused_with(d, len, "section count mismatch");
	d[12] = 0xff;
	d[13] = 0xff;
	reseal(d, len);
	refused_with(d, len, "sections");
	free(d);
}

TEST(duplicate_section_refused)
{
	struct snap_w w;
	snap_w_init(&w);
	snap_w_begin(&w, SNAP_VCPU, 0);
	snap_w_begin(&w, SNAP_VCPU, 0); /* also checks begin closes the open section */
	char dir[] = "/tmp/test_snapfile.XXXXXX";
	if (!CHECK(mkdtemp(dir) != NULL))
		return;
	char path[256];
	snprintf(path, sizeof(path), "%s/state", dir);
	CHECK_EQ_INT(snap_w_write(&w, path), 0);
	snap_w_free(&w);
	size_t len = 0;
	uint8_t *d = (uint8_t *)read_file(path, &len);
	unlink(path);
	rmdir(dir);
	if (CHECK(d != NULL))
		refused_with(d, len, "duplicate section");
	free(d);
}
