/* SPDX-License-Identifier: GPL-2.0 */
/*
 * An independent statement of which control messages are valid, written
 * from the field documentation in vmc_proto.h with byte offsets and
 * little-endian loads spelled out (no struct, no vmc_proto.h helper), for
 * differential tests against vmc_msg_check(): test/unit/proto_test.c and
 * test/fuzz/fuzz_proto.c.
 */
#ifndef PROTO_MODEL_H
#define PROTO_MODEL_H

#include <stddef.h>
#include <stdint.h>

static inline uint32_t pm_le16(const uint8_t *p)
{
	return p[0] | p[1] << 8;
}

static inline uint32_t pm_le32(const uint8_t *p)
{
	return p[0] | p[1] << 8 | p[2] << 16 | (uint32_t)p[3] << 24;
}

static inline int pm_zero(const uint8_t *p, size_t n)
{
	while (n--)
		if (*p++)
			return 0;
	return 1;
}

/* Exact wire size per type: 1 HELLO .. 9 BYE, 10 READY. */
static const uint32_t pm_size[11] = { 0, 24, 144, 68, 40, 16, 20, 20, 20, 12, 12 };

/* struct vmc_ring_ref: slot @0, page @4, pages @8 (12 bytes). */
static inline int pm_ring_ref_ok(const uint8_t *r)
{
	uint64_t slot = pm_le32(r), page = pm_le32(r + 4);
	uint64_t pages = pm_le32(r + 8);

	return slot < 4096 && page < 8192 && pages >= 1 && pages <= 256 &&
	       !(pages & (pages - 1)) && page + pages <= 8192;
}

/*
 * struct vmc_tuple: family @0, pad @1..3, lport @4, rport @6,
 * laddr @8..23, raddr @24..39.  IPv4 uses address bytes 0..3 only.
 */
static inline int pm_tuple_ok(const uint8_t *t)
{
	if (t[0] != 4 && t[0] != 6)
		return 0;
	if (t[1] || t[2] || t[3])
		return 0;
	if (!pm_le16(t + 4) || !pm_le16(t + 6))
		return 0;
	if (t[0] == 4 && (!pm_zero(t + 12, 12) || !pm_zero(t + 28, 12)))
		return 0;
	return 1;
}

/* 1 if vmc_msg_check(b, len) must accept, 0 if it must refuse. */
static inline int pm_msg_ok(const uint8_t *b, size_t len)
{
	uint32_t type, i, first, count;

	if (len < 8 || b[0] != 1)		/* header: version */
		return 0;
	type = b[1];
	if (type < 1 || type > 10)
		return 0;
	if (len != pm_size[type] || pm_le16(b + 2) != pm_size[type])
		return 0;
	if (pm_le32(b + 4))			/* flags */
		return 0;
	switch (type) {
	case 1:	/* HELLO: domid @8, features @12, pool_pages @16, slots @20 */
		return pm_le32(b + 8) < 0x7ff0 && pm_le32(b + 16) <= 8192 &&
		       pm_le32(b + 20) <= 4096;
	case 2:	/* POOL: first @8, count @12, gref[32] @16 */
		first = pm_le32(b + 8);
		count = pm_le32(b + 12);
		if (count < 1 || count > 32 || (uint64_t)first + count > 8192)
			return 0;
		for (i = count; i < 32; i++)
			if (pm_le32(b + 16 + 4 * i))
				return 0;
		return 1;
	case 3:	/* OFFER: conn @8, tuple @12, ring @52, seq_cut @64 */
		return pm_tuple_ok(b + 12) && pm_ring_ref_ok(b + 52);
	case 4:	/* ACCEPT: conn @8, peer_conn @12, ring @16, seq/isn @28.. */
		return pm_ring_ref_ok(b + 16);
	case 5:	/* REFUSE: conn @8, reason @12 */
		return pm_le32(b + 12) < 11;
	case 6:	/* CLOSE: conn @8, final @12, how @16: FIN 1 or RST 2 */
		return pm_le32(b + 16) == 1 || pm_le32(b + 16) == 2;
	case 7:	/* REVERT, REVERTED: how must be 0 */
	case 8:
		return pm_le32(b + 16) == 0;
	case 9:	/* BYE: reason @8 */
		return pm_le32(b + 8) < 11;
	case 10:	/* READY: pages @8 */
		return pm_le32(b + 8) <= 8192;
	}
	return 0;
}

#endif /* PROTO_MODEL_H */
