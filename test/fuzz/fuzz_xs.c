// SPDX-License-Identifier: GPL-2.0
/*
 * libFuzzer target: the XenStore value parsers of vmc_proto.h, which read
 * values written by (possibly hostile) DomUs.
 *
 * Input: byte 0 picks the parser (0 addresses, 1 channel, 2 peer entry,
 * 3 incarnation), byte 1 the addresses' @max (0 .. VMC_MAX_ADDRS + 1), the
 * rest is the value, copied into an exactly-sized allocation without a
 * NUL, and the address array is exactly @max entries: ASan aborts on any
 * overread or overwrite.  The verdict and every parsed field are compared
 * with an independent model (tokenise first, then check each token);
 * accepted address lists and incarnations must also format back to exactly
 * the input.
 */
#include "vmc_proto.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#define ASSERT(c)							\
	do {								\
		if (!(c)) {						\
			fprintf(stderr, "fuzz_xs: %s:%d: %s\n",		\
				__FILE__, __LINE__, #c);		\
			abort();					\
		}							\
	} while (0)

static int m_hex(int c)
{
	return c >= '0' && c <= '9' ? c - '0' :
	       c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
}

/* [s, s + n) is 2 * bytes lower-case hex digits; decode into out. */
static int m_hexstr(const char *s, size_t n, u8 *out, size_t bytes)
{
	size_t i;

	if (n != 2 * bytes)
		return 0;
	for (i = 0; i < n; i++)
		if (m_hex((u8)s[i]) < 0)
			return 0;
	for (i = 0; i < bytes; i++)
		out[i] = m_hex((u8)s[2 * i]) << 4 | m_hex((u8)s[2 * i + 1]);
	return 1;
}

/* [s, s + n) is 1 to 10 decimal digits of a value below 2^32. */
static int m_u32(const char *s, size_t n, u32 *out)
{
	uint64_t v = 0;
	size_t i;

	if (n < 1 || n > 10)
		return 0;
	for (i = 0; i < n; i++) {
		if (s[i] < '0' || s[i] > '9')
			return 0;
		v = v * 10 + (s[i] - '0');
	}
	if (v > 0xffffffffu)
		return 0;
	*out = v;
	return 1;
}

/* Split at every @sep; tokens may be empty.  Returns the count. */
static size_t m_split(const char *s, size_t len, char sep, size_t *start,
		      size_t *tlen, size_t max)
{
	size_t n = 0, b = 0, i;

	for (i = 0; i <= len; i++) {
		if (i < len && s[i] != sep)
			continue;
		if (n < max) {
			start[n] = b;
			tlen[n] = i - b;
		}
		n++;
		b = i + 1;
	}
	return n;
}

/* The address list model: -1 or the count, addresses in @a. */
static int m_addrs(const char *s, size_t len, struct vmc_addr *a, size_t max)
{
	size_t st[VMC_MAX_ADDRS + 2], tl[VMC_MAX_ADDRS + 2], n, i;

	if (!len)
		return 0;
	n = m_split(s, len, ' ', st, tl, VMC_MAX_ADDRS + 2);
	if (n > max)
		return -1;
	for (i = 0; i < n; i++) {
		memset(&a[i], 0, sizeof(a[i]));
		a[i].family = tl[i] == 8 ? VMC_AF_INET : VMC_AF_INET6;
		if (!m_hexstr(s + st[i], tl[i], a[i].addr,
			      tl[i] == 8 ? 4 : 16))
			return -1;
	}
	return n;
}

static void fuzz_addrs(const char *s, size_t len, unsigned int max)
{
	struct vmc_addr *a = malloc(max ? max * sizeof(*a) : 1);
	struct vmc_addr m[VMC_MAX_ADDRS + 2];
	char buf[VMC_XS_ADDRS_MAX + 1];
	int got, want, i;

	got = vmc_xs_parse_addrs(s, len, a, max);
	want = m_addrs(s, len, m, max);
	ASSERT(got == (want < 0 ? -EINVAL : want));
	for (i = 0; i < got; i++) {
		ASSERT(a[i].family == m[i].family);
		ASSERT(!memcmp(a[i].addr, m[i].addr, 16));
	}
	/* Canonical: what was accepted formats back to the same bytes. */
	if (got >= 0 && got <= (int)VMC_MAX_ADDRS) {
		ASSERT(len <= VMC_XS_ADDRS_MAX);
		vmc_xs_format_addrs(buf, a, got);
		ASSERT(strlen(buf) == len && !memcmp(buf, s, len));
	}
	free(a);
}

static void fuzz_chan(const char *s, size_t len)
{
	size_t st[3], tl[3];
	u32 g, p, mg, mp;
	int got, ok;

	got = vmc_xs_parse_chan(s, len, &g, &p);
	ok = m_split(s, len, ' ', st, tl, 3) == 2 &&
	     m_u32(s + st[0], tl[0], &mg) && m_u32(s + st[1], tl[1], &mp);
	ASSERT(got == (ok ? 0 : -EINVAL));
	if (ok)
		ASSERT(g == mg && p == mp);
}

static void fuzz_peer(const char *s, size_t len)
{
	struct vmc_peer_entry e;
	struct vmc_addr ma[VMC_MAX_ADDRS + 2];
	u8 macs[VMC_MAX_VIFS][6];
	size_t sp1, sp2, mst[VMC_MAX_VIFS + 1], mtl[VMC_MAX_VIFS + 1];
	size_t nm = 0, i;
	int got, na = 0, ok = 1;
	u32 gen = 0;

	got = vmc_xs_parse_peer(s, len, &e);
	/* "<gen> <macs>[ <addrs>]": fields at the first two spaces. */
	for (sp1 = 0; sp1 < len && s[sp1] != ' '; sp1++)
		;
	for (sp2 = sp1 + 1; sp2 < len && s[sp2] != ' '; sp2++)
		;
	if (sp1 >= len || !m_u32(s, sp1, &gen))
		ok = 0;
	if (ok) {
		nm = m_split(s + sp1 + 1, sp2 - sp1 - 1, ',', mst, mtl,
			     VMC_MAX_VIFS + 1);
		if (nm > VMC_MAX_VIFS)
			ok = 0;
		for (i = 0; ok && i < nm; i++)
			ok = m_hexstr(s + sp1 + 1 + mst[i], mtl[i], macs[i], 6);
	}
	if (ok && sp2 < len) {
		/* the address list after the second space: not empty */
		na = m_addrs(s + sp2 + 1, len - sp2 - 1, ma, VMC_MAX_ADDRS);
		if (sp2 + 1 == len || na < 0)
			ok = 0;
	}
	ASSERT(got == (ok ? 0 : -EINVAL));
	if (!ok)
		return;
	ASSERT(e.gen == gen);
	ASSERT(e.nr_macs == nm && nm >= 1);
	ASSERT(!memcmp(e.macs, macs, nm * 6));
	ASSERT(e.nr_addrs == na);
	for (i = 0; i < (size_t)na; i++)
		ASSERT(e.addrs[i].family == ma[i].family &&
		       !memcmp(e.addrs[i].addr, ma[i].addr, 16));
}

/* The incarnation model: 16 hex digits, decoded as 8 big-endian bytes. */
static void fuzz_inc(const char *s, size_t len)
{
	char buf[VMC_XS_INC_LEN + 1];
	u64 got = 0x5a5a5a5a5a5a5a5aull, want = 0;
	u8 b[8];
	int ret, ok, i;

	ret = vmc_xs_parse_inc(s, len, &got);
	ok = m_hexstr(s, len, b, 8);
	for (i = 0; ok && i < 8; i++)
		want = want << 8 | b[i];
	ok = ok && want;
	ASSERT(ret == (ok ? 0 : -EINVAL));
	if (!ok) {
		ASSERT(got == 0x5a5a5a5a5a5a5a5aull);	/* untouched */
		return;
	}
	ASSERT(got == want);
	vmc_xs_format_inc(buf, got);
	ASSERT(strlen(buf) == len && !memcmp(buf, s, len));
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	unsigned int which, max;
	char *s;
	size_t len;

	if (size < 2 || size > 4096)
		return 0;
	which = data[0] % 4;
	max = data[1] % (VMC_MAX_ADDRS + 2);
	len = size - 2;
	s = malloc(len ? len : 1);
	memcpy(s, data + 2, len);
	if (which == 0)
		fuzz_addrs(s, len, max);
	else if (which == 1)
		fuzz_chan(s, len);
	else if (which == 2)
		fuzz_peer(s, len);
	else
		fuzz_inc(s, len);
	free(s);
	return 0;
}
