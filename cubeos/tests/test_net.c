/*
 * test_net.c - the network part of cubeos against a real DHCP server, all
 * inside network namespaces that exist only as long as the test's processes:
 *
 *   orchestrator (new netns "server"): veth s0 <-> c0, s0 = 10.77.0.1/24,
 *     busybox udhcpd on s0 (8 s leases: T1 4 s, T2 7 s)
 *   client (new netns, gets c0): net_start() on a real event loop
 *
 * The client checks: loopback up with 127.0.0.1, a lease installed on c0
 * with the default route and resolv.conf, the address kept without a gap
 * past the first lease's expiry (so it was renewed, not re-acquired), then
 * the static configuration applied live and at start.
 *
 * Nothing outlives the test: the namespaces die with their processes, and
 * udhcpd gets SIGKILL if the orchestrator dies (PR_SET_PDEATHSIG); the whole
 * process group is killed on a timeout. Skipped where namespaces or busybox
 * udhcpd are not available.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <sched.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "../../lib/log.h"
#include "../../lib/loop.h"
#include "../../lib/tests/test.h"
#include "../net.h"
#include "../netlink.h"
#include "tmpdir.h"

#define SKIP	   77
#define TIMEOUT_MS 60000

static char *dir;

static int run(const char *cmd)
{
	int rc = system(cmd);
	if (rc != 0)
		fprintf(stderr, "  command failed (%d): %s\n", rc, cmd);
	return rc;
}

static struct in_addr A(const char *s) {
	struct in_addr a;
	inet_pton(AF_INET, s, &a);
	return a;
}

/* --- client side checks --------------------------------------------------------------- */

static int
link_index(const char *name)
{
	struct nl_link *l;
	int n = nl_links(&l), index = 0;
	for (int k = 0; k < n; k++)
		if (strcmp(l[k].name, name) == 0)
			index = l[k].index;
	free(l);
	return index;
}

/* The IPv4 address of the link (first one), or 0. */
static uint32_t addr_of(int index, unsigned *prefix)
{
	struct nl_addr4 *a;
	int n = nl_addrs4(&a);
	uint32_t found = 0;
	for (int k = 0; k < n && !found; k++)
		if (a[k].index == index) {
			found = a[k].addr.s_addr;
			if (prefix)
				*prefix = a[k].prefix;
		}
	free(a);
	return found;
}

static bool has_default_via(int index, const char *gw, unsigned metric)
{
	struct nl_route4 *r;
	int n = nl_routes4(&r);
	bool found = false;
	for (int k = 0; k < n; k++)
		found |= r[k].prefix == 0 && r[k].oif == index && r[k].gateway.s_addr == A(gw).s_addr &&
			 r[k].metric == metric;
	free(r);
	return found;
}

static bool resolv_has(const char *what)
{
	char path[512], text[1024] = "";
	snprintf(path, sizeof path, "%s/resolv.conf", dir);
	FILE *f = fopen(path, "r");
	if (f) {
		text[fread(text, 1, sizeof text - 1, f)] = '\0';
		fclose(f);
	}
	return strstr(text, what) != NULL;
}

static bool describe_has(struct net *n, const char *what)
{
	struct buf b = BUF_INIT;
	net_describe(n, &b);
	bool yes = b.data && strstr(b.data, what);
	buf_free(&b);
	return yes;
}

