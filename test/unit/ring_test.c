// SPDX-License-Identifier: GPL-2.0
/*
 * Unit tests for vmc_ring.h: both ends of a ring live in this process and
 * share one header and one data area; a "hostile peer" is simulated by
 * writing the shared fields directly.  Built with AddressSanitizer: the
 * header and the data area are exactly-sized allocations, so any access
 * outside them aborts the program.
 */
#include "vmc_ring.h"
#include "tcheck.h"

#include <stdint.h>

/* ---- fixtures ---- */

struct rp {
	struct vmc_ring_hdr *hdr;
	u8 *data;
	u32 size;
	struct vmc_ring p;	/* producer end */
	struct vmc_ring c;	/* consumer end */
};

static struct rp R;

/* A fresh ring of @size with both ends attached. */
static void rp_setup(struct rp *x, u32 size)
{
	memset(x, 0, sizeof(*x));
	x->hdr = t_alloc(sizeof(*x->hdr));
	x->data = t_alloc(size);
	x->size = size;
	memset(x->hdr, 0xa5, sizeof(*x->hdr));
	memset(x->data, 0xee, size);
	CHECK_EQ(vmc_ring_init(&x->p, x->hdr, x->data, size, true), 0);
	CHECK_EQ(vmc_ring_init(&x->c, x->hdr, x->data, size, false), 0);
}

/*
 * Move an empty ring to position @pos, as if @pos bytes had already gone
 * through it (shared indices, private positions, and event indices that
 * ask for nothing).
 */
static void rp_set_pos(struct rp *x, u32 pos)
{
	x->hdr->prod = cpu_to_le32(pos);
	x->hdr->cons = cpu_to_le32(pos);
	x->hdr->prod_event = cpu_to_le32(pos);
	x->hdr->cons_event = cpu_to_le32(pos);
	x->p.pos = x->p.peer = pos;
	x->c.pos = x->c.peer = pos;
}

/* Byte number @i of the test stream. */
static u8 pat(uint64_t i)
{
	return (u8)((i * 0x9e3779b97f4a7c15ull) >> 56) ^ (u8)i;
}

static void fill_pat(u8 *buf, uint64_t from, u32 len)
{
	u32 i;

	for (i = 0; i < len; i++)
		buf[i] = pat(from + i);
}

/* Index of the first byte of @buf that differs from the stream, or -1. */
static long bad_pat(const u8 *buf, uint64_t from, u32 len)
{
	u32 i;

	for (i = 0; i < len; i++)
		if (buf[i] != pat(from + i))
			return i;
	return -1;
}

static uint64_t rng_state = 0x243f6a8885a308d3ull;

static uint64_t rnd(void)
{
	uint64_t x = rng_state;

	x ^= x >> 12;
	x ^= x << 25;
	x ^= x >> 27;
	rng_state = x;
	return x * 0x2545f4914f6cdd1dull;
}

/* Uniform in [lo, hi]. */
static u32 rnd_range(u32 lo, u32 hi)
{
	return lo + (u32)(rnd() % ((uint64_t)hi - lo + 1));
}

/* Independent statement of "event in (old, new]" modulo 2^32. */
static bool due_model(u32 event, u32 old, u32 new)
{
	return (uint64_t)(u32)(event - old - 1) < (uint64_t)(u32)(new - old);
}

static u32 room_model(u32 len)
{
	return 4 + ((len + 3) & ~3u);
}

static u32 le32_at(const u8 *p)
{
	return p[0] | p[1] << 8 | p[2] << 16 | (u32)p[3] << 24;
}

static void put_le32_at(u8 *p, u32 v)
{
	p[0] = v;
	p[1] = v >> 8;
	p[2] = v >> 16;
	p[3] = v >> 24;
}

/* ---- layout, vmc_ring_check, init ---- */

static void test_layout(void)
{
	vmc_ring_layout_check();
	CHECK_EQ(sizeof(struct vmc_ring_hdr), 128);
	CHECK_EQ(offsetof(struct vmc_ring_hdr, prod), 0);
	CHECK_EQ(offsetof(struct vmc_ring_hdr, cons_event), 4);
	CHECK_EQ(offsetof(struct vmc_ring_hdr, prod_flags), 8);
	CHECK_EQ(offsetof(struct vmc_ring_hdr, cons), 64);
	CHECK_EQ(offsetof(struct vmc_ring_hdr, prod_event), 68);
	CHECK_EQ(offsetof(struct vmc_ring_hdr, cons_flags), 72);
	CHECK_EQ(offsetof(struct vmc_ring_hdr, cons_wake), 76);
	CHECK_EQ(VMC_RING_MAX_SIZE, 16u << 20);
	CHECK_EQ(VMC_RING_MIN_SIZE, 4);
}

static void test_check_fn(void)
{
	static const struct { u32 prod, cons, size; long want; } t[] = {
		{ 0, 0, 4096, 0 },
		{ 4096, 0, 4096, 4096 },
		{ 4097, 0, 4096, -EPROTO },
		{ 0, 1, 4096, -EPROTO },		/* prod behind cons */
		{ 100, 101, 4096, -EPROTO },
		{ 5, 0xffffffff, 4096, 6 },		/* across 2^32 */
		{ 0x10, 0xfffffff0, 4096, 0x20 },
		{ 0xfffffff0, 0x10, 4096, -EPROTO },
		{ 0xffffffff, 0, 4096, -EPROTO },
		{ 0x80000000, 0, VMC_RING_MAX_SIZE, -EPROTO },
		{ VMC_RING_MAX_SIZE, 0, VMC_RING_MAX_SIZE, VMC_RING_MAX_SIZE },
		{ VMC_RING_MAX_SIZE + 1, 0, VMC_RING_MAX_SIZE, -EPROTO },
		{ 3, 0xffffffff, 4, 4 },
		{ 4, 0xffffffff, 4, -EPROTO },
	};
	unsigned int i;

	for (i = 0; i < sizeof(t) / sizeof(t[0]); i++)
		if (vmc_ring_check(t[i].prod, t[i].cons, t[i].size) != t[i].want)
			T_FAIL("vmc_ring_check(%#x, %#x, %#x) = %ld, want %ld",
			       t[i].prod, t[i].cons, t[i].size,
			       vmc_ring_check(t[i].prod, t[i].cons, t[i].size),
			       t[i].want);
}

static void test_init_sizes(void)
{
	static const u32 good[] = {
		4, 8, 16, 64, 4096, 65536, 1u << 20, VMC_RING_MAX_SIZE,
	};
	static const u32 bad[] = {
		0, 1, 2, 3, 5, 6, 7, 12, 100, 4095, 4097, 3u << 20,
		VMC_RING_MAX_SIZE - 1, VMC_RING_MAX_SIZE + 1,
		VMC_RING_MAX_SIZE * 2, 0x40000000, 0x80000000, 0xfffffffc,
		0xffffffff,
	};
	struct vmc_ring_hdr *hdr = t_alloc(sizeof(*hdr));
	u8 *data = t_alloc(4), shadow[sizeof(*hdr)];
	struct vmc_ring r;
	unsigned int i;
	int role;

	for (role = 0; role < 2; role++) {
		for (i = 0; i < sizeof(good) / sizeof(good[0]); i++) {
			memset(hdr, 0, sizeof(*hdr));
			memset(&r, 0x5a, sizeof(r));
			if (vmc_ring_init(&r, hdr, data, good[i], role) != 0)
				T_FAIL("size %#x rejected (producer %d)",
				       good[i], role);
			CHECK_EQ(r.size, good[i]);
			CHECK_EQ(r.pos, 0);
			CHECK(!r.broken);
			CHECK(r.hdr == hdr && r.data == data);
		}
		for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
			memset(hdr, 0xab, sizeof(*hdr));
			memcpy(shadow, hdr, sizeof(shadow));
			if (vmc_ring_init(&r, hdr, data, bad[i], role) != -EINVAL)
				T_FAIL("size %#x not rejected with -EINVAL (producer %d)",
				       bad[i], role);
			/* A rejected init touches no shared byte. */
			CHECK(!memcmp(shadow, hdr, sizeof(shadow)));
		}
	}
}

