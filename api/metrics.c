/* metrics.c - GET /sandboxes/{id}/metrics from the VMM's own figures (see
 * metrics.h for what each field means). */
#include "metrics.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <sys/un.h>
#include <unistd.h>

#include "../lib/http.h"
#include "../lib/json.h"
#include "../lib/log.h"
#include "apicore.h"

#define STATS_TIMEOUT_MS 2000
#define STATS_MAX_REPLY	 (64 * 1024) /* the VMM refuses longer lines too */
#define MIB		 (1024ull * 1024)

/* --- the stats reply ------------------------------------------------------------ */

static uint64_t member_u64(const struct json *obj, const char *key)
{
	int64_t v = json_get_int(obj, key, 0);
	return v > 0 ? (uint64_t)v : 0;
}

int metrics_parse_stats(const char *line, size_t len, struct metrics_sample *s, char *err, size_t errsz)
{
	char why[160];
	struct json *j = json_parse(line, len, why, sizeof why);
	if (!j) {
		snprintf(err, errsz, "malformed stats reply: %s", why);
		return -1;
	}
	const struct json *mem = json_get(j, "memory");
	if (j->type != JSON_OBJECT || !json_get_bool(j, "ok", false) || !mem || mem->type != JSON_OBJECT) {
		const char *e = json_get_str(j, "error");
		snprintf(err, errsz, "stats refused: %s", e ? e : "no memory figures in the reply");
		json_free(j);
		return -1;
	}
	if (member_u64(mem, "guest_bytes"))
		s->mem_total = member_u64(mem, "guest_bytes");
	s->mem_used = member_u64(mem, "rss_bytes");
	s->mem_pss = member_u64(mem, "pss_bytes");
	s->mem_private = member_u64(mem, "private_bytes");
	s->mem_cache = 0;
	const struct json *vcpus = json_get(j, "vcpus");
	if (vcpus && vcpus->type == JSON_ARRAY && vcpus->count > 0)
		s->cpu_count = (int)vcpus->count;
	json_free(j);
	return 0;
}

void metrics_write(const struct metrics_sample *s, struct buf *out)
{
	char t[32];
	time_format(s->ts_ms, t);
	struct jw w;
	jw_init(&w, out);
	jw_arr(&w);
	jw_obj(&w);
	jw_kstr(&w, "timestamp", t);
	jw_kint(&w, "timestampUnix", s->ts_ms / 1000);
	jw_kint(&w, "cpuCount", s->cpu_count);
	jw_key(&w, "cpuUsedPct");
	jw_double(&w, s->cpu_used_pct);
	jw_key(&w, "memUsed");
	jw_uint(&w, s->mem_used);
	jw_key(&w, "memTotal");
	jw_uint(&w, s->mem_total);
	jw_key(&w, "memCache");
	jw_uint(&w, s->mem_cache);
	jw_key(&w, "diskUsed");
	jw_uint(&w, s->disk_used);
	jw_key(&w, "diskTotal");
	jw_uint(&w, s->disk_total);
	jw_key(&w, "memPss");
	jw_uint(&w, s->mem_pss);
	jw_key(&w, "memPrivate");
	jw_uint(&w, s->mem_private);
	jw_end(&w);
	jw_end(&w);
}

/* --- the control socket (blocking; worker threads only) ---------------------------- */

static int connect_unix(const char *path, int timeout_ms, char *err, size_t errsz)
{
	int fd = http_connect_unix(path);
	if (fd < 0) {
		snprintf(err, errsz, "control socket %s: %s", path, strerror(errno));
		return -1;
	}
	struct timeval tv = {.tv_sec = timeout_ms / 1000, .tv_usec = (timeout_ms % 1000) * 1000};
	setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
	setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
	return fd;
}

/* Reads up to the first newline; the timeouts are the socket's. */
static int read_reply_line(int fd, struct buf *reply, char *err, size_t errsz)
{
	char chunk[4096];
	while (!memchr(reply->data ? reply->data : "", '\n', reply->len)) {
		if (reply->len > STATS_MAX_REPLY) {
			snprintf(err, errsz, "stats reply longer than %d bytes", STATS_MAX_REPLY);
			return -1;
		}
		ssize_t n = read(fd, chunk, sizeof chunk);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0) {
			snprintf(err, errsz, "stats reply: %s", n < 0 ? strerror(errno) : "the VMM closed the socket");
			return -1;
		}
		buf_append(reply, chunk, (size_t)n);
	}
	reply->len = (size_t)((char *)memchr(reply->data, '\n', reply->len) - reply->data);
	buf_putc(reply, '\0');
	reply->len--;
	return 0;
}

