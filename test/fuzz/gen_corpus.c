// SPDX-License-Identifier: GPL-2.0
/*
 * Writes the committed seed corpus: `make -C test corpus` runs
 *   out/gen_corpus fuzz/corpus
 * which (re)creates fuzz/corpus/fuzz_proto/ (one valid message of each
 * type, boundary values and a few near misses), fuzz/corpus/fuzz_ring/
 * (operation sequences in the input format described at the top of
 * fuzz_ring.c) and fuzz/corpus/fuzz_xs/ (XenStore values).
 */
#include "vmc_proto.h"
#include "vmc_ring.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

static const char *dir;

static void put(const char *sub, const char *name, const void *buf, size_t len)
{
	char path[512];
	FILE *f;

	snprintf(path, sizeof(path), "%s/%s", dir, sub);
	mkdir(path, 0755);
	snprintf(path, sizeof(path), "%s/%s/%s", dir, sub, name);
	f = fopen(path, "wb");
	if (!f || fwrite(buf, 1, len, f) != len || fclose(f)) {
		perror(path);
		exit(1);
	}
}

/* ---- fuzz_proto ---- */

static void proto(const char *name, const void *m, bool valid)
{
	const struct vmc_msg_hdr *h = m;
	u32 len = vmc_msg_size(h->type);

	if ((vmc_msg_check(m, len) == 0) != valid) {
		fprintf(stderr, "gen_corpus: %s: not %s\n", name,
			valid ? "valid" : "invalid");
		exit(1);
	}
	put("fuzz_proto", name, m, len);
}

static void ref(struct vmc_ring_ref *r, u32 slot, u32 page, u32 pages)
{
	r->slot = cpu_to_le32(slot);
	r->page = cpu_to_le32(page);
	r->pages = cpu_to_le32(pages);
}

