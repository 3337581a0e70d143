// SPDX-License-Identifier: GPL-2.0
/*
 * XenVMC DomU module: moves TCP and UDP traffic to a co-resident DomU
 * through shared memory (grant tables + event channels).
 *
 * What runs today: the membership and control-channel layer.
 *   - This DomU's addresses are claimed under its own XenStore data/xenvmc
 *     node (the only place a DomU can write); Dom0 (vmc_back) decides who
 *     owns what and writes the peer table into xenvmc/peers, where only Dom0
 *     can write (vmc_proto.h documents the nodes).
 *   - For each peer in that table, one control channel: each side grants
 *     one page holding its outgoing control ring (sender-owned), the lower
 *     domid allocates the interdomain event channel, the higher binds it;
 *     grant refs and ports travel through Dom0's relay.  A HELLO on the ring
 *     proves the path end to end.
 *   - The channel is torn down (irq unbound, event channel closed, mapping
 *     removed, grant ended) when the peer leaves the table, when it breaks
 *     the protocol, and on unload.
 *
 * Contexts: XenStore watches run in the xenwatch thread and take vmcf_lock;
 * the event handler runs in hard irq and only queues the peer's work; the
 * work reads the incoming ring and ends with xen_irq_lateeoi(), so a peer
 * that floods events is throttled by Xen's lateeoi logic.
 *
 * Channel states (struct vmcf_peer, one per peer Dom0 lists):
 *
 *   state    | event                               | action                       | next
 *   ---------+-------------------------------------+------------------------------+---------
 *   -        | peer listed in xenvmc/peers         | grant our control page;      | OFFERED
 *            |                                     | lower domid: alloc unbound   |
 *            |                                     | port, bind irq; publish      |
 *            |                                     | data/xenvmc/chan/<P>         |
 *   OFFERED  | xenvmc/chan/<P> relayed, valid      | map its page; higher domid:  | CONNECTED
 *            |                                     | bind its port; send HELLO    |
 *   CONNECTED| HELLO from P naming P's domid       | -                            | UP
 *   CONN/UP  | bad index, bad message, wrong HELLO | count; tear down channel     | BROKEN
 *   BROKEN   | P's entry changes (gen) or relisted | set up again                 | OFFERED
 *   any      | BYE from P                          | tear down channel            | CLOSED
 *   CLOSED   | P's chan value changes              | set up again                 | OFFERED
 *   any      | P leaves the table, or unload       | tear down, forget P          | -
 */
#define pr_fmt(fmt) "xenvmc-front: " fmt

#include <linux/module.h>
#include <linux/kernel.h>
#include <linux/slab.h>
#include <linux/gfp.h>
#include <linux/list.h>
#include <linux/mutex.h>
#include <linux/spinlock.h>
#include <linux/workqueue.h>
#include <linux/interrupt.h>
#include <linux/proc_fs.h>
#include <linux/seq_file.h>
#include <linux/random.h>
#include <linux/netdevice.h>
#include <linux/inetdevice.h>
#include <linux/rtnetlink.h>
#include <net/addrconf.h>
#include <net/if_inet6.h>
#include <xen/xen.h>
#include <xen/xenbus.h>
#include <xen/events.h>
#include <xen/grant_table.h>
#include <xen/page.h>
#include <xen/interface/event_channel.h>
#include <asm/xen/hypercall.h>

#include "vmc_ring.h"
#include "vmc_proto.h"

#define VMCF_VERSION "0.2"

enum vmcf_chan_state {
	VMCF_OFFERED,
	VMCF_CONNECTED,
	VMCF_UP,
	VMCF_BROKEN,
	VMCF_CLOSED,
};

static const char * const vmcf_state_name[] = {
	[VMCF_OFFERED] = "offered",
	[VMCF_CONNECTED] = "connected",
	[VMCF_UP] = "up",
	[VMCF_BROKEN] = "broken",
	[VMCF_CLOSED] = "closed",
};

struct vmcf_peer {
	struct list_head list;
	unsigned int domid;
	struct vmc_peer_entry entry;	/* from Dom0, parsed */
	bool seen;			/* mark for the table sync */
	enum vmcf_chan_state state;
	const char *why;		/* why the channel is not up */

	/* Our side: the page we grant, holding our outgoing control ring. */
	void *out_page;
	grant_ref_t out_gref;
	bool granted;
	struct vmc_ring out;
	spinlock_t tx_lock;		/* serialises producers of @out */

	/* The peer's side, mapped. */
	struct page *in_page;
	grant_handle_t in_handle;
	bool mapped;
	struct vmc_ring in;
	u32 peer_gref, peer_port;	/* as relayed, to notice a change */

