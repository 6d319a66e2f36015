/* test_config.c - struct vm_config <-> JSON: every field round-trips, bad configs are refused by name. */
#include "../config.h"

#include "../../lib/json.h"
#include "../../lib/tests/test.h"

static struct vm_config full_config(void)
{
	struct vm_config c;
	memset(&c, 0, sizeof(c));
	c.kernel = strdup("/k/vmlinux");
	c.initrd = strdup("/k/initrd \"quoted\" \xc3\xa9");
	c.cmdline = strdup("quiet panic=-1");
	c.nr_vcpus = 2;
	c.mem_bytes = 5ULL << 30;
	c.nr_disks = 2;
	c.disks[0].base = strdup("/img/rootfs.ext4");
	c.disks[0].layer = strdup("/run/s1/layer");
	c.disks[0].lower[0] = strdup("/snap/a/layer");
	c.disks[0].lower[1] = strdup("/snap/b/layer");
	c.disks[0].nr_lower = 2;
	c.disks[1].base = strdup("/img/data.ext4");
	c.disks[1].read_only = true;
	c.nr_nics = 1;
	c.nics[0].tap_name = strdup("tap7");
	c.nics[0].tap_fd = 42;
	memcpy(c.nics[0].mac, "\x52\x54\x00\xab\xcd\xef", 6);
	c.nics[1].tap_fd = -1;
	c.has_vsock = true;
	c.vsock.guest_cid = 0xfffffffe;
	c.vsock.uds_path = strdup("/run/s1/v.sock");
	c.serial_out = strdup("stdio");
	c.control_path = NULL;
	c.id = strdup("i1a2b3");
	c.no_irqchip = true;
	return c;
}

static bool streq_or_null(const char *a, const char *b)
{
	return (!a && !b) || (a && b && strcmp(a, b) == 0);
}

TEST(round_trip_every_field)
{
	struct vm_config a = full_config(), b;
	struct buf j = BUF_INIT;
	CHECK_EQ_INT(vm_config_to_json(&a, &j), 0);
	char err[200] = "";
	if (!CHECK_EQ_INT(vm_config_from_json(j.data, j.len, &b, err, sizeof(err)), 0)) {
		fprintf(stderr, "  %s\n  %s\n", err, j.data);
		goto out;
	}
	CHECK(streq_or_null(a.kernel, b.kernel));
	CHECK(streq_or_null(a.initrd, b.initrd));
	CHECK(streq_or_null(a.cmdline, b.cmdline));
	CHECK_EQ_INT(b.nr_vcpus, 2);
	CHECK(b.mem_bytes == a.mem_bytes);
	CHECK_EQ_INT(b.nr_disks, 2);
	for (int i = 0; i < 2; i++) {
		CHECK(streq_or_null(a.disks[i].base, b.disks[i].base));
		CHECK(streq_or_null(a.disks[i].layer, b.disks[i].layer));
		CHECK_EQ_INT(b.disks[i].nr_lower, a.disks[i].nr_lower);
		for (int k = 0; k < a.disks[i].nr_lower; k++)
			CHECK(streq_or_null(a.disks[i].lower[k], b.disks[i].lower[k]));
		CHECK_EQ_INT(b.disks[i].read_only, a.disks[i].read_only);
	}
	CHECK_EQ_INT(b.nr_nics, 1);
	CHECK(streq_or_null(b.nics[0].tap_name, "tap7"));
	CHECK_EQ_INT(b.nics[0].tap_fd, -1); /* fds never travel */
	CHECK_EQ_INT(b.nics[1].tap_fd, -1);
	CHECK_MEMEQ(b.nics[0].mac, 6, a.nics[0].mac, 6);
	CHECK(b.has_vsock);
	CHECK(b.vsock.guest_cid == 0xfffffffe);
	CHECK(streq_or_null(a.vsock.uds_path, b.vsock.uds_path));
	CHECK(streq_or_null(a.serial_out, b.serial_out));
	CHECK(b.control_path == NULL);
	CHECK(streq_or_null(a.id, b.id));
	CHECK(b.no_irqchip);

	/* And the second trip is byte-identical. */
	struct buf j2 = BUF_INIT;
	vm_config_to_json(&b, &j2);
	CHECK_MEMEQ(j.data, j.len, j2.data, j2.len);
	buf_free(&j2);
	vm_config_free(&b);
out:
	buf_free(&j);
	vm_config_free(&a);
	CHECK(a.kernel == NULL && a.nics[0].tap_fd == -1);
}

TEST(minimal_config_and_devices_list)
{
	struct vm_config c;
	char err[200] = "";
	const char *s = "{\"vcpus\":1,\"mem_bytes\":134217728,\"devices\":[\"serial\",\"virtio-blk\"]}";
	if (!CHECK_EQ_INT(vm_config_from_json(s, strlen(s), &c, err, sizeof(err)), 0)) {
		fprintf(stderr, "  %s\n", err);
		return;
	}
	CHECK(c.kernel == NULL);
	CHECK_EQ_INT(c.nr_disks, 0);
	CHECK(!c.has_vsock);
	CHECK(c.mem_bytes == 134217728);
	vm_config_free(&c);
}

