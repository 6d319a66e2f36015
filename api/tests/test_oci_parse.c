/* test_oci_parse.c - the parsers of registry and archive input (api/oci.h):
 * image references, manifests, indexes (platform selection), image
 * configs, WWW-Authenticate challenges, URLs. */
#include "../../lib/tests/test.h"
#include "../oci.h"
#include "../oci_http.h"

#define D1 "sha256:1111111111111111111111111111111111111111111111111111111111111111"
#define D2 "sha256:2222222222222222222222222222222222222222222222222222222222222222"
#define D3 "sha256:3333333333333333333333333333333333333333333333333333333333333333"

TEST(references)
{
	struct oci_ref r;
	char err[200];
	CHECK(oci_ref_parse("alpine", &r, err, sizeof err) == OCI_OK);
	CHECK_STREQ(r.registry, "registry-1.docker.io");
	CHECK_STREQ(r.name, "library/alpine");
	CHECK_STREQ(r.tag, "latest");
	CHECK(oci_ref_parse("docker.io/user/app:1.2", &r, err, sizeof err) == OCI_OK);
	CHECK_STREQ(r.registry, "registry-1.docker.io");
	CHECK_STREQ(r.name, "user/app");
	CHECK_STREQ(r.tag, "1.2");
	CHECK(oci_ref_parse("127.0.0.1:5000/team/img:v1@" D1, &r, err, sizeof err) == OCI_OK);
	CHECK_STREQ(r.registry, "127.0.0.1:5000");
	CHECK_STREQ(r.name, "team/img");
	CHECK_STREQ(r.tag, "v1");
	CHECK_STREQ(oci_ref_reference(&r), D1);
	CHECK(oci_ref_parse("localhost/x", &r, err, sizeof err) == OCI_OK);
	CHECK_STREQ(r.registry, "localhost");
	CHECK_STREQ(r.name, "x");
	CHECK(oci_ref_parse("reg.lan/x@" D2, &r, err, sizeof err) == OCI_OK);
	CHECK_STREQ(r.tag, "");
	CHECK_STREQ(oci_ref_reference(&r), D2);
	CHECK(oci_ref_parse("", &r, err, sizeof err) != OCI_OK);
	CHECK(oci_ref_parse("UPPER/case", &r, err, sizeof err) != OCI_OK);
	CHECK(oci_ref_parse("reg.lan/x@sha256:abc", &r, err, sizeof err) != OCI_OK);
	CHECK(oci_ref_parse("reg.lan/x:bad tag", &r, err, sizeof err) != OCI_OK);
	CHECK(oci_ref_parse("reg.lan//x", &r, err, sizeof err) != OCI_OK);
	CHECK(oci_ref_parse("reg.lan/../x", &r, err, sizeof err) != OCI_OK);
	CHECK(oci_ref_parse("reg.lan/a/-b", &r, err, sizeof err) != OCI_OK);
	CHECK(oci_ref_parse("reg.lan/a.b/c_d-e", &r, err, sizeof err) == OCI_OK);
}

TEST(digests)
{
	CHECK(oci_digest_valid(D1));
	CHECK(!oci_digest_valid("sha256:ABCDEF1111111111111111111111111111111111111111111111111111111111"));
	CHECK(!oci_digest_valid("sha512:1111111111111111111111111111111111111111111111111111111111111111"));
	CHECK(!oci_digest_valid(NULL));
}

static int parse(const char *body, const char *ctype, struct oci_manifest *m, struct oci_desc *sel,
		 enum oci_doc_kind *kind, char *err)
{
	return oci_parse_manifest_body(body, strlen(body), ctype, m, sel, kind, err, 300);
}

