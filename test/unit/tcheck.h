/* SPDX-License-Identifier: GPL-2.0 */
/*
 * Minimal test-case harness for the user-space unit tests.
 *
 * A test case is a void function; CHECK*() fail it and return from it.
 * RUN(fn) prints "ok NAME" or, on the first failed check, "FAIL NAME: why"
 * (NAME is the function name without its "test_" prefix).  T_DONE() prints
 * "PROG: N ok, M FAIL" and gives the exit status.  test/run-unit.sh counts
 * the "ok " and "FAIL " lines of every program.
 */
#ifndef TCHECK_H
#define TCHECK_H

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *t_name;
static int t_failed, t_npass, t_nfail;

/* Allocations of the current test case, freed after it (even if it failed). */
static void *t_allocs[64];
static unsigned int t_nallocs;

static inline void *t_alloc(size_t n)
{
	void *p = malloc(n ? n : 1);

	if (!p || t_nallocs == sizeof(t_allocs) / sizeof(t_allocs[0])) {
		printf("FAIL %s: out of memory\n", t_name);
		exit(2);
	}
	t_allocs[t_nallocs++] = p;
	return p;
}

static inline void t_free_all(void)
{
	while (t_nallocs)
		free(t_allocs[--t_nallocs]);
}

#define T_FAIL(...)							\
	do {								\
		if (!t_failed) {					\
			printf("FAIL %s: ", t_name);			\
			printf(__VA_ARGS__);				\
			printf(" (%s:%d)\n", __FILE__, __LINE__);	\
			fflush(stdout);					\
		}							\
		t_failed = 1;						\
		return;							\
	} while (0)

#define CHECK(c)							\
	do {								\
		if (!(c))						\
			T_FAIL("CHECK(%s)", #c);			\
	} while (0)

/* Compares as long long: fine for u32, long (incl. -errno) and bool. */
#define CHECK_EQ(a, b)							\
	do {								\
		long long _a = (long long)(a), _b = (long long)(b);	\
		if (_a != _b)						\
			T_FAIL("%s is %lld (0x%llx), expected %s = %lld",\
			       #a, _a, (unsigned long long)_a, #b, _b);	\
	} while (0)

/* Early return from a test case when a helper it called has failed. */
#define CHECK_OK()							\
	do {								\
		if (t_failed)						\
			return;						\
	} while (0)

#define RUN(fn)								\
	do {								\
		t_name = #fn + 5;	/* skip "test_" */		\
		t_failed = 0;						\
		fn();							\
		t_free_all();						\
		if (t_failed) {						\
			t_nfail++;					\
		} else {						\
			t_npass++;					\
			printf("ok %s\n", t_name);			\
		}							\
		fflush(stdout);						\
	} while (0)

#define T_DONE(prog)							\
	(printf("%s: %d ok, %d FAIL\n", prog, t_npass, t_nfail),	\
	 t_nfail ? 1 : 0)

#endif /* TCHECK_H */