static void test_init_producer_zeroes_header(void)
{
	struct vmc_ring_hdr *hdr = t_alloc(sizeof(*hdr));
	u8 *data = t_alloc(64), zero[sizeof(*hdr)] = { 0 };
	struct vmc_ring r;

	memset(hdr, 0xab, sizeof(*hdr));
	memset(data, 0xcd, 64);
	CHECK_EQ(vmc_ring_init(&r, hdr, data, 64, true), 0);
	CHECK(!memcmp(hdr, zero, sizeof(zero)));
	CHECK_EQ(r.pos, 0);
	CHECK(!r.broken);
	CHECK_EQ(vmc_ring_space(&r), 64);
}

static void test_init_consumer_attach(void)
{
	u8 buf[64];
	bool n;

	/* Data already published before the consumer attaches. */
	rp_setup(&R, 64);
	CHECK_OK();
	fill_pat(buf, 0, 10);
	CHECK_EQ(vmc_ring_write(&R.p, buf, 10, &n), 10);
	CHECK_EQ(vmc_ring_init(&R.c, R.hdr, R.data, 64, false), 0);
	CHECK_EQ(R.c.pos, 0);
	CHECK_EQ(vmc_ring_avail(&R.c), 10);
	memset(buf, 0, sizeof(buf));
	CHECK_EQ(vmc_ring_read(&R.c, buf, 64, &n), 10);
	CHECK_EQ(bad_pat(buf, 0, 10), -1);

	/* A full ring is fine ... */
	R.hdr->prod = cpu_to_le32(64);
	CHECK_EQ(vmc_ring_init(&R.c, R.hdr, R.data, 64, false), 0);
	CHECK_EQ(vmc_ring_avail(&R.c), 64);

	/* ... more than full, or "behind" 0, is not, and stays broken. */
	R.hdr->prod = cpu_to_le32(65);
	CHECK_EQ(vmc_ring_init(&R.c, R.hdr, R.data, 64, false), -EPROTO);
	CHECK(R.c.broken);
	R.hdr->prod = 0;
	CHECK_EQ(vmc_ring_avail(&R.c), -EPROTO);
	R.hdr->prod = cpu_to_le32(0xffffffff);
	CHECK_EQ(vmc_ring_init(&R.c, R.hdr, R.data, 64, false), -EPROTO);
	CHECK(R.c.broken);
}

/* ---- byte stream ---- */

static void test_empty(void)
{
	u8 buf[16];
	bool n = true;

	rp_setup(&R, 64);
	CHECK_OK();
	memset(buf, 0x77, sizeof(buf));
	CHECK_EQ(vmc_ring_avail(&R.c), 0);
	CHECK_EQ(vmc_ring_read(&R.c, buf, sizeof(buf), &n), 0);
	CHECK(!n);
	CHECK_EQ(buf[0], 0x77);
	CHECK_EQ(R.hdr->cons, 0);
	CHECK_EQ(vmc_ring_space(&R.p), 64);
	CHECK_EQ(vmc_ring_msg_peek(&R.c, 64), -EAGAIN);
	CHECK(!R.c.broken);
	CHECK_EQ(vmc_ring_cons_wait(&R.c), 0);
	CHECK_EQ(vmc_ring_prod_wait(&R.p, 1), 64);
}

/* poll() with SO_RCVLOWAT: the event comes when @want bytes are there. */
static void test_cons_ask_want(void)
{
	u8 buf[64];
	bool n = true;

	rp_setup(&R, 64);
	CHECK_OK();
	fill_pat(buf, 0, 64);
	CHECK_EQ(vmc_ring_cons_ask(&R.c, 10), 0);
	CHECK_EQ(vmc_ring_write(&R.p, buf, 5, &n), 5);
	CHECK(!n);			/* 5 of 10: no event yet */
	CHECK_EQ(vmc_ring_cons_ask(&R.c, 10), 5);
	CHECK_EQ(vmc_ring_write(&R.p, buf, 4, &n), 4);
	CHECK(!n);
	CHECK_EQ(vmc_ring_write(&R.p, buf, 1, &n), 1);
	CHECK(n);			/* the 10th byte */
	CHECK_EQ(vmc_ring_read(&R.c, buf, 10, &n), 10);
	/* 0 means 1; more than the ring holds means a full ring */
	CHECK_EQ(vmc_ring_cons_ask(&R.c, 0), 0);
	CHECK_EQ(vmc_ring_write(&R.p, buf, 1, &n), 1);
	CHECK(n);
	CHECK_EQ(vmc_ring_read(&R.c, buf, 1, &n), 1);
	CHECK_EQ(vmc_ring_cons_ask(&R.c, 1000), 0);
	CHECK_EQ(vmc_ring_write(&R.p, buf, 63, &n), 63);
	CHECK(!n);
	CHECK_EQ(vmc_ring_write(&R.p, buf, 1, &n), 1);
	CHECK(n);
	CHECK(!R.c.broken);
}

/*
 * poll() with data unread (edge-triggered epoll): every commit notifies
 * until the consumer drains the ring; then only the next byte does, once.
 */
static void test_cons_every(void)
{
	u8 buf[64];
	bool n = true;

	rp_setup(&R, 64);
	CHECK_OK();
	fill_pat(buf, 0, 64);
	CHECK_EQ(vmc_ring_cons_wait(&R.c), 0);
	CHECK_EQ(vmc_ring_write(&R.p, buf, 1, &n), 1);
	CHECK(n);			/* the first byte, as asked */
	CHECK_EQ(vmc_ring_write(&R.p, buf, 1, &n), 1);
	CHECK(!n);			/* suppressed: prod_event is behind */
	vmc_ring_cons_every(&R.c);
	CHECK_EQ(le32_to_cpu(R.hdr->cons_wake), 1);
	CHECK_EQ(vmc_ring_write(&R.p, buf, 1, &n), 1);
	CHECK(n);			/* a new edge for more data */
	CHECK_EQ(vmc_ring_write(&R.p, buf, 2, &n), 2);
	CHECK(n);
	/* Until the drain, reads change nothing (the caller decides). */
	CHECK_EQ(vmc_ring_read(&R.c, buf, 3, &n), 3);
	CHECK_EQ(vmc_ring_write(&R.p, buf, 1, &n), 1);
	CHECK(n);
	CHECK_EQ(vmc_ring_read(&R.c, buf, 64, &n), 3);
	CHECK_EQ(vmc_ring_cons_drained(&R.c), 0);
	CHECK_EQ(le32_to_cpu(R.hdr->cons_wake), 0);
	CHECK_EQ(le32_to_cpu(R.hdr->prod_event), R.c.pos + 1);
	CHECK_EQ(vmc_ring_write(&R.p, buf, 1, &n), 1);
	CHECK(n);			/* the next byte: the first new edge */
	CHECK_EQ(vmc_ring_write(&R.p, buf, 1, &n), 1);
	CHECK(!n);			/* and suppression is back */
	/* A drain without a poll before it changes nothing. */
	R.hdr->prod_event = cpu_to_le32(1234);
	CHECK_EQ(vmc_ring_cons_drained(&R.c), 0);
	CHECK_EQ(le32_to_cpu(R.hdr->prod_event), 1234);
	/* A commit that came while the consumer drained: reported. */
	CHECK_EQ(vmc_ring_read(&R.c, buf, 64, &n), 2);
	vmc_ring_cons_every(&R.c);
	CHECK_EQ(vmc_ring_write(&R.p, buf, 5, &n), 5);
	CHECK(n);
	CHECK_EQ(vmc_ring_cons_drained(&R.c), 5);
	CHECK_EQ(le32_to_cpu(R.hdr->cons_wake), 0);
	CHECK_EQ(vmc_ring_read(&R.c, buf, 64, &n), 5);
	/* A peer's cons_wake (any non-zero value) only costs it events. */
	R.hdr->cons_wake = cpu_to_le32(0x80000000u);
	CHECK_EQ(vmc_ring_write(&R.p, buf, 1, &n), 1);
	CHECK(n);
	CHECK(!R.c.broken && !R.p.broken);
}

