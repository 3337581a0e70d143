/* SPDX-License-Identifier: GPL-2.0 */
/*
 * XenVMC control protocol between two DomU frontends.
 *
 * Each DomU pair shares one control channel: each side grants one page that
 * holds its outgoing control ring (struct vmc_ring_hdr at offset 0, message
 * data in the upper half), plus one interdomain event channel.  Control
 * messages travel in message mode (vmc_ring_msg_*).  Everything here is
 * shared with a peer that may run another kernel and may be hostile, so:
 * fixed-width little-endian fields, no kernel structures, exact sizes
 * checked at build time, and one validator per message that the receiver
 * runs on a private copy before it looks at any field.
 *
 * Messages (every one starts with struct vmc_msg_hdr):
 *
 *   HELLO         first message on a new channel: who I think I am, limits
 *   POOL          grant refs of a run of the sender's ring-pool pages
 *   CONN_OFFER    move this TCP connection's sender->receiver bytes to a
 *                 ring, starting at TCP sequence number seq_cut
 *   CONN_ACCEPT   yes; here is my ring for the other direction, and the
 *                 connection's initial sequence numbers as proof that I am
 *                 its real endpoint
 *   CONN_REFUSE   no (reason); the connection stays on TCP
 *   CONN_CLOSE    my direction ends at ring position final (FIN), or the
 *                 connection is reset (RST)
 *   CONN_REVERT   back to TCP (unload, suspend, tcp=0, MSG_OOB): I read
 *                 your ring up to position final and read it no more, and
 *                 I write no more to mine; hand your ring's bytes from final
 *                 on to TCP, then answer
 *   CONN_REVERTED the answer: I read your ring up to final; my bytes from
 *                 your final on are on TCP already
 *   BYE           channel going down (unload, suspend); revert everything
 *   READY         I have mapped your whole ring pool: offer connections
 */
#ifndef VMC_PROTO_H
#define VMC_PROTO_H

#ifdef __KERNEL__
#include <linux/types.h>
#include <linux/kernel.h>
#include <linux/stddef.h>
#include <linux/errno.h>
#include <linux/string.h>
#include <linux/build_bug.h>
#include <asm/byteorder.h>
#else
#include "vmc_user.h"
#endif

#define VMC_PROTO_VERSION	1

/* Control ring: one page; header at 0, data in the second half. */
#define VMC_CTRL_PAGE_SIZE	4096u
#define VMC_CTRL_DATA_OFF	2048u
#define VMC_CTRL_DATA_SIZE	2048u

/* Ring pool limits (per sending side of a pair). */
#define VMC_POOL_MAX_PAGES	8192u	/* 32 MiB */
#define VMC_POOL_REFS_PER_MSG	32u
#define VMC_MAX_SLOTS		4096u	/* ring headers per pool */
#define VMC_RING_MAX_PAGES	256u	/* 1 MiB per connection direction */

enum vmc_msg_type {
	VMC_MSG_HELLO = 1,
	VMC_MSG_POOL,
	VMC_MSG_CONN_OFFER,
	VMC_MSG_CONN_ACCEPT,
	VMC_MSG_CONN_REFUSE,
	VMC_MSG_CONN_CLOSE,
	VMC_MSG_CONN_REVERT,
	VMC_MSG_CONN_REVERTED,
	VMC_MSG_BYE,
	VMC_MSG_READY,
	VMC_MSG_NR
};

/*
 * struct vmc_msg_hdr - common header.
 * @version: VMC_PROTO_VERSION of the sender; other versions are refused
 * @type: enum vmc_msg_type
 * @len: whole message in bytes, header included; must equal the type's size
 * @flags: none defined; must be 0
 */
struct vmc_msg_hdr {
	u8 version;
	u8 type;
	__le16 len;
	__le32 flags;
};

/*
 * struct vmc_msg_hello - first message on a channel.
 * @domid: the sender's domid as it believes it; must match the domid Dom0
 *         lists for this channel's peer, or the channel is dropped
 * @features: VMC_FEAT_* bits the sender supports; only shared bits are used
 * @pool_pages: pages of the sender's ring pool (<= VMC_POOL_MAX_PAGES)
 * @slots: ring headers in the sender's pool (<= VMC_MAX_SLOTS)
 */
struct vmc_msg_hello {
	struct vmc_msg_hdr hdr;
	__le32 domid;
	__le32 features;
	__le32 pool_pages;
	__le32 slots;
};

