/* test_virtq.c - split virtqueue parsing over a fake guest memory. */
#include "../virtio/virtq.h"

#include "../../lib/tests/test.h"

#define RAM_SIZE  (1 << 20)
#define QNUM	  8
#define DESC_GPA  0x1000
#define AVAIL_GPA 0x2000
#define USED_GPA  0x3000
#define DATA_GPA  0x10000

static struct guest_mem mem;

static void ram_reset(void)
{
	if (!mem.host)
		mem.host = malloc(RAM_SIZE);
	memset(mem.host, 0, RAM_SIZE);
	mem.size = mem.low_size = RAM_SIZE;
	mem.high_size = 0;
	mem.backing_fd = -1;
}

static void set_desc(uint16_t i, uint64_t addr, uint32_t len, uint16_t flags, uint16_t next)
{
	struct virtq_desc d = {.addr = addr, .len = len, .flags = flags, .next = next};
	memcpy(mem.host + DESC_GPA + 16 * i, &d, 16);
}

static uint16_t rd16(uint64_t gpa)
{
	uint16_t v;
	memcpy(&v, mem.host + gpa, 2);
	return v;
}

static void wr16(uint64_t gpa, uint16_t v)
{
	memcpy(mem.host + gpa, &v, 2);
}

static uint32_t rd32(uint64_t gpa)
{
	uint32_t v;
	memcpy(&v, mem.host + gpa, 4);
	return v;
}

/* The driver makes head available as the entry after idx. */
static void offer(uint16_t idx, uint16_t head)
{
	wr16(AVAIL_GPA + 4 + 2 * (idx % QNUM), head);
	wr16(AVAIL_GPA + 2, (uint16_t)(idx + 1));
}

static struct virtq vq;
static struct virtq_chain ch;

static void setup(void)
{
	ram_reset();
	CHECK_EQ_INT(virtq_init(&vq, &mem, QNUM, DESC_GPA, AVAIL_GPA, USED_GPA), 0);
}

TEST(init_validates_layout)
{
	ram_reset();
	CHECK_EQ_INT(virtq_init(&vq, &mem, 6, DESC_GPA, AVAIL_GPA, USED_GPA), -1);   /* not a power of two */
	CHECK_EQ_INT(virtq_init(&vq, &mem, 512, DESC_GPA, AVAIL_GPA, USED_GPA), -1); /* above the maximum */
	CHECK_EQ_INT(virtq_init(&vq, &mem, 0, DESC_GPA, AVAIL_GPA, USED_GPA), -1);
	CHECK_EQ_INT(virtq_init(&vq, &mem, QNUM, DESC_GPA + 8, AVAIL_GPA, USED_GPA), -1); /* misaligned */
	CHECK_EQ_INT(virtq_init(&vq, &mem, QNUM, DESC_GPA, AVAIL_GPA + 1, USED_GPA), -1);
	CHECK_EQ_INT(virtq_init(&vq, &mem, QNUM, DESC_GPA, AVAIL_GPA, USED_GPA + 2), -1);
	CHECK_EQ_INT(virtq_init(&vq, &mem, QNUM, RAM_SIZE - 16, AVAIL_GPA, USED_GPA), -1); /* runs off RAM */
	CHECK_EQ_INT(virtq_init(&vq, &mem, QNUM, DESC_GPA, AVAIL_GPA, 0xd0000000ull), -1);
	CHECK_EQ_INT(virtq_init(&vq, &mem, QNUM, DESC_GPA, AVAIL_GPA, USED_GPA), 0);
}

TEST(empty_queue_pops_nothing)
{
	setup();
	CHECK_EQ_INT(virtq_pop(&vq, &ch), 0);
	CHECK(!virtq_has_avail(&vq));
}

