// SPDX-License-Identifier: GPL-2.0
/*
 * ThreadSanitizer stress of vmc_ring.h: one producer thread and one
 * consumer thread move STRESS_MIB MiB (default 1 GiB) through a 64 KiB
 * ring in byte mode, then STRESS_MSG_MIB MiB in message mode, with random
 * write and read sizes.
 *
 * Every byte is checked: the stream is a keyed PRNG of the byte position,
 * which the consumer recomputes; both sides also keep a running checksum
 * of what they sent / received, printed and compared at the end.  In
 * message mode each message carries its sequence number and a checksum of
 * its payload, and its length is a function of the sequence number.
 *
 * Notification suppression is real: a side that finds no data (no space)
 * asks with vmc_ring_cons_wait() (vmc_ring_prod_wait()) and, if the
 * re-check still finds nothing, sleeps on its emulated event channel (a
 * pending flag under a mutex + condvar: notify sets pending and wakes,
 * waiting consumes pending).  The other side notifies only when
 * produce/consume said so.  A lost wakeup therefore shows as a sleep that
 * never ends: the wait times out after WAKE_TIMEOUT_S and fails the test,
 * and the main thread fails it when no byte moves for STALL_S seconds.
 *
 * A third pass repeats the byte stream (a quarter of it) with a consumer
 * that behaves as poll() and recvmsg() do for edge-triggered epoll: on
 * finding data it often calls vmc_ring_cons_every() first, and after any
 * read that emptied what it saw, or on finding the ring empty,
 * vmc_ring_cons_drained(); a lost wakeup there hangs the same way.
 *
 *   STRESS_MIB=N STRESS_MSG_MIB=N STRESS_SEED=N out/ring_stress
 * (defaults 1024, 128 and the time).
 */
#define _GNU_SOURCE	/* pthread_tryjoin_np */
#include "vmc_ring.h"
#include "tcheck.h"

#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <time.h>
#include <unistd.h>

#define RING_SIZE	(64u * 1024)
#define MAX_IO		(2 * RING_SIZE)	/* random sizes 1 .. 2x the ring */
#define WAKE_TIMEOUT_S	20		/* a sleep this long is a lost wakeup */
#define STALL_S		30		/* no progress at all this long */
#define LIMIT_S		280		/* whole program */

typedef uint64_t u64;

/* ---- emulated event channel ---- */

struct evtchn {
	pthread_mutex_t lock;
	pthread_cond_t cond;
	bool pending;
};

static void evtchn_init(struct evtchn *e)
{
	pthread_condattr_t a;

	pthread_condattr_init(&a);
	pthread_condattr_setclock(&a, CLOCK_MONOTONIC);
	pthread_cond_init(&e->cond, &a);
	pthread_condattr_destroy(&a);
	pthread_mutex_init(&e->lock, NULL);
	e->pending = false;
}

static void evtchn_notify(struct evtchn *e)
{
	pthread_mutex_lock(&e->lock);
	e->pending = true;
	pthread_cond_signal(&e->cond);
	pthread_mutex_unlock(&e->lock);
}

/* Sleep until notified (consuming the pending event); false on timeout. */
static bool evtchn_wait(struct evtchn *e, int secs)
{
	struct timespec dl;
	bool got;

	clock_gettime(CLOCK_MONOTONIC, &dl);
	dl.tv_sec += secs;
	pthread_mutex_lock(&e->lock);
	while (!e->pending)
		if (pthread_cond_timedwait(&e->cond, &e->lock, &dl) == ETIMEDOUT)
			break;
	got = e->pending;
	e->pending = false;
	pthread_mutex_unlock(&e->lock);
	return got;
}

/* ---- shared state ---- */

static struct vmc_ring_hdr shared_hdr __attribute__((aligned(64)));
static u8 *shared_data;
static struct vmc_ring prod_r, cons_r;		/* each owned by one thread */
static struct evtchn to_cons, to_prod;
static u64 progress;				/* atomic: bytes consumed */
static u64 seed;

struct stats {
	u64 bytes;
	u64 ops;		/* produce() / consume() calls */
	u64 empty;		/* found no data / no space */
	u64 rechecked;		/* ... but the re-check after asking found some */
	u64 sleeps;
	u64 notifies;		/* events sent to the other side */
	u64 csum;
	u64 msgs;
};

