// SPDX-License-Identifier: GPL-2.0
/*
 * XenVMC Dom0 module: which DomUs run on this host, who may talk to whom,
 * and telling each DomU.
 *
 * Dom0 is the only party every DomU trusts.  This module learns domains
 * from XenStore (@introduceDomain / @releaseDomain), the vif MACs of each
 * from the backend nodes Dom0 itself owns, and the addresses each DomU's
 * frontend claims under its own data/xenvmc node (vmc_proto.h documents
 * every node).  A claim is a DomU's word, so:
 *   - an address claimed by two DomUs belongs to the first claimant with
 *     a vif; the later one is not listed for it (first come, as long as
 *     it holds it);
 *   - a malformed claim is refused whole and logged once per domain.
 * It writes each enabled DomU's peer table into that DomU's own XenStore
 * tree, under xenvmc/, where only Dom0 can write and only the DomU (and
 * Dom0) can read; and it relays the control-channel offers the frontends
 * make to each other, since no DomU can read another's tree.
 *
 * Cost of a change: one DomU's entry changing costs one XenStore write per
 * other enabled DomU (N - 1), plus N - 1 writes into its own table when it
 * becomes enabled; never a rewrite of every table (which would be N^2).
 * A new incarnation Dom0 did not see leave costs as much as leaving and
 * coming back: N - 1 removals of its offers, N - 1 entry writes, N - 1
 * writes to rebuild its own table.
 * In-memory recomputation is O(N * addresses) and touches no XenStore.
 *
 * All work runs in the xenwatch thread (watch callbacks), serialised by
 * vmcb_lock, which /proc readers take too.
 *
 * Domain entry states (one struct vmcb_dom per DomU in /local/domain):
 *
 *   state    | event                               | action                       | next
 *   ---------+-------------------------------------+------------------------------+--------
 *   -        | domid appears in /local/domain      | add, watch its data/xenvmc   | OFF
 *   OFF      | state "1" and a valid address claim | gen++; entry to every peer;  | ON
 *            |                                     | every peer into its table    |
 *   OFF      | state "1", claim or inc malformed   | log once; why = reason       | OFF
 *   ON       | addresses, ownership or vifs change | gen++; entry to every peer   | ON
 *            | (vifs: read at each of its events;  |                              |
 *            | backend/vif is not watched)         |                              |
 *   ON       | chan/<P> written or removed         | relay to P's xenvmc/chan/<D> | ON
 *            |                                     | (one withheld: only when the |
 *            |                                     | event is for that node)      |
 *   ON       | state removed or not "1"            | entry and relays removed     | OFF
 *            |                                     | from peers; its table wiped  |
 *   ON       | inc is not the incarnation seen     | as state removed (a quick    | OFF
 *            | last (an event older than the one   | reload: it did not wait for  |
 *            | of the inc node)                    | us to see it gone)           |
 *   OFF      | event of the inc node, new value    | remember it; offers to it    | OFF/ON
 *            |                                     | withheld; then as any event  |
 *   ON       | event of the inc node, new value,   | its table wiped, its offers  | ON
 *            | no event saw it OFF (data/xenvmc    | withdrawn, gen++, in one     |
 *            | never removed)                      | publish (vmcb_restart());    |
 *            |                                     | offers to it withheld        |
 *   any      | domid gone from /local/domain       | unwatch; as ON -> OFF; free  | -
 *
 * An incarnation (vmc_proto.h) is adopted only on the watch event of its
 * own node (or the watch's first event): xenstored sends events in the
 * order of the writes and they are handled one at a time here, so every
 * event handled after that one was written after the frontend came back.
 * A peer's offer to a DomU that came back is relayed only after that peer
 * writes it again ("withheld", vmcb_withhold()).  Every time its table
 * is (re)built, a DomU with incarnations is first told which one it is
 * for (xenvmc/inc), and its frontend acts on nothing else.
 */
#define pr_fmt(fmt) "xenvmc-back: " fmt

#include <linux/module.h>
#include <linux/kernel.h>
#include <linux/slab.h>
#include <linux/list.h>
#include <linux/mutex.h>
#include <linux/proc_fs.h>
#include <linux/seq_file.h>
#include <linux/notifier.h>
#include <linux/if_ether.h>
#include <xen/xen.h>
#include <xen/xenbus.h>

#include "vmc_ring.h"
#include "vmc_proto.h"

#define VMCB_VERSION "0.2"
#define VMCB_MAX_DOMS 1024

static unsigned int max_domains = 256;
module_param(max_domains, uint, 0444);
MODULE_PARM_DESC(max_domains, "DomUs tracked at most (1-1024, default 256)");

/* A channel offer relayed from one DomU to one peer. */
struct vmcb_relay {
	struct list_head list;
	unsigned int peer;
	bool withheld;		/* until the offer is written again */
	char val[24];		/* canonical "<gref> <port>" written; "": none */
};

