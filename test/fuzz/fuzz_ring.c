// SPDX-License-Identifier: GPL-2.0
/*
 * libFuzzer target: one well-behaved local end of a vmc_ring against a
 * hostile peer driven by the input.
 *
 * The header and the data area are exactly-sized allocations, so ASan
 * aborts on any access of ours outside them.  Between our operations the
 * peer writes whatever the input says into the shared header (its index,
 * its event index, its flags, even our own published fields and the
 * padding) and into the data area (length words, payload bytes); it can
 * also behave (produce a proper record, consume properly) so that deep
 * states are reached.  After every operation of ours the result is
 * compared with an independent model, and abort() is called when:
 *   - a count is not what the published indices imply (so never beyond
 *     the ring size), or -EPROTO is missing or spurious;
 *   - once broken, any operation does not return -EPROTO (latched);
 *   - our private position moved by anything but what we reported;
 *   - the bytes written/read are not the ones at the right ring offsets;
 *   - a message length accepted is beyond the caller's maximum, the ring's
 *     maximum or the published bytes;
 *   - a notification decision differs from "cons_wake set, or event in
 *     (old, new]";
 *   - cons_every()/cons_drained() do not publish what they promise.
 *
 * Input: byte 0 config (bits 0-2 ring size 4 << n, 4096 for 7; bit 3
 * consumer end; bit 4 message mode; bit 5 consumer attaches to an
 * arbitrary prod), u32 start position, [u32 initial prod], then
 * operations of one opcode byte and its arguments until the input ends.
 */