static double now(void)
{
	struct timespec t;

	clock_gettime(CLOCK_MONOTONIC, &t);
	return t.tv_sec + t.tv_nsec / 1e9;
}

/* Report the shared state (the private ends belong to their threads). */
static void dump_and_die(const char *test, const char *why)
{
	printf("FAIL %s: %s (shared prod %#x cons %#x prod_event %#x cons_event %#x)\n",
	       test, why,
	       le32_to_cpu(__atomic_load_n(&shared_hdr.prod, __ATOMIC_RELAXED)),
	       le32_to_cpu(__atomic_load_n(&shared_hdr.cons, __ATOMIC_RELAXED)),
	       le32_to_cpu(__atomic_load_n(&shared_hdr.prod_event, __ATOMIC_RELAXED)),
	       le32_to_cpu(__atomic_load_n(&shared_hdr.cons_event, __ATOMIC_RELAXED)));
	printf("ring_stress: 0 ok, 1 FAIL\n");
	fflush(stdout);
	_exit(1);
}

static const char *cur_test = "stress";

static void on_alarm(int sig)
{
	static const char msg[] = "FAIL stress: watchdog: program ran over its time limit\nring_stress: 0 ok, 1 FAIL\n";

	(void)sig;
	if (write(1, msg, sizeof(msg) - 1) < 0)
		_exit(3);
	_exit(2);
}

/* ---- data: a keyed PRNG stream, and a chunking-independent checksum ---- */

static u64 mix(u64 x)
{
	x += 0x9e3779b97f4a7c15ull;
	x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
	x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
	return x ^ (x >> 31);
}

/*
 * Generate stream @key bytes [@pos, @pos + @len) into @words; returns the
 * address of byte @pos.  Byte i is byte (i & 7) of mix(key ^ (i >> 3)).
 */
static u8 *gen(u64 *words, u64 pos, u32 len, u64 key)
{
	u64 k, k0 = pos >> 3, k1 = (pos + len + 7) >> 3;

	for (k = k0; k < k1; k++)
		words[k - k0] = mix(key ^ k);
	return (u8 *)words + (pos & 7);
}

struct csum {
	u64 h, w;
	unsigned int n;		/* bytes in w: stream position mod 8 */
};

static void csum_word(struct csum *c, u64 w)
{
	c->h = (c->h ^ w) * 0x100000001b3ull;
	c->h ^= c->h >> 29;
}

static void csum_add(struct csum *c, const u8 *p, size_t len)
{
	u64 w;

	for (; len && c->n; len--, p++) {
		c->w |= (u64)*p << (8 * c->n);
		if (++c->n == 8) {
			csum_word(c, c->w);
			c->w = 0;
			c->n = 0;
		}
	}
	for (; len >= 8; len -= 8, p += 8) {
		memcpy(&w, p, 8);
		csum_word(c, w);
	}
	for (; len; len--, p++)
		c->w |= (u64)*p << (8 * c->n++);
}

static u64 csum_end(struct csum *c)
{
	if (c->n)
		csum_word(c, c->w ^ ((u64)c->n << 56));
	return c->h;
}

/* Per-thread PRNG for sizes (xorshift64*). */
static u64 rnd(u64 *s)
{
	*s ^= *s >> 12;
	*s ^= *s << 25;
	*s ^= *s >> 27;
	return *s * 0x2545f4914f6cdd1dull;
}

static u32 rnd_range(u64 *s, u32 lo, u32 hi)
{
	return lo + (u32)(rnd(s) % ((u64)hi - lo + 1));
}

/*
 * An I/O size in 1 .. MAX_IO, log-uniform: as many sizes around 10 bytes
 * as around 10 KiB, so that small and large operations both occur often.
 */
static u32 rnd_io(u64 *s)
{
	u32 b = rnd_range(s, 0, 17);		/* MAX_IO is 2^17 */

	return rnd_range(s, 1u << b, (2u << b) - 1 < MAX_IO ?
				     (2u << b) - 1 : MAX_IO);
}

/* ---- byte mode ---- */