struct vmcb_dom {
	struct list_head list;
	unsigned int domid;
	bool on;		/* frontend loaded and claim valid */
	bool synced;		/* its table holds every other ON DomU */
	bool seen;		/* mark for the rescan */
	const char *bad_logged;	/* the refusal logged last (once each) */
	bool changed;		/* entry changed since the last publish */
	u32 gen;		/* bumped on every change of its entry */
	u64 inc;		/* its frontend's incarnation; 0: none seen */
	bool inc_read;		/* the watch's first event was handled */
	bool inc_retry;		/* its inc node's event could not read it */
	const char *why;	/* why it is OFF, for /proc */
	unsigned int nr_addrs;
	struct vmc_addr addrs[VMC_MAX_ADDRS];
	u64 since[VMC_MAX_ADDRS];	/* claim order of each address */
	unsigned int nr_macs;
	u8 macs[VMC_MAX_VIFS][ETH_ALEN];
	char body[VMC_XS_PEER_MAX + 1];	/* published entry minus gen */
	struct list_head relays;
	char path[48];		/* /local/domain/<D>/data/xenvmc */
	struct xenbus_watch watch;
	bool watching;
};

static DEFINE_MUTEX(vmcb_lock);
static LIST_HEAD(vmcb_doms);
static unsigned int vmcb_nr_doms;
static u64 vmcb_claim_seq;
static bool vmcb_watching;
static bool vmcb_stopping;
static struct proc_dir_entry *vmcb_proc_dir;

/* Counters for /proc/xenvmc/stats. */
static unsigned long vmcb_xs_writes, vmcb_bad_claims, vmcb_conflicts,
	vmcb_bad_chans, vmcb_relayed, vmcb_reloads_unseen;

static struct vmcb_dom *vmcb_find(unsigned int domid)
{
	struct vmcb_dom *d;

	list_for_each_entry(d, &vmcb_doms, list)
		if (d->domid == domid)
			return d;
	return NULL;
}

/*
 * Dom0's own facts: the MAC of every vif it backs for @d.  A read that
 * fails for another reason than a missing node keeps what we knew: taken
 * as "no vif", it would cost @d its addresses and their claim order
 * (vmcb_owns(), vmcb_read_claim()) for a XenStore hiccup.
 */
static void vmcb_read_macs(struct vmcb_dom *d)
{
	u8 macs[VMC_MAX_VIFS][ETH_ALEN];
	unsigned int i, n = 0, nr = 0;
	char path[64];
	char **dir;
	char *mac;

	snprintf(path, sizeof(path), "backend/vif/%u", d->domid);
	dir = xenbus_directory(XBT_NIL, path, "", &n);
	if (IS_ERR(dir)) {
		if (PTR_ERR(dir) == -ENOENT)
			d->nr_macs = 0;
		return;
	}
	for (i = 0; i < n && nr < VMC_MAX_VIFS; i++) {
		snprintf(path, sizeof(path), "backend/vif/%u/%s", d->domid,
			 dir[i]);
		mac = xenbus_read(XBT_NIL, path, "mac", NULL);
		if (IS_ERR(mac)) {
			if (PTR_ERR(mac) != -ENOENT)
				goto free_dir;	/* unsure: keep them */
			continue;	/* a vif being removed */
		}
		if (mac_pton(mac, macs[nr]))
			nr++;
		kfree(mac);
	}
	memcpy(d->macs, macs, nr * sizeof(macs[0]));
	d->nr_macs = nr;
free_dir:
	kfree(dir);
}

static bool vmcb_addr_eq(const struct vmc_addr *a, const struct vmc_addr *b)
{
	return a->family == b->family && !memcmp(a->addr, b->addr, 16);
}

/*
 * @d's incarnation node: *@inc = 0 when there is none.  -EINVAL if it is
 * malformed, -EAGAIN if it could not be read.
 */
static int vmcb_read_inc(struct vmcb_dom *d, u64 *inc)
{
	unsigned int len = 0;
	char *val;
	int err;

	*inc = 0;
	val = xenbus_read(XBT_NIL, d->path, "inc", &len);
	if (IS_ERR(val))
		return PTR_ERR(val) == -ENOENT ? 0 : -EAGAIN;
	err = vmc_xs_parse_inc(val, len, inc);
	kfree(val);
	return err;
}

/*
 * Read @d's frontend state and address claim, and its vifs.  Keeps the
 * claim order of addresses it already held, so re-reading never loses
 * ownership.
 * @inc_err, @inc: what vmcb_read_inc() returned for this event (read once:
 * vmcb_reborn() decides on the same value).
 */
