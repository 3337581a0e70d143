/* SPDX-License-Identifier: GPL-2.0 */
/*
 * XenVMC single-producer/single-consumer ring on granted pages.
 *
 * Header-only, so the exact code the modules run is also compiled in user
 * space by test/ (with test/vmc_user.h standing in for the kernel headers),
 * where it is unit-tested, stressed under ThreadSanitizer and fuzzed.
 *
 * Who owns what.  A ring carries bytes one way.  The sending domain (the
 * producer) allocates and grants the pages; the receiving domain (the
 * consumer) maps them writable, because it must publish how far it has read.
 * Both sides can therefore write every byte of the shared area, so:
 *   - each side keeps its own index in private memory (struct vmc_ring) and
 *     only ever *publishes* it; it never reads its own index back;
 *   - the peer's index is read exactly once per operation, validated by
 *     vmc_ring_check() -- the only way an index from shared memory enters our
 *     arithmetic -- and a bad one latches the ring broken (-EPROTO);
 *   - the ring size is private (agreed at setup, validated by the protocol)
 *     and never read from shared memory;
 *   - no lock and no kernel structure lives in shared memory.
 *
 * Shared layout (all fields little-endian, fixed width; peers may run
 * different kernels):
 *
 *   struct vmc_ring_hdr            128 bytes, two cache lines
 *     line 0, written by the producer only:
 *       prod        bytes produced since the ring was created, free-running
 *                   u32 (wraps at 2^32; size divides 2^32 so positions stay
 *                   consistent across the wrap)
 *       cons_event  "notify me when cons passes this": the producer asks to
 *                   be woken when enough space is free (see below)
 *       prod_flags  VMC_RING_F_* set by the producer (EOF)
 *       pad0        must be zero, ignored by the reader
 *     line 1, written by the consumer only:
 *       cons        bytes consumed since the ring was created, free-running
 *       prod_event  "notify me when prod passes this": the consumer asks to
 *                   be woken when data arrives
 *       cons_flags  VMC_RING_F_* set by the consumer (CLOSED)
 *       cons_wake   non-zero: "notify me after every commit", whatever
 *                   prod_event says (the consumer is polled with data
 *                   unread, see vmc_ring_cons_every()); zero from a peer
 *                   that never sets it
 *       pad1        must be zero, ignored by the reader
 *   data[size]     size a power of two, 4 .. VMC_RING_MAX_SIZE bytes; may
 *                   live in other pages than the header.
 *
 * Invariant a well-behaved peer keeps: 0 <= prod - cons <= size (u32 math).
 *
 * Notification suppression (the event-index scheme of Xen's io/ring.h).  The
 * consumer asks for an event only right before it sleeps, by writing
 * prod_event = cons + 1, then re-checks prod; the producer, after publishing
 * prod, sends an event only if prod_event lies in (old prod, new prod].  The
 * same holds in the other direction with cons_event for a producer waiting
 * for space.  A consumer polled edge-triggered with data unread (epoll's
 * EPOLLET wants an edge per arrival) sets cons_wake instead, until it
 * drains the ring: see vmc_ring_cons_every().  A store of the event index
 * followed by a load of the other side's index, against a store of the
 * index followed by a load of the event index, is the store-buffering
 * pattern: each side needs a full barrier (smp_mb) between its store and
 * its load, or both could miss each other and sleep forever.  The event
 * indices and cons_wake need no validation: any value only makes us send
 * one spurious event per commit, or not wake a peer that lied about
 * wanting one.
 *
 * Message (datagram) mode: records of a __le32 length followed by the
 * payload, each record starting at a 4-byte aligned position, so the length
 * word never straddles the wrap; the payload may, and is copied out in two
 * pieces.  A length is checked against the bytes available and the caller's
 * maximum before anything is copied.
 *
 * Concurrency contract: one producer context and one consumer context per
 * ring; callers serialise their own side (e.g. the socket lock).
 */
#ifndef VMC_RING_H
#define VMC_RING_H

