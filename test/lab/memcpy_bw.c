/* memcpy_bw: memory-copy bandwidth of one CPU with 64 KiB buffers (cache-resident copies, the same
 * size class as a XenVMC ring chunk). Usage: memcpy_bw [seconds] [buffer-bytes]. Prints MiB/s.
 * Part of the XenVMC lab baseline benchmark (test/lab.sh bench). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

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
	unsigned char *a = aligned_alloc(4096, len), *b = aligned_alloc(4096, len);
	unsigned long long bytes = 0, iters = 0;
	volatile unsigned char sink;
	double t0, t;

	if (!a || !b || len == 0 || secs <= 0) {
		fprintf(stderr, "usage: memcpy_bw [seconds] [buffer-bytes]\n");
		return 2;
	}
	memset(a, 0x5a, len);
	memset(b, 0xa5, len);
	t0 = now();
	do {
		for (int i = 0; i < 64; i++) {
			memcpy(b, a, len);
			a[i % len] ^= b[(i * 7) % len];	/* keep the copies observable */
			bytes += len;
		}
		iters++;
		t = now();
	} while (t - t0 < secs);
	sink = b[len / 2];
	(void)sink;
	printf("memcpy_bw: buffer %zu bytes, %.2f s, %.1f MiB/s\n", len, t - t0,
	       bytes / (t - t0) / (1024.0 * 1024.0));
	return 0;
}