#include "vmc_ring.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#define ASSERT(c)							\
	do {								\
		if (!(c)) {						\
			fprintf(stderr, "fuzz_ring: %s:%d: %s\n",	\
				__FILE__, __LINE__, #c);		\
			abort();					\
		}							\
	} while (0)

struct input {
	const uint8_t *p;
	size_t n;
};

static uint8_t get8(struct input *in)
{
	if (!in->n)
		return 0;
	in->n--;
	return *in->p++;
}

static uint16_t get16(struct input *in)
{
	uint16_t v = get8(in);

	return v | get8(in) << 8;
}

static uint32_t get32(struct input *in)
{
	uint32_t v = get16(in);

	return v | (uint32_t)get16(in) << 16;
}

/* ---- the test state ---- */

static struct vmc_ring_hdr *hdr;
static u8 *data, *snap;
static u32 size;
static struct vmc_ring r;
static bool consumer, msg_mode, broken, every;
static u32 pos;			/* model of our private position */

static u32 rd32(const __le32 *p)
{
	return le32_to_cpu(*p);
}

/* Peer writes @len bytes at ring position @at (wrapping). */
static void peer_put(u32 at, const u8 *src, u32 len)
{
	u32 i;

	for (i = 0; i < len; i++)
		data[(at + i) & (size - 1)] = src[i];
}

static void peer_put32(u32 at, u32 v)
{
	u8 b[4] = { v, v >> 8, v >> 16, v >> 24 };

	peer_put(at, b, 4);
}

/* Are ring bytes [at, at + len) equal to @buf (in @area, size bytes)? */
static bool ring_eq(const u8 *area, u32 at, const u8 *buf, u32 len)
{
	u32 i;

	for (i = 0; i < len; i++)
		if (area[(at + i) & (size - 1)] != buf[i])
			return false;
	return true;
}

static bool due_model(u32 event, u32 old, u32 new)
{
	return (uint64_t)(u32)(event - old - 1) < (uint64_t)(u32)(new - old);
}

/* What the peer's index implies: bytes in flight, or -EPROTO. */
static long used_model(void)
{
	u32 used = consumer ? rd32(&hdr->prod) - pos : pos - rd32(&hdr->cons);

	return used > size ? -EPROTO : (long)used;
}

/* Expected result of space()/avail(), updating the broken model. */
static long count_model(void)
{
	long used;

	if (broken)
		return -EPROTO;
	used = used_model();
	if (used < 0) {
		broken = true;
		return -EPROTO;
	}
	return consumer ? used : (long)size - used;
}

static void check_invariants(void)
{
	ASSERT(r.broken == broken);
	ASSERT(r.pos == pos);
	ASSERT(r.size == size && r.hdr == hdr && r.data == data);
	ASSERT(r.every == every);
}

/* ---- local producer operations ---- */

static void op_write(struct input *in)
{
	u32 len = get16(in) % (2 * size + 1), old = pos, ev, wake;
	u8 *src = malloc(len ? len : 1);
	long want, got;
	bool n;
	u32 i;

	for (i = 0; i < len; i++)
		src[i] = get8(in) ^ i;
	ev = rd32(&hdr->prod_event);
	wake = rd32(&hdr->cons_wake);
	want = count_model();
	if (want >= 0 && want > len)
		want = len;
	got = vmc_ring_write(&r, src, len, &n);
	ASSERT(got == want);
	ASSERT(got <= (long)size);
	if (got > 0) {
		pos += got;
		ASSERT(ring_eq(data, old, src, got));
		ASSERT(rd32(&hdr->prod) == pos);
		ASSERT(n == (wake || due_model(ev, old, pos)));
	} else {
		ASSERT(!n);
	}
	free(src);
}

static void op_msg_write(struct input *in)
{
	u32 len = get16(in), old = pos, ev, wake, room, i;
	u8 *src;
	long space;
	int want, got;
	bool n;

	if (get8(in) & 1)		/* often a fitting size */
		len %= size;
	src = malloc(len ? len : 1);
	for (i = 0; i < len; i++)
		src[i] = i * 7 + len;
	ev = rd32(&hdr->prod_event);
	wake = rd32(&hdr->cons_wake);
	room = 4 + ((len + 3) & ~3u);
	if (len > size - 4) {
		want = -EMSGSIZE;
	} else {
		space = count_model();
		want = space < 0 ? -EPROTO : room > space ? -EAGAIN : 0;
	}
	got = vmc_ring_msg_write(&r, src, len, &n);
	ASSERT(got == want);
	if (!got) {
		pos += room;
		ASSERT(ring_eq(data, old, (const u8[]){ len, len >> 8,
			len >> 16, len >> 24 }, 4));
		ASSERT(ring_eq(data, old + 4, src, len));
		ASSERT(rd32(&hdr->prod) == pos);
		ASSERT(n == (wake || due_model(ev, old, pos)));
	} else {
		ASSERT(!n);
	}
	free(src);
}

static void op_prod_wait(struct input *in)
{
	u32 want = get32(in) % (2 * size + 2);
	long exp, got;

	exp = count_model();
	got = vmc_ring_prod_wait(&r, want);
	ASSERT(got == exp);
	if (want > size)
		want = size;
	ASSERT(rd32(&hdr->cons_event) == pos - size + want);
}

/* ---- local consumer operations ---- */

static void op_read(struct input *in)
{
	u32 len = get16(in) % (2 * size + 1), old = pos, ev;
	u8 *dst = malloc(len ? len : 1);
	long want, got;
	bool n;

	memcpy(snap, data, size);
	ev = rd32(&hdr->cons_event);
	want = count_model();
	if (want >= 0 && want > len)
		want = len;
	got = vmc_ring_read(&r, dst, len, &n);
	ASSERT(got == want);
	ASSERT(got <= (long)size);
	if (got > 0) {
		pos += got;
		ASSERT(ring_eq(snap, old, dst, got));
		ASSERT(rd32(&hdr->cons) == pos);
		ASSERT(n == due_model(ev, old, pos));
	} else {
		ASSERT(!n);
	}
	free(dst);
}

static void op_msg_peek_read(struct input *in)
{
	u32 max = get8(in) & 1 ? get32(in) : size, len, old = pos, ev, room;
	long avail, want, got;
	u8 *dst;

	avail = count_model();
	if (avail < 0) {
		want = -EPROTO;
	} else if (avail == 0) {
		want = -EAGAIN;
	} else {
		u8 w[4];
		u32 i;

		for (i = 0; i < 4; i++)
			w[i] = data[(pos + i) & (size - 1)];
		len = w[0] | w[1] << 8 | w[2] << 16 | (u32)w[3] << 24;
		if ((pos & 3) || avail < 4 || len > max || len > size - 4 ||
		    4 + ((len + 3) & ~3u) > (u32)avail)
			want = -EPROTO;
		else
			want = len;
	}
	if (want == -EPROTO)
		broken = true;
	got = vmc_ring_msg_peek(&r, max);
	ASSERT(got == want);
	if (got < 0)
		return;
	ASSERT(got <= max && got <= size - 4 && got + 4 <= avail);
	if (get8(in) & 1)		/* sometimes only peek */
		return;
	len = got;
	room = 4 + ((len + 3) & ~3u);
	/* The peer may scribble between peek and read: read trusts len. */
	if (get8(in) & 1)
		peer_put32(pos, get32(in));
	memcpy(snap, data, size);
	ev = rd32(&hdr->cons_event);
	dst = malloc(len ? len : 1);	/* exactly len: ASan checks it */
	ASSERT(vmc_ring_msg_read(&r, dst, len) ==
	       due_model(ev, old, old + room));
	ASSERT(ring_eq(snap, old + 4, dst, len));
	pos += room;
	ASSERT(rd32(&hdr->cons) == pos);
	free(dst);
}

/* poll() saw data: events on every commit until a drain. */
static void op_cons_every(void)
{
	vmc_ring_cons_every(&r);
	every = true;
	ASSERT(rd32(&hdr->cons_wake) == 1);
}

static void op_cons_drained(void)
{
	u32 ev = rd32(&hdr->prod_event), wake = rd32(&hdr->cons_wake);
	long exp = 0;

	if (every) {
		ev = pos + 1;
		wake = 0;
		exp = broken ? -EPROTO : used_model();	/* no latch here */
	}
	ASSERT(vmc_ring_cons_drained(&r) == exp);
	every = false;
	ASSERT(rd32(&hdr->prod_event) == ev);
	ASSERT(rd32(&hdr->cons_wake) == wake);
}

static void op_cons_wait(void)
{
	long exp = count_model();

	ASSERT(vmc_ring_cons_wait(&r) == exp);
	ASSERT(rd32(&hdr->prod_event) == pos + 1);
}

/* ---- peer operations ---- */

/* A well-behaved peer step: produce a record / bytes, or consume. */
static void peer_behave(struct input *in)
{
	u32 k = get16(in), p, c, used, len, room, i;

	if (consumer) {		/* the peer produces */
		p = rd32(&hdr->prod);
		used = p - pos;
		if (used > size)
			return;
		if (msg_mode) {
			len = k % (size - 3);
			room = 4 + ((len + 3) & ~3u);
			if (room > size - used)
				return;
			peer_put32(p, len);
			for (i = 0; i < len; i++)
				data[(p + 4 + i) & (size - 1)] = get8(in);
			hdr->prod = cpu_to_le32(p + room);
		} else {
			k %= size - used + 1;
			for (i = 0; i < k; i++)
				data[(p + i) & (size - 1)] = get8(in);
			hdr->prod = cpu_to_le32(p + k);
		}
	} else {		/* the peer consumes */
		c = rd32(&hdr->cons);
		used = pos - c;
		if (used > size)
			return;
		k %= used + 1;
		if (msg_mode && used >= 4) {
			u8 w[4];

			for (i = 0; i < 4; i++)
				w[i] = data[(c + i) & (size - 1)];
			len = w[0] | w[1] << 8 | w[2] << 16 | (u32)w[3] << 24;
			if (len <= size - 4 && 4 + ((len + 3) & ~3u) <= used)
				k = 4 + ((len + 3) & ~3u);
		}
		hdr->cons = cpu_to_le32(c + k);
	}
}

static void peer_op(struct input *in, u8 op)
{
	__le32 *peer_idx = consumer ? &hdr->prod : &hdr->cons;
	__le32 *peer_ev = consumer ? &hdr->cons_event : &hdr->prod_event;
	__le32 *peer_flags = consumer ? &hdr->prod_flags : &hdr->cons_flags;
	u8 b[8];
	u32 at, n, i;

	switch (op) {
	case 0:		/* any index */
		*peer_idx = cpu_to_le32(get32(in));
		break;
	case 1:		/* an index near ours: boundaries */
		*peer_idx = cpu_to_le32(pos + (int16_t)get16(in));
		break;
	case 2:
		*peer_ev = cpu_to_le32(get8(in) & 1 ? get32(in) :
				       pos + (int8_t)get8(in));
		break;
	case 3:
		*peer_flags = cpu_to_le32(get32(in));
		if (!consumer)	/* the peer consumer's "every commit" word */
			hdr->cons_wake = cpu_to_le32(get8(in) & 1 ?
						     get32(in) : 0);
		break;
	case 4:		/* a length word at a ring position near ours */
		at = pos + 4 * (int8_t)get8(in);
		n = get8(in) & 1 ? get32(in) : get16(in) % (size + 8);
		peer_put32(at, n);
		break;
	case 5:		/* up to 8 arbitrary data bytes anywhere */
		at = get16(in);
		n = get8(in) % 9;
		for (i = 0; i < n; i++)
			b[i] = get8(in);
		peer_put(at, b, n);
		break;
	case 6:		/* scribble over our own published fields */
		if (consumer) {
			hdr->cons = cpu_to_le32(get32(in));
			hdr->prod_event = cpu_to_le32(get32(in));
			hdr->cons_flags = cpu_to_le32(get32(in));
			hdr->cons_wake = cpu_to_le32(get32(in));
		} else {
			hdr->prod = cpu_to_le32(get32(in));
			hdr->cons_event = cpu_to_le32(get32(in));
			hdr->prod_flags = cpu_to_le32(get32(in));
		}
		break;
	case 7:		/* padding */
		at = get8(in) % 13;
		hdr->pad0[at] = cpu_to_le32(get32(in));
		at = get8(in) % 12;
		hdr->pad1[at] = cpu_to_le32(get32(in));
		break;
	default:
		peer_behave(in);
	}
}

static void local_op(struct input *in, u8 op)
{
	long exp;

	if (!consumer) {
		switch (op % 6) {
		case 0:
		case 1:
			if (msg_mode)
				op_msg_write(in);
			else
				op_write(in);
			break;
		case 2:
			exp = count_model();
			ASSERT(exp <= (long)size);
			ASSERT(vmc_ring_space(&r) == exp);
			break;
		case 3:
			op_prod_wait(in);
			break;
		case 4:
			vmc_ring_peer_closed(&r);
			break;
		default:
			/*
			 * No mode mix-up here: msg_write trusts our own pos
			 * to be 4-aligned (a producer-local invariant).
			 */
			if (get8(in) & 1)
				vmc_ring_set_eof(&r);
		}
	} else {
		switch (op % 8) {
		case 0:
		case 1:
			if (msg_mode)
				op_msg_peek_read(in);
			else
				op_read(in);
			break;
		case 2:
			exp = count_model();
			ASSERT(exp <= (long)size);
			ASSERT(vmc_ring_avail(&r) == exp);
			break;
		case 3:
			op_cons_wait();
			break;
		case 4:
			vmc_ring_peer_eof(&r);
			break;
		case 6:
			op_cons_every();
			break;
		case 7:
			op_cons_drained();
			break;
		default:
			/* A mode mix-up of ours: peek must refuse it. */
			if (get8(in) & 1)
				vmc_ring_set_closed(&r);
			else if (msg_mode)
				op_read(in);
			else
				op_msg_peek_read(in);
		}
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *buf, size_t len)
{
	struct input in = { buf, len };
	u8 cfg = get8(&in), op;
	u32 base = get32(&in), init_prod = 0;
	int ret;

	size = (cfg & 7) == 7 ? 4096 : 4u << (cfg & 7);
	consumer = cfg & 8;
	msg_mode = cfg & 16;
	if (cfg & 32)
		init_prod = get32(&in);
	if (msg_mode)
		base &= ~3u;
	hdr = malloc(sizeof(*hdr));
	data = malloc(size);
	snap = malloc(size);
	memset(hdr, 0xa5, sizeof(*hdr));
	memset(data, 0, size);
	broken = false;
	every = false;
	if (consumer) {
		memset(hdr, 0, sizeof(*hdr));
		hdr->prod = cpu_to_le32(init_prod);
		ret = vmc_ring_init(&r, hdr, data, size, false);
		broken = init_prod > size;
		ASSERT(ret == (broken ? -EPROTO : 0));
		/* Fast-forward to base, with the pre-published bytes. */
		r.pos = base;
		hdr->cons = cpu_to_le32(base);
		hdr->prod = cpu_to_le32(base + (broken ? 0 : init_prod));
	} else {
		ASSERT(vmc_ring_init(&r, hdr, data, size, true) == 0);
		r.pos = base;
		hdr->prod = cpu_to_le32(base);
		hdr->cons = cpu_to_le32(base);
	}
	pos = base;
	check_invariants();

	while (in.n) {
		op = get8(&in);
		if (op & 0x80)
			local_op(&in, op & 0x7f);
		else
			peer_op(&in, op & 0x0f);
		check_invariants();
		/* Once broken, always broken, whatever the peer repairs. */
		if (broken) {
			ASSERT(vmc_ring_avail(&r) == -EPROTO);
			ASSERT(vmc_ring_space(&r) == -EPROTO);
			ASSERT(r.broken);
		}
	}
	free(hdr);
	free(data);
	free(snap);
	return 0;
}