static void vmcb_read_claim(struct vmcb_dom *d, int inc_err, u64 inc)
{
	struct vmc_addr addrs[VMC_MAX_ADDRS];
	u64 since[VMC_MAX_ADDRS];
	unsigned int len = 0, i, j;
	bool was_on = d->on, had_vif;
	char *state, *val;
	int n;

	d->on = false;
	state = xenbus_read(XBT_NIL, d->path, "state", NULL);
	if (IS_ERR(state)) {
		d->why = "frontend not loaded";
		goto off;
	}
	n = strcmp(state, "1");
	kfree(state);
	if (n) {
		d->why = "frontend not enabled";
		goto off;
	}
	if (inc_err == -EAGAIN) {
		d->why = "incarnation unreadable";
		goto off;
	}
	if (inc_err) {
		d->why = "malformed incarnation";
		goto bad;
	}
	if (!inc) {
		d->inc = 0;	/* a frontend without incarnations */
	} else if (inc != d->inc) {
		/*
		 * It came back, and this event is older than the one of its
		 * inc node (vmcb_reborn()): as gone until that one, so that
		 * nothing is built for it from what came before.
		 */
		if (was_on)
			vmcb_reloads_unseen++;
		d->why = "new incarnation, its event not handled yet";
		goto off;
	}
	val = xenbus_read(XBT_NIL, d->path, "addrs", &len);
	if (IS_ERR(val)) {
		d->why = "no address claim";
		goto off;
	}
	n = len <= VMC_XS_ADDRS_MAX ?
	    vmc_xs_parse_addrs(val, len, addrs, VMC_MAX_ADDRS) : -EINVAL;
	kfree(val);
	for (i = 0; n > 0 && i < n; i++)
		if (!vmc_addr_unicast(addrs[i].family, addrs[i].addr))
			n = -EINVAL;
	if (n < 0) {
		d->why = "malformed address claim";
		goto bad;
	}
	/*
	 * A claimant with no vif held nothing (vmcb_owns()): given one now,
	 * its claims are new ones, after those made meanwhile.
	 */
	had_vif = d->nr_macs;
	vmcb_read_macs(d);
	for (i = 0; i < n; i++) {
		since[i] = ++vmcb_claim_seq;
		for (j = 0; had_vif && j < d->nr_addrs; j++)
			if (vmcb_addr_eq(&addrs[i], &d->addrs[j]))
				since[i] = d->since[j];
	}
	memcpy(d->addrs, addrs, n * sizeof(addrs[0]));
	memcpy(d->since, since, n * sizeof(since[0]));
	d->nr_addrs = n;
	d->on = true;
	d->why = NULL;
	return;
bad:
	vmcb_bad_claims++;
	if (d->bad_logged != d->why)
		pr_warn_ratelimited("domain %u: %s refused\n", d->domid, d->why);
	d->bad_logged = d->why;
off:
	d->nr_addrs = 0;
}

/*
 * Does @d own its @i-th address: no earlier claimant of the same one that
 * could be a peer (ON, with a vif)?  One with no vif is listed to nobody
 * (vmcb_compose()), so it holds nothing: else a DomU with no network could
 * claim an address first and keep the DomU that has it from being listed.
 */
static bool vmcb_owns(const struct vmcb_dom *d, unsigned int i)
{
	const struct vmcb_dom *e;
	unsigned int j;

	list_for_each_entry(e, &vmcb_doms, list) {
		if (e == d || !e->on || !e->nr_macs)
			continue;
		for (j = 0; j < e->nr_addrs; j++)
			if (vmcb_addr_eq(&e->addrs[j], &d->addrs[i]) &&
			    e->since[j] < d->since[i])
				return false;
	}
	return true;
}

/* The entry body "<macs> <owned addrs>", or "" when @d is no peer. */
static void vmcb_compose(struct vmcb_dom *d, char *body)
{
	struct vmc_addr owned[VMC_MAX_ADDRS];
	unsigned int i, n = 0;
	char *p = body;

	*p = '\0';
	if (!d->on)
		return;
	if (!d->nr_macs) {
		d->why = "no vif";
		return;
	}
	for (i = 0; i < d->nr_macs; i++) {
		if (i)
			*p++ = ',';
		p = vmc_xs_put_hex(p, d->macs[i], ETH_ALEN);
	}
	*p = '\0';
	for (i = 0; i < d->nr_addrs; i++) {
		if (vmcb_owns(d, i))
			owned[n++] = d->addrs[i];
		else
			vmcb_conflicts++;
	}
	if (n) {
		*p++ = ' ';
		vmc_xs_format_addrs(p, owned, n);
	}
}

static void vmcb_xs_write(const char *dir, const char *node, const char *val)
{
	int err = xenbus_write(XBT_NIL, dir, node, val);

	vmcb_xs_writes++;
	if (err)
		pr_warn_ratelimited("write %s/%s failed: %d\n", dir, node, err);
}

static void vmcb_xs_rm(const char *dir, const char *node)
{
	int err = xenbus_rm(XBT_NIL, dir, node);

	vmcb_xs_writes++;
	if (err && err != -ENOENT)
		pr_warn_ratelimited("rm %s/%s failed: %d\n", dir, node, err);
}

