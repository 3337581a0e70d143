// SPDX-License-Identifier: GPL-2.0
/*
 * sockcheck: socket-semantics checks over TCP connection pairs, printing what
 * is OBSERVED (return values, errnos, poll masks, normalized amounts) so that
 * the output over plain TCP and over XenVMC can be compared line by line.
 *
 *   sockcheck server PORT            serves one client session, then exits
 *   sockcheck client ADDR PORT [CHECK...]   runs every check (or the named ones)
 *   sockcheck list                   names of the checks
 *
 * One control connection (the first one the server accepts) coordinates the
 * two sides; each check then gets a fresh data connection.  Every output line
 * is "CHECK S|C: observation" (S = server side, C = client side).  Amounts
 * that legitimately differ between a TCP socket and a ring (buffer sizes, how
 * much fits before EAGAIN, exact SIOCOUTQ) are printed as yes/no facts.
 * Every wait has a generous timeout (the lab runs under TCG, 10-50x slower
 * than hardware); a check stuck for CHECK_TIMEOUT seconds prints TIMEOUT and
 * the program exits 3.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/sockios.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/ioctl.h>
#include <sys/select.h>
#include <sys/sendfile.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

#define CHECK_TIMEOUT 300	/* seconds, per check */
#define WAIT_MS 60000		/* "surely arrived by now" under TCG */

static int ctl = -1;		/* control connection */
static int lfd = -1;		/* server: listening socket */
static struct sockaddr_storage peer_sa;	/* client: server address */
static socklen_t peer_len;
static char side = '?';
static const char *cur = "setup";
static volatile time_t check_start;
static pthread_t main_thread;

/* ------------------------------------------------------------ helpers */

static void out(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void out(const char *fmt, ...)
{
	va_list ap;

	printf("%s %c: ", cur, side);
	va_start(ap, fmt);
	vprintf(fmt, ap);
	va_end(ap);
	putchar('\n');
	fflush(stdout);
}

static void die(const char *what)
{
	printf("%s %c: FATAL %s: %s\n", cur, side, what, strerror(errno));
	fflush(stdout);
	_exit(2);
}

static double now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec / 1e9;
}

static void msleep(int ms)
{
	struct timespec ts = { ms / 1000, (ms % 1000) * 1000000L };

	while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
		;
}

/* "ret" as text: a count, or -1 and the errno name */
static const char *rs(long r, int err)
{
	static char buf[8][64];
	static int i;
	char *b = buf[i++ & 7];

	if (r >= 0)
		snprintf(b, 64, "%ld", r);
	else
		snprintf(b, 64, "-1 %s", strerrorname_np(err) ? strerrorname_np(err) : "?");
	return b;
}
#define R(call) ({ long _r = (call); rs(_r, errno); })

static const char *yesno(int b)
{
	return b ? "yes" : "no";
}

static const char *pmask(int m)
{
	static char buf[4][128];
	static int i;
	char *b = buf[i++ & 3];
	static const struct { int bit; const char *name; } names[] = {
		{ POLLIN, "IN" }, { POLLPRI, "PRI" }, { POLLOUT, "OUT" },
		{ POLLERR, "ERR" }, { POLLHUP, "HUP" }, { POLLRDHUP, "RDHUP" },
		{ POLLNVAL, "NVAL" },
	};
	size_t k;

	b[0] = 0;
	for (k = 0; k < sizeof(names) / sizeof(names[0]); k++)
		if (m & names[k].bit) {
			if (b[0])
				strcat(b, "|");
			strcat(b, names[k].name);
		}
	if (!b[0])
		strcpy(b, "0");
	return b;
}

/* epoll bits have the same values as the poll bits for these */
#define emask(m) pmask((int)(m) & (POLLIN | POLLPRI | POLLOUT | POLLERR | POLLHUP | POLLRDHUP))

static int xpoll(int fd, int events, int ms)
{
	struct pollfd p = { fd, (short)events, 0 };
	int r;

	do
		r = poll(&p, 1, ms);
	while (r < 0 && errno == EINTR);
	return r > 0 ? p.revents : 0;
}

static uint8_t pat(uint64_t off)
{
	return (uint8_t)(off * 7 + (off >> 8) * 13 + (off >> 16) * 31 + 1);
}

static void fillpat(uint8_t *b, size_t n, uint64_t off)
{
	size_t k;

	for (k = 0; k < n; k++)
		b[k] = pat(off + k);
}

static int checkpat(const uint8_t *b, size_t n, uint64_t off)
{
	size_t k;

	for (k = 0; k < n; k++)
		if (b[k] != pat(off + k))
			return 0;
	return 1;
}

static void writen(int fd, const void *b, size_t n)
{
	const char *p = b;

	while (n) {
		ssize_t r = send(fd, p, n, MSG_NOSIGNAL);

		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0)
			die("writen");
		p += r;
		n -= r;
	}
}

/* read exactly n bytes; returns bytes read (less on EOF/error) */
static size_t readn(int fd, void *b, size_t n)
{
	char *p = b;
	size_t got = 0;

	while (got < n) {
		ssize_t r = read(fd, p + got, n - got);

		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0 && errno == EAGAIN) {
			xpoll(fd, POLLIN, 1000);
			continue;
		}
		if (r <= 0)
			break;
		got += r;
	}
	return got;
}

/* send n pattern bytes starting at stream offset off (blocking) */
static int send_pat(int fd, uint64_t off, size_t n)
{
	static uint8_t b[65536];

	while (n) {
		size_t k = n < sizeof(b) ? n : sizeof(b);
		ssize_t r;

		fillpat(b, k, off);
		r = send(fd, b, k, MSG_NOSIGNAL);
		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0)
			return -1;
		off += r;
		n -= r;
	}
	return 0;
}

