// SPDX-License-Identifier: GPL-2.0
/*
 * vmcstream: long-running checksummed TCP traffic that must survive what
 * the lab does to XenVMC meanwhile (unload, tcp=0, save/restore, migration).
 *
 *   vmcstream server PORT
 *   vmcstream stream HOST PORT SECONDS   both directions at once
 *   vmcstream rr HOST PORT SECONDS       request/response, 1..1024 bytes
 *   vmcstream cserver PORT               churn server: rr, one connection
 *                                        after another, until killed
 *   vmcstream churn HOST PORT SECONDS    new connection after new connection
 *                                        (each: 1..4 requests, half-close,
 *                                        the server's EOF, close)
 *
 * stream: each side writes a pseudo-random byte stream (seeded by its role)
 * in random sizes (1 B .. 256 KiB) for SECONDS, then shuts down its writing
 * side; each side checks every byte it reads against the stream the other
 * must have sent, up to the EOF.  rr: the client sends numbered requests of
 * random size and checks each echo.  churn spends its time in connection
 * set-up and teardown, so that whatever the lab does lands in a handshake.
 * SIGUSR1 ends a client's (and a stream server's) sending as if its time
 * were up, so that a test can run traffic for exactly as long as something
 * else takes.  The last line is
 *   vmcstream: ROLE sent N received N errors N stalls N [connections N]
 * and the exit status is 0 only when errors and stalls are 0 (a stall: no
 * byte moved for 20 s, or $VMCSTREAM_STALL s: a save/restore suspends one
 * side, and TCP's retransmission backoff follows).  Compare one side's "sent" with the other's
 * "received" to prove nothing was lost.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

static int stall_secs = 20;	/* VMCSTREAM_STALL overrides */

struct prng { uint64_t s; };

static uint8_t prng_byte(struct prng *p)
{
	p->s = p->s * 6364136223846793005ULL + 1442695040888963407ULL;
	return p->s >> 56;
}

static uint32_t prng_u32(struct prng *p)
{
	p->s = p->s * 6364136223846793005ULL + 1442695040888963407ULL;
	return p->s >> 32;
}

static double now(void)
{
	struct timespec t;

	clock_gettime(CLOCK_MONOTONIC, &t);
	return t.tv_sec + t.tv_nsec / 1e9;
}

static int fd;
static double secs;
static volatile unsigned long long sent, received, errors, stalls;
static volatile double last_move;
static const char *role;
/* SIGUSR1: the time is up now (checked where the time is). */
static volatile sig_atomic_t stop_now;

static void on_usr1(int sig)
{
	(void)sig;
	stop_now = 1;
}

static void *writer(void *arg)
{
	struct prng g = { *(uint64_t *)arg }, sz = { 77 };
	static uint8_t buf[256 * 1024];
	double end = now() + secs;
	size_t n, i, off;
	ssize_t w;

	while (!stop_now && now() < end) {
		n = 1 + prng_u32(&sz) % sizeof(buf);
		for (i = 0; i < n; i++)
			buf[i] = prng_byte(&g);
		for (off = 0; off < n; off += w) {
			w = write(fd, buf + off, n - off);
			if (w < 0 && errno == EINTR) {
				w = 0;
				continue;
			}
			if (w <= 0) {
				fprintf(stderr, "%s: write: %s after %llu bytes\n",
					role, strerror(errno), sent);
				errors++;
				return NULL;
			}
			sent += w;
			last_move = now();
		}
	}
	if (shutdown(fd, SHUT_WR))
		errors++;
	return NULL;
}

static void *watchdog(void *arg)
{
	(void)arg;
	for (;;) {
		sleep(1);
		if (now() - last_move > stall_secs) {
			fprintf(stderr, "%s: STALL: nothing moved for %d s (sent %llu received %llu)\n",
				role, stall_secs, sent, received);
			stalls++;
			last_move = now();
		}
	}
	return NULL;
}

static int connect_to(const char *host, const char *port)
{
	struct addrinfo hints = { .ai_socktype = SOCK_STREAM }, *ai, *a;
	int s = -1;

	if (getaddrinfo(host, port, &hints, &ai))
		return -1;
	for (a = ai; a; a = a->ai_next) {
		s = socket(a->ai_family, SOCK_STREAM, 0);
		if (s >= 0 && !connect(s, a->ai_addr, a->ai_addrlen))
			break;
		if (s >= 0)
			close(s);
		s = -1;
	}
	freeaddrinfo(ai);
	return s;
}

/*
 * After a bad byte at stream offset @off: what came instead, so that a
 * failure tells a shifted stream (bytes lost or repeated: the received
 * bytes are the stream's own, found up to 4 MiB away) from foreign ones
 * (zeros, another stream's).  Regenerates the stream from its seed.
 */
