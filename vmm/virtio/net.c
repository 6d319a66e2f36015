/*
 * net.c - virtio-net (device id 1) on a TAP device.
 *
 * No offloads are offered, so the 12-byte virtio_net_hdr in front of every
 * frame carries nothing (flags 0, GSO none, one buffer). When we open the
 * TAP ourselves it gets IFF_VNET_HDR with a 12-byte header, so transmitted
 * frames go to the kernel exactly as the guest laid them out (header and
 * all, no copy); a TAP fd handed to us without IFF_VNET_HDR gets plain
 * frames and the header is skipped on transmit. On receive we read the
 * frame straight into the guest's buffer and then write a clean header
 * ourselves in both cases (the kernel's could claim DATA_VALID, which the
 * guest never negotiated, and leaves num_buffers unset).
 *
 * Receive is pull-based: the TAP is watched only while the guest has
 * receive buffers posted and the VM is not paused; a guest notification on
 * the receive queue starts the watch again.
 */
#include <errno.h>
#include <fcntl.h>
#include <linux/if_tun.h>
#include <net/if.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/uio.h>
#include <unistd.h>

#include "../../lib/log.h"
#include "../snapfile.h"
#include "virtio.h"

#define NET_QUEUE_SIZE	  256
#define NET_RXQ		  0
#define NET_TXQ		  1
#define NET_HDR_LEN	  12 /* struct virtio_net_hdr_v1 */
#define NET_MAX_FRAME	  (65536 + NET_HDR_LEN)
#define NET_BATCH	  64
#define NET_STATE_VERSION 1

#define NET_F_MAC     (1ull << 5)
#define NET_F_STATUS  (1ull << 16)
#define NET_S_LINK_UP 1

struct net {
	struct virtio_dev vd; /* first: the transport hands us back this pointer */
	int index;
	int tap_fd;
	bool hdr_on_tap; /* the TAP itself reads and writes the 12-byte header */
	struct loop_io tap_io;
	bool tap_watched;
	bool tap_error_logged;
	uint64_t tx_dropped;
	struct virtq_chain ch;
};

static void tap_watch(struct net *n, bool on)
{
	struct loop *l = n->vd.vm ? n->vd.vm->loop : NULL;
	if (!l || on == n->tap_watched)
		return;
	n->tap_watched = on;
	if (on)
		loop_io_add(l, &n->tap_io, n->tap_fd, EPOLLIN, n->tap_io.fn, n);
	else
		loop_io_del(l, &n->tap_io);
}

static void tap_error(struct net *n, const char *what)
{
	if (n->tap_error_logged)
		return;
	n->tap_error_logged = true;
	log_warn("virtio_net.tap", "%s: %s: %s (further errors not logged)", n->vd.name, what, strerror(errno));
}

/* How many bytes at the start of a chain the device strips or fills itself:
 * the header, unless the TAP carries it. */
static uint64_t hdr_skip(const struct net *n)
{
	return n->hdr_on_tap ? 0 : NET_HDR_LEN;
}

/* Fills iov (VIRTQ_MAX_SIZE entries) with the part of a chain that goes to
 * the TAP (transmit) or takes what comes from it (receive, writable):
 * everything past hdr_skip. Returns the number of entries. */
static int tap_iov(const struct net *n, const struct virtq_chain *ch, bool writable, struct iovec *iov)
{
	uint64_t skip = hdr_skip(n);
	uint64_t len = writable ? ch->writable_len : ch->readable_len;
	return virtq_chain_iov(ch, writable, skip, len - skip, iov, VIRTQ_MAX_SIZE);
}

static void net_tx(struct net *n)
{
	struct virtq *vq = virtio_queue_get(&n->vd, NET_TXQ);
	if (!vq)
		return;
	int done = 0;
	while (done < NET_BATCH && virtq_pop(vq, &n->ch) == 1) {
		const struct virtq_chain *ch = &n->ch;
		done++;
		if (ch->readable_len < NET_HDR_LEN || ch->readable_len > NET_MAX_FRAME) {
			virtio_warn(&n->vd, "transmit buffer of %llu bytes", (unsigned long long)ch->readable_len);
			virtq_push(vq, ch->head, 0);
			continue;
		}
		struct iovec iov[VIRTQ_MAX_SIZE];
		int cnt = tap_iov(n, ch, false, iov);
		if (writev(n->tap_fd, iov, cnt) < 0) {
			/* A full TAP queue drops the frame, as a real link would. */
			n->tx_dropped++;
			if (errno != EAGAIN && errno != ENOBUFS)
				tap_error(n, "write");
		}
		virtq_push(vq, ch->head, 0);
	}
	virtio_queue_done(&n->vd, NET_TXQ);
	if (done == NET_BATCH)
		virtio_request_kick(&n->vd);
}

