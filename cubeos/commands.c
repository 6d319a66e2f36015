/*
 * commands.c - the admin shell's command table, and the commands that are a
 * few lines each. The bigger ones live in cmd_*.c.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "ca.h"
#include "install.h"
#include "shell.h"

static void cmd_help(struct shell *sh, int argc, char **argv)
{
	shell_printf(sh, "commands:\r\n");
	for (const struct shell_cmd *c = shell_cmds; c->name; c++) {
		char usage[80];
		snprintf(usage, sizeof usage, "%s %s", c->name, c->args);
		shell_printf(sh, "  %-32s %s\r\n", usage, c->help);
	}
}

static void cmd_ca(struct shell *sh, int argc, char **argv)
{
	char *pem = sh->os && sh->os->config ? ca_cert_pem(sh->os->config) : NULL;
	char fp[CA_FINGERPRINT_LEN];
	if (!pem || ca_fingerprint(pem, fp) < 0) {
		shell_printf(sh, "ca: no appliance CA (%s); see the boot log\r\n",
			     pem ? "unreadable" : strerror(errno));
		free(pem);
		return;
	}
	/* The console wants CRLF; PEM lines end in LF. */
	for (char *save, *line = strtok_r(pem, "\n", &save); line; line = strtok_r(NULL, "\n", &save))
		shell_printf(sh, "%s\r\n", line);
	shell_printf(sh, "SHA-256 fingerprint: %s\r\n", fp);
	free(pem);
}

static void cmd_ca_issue(struct shell *sh, int argc, char **argv)
{
	char err[256];
	if (!sh->os || !sh->os->config) {
		shell_printf(sh, "ca issue: no config\r\n");
		return;
	}
	if (ca_issue_server_cert(sh->os->config, argv[0], (const char *const *)argv + 1, (size_t)argc - 1, err,
				 sizeof err) < 0) {
		shell_printf(sh, "ca issue: %s\r\n", err);
		return;
	}
	shell_printf(sh, "issued %s for %s and *.%s (valid %d days)\r\n", CA_SERVER_CERT_FILE, argv[0], argv[0],
		     CA_SERVER_VALIDITY_DAYS);
}

const char *power_action_name(enum power_action a)
{
	static const char *const names[] = {"none", "reboot", "halt", "poweroff"};
	return (unsigned)a < 4 ? names[a] : "?";
}

static void power(struct shell *sh, enum power_action a)
{
	shell_printf(sh, "%s: stopping services...\r\n", power_action_name(a));
	if (sh->os && sh->os->request_power)
		sh->os->request_power(sh->os, a);
}

static void cmd_reboot(struct shell *sh, int argc, char **argv)
{
	power(sh, POWER_REBOOT);
}

static void cmd_poweroff(struct shell *sh, int argc, char **argv)
{
	power(sh, POWER_POWEROFF);
}

static void cmd_exit(struct shell *sh, int argc, char **argv)
{
	/* The password prompt follows when the line ends. */
	sh->mode = SHELL_LOGIN;
	shell_printf(sh, "logged out\r\n");
}

const struct shell_cmd shell_cmds[] = {
    {"help", "", "this list", 0, 0, cmd_help},
    {"status", "", "services, uptime, memory, KVM, sandboxes", 0, 0, cmd_status},
    {"net show", "", "interfaces, addresses, routes, saved config", 0, 0, cmd_net_show},
    {"net set", "dhcp | static IFACE ADDR/PREFIX GATEWAY [DNS...]", "save the network config", 1, 8, cmd_net_set},
    {"apikey list", "", "API keys (hashes only are stored)", 0, 0, cmd_apikey_list},
    {"apikey create", "[NAME]", "make an API key, shown once", 0, 1, cmd_apikey_create},
    {"apikey revoke", "ID", "delete an API key", 1, 1, cmd_apikey_revoke},
    {"ca", "", "print the appliance CA certificate and its fingerprint", 0, 0, cmd_ca},
    {"ca issue", "DOMAIN [IP...]", "make the proxy certificate for DOMAIN and *.DOMAIN", 1, 1 + CA_SERVER_IPS_MAX,
     cmd_ca_issue},
    {"logs", "SERVICE [LINES]", "last lines of a service's log", 1, 2, cmd_logs},
    {"service list", "", "services: state, pid, restarts, uptime, command", 0, 0, cmd_service_list},
    {"service restart", "NAME", "stop a service cleanly and start it again", 1, 1, cmd_service_restart},
    {"service kill", "NAME [SIGNAL]", "signal a service (default KILL); it restarts as after a crash", 1, 2,
     cmd_service_kill},
    {"selftest", "", "boot a sandbox VM through cube-vmm and check its agent", 0, 0, cmd_selftest},
    {"sandbox list", "", "sandboxes (running and paused)", 0, 0, cmd_sandbox_list},
    {"sandbox kill", "ID", "stop a sandbox", 1, 1, cmd_sandbox_kill},
    {"template list", "", "templates and their build state", 0, 0, cmd_template_list},
    {"install", "DISK", "erase DISK and install CubeOS on it (from the ISO, PXE or this disk)", 1, 1, cmd_install},
    {"reboot", "", "stop services cleanly and reboot", 0, 0, cmd_reboot},
    {"poweroff", "", "stop services cleanly and power off", 0, 0, cmd_poweroff},
    {"exit", "", "log out (also: logout, Ctrl-D)", 0, 0, cmd_exit},
    {"logout", "", "log out", 0, 0, cmd_exit},
    {NULL, NULL, NULL, 0, 0, NULL},
};
