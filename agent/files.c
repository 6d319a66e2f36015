/*
 * files.c - envd's file transfer endpoint, GET and POST /files.
 *
 *   GET  /files?path=P[&username=U]   the file's bytes (404 missing, 400 a directory)
 *   POST /files?path=P[&username=U]   application/octet-stream: the body is the file
 *   POST /files[?path=P][&username=U] multipart/form-data: every part named "file"
 *        is written to P, or, without P, to the part's filename, which is then
 *        the target path (that is how the SDKs send several files at once).
 *   -> 200 [{"path":"/abs","name":"base","type":"file"}]
 *
 * Paths resolve like everywhere in envd ("~", relative to the user's home,
 * "." and ".." lexically) and absolute paths are allowed: the boundary is the
 * user's own permissions, under which every file operation runs (fsutil.h).
 *
 * With an access token set, a request needs X-Access-Token or a signed URL:
 * signature=v1_<unpadded base64 of sha256("path:op:user:token[:exp]")>, with
 * op "read" or "write", path and user exactly as given in the query ("" when
 * absent) and exp the optional signature_expiration (unix seconds).
 *
 * Bodies arrive complete (large ones mmapped from a spool file), so multipart
 * is parsed in place (multipart.h) and each part written straight from the
 * request memory. A gzip Content-Encoding is inflated (lib/gunzip.h) to a temp
 * file first. This file holds the policy: access, targets, users, writing.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/xattr.h>
#include <time.h>
#include <unistd.h>

#include "../lib/b64.h"
#include "../lib/fileio.h"
#include "../lib/gunzip.h"
#include "../lib/sha256.h"
#include "fsutil.h"
#include "multipart.h"

#define METADATA_PREFIX	   "user.e2b."
#define METADATA_MAX_TOTAL 4096 /* envd: names + values must fit one ext4 xattr block */
#define METADATA_MAX_KEYS  64
#define GZ_MAX_INFLATED	   (64ull << 30) /* like the upload limit: the disk is the real bound */
#define SIZELESS_READ_MAX  (64u << 20)	 /* files that report size 0 (procfs) are read up to this */

/* --- small helpers ------------------------------------------------------------ */

/* Answers {"code":status,"message":...} with envd's status for an errno. */
static int status_from_errno(int err)
{
	switch (err) {
	case ENOENT: return 404;
	case EACCES:
	case EPERM:
	case EROFS: return 403;
	case ENOTDIR:
	case EISDIR:
	case ENAMETOOLONG:
	case ELOOP:
	case EINVAL: return 400;
	case ENOSPC:
	case EDQUOT: return 507;
	default: return 500;
	}
}

/* True if the raw (still encoded) value of query parameter name has a NUL. */
static bool query_value_has_nul(const char *query, const char *name)
{
	size_t nl = strlen(name);
	for (const char *p = query; p && *p;) {
		const char *amp = strchr(p, '&');
		size_t len = amp ? (size_t)(amp - p) : strlen(p);
		if (len > nl && !strncmp(p, name, nl) && p[nl] == '=') {
			for (size_t i = nl + 1; i + 2 < len; i++)
				if (p[i] == '%' && p[i + 1] == '0' && p[i + 2] == '0')
					return true;
		}
		p = amp ? amp + 1 : NULL;
	}
	return false;
}

static bool is_token_char(unsigned char ch)
{
	return ch > 0x20 && ch < 0x7f && !strchr("()<>@,;:\\\"/[]?=", ch);
}

/* Content-Disposition: inline; filename=... as Go's mime.FormatMediaType
 * writes it: a bare token, a quoted string, or RFC 2231 for non-ASCII. */
static void content_disposition(struct buf *b, const char *name)
{
	bool token = *name != 0, ascii = true;
	for (const unsigned char *p = (const unsigned char *)name; *p; p++) {
		if (!is_token_char(*p))
			token = false;
		if ((*p < 0x20 && *p != '\t') || *p > 0x7e)
			ascii = false;
	}
	buf_puts(b, "inline; filename");
	if (token) {
		buf_printf(b, "=%s", name);
	} else if (ascii) {
		buf_puts(b, "=\"");
		for (const char *p = name; *p; p++) {
			if (*p == '"' || *p == '\\')
				buf_putc(b, '\\');
			buf_putc(b, *p);
		}
		buf_putc(b, '"');
	} else {
		buf_puts(b, "*=utf-8''");
		for (const unsigned char *p = (const unsigned char *)name; *p; p++) {
			if (is_token_char(*p) && !strchr("*'%", *p))
				buf_putc(b, (char)*p);
			else
				buf_printf(b, "%%%02X", *p);
		}
	}
}

