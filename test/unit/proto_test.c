// SPDX-License-Identifier: GPL-2.0
/*
 * Unit tests for vmc_proto.h: every message type built with vmc_msg_init()
 * and valid fields passes vmc_msg_check(); every invalid variant fails.
 * Then the XenStore value parsers (addresses, channel, peer entry).
 * Inputs are checked in exactly-sized allocations (ASan build), so a
 * validator reading past the length it was given aborts the test.
 */
#include "vmc_proto.h"
#include "tcheck.h"
#include "fuzz/proto_model.h"

#include <stdint.h>

union any_msg {
	struct vmc_msg_hdr hdr;
	struct vmc_msg_hello hello;
	struct vmc_msg_pool pool;
	struct vmc_msg_conn_offer offer;
	struct vmc_msg_conn_accept accept;
	struct vmc_msg_conn_refuse refuse;
	struct vmc_msg_conn_end end;
	struct vmc_msg_bye bye;
	struct vmc_msg_ready ready;
	u8 b[VMC_MSG_MAX + 16];
};

static const char *const type_name[] = {
	"0", "HELLO", "POOL", "CONN_OFFER", "CONN_ACCEPT", "CONN_REFUSE",
	"CONN_CLOSE", "CONN_REVERT", "CONN_REVERTED", "BYE",
};

/* vmc_msg_check on a private, exactly-sized copy of the first @len bytes. */
static int check_len(const union any_msg *m, u32 len)
{
	u8 *copy = malloc(len ? len : 1);
	int ret;

	if (!copy)
		abort();
	memcpy(copy, m->b, len);
	ret = vmc_msg_check(copy, len);
	free(copy);
	return ret;
}

static int check(const union any_msg *m)
{
	return check_len(m, vmc_msg_size(m->hdr.type));
}

static void set_tuple4(struct vmc_tuple *t)
{
	static const u8 l[4] = { 10, 0, 0, 1 }, r[4] = { 10, 0, 0, 2 };

	t->family = VMC_AF_INET;
	t->lport = cpu_to_le16(40000);
	t->rport = cpu_to_le16(5201);
	memcpy(t->laddr, l, 4);
	memcpy(t->raddr, r, 4);
}

static void set_tuple6(struct vmc_tuple *t)
{
	int i;

	t->family = VMC_AF_INET6;
	t->lport = cpu_to_le16(1);
	t->rport = cpu_to_le16(65535);
	for (i = 0; i < 16; i++) {
		t->laddr[i] = 0xfd - i;
		t->raddr[i] = 0x20 + i;
	}
}

static void set_ref(struct vmc_ring_ref *r, u32 slot, u32 page, u32 pages)
{
	r->slot = cpu_to_le32(slot);
	r->page = cpu_to_le32(page);
	r->pages = cpu_to_le32(pages);
}

/*
 * Valid message number @variant (0..) of @type; returns false when the
 * type has no more variants.  Boundary values are valid on purpose.
 */
static bool make_valid(union any_msg *m, u8 type, int variant)
{
	u32 i;

	memset(m, 0xcc, sizeof(*m));
	vmc_msg_init(m, type);
	switch (type) {
	case VMC_MSG_HELLO:
		if (variant > 2)
			return false;
		m->hello.domid = cpu_to_le32(variant == 1 ? 0x7fef : 7);
		m->hello.features = cpu_to_le32(variant == 2 ? 0xffffffff :
						VMC_FEAT_ALL);
		m->hello.pool_pages = cpu_to_le32(variant ? 0 : VMC_POOL_MAX_PAGES);
		m->hello.slots = cpu_to_le32(variant ? 0 : VMC_MAX_SLOTS);
		return true;
	case VMC_MSG_POOL: {
		static const u32 fc[][2] = {
			{ 0, 32 }, { 8191, 1 }, { 100, 5 }, { 8160, 32 },
			{ 0, 1 },
		};

		if (variant >= (int)(sizeof(fc) / sizeof(fc[0])))
			return false;
		m->pool.first = cpu_to_le32(fc[variant][0]);
		m->pool.count = cpu_to_le32(fc[variant][1]);
		for (i = 0; i < fc[variant][1]; i++)
			m->pool.gref[i] = cpu_to_le32(0x1000 + i);
		return true;
	}
	case VMC_MSG_CONN_OFFER:
		if (variant > 3)
			return false;
		m->offer.conn = cpu_to_le32(0xdeadbeef);
		if (variant & 1)
			set_tuple6(&m->offer.tuple);
		else
			set_tuple4(&m->offer.tuple);
		if (variant < 2)
			set_ref(&m->offer.ring, 4095, 8191, 1);
		else
			set_ref(&m->offer.ring, 0, 8192 - 256, 256);
		m->offer.seq_cut = cpu_to_le32(0xffffffff);
		return true;
	case VMC_MSG_CONN_ACCEPT:
		if (variant > 2)
			return false;
		m->accept.conn = cpu_to_le32(1);
		m->accept.peer_conn = cpu_to_le32(2);
		if (variant == 0)
			set_ref(&m->accept.ring, 17, 129, 16);
		else if (variant == 1)
			set_ref(&m->accept.ring, 0, 0, 256);
		else
			set_ref(&m->accept.ring, 4095, 8190, 2);
		m->accept.seq_cut = cpu_to_le32(3);
		m->accept.isn_offerer = cpu_to_le32(0x12345678);
		m->accept.isn_accepter = cpu_to_le32(0x9abcdef0);
		return true;
	case VMC_MSG_CONN_REFUSE:
		if (variant >= VMC_R_NR)
			return false;
		m->refuse.conn = cpu_to_le32(9);
		m->refuse.reason = cpu_to_le32(variant);
		return true;
	case VMC_MSG_CONN_CLOSE:
		if (variant > 1)
			return false;
		m->end.conn = cpu_to_le32(5);
		m->end.final = cpu_to_le32(0xfffffff0);
		m->end.how = cpu_to_le32(variant ? VMC_CLOSE_RST : VMC_CLOSE_FIN);
		return true;
	case VMC_MSG_CONN_REVERT:
	case VMC_MSG_CONN_REVERTED:
		if (variant > 0)
			return false;
		m->end.conn = cpu_to_le32(5);
		m->end.final = cpu_to_le32(12345);
		return true;
	case VMC_MSG_BYE:
		if (variant >= VMC_R_NR)
			return false;
		m->bye.reason = cpu_to_le32(variant);
		return true;
	case VMC_MSG_READY:
		if (variant > 1)
			return false;
		m->ready.pages = cpu_to_le32(variant ? VMC_POOL_MAX_PAGES : 513);
		return true;
	}
	return false;
}

