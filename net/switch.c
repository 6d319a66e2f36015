/*
 * switch.c - the sandbox switch's loader: its eBPF programs from the light
 * skeleton (no libbpf at run time: the bpf() syscall only), the
 * always-blocked ranges, per-sandbox entries and policies, counters, and
 * the audit ring buffer read through its mmapped pages.
 */
#include <errno.h> /* before the skeleton: skel_internal.h needs it */
#include <arpa/inet.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "switch.lskel.h"
#include "switch_loader.h"

struct net_sw {
	struct net_switch *skel;
	void *rb_consumer; /* one page: the consumer position */
	void *rb_producer; /* one page of producer position, then the data twice */
	size_t rb_size, page;
	int ncpus;
};

static long sys_bpf(int cmd, union bpf_attr *attr)
{
	return syscall(__NR_bpf, cmd, attr, sizeof *attr);
}

static int map_update(int fd, const void *key, const void *value, __u64 flags)
{
	union bpf_attr a;
	memset(&a, 0, sizeof a);
	a.map_fd = (__u32)fd;
	a.key = (__u64)(unsigned long)key;
	a.value = (__u64)(unsigned long)value;
	a.flags = flags;
	return sys_bpf(BPF_MAP_UPDATE_ELEM, &a) < 0 ? -1 : 0;
}

static int map_delete(int fd, const void *key)
{
	union bpf_attr a;
	memset(&a, 0, sizeof a);
	a.map_fd = (__u32)fd;
	a.key = (__u64)(unsigned long)key;
	return sys_bpf(BPF_MAP_DELETE_ELEM, &a) < 0 && errno != ENOENT ? -1 : 0;
}

static int map_lookup(int fd, const void *key, void *value)
{
	union bpf_attr a;
	memset(&a, 0, sizeof a);
	a.map_fd = (__u32)fd;
	a.key = (__u64)(unsigned long)key;
	a.value = (__u64)(unsigned long)value;
	return sys_bpf(BPF_MAP_LOOKUP_ELEM, &a) < 0 ? -1 : 0;
}

/* What no rule may open (switch.h, step 3): RFC 6890's special-purpose
 * IPv4 blocks a sandbox has no business reaching. */
static const char *const blocked_defaults[] = {
    "0.0.0.0/8",     "10.0.0.0/8",	"100.64.0.0/10",  "127.0.0.0/8",    "169.254.0.0/16",
    "172.16.0.0/12", "192.0.0.0/24",	"192.0.2.0/24",	  "192.88.99.0/24", "192.168.0.0/16",
    "198.18.0.0/15", "198.51.100.0/24", "203.0.113.0/24", "224.0.0.0/4",    "240.0.0.0/4",
};

int net_cidr4_parse(const char *s, __be32 *addr, __u32 *plen)
{
	char ip[32];
	const char *slash = strchr(s, '/');
	size_t n = slash ? (size_t)(slash - s) : strlen(s);
	if (n == 0 || n >= sizeof ip)
		return -1;
	memcpy(ip, s, n);
	ip[n] = '\0';
	struct in_addr in;
	if (inet_pton(AF_INET, ip, &in) != 1)
		return -1;
	long len = 32;
	if (slash) {
		char *end;
		len = strtol(slash + 1, &end, 10);
		if (!slash[1] || *end || len < 0 || len > 32)
			return -1;
	}
	__u32 host = ntohl(in.s_addr), mask = len ? 0xffffffffu << (32 - len) : 0;
	*addr = htonl(host & mask);
	*plen = (__u32)len;
	return 0;
}

static int block(struct net_sw *sw, const char *cidr)
{
	struct switch_range4 k = {0};
	__u8 one = 1;
	if (net_cidr4_parse(cidr, &k.addr, &k.prefixlen) < 0) {
		errno = EINVAL;
		return -1;
	}
	return map_update(sw->skel->maps.blocked4.map_fd, &k, &one, BPF_ANY);
}

