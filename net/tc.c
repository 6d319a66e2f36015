/* tc.c - a clsact qdisc and a direct-action bpf filter, over RTNETLINK (tc.h). */
#include "tc.h"

#include <errno.h>
#include <linux/if_ether.h>
#include <linux/pkt_cls.h>
#include <linux/pkt_sched.h>
#include <stdio.h>
#include <string.h>
#include <arpa/inet.h>

#include "../lib/rtnl.h"

#define SWITCH_FILTER_PRIO 1

static int add_clsact(int ifindex)
{
	struct tcmsg t = {.tcm_family = AF_UNSPEC,
			  .tcm_ifindex = ifindex,
			  .tcm_handle = TC_H_MAKE(TC_H_CLSACT, 0),
			  .tcm_parent = TC_H_CLSACT};
	struct rtnl_req r;
	rtnl_req_init(&r, RTM_NEWQDISC, NLM_F_ACK | NLM_F_CREATE | NLM_F_EXCL, &t, sizeof t);
	rtnl_req_attr_str(&r, TCA_KIND, "clsact");
	if (rtnl_transact(&r, NULL, NULL) < 0 && errno != EEXIST)
		return -1;
	return 0;
}

int tc_attach(int ifindex, int prog_fd, bool ingress, const char *name, char *err, size_t errsz)
{
	if (add_clsact(ifindex) < 0) {
		snprintf(err, errsz, "clsact qdisc on ifindex %d: %s", ifindex, strerror(errno));
		return -1;
	}
	struct tcmsg t = {.tcm_family = AF_UNSPEC,
			  .tcm_ifindex = ifindex,
			  .tcm_handle = 1,
			  .tcm_parent = TC_H_MAKE(TC_H_CLSACT, ingress ? TC_H_MIN_INGRESS : TC_H_MIN_EGRESS),
			  .tcm_info = TC_H_MAKE(SWITCH_FILTER_PRIO << 16, htons(ETH_P_ALL))};
	struct rtnl_req r;
	rtnl_req_init(&r, RTM_NEWTFILTER, NLM_F_ACK | NLM_F_CREATE | NLM_F_REPLACE, &t, sizeof t);
	rtnl_req_attr_str(&r, TCA_KIND, "bpf");
	struct rtattr *opts = rtnl_req_nest(&r, TCA_OPTIONS);
	__u32 fd = (__u32)prog_fd, flags = TCA_BPF_FLAG_ACT_DIRECT;
	rtnl_req_attr(&r, TCA_BPF_FD, &fd, sizeof fd);
	rtnl_req_attr_str(&r, TCA_BPF_NAME, name);
	rtnl_req_attr(&r, TCA_BPF_FLAGS, &flags, sizeof flags);
	rtnl_req_nest_end(&r, opts);
	if (rtnl_transact(&r, NULL, NULL) < 0) {
		snprintf(err, errsz, "bpf filter %s on ifindex %d %s: %s", name, ifindex,
			 ingress ? "ingress" : "egress", strerror(errno));
		return -1;
	}
	return 0;
}

int tc_detach(int ifindex)
{
	struct tcmsg t = {.tcm_family = AF_UNSPEC,
			  .tcm_ifindex = ifindex,
			  .tcm_handle = TC_H_MAKE(TC_H_CLSACT, 0),
			  .tcm_parent = TC_H_CLSACT};
	struct rtnl_req r;
	rtnl_req_init(&r, RTM_DELQDISC, NLM_F_ACK, &t, sizeof t);
	if (rtnl_transact(&r, NULL, NULL) < 0 && errno != ENOENT && errno != ENODEV && errno != EINVAL)
		return -1;
	return 0;
}