/* receive n pattern bytes from stream offset off; 1 if all arrived intact */
static int recv_pat(int fd, uint64_t off, size_t n)
{
	static uint8_t b[65536];
	int ok = 1;

	while (n) {
		size_t k = n < sizeof(b) ? n : sizeof(b);
		size_t r = readn(fd, b, k);

		if (r == 0)
			return 0;
		if (!checkpat(b, r, off))
			ok = 0;
		off += r;
		n -= r;
	}
	return ok;
}

/* control channel: barrier and values */
static void ctl_put(int64_t v)
{
	writen(ctl, &v, sizeof(v));
}

static int64_t ctl_get(void)
{
	int64_t v;

	if (readn(ctl, &v, sizeof(v)) != sizeof(v))
		die("control connection lost");
	return v;
}

static void barrier(void)
{
	ctl_put(0x5a5a);
	if (ctl_get() != 0x5a5a)
		die("barrier out of step");
}

static void set_nonblock(int fd, int on)
{
	int fl = fcntl(fd, F_GETFL);

	fcntl(fd, F_SETFL, on ? fl | O_NONBLOCK : fl & ~O_NONBLOCK);
}

/*
 * Write pattern bytes (from *off) without blocking until the socket refuses
 * more and still refuses after a pause (in-flight acknowledgements may free
 * room right after the first EAGAIN).  Returns 1 when EAGAIN was reached.
 */
static int fill(int fd, uint64_t *off)
{
	static uint8_t b[65536];
	int tries = 0;

	for (;;) {
		ssize_t r;

		fillpat(b, sizeof(b), *off);
		r = send(fd, b, sizeof(b), MSG_DONTWAIT | MSG_NOSIGNAL);
		if (r > 0) {
			*off += r;
			tries = 0;
			continue;
		}
		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0 && errno == EAGAIN) {
			if (++tries >= 3)
				return 1;
			msleep(1500);
			continue;
		}
		return 0;
	}
}

static int sc_socket(int family)
{
	int fd = socket(family, SOCK_STREAM, 0);

	if (fd < 0)
		die("socket");
	return fd;
}

static int connect_data(void)
{
	int fd = sc_socket(peer_sa.ss_family);

	if (connect(fd, (struct sockaddr *)&peer_sa, peer_len) < 0)
		die("connect");
	return fd;
}

static int accept_data(void)
{
	int fd;

	do
		fd = accept(lfd, NULL, NULL);
	while (fd < 0 && errno == EINTR);
	if (fd < 0)
		die("accept");
	return fd;
}

/* signals */
static volatile sig_atomic_t got_sig;

static void on_sig(int s)
{
	(void)s;
	got_sig = 1;
}

static void set_handler(int restart)
{
	struct sigaction sa;

	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = on_sig;
	sa.sa_flags = restart ? SA_RESTART : 0;
	sigemptyset(&sa.sa_mask);
	sigaction(SIGUSR1, &sa, NULL);
	got_sig = 0;
}

static void *kicker(void *arg)
{
	msleep((int)(intptr_t)arg);
	pthread_kill(main_thread, SIGUSR1);
	return NULL;
}

static pthread_t kick_after(int ms)
{
	pthread_t t;

	pthread_create(&t, NULL, kicker, (void *)(intptr_t)ms);
	return t;
}

/* ------------------------------------------------------------ the checks */
/* Each check has a client and a server half; both get the data socket.   */
/* A half that closes the socket itself sets *fd = -1.                    */

static void rw_c(int *fd)
{
	char buf[16];

	out("write(11)=%s", R(write(*fd, "hello world", 11)));
	out("read back 100000 bytes intact: %s", yesno(recv_pat(*fd, 0, 100000)));
	out("read after peer closed=%s", R(read(*fd, buf, sizeof(buf))));
}

static void rw_s(int *fd)
{
	char buf[16] = "";

	out("read 11 bytes: %zu '%.11s'", readn(*fd, buf, 11), buf);
	out("write 100000: %s", send_pat(*fd, 0, 100000) ? "error" : "done");
	close(*fd);
	*fd = -1;
}

static void sendrecv_c(int *fd)
{
	out("send(3)=%s", R(send(*fd, "abc", 3, 0)));
	barrier();
	barrier();
	out("send(100000)=%s", R(send(*fd, (char[100000]){0}, 100000, 0)));
}

static void sendrecv_s(int *fd)
{
	char buf[200] = "";

	barrier();
	out("POLLIN within timeout: %s", yesno(xpoll(*fd, POLLIN, WAIT_MS) & POLLIN));
	msleep(300);
	out("recv(200)=%s '%.3s'", R(recv(*fd, buf, sizeof(buf), 0)), buf);
	barrier();
	{
		static char big[100000];
		size_t got = readn(*fd, big, sizeof(big)), k;
		int zero = 1;

		for (k = 0; k < got; k++)
			zero &= big[k] == 0;
		out("read 100000: %zu all zero: %s", got, yesno(zero));
	}
}

static void msg_c(int *fd)
{
	static uint8_t a[1], b[100], c[4000];
	struct iovec iov[3] = { { a, 1 }, { b, 100 }, { c, 4000 } };
	struct msghdr m = { .msg_iov = iov, .msg_iovlen = 3 };

	fillpat(a, 1, 0);
	fillpat(b, 100, 1);
	fillpat(c, 4000, 101);
	out("sendmsg(3 iovecs, 4101)=%s", R(sendmsg(*fd, &m, 0)));
}

