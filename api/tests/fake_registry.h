/*
 * fake_registry.h - a container registry served on loopback by the test
 * process itself, and the image it serves (repository test/img: tag
 * "single" a manifest, "multi" an index with an arm64 and the amd64 entry).
 *
 * Behaviour switches in fk: the Bearer token dance, basic credentials
 * (fk.creds, "u:p" unless set) at the token endpoint, a corrupted layer, chunked manifests. Blobs are
 * redirected to /storage/, as object stores do. fk records what it saw
 * (token requests, followed redirects, the scope). Used by
 * test_oci_registry.c (the importer) and test_templates.c (the API).
 */
#ifndef CUBE_API_FAKE_REGISTRY_H
#define CUBE_API_FAKE_REGISTRY_H

#include <arpa/inet.h>
#include <netinet/in.h>
#include <pthread.h>
#include <strings.h>
#include <sys/socket.h>
#include <unistd.h>

#include "../../lib/b64.h"
#include "../../lib/buf.h"
#include "oci_fixture.h"

/* --- the image ------------------------------------------------------------ */

struct blob {
	char digest[72];
	struct buf data;
};

static struct image {
	struct blob config, layer1, layer2, manifest, index;
} img;

static inline void blob_set(struct blob *b, struct buf *data)
{
	b->data = *data;
	digest_of(b->data.data, b->data.len, b->digest);
	memset(data, 0, sizeof *data);
}

static inline void fake_registry_build_image(void)
{
	struct buf l1 = BUF_INIT, gz = BUF_INIT, l2 = BUF_INIT, cfg = BUF_INIT, man = BUF_INIT, idx = BUF_INIT;
	struct tw_meta exec = {0755, 0, 0, 1700000000, 0, 0};
	tw_dir(&l1, "etc/", NULL);
	tw_file(&l1, "etc/passwd", "root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534::/:/bin/false\n", NULL);
	tw_file(&l1, "etc/os-release", "ID=fixture\n", NULL);
	tw_file(&l1, "bin/sh", "#!fake shell\n", &exec);
	tw_file(&l1, "sbin/init", "image's own init\n", &exec);
	tw_file(&l1, "var/cache/junk", "to be whited out\n", NULL);
	tw_end(&l1);
	gzip_buf(&l1, &gz);
	struct tw_meta owned = {0640, 1000, 1000, 1700000000, 0, 0};
	tw_file(&l2, "app/hello", "hello from layer 2\n", &owned);
	tw_file(&l2, "var/cache/.wh.junk", "", NULL);
	tw_end(&l2);
	buf_free(&l1);
	blob_set(&img.layer1, &gz);
	blob_set(&img.layer2, &l2);
	buf_puts(&cfg, "{\"architecture\":\"amd64\",\"os\":\"linux\",\"config\":{\"Env\":[\"PATH=/usr/bin:/bin\","
		       "\"GREETING=hi\"],\"WorkingDir\":\"/app\",\"ExposedPorts\":{\"8080/tcp\":{}},"
		       "\"Cmd\":[\"/bin/sh\"]},\"rootfs\":{\"type\":\"layers\",\"diff_ids\":[]}}");
	blob_set(&img.config, &cfg);
	buf_printf(
	    &man,
	    "{\"schemaVersion\":2,\"mediaType\":\"application/vnd.oci.image.manifest.v1+json\","
	    "\"config\":{\"mediaType\":\"application/vnd.oci.image.config.v1+json\",\"digest\":\"%s\",\"size\":%zu},"
	    "\"layers\":[{\"mediaType\":\"application/vnd.oci.image.layer.v1.tar+gzip\",\"digest\":\"%s\","
	    "\"size\":%zu},{\"mediaType\":\"application/vnd.oci.image.layer.v1.tar\",\"digest\":\"%s\","
	    "\"size\":%zu}]}",
	    img.config.digest, img.config.data.len, img.layer1.digest, img.layer1.data.len, img.layer2.digest,
	    img.layer2.data.len);
	blob_set(&img.manifest, &man);
	buf_printf(&idx,
		   "{\"schemaVersion\":2,\"mediaType\":\"application/vnd.oci.image.index.v1+json\",\"manifests\":["
		   "{\"mediaType\":\"application/vnd.oci.image.manifest.v1+json\",\"digest\":\"sha256:"
		   "9999999999999999999999999999999999999999999999999999999999999999\",\"size\":1,"
		   "\"platform\":{\"os\":\"linux\",\"architecture\":\"arm64\"}},"
		   "{\"mediaType\":\"application/vnd.oci.image.manifest.v1+json\",\"digest\":\"%s\",\"size\":%zu,"
		   "\"platform\":{\"os\":\"linux\",\"architecture\":\"amd64\"}}]}",
		   img.manifest.digest, img.manifest.data.len);
	blob_set(&img.index, &idx);
}

