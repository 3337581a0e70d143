// SPDX-License-Identifier: GPL-2.0
/*
 * udpcheck: UDP semantics and integrity, the same over netfront and over
 * XenVMC's datagram ring.
 *
 *   udpcheck echo PORT                 echo server (every datagram back to
 *                                      its sender), for "sem"
 *   udpcheck sem HOST PORT             semantics checks against an echo
 *                                      server; one line per check, with
 *                                      what was observed (diffable)
 *   udpcheck sink PORT SECONDS         counts and checks numbered datagrams
 *   udpcheck blast HOST PORT COUNT     sends COUNT numbered, checksummed
 *                                      datagrams of random size (1 .. 65507
 *                                      bytes of payload), then end markers
 *
 * sink's last line: "udpcheck: received N bad N duplicate N lost N of N"
 * (lost is allowed, UDP; bad and duplicate are not: exit 1 if any).
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define MAGIC 0x564d4355u	/* "VMCU" */
#define MAXPAY 65507
#define END_SEQ 0xffffffffu

struct hdr {
	uint32_t magic, seq, len, sum;
};

static uint8_t buf[MAXPAY + 1], rbuf[MAXPAY + 1];

static uint32_t fill(uint8_t *p, uint32_t n, uint32_t seed)
{
	uint32_t x = seed * 2654435761u + 1, sum = 0, i;

	for (i = 0; i < n; i++) {
		x = x * 1103515245u + 12345u;
		p[i] = x >> 24;
		sum = sum * 31 + p[i];
	}
	return sum;
}

static uint32_t sum_of(const uint8_t *p, uint32_t n)
{
	uint32_t sum = 0, i;

	for (i = 0; i < n; i++)
		sum = sum * 31 + p[i];
	return sum;
}

static int resolve(const char *host, const char *port, struct sockaddr_storage *ss,
		   socklen_t *len)
{
	struct addrinfo hints = { .ai_socktype = SOCK_DGRAM,
				  .ai_flags = AI_NUMERICHOST }, *ai;

	if (getaddrinfo(host, port, &hints, &ai))
		return -1;
	memcpy(ss, ai->ai_addr, ai->ai_addrlen);
	*len = ai->ai_addrlen;
	freeaddrinfo(ai);
	return 0;
}

static int bound(int port)
{
	struct sockaddr_in6 sa = { .sin6_family = AF_INET6 };
	int s = socket(AF_INET6, SOCK_DGRAM, 0), zero = 0;

	setsockopt(s, IPPROTO_IPV6, IPV6_V6ONLY, &zero, sizeof(zero));
	sa.sin6_port = htons(port);
	if (s < 0 || bind(s, (void *)&sa, sizeof(sa))) {
		perror("bind");
		exit(2);
	}
	return s;
}

static void echo(int port)
{
	struct sockaddr_storage from;
	socklen_t fl;
	ssize_t n;
	int s = bound(port);

	for (;;) {
		fl = sizeof(from);
		n = recvfrom(s, rbuf, sizeof(rbuf), 0, (void *)&from, &fl);
		if (n >= 0)
			sendto(s, rbuf, n, 0, (void *)&from, fl);
	}
}

static void say(const char *check, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));
static void say(const char *check, const char *fmt, ...)
{
	va_list ap;

	printf("%-28s ", check);
	va_start(ap, fmt);
	vprintf(fmt, ap);
	va_end(ap);
	putchar('\n');
}

/* Wait for one datagram (5 s); returns its length or -1. */
static ssize_t get(int s, void *b, size_t n, int flags, int *mflags)
{
	struct iovec iov = { b, n };
	struct msghdr m = { .msg_iov = &iov, .msg_iovlen = 1 };
	struct pollfd p = { s, POLLIN, 0 };
	ssize_t r;

	if (poll(&p, 1, 5000) != 1)
		return -1;
	r = recvmsg(s, &m, flags);
	if (mflags)
		*mflags = m.msg_flags;
	return r;
}

