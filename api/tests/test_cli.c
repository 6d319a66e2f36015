/* test_cli.c - `cube`'s argument parsing, endpoints and output formats
 * (no api needed; test_templates.c runs the CLI against a real one). */
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

#include "../../lib/json.h"
#include "../cli.h"
#include "../../lib/tests/test.h"

static int parse(struct cli_args *a, char *err, const char *first, ...)
{
	char *argv[64] = {"cube"};
	int argc = 1;
	va_list ap;
	va_start(ap, first);
	for (const char *s = first; s && argc < 63; s = va_arg(ap, const char *))
		argv[argc++] = (char *)s;
	va_end(ap);
	return cli_parse(argc, argv, a, err, 256);
}

TEST(create_from_image_takes_every_cubemastercli_flag)
{
	struct cli_args a;
	char err[256] = "";
	CHECK_EQ_INT(parse(&a, err, "tpl", "create-from-image", "--image", "docker.io/library/python:3.12-slim",
			   "--writable-layer-size", "2G", "--expose-port", "8080", "--expose-port=9000,9001", "--probe",
			   "8080", "--cpu", "4", "--memory", "2048", "--env", "A=1", "--env", "B=x=y", "--api",
			   "http://10.0.0.5:3000", "--start-cmd", "python3 -m http.server 8080", NULL),
		     0);
	CHECK_EQ_INT(a.cmd, CLI_TPL_CREATE_IMAGE);
	CHECK_STREQ(a.create.image, "docker.io/library/python:3.12-slim");
	CHECK_EQ_INT(a.create.layer_mib, 2048);
	CHECK_EQ_INT(a.create.nports, 3);
	CHECK_EQ_INT(a.create.ports[2], 9001);
	CHECK_EQ_INT(a.create.probe, 8080);
	CHECK_EQ_INT(a.create.cpus, 4);
	CHECK_EQ_INT(a.create.mem_mib, 2048);
	CHECK_EQ_INT(a.create.nenv, 2);
	CHECK_STREQ(a.api, "http://10.0.0.5:3000");

	struct buf b = BUF_INIT;
	cli_create_body(&a, &b);
	buf_putc(&b, '\0');
	struct json *j = json_parse(b.data, strlen(b.data), NULL, 0);
	CHECK(j != NULL);
	CHECK_STREQ(json_get_str(j, "name"), "python-3.12-slim");
	CHECK_STREQ(json_get_str(j, "fromImage"), "docker.io/library/python:3.12-slim");
	CHECK_EQ_INT(json_get_int(j, "writableLayerSizeMB", 0), 2048);
	CHECK_EQ_INT(json_get_int(j, "probePort", 0), 8080);
	CHECK_EQ_INT(json_get(j, "exposePorts")->count, 3);
	CHECK_STREQ(json_get_str(json_get(j, "envVars"), "B"), "x=y");
	CHECK_STREQ(json_get_str(j, "startCmd"), "python3 -m http.server 8080");
	json_free(j);
	buf_free(&b);
}

TEST(create_from_an_archive_uploads_with_the_options_in_the_query)
{
	struct cli_args a;
	char err[256] = "";
	CHECK_EQ_INT(parse(&a, err, "tpl", "create-from-image", "--archive", "/home/me/My App_1.2.tar.gz", "--cpu", "2",
			   "--memory", "1G", "--writable-layer-size", "256", "--expose-port", "80,443", "--probe", "80",
			   "--env", "A=1 2", "--env", "B=x=y&z", "--start-cmd=", NULL),
		     0);
	CHECK_STREQ(a.create.archive, "/home/me/My App_1.2.tar.gz");
	char name[160];
	cli_create_name(&a.create, name, sizeof name);
	CHECK_STREQ(name, "MyApp_1.2"); /* only the characters a name may have */
	struct buf b = BUF_INIT;
	cli_upload_target(&a, &b);
	buf_putc(&b, '\0');
	char want[512];
	snprintf(want, sizeof want,
		 "/templates/upload?name=%s&cpuCount=2&memoryMB=1024&writableLayerSizeMB=256&probePort=80&"
		 "startCmd=&exposePorts=80%%2C443&env=A%%3D1%%202&env=B%%3Dx%%3Dy%%26z",
		 name);
	CHECK_STREQ(b.data, want);
	buf_free(&b);

	/* The name: --name, else the file's without .tar, .tgz or .tar.gz. */
	CHECK_EQ_INT(parse(&a, err, "tpl", "create-from-image", "--archive", "app.tar", NULL), 0);
	cli_create_name(&a.create, name, sizeof name);
	CHECK_STREQ(name, "app");
	CHECK_EQ_INT(parse(&a, err, "tpl", "create-from-image", "--archive", "dir/app.tgz", "--name", "mine", NULL), 0);
	cli_create_name(&a.create, name, sizeof name);
	CHECK_STREQ(name, "mine");
	b = (struct buf)BUF_INIT;
	cli_upload_target(&a, &b);
	buf_putc(&b, '\0');
	CHECK_STREQ(b.data, "/templates/upload?name=mine");
	buf_free(&b);
}