TEST(index_selects_linux_amd64)
{
	static struct oci_manifest m;
	struct oci_desc sel;
	enum oci_doc_kind kind;
	char err[300];
	const char *idx =
	    "{\"schemaVersion\":2,\"mediaType\":\"application/vnd.oci.image.index.v1+json\",\"manifests\":["
	    "{\"mediaType\":\"application/vnd.oci.image.manifest.v1+json\",\"digest\":\"" D1
	    "\",\"size\":10,\"platform\":{\"os\":\"linux\",\"architecture\":\"arm64\",\"variant\":\"v8\"}},"
	    "{\"mediaType\":\"application/vnd.oci.image.manifest.v1+json\",\"digest\":\"" D2
	    "\",\"size\":20,\"platform\":{\"os\":\"linux\",\"architecture\":\"amd64\"}}]}";
	CHECK(parse(idx, NULL, &m, &sel, &kind, err) == OCI_OK);
	CHECK(kind == OCI_DOC_INDEX);
	CHECK_STREQ(sel.digest, D2);
	CHECK_EQ_INT(sel.size, 20);
	/* A Docker manifest list, told by Content-Type alone. */
	const char *list = "{\"schemaVersion\":2,\"manifests\":[{\"digest\":\"" D1
			   "\",\"size\":1,\"platform\":{\"os\":\"windows\",\"architecture\":\"amd64\"}}]}";
	CHECK(parse(list, "application/vnd.docker.distribution.manifest.list.v2+json", &m, &sel, &kind, err) ==
	      OCI_EUNSUPPORTED);
	CHECK(strstr(err, "windows/amd64") != NULL);
	/* An OCI layout index.json: one entry, no platform. */
	CHECK(parse("{\"schemaVersion\":2,\"manifests\":[{\"digest\":\"" D3 "\",\"size\":5}]}", NULL, &m, &sel, &kind,
		    err) == OCI_OK);
	CHECK_STREQ(sel.digest, D3);
}

TEST(manifests)
{
	static struct oci_manifest m;
	struct oci_desc sel;
	enum oci_doc_kind kind;
	char err[300];
	const char *man =
	    "{\"schemaVersion\":2,\"mediaType\":\"application/vnd.docker.distribution.manifest.v2+json\","
	    "\"config\":{\"mediaType\":\"application/vnd.docker.container.image.v1+json\",\"digest\":\"" D1
	    "\",\"size\":7},\"layers\":[{\"mediaType\":\"application/vnd.docker.image.rootfs.diff.tar.gzip\","
	    "\"digest\":\"" D2 "\",\"size\":100},{\"mediaType\":\"application/vnd.oci.image.layer.v1.tar\","
	    "\"digest\":\"" D3 "\",\"size\":200}]}";
	CHECK(parse(man, NULL, &m, &sel, &kind, err) == OCI_OK);
	CHECK(kind == OCI_DOC_MANIFEST);
	CHECK_STREQ(m.config.digest, D1);
	CHECK_EQ_INT(m.nlayers, 2);
	CHECK_STREQ(m.layers[1].digest, D3);
	CHECK_EQ_INT(m.layers[1].size, 200);
	CHECK(parse("{\"schemaVersion\":1,\"fsLayers\":[]}", NULL, &m, &sel, &kind, err) == OCI_EUNSUPPORTED);
	CHECK(parse("{\"config\":{\"digest\":\"md5:x\",\"size\":1},\"layers\":[]}", NULL, &m, &sel, &kind, err) ==
	      OCI_EINVAL);
	CHECK(parse("{\"config\":{\"digest\":\"" D1 "\",\"size\":-1},\"layers\":[]}", NULL, &m, &sel, &kind, err) ==
	      OCI_EINVAL);
	CHECK(parse("{\"config\":{\"digest\":\"" D1 "\",\"size\":1},\"layers\":[{\"mediaType\":\"application/"
		    "vnd.oci.image.layer.v1.tar+zstd\",\"digest\":\"" D2 "\",\"size\":1}]}",
		    NULL, &m, &sel, &kind, err) == OCI_EUNSUPPORTED);
	CHECK(parse("[1,2]", NULL, &m, &sel, &kind, err) == OCI_EINVAL);
	CHECK(parse("{\"layers\":", NULL, &m, &sel, &kind, err) == OCI_EINVAL);
}

