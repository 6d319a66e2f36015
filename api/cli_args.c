/* cli_args.c - the command line of `cube` / `cubemastercli` (see cli.h). */
#include <ctype.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "create_req.h"

#define CPU_MAX 64

static int fail(char *err, size_t errsz, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static int fail(char *err, size_t errsz, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(err, errsz, fmt, ap);
	va_end(ap);
	return -1;
}

static bool parse_int(const char *s, int64_t min, int64_t max, int64_t *out)
{
	char *end;
	errno = 0;
	long long v = strtoll(s, &end, 10);
	if (errno || end == s || *end || v < min || v > max)
		return false;
	*out = v;
	return true;
}

int64_t cli_parse_size_mib(const char *s)
{
	char *end;
	errno = 0;
	if (!s || !isdigit((unsigned char)s[0]))
		return -1;
	unsigned long long v = strtoull(s, &end, 10);
	if (errno || v == 0)
		return -1;
	static const struct {
		const char *suffix;
		unsigned long long mul;
	} units[] = {{"", 1},	      {"M", 1},		{"MB", 1},     {"MiB", 1},  {"m", 1},
		     {"G", 1024},     {"GB", 1024},	{"GiB", 1024}, {"g", 1024}, {"T", 1 << 20},
		     {"TB", 1 << 20}, {"TiB", 1 << 20}, {"t", 1 << 20}};
	for (size_t i = 0; i < sizeof units / sizeof units[0]; i++)
		if (strcmp(end, units[i].suffix) == 0)
			return v > (1ULL << 40) / units[i].mul ? -1 : (int64_t)(v * units[i].mul);
	return -1;
}

void cli_name_from_image(const char *ref, char *out, size_t n)
{
	const char *base = strrchr(ref, '/');
	base = base ? base + 1 : ref;
	size_t k = 0;
	for (const char *p = base; *p && *p != '@' && k + 1 < n && k < TEMPLATE_ID_MAX; p++) {
		char c = *p == ':' ? '-' : *p;
		bool ok = isalnum((unsigned char)c) || c == '.' || c == '_' || c == '-';
		if (ok && !(k == 0 && !isalnum((unsigned char)c)))
			out[k++] = c;
	}
	out[k] = '\0';
}

/* --- options ------------------------------------------------------------------- */

struct argv_walk {
	int argc, i;
	char **argv;
};

/* "--flag value" or "--flag=value": the value, or NULL with err set. */
static const char *take_value(struct argv_walk *w, const char *arg, const char *flag, char *err, size_t errsz)
{
	const char *eq = strchr(arg, '=');
	if (eq)
		return eq + 1;
	if (w->i + 1 >= w->argc) {
		fail(err, errsz, "%s needs a value", flag);
		return NULL;
	}
	return w->argv[++w->i];
}

/* The flag part of "--flag=value". */
static bool is_flag(const char *arg, const char *flag)
{
	size_t n = strlen(flag);
	return strncmp(arg, flag, n) == 0 && (arg[n] == '\0' || arg[n] == '=');
}

static int add_ports(struct cli_create *c, const char *v, char *err, size_t errsz)
{
	char copy[512];
	snprintf(copy, sizeof copy, "%s", v);
	for (char *save, *p = strtok_r(copy, ",", &save); p; p = strtok_r(NULL, ",", &save)) {
		int64_t port;
		if (!parse_int(p, 1, 65535, &port))
			return fail(err, errsz, "--expose-port: \"%s\" is not a port (1-65535)", p);
		if (c->nports == CLI_PORTS_MAX)
			return fail(err, errsz, "--expose-port: at most %d ports", CLI_PORTS_MAX);
		c->ports[c->nports++] = (int)port;
	}
	return 0;
}

static int add_env(struct cli_create *c, const char *v, char *err, size_t errsz)
{
	const char *eq = strchr(v, '=');
	if (!eq || eq == v)
		return fail(err, errsz, "--env: \"%s\" is not NAME=VALUE", v);
	if (c->nenv == CLI_ENV_MAX)
		return fail(err, errsz, "--env: at most %d variables", CLI_ENV_MAX);
	c->env[c->nenv++] = v;
	return 0;
}

/* Options every command takes. 1 if arg was one, 0 if not, -1 on error. */
static int global_option(struct argv_walk *w, const char *arg, struct cli_args *a, char *err, size_t errsz)
{
	if (strcmp(arg, "-h") == 0 || strcmp(arg, "--help") == 0) {
		a->help = true;
		return 1;
	}
	if (strcmp(arg, "--json") == 0) {
		a->json = true;
		return 1;
	}
	const char **dst = is_flag(arg, "--api") ? &a->api : is_flag(arg, "--api-key") ? &a->api_key : NULL;
	if (!dst)
		return 0;
	*dst = take_value(w, arg, is_flag(arg, "--api") ? "--api" : "--api-key", err, errsz);
	return *dst ? 1 : -1;
}

static int int_option(struct argv_walk *w, const char *arg, const char *flag, int64_t min, int64_t max, int64_t *out,
		      char *err, size_t errsz)
{
	const char *v = take_value(w, arg, flag, err, errsz);
	if (!v)
		return -1;
	if (!parse_int(v, min, max, out))
		return fail(err, errsz, "%s: \"%s\" is not a number from %lld to %lld", flag, v, (long long)min,
			    (long long)max);
	return 0;
}

static int size_option(struct argv_walk *w, const char *arg, const char *flag, int64_t *out, char *err, size_t errsz)
{
	const char *v = take_value(w, arg, flag, err, errsz);
	if (!v)
		return -1;
	*out = cli_parse_size_mib(v);
	if (*out < 0)
		return fail(err, errsz, "%s: \"%s\" is not a size (e.g. 512M, 2G; a bare number is MiB)", flag, v);
	return 0;
}

/* The options of the create commands. 1 if arg was one, 0 if not, -1 on error. */
static int create_option(struct argv_walk *w, const char *arg, struct cli_create *c, char *err, size_t errsz)
{
	int64_t n;
	const char *v;
	if (is_flag(arg, "--image") || is_flag(arg, "--rootfs") || is_flag(arg, "--name")) {
		const char *flag = is_flag(arg, "--image")    ? "--image"
				   : is_flag(arg, "--rootfs") ? "--rootfs"
							      : "--name";
		if (!(v = take_value(w, arg, flag, err, errsz)))
			return -1;
		*(flag[2] == 'i' ? &c->image : flag[2] == 'r' ? &c->rootfs : &c->name) = v;
	} else if (is_flag(arg, "--archive")) {
		if (!(c->archive = take_value(w, arg, "--archive", err, errsz)))
			return -1;
	} else if (is_flag(arg, "--writable-layer-size")) {
		return size_option(w, arg, "--writable-layer-size", &c->layer_mib, err, errsz) < 0 ? -1 : 1;
	} else if (is_flag(arg, "--memory")) {
		return size_option(w, arg, "--memory", &c->mem_mib, err, errsz) < 0 ? -1 : 1;
	} else if (is_flag(arg, "--expose-port")) {
		if (!(v = take_value(w, arg, "--expose-port", err, errsz)) || add_ports(c, v, err, errsz) < 0)
			return -1;
	} else if (is_flag(arg, "--env")) {
		if (!(v = take_value(w, arg, "--env", err, errsz)) || add_env(c, v, err, errsz) < 0)
			return -1;
	} else if (is_flag(arg, "--probe")) {
		if (int_option(w, arg, "--probe", 1, 65535, &n, err, errsz) < 0)
			return -1;
		c->probe = (int)n;
	} else if (is_flag(arg, "--start-cmd")) {
		if (!(v = take_value(w, arg, "--start-cmd", err, errsz)))
			return -1;
		c->start_cmd = v;
	} else if (is_flag(arg, "--registry-user")) {
		if (!(c->registry_user = take_value(w, arg, "--registry-user", err, errsz)))
			return -1;
	} else if (is_flag(arg, "--registry-password-file")) {
		if (!(c->registry_password_file = take_value(w, arg, "--registry-password-file", err, errsz)))
			return -1;
	} else if (is_flag(arg, "--registry-ca")) {
		if (!(c->registry_ca_file = take_value(w, arg, "--registry-ca", err, errsz)))
			return -1;
	} else if (is_flag(arg, "--cpu")) {
		if (int_option(w, arg, "--cpu", 1, CPU_MAX, &n, err, errsz) < 0)
			return -1;
		c->cpus = (int)n;
	} else if (strcmp(arg, "--insecure-registry") == 0) {
		c->insecure = true;
	} else if (strcmp(arg, "--wait") == 0) {
		c->wait = true;
	} else {
		return 0;
	}
	return 1;
}

static int watch_option(struct argv_walk *w, const char *arg, struct cli_args *a, char *err, size_t errsz)
{
	int64_t n;
	if (is_flag(arg, "--interval-ms")) {
		if (int_option(w, arg, "--interval-ms", 10, 60000, &n, err, errsz) < 0)
			return -1;
		a->interval_ms = (int)n;
		return 1;
	}
	if (is_flag(arg, "--timeout")) {
		if (int_option(w, arg, "--timeout", 1, 7 * 86400, &n, err, errsz) < 0)
			return -1;
		a->timeout_s = (int)n;
		return 1;
	}
	return 0;
}

/* --- commands ------------------------------------------------------------------------ */

static const struct {
	const char *group, *name;
	enum cli_cmd cmd;
	int operands; /* positional arguments it needs */
} commands[] = {
    {"tpl", "list", CLI_TPL_LIST, 0},
    {"tpl", "delete", CLI_TPL_DELETE, 1},
    {"tpl", "watch", CLI_TPL_WATCH, 1},
    {"tpl", "create-from-image", CLI_TPL_CREATE_IMAGE, 0},
    {"tpl", "create-from-rootfs", CLI_TPL_CREATE_ROOTFS, 0},
    {"sandbox", "list", CLI_SANDBOX_LIST, 0},
    {"sandbox", "kill", CLI_SANDBOX_KILL, 1},
};

static const char *group_of(const char *word)
{
	if (strcmp(word, "tpl") == 0 || strcmp(word, "template") == 0 || strcmp(word, "templates") == 0)
		return "tpl";
	if (strcmp(word, "sandbox") == 0 || strcmp(word, "sandboxes") == 0 || strcmp(word, "sb") == 0)
		return "sandbox";
	return NULL;
}

static int find_command(const char *group, const char *name, char *err, size_t errsz)
{
	for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++)
		if (strcmp(commands[i].group, group) == 0 && strcmp(commands[i].name, name) == 0)
			return (int)i;
	if (strcmp(name, "ls") == 0 || strcmp(name, "rm") == 0)
		return find_command(group,
				    name[0] == 'l'		? "list"
				    : strcmp(group, "tpl") == 0 ? "delete"
								: "kill",
				    err, errsz);
	return fail(err, errsz, "unknown command \"%s %s\" (see --help)", group, name);
}

