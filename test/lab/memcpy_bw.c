/* memcpy_bw: memory-copy bandwidth of one CPU with 64 KiB buffers (cache-resident copies, the same
 * size class as a XenVMC ring chunk). Usage: memcpy_bw [seconds] [buffer-bytes] [mode]. Prints MiB/s.
 *
 *   memcpy  (default) glibc memcpy() in user space: the copy limit the benchmark targets name
 *   kread   pread() of a memfd holding buffer-bytes: the kernel's copy_to_user() from page cache
 *   kwrite  pwrite() into that memfd: the kernel's copy_from_user()
 *
 * XenVMC copies each byte once per side with the kernel's own copy routines (sendmsg: from the
 * user's buffer into the ring; recvmsg: from the ring to the user), so kread/kwrite are what one
 * copy per byte per side costs on this vCPU, system call and page lookup included. Under TCG they
 * can differ a lot from memcpy: glibc uses vector moves, the kernel `rep movsb` or a movq loop.
 * Part of the XenVMC lab benchmark (test/lab.sh bench). */
#define _GNU_SOURCE
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

static double now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec / 1e9;
}

int main(int argc, char **argv)
{
	double secs = argc > 1 ? atof(argv[1]) : 3.0;
	size_t len = argc > 2 ? strtoul(argv[2], NULL, 0) : 64 * 1024;
	const char *mode = argc > 3 ? argv[3] : "memcpy";
	unsigned char *a = aligned_alloc(4096, len), *b = aligned_alloc(4096, len);
	unsigned long long bytes = 0;
	volatile unsigned char sink;
	int kread = !strcmp(mode, "kread"), kwrite = !strcmp(mode, "kwrite");
	int fd = -1;
	double t0, t;

	if (!a || !b || len == 0 || len % 4096 || secs <= 0 ||
	    (!kread && !kwrite && strcmp(mode, "memcpy"))) {
		fprintf(stderr, "usage: memcpy_bw [seconds] [buffer-bytes, 4 KiB multiple] [memcpy|kread|kwrite]\n");
		return 2;
	}
	memset(a, 0x5a, len);
	memset(b, 0xa5, len);
	if (kread || kwrite) {
		fd = memfd_create("memcpy_bw", 0);
		if (fd < 0 || pwrite(fd, a, len, 0) != (ssize_t)len) {
			perror("memcpy_bw: memfd");
			return 1;
		}
	}
	t0 = now();
	do {
		for (int i = 0; i < 64; i++) {
			if (kread) {
				if (pread(fd, b, len, 0) != (ssize_t)len)
					return perror("memcpy_bw: pread"), 1;
			} else if (kwrite) {
				if (pwrite(fd, a, len, 0) != (ssize_t)len)
					return perror("memcpy_bw: pwrite"), 1;
			} else {
				memcpy(b, a, len);
			}
			a[i % len] ^= b[(i * 7) % len];	/* keep the copies observable */
			bytes += len;
		}
		t = now();
	} while (t - t0 < secs);
	sink = b[len / 2];
	(void)sink;
	printf("memcpy_bw: %s, buffer %zu bytes, %.2f s, %.1f MiB/s\n", mode, len, t - t0,
	       bytes / (t - t0) / (1024.0 * 1024.0));
	return 0;
}
