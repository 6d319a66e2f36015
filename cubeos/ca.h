/*
 * ca.h - the appliance CA: an EC P-256 key and a self-signed certificate made
 * at first boot, and the TLS server certificate it signs for the proxy.
 *
 * Files, in the config directory (config.h), each replaced atomically:
 *
 *   ca.key      0600  the CA private key (PEM, SEC1 "EC PRIVATE KEY")
 *   ca.crt      0644  the CA certificate (PEM): what clients trust
 *                     (NODE_EXTRA_CA_CERTS, SSL_CERT_FILE, REQUESTS_CA_BUNDLE)
 *   server.key  0600  the proxy's private key (PEM)
 *   server.crt  0644  the proxy's certificate (PEM, the leaf only: clients
 *                     already hold the CA) for <domain> and *.<domain>
 *
 * The key is always written before its certificate, so a certificate on disk
 * always has its key next to it.
 *
 * ECDSA P-256 with SHA-256: every client the appliance serves (the E2B SDKs
 * on Node and Python, curl, browsers) accepts it, and signing is far cheaper
 * than RSA on the proxy's handshake path.
 */
#ifndef CUBEOS_CA_H
#define CUBEOS_CA_H

#include <stdbool.h>
#include <stddef.h>

struct config;

#define CA_KEY_FILE	    "ca.key"
#define CA_CERT_FILE	    "ca.crt"
#define CA_SERVER_KEY_FILE  "server.key"
#define CA_SERVER_CERT_FILE "server.crt"

#define CA_VALIDITY_DAYS	3650 /* 10 years: the CA is installed once on each client */
#define CA_SERVER_VALIDITY_DAYS 365
#define CA_SERVER_IPS_MAX	8
/* "AB:CD:...": 32 bytes as hex pairs joined by ':', as `openssl x509 -fingerprint -sha256` prints it. */
#define CA_FINGERPRINT_LEN (32 * 3)

/* Loads ca.crt + ca.key from the config directory and checks that they belong
 * together; if either is missing, makes a new CA (CN "CubeOS appliance CA
 * <hostname>") and writes both. *made tells which happened; fingerprint (may
 * be NULL) receives the CA's SHA-256 fingerprint. 0, or -1 with the reason
 * logged and errno set. */
int ca_ensure(const struct config *c, bool *made, char fingerprint[CA_FINGERPRINT_LEN]);

/* Makes a new CA unconditionally (replacing any old one). */
int ca_generate(const struct config *c);

/* The CA certificate PEM (caller frees), or NULL with errno. */
char *ca_cert_pem(const struct config *c);

/* SHA-256 fingerprint of the first certificate in a PEM text. 0 or -1. */
int ca_fingerprint(const char *pem, char out[CA_FINGERPRINT_LEN]);

/* Issues server.crt/server.key: a fresh EC P-256 key and a certificate for
 * dNSNames <domain> and *.<domain> plus the given IP addresses (IPv4 or IPv6
 * text, at most CA_SERVER_IPS_MAX), serverAuth, valid CA_SERVER_VALIDITY_DAYS,
 * signed by the CA (which must exist). 0, or -1 with the reason in err. */
int ca_issue_server_cert(const struct config *c, const char *domain, const char *const *ips, size_t nips, char *err,
			 size_t errsz);

#endif