#ifdef __KERNEL__
#include <linux/types.h>
#include <linux/kernel.h>
#include <linux/stddef.h>
#include <linux/compiler.h>
#include <linux/errno.h>
#include <linux/string.h>
#include <linux/bits.h>
#include <linux/build_bug.h>
#include <asm/barrier.h>
#include <asm/byteorder.h>
#else
#include "vmc_user.h"
#endif

#define VMC_RING_MAX_SIZE	0x1000000u	/* 16 MiB of data per ring */
#define VMC_RING_MIN_SIZE	4u
#define VMC_RING_MSG_ALIGN	4u

/* prod_flags */
#define VMC_RING_F_EOF		BIT(0)	/* producer will write nothing after prod */
/* cons_flags */
#define VMC_RING_F_CLOSED	BIT(0)	/* consumer will read nothing more */

struct vmc_ring_hdr {
	/* written by the producer only */
	__le32 prod;
	__le32 cons_event;
	__le32 prod_flags;
	__le32 pad0[13];
	/* written by the consumer only */
	__le32 cons;
	__le32 prod_event;
	__le32 cons_flags;
	__le32 cons_wake;
	__le32 pad1[12];
};

/* One end of a ring, in private memory.  Only the role's own fields are used. */
struct vmc_ring {
	struct vmc_ring_hdr *hdr;	/* shared, peer-writable */
	u8 *data;			/* shared, peer-writable, size bytes */
	u32 size;			/* private copy, power of two */
	u32 pos;			/* our own index: prod or cons */
	u32 peer;			/* last validated peer index */
	bool broken;			/* latched on the first bad index */
	bool every;			/* consumer: cons_wake set by poll() */
};

static inline void vmc_ring_layout_check(void)
{
	BUILD_BUG_ON(sizeof(struct vmc_ring_hdr) != 128);
	BUILD_BUG_ON(offsetof(struct vmc_ring_hdr, prod) != 0);
	BUILD_BUG_ON(offsetof(struct vmc_ring_hdr, cons_event) != 4);
	BUILD_BUG_ON(offsetof(struct vmc_ring_hdr, prod_flags) != 8);
	BUILD_BUG_ON(offsetof(struct vmc_ring_hdr, cons) != 64);
	BUILD_BUG_ON(offsetof(struct vmc_ring_hdr, prod_event) != 68);
	BUILD_BUG_ON(offsetof(struct vmc_ring_hdr, cons_flags) != 72);
	BUILD_BUG_ON(offsetof(struct vmc_ring_hdr, cons_wake) != 76);
}

/*
 * vmc_ring_check - the one place a peer's index is judged.
 * @prod, @cons: the two indices, one of them just read from shared memory
 * @size: the private ring size
 *
 * Returns the number of bytes in the ring, or -EPROTO when the pair is
 * impossible (more bytes in flight than the ring holds, or the peer moved
 * its index backwards past ours).
 */
static inline long vmc_ring_check(u32 prod, u32 cons, u32 size)
{
	u32 used = prod - cons;

	if (unlikely(used > size))
		return -EPROTO;
	return used;
}

/*
 * vmc_ring_init - set up one end of a ring.
 * @r: private end
 * @hdr: shared header
 * @data: shared data area
 * @size: data bytes; a power of two in [VMC_RING_MIN_SIZE, VMC_RING_MAX_SIZE]
 * @producer: true for the end that creates (and zeroes) the shared state
 *
 * The consumer attaches to a fresh ring (cons 0; the producer may already
 * have published data, which is validated here like any later prod).
 * Returns 0, -EINVAL for a bad size, or -EPROTO.
 */
static inline int vmc_ring_init(struct vmc_ring *r, struct vmc_ring_hdr *hdr,
				void *data, u32 size, bool producer)
{
	long used;

	if (size < VMC_RING_MIN_SIZE || size > VMC_RING_MAX_SIZE ||
	    (size & (size - 1)))
		return -EINVAL;
	r->hdr = hdr;
	r->data = data;
	r->size = size;
	r->broken = false;
	r->every = false;
	if (producer) {
		memset(hdr, 0, sizeof(*hdr));
		r->pos = 0;
		r->peer = 0;
		return 0;
	}
	r->pos = 0;
	/* Pairs with the release of prod in vmc_ring_produce(). */
	r->peer = le32_to_cpu(smp_load_acquire(&hdr->prod));
	used = vmc_ring_check(r->peer, r->pos, size);
	if (used < 0) {
		WRITE_ONCE(r->broken, true);
		return used;
	}
	return 0;
}