#define VMC_FEAT_TCP		0x1u
#define VMC_FEAT_UDP		0x2u
/* The sender accepts TCP rings of 2 or 4 slots (vmc_ring_ref_in_pool()). */
#define VMC_FEAT_BIGRING	0x4u
#define VMC_FEAT_ALL		(VMC_FEAT_TCP | VMC_FEAT_UDP | VMC_FEAT_BIGRING)
/* A TCP ring spans at most this many adjacent slots of its pool. */
#define VMC_RING_MAX_SLOTS	4u

/*
 * struct vmc_msg_pool - grant refs for pool pages [first, first + count).
 * Page 0 .. ceil(slots / VMC_SLOTS_PER_PAGE) - 1 hold ring headers; the
 * rest hold ring data.
 * @first: index of the first page described
 * @count: 1 .. VMC_POOL_REFS_PER_MSG refs that follow
 * @gref: grant references, unused entries 0
 */
struct vmc_msg_pool {
	struct vmc_msg_hdr hdr;
	__le32 first;
	__le32 count;
	__le32 gref[VMC_POOL_REFS_PER_MSG];
};

#define VMC_SLOTS_PER_PAGE	(4096u / 128u)

/*
 * struct vmc_tuple - a TCP/UDP connection as the *sender* sees it.
 * @family: VMC_AF_INET or VMC_AF_INET6
 * @pad: must be 0
 * @lport, @rport: sender's local and remote port (host values, stored LE)
 * @laddr, @raddr: addresses in network byte order; IPv4 uses bytes 0..3
 *                 and the other 12 bytes must be 0
 */
struct vmc_tuple {
	u8 family;
	u8 pad[3];
	__le16 lport;
	__le16 rport;
	u8 laddr[16];
	u8 raddr[16];
};

#define VMC_AF_INET		4
#define VMC_AF_INET6		6

/*
 * struct vmc_ring_ref - where a ring lives in the sender's pool.
 * @slot: index of the struct vmc_ring_hdr (< VMC_MAX_SLOTS)
 * @page: first data page (< VMC_POOL_MAX_PAGES)
 * @pages: data pages, a power of two, 1 .. VMC_RING_MAX_PAGES: one slot's
 *         worth, or 2 or 4 slots' if the receiver announced VMC_FEAT_BIGRING
 * The receiver checks these against the pool it actually mapped
 * (vmc_ring_ref_in_pool()).
 */
struct vmc_ring_ref {
	__le32 slot;
	__le32 page;
	__le32 pages;
};

/*
 * struct vmc_msg_conn_offer - accelerate one direction of a connection.
 * @conn: sender's connection id (opaque to the receiver, echoed back)
 * @tuple: the connection from the sender's side
 * @ring: the ring the sender will write this connection's bytes into
 * @seq_cut: sender's TCP write_seq at which it stopped writing to TCP: the
 *           receiver reads TCP up to here, then the ring
 */
struct vmc_msg_conn_offer {
	struct vmc_msg_hdr hdr;
	__le32 conn;
	struct vmc_tuple tuple;
	struct vmc_ring_ref ring;
	__le32 seq_cut;
};

/*
 * struct vmc_msg_conn_accept - answer to an offer.
 * @conn: the offerer's id, echoed
 * @peer_conn: the accepter's own id for the same connection
 * @ring: the accepter's ring for the opposite direction
 * @seq_cut: accepter's write_seq where its TCP writes stopped
 * @isn_offerer, @isn_accepter: the initial sequence numbers of the TCP
 *           connection, proof that the accepter is its endpoint
 */
struct vmc_msg_conn_accept {
	struct vmc_msg_hdr hdr;
	__le32 conn;
	__le32 peer_conn;
	struct vmc_ring_ref ring;
	__le32 seq_cut;
	__le32 isn_offerer;
	__le32 isn_accepter;
};

/*
 * struct vmc_msg_conn_refuse - the connection stays on TCP.
 * @conn: the offerer's id, echoed
 * @reason: enum vmc_reason
 */
struct vmc_msg_conn_refuse {
	struct vmc_msg_hdr hdr;
	__le32 conn;
	__le32 reason;
};

/*
 * struct vmc_msg_conn_end - CLOSE, REVERT and REVERTED share this layout.
 * @conn: the *receiver's* id for the connection (from OFFER/ACCEPT)
 * @final: ring position (bytes since ring creation): CLOSE, the end of the
 *         sender's own ring; REVERT and REVERTED, how far the sender read
 *         the receiver's ring (the receiver hands the rest to TCP)
 * @how: CLOSE: VMC_CLOSE_FIN or VMC_CLOSE_RST; otherwise 0
 */