static u64 byte_total;
static bool polled;		/* consumer mixes in cons_every/cons_drained */

static void *byte_producer(void *arg)
{
	struct stats *st = arg;
	u64 *words = malloc(MAX_IO + 16), w = 0, rs = seed ^ 0x1111;
	struct csum cs = { 0 };
	u32 len, off, want;
	bool notify;
	long got, sp;
	u8 *src;

	while (w < byte_total) {
		len = rnd_io(&rs);
		if (len > byte_total - w)
			len = byte_total - w;
		src = gen(words, w, len, seed);
		csum_add(&cs, src, len);
		for (off = 0; off < len; ) {
			got = vmc_ring_write(&prod_r, src + off, len - off,
					     &notify);
			if (got < 0)
				dump_and_die(cur_test, "producer: ring broken");
			if (got > 0) {
				st->ops++;
				off += got;
				if (notify) {
					st->notifies++;
					evtchn_notify(&to_cons);
				}
				continue;
			}
			/*
			 * Full: ask to be woken when there is room for the
			 * rest, or half the ring (a low watermark), or now
			 * and then for a random amount.
			 */
			st->empty++;
			want = len - off < RING_SIZE / 2 ? len - off : RING_SIZE / 2;
			if (!(rnd(&rs) & 7))
				want = rnd_range(&rs, 1, len - off < RING_SIZE ?
							 len - off : RING_SIZE);
			sp = vmc_ring_prod_wait(&prod_r, want);
			if (sp < 0)
				dump_and_die(cur_test, "producer: ring broken");
			if (sp >= want) {
				st->rechecked++;
				continue;
			}
			st->sleeps++;
			if (!evtchn_wait(&to_prod, WAKE_TIMEOUT_S))
				dump_and_die(cur_test, "lost wakeup: producer slept 20 s waiting for space");
		}
		w += len;
	}
	vmc_ring_set_eof(&prod_r);
	evtchn_notify(&to_cons);	/* unconditional: end of stream */
	st->bytes = w;
	st->csum = csum_end(&cs);
	free(words);
	return NULL;
}

static void *byte_consumer(void *arg)
{
	struct stats *st = arg;
	u64 *buf = malloc(MAX_IO + 16), *exp = malloc(MAX_IO + 16);
	u64 r = 0, rs = seed ^ 0x2222;
	struct csum cs = { 0 };
	bool notify;
	long got, av;
	u32 len;
	u8 *dst;

	for (;;) {
		len = rnd_io(&rs);
		dst = (u8 *)buf + (r & 7);
		if (polled && (rnd(&rs) & 1) && vmc_ring_avail_peek(&cons_r) > 0)
			vmc_ring_cons_every(&cons_r);	/* poll(): readable */
		got = vmc_ring_read(&cons_r, dst, len, &notify);
		if (got < 0)
			dump_and_die(cur_test, "consumer: ring broken");
		if (got > 0) {
			st->ops++;
			if (r + got > byte_total)
				dump_and_die(cur_test, "consumer: more bytes than sent");
			if (memcmp(dst, gen(exp, r, got, seed), got))
				dump_and_die(cur_test, "consumer: wrong data");
			csum_add(&cs, dst, got);
			r += got;
			__atomic_store_n(&progress, r, __ATOMIC_RELAXED);
			if (notify) {
				st->notifies++;
				evtchn_notify(&to_prod);
			}
			/* Data that came meanwhile: read on (no event owed). */
			if (polled && (u32)got < len &&
			    vmc_ring_cons_drained(&cons_r) < 0)
				dump_and_die(cur_test, "consumer: ring broken");
			continue;
		}
		st->empty++;
		if (polled && vmc_ring_cons_drained(&cons_r) < 0)
			dump_and_die(cur_test, "consumer: ring broken");
		av = vmc_ring_cons_wait(&cons_r);
		if (av < 0)
			dump_and_die(cur_test, "consumer: ring broken");
		if (av > 0) {
			st->rechecked++;
			continue;
		}
		if (vmc_ring_peer_eof(&cons_r)) {
			/* prod must be re-read after seeing EOF. */
			if (vmc_ring_avail(&cons_r) != 0)
				continue;
			break;
		}
		st->sleeps++;
		if (!evtchn_wait(&to_cons, WAKE_TIMEOUT_S))
			dump_and_die(cur_test, "lost wakeup: consumer slept 20 s waiting for data");
	}
	vmc_ring_set_closed(&cons_r);
	st->bytes = r;
	st->csum = csum_end(&cs);
	free(buf);
	free(exp);
	return NULL;
}

