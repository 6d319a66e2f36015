/* fuzz_oci_manifest.c - what a registry or an archive sends as JSON
 * (manifests, indexes, image configs) and image references, on any bytes:
 * no crash, and whatever is accepted keeps the invariants the puller relies
 * on (valid sha256 digests, bounded layer counts, linux/amd64 only). */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "../oci.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static struct oci_manifest m;
	struct oci_desc sel;
	enum oci_doc_kind kind;
	char err[300];
	const char *body = (const char *)data;
	int rc = oci_parse_manifest_body(body, size,
					 size && data[0] == '{' ? NULL : "application/vnd.oci.image.index.v1+json", &m,
					 &sel, &kind, err, sizeof err);
	if (rc == OCI_OK && kind == OCI_DOC_MANIFEST) {
		if (!oci_digest_valid(m.config.digest) || m.nlayers > OCI_MAX_LAYERS)
			abort();
		for (size_t i = 0; i < m.nlayers; i++)
			if (!oci_digest_valid(m.layers[i].digest))
				abort();
	}
	if (rc == OCI_OK && kind == OCI_DOC_INDEX && !oci_digest_valid(sel.digest))
		abort();

	struct buf b = BUF_INIT;
	struct jw w;
	jw_init(&w, &b);
	jw_obj(&w);
	if (oci_config_summary(body, size, &w, err, sizeof err) == OCI_OK) {
		jw_end(&w);
		/* The summary is JSON the build job can read back. */
		struct json *j = json_parse(b.data, b.len, NULL, 0);
		if (!j || strcmp(json_get_str(j, "os"), "linux") != 0 ||
		    strcmp(json_get_str(j, "architecture"), "amd64") != 0)
			abort();
		json_free(j);
	}
	buf_free(&b);

	char ref[700];
	size_t n = size < sizeof ref - 1 ? size : sizeof ref - 1;
	memcpy(ref, data, n);
	ref[n] = '\0';
	struct oci_ref r;
	if (oci_ref_parse(ref, &r, err, sizeof err) == OCI_OK) {
		/* Nothing that could leave the /v2/<name>/ URL space. */
		if (strstr(r.name, "..") || strchr(r.name, ' ') || strchr(r.name, '?') || r.name[0] == '/' ||
		    (r.digest[0] && !oci_digest_valid(r.digest)) || (!r.tag[0] && !r.digest[0]))
			abort();
	}
	return 0;
}