static void refused(const char *json, const char *needle)
{
	struct vm_config c;
	char err[200] = "";
	memset(&c, 0x5a, sizeof(c)); /* garbage in: the parser must not trust it */
	if (vm_config_from_json(json, strlen(json), &c, err, sizeof(err)) == 0) {
		test_fail(__FILE__, __LINE__, "accepted %s", json);
		vm_config_free(&c);
		return;
	}
	if (!strstr(err, needle))
		test_fail(__FILE__, __LINE__, "for %s: message \"%s\" does not say \"%s\"", json, err, needle);
	CHECK(c.kernel == NULL && c.nr_disks == 0); /* left empty */
}

#define BASE "\"vcpus\":1,\"mem_bytes\":4096"

TEST(bad_configs_refused)
{
	refused("", "not valid JSON");
	refused("[1]", "must be a JSON object");
	refused("{\"mem_bytes\":4096}", "config.vcpus is required");
	refused("{\"vcpus\":1}", "config.mem_bytes is required");
	refused("{\"vcpus\":0,\"mem_bytes\":4096}", "config.vcpus = 0 is out of range");
	refused("{\"vcpus\":33,\"mem_bytes\":4096}", "out of range");
	refused("{\"vcpus\":\"2\",\"mem_bytes\":4096}", "config.vcpus must be an integer");
	refused("{\"vcpus\":1.5,\"mem_bytes\":4096}", "must be an integer");
	refused("{\"vcpus\":1,\"mem_bytes\":-4096}", "config.mem_bytes = -4096 is out of range");
	refused("{\"vcpus\":1,\"mem_bytes\":4097}", "not a multiple");
	refused("{\"vcpus\":1,\"mem_bytes\":1e300}", "must be an integer");
	refused("{" BASE ",\"kernal\":\"/k\"}", "unknown member \"kernal\"");
	refused("{" BASE ",\"kernel\":5}", "config.kernel must be a string or null");
	refused("{" BASE ",\"kernel\":\"a\\u0000b\"}", "NUL byte");
	refused("{" BASE ",\"disks\":{}}", "config.disks must be an array");
	refused("{" BASE
		",\"disks\":[{\"base\":\"a\"},{\"base\":\"a\"},{\"base\":\"a\"},{\"base\":\"a\"},{\"base\":\"a\"}]}",
		"config.disks has 5 entries, at most 4 allowed");
	refused("{" BASE ",\"disks\":[{\"layer\":\"x\"}]}", "disks[0].base is required");
	refused("{" BASE ",\"disks\":[7]}", "disks[0] must be an object");
	refused("{" BASE ",\"disks\":[{\"base\":\"a\",\"lower\":[\"1\",\"2\",\"3\",\"4\",\"5\"]}]}",
		"disks[0].lower has 5 entries");
	refused("{" BASE ",\"disks\":[{\"base\":\"a\",\"lower\":[1]}]}", "disks[0].lower[0] must be a string");
	refused("{" BASE ",\"disks\":[{\"base\":\"a\",\"read_only\":1}]}", "read_only must be true or false");
	refused("{" BASE ",\"disks\":[{\"base\":\"a\",\"read_only\":true,\"layer\":\"l\"}]}", "no writable layer");
	refused("{" BASE ",\"disks\":[{\"base\":\"a\",\"size\":1}]}", "disks[0]: unknown member \"size\"");
	refused("{" BASE ",\"nics\":[{},{},{}]}", "config.nics has 3 entries, at most 2 allowed");
	refused("{" BASE ",\"nics\":[{\"tap_name\":\"t\"}]}", "nics[0].mac is required");
	refused("{" BASE ",\"nics\":[{\"mac\":\"52:54:00:12:34\"}]}", "is not xx:xx");
	refused("{" BASE ",\"nics\":[{\"mac\":\"52:54:00:12:34:5g\"}]}", "is not xx:xx");
	refused("{" BASE ",\"nics\":[{\"mac\":\"52:54:00:12:34: 5\"}]}", "is not xx:xx");
	refused("{" BASE ",\"nics\":[{\"mac\":\"52:54:00:12:34:56\",\"tap_fd\":3}]}", "unknown member \"tap_fd\"");
	refused("{" BASE ",\"vsock\":true}", "config.vsock must be an object or null");
	refused("{" BASE ",\"vsock\":{\"guest_cid\":2}}", "vsock.guest_cid = 2 is out of range");
	refused("{" BASE ",\"vsock\":{\"guest_cid\":4294967295}}", "out of range");
	refused("{" BASE ",\"devices\":[1]}", "config.devices must hold strings");
	refused("{" BASE ",\"no_irqchip\":null}", "config.no_irqchip must be true or false");
}
