/*
 * fuzz_dhcp.c - everything the DHCP client reads from the network.
 *
 * The input is an IPv4 packet as the packet socket delivers it: framing and
 * message are parsed (any result is fine, reads outside the input are the
 * finding). The payload, framed or not, then goes into a client in each
 * state, whose callbacks check that a bound lease is sane.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "../dhcp.h"

static int fake_send(void *arg, enum dhcp_send_how how, struct in_addr to, const uint8_t *msg, size_t len)
{
	struct dhcp_msg m;
	if (len < DHCP_FIXED_LEN || dhcp_parse(msg, len, &m) < 0)
		abort(); /* what we send must parse back */
	return 0;
}

static void fake_bound(void *arg, const struct dhcp_lease *l, bool renewal)
{
	if (l->prefix > 32 || l->n_dns > DHCP_MAX_DNS || l->addr.s_addr == 0 || l->t1_s > l->t2_s ||
	    l->t2_s > l->lease_s)
		abort();
}

static void fake_lost(void *arg, const struct dhcp_lease *l) {}

static const struct dhcp_ops ops = {fake_send, fake_bound, fake_lost};

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static const uint8_t mac[6] = {0x52, 0x54, 0, 0x12, 0x34, 0x56};
	const uint8_t *msg = data;
	size_t len = size;
	struct dhcp_msg m;
	if (dhcp_frame_parse(data, size, &msg, &len) < 0) {
		msg = data;
		len = size;
	}
	dhcp_parse(msg, len, &m);
	/* A client waiting for an OFFER, then an ACK, then a renewal answer;
	 * the xid and MAC are patched in so the state machine gets past them. */
	uint8_t *copy = malloc(len ? len : 1);
	memcpy(copy, msg, len);
	struct dhcp_client c;
	dhcp_client_init(&c, mac, "fuzz", &ops, NULL, 1);
	dhcp_client_start(&c, 0);
	for (int round = 0; round < 3; round++) {
		if (len >= 34) {
			copy[4] = (uint8_t)(c.xid >> 24), copy[5] = (uint8_t)(c.xid >> 16);
			copy[6] = (uint8_t)(c.xid >> 8), copy[7] = (uint8_t)c.xid;
			memcpy(copy + 28, mac, 6);
		}
		dhcp_client_input(&c, copy, len, 10 + (uint64_t)round);
		if (c.state == DHCP_BOUND)
			dhcp_client_timeout(&c, dhcp_client_next(&c));
	}
	dhcp_client_stop(&c);
	free(copy);
	return 0;
}
