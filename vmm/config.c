/* config.c - struct vm_config <-> JSON; see config.h. */
#include "config.h"

#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../lib/json.h"

/* --- writer --------------------------------------------------------------- */

static void write_mac(struct jw *w, const uint8_t mac[6])
{
	char s[18];
	snprintf(s, sizeof(s), "%02x:%02x:%02x:%02x:%02x:%02x", mac[0], mac[1], mac[2], mac[3], mac[4], mac[5]);
	jw_kstr(w, "mac", s);
}

static void write_disk(struct jw *w, const struct disk_config *d)
{
	jw_obj(w);
	jw_kstr(w, "base", d->base);
	jw_kstr(w, "layer", d->layer);
	jw_key(w, "lower");
	jw_arr(w);
	for (int i = 0; i < d->nr_lower; i++)
		jw_str(w, d->lower[i]);
	jw_end(w);
	jw_kbool(w, "read_only", d->read_only);
	jw_end(w);
}

void vm_config_write_members(const struct vm_config *cfg, struct jw *w)
{
	jw_kstr(w, "kernel", cfg->kernel);
	jw_kstr(w, "initrd", cfg->initrd);
	jw_kstr(w, "cmdline", cfg->cmdline);
	jw_kint(w, "vcpus", cfg->nr_vcpus);
	jw_key(w, "mem_bytes");
	jw_uint(w, cfg->mem_bytes);
	jw_key(w, "disks");
	jw_arr(w);
	for (int i = 0; i < cfg->nr_disks && i < VMM_MAX_DISKS; i++)
		write_disk(w, &cfg->disks[i]);
	jw_end(w);
	jw_key(w, "nics");
	jw_arr(w);
	for (int i = 0; i < cfg->nr_nics && i < VMM_MAX_NICS; i++) {
		jw_obj(w);
		jw_kstr(w, "tap_name", cfg->nics[i].tap_name);
		write_mac(w, cfg->nics[i].mac);
		jw_end(w);
	}
	jw_end(w);
	jw_key(w, "vsock");
	if (cfg->has_vsock) {
		jw_obj(w);
		jw_key(w, "guest_cid");
		jw_uint(w, cfg->vsock.guest_cid);
		jw_kstr(w, "uds_path", cfg->vsock.uds_path);
		jw_end(w);
	} else {
		jw_null(w);
	}
	jw_kstr(w, "serial_out", cfg->serial_out);
	jw_kstr(w, "control_path", cfg->control_path);
	jw_kstr(w, "id", cfg->id);
	jw_kbool(w, "no_irqchip", cfg->no_irqchip);
}

int vm_config_to_json(const struct vm_config *cfg, struct buf *out)
{
	struct jw w;
	jw_init(&w, out);
	jw_obj(&w);
	vm_config_write_members(cfg, &w);
	jw_end(&w);
	return 0;
}

/* --- reader --------------------------------------------------------------- */

struct parse {
	char *err;
	size_t errsz;
};