/* ---- tests ---- */

static void test_layout(void)
{
	vmc_proto_layout_check();
	CHECK_EQ(VMC_MSG_MAX, 144);
	CHECK_EQ(VMC_MSG_NR, 11);
	CHECK_EQ(VMC_R_NR, 11);
	CHECK_EQ(offsetof(struct vmc_msg_conn_offer, tuple), 12);
	CHECK_EQ(offsetof(struct vmc_msg_conn_accept, ring), 16);
	CHECK_EQ(offsetof(struct vmc_msg_conn_end, how), 16);
	CHECK_EQ(offsetof(struct vmc_msg_conn_refuse, reason), 12);
	CHECK_EQ(offsetof(struct vmc_msg_bye, reason), 8);
	CHECK_EQ(offsetof(struct vmc_msg_hello, slots), 20);
	CHECK_EQ(VMC_CTRL_DATA_OFF + VMC_CTRL_DATA_SIZE, VMC_CTRL_PAGE_SIZE);
	/* The largest message fits a control ring in message mode. */
	CHECK(VMC_MSG_MAX + 4 <= VMC_CTRL_DATA_SIZE);
}

static void test_msg_size(void)
{
	u32 t;

	for (t = 0; t < 256; t++)
		if (vmc_msg_size(t) != (t < VMC_MSG_NR ? pm_size[t] : 0))
			T_FAIL("vmc_msg_size(%u) = %u", t, vmc_msg_size(t));
}

static void test_msg_init(void)
{
	union any_msg m;
	u8 t;
	u32 i, size;

	for (t = 1; t < VMC_MSG_NR; t++) {
		memset(&m, 0xcc, sizeof(m));
		vmc_msg_init(&m, t);
		size = vmc_msg_size(t);
		CHECK_EQ(m.hdr.version, VMC_PROTO_VERSION);
		CHECK_EQ(m.hdr.type, t);
		CHECK_EQ(pm_le16(m.b + 2), size);
		CHECK_EQ(m.hdr.flags, 0);
		for (i = 4; i < size; i++)
			CHECK_EQ(m.b[i], 0);
		CHECK_EQ(m.b[size], 0xcc);	/* nothing past the message */
	}
}

static void test_valid_each_type(void)
{
	union any_msg m;
	int v, n;
	u8 t;

	for (t = 1; t < VMC_MSG_NR; t++) {
		for (v = 0, n = 0; make_valid(&m, t, v); v++, n++)
			if (check(&m) != 0)
				T_FAIL("%s variant %d rejected", type_name[t], v);
		CHECK(n > 0);
	}
}

/* Apply @mutate to every valid message of every type: all must fail. */
#define EACH_VALID(m, t, v)						\
	for (t = 1; t < VMC_MSG_NR; t++)				\
		for (v = 0; make_valid(&m, t, v); v++)

static void test_bad_version(void)
{
	static const u8 bad[] = { 0, 2, 3, 0x81, 0xff };
	union any_msg m;
	unsigned int i;
	int v;
	u8 t;

	EACH_VALID(m, t, v)
		for (i = 0; i < sizeof(bad); i++) {
			m.hdr.version = bad[i];
			if (check(&m) != -EPROTO)
				T_FAIL("%s with version %u", type_name[t], bad[i]);
		}
}

static void test_bad_type(void)
{
	union any_msg m;
	u32 nt;
	int v;
	u8 t;

	EACH_VALID(m, t, v)
		for (nt = 0; nt < 256; nt++) {
			if (nt == t || vmc_msg_size(nt) == vmc_msg_size(t))
				continue;	/* same layout: other tests */
			m.hdr.type = nt;
			if (check_len(&m, vmc_msg_size(t)) != -EPROTO)
				T_FAIL("%s relabelled as type %u accepted",
				       type_name[t], nt);
		}
}

static void test_bad_len_field(void)
{
	union any_msg m;
	u32 size, bad[6];
	unsigned int i;
	int v;
	u8 t;

	EACH_VALID(m, t, v) {
		size = vmc_msg_size(t);
		bad[0] = 0;
		bad[1] = 8;
		bad[2] = size - 1;
		bad[3] = size + 1;
		bad[4] = size + 0x100;
		bad[5] = 0xffff;
		for (i = 0; i < 6; i++) {
			m.hdr.len = cpu_to_le16(bad[i]);
			if (check(&m) != -EPROTO)
				T_FAIL("%s with len field %u", type_name[t], bad[i]);
		}
	}
}