static void gen_proto(void)
{
	struct vmc_msg_hello hello;
	struct vmc_msg_pool pool;
	struct vmc_msg_conn_offer offer;
	struct vmc_msg_conn_accept acc;
	struct vmc_msg_conn_refuse refuse;
	struct vmc_msg_conn_end end;
	struct vmc_msg_bye bye;
	struct vmc_msg_ready ready;
	u32 i;

	vmc_msg_init(&hello, VMC_MSG_HELLO);
	hello.domid = cpu_to_le32(3);
	hello.features = cpu_to_le32(VMC_FEAT_ALL);
	hello.pool_pages = cpu_to_le32(1024);
	hello.slots = cpu_to_le32(256);
	proto("hello", &hello, true);
	hello.domid = cpu_to_le32(0x7ff0);
	proto("hello-bad-domid", &hello, false);

	vmc_msg_init(&pool, VMC_MSG_POOL);
	pool.first = cpu_to_le32(8);
	pool.count = cpu_to_le32(3);
	for (i = 0; i < 3; i++)
		pool.gref[i] = cpu_to_le32(0x100 + i);
	proto("pool", &pool, true);
	pool.gref[3] = cpu_to_le32(1);
	proto("pool-bad-gref", &pool, false);
	/* Boundaries: the last 32 pages of the pool, the very last page. */
	pool.first = cpu_to_le32(VMC_POOL_MAX_PAGES - 32);
	pool.count = cpu_to_le32(32);
	for (i = 0; i < 32; i++)
		pool.gref[i] = cpu_to_le32(0x200 + i);
	proto("pool-end", &pool, true);
	vmc_msg_init(&pool, VMC_MSG_POOL);
	pool.first = cpu_to_le32(VMC_POOL_MAX_PAGES - 1);
	pool.count = cpu_to_le32(1);
	pool.gref[0] = cpu_to_le32(0x300);
	proto("pool-last", &pool, true);
	hello.domid = cpu_to_le32(0x7fef);
	hello.pool_pages = cpu_to_le32(VMC_POOL_MAX_PAGES);
	hello.slots = cpu_to_le32(VMC_MAX_SLOTS);
	proto("hello-max", &hello, true);

	vmc_msg_init(&offer, VMC_MSG_CONN_OFFER);
	offer.conn = cpu_to_le32(1);
	offer.tuple.family = VMC_AF_INET;
	offer.tuple.lport = cpu_to_le16(40000);
	offer.tuple.rport = cpu_to_le16(5201);
	offer.tuple.laddr[0] = 10;
	offer.tuple.laddr[3] = 1;
	offer.tuple.raddr[0] = 10;
	offer.tuple.raddr[3] = 2;
	ref(&offer.ring, 1, 16, 16);
	offer.seq_cut = cpu_to_le32(0x12345678);
	proto("offer4", &offer, true);
	offer.tuple.family = VMC_AF_INET6;
	for (i = 0; i < 16; i++)
		offer.tuple.raddr[i] = 0xfe - i;
	proto("offer6", &offer, true);
	ref(&offer.ring, VMC_MAX_SLOTS - 1, VMC_POOL_MAX_PAGES - 256, 256);
	proto("offer6-ring-end", &offer, true);
	ref(&offer.ring, 1, 8190, 4);
	proto("offer-bad-ring", &offer, false);

	vmc_msg_init(&acc, VMC_MSG_CONN_ACCEPT);
	acc.conn = cpu_to_le32(1);
	acc.peer_conn = cpu_to_le32(7);
	ref(&acc.ring, 2, 32, 256);
	acc.isn_offerer = cpu_to_le32(0xabcdef01);
	acc.isn_accepter = cpu_to_le32(0x10fedcba);
	proto("accept", &acc, true);

	vmc_msg_init(&refuse, VMC_MSG_CONN_REFUSE);
	refuse.conn = cpu_to_le32(1);
	refuse.reason = cpu_to_le32(VMC_R_NO_MEMORY);
	proto("refuse", &refuse, true);

	vmc_msg_init(&end, VMC_MSG_CONN_CLOSE);
	end.conn = cpu_to_le32(7);
	end.final = cpu_to_le32(123456);
	end.how = cpu_to_le32(VMC_CLOSE_FIN);
	proto("close", &end, true);
	vmc_msg_init(&end, VMC_MSG_CONN_REVERT);
	end.final = cpu_to_le32(99);
	proto("revert", &end, true);
	vmc_msg_init(&end, VMC_MSG_CONN_REVERTED);
	end.final = cpu_to_le32(99);
	proto("reverted", &end, true);

	vmc_msg_init(&bye, VMC_MSG_BYE);
	bye.reason = cpu_to_le32(VMC_R_UNLOAD);
	proto("bye", &bye, true);

	vmc_msg_init(&ready, VMC_MSG_READY);
	ready.pages = cpu_to_le32(513);
	proto("ready", &ready, true);
}

/* ---- fuzz_ring: see the input format in fuzz_ring.c ---- */

#define CFG_SIZE(n)	(n)	/* ring size 4 << n (n = 7: 4096) */
#define CFG_CONSUMER	8
#define CFG_MSG		16
#define CFG_INIT_PROD	32

/*
 * opcodes: 0x80 | n local operation n % 6 (producer), n % 8 (consumer);
 * 0..15 peer operation
 */
#define L_IO		0x80	/* write / msg_write / read / msg peek+read */
#define L_COUNT		0x82	/* space / avail */
#define L_WAIT		0x83	/* prod_wait(u32) / cons_wait */
#define L_FLAG		0x84	/* peer_closed / peer_eof */
#define L_EVERY		0x86	/* consumer: cons_every (poll saw data) */
#define L_DRAINED	0x87	/* consumer: cons_drained */
#define P_IDX		0	/* u32 */
#define P_IDX_NEAR	1	/* s16 */
#define P_EVENT		2
#define P_LENWORD	4	/* s8 word offset, u8 kind, value */
#define P_BEHAVE	8	/* u16 amount, then data bytes */

struct seq {
	u8 b[512];
	size_t n;
};

static void b8(struct seq *s, u32 v)
{
	s->b[s->n++] = v;
}

static void b16(struct seq *s, u32 v)
{
	b8(s, v);
	b8(s, v >> 8);
}

static void b32(struct seq *s, u32 v)
{
	b16(s, v);
	b16(s, v >> 16);
}

static void start(struct seq *s, u8 cfg, u32 base)
{
	s->n = 0;
	b8(s, cfg);
	b32(s, base);
}