/* --- access --------------------------------------------------------------------- */

/* "v1_" + unpadded base64(sha256("path:op:user:token[:exp]")). */
static void expected_signature(struct buf *out, const char *path, const char *op, const char *user, const char *exp)
{
	struct buf raw = BUF_INIT;
	buf_printf(&raw, "%s:%s:%s:%s", path, op, user, agent.access_token);
	if (exp)
		buf_printf(&raw, ":%s", exp);
	uint8_t digest[SHA256_DIGEST_LEN];
	sha256(raw.data, raw.len, digest);
	/* the raw string holds the token: do not leave it in freed memory */
	memset(raw.data, 0, raw.len);
	buf_free(&raw);
	char enc[64];
	size_t n = b64_encode(digest, sizeof(digest), enc);
	while (n && enc[n - 1] == '=')
		n--;
	buf_puts(out, "v1_");
	buf_append(out, enc, n);
}

/* envd's rule: no token set -> open; X-Access-Token present -> it must match;
 * else a valid, unexpired signature for this path, operation and user. */
static bool files_authorized(struct http_conn *c, struct http_req *req, const char *path, const char *user,
			     const char *op)
{
	if (!agent.access_token)
		return true;
	if (http_req_header(req, "X-Access-Token"))
		return check_access_token(c, req);
	char *sig = http_query_get(req->query, "signature");
	char *exp = http_query_get(req->query, "signature_expiration");
	bool ok = false;
	if (!sig) {
		http_respond_error(c, 401, "missing signature query parameter (or X-Access-Token header)");
		goto out;
	}
	char expnum[24] = "";
	long long expiry = 0;
	if (exp) {
		char *end;
		errno = 0;
		expiry = strtoll(exp, &end, 10);
		if (!*exp || *end || errno) {
			http_respond_error(c, 400, "invalid signature_expiration '%s': expected unix seconds", exp);
			goto out;
		}
		snprintf(expnum, sizeof(expnum), "%lld", expiry); /* envd re-formats the parsed number */
	}
	for (char *p = sig; *p; p++)
		if (*p == ' ') /* an unencoded '+' in the query decodes to a space */
			*p = '+';
	struct buf want = BUF_INIT;
	expected_signature(&want, path ? path : "", op, user ? user : "", exp ? expnum : NULL);
	bool match = secret_equal(sig, want.data);
	buf_free(&want);
	if (!match)
		http_respond_error(c, 401, "invalid signature");
	else if (exp && expiry < (long long)time(NULL))
		http_respond_error(c, 401, "signature is already expired");
	else
		ok = true;
out:
	free(sig);
	free(exp);
	return ok;
}

/* --- GET -------------------------------------------------------------------------- */

/* For files whose size is unknown up front (procfs, sysfs report 0). */
static void respond_read_all(struct http_conn *c, int fd, const char *path)
{
	struct buf b = BUF_INIT;
	for (;;) {
		char *p = buf_reserve(&b, 64 * 1024);
		ssize_t n = read(fd, p, 64 * 1024);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			int err = errno;
			http_respond_error(c, err == EAGAIN ? 400 : status_from_errno(err), "error reading '%s': %s",
					   path, strerror(err));
			goto out;
		}
		if (n == 0)
			break;
		buf_commit(&b, (size_t)n);
		if (b.len > SIZELESS_READ_MAX) {
			http_respond_error(c, 500, "'%s' reports no size and is larger than %u bytes", path,
					   SIZELESS_READ_MAX);
			goto out;
		}
	}
	http_respond(c, 200, "application/octet-stream", b.data, b.len);
out:
	close(fd);
	buf_free(&b);
}