/* ---- message mode ---- */

static u64 msg_total;		/* payload bytes to send */
#define MSG_HDR		8	/* u32 seq, u32 checksum of the rest */

/* Length of message @seq: half small (8..256), half up to the maximum. */
static u32 msg_len(u64 seq)
{
	u64 h = mix(seed ^ 0x3333 ^ seq);

	if (h & 1)
		return MSG_HDR + (u32)((h >> 8) % (256 - MSG_HDR + 1));
	return MSG_HDR + (u32)((h >> 8) % (vmc_ring_msg_max(RING_SIZE) - MSG_HDR + 1));
}

static u32 sum32(const u8 *p, u32 len)
{
	struct csum c = { 0 };

	csum_add(&c, p, len);
	return (u32)csum_end(&c);
}

/* Message @seq into @words; returns its first byte. */
static u8 *msg_make(u64 *words, u64 seq, u32 len)
{
	u8 *m = gen(words, 0, len, seed ^ (seq << 20) ^ 0x4444);
	u32 s = seq, c = sum32(m + MSG_HDR, len - MSG_HDR);

	memcpy(m, &s, 4);
	memcpy(m + 4, &c, 4);
	return m;
}

static void *msg_producer(void *arg)
{
	struct stats *st = arg;
	u64 *words = malloc(RING_SIZE + 16), seq = 0, sent = 0;
	struct csum cs = { 0 };
	bool notify;
	long sp;
	u32 len;
	int ret;
	u8 *m;

	while (sent < msg_total) {
		len = msg_len(seq);
		m = msg_make(words, seq, len);
		for (;;) {
			ret = vmc_ring_msg_write(&prod_r, m, len, &notify);
			if (ret == 0)
				break;
			if (ret != -EAGAIN)
				dump_and_die(cur_test, "producer: msg_write failed");
			st->empty++;
			sp = vmc_ring_prod_wait(&prod_r, vmc_ring_msg_room(len));
			if (sp < 0)
				dump_and_die(cur_test, "producer: ring broken");
			if (sp >= vmc_ring_msg_room(len)) {
				st->rechecked++;
				continue;
			}
			st->sleeps++;
			if (!evtchn_wait(&to_prod, WAKE_TIMEOUT_S))
				dump_and_die(cur_test, "lost wakeup: producer slept 20 s waiting for space");
		}
		st->ops++;
		if (notify) {
			st->notifies++;
			evtchn_notify(&to_cons);
		}
		csum_add(&cs, m, len);
		sent += len;
		seq++;
	}
	vmc_ring_set_eof(&prod_r);
	evtchn_notify(&to_cons);
	st->bytes = sent;
	st->msgs = seq;
	st->csum = csum_end(&cs);
	free(words);
	return NULL;
}

