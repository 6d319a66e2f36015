/*
 * oci_registry.c - the distribution spec v2 client: manifests and blobs,
 * with the token dance (401 + WWW-Authenticate: Bearer -> GET realm with
 * service and scope, anonymously or with basic credentials -> retry with
 * the token), basic auth, and redirects (blobs are often served from
 * object storage: the Authorization header never follows a redirect to
 * another host).
 */
#include "oci_internal.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include "../lib/b64.h"
#include "../lib/fileio.h"
#include "../lib/sha256.h"

#define MAX_MANIFEST  (4u << 20)
#define MAX_ERRBODY   (16u << 10)
#define MAX_TOKEN     (64u << 10)
#define MAX_REDIRECTS 5

#define ACCEPT_MANIFESTS                                                                                               \
	"Accept: application/vnd.oci.image.index.v1+json, application/vnd.oci.image.manifest.v1+json, "                \
	"application/vnd.docker.distribution.manifest.list.v2+json, "                                                  \
	"application/vnd.docker.distribution.manifest.v2+json"

struct oci_registry {
	struct oci_ref ref;
	struct oci_http http;
	bool insecure;
	char *basic; /* "Basic <b64>" or NULL */
	char *auth;  /* the Authorization value in use, or NULL */
	uint64_t max_blob;
};

struct oci_registry *oci_registry_new(const struct oci_ref *ref, const struct oci_build_opts *o)
{
	struct oci_registry *r = calloc(1, sizeof *r);
	if (!r)
		abort();
	r->ref = *ref;
	r->http.ca_file = o->ca_file;
	r->http.timeout_ms = o->timeout_ms;
	r->insecure = o->insecure_registry;
	r->max_blob = o->max_blob_bytes ? o->max_blob_bytes : 8ull << 30;
	if (o->username && o->username[0]) {
		struct buf cred = BUF_INIT;
		buf_printf(&cred, "%s:%s", o->username, o->password ? o->password : "");
		char *b = malloc(b64_encoded_len(cred.len) + 8);
		if (!b)
			abort();
		memcpy(b, "Basic ", 6);
		b[6 + b64_encode(cred.data, cred.len, b + 6)] = '\0';
		buf_free(&cred);
		r->basic = b;
	}
	return r;
}

void oci_registry_free(struct oci_registry *r)
{
	if (!r)
		return;
	free(r->basic);
	free(r->auth);
	free(r);
}

/* --- one request with auth and redirects -------------------------------- */

struct collect {
	struct http_head *head;
	struct buf *ok_body; /* 2xx with no sink: stored here (bounded) */
	size_t ok_max;
	oci_body_fn sink; /* 2xx: streamed here instead */
	void *sink_arg;
	struct buf errbody; /* other statuses: the first bytes, for the message */
	bool too_big;
};

static int collect_fn(void *arg, const void *p, size_t n)
{
	struct collect *c = arg;
	if (c->head->status < 200 || c->head->status > 299) {
		if (c->errbody.len < MAX_ERRBODY)
			buf_append(&c->errbody, p, n < MAX_ERRBODY - c->errbody.len ? n : MAX_ERRBODY - c->errbody.len);
		return OCI_OK;
	}
	if (c->sink)
		return c->sink(c->sink_arg, p, n);
	if (c->ok_body->len + n > c->ok_max) {
		c->too_big = true;
		return OCI_ETOOBIG;
	}
	buf_append(c->ok_body, p, n);
	return OCI_OK;
}

/* The registry's error document {"errors":[{"code","message"}]}, shortened. */
static void registry_message(const struct buf *b, char *out, size_t outsz)
{
	out[0] = '\0';
	struct json *j = b->len ? json_parse(b->data, b->len, NULL, 0) : NULL;
	const struct json *e = json_get(j, "errors");
	if (e && e->type == JSON_ARRAY && e->child) {
		const char *code = json_get_str(e->child, "code"), *msg = json_get_str(e->child, "message");
		snprintf(out, outsz, ": %.60s%s%.200s", code ? code : "", msg ? " " : "", msg ? msg : "");
	}
	json_free(j);
}