	/* One interdomain event channel per pair. */
	evtchn_port_t port;
	int irq;			/* < 0: not bound */
	bool stopping;			/* handler must only EOI */
	unsigned long eoi_pending;	/* bit 0: an event awaits its EOI */
	struct work_struct work;

	unsigned long msgs_in, msgs_out, bad_msgs;
};

static DEFINE_MUTEX(vmcf_lock);		/* the peer list; xenwatch, /proc */
static LIST_HEAD(vmcf_peers);
static bool vmcf_stopping;		/* unload under way; under vmcf_lock */
static void vmcf_reap(struct work_struct *work);
static DECLARE_WORK(vmcf_reap_work, vmcf_reap);
static unsigned int vmcf_domid;
static struct proc_dir_entry *vmcf_proc_dir;
static struct workqueue_struct *vmcf_wq;
static bool vmcf_published;
static char vmcf_base[40];		/* /local/domain/<self> */
static char vmcf_data[64];		/* .../data/xenvmc */
static char vmcf_addrs_val[VMC_XS_ADDRS_MAX + 1];

/* Resource counters, expected back at 0 after every teardown. */
static atomic_t vmcf_grants = ATOMIC_INIT(0);
static atomic_t vmcf_maps = ATOMIC_INIT(0);
static atomic_t vmcf_evtchns = ATOMIC_INIT(0);
static atomic_long_t vmcf_broken_channels = ATOMIC_LONG_INIT(0);

/* ---- sending ---- */

static void vmcf_notify(struct vmcf_peer *p)
{
	if (p->irq >= 0)
		notify_remote_via_irq(p->irq);
}

/* Queue one control message; false when the ring is full or broken. */
static bool vmcf_send(struct vmcf_peer *p, const void *msg)
{
	const struct vmc_msg_hdr *h = msg;
	bool notify = false;
	int err;

	spin_lock_bh(&p->tx_lock);
	err = vmc_ring_msg_write(&p->out, msg, le16_to_cpu(h->len), &notify);
	spin_unlock_bh(&p->tx_lock);
	if (err) {
		pr_warn_ratelimited("peer %u: control message %u not sent: %d\n",
				    p->domid, h->type, err);
		return false;
	}
	p->msgs_out++;
	if (notify)
		vmcf_notify(p);
	return true;
}

static void vmcf_send_hello(struct vmcf_peer *p)
{
	struct vmc_msg_hello m;

	vmc_msg_init(&m, VMC_MSG_HELLO);
	m.domid = cpu_to_le32(vmcf_domid);
	m.features = cpu_to_le32(VMC_FEAT_ALL);
	vmcf_send(p, &m);
}

/* ---- receiving ---- */

/* The peer broke the protocol: latch; the xenwatch side tears down. */
static void vmcf_peer_broken(struct vmcf_peer *p, const char *why)
{
	p->bad_msgs++;
	atomic_long_inc(&vmcf_broken_channels);
	pr_warn_ratelimited("peer %u: %s: channel closed\n", p->domid, why);
	p->why = why;
	WRITE_ONCE(p->state, VMCF_BROKEN);
	schedule_work(&vmcf_reap_work);
}

static void vmcf_handle(struct vmcf_peer *p, const void *buf, u32 len)
{
	const struct vmc_msg_hdr *h = buf;
	const struct vmc_msg_hello *hello = buf;

	if (vmc_msg_check(buf, len)) {
		vmcf_peer_broken(p, "invalid control message");
		return;
	}
	p->msgs_in++;
	switch (h->type) {
	case VMC_MSG_HELLO:
		if (le32_to_cpu(hello->domid) != p->domid) {
			vmcf_peer_broken(p, "HELLO names another domain");
			return;
		}
		if (p->state == VMCF_CONNECTED) {
			WRITE_ONCE(p->state, VMCF_UP);
			p->why = NULL;
			pr_info("peer %u: channel up\n", p->domid);
		}
		break;
	case VMC_MSG_BYE:
		p->why = "peer said goodbye";
		WRITE_ONCE(p->state, VMCF_CLOSED);
		schedule_work(&vmcf_reap_work);
		break;
	default:
		/* Connection messages come with the data path. */
		break;
	}
}

/*
 * Read every message the peer produced.  Runs in the peer's work item,
 * never concurrently with itself; ends with the late EOI that unmasks the
 * event channel.
 */