struct vmc_msg_conn_end {
	struct vmc_msg_hdr hdr;
	__le32 conn;
	__le32 final;
	__le32 how;
};

#define VMC_CLOSE_FIN		1
#define VMC_CLOSE_RST		2

/*
 * struct vmc_msg_bye - the channel goes down.
 * @reason: enum vmc_reason
 */
struct vmc_msg_bye {
	struct vmc_msg_hdr hdr;
	__le32 reason;
};

/*
 * struct vmc_msg_ready - the receiver's pool mapping is complete.
 * @pages: pages of the recipient's pool that the sender mapped (the
 *         recipient checks it against what it announced in HELLO)
 */
struct vmc_msg_ready {
	struct vmc_msg_hdr hdr;
	__le32 pages;
};

/* Why a connection is not (or no longer) accelerated; also on the wire. */
enum vmc_reason {
	VMC_R_NONE = 0,
	VMC_R_NO_PEER,		/* remote address is no co-resident peer */
	VMC_R_DISABLED,		/* acceleration switched off */
	VMC_R_NO_MEMORY,	/* pool or grant limit reached */
	VMC_R_AUTH,		/* ISN proof did not match */
	VMC_R_TIMEOUT,		/* handshake unanswered */
	VMC_R_UNSUPPORTED,	/* option not carried by rings (OOB, ULP) */
	VMC_R_PROTO,		/* peer broke the protocol or a ring */
	VMC_R_UNLOAD,		/* module unload */
	VMC_R_SUSPEND,		/* save, migration */
	VMC_R_PEER_GONE,	/* peer left the host or died */
	VMC_R_NR
};

static inline void vmc_proto_layout_check(void)
{
	BUILD_BUG_ON(sizeof(struct vmc_msg_hdr) != 8);
	BUILD_BUG_ON(offsetof(struct vmc_msg_hdr, len) != 2);
	BUILD_BUG_ON(sizeof(struct vmc_msg_hello) != 24);
	BUILD_BUG_ON(sizeof(struct vmc_msg_pool) != 16 + 4 * VMC_POOL_REFS_PER_MSG);
	BUILD_BUG_ON(offsetof(struct vmc_msg_pool, gref) != 16);
	BUILD_BUG_ON(sizeof(struct vmc_tuple) != 40);
	BUILD_BUG_ON(offsetof(struct vmc_tuple, laddr) != 8);
	BUILD_BUG_ON(sizeof(struct vmc_ring_ref) != 12);
	BUILD_BUG_ON(sizeof(struct vmc_msg_conn_offer) != 68);
	BUILD_BUG_ON(offsetof(struct vmc_msg_conn_offer, ring) != 52);
	BUILD_BUG_ON(sizeof(struct vmc_msg_conn_accept) != 40);
	BUILD_BUG_ON(offsetof(struct vmc_msg_conn_accept, isn_accepter) != 36);
	BUILD_BUG_ON(sizeof(struct vmc_msg_conn_refuse) != 16);
	BUILD_BUG_ON(sizeof(struct vmc_msg_conn_end) != 20);
	BUILD_BUG_ON(sizeof(struct vmc_msg_bye) != 12);
	BUILD_BUG_ON(sizeof(struct vmc_msg_ready) != 12);
}

/* The largest message, for receive buffers. */
#define VMC_MSG_MAX		sizeof(struct vmc_msg_pool)

/* ---- validators: each runs on a private copy; 0 or -EPROTO ---- */

static inline int vmc_check_ring_ref(const struct vmc_ring_ref *r)
{
	u32 slot = le32_to_cpu(r->slot);
	u32 page = le32_to_cpu(r->page);
	u32 pages = le32_to_cpu(r->pages);

	if (slot >= VMC_MAX_SLOTS || page >= VMC_POOL_MAX_PAGES)
		return -EPROTO;
	if (!pages || pages > VMC_RING_MAX_PAGES || (pages & (pages - 1)))
		return -EPROTO;
	if (pages > VMC_POOL_MAX_PAGES - page)	/* no overflow: page < max */
		return -EPROTO;
	return 0;
}

/*
 * vmc_ring_ref_in_pool - is @r a TCP ring of a pool of the geometry HELLO
 * announced: @hdr header pages, then slots of @ring_pages data pages each,
 * the first @tcp_slots of them for TCP (the datagram slots follow)?  A ring
 * spans n = pages / ring_pages adjacent slots, n a power of two, at most
 * @max_n (1 unless the receiver announced VMC_FEAT_BIGRING), starting at a
 * multiple of n: the header of its first slot, the data pages of all n.
 * Run after vmc_check_ring_ref() on the same private copy; 0 or -EPROTO.
 * No product overflows: slot < tcp_slots <= VMC_MAX_SLOTS and ring_pages
 * <= VMC_RING_MAX_PAGES (callers check both when they take the geometry).
 */
