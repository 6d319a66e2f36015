/*
 * net.c - NICs at boot: static or DHCP (net.h).
 *
 * Each DHCP NIC has a dhcp_client, a timer, and up to two sockets, opened
 * only while the client needs them: a packet socket (AF_PACKET, IPv4 only,
 * a BPF filter for UDP to port 68) while it has no address, and a UDP socket
 * on port 68 bound to the NIC (SO_BINDTODEVICE, SO_BROADCAST) for renewing
 * and rebinding. After every event the sockets and the timer are brought in
 * line with the client's state (sync_iface).
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/filter.h>
#include <linux/if_packet.h>
#include <linux/rtnetlink.h>
#include <net/ethernet.h>
#include <net/if.h>
#include <net/if_arp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <unistd.h>

#include "../lib/fileio.h"
#include "../lib/json.h"
#include "../lib/log.h"
#include "dhcp.h"
#include "net.h"
#include "netlink.h"

/* Default routes: a static gateway wins over DHCP ones; DHCP NICs differ by
 * index so that two of them never fight over the same route. */
#define METRIC_STATIC 0
#define METRIC_DHCP   1000

struct net_iface {
	struct net *net;
	char name[16];
	int index;
	uint8_t mac[6];
	bool is_static, dhcp_running;
	struct net_static st;
	struct dhcp_client dhcp;
	int raw_fd, udp_fd;
	struct loop_io raw_io, udp_io;
	struct loop_timer timer;
};

struct net {
	struct loop *loop;
	char *state_dir;
	char hostname[64];
	struct net_iface *ifs;
	size_t n;
};

static struct net *running;

struct net *net_running(void)
{
	return running;
}

/* --- network.json -------------------------------------------------------------------- */

static int fail(char *err, size_t errsz, const char *why)
{
	snprintf(err, errsz, "%s", why);
	return -1;
}

static bool parse_cidr(const char *s, struct in_addr *a, unsigned *prefix)
{
	char addr[INET_ADDRSTRLEN];
	const char *slash = s ? strchr(s, '/') : NULL;
	if (!slash || (size_t)(slash - s) >= sizeof addr)
		return false;
	memcpy(addr, s, (size_t)(slash - s));
	addr[slash - s] = '\0';
	char *end;
	long p = strtol(slash + 1, &end, 10);
	if (!slash[1] || *end || p < 1 || p > 32 || inet_pton(AF_INET, addr, a) != 1)
		return false;
	*prefix = (unsigned)p;
	return true;
}

int net_parse_config(const char *json, bool *is_static, struct net_static *s, char *err, size_t errsz)
{
	memset(s, 0, sizeof *s);
	*is_static = false;
	if (!json)
		return 0;
	struct json *j = json_parse(json, strlen(json), err, errsz);
	if (!j)
		return -1;
	int rc = 0;
	const char *mode = json_get_str(j, "mode");
	if (!mode || strcmp(mode, "dhcp") == 0) {
		rc = mode || j->type == JSON_OBJECT ? 0 : fail(err, errsz, "not an object with \"mode\"");
		goto out;
	}
	if (strcmp(mode, "static") != 0) {
		rc = fail(err, errsz, "mode must be \"dhcp\" or \"static\"");
		goto out;
	}
	const char *iface = json_get_str(j, "iface"), *gw = json_get_str(j, "gateway");
	if (!iface || !*iface || strlen(iface) >= sizeof s->iface) {
		rc = fail(err, errsz, "static needs \"iface\"");
		goto out;
	}
	snprintf(s->iface, sizeof s->iface, "%s", iface);
	if (!parse_cidr(json_get_str(j, "address"), &s->addr, &s->prefix)) {
		rc = fail(err, errsz, "\"address\" must look like 192.168.1.10/24");
		goto out;
	}
	if (gw && *gw && inet_pton(AF_INET, gw, &s->gateway) != 1) {
		rc = fail(err, errsz, "\"gateway\" must be an IPv4 address");
		goto out;
	}
	const struct json *dns = json_get(j, "dns");
	for (const struct json *d = dns && dns->type == JSON_ARRAY ? dns->child : NULL; d; d = d->next) {
		if (d->type != JSON_STRING || inet_pton(AF_INET, d->str, &s->dns[s->n_dns]) != 1) {
			rc = fail(err, errsz, "\"dns\" must list IPv4 addresses");
			goto out;
		}
		if (s->n_dns < 3)
			s->n_dns++;
	}
	*is_static = true;
out:
	json_free(j);
	return rc;
}

/* --- resolv.conf ------------------------------------------------------------------------ */