static int check_create(struct cli_args *a, char *err, size_t errsz)
{
	struct cli_create *c = &a->create;
	if (a->cmd == CLI_TPL_CREATE_IMAGE && (!c->image || !c->image[0]) && (!c->archive || !c->archive[0]))
		return fail(err, errsz, "create-from-image needs --image REF or --archive FILE");
	if (c->image && c->archive)
		return fail(err, errsz, "give one of --image and --archive");
	if (c->archive && c->insecure)
		return fail(err, errsz, "--insecure-registry is for --image (an --archive is uploaded)");
	if (!c->image && (c->registry_user || c->registry_password_file || c->registry_ca_file))
		return fail(err, errsz, "--registry-user, --registry-password-file and --registry-ca are for --image");
	if (c->registry_password_file && !c->registry_user)
		return fail(err, errsz, "--registry-password-file needs --registry-user");
	if (a->cmd == CLI_TPL_CREATE_IMAGE && c->rootfs)
		return fail(err, errsz, "--rootfs belongs to create-from-rootfs");
	if (a->cmd == CLI_TPL_CREATE_ROOTFS) {
		if (!c->rootfs || c->rootfs[0] != '/')
			return fail(err, errsz, "create-from-rootfs needs --rootfs /ABSOLUTE/PATH (on the appliance)");
		if (!c->name)
			return fail(err, errsz, "create-from-rootfs needs --name NAME");
		if (c->image || c->archive || c->layer_mib || c->nports || c->probe || c->start_cmd || c->nenv ||
		    c->insecure)
			return fail(err, errsz,
				    "--image, --archive, --writable-layer-size, --expose-port, --probe, --start-cmd, "
				    "--env and --insecure-registry belong to create-from-image");
	}
	if (c->mem_mib && c->mem_mib < 128)
		return fail(err, errsz, "--memory: at least 128 MiB");
	if (c->name && !template_id_valid(c->name))
		return fail(err, errsz,
			    "--name: \"%s\" must be 1-%d characters of A-Z a-z 0-9 . _ - (starting with a "
			    "letter or digit)",
			    c->name, TEMPLATE_ID_MAX);
	return 0;
}