/*
 * Tell @v which of its incarnations its table is for (before any entry).
 * If this fails, no entry may follow: a frontend reads a table without
 * xenvmc/inc as its own (a Dom0 without incarnations writes none).
 */
static int vmcb_put_inc(struct vmcb_dom *v)
{
	char dir[40], val[VMC_XS_INC_LEN + 1];
	int err;

	snprintf(dir, sizeof(dir), "/local/domain/%u/xenvmc", v->domid);
	vmc_xs_format_inc(val, v->inc);
	err = xenbus_write(XBT_NIL, dir, "inc", val);
	vmcb_xs_writes++;
	if (err)
		pr_warn_ratelimited("write %s/inc failed: %d\n", dir, err);
	return err;
}

/* Write @d's entry into @v's table, or remove it. */
static void vmcb_put_entry(struct vmcb_dom *v, struct vmcb_dom *d)
{
	char dir[48], node[12], *val;

	snprintf(dir, sizeof(dir), "/local/domain/%u/xenvmc/peers", v->domid);
	snprintf(node, sizeof(node), "%u", d->domid);
	if (!d->body[0]) {
		vmcb_xs_rm(dir, node);
		return;
	}
	val = kasprintf(GFP_KERNEL, "%u %s", d->gen, d->body);
	if (!val)
		return;
	vmcb_xs_write(dir, node, val);
	kfree(val);
}

static void vmcb_drop_relay(struct vmcb_dom *d, struct vmcb_relay *r,
			    bool rm)
{
	char dir[48], node[12];

	if (rm) {
		snprintf(dir, sizeof(dir), "/local/domain/%u/xenvmc/chan",
			 r->peer);
		snprintf(node, sizeof(node), "%u", d->domid);
		vmcb_xs_rm(dir, node);
	}
	list_del(&r->list);
	kfree(r);
}

/* Remove every relay from @d, and every relay to @d from the others. */
static void vmcb_drop_relays(struct vmcb_dom *d)
{
	struct vmcb_relay *r, *tmp;
	struct vmcb_dom *e;

	list_for_each_entry_safe(r, tmp, &d->relays, list)
		vmcb_drop_relay(d, r, r->val[0]);
	list_for_each_entry(e, &vmcb_doms, list)
		list_for_each_entry_safe(r, tmp, &e->relays, list)
			if (r->peer == d->domid)
				vmcb_drop_relay(e, r, false);
}

static struct vmcb_relay *vmcb_relay_find(struct vmcb_dom *d,
					  unsigned int peer)
{
	struct vmcb_relay *r;

	list_for_each_entry(r, &d->relays, list)
		if (r->peer == peer)
			return r;
	return NULL;
}

/*
 * @d's frontend is a new incarnation.  An offer a peer made to it earlier
 * was made to the incarnation that left, and the peer may not know yet
 * (its BYE unread, or none sent: a full control ring drops it): relayed
 * to the newcomer, it would connect it to pages being torn down, and the
 * two sides would start over in turn.  So from each peer, relay nothing
 * to @d until that peer writes its offer again: that event is handled
 * after this one, so the value is newer than the incarnation.  Only for
 * peers with incarnations themselves: their frontend writes its offer
 * again on @d's gen change (vmc_front.c, vmcf_sync_peers()); an older one
 * would not, and keeps today's relaying.
 */
static void vmcb_withhold(struct vmcb_dom *d)
{
	char dir[48], node[12];
	struct vmcb_relay *r;
	struct vmcb_dom *e;

	list_for_each_entry(e, &vmcb_doms, list) {
		if (e == d || !e->inc)
			continue;
		r = vmcb_relay_find(e, d->domid);
		if (!r) {
			/* Without memory, relayed as before the change. */
			r = kzalloc(sizeof(*r), GFP_KERNEL);
			if (!r)
				continue;
			r->peer = d->domid;
			list_add(&r->list, &e->relays);
		} else if (!r->withheld && r->val[0]) {
			snprintf(dir, sizeof(dir), "/local/domain/%u/xenvmc/chan",
				 d->domid);
			snprintf(node, sizeof(node), "%u", e->domid);
			vmcb_xs_rm(dir, node);
		}
		r->withheld = true;
		r->val[0] = '\0';
	}
}

/*
 * The peer a chan/<P> node names: P in canonical decimal only.  kstrtouint()
 * also takes "05" and "+5": aliases of one peer, each of which would cost a
 * relay write into that peer's tree on every event of the writer.
 */
static bool vmcb_chan_peer(const char *name, unsigned int *peer)
{
	char canon[12];

	if (kstrtouint(name, 10, peer))
		return false;
	snprintf(canon, sizeof(canon), "%u", *peer);
	return !strcmp(canon, name);
}