static void sem(const char *host, const char *port)
{
	struct sockaddr_storage to, from;
	socklen_t tl, fl;
	struct mmsghdr mm[8];
	struct iovec iov[8];
	static uint8_t big[8][2048];
	char a1[64], a2[64];
	int s, c, i, mf, n, ok;
	ssize_t r;
	struct pollfd p;

	if (resolve(host, port, &to, &tl)) {
		fprintf(stderr, "bad address %s\n", host);
		exit(2);
	}
	s = socket(to.ss_family, SOCK_DGRAM, 0);

	/* boundaries: 100, 1, 5000 bytes come back as three datagrams */
	{
		static const int sz[3] = { 100, 1, 5000 };
		char got[64] = "";

		for (i = 0; i < 3; i++) {
			fill(buf, sz[i], i);
			sendto(s, buf, sz[i], 0, (void *)&to, tl);
		}
		for (i = 0; i < 3; i++) {
			r = get(s, rbuf, sizeof(rbuf), 0, NULL);
			snprintf(got + strlen(got), sizeof(got) - strlen(got), "%zd%s",
				 r, i < 2 ? "," : "");
		}
		say("boundaries", "sent 100,1,5000 received %s", got);
	}
	/* MSG_TRUNC: short buffer */
	fill(buf, 5000, 7);
	sendto(s, buf, 5000, 0, (void *)&to, tl);
	r = get(s, rbuf, 100, 0, &mf);
	say("short-buffer", "returned %zd MSG_TRUNC %s data %s", r,
	    mf & MSG_TRUNC ? "set" : "clear", memcmp(rbuf, buf, 100) ? "wrong" : "ok");
	sendto(s, buf, 5000, 0, (void *)&to, tl);
	r = get(s, rbuf, 100, MSG_TRUNC, &mf);
	say("recv-flag-MSG_TRUNC", "returned %zd (real length)", r);
	/* MSG_PEEK then read */
	sendto(s, buf, 300, 0, (void *)&to, tl);
	r = get(s, rbuf, sizeof(rbuf), MSG_PEEK, NULL);
	n = (int)get(s, rbuf, sizeof(rbuf), 0, NULL);
	say("peek", "peek %zd then read %d", r, n);
	/* the source seen by recvfrom is the echo server's address and port */
	sendto(s, buf, 10, 0, (void *)&to, tl);
	fl = sizeof(from);
	p = (struct pollfd){ s, POLLIN, 0 };
	poll(&p, 1, 5000);
	r = recvfrom(s, rbuf, sizeof(rbuf), 0, (void *)&from, &fl);
	getnameinfo((void *)&from, fl, a1, sizeof(a1), a2, sizeof(a2),
		    NI_NUMERICHOST | NI_NUMERICSERV);
	say("source-address", "from %s port %s (expected %s %s): %s", a1, a2, host, port,
	    !strcmp(a1, host) && !strcmp(a2, port) ? "same" : "DIFFERENT");
	/* connected socket: send/recv */
	c = socket(to.ss_family, SOCK_DGRAM, 0);
	connect(c, (void *)&to, tl);
	send(c, buf, 1234, 0);
	r = get(c, rbuf, sizeof(rbuf), 0, NULL);
	say("connected", "send 1234 recv %zd data %s", r,
	    r == 1234 && !memcmp(rbuf, buf, 1234) ? "ok" : "wrong");
	/* poll: POLLOUT at once; POLLIN only once a datagram is there */
	p = (struct pollfd){ c, POLLIN | POLLOUT, 0 };
	poll(&p, 1, 0);
	say("poll-idle", "POLLIN %d POLLOUT %d", !!(p.revents & POLLIN),
	    !!(p.revents & POLLOUT));
	send(c, buf, 10, 0);
	p = (struct pollfd){ c, POLLIN, 0 };
	n = poll(&p, 1, 5000);
	say("poll-data", "poll %d POLLIN %d", n, !!(p.revents & POLLIN));
	get(c, rbuf, sizeof(rbuf), 0, NULL);
	/* sendmmsg / recvmmsg: 8 datagrams of 100 + i bytes */
	for (i = 0; i < 8; i++) {
		fill(big[i], 100 + i, 100 + i);
		iov[i] = (struct iovec){ big[i], 100 + i };
		memset(&mm[i], 0, sizeof(mm[i]));
		mm[i].msg_hdr.msg_iov = &iov[i];
		mm[i].msg_hdr.msg_iovlen = 1;
	}
	n = sendmmsg(c, mm, 8, 0);
	ok = 0;
	for (i = 0; i < 8; i++) {
		iov[i] = (struct iovec){ big[i] + 1024, 1024 };
		mm[i].msg_len = 0;
	}
	p = (struct pollfd){ c, POLLIN, 0 };
	poll(&p, 1, 5000);
	usleep(300000);
	r = recvmmsg(c, mm, 8, MSG_DONTWAIT, NULL);
	for (i = 0; i < r; i++)
		ok += mm[i].msg_len == (unsigned int)(100 + i) &&
		      !memcmp(big[i] + 1024, big[i], 100 + i);
	say("sendmmsg-recvmmsg", "sent %d received %zd in one call, %d intact", n, r, ok);
	/* the largest datagram */
	fill(buf, MAXPAY - (to.ss_family == AF_INET6 ? 20 : 0), 99);
	n = MAXPAY - (to.ss_family == AF_INET6 ? 20 : 0);
	r = send(c, buf, n, 0);
	r = get(c, rbuf, sizeof(rbuf), 0, NULL);
	say("largest", "payload %d echoed %zd data %s", n, r,
	    r == n && !memcmp(rbuf, buf, n) ? "ok" : "wrong");
	/* nothing waiting: EAGAIN */
	r = recv(c, rbuf, sizeof(rbuf), MSG_DONTWAIT);
	say("dontwait-empty", "returned %zd errno %s", r, r < 0 ? strerror(errno) : "-");
	close(c);
	/*
	 * SO_RCVBUF: 40 echoes of 1000 bytes into a socket of 16 KiB (the
	 * kernel doubles it) that reads nothing until they are all back: the
	 * excess is dropped, the kept ones are whole and in order.  How many
	 * fit depends on each packet's truesize, which differs between
	 * netfront and the ring: not printed, as it is not UDP's semantics.
	 */
	c = socket(to.ss_family, SOCK_DGRAM, 0);
	n = 16384;
	setsockopt(c, SOL_SOCKET, SO_RCVBUF, &n, sizeof(n));
	connect(c, (void *)&to, tl);
	for (i = 0; i < 40; i++) {
		fill(buf, 1000, 300);
		buf[0] = (uint8_t)i;
		send(c, buf, 1000, 0);
	}
	usleep(1500000);
	ok = 1;
	mf = -1;	/* index of the last one kept */
	for (n = 0; (r = recv(c, rbuf, sizeof(rbuf), MSG_DONTWAIT)) >= 0; n++) {
		buf[0] = rbuf[0];
		ok &= r == 1000 && rbuf[0] < 40 && rbuf[0] > mf &&
		      !memcmp(rbuf, buf, 1000);
		mf = rbuf[0];
	}
	say("rcvbuf-small", "40 x 1000 B, unread, SO_RCVBUF 16384: %s, kept %s",
	    !n ? "none kept" : n < 40 ? "excess dropped" : "none dropped",
	    ok ? "whole, in order" : "WRONG");
	close(c);
	close(s);
}