static void msg_s(int *fd)
{
	static uint8_t a[7], b[94], c[1000], d[3000];
	struct iovec iov[4] = { { a, 7 }, { b, 94 }, { c, 1000 }, { d, 3000 } };
	struct msghdr m = { .msg_iov = iov, .msg_iovlen = 4 };
	long r = recvmsg(*fd, &m, MSG_WAITALL);

	out("recvmsg(4 iovecs, MSG_WAITALL, 4101)=%s msg_flags=%#x", rs(r, errno), m.msg_flags);
	out("content intact: %s", yesno(checkpat(a, 7, 0) && checkpat(b, 94, 7) &&
				    checkpat(c, 1000, 101) && checkpat(d, 3000, 1101)));
}

static void rwv_c(int *fd)
{
	static uint8_t a[10], b[70000], c[5];
	struct iovec iov[3] = { { a, 10 }, { b, 70000 }, { c, 5 } };

	fillpat(a, 10, 0);
	fillpat(b, 70000, 10);
	fillpat(c, 5, 70010);
	out("writev(3 iovecs, 70015)=%s", R(writev(*fd, iov, 3)));
}

static void rwv_s(int *fd)
{
	static uint8_t buf[70015];
	size_t got = 0;
	int ok;

	while (got < sizeof(buf)) {
		size_t half = (sizeof(buf) - got) / 2;
		struct iovec iov[2] = { { buf + got, half }, { buf + got + half, sizeof(buf) - got - half } };
		ssize_t r;

		if (!half)
			iov[0] = iov[1];
		r = readv(*fd, iov, half ? 2 : 1);
		if (r <= 0)
			break;
		got += r;
	}
	ok = checkpat(buf, got, 0);
	out("readv total=%zu intact: %s", got, yesno(ok));
}

#define SF_SIZE (1048576 + 123)

static void sendfile_c(int *fd)
{
	char name[] = "/tmp/sockcheck.XXXXXX";
	int f = mkstemp(name);
	static uint8_t b[SF_SIZE];
	off_t o = 0;
	long total = 0;
	ssize_t r;

	if (f < 0)
		die("mkstemp");
	unlink(name);
	fillpat(b, SF_SIZE, 0);
	if (write(f, b, SF_SIZE) != SF_SIZE)
		die("write tmp");
	while (total < SF_SIZE) {
		r = sendfile(*fd, f, &o, SF_SIZE - total);
		if (r <= 0)
			break;
		total += r;
	}
	out("sendfile total=%ld", total);
	close(f);
}

static void sendfile_s(int *fd)
{
	out("received %d bytes intact: %s", SF_SIZE, yesno(recv_pat(*fd, 0, SF_SIZE)));
}

#define SP_SIZE (256 * 1024)

static void splice_c(int *fd)
{
	int p[2];
	static uint8_t b[16384];
	long total = 0;

	if (pipe(p) < 0)
		die("pipe");
	while (total < SP_SIZE) {
		long left;

		fillpat(b, sizeof(b), total);
		if (write(p[1], b, sizeof(b)) != sizeof(b))
			die("pipe write");
		left = sizeof(b);
		while (left > 0) {
			ssize_t r = splice(p[0], NULL, *fd, NULL, left, SPLICE_F_MOVE);

			if (r <= 0) {
				out("splice pipe->socket failed: %s", rs(r, errno));
				return;
			}
			left -= r;
			total += r;
		}
	}
	out("splice pipe->socket total=%ld", total);
	close(p[0]);
	close(p[1]);
}

static void splice_s(int *fd)
{
	int p[2], ok = 1;
	static uint8_t b[65536];
	long total = 0;

	if (pipe(p) < 0)
		die("pipe");
	while (total < SP_SIZE) {
		ssize_t r = splice(*fd, NULL, p[1], NULL, 65536, SPLICE_F_MOVE), k;

		if (r <= 0) {
			out("splice socket->pipe: %s after %ld", rs(r, errno), total);
			break;
		}
		k = read(p[0], b, r);
		if (k != r)
			die("pipe read");
		ok &= checkpat(b, r, total);
		total += r;
	}
	out("splice socket->pipe total=%ld intact: %s", total, yesno(ok));
	close(p[0]);
	close(p[1]);
}

static void peek_c(int *fd)
{
	writen(*fd, "0123456789", 10);
	barrier();
}

static void peek_s(int *fd)
{
	char b[101];
	long r;

	barrier();
	out("POLLIN within timeout: %s", yesno(xpoll(*fd, POLLIN, WAIT_MS) & POLLIN));
	msleep(300);
	memset(b, 0, sizeof(b));
	r = recv(*fd, b, 4, MSG_PEEK);
	out("recv(4, MSG_PEEK)=%s '%s'", rs(r, errno), b);
	memset(b, 0, sizeof(b));
	r = recv(*fd, b, 100, MSG_PEEK);
	out("recv(100, MSG_PEEK)=%s '%s'", rs(r, errno), b);
	memset(b, 0, sizeof(b));
	r = recv(*fd, b, 5, 0);
	out("recv(5)=%s '%s'", rs(r, errno), b);
	memset(b, 0, sizeof(b));
	r = recv(*fd, b, 100, MSG_PEEK | MSG_DONTWAIT);
	out("recv(100, MSG_PEEK|MSG_DONTWAIT)=%s '%s'", rs(r, errno), b);
	memset(b, 0, sizeof(b));
	r = recv(*fd, b, 100, 0);
	out("recv(100)=%s '%s'", rs(r, errno), b);
	r = recv(*fd, b, 100, MSG_PEEK | MSG_DONTWAIT);
	out("recv(100, MSG_PEEK|MSG_DONTWAIT) on empty=%s", rs(r, errno));
}