static void test_zero_length(void)
{
	u8 buf[64];
	bool n = true;

	rp_setup(&R, 64);
	CHECK_OK();
	fill_pat(buf, 0, 64);
	/* Even with the consumer waiting, writing nothing notifies nobody. */
	CHECK_EQ(vmc_ring_cons_wait(&R.c), 0);
	CHECK_EQ(vmc_ring_write(&R.p, buf, 0, &n), 0);
	CHECK(!n);
	CHECK_EQ(R.p.pos, 0);
	CHECK_EQ(le32_to_cpu(R.hdr->prod), 0);
	CHECK_EQ(vmc_ring_avail(&R.c), 0);

	/* Reading nothing from a non-empty ring releases nothing. */
	CHECK_EQ(vmc_ring_write(&R.p, buf, 64, &n), 64);
	CHECK(n);
	CHECK_EQ(vmc_ring_prod_wait(&R.p, 8), 0);
	n = true;
	CHECK_EQ(vmc_ring_read(&R.c, buf, 0, &n), 0);
	CHECK(!n);
	CHECK_EQ(R.c.pos, 0);
	CHECK_EQ(le32_to_cpu(R.hdr->cons), 0);
	CHECK_EQ(vmc_ring_avail(&R.c), 64);

	/* Writing nothing to a full ring. */
	n = true;
	CHECK_EQ(vmc_ring_write(&R.p, buf, 0, &n), 0);
	CHECK(!n);
	CHECK_EQ(le32_to_cpu(R.hdr->prod), 64);
}

static void test_full(void)
{
	u8 in[100], out[100];
	bool n;

	rp_setup(&R, 64);
	CHECK_OK();
	fill_pat(in, 0, sizeof(in));
	/* A write bigger than the ring is cut to the ring. */
	CHECK_EQ(vmc_ring_write(&R.p, in, 100, &n), 64);
	CHECK_EQ(vmc_ring_space(&R.p), 0);
	CHECK_EQ(vmc_ring_avail(&R.c), 64);
	CHECK_EQ(vmc_ring_write(&R.p, in + 64, 1, &n), 0);
	CHECK(!n);
	CHECK_EQ(le32_to_cpu(R.hdr->prod), 64);
	CHECK_EQ(vmc_ring_prod_wait(&R.p, 1), 0);
	CHECK_EQ(vmc_ring_read(&R.c, out, 100, &n), 64);
	CHECK_EQ(bad_pat(out, 0, 64), -1);
	CHECK_EQ(vmc_ring_space(&R.p), 64);
	CHECK_EQ(vmc_ring_avail(&R.c), 0);
	CHECK(!R.p.broken && !R.c.broken);
}

static void test_partial(void)
{
	u8 in[128], out[128];
	uint64_t w = 0;
	bool n;

	rp_setup(&R, 64);
	CHECK_OK();
	fill_pat(in, 0, sizeof(in));
	CHECK_EQ(vmc_ring_write(&R.p, in, 40, &n), 40);
	w += 40;
	CHECK_EQ(vmc_ring_write(&R.p, in + w, 40, &n), 24);	/* partial */
	w += 24;
	CHECK_EQ(vmc_ring_read(&R.c, out, 10, &n), 10);		/* partial */
	CHECK_EQ(bad_pat(out, 0, 10), -1);
	CHECK_EQ(vmc_ring_space(&R.p), 10);
	CHECK_EQ(vmc_ring_write(&R.p, in + w, 40, &n), 10);
	w += 10;
	CHECK_EQ(vmc_ring_read(&R.c, out, 100, &n), 64);
	CHECK_EQ(bad_pat(out, 10, 64), -1);
	CHECK_EQ(vmc_ring_avail(&R.c), 0);
	CHECK_EQ(w, 74);
	CHECK_EQ(le32_to_cpu(R.hdr->prod), 74);
	CHECK_EQ(le32_to_cpu(R.hdr->cons), 74);
}

static void test_wrap_data_area(void)
{
	u8 in[32], out[32];
	bool n;
	int i;

	rp_setup(&R, 16);
	CHECK_OK();
	fill_pat(in, 0, sizeof(in));
	CHECK_EQ(vmc_ring_write(&R.p, in, 12, &n), 12);
	CHECK_EQ(vmc_ring_read(&R.c, out, 12, &n), 12);
	/* 10 bytes at position 12: offsets 12..15 then 0..5. */
	CHECK_EQ(vmc_ring_write(&R.p, in + 12, 10, &n), 10);
	for (i = 0; i < 4; i++)
		CHECK_EQ(R.data[12 + i], pat(12 + i));
	for (i = 0; i < 6; i++)
		CHECK_EQ(R.data[i], pat(16 + i));
	CHECK_EQ(vmc_ring_read(&R.c, out, 3, &n), 3);
	CHECK_EQ(vmc_ring_read(&R.c, out + 3, 7, &n), 7);	/* wraps */
	CHECK_EQ(bad_pat(out, 12, 10), -1);
}

/* Random traffic against a model; checks every byte and every count. */
static void stream_random(u32 size, u32 base, int ops)
{
	u32 bufsz = 2 * size + 1;
	u8 *in = t_alloc(bufsz), *out = t_alloc(bufsz);
	uint64_t w = 0, r = 0;
	long got;
	bool n;
	int i;

	rp_setup(&R, size);
	CHECK_OK();
	rp_set_pos(&R, base);
	for (i = 0; i < ops; i++) {
		u32 len = rnd_range(0, 2 * size);
		u32 used = w - r;

		if (rnd() & 1) {
			u32 want = len < size - used ? len : size - used;

			fill_pat(in, w, len);
			got = vmc_ring_write(&R.p, in, len, &n);
			if (got != want)
				T_FAIL("op %d: write(%u) = %ld, want %u (used %u)",
				       i, len, got, want, used);
			w += got;
		} else {
			u32 want = len < used ? len : used;

			got = vmc_ring_read(&R.c, out, len, &n);
			if (got != want)
				T_FAIL("op %d: read(%u) = %ld, want %u",
				       i, len, got, want);
			if (bad_pat(out, r, got) >= 0)
				T_FAIL("op %d: byte %ld of %ld at stream %llu",
				       i, bad_pat(out, r, got), got,
				       (unsigned long long)r);
			r += got;
		}
		CHECK_EQ(le32_to_cpu(R.hdr->prod), (u32)(base + w));
		CHECK_EQ(le32_to_cpu(R.hdr->cons), (u32)(base + r));
		CHECK_EQ(vmc_ring_avail(&R.c), w - r);
		CHECK_EQ(vmc_ring_space(&R.p), size - (w - r));
	}
	CHECK(!R.p.broken && !R.c.broken);
	CHECK(r > 4 * (uint64_t)size);
}

static void test_random_stream(void)
{
	static const u32 sizes[] = { 4, 8, 64, 4096 };
	unsigned int i;

	for (i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++) {
		stream_random(sizes[i], 0, 20000);
		CHECK_OK();
		t_free_all();
	}
}

/* Indices crossing 2^32: start near 0xffffff00 and push well past 0. */
static void test_wrap_u32(void)
{
	u8 in[0x40];
	bool n;

	stream_random(4096, 0xffffff00, 4000);
	CHECK_OK();
	CHECK(R.p.pos < 0x80000000);	/* it did wrap */
	CHECK(R.c.pos < 0x80000000);
	t_free_all();
	stream_random(64, 0xfffffff3, 2000);
	CHECK_OK();
	t_free_all();

	/* The exact crossing: prod 0x10, cons 0xfffffff0. */
	rp_setup(&R, 4096);
	CHECK_OK();
	rp_set_pos(&R, 0xfffffff0);
	fill_pat(in, 0, sizeof(in));
	CHECK_EQ(vmc_ring_write(&R.p, in, 0x20, &n), 0x20);
	CHECK_EQ(le32_to_cpu(R.hdr->prod), 0x10);
	CHECK_EQ(vmc_ring_avail(&R.c), 0x20);
	CHECK_EQ(vmc_ring_space(&R.p), 4096 - 0x20);
	CHECK_EQ(R.data[4095], pat(15));	/* 0xffffffff & 4095 */
	CHECK_EQ(R.data[0], pat(16));		/* 0x00000000 */
}

