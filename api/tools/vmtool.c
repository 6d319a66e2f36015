/*
 * vmtool.c - api/vm.c from the command line, for the nested tests
 * (qemu-tests/l1/tests/20-api-vm.sh) and for operators chasing a problem.
 *
 *   api-vmtool template DIR KERNEL ROOTFS [CPUS [MEM_MIB]]
 *   api-vmtool start  ID TEMPLATE_DIR SANDBOX_DIR RUN_DIR INIT_JSON   prints the VMM's pid
 *   api-vmtool resume ID SANDBOX_DIR RUN_DIR INIT_JSON                prints the VMM's pid
 *   api-vmtool pause  ID SANDBOX_DIR RUN_DIR PID
 *   api-vmtool stop   ID SANDBOX_DIR RUN_DIR PID [TIMEOUT_MS]
 *   api-vmtool alive  ID SANDBOX_DIR RUN_DIR PID                      exit 0 if alive, 1 if not
 *
 * Each command is one call into vm.c in its own process, so a VMM started
 * by one invocation is stopped by another that is not its parent: the same
 * situation as the API daemon after a restart. Timings go to stderr as
 * "vmtool: <command> ... ms=N"; cube-vmm is looked for next to this program.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../../lib/log.h"
#include "../../lib/loop.h"
#include "../vm.h"

static int usage(void)
{
	fputs("usage:\n"
	      "  api-vmtool template DIR KERNEL ROOTFS [CPUS [MEM_MIB]]\n"
	      "  api-vmtool start ID TEMPLATE_DIR SANDBOX_DIR RUN_DIR INIT_JSON\n"
	      "  api-vmtool resume ID SANDBOX_DIR RUN_DIR INIT_JSON\n"
	      "  api-vmtool pause|alive ID SANDBOX_DIR RUN_DIR PID\n"
	      "  api-vmtool stop ID SANDBOX_DIR RUN_DIR PID [TIMEOUT_MS]\n",
	      stderr);
	return 2;
}

static int parse_int(const char *s, long lo, long hi, long *out)
{
	char *end;
	long v = strtol(s, &end, 10);
	if (!*s || *end || v < lo || v > hi)
		return -1;
	*out = v;
	return 0;
}

static void on_progress(void *arg, int pct, const char *phase)
{
	uint64_t *t0 = arg;
	fprintf(stderr, "vmtool: template %3d%% %s (%llu ms)\n", pct, phase, (unsigned long long)(mono_ms() - *t0));
}

static int cmd_template(int argc, char **argv)
{
	long cpus = 1, mem = 256;
	if (argc < 5 || argc > 7 || (argc > 5 && parse_int(argv[5], 1, 32, &cpus)) ||
	    (argc > 6 && parse_int(argv[6], 64, 1 << 20, &mem)))
		return usage();
	char err[1024];
	uint64_t t0 = mono_ms();
	if (template_build(argv[2], argv[3], argv[4], (int)cpus, (int)mem, NULL, on_progress, &t0, err, sizeof err) <
	    0) {
		fprintf(stderr, "vmtool: template failed: %s\n", err);
		return 1;
	}
	fprintf(stderr, "vmtool: template %s built ms=%llu\n", argv[2], (unsigned long long)(mono_ms() - t0));
	return 0;
}

/* start and resume: print the pid on stdout. */
static int cmd_launch(const char *cmd, const struct vm_spec *spec)
{
	char err[1024];
	uint64_t t0 = mono_ms();
	pid_t pid = !strcmp(cmd, "start") ? vm_start(spec, err, sizeof err) : vm_resume(spec, err, sizeof err);
	if (pid < 0) {
		fprintf(stderr, "vmtool: %s failed: %s\n", cmd, err);
		return 1;
	}
	fprintf(stderr, "vmtool: %s %s pid=%d ms=%llu\n", cmd, spec->id, (int)pid,
		(unsigned long long)(mono_ms() - t0));
	printf("%d\n", (int)pid);
	return 0;
}

static int cmd_on_pid(const char *cmd, const struct vm_spec *spec, pid_t pid, long timeout_ms)
{
	char err[1024];
	uint64_t t0 = mono_ms();
	if (!strcmp(cmd, "alive")) {
		bool alive = vm_alive(pid, spec);
		fprintf(stderr, "vmtool: alive %s pid=%d %s\n", spec->id, (int)pid, alive ? "yes" : "no");
		return alive ? 0 : 1;
	}
	int rc = !strcmp(cmd, "pause") ? vm_pause(pid, spec, err, sizeof err) : vm_stop(pid, spec, (int)timeout_ms);
	if (rc < 0) {
		fprintf(stderr, "vmtool: %s failed: %s\n", cmd, !strcmp(cmd, "pause") ? err : "see the log above");
		return 1;
	}
	fprintf(stderr, "vmtool: %s %s pid=%d ms=%llu\n", cmd, spec->id, (int)pid,
		(unsigned long long)(mono_ms() - t0));
	return 0;
}

int main(int argc, char **argv)
{
	log_set_component("vmtool");
	if (argc < 2)
		return usage();
	const char *cmd = argv[1];
	if (!strcmp(cmd, "template"))
		return cmd_template(argc, argv);
	if (!strcmp(cmd, "start") && argc == 7) {
		struct vm_spec s = {.id = argv[2],
				    .template_dir = argv[3],
				    .sandbox_dir = argv[4],
				    .run_dir = argv[5],
				    .init_json = argv[6]};
		return cmd_launch(cmd, &s);
	}
	if (!strcmp(cmd, "resume") && argc == 6) {
		struct vm_spec s = {.id = argv[2], .sandbox_dir = argv[3], .run_dir = argv[4], .init_json = argv[5]};
		return cmd_launch(cmd, &s);
	}
	bool on_pid = !strcmp(cmd, "pause") || !strcmp(cmd, "alive") || !strcmp(cmd, "stop");
	long pid, timeout_ms = 10000;
	if (!on_pid || argc < 6 || argc > (strcmp(cmd, "stop") ? 6 : 7) || parse_int(argv[5], 1, 1 << 30, &pid) ||
	    (argc == 7 && parse_int(argv[6], 0, 3600000, &timeout_ms)))
		return usage();
	struct vm_spec s = {.id = argv[2], .sandbox_dir = argv[3], .run_dir = argv[4]};
	return cmd_on_pid(cmd, &s, (pid_t)pid, timeout_ms);
}