static void test_bad_buffer_len(void)
{
	union any_msg m;
	u32 size, len;
	int v;
	u8 t;

	EACH_VALID(m, t, v) {
		size = vmc_msg_size(t);
		for (len = 0; len < size + 16; len++) {
			if (len == size)
				continue;
			if (check_len(&m, len) != -EPROTO)
				T_FAIL("%s (size %u) accepted with length %u",
				       type_name[t], size, len);
		}
		/* Both the field and the buffer say size + 4: still wrong. */
		m.hdr.len = cpu_to_le16(size + 4);
		if (check_len(&m, size + 4) != -EPROTO)
			T_FAIL("%s padded to %u accepted", type_name[t], size + 4);
	}
}

static void test_bad_flags(void)
{
	static const u32 bad[] = { 1, 0x80, 0x100, 0x10000, 0x80000000, ~0u };
	union any_msg m;
	unsigned int i;
	int v;
	u8 t;

	EACH_VALID(m, t, v)
		for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
			m.hdr.flags = cpu_to_le32(bad[i]);
			if (check(&m) != -EPROTO)
				T_FAIL("%s with flags %#x", type_name[t], bad[i]);
		}
}

static void test_hello_limits(void)
{
	union any_msg m;

	make_valid(&m, VMC_MSG_HELLO, 0);
	m.hello.domid = cpu_to_le32(0x7ff0);		/* DOMID_FIRST_RESERVED */
	CHECK_EQ(check(&m), -EPROTO);
	m.hello.domid = cpu_to_le32(0x7ff5);		/* DOMID_SELF */
	CHECK_EQ(check(&m), -EPROTO);
	m.hello.domid = cpu_to_le32(0xffffffff);
	CHECK_EQ(check(&m), -EPROTO);
	m.hello.domid = cpu_to_le32(0x10000);
	CHECK_EQ(check(&m), -EPROTO);
	make_valid(&m, VMC_MSG_HELLO, 0);
	m.hello.pool_pages = cpu_to_le32(VMC_POOL_MAX_PAGES + 1);
	CHECK_EQ(check(&m), -EPROTO);
	m.hello.pool_pages = cpu_to_le32(0xffffffff);
	CHECK_EQ(check(&m), -EPROTO);
	make_valid(&m, VMC_MSG_HELLO, 0);
	m.hello.slots = cpu_to_le32(VMC_MAX_SLOTS + 1);
	CHECK_EQ(check(&m), -EPROTO);
	m.hello.slots = cpu_to_le32(0x80000000);
	CHECK_EQ(check(&m), -EPROTO);
}

static void test_pool_bad(void)
{
	static const u32 fc[][2] = {
		{ 0, 0 }, { 5, 0 }, { 0, 33 }, { 0, 0xffffffff },
		{ 8192, 1 }, { 0xffffffff, 1 }, { 8190, 3 }, { 8161, 32 },
		{ 0xfffffff0, 32 }, { 0x80000000, 16 },
	};
	union any_msg m;
	unsigned int i;
	u32 count, j;

	for (i = 0; i < sizeof(fc) / sizeof(fc[0]); i++) {
		make_valid(&m, VMC_MSG_POOL, 4);	/* count 1 */
		m.pool.first = cpu_to_le32(fc[i][0]);
		m.pool.count = cpu_to_le32(fc[i][1]);
		if (check(&m) != -EPROTO)
			T_FAIL("pool first %#x count %#x accepted",
			       fc[i][0], fc[i][1]);
	}
	/* A nonzero gref beyond count, wherever it is. */
	for (count = 1; count < VMC_POOL_REFS_PER_MSG; count++)
		for (j = count; j < VMC_POOL_REFS_PER_MSG; j++) {
			make_valid(&m, VMC_MSG_POOL, 0);
			m.pool.count = cpu_to_le32(count);
			memset(&m.pool.gref[count], 0, 4 * (32 - count));
			CHECK_EQ(check(&m), 0);
			m.pool.gref[j] = cpu_to_le32(j == 31 ? 0x80000000 : 1);
			if (check(&m) != -EPROTO)
				T_FAIL("pool count %u with gref[%u] set", count, j);
		}
}

static void test_tuple_bad(void)
{
	static const u8 fam[] = { 0, 1, 2, 3, 5, 7, 10, 0x44, 0xff };
	union any_msg m;
	unsigned int i;
	int v;

	for (v = 0; v < 2; v++) {	/* IPv4, IPv6 */
		for (i = 0; i < sizeof(fam); i++) {
			make_valid(&m, VMC_MSG_CONN_OFFER, v);
			m.offer.tuple.family = fam[i];
			if (check(&m) != -EPROTO)
				T_FAIL("family %u accepted", fam[i]);
		}
		for (i = 0; i < 3; i++) {
			make_valid(&m, VMC_MSG_CONN_OFFER, v);
			m.offer.tuple.pad[i] = 0x40;
			if (check(&m) != -EPROTO)
				T_FAIL("pad[%u] accepted (v%d)", i, v);
		}
		make_valid(&m, VMC_MSG_CONN_OFFER, v);
		m.offer.tuple.lport = 0;
		CHECK_EQ(check(&m), -EPROTO);
		make_valid(&m, VMC_MSG_CONN_OFFER, v);
		m.offer.tuple.rport = 0;
		CHECK_EQ(check(&m), -EPROTO);
	}
	/* IPv4: any byte of either address beyond the first 4. */
	for (i = 4; i < 16; i++) {
		make_valid(&m, VMC_MSG_CONN_OFFER, 0);
		m.offer.tuple.laddr[i] = 1;
		if (check(&m) != -EPROTO)
			T_FAIL("IPv4 laddr[%u] set accepted", i);
		make_valid(&m, VMC_MSG_CONN_OFFER, 0);
		m.offer.tuple.raddr[i] = 0x80;
		if (check(&m) != -EPROTO)
			T_FAIL("IPv4 raddr[%u] set accepted", i);
	}
	/* ... while IPv6 uses all 16, and IPv4 all of bytes 0..3. */
	make_valid(&m, VMC_MSG_CONN_OFFER, 0);
	memset(m.offer.tuple.laddr, 0xff, 4);
	memset(m.offer.tuple.raddr, 0, 4);
	CHECK_EQ(check(&m), 0);
	make_valid(&m, VMC_MSG_CONN_OFFER, 1);
	memset(m.offer.tuple.laddr, 0xff, 16);
	CHECK_EQ(check(&m), 0);
}