static void vmcf_work(struct work_struct *work)
{
	struct vmcf_peer *p = container_of(work, struct vmcf_peer, work);
	u8 buf[VMC_MSG_MAX] __aligned(8);
	unsigned int eoi = XEN_EOI_FLAG_SPURIOUS;
	bool notify = false;
	long len;

	while (READ_ONCE(p->state) == VMCF_CONNECTED ||
	       READ_ONCE(p->state) == VMCF_UP) {
		len = vmc_ring_msg_peek(&p->in, VMC_MSG_MAX);
		if (len == -EAGAIN) {
			/* Ask for an event, then look once more. */
			len = vmc_ring_cons_wait(&p->in);
			if (len == 0)
				break;
			continue;
		}
		if (len < 0) {
			vmcf_peer_broken(p, "corrupt control ring");
			break;
		}
		notify |= vmc_ring_msg_read(&p->in, buf, len);
		eoi = 0;
		vmcf_handle(p, buf, len);
	}
	if (notify)
		vmcf_notify(p);
	/* Unmask only an event that was delivered; runs also unprompted. */
	if (test_and_clear_bit(0, &p->eoi_pending))
		xen_irq_lateeoi(p->irq, eoi);
}

/*
 * Hard irq: hand the event to the work item, which EOIs it.  If the work
 * is already queued and not yet running, that run sees eoi_pending; if it
 * is running, queue_work() queues it again.
 */
static irqreturn_t vmcf_interrupt(int irq, void *dev_id)
{
	struct vmcf_peer *p = dev_id;

	if (READ_ONCE(p->stopping)) {
		xen_irq_lateeoi(irq, XEN_EOI_FLAG_SPURIOUS);
		return IRQ_HANDLED;
	}
	set_bit(0, &p->eoi_pending);
	queue_work(vmcf_wq, &p->work);
	return IRQ_HANDLED;
}

/* ---- channel set-up and teardown (xenwatch thread, vmcf_lock held) ---- */

static int vmcf_bind_irq(struct vmcf_peer *p, evtchn_port_t port)
{
	struct evtchn_close close = { .port = port };
	int irq;

	irq = bind_evtchn_to_irqhandler_lateeoi(port, vmcf_interrupt, 0,
						"xenvmc", p);
	if (irq < 0) {
		HYPERVISOR_event_channel_op(EVTCHNOP_close, &close);
		return irq;
	}
	p->port = port;
	p->irq = irq;
	atomic_inc(&vmcf_evtchns);
	return 0;
}

static void vmcf_publish_chan(struct vmcf_peer *p)
{
	char node[24];
	int err;

	snprintf(node, sizeof(node), "chan/%u", p->domid);
	err = xenbus_printf(XBT_NIL, vmcf_data, node, "%u %u", p->out_gref,
			    p->domid > vmcf_domid ? p->port : 0);
	if (err)
		pr_warn_ratelimited("peer %u: cannot publish channel: %d\n",
				    p->domid, err);
}

/* Undo everything vmcf_chan_open/connect did, in reverse order. */
static void vmcf_chan_close(struct vmcf_peer *p)
{
	struct gnttab_unmap_grant_ref unmap;
	char node[24];

	if (p->irq >= 0) {
		WRITE_ONCE(p->stopping, true);
		disable_irq(p->irq);	/* waits for a running handler */
	}
	cancel_work_sync(&p->work);	/* its EOI still finds the irq */
	clear_bit(0, &p->eoi_pending);
	if (p->irq >= 0) {
		unbind_from_irqhandler(p->irq, p);	/* closes the port */
		p->irq = -1;
		atomic_dec(&vmcf_evtchns);
	}
	if (p->mapped) {
		gnttab_set_unmap_op(&unmap,
				    (unsigned long)pfn_to_kaddr(page_to_pfn(p->in_page)),
				    GNTMAP_host_map, p->in_handle);
		if (gnttab_unmap_refs(&unmap, NULL, &p->in_page, 1) ||
		    unmap.status != GNTST_okay)
			pr_warn_ratelimited("peer %u: unmap failed: %d\n",
					    p->domid, unmap.status);
		p->mapped = false;
		atomic_dec(&vmcf_maps);
	}
	if (p->in_page) {
		gnttab_free_pages(1, &p->in_page);
		p->in_page = NULL;
	}
	if (p->granted) {
		/*
		 * Takes over the page: freed once the peer has unmapped it
		 * (XSA-396), so a peer still mapping it never sees it reused.
		 */
		gnttab_end_foreign_access(p->out_gref, virt_to_page(p->out_page));
		p->granted = false;
		p->out_page = NULL;
		atomic_dec(&vmcf_grants);
		snprintf(node, sizeof(node), "chan/%u", p->domid);
		xenbus_rm(XBT_NIL, vmcf_data, node);
	}
	if (p->out_page) {
		free_page((unsigned long)p->out_page);
		p->out_page = NULL;
	}
	p->stopping = false;
	p->peer_gref = 0;
	p->peer_port = 0;
}