static void add_dns(struct in_addr *all, unsigned *n, unsigned max, const struct in_addr *more, unsigned k)
{
	for (unsigned i = 0; i < k; i++) {
		bool dup = false;
		for (unsigned j = 0; j < *n; j++)
			dup |= all[j].s_addr == more[i].s_addr;
		if (!dup && *n < max)
			all[(*n)++] = more[i];
	}
}

/* Static servers first, then those of every held lease. Replaced atomically. */
static void write_resolv_conf(struct net *n)
{
	struct in_addr all[12];
	unsigned count = 0;
	for (size_t i = 0; i < n->n; i++)
		if (n->ifs[i].is_static)
			add_dns(all, &count, 12, n->ifs[i].st.dns, n->ifs[i].st.n_dns);
	for (size_t i = 0; i < n->n; i++)
		if (!n->ifs[i].is_static && n->ifs[i].dhcp.have_lease)
			add_dns(all, &count, 12, n->ifs[i].dhcp.lease.dns, n->ifs[i].dhcp.lease.n_dns);
	struct buf b = BUF_INIT;
	buf_puts(&b, "# written by cubeos from the static configuration and DHCP leases\n");
	for (unsigned i = 0; i < count; i++) {
		char s[INET_ADDRSTRLEN];
		inet_ntop(AF_INET, &all[i], s, sizeof s);
		buf_printf(&b, "nameserver %s\n", s);
	}
	char path[4096];
	snprintf(path, sizeof path, "%s/resolv.conf", n->state_dir);
	if (file_replace(path, b.data, b.len, 0644, true) < 0)
		log_warn("net.dns", "cannot write %s: %s", path, strerror(errno));
	buf_free(&b);
}

/* --- sockets ------------------------------------------------------------------------------ */

static void sync_iface(struct net_iface *i);

static void close_sock(struct net_iface *i, int *fd, struct loop_io *io)
{
	if (*fd < 0)
		return;
	loop_io_del(i->net->loop, io);
	close(*fd);
	*fd = -1;
}

static void on_raw(void *arg, uint32_t events)
{
	struct net_iface *i = arg;
	uint8_t pkt[2048];
	ssize_t n = recv(i->raw_fd, pkt, sizeof pkt, 0);
	const uint8_t *msg;
	size_t len;
	if (n > 0 && dhcp_frame_parse(pkt, (size_t)n, &msg, &len) == 0)
		dhcp_client_input(&i->dhcp, msg, len, mono_ms());
	sync_iface(i);
}

static void on_udp(void *arg, uint32_t events)
{
	struct net_iface *i = arg;
	uint8_t msg[DHCP_MSG_MAX];
	ssize_t n = recv(i->udp_fd, msg, sizeof msg, 0);
	if (n > 0)
		dhcp_client_input(&i->dhcp, msg, (size_t)n, mono_ms());
	sync_iface(i);
}

/* Only IPv4 UDP to port 68, unfragmented, wakes the packet socket. */
static int attach_dhcp_filter(int fd)
{
	struct sock_filter code[] = {
	    BPF_STMT(BPF_LD | BPF_B | BPF_ABS, 9),			 /* IP protocol */
	    BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, IPPROTO_UDP, 0, 5),	 /* UDP? */
	    BPF_STMT(BPF_LD | BPF_H | BPF_ABS, 6),			 /* flags + fragment offset */
	    BPF_JUMP(BPF_JMP | BPF_JSET | BPF_K, 0x1fff, 3, 0),		 /* a later fragment: drop */
	    BPF_STMT(BPF_LDX | BPF_B | BPF_MSH, 0),			 /* X = IP header length */
	    BPF_STMT(BPF_LD | BPF_H | BPF_IND, 2),			 /* UDP destination port */
	    BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, DHCP_CLIENT_PORT, 1, 0), /* port 68 */
	    BPF_STMT(BPF_RET | BPF_K, 0),
	    BPF_STMT(BPF_RET | BPF_K, 0xffff),
	};
	struct sock_fprog prog = {.len = sizeof code / sizeof code[0], .filter = code};
	return setsockopt(fd, SOL_SOCKET, SO_ATTACH_FILTER, &prog, sizeof prog);
}