/* Ring refs in both OFFER and ACCEPT. */
static void test_ring_ref_bad(void)
{
	static const u32 bad[][3] = {
		{ 4096, 0, 1 }, { 0xffffffff, 0, 1 },		/* slot */
		{ 0, 8192, 1 }, { 0, 0xffffffff, 1 },		/* page */
		{ 0, 0, 0 }, { 0, 0, 3 }, { 0, 0, 5 }, { 0, 0, 6 },
		{ 0, 0, 255 }, { 0, 0, 257 }, { 0, 0, 512 },
		{ 0, 0, 0x80000000 }, { 0, 0, 0xffffffff },	/* pages */
		{ 0, 8191, 2 }, { 0, 8064, 256 }, { 0, 8190, 4 },
		{ 0, 8191, 256 },				/* overflow */
	};
	struct vmc_ring_ref *ref;
	union any_msg m;
	unsigned int i;
	u8 t;

	for (t = VMC_MSG_CONN_OFFER; t <= VMC_MSG_CONN_ACCEPT; t++)
		for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
			make_valid(&m, t, 0);
			ref = t == VMC_MSG_CONN_OFFER ? &m.offer.ring :
							&m.accept.ring;
			set_ref(ref, bad[i][0], bad[i][1], bad[i][2]);
			if (check(&m) != -EPROTO)
				T_FAIL("%s ring slot %#x page %#x pages %#x accepted",
				       type_name[t], bad[i][0], bad[i][1],
				       bad[i][2]);
		}
	/* Every power of two up to the limit, at the pool's very end. */
	for (i = 1; i <= VMC_RING_MAX_PAGES; i <<= 1) {
		make_valid(&m, VMC_MSG_CONN_ACCEPT, 0);
		set_ref(&m.accept.ring, 4095, VMC_POOL_MAX_PAGES - i, i);
		if (check(&m) != 0)
			T_FAIL("pages %u at the end of the pool rejected", i);
	}
}

static void test_reason_bad(void)
{
	static const u32 bad[] = { VMC_R_NR, VMC_R_NR + 1, 0x100, 0x80000000,
				   0xffffffff };
	union any_msg m;
	unsigned int i;

	for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		make_valid(&m, VMC_MSG_CONN_REFUSE, 0);
		m.refuse.reason = cpu_to_le32(bad[i]);
		if (check(&m) != -EPROTO)
			T_FAIL("refuse reason %#x accepted", bad[i]);
		make_valid(&m, VMC_MSG_BYE, 0);
		m.bye.reason = cpu_to_le32(bad[i]);
		if (check(&m) != -EPROTO)
			T_FAIL("bye reason %#x accepted", bad[i]);
	}
}

static void test_close_how_bad(void)
{
	static const u32 bad[] = { 0, 3, 4, 0x100, 0x80000001, 0xffffffff };
	union any_msg m;
	unsigned int i;

	for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		make_valid(&m, VMC_MSG_CONN_CLOSE, 0);
		m.end.how = cpu_to_le32(bad[i]);
		if (check(&m) != -EPROTO)
			T_FAIL("close how %#x accepted", bad[i]);
	}
}

static void test_revert_how_bad(void)
{
	static const u32 bad[] = { VMC_CLOSE_FIN, VMC_CLOSE_RST, 3, 0x100,
				   0xffffffff };
	union any_msg m;
	unsigned int i;
	u8 t;

	for (t = VMC_MSG_CONN_REVERT; t <= VMC_MSG_CONN_REVERTED; t++)
		for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
			make_valid(&m, t, 0);
			m.end.how = cpu_to_le32(bad[i]);
			if (check(&m) != -EPROTO)
				T_FAIL("%s how %#x accepted", type_name[t], bad[i]);
		}
}

/*
 * Every single-byte change of every valid message, against the
 * independent model in fuzz/proto_model.h.
 */
static void test_single_byte_mutations(void)
{
	union any_msg m, orig;
	u32 size, off, val;
	int v, want, got;
	u8 t;

	EACH_VALID(orig, t, v) {
		size = vmc_msg_size(t);
		if (!pm_msg_ok(orig.b, size))
			T_FAIL("model rejects valid %s variant %d",
			       type_name[t], v);
		for (off = 0; off < size; off++)
			for (val = 0; val < 256; val++) {
				m = orig;
				m.b[off] = val;
				want = pm_msg_ok(m.b, size) ? 0 : -EPROTO;
				got = check_len(&m, size);
				if (got != want)
					T_FAIL("%s v%d byte %u = %#x: %d, model %d",
					       type_name[t], v, off, val, got,
					       want);
			}
	}
}