static void test_max_size(void)
{
	u32 size = VMC_RING_MAX_SIZE, max = vmc_ring_msg_max(size);
	u8 *in = t_alloc(size), *out = t_alloc(size);
	bool n;

	rp_setup(&R, size);
	CHECK_OK();
	fill_pat(in, 0, size);
	CHECK_EQ(vmc_ring_write(&R.p, in, size, &n), size);
	CHECK_EQ(vmc_ring_space(&R.p), 0);
	CHECK_EQ(vmc_ring_avail(&R.c), size);
	CHECK_EQ(vmc_ring_read(&R.c, out, size, &n), size);
	CHECK_EQ(bad_pat(out, 0, size), -1);

	/* One message of the largest payload fills the ring exactly. */
	CHECK_EQ(max, size - 4);
	CHECK_EQ(vmc_ring_msg_write(&R.p, in, max + 1, &n), -EMSGSIZE);
	CHECK_EQ(vmc_ring_msg_write(&R.p, in, max, &n), 0);
	CHECK_EQ(vmc_ring_space(&R.p), 0);
	CHECK_EQ(vmc_ring_msg_peek(&R.c, max), max);
	memset(out, 0, size);
	vmc_ring_msg_read(&R.c, out, max);
	CHECK_EQ(bad_pat(out, 0, max), -1);
	CHECK_EQ(vmc_ring_avail(&R.c), 0);
}

static void test_min_size(void)
{
	u8 in[8], out[8];
	bool n;

	rp_setup(&R, 4);
	CHECK_OK();
	fill_pat(in, 0, sizeof(in));
	CHECK_EQ(vmc_ring_write(&R.p, in, 8, &n), 4);
	CHECK_EQ(vmc_ring_read(&R.c, out, 8, &n), 4);
	CHECK_EQ(bad_pat(out, 0, 4), -1);
	/* Only empty messages fit in 4 bytes. */
	CHECK_EQ(vmc_ring_msg_max(4), 0);
	CHECK_EQ(vmc_ring_msg_write(&R.p, in, 1, &n), -EMSGSIZE);
	CHECK_EQ(vmc_ring_msg_write(&R.p, in, 0, &n), 0);
	CHECK_EQ(vmc_ring_msg_write(&R.p, in, 0, &n), -EAGAIN);
	CHECK_EQ(vmc_ring_msg_peek(&R.c, 100), 0);
	vmc_ring_msg_read(&R.c, out, 0);
	CHECK_EQ(vmc_ring_msg_peek(&R.c, 100), -EAGAIN);
	CHECK_EQ(vmc_ring_msg_write(&R.p, in, 0, &n), 0);
}

/* ---- message mode ---- */

static void test_msg_basic(void)
{
	static const u32 lens[] = { 0, 1, 2, 3, 4, 5, 7, 8, 13, 100 };
	const unsigned int nl = sizeof(lens) / sizeof(lens[0]);
	u8 in[128], out[128 + 8];
	uint64_t from = 0;
	u32 pos = 0, i;
	bool n;

	rp_setup(&R, 256);
	CHECK_OK();
	for (i = 0; i < nl; i++) {
		fill_pat(in, from, lens[i]);
		from += lens[i];
		CHECK_EQ(vmc_ring_msg_write(&R.p, in, lens[i], &n), 0);
		/* The record: LE length word, payload, padding to 4. */
		CHECK_EQ(le32_at(R.data + pos), lens[i]);
		CHECK_EQ(bad_pat(R.data + pos + 4, from - lens[i], lens[i]), -1);
		CHECK_EQ(vmc_ring_msg_room(lens[i]), room_model(lens[i]));
		pos += room_model(lens[i]);
		CHECK_EQ(R.p.pos, pos);
		CHECK_EQ(le32_to_cpu(R.hdr->prod), pos);
	}
	from = 0;
	for (i = 0; i < nl; i++) {
		/* Peeking twice consumes nothing. */
		CHECK_EQ(vmc_ring_msg_peek(&R.c, 128), lens[i]);
		CHECK_EQ(vmc_ring_msg_peek(&R.c, 128), lens[i]);
		memset(out, 0x77, sizeof(out));
		vmc_ring_msg_read(&R.c, out, lens[i]);
		CHECK_EQ(bad_pat(out, from, lens[i]), -1);
		CHECK_EQ(out[lens[i]], 0x77);	/* nothing beyond len */
		from += lens[i];
	}
	CHECK_EQ(vmc_ring_msg_peek(&R.c, 128), -EAGAIN);
	CHECK_EQ(R.c.pos, pos);
	CHECK_EQ(le32_to_cpu(R.hdr->cons), pos);
	CHECK(!R.c.broken);
}

/* One message at @pos in a 64-byte ring; checks the split payload. */
static void msg_at(u32 pos, u32 len, u32 split)
{
	u8 in[64], out[64];
	u32 off = pos & 63;
	bool n;

	rp_setup(&R, 64);
	CHECK_OK();
	rp_set_pos(&R, pos);
	fill_pat(in, pos, len);
	CHECK_EQ(vmc_ring_msg_write(&R.p, in, len, &n), 0);
	CHECK_EQ(le32_at(R.data + off), len);
	/* split bytes at the end of the data area, the rest at offset 0 */
	CHECK_EQ(bad_pat(R.data + 64 - split, pos, split), -1);
	CHECK_EQ(bad_pat(R.data, pos + split, len - split), -1);
	CHECK_EQ(vmc_ring_msg_peek(&R.c, 64), len);
	memset(out, 0, sizeof(out));
	vmc_ring_msg_read(&R.c, out, len);
	CHECK_EQ(bad_pat(out, pos, len), -1);
	CHECK_EQ(R.c.pos, pos + room_model(len));
	CHECK_EQ(vmc_ring_msg_peek(&R.c, 64), -EAGAIN);
}

/* What vmc_ring_msg_read_to() handed over: each piece's offset and size. */
struct store_log {
	u8 buf[64];
	u32 off[4], len[4], n;
};

static void store_logged(void *dst, u32 off, const void *src, u32 len)
{
	struct store_log *l = dst;

	if (l->n < 4) {
		l->off[l->n] = off;
		l->len[l->n] = len;
	}
	l->n++;
	memcpy(l->buf + off, src, len);
}

/*
 * read_to hands a payload that wraps over the ring's end to its callback
 * in two pieces, in order, at their offsets in the message (the kernel
 * stores them into a socket buffer of page fragments), and releases it.
 */
static void test_msg_read_to_pieces(void)
{
	struct store_log l;
	u8 in[64];
	bool n;

	rp_setup(&R, 64);
	CHECK_OK();
	rp_set_pos(&R, 48);		/* word at 48, payload 52..63 + 0..17 */
	fill_pat(in, 5, 30);
	CHECK_EQ(vmc_ring_msg_write(&R.p, in, 30, &n), 0);
	CHECK_EQ(vmc_ring_msg_peek(&R.c, 64), 30);
	memset(&l, 0, sizeof(l));
	vmc_ring_msg_read_to(&R.c, 30, store_logged, &l);
	CHECK_EQ(l.n, 2);
	CHECK_EQ(l.off[0], 0);
	CHECK_EQ(l.len[0], 12);
	CHECK_EQ(l.off[1], 12);
	CHECK_EQ(l.len[1], 18);
	CHECK_EQ(bad_pat(l.buf, 5, 30), -1);
	CHECK_EQ(R.c.pos, 48 + room_model(30));
	CHECK_EQ(le32_to_cpu(R.hdr->cons), 48 + room_model(30));
	CHECK_EQ(vmc_ring_msg_peek(&R.c, 64), -EAGAIN);
	/* One piece when it does not wrap; an empty message, none. */
	CHECK_EQ(vmc_ring_msg_write(&R.p, in, 7, &n), 0);
	CHECK_EQ(vmc_ring_msg_write(&R.p, in, 0, &n), 0);
	CHECK_EQ(vmc_ring_msg_peek(&R.c, 64), 7);
	memset(&l, 0, sizeof(l));
	vmc_ring_msg_read_to(&R.c, 7, store_logged, &l);
	CHECK_EQ(l.n, 1);
	CHECK_EQ(l.len[0], 7);
	CHECK_EQ(vmc_ring_msg_peek(&R.c, 64), 0);
	memset(&l, 0, sizeof(l));
	vmc_ring_msg_read_to(&R.c, 0, store_logged, &l);
	CHECK_EQ(l.n, 0);
	CHECK_EQ(vmc_ring_msg_peek(&R.c, 64), -EAGAIN);
}

