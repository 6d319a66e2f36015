/*
 * rtnl.h - one RTNETLINK request at a time: build it (the nlmsghdr, the
 * family header such as ifinfomsg or tcmsg, attributes, nested ones), send
 * it on a socket of its own and read the kernel's answer.
 *
 * A change is sent with NLM_F_ACK and answered by one NLMSG_ERROR (error 0:
 * done); a dump by a run of messages ending in NLMSG_DONE. Errors come back
 * as -1 with errno set to what the kernel said (EEXIST, ENODEV, EPERM...).
 * Used by cubeos (links, addresses, routes) and net/ (tc qdiscs, filters).
 */
#ifndef CUBE_RTNL_H
#define CUBE_RTNL_H

#include <linux/netlink.h>
#include <linux/rtnetlink.h>
#include <stddef.h>
#include <stdint.h>

#define RTNL_REQ_MAX 1024

struct rtnl_req {
	struct nlmsghdr *h;
	union {
		struct nlmsghdr align;
		char bytes[RTNL_REQ_MAX];
	} u;
};

void rtnl_req_init(struct rtnl_req *r, uint16_t type, uint16_t flags, const void *fam, size_t famlen);
/* Requests are built from fixed, small attribute sets: an overflow aborts. */
void rtnl_req_attr(struct rtnl_req *r, uint16_t type, const void *data, size_t len);
void rtnl_req_attr_str(struct rtnl_req *r, uint16_t type, const char *s); /* with its NUL */
/* A nested attribute: the attributes added until rtnl_req_nest_end go in it. */
struct rtattr *rtnl_req_nest(struct rtnl_req *r, uint16_t type);
void rtnl_req_nest_end(struct rtnl_req *r, struct rtattr *nest);

typedef void (*rtnl_msg_fn)(void *arg, const struct nlmsghdr *h);
/* Sends r and reads the answer: each data message goes to fn (dumps), an
 * NLMSG_ERROR or NLMSG_DONE ends it. 0, or -1 with errno. */
int rtnl_transact(struct rtnl_req *r, rtnl_msg_fn fn, void *arg);

#endif