/* --- the fake registry ---------------------------------------------------- */

static struct fake_registry {
	int listen_fd, port;
	pthread_t thread;
	/* behaviour */
	bool require_token;  /* 401 + Bearer challenge without the token */
	bool require_creds;  /* the token endpoint wants basic creds */
	const char *creds;   /* "user:password"; NULL: "u:p" */
	bool corrupt_layer2; /* serve a changed layer 2 */
	bool chunked;	     /* manifests sent chunked */
	/* observations */
	int token_requests, redirects_followed;
	bool storage_saw_auth;
	char last_scope[256];
} fk;

static inline void send_str(int fd, const char *s, size_t n)
{
	while (n) {
		ssize_t w = send(fd, s, n, MSG_NOSIGNAL);
		if (w <= 0)
			return;
		s += w;
		n -= (size_t)w;
	}
}

static inline void respond(int fd, int status, const char *extra, const char *ctype, const char *body, size_t n)
{
	struct buf h = BUF_INIT;
	buf_printf(&h, "HTTP/1.1 %d X\r\nConnection: close\r\n%s", status, extra ? extra : "");
	if (ctype)
		buf_printf(&h, "Content-Type: %s\r\n", ctype);
	if (fk.chunked && ctype && strstr(ctype, "manifest")) {
		buf_puts(&h, "Transfer-Encoding: chunked\r\n\r\n");
		for (size_t off = 0; off < n; off += 7) { /* small chunks */
			size_t c = n - off < 7 ? n - off : 7;
			buf_printf(&h, "%zx\r\n", c);
			buf_append(&h, body + off, c);
			buf_puts(&h, "\r\n");
		}
		buf_puts(&h, "0\r\n\r\n");
		send_str(fd, h.data, h.len);
	} else {
		buf_printf(&h, "Content-Length: %zu\r\n\r\n", n);
		send_str(fd, h.data, h.len);
		send_str(fd, body, n);
	}
	buf_free(&h);
}

static inline const char *header_of(const char *req, const char *name)
{
	static char value[512];
	size_t nl = strlen(name);
	for (const char *p = strstr(req, "\r\n"); p && p[2]; p = strstr(p + 2, "\r\n")) {
		if (strncasecmp(p + 2, name, nl) == 0 && p[2 + nl] == ':') {
			const char *v = p + 3 + nl;
			while (*v == ' ')
				v++;
			size_t l = strcspn(v, "\r\n");
			snprintf(value, sizeof value, "%.*s", (int)l, v);
			return value;
		}
	}
	return NULL;
}

static inline const struct blob *find_blob(const char *digest)
{
	const struct blob *all[] = {&img.config, &img.layer1, &img.layer2, &img.manifest, &img.index};
	for (size_t i = 0; i < sizeof all / sizeof all[0]; i++)
		if (strcmp(all[i]->digest, digest) == 0)
			return all[i];
	return NULL;
}

static inline void serve_token(int fd, const char *target, const char *req)
{
	fk.token_requests++;
	const char *scope = strstr(target, "scope=");
	snprintf(fk.last_scope, sizeof fk.last_scope, "%.*s", scope ? (int)strcspn(scope + 6, "&") : 0,
		 scope ? scope + 6 : "");
	if (fk.require_creds) {
		const char *auth = header_of(req, "Authorization");
		const char *creds = fk.creds ? fk.creds : "u:p";
		char want[256] = "Basic ";
		b64_encode(creds, strlen(creds), want + 6);
		if (!auth || strcmp(auth, want) != 0) {
			respond(fd, 401, NULL, "application/json", "{}", 2);
			return;
		}
	}
	const char *tok = "{\"token\":\"good-token\",\"expires_in\":300}";
	respond(fd, 200, NULL, "application/json", tok, strlen(tok));
}