static inline int vmc_ring_ref_in_pool(const struct vmc_ring_ref *r, u32 hdr,
				       u32 ring_pages, u32 tcp_slots,
				       u32 max_n)
{
	u32 slot = le32_to_cpu(r->slot);
	u32 page = le32_to_cpu(r->page);
	u32 pages = le32_to_cpu(r->pages);
	u32 n;

	if (!ring_pages || pages % ring_pages)
		return -EPROTO;
	n = pages / ring_pages;
	if (!n || n > max_n || (n & (n - 1)) || slot % n)
		return -EPROTO;
	if (slot >= tcp_slots || n > tcp_slots - slot)
		return -EPROTO;
	if (page != hdr + slot * ring_pages)
		return -EPROTO;
	return 0;
}

static inline int vmc_check_tuple(const struct vmc_tuple *t)
{
	static const u8 zero[12];

	if (t->pad[0] || t->pad[1] || t->pad[2])
		return -EPROTO;
	if (!t->lport || !t->rport)
		return -EPROTO;
	if (t->family == VMC_AF_INET)
		return memcmp(t->laddr + 4, zero, 12) ||
		       memcmp(t->raddr + 4, zero, 12) ? -EPROTO : 0;
	return t->family == VMC_AF_INET6 ? 0 : -EPROTO;
}

static inline int vmc_check_hello(const struct vmc_msg_hello *m)
{
	if (le32_to_cpu(m->domid) >= 0x7ff0)	/* DOMID_FIRST_RESERVED */
		return -EPROTO;
	if (le32_to_cpu(m->pool_pages) > VMC_POOL_MAX_PAGES ||
	    le32_to_cpu(m->slots) > VMC_MAX_SLOTS)
		return -EPROTO;
	return 0;
}

static inline int vmc_check_pool(const struct vmc_msg_pool *m)
{
	u32 first = le32_to_cpu(m->first), count = le32_to_cpu(m->count), i;

	if (!count || count > VMC_POOL_REFS_PER_MSG ||
	    first >= VMC_POOL_MAX_PAGES || count > VMC_POOL_MAX_PAGES - first)
		return -EPROTO;
	for (i = count; i < VMC_POOL_REFS_PER_MSG; i++)
		if (m->gref[i])
			return -EPROTO;
	return 0;
}

static inline int vmc_check_conn_offer(const struct vmc_msg_conn_offer *m)
{
	if (vmc_check_tuple(&m->tuple))
		return -EPROTO;
	return vmc_check_ring_ref(&m->ring);
}

static inline int vmc_check_conn_accept(const struct vmc_msg_conn_accept *m)
{
	return vmc_check_ring_ref(&m->ring);
}

static inline int vmc_check_conn_refuse(const struct vmc_msg_conn_refuse *m)
{
	return le32_to_cpu(m->reason) < VMC_R_NR ? 0 : -EPROTO;
}

static inline int vmc_check_conn_end(const struct vmc_msg_conn_end *m)
{
	u32 how = le32_to_cpu(m->how);

	if (m->hdr.type == VMC_MSG_CONN_CLOSE)
		return how == VMC_CLOSE_FIN || how == VMC_CLOSE_RST ? 0 : -EPROTO;
	return how ? -EPROTO : 0;
}

static inline int vmc_check_bye(const struct vmc_msg_bye *m)
{
	return le32_to_cpu(m->reason) < VMC_R_NR ? 0 : -EPROTO;
}

static inline int vmc_check_ready(const struct vmc_msg_ready *m)
{
	return le32_to_cpu(m->pages) <= VMC_POOL_MAX_PAGES ? 0 : -EPROTO;
}

/* Exact size of each message type; 0 for an unknown type. */
static inline u32 vmc_msg_size(u8 type)
{
	switch (type) {
	case VMC_MSG_HELLO:
		return sizeof(struct vmc_msg_hello);
	case VMC_MSG_POOL:
		return sizeof(struct vmc_msg_pool);
	case VMC_MSG_CONN_OFFER:
		return sizeof(struct vmc_msg_conn_offer);
	case VMC_MSG_CONN_ACCEPT:
		return sizeof(struct vmc_msg_conn_accept);
	case VMC_MSG_CONN_REFUSE:
		return sizeof(struct vmc_msg_conn_refuse);
	case VMC_MSG_CONN_CLOSE:
	case VMC_MSG_CONN_REVERT:
	case VMC_MSG_CONN_REVERTED:
		return sizeof(struct vmc_msg_conn_end);
	case VMC_MSG_BYE:
		return sizeof(struct vmc_msg_bye);
	case VMC_MSG_READY:
		return sizeof(struct vmc_msg_ready);
	default:
		return 0;
	}
}