/* Grant our page and, as the lower domid, allocate the event channel. */
static int vmcf_chan_open(struct vmcf_peer *p)
{
	struct evtchn_alloc_unbound alloc = {
		.dom = DOMID_SELF,
		.remote_dom = p->domid,
	};
	int err;

	p->out_page = (void *)get_zeroed_page(GFP_KERNEL);
	if (!p->out_page)
		return -ENOMEM;
	err = vmc_ring_init(&p->out, p->out_page,
			    p->out_page + VMC_CTRL_DATA_OFF,
			    VMC_CTRL_DATA_SIZE, true);
	if (err)
		goto err_close;
	err = gnttab_grant_foreign_access(p->domid,
					  xen_page_to_gfn(virt_to_page(p->out_page)),
					  0);
	if (err < 0)
		goto err_close;
	p->out_gref = err;
	p->granted = true;
	atomic_inc(&vmcf_grants);

	if (p->domid > vmcf_domid) {
		err = HYPERVISOR_event_channel_op(EVTCHNOP_alloc_unbound,
						  &alloc);
		if (err)
			goto err_close;
		err = vmcf_bind_irq(p, alloc.port);
		if (err)
			goto err_close;
	}
	/* HELLO waits in our ring until the peer has mapped it. */
	vmcf_send_hello(p);
	vmcf_publish_chan(p);
	p->state = VMCF_OFFERED;
	p->why = "waiting for the peer's offer";
	return 0;

err_close:
	vmcf_chan_close(p);
	return err;
}

/* The peer's offer arrived: map its page; as the higher domid, bind. */
static int vmcf_chan_connect(struct vmcf_peer *p, u32 gref, u32 port)
{
	struct gnttab_map_grant_ref map;
	struct evtchn_bind_interdomain bind = {
		.remote_dom = p->domid,
		.remote_port = port,
	};
	void *va;
	int err;

	if (p->domid < vmcf_domid) {
		if (!port)
			return -EINVAL;	/* the lower domid must name a port */
		err = HYPERVISOR_event_channel_op(EVTCHNOP_bind_interdomain,
						  &bind);
		if (err)
			return err;
		err = vmcf_bind_irq(p, bind.local_port);
		if (err)
			return err;
	}

	err = gnttab_alloc_pages(1, &p->in_page);
	if (err) {
		p->in_page = NULL;
		return err;
	}
	va = pfn_to_kaddr(page_to_pfn(p->in_page));
	gnttab_set_map_op(&map, (unsigned long)va, GNTMAP_host_map, gref,
			  p->domid);
	err = gnttab_map_refs(&map, NULL, &p->in_page, 1);
	if (err || map.status != GNTST_okay) {
		pr_warn_ratelimited("peer %u: cannot map grant %u: %d/%d\n",
				    p->domid, gref, err, map.status);
		return -EIO;
	}
	p->in_handle = map.handle;
	p->mapped = true;
	atomic_inc(&vmcf_maps);
	err = vmc_ring_init(&p->in, va, va + VMC_CTRL_DATA_OFF,
			    VMC_CTRL_DATA_SIZE, false);
	if (err)
		return err;
	p->peer_gref = gref;
	p->peer_port = port;
	p->why = "waiting for HELLO";
	WRITE_ONCE(p->state, VMCF_CONNECTED);
	/* Read what is already there, and kick the peer once. */
	queue_work(vmcf_wq, &p->work);
	vmcf_notify(p);
	return 0;
}

/* ---- the peer table (xenwatch thread) ---- */

static struct vmcf_peer *vmcf_find(unsigned int domid)
{
	struct vmcf_peer *p;

	list_for_each_entry(p, &vmcf_peers, list)
		if (p->domid == domid)
			return p;
	return NULL;
}

static void vmcf_peer_free(struct vmcf_peer *p)
{
	vmcf_chan_close(p);
	list_del(&p->list);
	kfree(p);
}

static struct vmcf_peer *vmcf_peer_new(unsigned int domid)
{
	struct vmcf_peer *p = kzalloc(sizeof(*p), GFP_KERNEL);

	if (!p)
		return NULL;
	p->domid = domid;
	p->irq = -1;
	p->state = VMCF_CLOSED;
	p->why = "new";
	spin_lock_init(&p->tx_lock);
	INIT_WORK(&p->work, vmcf_work);
	list_add_tail(&p->list, &vmcf_peers);
	return p;
}

