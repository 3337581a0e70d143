/* crr: TCP connect/request/response/close rate and request/response latency (benchmark tool of the
 * XenVMC lab, test/lab/bench.sh; built by test/lab.sh into /lab/files/crr).
 *
 *   crr server PORT [-d]               echo server: per connection, echo every byte until EOF, close
 *                                      (one connection at a time; -d: detach into the background and
 *                                      print the server's pid)
 *   crr crr ADDR PORT SECS SIZE        for SECS seconds: connect, send SIZE bytes, read SIZE bytes,
 *                                      close; prints the rate
 *   crr rr ADDR PORT SECS SIZE         one connection; for SECS seconds: send SIZE bytes, read SIZE
 *                                      bytes; prints the average one-way latency (half the round trip)
 *
 * Output, one line (key=value, parsed by test/lab/report.py):
 *   crr: mode=crr size=1 secs=5.00 count=812 errors=0 rate=162.4 avg_us=6157.3
 *   crr: mode=rr size=1 secs=5.00 count=4040 errors=0 rate=808.0 oneway_us=618.8
 * TCP_NODELAY on every socket. Exit 0 when at least one transaction completed.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#include <fcntl.h>

static double now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec / 1e9;
}

static void nodelay(int fd)
{
	int one = 1;

	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
}

static int write_all(int fd, const char *p, size_t n)
{
	while (n) {
		ssize_t w = write(fd, p, n);

		if (w < 0 && errno == EINTR)
			continue;
		if (w <= 0)
			return -1;
		p += w;
		n -= (size_t)w;
	}
	return 0;
}

static int read_all(int fd, char *p, size_t n)
{
	while (n) {
		ssize_t r = read(fd, p, n);

		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0)
			return -1;
		p += r;
		n -= (size_t)r;
	}
	return 0;
}

static int serve(const char *port, int detach)
{
	struct sockaddr_in6 a;
	int one = 1, zero = 0, ls, fd;
	static char buf[65536];

	ls = socket(AF_INET6, SOCK_STREAM, 0);
	if (ls < 0) {
		perror("crr: socket");
		return 1;
	}
	setsockopt(ls, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	setsockopt(ls, IPPROTO_IPV6, IPV6_V6ONLY, &zero, sizeof(zero));
	memset(&a, 0, sizeof(a));
	a.sin6_family = AF_INET6;
	a.sin6_port = htons((unsigned short)atoi(port));
	a.sin6_addr = in6addr_any;
	if (bind(ls, (struct sockaddr *)&a, sizeof(a)) || listen(ls, 128)) {
		perror("crr: bind/listen");
		return 1;
	}
	if (detach) {
		pid_t pid = fork();

		if (pid < 0)
			return 1;
		if (pid > 0) {
			printf("%d\n", (int)pid);
			return 0;
		}
		setsid();
		fd = open("/dev/null", O_RDWR);
		if (fd >= 0) {
			dup2(fd, 0);
			dup2(fd, 1);
			dup2(fd, 2);
			if (fd > 2)
				close(fd);
		}
	}
	signal(SIGPIPE, SIG_IGN);
	for (;;) {
		fd = accept(ls, NULL, NULL);
		if (fd < 0)
			continue;
		nodelay(fd);
		for (;;) {
			ssize_t r = read(fd, buf, sizeof(buf));

			if (r < 0 && errno == EINTR)
				continue;
			if (r <= 0 || write_all(fd, buf, (size_t)r))
				break;
		}
		close(fd);
	}
}

static int dial(const struct sockaddr_storage *ss, socklen_t len)
{
	int fd = socket(ss->ss_family, SOCK_STREAM, 0);

	if (fd < 0)
		return -1;
	nodelay(fd);
	if (connect(fd, (const struct sockaddr *)ss, len)) {
		close(fd);
		return -1;
	}
	return fd;
}

int main(int argc, char **argv)
{
	struct sockaddr_storage ss;
	struct sockaddr_in *a4 = (struct sockaddr_in *)&ss;
	struct sockaddr_in6 *a6 = (struct sockaddr_in6 *)&ss;
	socklen_t sslen;
	double secs, t0, t;
	size_t size;
	long count = 0, errors = 0;
	char *buf;
	int rr, fd = -1;

	if (argc >= 3 && !strcmp(argv[1], "server"))
		return serve(argv[2], argc > 3 && !strcmp(argv[3], "-d"));
	if (argc != 6 || (strcmp(argv[1], "crr") && strcmp(argv[1], "rr"))) {
		fprintf(stderr, "usage: crr server PORT [-d] | crr {crr|rr} ADDR PORT SECS SIZE\n");
		return 2;
	}
	rr = !strcmp(argv[1], "rr");
	secs = atof(argv[4]);
	size = strtoul(argv[5], NULL, 0);
	if (secs <= 0 || size == 0 || size > (1 << 20)) {
		fprintf(stderr, "crr: bad SECS or SIZE\n");
		return 2;
	}
	/* numeric addresses only: a static binary cannot use the guest's NSS */
	memset(&ss, 0, sizeof(ss));
	if (inet_pton(AF_INET, argv[2], &a4->sin_addr) == 1) {
		a4->sin_family = AF_INET;
		a4->sin_port = htons((unsigned short)atoi(argv[3]));
		sslen = sizeof(*a4);
	} else if (inet_pton(AF_INET6, argv[2], &a6->sin6_addr) == 1) {
		a6->sin6_family = AF_INET6;
		a6->sin6_port = htons((unsigned short)atoi(argv[3]));
		sslen = sizeof(*a6);
	} else {
		fprintf(stderr, "crr: %s: not a numeric IPv4/IPv6 address\n", argv[2]);
		return 2;
	}
	buf = calloc(1, size);
	if (!buf)
		return 2;
	signal(SIGPIPE, SIG_IGN);
	t0 = now();
	if (rr) {
		fd = dial(&ss, sslen);
		if (fd < 0) {
			perror("crr: connect");
			return 1;
		}
	}
	do {
		if (!rr) {
			fd = dial(&ss, sslen);
			if (fd < 0) {
				/* a burst of failures (e.g. no free local port) ends the run */
				if (++errors > 100)
					break;
				usleep(1000);
				t = now();
				continue;
			}
		}
		buf[0]++;
		if (write_all(fd, buf, size) || read_all(fd, buf, size)) {
			errors++;
			close(fd);
			if (rr)
				break;
		} else {
			count++;
			if (!rr)
				close(fd);
		}
		t = now();
	} while (t - t0 < secs);
	if (rr && fd >= 0)
		close(fd);
	t = now() - t0;
	if (rr)
		printf("crr: mode=rr size=%zu secs=%.2f count=%ld errors=%ld rate=%.1f oneway_us=%.1f\n",
		       size, t, count, errors, count / t, count ? t * 1e6 / count / 2 : 0.0);
	else
		printf("crr: mode=crr size=%zu secs=%.2f count=%ld errors=%ld rate=%.1f avg_us=%.1f\n",
		       size, t, count, errors, count / t, count ? t * 1e6 / count : 0.0);
	free(buf);
	return count > 0 ? 0 : 1;
}