/*
 * vmc_msg_check - validate a control message copied out of the ring.
 * @buf: private copy, at least @len bytes, suitably aligned
 * @len: length the ring reported
 *
 * Checks the header (version, known type, exact length, no flags), then
 * runs the type's own validator.  Returns 0 or -EPROTO; only after 0 may the
 * caller cast @buf to the type's structure.
 */
static inline int vmc_msg_check(const void *buf, u32 len)
{
	const struct vmc_msg_hdr *h = buf;
	u32 size;

	if (len < sizeof(*h) || h->version != VMC_PROTO_VERSION || h->flags)
		return -EPROTO;
	size = vmc_msg_size(h->type);
	if (!size || len != size || le16_to_cpu(h->len) != size)
		return -EPROTO;

	switch (h->type) {
	case VMC_MSG_HELLO:
		return vmc_check_hello(buf);
	case VMC_MSG_POOL:
		return vmc_check_pool(buf);
	case VMC_MSG_CONN_OFFER:
		return vmc_check_conn_offer(buf);
	case VMC_MSG_CONN_ACCEPT:
		return vmc_check_conn_accept(buf);
	case VMC_MSG_CONN_REFUSE:
		return vmc_check_conn_refuse(buf);
	case VMC_MSG_CONN_CLOSE:
	case VMC_MSG_CONN_REVERT:
	case VMC_MSG_CONN_REVERTED:
		return vmc_check_conn_end(buf);
	case VMC_MSG_BYE:
		return vmc_check_bye(buf);
	case VMC_MSG_READY:
		return vmc_check_ready(buf);
	}
	return -EPROTO;
}

/* Fill a header for a message of @type (its size comes from the table). */
static inline void vmc_msg_init(void *buf, u8 type)
{
	struct vmc_msg_hdr *h = buf;
	u32 size = vmc_msg_size(type);

	memset(buf, 0, size);
	h->version = VMC_PROTO_VERSION;
	h->type = type;
	h->len = cpu_to_le16(size);
}

/* ---- XenStore values ----
 *
 * Layout (D = a DomU, P = one of its peers; only Dom0 writes outside data/):
 *
 *   /local/domain/D/data/xenvmc/inc       D's frontend: its incarnation,
 *                                         VMC_XS_INC format; written first
 *   /local/domain/D/data/xenvmc/state     D's frontend: "1" while loaded
 *   /local/domain/D/data/xenvmc/addrs     D's frontend: addresses it uses,
 *                                         VMC_XS_ADDRS format (a claim)
 *   /local/domain/D/data/xenvmc/chan/P    D's frontend: "<gref> <port>" of
 *                                         its control page for P; port 0
 *                                         when P allocates the channel
 *   /local/domain/D/xenvmc/inc            Dom0: the incarnation of D this
 *                                         table was built for, VMC_XS_INC;
 *                                         written before the entries
 *   /local/domain/D/xenvmc/peers/P        Dom0: P's entry, VMC_XS_PEER
 *   /local/domain/D/xenvmc/chan/P         Dom0: P's chan value, relayed
 *
 * D can write only under its data/ node and read only its own tree, so
 * everything under xenvmc/ comes from Dom0.  Values written by a DomU are
 * parsed only by the validators below (fuzzed in test/fuzz/).
 *
 * Incarnations.  A frontend that unloads (or suspends) sends BYE and
 * removes data/xenvmc; a load (or resume) writes it again.  When that
 * happens quickly, Dom0's watch may run only after the new values are
 * there, identical to the old ones: Dom0 would never see the DomU leave,
 * and peers that heard BYE would wait for a change that never comes.  So
 * every load and every resume picks a new random incarnation and writes
 * it to data/xenvmc/inc before addrs and state.  Dom0 adopts a new one
 * only on the watch event of that node, or on the watch's first event
 * (events come in the order of the writes, so whatever is handled after
 * it is newer than the incarnation); an older event that already reads it
 * takes the DomU off, as if its state were gone.  Either way its entry
 * gets a new gen in every table, the offers it made are withdrawn from
 * its peers, and its own table is wiped and rebuilt, xenvmc/inc first.
 * Dom0 relays a peer's offer to a DomU that came back only once that peer
 * has written a new one (a frontend with incarnations does, on the gen
 * change).  A frontend acts on its table only while xenvmc/inc is
 * absent or names its own incarnation: another one means the table, and
 * the offers relayed in it, belong to the incarnation that left.
 * Compatibility: state stays "1".  A frontend that writes no inc node is
 * handled as before and gets no xenvmc/inc; a Dom0 module without
 * incarnations ignores the node and writes no xenvmc/inc, and the
 * frontend then uses its table as before.  Offers from a peer without
 * incarnations are never withheld (it would not write them again): a
 * quick reload next to such a peer may still map its offer to the
 * incarnation that left, fail, and wait in "connect failed" until that
 * peer's entry changes, as before incarnations.
 *
 * VMC_XS_INC: exactly 16 lower-case hex digits, a u64 other than 0.
 *
 * VMC_XS_ADDRS: up to VMC_MAX_ADDRS tokens separated by one space; a token
 * is 8 lower-case hex digits (IPv4) or 32 (IPv6), network byte order.
 * VMC_XS_PEER: "<gen> <mac>[,<mac>...] <addrs>" where gen is decimal, a
 * mac is 12 lower-case hex digits, and <addrs> is VMC_XS_ADDRS (may be
 * empty).
 */
