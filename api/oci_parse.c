/*
 * oci_parse.c - the parsers for what registries and archives send: image
 * references, manifests and indexes (OCI and Docker schema 2), image
 * configs, WWW-Authenticate challenges. No I/O; fuzzed by
 * fuzz/fuzz_oci_manifest.c and fuzz/fuzz_oci_auth.c.
 */
#include "oci.h"

#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "../lib/buf.h"

#define MT_OCI_INDEX	"application/vnd.oci.image.index.v1+json"
#define MT_OCI_MANIFEST "application/vnd.oci.image.manifest.v1+json"
#define MT_DOCKER_LIST	"application/vnd.docker.distribution.manifest.list.v2+json"
#define MT_DOCKER_V2	"application/vnd.docker.distribution.manifest.v2+json"
#define MT_DOCKER_V1	"application/vnd.docker.distribution.manifest.v1"
#define DOCKER_HUB	"registry-1.docker.io"

const char *oci_status_name(int status)
{
	switch (status) {
	case OCI_OK: return "ok";
	case OCI_EINVAL: return "invalid";
	case OCI_ENOTFOUND: return "not_found";
	case OCI_EAUTH: return "auth";
	case OCI_EDIGEST: return "digest_mismatch";
	case OCI_ENOSPC: return "disk_full";
	case OCI_ETOOBIG: return "too_big";
	case OCI_ENET: return "network";
	case OCI_EIO: return "io";
	case OCI_EUNSUPPORTED: return "unsupported";
	case OCI_ECANCELED: return "canceled";
	default: return "error";
	}
}

static int perr(char *err, size_t errsz, int status, const char *fmt, ...) __attribute__((format(printf, 4, 5)));
#include <stdarg.h>
static int perr(char *err, size_t errsz, int status, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	if (errsz)
		vsnprintf(err, errsz, fmt, ap);
	va_end(ap);
	return status;
}

bool oci_digest_valid(const char *d)
{
	if (!d || strncmp(d, "sha256:", 7) != 0 || strlen(d) != OCI_DIGEST_LEN)
		return false;
	for (const char *p = d + 7; *p; p++)
		if (!((*p >= '0' && *p <= '9') || (*p >= 'a' && *p <= 'f')))
			return false;
	return true;
}

/* --- references -------------------------------------------------------- */

static bool name_char(char c)
{
	return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '.' || c == '_' || c == '-' || c == '/';
}

static bool alnum_lower(char c)
{
	return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9');
}

/* Path components start and end with a letter or digit (the distribution
 * spec's grammar), so "..", "." or "-x" never reach a URL. */
static bool valid_name(const char *n)
{
	if (strstr(n, ".."))
		return false; /* the grammar allows one separator at a time */
	for (const char *p = n;; p++) {
		const char *s = p;
		while (*p && *p != '/') {
			if (!name_char(*p))
				return false;
			p++;
		}
		if (p == s || !alnum_lower(*s) || !alnum_lower(p[-1]))
			return false;
		if (!*p)
			return true;
	}
}