static void files_get(struct http_conn *c, const struct user *u, const char *qpath)
{
	char *path = path_resolve(qpath, u);
	fs_as_user(u);
	/* O_NONBLOCK: opening a FIFO must not stall the agent. */
	int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK);
	int err = errno;
	struct stat st;
	if (fd >= 0 && fstat(fd, &st) < 0) {
		err = errno;
		close(fd);
		fd = -1;
	}
	fs_as_root();
	if (fd < 0) {
		if (err == ENOENT || err == ENOTDIR)
			http_respond_error(c, 404, "path '%s' does not exist", path);
		else
			http_respond_error(c, status_from_errno(err), "cannot open '%s': %s", path, strerror(err));
		goto out;
	}
	if (S_ISDIR(st.st_mode)) {
		http_respond_error(c, 400, "path '%s' is a directory", path);
		close(fd);
		goto out;
	}
	if (!S_ISREG(st.st_mode)) {
		http_respond_error(c, 400, "path '%s' is not a regular file", path);
		close(fd);
		goto out;
	}
	fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) & ~O_NONBLOCK);

	struct buf h = BUF_INIT;
	content_disposition(&h, fs_basename(path));
	http_add_header(c, "Content-Disposition", h.data);
	char date[64];
	struct tm tm;
	gmtime_r(&st.st_mtim.tv_sec, &tm);
	strftime(date, sizeof(date), "%a, %d %b %Y %H:%M:%S GMT", &tm);
	http_add_header(c, "Last-Modified", date);
	buf_free(&h);
	if (st.st_size > 0)
		http_respond_fd(c, 200, "application/octet-stream", fd, (uint64_t)st.st_size);
	else
		respond_read_all(c, fd, path);
out:
	free(path);
}

/* --- metadata (X-Metadata-<key> headers -> user.e2b.<key> xattrs) ------------------ */

struct metadata {
	size_t n;
	char *keys[METADATA_MAX_KEYS];
	const char *values[METADATA_MAX_KEYS];
};

static void metadata_free(struct metadata *md)
{
	for (size_t i = 0; i < md->n; i++)
		free(md->keys[i]);
	md->n = 0;
}

static bool printable_ascii(const char *s)
{
	for (; *s; s++)
		if (*s < 0x20 || *s > 0x7e)
			return false;
	return true;
}

/* Collects and validates the metadata headers (first one of a name wins,
 * names lowercased, as envd). Answers 400 and returns false when invalid. */
static bool metadata_parse(struct http_conn *c, const struct http_req *req, struct metadata *md)
{
	static const char prefix[] = "x-metadata-";
	size_t plen = sizeof(prefix) - 1, total = 0;
	for (size_t i = 0; i < req->head.nheaders; i++) {
		const struct http_header *h = &req->head.headers[i];
		if (strncasecmp(h->name, prefix, plen) != 0 || !h->name[plen])
			continue;
		char *key = strdup(h->name + plen);
		if (!key)
			continue;
		for (char *p = key; *p; p++)
			*p = (char)(*p >= 'A' && *p <= 'Z' ? *p + 32 : *p);
		bool dup = false;
		for (size_t j = 0; j < md->n; j++)
			dup = dup || !strcmp(md->keys[j], key);
		if (dup) {
			free(key);
			continue;
		}
		const char *why = NULL;
		if (md->n == METADATA_MAX_KEYS)
			why = "too many metadata keys";
		else if (strlen(METADATA_PREFIX) + strlen(key) > 255)
			why = "metadata key too long";
		else if (!printable_ascii(key) || !printable_ascii(h->value))
			why = "metadata keys and values must be printable US-ASCII";
		total += strlen(METADATA_PREFIX) + strlen(key) + strlen(h->value);
		if (!why && total > METADATA_MAX_TOTAL)
			why = "total metadata size exceeds 4096 bytes";
		if (why) {
			http_respond_error(c, 400, "invalid metadata (%s): %s", key, why);
			free(key);
			metadata_free(md);
			return false;
		}
		md->keys[md->n] = key;
		md->values[md->n++] = h->value;
	}
	return true;
}

/* Replaces the file's user.e2b.* attributes with md (an overwrite keeps the
 * old xattrs across O_TRUNC, so stale keys are removed). Returns 0, 1 when
 * the filesystem has no xattrs (not an error), or -1 with errno. */
static int metadata_write(int fd, const struct metadata *md)
{
	char names[8192];
	ssize_t n = flistxattr(fd, names, sizeof(names));
	if (n < 0)
		return errno == ENOTSUP ? 1 : (errno == ERANGE ? 0 : -1);
	size_t plen = strlen(METADATA_PREFIX);
	for (ssize_t i = 0; i < n; i += (ssize_t)strlen(names + i) + 1) {
		const char *name = names + i;
		if (strncmp(name, METADATA_PREFIX, plen) != 0)
			continue;
		bool keep = false;
		for (size_t j = 0; j < md->n; j++)
			keep = keep || !strcmp(md->keys[j], name + plen);
		if (!keep && fremovexattr(fd, name) < 0 && errno != ENODATA)
			return -1;
	}
	for (size_t j = 0; j < md->n; j++) {
		char name[300];
		snprintf(name, sizeof(name), "%s%s", METADATA_PREFIX, md->keys[j]);
		if (fsetxattr(fd, name, md->values[j], strlen(md->values[j]), 0) < 0)
			return errno == ENOTSUP ? 1 : -1;
	}
	return 0;
}