/* Pointer and length of the contiguous piece of data at @pos, up to @len. */
static inline u8 *vmc_ring_seg(const struct vmc_ring *r, u32 pos, u32 len,
			       u32 *seg)
{
	u32 off = pos & (r->size - 1);

	*seg = min_t(u32, len, r->size - off);
	return r->data + off;
}

/* ---- producer side ---- */

/*
 * vmc_ring_space - bytes the producer may write now, or -EPROTO.
 * The acquire load of cons pairs with the consumer's release store in
 * vmc_ring_consume(): the consumer's reads of the data before cons are
 * complete before we overwrite those bytes.
 */
static inline long vmc_ring_space(struct vmc_ring *r)
{
	u32 cons;
	long used;

	if (unlikely(r->broken))
		return -EPROTO;
	/* Pairs with the release of cons in vmc_ring_consume(). */
	cons = le32_to_cpu(smp_load_acquire(&r->hdr->cons));
	used = vmc_ring_check(r->pos, cons, r->size);
	if (unlikely(used < 0)) {
		WRITE_ONCE(r->broken, true);
		return used;
	}
	r->peer = cons;
	return r->size - used;
}

/*
 * Lock-free looks for poll(): the same judgement as vmc_ring_space() and
 * vmc_ring_avail(), without touching the end's private state, so they may
 * run beside the context that owns the end.  The acquire loads pair with
 * the release stores in vmc_ring_consume() and vmc_ring_produce().
 */
static inline long vmc_ring_space_peek(const struct vmc_ring *r)
{
	long used;
	u32 cons;

	if (READ_ONCE(r->broken))
		return -EPROTO;
	/* Pairs with the release of cons in vmc_ring_consume(). */
	cons = le32_to_cpu(smp_load_acquire(&r->hdr->cons));
	used = vmc_ring_check(READ_ONCE(r->pos), cons, r->size);
	return used < 0 ? used : r->size - used;
}

static inline long vmc_ring_avail_peek(const struct vmc_ring *r)
{
	u32 prod;

	if (READ_ONCE(r->broken))
		return -EPROTO;
	/* Pairs with the release of prod in vmc_ring_produce(). */
	prod = le32_to_cpu(smp_load_acquire(&r->hdr->prod));
	return vmc_ring_check(prod, READ_ONCE(r->pos), r->size);
}

/*
 * vmc_ring_cons_ask - like vmc_ring_cons_wait(), for poll() and readers
 * that return EAGAIN: asks for an event once @want bytes (1..size) are
 * available, without touching private state, and returns the bytes
 * available re-checked.  poll() with SO_RCVLOWAT asks for more than one:
 * an event on the next byte would come too early, and none would follow
 * (prod_event is already behind prod).  The smp_mb() pairs with the one
 * in vmc_ring_produce().  Its caller serialises it with the consumer's
 * vmc_ring_cons_wait() and vmc_ring_cons_drained() (one lock): a request
 * computed from an older position and stored after a sleeper's would lie
 * behind cons, never come due, and lose that sleeper's event.
 */
static inline long vmc_ring_cons_ask(struct vmc_ring *r, u32 want)
{
	if (!want)
		want = 1;
	if (want > r->size)
		want = r->size;
	WRITE_ONCE(r->hdr->prod_event,
		   cpu_to_le32(READ_ONCE(r->pos) + want));
	/* Pairs with smp_mb() in vmc_ring_produce(). */
	smp_mb();
	return vmc_ring_avail_peek(r);
}

/* Should an index move from @old to @new wake a peer that asked at @event? */
static inline bool vmc_ring_event_due(u32 event, u32 old, u32 new)
{
	return (u32)(new - event) < (u32)(new - old);
}