static void *msg_consumer(void *arg)
{
	struct stats *st = arg;
	u64 *buf = malloc(RING_SIZE + 16), *exp = malloc(RING_SIZE + 16);
	u64 seq = 0, got_bytes = 0;
	struct csum cs = { 0 };
	u32 s, c;
	long len, av;
	u8 *want;

	for (;;) {
		len = vmc_ring_msg_peek(&cons_r, RING_SIZE);
		if (len >= 0) {
			if (len != msg_len(seq))
				dump_and_die(cur_test, "consumer: wrong message length");
			if (vmc_ring_msg_read(&cons_r, buf, len)) {
				st->notifies++;
				evtchn_notify(&to_prod);
			}
			st->ops++;
			memcpy(&s, buf, 4);
			memcpy(&c, (u8 *)buf + 4, 4);
			if (s != (u32)seq)
				dump_and_die(cur_test, "consumer: wrong sequence number");
			if (c != sum32((u8 *)buf + MSG_HDR, len - MSG_HDR))
				dump_and_die(cur_test, "consumer: bad message checksum");
			want = msg_make(exp, seq, len);
			if (memcmp(buf, want, len))
				dump_and_die(cur_test, "consumer: wrong message data");
			csum_add(&cs, (u8 *)buf, len);
			got_bytes += len;
			seq++;
			__atomic_store_n(&progress, got_bytes, __ATOMIC_RELAXED);
			continue;
		}
		if (len != -EAGAIN)
			dump_and_die(cur_test, "consumer: msg_peek failed");
		st->empty++;
		av = vmc_ring_cons_wait(&cons_r);
		if (av < 0)
			dump_and_die(cur_test, "consumer: ring broken");
		if (av > 0) {
			st->rechecked++;
			continue;
		}
		if (vmc_ring_peer_eof(&cons_r)) {
			if (vmc_ring_avail(&cons_r) != 0)
				continue;
			break;
		}
		st->sleeps++;
		if (!evtchn_wait(&to_cons, WAKE_TIMEOUT_S))
			dump_and_die(cur_test, "lost wakeup: consumer slept 20 s waiting for data");
	}
	vmc_ring_set_closed(&cons_r);
	st->bytes = got_bytes;
	st->msgs = seq;
	st->csum = csum_end(&cs);
	free(buf);
	free(exp);
	return NULL;
}

/* ---- driver ---- */

static struct stats ps, cs;
static double elapsed;

static void run_pass(void *(*prod)(void *), void *(*cons)(void *))
{
	pthread_t pt, ct;
	u64 last = 0;
	double t0 = now(), tp = t0;
	int done = 0;

	memset(&ps, 0, sizeof(ps));
	memset(&cs, 0, sizeof(cs));
	memset(shared_data, 0, RING_SIZE);
	if (vmc_ring_init(&prod_r, &shared_hdr, shared_data, RING_SIZE, true) ||
	    vmc_ring_init(&cons_r, &shared_hdr, shared_data, RING_SIZE, false))
		dump_and_die(cur_test, "vmc_ring_init failed");
	evtchn_init(&to_cons);
	evtchn_init(&to_prod);
	__atomic_store_n(&progress, 0, __ATOMIC_RELAXED);
	pthread_create(&pt, NULL, prod, &ps);
	pthread_create(&ct, NULL, cons, &cs);
	/* Watch for progress; the threads end on their own. */
	while (!done) {
		u64 p;

		usleep(200 * 1000);
		p = __atomic_load_n(&progress, __ATOMIC_RELAXED);
		if (p != last) {
			last = p;
			tp = now();
		} else if (now() - tp > STALL_S) {
			dump_and_die(cur_test, "no progress for 30 s (hang)");
		}
		done = pthread_tryjoin_np(ct, NULL) == 0;
	}
	pthread_join(pt, NULL);
	elapsed = now() - t0;
}

static void report(const char *mode)
{
	printf("# %s: %" PRIu64 " bytes (%.1f MiB) in %.1f s, %.1f MiB/s, checksum %016" PRIx64 "\n",
	       mode, cs.bytes, cs.bytes / 1048576.0, elapsed,
	       cs.bytes / 1048576.0 / elapsed, cs.csum);
	if (ps.msgs || cs.msgs)
		printf("# %s: %" PRIu64 " messages\n", mode, cs.msgs);
	printf("# %s: producer: %" PRIu64 " produce, %" PRIu64 " full, %" PRIu64 " rechecked, %" PRIu64 " sleeps, %" PRIu64 " events sent (%.1f%% of produce)\n",
	       mode, ps.ops, ps.empty, ps.rechecked, ps.sleeps, ps.notifies,
	       100.0 * ps.notifies / (ps.ops ? ps.ops : 1));
	printf("# %s: consumer: %" PRIu64 " consume, %" PRIu64 " empty, %" PRIu64 " rechecked, %" PRIu64 " sleeps, %" PRIu64 " events sent (%.1f%% of consume)\n",
	       mode, cs.ops, cs.empty, cs.rechecked, cs.sleeps, cs.notifies,
	       100.0 * cs.notifies / (cs.ops ? cs.ops : 1));
	printf("# %s: notifications/ops %.3f (%" PRIu64 " / %" PRIu64 " produce + consume calls), notifications/produce calls %.3f\n",
	       mode, (double)(ps.notifies + cs.notifies) / (ps.ops + cs.ops),
	       ps.notifies + cs.notifies, ps.ops + cs.ops,
	       (double)(ps.notifies + cs.notifies) / (ps.ops ? ps.ops : 1));
	fflush(stdout);
}