/*
 * Relay @d's channel offers (data/xenvmc/chan/<P>) to each named peer P,
 * when both are ON; remove relays whose offer is gone.  A malformed offer
 * is dropped and counted.  @event: the node whose watch event this is
 * (NULL when it is not one of @d's), which alone releases a withheld one.
 */
static void vmcb_relay_chans(struct vmcb_dom *d, const char *event)
{
	struct vmcb_relay *r, *tmp;
	unsigned int i, n = 0, len, peer;
	char path[64], val[24], dir[48], node[12], full[96];
	struct vmcb_dom *p;
	char **names;
	u32 gref, port;
	bool keep;
	char *raw;
	int err;

	snprintf(path, sizeof(path), "%s/chan", d->path);
	names = d->body[0] ? xenbus_directory(XBT_NIL, path, "", &n) : NULL;
	if (IS_ERR(names)) {
		/*
		 * Only a missing directory means no offers: after any other
		 * error, pruning would withdraw every relay of @d and reset
		 * every channel it has.  The next event retries.
		 */
		if (PTR_ERR(names) != -ENOENT)
			return;
		names = NULL;
		n = 0;
	}
	/*
	 * Forget relays whose offer or peer is gone.  A withheld one stays
	 * while its peer is OFF (it is about to come on), and goes with the
	 * offer: whatever is offered after that is newer.
	 */
	list_for_each_entry_safe(r, tmp, &d->relays, list) {
		p = vmcb_find(r->peer);
		keep = p && (p->body[0] || r->withheld);
		for (i = 0; keep && i < n; i++)
			if (vmcb_chan_peer(names[i], &peer) && peer == r->peer)
				break;
		if (!keep || i == n)
			vmcb_drop_relay(d, r, r->val[0]);
	}
	for (i = 0; i < n; i++) {
		if (!vmcb_chan_peer(names[i], &peer) || peer == d->domid)
			goto bad;
		r = vmcb_relay_find(d, peer);
		if (r && r->withheld) {
			snprintf(full, sizeof(full), "%s/%s", path, names[i]);
			if (!event || strcmp(event, full))
				continue;
			r->withheld = false;
		}
		p = vmcb_find(peer);
		if (!p || !p->body[0])
			continue;	/* not (yet) a peer: relay later */
		raw = xenbus_read(XBT_NIL, path, names[i], &len);
		if (IS_ERR(raw))
			continue;
		err = vmc_xs_parse_chan(raw, len, &gref, &port);
		kfree(raw);
		if (err)
			goto bad;
		snprintf(val, sizeof(val), "%u %u", gref, port);
		if (!r) {
			r = kzalloc(sizeof(*r), GFP_KERNEL);
			if (!r)
				continue;
			r->peer = peer;
			list_add(&r->list, &d->relays);
		} else if (!strcmp(r->val, val)) {
			continue;
		}
		strscpy(r->val, val, sizeof(r->val));
		snprintf(dir, sizeof(dir), "/local/domain/%u/xenvmc/chan", peer);
		snprintf(node, sizeof(node), "%u", d->domid);
		vmcb_xs_write(dir, node, val);
		vmcb_relayed++;
		continue;
bad:
		vmcb_bad_chans++;
		pr_warn_ratelimited("domain %u: malformed channel offer %s refused\n",
				    d->domid, names[i]);
	}
	kfree(names);
}

/*
 * Bring every table up to date after claims changed.  Called with
 * vmcb_lock held, from the xenwatch thread.
 */
static void vmcb_publish(void)
{
	char body[VMC_XS_PEER_MAX + 1];
	struct vmcb_dom *d, *v;
	char dir[40];

	list_for_each_entry(d, &vmcb_doms, list) {
		vmcb_compose(d, body);
		d->changed = strcmp(body, d->body);
		if (d->changed) {
			strscpy(d->body, body, sizeof(d->body));
			d->gen++;
		}
	}
	list_for_each_entry(v, &vmcb_doms, list) {
		if (!v->body[0])
			continue;
		/* Unsynced, retried at the next publish. */
		if (!v->synced && v->inc && vmcb_put_inc(v))
			continue;
		list_for_each_entry(d, &vmcb_doms, list) {
			if (d == v)
				continue;
			if (!v->synced ? d->body[0] : d->changed)
				vmcb_put_entry(v, d);
		}
		v->synced = true;
	}
	/*
	 * Only then the offers of those that left: a peer sees one leave
	 * before its offer goes, and never mistakes that for a reload
	 * (vmc_front.c, vmcf_sync_chans()).
	 */
	list_for_each_entry(v, &vmcb_doms, list) {
		if (v->body[0])
			continue;
		if (v->synced || v->changed) {
			/* Wipe what it was told: it is no peer now. */
			snprintf(dir, sizeof(dir), "/local/domain/%u", v->domid);
			vmcb_xs_rm(dir, "xenvmc");
			vmcb_drop_relays(v);
		}
		v->synced = false;
	}
}