static int open_ringbuf(struct net_sw *sw)
{
	int fd = sw->skel->maps.audit.map_fd;
	sw->page = (size_t)sysconf(_SC_PAGESIZE);
	sw->rb_size = SWITCH_RINGBUF_BYTES;
	sw->rb_consumer = mmap(NULL, sw->page, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	if (sw->rb_consumer == MAP_FAILED)
		return -1;
	/* The data pages are mapped twice in a row: a record that wraps reads straight. */
	sw->rb_producer = mmap(NULL, sw->page + 2 * sw->rb_size, PROT_READ, MAP_SHARED, fd, (off_t)sw->page);
	if (sw->rb_producer == MAP_FAILED) {
		munmap(sw->rb_consumer, sw->page);
		return -1;
	}
	return 0;
}

struct net_sw *net_switch_load(const char *const *unblocked, char *err, size_t errsz)
{
	struct net_sw *sw = calloc(1, sizeof *sw);
	if (!sw)
		abort();
	sw->ncpus = (int)sysconf(_SC_NPROCESSORS_CONF);
	sw->skel = net_switch__open_and_load();
	if (!sw->skel) {
		snprintf(err, errsz, "cannot load the switch's eBPF programs: %s", strerror(errno));
		free(sw);
		return NULL;
	}
	for (size_t i = 0; i < sizeof blocked_defaults / sizeof blocked_defaults[0]; i++) {
		bool open = false;
		for (const char *const *u = unblocked; u && *u && !open; u++)
			open = strcmp(*u, blocked_defaults[i]) == 0;
		if (!open && block(sw, blocked_defaults[i]) < 0) {
			snprintf(err, errsz, "blocked range %s: %s", blocked_defaults[i], strerror(errno));
			net_switch_free(sw);
			return NULL;
		}
	}
	if (open_ringbuf(sw) < 0) {
		snprintf(err, errsz, "cannot map the audit ring buffer: %s", strerror(errno));
		sw->rb_consumer = sw->rb_producer = NULL;
		net_switch_free(sw);
		return NULL;
	}
	return sw;
}

void net_switch_free(struct net_sw *sw)
{
	if (!sw)
		return;
	if (sw->rb_consumer)
		munmap(sw->rb_consumer, sw->page);
	if (sw->rb_producer)
		munmap(sw->rb_producer, sw->page + 2 * sw->rb_size);
	net_switch__destroy(sw->skel);
	free(sw);
}

int net_switch_prog_fd(const struct net_sw *sw, bool from_guest)
{
	return from_guest ? sw->skel->progs.from_guest.prog_fd : sw->skel->progs.to_guest.prog_fd;
}

int net_switch_set_sandbox(struct net_sw *sw, __u32 ifindex, const struct switch_sandbox *s)
{
	return map_update(sw->skel->maps.sandboxes.map_fd, &ifindex, s, BPF_ANY);
}

int net_switch_remove_sandbox(struct net_sw *sw, __u32 ifindex, __u32 id)
{
	int rc = map_delete(sw->skel->maps.sandboxes.map_fd, &ifindex);
	if (map_delete(sw->skel->maps.counters.map_fd, &id) < 0)
		rc = -1;
	return rc;
}

int net_switch_rule(struct net_sw *sw, __u32 id, bool allow, const char *cidr, bool add)
{
	struct switch_rule4 k = {.sandbox = htonl(id)};
	__u32 plen;
	__u8 one = 1;
	if (net_cidr4_parse(cidr, &k.addr, &plen) < 0) {
		errno = EINVAL;
		return -1;
	}
	k.prefixlen = 32 + plen;
	int fd = allow ? sw->skel->maps.allow4.map_fd : sw->skel->maps.deny4.map_fd;
	return add ? map_update(fd, &k, &one, BPF_ANY) : map_delete(fd, &k);
}

int net_switch_counters(const struct net_sw *sw, __u32 id, struct switch_counters *sum)
{
	struct switch_counters *per = calloc((size_t)sw->ncpus, sizeof *per);
	if (!per)
		abort();
	memset(sum, 0, sizeof *sum);
	int rc = map_lookup(sw->skel->maps.counters.map_fd, &id, per);
	for (int i = 0; rc == 0 && i < sw->ncpus; i++) {
		sum->tx_packets += per[i].tx_packets;
		sum->tx_bytes += per[i].tx_bytes;
		sum->rx_packets += per[i].rx_packets;
		sum->rx_bytes += per[i].rx_bytes;
		sum->dropped += per[i].dropped;
	}
	free(per);
	return rc;
}

/* Ring buffer records: an 8-byte header (length, with busy and discard
 * bits, and a page offset), the record, padding to 8 bytes. */
#define RB_BUSY	   (1u << 31)
#define RB_DISCARD (1u << 30)
#define RB_HDR	   8

int net_switch_audit_poll(struct net_sw *sw, void (*fn)(void *arg, const struct switch_event *e), void *arg)
{
	unsigned long *cons_pos = sw->rb_consumer, *prod_pos = sw->rb_producer;
	const char *data = (const char *)sw->rb_producer + sw->page;
	unsigned long cons = __atomic_load_n(cons_pos, __ATOMIC_ACQUIRE);
	int n = 0;
	for (;;) {
		unsigned long prod = __atomic_load_n(prod_pos, __ATOMIC_ACQUIRE);
		if (cons >= prod)
			break;
		const __u32 *hdr = (const __u32 *)(data + (cons & (sw->rb_size - 1)));
		__u32 len = __atomic_load_n(hdr, __ATOMIC_ACQUIRE);
		if (len & RB_BUSY)
			break; /* still being written */
		__u32 size = len & ~(RB_BUSY | RB_DISCARD);
		if (!(len & RB_DISCARD) && size >= sizeof(struct switch_event)) {
			struct switch_event e;
			memcpy(&e, (const char *)hdr + RB_HDR, sizeof e);
			fn(arg, &e);
			n++;
		}
		cons += (RB_HDR + size + 7) & ~7ul;
		__atomic_store_n(cons_pos, cons, __ATOMIC_RELEASE);
	}
	return n;
}