/* --- writing one file ------------------------------------------------------------- */

struct upload {
	char *path; /* resolved target */
	const char *data;
	size_t len;
};

/* The parent directory of an absolute path. */
static char *dir_of(const char *path)
{
	const char *slash = strrchr(path, '/');
	return slash && slash != path ? strndup(path, (size_t)(slash - path)) : strdup("/");
}

/* Writes one upload as the current fs identity. On failure sets *status and
 * msg and returns false. */
static bool write_upload(const struct upload *up, const struct metadata *md, bool *md_persisted, int *status,
			 struct buf *msg)
{
	char *parent = dir_of(up->path);
	int fd = -1;
	bool ok = false;
	if (!parent || fs_mkdir_p(parent) < 0) {
		int err = parent ? errno : ENOMEM;
		*status = status_from_errno(err);
		buf_printf(msg, "cannot create directory '%s': %s", parent ? parent : up->path, strerror(err));
		goto out;
	}
	struct stat st;
	if (stat(up->path, &st) == 0 && S_ISDIR(st.st_mode)) {
		*status = 400;
		buf_printf(msg, "path is a directory: %s", up->path);
		goto out;
	}
	fd = open(up->path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOCTTY | O_NONBLOCK, 0644);
	if (fd < 0 || fstat(fd, &st) < 0) {
		int err = errno;
		*status = err == ENXIO ? 400 : status_from_errno(err);
		buf_printf(msg, "cannot open '%s' for writing: %s", up->path, strerror(err));
		goto out;
	}
	if (!S_ISREG(st.st_mode) && !S_ISCHR(st.st_mode)) {
		*status = 400;
		buf_printf(msg, "path '%s' is not a regular file", up->path);
		goto out;
	}
	fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) & ~O_NONBLOCK);
	int err = 0;
	const char *what = NULL;
	if (write_full(fd, up->data, up->len) < 0) {
		err = errno;
		what = "error writing";
	} else if (S_ISREG(st.st_mode)) {
		int m = metadata_write(fd, md);
		if (m < 0) {
			err = errno;
			what = "error writing metadata of";
		}
		*md_persisted = m == 0 && md->n;
	}
	if (!what) {
		if (close(fd) < 0) {
			err = errno;
			what = "error writing";
		}
		fd = -1;
	}
	if (what) {
		*status = status_from_errno(err);
		if (err == ENOSPC || err == EDQUOT) {
			buf_printf(msg, "not enough disk space to write %zu bytes to '%s' (partial file removed)",
				   up->len, up->path);
			if (S_ISREG(st.st_mode))
				unlink(up->path);
		} else {
			buf_printf(msg, "%s '%s': %s", what, up->path, strerror(err));
		}
		goto out;
	}
	ok = true;
out:
	if (fd >= 0)
		close(fd);
	free(parent);
	return ok;
}

/* Resolves and checks a target path; answers 400 and returns NULL if bad. */
static char *upload_target(struct http_conn *c, const struct user *u, const char *p, size_t n, const char *what)
{
	if (fs_path_bad(p, n)) {
		http_respond_error(c, 400, "%s is %s", what, n ? "not a valid path (contains NUL)" : "empty");
		return NULL;
	}
	char *s = strndup(p, n);
	char *path = s ? path_resolve(s, u) : NULL;
	free(s);
	if (!path)
		http_respond_error(c, 500, "out of memory");
	return path;
}