/* A private registry: the user and the password (read by cli_run) in E2B's
 * fromImageRegistry, the CA's PEM as registryCA. */
TEST(registry_access_goes_in_the_body)
{
	struct cli_args a;
	char err[256] = "";
	CHECK_EQ_INT(parse(&a, err, "tpl", "create-from-image", "--image", "reg.lan/app:1", "--registry-user", "robot",
			   "--registry-password-file", "/run/pw", "--registry-ca=/etc/reg-ca.pem", NULL),
		     0);
	CHECK_STREQ(a.create.registry_user, "robot");
	CHECK_STREQ(a.create.registry_password_file, "/run/pw");
	CHECK_STREQ(a.create.registry_ca_file, "/etc/reg-ca.pem");
	a.create.registry_password = "s3cret";
	a.create.registry_ca_pem = "-----BEGIN CERTIFICATE-----\nMII\n-----END CERTIFICATE-----\n";
	struct buf b = BUF_INIT;
	cli_create_body(&a, &b);
	struct json *j = json_parse(b.data, b.len, NULL, 0);
	const struct json *reg = json_get(j, "fromImageRegistry");
	CHECK_STREQ(json_get_str(reg, "type"), "registry");
	CHECK_STREQ(json_get_str(reg, "username"), "robot");
	CHECK_STREQ(json_get_str(reg, "password"), "s3cret");
	CHECK(json_get_str(j, "registryCA") && strstr(json_get_str(j, "registryCA"), "BEGIN CERTIFICATE"));
	json_free(j);
	buf_free(&b);
}

TEST(template_is_an_alias_of_tpl_and_options_go_anywhere)
{
	struct cli_args a;
	char err[256];
	CHECK_EQ_INT(parse(&a, err, "--api-key", "k1", "template", "delete", "mytpl", "--json", NULL), 0);
	CHECK_EQ_INT(a.cmd, CLI_TPL_DELETE);
	CHECK_STREQ(a.target, "mytpl");
	CHECK_STREQ(a.api_key, "k1");
	CHECK(a.json);
	CHECK_EQ_INT(parse(&a, err, "sandbox", "kill", "abc123", NULL), 0);
	CHECK_EQ_INT(a.cmd, CLI_SANDBOX_KILL);
	CHECK_EQ_INT(parse(&a, err, "tpl", "watch", "base", "--interval-ms", "50", "--timeout", "9", NULL), 0);
	CHECK_EQ_INT(a.interval_ms, 50);
	CHECK_EQ_INT(a.timeout_s, 9);
	CHECK_EQ_INT(parse(&a, err, "tpl", "ls", NULL), 0);
	CHECK_EQ_INT(a.cmd, CLI_TPL_LIST);
}

TEST(help_anywhere)
{
	struct cli_args a;
	char err[256];
	CHECK_EQ_INT(parse(&a, err, NULL), 0);
	CHECK_EQ_INT(a.cmd, CLI_HELP);
	CHECK_EQ_INT(parse(&a, err, "tpl", "--help", NULL), 0);
	CHECK_EQ_INT(a.cmd, CLI_HELP);
	CHECK_STREQ(a.help_topic, "tpl");
	CHECK_EQ_INT(parse(&a, err, "help", "sandbox", NULL), 0);
	CHECK_STREQ(a.help_topic, "sandbox");
	struct buf b = BUF_INIT;
	cli_usage("cubemastercli", "sandbox", &b);
	buf_putc(&b, '\0');
	CHECK(strstr(b.data, "usage: cubemastercli") != NULL);
	CHECK(strstr(b.data, "sandbox kill ID") != NULL);
	CHECK(strstr(b.data, "create-from-image") == NULL);
	buf_free(&b);
}