/*
 * vmc_ring_produce - publish @n bytes already written at the producer's pos.
 * Returns true when the consumer asked to be notified.
 *
 * The release store of prod pairs with the consumer's acquire load in
 * vmc_ring_avail(): the data written before prod is visible before prod.
 * The smp_mb() between that store and the load of prod_event pairs with the
 * smp_mb() in vmc_ring_cons_wait(): either we see its new prod_event, or it
 * sees our new prod.  cons_wake asks for an event whatever prod_event says.
 */
static inline bool vmc_ring_produce(struct vmc_ring *r, u32 n)
{
	u32 old = r->pos;

	WRITE_ONCE(r->pos, r->pos + n);	/* poll() peeks at it */
	/* Pairs with the acquire of prod in vmc_ring_avail(). */
	smp_store_release(&r->hdr->prod, cpu_to_le32(r->pos));
	/*
	 * Pairs with smp_mb() in vmc_ring_cons_wait(), _cons_ask() and
	 * _cons_drained(): either we see the consumer's request, or it sees
	 * our prod.
	 */
	smp_mb();
	if (READ_ONCE(r->hdr->cons_wake))
		return true;
	/*
	 * Pairs with smp_wmb() in vmc_ring_cons_drained(): having seen the
	 * cons_wake = 0 stored there, we see the prod_event stored before it.
	 */
	smp_rmb();
	return vmc_ring_event_due(le32_to_cpu(READ_ONCE(r->hdr->prod_event)),
				  old, r->pos);
}

/*
 * vmc_ring_prod_wait - producer about to sleep until @want bytes are free.
 * Returns the space now free (re-checked after asking), or -EPROTO.  If the
 * result is still < @want, the consumer will notify once cons has moved far
 * enough.  The smp_mb() pairs with the one in vmc_ring_consume().
 */
static inline long vmc_ring_prod_wait(struct vmc_ring *r, u32 want)
{
	if (want > r->size)
		want = r->size;
	WRITE_ONCE(r->hdr->cons_event, cpu_to_le32(r->pos - r->size + want));
	/* Pairs with smp_mb() in vmc_ring_consume(). */
	smp_mb();
	return vmc_ring_space(r);
}

/*
 * vmc_ring_prod_ask - like vmc_ring_prod_wait(), for poll(): asks for an
 * event when @want bytes are free without touching private state, and
 * returns the space re-checked (vmc_ring_space_peek()).  The smp_mb()
 * pairs with the one in vmc_ring_consume().  Serialised by its caller with
 * the producer's vmc_ring_prod_wait(), as vmc_ring_cons_ask() is.
 */
static inline long vmc_ring_prod_ask(struct vmc_ring *r, u32 want)
{
	if (want > r->size)
		want = r->size;
	WRITE_ONCE(r->hdr->cons_event,
		   cpu_to_le32(READ_ONCE(r->pos) - r->size + want));
	/* Pairs with smp_mb() in vmc_ring_consume(). */
	smp_mb();
	return vmc_ring_space_peek(r);
}

/* Mark end of stream: nothing follows the current prod.  Ordered after it. */
static inline void vmc_ring_set_eof(struct vmc_ring *r)
{
	/* Pairs with the acquire in vmc_ring_peer_eof(). */
	smp_store_release(&r->hdr->prod_flags, cpu_to_le32(VMC_RING_F_EOF));
}

/* Did the consumer say it will read no more? */
static inline bool vmc_ring_peer_closed(const struct vmc_ring *r)
{
	return le32_to_cpu(READ_ONCE(r->hdr->cons_flags)) & VMC_RING_F_CLOSED;
}

/* ---- consumer side ---- */

/*
 * vmc_ring_avail - bytes the consumer may read now, or -EPROTO.
 * The acquire load of prod pairs with the release store in
 * vmc_ring_produce(): data before prod is visible once prod is.
 */