static void set_prog(struct cli_args *a, const char *argv0)
{
	const char *base = argv0 ? strrchr(argv0, '/') : NULL;
	a->prog = base ? base + 1 : argv0 && *argv0 ? argv0 : "cube";
}

int cli_parse(int argc, char **argv, struct cli_args *a, char *err, size_t errsz)
{
	memset(a, 0, sizeof *a);
	set_prog(a, argc > 0 ? argv[0] : NULL);
	a->interval_ms = 500;
	struct argv_walk w = {.argc = argc, .argv = argv, .i = 1};
	const char *words[3] = {0}; /* group, command, operand */
	int nwords = 0, rc;
	for (; w.i < argc; w.i++) {
		const char *arg = argv[w.i];
		if ((rc = global_option(&w, arg, a, err, errsz)) != 0 ||
		    (rc = create_option(&w, arg, &a->create, err, errsz)) != 0 ||
		    (rc = watch_option(&w, arg, a, err, errsz)) != 0) {
			if (rc < 0)
				return -1;
			continue;
		}
		if (arg[0] == '-' && arg[1])
			return fail(err, errsz, "unknown option %s (see --help)", arg);
		if (nwords == 3)
			return fail(err, errsz, "unexpected argument \"%s\"", arg);
		words[nwords++] = arg;
	}
	if (a->help || nwords == 0 || strcmp(words[0], "help") == 0) {
		a->cmd = CLI_HELP;
		a->help_topic =
		    nwords > 0 ? group_of(words[nwords > 1 && strcmp(words[0], "help") == 0 ? 1 : 0]) : NULL;
		return 0;
	}
	const char *group = group_of(words[0]);
	if (!group)
		return fail(err, errsz, "unknown command \"%s\": use tpl (template) or sandbox", words[0]);
	if (nwords < 2)
		return fail(err, errsz, "%s needs a command (see %s %s --help)", words[0], a->prog, words[0]);
	int k = find_command(group, words[1], err, errsz);
	if (k < 0)
		return -1;
	a->cmd = commands[k].cmd;
	if (nwords - 2 != commands[k].operands)
		return fail(err, errsz, "%s %s takes %s", group, commands[k].name,
			    commands[k].operands ? "one argument (an ID)" : "no arguments, only options");
	a->target = commands[k].operands ? words[2] : NULL;
	bool creating = a->cmd == CLI_TPL_CREATE_IMAGE || a->cmd == CLI_TPL_CREATE_ROOTFS;
	const struct cli_create *c = &a->create;
	if (!creating && (c->image || c->archive || c->rootfs || c->name || c->layer_mib || c->nports || c->probe ||
			  c->start_cmd || c->registry_user || c->registry_password_file || c->registry_ca_file ||
			  c->cpus || c->mem_mib || c->nenv || c->insecure || c->wait))
		return fail(err, errsz, "%s %s takes no template options", group, commands[k].name);
	return creating ? check_create(a, err, errsz) : 0;
}