#define REQUIRE(cond)                                                                                                  \
	do {                                                                                                           \
		if (!(cond)) {                                                                                         \
			fprintf(stderr, "  client: %s:%d: %s does not hold\n", __FILE__, __LINE__, #cond);             \
			exit(1);                                                                                       \
		}                                                                                                      \
	} while (0)

struct client {
	struct loop *loop;
	struct net *net;
	struct loop_timer tick;
	int c0;
	uint64_t start_ms, bound_ms;
	uint32_t leased;
	int stage;
};

static const char static_json[] = "{\"mode\":\"static\",\"iface\":\"c0\",\"address\":\"10.77.0.9/24\","
				  "\"gateway\":\"10.77.0.1\",\"dns\":[\"10.77.0.54\"]}";

static void check_static(struct client *c)
{
	unsigned prefix = 0;
	REQUIRE(addr_of(c->c0, &prefix) == A("10.77.0.9").s_addr && prefix == 24);
	REQUIRE(has_default_via(c->c0, "10.77.0.1", 0));
	REQUIRE(resolv_has("nameserver 10.77.0.54"));
	REQUIRE(describe_has(c->net, "static 10.77.0.9/24 via 10.77.0.1"));
}

static void on_tick(void *arg)
{
	struct client *c = arg;
	uint64_t now = mono_ms();
	uint32_t a = addr_of(c->c0, NULL);
	REQUIRE(now - c->start_ms < 40000);
	if (c->stage == 0 && a) { /* first lease */
		unsigned prefix;
		addr_of(c->c0, &prefix);
		REQUIRE(prefix == 24);
		REQUIRE((ntohl(a) & 0xffffff00) == 0x0a4d0000 && (ntohl(a) & 0xff) >= 100);
		REQUIRE(has_default_via(c->c0, "10.77.0.1", 1000 + (unsigned)c->c0));
		REQUIRE(resolv_has("nameserver 10.77.0.53"));
		REQUIRE(describe_has(c->net, "dhcp bound"));
		c->leased = a;
		c->bound_ms = now;
		c->stage = 1;
		fprintf(stderr, "  client: lease after %llu ms\n", (unsigned long long)(now - c->start_ms));
	} else if (c->stage == 1) {
		/* The address must never go away: a renewal, not a new lease. */
		REQUIRE(a == c->leased);
		if (now - c->bound_ms >= 5500 && now - c->bound_ms < 6500)
			REQUIRE(describe_has(c->net, "dhcp bound")); /* past T1: renewed */
		if (now - c->bound_ms >= 10000) {
			char err[256];
			fprintf(stderr, "  client: renewed; now static (live)\n");
			REQUIRE(net_apply(c->net, static_json, err, sizeof err) == 0);
			check_static(c);
			net_stop(c->net);
			/* The boot path with the static configuration. */
			nl_addr4_flush(c->c0);
			struct net_options o = {
			    .state_dir = dir, .hostname = "cubeos-test", .config_json = static_json};
			c->net = net_start(c->loop, &o);
			REQUIRE(c->net);
			check_static(c);
			net_stop(c->net);
			loop_stop(c->loop);
			return;
		}
	}
	loop_timer_arm(c->loop, &c->tick, 50, on_tick, c);
}

static int client_main(void)
{
	struct client c = {0};
	c.loop = loop_new();
	c.c0 = link_index("c0");
	REQUIRE(c.c0 > 0);
	struct net_options o = {.state_dir = dir, .hostname = "cubeos-test"};
	c.start_ms = mono_ms();
	c.net = net_start(c.loop, &o);
	REQUIRE(c.net && net_running() == c.net);
	/* Loopback is up with its address. */
	int lo = link_index("lo");
	REQUIRE(lo > 0 && addr_of(lo, NULL) == A("127.0.0.1").s_addr);
	loop_timer_arm(c.loop, &c.tick, 50, on_tick, &c);
	loop_run(c.loop);
	loop_free(c.loop);
	return 0;
}

/* --- the server side ------------------------------------------------------------------- */

static void sleep_ms(long ms)
{
	struct timespec ts = {ms / 1000, (ms % 1000) * 1000000};
	nanosleep(&ts, NULL);
}

static pid_t start_udhcpd(void)
{
	char conf[512], text[1024];
	snprintf(conf, sizeof conf, "%s/udhcpd.conf", dir);
	snprintf(text, sizeof text,
		 "start 10.77.0.100\nend 10.77.0.110\ninterface s0\nlease_file %s/leases\npidfile %s/udhcpd.pid\n"
		 "opt subnet 255.255.255.0\nopt router 10.77.0.1\nopt dns 10.77.0.53\nopt lease 8\n",
		 dir, dir);
	FILE *f = fopen(conf, "w");
	fputs(text, f);
	fclose(f);
	snprintf(text, sizeof text, "%s/leases", dir);
	fclose(fopen(text, "w"));
	pid_t pid = fork();
	if (pid == 0) {
		prctl(PR_SET_PDEATHSIG, SIGKILL);
		execlp("busybox", "busybox", "udhcpd", "-f", "-a", "100", conf, (char *)NULL);
		_exit(127);
	}
	return pid;
}

/* Runs in the orchestrator's own network namespace. */
static int orchestrate(void)
{
	int ready[2], go[2];
	char b;
	if (run("ip link set lo up && ip link add s0 type veth peer name c0 && ip addr add 10.77.0.1/24 dev s0 && "
		"ip link set s0 up") != 0)
		return 1;
	if (pipe(ready) < 0 || pipe(go) < 0)
		return 1;
	pid_t client = fork();
	if (client == 0) {
		prctl(PR_SET_PDEATHSIG, SIGKILL);
		if (unshare(CLONE_NEWNET) < 0)
			_exit(1);
		if (write(ready[1], "r", 1) != 1 || read(go[0], &b, 1) != 1)
			_exit(1);
		_exit(client_main());
	}
	if (read(ready[0], &b, 1) != 1)
		return 1;
	char cmd[128];
	snprintf(cmd, sizeof cmd, "ip link set c0 netns %d", (int)client);
	if (run(cmd) != 0)
		return 1;
	pid_t server = start_udhcpd();
	sleep_ms(200);
	if (write(go[1], "g", 1) != 1)
		return 1;
	int status;
	waitpid(client, &status, 0);
	kill(server, SIGKILL);
	waitpid(server, NULL, 0);
	return WIFEXITED(status) ? WEXITSTATUS(status) : 1;
}

static bool have_udhcpd(void)
{
	return system("busybox udhcpd --help >/dev/null 2>&1; test $? -ne 127 && busybox --list | grep -qx udhcpd") ==
	       0;
}

TEST(dhcp_renew_and_static_in_netns)
{
	if (!have_udhcpd()) {
		printf("test_net: SKIP: busybox udhcpd is not available\n");
		return;
	}
	dir = tmpdir_make("net");
	pid_t orch = fork();
	if (orch == 0) {
		setpgid(0, 0);
		if (unshare(CLONE_NEWNET) < 0) {
			fprintf(stderr, "unshare(CLONE_NEWNET): %s\n", strerror(errno));
			_exit(SKIP);
		}
		_exit(orchestrate());
	}
	setpgid(orch, orch);
	int status = 0;
	uint64_t deadline = mono_ms() + TIMEOUT_MS;
	while (waitpid(orch, &status, WNOHANG) == 0) {
		if (mono_ms() > deadline) {
			fprintf(stderr, "  timeout: killing the test's processes\n");
			kill(-orch, SIGKILL);
			waitpid(orch, &status, 0);
			break;
		}
		sleep_ms(50);
	}
	if (WIFEXITED(status) && WEXITSTATUS(status) == SKIP)
		printf("test_net: SKIP: cannot create network namespaces here\n");
	else
		CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0);
	tmpdir_remove(dir);
	free(dir);
}