/* ---- XenStore values ---- */

/* Parsers on exactly-sized copies without a NUL: ASan sees any overread. */
static int addrs(const char *str, struct vmc_addr *out, unsigned int max)
{
	size_t len = strlen(str);
	char *copy = malloc(len ? len : 1);
	int ret;

	memcpy(copy, str, len);
	ret = vmc_xs_parse_addrs(copy, len, out, max);
	free(copy);
	return ret;
}

static int chan(const char *str, u32 *gref, u32 *port)
{
	size_t len = strlen(str);
	char *copy = malloc(len ? len : 1);
	int ret;

	memcpy(copy, str, len);
	ret = vmc_xs_parse_chan(copy, len, gref, port);
	free(copy);
	return ret;
}

static int peer(const char *str, struct vmc_peer_entry *e)
{
	size_t len = strlen(str);
	char *copy = malloc(len ? len : 1);
	int ret;

	memcpy(copy, str, len);
	ret = vmc_xs_parse_peer(copy, len, e);
	free(copy);
	return ret;
}

static int inc(const char *str, u64 *out)
{
	size_t len = strlen(str);
	char *copy = malloc(len ? len : 1);
	int ret;

	memcpy(copy, str, len);
	ret = vmc_xs_parse_inc(copy, len, out);
	free(copy);
	return ret;
}

#define V6A "fd000000000000000000000000000001"
#define V6B "20010db8000000000000000000abcdef"

static void test_xs_addrs_valid(void)
{
	struct vmc_addr a[VMC_MAX_ADDRS + 1];
	static const u8 v6b[16] = {
		0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xab, 0xcd, 0xef,
	};
	char buf[VMC_XS_ADDRS_MAX + 1];
	int i;

	CHECK_EQ(addrs("", a, VMC_MAX_ADDRS), 0);
	memset(a, 0xcc, sizeof(a));
	CHECK_EQ(addrs("0a000001", a, VMC_MAX_ADDRS), 1);
	CHECK_EQ(a[0].family, VMC_AF_INET);
	CHECK(a[0].addr[0] == 10 && a[0].addr[1] == 0 && a[0].addr[3] == 1);
	for (i = 4; i < 16; i++)
		CHECK_EQ(a[0].addr[i], 0);	/* IPv4 tail zeroed */
	CHECK_EQ(addrs("c0a80001 " V6B " ffffffff", a, VMC_MAX_ADDRS), 3);
	CHECK_EQ(a[1].family, VMC_AF_INET6);
	CHECK(!memcmp(a[1].addr, v6b, 16));
	CHECK_EQ(a[2].family, VMC_AF_INET);
	CHECK_EQ(a[2].addr[3], 0xff);
	/* Exactly max tokens. */
	buf[0] = 0;
	for (i = 0; i < VMC_MAX_ADDRS; i++)
		strcat(strcat(buf, i ? " " : ""), V6A);
	CHECK_EQ(strlen(buf), VMC_XS_ADDRS_MAX - 1);
	CHECK_EQ(addrs(buf, a, VMC_MAX_ADDRS), VMC_MAX_ADDRS);
	CHECK_EQ(addrs("0a000001 0a000002", a, 2), 2);
}

static void test_xs_addrs_invalid(void)
{
	static const char *const bad[] = {
		" ", " 0a000001", "0a000001 ", "0a000001  0a000002",
		"0a00001", "0a0000011", "0A000001", "0a00000g", "0a00 001",
		"fd00000000000000000000000000001",
		"fd0000000000000000000000000000011",
		"0a000001,0a000002", "0a000001\t0a000002", "0a000001\n",
		"-a000001", "0x000001",
	};
	struct vmc_addr a[VMC_MAX_ADDRS];
	char buf[VMC_XS_ADDRS_MAX + 16];
	unsigned int i;

	for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		if (addrs(bad[i], a, VMC_MAX_ADDRS) != -EINVAL)
			T_FAIL("addrs \"%s\" accepted", bad[i]);
	/* A NUL inside the value. */
	{
		char v[8] = { '0', 'a', '0', '0', '\0', '0', '0', '1' };

		CHECK_EQ(vmc_xs_parse_addrs(v, 8, a, VMC_MAX_ADDRS), -EINVAL);
	}
	/* One more token than max; any token with max 0. */
	buf[0] = 0;
	for (i = 0; i <= VMC_MAX_ADDRS; i++)
		strcat(strcat(buf, i ? " " : ""), "0a000001");
	CHECK_EQ(addrs(buf, a, VMC_MAX_ADDRS), -EINVAL);
	CHECK_EQ(addrs("0a000001 0a000002 0a000003", a, 2), -EINVAL);
	CHECK_EQ(addrs("0a000001", a, 0), -EINVAL);
}

static u32 xs_rng = 12345;

static u32 xs_rnd(void)
{
	xs_rng = xs_rng * 1103515245 + 12345;
	return xs_rng >> 8;
}