TEST(good_chain_readable_then_writable)
{
	setup();
	memcpy(mem.host + DATA_GPA, "hello", 5);
	set_desc(3, DATA_GPA, 5, VIRTQ_DESC_F_NEXT, 5);
	set_desc(5, DATA_GPA + 0x100, 3, VIRTQ_DESC_F_NEXT, 1);
	set_desc(1, DATA_GPA + 0x200, 16, VIRTQ_DESC_F_WRITE, 0);
	offer(0, 3);
	CHECK(virtq_has_avail(&vq));
	if (!CHECK_EQ_INT(virtq_pop(&vq, &ch), 1))
		return;
	CHECK_EQ_INT(ch.head, 3);
	CHECK_EQ_INT(ch.nr_segs, 3);
	CHECK_EQ_INT(ch.nr_readable, 2);
	CHECK_EQ_INT(ch.readable_len, 8);
	CHECK_EQ_INT(ch.writable_len, 16);
	CHECK(ch.segs[0].p == mem.host + DATA_GPA);
	CHECK(ch.segs[2].writable);
	char b[8] = {0};
	CHECK_EQ_INT(virtq_chain_read(&ch, 3, b, 4), 4);
	CHECK_MEMEQ(b, 4, "lo\0\0", 4);
	CHECK_EQ_INT(virtq_chain_write(&ch, 14, "xyz", 3), 2); /* only 2 bytes left */
	CHECK_MEMEQ(mem.host + DATA_GPA + 0x200 + 14, 2, "xy", 2);
	struct iovec iov[4];
	CHECK_EQ_INT(virtq_chain_iov(&ch, false, 4, 100, iov, 4), 2);
	CHECK_EQ_INT(iov[0].iov_len, 1);
	CHECK_EQ_INT(iov[1].iov_len, 3);
	CHECK_EQ_INT(virtq_pop(&vq, &ch), 0);

	virtq_push(&vq, 3, 16);
	CHECK_EQ_INT(rd16(USED_GPA + 2), 1);
	CHECK_EQ_INT(rd32(USED_GPA + 4), 3);
	CHECK_EQ_INT(rd32(USED_GPA + 8), 16);
	CHECK(virtq_should_interrupt(&vq));
	CHECK(!virtq_should_interrupt(&vq)); /* nothing new pushed */
}

TEST(no_interrupt_flag_is_honoured)
{
	setup();
	set_desc(0, DATA_GPA, 1, 0, 0);
	offer(0, 0);
	CHECK_EQ_INT(virtq_pop(&vq, &ch), 1);
	wr16(AVAIL_GPA, VIRTQ_AVAIL_F_NO_INTERRUPT);
	virtq_push(&vq, 0, 0);
	CHECK(!virtq_should_interrupt(&vq));
}

TEST(loop_is_consumed_and_completed)
{
	setup();
	set_desc(0, DATA_GPA, 4, VIRTQ_DESC_F_NEXT, 1);
	set_desc(1, DATA_GPA, 4, VIRTQ_DESC_F_NEXT, 0);
	offer(0, 0);
	CHECK_EQ_INT(virtq_pop(&vq, &ch), 0);
	CHECK_EQ_INT(vq.last_avail_idx, 1);
	CHECK_EQ_INT(rd16(USED_GPA + 2), 1); /* returned with 0 bytes */
	CHECK_EQ_INT(rd32(USED_GPA + 4), 0);
	CHECK_EQ_INT(rd32(USED_GPA + 8), 0);
	CHECK(virtq_should_interrupt(&vq));
}

TEST(self_loop_and_full_length_chain)
{
	setup();
	/* A chain of exactly QNUM descriptors is legal. */
	for (int i = 0; i < QNUM; i++)
		set_desc(i, DATA_GPA + i, 1, i < QNUM - 1 ? VIRTQ_DESC_F_NEXT : 0, i + 1);
	offer(0, 0);
	CHECK_EQ_INT(virtq_pop(&vq, &ch), 1);
	CHECK_EQ_INT(ch.nr_segs, QNUM);
	set_desc(2, DATA_GPA, 1, VIRTQ_DESC_F_NEXT, 2);
	offer(1, 2);
	CHECK_EQ_INT(virtq_pop(&vq, &ch), 0);
}

TEST(bad_indices_and_addresses)
{
	setup();
	set_desc(0, DATA_GPA, 4, VIRTQ_DESC_F_NEXT, QNUM); /* next out of range */
	offer(0, 0);
	offer(1, QNUM + 3);		    /* head out of range: consumed, not completed */
	set_desc(2, RAM_SIZE - 2, 4, 0, 0); /* runs off the end of RAM */
	offer(2, 2);
	set_desc(3, 0xfffffffffffffff0ull, 0x20, 0, 0); /* wraps the address space */
	offer(3, 3);
	set_desc(4, DATA_GPA, 4, VIRTQ_DESC_F_INDIRECT, 0);
	offer(4, 4);
	set_desc(5, DATA_GPA, 4, VIRTQ_DESC_F_WRITE | VIRTQ_DESC_F_NEXT, 6); /* readable after writable */
	set_desc(6, DATA_GPA, 4, 0, 0);
	offer(5, 5);
	set_desc(7, DATA_GPA, 9, 0, 0); /* and finally a good one */
	offer(6, 7);
	CHECK_EQ_INT(virtq_pop(&vq, &ch), 1);
	CHECK_EQ_INT(ch.head, 7);
	CHECK_EQ_INT(vq.last_avail_idx, 7);
	CHECK_EQ_INT(rd16(USED_GPA + 2), 5); /* every bad chain with a valid head came back */
}