static inline long vmc_ring_avail(struct vmc_ring *r)
{
	u32 prod;
	long used;

	if (unlikely(r->broken))
		return -EPROTO;
	/* Pairs with the release of prod in vmc_ring_produce(). */
	prod = le32_to_cpu(smp_load_acquire(&r->hdr->prod));
	used = vmc_ring_check(prod, r->pos, r->size);
	if (unlikely(used < 0)) {
		WRITE_ONCE(r->broken, true);
		return used;
	}
	r->peer = prod;
	return used;
}

/*
 * vmc_ring_consume - release @n bytes the consumer has copied out.
 * Returns true when the producer asked to be notified.
 *
 * The release store of cons pairs with the producer's acquire load in
 * vmc_ring_space(): our reads of the data finish before the producer may
 * overwrite it.  The smp_mb() pairs with the one in vmc_ring_prod_wait().
 */
static inline bool vmc_ring_consume(struct vmc_ring *r, u32 n)
{
	u32 old = r->pos;

	WRITE_ONCE(r->pos, r->pos + n);	/* poll() peeks at it */
	/* Pairs with the acquire of cons in vmc_ring_space(). */
	smp_store_release(&r->hdr->cons, cpu_to_le32(r->pos));
	/* Pairs with smp_mb() in vmc_ring_prod_wait(). */
	smp_mb();
	return vmc_ring_event_due(le32_to_cpu(READ_ONCE(r->hdr->cons_event)),
				  old, r->pos);
}

/*
 * vmc_ring_cons_wait - consumer about to sleep until data arrives.
 * Returns the bytes available after asking (re-checked), or -EPROTO.  If 0,
 * the producer will notify on its next vmc_ring_produce().  The smp_mb()
 * pairs with the one in vmc_ring_produce().
 */
static inline long vmc_ring_cons_wait(struct vmc_ring *r)
{
	WRITE_ONCE(r->hdr->prod_event, cpu_to_le32(r->pos + 1));
	/* Pairs with smp_mb() in vmc_ring_produce(). */
	smp_mb();
	return vmc_ring_avail(r);
}

/*
 * vmc_ring_cons_every - poll() found data unread: ask for an event on every
 * commit until the consumer drains the ring.  Edge-triggered epoll expects a
 * new edge for each arrival of data (TCP wakes per segment), and prod_event
 * cannot say so: it is cons + n, and prod is already past it.  Rewriting
 * prod_event from here instead would race with a reader sleeping on it and
 * could land behind that reader's request, losing its wake-up; a separate
 * word cannot.  A commit racing with this store may not see it: that
 * commit gets no edge of its own, the next one does.  Callable without the
 * consumer's lock.  Racing with another poll and a drain can leave events
 * on every commit, or none beyond the next byte, until the next poll and
 * drain; it cannot lose a sleeper's wake-up (it leaves prod_event alone).
 */
static inline void vmc_ring_cons_every(struct vmc_ring *r)
{
	WRITE_ONCE(r->hdr->cons_wake, cpu_to_le32(1));
	/*
	 * Pairs with smp_load_acquire() in vmc_ring_cons_drained(): a drain
	 * that sees every = true stores its cons_wake = 0 after our 1.
	 */
	smp_store_release(&r->every, true);
}

/*
 * vmc_ring_cons_drained - the consumer has read every byte it saw.  If
 * poll() asked for events on every commit, ask for one on the next byte
 * instead, the first new edge, and stop the rest.  Returns the bytes
 * available after that (re-checked), or -EPROTO: if more than 0, a commit
 * made while we drained may have sent no event, and the caller wakes its
 * own waiters for that data.  Returns 0 when there was nothing to stop.
 */
static inline long vmc_ring_cons_drained(struct vmc_ring *r)
{
	/* Pairs with smp_store_release() in vmc_ring_cons_every(). */
	if (!smp_load_acquire(&r->every))
		return 0;
	WRITE_ONCE(r->every, false);
	WRITE_ONCE(r->hdr->prod_event, cpu_to_le32(r->pos + 1));
	/*
	 * Pairs with smp_rmb() in vmc_ring_produce(): a producer that sees
	 * this cons_wake = 0 sees this prod_event, due on the next byte.
	 */
	smp_wmb();
	WRITE_ONCE(r->hdr->cons_wake, 0);
	/*
	 * Pairs with smp_mb() in vmc_ring_produce(): either that producer
	 * sees our stores above, or we see its prod below.
	 */
	smp_mb();
	return vmc_ring_avail_peek(r);
}