static void net_rx(struct net *n)
{
	struct virtq *vq = virtio_queue_get(&n->vd, NET_RXQ);
	if (!vq) {
		tap_watch(n, false);
		return;
	}
	for (int done = 0; done < NET_BATCH; done++) {
		if (virtq_pop(vq, &n->ch) != 1) {
			tap_watch(n, false); /* until the guest posts buffers and notifies */
			break;
		}
		const struct virtq_chain *ch = &n->ch;
		if (ch->writable_len < NET_HDR_LEN) {
			virtio_warn(&n->vd, "receive buffer of %llu bytes", (unsigned long long)ch->writable_len);
			virtq_push(vq, ch->head, 0);
			continue;
		}
		uint64_t skip = hdr_skip(n);
		struct iovec iov[VIRTQ_MAX_SIZE];
		int cnt = tap_iov(n, ch, true, iov);
		ssize_t r = readv(n->tap_fd, iov, cnt);
		if (r < 0 || (uint64_t)r + skip < NET_HDR_LEN) {
			virtq_unpop(vq);
			if (r < 0 && errno != EAGAIN && errno != EINTR)
				tap_error(n, "read");
			tap_watch(n, true); /* buffers are there: wait for the next frame */
			break;
		}
		uint8_t hdr[NET_HDR_LEN] = {0};
		hdr[10] = 1; /* num_buffers */
		virtq_chain_write(ch, 0, hdr, sizeof(hdr));
		virtq_push(vq, ch->head, (uint32_t)((uint64_t)r + skip));
	}
	virtio_queue_done(&n->vd, NET_RXQ);
}

static void on_tap(void *arg, uint32_t events)
{
	struct net *n = arg;
	pthread_mutex_lock(&n->vd.vm->lock);
	if (n->vd.paused)
		tap_watch(n, false);
	else
		net_rx(n);
	pthread_mutex_unlock(&n->vd.vm->lock);
}

static void net_notify(struct virtio_dev *vd, int queue)
{
	struct net *n = (struct net *)vd;
	if (queue == NET_TXQ)
		net_tx(n);
	else if (queue == NET_RXQ)
		net_rx(n);
}

static void net_reset(struct virtio_dev *vd)
{
	tap_watch((struct net *)vd, false);
}

static void net_destroy(struct virtio_dev *vd)
{
	struct net *n = (struct net *)vd;
	tap_watch(n, false);
	close(n->tap_fd);
}

static const struct virtio_dev_ops net_ops = {.notify = net_notify, .reset = net_reset, .destroy = net_destroy};

static int tap_open(const char *name, char *err, size_t errsz)
{
	int fd = open("/dev/net/tun", O_RDWR | O_NONBLOCK | O_CLOEXEC);
	if (fd < 0) {
		snprintf(err, errsz, "/dev/net/tun: %s", strerror(errno));
		return -1;
	}
	struct ifreq ifr;
	memset(&ifr, 0, sizeof(ifr));
	ifr.ifr_flags = IFF_TAP | IFF_NO_PI | IFF_VNET_HDR;
	snprintf(ifr.ifr_name, sizeof(ifr.ifr_name), "%s", name);
	if (strlen(name) >= IFNAMSIZ || ioctl(fd, TUNSETIFF, &ifr) < 0) {
		snprintf(err, errsz, "TAP %s: %s", name, strlen(name) >= IFNAMSIZ ? "name too long" : strerror(errno));
		close(fd);
		return -1;
	}
	return fd;
}

/* Decides how frames cross the TAP: with the 12-byte header if the TAP
 * was opened with IFF_VNET_HDR, else plain. */
