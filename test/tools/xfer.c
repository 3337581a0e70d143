// SPDX-License-Identifier: GPL-2.0
/*
 * xfer: integrity and stress tool for TCP streams (run over plain TCP or
 * over XenVMC).  Content is a seeded stream (byte at offset o is a function
 * of seed and o) that the receiver regenerates, so no file is needed and the
 * first bad offset can be named.
 *
 *   xfer server PORT
 *       serves any number of clients (one thread per connection) until killed
 *   xfer stream ADDR PORT MIB [SEED]
 *       one connection, MIB MiB each way at once, random write sizes 1 B..1 MiB
 *       and random read sizes; prints bytes, MiB/s and OK/ERROR per direction
 *   xfer many ADDR PORT N KIB
 *       N concurrent connections (fd limit raised), each sends KIB KiB and
 *       gets KIB KiB back, each verified; counts accelerated ones from
 *       /proc/xenvmc/connections while they are open
 *   xfer slow ADDR PORT CONNS SECONDS STALL
 *       CONNS connections stream server -> client for SECONDS; connection 0's
 *       reader stops reading for STALL seconds in the middle; prints the other
 *       connections' progress before and during the stall
 *   xfer pingpong ADDR PORT CONNS SECONDS LIMIT
 *       CONNS connections, each doing request/response (1..100 bytes, the
 *       reply is the request transformed and verified) for SECONDS; any
 *       connection without progress for LIMIT seconds is a STALL (printed
 *       with where it was stuck)
 *
 * The last line of each client mode is "RESULT <mode> OK ..." or
 * "RESULT <mode> ERROR ..."; the exit status is 0 only for OK.
 * Addresses are numeric (a static binary has no NSS).
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/types.h>
#include <time.h>
#include <unistd.h>

#define MAGIC 0x58464552u	/* "XFER" */
#define MAXIO (1 << 20)

enum { M_STREAM = 1, M_SEQ, M_SLOW, M_PP };

struct hdr {
	uint32_t magic, mode;
	uint64_t seed, c2s, s2c;
	uint32_t maxio, pad;
};

struct trailer {
	uint32_t magic, ok;
	uint64_t got, first_bad;
};

static struct sockaddr_storage peer_sa;
static socklen_t peer_len;

static double now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec / 1e9;
}

static void fatal(const char *what)
{
	printf("RESULT ERROR %s: %s\n", what, strerror(errno));
	fflush(stdout);
	exit(1);
}

/* ------------------------------------------------------------ content */

static inline uint64_t mix(uint64_t x)
{
	x *= 0x9e3779b97f4a7c15ull;
	x ^= x >> 32;
	x *= 0xd6e8feb86659fd93ull;
	x ^= x >> 29;
	return x;
}

static void gen(uint64_t seed, uint64_t off, uint8_t *out, size_t n)
{
	while (n) {
		uint64_t w = mix(seed + off / 8);
		unsigned int sh = off & 7;
		size_t k = 8 - sh;

		if (k > n)
			k = n;
		if (k == 8)
			memcpy(out, &w, 8);
		else
			memcpy(out, (uint8_t *)&w + sh, k);
		out += k;
		off += k;
		n -= k;
	}
}

/* first mismatching index in buf (n bytes at stream offset off), or -1 */
static long verify(uint64_t seed, uint64_t off, const uint8_t *buf, size_t n, uint8_t *tmp)
{
	size_t k;

	gen(seed, off, tmp, n);
	if (!memcmp(tmp, buf, n))
		return -1;
	for (k = 0; k < n; k++)
		if (tmp[k] != buf[k])
			return (long)k;
	return -1;
}

/* per-thread PRNG for sizes */
static uint64_t rnd(uint64_t *s)
{
	*s ^= *s << 13;
	*s ^= *s >> 7;
	*s ^= *s << 17;
	return *s;
}

/* log-uniform size in 1..max: small and large sizes both frequent */
static size_t rsize(uint64_t *s, size_t max)
{
	unsigned int bits = rnd(s) % 21;
	size_t n = 1 + rnd(s) % ((size_t)1 << bits);

	return n > max ? max : n;
}

/* ------------------------------------------------------------ io */

static int writen(int fd, const void *b, size_t n)
{
	const char *p = b;

	while (n) {
		ssize_t r = send(fd, p, n, MSG_NOSIGNAL);

		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0)
			return -1;
		p += r;
		n -= r;
	}
	return 0;
}