/* format(a) parses back to a; parse(s) formats back to s. */
static void test_xs_addrs_roundtrip(void)
{
	struct vmc_addr in[VMC_MAX_ADDRS], out[VMC_MAX_ADDRS];
	unsigned int n, i, j, iter;
	char *buf = malloc(VMC_XS_ADDRS_MAX + 1), again[VMC_XS_ADDRS_MAX + 1];
	int got;

	for (iter = 0; iter < 5000; iter++) {
		n = iter < 17 ? iter % 17 : xs_rnd() % (VMC_MAX_ADDRS + 1);
		memset(in, 0, sizeof(in));
		for (i = 0; i < n; i++) {
			/* all IPv6 in the first rounds: the longest value */
			in[i].family = iter < 17 || (xs_rnd() & 1) ?
				       VMC_AF_INET6 : VMC_AF_INET;
			for (j = 0; j < (in[i].family == VMC_AF_INET ? 4u : 16u); j++)
				in[i].addr[j] = xs_rnd();
		}
		vmc_xs_format_addrs(buf, in, n);
		if (strlen(buf) > VMC_XS_ADDRS_MAX)
			T_FAIL("%u addresses formatted to %zu bytes", n, strlen(buf));
		got = addrs(buf, out, VMC_MAX_ADDRS);
		if (got != (int)n)
			T_FAIL("\"%s\": %d addresses, formatted %u", buf, got, n);
		for (i = 0; i < n; i++)
			if (out[i].family != in[i].family ||
			    memcmp(out[i].addr, in[i].addr, 16))
				T_FAIL("\"%s\": address %u differs", buf, i);
		vmc_xs_format_addrs(again, out, n);
		CHECK(!strcmp(again, buf));
	}
	free(buf);
}

static void test_xs_chan(void)
{
	static const char *const bad[] = {
		"", " ", "1", "1 ", " 1 2", "1  2", "1 2 ", "1 2 3", "a 1",
		"1 b", "+1 2", "1 -2", "4294967296 1", "1 4294967296",
		"99999999999 1", "12345678901 1", "1\t2", "1,2", "0x1 2",
	};
	u32 g = 7, p = 7;
	unsigned int i;

	CHECK_EQ(chan("0 0", &g, &p), 0);
	CHECK(g == 0 && p == 0);
	CHECK_EQ(chan("4294967295 4294967295", &g, &p), 0);
	CHECK(g == 0xffffffff && p == 0xffffffff);
	CHECK_EQ(chan("8 31", &g, &p), 0);
	CHECK(g == 8 && p == 31);
	for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		if (chan(bad[i], &g, &p) != -EINVAL)
			T_FAIL("chan \"%s\" accepted", bad[i]);
}

static void test_xs_peer(void)
{
	static const char *const bad[] = {
		"", "1", "1 ", "x 00163e000001", "1  00163e000001",
		"1 00163e00000", "1 00163e0000011", "1 00163E000001",
		"1 00163e000001,", "1 ,00163e000001", "1 00163e000001,,00163e000002",
		"1 00163e000001 ", "1 00163e000001  0a000001",
		"1 00163e000001 0a00001", "1 00163e000001 0a000001 ",
		"1 00163e000001,00163e000002,00163e000003,00163e000004,00163e000005",
		"4294967296 00163e000001", "1 00163e000001;0a000001",
		"1 00163e000001x",
	};
	struct vmc_peer_entry e;
	unsigned int i;

	CHECK_EQ(peer("1 00163e000001", &e), 0);
	CHECK(e.gen == 1 && e.nr_macs == 1 && e.nr_addrs == 0);
	CHECK(e.macs[0][0] == 0 && e.macs[0][2] == 0x3e && e.macs[0][5] == 1);
	CHECK_EQ(peer("4294967295 00163e000001,00163e000002,00163e000003,"
		      "00163e0000ff 0a000001 " V6A, &e), 0);
	CHECK(e.gen == 0xffffffff && e.nr_macs == 4 && e.nr_addrs == 2);
	CHECK_EQ(e.macs[3][5], 0xff);
	CHECK(e.addrs[0].family == VMC_AF_INET &&
	      e.addrs[1].family == VMC_AF_INET6);
	for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		if (peer(bad[i], &e) != -EINVAL)
			T_FAIL("peer \"%s\" accepted", bad[i]);
}

static void test_xs_inc(void)
{
	static const char *const bad[] = {
		"", "0", "1", "0000000000000000", "000000000000001",
		"00000000000000001", "0123456789ABCDEF", "0123456789abcdeg",
		"0123456789abcde ", " 123456789abcdef", "0x23456789abcdef",
		"-123456789abcdef", "+123456789abcdef", "0123456789abcdef ",
		"0123456789abcdef\n", "1 0123456789abcdef",
	};
	u64 v = 7;
	unsigned int i;

	CHECK_EQ(inc("0123456789abcdef", &v), 0);
	CHECK(v == 0x0123456789abcdefull);
	CHECK_EQ(inc("ffffffffffffffff", &v), 0);
	CHECK(v == ~0ull);
	CHECK_EQ(inc("0000000000000001", &v), 0);
	CHECK(v == 1);
	CHECK_EQ(inc("8000000000000000", &v), 0);
	CHECK(v == 1ull << 63);
	for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		v = 7;
		if (inc(bad[i], &v) != -EINVAL)
			T_FAIL("inc \"%s\" accepted", bad[i]);
		CHECK(v == 7);	/* untouched when refused */
	}
	/* A NUL inside the value: length counts, the NUL is no digit. */
	{
		char z[16] = { '0', '1', '2', '3', '4', '5', '6', '\0',
			       '8', '9', 'a', 'b', 'c', 'd', 'e', 'f' };

		CHECK_EQ(vmc_xs_parse_inc(z, 16, &v), -EINVAL);
	}
}