/*
 * Is this event the sign of a new incarnation of @d's frontend?  Only the
 * event of its inc node counts (see the table at the top): an earlier
 * event handled late reads the new value too, and what other DomUs wrote
 * before it would pass for newer.  The watch's first event only learns
 * the incarnation: nothing was told about @d before it.  When that event
 * could not read the node, the next one of @d's events stands in for it
 * (it is newer still).  @err, @inc: this event's vmcb_read_inc().
 */
static bool vmcb_reborn(struct vmcb_dom *d, const char *path, int err,
			u64 inc)
{
	bool first = !d->inc_read;
	char node[64];

	d->inc_read = true;
	snprintf(node, sizeof(node), "%s/inc", d->path);
	if (!first && !d->inc_retry && strcmp(path, node))
		return false;
	d->inc_retry = err == -EAGAIN;
	if (err || !inc || inc == d->inc)
		return false;
	d->inc = inc;
	return !first;
}

/*
 * @d came back with no event of ours seeing it gone (its data/xenvmc was
 * never removed): do what its leaving and coming back would have done, in
 * one publish.  Its table is wiped (rebuilt for the new incarnation by the
 * publish), the offers it made are withdrawn from its peers (a connected
 * peer sets its channel up again on that, vmc_front.c), and its entry gets
 * a new gen in every table (a closed or offered channel starts over on
 * that).  Its claims keep their age: passing through OFF would hand its
 * addresses to a later claimant for one publish, and that DomU's entry
 * would change twice in every table on each reload.  Cost: what a reload
 * Dom0 saw costs (about 3(N - 1) writes), nothing a DomU could not already
 * cause by rewriting its state node.
 */
static void vmcb_restart(struct vmcb_dom *d)
{
	char dir[40];

	vmcb_reloads_unseen++;
	snprintf(dir, sizeof(dir), "/local/domain/%u", d->domid);
	vmcb_xs_rm(dir, "xenvmc");
	vmcb_drop_relays(d);
	d->synced = false;
	d->body[0] = '\0';	/* the publish sees a change: gen++ */
}

/*
 * A DomU writes its own data/xenvmc nodes at any rate, and each write
 * queues a watch event in Dom0's kernel (the XSA-349 problem): at most
 * max_domains + 16 wait per DomU (one offer per peer, and its claim),
 * the rest are not queued.  Nothing is lost by it: every event re-reads
 * all of the DomU's nodes; only a withheld offer waits for an event of its
 * own node, and a DomU flooding its own nodes delays only its own.
 */
static bool vmcb_dom_will_handle(struct xenbus_watch *watch, const char *path,
				 const char *token)
{
	return READ_ONCE(watch->nr_pending) < max_domains + 16;
}

/* Watch on one DomU's data/xenvmc subtree. */
static void vmcb_dom_changed(struct xenbus_watch *watch, const char *path,
			     const char *token)
{
	struct vmcb_dom *d = container_of(watch, struct vmcb_dom, watch);
	struct vmcb_dom *e;
	bool was_peer, reborn;
	int inc_err;
	u64 inc;

	mutex_lock(&vmcb_lock);
	if (!vmcb_stopping) {
		was_peer = d->body[0];
		inc_err = vmcb_read_inc(d, &inc);
		reborn = vmcb_reborn(d, path, inc_err, inc);
		vmcb_read_claim(d, inc_err, inc);
		if (reborn) {
			if (was_peer && d->on) {
				vmcb_restart(d);
				was_peer = false;
			}
			vmcb_withhold(d);
		}
		vmcb_publish();
		if (was_peer == !!d->body[0]) {
			vmcb_relay_chans(d, path);
		} else {
			/* Offers to or from it may have waited on this. */
			list_for_each_entry(e, &vmcb_doms, list)
				vmcb_relay_chans(e, e == d ? path : NULL);
		}
	}
	mutex_unlock(&vmcb_lock);
}

static void vmcb_dom_free(struct vmcb_dom *d)
{
	if (d->watching)
		unregister_xenbus_watch(&d->watch);
	kfree(d->watch.node);
	kfree(d);
}

/* Add a DomU to the table and start watching it; lock held. */
static void vmcb_dom_add(unsigned int domid)
{
	struct vmcb_dom *d;
	int err;

	if (vmcb_nr_doms >= max_domains) {
		pr_warn_ratelimited("domain %u not tracked: max_domains=%u reached\n",
				    domid, max_domains);
		return;
	}
	d = kzalloc(sizeof(*d), GFP_KERNEL);
	if (!d)
		return;
	d->domid = domid;
	d->why = "frontend not loaded";
	INIT_LIST_HEAD(&d->relays);
	snprintf(d->path, sizeof(d->path), "/local/domain/%u/data/xenvmc",
		 domid);
	d->watch.node = kstrdup(d->path, GFP_KERNEL);
	d->watch.will_handle = vmcb_dom_will_handle;
	d->watch.callback = vmcb_dom_changed;
	d->seen = true;
	list_add_tail(&d->list, &vmcb_doms);
	vmcb_nr_doms++;
	/* The watch fires once at registration: that reads its state. */
	err = d->watch.node ? register_xenbus_watch(&d->watch) : -ENOMEM;
	if (err)
		pr_warn_ratelimited("cannot watch domain %u: %d\n", domid, err);
	else
		d->watching = true;
}

