// SPDX-License-Identifier: GPL-2.0
/*
 * libFuzzer target: vmc_dgram_check(), which reads datagrams a (possibly
 * hostile) peer wrote into the datagram ring.  The input is the message,
 * copied into an exactly-sized allocation (ASan aborts on any overread).
 * The verdict and every field are compared with an independent model that
 * reads the headers field by field the way RFC 791 / RFC 8200 / RFC 768
 * lay them out.
 */
#include "vmc_proto.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#define ASSERT(c)							\
	do {								\
		if (!(c)) {						\
			fprintf(stderr, "fuzz_dgram: %s:%d: %s\n",	\
				__FILE__, __LINE__, #c);		\
			abort();					\
		}							\
	} while (0)

static unsigned int m_u16(const uint8_t *b, size_t at)
{
	return (unsigned int)b[at] * 256u + b[at + 1];
}

/*
 * Model of an address a peer may use, written from the address plans:
 * IPv4 not 0.0.0.0, 127/8, 224/4 and up (multicast, reserved, broadcast),
 * 169.254/16; IPv6 not ::/120, ff00::/8, fe80::/10.
 */
static int m_unicast(int family, const uint8_t *a)
{
	uint32_t v4;
	int i;

	if (family == 4) {
		v4 = (uint32_t)a[0] << 24 | (uint32_t)a[1] << 16 |
		     (uint32_t)a[2] << 8 | a[3];
		return v4 != 0 && v4 >> 24 != 127 && v4 < 0xe0000000u &&
		       v4 >> 16 != 0xa9fe;
	}
	for (i = 0; i < 15 && !a[i]; i++)
		;
	if (i == 15)
		return 0;
	return a[0] != 0xff && !(a[0] == 0xfe && a[1] >= 0x80 && a[1] < 0xc0);
}

/* Model: 1 and the fields when the packet must be accepted, else 0. */
static int model(const uint8_t *b, size_t n, struct vmc_dgram *d)
{
	unsigned int version, ihl, total, flags_frag, proto, udp_len;
	size_t ip_len;

	if (n < 28 || n > 65575)
		return 0;
	version = b[0] / 16;
	if (version == 4) {
		ihl = b[0] % 16;
		ip_len = ihl * 4u;
		if (ihl < 5 || ip_len + 8 > n)
			return 0;
		total = m_u16(b, 2);
		flags_frag = m_u16(b, 6);
		proto = b[9];
		/* MF flag (0x2000) or a fragment offset: a fragment */
		if (total != n || proto != 17 || (flags_frag & 0x2000) ||
		    (flags_frag & 0x1fff))
			return 0;
		d->family = 4;
		memcpy(d->saddr, b + 12, 4);
		memcpy(d->daddr, b + 16, 4);
	} else if (version == 6) {
		ip_len = 40;
		if (n < 48 || m_u16(b, 4) != n - 40 || b[6] != 17)
			return 0;
		d->family = 6;
		memcpy(d->saddr, b + 8, 16);
		memcpy(d->daddr, b + 24, 16);
	} else {
		return 0;
	}
	udp_len = m_u16(b, ip_len + 4);
	if (udp_len != n - ip_len)
		return 0;
	if (!m_unicast(d->family, d->saddr) || !m_unicast(d->family, d->daddr))
		return 0;
	d->sport = m_u16(b, ip_len);
	d->dport = m_u16(b, ip_len + 2);
	d->hlen = ip_len;
	return 1;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct vmc_dgram got, want, head_got;
	size_t head = size < VMC_DGRAM_HDR_MAX ? size : VMC_DGRAM_HDR_MAX;
	uint8_t *buf, *hbuf;
	int ok;

	if (size > VMC_DGRAM_MAX + 8)
		return 0;
	buf = malloc(size ? size : 1);
	ASSERT(buf);
	memcpy(buf, data, size);
	memset(&want, 0, sizeof(want));
	ok = vmc_dgram_check(buf, size, &got) == 0;
	ASSERT(ok == model(buf, size, &want));
	if (ok) {
		ASSERT(got.family == want.family);
		ASSERT(!memcmp(got.saddr, want.saddr, 16));
		ASSERT(!memcmp(got.daddr, want.daddr, 16));
		ASSERT(got.sport == want.sport && got.dport == want.dport);
		ASSERT(got.hlen == want.hlen);
	}
	/*
	 * Only the first VMC_DGRAM_HDR_MAX bytes are read: the same verdict
	 * from a buffer of just those (the sanitizer traps a read beyond).
	 */
	hbuf = malloc(head ? head : 1);
	ASSERT(hbuf);
	memcpy(hbuf, data, head);
	ASSERT((vmc_dgram_check(hbuf, size, &head_got) == 0) == ok);
	ASSERT(!memcmp(&head_got, &got, sizeof(got)));
	free(hbuf);
	free(buf);
	return 0;
}
