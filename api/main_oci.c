/*
 * main_oci.c - cube-oci: a container image to a template root filesystem
 * (oci.h) from the command line. Progress goes to stdout, one line per
 * step or percent:
 *
 *   pulling 0% registry.lan:5000/app:1
 *   pulling 37%
 *   unpacking 50% layer 2/4 sha256:...
 *   rootfs 100% 612.0 MiB
 *   done /var/lib/cubeos/templates/app/rootfs.ext4
 *
 * Exit status 0, or 1 with "cube-oci: error (<class>): <reason>" on stderr,
 * the class being oci_status_name (not_found, auth, digest_mismatch,
 * disk_full, ...).
 */
#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../lib/fileio.h"
#include "../lib/log.h"
#include "oci.h"

static void usage(FILE *f)
{
	fputs("usage: cube-oci (--image REF | --archive FILE) --out ROOTFS.ext4 [options]\n"
	      "  --image REF               registry/name[:tag][@sha256:...] (Docker Hub names as docker pull)\n"
	      "  --archive FILE            docker save or OCI layout tarball (.tar or .tar.gz)\n"
	      "  --out FILE                the ext4 image to write\n"
	      "  --agent FILE              the agent to inject (default /usr/lib/cubeos/cube-agent)\n"
	      "  --config-out FILE         image config JSON (default image.json next to --out)\n"
	      "  --work DIR                scratch directory (default OUT.work, removed afterwards)\n"
	      "  --keep-work               keep the scratch directory (downloaded blobs are reused)\n"
	      "  --writable-layer-size N   free space in the image, e.g. 512M, 2G (default 512M)\n"
	      "  --insecure-registry       plain HTTP to the registry\n"
	      "  --ca-file FILE            CA bundle for HTTPS (default /etc/ssl/certs/ca-certificates.crt)\n"
	      "  --username U              registry user; the password comes from --password-file or\n"
	      "  --password-file FILE      the environment variable CUBE_OCI_PASSWORD\n"
	      "  --mke2fs PATH             mke2fs to run (default /usr/lib/cubeos/mke2fs, else /usr/sbin/mke2fs)\n"
	      "  --max-blob-size N         per blob (default 8G); --max-unpacked-size N (default 32G)\n"
	      "  --timeout-ms N            connect and idle timeout (default 30000)\n",
	      f);
}

/* "512M", "2G", "1GiB", "1048576": bytes, or -1. */
static int parse_size(const char *s, uint64_t *out)
{
	char *end;
	errno = 0;
	unsigned long long v = strtoull(s, &end, 10);
	if (errno || end == s)
		return -1;
	uint64_t mul = 1;
	switch (*end) {
	case 'k':
	case 'K':
		mul = 1ull << 10;
		end++;
		break;
	case 'm':
	case 'M':
		mul = 1ull << 20;
		end++;
		break;
	case 'g':
	case 'G':
		mul = 1ull << 30;
		end++;
		break;
	case 't':
	case 'T':
		mul = 1ull << 40;
		end++;
		break;
	default: break;
	}
	if (mul > 1 && (strcmp(end, "i") == 0 || strcmp(end, "iB") == 0 || strcmp(end, "B") == 0))
		end += strlen(end);
	if (*end || v > UINT64_MAX / mul)
		return -1;
	*out = v * mul;
	return 0;
}

static void print_progress(void *arg, const char *phase, int pct, const char *detail)
{
	printf("%s %d%%%s%s\n", phase, pct, detail[0] ? " " : "", detail);
	fflush(stdout);
}

enum {
	O_IMAGE = 256,
	O_ARCHIVE,
	O_OUT,
	O_AGENT,
	O_CONFIG,
	O_WORK,
	O_KEEP,
	O_WRITABLE,
	O_INSECURE,
	O_CA,
	O_USER,
	O_PWFILE,
	O_MKE2FS,
	O_MAXBLOB,
	O_MAXUNP,
	O_TIMEOUT,
	O_HELP
};

int main(int argc, char **argv)
{
	static const struct option opts[] = {
	    {"image", required_argument, 0, O_IMAGE},
	    {"archive", required_argument, 0, O_ARCHIVE},
	    {"out", required_argument, 0, O_OUT},
	    {"agent", required_argument, 0, O_AGENT},
	    {"config-out", required_argument, 0, O_CONFIG},
	    {"work", required_argument, 0, O_WORK},
	    {"keep-work", no_argument, 0, O_KEEP},
	    {"writable-layer-size", required_argument, 0, O_WRITABLE},
	    {"insecure-registry", no_argument, 0, O_INSECURE},
	    {"ca-file", required_argument, 0, O_CA},
	    {"username", required_argument, 0, O_USER},
	    {"password-file", required_argument, 0, O_PWFILE},
	    {"mke2fs", required_argument, 0, O_MKE2FS},
	    {"max-blob-size", required_argument, 0, O_MAXBLOB},
	    {"max-unpacked-size", required_argument, 0, O_MAXUNP},
	    {"timeout-ms", required_argument, 0, O_TIMEOUT},
	    {"help", no_argument, 0, O_HELP},
	    {0, 0, 0, 0},
	};
	struct oci_build_opts o = {.agent = "/usr/lib/cubeos/cube-agent", .progress = print_progress};
	char *password = NULL;
	log_set_component("oci");
	log_set_level(LOG_ERROR); /* the failure is printed once, below, in words */
	int c;
	while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
		uint64_t *size = NULL;
		switch (c) {
		case O_IMAGE: o.image = optarg; break;
		case O_ARCHIVE: o.archive = optarg; break;
		case O_OUT: o.out = optarg; break;
		case O_AGENT: o.agent = optarg; break;
		case O_CONFIG: o.config_out = optarg; break;
		case O_WORK: o.work_dir = optarg; break;
		case O_KEEP: o.keep_work = true; break;
		case O_WRITABLE: size = &o.writable_bytes; break;
		case O_INSECURE: o.insecure_registry = true; break;
		case O_CA: o.ca_file = optarg; break;
		case O_USER: o.username = optarg; break;
		case O_MKE2FS: o.mke2fs = optarg; break;
		case O_MAXBLOB: size = &o.max_blob_bytes; break;
		case O_MAXUNP: size = &o.max_unpacked_bytes; break;
		case O_TIMEOUT: o.timeout_ms = atoi(optarg); break;
		case O_PWFILE:
			free(password);
			password = file_read_all(optarg, 4096, NULL);
			if (!password) {
				fprintf(stderr, "cube-oci: error: --password-file %s: %s\n", optarg, strerror(errno));
				return 2;
			}
			password[strcspn(password, "\r\n")] = '\0';
			break;
		case O_HELP: usage(stdout); return 0;
		default: usage(stderr); return 2;
		}
		if (size && parse_size(optarg, size) < 0) {
			fprintf(stderr, "cube-oci: error: bad size '%s' (e.g. 512M, 2G)\n", optarg);
			return 2;
		}
	}
	if (optind != argc || !o.out || (!o.image == !o.archive)) {
		usage(stderr);
		return 2;
	}
	if (!password && getenv("CUBE_OCI_PASSWORD"))
		password = strdup(getenv("CUBE_OCI_PASSWORD"));
	o.password = password;
	char err[1024];
	int rc = oci_build_rootfs(&o, err, sizeof err);
	free(password);
	if (rc != OCI_OK) {
		fprintf(stderr, "cube-oci: error (%s): %s\n", oci_status_name(rc), err);
		return 1;
	}
	printf("done %s\n", o.out);
	return 0;
}