/*
 * Is /local/domain/<domid> a domain's, or only what our writes left?  A
 * write into the table of a domain the toolstack has just removed (an
 * event handled late) makes XenStore create its directory again, holding
 * nothing but xenvmc/: that domain is gone all the same.
 */
static bool vmcb_is_domain(unsigned int domid)
{
	unsigned int i, n = 0;
	bool dom = false;
	char dir[24];
	char **names;

	snprintf(dir, sizeof(dir), "/local/domain/%u", domid);
	names = xenbus_directory(XBT_NIL, dir, "", &n);
	if (IS_ERR(names))
		return PTR_ERR(names) != -ENOENT;	/* unsure: keep it */
	for (i = 0; i < n && !dom; i++)
		dom = strcmp(names[i], "xenvmc");
	kfree(names);
	return dom;
}

/* Domains came or went: diff /local/domain against the table. */
static void vmcb_rescan(struct xenbus_watch *watch, const char *path,
			const char *token)
{
	struct vmcb_dom *d, *tmp;
	unsigned int i, n = 0, domid;
	bool gone = false;
	char name[12];
	char **dir;

	dir = xenbus_directory(XBT_NIL, "/local/domain", "", &n);
	if (IS_ERR(dir))
		return;
	mutex_lock(&vmcb_lock);
	if (vmcb_stopping)
		goto out;
	list_for_each_entry(d, &vmcb_doms, list)
		d->seen = false;
	for (i = 0; i < n; i++) {
		if (kstrtouint(dir[i], 10, &domid) || !domid ||
		    domid >= DOMID_FIRST_RESERVED || !vmcb_is_domain(domid))
			continue;
		d = vmcb_find(domid);
		if (d)
			d->seen = true;
		else
			vmcb_dom_add(domid);
	}
	list_for_each_entry_safe(d, tmp, &vmcb_doms, list) {
		if (d->seen)
			continue;
		d->on = false;
		d->nr_addrs = 0;
		d->why = "gone";
		gone = true;
	}
	if (gone) {
		vmcb_publish();		/* removes them from every table */
		list_for_each_entry_safe(d, tmp, &vmcb_doms, list) {
			if (d->seen)
				continue;
			vmcb_drop_relays(d);
			/* What our own late writes left (vmcb_is_domain()). */
			snprintf(name, sizeof(name), "%u", d->domid);
			vmcb_xs_rm("/local/domain", name);
			list_del(&d->list);
			vmcb_nr_doms--;
			vmcb_dom_free(d);
		}
	}
out:
	mutex_unlock(&vmcb_lock);
	kfree(dir);
}

static struct xenbus_watch vmcb_intro_watch = {
	.node = "@introduceDomain",
	.callback = vmcb_rescan,
};

static struct xenbus_watch vmcb_release_watch = {
	.node = "@releaseDomain",
	.callback = vmcb_rescan,
};

static int vmcb_domains_show(struct seq_file *m, void *v)
{
	struct vmcb_dom *d;
	unsigned int i;

	/* Stable columns, documented in the README. */
	seq_puts(m, "domid state gen macs addresses inc why\n");
	mutex_lock(&vmcb_lock);
	list_for_each_entry(d, &vmcb_doms, list) {
		seq_printf(m, "%u %s %u ", d->domid,
			   d->body[0] ? "peer" : "off", d->gen);
		for (i = 0; i < d->nr_macs; i++)
			seq_printf(m, "%s%pM", i ? "," : "", d->macs[i]);
		if (!d->nr_macs)
			seq_putc(m, '-');
		seq_putc(m, ' ');
		for (i = 0; i < d->nr_addrs; i++) {
			if (d->addrs[i].family == VMC_AF_INET)
				seq_printf(m, "%s%pI4", i ? "," : "",
					   d->addrs[i].addr);
			else
				seq_printf(m, "%s%pI6c", i ? "," : "",
					   d->addrs[i].addr);
			if (!vmcb_owns(d, i))
				seq_puts(m, "(conflict)");
		}
		if (!d->nr_addrs)
			seq_putc(m, '-');
		if (d->inc)
			seq_printf(m, " %016llx", d->inc);
		else
			seq_puts(m, " -");
		seq_printf(m, " %s\n", d->body[0] ? "-" :
			   d->why ? d->why : "unknown");
	}
	mutex_unlock(&vmcb_lock);
	return 0;
}