static void waitall_c(int *fd)
{
	int i;

	barrier();
	for (i = 0; i < 3; i++) {
		send_pat(*fd, i * 1000, 1000);
		msleep(1000);
	}
	barrier();
	send_pat(*fd, 3000, 500);
	msleep(500);
	shutdown(*fd, SHUT_WR);
}

static void waitall_s(int *fd)
{
	static uint8_t b[3000];
	double t0;
	long r;

	barrier();
	t0 = now();
	r = recv(*fd, b, 3000, MSG_WAITALL);
	out("recv(3000, MSG_WAITALL) with 3x1000 sent 1 s apart=%s intact: %s, waited for all: %s",
	    rs(r, errno), yesno(r == 3000 && checkpat(b, 3000, 0)), yesno(now() - t0 > 1.5));
	barrier();
	r = recv(*fd, b, 3000, MSG_WAITALL);
	out("recv(3000, MSG_WAITALL) with 500 then FIN=%s intact: %s", rs(r, errno),
	    yesno(r == 500 && checkpat(b, 500, 3000)));
	out("recv after EOF=%s", R(recv(*fd, b, 3000, MSG_WAITALL)));
}

static void dontwait_c(int *fd)
{
	barrier();
	writen(*fd, "abcdefghij", 10);
	barrier();
}

static void dontwait_s(int *fd)
{
	char b[100];

	out("recv(MSG_DONTWAIT) on empty=%s", R(recv(*fd, b, 100, MSG_DONTWAIT)));
	out("read on empty O_NONBLOCK socket=%s", (set_nonblock(*fd, 1), R(read(*fd, b, 100))));
	set_nonblock(*fd, 0);
	barrier();
	barrier();
	out("POLLIN within timeout: %s", yesno(xpoll(*fd, POLLIN, WAIT_MS) & POLLIN));
	msleep(300);
	out("recv(100, MSG_DONTWAIT)=%s", R(recv(*fd, b, 100, MSG_DONTWAIT)));
	out("recv(100, MSG_DONTWAIT) again=%s", R(recv(*fd, b, 100, MSG_DONTWAIT)));
}

/* Fill until EAGAIN; poll/select/epoll see no POLLOUT; peer drains; EPOLLOUT. */
static void nonblock_c(int *fd)
{
	uint64_t off = 0;
	struct epoll_event ev = { .events = EPOLLOUT | EPOLLET }, got;
	int lt = epoll_create1(0), et = epoll_create1(0), outq = -1, n;
	fd_set ws;
	struct timeval tv = { 0, 0 };

	set_nonblock(*fd, 1);
	out("EAGAIN reached after filling (peer not reading): %s", yesno(fill(*fd, &off)));
	out("bytes accepted before EAGAIN > 0: %s", yesno(off > 0));
	out("write()=%s", R(write(*fd, "x", 1)));
	out("poll(POLLOUT) while full: %s", pmask(xpoll(*fd, POLLOUT, 0)));
	FD_ZERO(&ws);
	FD_SET(*fd, &ws);
	out("select writable while full: %s", yesno(select(*fd + 1, NULL, &ws, NULL, &tv) > 0));
	ev.data.fd = *fd;
	epoll_ctl(et, EPOLL_CTL_ADD, *fd, &ev);
	ev.events = EPOLLOUT;
	epoll_ctl(lt, EPOLL_CTL_ADD, *fd, &ev);
	out("epoll LT EPOLLOUT while full: %d", epoll_wait(lt, &got, 1, 0));
	out("epoll ET EPOLLOUT while full: %d", epoll_wait(et, &got, 1, 0));
	ioctl(*fd, TIOCOUTQ, &outq);
	out("SIOCOUTQ>0 while peer not reading: %s", yesno(outq > 0));
	ctl_put((int64_t)off);
	n = epoll_wait(et, &got, 1, WAIT_MS);
	out("epoll ET after peer drained: %d %s", n, n > 0 ? emask(got.events) : "");
	out("epoll ET again (no new edge): %d", epoll_wait(et, &got, 1, 0));
	n = epoll_wait(lt, &got, 1, WAIT_MS);
	out("epoll LT after peer drained: %d %s", n, n > 0 ? emask(got.events) : "");
	out("epoll LT again (still writable): %d", epoll_wait(lt, &got, 1, 0));
	{
		double end = now() + WAIT_MS / 1000;

		do {
			ioctl(*fd, TIOCOUTQ, &outq);
			if (!outq)
				break;
			msleep(200);
		} while (now() < end);
	}
	out("SIOCOUTQ reaches 0 after peer read everything: %s", yesno(outq == 0));
	out("write after drain=%s", R(write(*fd, "x", 1)));
	barrier();
	close(lt);
	close(et);
}

static void nonblock_s(int *fd)
{
	int64_t total = ctl_get();
	int inq = -1;

	ioctl(*fd, FIONREAD, &inq);
	out("SIOCINQ>0 while not reading: %s", yesno(inq > 0));
	out("read everything (%s) intact: %s", "total", yesno(recv_pat(*fd, 0, total)));
	barrier();
	{
		char c;

		out("the byte written after the drain: %s", R(recv(*fd, &c, 1, MSG_WAITALL)));
	}
}

static void pollin_c(int *fd)
{
	barrier();
	writen(*fd, "a", 1);
	barrier();
	barrier();
	writen(*fd, "b", 1);
	barrier();
}