static bool valid_tag(const char *t)
{
	size_t n = strlen(t);
	if (!n || n > 128 || t[0] == '.' || t[0] == '-')
		return false;
	for (const char *p = t; *p; p++)
		if (!((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') || (*p >= '0' && *p <= '9') || *p == '_' ||
		      *p == '.' || *p == '-'))
			return false;
	return true;
}

static bool valid_registry(const char *r)
{
	if (!r[0])
		return false;
	for (const char *p = r; *p; p++)
		if (!((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') || (*p >= '0' && *p <= '9') || *p == '.' ||
		      *p == '-' || *p == ':' || *p == '[' || *p == ']'))
			return false;
	return true;
}

int oci_ref_parse(const char *s, struct oci_ref *r, char *err, size_t errsz)
{
	char work[600];
	memset(r, 0, sizeof *r);
	if (!s || !s[0] || strlen(s) >= sizeof work)
		return perr(err, errsz, OCI_EINVAL, "image reference is empty or too long");
	snprintf(work, sizeof work, "%s", s);
	char *at = strrchr(work, '@');
	if (at) {
		*at = '\0';
		if (!oci_digest_valid(at + 1))
			return perr(err, errsz, OCI_EINVAL, "image reference %s: the digest is not sha256:<64 hex>", s);
		snprintf(r->digest, sizeof r->digest, "%s", at + 1);
	}
	char *slash = strchr(work, '/');
	char *rest = work;
	/* As docker: the first component names a registry if it looks like a host. */
	size_t first = slash ? (size_t)(slash - work) : 0;
	bool is_host = slash && (memchr(work, '.', first) || memchr(work, ':', first) ||
				 (first == 9 && strncmp(work, "localhost", 9) == 0));
	if (is_host) {
		*slash = '\0';
		if (strlen(work) >= sizeof r->registry || !valid_registry(work))
			return perr(err, errsz, OCI_EINVAL, "image reference %s: bad registry name", s);
		snprintf(r->registry, sizeof r->registry, "%s", work);
		rest = slash + 1;
	} else {
		snprintf(r->registry, sizeof r->registry, "%s", DOCKER_HUB);
	}
	if (strcmp(r->registry, "docker.io") == 0 || strcmp(r->registry, "index.docker.io") == 0)
		snprintf(r->registry, sizeof r->registry, "%s", DOCKER_HUB);
	char *colon = strrchr(rest, ':');
	if (colon) {
		*colon = '\0';
		if (!valid_tag(colon + 1))
			return perr(err, errsz, OCI_EINVAL, "image reference %s: bad tag", s);
		snprintf(r->tag, sizeof r->tag, "%s", colon + 1);
	} else if (!r->digest[0]) {
		snprintf(r->tag, sizeof r->tag, "latest");
	}
	bool hub = strcmp(r->registry, DOCKER_HUB) == 0;
	if (strlen(rest) + 9 >= sizeof r->name || !valid_name(rest))
		return perr(err, errsz, OCI_EINVAL,
			    "image reference %s: bad repository name (lowercase letters, digits, ._-/)", s);
	snprintf(r->name, sizeof r->name, "%s%s", hub && !strchr(rest, '/') ? "library/" : "", rest);
	return OCI_OK;
}

const char *oci_ref_reference(const struct oci_ref *r)
{
	return r->digest[0] ? r->digest : r->tag;
}

/* --- manifests ---------------------------------------------------------- */

static int parse_desc(const struct json *j, struct oci_desc *d, const char *what, char *err, size_t errsz)
{
	memset(d, 0, sizeof *d);
	const char *mt = json_get_str(j, "mediaType");
	const char *dg = json_get_str(j, "digest");
	int64_t size = json_get_int(j, "size", -1);
	if (!j || j->type != JSON_OBJECT || !oci_digest_valid(dg))
		return perr(err, errsz, OCI_EINVAL, "%s: missing or unsupported digest (only sha256)", what);
	if (size < 0)
		return perr(err, errsz, OCI_EINVAL, "%s: missing or negative size", what);
	snprintf(d->media_type, sizeof d->media_type, "%s", mt ? mt : "");
	snprintf(d->digest, sizeof d->digest, "%s", dg);
	d->size = (uint64_t)size;
	return OCI_OK;
}

int oci_doc_kind(const struct json *doc, const char *content_type, enum oci_doc_kind *kind, char *err, size_t errsz)
{
	if (!doc || doc->type != JSON_OBJECT)
		return perr(err, errsz, OCI_EINVAL, "manifest is not a JSON object");
	const char *mt = json_get_str(doc, "mediaType");
	if (!mt || !mt[0])
		mt = content_type ? content_type : "";
	if (json_get_int(doc, "schemaVersion", 2) == 1 || strncmp(mt, MT_DOCKER_V1, strlen(MT_DOCKER_V1)) == 0)
		return perr(err, errsz, OCI_EUNSUPPORTED, "Docker schema 1 manifests are not supported");
	bool has_manifests = json_get(doc, "manifests") != NULL, has_layers = json_get(doc, "layers") != NULL;
	if (strncmp(mt, MT_OCI_INDEX, strlen(MT_OCI_INDEX)) == 0 ||
	    strncmp(mt, MT_DOCKER_LIST, strlen(MT_DOCKER_LIST)) == 0 || (has_manifests && !has_layers)) {
		*kind = OCI_DOC_INDEX;
		return OCI_OK;
	}
	if (has_layers) {
		*kind = OCI_DOC_MANIFEST;
		return OCI_OK;
	}
	return perr(err, errsz, OCI_EINVAL, "not an image manifest or index (media type '%.100s')", mt);
}

int oci_index_select(const struct json *doc, struct oci_desc *out, char *err, size_t errsz)
{
	const struct json *list = json_get(doc, "manifests");
	if (!list || list->type != JSON_ARRAY || !list->count)
		return perr(err, errsz, OCI_EINVAL, "image index without manifests");
	char seen[256] = "";
	size_t sl = 0;
	for (const struct json *m = list->child; m; m = m->next) {
		const struct json *pf = json_get(m, "platform");
		const char *os = json_get_str(pf, "os"), *arch = json_get_str(pf, "architecture");
		bool match = os && arch && strcmp(os, "linux") == 0 && strcmp(arch, "amd64") == 0;
		if (!pf && list->count == 1)
			match = true; /* an OCI layout's index.json names one image without a platform */
		if (match)
			return parse_desc(m, out, "index entry", err, errsz);
		if (os && arch && sl + strlen(os) + strlen(arch) + 3 < sizeof seen)
			sl += (size_t)snprintf(seen + sl, sizeof seen - sl, "%s%s/%s", sl ? " " : "", os, arch);
	}
	return perr(err, errsz, OCI_EUNSUPPORTED, "the image has no linux/amd64 variant (it has: %s)",
		    sl ? seen : "none");
}

int oci_manifest_parse(const struct json *doc, struct oci_manifest *m, char *err, size_t errsz)
{
	memset(m, 0, sizeof *m);
	int rc = parse_desc(json_get(doc, "config"), &m->config, "manifest config", err, errsz);
	if (rc != OCI_OK)
		return rc;
	const struct json *layers = json_get(doc, "layers");
	if (!layers || layers->type != JSON_ARRAY)
		return perr(err, errsz, OCI_EINVAL, "manifest without a layers array");
	if (layers->count > OCI_MAX_LAYERS)
		return perr(err, errsz, OCI_ETOOBIG, "manifest has %zu layers (at most %d)", layers->count,
			    OCI_MAX_LAYERS);
	for (const struct json *l = layers->child; l; l = l->next) {
		struct oci_desc *d = &m->layers[m->nlayers];
		if ((rc = parse_desc(l, d, "layer", err, errsz)) != OCI_OK)
			return rc;
		if (strstr(d->media_type, "zstd"))
			return perr(err, errsz, OCI_EUNSUPPORTED,
				    "layer %s is zstd-compressed (only gzip and plain tar)", d->digest);
		if (strstr(d->media_type, "foreign") || strstr(d->media_type, "nondistributable"))
			return perr(err, errsz, OCI_EUNSUPPORTED, "layer %s is a foreign (Windows) layer", d->digest);
		m->nlayers++;
	}
	return OCI_OK;
}

int oci_parse_manifest_body(const char *body, size_t len, const char *content_type, struct oci_manifest *m,
			    struct oci_desc *selected, enum oci_doc_kind *kind, char *err, size_t errsz)
{
	char jerr[160];
	struct json *doc = json_parse(body, len, jerr, sizeof jerr);
	if (!doc)
		return perr(err, errsz, OCI_EINVAL, "manifest is not JSON: %s", jerr);
	int rc = oci_doc_kind(doc, content_type, kind, err, errsz);
	if (rc == OCI_OK)
		rc = *kind == OCI_DOC_INDEX ? oci_index_select(doc, selected, err, errsz)
					    : oci_manifest_parse(doc, m, err, errsz);
	json_free(doc);
	return rc;
}

/* --- image config ------------------------------------------------------- */

static void copy_string_array(struct jw *w, const char *key, const struct json *arr)
{
	jw_key(w, key);
	jw_arr(w);
	if (arr && arr->type == JSON_ARRAY)
		for (const struct json *e = arr->child; e; e = e->next)
			if (e->type == JSON_STRING)
				jw_strn(w, e->str, e->len);
	jw_end(w);
}

int oci_config_summary(const char *body, size_t len, struct jw *w, char *err, size_t errsz)
{
	char jerr[160];
	struct json *doc = json_parse(body, len, jerr, sizeof jerr);
	if (!doc || doc->type != JSON_OBJECT) {
		json_free(doc);
		return perr(err, errsz, OCI_EINVAL, "image config is not a JSON object%s%s", doc ? "" : ": ",
			    doc ? "" : jerr);
	}
	const struct json *cfg = json_get(doc, "config");
	const char *os = json_get_str(doc, "os"), *arch = json_get_str(doc, "architecture");
	if ((os && strcmp(os, "linux") != 0) || (arch && strcmp(arch, "amd64") != 0)) {
		int rc = perr(err, errsz, OCI_EUNSUPPORTED, "the image is for %.40s/%.40s, not linux/amd64",
			      os ? os : "?", arch ? arch : "?");
		json_free(doc);
		return rc;
	}
	jw_kstr(w, "os", os ? os : "linux");
	jw_kstr(w, "architecture", arch ? arch : "amd64");
	copy_string_array(w, "env", json_get(cfg, "Env"));
	jw_kstr(w, "workingDir", json_get_str(cfg, "WorkingDir") ? json_get_str(cfg, "WorkingDir") : "");
	jw_kstr(w, "user", json_get_str(cfg, "User") ? json_get_str(cfg, "User") : "");
	jw_key(w, "exposedPorts");
	jw_arr(w);
	const struct json *ports = json_get(cfg, "ExposedPorts");
	if (ports && ports->type == JSON_OBJECT)
		for (const struct json *p = ports->child; p; p = p->next)
			jw_strn(w, p->key, p->key_len);
	jw_end(w);
	copy_string_array(w, "entrypoint", json_get(cfg, "Entrypoint"));
	copy_string_array(w, "cmd", json_get(cfg, "Cmd"));
	json_free(doc);
	return OCI_OK;
}

/* --- WWW-Authenticate ---------------------------------------------------- */

static const char *skip_ws(const char *p)
{
	while (*p == ' ' || *p == '\t')
		p++;
	return p;
}

/* One auth-param value: a token or a quoted string (with \ escapes). */
static const char *param_value(const char *p, char *out, size_t outsz)
{
	size_t o = 0;
	if (*p == '"') {
		for (p++; *p && *p != '"'; p++) {
			if (*p == '\\' && p[1])
				p++;
			if (o + 1 < outsz)
				out[o++] = *p;
		}
		if (*p == '"')
			p++;
	} else {
		for (; *p && *p != ',' && *p != ' ' && *p != '\t'; p++)
			if (o + 1 < outsz)
				out[o++] = *p;
	}
	if (outsz)
		out[o] = '\0';
	return p;
}

int oci_challenge_parse(const char *h, struct oci_challenge *c)
{
	memset(c, 0, sizeof *c);
	if (!h)
		return -1;
	const char *p = skip_ws(h);
	if (strncasecmp(p, "Bearer", 6) == 0 && (p[6] == ' ' || p[6] == '\t' || !p[6]))
		c->bearer = true;
	else if (strncasecmp(p, "Basic", 5) == 0 && (p[5] == ' ' || p[5] == '\t' || !p[5]))
		c->basic = true;
	else
		return -1;
	p += c->bearer ? 6 : 5;
	while (*p) {
		p = skip_ws(p);
		if (*p == ',') {
			p++;
			continue;
		}
		const char *k = p;
		while (*p && *p != '=' && *p != ',' && *p != ' ')
			p++;
		size_t kl = (size_t)(p - k);
		if (*p != '=') {
			if (!*p)
				break;
			p++;
			continue;
		}
		p = skip_ws(p + 1);
		char tmp[8];
		char *dst = tmp;
		size_t dsz = sizeof tmp;
		if (kl == 5 && strncasecmp(k, "realm", 5) == 0)
			dst = c->realm, dsz = sizeof c->realm;
		else if (kl == 7 && strncasecmp(k, "service", 7) == 0)
			dst = c->service, dsz = sizeof c->service;
		else if (kl == 5 && strncasecmp(k, "scope", 5) == 0)
			dst = c->scope, dsz = sizeof c->scope;
		p = param_value(p, dst, dsz);
	}
	if (c->bearer && !c->realm[0])
		return -1; /* a Bearer challenge is useless without the token endpoint */
	return 0;
}