static void explain(uint64_t seed, unsigned long long off, const uint8_t *got,
		    size_t n)
{
	const long long win = 4 << 20;
	long long from = off > (unsigned long long)win ? (long long)off - win : 0;
	size_t len = off + win - from, k, i;
	struct prng g = { seed };
	unsigned long long j;
	uint8_t *exp;

	n = n < 32 ? n : 32;
	exp = malloc(len);
	if (!exp)
		return;
	for (j = 0; j < (unsigned long long)from; j++)
		prng_byte(&g);
	for (k = 0; k < len; k++)
		exp[k] = prng_byte(&g);
	fprintf(stderr, "%s: expected", role);
	for (i = 0; i < n; i++)
		fprintf(stderr, " %02x", exp[off - from + i]);
	fprintf(stderr, "\n%s: received", role);
	for (i = 0; i < n; i++)
		fprintf(stderr, " %02x", got[i]);
	fprintf(stderr, "\n");
	for (k = 0; n >= 8 && k + n <= len; k++) {
		if (!memcmp(exp + k, got, n)) {
			fprintf(stderr, "%s: they are the stream's bytes at offset %llu (shift %+lld)\n",
				role, from + k, from + (long long)k - (long long)off);
			break;
		}
	}
	if (k + n > len)
		fprintf(stderr, "%s: not the stream's within 4 MiB\n", role);
	free(exp);
}

/* Read and check the peer's stream up to EOF. */
static void reader(uint64_t seed)
{
	struct prng g = { seed };
	static uint8_t buf[128 * 1024];
	ssize_t r, i;

	for (;;) {
		r = read(fd, buf, sizeof(buf));
		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0) {
			fprintf(stderr, "%s: read: %s after %llu bytes\n", role,
				strerror(errno), received);
			errors++;
			return;
		}
		if (r == 0)
			return;
		for (i = 0; i < r; i++) {
			if (buf[i] != prng_byte(&g)) {
				if (!errors) {
					fprintf(stderr, "%s: BAD BYTE at offset %llu (read of %zd at %llu)\n",
						role, received + i, r, received);
					explain(seed, received + i, buf + i, r - i);
				}
				errors++;
				return;
			}
		}
		received += r;
		last_move = now();
	}
}

static int full(int s, void *b, size_t n, int wr)
{
	size_t off = 0;
	ssize_t r;

	while (off < n) {
		r = wr ? write(s, (char *)b + off, n - off) :
			 read(s, (char *)b + off, n - off);
		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0)
			return -1;
		off += r;
	}
	return 0;
}

/*
 * rr: [u32 seq][u32 len][len bytes]; the server echoes each request.
 * @max requests (0: until the time is up); -1 on an error.
 */
static int rr_client(unsigned int max)
{
	static struct prng g = { 99 };
	static uint8_t req[1032], resp[1032];
	static uint32_t seq;
	double end = now() + secs;
	uint32_t len, i, n = 0;

	while (!stop_now && now() < end && (!max || n++ < max)) {
		len = 1 + prng_u32(&g) % 1024;
		memcpy(req, &seq, 4);
		memcpy(req + 4, &len, 4);
		for (i = 0; i < len; i++)
			req[8 + i] = prng_byte(&g);
		if (full(fd, req, 8 + len, 1) || full(fd, resp, 8 + len, 0)) {
			fprintf(stderr, "%s: rr: %s at request %u\n", role,
				strerror(errno), seq);
			errors++;
			return -1;
		}
		if (memcmp(req, resp, 8 + len)) {
			for (i = 0; req[i] == resp[i]; i++)
				;
			fprintf(stderr, "%s: rr: BAD ECHO at request %u (%u bytes, first wrong %u: %02x for %02x)\n",
				role, seq, 8 + len, i, resp[i], req[i]);
			errors++;
			return -1;
		}
		sent += 8 + len;
		received += 8 + len;
		last_move = now();
		seq++;
	}
	shutdown(fd, SHUT_WR);
	return 0;
}

static unsigned long long conns;

/* churn: connection after connection until the time is up. */
static void churn_client(const char *host, const char *port)
{
	double end = now() + secs;
	int kind = 1;
	char c;

	while (!stop_now && now() < end) {
		fd = connect_to(host, port);
		if (fd < 0 || full(fd, &kind, sizeof(kind), 1)) {
			fprintf(stderr, "%s: churn: connect: %s after %llu connections\n",
				role, strerror(errno), conns);
			errors++;
			return;
		}
		if (rr_client(1 + conns % 4))
			return;
		/* The server closes after our EOF; anything else is wrong. */
		if (read(fd, &c, 1) != 0) {
			fprintf(stderr, "%s: churn: no EOF after connection %llu\n",
				role, conns);
			errors++;
			return;
		}
		close(fd);
		conns++;
	}
	fd = -1;
}