static void check_pass(void)
{
	CHECK_EQ(ps.bytes, cs.bytes);
	CHECK_EQ(ps.msgs, cs.msgs);
	if (ps.csum != cs.csum)
		T_FAIL("checksum sent %016" PRIx64 " != received %016" PRIx64,
		       ps.csum, cs.csum);
	CHECK(!prod_r.broken && !cons_r.broken);
	CHECK(vmc_ring_peer_closed(&prod_r));
	CHECK(vmc_ring_peer_eof(&cons_r));
}

/*
 * Suppression must suppress: fewer than one event per two ring operations
 * (without it, every produce and every consume would send one), while both
 * sides did really sleep and get woken.  Per direction the ratio depends on
 * which side is faster (a consumer that always drains the ring is woken by
 * nearly every produce), so the bound is on the total.
 */
static void check_suppression(void)
{
	u64 ev = ps.notifies + cs.notifies, ops = ps.ops + cs.ops;

	if (2 * ev >= ops)
		T_FAIL("%" PRIu64 " events for %" PRIu64 " produce + consume calls",
		       ev, ops);
	/* Every sleep was ended by exactly one event (or the final EOF one). */
	if (ps.sleeps > cs.notifies || cs.sleeps > ps.notifies + 1)
		T_FAIL("more sleeps than events: producer %" PRIu64 "/%" PRIu64 ", consumer %" PRIu64 "/%" PRIu64,
		       ps.sleeps, cs.notifies, cs.sleeps, ps.notifies);
	if (ps.sleeps + cs.sleeps < 100)
		T_FAIL("only %" PRIu64 " sleeps: the wait path was hardly used",
		       ps.sleeps + cs.sleeps);
}

static void test_stress_bytes(void)
{
	cur_test = "stress_bytes";
	run_pass(byte_producer, byte_consumer);
	report("bytes");
	check_pass();
	CHECK_OK();
	CHECK_EQ(cs.bytes, byte_total);
}

static void test_stress_bytes_suppression(void)
{
	check_suppression();
}

static void test_stress_bytes_polled(void)
{
	u64 total = byte_total;

	cur_test = "stress_bytes_polled";
	byte_total = total / 4;
	polled = true;
	run_pass(byte_producer, byte_consumer);
	polled = false;
	report("bytes, polled");
	check_pass();
	CHECK_OK();
	CHECK_EQ(cs.bytes, byte_total);
	byte_total = total;
}

static void test_stress_msgs(void)
{
	cur_test = "stress_msgs";
	run_pass(msg_producer, msg_consumer);
	report("msgs");
	check_pass();
	CHECK_OK();
	CHECK(cs.bytes >= msg_total);
}

static void test_stress_msgs_suppression(void)
{
	check_suppression();
}

static u64 env_u64(const char *name, u64 def)
{
	const char *v = getenv(name);

	return v && *v ? strtoull(v, NULL, 0) : def;
}

int main(void)
{
	setvbuf(stdout, NULL, _IOLBF, 0);
	signal(SIGALRM, on_alarm);
	alarm(LIMIT_S);
	byte_total = env_u64("STRESS_MIB", 1024) << 20;
	msg_total = env_u64("STRESS_MSG_MIB", 128) << 20;
	seed = env_u64("STRESS_SEED", (u64)time(NULL));
	printf("# ring_stress: ring %u bytes, seed %" PRIu64 " (STRESS_SEED), %" PRIu64 " MiB bytes + %" PRIu64 " MiB messages\n",
	       RING_SIZE, seed, byte_total >> 20, msg_total >> 20);
	shared_data = malloc(RING_SIZE);
	RUN(test_stress_bytes);
	RUN(test_stress_bytes_suppression);
	RUN(test_stress_bytes_polled);
	RUN(test_stress_msgs);
	RUN(test_stress_msgs_suppression);
	free(shared_data);
	return T_DONE("ring_stress");
}