static int tap_setup(struct net *n, char *err, size_t errsz)
{
	struct ifreq ifr;
	memset(&ifr, 0, sizeof(ifr));
	n->hdr_on_tap = false;
	if (ioctl(n->tap_fd, TUNGETIFF, &ifr) == 0 && (ifr.ifr_flags & IFF_VNET_HDR)) {
		int sz = NET_HDR_LEN;
		if (ioctl(n->tap_fd, TUNSETVNETHDRSZ, &sz) < 0) {
			snprintf(err, errsz, "TUNSETVNETHDRSZ: %s", strerror(errno));
			return -1;
		}
		(void)ioctl(n->tap_fd, TUNSETOFFLOAD, 0); /* none: matches what we offer */
		n->hdr_on_tap = true;
	}
	if (fd_nonblock(n->tap_fd) < 0) {
		snprintf(err, errsz, "TAP fd: %s", strerror(errno));
		return -1;
	}
	return 0;
}

/* --- snapshot hooks ------------------------------------------------------- */

static int net_save(void *dev, struct snap_w *w)
{
	struct net *n = dev;
	snap_w_u32(w, NET_STATE_VERSION);
	virtio_transport_save(&n->vd, w);
	return 0;
}

static int net_load(void *dev, const void *data, size_t len, char *err, size_t errsz)
{
	struct net *n = dev;
	struct snap_cur c;
	snap_cur_init(&c, data, len);
	uint32_t version = snap_cur_u32(&c);
	if (c.bad || version != NET_STATE_VERSION) {
		snprintf(err, errsz, "%s state: layout %u, this VMM reads %u", n->vd.name, version, NET_STATE_VERSION);
		return -1;
	}
	if (virtio_transport_load(&n->vd, &c, err, errsz) < 0)
		return -1;
	if (c.left) {
		snprintf(err, errsz, "%s state: %llu trailing bytes", n->vd.name, (unsigned long long)c.left);
		return -1;
	}
	return 0;
}

static void net_pause(void *dev)
{
	struct net *n = dev;
	virtio_pause(&n->vd);
	tap_watch(n, false);
}

static void net_resume(void *dev)
{
	virtio_resume(&((struct net *)dev)->vd); /* the kick restarts receive if buffers are posted */
}

static void net_restored(void *dev)
{
	virtio_transport_restored(&((struct net *)dev)->vd);
}

int virtio_net_create(struct vm *vm, struct net_config *cfg, int index, char *err, size_t errsz)
{
	char name[24], terr[256];
	snprintf(name, sizeof(name), "virtio-net%d", index);
	struct net *n = calloc(1, sizeof(*n));
	if (!n) {
		snprintf(err, errsz, "%s: out of memory", name);
		return -1;
	}
	n->index = index;
	n->tap_fd = cfg->tap_fd;
	if (n->tap_fd < 0) {
		if (!cfg->tap_name) {
			snprintf(err, errsz, "%s: neither a TAP name nor a TAP fd", name);
			free(n);
			return -1;
		}
		n->tap_fd = tap_open(cfg->tap_name, terr, sizeof(terr));
	}
	if (n->tap_fd < 0 || tap_setup(n, terr, sizeof(terr)) < 0) {
		snprintf(err, errsz, "%s: %s", name, terr);
		if (n->tap_fd >= 0 && cfg->tap_fd < 0)
			close(n->tap_fd);
		free(n);
		return -1;
	}
	virtio_dev_init(&n->vd, &vm->mem, VIRTIO_ID_NET_DEV, name, NET_F_MAC | NET_F_STATUS, 2, NET_QUEUE_SIZE);
	n->vd.ops = &net_ops;
	n->tap_io.fn = on_tap;
	uint16_t status = NET_S_LINK_UP;
	memcpy(n->vd.config, cfg->mac, 6);
	memcpy(n->vd.config + 6, &status, 2);
	n->vd.config_size = 8;
	if (virtio_dev_attach(&n->vd, vm, err, errsz) < 0)
		return -1; /* the bus may hold n: it lives as long as the VM */
	struct vm_device d = {.kind = "virtio-net",
			      .dev = n,
			      .save = net_save,
			      .load = net_load,
			      .pause = net_pause,
			      .resume = net_resume,
			      .restored = net_restored};
	if (vm_add_device(vm, &d) < 0) {
		snprintf(err, errsz, "%s: too many devices", name);
		return -1;
	}
	log_info("virtio_net.tap", "%s: TAP fd %d, %s", name, n->tap_fd,
		 n->hdr_on_tap ? "virtio header passed through" : "plain frames");
	return 0;
}