static inline void serve_v2(int fd, const char *target, const char *req)
{
	const char *auth = header_of(req, "Authorization");
	if (fk.require_token && (!auth || strcmp(auth, "Bearer good-token") != 0)) {
		char chal[512];
		snprintf(chal, sizeof chal,
			 "WWW-Authenticate: Bearer realm=\"http://127.0.0.1:%d/token\",service=\"fake\","
			 "scope=\"repository:test/img:pull\"\r\n",
			 fk.port);
		const char *e = "{\"errors\":[{\"code\":\"UNAUTHORIZED\",\"message\":\"authentication required\"}]}";
		respond(fd, 401, chal, "application/json", e, strlen(e));
		return;
	}
	char ns[64], repo[64], kind[16], ref[128];
	if (sscanf(target, "/v2/%63[^/]/%63[^/]/%15[^/]/%127s", ns, repo, kind, ref) != 4) {
		respond(fd, 404, NULL, "application/json", "{}", 2);
		return;
	}
	const struct blob *b = NULL;
	const char *ctype = "application/octet-stream";
	bool known_repo = strcmp(ns, "test") == 0 && strcmp(repo, "img") == 0;
	if (known_repo && strcmp(kind, "manifests") == 0) {
		if (strcmp(ref, "multi") == 0)
			b = &img.index;
		else if (strcmp(ref, "single") == 0)
			b = &img.manifest;
		else if ((b = find_blob(ref)) && b != &img.index && b != &img.manifest)
			b = NULL;
		if (b)
			ctype = b == &img.index ? "application/vnd.oci.image.index.v1+json"
						: "application/vnd.oci.image.manifest.v1+json";
	} else if (known_repo && strcmp(kind, "blobs") == 0 && find_blob(ref)) {
		/* Blobs live in "storage": a redirect, as object stores do. */
		char loc[256];
		snprintf(loc, sizeof loc, "Location: /storage/%s\r\n", ref);
		respond(fd, 307, loc, NULL, "", 0);
		return;
	}
	if (!b) {
		const char *e = "{\"errors\":[{\"code\":\"MANIFEST_UNKNOWN\",\"message\":\"manifest unknown\"}]}";
		respond(fd, 404, NULL, "application/json", e, strlen(e));
		return;
	}
	respond(fd, 200, NULL, ctype, b->data.data, b->data.len);
}

static inline void serve_storage(int fd, const char *target, const char *req)
{
	fk.redirects_followed++;
	if (header_of(req, "Authorization"))
		fk.storage_saw_auth = true;
	const struct blob *b = find_blob(target + 9);
	if (!b) {
		respond(fd, 404, NULL, NULL, "", 0);
		return;
	}
	if (b == &img.layer2 && fk.corrupt_layer2) {
		char *copy = malloc(b->data.len);
		memcpy(copy, b->data.data, b->data.len);
		copy[600] ^= 0x20; /* inside the first file's data */
		respond(fd, 200, NULL, NULL, copy, b->data.len);
		free(copy);
		return;
	}
	respond(fd, 200, NULL, NULL, b->data.data, b->data.len);
}

static inline void *fake_registry_thread(void *arg)
{
	for (;;) {
		int fd = accept(fk.listen_fd, NULL, NULL);
		if (fd < 0)
			return NULL;
		char req[8192];
		size_t n = 0;
		while (n < sizeof req - 1) {
			ssize_t r = recv(fd, req + n, sizeof req - 1 - n, 0);
			if (r <= 0)
				break;
			n += (size_t)r;
			req[n] = '\0';
			if (strstr(req, "\r\n\r\n"))
				break;
		}
		req[n] = '\0';
		char method[16], target[1024];
		if (sscanf(req, "%15s %1023s", method, target) == 2) {
			if (strncmp(target, "/token", 6) == 0)
				serve_token(fd, target, req);
			else if (strncmp(target, "/v2/", 4) == 0)
				serve_v2(fd, target, req);
			else if (strncmp(target, "/storage/", 9) == 0)
				serve_storage(fd, target, req);
			else
				respond(fd, 404, NULL, NULL, "", 0);
		}
		close(fd);
	}
}

static inline void fake_registry_start(void)
{
	memset(&fk, 0, sizeof fk);
	fk.listen_fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	socklen_t al = sizeof a;
	if (bind(fk.listen_fd, (struct sockaddr *)&a, sizeof a) < 0 || listen(fk.listen_fd, 16) < 0 ||
	    getsockname(fk.listen_fd, (struct sockaddr *)&a, &al) < 0)
		abort();
	fk.port = ntohs(a.sin_port);
	pthread_create(&fk.thread, NULL, fake_registry_thread, NULL);
}

static inline void fake_registry_reset(void)
{
	int fd = fk.listen_fd, port = fk.port;
	pthread_t t = fk.thread;
	memset(&fk, 0, sizeof fk);
	fk.listen_fd = fd;
	fk.port = port;
	fk.thread = t;
}

#endif