static size_t readn(int fd, void *b, size_t n)
{
	char *p = b;
	size_t got = 0;

	while (got < n) {
		ssize_t r = recv(fd, p + got, n - got, 0);

		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0)
			break;
		got += r;
	}
	return got;
}

/* send n stream bytes with random write sizes; 0 on success */
static int send_stream(int fd, uint64_t seed, uint64_t n, size_t maxio, uint64_t *rs,
		       volatile uint64_t *progress)
{
	uint8_t *b = malloc(maxio);
	uint64_t off = 0;

	if (!b)
		return -1;
	while (off < n) {
		size_t k = rsize(rs, maxio);

		if (k > n - off)
			k = n - off;
		gen(seed, off, b, k);
		if (writen(fd, b, k) < 0) {
			free(b);
			return -1;
		}
		off += k;
		if (progress)
			*progress = off;
	}
	free(b);
	return 0;
}

struct rxres {
	uint64_t got, first_bad;
	int ok;
	double t_end;
};

/* receive and verify n stream bytes with random read sizes */
static void recv_stream(int fd, uint64_t seed, uint64_t n, size_t maxio, uint64_t *rs,
			struct rxres *res)
{
	uint8_t *b = malloc(maxio), *tmp = malloc(maxio);

	res->got = 0;
	res->ok = 1;
	res->first_bad = UINT64_MAX;
	while (b && tmp && res->got < n) {
		size_t k = rsize(rs, maxio);
		ssize_t r;
		long bad;

		if (k > n - res->got)
			k = n - res->got;
		r = recv(fd, b, k, 0);
		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0)
			break;
		bad = verify(seed, res->got, b, r, tmp);
		if (bad >= 0 && res->ok) {
			res->ok = 0;
			res->first_bad = res->got + bad;
		}
		res->got += r;
	}
	if (res->got < n)
		res->ok = 0;
	res->t_end = now();
	free(b);
	free(tmp);
}

static int sock_for(int family)
{
	int fd = socket(family, SOCK_STREAM, 0);

	if (fd < 0)
		fatal("socket");
	return fd;
}

static int connect_peer(void)
{
	int fd = sock_for(peer_sa.ss_family);

	if (connect(fd, (struct sockaddr *)&peer_sa, peer_len) < 0) {
		close(fd);
		return -1;
	}
	return fd;
}

/*
 * For messages: the client's port, as both sides name it; taken right after
 * connect() or accept() (a reset socket no longer has one).
 */
static int sock_port(int fd, int peer)
{
	struct sockaddr_storage a;
	socklen_t l = sizeof(a);

	if ((peer ? getpeername(fd, (struct sockaddr *)&a, &l) :
		    getsockname(fd, (struct sockaddr *)&a, &l)) < 0)
		return -1;
	return ntohs(a.ss_family == AF_INET6 ? ((struct sockaddr_in6 *)&a)->sin6_port :
			 ((struct sockaddr_in *)&a)->sin_port);
}

static void raise_nofile(rlim_t want)
{
	struct rlimit rl;

	getrlimit(RLIMIT_NOFILE, &rl);
	if (rl.rlim_cur < want) {
		rl.rlim_cur = want;
		if (rl.rlim_max < want)
			rl.rlim_max = want;
		if (setrlimit(RLIMIT_NOFILE, &rl) < 0) {
			getrlimit(RLIMIT_NOFILE, &rl);
			rl.rlim_cur = rl.rlim_max;
			setrlimit(RLIMIT_NOFILE, &rl);
		}
	}
}

/* ------------------------------------------------------------ server */

struct sconn {
	int fd;
	struct hdr h;
	uint64_t rs;
};

/* the server->client stream; 0 on success */
static int server_send(struct sconn *c)
{
	return send_stream(c->fd, c->h.seed ^ 0x5555aaaa5555aaaaull, c->h.s2c, c->h.maxio, &c->rs,
			   NULL);
}

static void *server_tx(void *arg)
{
	server_send(arg);
	return NULL;
}