/* Writes every upload, then answers with their EntryInfo list. */
static void write_uploads(struct http_conn *c, const struct user *u, struct upload *ups, size_t n,
			  const struct metadata *md)
{
	struct buf out = BUF_INIT, msg = BUF_INIT;
	struct jw w;
	jw_init(&w, &out);
	jw_arr(&w);
	int status = 200;
	fs_as_user(u);
	for (size_t i = 0; i < n; i++) {
		bool md_persisted = false;
		if (!write_upload(&ups[i], md, &md_persisted, &status, &msg))
			break;
		jw_obj(&w);
		jw_kstr(&w, "path", ups[i].path);
		jw_kstr(&w, "name", fs_basename(ups[i].path));
		jw_kstr(&w, "type", "file");
		if (md_persisted) {
			jw_key(&w, "metadata");
			jw_obj(&w);
			for (size_t j = 0; j < md->n; j++)
				jw_kstr(&w, md->keys[j], md->values[j]);
			jw_end(&w);
		}
		jw_end(&w);
	}
	fs_as_root();
	jw_end(&w);
	if (status != 200) {
		log_info("files.write", "user=%s status=%d %s", u->name, status, msg.data);
		http_respond_error(c, status, "%s", msg.data);
	} else {
		http_respond(c, 200, "application/json", out.data, out.len);
	}
	buf_free(&out);
	buf_free(&msg);
}

/* --- multipart/form-data ----------------------------------------------------------- */

/* Collects the body's "file" parts (multipart.h) as uploads, in order. Answers
 * 400 and returns false when the body is malformed or a part cannot be used;
 * nothing has been written then. */
static bool multipart_uploads(struct http_conn *c, const char *body, size_t len, const char *ctype,
			      const struct user *u, const char *qpath, struct upload **ups_out, size_t *n_out)
{
	char *boundary = multipart_boundary(ctype);
	if (!boundary) {
		http_respond_error(c, 400, "malformed multipart body: Content-Type has no usable boundary parameter");
		return false;
	}
	struct multipart m;
	struct multipart_part part;
	multipart_begin(&m, body, len, boundary);
	free(boundary);
	size_t cap = 0, n = 0;
	struct upload *ups = NULL;
	int r;
	/* each part is checked as it comes, so the first problem in body order is the one reported */
	while ((r = multipart_next(&m, &part)) > 0) {
		if (!part.name || strcmp(part.name, "file") != 0) {
			multipart_part_free(&part);
			continue;
		}
		const char *target = qpath ? qpath : part.filename;
		if (!target) {
			http_respond_error(c, 400,
					   "multipart part has no filename; without a path query parameter "
					   "the filename is the target path");
			goto fail;
		}
		char *path = upload_target(c, u, target, strlen(target), qpath ? "path" : "part filename");
		if (!path)
			goto fail;
		for (size_t i = 0; i < n; i++) {
			if (!strcmp(ups[i].path, path)) {
				http_respond_error(c, 400,
						   "you cannot upload multiple files to the same path '%s' in one "
						   "upload request",
						   path);
				free(path);
				goto fail;
			}
		}
		if (n == cap) {
			cap = cap ? cap * 2 : 4;
			struct upload *grown = realloc(ups, cap * sizeof(*ups));
			if (!grown) {
				free(path);
				http_respond_error(c, 500, "out of memory");
				goto fail;
			}
			ups = grown;
		}
		ups[n++] = (struct upload){path, part.data, part.len};
		multipart_part_free(&part);
	}
	if (r < 0) {
		http_respond_error(c, 400, "malformed multipart body: %s", m.err);
		goto fail;
	}
	*ups_out = ups;
	*n_out = n;
	return true;
fail:
	multipart_part_free(&part);
	for (size_t i = 0; i < n; i++)
		free(ups[i].path);
	free(ups);
	return false;
}

/* --- Content-Encoding: gzip ---------------------------------------------------------------
 *
 * envd accepts gzip-compressed uploads (the SDKs' write(..., gzip=true)). The body is
 * inflated (lib/gunzip.h) into an unlinked temp file that is then mmapped, so octet-stream
 * and multipart are handled exactly as uncompressed bodies. */

/* Inflates body into an unlinked temp file and maps it. On failure answers
 * (400 bad data, 507 no space, 500 else) and returns false. */
static bool gunzip_body(struct http_conn *c, const char *body, size_t len, void **map, size_t *map_len)
{
	int fd = open("/tmp", O_TMPFILE | O_RDWR | O_CLOEXEC, 0600);
	if (fd < 0) {
		http_respond_error(c, 500, "cannot inflate the body: %s", strerror(errno));
		return false;
	}
	char err[128];
	uint64_t n = 0;
	int rc = gunzip_to_fd(body, len, fd, GZ_MAX_INFLATED, &n, err, sizeof(err));
	int werr = errno; /* of the failed write, for GUNZIP_ESINK */
	if (rc == GUNZIP_ESINK)
		http_respond_error(c, status_from_errno(werr), "%s: %s", err, strerror(werr));
	else if (rc == GUNZIP_ENOMEM)
		http_respond_error(c, 500, "cannot inflate the body: %s", strerror(ENOMEM));
	else if (rc != GUNZIP_OK)
		http_respond_error(c, 400, "error decompressing request body: %s", err);
	if (rc != GUNZIP_OK)
		goto fail;
	*map_len = (size_t)n;
	*map = n ? mmap(NULL, (size_t)n, PROT_READ, MAP_SHARED, fd, 0) : NULL;
	if (*map == MAP_FAILED) {
		http_respond_error(c, 500, "cannot map the inflated body: %s", strerror(errno));
		goto fail;
	}
	close(fd);
	return true;
fail:
	close(fd);
	return false;
}