/*
 * Has the producer marked end of stream?  Call only after vmc_ring_avail()
 * returned 0: the acquire here pairs with the release in vmc_ring_set_eof(),
 * and prod must then be re-read to be sure no byte preceded the flag.
 */
static inline bool vmc_ring_peer_eof(const struct vmc_ring *r)
{
	/* Pairs with the release in vmc_ring_set_eof(). */
	return le32_to_cpu(smp_load_acquire(&r->hdr->prod_flags)) &
	       VMC_RING_F_EOF;
}

static inline void vmc_ring_set_closed(struct vmc_ring *r)
{
	/* Pairs with READ_ONCE in vmc_ring_peer_closed(); a hint only. */
	smp_store_release(&r->hdr->cons_flags, cpu_to_le32(VMC_RING_F_CLOSED));
}

/* ---- byte stream helpers (memcpy; the TCP path copies with iov_iter) ---- */

/* Write up to @len bytes; returns bytes written (0 when full) or -EPROTO. */
static inline long vmc_ring_write(struct vmc_ring *r, const void *src,
				  u32 len, bool *notify)
{
	long space = vmc_ring_space(r);
	u32 done = 0, seg;
	u8 *p;

	*notify = false;
	if (space <= 0)
		return space;
	len = min_t(u32, len, space);
	while (done < len) {
		p = vmc_ring_seg(r, r->pos + done, len - done, &seg);
		memcpy(p, (const u8 *)src + done, seg);
		done += seg;
	}
	if (len)
		*notify = vmc_ring_produce(r, len);
	return len;
}

/* Read up to @len bytes; returns bytes read (0 when empty) or -EPROTO. */
static inline long vmc_ring_read(struct vmc_ring *r, void *dst, u32 len,
				 bool *notify)
{
	long avail = vmc_ring_avail(r);
	u32 done = 0, seg;
	const u8 *p;

	*notify = false;
	if (avail <= 0)
		return avail;
	len = min_t(u32, len, avail);
	while (done < len) {
		p = vmc_ring_seg(r, r->pos + done, len - done, &seg);
		memcpy((u8 *)dst + done, p, seg);
		done += seg;
	}
	if (len)
		*notify = vmc_ring_consume(r, len);
	return len;
}

/* ---- message (datagram) mode ---- */

static inline u32 vmc_ring_msg_room(u32 len)
{
	return sizeof(__le32) + ALIGN(len, VMC_RING_MSG_ALIGN);
}

/* Largest payload a ring of @size can carry in one message. */
static inline u32 vmc_ring_msg_max(u32 size)
{
	return size - sizeof(__le32);
}

/*
 * A source of message bytes: copy @len bytes, starting @off bytes into
 * the message, to @dst (ring memory).  @src is the caller's.
 */
typedef void (*vmc_ring_copy_fn)(void *dst, u32 off, u32 len, const void *src);

/*
 * vmc_ring_msg_write_from - append one message of @len bytes that @copy
 * fetches from @src (a buffer, or in the kernel a socket buffer, copied
 * straight into the ring).
 * Returns 0, -EAGAIN when it does not fit now, -EMSGSIZE when it never
 * will, -EINVAL when the ring was used in byte mode, or -EPROTO.
 * *notify as vmc_ring_produce().
 */