static void test_msg_payload_wraps(void)
{
	msg_at(56, 20, 4);		/* word at 56, payload 60..63 + 0..15 */
	CHECK_OK();
	t_free_all();
	msg_at(60, 20, 0);		/* word at 60, payload 0..19 */
	CHECK_OK();
	t_free_all();
	msg_at(0xfffffffc, 33, 0);	/* u32 wrap as well */
	CHECK_OK();
	t_free_all();
	msg_at(0xffffffe8, 30, 20);	/* word at 40, payload crosses 2^32 */
	CHECK_OK();
	t_free_all();
	msg_at(8, 60, 52);		/* max payload, wrapping */
}

/* Messages through indices crossing 2^32. */
static void test_msg_wrap_u32(void)
{
	u8 in[256], out[256];
	uint64_t wseq = 0, rseq = 0, from;
	u32 lens[64], start = 0xffffff00;
	int i, k;
	long got;
	bool n;

	rp_setup(&R, 256);
	CHECK_OK();
	rp_set_pos(&R, start);
	for (i = 0; i < 3000; i++) {
		if (rnd() & 1) {
			u32 len = rnd_range(0, vmc_ring_msg_max(256));
			long space = vmc_ring_space(&R.p);
			int want = room_model(len) > space ? -EAGAIN : 0;

			fill_pat(in, wseq << 8, len);
			CHECK_EQ(vmc_ring_msg_write(&R.p, in, len, &n), want);
			if (!want)
				lens[wseq++ & 63] = len;
		} else {
			got = vmc_ring_msg_peek(&R.c, 256);
			if (rseq == wseq) {
				CHECK_EQ(got, -EAGAIN);
				continue;
			}
			CHECK_EQ(got, lens[rseq & 63]);
			vmc_ring_msg_read(&R.c, out, got);
			from = rseq++ << 8;
			k = bad_pat(out, from, got);
			if (k >= 0)
				T_FAIL("message %llu byte %d", (unsigned long long)rseq - 1, k);
		}
	}
	CHECK(rseq > 20);
	CHECK(R.c.pos - start > 0x100 && R.c.pos < start);
	CHECK(!R.c.broken && !R.p.broken);
}

static void test_msg_emsgsize(void)
{
	static const u32 bad[] = {
		61, 62, 64, 65, 1000, 0x7fffffff, 0xfffffffc, 0xfffffffd,
		0xffffffff,
	};
	u8 in[64] = { 0 };
	unsigned int i;
	bool n;

	rp_setup(&R, 64);
	CHECK_OK();
	CHECK_EQ(vmc_ring_msg_max(64), 60);
	for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		n = true;
		CHECK_EQ(vmc_ring_msg_write(&R.p, in, bad[i], &n), -EMSGSIZE);
		CHECK(!n);
		CHECK_EQ(R.p.pos, 0);
		CHECK_EQ(R.hdr->prod, 0);
	}
	CHECK(!R.p.broken);
	CHECK_EQ(vmc_ring_msg_write(&R.p, in, 60, &n), 0);
}

static void test_msg_eagain_full(void)
{
	u8 in[64] = { 0 }, out[64];
	bool n;
	int i;

	rp_setup(&R, 64);
	CHECK_OK();
	for (i = 0; i < 4; i++)
		CHECK_EQ(vmc_ring_msg_write(&R.p, in, 12, &n), 0);	/* room 16 */
	CHECK_EQ(vmc_ring_space(&R.p), 0);
	CHECK_EQ(vmc_ring_cons_wait(&R.c), 64);	/* asks, but data is there */
	n = true;
	CHECK_EQ(vmc_ring_msg_write(&R.p, in, 12, &n), -EAGAIN);
	CHECK(!n);
	CHECK_EQ(vmc_ring_msg_write(&R.p, in, 0, &n), -EAGAIN);
	CHECK_EQ(R.p.pos, 64);
	CHECK_EQ(le32_to_cpu(R.hdr->prod), 64);

	/* 8 bytes free: a 4-byte payload fits, a 5-byte one does not. */
	CHECK_EQ(vmc_ring_msg_peek(&R.c, 64), 12);
	vmc_ring_msg_read(&R.c, out, 12);
	CHECK_EQ(vmc_ring_msg_write(&R.p, in, 4, &n), 0);
	CHECK_EQ(vmc_ring_space(&R.p), 8);
	CHECK_EQ(vmc_ring_msg_write(&R.p, in, 5, &n), -EAGAIN);
	CHECK_EQ(vmc_ring_msg_write(&R.p, in, 4, &n), 0);
	CHECK_EQ(vmc_ring_space(&R.p), 0);
	CHECK(!R.p.broken);
}

static void test_msg_max_payload(void)
{
	u8 in[64], out[64];
	u32 max = vmc_ring_msg_max(64);
	bool n;

	rp_setup(&R, 64);
	CHECK_OK();
	fill_pat(in, 0, 64);
	CHECK_EQ(vmc_ring_msg_write(&R.p, in, max, &n), 0);
	CHECK_EQ(vmc_ring_space(&R.p), 0);
	CHECK_EQ(vmc_ring_msg_peek(&R.c, max), max);
	vmc_ring_msg_read(&R.c, out, max);
	CHECK_EQ(bad_pat(out, 0, max), -1);
	/* Again from an offset, so the payload wraps. */
	CHECK_EQ(vmc_ring_write(&R.p, in, 4, &n), 4);
	CHECK_EQ(vmc_ring_read(&R.c, out, 4, &n), 4);
	CHECK_EQ(vmc_ring_msg_write(&R.p, in + 1, max, &n), 0);
	CHECK_EQ(vmc_ring_msg_peek(&R.c, 0xffffffff), max);
	vmc_ring_msg_read(&R.c, out, max);
	CHECK_EQ(bad_pat(out, 1, max), -1);
}

/* The length is read once by peek; read trusts the value peek returned. */
static void test_msg_len_not_reread(void)
{
	u8 in[64], out[64];
	bool n;

	rp_setup(&R, 64);
	CHECK_OK();
	fill_pat(in, 0, 64);
	CHECK_EQ(vmc_ring_msg_write(&R.p, in, 10, &n), 0);
	CHECK_EQ(vmc_ring_msg_write(&R.p, in + 10, 3, &n), 0);
	CHECK_EQ(vmc_ring_msg_peek(&R.c, 64), 10);
	put_le32_at(R.data, 0xffffffff);	/* hostile rewrite */
	memset(out, 0x77, sizeof(out));
	vmc_ring_msg_read(&R.c, out, 10);
	CHECK_EQ(bad_pat(out, 0, 10), -1);
	CHECK_EQ(out[10], 0x77);
	CHECK_EQ(R.c.pos, 16);
	CHECK_EQ(vmc_ring_msg_peek(&R.c, 64), 3);
	CHECK(!R.c.broken);
}

/* A message larger than the caller's maximum is a protocol error. */
static void test_msg_peek_over_caller_max(void)
{
	u8 in[64] = { 0 };
	bool n;

	rp_setup(&R, 64);
	CHECK_OK();
	CHECK_EQ(vmc_ring_msg_write(&R.p, in, 40, &n), 0);
	CHECK_EQ(vmc_ring_msg_peek(&R.c, 40), 40);
	CHECK_EQ(vmc_ring_msg_peek(&R.c, 39), -EPROTO);
	CHECK(R.c.broken);
	CHECK_EQ(vmc_ring_msg_peek(&R.c, 64), -EPROTO);
	CHECK_EQ(R.c.pos, 0);
}

/* ---- flags ---- */

static void test_flags_eof_closed(void)
{
	u8 in[8] = { 1, 2, 3, 4, 5 }, out[8];
	bool n;

	rp_setup(&R, 64);
	CHECK_OK();
	CHECK(!vmc_ring_peer_eof(&R.c));
	CHECK(!vmc_ring_peer_closed(&R.p));
	CHECK_EQ(vmc_ring_write(&R.p, in, 5, &n), 5);
	vmc_ring_set_eof(&R.p);
	CHECK_EQ(le32_to_cpu(R.hdr->prod_flags), VMC_RING_F_EOF);
	/* Data before EOF is still delivered. */
	CHECK_EQ(vmc_ring_avail(&R.c), 5);
	CHECK_EQ(vmc_ring_read(&R.c, out, 8, &n), 5);
	CHECK(!memcmp(in, out, 5));
	CHECK_EQ(vmc_ring_avail(&R.c), 0);
	CHECK(vmc_ring_peer_eof(&R.c));
	CHECK_EQ(vmc_ring_avail(&R.c), 0);

	vmc_ring_set_closed(&R.c);
	CHECK_EQ(le32_to_cpu(R.hdr->cons_flags), VMC_RING_F_CLOSED);
	CHECK(vmc_ring_peer_closed(&R.p));
	/* Each flag sits in its writer's own cache line. */
	CHECK_EQ(le32_to_cpu(R.hdr->prod_flags), VMC_RING_F_EOF);

	/* Only bit 0 means anything. */
	R.hdr->prod_flags = cpu_to_le32(0xfffffffe);
	R.hdr->cons_flags = cpu_to_le32(0xfffffffe);
	CHECK(!vmc_ring_peer_eof(&R.c));
	CHECK(!vmc_ring_peer_closed(&R.p));
	CHECK(!R.c.broken && !R.p.broken);
}