/* --- POST ---------------------------------------------------------------------------- */

/* The media type of a Content-Type, lowercased, without parameters. */
static void media_type(const char *ct, char *out, size_t outsz)
{
	size_t o = 0;
	while (ct && (*ct == ' ' || *ct == '\t'))
		ct++;
	for (; ct && *ct && *ct != ';' && *ct != ' ' && o + 1 < outsz; ct++)
		out[o++] = (char)(*ct >= 'A' && *ct <= 'Z' ? *ct + 32 : *ct);
	out[o] = 0;
}

static void files_post(struct http_conn *c, struct http_req *req, const struct user *u, const char *qpath)
{
	const char *body = req->body;
	size_t len = req->body_len;
	void *inflated = NULL;
	size_t inflated_len = 0;
	struct upload *ups = NULL;
	size_t n = 0;
	struct metadata md = {0};
	if (!metadata_parse(c, req, &md))
		return;
	const char *enc = http_req_header(req, "Content-Encoding");
	if (enc && *enc && strcasecmp(enc, "identity") != 0) {
		if (strcasecmp(enc, "gzip") != 0 && strcasecmp(enc, "x-gzip") != 0) {
			http_respond_error(c, 400, "unsupported Content-Encoding '%s', supported: gzip", enc);
			goto out;
		}
		if (!gunzip_body(c, body, len, &inflated, &inflated_len))
			goto out;
		body = inflated ? inflated : "";
		len = inflated_len;
	}
	const char *ct = http_req_header(req, "Content-Type");
	char mt[64];
	media_type(ct, mt, sizeof(mt));
	if (!strcmp(mt, "application/octet-stream")) {
		if (!qpath) {
			http_respond_error(c, 400, "path query parameter is required for raw body upload");
			goto out;
		}
		char *path = upload_target(c, u, qpath, strlen(qpath), "path");
		if (!path)
			goto out;
		ups = calloc(1, sizeof(*ups));
		if (!ups) {
			free(path);
			http_respond_error(c, 500, "out of memory");
			goto out;
		}
		ups[0] = (struct upload){path, body, len};
		n = 1;
	} else if (!strncmp(mt, "multipart/", 10)) {
		if (!multipart_uploads(c, body, len, ct, u, qpath, &ups, &n))
			goto out;
	} else {
		http_respond_error(
		    c, 400, "unsupported content type '%s': expected multipart/form-data or application/octet-stream",
		    ct ? ct : "");
		goto out;
	}
	write_uploads(c, u, ups, n, &md);
out:
	for (size_t i = 0; i < n; i++)
		free(ups[i].path);
	free(ups);
	metadata_free(&md);
	if (inflated)
		munmap(inflated, inflated_len);
}

/* --- entry ----------------------------------------------------------------------------- */

void files_handle(struct http_conn *c, struct http_req *req)
{
	bool get = !strcmp(req->method, "GET") || !strcmp(req->method, "HEAD");
	if (!get && strcmp(req->method, "POST") != 0) {
		http_add_header(c, "Allow", "GET, HEAD, POST");
		http_respond_error(c, 405, "/files supports GET and POST, not %s", req->method);
		return;
	}
	char *path = http_query_get(req->query, "path");
	char *username = http_query_get(req->query, "username");
	struct user u;
	if (!files_authorized(c, req, path, username, get ? "read" : "write"))
		goto out;
	if (!request_user(c, req, username, &u))
		goto out;
	if (path && query_value_has_nul(req->query, "path")) {
		http_respond_error(c, 400, "path is not a valid path (contains NUL)");
		goto out;
	}
	if (get) {
		if (!path || !*path)
			http_respond_error(c, 400, "path query parameter is required");
		else
			files_get(c, &u, path);
	} else {
		files_post(c, req, &u, path);
	}
out:
	free(path);
	free(username);
}