static void rr_server(void)
{
	static uint8_t req[1032];
	uint32_t len;

	for (;;) {
		if (full(fd, req, 8, 0))
			return;
		memcpy(&len, req + 4, 4);
		if (len > 1024 || full(fd, req + 8, len, 0) ||
		    full(fd, req, 8 + len, 1)) {
			errors++;
			return;
		}
		received += 8 + len;
		sent += 8 + len;
		last_move = now();
	}
}

int main(int argc, char **argv)
{
	uint64_t seed_a = 1111, seed_b = 2222;
	pthread_t w, wd;
	int ls, one = 1, kind;
	struct sockaddr_in6 sa = { .sin6_family = AF_INET6 };
	struct sigaction usr1 = { .sa_handler = on_usr1, .sa_flags = SA_RESTART };

	signal(SIGPIPE, SIG_IGN);
	sigaction(SIGUSR1, &usr1, NULL);
	if (getenv("VMCSTREAM_STALL"))
		stall_secs = atoi(getenv("VMCSTREAM_STALL"));
	setvbuf(stdout, NULL, _IOLBF, 0);
	if (argc == 3 && !strcmp(argv[1], "cserver")) {
		role = "cserver";
		ls = socket(AF_INET6, SOCK_STREAM, 0);
		setsockopt(ls, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
		sa.sin6_port = htons(atoi(argv[2]));
		if (ls < 0 || bind(ls, (void *)&sa, sizeof(sa)) || listen(ls, 64)) {
			perror("cserver");
			return 2;
		}
		for (;;) {
			fd = accept(ls, NULL, NULL);
			if (fd < 0)
				continue;
			if (!full(fd, &kind, sizeof(kind), 0) && kind == 1)
				rr_server();
			close(fd);
		}
	}
	if (argc == 5 && !strcmp(argv[1], "churn")) {
		role = "client";
		secs = atof(argv[4]);
		last_move = now();
		pthread_create(&wd, NULL, watchdog, NULL);
		churn_client(argv[2], argv[3]);
		printf("vmcstream: %s sent %llu received %llu errors %llu stalls %llu connections %llu\n",
		       role, sent, received, errors, stalls, conns);
		return errors || stalls || !conns ? 1 : 0;
	}
	if (argc == 3 && !strcmp(argv[1], "server")) {
		role = "server";
		ls = socket(AF_INET6, SOCK_STREAM, 0);
		setsockopt(ls, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
		sa.sin6_port = htons(atoi(argv[2]));
		if (ls < 0 || bind(ls, (void *)&sa, sizeof(sa)) || listen(ls, 8)) {
			perror("server");
			return 2;
		}
		fd = accept(ls, NULL, NULL);
		if (fd < 0 || full(fd, &kind, sizeof(kind), 0)) {
			perror("accept");
			return 2;
		}
	} else if (argc == 5 && (!strcmp(argv[1], "stream") || !strcmp(argv[1], "rr"))) {
		role = "client";
		secs = atof(argv[4]);
		kind = !strcmp(argv[1], "rr");
		fd = connect_to(argv[2], argv[3]);
		if (fd < 0 || full(fd, &kind, sizeof(kind), 1)) {
			perror("connect");
			return 2;
		}
	} else {
		fprintf(stderr, "usage: vmcstream server|cserver PORT | stream|rr|churn HOST PORT SECONDS\n");
		return 2;
	}
	last_move = now();
	pthread_create(&wd, NULL, watchdog, NULL);
	if (kind == 1) {
		if (!strcmp(role, "client"))
			rr_client(0);
		else
			rr_server();
	} else {
		/* The server's stream length: as long as the client's. */
		if (!strcmp(role, "server")) {
			double s2;

			if (full(fd, &s2, sizeof(s2), 0))
				return 2;
			secs = s2;
		} else if (full(fd, &secs, sizeof(secs), 1)) {
			return 2;
		}
		pthread_create(&w, NULL, writer, strcmp(role, "client") ? &seed_b : &seed_a);
		reader(strcmp(role, "client") ? seed_a : seed_b);
		pthread_join(w, NULL);
	}
	printf("vmcstream: %s sent %llu received %llu errors %llu stalls %llu\n",
	       role, sent, received, errors, stalls);
	close(fd);
	return errors || stalls ? 1 : 0;
}