int metrics_query_vmm(const char *path, int timeout_ms, struct buf *reply, char *err, size_t errsz)
{
	int fd = connect_unix(path, timeout_ms, err, errsz);
	if (fd < 0)
		return -1;
	static const char req[] = "{\"op\":\"stats\"}\n";
	int rc = -1;
	if (write(fd, req, sizeof req - 1) != (ssize_t)(sizeof req - 1))
		snprintf(err, errsz, "control socket %s: %s", path, strerror(errno));
	else
		rc = read_reply_line(fd, reply, err, errsz);
	close(fd);
	return rc;
}

/* --- CPU time ------------------------------------------------------------------- */

/* utime + stime and the start time (ticks after boot) from /proc/<pid>/stat. */
static int read_proc_stat(pid_t pid, int64_t *ticks, int64_t *start)
{
	char path[64], text[1024];
	snprintf(path, sizeof path, "/proc/%d/stat", (int)pid);
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return -1;
	ssize_t n = read(fd, text, sizeof text - 1);
	close(fd);
	if (n <= 0)
		return -1;
	text[n] = '\0';
	/* The command name may hold spaces and parentheses: fields count from
	 * the last ')'. After it come field 3 (state) ... 14 utime, 15 stime,
	 * 22 starttime. */
	char *p = strrchr(text, ')');
	long long utime, stime, st;
	if (!p || sscanf(p + 1, " %*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %lld %lld %*d %*d %*d %*d %*d %*d %lld",
			 &utime, &stime, &st) != 3)
		return -1;
	*ticks = utime + stime;
	*start = st;
	return 0;
}

int64_t metrics_process_ticks(pid_t pid)
{
	int64_t ticks, start;
	return pid > 0 && read_proc_stat(pid, &ticks, &start) == 0 ? ticks : -1;
}

double metrics_cpu_pct(int64_t ticks_before, int64_t ticks_now, int64_t ms, int cpus)
{
	long hz = sysconf(_SC_CLK_TCK);
	if (ms <= 0 || cpus <= 0 || hz <= 0 || ticks_now < ticks_before)
		return 0;
	double busy_ms = (double)(ticks_now - ticks_before) * 1000.0 / (double)hz;
	double pct = busy_ms * 100.0 / ((double)ms * cpus);
	return pct > 100 ? 100 : pct;
}