static void *server_conn(void *arg)
{
	struct sconn *c = arg;
	struct rxres res;
	struct trailer t = { MAGIC, 0, 0, 0 };
	uint64_t rs2;
	size_t got;
	int pp = sock_port(c->fd, 1);

	errno = 0;
	got = readn(c->fd, &c->h, sizeof(c->h));
	if (got != sizeof(c->h) || c->h.magic != MAGIC ||
	    c->h.maxio == 0 || c->h.maxio > MAXIO) {
		/* The client sees only a reset: say here why. */
		fprintf(stderr, "xfer server: port %d: bad header: %zu of %zu bytes (%s), magic %llx\n",
			pp, got, sizeof(c->h), got == sizeof(c->h) ? "-" : errno ? strerror(errno) : "EOF",
			(unsigned long long)c->h.magic);
		goto out;
	}
	c->rs = c->h.seed * 3 + 1;
	rs2 = c->h.seed * 5 + 7;
	switch (c->h.mode) {
	case M_STREAM: {
		pthread_t tx;

		pthread_create(&tx, NULL, server_tx, c);
		recv_stream(c->fd, c->h.seed, c->h.c2s, c->h.maxio, &rs2, &res);
		pthread_join(tx, NULL);
		goto trail;
	}
	case M_SEQ:
		errno = 0;
		recv_stream(c->fd, c->h.seed, c->h.c2s, c->h.maxio, &rs2, &res);
		if (res.got != c->h.c2s)
			fprintf(stderr, "xfer server: port %d: received %llu of %llu bytes (%s)\n",
				pp, (unsigned long long)res.got, (unsigned long long)c->h.c2s,
				errno ? strerror(errno) : "EOF");
		if (server_send(c) < 0)
			fprintf(stderr, "xfer server: port %d: send: %s\n", pp,
				strerror(errno));
trail:
		t.ok = res.ok;
		t.got = res.got;
		t.first_bad = res.first_bad;
		if (writen(c->fd, &t, sizeof(t)) < 0)
			fprintf(stderr, "xfer server: port %d: trailer: %s\n", pp,
				strerror(errno));
		break;
	case M_SLOW:
		/* until the client goes away */
		send_stream(c->fd, c->h.seed ^ 0x5555aaaa5555aaaaull, UINT64_MAX, c->h.maxio, &c->rs, NULL);
		break;
	case M_PP: {
		uint8_t b[256];

		for (;;) {
			size_t k;

			if (readn(c->fd, b, 1) != 1 || b[0] == 0 || b[0] > 100)
				break;
			if (readn(c->fd, b + 1, b[0] - 1) != (size_t)b[0] - 1)
				break;
			for (k = 1; k < b[0]; k++)
				b[k] ^= 0x5a;
			if (writen(c->fd, b, b[0]) < 0)
				break;
		}
		break;
	}
	}
out:
	close(c->fd);
	free(c);
	return NULL;
}