static int bad(struct parse *p, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static int bad(struct parse *p, const char *fmt, ...)
{
	if (p->errsz) {
		va_list ap;
		va_start(ap, fmt);
		vsnprintf(p->err, p->errsz, fmt, ap);
		va_end(ap);
	}
	return -1;
}

/* Refuses members outside allowed[] (NULL-terminated): a misspelt key would
 * otherwise silently fall back to a default. */
static int only_members(struct parse *p, const struct json *obj, const char *where, const char *const *allowed)
{
	for (const struct json *m = obj->child; m; m = m->next) {
		bool ok = false;
		for (int i = 0; allowed[i] && !ok; i++)
			ok = strlen(allowed[i]) == m->key_len && memcmp(allowed[i], m->key, m->key_len) == 0;
		if (!ok)
			return bad(p, "%s: unknown member \"%.*s\"", where, (int)(m->key_len > 64 ? 64 : m->key_len),
				   m->key);
	}
	return 0;
}

/* Absent or null -> NULL; a string without NUL bytes -> a copy. */
static int opt_str(struct parse *p, const struct json *obj, const char *where, const char *key, char **out)
{
	const struct json *v = json_get(obj, key);
	*out = NULL;
	if (!v || v->type == JSON_NULL)
		return 0;
	if (v->type != JSON_STRING)
		return bad(p, "%s.%s must be a string or null", where, key);
	if (strlen(v->str) != v->len)
		return bad(p, "%s.%s contains a NUL byte", where, key);
	*out = strdup(v->str);
	if (!*out)
		return bad(p, "out of memory");
	return 0;
}

static int req_str(struct parse *p, const struct json *obj, const char *where, const char *key, char **out)
{
	if (opt_str(p, obj, where, key, out) < 0)
		return -1;
	if (!*out)
		return bad(p, "%s.%s is required", where, key);
	return 0;
}

/* An integer member in [min, max]; absent -> def (if has_def) or an error. */
static int int_member(struct parse *p, const struct json *obj, const char *where, const char *key, bool has_def,
		      int64_t def, int64_t min, int64_t max, int64_t *out)
{
	const struct json *v = json_get(obj, key);
	if (!v) {
		if (!has_def)
			return bad(p, "%s.%s is required", where, key);
		*out = def;
		return 0;
	}
	if (v->type != JSON_NUMBER || !v->is_int)
		return bad(p, "%s.%s must be an integer", where, key);
	if (v->i < min || v->i > max)
		return bad(p, "%s.%s = %" PRId64 " is out of range [%" PRId64 ", %" PRId64 "]", where, key, v->i, min,
			   max);
	*out = v->i;
	return 0;
}

static int bool_member(struct parse *p, const struct json *obj, const char *where, const char *key, bool *out)
{
	const struct json *v = json_get(obj, key);
	*out = false;
	if (!v)
		return 0;
	if (v->type != JSON_BOOL)
		return bad(p, "%s.%s must be true or false", where, key);
	*out = v->boolean;
	return 0;
}

/* Absent or null -> an empty list; otherwise an array of at most max items. */
static int array_member(struct parse *p, const struct json *obj, const char *where, const char *key, int max,
			const struct json **out)
{
	const struct json *v = json_get(obj, key);
	*out = NULL;
	if (!v || v->type == JSON_NULL)
		return 0;
	if (v->type != JSON_ARRAY)
		return bad(p, "%s.%s must be an array", where, key);
	if (v->count > (size_t)max)
		return bad(p, "%s.%s has %zu entries, at most %d allowed", where, key, v->count, max);
	*out = v;
	return 0;
}

static int parse_mac(struct parse *p, const struct json *nic, const char *where, uint8_t mac[6])
{
	const char *s = json_get_str(nic, "mac");
	if (!s)
		return bad(p, "%s.mac is required (\"xx:xx:xx:xx:xx:xx\")", where);
	unsigned v[6];
	int used = 0;
	if (strlen(s) != 17 ||
	    sscanf(s, "%2x:%2x:%2x:%2x:%2x:%2x%n", &v[0], &v[1], &v[2], &v[3], &v[4], &v[5], &used) != 6 || used != 17)
		return bad(p, "%s.mac \"%.20s\" is not xx:xx:xx:xx:xx:xx", where, s);
	for (int i = 0; i < 6; i++) {
		if (s[3 * i] == ' ' || s[3 * i] == '+' || s[3 * i] == '-')
			return bad(p, "%s.mac \"%.20s\" is not xx:xx:xx:xx:xx:xx", where, s);
		mac[i] = (uint8_t)v[i];
	}
	return 0;
}

static int parse_disk(struct parse *p, const struct json *j, int idx, struct disk_config *d)
{
	char where[32];
	snprintf(where, sizeof(where), "disks[%d]", idx);
	static const char *const keys[] = {"base", "layer", "lower", "read_only", NULL};
	if (j->type != JSON_OBJECT)
		return bad(p, "%s must be an object", where);
	if (only_members(p, j, where, keys) < 0 || req_str(p, j, where, "base", &d->base) < 0 ||
	    opt_str(p, j, where, "layer", &d->layer) < 0 || bool_member(p, j, where, "read_only", &d->read_only) < 0)
		return -1;
	const struct json *lower;
	if (array_member(p, j, where, "lower", (int)(sizeof(d->lower) / sizeof(d->lower[0])), &lower) < 0)
		return -1;
	for (const struct json *l = lower ? lower->child : NULL; l; l = l->next) {
		if (l->type != JSON_STRING || strlen(l->str) != l->len)
			return bad(p, "%s.lower[%d] must be a string", where, d->nr_lower);
		d->lower[d->nr_lower] = strdup(l->str);
		if (!d->lower[d->nr_lower])
			return bad(p, "out of memory");
		d->nr_lower++;
	}
	if (d->read_only && d->layer)
		return bad(p, "%s: a read-only disk has no writable layer", where);
	return 0;
}

static int parse_nic(struct parse *p, const struct json *j, int idx, struct net_config *n)
{
	char where[32];
	snprintf(where, sizeof(where), "nics[%d]", idx);
	static const char *const keys[] = {"tap_name", "mac", NULL};
	if (j->type != JSON_OBJECT)
		return bad(p, "%s must be an object", where);
	return only_members(p, j, where, keys) < 0 || opt_str(p, j, where, "tap_name", &n->tap_name) < 0 ||
		       parse_mac(p, j, where, n->mac) < 0
		   ? -1
		   : 0;
}

static int parse_vsock(struct parse *p, const struct json *root, struct vm_config *cfg)
{
	const struct json *v = json_get(root, "vsock");
	if (!v || v->type == JSON_NULL)
		return 0;
	static const char *const keys[] = {"guest_cid", "uds_path", NULL};
	if (v->type != JSON_OBJECT)
		return bad(p, "config.vsock must be an object or null");
	int64_t cid;
	/* CIDs 0-2 are reserved (hypervisor, local, host); the guest's is 32 bits wide in Linux. */
	if (only_members(p, v, "vsock", keys) < 0 ||
	    int_member(p, v, "vsock", "guest_cid", true, 3, 3, UINT32_MAX - 1, &cid) < 0 ||
	    opt_str(p, v, "vsock", "uds_path", &cfg->vsock.uds_path) < 0)
		return -1;
	cfg->has_vsock = true;
	cfg->vsock.guest_cid = (uint64_t)cid;
	return 0;
}

static int parse_devices(struct parse *p, const struct json *root)
{
	const struct json *devs;
	if (array_member(p, root, "config", "devices", VMM_MAX_DEVICES, &devs) < 0)
		return -1;
	for (const struct json *d = devs ? devs->child : NULL; d; d = d->next)
		if (d->type != JSON_STRING)
			return bad(p, "config.devices must hold strings");
	return 0;
}

static int parse_root(struct parse *p, const struct json *root, struct vm_config *cfg)
{
	static const char *const keys[] = {"kernel", "initrd",	"cmdline",    "vcpus",	    "mem_bytes",
					   "disks",  "nics",	"vsock",      "serial_out", "control_path",
					   "id",     "devices", "no_irqchip", NULL};
	if (root->type != JSON_OBJECT)
		return bad(p, "config must be a JSON object");
	int64_t vcpus, mem;
	if (only_members(p, root, "config", keys) < 0 || opt_str(p, root, "config", "kernel", &cfg->kernel) < 0 ||
	    opt_str(p, root, "config", "initrd", &cfg->initrd) < 0 ||
	    opt_str(p, root, "config", "cmdline", &cfg->cmdline) < 0 ||
	    int_member(p, root, "config", "vcpus", false, 0, 1, VMM_MAX_VCPUS, &vcpus) < 0 ||
	    int_member(p, root, "config", "mem_bytes", false, 0, 1, (int64_t)VM_CONFIG_MAX_MEM, &mem) < 0 ||
	    opt_str(p, root, "config", "serial_out", &cfg->serial_out) < 0 ||
	    opt_str(p, root, "config", "control_path", &cfg->control_path) < 0 ||
	    opt_str(p, root, "config", "id", &cfg->id) < 0 ||
	    bool_member(p, root, "config", "no_irqchip", &cfg->no_irqchip) < 0 || parse_devices(p, root) < 0)
		return -1;
	if (mem % 4096)
		return bad(p, "config.mem_bytes = %" PRId64 " is not a multiple of the 4 KiB page size", mem);
	cfg->nr_vcpus = (int)vcpus;
	cfg->mem_bytes = (uint64_t)mem;

	const struct json *arr;
	if (array_member(p, root, "config", "disks", VMM_MAX_DISKS, &arr) < 0)
		return -1;
	for (const struct json *d = arr ? arr->child : NULL; d; d = d->next) {
		int i = cfg->nr_disks++; /* counted first: vm_config_free then frees a half-parsed disk */
		if (parse_disk(p, d, i, &cfg->disks[i]) < 0)
			return -1;
	}
	if (array_member(p, root, "config", "nics", VMM_MAX_NICS, &arr) < 0)
		return -1;
	for (const struct json *n = arr ? arr->child : NULL; n; n = n->next) {
		int i = cfg->nr_nics++;
		if (parse_nic(p, n, i, &cfg->nics[i]) < 0)
			return -1;
	}
	return parse_vsock(p, root, cfg);
}

static void config_empty(struct vm_config *cfg)
{
	memset(cfg, 0, sizeof(*cfg));
	for (int i = 0; i < VMM_MAX_NICS; i++)
		cfg->nics[i].tap_fd = -1;
}

int vm_config_from_json(const char *json, size_t len, struct vm_config *cfg, char *err, size_t errsz)
{
	struct parse p = {err, errsz};
	config_empty(cfg);
	if (errsz)
		err[0] = '\0';
	char jerr[160];
	struct json *root = json_parse(json, len, jerr, sizeof(jerr));
	if (!root)
		return bad(&p, "config is not valid JSON: %s", jerr);
	int rc = parse_root(&p, root, cfg);
	json_free(root);
	if (rc < 0)
		vm_config_free(cfg);
	return rc;
}

void vm_config_free(struct vm_config *cfg)
{
	free(cfg->kernel);
	free(cfg->initrd);
	free(cfg->cmdline);
	for (int i = 0; i < VMM_MAX_DISKS; i++) {
		free(cfg->disks[i].base);
		free(cfg->disks[i].layer);
		for (int j = 0; j < 4; j++)
			free(cfg->disks[i].lower[j]);
	}
	for (int i = 0; i < VMM_MAX_NICS; i++)
		free(cfg->nics[i].tap_name);
	free(cfg->vsock.uds_path);
	free(cfg->serial_out);
	free(cfg->control_path);
	free(cfg->id);
	config_empty(cfg);
}