TEST(config_summary)
{
	const char *cfg =
	    "{\"architecture\":\"amd64\",\"os\":\"linux\",\"config\":{\"Env\":[\"PATH=/usr/bin\",\"A=b\"],"
	    "\"WorkingDir\":\"/app\",\"User\":\"1000:1000\",\"ExposedPorts\":{\"8080/tcp\":{},\"53/udp\":{}},"
	    "\"Entrypoint\":[\"/entry\"],\"Cmd\":[\"serve\",\"--port\",\"8080\"]}}";
	struct buf b = BUF_INIT;
	struct jw w;
	char err[200];
	jw_init(&w, &b);
	jw_obj(&w);
	CHECK(oci_config_summary(cfg, strlen(cfg), &w, err, sizeof err) == OCI_OK);
	jw_end(&w);
	CHECK_STREQ(b.data, "{\"os\":\"linux\",\"architecture\":\"amd64\",\"env\":[\"PATH=/usr/bin\",\"A=b\"],"
			    "\"workingDir\":\"/app\",\"user\":\"1000:1000\",\"exposedPorts\":[\"8080/tcp\",\"53/udp\"],"
			    "\"entrypoint\":[\"/entry\"],\"cmd\":[\"serve\",\"--port\",\"8080\"]}");
	buf_reset(&b);
	jw_init(&w, &b);
	jw_obj(&w);
	const char *arm = "{\"architecture\":\"arm64\",\"os\":\"linux\"}";
	CHECK(oci_config_summary(arm, strlen(arm), &w, err, sizeof err) == OCI_EUNSUPPORTED);
	CHECK(oci_config_summary("nope", 4, &w, err, sizeof err) == OCI_EINVAL);
	buf_free(&b);
}

TEST(challenges)
{
	struct oci_challenge c;
	CHECK(oci_challenge_parse("Bearer realm=\"https://auth.example/token\",service=\"registry.example\","
				  "scope=\"repository:library/alpine:pull\"",
				  &c) == 0);
	CHECK(c.bearer);
	CHECK_STREQ(c.realm, "https://auth.example/token");
	CHECK_STREQ(c.service, "registry.example");
	CHECK_STREQ(c.scope, "repository:library/alpine:pull");
	CHECK(oci_challenge_parse("bearer  realm=http://x/t , scope=\"a\\\"b\"", &c) == 0);
	CHECK_STREQ(c.realm, "http://x/t");
	CHECK_STREQ(c.scope, "a\"b");
	CHECK(oci_challenge_parse("Basic realm=\"Registry\"", &c) == 0 && c.basic);
	CHECK(oci_challenge_parse("Bearer service=\"x\"", &c) < 0); /* no realm */
	CHECK(oci_challenge_parse("Negotiate", &c) < 0);
	CHECK(oci_challenge_parse("Bearer realm=\"unterminated", &c) == 0);
	CHECK_STREQ(c.realm, "unterminated");
}

TEST(urls)
{
	struct oci_url u, v;
	CHECK(oci_url_parse("https://reg.example/v2/x/blobs/y?a=b", &u) == 0);
	CHECK(u.tls && u.port == 443);
	CHECK_STREQ(u.host, "reg.example");
	CHECK_STREQ(u.target, "/v2/x/blobs/y?a=b");
	CHECK(oci_url_parse("http://127.0.0.1:5000", &u) == 0 && !u.tls && u.port == 5000);
	CHECK_STREQ(u.target, "/");
	CHECK(oci_url_parse("http://[::1]:8080/x", &u) == 0 && u.port == 8080);
	CHECK_STREQ(u.host, "::1");
	CHECK(oci_url_parse("ftp://x/", &u) < 0);
	CHECK(oci_url_parse("http://user@x/", &u) < 0);
	CHECK(oci_url_parse("http://x:99999/", &u) < 0);
	CHECK(oci_url_parse("http://x/a b", &u) < 0);
	CHECK(oci_url_parse("https://reg.example:444/a", &u) == 0);
	CHECK(oci_url_resolve(&u, "/storage/blob?sig=1", &v) == 0);
	CHECK(v.tls && v.port == 444);
	CHECK_STREQ(v.target, "/storage/blob?sig=1");
	CHECK(oci_url_resolve(&u, "http://cdn.example/b", &v) == 0 && !v.tls);
	CHECK_STREQ(v.host, "cdn.example");
	CHECK(oci_url_resolve(&u, "relative", &v) < 0);
	CHECK(oci_url_resolve(&u, "//other.host/x", &v) < 0);
}