#define VMC_MAX_ADDRS		16
#define VMC_MAX_VIFS		4
#define VMC_XS_ADDRS_MAX	(VMC_MAX_ADDRS * 33)
#define VMC_XS_PEER_MAX		(11 + VMC_MAX_VIFS * 13 + VMC_XS_ADDRS_MAX + 2)
#define VMC_XS_INC_LEN		16

/* An address a DomU uses: VMC_AF_INET (bytes 0..3) or VMC_AF_INET6. */
struct vmc_addr {
	u8 family;
	u8 addr[16];
};

/*
 * vmc_addr_unicast - may a DomU claim, and a datagram carry, this address
 * (@family VMC_AF_*, @a network order)?  Not unspecified, loopback,
 * multicast, IPv4 broadcast or link-local; for IPv6 nothing in ::/120
 * (::, ::1 and the old IPv4-compatible range).  Dom0 lists no other
 * address, so no well-behaved peer writes a datagram from or to one; a
 * datagram to a loopback address would reach sockets the network cannot.
 */
static inline bool vmc_addr_unicast(u8 family, const u8 *a)
{
	static const u8 zero[15];

	if (family == VMC_AF_INET)
		return (a[0] | a[1] | a[2] | a[3]) && a[0] != 127 &&
		       a[0] < 224 && !(a[0] == 169 && a[1] == 254);
	return memcmp(a, zero, 15) && a[0] != 0xff &&
	       !(a[0] == 0xfe && (a[1] & 0xc0) == 0x80);
}

static inline int vmc_xs_hexval(char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	return -1;
}

/* Parse exactly 2 * @n lower-case hex digits at @s into @out. */
static inline int vmc_xs_hex(const char *s, u8 *out, unsigned int n)
{
	unsigned int i;
	int hi, lo;

	for (i = 0; i < n; i++) {
		hi = vmc_xs_hexval(s[2 * i]);
		lo = hi < 0 ? -1 : vmc_xs_hexval(s[2 * i + 1]);
		if (lo < 0)
			return -EINVAL;
		out[i] = hi << 4 | lo;
	}
	return 0;
}

/*
 * vmc_xs_parse_addrs - parse a VMC_XS_ADDRS value.
 * @s: the value, @len bytes, not necessarily NUL-terminated
 * Returns the number of addresses stored in @out (0 .. @max) or -EINVAL
 * for anything malformed: unknown token length, non-hex digit, doubled or
 * trailing separator, more than @max tokens.  Never reads past @len.
 */
static inline int vmc_xs_parse_addrs(const char *s, unsigned int len,
				     struct vmc_addr *out, unsigned int max)
{
	unsigned int pos = 0, tok, n = 0;

	while (pos < len) {
		for (tok = 0; pos + tok < len && s[pos + tok] != ' '; tok++)
			;
		if (n == max || (tok != 8 && tok != 32))
			return -EINVAL;
		memset(&out[n], 0, sizeof(out[n]));
		out[n].family = tok == 8 ? VMC_AF_INET : VMC_AF_INET6;
		if (vmc_xs_hex(s + pos, out[n].addr, tok / 2))
			return -EINVAL;
		n++;
		pos += tok;
		if (pos < len && ++pos == len)	/* a trailing space */
			return -EINVAL;
	}
	return n;
}