/* ---- notification suppression ---- */

static void test_event_due(void)
{
	static const struct { u32 event, old, new; bool due; } t[] = {
		{ 1, 0, 1, true },
		{ 0, 0, 1, false },
		{ 2, 0, 1, false },
		{ 5, 0, 10, true },
		{ 10, 0, 10, true },
		{ 11, 0, 10, false },
		{ 0, 0xfffffff0, 0x10, true },
		{ 0xfffffff1, 0xfffffff0, 0x10, true },
		{ 0xfffffff0, 0xfffffff0, 0x10, false },
		{ 0x10, 0xfffffff0, 0x10, true },
		{ 0x11, 0xfffffff0, 0x10, false },
		{ 7, 5, 5, false },
		{ 5, 5, 5, false },
		{ 6, 5, 5, false },
	};
	u32 e, o, d;
	unsigned int i;

	for (i = 0; i < sizeof(t) / sizeof(t[0]); i++)
		if (vmc_ring_event_due(t[i].event, t[i].old, t[i].new) != t[i].due)
			T_FAIL("event_due(%#x, %#x, %#x) != %d",
			       t[i].event, t[i].old, t[i].new, t[i].due);
	for (i = 0; i < 200000; i++) {
		e = rnd();
		o = rnd();
		d = rnd_range(0, VMC_RING_MAX_SIZE);
		if (i & 1)
			e = o + rnd_range(0, d + 2) - 1;	/* near the window */
		if (vmc_ring_event_due(e, o, o + d) != due_model(e, o, o + d))
			T_FAIL("event_due(%#x, %#x, %#x) != model", e, o, o + d);
	}
}

/* produce() notifies only after the consumer asked in cons_wait(). */
static void notify_consumer(u32 base)
{
	u8 in[64], out[64];
	bool n;
	int i;

	rp_setup(&R, 64);
	CHECK_OK();
	rp_set_pos(&R, base);
	fill_pat(in, 0, 64);
	for (i = 0; i < 5; i++) {	/* nobody asked */
		CHECK_EQ(vmc_ring_write(&R.p, in, 1, &n), 1);
		CHECK(!n);
	}
	CHECK_EQ(vmc_ring_read(&R.c, out, 64, &n), 5);
	CHECK_EQ(vmc_ring_cons_wait(&R.c), 0);
	CHECK_EQ(le32_to_cpu(R.hdr->prod_event), base + 5 + 1);
	CHECK_EQ(vmc_ring_write(&R.p, in, 3, &n), 3);
	CHECK(n);				/* asked: notify once */
	CHECK_EQ(vmc_ring_write(&R.p, in, 3, &n), 3);
	CHECK(!n);				/* ... and only once */

	/* Asking while data is there: the re-check sees it, no event due. */
	CHECK_EQ(vmc_ring_read(&R.c, out, 2, &n), 2);
	CHECK_EQ(vmc_ring_cons_wait(&R.c), 4);
	CHECK_EQ(vmc_ring_write(&R.p, in, 3, &n), 3);
	CHECK(!n);

	/* Asked, then one big write notifies once. */
	CHECK_EQ(vmc_ring_read(&R.c, out, 64, &n), 7);
	CHECK_EQ(vmc_ring_cons_wait(&R.c), 0);
	CHECK_EQ(vmc_ring_write(&R.p, in, 0, &n), 0);
	CHECK(!n);
	CHECK_EQ(vmc_ring_write(&R.p, in, 64, &n), 64);
	CHECK(n);
	CHECK_EQ(vmc_ring_read(&R.c, out, 64, &n), 64);
	CHECK(!n);			/* producer never asked */
	CHECK_EQ(bad_pat(out, 0, 64), -1);

	/* Message mode (on a fresh ring: records start 4-aligned): same rule. */
	t_free_all();
	rp_setup(&R, 64);
	CHECK_OK();
	rp_set_pos(&R, base & ~3u);
	CHECK_EQ(vmc_ring_msg_peek(&R.c, 64), -EAGAIN);
	CHECK_EQ(vmc_ring_cons_wait(&R.c), 0);
	CHECK_EQ(vmc_ring_msg_write(&R.p, in, 5, &n), 0);
	CHECK(n);
	CHECK_EQ(vmc_ring_msg_write(&R.p, in, 5, &n), 0);
	CHECK(!n);
	CHECK(!R.p.broken && !R.c.broken);
}

static void test_notify_consumer_asked(void)
{
	notify_consumer(0);
	CHECK_OK();
	t_free_all();
	notify_consumer(0xfffffffc);	/* the asked-for index crosses 2^32 */
	CHECK_OK();
	t_free_all();
	notify_consumer(0xfffffffa);
}

/* consume() notifies only after the producer asked in prod_wait(). */
static void notify_producer(u32 base)
{
	u8 in[64], out[64];
	bool n;
	int i;

	rp_setup(&R, 64);
	CHECK_OK();
	rp_set_pos(&R, base);
	fill_pat(in, 0, 64);
	CHECK_EQ(vmc_ring_write(&R.p, in, 64, &n), 64);
	for (i = 0; i < 8; i++) {	/* nobody asked */
		CHECK_EQ(vmc_ring_read(&R.c, out, 8, &n), 8);
		CHECK(!n);
	}
	CHECK_EQ(vmc_ring_write(&R.p, in, 64, &n), 64);
	CHECK_EQ(vmc_ring_prod_wait(&R.p, 16), 0);
	CHECK_EQ(le32_to_cpu(R.hdr->cons_event), base + 128 - 64 + 16);
	CHECK_EQ(vmc_ring_read(&R.c, out, 15, &n), 15);
	CHECK(!n);				/* 15 free: not enough yet */
	CHECK_EQ(vmc_ring_read(&R.c, out, 1, &n), 1);
	CHECK(n);				/* 16 free */
	CHECK_EQ(vmc_ring_read(&R.c, out, 1, &n), 1);
	CHECK(!n);

	/* Asking when there is already enough: nothing due later. */
	CHECK_EQ(vmc_ring_prod_wait(&R.p, 10), 17);
	CHECK_EQ(vmc_ring_read(&R.c, out, 30, &n), 30);
	CHECK(!n);

	/* want > size is clamped: wake only when the ring is empty. */
	CHECK_EQ(vmc_ring_write(&R.p, in, 64, &n), 47);
	CHECK_EQ(vmc_ring_prod_wait(&R.p, 1000), 0);
	CHECK_EQ(le32_to_cpu(R.hdr->cons_event), R.p.pos);
	CHECK_EQ(vmc_ring_read(&R.c, out, 63, &n), 63);
	CHECK(!n);
	CHECK_EQ(vmc_ring_read(&R.c, out, 1, &n), 1);
	CHECK(n);

	/* Message mode (fresh ring): msg_read notifies once the room is free. */
	t_free_all();
	rp_setup(&R, 64);
	CHECK_OK();
	rp_set_pos(&R, base);
	CHECK_EQ(vmc_ring_msg_write(&R.p, in, 28, &n), 0);	/* room 32 */
	CHECK_EQ(vmc_ring_msg_write(&R.p, in, 28, &n), 0);
	CHECK_EQ(vmc_ring_msg_write(&R.p, in, 28, &n), -EAGAIN);
	CHECK_EQ(vmc_ring_prod_wait(&R.p, vmc_ring_msg_room(28)), 0);
	CHECK_EQ(vmc_ring_msg_peek(&R.c, 64), 28);
	CHECK(vmc_ring_msg_read(&R.c, out, 28));
	CHECK_EQ(vmc_ring_msg_write(&R.p, in, 28, &n), 0);
	CHECK_EQ(vmc_ring_msg_peek(&R.c, 64), 28);
	CHECK(!vmc_ring_msg_read(&R.c, out, 28));
	CHECK(!R.p.broken && !R.c.broken);
}

