/*
 * tc.h - attaching the switch's programs to an interface: a clsact qdisc,
 * then a direct-action bpf filter on its ingress or egress hook (what `tc
 * qdisc add dev X clsact; tc filter add dev X ingress bpf da fd N` does),
 * over RTNETLINK (lib/rtnl.h), so the appliance needs no tc binary.
 */
#ifndef CUBE_NET_TC_H
#define CUBE_NET_TC_H

#include <stdbool.h>
#include <stddef.h>

/* Adds the clsact qdisc if missing, then the program (replacing a filter of
 * the same priority). 0, or -1 with a message in err. */
int tc_attach(int ifindex, int prog_fd, bool ingress, const char *name, char *err, size_t errsz);
/* Removes the clsact qdisc and with it every filter on both hooks. A gone
 * interface or qdisc counts as done. 0 or -1 (errno). */
int tc_detach(int ifindex);

#endif