/* The peer produces @k bytes (or a record of @k % (size - 3) bytes). */
static void produce(struct seq *s, u32 k, u32 ndata)
{
	u32 i;

	b8(s, P_BEHAVE);
	b16(s, k);
	for (i = 0; i < ndata; i++)
		b8(s, 0x41 + i);
}

static void gen_ring(void)
{
	struct seq s;
	int i;

	/* Producer, bytes, 64-byte ring across 2^32; the peer consumes. */
	start(&s, CFG_SIZE(4), 0xffffffc0);
	for (i = 0; i < 6; i++) {
		b8(&s, L_IO);
		b16(&s, 20 + 7 * i);
		b8(&s, 0x11 * i);
		b8(&s, P_BEHAVE);
		b16(&s, 30);
	}
	b8(&s, L_WAIT);
	b32(&s, 16);
	b8(&s, P_BEHAVE);
	b16(&s, 64);
	b8(&s, L_COUNT);
	put("fuzz_ring", "prod-bytes", s.b, s.n);

	/* Consumer, bytes; the peer produces. */
	start(&s, CFG_SIZE(4) | CFG_CONSUMER, 0xfffffff0);
	for (i = 0; i < 6; i++) {
		produce(&s, 10 + i, 10 + i);
		b8(&s, L_IO);
		b16(&s, 17);
		b8(&s, L_WAIT);
	}
	put("fuzz_ring", "cons-bytes", s.b, s.n);

	/* Consumer, bytes, polled: every commit notifies until a drain. */
	start(&s, CFG_SIZE(4) | CFG_CONSUMER, 0xfffffff0);
	for (i = 0; i < 6; i++) {
		produce(&s, 10 + i, 10 + i);
		b8(&s, L_EVERY);
		produce(&s, 3, 3);
		b8(&s, L_IO);
		b16(&s, 9 + i);
		b8(&s, L_DRAINED);
	}
	put("fuzz_ring", "cons-polled", s.b, s.n);

	/* Producer, messages; the peer consumes whole records. */
	start(&s, CFG_SIZE(5) | CFG_MSG, 0xffffff80);
	for (i = 0; i < 6; i++) {
		b8(&s, L_IO);
		b16(&s, 3 + 9 * i);
		b8(&s, 1);
		b8(&s, P_BEHAVE);
		b16(&s, 100);
	}
	b8(&s, L_IO);
	b16(&s, 200);			/* EMSGSIZE */
	b8(&s, 0);
	put("fuzz_ring", "prod-msgs", s.b, s.n);

	/* Consumer, messages; the peer produces records, then lies. */
	start(&s, CFG_SIZE(5) | CFG_CONSUMER | CFG_MSG, 0xffffffa0);
	for (i = 0; i < 5; i++) {
		produce(&s, 5 + 11 * i, (5 + 11 * i) % 29);
		b8(&s, L_IO);
		b8(&s, 0);		/* max = size */
		b8(&s, 0);		/* read it */
		b8(&s, i & 1);		/* scribble over the length word? */
		if (i & 1)
			b32(&s, 0xffffffff);
	}
	produce(&s, 8, 8);
	b8(&s, P_LENWORD);
	b8(&s, 0);
	b8(&s, 1);
	b32(&s, 0xfffffffd);		/* room overflows u32 */
	b8(&s, L_IO);
	b8(&s, 1);
	b32(&s, 0xffffffff);
	b8(&s, L_COUNT);
	put("fuzz_ring", "cons-msgs-badlen", s.b, s.n);

	/* Consumer: prod jumps past cons + size, then is repaired. */
	start(&s, CFG_SIZE(2) | CFG_CONSUMER, 0x7ffffff0);
	produce(&s, 9, 9);
	b8(&s, L_IO);
	b16(&s, 4);
	b8(&s, P_IDX_NEAR);
	b16(&s, 17);
	b8(&s, L_COUNT);
	b8(&s, P_IDX_NEAR);
	b16(&s, 1);
	b8(&s, L_IO);
	b16(&s, 4);
	put("fuzz_ring", "cons-bad-prod", s.b, s.n);

	/* Producer: cons runs ahead of prod. */
	start(&s, CFG_SIZE(3), 100);
	b8(&s, L_IO);
	b16(&s, 10);
	b8(&s, P_IDX);
	b32(&s, 111);
	b8(&s, L_IO);
	b16(&s, 1);
	b8(&s, L_WAIT);
	b32(&s, 1);
	put("fuzz_ring", "prod-bad-cons", s.b, s.n);

	/* Consumer attaching to a ring with data already published. */
	start(&s, CFG_SIZE(7) | CFG_CONSUMER | CFG_INIT_PROD, 0);
	b32(&s, 4000);
	b8(&s, L_COUNT);
	b8(&s, L_IO);
	b16(&s, 5000);
	b8(&s, P_EVENT);
	b8(&s, 0);
	b8(&s, 20);
	b8(&s, L_FLAG);
	put("fuzz_ring", "cons-attach", s.b, s.n);
}