static void pollin_s(int *fd)
{
	int lt = epoll_create1(0), et = epoll_create1(0), n;
	struct epoll_event ev = { .events = EPOLLIN }, got;
	fd_set rs_;
	struct timeval tv = { 0, 0 };
	char b[10];

	ev.data.fd = *fd;
	epoll_ctl(lt, EPOLL_CTL_ADD, *fd, &ev);
	ev.events = EPOLLIN | EPOLLET;
	epoll_ctl(et, EPOLL_CTL_ADD, *fd, &ev);
	out("poll(IN|OUT) on empty: %s", pmask(xpoll(*fd, POLLIN | POLLOUT | POLLRDHUP, 0)));
	FD_ZERO(&rs_);
	FD_SET(*fd, &rs_);
	out("select readable on empty: %s", yesno(select(*fd + 1, &rs_, NULL, NULL, &tv) > 0));
	out("epoll LT EPOLLIN on empty: %d", epoll_wait(lt, &got, 1, 0));
	out("epoll ET EPOLLIN on empty: %d", epoll_wait(et, &got, 1, 0));
	barrier();
	n = epoll_wait(et, &got, 1, WAIT_MS);
	out("epoll ET after 1 byte: %d %s", n, n > 0 ? emask(got.events) : "");
	out("epoll ET again: %d", epoll_wait(et, &got, 1, 0));
	n = epoll_wait(lt, &got, 1, WAIT_MS);
	out("epoll LT: %d %s", n, n > 0 ? emask(got.events) : "");
	n = epoll_wait(lt, &got, 1, 0);
	out("epoll LT again: %d %s", n, n > 0 ? emask(got.events) : "");
	out("poll(IN|OUT|RDHUP): %s", pmask(xpoll(*fd, POLLIN | POLLOUT | POLLRDHUP, 0)));
	FD_ZERO(&rs_);
	FD_SET(*fd, &rs_);
	tv.tv_sec = 0;
	out("select readable: %s", yesno(select(*fd + 1, &rs_, NULL, NULL, &tv) > 0));
	barrier();
	barrier();
	n = epoll_wait(et, &got, 1, WAIT_MS);
	out("epoll ET after a 2nd byte: %d %s", n, n > 0 ? emask(got.events) : "");
	msleep(200);
	out("recv=%s", R(recv(*fd, b, sizeof(b), 0)));
	out("epoll LT after reading all: %d", epoll_wait(lt, &got, 1, 0));
	barrier();
	close(lt);
	close(et);
}

static void hup_c(int *fd)
{
	char b[4];

	out("shutdown(SHUT_WR)=%s", R(shutdown(*fd, SHUT_WR)));
	out("send after SHUT_WR=%s", R(send(*fd, "x", 1, MSG_NOSIGNAL)));
	out("poll(IN|OUT|RDHUP) after own SHUT_WR: %s", pmask(xpoll(*fd, POLLIN | POLLOUT | POLLRDHUP, 0)));
	barrier();
	xpoll(*fd, POLLRDHUP, WAIT_MS);
	msleep(500);
	out("poll(IN|OUT|RDHUP) after both SHUT_WR: %s", pmask(xpoll(*fd, POLLIN | POLLOUT | POLLRDHUP, 0)));
	out("read=%s", R(read(*fd, b, sizeof(b))));
	barrier();
}

static void hup_s(int *fd)
{
	int ep = epoll_create1(0), n;
	struct epoll_event ev = { .events = EPOLLIN | EPOLLRDHUP }, got;
	char b[4];

	ev.data.fd = *fd;
	epoll_ctl(ep, EPOLL_CTL_ADD, *fd, &ev);
	n = epoll_wait(ep, &got, 1, WAIT_MS);
	msleep(300);
	n = epoll_wait(ep, &got, 1, WAIT_MS);
	out("epoll(IN|RDHUP) after peer SHUT_WR: %d %s", n, n > 0 ? emask(got.events) : "");
	out("poll(IN|OUT|RDHUP): %s", pmask(xpoll(*fd, POLLIN | POLLOUT | POLLRDHUP, 0)));
	out("read=%s", R(read(*fd, b, sizeof(b))));
	out("send to half-closed peer=%s", R(send(*fd, "y", 1, MSG_NOSIGNAL)));
	out("shutdown(SHUT_WR)=%s", R(shutdown(*fd, SHUT_WR)));
	barrier();
	barrier();
	out("poll(IN|OUT|RDHUP) after both SHUT_WR: %s", pmask(xpoll(*fd, POLLIN | POLLOUT | POLLRDHUP, 0)));
	ev.events = EPOLLIN | EPOLLOUT | EPOLLRDHUP;
	epoll_ctl(ep, EPOLL_CTL_MOD, *fd, &ev);
	n = epoll_wait(ep, &got, 1, 0);
	out("epoll(IN|OUT|RDHUP) after both SHUT_WR: %d %s", n, n > 0 ? emask(got.events) : "");
	close(ep);
}