/* (Re)open the channel to @p; a failure leaves it CLOSED with a reason. */
static void vmcf_peer_open(struct vmcf_peer *p)
{
	int err;

	vmcf_chan_close(p);
	err = vmcf_chan_open(p);
	if (err) {
		p->state = VMCF_CLOSED;
		p->why = "channel set-up failed";
		pr_warn_ratelimited("peer %u: channel set-up failed: %d\n",
				    p->domid, err);
	}
}

/* Bring the peer list in line with xenvmc/peers. */
static void vmcf_sync_peers(void)
{
	struct vmcf_peer *p, *tmp;
	struct vmc_peer_entry e;
	unsigned int i, n = 0, domid, len;
	char dir[64];
	char **names;
	char *val;
	bool relist;

	snprintf(dir, sizeof(dir), "%s/xenvmc/peers", vmcf_base);
	names = xenbus_directory(XBT_NIL, dir, "", &n);
	if (IS_ERR(names)) {
		names = NULL;
		n = 0;
	}
	list_for_each_entry(p, &vmcf_peers, list)
		p->seen = false;
	for (i = 0; i < n; i++) {
		if (kstrtouint(names[i], 10, &domid) || domid == vmcf_domid ||
		    domid >= DOMID_FIRST_RESERVED)
			continue;
		val = xenbus_read(XBT_NIL, dir, names[i], &len);
		if (IS_ERR(val))
			continue;
		if (vmc_xs_parse_peer(val, len, &e)) {
			pr_warn_ratelimited("peer %u: unreadable entry from Dom0\n",
					    domid);
			kfree(val);
			continue;
		}
		kfree(val);
		p = vmcf_find(domid);
		relist = !p || p->entry.gen != e.gen;
		if (!p)
			p = vmcf_peer_new(domid);
		if (!p)
			continue;
		p->seen = true;
		p->entry = e;
		/* A closed or broken channel gets a new chance when new. */
		if (relist && (p->state == VMCF_CLOSED ||
			       p->state == VMCF_BROKEN))
			vmcf_peer_open(p);
	}
	kfree(names);
	list_for_each_entry_safe(p, tmp, &vmcf_peers, list)
		if (!p->seen)
			vmcf_peer_free(p);
}

/* Connect every offered channel whose peer's offer has been relayed. */
static void vmcf_sync_chans(void)
{
	struct vmcf_peer *p;
	char dir[64], node[12];
	unsigned int len;
	u32 gref, port;
	char *val;
	int err;

	snprintf(dir, sizeof(dir), "%s/xenvmc/chan", vmcf_base);
	list_for_each_entry(p, &vmcf_peers, list) {
		if (READ_ONCE(p->state) == VMCF_BROKEN ||
		    READ_ONCE(p->state) == VMCF_CLOSED) {
			vmcf_chan_close(p);	/* keeps its state and why */
			continue;
		}
		snprintf(node, sizeof(node), "%u", p->domid);
		val = xenbus_read(XBT_NIL, dir, node, &len);
		if (IS_ERR(val))
			continue;
		err = vmc_xs_parse_chan(val, len, &gref, &port);
		kfree(val);
		if (err)
			continue;
		if (p->state == VMCF_OFFERED) {
			err = vmcf_chan_connect(p, gref, port);
			if (err) {
				pr_warn_ratelimited("peer %u: connect failed: %d\n",
						    p->domid, err);
				vmcf_chan_close(p);
				p->state = VMCF_CLOSED;
				p->why = "connect failed";
			}
		} else if (gref != p->peer_gref || port != p->peer_port) {
			/* The peer started over (reloaded): so do we. */
			vmcf_peer_open(p);
		}
	}
}

static void vmcf_table_changed(struct xenbus_watch *watch, const char *path,
			       const char *token)
{
	mutex_lock(&vmcf_lock);
	if (!vmcf_stopping) {
		vmcf_sync_peers();
		vmcf_sync_chans();
	}
	mutex_unlock(&vmcf_lock);
}

static struct xenbus_watch vmcf_table_watch = {
	.callback = vmcf_table_changed,
};

/*
 * A channel a peer's work item found broken (or closed by BYE) is torn
 * down here, under vmcf_lock: the work item cannot cancel itself.
 */
static void vmcf_reap(struct work_struct *work)
{
	vmcf_table_changed(NULL, NULL, NULL);
}

/* ---- our own addresses: the claim Dom0 arbitrates ---- */