/* --- usage -------------------------------------------------------------------------------- */

void cli_usage(const char *prog, const char *topic, struct buf *out)
{
	bool all = !topic;
	buf_printf(out, "usage: %s [--api URL] [--api-key KEY] [--json] COMMAND ...\n\n", prog);
	if (all || strcmp(topic, "tpl") == 0)
		buf_printf(out,
			   "Templates (\"tpl\" or \"template\"):\n"
			   "  tpl list                          the templates and their build status\n"
			   "  tpl delete ID                     delete a template (refused while sandboxes use it)\n"
			   "  tpl watch BUILD|TEMPLATE          follow a build: phases, percentage, log; exit 0 when\n"
			   "                                    ready, 1 on error [--interval-ms N] [--timeout S]\n"
			   "  tpl create-from-image --image REF|--archive FILE [--name NAME]\n"
			   "        [--writable-layer-size SIZE] [--expose-port N]... [--probe N] [--cpu N]\n"
			   "        [--memory MIB] [--env K=V]... [--start-cmd LINE] [--insecure-registry] [--wait]\n"
			   "        [--registry-user U [--registry-password-file F]] [--registry-ca PEMFILE]\n"
			   "                                    build a template from an OCI image: a registry\n"
			   "                                    reference, or a docker-save / OCI layout tarball\n"
			   "                                    (.tar, .tar.gz) uploaded from this machine. The\n"
			   "                                    image's ENTRYPOINT/CMD (or --start-cmd; \"\" for\n"
			   "                                    none) runs before the snapshot, and --probe waits\n"
			   "                                    until that guest port accepts connections. A private\n"
			   "                                    registry's password: the file, else\n"
			   "                                    $CUBE_REGISTRY_PASSWORD\n"
			   "  tpl create-from-rootfs --rootfs PATH --name NAME [--cpu N] [--memory MIB] [--wait]\n"
			   "                                    build a template from an ext4 image on the appliance\n"
			   "  SIZE and MIB: a number of MiB, or with M, G or T (512M, 2G)\n\n");
	if (all || strcmp(topic, "sandbox") == 0)
		buf_printf(out, "Sandboxes:\n"
				"  sandbox list                      running and paused sandboxes\n"
				"  sandbox kill ID                   stop a sandbox and remove it\n\n");
	buf_printf(out, "Options:\n"
			"  --api URL       http://HOST:PORT or unix:/PATH; default $CUBE_API_URL, else the admin\n"
			"                  socket /run/cubeos/run/api.sock when it can be opened (root on the\n"
			"                  appliance, no key needed), else http://127.0.0.1:3000\n"
			"  --api-key KEY   default $E2B_API_KEY\n"
			"  --json          print the api's JSON instead of a table\n"
			"Exit status: 0 done, 1 the api refused or the build failed, 2 usage error.\n");
}