/* Milliseconds the process has run, from its start time and /proc/uptime. */
static int64_t process_age_ms(int64_t start_ticks)
{
	char text[64];
	int fd = open("/proc/uptime", O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return -1;
	ssize_t n = read(fd, text, sizeof text - 1);
	close(fd);
	double up;
	long hz = sysconf(_SC_CLK_TCK);
	if (n <= 0 || hz <= 0)
		return -1;
	text[n] = '\0';
	if (sscanf(text, "%lf", &up) != 1)
		return -1;
	return (int64_t)(up * 1000.0) - start_ticks * 1000 / hz;
}

/* The previous CPU reading of each sandbox, so a sample covers the time
 * since the one before. A few dozen slots: one forgotten only costs the
 * next sample its interval (it then covers the VMM's whole life). Several
 * api instances may share the process (tests), hence the lock. */
#define CPU_SLOTS 64
static struct cpu_slot {
	char id[SANDBOX_ID_MAX + 1];
	pid_t pid;
	int64_t ticks;
	uint64_t at_ms; /* monotonic */
} cpu_slots[CPU_SLOTS];
static pthread_mutex_t cpu_mu = PTHREAD_MUTEX_INITIALIZER;

/* Swaps in the new reading; returns false if there was none for this VMM. */
static bool cpu_swap(const char *id, pid_t pid, int64_t ticks, uint64_t now, int64_t *old_ticks, uint64_t *old_at)
{
	pthread_mutex_lock(&cpu_mu);
	struct cpu_slot *slot = NULL, *oldest = &cpu_slots[0];
	for (int i = 0; i < CPU_SLOTS && !slot; i++) {
		if (strcmp(cpu_slots[i].id, id) == 0)
			slot = &cpu_slots[i];
		else if (cpu_slots[i].at_ms < oldest->at_ms)
			oldest = &cpu_slots[i];
	}
	bool had = slot && slot->pid == pid;
	if (had) {
		*old_ticks = slot->ticks;
		*old_at = slot->at_ms;
	}
	if (!slot)
		slot = oldest;
	snprintf(slot->id, sizeof slot->id, "%s", id);
	slot->pid = pid;
	slot->ticks = ticks;
	slot->at_ms = now;
	pthread_mutex_unlock(&cpu_mu);
	return had;
}

static double sample_cpu(const char *id, pid_t pid, int cpus)
{
	int64_t ticks, start;
	if (pid <= 0 || read_proc_stat(pid, &ticks, &start) < 0)
		return 0;
	uint64_t now = mono_ms(), at;
	int64_t before;
	if (cpu_swap(id, pid, ticks, now, &before, &at) && now - at >= 100)
		return metrics_cpu_pct(before, ticks, (int64_t)(now - at), cpus);
	return metrics_cpu_pct(0, ticks, process_age_ms(start), cpus);
}

/* --- the route --------------------------------------------------------------------- */

struct metrics_job {
	struct job job;
	struct http_conn *conn; /* NULL once the client went away */
	char id[SANDBOX_ID_MAX + 1];
	char control[4096], layer[4200];
	pid_t pid;
	struct metrics_sample s;
	int rc;
	char err[256];
};

static uint64_t allocated_bytes(const char *path)
{
	struct stat st;
	return stat(path, &st) == 0 ? (uint64_t)st.st_blocks * 512 : 0;
}

static void metrics_run(struct job *job)
{
	struct metrics_job *j = (struct metrics_job *)job;
	struct buf reply = BUF_INIT;
	j->rc = metrics_query_vmm(j->control, STATS_TIMEOUT_MS, &reply, j->err, sizeof j->err);
	if (j->rc == 0)
		j->rc = metrics_parse_stats(reply.data, reply.len, &j->s, j->err, sizeof j->err);
	buf_free(&reply);
	if (j->rc < 0)
		return;
	j->s.ts_ms = wall_ms();
	j->s.cpu_used_pct = sample_cpu(j->id, j->pid, j->s.cpu_count);
	j->s.disk_used = allocated_bytes(j->layer);
}

static void metrics_done(struct job *job)
{
	struct metrics_job *j = (struct metrics_job *)job;
	if (j->conn) {
		struct buf b = BUF_INIT;
		if (j->rc == 0) {
			metrics_write(&j->s, &b);
		} else {
			/* Stopped or paused meanwhile, or a VMM that does not answer:
			 * no sample, as for a paused sandbox. */
			log_warn("sandbox.metrics", "sandbox=%s no sample: %s", j->id, j->err);
			buf_append(&b, "[]", 2);
		}
		respond_json(j->conn, 200, &b);
	}
	free(j);
}

static void metrics_conn_gone(void *arg)
{
	struct metrics_job *j = arg;
	j->conn = NULL;
}

void sandbox_metrics(struct api *a, struct http_conn *c, const struct sandbox_entry *e)
{
	const struct sandbox *rec = &e->rec;
	if (rec->state != SANDBOX_RUNNING || rec->vmm_pid <= 0 || !rec->control) {
		http_respond(c, 200, "application/json", "[]", 2);
		return;
	}
	/* The job copies what it needs: the entry may be gone when it ends. */
	struct metrics_job *j = calloc(1, sizeof *j);
	if (!j)
		abort();
	j->job.run = metrics_run;
	j->job.done = metrics_done;
	j->conn = c;
	snprintf(j->id, sizeof j->id, "%s", rec->id);
	snprintf(j->control, sizeof j->control, "%s", rec->control);
	char dir[4096];
	sandbox_dir(a, rec->id, dir, sizeof dir);
	snprintf(j->layer, sizeof j->layer, "%s/disk.layer", dir);
	j->pid = rec->vmm_pid;
	j->s.cpu_count = rec->cpu_count;
	j->s.mem_total = (uint64_t)rec->memory_mb * MIB;
	j->s.disk_total = (uint64_t)rec->disk_size_mb * MIB;
	http_conn_on_abort(c, metrics_conn_gone, j);
	worker_submit(a->pool, &j->job);
}