static int vmcb_stats_show(struct seq_file *m, void *v)
{
	mutex_lock(&vmcb_lock);
	seq_printf(m, "version %s\n", VMCB_VERSION);
	seq_printf(m, "proto_version %u\n", VMC_PROTO_VERSION);
	seq_printf(m, "xenstore_watching %d\n", vmcb_watching);
	seq_printf(m, "domains %u\n", vmcb_nr_doms);
	seq_printf(m, "xenstore_writes %lu\n", vmcb_xs_writes);
	seq_printf(m, "bad_claims %lu\n", vmcb_bad_claims);
	seq_printf(m, "address_conflicts %lu\n", vmcb_conflicts);
	seq_printf(m, "bad_channel_offers %lu\n", vmcb_bad_chans);
	seq_printf(m, "channel_offers_relayed %lu\n", vmcb_relayed);
	seq_printf(m, "reloads_unseen %lu\n", vmcb_reloads_unseen);
	mutex_unlock(&vmcb_lock);
	return 0;
}

static int vmcb_xenstore_ready(struct notifier_block *nb, unsigned long ev,
			       void *data)
{
	int err;

	err = register_xenbus_watch(&vmcb_intro_watch);
	if (err) {
		pr_err("cannot watch @introduceDomain: %d\n", err);
		return NOTIFY_DONE;
	}
	err = register_xenbus_watch(&vmcb_release_watch);
	if (err) {
		pr_err("cannot watch @releaseDomain: %d\n", err);
		unregister_xenbus_watch(&vmcb_intro_watch);
		return NOTIFY_DONE;
	}
	WRITE_ONCE(vmcb_watching, true);
	pr_info("watching XenStore for domains\n");
	return NOTIFY_DONE;
}

static struct notifier_block vmcb_xenstore_nb = {
	.notifier_call = vmcb_xenstore_ready,
};

static int __init vmcb_init(void)
{
	if (!xen_initial_domain()) {
		pr_err("not loaded: vmc_back runs in Xen Dom0 only (this is %s)\n",
		       xen_domain() ? "a DomU: load vmc_front there" :
				      "not a Xen domain");
		return -ENODEV;
	}
	if (!max_domains || max_domains > VMCB_MAX_DOMS) {
		pr_err("not loaded: max_domains=%u is not in 1..%u\n",
		       max_domains, VMCB_MAX_DOMS);
		return -EINVAL;
	}

	vmcb_proc_dir = proc_mkdir("xenvmc", NULL);
	if (!vmcb_proc_dir) {
		pr_err("not loaded: cannot create /proc/xenvmc\n");
		return -ENOMEM;
	}
	if (!proc_create_single("domains", 0444, vmcb_proc_dir,
				vmcb_domains_show) ||
	    !proc_create_single("stats", 0444, vmcb_proc_dir,
				vmcb_stats_show)) {
		pr_err("not loaded: cannot create /proc/xenvmc entries\n");
		goto err_remove_proc;
	}

	/* Calls back at once when XenStore is already up. */
	register_xenstore_notifier(&vmcb_xenstore_nb);
	pr_info("loaded, version %s, protocol %u\n", VMCB_VERSION,
		VMC_PROTO_VERSION);
	return 0;

err_remove_proc:
	proc_remove(vmcb_proc_dir);
	return -ENOMEM;
}

/*
 * Unload: stop watching, then take back every table and relay, so each
 * frontend sees its peers vanish and falls back to the network.  A later
 * load rebuilds everything from the frontends' own nodes.
 */
static void __exit vmcb_exit(void)
{
	struct vmcb_dom *d, *tmp;
	char dir[40];

	unregister_xenstore_notifier(&vmcb_xenstore_nb);
	if (vmcb_watching) {
		unregister_xenbus_watch(&vmcb_release_watch);
		unregister_xenbus_watch(&vmcb_intro_watch);
	}
	mutex_lock(&vmcb_lock);
	vmcb_stopping = true;
	mutex_unlock(&vmcb_lock);
	/* No callback runs past its unregister; vmcb_stopping covers the rest. */
	list_for_each_entry_safe(d, tmp, &vmcb_doms, list) {
		if (d->watching)
			unregister_xenbus_watch(&d->watch);
		d->watching = false;
		if (d->synced || d->body[0]) {
			snprintf(dir, sizeof(dir), "/local/domain/%u", d->domid);
			vmcb_xs_rm(dir, "xenvmc");
		}
		vmcb_drop_relays(d);
		list_del(&d->list);
		vmcb_dom_free(d);
	}
	proc_remove(vmcb_proc_dir);
	pr_info("unloaded\n");
}

module_init(vmcb_init);
module_exit(vmcb_exit);

MODULE_DESCRIPTION("XenVMC Dom0 backend: co-resident DomU membership");
MODULE_AUTHOR("XenVMC developers");
MODULE_LICENSE("GPL");
MODULE_VERSION(VMCB_VERSION);