/* ---- fuzz_xs: parser byte, max byte, value ---- */

static void xs(const char *name, u8 which, u8 max, const char *val)
{
	u8 buf[1024];
	size_t len = strlen(val);

	buf[0] = which;
	buf[1] = max;
	memcpy(buf + 2, val, len);
	put("fuzz_xs", name, buf, len + 2);
}

static void gen_xs(void)
{
	xs("addrs-empty", 0, VMC_MAX_ADDRS, "");
	xs("addrs", 0, VMC_MAX_ADDRS,
	   "0a000001 fd000000000000000000000000000001 c0a80102");
	xs("addrs-max2", 0, 2, "0a000001 0a000002 0a000003");
	xs("addrs-bad", 0, VMC_MAX_ADDRS, "0a000001  0A000002 ");
	xs("chan", 1, 0, "12 7");
	xs("chan-max", 1, 0, "4294967295 4294967295");
	xs("chan-bad", 1, 0, "4294967296 1 ");
	xs("peer", 2, 0, "3 00163e000001");
	xs("peer-full", 2, 0,
	   "4294967295 00163e000001,00163e000002,00163e000003,00163e000004 "
	   "0a000001 fd000000000000000000000000000001");
	xs("peer-bad", 2, 0, "1 00163e000001, 0a000001");
	xs("inc", 3, 0, "0123456789abcdef");
	xs("inc-max", 3, 0, "ffffffffffffffff");
	xs("inc-zero", 3, 0, "0000000000000000");
	xs("inc-bad", 3, 0, "0123456789ABCDEF");
}

/* ---- fuzz_dgram: whole IP packets ---- */

static void dgram(const char *name, int v6, u32 payload, int frag)
{
	static u8 buf[128];
	u32 h = v6 ? 40 : 20, len = h + 8 + payload;

	memset(buf, 0, sizeof(buf));
	if (v6) {
		buf[0] = 0x60;
		buf[4] = (u8)((len - 40) >> 8);
		buf[5] = (u8)(len - 40);
		buf[6] = 17;
		buf[8] = 0xfd;		/* fd00::1 -> fd00::2 */
		buf[23] = 1;
		buf[24] = 0xfd;
		buf[39] = 2;
	} else {
		buf[0] = 0x45;
		buf[2] = (u8)(len >> 8);
		buf[3] = (u8)len;
		buf[6] = frag ? 0x20 : 0;
		buf[9] = 17;
		buf[12] = 10;		/* 10.0.0.1 -> 10.0.0.2 */
		buf[15] = 1;
		buf[16] = 10;
		buf[19] = 2;
	}
	buf[h] = 0x1f;
	buf[h + 2] = 0x1f;
	buf[h + 3] = 1;
	buf[h + 4] = (u8)((len - h) >> 8);
	buf[h + 5] = (u8)(len - h);
	put("fuzz_dgram", name, buf, len);
}

static void gen_dgram(void)
{
	dgram("v4", 0, 16, 0);
	dgram("v4-empty", 0, 0, 0);
	dgram("v4-frag", 0, 8, 1);
	dgram("v6", 1, 32, 0);
	dgram("v6-empty", 1, 0, 0);
}

int main(int argc, char **argv)
{
	if (argc != 2) {
		fprintf(stderr, "usage: gen_corpus DIR\n");
		return 2;
	}
	dir = argv[1];
	mkdir(dir, 0755);
	gen_proto();
	gen_ring();
	gen_xs();
	gen_dgram();
	return 0;
}