/* format(v) is 16 digits that parse back to v, for any v but 0. */
static void test_xs_inc_roundtrip(void)
{
	char buf[VMC_XS_INC_LEN + 1];
	unsigned int i, b;
	u64 v, out;

	for (i = 0; i < 20000; i++) {
		if (i < 64)
			v = 1ull << i;			/* every single bit */
		else if (i < 128)
			v = ~0ull >> (i - 64);		/* every run of ones */
		else
			v = (u64)xs_rnd() << 40 ^ (u64)xs_rnd() << 20 ^ xs_rnd();
		if (!v)
			continue;
		memset(buf, 'x', sizeof(buf));
		vmc_xs_format_inc(buf, v);
		CHECK_EQ(strlen(buf), VMC_XS_INC_LEN);
		for (b = 0; b < VMC_XS_INC_LEN; b++)
			CHECK((buf[b] >= '0' && buf[b] <= '9') ||
			      (buf[b] >= 'a' && buf[b] <= 'f'));
		out = 0;
		CHECK_EQ(inc(buf, &out), 0);
		if (out != v)
			T_FAIL("%016llx formatted as %s, parsed back as %016llx",
			       (unsigned long long)v, buf,
			       (unsigned long long)out);
	}
	vmc_xs_format_inc(buf, 0);
	CHECK(!strcmp(buf, "0000000000000000"));
	CHECK_EQ(inc(buf, &out), -EINVAL);	/* 0 means none */
}

/* A packet as our sender writes it: IPv4 (hlen 20) or IPv6, UDP, payload. */
static u32 dgram(u8 *b, int v6, u32 payload)
{
	u32 h = v6 ? 40 : 20, len = h + 8 + payload;

	memset(b, 0, len);
	if (v6) {
		b[0] = 0x60;
		b[4] = (len - 40) >> 8;
		b[5] = (u8)(len - 40);
		b[6] = 17;
		b[8] = 0xfd;		/* fd00::1 -> fd00::12 */
		b[23] = 1;
		b[24] = 0xfd;
		b[39] = 0x12;
	} else {
		b[0] = 0x45;
		b[2] = len >> 8;
		b[3] = (u8)len;
		b[6] = 0x40;		/* DF: allowed */
		b[9] = 17;
		b[12] = 10;		/* 10.0.0.1 -> 10.0.0.12 */
		b[15] = 1;
		b[16] = 10;
		b[19] = 12;
	}
	b[h] = 0x30;		/* sport 0x3039 = 12345 */
	b[h + 1] = 0x39;
	b[h + 3] = 53;
	b[h + 4] = (len - h) >> 8;
	b[h + 5] = (u8)(len - h);
	return len;
}

/*
 * Addresses no peer may send from or to: a hostile peer's datagram to
 * 127.0.0.1 or ::1 would reach sockets bound to loopback only.
 */
static void test_dgram_addrs(void)
{
	static const u8 bad4[][4] = {
		{ 127, 0, 0, 1 }, { 0, 0, 0, 0 }, { 224, 0, 0, 1 },
		{ 255, 255, 255, 255 }, { 169, 254, 1, 1 },
	};
	static const u8 bad6[][16] = {
		{ [15] = 1 },				/* ::1 */
		{ 0 },					/* :: */
		{ [15] = 0x12 },			/* ::0.0.0.18 */
		{ 0xff, 0x02, [15] = 1 },		/* ff02::1 */
		{ 0xfe, 0x80, [15] = 1 },		/* fe80::1 */
	};
	static u8 b[128];
	struct vmc_dgram d;
	unsigned int i, to;
	u32 len;

	for (i = 0; i < sizeof(bad4) / sizeof(bad4[0]); i++) {
		for (to = 0; to < 2; to++) {
			len = dgram(b, 0, 10);
			memcpy(b + (to ? 16 : 12), bad4[i], 4);
			CHECK_EQ(vmc_dgram_check(b, len, &d), -EPROTO);
		}
	}
	for (i = 0; i < sizeof(bad6) / sizeof(bad6[0]); i++) {
		for (to = 0; to < 2; to++) {
			len = dgram(b, 1, 10);
			memcpy(b + (to ? 24 : 8), bad6[i], 16);
			CHECK_EQ(vmc_dgram_check(b, len, &d), -EPROTO);
		}
	}
	/* The edges that stay allowed: 126.255.255.255, 223.x, fec0::, ::100. */
	len = dgram(b, 0, 10);
	memcpy(b + 16, (const u8[]){ 126, 255, 255, 255 }, 4);
	CHECK_EQ(vmc_dgram_check(b, len, &d), 0);
	memcpy(b + 16, (const u8[]){ 223, 1, 2, 3 }, 4);
	CHECK_EQ(vmc_dgram_check(b, len, &d), 0);
	len = dgram(b, 1, 10);
	memcpy(b + 24, (const u8[16]){ 0xfe, 0xc0, [15] = 1 }, 16);
	CHECK_EQ(vmc_dgram_check(b, len, &d), 0);
	memcpy(b + 24, (const u8[16]){ [14] = 1 }, 16);
	CHECK_EQ(vmc_dgram_check(b, len, &d), 0);
}