static void url_encode(struct buf *b, const char *s)
{
	for (; *s; s++) {
		unsigned char c = (unsigned char)*s;
		if ((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' ||
		    c == '.' || c == '_' || c == '~')
			buf_putc(b, (char)c);
		else
			buf_printf(b, "%%%02X", c);
	}
}

static int fetch_token(struct oci_registry *r, const struct oci_challenge *ch, char *err, size_t errsz)
{
	struct buf url = BUF_INIT, body = BUF_INIT;
	buf_puts(&url, ch->realm);
	char sep = strchr(ch->realm, '?') ? '&' : '?';
	if (ch->service[0]) {
		buf_printf(&url, "%cservice=", sep);
		url_encode(&url, ch->service);
		sep = '&';
	}
	buf_printf(&url, "%cscope=", sep);
	if (ch->scope[0]) {
		url_encode(&url, ch->scope);
	} else {
		struct buf scope = BUF_INIT;
		buf_printf(&scope, "repository:%s:pull", r->ref.name);
		url_encode(&url, scope.data);
		buf_free(&scope);
	}
	struct oci_url u;
	int rc = OCI_OK;
	if (oci_url_parse(url.data, &u) < 0 || (!u.tls && !r->insecure)) {
		snprintf(err, errsz, "the registry's token realm '%.200s' is not a usable %sURL", ch->realm,
			 r->insecure ? "" : "https ");
		rc = OCI_EAUTH;
	}
	struct http_head head;
	struct collect c = {.head = &head, .ok_body = &body, .ok_max = MAX_TOKEN};
	struct buf authz = BUF_INIT;
	const char *hdrs[2] = {NULL, NULL};
	if (r->basic) {
		buf_printf(&authz, "Authorization: %s", r->basic);
		hdrs[0] = authz.data;
	}
	if (rc == OCI_OK)
		rc = oci_http_get(&r->http, &u, hdrs, &head, collect_fn, &c, err, errsz);
	if (rc == OCI_OK && (head.status == 401 || head.status == 403)) {
		snprintf(err, errsz, "the token service %s refused %s (HTTP %d)", u.host,
			 r->basic ? "the credentials" : "anonymous access", head.status);
		rc = OCI_EAUTH;
	} else if (rc == OCI_OK && head.status != 200) {
		snprintf(err, errsz, "the token service %s answered HTTP %d", u.host, head.status);
		rc = OCI_EAUTH;
	} else if (rc == OCI_OK) {
		struct json *j = json_parse(body.data ? body.data : "", body.len, NULL, 0);
		const char *tok = json_get_str(j, "token");
		if (!tok || !tok[0])
			tok = json_get_str(j, "access_token");
		if (!tok || !tok[0] || strpbrk(tok, "\r\n")) {
			snprintf(err, errsz, "the token service %s sent no usable token", u.host);
			rc = OCI_EAUTH;
		} else {
			struct buf v = BUF_INIT;
			buf_printf(&v, "Bearer %s", tok);
			free(r->auth);
			r->auth = buf_steal(&v);
		}
		json_free(j);
	}
	http_head_free(&head);
	buf_free(&c.errbody);
	buf_free(&authz);
	buf_free(&url);
	buf_free(&body);
	return rc;
}

/* Reacts to a 401: gets a token or switches to basic auth. OCI_OK to retry. */
static int answer_challenge(struct oci_registry *r, const struct http_head *head, char *err, size_t errsz)
{
	struct oci_challenge ch;
	const char *h = http_header_get(head, "WWW-Authenticate");
	if (!h || oci_challenge_parse(h, &ch) < 0) {
		snprintf(err, errsz, "%s asks for authentication this client does not speak", r->ref.registry);
		return OCI_EAUTH;
	}
	if (ch.basic) {
		if (!r->basic) {
			snprintf(err, errsz, "%s needs credentials (--username/--password)", r->ref.registry);
			return OCI_EAUTH;
		}
		free(r->auth);
		r->auth = strdup(r->basic + 0);
		if (!r->auth)
			abort();
		return OCI_OK;
	}
	return fetch_token(r, &ch, err, errsz);
}

/* GET target on the registry. status gets the final HTTP status; 2xx bodies
 * go to sink (or body), others are turned into messages by the caller. */
static int reg_get(struct oci_registry *r, const char *target, const char *accept, struct collect *c, char *ctype,
		   size_t ctsz, char *msg, size_t msgsz, int *status, char *err, size_t errsz)
{
	struct oci_url u;
	char base[300];
	snprintf(base, sizeof base, "%s://%s", r->insecure ? "http" : "https", r->ref.registry);
	struct buf full = BUF_INIT;
	buf_printf(&full, "%s%s", base, target);
	int rc = oci_url_parse(full.data, &u) < 0 ? OCI_EINVAL : OCI_OK;
	buf_free(&full);
	if (rc != OCI_OK) {
		snprintf(err, errsz, "bad registry URL for %s", r->ref.registry);
		return rc;
	}
	bool retried_auth = false, same_origin = true;
	for (int hops = 0;; hops++) {
		struct http_head head;
		struct buf authz = BUF_INIT;
		const char *hdrs[3] = {NULL, NULL, NULL};
		int nh = 0;
		if (accept)
			hdrs[nh++] = accept;
		if (r->auth && same_origin) {
			buf_printf(&authz, "Authorization: %s", r->auth);
			hdrs[nh++] = authz.data;
		}
		c->head = &head;
		buf_reset(&c->errbody);
		rc = oci_http_get(&r->http, &u, hdrs, &head, collect_fn, c, err, errsz);
		buf_free(&authz);
		if (rc != OCI_OK) {
			http_head_free(&head);
			return rc;
		}
		*status = head.status;
		if (head.status == 401 && !retried_auth && same_origin) {
			retried_auth = true;
			rc = answer_challenge(r, &head, err, errsz);
			http_head_free(&head);
			if (rc != OCI_OK)
				return rc;
			continue;
		}
		if (head.status >= 300 && head.status <= 308 && head.status != 304) {
			const char *loc = http_header_get(&head, "Location");
			struct oci_url next;
			if (!loc || hops >= MAX_REDIRECTS || oci_url_resolve(&u, loc, &next) < 0 ||
			    (!next.tls && u.tls)) {
				snprintf(err, errsz, "%s: bad or too many redirects (HTTP %d)", r->ref.registry,
					 head.status);
				http_head_free(&head);
				return OCI_ENET;
			}
			same_origin = same_origin && strcmp(next.host, u.host) == 0 && next.port == u.port;
			u = next;
			http_head_free(&head);
			continue;
		}
		if (ctype) {
			const char *ct = http_header_get(&head, "Content-Type");
			snprintf(ctype, ctsz, "%s", ct ? ct : "");
		}
		registry_message(&c->errbody, msg, msgsz);
		http_head_free(&head);
		return OCI_OK;
	}
}

static int status_error(struct oci_registry *r, int status, const char *what, const char *msg, char *err, size_t errsz)
{
	const struct oci_ref *ref = &r->ref;
	if (status == 404) {
		snprintf(err, errsz, "%s %s/%s not found (HTTP 404%s)", what, ref->registry, ref->name, msg);
		return OCI_ENOTFOUND;
	}
	if (status == 401 || status == 403) {
		snprintf(err, errsz, "%s/%s: access denied (HTTP %d%s)%s", ref->registry, ref->name, status, msg,
			 r->basic ? "" : "; credentials may be needed");
		return OCI_EAUTH;
	}
	snprintf(err, errsz, "%s %s/%s: the registry answered HTTP %d%s", what, ref->registry, ref->name, status, msg);
	return OCI_ENET;
}

int oci_registry_manifest(struct oci_registry *r, const char *reference, struct buf *body, char *ctype, size_t ctsz,
			  char *err, size_t errsz)
{
	struct buf target = BUF_INIT;
	buf_printf(&target, "/v2/%s/manifests/%s", r->ref.name, reference);
	struct collect c = {.ok_body = body, .ok_max = MAX_MANIFEST};
	char msg[300];
	int status = 0;
	buf_reset(body);
	int rc = reg_get(r, target.data, ACCEPT_MANIFESTS, &c, ctype, ctsz, msg, sizeof msg, &status, err, errsz);
	buf_free(&target);
	buf_free(&c.errbody);
	if (rc == OCI_ETOOBIG)
		snprintf(err, errsz, "manifest %s is larger than %u bytes", reference, MAX_MANIFEST);
	if (rc != OCI_OK)
		return rc;
	if (status != 200) {
		char what[200];
		snprintf(what, sizeof what, "manifest %s of", reference);
		return status_error(r, status, what, msg, err, errsz);
	}
	if (oci_digest_valid(reference)) {
		char got[OCI_DIGEST_LEN + 1];
		uint8_t d[SHA256_DIGEST_LEN];
		sha256(body->data ? body->data : "", body->len, d);
		memcpy(got, "sha256:", 7);
		for (int i = 0; i < SHA256_DIGEST_LEN; i++)
			snprintf(got + 7 + 2 * i, 3, "%02x", d[i]);
		if (strcmp(got, reference) != 0) {
			snprintf(err, errsz, "manifest digest mismatch: asked for %s, got %s", reference, got);
			return OCI_EDIGEST;
		}
	}
	return OCI_OK;
}

struct blob_sink {
	int fd;
	struct sha256_ctx sha;
	uint64_t got, want;
	oci_bytes_fn fn;
	void *arg;
	int errnum;
};

static int blob_fn(void *arg, const void *p, size_t n)
{
	struct blob_sink *s = arg;
	if (s->got + n > s->want)
		return OCI_EDIGEST; /* more than the manifest says: not the blob we asked for */
	if (write_full(s->fd, p, n) < 0) {
		s->errnum = errno;
		return errno == ENOSPC ? OCI_ENOSPC : OCI_EIO;
	}
	sha256_update(&s->sha, p, n);
	s->got += n;
	if (s->fn)
		s->fn(s->arg, n);
	return OCI_OK;
}

static void hex_digest(struct sha256_ctx *sha, char out[OCI_DIGEST_LEN + 1])
{
	uint8_t d[SHA256_DIGEST_LEN];
	sha256_final(sha, d);
	memcpy(out, "sha256:", 7);
	for (int i = 0; i < SHA256_DIGEST_LEN; i++)
		snprintf(out + 7 + 2 * i, 3, "%02x", d[i]);
}

int oci_registry_blob(struct oci_registry *r, const struct oci_desc *d, const char *path, oci_bytes_fn fn, void *arg,
		      char *err, size_t errsz)
{
	if (access(path, F_OK) == 0) {
		if (fn)
			fn(arg, d->size);
		return OCI_OK;
	}
	if (d->size > r->max_blob) {
		snprintf(err, errsz, "blob %s has %llu bytes, over the limit of %llu", d->digest,
			 (unsigned long long)d->size, (unsigned long long)r->max_blob);
		return OCI_ETOOBIG;
	}
	struct buf part = BUF_INIT, target = BUF_INIT;
	buf_printf(&part, "%s.part", path);
	buf_printf(&target, "/v2/%s/blobs/%s", r->ref.name, d->digest);
	struct blob_sink s = {.want = d->size, .fn = fn, .arg = arg};
	sha256_init(&s.sha);
	s.fd = open(part.data, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	int rc = OCI_OK;
	if (s.fd < 0) {
		snprintf(err, errsz, "create %s: %s", part.data, strerror(errno));
		rc = errno == ENOSPC ? OCI_ENOSPC : OCI_EIO;
	}
	struct collect c = {.sink = blob_fn, .sink_arg = &s};
	char msg[300];
	int status = 0;
	if (rc == OCI_OK)
		rc = reg_get(r, target.data, NULL, &c, NULL, 0, msg, sizeof msg, &status, err, errsz);
	if (rc == OCI_EDIGEST)
		snprintf(err, errsz, "blob %s: the registry sent more than the %llu bytes the manifest names",
			 d->digest, (unsigned long long)d->size);
	else if (rc == OCI_ENOSPC || rc == OCI_EIO)
		snprintf(err, errsz, "%s writing blob %s: %s", rc == OCI_ENOSPC ? "disk full" : "I/O error", d->digest,
			 strerror(s.errnum));
	else if (rc == OCI_OK && status != 200) {
		char what[200];
		snprintf(what, sizeof what, "blob %s of", d->digest);
		rc = status_error(r, status, what, msg, err, errsz);
	} else if (rc == OCI_OK) {
		char got[OCI_DIGEST_LEN + 1];
		hex_digest(&s.sha, got);
		if (s.got != d->size || strcmp(got, d->digest) != 0) {
			snprintf(err, errsz, "blob digest mismatch: expected %s (%llu bytes), got %s (%llu bytes)",
				 d->digest, (unsigned long long)d->size, got, (unsigned long long)s.got);
			rc = OCI_EDIGEST;
		}
	}
	if (s.fd >= 0 && close(s.fd) < 0 && rc == OCI_OK) {
		snprintf(err, errsz, "writing blob %s: %s", d->digest, strerror(errno));
		rc = errno == ENOSPC ? OCI_ENOSPC : OCI_EIO;
	}
	if (rc == OCI_OK && rename(part.data, path) < 0) {
		snprintf(err, errsz, "rename %s: %s", part.data, strerror(errno));
		rc = OCI_EIO;
	}
	if (rc != OCI_OK)
		unlink(part.data);
	buf_free(&c.errbody);
	buf_free(&part);
	buf_free(&target);
	return rc;
}

int oci_file_digest(int fd, char out[OCI_DIGEST_LEN + 1])
{
	struct sha256_ctx sha;
	char b[65536];
	sha256_init(&sha);
	for (off_t off = 0;;) {
		ssize_t n = pread(fd, b, sizeof b, off);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return -1;
		if (n == 0)
			break;
		sha256_update(&sha, b, (size_t)n);
		off += n;
	}
	hex_digest(&sha, out);
	return 0;
}