/* Write @n bytes as 2 * @n lower-case hex digits; returns the end. */
static inline char *vmc_xs_put_hex(char *p, const u8 *b, unsigned int n)
{
	static const char hex[] = "0123456789abcdef";

	while (n--) {
		*p++ = hex[*b >> 4];
		*p++ = hex[*b++ & 15];
	}
	return p;
}

/* Format @n addresses into @buf (VMC_XS_ADDRS_MAX + 1 bytes). */
static inline void vmc_xs_format_addrs(char *buf, const struct vmc_addr *a,
				       unsigned int n)
{
	unsigned int i;
	char *p = buf;

	for (i = 0; i < n && i < VMC_MAX_ADDRS; i++) {
		if (i)
			*p++ = ' ';
		p = vmc_xs_put_hex(p, a[i].addr,
				   a[i].family == VMC_AF_INET ? 4 : 16);
	}
	*p = '\0';
}

/*
 * vmc_xs_parse_inc - parse a VMC_XS_INC value.
 * @s: the value, @len bytes, not necessarily NUL-terminated
 * Returns 0 with the incarnation in *@inc, or -EINVAL for anything but
 * VMC_XS_INC_LEN lower-case hex digits not all 0.  Never reads past @len.
 */
static inline int vmc_xs_parse_inc(const char *s, unsigned int len, u64 *inc)
{
	unsigned int i;
	u64 v = 0;
	int d;

	if (len != VMC_XS_INC_LEN)
		return -EINVAL;
	for (i = 0; i < len; i++) {
		d = vmc_xs_hexval(s[i]);
		if (d < 0)
			return -EINVAL;
		v = v << 4 | d;
	}
	if (!v)
		return -EINVAL;
	*inc = v;
	return 0;
}

/* Format @inc into @buf (VMC_XS_INC_LEN + 1 bytes), as the parser wants. */
static inline void vmc_xs_format_inc(char *buf, u64 inc)
{
	u8 b[VMC_XS_INC_LEN / 2];
	unsigned int i;

	for (i = 0; i < sizeof(b); i++)
		b[i] = inc >> (8 * (sizeof(b) - 1 - i));
	*vmc_xs_put_hex(buf, b, sizeof(b)) = '\0';
}

/* Parse a decimal u32 token of @s ending at a space or @len; advances *pos. */
static inline int vmc_xs_u32(const char *s, unsigned int len,
			     unsigned int *pos, u32 *out)
{
	unsigned int i = *pos;
	u64 v = 0;

	if (i >= len || s[i] < '0' || s[i] > '9')
		return -EINVAL;
	for (; i < len && s[i] != ' '; i++) {
		if (s[i] < '0' || s[i] > '9' || i - *pos >= 10)
			return -EINVAL;
		v = v * 10 + (s[i] - '0');
	}
	if (v > 0xffffffffull)
		return -EINVAL;
	*out = v;
	*pos = i;
	return 0;
}

/*
 * vmc_xs_parse_chan - parse "<gref> <port>" (decimal u32s, one space).
 * Returns 0 or -EINVAL.
 */
static inline int vmc_xs_parse_chan(const char *s, unsigned int len,
				    u32 *gref, u32 *port)
{
	unsigned int pos = 0;

	if (vmc_xs_u32(s, len, &pos, gref) || pos >= len || s[pos] != ' ')
		return -EINVAL;
	pos++;
	if (vmc_xs_u32(s, len, &pos, port) || pos != len)
		return -EINVAL;
	return 0;
}

/*
 * struct vmc_peer_entry - a parsed VMC_XS_PEER value.
 */
struct vmc_peer_entry {
	u32 gen;
	unsigned int nr_macs;
	u8 macs[VMC_MAX_VIFS][6];
	int nr_addrs;
	struct vmc_addr addrs[VMC_MAX_ADDRS];
};

/* vmc_xs_parse_peer - parse a VMC_XS_PEER value; 0 or -EINVAL. */
static inline int vmc_xs_parse_peer(const char *s, unsigned int len,
				    struct vmc_peer_entry *e)
{
	unsigned int pos = 0;

