/* rtnl.c - RTNETLINK requests (see rtnl.h). */
#include "rtnl.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#define RTNL_RX_MAX 32768

void rtnl_req_init(struct rtnl_req *r, uint16_t type, uint16_t flags, const void *fam, size_t famlen)
{
	memset(&r->u, 0, sizeof r->u);
	r->h = &r->u.align;
	r->h->nlmsg_type = type;
	r->h->nlmsg_flags = NLM_F_REQUEST | flags;
	r->h->nlmsg_len = NLMSG_LENGTH(famlen);
	memcpy(NLMSG_DATA(r->h), fam, famlen);
}

void rtnl_req_attr(struct rtnl_req *r, uint16_t type, const void *data, size_t len)
{
	size_t at = NLMSG_ALIGN(r->h->nlmsg_len);
	if (at + RTA_SPACE(len) > sizeof r->u)
		abort();
	struct rtattr *a = (struct rtattr *)(r->u.bytes + at);
	a->rta_type = type;
	a->rta_len = (unsigned short)RTA_LENGTH(len);
	if (len)
		memcpy(RTA_DATA(a), data, len);
	r->h->nlmsg_len = (uint32_t)(at + RTA_SPACE(len));
}

void rtnl_req_attr_str(struct rtnl_req *r, uint16_t type, const char *s)
{
	rtnl_req_attr(r, type, s, strlen(s) + 1);
}

struct rtattr *rtnl_req_nest(struct rtnl_req *r, uint16_t type)
{
	size_t at = NLMSG_ALIGN(r->h->nlmsg_len);
	rtnl_req_attr(r, type, NULL, 0);
	return (struct rtattr *)(r->u.bytes + at);
}

void rtnl_req_nest_end(struct rtnl_req *r, struct rtattr *nest)
{
	nest->rta_len = (unsigned short)(r->u.bytes + r->h->nlmsg_len - (char *)nest);
}

static int rtnl_open(void)
{
	int fd = socket(AF_NETLINK, SOCK_RAW | SOCK_CLOEXEC, NETLINK_ROUTE);
	if (fd < 0)
		return -1;
	struct sockaddr_nl sa = {.nl_family = AF_NETLINK};
	if (bind(fd, (struct sockaddr *)&sa, sizeof sa) < 0) {
		int e = errno;
		close(fd);
		errno = e;
		return -1;
	}
	return fd;
}

int rtnl_transact(struct rtnl_req *r, rtnl_msg_fn fn, void *arg)
{
	static uint32_t seq;
	int fd = rtnl_open();
	if (fd < 0)
		return -1;
	r->h->nlmsg_seq = __atomic_add_fetch(&seq, 1, __ATOMIC_RELAXED);
	struct sockaddr_nl kernel = {.nl_family = AF_NETLINK};
	int rc = -1, err = EIO;
	char *rx = malloc(RTNL_RX_MAX);
	if (!rx || sendto(fd, r->h, r->h->nlmsg_len, 0, (struct sockaddr *)&kernel, sizeof kernel) < 0) {
		err = rx ? errno : ENOMEM;
		goto out;
	}
	for (;;) {
		ssize_t n = recv(fd, rx, RTNL_RX_MAX, 0);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			err = errno;
			goto out;
		}
		for (struct nlmsghdr *h = (struct nlmsghdr *)rx; NLMSG_OK(h, (size_t)n); h = NLMSG_NEXT(h, n)) {
			if (h->nlmsg_seq != r->h->nlmsg_seq)
				continue;
			if (h->nlmsg_type == NLMSG_DONE) {
				rc = 0;
				goto out;
			}
			if (h->nlmsg_type == NLMSG_ERROR) {
				const struct nlmsgerr *e = NLMSG_DATA(h);
				if (h->nlmsg_len < NLMSG_LENGTH(sizeof *e) || e->error == 0)
					rc = h->nlmsg_len < NLMSG_LENGTH(sizeof *e) ? -1 : 0;
				err = e->error ? -e->error : EIO;
				goto out;
			}
			if (fn)
				fn(arg, h);
		}
	}
out:
	free(rx);
	close(fd);
	if (rc < 0)
		errno = err;
	return rc;
}