static int open_raw(struct net_iface *i)
{
	if (i->raw_fd >= 0)
		return 0;
	int fd = socket(AF_PACKET, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, htons(ETH_P_IP));
	struct sockaddr_ll sll = {.sll_family = AF_PACKET, .sll_protocol = htons(ETH_P_IP), .sll_ifindex = i->index};
	if (fd < 0 || attach_dhcp_filter(fd) < 0 || bind(fd, (struct sockaddr *)&sll, sizeof sll) < 0 ||
	    loop_io_add(i->net->loop, &i->raw_io, fd, EPOLLIN, on_raw, i) < 0) {
		log_warn("net.dhcp", "%s: packet socket: %s", i->name, strerror(errno));
		if (fd >= 0)
			close(fd);
		return -1;
	}
	i->raw_fd = fd;
	return 0;
}

static int open_udp(struct net_iface *i)
{
	if (i->udp_fd >= 0)
		return 0;
	int fd = socket(AF_INET, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0), one = 1;
	struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons(DHCP_CLIENT_PORT)};
	/* Bound to the NIC before bind(): every NIC can then have its own port 68. */
	if (fd < 0 || setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one) < 0 ||
	    setsockopt(fd, SOL_SOCKET, SO_BINDTODEVICE, i->name, (socklen_t)strlen(i->name) + 1) < 0 ||
	    setsockopt(fd, SOL_SOCKET, SO_BROADCAST, &one, sizeof one) < 0 ||
	    bind(fd, (struct sockaddr *)&sa, sizeof sa) < 0 ||
	    loop_io_add(i->net->loop, &i->udp_io, fd, EPOLLIN, on_udp, i) < 0) {
		log_warn("net.dhcp", "%s: UDP socket: %s", i->name, strerror(errno));
		if (fd >= 0)
			close(fd);
		return -1;
	}
	i->udp_fd = fd;
	return 0;
}

static int dhcp_send(void *arg, enum dhcp_send_how how, struct in_addr to, const uint8_t *msg, size_t len)
{
	struct net_iface *i = arg;
	ssize_t n;
	if (how == DHCP_SEND_RAW_BROADCAST) {
		uint8_t pkt[DHCP_MSG_MAX + 64];
		struct in_addr any = {0};
		size_t plen = dhcp_frame_build(pkt, sizeof pkt, any, to, msg, len);
		struct sockaddr_ll sll = {
		    .sll_family = AF_PACKET, .sll_protocol = htons(ETH_P_IP), .sll_ifindex = i->index, .sll_halen = 6};
		memset(sll.sll_addr, 0xff, 6);
		if (open_raw(i) < 0 || !plen)
			return -1;
		n = sendto(i->raw_fd, pkt, plen, 0, (struct sockaddr *)&sll, sizeof sll);
	} else {
		struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons(DHCP_SERVER_PORT), .sin_addr = to};
		if (open_udp(i) < 0)
			return -1;
		n = sendto(i->udp_fd, msg, len, 0, (struct sockaddr *)&sa, sizeof sa);
	}
	if (n < 0) {
		/* A link without carrier yet: the retry timer sends again. */
		log_debug("net.dhcp", "%s: send: %s", i->name, strerror(errno));
		return -1;
	}
	return 0;
}

/* --- installing addresses ------------------------------------------------------------------- */

static const char *ip(struct in_addr a, char *s)
{
	return inet_ntop(AF_INET, &a, s, INET_ADDRSTRLEN);
}

static void install(struct net_iface *i, struct in_addr addr, unsigned prefix, struct in_addr gw, unsigned metric,
		    uint8_t proto, bool flush)
{
	char a[INET_ADDRSTRLEN], g[INET_ADDRSTRLEN];
	if (flush && nl_addr4_flush(i->index) < 0)
		log_warn("net", "%s: cannot flush addresses: %s", i->name, strerror(errno));
	if (nl_addr4_add(i->index, addr, prefix) < 0)
		log_error("net", "%s: cannot add %s/%u: %s", i->name, ip(addr, a), prefix, strerror(errno));
	if (gw.s_addr && nl_route4_add_default(i->index, gw, metric, proto) < 0)
		log_error("net", "%s: cannot add the default route via %s: %s", i->name, ip(gw, g), strerror(errno));
}

static void dhcp_bound(void *arg, const struct dhcp_lease *l, bool renewal)
{
	struct net_iface *i = arg;
	char a[INET_ADDRSTRLEN], g[INET_ADDRSTRLEN], s[INET_ADDRSTRLEN];
	/* On renewal the address is re-added too: harmless, and it repairs a
	 * hand-deleted address. The route is only touched on a new lease. */
	install(i, l->addr, l->prefix, renewal ? (struct in_addr){0} : l->router, METRIC_DHCP + (unsigned)i->index,
		RTPROT_DHCP, !renewal);
	log_info(renewal ? "net.dhcp.renew" : "net.dhcp.bound", "%s: %s %s/%u%s%s from %s, lease %u s", i->name,
		 renewal ? "renewed" : "bound", ip(l->addr, a), l->prefix, l->router.s_addr ? " via " : "",
		 l->router.s_addr ? ip(l->router, g) : "", ip(l->server, s), l->lease_s);
	write_resolv_conf(i->net);
}