static inline int vmc_ring_msg_write_from(struct vmc_ring *r, u32 len,
					  vmc_ring_copy_fn copy,
					  const void *src, bool *notify)
{
	u32 room = vmc_ring_msg_room(len), done = 0, seg;
	__le32 *lenp;
	long space;
	u8 *p;

	*notify = false;
	if (len > vmc_ring_msg_max(r->size))
		return -EMSGSIZE;
	space = vmc_ring_space(r);
	if (space < 0)
		return space;
	/* A ring is used in one mode only; mixing would misalign records. */
	if (r->pos & (VMC_RING_MSG_ALIGN - 1))
		return -EINVAL;
	if (room > space)
		return -EAGAIN;
	/* pos is 4-aligned, size >= 4: the length word is contiguous. */
	lenp = (__le32 *)vmc_ring_seg(r, r->pos, sizeof(*lenp), &seg);
	*lenp = cpu_to_le32(len);
	while (done < len) {
		p = vmc_ring_seg(r, r->pos + sizeof(*lenp) + done, len - done,
				 &seg);
		copy(p, done, seg, src);
		done += seg;
	}
	*notify = vmc_ring_produce(r, room);
	return 0;
}

static inline void vmc_ring_copy_buf(void *dst, u32 off, u32 len,
				     const void *src)
{
	memcpy(dst, (const u8 *)src + off, len);
}

/*
 * vmc_ring_msg_write - append one message of @len bytes from @buf.
 * Returns and *notify as vmc_ring_msg_write_from().
 */
static inline int vmc_ring_msg_write(struct vmc_ring *r, const void *buf,
				     u32 len, bool *notify)
{
	return vmc_ring_msg_write_from(r, len, vmc_ring_copy_buf, buf, notify);
}

/*
 * vmc_ring_msg_peek - length of the next message, validated.
 * Returns the payload length (>= 0), -EAGAIN when no message is there, or
 * -EPROTO when the peer wrote an impossible length (beyond @max, beyond the
 * bytes it published, or a partial record); the ring is then broken.
 */
static inline long vmc_ring_msg_peek(struct vmc_ring *r, u32 max)
{
	long avail = vmc_ring_avail(r);
	u32 seg, len;
	__le32 *lenp;

	if (avail < 0)
		return avail;
	if (avail == 0)
		return -EAGAIN;
	if ((r->pos & (VMC_RING_MSG_ALIGN - 1)) ||
	    avail < (long)sizeof(*lenp))
		goto bad;
	lenp = (__le32 *)vmc_ring_seg(r, r->pos, sizeof(*lenp), &seg);
	len = le32_to_cpu(READ_ONCE(*lenp));	/* read once, then judged */
	if (len > max || len > vmc_ring_msg_max(r->size) ||
	    vmc_ring_msg_room(len) > avail)
		goto bad;
	return len;
bad:
	WRITE_ONCE(r->broken, true);
	return -EPROTO;
}

/*
 * A destination of message bytes: copy @len bytes of ring memory at @src
 * to @off bytes into the caller's copy of the message, @dst (a buffer, or
 * in the kernel a socket buffer).
 */
typedef void (*vmc_ring_store_fn)(void *dst, u32 off, const void *src,
				  u32 len);

/*
 * vmc_ring_msg_read_to - hand the next message (of the length @len that
 * vmc_ring_msg_peek() just returned) to @store, in pieces, and release
 * it.  The length is not re-read from shared memory, and nothing of the
 * message is judged before it is all copied: the peer may still be
 * writing into it.  Returns *notify as vmc_ring_consume().
 */
static inline bool vmc_ring_msg_read_to(struct vmc_ring *r, u32 len,
					vmc_ring_store_fn store, void *dst)
{
	u32 done = 0, seg;
	const u8 *p;

	while (done < len) {
		p = vmc_ring_seg(r, r->pos + sizeof(__le32) + done, len - done,
				 &seg);
		store(dst, done, p, seg);
		done += seg;
	}
	return vmc_ring_consume(r, vmc_ring_msg_room(len));
}

static inline void vmc_ring_store_buf(void *dst, u32 off, const void *src,
				      u32 len)
{
	memcpy((u8 *)dst + off, src, len);
}

/* vmc_ring_msg_read - vmc_ring_msg_read_to() into the buffer @buf. */
static inline bool vmc_ring_msg_read(struct vmc_ring *r, void *buf, u32 len)
{
	return vmc_ring_msg_read_to(r, len, vmc_ring_store_buf, buf);
}

#endif /* VMC_RING_H */