/* Every mistake is refused with a message naming it. */
TEST(bad_arguments_are_refused_clearly)
{
	static const struct {
		const char *argv[10];
		const char *needle;
	} cases[] = {
	    {{"tpl", "create-from-image", NULL}, "needs --image"},
	    {{"tpl", "create-from-image", "--image", "x", "--cpu", "0", NULL}, "--cpu"},
	    {{"tpl", "create-from-image", "--image", "x", "--cpu", "two", NULL}, "--cpu"},
	    {{"tpl", "create-from-image", "--image", "x", "--memory", "lots", NULL}, "--memory"},
	    {{"tpl", "create-from-image", "--image", "x", "--memory", "64", NULL}, "at least 128"},
	    {{"tpl", "create-from-image", "--image", "x", "--expose-port", "70000", NULL}, "--expose-port"},
	    {{"tpl", "create-from-image", "--image", "x", "--probe", NULL}, "--probe needs a value"},
	    {{"tpl", "create-from-image", "--image", "x", "--env", "NOVALUE", NULL}, "NAME=VALUE"},
	    {{"tpl", "create-from-image", "--image", "x", "--env", "=v", NULL}, "NAME=VALUE"},
	    {{"tpl", "create-from-image", "--image", "x", "--writable-layer-size", "1X", NULL}, "not a size"},
	    {{"tpl", "create-from-image", "--image", "x", "--name", "../etc", NULL}, "--name"},
	    {{"tpl", "create-from-rootfs", "--rootfs", "rel/path", "--name", "n", NULL}, "ABSOLUTE"},
	    {{"tpl", "create-from-rootfs", "--rootfs", "/x.ext4", NULL}, "--name"},
	    {{"tpl", "create-from-rootfs", "--rootfs", "/x", "--name", "n", "--probe", "1", NULL}, "belong to"},
	    {{"tpl", "create-from-rootfs", "--rootfs", "/x", "--name", "n", "--archive", "a.tar", NULL}, "belong to"},
	    {{"tpl", "create-from-image", "--image", "x", "--archive", "a.tar", NULL}, "one of --image and --archive"},
	    {{"tpl", "create-from-image", "--archive", "a.tar", "--insecure-registry", NULL}, "--insecure-registry"},
	    {{"tpl", "create-from-image", "--archive", NULL}, "--archive needs a value"},
	    {{"tpl", "create-from-image", "--archive", "a.tar", "--registry-user", "u", NULL}, "are for --image"},
	    {{"tpl", "create-from-image", "--image", "x", "--registry-password-file", "f", NULL},
	     "needs --registry-user"},
	    {{"tpl", "list", "--registry-ca", "ca.pem", NULL}, "no template options"},
	    {{"tpl", "list", "--archive", "a.tar", NULL}, "no template options"},
	    {{"tpl", "delete", NULL}, "one argument"},
	    {{"tpl", "delete", "a", "b", NULL}, "unexpected argument \"b\""},
	    {{"tpl", "list", "--cpu", "2", NULL}, "no template options"},
	    {{"tpl", "frobnicate", NULL}, "unknown command"},
	    {{"pool", "list", NULL}, "unknown command"},
	    {{"tpl", "list", "--verbose", NULL}, "unknown option --verbose"},
	    {{"sandbox", NULL}, "needs a command"},
	};
	for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		char *argv[12] = {"cube"};
		int argc = 1;
		while (cases[i].argv[argc - 1])
			argv[argc] = (char *)cases[i].argv[argc - 1], argc++;
		struct cli_args a;
		char err[256] = "";
		bool refused = cli_parse(argc, argv, &a, err, sizeof err) < 0;
		if (!CHECK(refused) || !CHECK(strstr(err, cases[i].needle) != NULL))
			fprintf(stderr, "  case %zu: err=\"%s\", wanted \"%s\"\n", i, err, cases[i].needle);
	}
}

TEST(sizes_and_names)
{
	CHECK_EQ_INT(cli_parse_size_mib("512"), 512);
	CHECK_EQ_INT(cli_parse_size_mib("512M"), 512);
	CHECK_EQ_INT(cli_parse_size_mib("2G"), 2048);
	CHECK_EQ_INT(cli_parse_size_mib("2GiB"), 2048);
	CHECK_EQ_INT(cli_parse_size_mib("1T"), 1 << 20);
	CHECK_EQ_INT(cli_parse_size_mib("0"), -1);
	CHECK_EQ_INT(cli_parse_size_mib("-1G"), -1);
	CHECK_EQ_INT(cli_parse_size_mib("1.5G"), -1);
	CHECK_EQ_INT(cli_parse_size_mib("99999999999999999999"), -1);
	char n[160];
	cli_name_from_image("registry.local:5000/team/app:v1", n, sizeof n);
	CHECK_STREQ(n, "app-v1");
	cli_name_from_image("ubuntu@sha256:abcd", n, sizeof n);
	CHECK_STREQ(n, "ubuntu");
	cli_name_from_image("python", n, sizeof n);
	CHECK_STREQ(n, "python");
}

