/* cmd_status.c - status: services, uptime, memory, KVM type, data disk, sandboxes. */
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "config.h"
#include "datadisk.h"
#include "service.h"
#include "shell.h"

static void format_duration(uint64_t s, char *out, size_t outsz)
{
	if (s >= 86400)
		snprintf(out, outsz, "%llud%02lluh", (unsigned long long)(s / 86400),
			 (unsigned long long)(s % 86400 / 3600));
	else if (s >= 3600)
		snprintf(out, outsz, "%lluh%02llum", (unsigned long long)(s / 3600),
			 (unsigned long long)(s % 3600 / 60));
	else if (s >= 60)
		snprintf(out, outsz, "%llum%02llus", (unsigned long long)(s / 60), (unsigned long long)(s % 60));
	else
		snprintf(out, outsz, "%llus", (unsigned long long)s);
}

static bool exists(const char *path)
{
	return access(path, F_OK) == 0;
}

static bool cpu_has_flag(const char *flag)
{
	FILE *f = fopen("/proc/cpuinfo", "r");
	char line[4096];
	bool found = false;
	while (f && !found && fgets(line, sizeof line, f)) {
		if (strncmp(line, "flags", 5) != 0)
			continue;
		for (char *tok = strtok(strchr(line, ':'), " :\n"); tok && !found; tok = strtok(NULL, " \n"))
			found = strcmp(tok, flag) == 0;
		break;
	}
	if (f)
		fclose(f);
	return found;
}

/* Which KVM this machine offers. With KVM built into the kernel both
 * /sys/module/kvm_intel and /sys/module/kvm_amd exist whichever one could
 * start, so the CPU's own flags decide; PVM needs neither flag. */
const char *kvm_type(void)
{
	if (!exists("/dev/kvm"))
		return cpu_has_flag("vmx") || cpu_has_flag("svm") ? "none (/dev/kvm missing; the CPU has VMX/SVM)"
								  : "none";
	if (exists("/sys/module/kvm_pvm"))
		return "PVM";
	if (cpu_has_flag("vmx"))
		return "VMX (kvm_intel)";
	if (cpu_has_flag("svm"))
		return "SVM (kvm_amd)";
	return "unknown (/dev/kvm present)";
}

static unsigned long long meminfo_kb(const char *key)
{
	FILE *f = fopen("/proc/meminfo", "r");
	char line[256];
	unsigned long long v = 0;
	size_t klen = strlen(key);
	while (f && fgets(line, sizeof line, f))
		if (strncmp(line, key, klen) == 0 && line[klen] == ':')
			sscanf(line + klen + 1, "%llu", &v);
	if (f)
		fclose(f);
	return v;
}

static void show_system(struct shell *sh)
{
	double up = 0;
	FILE *f = fopen("/proc/uptime", "r");
	if (f) {
		if (fscanf(f, "%lf", &up) != 1)
			up = 0;
		fclose(f);
	}
	char sys[32], own[32];
	format_duration((uint64_t)up, sys, sizeof sys);
	format_duration(sh->os ? (mono_ms() - sh->os->started_ms) / 1000 : 0, own, sizeof own);
	unsigned long long total = meminfo_kb("MemTotal"), avail = meminfo_kb("MemAvailable");
	shell_printf(sh, "hostname   %s\r\n", sh->os && sh->os->config ? sh->os->config->hostname : "?");
	shell_printf(sh, "uptime     %s (cubeos %s)\r\n", sys, own);
	shell_printf(sh, "memory     %llu MiB used of %llu MiB (%llu MiB available)\r\n", (total - avail) / 1024,
		     total / 1024, avail / 1024);
	shell_printf(sh, "kvm        %s\r\n", kvm_type());
	char data[512];
	datadisk_describe(datadisk_current(), data, sizeof data);
	shell_printf(sh, "data       %s\r\n", data);
}

static void show_services(struct shell *sh)
{
	struct service_set *set = sh->os ? sh->os->services : NULL;
	if (!set || set->n == 0) {
		shell_printf(sh, "services   none\r\n");
		return;
	}
	shell_printf(sh, "services\r\n  %-14s %-9s %-8s %-9s %-8s %s\r\n", "NAME", "STATE", "PID", "RESTARTS", "UPTIME",
		     "LAST EXIT");
	for (size_t k = 0; k < set->n; k++) {
		struct service *s = &set->svc[set->order[k]];
		char up[32], how[64], pid[16];
		service_uptime(s, up, sizeof up);
		service_describe_exit(s, how, sizeof how);
		snprintf(pid, sizeof pid, s->pid > 0 ? "%d" : "-", (int)s->pid);
		shell_printf(sh, "  %-14s %-9s %-8s %-9u %-8s %s\r\n", s->def.name, service_state_name(s->state), pid,
			     s->restarts, up, how);
	}
}

void cmd_status(struct shell *sh, int argc, char **argv)
{
	show_system(sh);
	show_services(sh);
	status_sandboxes_templates(sh);
}