	e->nr_macs = 0;
	if (vmc_xs_u32(s, len, &pos, &e->gen) || pos >= len || s[pos] != ' ')
		return -EINVAL;
	pos++;
	for (;;) {
		if (e->nr_macs == VMC_MAX_VIFS || len - pos < 12 ||
		    vmc_xs_hex(s + pos, e->macs[e->nr_macs], 6))
			return -EINVAL;
		e->nr_macs++;
		pos += 12;
		if (pos == len || s[pos] != ',')
			break;
		pos++;
	}
	if (pos == len) {
		e->nr_addrs = 0;
		return 0;
	}
	if (s[pos] != ' ' || ++pos == len)
		return -EINVAL;
	e->nr_addrs = vmc_xs_parse_addrs(s + pos, len - pos, e->addrs,
					 VMC_MAX_ADDRS);
	return e->nr_addrs < 0 ? -EINVAL : 0;
}

/*
 * Datagrams.  When both HELLOs carry VMC_FEAT_UDP, the last
 * VMC_DGRAM_SLOTS slots of each pool form one ring in message mode: the
 * header of the first of them, and the data pages of all of them (slots'
 * data pages are contiguous, so that is VMC_DGRAM_SLOTS times a ring's
 * pages).  Its sender writes each UDP datagram it sends to the receiver as
 * one message: the whole IP packet, an IPv4 header (options allowed, not
 * a fragment) or an IPv6 header (no extension header), then UDP.  UDP's
 * checksum field is as the sender's stack left it: complete, 0 (IPv4:
 * none), or, where that stack counted on a checksum offload, the
 * pseudo-header sum alone (RFC 768's sum over the pseudo-header, not
 * complemented); a receiver that may send a datagram on tells the last
 * from the others by computing that sum.  No
 * control message names that ring: both sides derive it from the pool
 * geometry of HELLO, and the other slots carry TCP.
 */
#define VMC_DGRAM_SLOTS		4u
#define VMC_DGRAM_MAX		(40u + 65535u)	/* IPv6 header + payload */
/* The most vmc_dgram_check() reads: an IPv4 header with options, UDP's. */
#define VMC_DGRAM_HDR_MAX	(60u + 8u)

/*
 * struct vmc_dgram - what vmc_dgram_check() found in a packet.
 * @family: VMC_AF_INET or VMC_AF_INET6
 * @saddr, @daddr: addresses, network order (IPv4: first 4 bytes)
 * @sport, @dport: UDP ports, host order
 * @hlen: bytes of IP header before the UDP header
 */
struct vmc_dgram {
	u8 family;
	u8 saddr[16];
	u8 daddr[16];
	u16 sport, dport;
	u32 hlen;
};

static inline u16 vmc_be16(const u8 *p)
{
	return (u16)(p[0] << 8 | p[1]);
}

/*
 * vmc_dgram_check - validate one datagram message of @len bytes, copied
 * out of the ring: the IP header must be exactly what our sender writes,
 * every length must agree with @len, and both addresses must be ones Dom0
 * could list (vmc_addr_unicast()).  0 or -EPROTO.  It reads only the
 * headers, at most the first VMC_DGRAM_HDR_MAX bytes at @p (all of them
 * when @len is less): the kernel keeps just those contiguous.
 */
static inline int vmc_dgram_check(const u8 *p, u32 len, struct vmc_dgram *d)
{
	u32 hlen;

	memset(d, 0, sizeof(*d));
	if (len < 28 || len > VMC_DGRAM_MAX)
		return -EPROTO;
	switch (p[0] >> 4) {
	case 4:
		hlen = (p[0] & 15u) * 4;
		if (hlen < 20 || hlen + 8 > len || vmc_be16(p + 2) != len ||
		    p[9] != 17 || (vmc_be16(p + 6) & 0x3fffu))
			return -EPROTO;		/* not UDP, or a fragment */
		d->family = VMC_AF_INET;
		memcpy(d->saddr, p + 12, 4);
		memcpy(d->daddr, p + 16, 4);
		break;
	case 6:
		hlen = 40;
		if (len < hlen + 8 || vmc_be16(p + 4) + hlen != len ||
		    p[6] != 17)
			return -EPROTO;		/* extension header, or not UDP */
		d->family = VMC_AF_INET6;
		memcpy(d->saddr, p + 8, 16);
		memcpy(d->daddr, p + 24, 16);
		break;
	default:
		return -EPROTO;
	}
	if (vmc_be16(p + hlen + 4) != len - hlen)
		return -EPROTO;			/* UDP length */
	if (!vmc_addr_unicast(d->family, d->saddr) ||
	    !vmc_addr_unicast(d->family, d->daddr))
		return -EPROTO;			/* not what our sender sends */
	d->sport = vmc_be16(p + hlen);
	d->dport = vmc_be16(p + hlen + 2);
	d->hlen = hlen;
	return 0;
}

#endif /* VMC_PROTO_H */