static void test_notify_producer_asked(void)
{
	notify_producer(0);
	CHECK_OK();
	t_free_all();
	notify_producer(0xffffffc0);
	CHECK_OK();
	t_free_all();
	notify_producer(0xffffffe4);
}

/* Garbage event indices: only spurious or missing notifications. */
static void test_notify_garbage_events(void)
{
	u8 in[64], out[64];
	u32 ev, old;
	long got;
	bool n;
	int i;

	rp_setup(&R, 64);
	CHECK_OK();
	fill_pat(in, 0, 64);
	for (i = 0; i < 20000; i++) {
		ev = (i & 1) ? (u32)rnd() : R.p.pos + rnd_range(0, 70);
		R.hdr->prod_event = cpu_to_le32(ev);
		old = R.p.pos;
		got = vmc_ring_write(&R.p, in, rnd_range(0, 64), &n);
		CHECK(got >= 0);
		CHECK_EQ(n, got && due_model(ev, old, old + got));
		ev = (i & 2) ? (u32)rnd() : R.c.pos + rnd_range(0, 70);
		R.hdr->cons_event = cpu_to_le32(ev);
		old = R.c.pos;
		got = vmc_ring_read(&R.c, out, rnd_range(0, 64), &n);
		CHECK(got >= 0);
		CHECK_EQ(n, got && due_model(ev, old, old + got));
	}
	CHECK(!R.p.broken && !R.c.broken);
}

/* ---- hostile indices ---- */

/* Consumer at cons 20 with prod 30, in a 64-byte ring at @base. */
static void consumer_at(u32 base)
{
	u8 buf[64];
	bool n;

	rp_setup(&R, 64);
	CHECK_OK();
	rp_set_pos(&R, base);
	fill_pat(buf, 0, 64);
	CHECK_EQ(vmc_ring_write(&R.p, buf, 30, &n), 30);
	CHECK_EQ(vmc_ring_read(&R.c, buf, 20, &n), 20);
}

static void test_corrupt_prod_too_far(void)
{
	static const u32 d[] = { 65, 66, 1000, 0x10000, 0x7fffffff, 0x80000000 };
	unsigned int i;

	for (i = 0; i < sizeof(d) / sizeof(d[0]); i++) {
		consumer_at(0xffffffe0);
		CHECK_OK();
		R.hdr->prod = cpu_to_le32(R.c.pos + d[i]);
		CHECK_EQ(vmc_ring_avail(&R.c), -EPROTO);
		CHECK(R.c.broken);
		t_free_all();
	}
	/* Exactly full is legal. */
	consumer_at(0xffffffe0);
	CHECK_OK();
	R.hdr->prod = cpu_to_le32(R.c.pos + 64);
	CHECK_EQ(vmc_ring_avail(&R.c), 64);
	CHECK(!R.c.broken);
}

static void test_corrupt_prod_backwards(void)
{
	static const u32 d[] = { 1, 2, 20, 64, 65, 0x80000000 };
	unsigned int i;

	for (i = 0; i < sizeof(d) / sizeof(d[0]); i++) {
		consumer_at(0xfffffff0);
		CHECK_OK();
		R.hdr->prod = cpu_to_le32(R.c.pos - d[i]);
		CHECK_EQ(vmc_ring_avail(&R.c), -EPROTO);
		CHECK(R.c.broken);
		t_free_all();
	}
	/* Back to exactly cons is legal (an empty ring). */
	consumer_at(0);
	CHECK_OK();
	R.hdr->prod = cpu_to_le32(R.c.pos);
	CHECK_EQ(vmc_ring_avail(&R.c), 0);
	CHECK(!R.c.broken);
}

/* Producer at prod 30 with cons 20. */
static void test_corrupt_cons(void)
{
	static const u32 bad[] = {
		31, 32, 100, 0x80000000,	/* consumed more than produced */
		0xffffffdd, 0xffffffdc, 0x8000001e,	/* > size behind prod */
	};
	unsigned int i;

	for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		consumer_at(0);
		CHECK_OK();
		R.hdr->cons = cpu_to_le32(bad[i]);
		if (vmc_ring_space(&R.p) != -EPROTO)
			T_FAIL("cons %#x with prod 30 accepted", bad[i]);
		CHECK(R.p.broken);
		t_free_all();
	}
	/* 0xffffffde = prod - size: full, legal; 30: empty, legal. */
	consumer_at(0);
	CHECK_OK();
	R.hdr->cons = cpu_to_le32(0xffffffde);
	CHECK_EQ(vmc_ring_space(&R.p), 0);
	R.hdr->cons = cpu_to_le32(30);
	CHECK_EQ(vmc_ring_space(&R.p), 64);
	CHECK(!R.p.broken);
}

static void test_broken_latch_consumer(void)
{
	u8 out[64];
	bool n;
	int i;

	consumer_at(100);
	CHECK_OK();
	R.hdr->prod = cpu_to_le32(R.c.pos + 65);
	CHECK_EQ(vmc_ring_avail(&R.c), -EPROTO);
	/* The peer repairs its index: too late. */
	R.hdr->prod = cpu_to_le32(R.c.pos + 10);
	memset(out, 0x77, sizeof(out));
	for (i = 0; i < 3; i++) {
		CHECK_EQ(vmc_ring_avail(&R.c), -EPROTO);
		n = true;
		CHECK_EQ(vmc_ring_read(&R.c, out, 64, &n), -EPROTO);
		CHECK(!n);
		CHECK_EQ(vmc_ring_read(&R.c, out, 0, &n), -EPROTO);
		CHECK_EQ(vmc_ring_msg_peek(&R.c, 64), -EPROTO);
		CHECK_EQ(vmc_ring_msg_peek(&R.c, 0), -EPROTO);
		CHECK_EQ(vmc_ring_cons_wait(&R.c), -EPROTO);
		CHECK(R.c.broken);
	}
	CHECK_EQ(out[0], 0x77);
	CHECK_EQ(R.c.pos, 120);
	CHECK_EQ(le32_to_cpu(R.hdr->cons), 120);	/* nothing released */
	/* A fresh init is the only reset. */
	R.hdr->cons = 0;
	R.hdr->prod = cpu_to_le32(5);
	CHECK_EQ(vmc_ring_init(&R.c, R.hdr, R.data, 64, false), 0);
	CHECK_EQ(vmc_ring_avail(&R.c), 5);
}

static void test_broken_latch_producer(void)
{
	u8 in[64] = { 0 }, snap[64];
	bool n;
	int i;

	consumer_at(100);
	CHECK_OK();
	R.hdr->cons = cpu_to_le32(R.p.pos + 1);
	CHECK_EQ(vmc_ring_space(&R.p), -EPROTO);
	R.hdr->cons = cpu_to_le32(R.p.pos);
	memcpy(snap, R.data, 64);
	for (i = 0; i < 3; i++) {
		CHECK_EQ(vmc_ring_space(&R.p), -EPROTO);
		n = true;
		CHECK_EQ(vmc_ring_write(&R.p, in, 10, &n), -EPROTO);
		CHECK(!n);
		CHECK_EQ(vmc_ring_write(&R.p, in, 0, &n), -EPROTO);
		CHECK_EQ(vmc_ring_msg_write(&R.p, in, 10, &n), -EPROTO);
		CHECK_EQ(vmc_ring_prod_wait(&R.p, 1), -EPROTO);
		CHECK(R.p.broken);
	}
	CHECK(!memcmp(snap, R.data, 64));	/* nothing written */
	CHECK_EQ(R.p.pos, 130);
	CHECK_EQ(le32_to_cpu(R.hdr->prod), 130);
}