static void dhcp_lost(void *arg, const struct dhcp_lease *l)
{
	struct net_iface *i = arg;
	char a[INET_ADDRSTRLEN];
	/* Removing the address takes the routes through it along. */
	if (nl_addr4_flush(i->index) < 0)
		log_warn("net", "%s: cannot flush addresses: %s", i->name, strerror(errno));
	log_warn("net.dhcp.lost", "%s: lease of %s ended%s", i->name, ip(l->addr, a),
		 i->dhcp_running ? "; asking again" : "");
	write_resolv_conf(i->net);
}

static const struct dhcp_ops dhcp_ops = {dhcp_send, dhcp_bound, dhcp_lost};

static void on_timer(void *arg)
{
	struct net_iface *i = arg;
	dhcp_client_timeout(&i->dhcp, mono_ms());
	sync_iface(i);
}

static void sync_iface(struct net_iface *i)
{
	if (!i->dhcp_running || !dhcp_client_needs_raw(&i->dhcp))
		close_sock(i, &i->raw_fd, &i->raw_io);
	if (!i->dhcp_running || !i->dhcp.have_lease)
		close_sock(i, &i->udp_fd, &i->udp_io);
	uint64_t next = dhcp_client_next(&i->dhcp), now = mono_ms();
	if (!i->dhcp_running || next == UINT64_MAX)
		loop_timer_disarm(i->net->loop, &i->timer);
	else
		loop_timer_arm(i->net->loop, &i->timer, next > now ? next - now : 0, on_timer, i);
}

/* --- per NIC ----------------------------------------------------------------------------------- */

static void start_dhcp(struct net_iface *i)
{
	uint32_t seed = 0;
	if (getrandom(&seed, sizeof seed, GRND_NONBLOCK) != sizeof seed)
		seed = (uint32_t)mono_ms() ^ (uint32_t)i->index << 16 ^ i->mac[5];
	dhcp_client_init(&i->dhcp, i->mac, i->net->hostname, &dhcp_ops, i, seed);
	i->dhcp_running = true;
	log_info("net.dhcp.start", "%s: asking for an address (DHCP)", i->name);
	dhcp_client_start(&i->dhcp, mono_ms());
	sync_iface(i);
}

static void stop_dhcp(struct net_iface *i)
{
	if (!i->dhcp_running)
		return;
	i->dhcp_running = false;
	dhcp_client_stop(&i->dhcp);
	sync_iface(i);
}

static void apply_static(struct net_iface *i)
{
	char a[INET_ADDRSTRLEN], g[INET_ADDRSTRLEN];
	install(i, i->st.addr, i->st.prefix, i->st.gateway, METRIC_STATIC, RTPROT_STATIC, true);
	log_info("net.static", "%s: static %s/%u%s%s", i->name, ip(i->st.addr, a), i->st.prefix,
		 i->st.gateway.s_addr ? " via " : "", i->st.gateway.s_addr ? ip(i->st.gateway, g) : "");
}

/* Puts NIC i in the configured mode. reconfigure: it was running before. */
static void configure(struct net_iface *i, bool is_static, const struct net_static *st, bool reconfigure)
{
	bool same = reconfigure && i->is_static == is_static && (!is_static || memcmp(&i->st, st, sizeof *st) == 0);
	if (same)
		return;
	stop_dhcp(i);
	i->is_static = is_static;
	i->st = *st;
	if (is_static)
		apply_static(i);
	else
		start_dhcp(i);
}

static void loopback_up(const struct nl_link *l)
{
	struct in_addr lo = {htonl(INADDR_LOOPBACK)};
	if (nl_link_up(l->index) < 0 || nl_addr4_add(l->index, lo, 8) < 0)
		log_error("net", "%s: cannot bring loopback up: %s", l->name, strerror(errno));
}

static bool is_nic(const struct nl_link *l)
{
	return l->type == ARPHRD_ETHER && !(l->flags & IFF_LOOPBACK) && l->mac_len == 6;
}