static void timeo_c(int *fd)
{
	struct timeval tv = { 1, 500000 };
	uint64_t off = 0;
	long r = 0;
	double t0;

	barrier();
	setsockopt(*fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
	fill(*fd, &off);
	t0 = now();
	while (now() - t0 < WAIT_MS / 1000) {
		static uint8_t b[65536];

		fillpat(b, sizeof(b), off);
		r = send(*fd, b, sizeof(b), MSG_NOSIGNAL);
		if (r <= 0)
			break;
		off += r;
		t0 = now();
	}
	out("blocking send with SO_SNDTIMEO=1.5s on a full socket=%s after >=1.2s: %s",
	    rs(r, errno), yesno(now() - t0 >= 1.2));
	ctl_put((int64_t)off);
	barrier();
}

static void timeo_s(int *fd)
{
	struct timeval tv = { 1, 500000 };
	char b[10];
	double t0;
	long r;

	setsockopt(*fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	t0 = now();
	r = recv(*fd, b, sizeof(b), 0);
	out("recv with SO_RCVTIMEO=1.5s on empty=%s after 1.2..30s: %s", rs(r, errno),
	    yesno(now() - t0 >= 1.2 && now() - t0 < 30));
	tv.tv_sec = 0;
	tv.tv_usec = 0;
	setsockopt(*fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	barrier();
	{
		int64_t total = ctl_get();

		out("then read everything intact: %s", yesno(recv_pat(*fd, 0, total)));
	}
	barrier();
}

static void lowat_c(int *fd)
{
	barrier();
	send_pat(*fd, 0, 500);
	barrier();
	barrier();
	send_pat(*fd, 500, 600);
	barrier();
	msleep(2000);		/* the peer's recv is waiting already */
	send_pat(*fd, 1100, 300);
	msleep(1500);
	send_pat(*fd, 1400, 800);
	barrier();
}

static void lowat_s(int *fd)
{
	int lowat = 1000, r;
	static uint8_t b[3000];
	double t0;

	out("setsockopt(SO_RCVLOWAT, 1000)=%s",
	    R(setsockopt(*fd, SOL_SOCKET, SO_RCVLOWAT, &lowat, sizeof(lowat))));
	barrier();
	msleep(2000);
	out("poll(IN) with 500 of 1000 bytes: %s", pmask(xpoll(*fd, POLLIN, 2000)));
	barrier();
	barrier();
	out("poll(IN) with 1100 of 1000 bytes: %s", pmask(xpoll(*fd, POLLIN, WAIT_MS)));
	msleep(300);
	r = recv(*fd, b, sizeof(b), 0);
	out("recv(3000)=%s intact: %s", rs(r, errno), yesno(checkpat(b, r > 0 ? r : 0, 0)));
	barrier();
	t0 = now();
	r = recv(*fd, b, sizeof(b), 0);
	out("blocking recv(3000) with 300 then 800 1.5 s later=%s waited for lowat: %s intact: %s",
	    rs(r, errno), yesno(now() - t0 > 1.0), yesno(checkpat(b, r > 0 ? r : 0, 1100)));
	barrier();
}

static void inq_c(int *fd)
{
	barrier();
	send_pat(*fd, 0, 1234);
	barrier();
}

static void inq_s(int *fd)
{
	int n = -1;
	double end;
	static uint8_t b[1234];

	{
		const char *r = R(ioctl(*fd, FIONREAD, &n));

		out("FIONREAD on empty=%s value %d", r, n);
	}
	barrier();
	barrier();
	end = now() + WAIT_MS / 1000;
	do {
		ioctl(*fd, FIONREAD, &n);
		if (n >= 1234)
			break;
		msleep(100);
	} while (now() < end);
	out("FIONREAD after 1234 sent=%d", n);
	readn(*fd, b, 234);
	ioctl(*fd, FIONREAD, &n);
	out("FIONREAD after reading 234=%d", n);
	ioctl(*fd, SIOCINQ, &n);
	out("SIOCINQ=%d", n);
	readn(*fd, b, 1000);
	ioctl(*fd, FIONREAD, &n);
	out("FIONREAD after reading all=%d", n);
}

static void halfclose_c(int *fd)
{
	char b[64] = "";
	size_t n;

	send_pat(*fd, 0, 200000);
	out("shutdown(SHUT_WR)=%s", R(shutdown(*fd, SHUT_WR)));
	n = readn(*fd, b, sizeof(b) - 1);
	out("peer's answer after our FIN: %zu bytes '%s'", n, b);
	out("then read=%s", R(read(*fd, b, sizeof(b))));
}

static void halfclose_s(int *fd)
{
	static uint8_t b[65536];
	long total = 0, r;
	int ok = 1;
	char ans[64];

	while ((r = read(*fd, b, sizeof(b))) > 0) {
		ok &= checkpat(b, r, total);
		total += r;
	}
	out("read until EOF: %ld bytes intact: %s, last read=%s", total, yesno(ok), rs(r, errno));
	snprintf(ans, sizeof(ans), "got %ld", total);
	out("send after peer's SHUT_WR=%s", R(send(*fd, ans, strlen(ans), MSG_NOSIGNAL)));
	close(*fd);
	*fd = -1;
}

static void rst_c(int *fd)
{
	char b[10];

	send_pat(*fd, 0, 1000);
	barrier();		/* peer has the bytes, does not read */
	barrier();		/* peer closed */
	xpoll(*fd, POLLERR, WAIT_MS);
	msleep(300);
	out("poll mask after peer closed with unread data: %s",
	    pmask(xpoll(*fd, POLLIN | POLLOUT | POLLRDHUP, 0)));
	out("recv=%s", R(recv(*fd, b, sizeof(b), 0)));
	out("recv again=%s", R(recv(*fd, b, sizeof(b), 0)));
	out("send=%s", R(send(*fd, "x", 1, MSG_NOSIGNAL)));
}

static void rst_s(int *fd)
{
	int n = 0;
	double end = now() + WAIT_MS / 1000;

	barrier();
	while (now() < end && (ioctl(*fd, FIONREAD, &n), n < 1000))
		msleep(100);
	out("1000 unread bytes queued: %s", yesno(n == 1000));
	out("close()=%s", R(close(*fd)));
	*fd = -1;
	barrier();
}

/*
 * The peer closes cleanly, and its socket is gone before ours has read:
 * TCP_LINGER2 < 0 (as when tcp_max_tw_buckets is reached) answers our ACK
 * of its FIN with a RST.  What it sent before its close is still read, then
 * EOF; only a send sees the error.
 */
static void gone_c(int *fd)
{
	char b[10];

	/* The peer's answer to this comes once its side moved to the ring. */
	send_pat(*fd, 0, 1);
	barrier();		/* peer sent and closed */
	xpoll(*fd, POLLERR, WAIT_MS);
	msleep(300);
	out("poll mask once the peer's socket is gone: %s",
	    pmask(xpoll(*fd, POLLIN | POLLOUT | POLLRDHUP, 0)));
	out("the 1000 bytes sent before its close read intact: %s", yesno(recv_pat(*fd, 0, 1000)));
	out("then recv=%s", R(recv(*fd, b, sizeof(b), 0)));
	out("send=%s", R(send(*fd, "x", 1, MSG_NOSIGNAL)));
}

static void gone_s(int *fd)
{
	int linger2 = -1;

	out("the client's first byte: %s", yesno(recv_pat(*fd, 0, 1)));
	out("TCP_LINGER2=-1: %s",
	    R(setsockopt(*fd, IPPROTO_TCP, TCP_LINGER2, &linger2, sizeof(linger2))));
	out("send 1000: %s", send_pat(*fd, 0, 1000) ? "error" : "done");
	out("close()=%s", R(close(*fd)));
	*fd = -1;
	barrier();
}

#define IF_SIZE (4 * 1048576)
#define IF_TAIL 16384

static void inflight_c(int *fd)
{
	out("write 4 MiB: %s", send_pat(*fd, 0, IF_SIZE) ? "error" : "done");
	out("close()=%s", R(close(*fd)));
	*fd = -1;
	barrier();
}

static void inflight_s(int *fd)
{
	char c;
	int ok = recv_pat(*fd, 0, IF_SIZE - IF_TAIL);

	barrier();	/* peer closed already, the tail still in flight */
	msleep(1000);
	ok &= recv_pat(*fd, IF_SIZE - IF_TAIL, IF_TAIL);
	out("all 4 MiB received intact, the last 16 KiB after peer's close: %s", yesno(ok));
	out("then read=%s", R(read(*fd, &c, 1)));
}

static void eintr_c(int *fd)
{
	uint64_t off = 0;
	static uint8_t b[65536];
	pthread_t t;
	long r;

	/* receiving side: the server is the one blocked in recv */
	barrier();
	msleep(3000);
	writen(*fd, "hello", 5);
	barrier();
	/* sending side: blocked in send on a full socket */
	set_nonblock(*fd, 1);
	fill(*fd, &off);
	set_nonblock(*fd, 0);
	set_handler(0);
	t = kick_after(1000);
	fillpat(b, sizeof(b), off);
	r = send(*fd, b, sizeof(b), MSG_NOSIGNAL);
	out("blocked send, signal without SA_RESTART: %s handler ran: %s", rs(r, errno), yesno(got_sig));
	pthread_join(t, NULL);
	if (r > 0)
		off += r;
	ctl_put((int64_t)off);
	set_handler(1);
	t = kick_after(1000);
	fillpat(b, sizeof(b), off);
	r = send(*fd, b, sizeof(b), MSG_NOSIGNAL);
	out("blocked send, signal with SA_RESTART, peer drains 4 s later: %s handler ran: %s",
	    rs(r, errno), yesno(got_sig));
	pthread_join(t, NULL);
	if (r > 0)
		off += r;
	ctl_put((int64_t)off);
	barrier();
	signal(SIGUSR1, SIG_IGN);
}

static void eintr_s(int *fd)
{
	char b[10] = "";
	pthread_t t;
	long r;
	int64_t a, b2;

	set_handler(0);
	t = kick_after(1000);
	r = recv(*fd, b, sizeof(b), 0);
	out("blocked recv, signal without SA_RESTART: %s handler ran: %s", rs(r, errno), yesno(got_sig));
	pthread_join(t, NULL);
	set_handler(1);
	barrier();
	t = kick_after(1000);
	r = recv(*fd, b, sizeof(b), 0);
	out("blocked recv, signal with SA_RESTART, data 3 s later: %s '%.5s' handler ran: %s",
	    rs(r, errno), b, yesno(got_sig));
	pthread_join(t, NULL);
	barrier();
	a = ctl_get();		/* filled, first send interrupted */
	msleep(4000);		/* the restarted send blocks meanwhile */
	out("read everything sent before intact: %s", yesno(recv_pat(*fd, 0, a)));
	b2 = ctl_get();		/* after the restarted send */
	out("then the restarted send's bytes intact: %s", yesno(recv_pat(*fd, a, b2 - a)));
	barrier();
	signal(SIGUSR1, SIG_IGN);
}

static void oob_c(int *fd)
{
	writen(*fd, "abc", 3);
	msleep(500);
	out("send('X', MSG_OOB)=%s", R(send(*fd, "X", 1, MSG_OOB | MSG_NOSIGNAL)));
	msleep(500);
	writen(*fd, "def", 3);
	barrier();
	barrier();
}

static void oob_s(int *fd)
{
	char b[16];
	long r;
	int at = -1;

	barrier();
	xpoll(*fd, POLLIN, WAIT_MS);
	msleep(2000);
	out("poll(IN|PRI): %s", pmask(xpoll(*fd, POLLIN | POLLPRI, 0)));
	memset(b, 0, sizeof(b));
	r = recv(*fd, b, 1, MSG_OOB);
	out("recv(MSG_OOB)=%s '%s'", rs(r, errno), b);
	ioctl(*fd, SIOCATMARK, &at);
	out("SIOCATMARK before reading=%d", at);
	memset(b, 0, sizeof(b));
	r = recv(*fd, b, sizeof(b) - 1, MSG_DONTWAIT);
	out("recv=%s '%s'", rs(r, errno), b);
	memset(b, 0, sizeof(b));
	r = recv(*fd, b, sizeof(b) - 1, MSG_DONTWAIT);
	out("recv=%s '%s'", rs(r, errno), b);
	memset(b, 0, sizeof(b));
	r = recv(*fd, b, sizeof(b) - 1, MSG_DONTWAIT);
	out("recv=%s '%s'", rs(r, errno), b);
	barrier();
}

/* ------------------------------------------------------------ table */

struct check {
	const char *name;
	void (*c)(int *fd);
	void (*s)(int *fd);
};

static const struct check checks[] = {
	{ "rw", rw_c, rw_s },
	{ "sendrecv", sendrecv_c, sendrecv_s },
	{ "sendmsg_iov", msg_c, msg_s },
	{ "readv_writev", rwv_c, rwv_s },
	{ "sendfile", sendfile_c, sendfile_s },
	{ "splice", splice_c, splice_s },
	{ "peek", peek_c, peek_s },
	{ "waitall", waitall_c, waitall_s },
	{ "dontwait", dontwait_c, dontwait_s },
	{ "nonblock_epollout", nonblock_c, nonblock_s },
	{ "poll_epollin", pollin_c, pollin_s },
	{ "rdhup_hup", hup_c, hup_s },
	{ "timeo", timeo_c, timeo_s },
	{ "rcvlowat", lowat_c, lowat_s },
	{ "inq", inq_c, inq_s },
	{ "halfclose", halfclose_c, halfclose_s },
	{ "close_unread_rst", rst_c, rst_s },
	{ "close_inflight", inflight_c, inflight_s },
	{ "close_gone_rst", gone_c, gone_s },
	{ "eintr", eintr_c, eintr_s },
	{ "oob", oob_c, oob_s },
};
#define NCHECKS (sizeof(checks) / sizeof(checks[0]))

static void *watchdog(void *arg)
{
	(void)arg;
	for (;;) {
		sleep(5);
		if (check_start && time(NULL) - check_start > CHECK_TIMEOUT) {
			printf("%s %c: TIMEOUT (stuck for %d s)\n", cur, side, CHECK_TIMEOUT);
			fflush(stdout);
			_exit(3);
		}
	}
	return NULL;
}

static void run_one(unsigned int i)
{
	int fd;

	cur = checks[i].name;
	check_start = time(NULL);
	if (side == 'C') {
		ctl_put(i);
		ctl_get();		/* server ready */
		fd = connect_data();
		checks[i].c(&fd);
	} else {
		ctl_put(i);
		fd = accept_data();
		checks[i].s(&fd);
	}
	barrier();
	if (fd >= 0)
		close(fd);
	check_start = 0;
}

static int usage(void)
{
	fprintf(stderr, "usage: sockcheck server PORT | client ADDR PORT [CHECK...] | list\n");
	return 2;
}

int main(int argc, char **argv)
{
	pthread_t wd;
	unsigned int i;

	setvbuf(stdout, NULL, _IOLBF, 0);
	signal(SIGPIPE, SIG_IGN);
	signal(SIGUSR1, SIG_IGN);
	main_thread = pthread_self();
	if (argc >= 2 && !strcmp(argv[1], "list")) {
		for (i = 0; i < NCHECKS; i++)
			puts(checks[i].name);
		return 0;
	}
	if (argc == 3 && !strcmp(argv[1], "server")) {
		struct sockaddr_in6 a = { .sin6_family = AF_INET6, .sin6_addr = IN6ADDR_ANY_INIT };
		int one = 1, zero = 0;

		side = 'S';
		a.sin6_port = htons(atoi(argv[2]));
		lfd = sc_socket(AF_INET6);
		setsockopt(lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
		setsockopt(lfd, IPPROTO_IPV6, IPV6_V6ONLY, &zero, sizeof(zero));
		if (bind(lfd, (struct sockaddr *)&a, sizeof(a)) < 0 || listen(lfd, 64) < 0)
			die("bind/listen");
		ctl = accept_data();
	} else if (argc >= 4 && !strcmp(argv[1], "client")) {
		struct sockaddr_in *a4 = (struct sockaddr_in *)&peer_sa;
		struct sockaddr_in6 *a6 = (struct sockaddr_in6 *)&peer_sa;

		side = 'C';
		/* numeric addresses only: a static binary has no NSS */
		if (inet_pton(AF_INET, argv[2], &a4->sin_addr) == 1) {
			a4->sin_family = AF_INET;
			a4->sin_port = htons(atoi(argv[3]));
			peer_len = sizeof(*a4);
		} else if (inet_pton(AF_INET6, argv[2], &a6->sin6_addr) == 1) {
			a6->sin6_family = AF_INET6;
			a6->sin6_port = htons(atoi(argv[3]));
			peer_len = sizeof(*a6);
		} else {
			fprintf(stderr, "sockcheck: %s: not a numeric IPv4/IPv6 address\n", argv[2]);
			return 2;
		}
		ctl = connect_data();
	} else {
		return usage();
	}
	pthread_create(&wd, NULL, watchdog, NULL);
	if (side == 'C') {
		for (i = 0; i < NCHECKS; i++) {
			int k, want = argc == 4;

			for (k = 4; k < argc; k++)
				want |= !strcmp(argv[k], checks[i].name);
			if (want)
				run_one(i);
		}
		cur = "end";
		ctl_put(-1);
		ctl_get();
	} else {
		for (;;) {
			int64_t v = ctl_get();

			if (v < 0 || v >= (int64_t)NCHECKS) {
				ctl_put(0);
				break;
			}
			run_one((unsigned int)v);
		}
	}
	return 0;
}