/* Our own published index is never read back. */
static void test_own_index_not_read_back(void)
{
	u8 buf[64];
	bool n;

	consumer_at(0);
	CHECK_OK();
	R.hdr->prod = cpu_to_le32(0x12345678);	/* consumer scribbles */
	R.hdr->prod_flags = cpu_to_le32(0xfffffffe);
	CHECK_EQ(vmc_ring_space(&R.p), 64 - 10);
	CHECK_EQ(vmc_ring_write(&R.p, buf, 4, &n), 4);
	CHECK_EQ(le32_to_cpu(R.hdr->prod), 34);

	R.hdr->cons = cpu_to_le32(0x87654321);	/* producer scribbles */
	CHECK_EQ(vmc_ring_avail(&R.c), 14);
	CHECK_EQ(vmc_ring_read(&R.c, buf, 4, &n), 4);
	CHECK_EQ(le32_to_cpu(R.hdr->cons), 24);
	CHECK(!R.p.broken && !R.c.broken);
}

/* ---- hostile message lengths ---- */

/*
 * A ring of 64 holding one 8-byte message (room 12) at @base, whose length
 * word the peer then rewrites to @len; peek(@max) must fail without
 * reading anything.
 */
static void bad_len(u32 base, u32 len, u32 max)
{
	u8 in[64], out[64];
	bool n;

	rp_setup(&R, 64);
	CHECK_OK();
	rp_set_pos(&R, base);
	fill_pat(in, 0, 64);
	CHECK_EQ(vmc_ring_msg_write(&R.p, in, 8, &n), 0);
	put_le32_at(R.data + (base & 63), len);
	memset(out, 0x77, sizeof(out));
	if (vmc_ring_msg_peek(&R.c, max) != -EPROTO)
		T_FAIL("length %#x (max %#x, avail 12) accepted", len, max);
	CHECK(R.c.broken);
	CHECK_EQ(R.c.pos, base);
	CHECK_EQ(le32_to_cpu(R.hdr->cons), base);
	CHECK_EQ(vmc_ring_msg_peek(&R.c, max), -EPROTO);
	CHECK_EQ(vmc_ring_read(&R.c, out, 64, &n), -EPROTO);
	CHECK_EQ(out[0], 0x77);
}

static void test_msg_corrupt_len_over_max(void)
{
	bad_len(0, 61, 0xffffffff);	/* > msg_max(64) */
	CHECK_OK();
	t_free_all();
	bad_len(0, 64, 0xffffffff);
	CHECK_OK();
	t_free_all();
	bad_len(52, 8, 7);		/* > the caller's max, fits avail */
	CHECK_OK();
	t_free_all();
	bad_len(0, 1, 0);
}

static void test_msg_corrupt_len_over_avail(void)
{
	static const u32 lens[] = { 9, 12, 13, 40, 60 };
	unsigned int i;

	for (i = 0; i < sizeof(lens) / sizeof(lens[0]); i++) {
		bad_len(60, lens[i], 64);	/* word at the end of the area */
		CHECK_OK();
		t_free_all();
		bad_len(0xfffffff8, lens[i], 0xffffffff);
		CHECK_OK();
		t_free_all();
	}
}

/* Lengths whose padded room overflows u32 must not pass the room check. */
static void test_msg_corrupt_len_overflow(void)
{
	static const u32 lens[] = {
		0xffffffff, 0xfffffffe, 0xfffffffd, 0xfffffffc, 0xfffffff8,
		0x80000000, 0x7fffffff,
	};
	unsigned int i;

	for (i = 0; i < sizeof(lens) / sizeof(lens[0]); i++) {
		bad_len(8, lens[i], 0xffffffff);
		CHECK_OK();
		t_free_all();
	}
}

static void test_msg_corrupt_partial_record(void)
{
	u8 out[64];
	u32 d;

	/* 1..3 bytes published: not even a length word. */
	for (d = 1; d < 4; d++) {
		rp_setup(&R, 64);
		CHECK_OK();
		rp_set_pos(&R, 0xfffffffc);
		memset(R.data, 0, 64);
		R.hdr->prod = cpu_to_le32(0xfffffffc + d);
		CHECK_EQ(vmc_ring_msg_peek(&R.c, 64), -EPROTO);
		CHECK(R.c.broken);
		t_free_all();
	}
	/* A zero-length record and 2 stray bytes after it. */
	rp_setup(&R, 64);
	CHECK_OK();
	memset(R.data, 0, 64);
	R.hdr->prod = cpu_to_le32(6);
	CHECK_EQ(vmc_ring_msg_peek(&R.c, 64), 0);
	CHECK(!vmc_ring_msg_read(&R.c, out, 0));
	CHECK_EQ(vmc_ring_msg_peek(&R.c, 64), -EPROTO);
	CHECK(R.c.broken);
	t_free_all();
	/* Record cut short: length 8 but only 4 + 6 bytes published. */
	rp_setup(&R, 64);
	CHECK_OK();
	put_le32_at(R.data, 8);
	R.hdr->prod = cpu_to_le32(10);
	CHECK_EQ(vmc_ring_msg_peek(&R.c, 64), -EPROTO);
	CHECK(R.c.broken);
}

/* Our position is misaligned (a byte read in message mode): refuse. */
static void test_msg_misaligned_pos(void)
{
	u8 out[64];
	bool n;

	rp_setup(&R, 64);
	CHECK_OK();
	memset(R.data, 0, 64);
	R.hdr->prod = cpu_to_le32(16);
	CHECK_EQ(vmc_ring_read(&R.c, out, 2, &n), 2);
	CHECK_EQ(vmc_ring_msg_peek(&R.c, 64), -EPROTO);
	CHECK(R.c.broken);
}

/* Random garbage lengths, checked against an independent model. */
static void test_msg_random_lengths(void)
{
	u32 len, max, avail, pos;
	long got, want;
	int i;

	rp_setup(&R, 256);
	CHECK_OK();
	for (i = 0; i < 100000; i++) {
		pos = (u32)rnd() & ~3u;
		avail = rnd_range(0, 256);
		switch (rnd() & 3) {
		case 0:
			len = rnd();
			break;
		case 1:
			len = avail - rnd_range(0, 8);
			break;
		default:
			len = rnd_range(0, 260);
		}
		max = (rnd() & 1) ? 0xffffffff : rnd_range(0, 300);
		rp_set_pos(&R, pos);
		R.c.broken = false;
		R.hdr->prod = cpu_to_le32(pos + avail);
		put_le32_at(R.data + (pos & 255), len);
		if (!avail)
			want = -EAGAIN;
		else if (avail < 4 || len > max || len > 252 ||
			 room_model(len) > avail)
			want = -EPROTO;
		else
			want = len;
		got = vmc_ring_msg_peek(&R.c, max);
		if (got != want)
			T_FAIL("pos %#x avail %u len %#x max %#x: %ld, want %ld",
			       pos, avail, len, max, got, want);
		CHECK_EQ(R.c.broken, want == -EPROTO);
	}
}

int main(void)
{
	RUN(test_layout);
	RUN(test_check_fn);
	RUN(test_init_sizes);
	RUN(test_init_producer_zeroes_header);
	RUN(test_init_consumer_attach);
	RUN(test_empty);
	RUN(test_zero_length);
	RUN(test_full);
	RUN(test_partial);
	RUN(test_wrap_data_area);
	RUN(test_random_stream);
	RUN(test_wrap_u32);
	RUN(test_max_size);
	RUN(test_min_size);
	RUN(test_msg_basic);
	RUN(test_msg_payload_wraps);
	RUN(test_msg_read_to_pieces);
	RUN(test_msg_wrap_u32);
	RUN(test_msg_emsgsize);
	RUN(test_msg_eagain_full);
	RUN(test_msg_max_payload);
	RUN(test_msg_len_not_reread);
	RUN(test_msg_peek_over_caller_max);
	RUN(test_flags_eof_closed);
	RUN(test_event_due);
	RUN(test_notify_consumer_asked);
	RUN(test_notify_producer_asked);
	RUN(test_notify_garbage_events);
	RUN(test_cons_ask_want);
	RUN(test_cons_every);
	RUN(test_corrupt_prod_too_far);
	RUN(test_corrupt_prod_backwards);
	RUN(test_corrupt_cons);
	RUN(test_broken_latch_consumer);
	RUN(test_broken_latch_producer);
	RUN(test_own_index_not_read_back);
	RUN(test_msg_corrupt_len_over_max);
	RUN(test_msg_corrupt_len_over_avail);
	RUN(test_msg_corrupt_len_overflow);
	RUN(test_msg_corrupt_partial_record);
	RUN(test_msg_misaligned_pos);
	RUN(test_msg_random_lengths);
	return T_DONE("ring_test");
}