static void apply_all(struct net *n, const char *config_json, bool reconfigure)
{
	struct net_static st, none;
	bool is_static = false, matched = false;
	char err[256];
	memset(&none, 0, sizeof none);
	if (net_parse_config(config_json, &is_static, &st, err, sizeof err) < 0) {
		log_error("net.config", "network.json ignored (%s): DHCP on every NIC", err);
		is_static = false;
	}
	for (size_t k = 0; k < n->n; k++) {
		bool mine = is_static && strcmp(n->ifs[k].name, st.iface) == 0;
		matched |= mine;
		configure(&n->ifs[k], mine, mine ? &st : &none, reconfigure);
	}
	if (is_static && !matched)
		log_warn("net.config", "network.json names %s, which is not an ethernet NIC here", st.iface);
	write_resolv_conf(n);
}

struct net *net_start(struct loop *l, const struct net_options *o)
{
	struct nl_link *links;
	int count = nl_links(&links);
	if (count < 0) {
		log_error("net", "cannot list network links: %s", strerror(errno));
		return NULL;
	}
	struct net *n = calloc(1, sizeof *n);
	n->loop = l;
	n->state_dir = strdup(o->state_dir ? o->state_dir : "/run");
	snprintf(n->hostname, sizeof n->hostname, "%s", o->hostname ? o->hostname : "");
	n->ifs = calloc((size_t)count + 1, sizeof *n->ifs);
	for (int k = 0; k < count; k++) {
		if (links[k].flags & IFF_LOOPBACK) {
			loopback_up(&links[k]);
			continue;
		}
		if (!is_nic(&links[k]))
			continue;
		struct net_iface *i = &n->ifs[n->n++];
		i->net = n;
		i->index = links[k].index;
		memcpy(i->name, links[k].name, sizeof i->name);
		memcpy(i->mac, links[k].mac, 6);
		i->raw_fd = i->udp_fd = -1;
		if (nl_link_up(i->index) < 0)
			log_error("net", "%s: cannot set the link up: %s", i->name, strerror(errno));
	}
	free(links);
	if (n->n == 0)
		log_warn("net", "no ethernet NIC found");
	apply_all(n, o->config_json, false);
	if (!running)
		running = n;
	return n;
}

int net_apply(struct net *n, const char *config_json, char *err, size_t errsz)
{
	bool is_static;
	struct net_static st;
	if (net_parse_config(config_json, &is_static, &st, err, errsz) < 0)
		return -1;
	apply_all(n, config_json, true);
	return 0;
}

void net_stop(struct net *n)
{
	if (!n)
		return;
	for (size_t k = 0; k < n->n; k++)
		stop_dhcp(&n->ifs[k]);
	if (running == n)
		running = NULL;
	free(n->ifs);
	free(n->state_dir);
	free(n);
}

static void describe_dhcp(const struct net_iface *i, struct buf *out, uint64_t now)
{
	const struct dhcp_client *c = &i->dhcp;
	char a[INET_ADDRSTRLEN], g[INET_ADDRSTRLEN], s[INET_ADDRSTRLEN];
	buf_printf(out, "  %-12s dhcp %s", i->name, dhcp_state_name(c->state));
	if (!c->have_lease) {
		buf_puts(out, " (no lease yet)\r\n");
		return;
	}
	const struct dhcp_lease *l = &c->lease;
	buf_printf(out, " %s/%u", ip(l->addr, a), l->prefix);
	if (l->router.s_addr)
		buf_printf(out, " via %s", ip(l->router, g));
	buf_printf(out, " server %s", ip(l->server, s));
	if (l->lease_s == DHCP_INFINITE) {
		buf_puts(out, " lease infinite\r\n");
		return;
	}
	uint64_t t1 = c->t1_ms > now ? (c->t1_ms - now) / 1000 : 0,
		 exp = c->expire_ms > now ? (c->expire_ms - now) / 1000 : 0;
	buf_printf(out, " lease %u s, renew in %llu s, expires in %llu s\r\n", l->lease_s, (unsigned long long)t1,
		   (unsigned long long)exp);
}

void net_describe(struct net *n, struct buf *out)
{
	char a[INET_ADDRSTRLEN], g[INET_ADDRSTRLEN];
	uint64_t now = mono_ms();
	for (size_t k = 0; n && k < n->n; k++) {
		const struct net_iface *i = &n->ifs[k];
		if (i->is_static)
			buf_printf(out, "  %-12s static %s/%u%s%s\r\n", i->name, ip(i->st.addr, a), i->st.prefix,
				   i->st.gateway.s_addr ? " via " : "",
				   i->st.gateway.s_addr ? ip(i->st.gateway, g) : "");
		else
			describe_dhcp(i, out, now);
	}
}