TEST(config_parsing)
{
	bool is_static;
	struct net_static s;
	char err[256];
	CHECK_EQ_INT(net_parse_config(NULL, &is_static, &s, err, sizeof err), 0);
	CHECK(!is_static);
	CHECK_EQ_INT(net_parse_config("{\"mode\":\"dhcp\"}", &is_static, &s, err, sizeof err), 0);
	CHECK(!is_static);
	CHECK_EQ_INT(net_parse_config(static_json, &is_static, &s, err, sizeof err), 0);
	CHECK(is_static);
	CHECK_STREQ(s.iface, "c0");
	CHECK_EQ_INT(s.prefix, 24);
	CHECK(s.gateway.s_addr == A("10.77.0.1").s_addr);
	CHECK_EQ_INT(s.n_dns, 1);
	CHECK_EQ_INT(net_parse_config("{\"mode\":\"static\",\"iface\":\"e\",\"address\":\"1.2.3.4\"}", &is_static, &s,
				      err, sizeof err),
		     -1);
	CHECK(strstr(err, "address") != NULL);
	CHECK_EQ_INT(net_parse_config("{\"mode\":\"pppoe\"}", &is_static, &s, err, sizeof err), -1);
	CHECK_EQ_INT(net_parse_config("[1]", &is_static, &s, err, sizeof err), -1);
	CHECK_EQ_INT(net_parse_config("{", &is_static, &s, err, sizeof err), -1);
}
