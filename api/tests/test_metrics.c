/* test_metrics.c - the metrics sample: the VMM's stats reply, the E2B shape,
 * a stand-in control socket, CPU percentages. */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "../metrics.h"
#include "../../lib/json.h"
#include "../../lib/tests/test.h"

/* A reply as cube-vmm's control socket writes it (vmm/control.c). */
static const char stats_reply[] =
    "{\"ok\":true,\"state\":\"running\",\"uptime_ms\":1234,\"memory\":{\"guest_bytes\":268435456,"
    "\"rss_bytes\":52428800,\"pss_bytes\":20971520,\"private_bytes\":10485760,\"private_dirty_bytes\":1048576,"
    "\"shared_bytes\":41943040},\"vcpus\":[{\"id\":0,\"state\":\"running\",\"exits\":10},"
    "{\"id\":1,\"state\":\"halted\",\"exits\":3}],\"pid\":42}";

TEST(parse_stats_reply)
{
	struct metrics_sample s = {.cpu_count = 1, .mem_total = 1};
	char err[256];
	CHECK_EQ_INT(metrics_parse_stats(stats_reply, strlen(stats_reply), &s, err, sizeof err), 0);
	CHECK(s.mem_total == 268435456 && s.mem_used == 52428800);
	CHECK(s.mem_pss == 20971520 && s.mem_private == 10485760 && s.mem_cache == 0);
	CHECK_EQ_INT(s.cpu_count, 2);
}

TEST(parse_stats_refusals)
{
	struct metrics_sample s = {0};
	char err[256];
	const char *bad[] = {
	    "", "{", "[]", "{\"ok\":false,\"error\":\"paused\"}", "{\"ok\":true}", "{\"ok\":true,\"memory\":3}"};
	for (size_t i = 0; i < sizeof bad / sizeof *bad; i++)
		CHECK_EQ_INT(metrics_parse_stats(bad[i], strlen(bad[i]), &s, err, sizeof err), -1);
	metrics_parse_stats(bad[3], strlen(bad[3]), &s, err, sizeof err);
	CHECK(strstr(err, "paused") != NULL);
}

TEST(e2b_shape)
{
	struct metrics_sample s = {.ts_ms = 1795431600123LL,
				   .cpu_count = 2,
				   .cpu_used_pct = 12.5,
				   .mem_used = 100,
				   .mem_total = 200,
				   .disk_used = 300,
				   .disk_total = 400,
				   .mem_pss = 50,
				   .mem_private = 25};
	struct buf b = BUF_INIT;
	metrics_write(&s, &b);
	struct json *j = json_parse(b.data, b.len, NULL, 0);
	CHECK(j && j->type == JSON_ARRAY && j->count == 1);
	const struct json *m = j ? j->child : NULL;
	if (m) {
		CHECK_STREQ(json_get_str(m, "timestamp"), "2026-11-23T11:00:00.123Z");
		CHECK(json_get_int(m, "timestampUnix", 0) == 1795431600);
		CHECK(json_get_int(m, "cpuCount", 0) == 2);
		CHECK(json_get(m, "cpuUsedPct") && json_get(m, "cpuUsedPct")->num == 12.5);
		CHECK(json_get_int(m, "memUsed", 0) == 100 && json_get_int(m, "memTotal", 0) == 200);
		CHECK(json_get_int(m, "memCache", -1) == 0);
		CHECK(json_get_int(m, "diskUsed", 0) == 300 && json_get_int(m, "diskTotal", 0) == 400);
		CHECK(json_get_int(m, "memPss", 0) == 50 && json_get_int(m, "memPrivate", 0) == 25);
	}
	json_free(j);
	buf_free(&b);
}

TEST(cpu_percent)
{
	long hz = sysconf(_SC_CLK_TCK);
	/* hz ticks = 1 s of CPU over 2 s on 1 vCPU: 50 %; on 2 vCPUs: 25 %. */
	CHECK(metrics_cpu_pct(0, hz, 2000, 1) == 50.0);
	CHECK(metrics_cpu_pct(hz, 2 * hz, 2000, 2) == 25.0);
	CHECK(metrics_cpu_pct(0, 10 * hz, 1000, 1) == 100.0); /* capped */
	CHECK(metrics_cpu_pct(5, 4, 1000, 1) == 0.0);	      /* a counter that went back */
	CHECK(metrics_cpu_pct(0, 1, 0, 1) == 0.0);
	CHECK(metrics_process_ticks(getpid()) >= 0);
	CHECK(metrics_process_ticks(-1) == -1);
}

/* A stand-in control socket: answers one request line with `answer`. */
struct fake_ctl {
	int lfd;
	const char *answer;
	char request[256];
};

static void *fake_ctl_serve(void *arg)
{
	struct fake_ctl *f = arg;
	int c = accept(f->lfd, NULL, NULL);
	if (c < 0)
		return NULL;
	ssize_t n = read(c, f->request, sizeof f->request - 1);
	f->request[n > 0 ? n : 0] = '\0';
	if (f->answer && write(c, f->answer, strlen(f->answer)) < 0)
		perror("fake control write");
	close(c);
	return NULL;
}

static int fake_ctl_listen(const char *path)
{
	struct sockaddr_un sa = {.sun_family = AF_UNIX};
	snprintf(sa.sun_path, sizeof sa.sun_path, "%s", path);
	unlink(path);
	int fd = socket(AF_UNIX, SOCK_STREAM, 0);
	if (fd < 0 || bind(fd, (struct sockaddr *)&sa, sizeof sa) < 0 || listen(fd, 4) < 0)
		return -1;
	return fd;
}

static int query_fake(const char *answer, struct buf *reply, char *err, size_t errsz, char *request)
{
	char path[64];
	snprintf(path, sizeof path, "/tmp/cube-test-metrics-%d.sock", (int)getpid());
	struct fake_ctl f = {.lfd = fake_ctl_listen(path), .answer = answer};
	if (f.lfd < 0)
		return -2;
	pthread_t t;
	pthread_create(&t, NULL, fake_ctl_serve, &f);
	int rc = metrics_query_vmm(path, 1000, reply, err, errsz);
	pthread_join(t, NULL);
	close(f.lfd);
	unlink(path);
	snprintf(request, 256, "%s", f.request);
	return rc;
}

TEST(query_control_socket)
{
	char err[256], request[256], answer[1024];
	struct buf reply = BUF_INIT;
	snprintf(answer, sizeof answer, "%s\n{\"ok\":true}\n", stats_reply);
	CHECK_EQ_INT(query_fake(answer, &reply, err, sizeof err, request), 0);
	CHECK_STREQ(request, "{\"op\":\"stats\"}\n");
	CHECK_STREQ(reply.data, stats_reply); /* the first line only */
	buf_free(&reply);

	/* A VMM that closes without a full line, and no socket at all. */
	CHECK_EQ_INT(query_fake("{\"ok\":tr", &reply, err, sizeof err, request), -1);
	CHECK(strstr(err, "closed") != NULL);
	buf_free(&reply);
	CHECK_EQ_INT(metrics_query_vmm("/nonexistent/control.sock", 100, &reply, err, sizeof err), -1);
	CHECK(strstr(err, "/nonexistent/control.sock") != NULL);
	buf_free(&reply);
}