TEST(endpoints)
{
	struct cli_endpoint ep;
	char err[256];
	CHECK_EQ_INT(cli_endpoint_parse("http://10.1.2.3:8080/api/", &ep, err, sizeof err), 0);
	CHECK_STREQ(ep.host, "10.1.2.3");
	CHECK_EQ_INT(ep.port, 8080);
	CHECK_STREQ(ep.prefix, "/api");
	CHECK_EQ_INT(cli_endpoint_parse("cube.lan", &ep, err, sizeof err), 0);
	CHECK_EQ_INT(ep.port, 3000);
	CHECK_EQ_INT(cli_endpoint_parse("http://[::1]:3001", &ep, err, sizeof err), 0);
	CHECK_STREQ(ep.host, "::1");
	CHECK_EQ_INT(ep.port, 3001);
	CHECK_EQ_INT(cli_endpoint_parse("unix:/run/cubeos/run/api.sock", &ep, err, sizeof err), 0);
	CHECK(ep.is_unix);
	CHECK_STREQ(ep.path, "/run/cubeos/run/api.sock");
	CHECK_EQ_INT(cli_endpoint_parse("https://x", &ep, err, sizeof err), -1);
	CHECK(strstr(err, "plain HTTP") != NULL);
	CHECK_EQ_INT(cli_endpoint_parse("http://x:99999", &ep, err, sizeof err), -1);
	CHECK_EQ_INT(cli_endpoint_parse("unix:relative", &ep, err, sizeof err), -1);
	setenv("CUBE_API_URL", "http://192.0.2.1:3333", 1);
	CHECK_EQ_INT(cli_endpoint_default(NULL, &ep, err, sizeof err), 0);
	CHECK_EQ_INT(ep.port, 3333);
	CHECK_EQ_INT(cli_endpoint_default("http://h:1", &ep, err, sizeof err), 0);
	CHECK_EQ_INT(ep.port, 1);
	unsetenv("CUBE_API_URL");
}

static char *format(void (*fn)(const struct json *, struct buf *), const char *text)
{
	struct json *j = json_parse(text, strlen(text), NULL, 0);
	struct buf b = BUF_INIT;
	fn(j, &b);
	buf_putc(&b, '\0');
	json_free(j);
	return buf_steal(&b);
}

TEST(template_table)
{
	char *s = format(cli_format_templates,
			 "[{\"templateID\":\"base\",\"buildID\":\"base\",\"cpuCount\":2,\"memoryMB\":512,"
			 "\"diskSizeMB\":1024,\"createdAt\":\"2026-01-01T00:00:00.000Z\",\"buildStatus\":\"ready\"},"
			 "{\"templateID\":\"py\",\"buildID\":\"b1\",\"cpuCount\":1,\"memoryMB\":1024,"
			 "\"createdAt\":\"2026-02-03T04:05:06.000Z\",\"buildStatus\":\"building\",\"progress\":45}]");
	CHECK_STREQ(s, "TEMPLATE  STATUS        VCPU  MEMORY    DISK      CREATED              BUILD\n"
		       "base      ready         2     512 MiB   1024 MiB  2026-01-01 00:00:00  base\n"
		       "py        building 45%  1     1024 MiB  -         2026-02-03 04:05:06  b1\n");
	free(s);
	s = format(cli_format_templates, "[{\"templateID\":\"x\",\"buildStatus\":\"error\",\"error\":\"no agent\"}]");
	CHECK(strstr(s, "ERROR") != NULL && strstr(s, "no agent\n") != NULL);
	free(s);
	s = format(cli_format_templates, "[]");
	CHECK_STREQ(s, "no templates\n");
	free(s);
}

TEST(sandbox_table_and_watch_lines)
{
	char *s = format(cli_format_sandboxes,
			 "[{\"sandboxID\":\"abc\",\"templateID\":\"base\",\"state\":\"paused\",\"cpuCount\":2,"
			 "\"memoryMB\":512,\"startedAt\":\"2026-01-01T00:00:00.000Z\",\"endAt\":\"2026-01-01T00:05:00."
			 "000Z\"}]");
	CHECK_STREQ(s, "SANDBOX  TEMPLATE  STATE   VCPU  MEMORY   STARTED              ENDS\n"
		       "abc      base      paused  2     512 MiB  2026-01-01 00:00:00  2026-01-01 00:05:00\n");
	free(s);
	s = format(cli_format_sandboxes, "not json");
	CHECK_STREQ(s, "no sandboxes\n");
	free(s);
	struct buf b = BUF_INIT;
	cli_format_progress("booting", 40, &b);
	cli_format_progress("ready", 100, &b);
	const char *text = "{\"timestamp\":\"2026-01-01T00:00:01.000Z\",\"level\":\"error\",\"message\":\"boom\"}";
	struct json *e = json_parse(text, strlen(text), NULL, 0);
	cli_format_log_entry(e, &b);
	json_free(e);
	buf_putc(&b, '\0');
	CHECK_STREQ(b.data, "[ 40%] booting\n[100%] ready\n       2026-01-01 00:00:01 error: boom\n");
	buf_free(&b);
}