static void blast(const char *host, const char *port, uint32_t count)
{
	struct sockaddr_storage to;
	struct hdr h;
	socklen_t tl;
	uint32_t seq, len, x = 12345;
	struct timespec ts = { 0, 200000 };
	int s, i;

	if (resolve(host, port, &to, &tl))
		exit(2);
	s = socket(to.ss_family, SOCK_DGRAM, 0);
	for (seq = 0; seq < count; seq++) {
		x = x * 1103515245u + 12345u;
		/* mostly small and medium, some up to the maximum */
		len = sizeof(h) + (x >> 8) % ((seq % 16) ? 16384 : MAXPAY - sizeof(h) - 20);
		h.magic = MAGIC;
		h.seq = seq;
		h.len = len;
		h.sum = fill(buf + sizeof(h), len - sizeof(h), seq);
		memcpy(buf, &h, sizeof(h));
		if (sendto(s, buf, len, 0, (void *)&to, tl) < 0 && errno != ENOBUFS)
			perror("sendto");
		if (seq % 64 == 63)
			nanosleep(&ts, NULL);	/* leave the receiver a chance */
	}
	for (i = 0; i < 20; i++) {
		h.magic = MAGIC;
		h.seq = END_SEQ;
		h.len = sizeof(h);
		h.sum = count;
		sendto(s, &h, sizeof(h), 0, (void *)&to, tl);
		usleep(50000);
	}
	printf("udpcheck: sent %u\n", count);
}

static void sink(int port, int secs)
{
	static uint8_t seen[1 << 20];
	uint32_t total = 0, got = 0, bad = 0, dup = 0, lost = 0, i;
	time_t end = time(NULL) + secs;
	struct pollfd p;
	struct hdr h;
	ssize_t r;
	int s = bound(port), rcv = 4 << 20;

	setsockopt(s, SOL_SOCKET, SO_RCVBUF, &rcv, sizeof(rcv));
	while (time(NULL) < end) {
		p = (struct pollfd){ s, POLLIN, 0 };
		if (poll(&p, 1, 1000) != 1)
			continue;
		r = recv(s, rbuf, sizeof(rbuf), 0);
		if (r < (ssize_t)sizeof(h)) {
			bad++;
			continue;
		}
		memcpy(&h, rbuf, sizeof(h));
		if (h.magic != MAGIC || h.len != r) {
			bad++;
			continue;
		}
		if (h.seq == END_SEQ) {
			total = h.sum;
			break;
		}
		if (h.seq >= sizeof(seen) * 8 ||
		    sum_of(rbuf + sizeof(h), r - sizeof(h)) != h.sum) {
			bad++;
			continue;
		}
		if (seen[h.seq / 8] & (1 << (h.seq % 8)))
			dup++;
		seen[h.seq / 8] |= 1 << (h.seq % 8);
		got++;
	}
	for (i = 0; i < total && i < sizeof(seen) * 8; i++)
		lost += !(seen[i / 8] & (1 << (i % 8)));
	printf("udpcheck: received %u bad %u duplicate %u lost %u of %u\n",
	       got, bad, dup, lost, total);
	exit(bad || dup || !total ? 1 : 0);
}

int main(int argc, char **argv)
{
	setvbuf(stdout, NULL, _IOLBF, 0);
	if (argc == 3 && !strcmp(argv[1], "echo"))
		echo(atoi(argv[2]));
	else if (argc == 4 && !strcmp(argv[1], "sem"))
		sem(argv[2], argv[3]);
	else if (argc == 4 && !strcmp(argv[1], "sink"))
		sink(atoi(argv[2]), atoi(argv[3]));
	else if (argc == 5 && !strcmp(argv[1], "blast"))
		blast(argv[2], argv[3], strtoul(argv[4], NULL, 0));
	else {
		fprintf(stderr, "usage: udpcheck echo PORT | sem HOST PORT | sink PORT SECONDS | blast HOST PORT COUNT\n");
		return 2;
	}
	return 0;
}