static void test_dgram(void)
{
	static u8 b[VMC_DGRAM_MAX + 8];
	struct vmc_dgram d;
	u32 len;

	len = dgram(b, 0, 100);
	CHECK_EQ(vmc_dgram_check(b, len, &d), 0);
	CHECK(d.family == VMC_AF_INET && d.hlen == 20 && d.sport == 12345 &&
	      d.dport == 53 && d.saddr[0] == 10 && d.daddr[3] == 12);
	len = dgram(b, 1, 65535 - 8);		/* the largest: 64 KiB payload */
	CHECK_EQ(len, VMC_DGRAM_MAX);
	CHECK_EQ(vmc_dgram_check(b, len, &d), 0);
	CHECK(d.family == VMC_AF_INET6 && d.hlen == 40 && d.saddr[0] == 0xfd &&
	      d.daddr[15] == 0x12);
	CHECK_EQ(vmc_dgram_check(b, len + 1, &d), -EPROTO);	/* beyond max */
	len = dgram(b, 0, 0);
	CHECK_EQ(vmc_dgram_check(b, len, &d), 0);		/* empty payload */
	CHECK_EQ(vmc_dgram_check(b, len - 1, &d), -EPROTO);	/* short */
	b[7] = 1;						/* fragment offset */
	CHECK_EQ(vmc_dgram_check(b, len, &d), -EPROTO);
	len = dgram(b, 0, 10);
	b[6] |= 0x20;						/* more fragments */
	CHECK_EQ(vmc_dgram_check(b, len, &d), -EPROTO);
	len = dgram(b, 0, 10);
	b[9] = 6;						/* TCP */
	CHECK_EQ(vmc_dgram_check(b, len, &d), -EPROTO);
	len = dgram(b, 0, 10);
	b[0] = 0x44;						/* ihl 16 bytes */
	CHECK_EQ(vmc_dgram_check(b, len, &d), -EPROTO);
	len = dgram(b, 0, 10);
	b[3]++;							/* IP total length */
	CHECK_EQ(vmc_dgram_check(b, len, &d), -EPROTO);
	len = dgram(b, 0, 10);
	b[25]++;						/* UDP length */
	CHECK_EQ(vmc_dgram_check(b, len, &d), -EPROTO);
	len = dgram(b, 1, 10);
	b[6] = 0;						/* hop-by-hop header */
	CHECK_EQ(vmc_dgram_check(b, len, &d), -EPROTO);
	len = dgram(b, 1, 10);
	b[0] = 0x50;						/* version 5 */
	CHECK_EQ(vmc_dgram_check(b, len, &d), -EPROTO);
	test_dgram_addrs();
}

/*
 * vmc_ring_ref_in_pool() against a brute-force statement of the rule, for
 * every (slot, page, pages) around a small pool: 3 header pages, rings of
 * 2 pages, 6 TCP slots.  Accepted exactly when the ring is the header of
 * one slot plus the data of n = 1, 2 or 4 (<= max_n) adjacent slots from
 * a multiple of n, all of them TCP slots.
 */
static void test_ring_in_pool(void)
{
	const u32 hdr = 3, rp = 2, tcp = 6;
	struct vmc_ring_ref r;
	u32 slot, page, pages, n, max_n;
	unsigned int ok = 0;
	bool want;

	for (max_n = 1; max_n <= VMC_RING_MAX_SLOTS; max_n *= 2)
		for (slot = 0; slot < tcp + 3; slot++)
			for (page = 0; page < hdr + (tcp + 3) * rp; page++)
				for (pages = 0; pages <= 12; pages++) {
					n = pages / rp;
					want = pages && !(pages % rp) &&
					       (n == 1 || n == 2 || n == 4) &&
					       n <= max_n && !(slot % n) &&
					       slot + n <= tcp &&
					       page == hdr + slot * rp;
					set_ref(&r, slot, page, pages);
					if ((vmc_ring_ref_in_pool(&r, hdr, rp, tcp,
								  max_n) == 0) !=
					    want)
						T_FAIL("slot %u page %u pages %u max_n %u: %s",
						       slot, page, pages, max_n,
						       want ? "refused" : "accepted");
					ok += want;
				}
	/* 6 + (6 + 3) + (6 + 3 + 1) rings over max_n 1, 2, 4. */
	CHECK_EQ(ok, 25u);
	/* A pool with no TCP slot (all datagrams) or no ring pages. */
	set_ref(&r, 0, 3, 2);
	CHECK_EQ(vmc_ring_ref_in_pool(&r, 3, 2, 0, 4), -EPROTO);
	CHECK_EQ(vmc_ring_ref_in_pool(&r, 3, 0, 6, 4), -EPROTO);
	/* The largest: slot and size at the limits, no overflow. */
	set_ref(&r, VMC_MAX_SLOTS - 4, 1 + (VMC_MAX_SLOTS - 4) * 64, 256);
	CHECK_EQ(vmc_ring_ref_in_pool(&r, 1, 64, VMC_MAX_SLOTS, 4), 0);
	CHECK_EQ(vmc_ring_ref_in_pool(&r, 1, 64, VMC_MAX_SLOTS - 1, 4),
		 -EPROTO);
}

int main(void)
{
	RUN(test_layout);
	RUN(test_msg_size);
	RUN(test_msg_init);
	RUN(test_valid_each_type);
	RUN(test_bad_version);
	RUN(test_bad_type);
	RUN(test_bad_len_field);
	RUN(test_bad_buffer_len);
	RUN(test_bad_flags);
	RUN(test_hello_limits);
	RUN(test_pool_bad);
	RUN(test_tuple_bad);
	RUN(test_ring_ref_bad);
	RUN(test_ring_in_pool);
	RUN(test_reason_bad);
	RUN(test_close_how_bad);
	RUN(test_revert_how_bad);
	RUN(test_single_byte_mutations);
	RUN(test_xs_addrs_valid);
	RUN(test_xs_addrs_invalid);
	RUN(test_xs_addrs_roundtrip);
	RUN(test_xs_chan);
	RUN(test_xs_peer);
	RUN(test_xs_inc);
	RUN(test_xs_inc_roundtrip);
	RUN(test_dgram);
	return T_DONE("proto_test");
}