static int server(int port)
{
	struct sockaddr_in6 a = { .sin6_family = AF_INET6, .sin6_addr = IN6ADDR_ANY_INIT };
	int one = 1, zero = 0, lfd = sock_for(AF_INET6);
	pthread_attr_t attr;

	raise_nofile(8192);
	a.sin6_port = htons(port);
	setsockopt(lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	setsockopt(lfd, IPPROTO_IPV6, IPV6_V6ONLY, &zero, sizeof(zero));
	if (bind(lfd, (struct sockaddr *)&a, sizeof(a)) < 0 || listen(lfd, 4096) < 0)
		fatal("bind/listen");
	pthread_attr_init(&attr);
	pthread_attr_setstacksize(&attr, 128 * 1024);
	pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
	for (;;) {
		struct sconn *c = calloc(1, sizeof(*c));
		pthread_t t;

		c->fd = accept(lfd, NULL, NULL);
		if (c->fd < 0) {
			free(c);
			if (errno == EINTR || errno == ECONNABORTED)
				continue;
			if (errno == EMFILE || errno == ENFILE || errno == ENOBUFS || errno == ENOMEM) {
				perror("xfer server: accept");
				usleep(100000);
				continue;
			}
			fatal("accept");
		}
		if (pthread_create(&t, &attr, server_conn, c)) {
			perror("xfer server: pthread_create");
			close(c->fd);
			free(c);
		}
	}
	return 0;
}

/* ------------------------------------------------------------ /proc */

/* connections to PORT listed "accelerated" in /proc/xenvmc/connections; -1 if none */
static int count_accel(int port)
{
	FILE *f = fopen("/proc/xenvmc/connections", "r");
	char line[512], suffix[16];
	int n = 0;

	if (!f)
		return -1;
	snprintf(suffix, sizeof(suffix), ":%d", port);
	while (fgets(line, sizeof(line), f)) {
		char proto[16], l[128], r[128], peer[16], state[32];
		size_t rl;

		if (sscanf(line, "%15s %127s %127s %15s %31s", proto, l, r, peer, state) != 5)
			continue;
		rl = strlen(r);
		if (strcmp(proto, "tcp") || strcmp(state, "accelerated") || rl < strlen(suffix))
			continue;
		if (!strcmp(r + rl - strlen(suffix), suffix))
			n++;
	}
	fclose(f);
	return n;
}

/* ------------------------------------------------------------ stream */

struct txarg {
	int fd;
	uint64_t seed, n, rs;
	int err;
	double t_end;
};

static void *client_tx(void *arg)
{
	struct txarg *a = arg;

	a->err = send_stream(a->fd, a->seed, a->n, MAXIO, &a->rs, NULL);
	a->t_end = now();
	return NULL;
}

static int do_stream(int port, uint64_t mib, uint64_t seed)
{
	uint64_t n = mib << 20, rs = seed * 11 + 3;
	struct hdr h = { MAGIC, M_STREAM, seed, n, n, MAXIO, 0 };
	struct txarg ta = { .seed = seed, .n = n, .rs = seed * 5 + 7 };
	struct trailer t = { 0, 0, 0, 0 };
	struct rxres res;
	pthread_t tx;
	double t0;
	int fd = connect_peer(), ok, acc;

	if (fd < 0)
		fatal("connect");
	if (writen(fd, &h, sizeof(h)) < 0)
		fatal("header");
	ta.fd = fd;
	t0 = now();
	pthread_create(&tx, NULL, client_tx, &ta);
	/* the server's tx uses rs = seed*3+1 for its sizes; ours are independent */
	recv_stream(fd, seed ^ 0x5555aaaa5555aaaaull, n, MAXIO, &rs, &res);
	acc = count_accel(port);
	pthread_join(tx, NULL);
	if (readn(fd, &t, sizeof(t)) != sizeof(t) || t.magic != MAGIC)
		t.ok = 0;
	close(fd);
	printf("stream client->server: %llu of %llu bytes, %.1f MiB/s, %s", (unsigned long long)t.got,
	       (unsigned long long)n, t.got / 1048576.0 / (ta.t_end - t0),
	       ta.err ? "ERROR (send failed)" : t.ok ? "OK (server verified)" : "ERROR");
	if (!t.ok && t.first_bad != UINT64_MAX)
		printf(" first bad offset %llu", (unsigned long long)t.first_bad);
	printf("\n");
	printf("stream server->client: %llu of %llu bytes, %.1f MiB/s, %s", (unsigned long long)res.got,
	       (unsigned long long)n, res.got / 1048576.0 / (res.t_end - t0), res.ok ? "OK" : "ERROR");
	if (!res.ok && res.first_bad != UINT64_MAX)
		printf(" first bad offset %llu", (unsigned long long)res.first_bad);
	printf("\n");
	if (acc >= 0)
		printf("stream: connection accelerated while open: %s\n", acc > 0 ? "yes" : "no");
	ok = !ta.err && t.ok && res.ok;
	printf("RESULT stream %s %llu MiB each way, %.1f s, total %.1f MiB/s\n", ok ? "OK" : "ERROR",
	       (unsigned long long)mib, now() - t0, 2.0 * mib / (now() - t0));
	return ok ? 0 : 1;
}

/* ------------------------------------------------------------ many */

struct mconn {
	int fd, done, failed, port;
	uint64_t seed, txoff, rxoff, rs;
	uint8_t hdrbuf[sizeof(struct hdr)];
	size_t hdroff;
	struct trailer t;
	size_t toff;
	uint64_t first_bad;
};

static int do_many(int port, int nconn, uint64_t kib)
{
	uint64_t n = kib << 10;
	struct mconn *cs = calloc(nconn, sizeof(*cs));
	uint8_t *b = malloc(65536), *tmp = malloc(65536);
	struct epoll_event *evs = calloc(nconn, sizeof(*evs));
	int ep = epoll_create1(0), i, left, connected = 0, ok_n = 0, acc = -1, bad_n = 0;
	double t0 = now(), tc, last = now();

	raise_nofile(nconn + 64);
	for (i = 0; i < nconn; i++) {
		struct hdr h = { MAGIC, M_SEQ, 1000003ull * (i + 1), n, n, 16384, 0 };
		struct epoll_event ev = { .events = EPOLLIN | EPOLLOUT };
		struct mconn *c = &cs[i];

		c->seed = h.seed;
		c->rs = h.seed + 17;
		c->first_bad = UINT64_MAX;
		memcpy(c->hdrbuf, &h, sizeof(h));
		c->fd = connect_peer();
		if (c->fd < 0) {
			printf("many: connection %d: connect failed: %s\n", i, strerror(errno));
			c->done = c->failed = 1;
			continue;
		}
		connected++;
		c->port = sock_port(c->fd, 0);
		fcntl(c->fd, F_SETFL, fcntl(c->fd, F_GETFL) | O_NONBLOCK);
		ev.data.u32 = i;
		if (epoll_ctl(ep, EPOLL_CTL_ADD, c->fd, &ev) < 0)
			fatal("epoll_ctl");
	}
	tc = now();
	printf("many: %d of %d connected in %.1f s\n", connected, nconn, tc - t0);
	left = connected;
	while (left > 0) {
		int k = epoll_wait(ep, evs, nconn, 1000);

		if (k == 0 && now() - last > 120) {
			printf("many: STALL: no progress for 120 s, %d connections unfinished:", left);
			for (i = 0; i < nconn; i++)
				if (!cs[i].done)
					printf(" #%d(tx %llu rx %llu)", i, (unsigned long long)cs[i].txoff,
					       (unsigned long long)cs[i].rxoff);
			printf("\n");
			break;
		}
		for (i = 0; i < k; i++) {
			struct mconn *c = &cs[evs[i].data.u32];
			int progressed = 1;

			while (!c->done && progressed) {
				ssize_t r;

				progressed = 0;
				if (c->hdroff < sizeof(c->hdrbuf)) {
					r = send(c->fd, c->hdrbuf + c->hdroff, sizeof(c->hdrbuf) - c->hdroff,
						 MSG_NOSIGNAL);
					if (r > 0) {
						c->hdroff += r;
						progressed = 1;
					}
				} else if (c->txoff < n) {
					size_t w = rsize(&c->rs, 65536);

					if (w > n - c->txoff)
						w = n - c->txoff;
					gen(c->seed, c->txoff, b, w);
					r = send(c->fd, b, w, MSG_NOSIGNAL);
					if (r > 0) {
						c->txoff += r;
						progressed = 1;
						if (c->txoff == n) {
							struct epoll_event ev = { .events = EPOLLIN,
										  .data.u32 = evs[i].data.u32 };

							epoll_ctl(ep, EPOLL_CTL_MOD, c->fd, &ev);
						}
					} else if (r < 0 && errno != EAGAIN) {
						printf("many: connection %u: send: %s\n", evs[i].data.u32,
						       strerror(errno));
						c->failed = c->done = 1;
					}
				}
				if (c->done)
					break;
				if (c->rxoff < n) {
					size_t w = rsize(&c->rs, 65536);
					long bad;

					if (w > n - c->rxoff)
						w = n - c->rxoff;
					r = recv(c->fd, b, w, 0);
					if (r > 0) {
						bad = verify(c->seed ^ 0x5555aaaa5555aaaaull, c->rxoff, b, r, tmp);
						if (bad >= 0 && c->first_bad == UINT64_MAX)
							c->first_bad = c->rxoff + bad;
						c->rxoff += r;
						progressed = 1;
					} else if (r == 0 || errno != EAGAIN) {
						printf("many: connection %u (port %d, sent %llu): recv at %llu: %s\n",
						       evs[i].data.u32, c->port,
						       (unsigned long long)c->txoff,
						       (unsigned long long)c->rxoff, r ? strerror(errno) : "EOF");
						c->failed = c->done = 1;
					}
				} else if (c->toff < sizeof(c->t)) {
					r = recv(c->fd, (char *)&c->t + c->toff, sizeof(c->t) - c->toff, 0);
					if (r > 0) {
						c->toff += r;
						progressed = 1;
						if (c->toff == sizeof(c->t)) {
							c->done = 1;
							c->failed = !(c->t.magic == MAGIC && c->t.ok &&
								      c->first_bad == UINT64_MAX);
							if (c->failed)
								printf("many: connection %u: ERROR server ok=%u got=%llu bad@%llu, client bad@%llu\n",
								       evs[i].data.u32, c->t.ok,
								       (unsigned long long)c->t.got,
								       (unsigned long long)c->t.first_bad,
								       (unsigned long long)c->first_bad);
						}
					} else if (r == 0 || errno != EAGAIN) {
						printf("many: connection %u: trailer: %s\n", evs[i].data.u32,
						       r ? strerror(errno) : "EOF");
						c->failed = c->done = 1;
					}
				}
			}
			if (c->done) {
				epoll_ctl(ep, EPOLL_CTL_DEL, c->fd, NULL);
				left--;
				last = now();
				if (!c->failed)
					ok_n++;
				else
					bad_n++;
			} else {
				last = now();
			}
		}
		if (acc < 0 && left <= connected / 2)
			acc = count_accel(port);	/* mid-run, all still open */
	}
	{
		int acc_end = count_accel(port);

		if (acc_end > acc)
			acc = acc_end;
	}
	for (i = 0; i < nconn; i++)
		if (cs[i].fd >= 0)
			close(cs[i].fd);
	printf("many: %d connections, %d verified OK, %d failed, %d unfinished, %.1f MiB each way in %.1f s\n",
	       nconn, ok_n, bad_n, nconn - ok_n - bad_n, (double)n * ok_n / 1048576.0, now() - tc);
	if (acc >= 0)
		printf("many: accelerated (listed in /proc/xenvmc/connections while open): %d of %d\n", acc, nconn);
	printf("RESULT many %s %d/%d connections verified\n", ok_n == nconn ? "OK" : "ERROR", ok_n, nconn);
	return ok_n == nconn ? 0 : 1;
}

/* ------------------------------------------------------------ slow */

static int do_slow(int port, int nconn, int secs, int stall)
{
	int *fds = calloc(nconn, sizeof(int)), i, ok = 1, acc;
	uint64_t *got = calloc(nconn, sizeof(uint64_t)), *rs = calloc(nconn, sizeof(uint64_t));
	uint64_t before_others = 0, during_others = 0, after_others = 0, at_start[64], at_stall[64];
	uint64_t at_resume[64], s0 = 0;
	uint8_t *b = malloc(65536), *tmp = malloc(65536);
	double t0, ts, tr, te;
	struct pollfd *p = calloc(nconn, sizeof(*p));
	int phase = 0, stalled_conn_got_during;

	if (nconn < 2 || nconn > 64) {
		printf("RESULT slow ERROR 2..64 connections\n");
		return 1;
	}
	for (i = 0; i < nconn; i++) {
		struct hdr h = { MAGIC, M_SLOW, 7777ull * (i + 1), 0, 0, 65536, 0 };

		fds[i] = connect_peer();
		if (fds[i] < 0 || writen(fds[i], &h, sizeof(h)) < 0)
			fatal("connect");
		rs[i] = h.seed;
		p[i].fd = fds[i];
		p[i].events = POLLIN;
	}
	t0 = now();
	ts = t0 + (secs - stall) / 2.0;		/* stall starts */
	tr = ts + stall;			/* stall ends */
	te = t0 + secs;
	memset(at_start, 0, sizeof(at_start));
	while (now() < te) {
		double t = now();

		if (phase == 0 && t >= ts) {
			phase = 1;
			memcpy(at_stall, got, nconn * sizeof(uint64_t));
			p[0].events = 0;	/* connection 0 stops reading */
		} else if (phase == 1 && t >= tr) {
			phase = 2;
			memcpy(at_resume, got, nconn * sizeof(uint64_t));
			p[0].events = POLLIN;
		}
		if (poll(p, nconn, 200) <= 0)
			continue;
		for (i = 0; i < nconn; i++) {
			ssize_t r;
			long bad;

			if (!(p[i].revents & (POLLIN | POLLERR | POLLHUP)) || !p[i].events)
				continue;
			r = recv(fds[i], b, rsize(&rs[i], 65536), MSG_DONTWAIT);
			if (r < 0 && errno == EAGAIN)
				continue;
			if (r <= 0) {
				printf("slow: connection %d: recv at %llu: %s\n", i, (unsigned long long)got[i],
				       r ? strerror(errno) : "EOF");
				ok = 0;
				p[i].events = 0;
				continue;
			}
			bad = verify(7777ull * (i + 1) ^ 0x5555aaaa5555aaaaull, got[i], b, r, tmp);
			if (bad >= 0) {
				printf("slow: connection %d: ERROR first bad offset %llu\n", i,
				       (unsigned long long)(got[i] + bad));
				ok = 0;
				p[i].events = 0;
			}
			got[i] += r;
		}
	}
	if (phase < 2) {
		printf("RESULT slow ERROR the run was too short for the stall\n");
		return 1;
	}
	acc = count_accel(port);
	for (i = 1; i < nconn; i++) {
		before_others += at_stall[i];
		during_others += at_resume[i] - at_stall[i];
		after_others += got[i] - at_resume[i];
	}
	s0 = got[0];
	stalled_conn_got_during = at_resume[0] != at_stall[0];
	printf("slow: %d connections for %d s, connection 0 not read for %d s\n", nconn, secs, stall);
	printf("slow: others before the stall: %.1f MiB/s\n", before_others / 1048576.0 / (ts - t0));
	printf("slow: others during the stall: %.1f MiB/s (%.1f MiB)\n",
	       during_others / 1048576.0 / stall, during_others / 1048576.0);
	printf("slow: others after the stall: %.1f MiB/s\n", after_others / 1048576.0 / (te - tr));
	printf("slow: connection 0: %.1f MiB total, %.1f MiB after it resumed, read while stalled: %s\n",
	       s0 / 1048576.0, (s0 - at_resume[0]) / 1048576.0, stalled_conn_got_during ? "yes (bug in xfer)" : "no");
	for (i = 0; i < nconn; i++)
		printf("slow: connection %d: %.1f MiB verified\n", i, got[i] / 1048576.0);
	if (acc >= 0)
		printf("slow: accelerated (listed while open): %d of %d\n", acc, nconn);
	for (i = 0; i < nconn; i++)
		close(fds[i]);
	/* the others must keep going: at least 10% of their earlier rate, and
	 * connection 0 must resume */
	if (during_others / (double)stall < 0.1 * before_others / (ts - t0) || during_others == 0) {
		printf("slow: the other connections stalled with connection 0\n");
		ok = 0;
	}
	if (s0 == at_resume[0]) {
		printf("slow: connection 0 did not resume\n");
		ok = 0;
	}
	printf("RESULT slow %s\n", ok ? "OK" : "ERROR");
	return ok ? 0 : 1;
}

/* ------------------------------------------------------------ pingpong */

struct ppc {
	int fd, idx;
	volatile uint64_t rounds;
	volatile double last;
	volatile int where;	/* 0 sending, 1 waiting for the reply */
	volatile int len;
	volatile int stop, failed;
	double maxlat;
	char err[160];
};

static void *pp_thread(void *arg)
{
	struct ppc *c = arg;
	uint64_t rs = c->idx * 2654435761ull + 1;
	uint8_t q[128], a[128];

	while (!c->stop) {
		int len = 1 + rnd(&rs) % 100, k;
		double t = now();

		q[0] = len;
		for (k = 1; k < len; k++)
			q[k] = rnd(&rs);
		c->len = len;
		c->where = 0;
		if (writen(c->fd, q, len) < 0) {
			snprintf(c->err, sizeof(c->err), "send: %s", strerror(errno));
			c->failed = !c->stop;
			break;
		}
		c->where = 1;
		errno = 0;
		if (readn(c->fd, a, len) != (size_t)len) {
			snprintf(c->err, sizeof(c->err), "reply: %s", errno ? strerror(errno) : "EOF");
			c->failed = !c->stop;
			break;
		}
		for (k = 1; k < len; k++)
			if (a[k] != (q[k] ^ 0x5a))
				break;
		if (a[0] != len || k != len) {
			snprintf(c->err, sizeof(c->err), "bad reply in round %llu (len %d)",
				 (unsigned long long)c->rounds, len);
			c->failed = 1;
			break;
		}
		c->rounds++;
		c->last = now();
		if (c->last - t > c->maxlat)
			c->maxlat = c->last - t;
	}
	return NULL;
}

static int do_pingpong(int port, int nconn, int secs, int limit)
{
	struct ppc *cs = calloc(nconn, sizeof(*cs));
	pthread_t *th = calloc(nconn, sizeof(*th));
	int i, ok = 1, stalled = 0, acc = -1;
	double t0 = now(), maxlat = 0;
	uint64_t total = 0, minr = UINT64_MAX;

	for (i = 0; i < nconn; i++) {
		struct hdr h = { MAGIC, M_PP, 0, 0, 0, 128, 0 };
		int one = 1;

		cs[i].fd = connect_peer();
		if (cs[i].fd < 0 || writen(cs[i].fd, &h, sizeof(h)) < 0)
			fatal("connect");
		setsockopt(cs[i].fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
		cs[i].idx = i;
		cs[i].last = now();
		pthread_create(&th[i], NULL, pp_thread, &cs[i]);
	}
	while (now() - t0 < secs && !stalled) {
		sleep(1);
		if (acc < 0 && now() - t0 > 5)
			acc = count_accel(port);
		for (i = 0; i < nconn; i++) {
			if (cs[i].failed) {
				stalled = 1;
				continue;
			}
			if (now() - cs[i].last > limit) {
				printf("pingpong: STALL: connection %d no progress for %d s after %llu round trips, %s (%d bytes)\n",
				       i, limit, (unsigned long long)cs[i].rounds,
				       cs[i].where ? "waiting for the reply" : "sending the request", cs[i].len);
				stalled = 1;
			}
		}
	}
	for (i = 0; i < nconn; i++) {
		cs[i].stop = 1;
		shutdown(cs[i].fd, SHUT_RDWR);
	}
	for (i = 0; i < nconn; i++) {
		pthread_join(th[i], NULL);
		close(cs[i].fd);
		if (cs[i].failed) {
			printf("pingpong: connection %d: ERROR after %llu round trips: %s\n", i,
			       (unsigned long long)cs[i].rounds, cs[i].err);
			ok = 0;
		}
		total += cs[i].rounds;
		if (cs[i].rounds < minr)
			minr = cs[i].rounds;
		if (cs[i].maxlat > maxlat)
			maxlat = cs[i].maxlat;
	}
	if (stalled)
		ok = 0;
	printf("pingpong: %d connections, %.0f s: %llu round trips (%.0f/s), fewest on one connection %llu, slowest round trip %.3f s\n",
	       nconn, now() - t0, (unsigned long long)total, total / (now() - t0),
	       (unsigned long long)minr, maxlat);
	if (acc >= 0)
		printf("pingpong: accelerated (listed while open): %d of %d\n", acc, nconn);
	if (minr == 0)
		ok = 0;
	printf("RESULT pingpong %s\n", ok ? "OK" : "ERROR");
	return ok ? 0 : 1;
}

/* ------------------------------------------------------------ main */

static int set_peer(const char *addr, const char *port)
{
	struct sockaddr_in *a4 = (struct sockaddr_in *)&peer_sa;
	struct sockaddr_in6 *a6 = (struct sockaddr_in6 *)&peer_sa;

	if (inet_pton(AF_INET, addr, &a4->sin_addr) == 1) {
		a4->sin_family = AF_INET;
		a4->sin_port = htons(atoi(port));
		peer_len = sizeof(*a4);
	} else if (inet_pton(AF_INET6, addr, &a6->sin6_addr) == 1) {
		a6->sin6_family = AF_INET6;
		a6->sin6_port = htons(atoi(port));
		peer_len = sizeof(*a6);
	} else {
		fprintf(stderr, "xfer: %s: not a numeric IPv4/IPv6 address\n", addr);
		return -1;
	}
	return 0;
}

static int usage(void)
{
	fprintf(stderr,
		"usage: xfer server PORT\n"
		"       xfer stream ADDR PORT MIB [SEED]\n"
		"       xfer many ADDR PORT N KIB\n"
		"       xfer slow ADDR PORT CONNS SECONDS STALL\n"
		"       xfer pingpong ADDR PORT CONNS SECONDS LIMIT\n");
	return 2;
}

int main(int argc, char **argv)
{
	setvbuf(stdout, NULL, _IOLBF, 0);
	signal(SIGPIPE, SIG_IGN);
	if (argc == 3 && !strcmp(argv[1], "server"))
		return server(atoi(argv[2]));
	if (argc < 5 || set_peer(argv[2], argv[3]) < 0)
		return usage();
	if (!strcmp(argv[1], "stream") && argc <= 6)
		return do_stream(atoi(argv[3]), strtoull(argv[4], NULL, 0),
				 argc == 6 ? strtoull(argv[5], NULL, 0) : (uint64_t)time(NULL));
	if (!strcmp(argv[1], "many") && argc == 6)
		return do_many(atoi(argv[3]), atoi(argv[4]), strtoull(argv[5], NULL, 0));
	if (!strcmp(argv[1], "slow") && argc == 7)
		return do_slow(atoi(argv[3]), atoi(argv[4]), atoi(argv[5]), atoi(argv[6]));
	if (!strcmp(argv[1], "pingpong") && argc == 7)
		return do_pingpong(atoi(argv[3]), atoi(argv[4]), atoi(argv[5]), atoi(argv[6]));
	return usage();
}