static bool vmcf_addr_usable(const struct vmc_addr *a)
{
	if (a->family == VMC_AF_INET)
		return a->addr[0] != 127 && a->addr[0] < 224 &&
		       !(a->addr[0] == 169 && a->addr[1] == 254) &&
		       (a->addr[0] | a->addr[1] | a->addr[2] | a->addr[3]);
	return a->addr[0] != 0xff &&
	       !(a->addr[0] == 0xfe && (a->addr[1] & 0xc0) == 0x80) &&
	       !ipv6_addr_any((const struct in6_addr *)a->addr) &&
	       !ipv6_addr_loopback((const struct in6_addr *)a->addr);
}

static unsigned int vmcf_collect_addrs(struct vmc_addr *out)
{
	struct net_device *dev;
	struct in_device *in4;
	const struct in_ifaddr *ifa;
	unsigned int n = 0;
#if IS_ENABLED(CONFIG_IPV6)
	struct inet6_dev *in6;
	struct inet6_ifaddr *ifp;
#endif

	rtnl_lock();
	for_each_netdev(&init_net, dev) {
		if (dev->flags & IFF_LOOPBACK)
			continue;
		in4 = __in_dev_get_rtnl(dev);
		if (in4) {
			in_dev_for_each_ifa_rtnl(ifa, in4) {
				if (n == VMC_MAX_ADDRS)
					break;
				memset(&out[n], 0, sizeof(out[n]));
				out[n].family = VMC_AF_INET;
				memcpy(out[n].addr, &ifa->ifa_local, 4);
				if (vmcf_addr_usable(&out[n]))
					n++;
			}
		}
#if IS_ENABLED(CONFIG_IPV6)
		in6 = __in6_dev_get(dev);
		if (!in6)
			continue;
		read_lock_bh(&in6->lock);
		list_for_each_entry(ifp, &in6->addr_list, if_list) {
			if (n == VMC_MAX_ADDRS)
				break;
			if (ifp->flags & IFA_F_TENTATIVE)
				continue;
			out[n].family = VMC_AF_INET6;
			memcpy(out[n].addr, &ifp->addr, 16);
			if (vmcf_addr_usable(&out[n]))
				n++;
		}
		read_unlock_bh(&in6->lock);
#endif
	}
	rtnl_unlock();
	return n;
}

/* Publish our addresses (when changed), then state "1". */
static void vmcf_publish_addrs(struct work_struct *work)
{
	struct vmc_addr addrs[VMC_MAX_ADDRS];
	char val[VMC_XS_ADDRS_MAX + 1];
	unsigned int n;
	int err;

	n = vmcf_collect_addrs(addrs);
	vmc_xs_format_addrs(val, addrs, n);
	mutex_lock(&vmcf_lock);
	if (!vmcf_published || strcmp(val, vmcf_addrs_val)) {
		err = xenbus_write(XBT_NIL, vmcf_data, "addrs", val);
		if (!err)
			err = xenbus_write(XBT_NIL, vmcf_data, "state", "1");
		if (err)
			pr_warn_ratelimited("cannot publish addresses: %d\n", err);
		else
			strscpy(vmcf_addrs_val, val, sizeof(vmcf_addrs_val));
		vmcf_published = !err;
	}
	mutex_unlock(&vmcf_lock);
}

static DECLARE_WORK(vmcf_addr_work, vmcf_publish_addrs);

static int vmcf_addr_event(struct notifier_block *nb, unsigned long ev,
			   void *ptr)
{
	/* inet6 notifiers run in atomic context: defer to a work item. */
	queue_work(vmcf_wq, &vmcf_addr_work);
	return NOTIFY_DONE;
}

static struct notifier_block vmcf_inet_nb = {
	.notifier_call = vmcf_addr_event,
};

static struct notifier_block vmcf_inet6_nb = {
	.notifier_call = vmcf_addr_event,
};

/* ---- /proc/xenvmc ---- */

static int vmcf_peers_show(struct seq_file *m, void *v)
{
	struct vmcf_peer *p;
	int i;

	/* Stable columns, documented in the README. */
	seq_puts(m, "domid gen channel addresses why\n");
	mutex_lock(&vmcf_lock);
	list_for_each_entry(p, &vmcf_peers, list) {
		seq_printf(m, "%u %u %s ", p->domid, p->entry.gen,
			   vmcf_state_name[READ_ONCE(p->state)]);
		for (i = 0; i < p->entry.nr_addrs; i++) {
			if (p->entry.addrs[i].family == VMC_AF_INET)
				seq_printf(m, "%s%pI4", i ? "," : "",
					   p->entry.addrs[i].addr);
			else
				seq_printf(m, "%s%pI6c", i ? "," : "",
					   p->entry.addrs[i].addr);
		}
		if (!p->entry.nr_addrs)
			seq_putc(m, '-');
		seq_printf(m, " %s\n", p->why ? p->why : "-");
	}
	mutex_unlock(&vmcf_lock);
	return 0;
}

