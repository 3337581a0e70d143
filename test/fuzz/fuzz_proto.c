// SPDX-License-Identifier: GPL-2.0
/*
 * libFuzzer target: arbitrary bytes into vmc_msg_check().
 *
 * The input is copied into an exactly-sized allocation (as the receiver's
 * private copy), so ASan aborts if the validator reads past the length it
 * was given.  The verdict is compared both ways with the independent model
 * in proto_model.h; an accepted message is, in addition, re-checked field
 * by field through the structures the receiver will use after the check
 * (ring ref bounds, tuple rules, counts, reasons), so that a message the
 * kernel would act on can never violate them.  Any mismatch: abort().
 */
#include "vmc_proto.h"
#include "proto_model.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#define ASSERT(c)							\
	do {								\
		if (!(c)) {						\
			fprintf(stderr, "fuzz_proto: %s:%d: %s\n",	\
				__FILE__, __LINE__, #c);		\
			abort();					\
		}							\
	} while (0)

static void ring_ref_sane(const struct vmc_ring_ref *r)
{
	uint64_t page = le32_to_cpu(r->page), pages = le32_to_cpu(r->pages);

	ASSERT(le32_to_cpu(r->slot) < VMC_MAX_SLOTS);
	ASSERT(page < VMC_POOL_MAX_PAGES);
	ASSERT(pages >= 1 && pages <= VMC_RING_MAX_PAGES);
	ASSERT(is_power_of_2(pages));
	ASSERT(page + pages <= VMC_POOL_MAX_PAGES);
	/* The ring it describes is one vmc_ring_init() accepts. */
	ASSERT(pages * 4096 <= 0x1000000 /* VMC_RING_MAX_SIZE */);
	/*
	 * In the receiver's pool (the defaults: 2 header pages, 36 slots of
	 * 16 pages, 32 of them TCP), an accepted ring lies in the TCP slots'
	 * data: never in a header page, the datagram ring, or past the pool.
	 */
	if (!vmc_ring_ref_in_pool(r, 2, 16, 32, VMC_RING_MAX_SLOTS)) {
		ASSERT(page >= 2 && page + pages <= 2 + 32 * 16);
		ASSERT(pages >= 16 && pages <= 16 * VMC_RING_MAX_SLOTS);
		ASSERT((page - 2) % pages == 0);
	}
}

static void tuple_sane(const struct vmc_tuple *t)
{
	unsigned int i;

	ASSERT(t->family == VMC_AF_INET || t->family == VMC_AF_INET6);
	ASSERT(!t->pad[0] && !t->pad[1] && !t->pad[2]);
	ASSERT(t->lport && t->rport);
	if (t->family == VMC_AF_INET)
		for (i = 4; i < 16; i++)
			ASSERT(!t->laddr[i] && !t->raddr[i]);
}

/* Invariants of an accepted message, through the receiver's structures. */
static void accepted_sane(const void *buf, size_t len)
{
	const struct vmc_msg_hdr *h = buf;
	u32 i;

	ASSERT(len >= sizeof(*h) && len <= VMC_MSG_MAX);
	ASSERT(h->version == VMC_PROTO_VERSION && !h->flags);
	ASSERT(h->type >= VMC_MSG_HELLO && h->type < VMC_MSG_NR);
	ASSERT(le16_to_cpu(h->len) == len && vmc_msg_size(h->type) == len);

	switch (h->type) {
	case VMC_MSG_HELLO: {
		const struct vmc_msg_hello *m = buf;

		ASSERT(le32_to_cpu(m->domid) < 0x7ff0);
		ASSERT(le32_to_cpu(m->pool_pages) <= VMC_POOL_MAX_PAGES);
		ASSERT(le32_to_cpu(m->slots) <= VMC_MAX_SLOTS);
		break;
	}
	case VMC_MSG_POOL: {
		const struct vmc_msg_pool *m = buf;
		u32 first = le32_to_cpu(m->first), count = le32_to_cpu(m->count);

		ASSERT(count >= 1 && count <= VMC_POOL_REFS_PER_MSG);
		ASSERT((uint64_t)first + count <= VMC_POOL_MAX_PAGES);
		for (i = count; i < VMC_POOL_REFS_PER_MSG; i++)
			ASSERT(!m->gref[i]);
		break;
	}
	case VMC_MSG_CONN_OFFER: {
		const struct vmc_msg_conn_offer *m = buf;

		tuple_sane(&m->tuple);
		ring_ref_sane(&m->ring);
		break;
	}
	case VMC_MSG_CONN_ACCEPT:
		ring_ref_sane(&((const struct vmc_msg_conn_accept *)buf)->ring);
		break;
	case VMC_MSG_CONN_REFUSE:
		ASSERT(le32_to_cpu(((const struct vmc_msg_conn_refuse *)buf)->reason) <
		       VMC_R_NR);
		break;
	case VMC_MSG_CONN_CLOSE: {
		u32 how = le32_to_cpu(((const struct vmc_msg_conn_end *)buf)->how);

		ASSERT(how == VMC_CLOSE_FIN || how == VMC_CLOSE_RST);
		break;
	}
	case VMC_MSG_CONN_REVERT:
	case VMC_MSG_CONN_REVERTED:
		ASSERT(!((const struct vmc_msg_conn_end *)buf)->how);
		break;
	case VMC_MSG_BYE:
		ASSERT(le32_to_cpu(((const struct vmc_msg_bye *)buf)->reason) <
		       VMC_R_NR);
		break;
	case VMC_MSG_READY:
		ASSERT(le32_to_cpu(((const struct vmc_msg_ready *)buf)->pages) <=
		       VMC_POOL_MAX_PAGES);
		break;
	default:
		ASSERT(0);
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	uint8_t *copy;
	int ret;

	if (size > 4096)
		return 0;
	copy = malloc(size ? size : 1);
	memcpy(copy, data, size);
	ret = vmc_msg_check(copy, size);
	ASSERT(ret == 0 || ret == -EPROTO);
	ASSERT((ret == 0) == pm_msg_ok(copy, size));
	if (ret == 0)
		accepted_sane(copy, size);
	free(copy);
	return 0;
}