TEST(byte_limit)
{
	ram_reset();
	struct guest_mem big = mem;
	/* Pretend RAM is huge; the walk must refuse before mapping. */
	CHECK_EQ_INT(virtq_init(&vq, &big, QNUM, DESC_GPA, AVAIL_GPA, USED_GPA), 0);
	set_desc(0, DATA_GPA, 0x80000000u, 0, 0);
	offer(0, 0);
	CHECK_EQ_INT(virtq_pop(&vq, &ch), 0);
	CHECK_EQ_INT(vq.last_avail_idx, 1);
}

TEST(avail_index_overflow_breaks_queue)
{
	setup();
	set_desc(0, DATA_GPA, 1, 0, 0);
	wr16(AVAIL_GPA + 2, QNUM + 1); /* more than the ring holds */
	CHECK_EQ_INT(virtq_pop(&vq, &ch), 0);
	CHECK(vq.broken);
	CHECK_EQ_INT(virtq_pop(&vq, &ch), 0);
	CHECK(!virtq_has_avail(&vq));
}

TEST(index_wraparound)
{
	setup();
	set_desc(0, DATA_GPA, 1, 0, 0);
	set_desc(1, DATA_GPA, 2, VIRTQ_DESC_F_WRITE, 0);
	/* Start both indices just below the 16-bit wrap, as after a long run. */
	vq.last_avail_idx = 0xfffe;
	vq.used_idx = 0xfffe;
	wr16(USED_GPA + 2, 0xfffe);
	int got = 0;
	for (uint16_t i = 0xfffe; i != 3; i++) {
		offer(i, i & 1);
		if (!CHECK_EQ_INT(virtq_pop(&vq, &ch), 1))
			break;
		CHECK_EQ_INT(ch.head, i & 1);
		virtq_push(&vq, ch.head, 7);
		got++;
	}
	CHECK_EQ_INT(got, 5);
	CHECK_EQ_INT(vq.last_avail_idx, 3);
	CHECK_EQ_INT(rd16(USED_GPA + 2), 3);
	/* used element of idx 0xffff sits in slot 0xffff % 8 = 7 */
	CHECK_EQ_INT(rd32(USED_GPA + 4 + 8 * 7 + 4), 7);
}

TEST(unpop_gives_the_chain_back)
{
	setup();
	set_desc(0, DATA_GPA, 1, VIRTQ_DESC_F_WRITE, 0);
	offer(0, 0);
	CHECK_EQ_INT(virtq_pop(&vq, &ch), 1);
	virtq_unpop(&vq);
	CHECK(virtq_has_avail(&vq));
	CHECK_EQ_INT(virtq_pop(&vq, &ch), 1);
	CHECK_EQ_INT(ch.writable_len, 1);
}

TEST(zero_length_descriptors_are_skipped)
{
	setup();
	set_desc(0, 0xdeadbeef000ull, 0, VIRTQ_DESC_F_NEXT, 1); /* no bytes: address irrelevant */
	set_desc(1, DATA_GPA, 4, 0, 0);
	offer(0, 0);
	CHECK_EQ_INT(virtq_pop(&vq, &ch), 1);
	CHECK_EQ_INT(ch.nr_segs, 1);
}

TEST(self_refilling_ring_is_bounded)
{
	/* Used ring laid over the avail ring: completing a bad chain bumps
	 * avail->idx, so the queue never runs dry. pop must still return. */
	ram_reset();
	CHECK_EQ_INT(virtq_init(&vq, &mem, QNUM, DESC_GPA, AVAIL_GPA, AVAIL_GPA), 0);
	set_desc(0, DATA_GPA, 4, VIRTQ_DESC_F_NEXT, QNUM); /* bad: next out of range */
	vq.used_idx = 5;
	wr16(AVAIL_GPA + 2, 1);
	CHECK_EQ_INT(virtq_pop(&vq, &ch), 0);
	CHECK(vq.last_avail_idx <= QNUM + 1);
}