static int vmcf_connections_show(struct seq_file *m, void *v)
{
	seq_puts(m, "proto local remote state tx_bytes rx_bytes\n");
	return 0;
}

static int vmcf_stats_show(struct seq_file *m, void *v)
{
	struct vmcf_peer *p;
	unsigned long in = 0, out = 0, bad = 0;

	mutex_lock(&vmcf_lock);
	list_for_each_entry(p, &vmcf_peers, list) {
		in += p->msgs_in;
		out += p->msgs_out;
		bad += p->bad_msgs;
	}
	mutex_unlock(&vmcf_lock);
	seq_printf(m, "version %s\n", VMCF_VERSION);
	seq_printf(m, "proto_version %u\n", VMC_PROTO_VERSION);
	seq_printf(m, "domid %u\n", vmcf_domid);
	seq_printf(m, "grants_in_use %d\n", atomic_read(&vmcf_grants));
	seq_printf(m, "mapped_pages %d\n", atomic_read(&vmcf_maps));
	seq_printf(m, "event_channels %d\n", atomic_read(&vmcf_evtchns));
	seq_printf(m, "control_msgs_in %lu\n", in);
	seq_printf(m, "control_msgs_out %lu\n", out);
	seq_printf(m, "bad_control_msgs %lu\n", bad);
	seq_printf(m, "broken_channels %ld\n",
		   atomic_long_read(&vmcf_broken_channels));
	return 0;
}

/*
 * vmcf_selftest - run the ring code as this kernel compiled it.
 *
 * The user-space tests cover the same header in depth; this proves the
 * kernel build (barrier and byte-order macros) behaves the same: a message
 * and a byte stream through a one-page ring, wrap-around included, and a
 * corrupt producer index rejected.
 */
static int vmcf_selftest(void)
{
	struct vmc_ring prod, cons;
	struct vmc_ring_hdr *hdr;
	u8 out[96], in[96];
	unsigned int i;
	bool notify;
	void *page;
	long n;
	int err = -EIO;

	page = (void *)get_zeroed_page(GFP_KERNEL);
	if (!page)
		return -ENOMEM;
	hdr = page;
	if (vmc_ring_init(&prod, hdr, page + VMC_CTRL_DATA_OFF,
			  VMC_CTRL_DATA_SIZE, true) ||
	    vmc_ring_init(&cons, hdr, page + VMC_CTRL_DATA_OFF,
			  VMC_CTRL_DATA_SIZE, false))
		goto out_free;

	get_random_bytes(out, sizeof(out));
	/* 100 round trips of 96 bytes wrap the 2 KiB ring several times. */
	for (i = 0; i < 100; i++) {
		if (vmc_ring_write(&prod, out, sizeof(out), &notify) !=
		    sizeof(out))
			goto out_free;
		if (vmc_ring_read(&cons, in, sizeof(in), &notify) !=
		    sizeof(in) || memcmp(in, out, sizeof(in)))
			goto out_free;
	}
	if (vmc_ring_msg_write(&prod, out, 40, &notify) ||
	    vmc_ring_msg_peek(&cons, sizeof(in)) != 40)
		goto out_free;
	vmc_ring_msg_read(&cons, in, 40);
	if (memcmp(in, out, 40))
		goto out_free;

	/* A producer index beyond the ring must be refused, and latch. */
	WRITE_ONCE(hdr->prod, cpu_to_le32(cons.pos + VMC_CTRL_DATA_SIZE + 1));
	n = vmc_ring_avail(&cons);
	if (n != -EPROTO || !cons.broken)
		goto out_free;
	err = 0;
out_free:
	free_page((unsigned long)page);
	return err;
}

static int __init vmcf_init(void)
{
	int err;

	if (!xen_domain() || xen_initial_domain()) {
		pr_err("not loaded: vmc_front runs in a Xen DomU only (this is %s)\n",
		       xen_domain() ? "Dom0: load vmc_back there" :
				      "not a Xen domain");
		return -ENODEV;
	}

	vmc_ring_layout_check();
	vmc_proto_layout_check();
	err = vmcf_selftest();
	if (err) {
		pr_err("not loaded: ring self-test failed (%d)\n", err);
		return err;
	}
	pr_info("ring self-test: pass\n");

	err = xenbus_scanf(XBT_NIL, "domid", "", "%u", &vmcf_domid);
	if (err != 1) {
		pr_err("not loaded: cannot read own domid from XenStore (%d)\n",
		       err);
		return err < 0 ? err : -EIO;
	}
	snprintf(vmcf_base, sizeof(vmcf_base), "/local/domain/%u", vmcf_domid);
	snprintf(vmcf_data, sizeof(vmcf_data), "%s/data/xenvmc", vmcf_base);

	vmcf_wq = alloc_workqueue("xenvmc", WQ_MEM_RECLAIM, 0);
	if (!vmcf_wq) {
		pr_err("not loaded: cannot allocate a workqueue\n");
		return -ENOMEM;
	}

	vmcf_proc_dir = proc_mkdir("xenvmc", NULL);
	if (!vmcf_proc_dir) {
		pr_err("not loaded: cannot create /proc/xenvmc\n");
		err = -ENOMEM;
		goto err_destroy_wq;
	}
	if (!proc_create_single("peers", 0444, vmcf_proc_dir,
				vmcf_peers_show) ||
	    !proc_create_single("connections", 0444, vmcf_proc_dir,
				vmcf_connections_show) ||
	    !proc_create_single("stats", 0444, vmcf_proc_dir,
				vmcf_stats_show)) {
		pr_err("not loaded: cannot create /proc/xenvmc entries\n");
		err = -ENOMEM;
		goto err_remove_proc;
	}

	vmcf_table_watch.node = kasprintf(GFP_KERNEL, "%s/xenvmc", vmcf_base);
	if (!vmcf_table_watch.node) {
		err = -ENOMEM;
		goto err_remove_proc;
	}
	/* Fires once now: picks up a table Dom0 already wrote. */
	err = register_xenbus_watch(&vmcf_table_watch);
	if (err) {
		pr_err("not loaded: cannot watch %s: %d\n",
		       vmcf_table_watch.node, err);
		goto err_free_node;
	}

	register_inetaddr_notifier(&vmcf_inet_nb);
#if IS_ENABLED(CONFIG_IPV6)
	register_inet6addr_notifier(&vmcf_inet6_nb);
#endif
	queue_work(vmcf_wq, &vmcf_addr_work);

	pr_info("loaded in domain %u, version %s, protocol %u\n", vmcf_domid,
		VMCF_VERSION, VMC_PROTO_VERSION);
	return 0;

err_free_node:
	kfree(vmcf_table_watch.node);
err_remove_proc:
	proc_remove(vmcf_proc_dir);
err_destroy_wq:
	destroy_workqueue(vmcf_wq);
	return err;
}

/*
 * Unload: say BYE on every channel, withdraw our claim (Dom0 then removes
 * us from every peer's table), and tear every channel down.
 */
static void __exit vmcf_exit(void)
{
	struct vmcf_peer *p, *tmp;
	struct vmc_msg_bye bye;

#if IS_ENABLED(CONFIG_IPV6)
	unregister_inet6addr_notifier(&vmcf_inet6_nb);
#endif
	unregister_inetaddr_notifier(&vmcf_inet_nb);
	unregister_xenbus_watch(&vmcf_table_watch);
	flush_workqueue(vmcf_wq);

	vmc_msg_init(&bye, VMC_MSG_BYE);
	bye.reason = cpu_to_le32(VMC_R_UNLOAD);
	mutex_lock(&vmcf_lock);
	vmcf_stopping = true;
	list_for_each_entry(p, &vmcf_peers, list)
		if (p->state == VMCF_CONNECTED || p->state == VMCF_UP)
			vmcf_send(p, &bye);
	xenbus_rm(XBT_NIL, vmcf_base, "data/xenvmc");
	list_for_each_entry_safe(p, tmp, &vmcf_peers, list)
		vmcf_peer_free(p);
	mutex_unlock(&vmcf_lock);
	cancel_work_sync(&vmcf_reap_work);	/* finds vmcf_stopping set */

	destroy_workqueue(vmcf_wq);
	kfree(vmcf_table_watch.node);
	proc_remove(vmcf_proc_dir);
	pr_info("unloaded\n");
}

module_init(vmcf_init);
module_exit(vmcf_exit);

MODULE_DESCRIPTION("XenVMC DomU frontend: shared-memory TCP/UDP between co-resident VMs");
MODULE_AUTHOR("XenVMC developers");
MODULE_LICENSE("GPL");
MODULE_VERSION(VMCF_VERSION);
