// SPDX-License-Identifier: GPL-2.0
/*
 * XenVMC DomU module: moves TCP and UDP traffic to a co-resident DomU
 * through shared memory (grant tables + event channels).
 *
 * What runs today: membership, control channels, ring pools, the TCP
 * fast path and moving its connections back to TCP (unload, suspend and
 * migration, tcp=0, MSG_OOB, TCP_ULP, peer gone), and the UDP fast path
 * (a datagram ring per pair).
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
 * the event handler runs in hard irq and only schedules the peer's tasklet;
 * the tasklet (softirq) takes in datagrams, wakes the sockets whose rings
 * moved and hands control messages to the peer's work item; whichever ends
 * the round calls xen_irq_lateeoi(), marked spurious when nothing moved, so
 * a peer that floods events is throttled by Xen's lateeoi logic.
 *
 * Channel states (struct vmcf_peer, one per peer Dom0 lists):
 *
 *   state    | event                               | action                       | next
 *   ---------+-------------------------------------+------------------------------+---------
 *   -        | peer listed in xenvmc/peers         | grant our control page;      | OFFERED
 *            |                                     | lower domid: alloc unbound   |
 *            |                                     | port, bind irq; publish      |
 *            |                                     | data/xenvmc/chan/<P>         |
 *   -        | listed, but max_peers channels open | nothing (why says so)        | CLOSED
 *   CLOSED   | (max_peers) a channel is gone, at   | as for a newly listed peer   | OFFERED
 *            | the next XenStore event             |                              |
 *   OFFERED  | xenvmc/chan/<P> relayed, valid      | map its page; higher domid:  | CONNECTED
 *            |                                     | bind its port; send HELLO    |
 *   CONNECTED| HELLO from P naming P's domid       | -                            | UP
 *   CONN/UP  | bad index, bad message, wrong HELLO | count; tear down channel     | BROKEN
 *   BROKEN/  | P's entry changes (gen) or relisted | set up again                 | OFFERED
 *   CLOSED   |                                     |                              |
 *   OFFERED  | P's entry changes (gen)             | set up again (new grant)     | OFFERED
 *   CONN/UP  | P's chan value changes or is        | set up again                 | OFFERED
 *            | withdrawn (P reloaded)              |                              |
 *   any      | BYE from P                          | tear down channel            | CLOSED
 *   any      | P leaves the table, or unload       | tear down, forget P          | -
 *
 * The table counts only once Dom0 says it is for this incarnation (see
 * vmcf_table_ours()); every load and resume is a new one.  When P reloads
 * quickly, Dom0 gives P's entry a new gen (in one publish: it stays
 * listed), withdraws P's old offer from us, and holds our offer back from P until
 * we write one again: a BYE or a withdrawn offer sets our channel up
 * again, and the gen change does for a closed or offered one.
 *
 * "set up again" lands in CLOSED with the max_peers reason instead when
 * max_peers other channels are OFFERED, CONNECTED or UP: those states hold
 * a ring pool and count toward the limit; they do not time out (a peer
 * that never answers keeps its slot, as it would keep a TCP connection).
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
#include <asm/ioctls.h>
#include <linux/vmalloc.h>
#include <linux/bitmap.h>
#include <linux/platform_device.h>
#include <linux/delay.h>
#include <linux/sched/signal.h>
#include <linux/hashtable.h>
#include <linux/tracepoint.h>
#include <linux/refcount.h>
#include <net/sock.h>
#include <net/busy_poll.h>
#include <net/tcp.h>
#include <net/inet_common.h>
#include <net/inet_connection_sock.h>
#include <trace/events/sock.h>
#include <linux/netdevice.h>
#include <linux/etherdevice.h>
#include <linux/if_arp.h>
#include <linux/inetdevice.h>
#include <linux/rtnetlink.h>
#include <net/addrconf.h>
#include <net/ip.h>
#include <net/ipv6.h>
#include <linux/netfilter.h>
#include <linux/netfilter_ipv4.h>
#include <linux/netfilter_ipv6.h>
#include <net/netfilter/nf_conntrack.h>
#include <net/route.h>
#include <net/ip6_fib.h>
#include <net/arp.h>
#include <net/ndisc.h>
#include <net/ip6_checksum.h>
#include <net/if_inet6.h>
#include <xen/xen.h>
#include <xen/xenbus.h>
#include <xen/events.h>
#include <xen/grant_table.h>
#include <xen/page.h>
#include <xen/features.h>
#include <xen/interface/grant_table.h>
#include <xen/interface/event_channel.h>
#include <asm/xen/hypercall.h>

#include "vmc_ring.h"
#include "vmc_proto.h"

#define VMCF_VERSION "0.3"

static bool tcp;
static int vmcf_set_tcp(const char *val, const struct kernel_param *kp);
static const struct kernel_param_ops vmcf_tcp_ops = {
	.set = vmcf_set_tcp,
	.get = param_get_bool,
};

module_param_cb(tcp, &vmcf_tcp_ops, &tcp, 0644);
MODULE_PARM_DESC(tcp, "Accelerate new TCP connections to co-resident peers (default off until lab-proven); writing 0 moves accelerated ones back to TCP");
static bool udp;
module_param(udp, bool, 0644);
MODULE_PARM_DESC(udp, "Send UDP datagrams to co-resident peers through the pair's datagram ring (default off until lab-proven)");
static unsigned short exclude_ports[16];
static unsigned int nr_exclude_ports;
module_param_array(exclude_ports, ushort, &nr_exclude_ports, 0644);
MODULE_PARM_DESC(exclude_ports, "TCP ports (local or remote, up to 16, comma-separated) whose connections always stay on TCP");
static unsigned int ring_kb = 64;
module_param(ring_kb, uint, 0444);
MODULE_PARM_DESC(ring_kb, "Ring per connection and direction, KiB (4-1024, power of two, default 64)");
static unsigned int ring_max_kb = 256;
module_param(ring_max_kb, uint, 0444);
MODULE_PARM_DESC(ring_max_kb, "Largest ring of a connection per direction, KiB, rounded down to 1, 2 or 4 rings of ring_kb (default 256; 0: one): a connection takes that many adjacent rings of the pool while at least half of its TCP rings stay free, one otherwise (a peer that cannot read bigger rings always gets one)");
/* Slots of the first connections' rings: ring_max_kb as 1, 2 or 4 slots. */
static unsigned int vmcf_ring_slots = 1;
static unsigned int pool_rings = 36;
module_param(pool_rings, uint, 0444);
MODULE_PARM_DESC(pool_rings, "Rings granted to each peer (1-4096, default 36): with more than 4, the last 4 form the datagram ring and the others carry one accelerated TCP connection each");
/*
 * Each open channel holds its ring pool (pool_rings * ring_kb, granted to
 * the peer) and maps the peer's (as much again): 4.5 MiB with the defaults.
 * max_peers bounds that memory for the whole DomU, however many DomUs
 * Dom0 lists; peers beyond it stay on the network until a channel closes.
 */
static unsigned int max_peers = 16;
module_param(max_peers, uint, 0444);
MODULE_PARM_DESC(max_peers, "Peers with an open channel at most (1-1024, default 16); traffic to the others stays on the network");

#ifdef VMCF_EVIL
/* Test build only: see vmcf_evil_write(). */
static bool evil_gref;
module_param(evil_gref, bool, 0444);
MODULE_PARM_DESC(evil_gref, "TEST BUILD: announce pool grant refs never granted");
/* Test build only: see vmcf_evil_lock_delay(). */
static unsigned int evil_lock_delay_ms;
module_param(evil_lock_delay_ms, uint, 0644);
MODULE_PARM_DESC(evil_lock_delay_ms, "TEST BUILD: once, hold a not yet accepted socket's lock this long");
/* Test build only: the next REVERT a peer sends us is answered this late. */
static unsigned int evil_answer_delay_ms;
module_param(evil_answer_delay_ms, uint, 0644);
MODULE_PARM_DESC(evil_answer_delay_ms, "TEST BUILD: once, answer a peer's REVERT this late");
/*
 * Test build only: the next OFFER a peer sends us is taken this late, so
 * that what our socket writes meanwhile goes on TCP, before the cut.
 */
static unsigned int evil_offer_delay_ms;
module_param(evil_offer_delay_ms, uint, 0644);
MODULE_PARM_DESC(evil_offer_delay_ms, "TEST BUILD: once, take a peer's OFFER this late");
#endif

#define VMCF_BACKLOG_MAX	1024	/* control messages waiting for ring room */
#define VMCF_PENDING_TIMEOUT	(3 * HZ)
#define VMCF_REVERT_TIMEOUT	(2 * HZ)	/* peer's answer to REVERT */
#define VMCF_HIST_PERIOD	(5 * HZ)	/* closed given-back sockets let go */
#define VMCF_CUT_LOOK		(HZ / 50)	/* reader below SO_RCVLOWAT, at the cut */
/*
 * The peer's answer to an OFFER.  It answers at once, or within
 * VMCF_PENDING_TIMEOUT if its socket is not ESTABLISHED yet: a peer silent
 * this long is broken, and sendmsg() must not wait for it forever.
 */
#define VMCF_OFFER_TIMEOUT	(10 * HZ)
#define VMCF_DGRAM_BUDGET	64	/* datagrams per softirq run (as NAPI) */
#define VMCF_DGRAM_TXQ_BYTES	(512 * 1024)	/* per pair, > one sndbuf */
/*
 * A peer that makes no room for this long loses the waiting datagrams
 * (counted as ring-full drops): their senders must not stay blocked on a
 * stalled or hostile peer, which under netfront would only drop them.
 */
#define VMCF_DGRAM_WAIT		(HZ / 2)
/*
 * A received datagram up to VMCF_DGRAM_LINEAR bytes is one piece (one
 * order-0 allocation with NET_SKB_PAD of headroom and its skb_shared_info);
 * a bigger one is a head of VMCF_DGRAM_HEAD bytes, which holds every IP
 * and UDP header our sender writes (vmc_dgram_check() reads them there),
 * and order-0 pages.
 */
#define VMCF_DGRAM_LINEAR	(SKB_WITH_OVERHEAD(PAGE_SIZE) - NET_SKB_PAD)
#define VMCF_DGRAM_HEAD		128
#define VMCF_DRAIN_WAIT		(5 * HZ)	/* unload: saved bytes still unread */
#define VMCF_PENDING_MAX	64
/*
 * A large send or receive publishes its index every quarter ring, not once
 * at the end: the peer starts copying (or refilling) while we still copy,
 * so the two vCPUs overlap.  Published once per call, a 64 KiB write into a
 * 64 KiB ring was copied in, then out, one after the other.  Each publish
 * is one barrier; it sends an event only if the peer asked for one.
 */
#define VMCF_CHUNK(r)		max_t(u32, (r)->size / 4, PAGE_SIZE)

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
	bool held;			/* vmcf_chan_open() ran, not yet closed */
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
	bool stopping;			/* irq only EOIs, tasklet stops */
	/* bit 0: an event awaits its EOI; bit 1: vmcf_evt() saw it move */
	unsigned long eoi_pending;
	int eoi_irq;			/* the irq that event came on */
	struct tasklet_struct evt;	/* each event: wakes, datagrams */
	struct work_struct work;	/* control messages */
	struct delayed_work tick;	/* expires pending offers */

	/* Control messages that found the ring full, oldest first. */
	struct list_head backlog;
	unsigned int backlog_len;
	u32 out_tail;	/* out-ring position where the last queued one ends */

	/*
	 * Our ring pool for this peer: pool_hdr pages of ring headers, then
	 * pool_slots rings of ring_pages pages, all granted to the peer.
	 */
	void *pool;
	unsigned int pool_pages, pool_hdr, pool_slots, ring_pages;
	unsigned int tcp_slots;		/* the first ones; datagrams after */
	grant_ref_t *pool_grefs;
	unsigned int pool_granted;
	unsigned long *slot_used;	/* under conn_lock */
	struct vmcf_conn **conns;	/* by our slot; under conn_lock */
	bool peer_ready;		/* the peer mapped our pool (READY) */
	u16 gen;			/* next connection id's generation */

	/* The peer's pool, as announced in HELLO and mapped. */
	unsigned int rpool_pages, rpool_hdr, rpool_slots, rring_pages;
	u32 *rpool_grefs;
	unsigned int rpool_got;
	struct page **rpool_page;
	grant_handle_t *rpool_handle;
	void *rpool;			/* vmap of the peer's pool */
	unsigned int rpool_mapped;	/* pages mapped */
	bool rpool_ready;		/* all of it, and rpool valid */
	bool closing;			/* channel teardown: attach nothing */
	bool leaving;			/* vmcf_chan_close() settles its REVERTs */
	bool tx_dead;			/* out ring gone: send nothing */

	spinlock_t conn_lock;		/* conns, slots, waiting, pending */
	struct list_head waiting;	/* accept-side conns without OFFER */
	struct list_head attached;	/* every conn with a socket and this peer */
	struct list_head pending;	/* OFFERs that came before the socket */
	unsigned int nr_pending;

	/*
	 * Datagrams: the last VMC_DGRAM_SLOTS slots of each pool, one ring
	 * each way (vmc_proto.h).  dg_on once both sides have it; dg_lock
	 * serialises the senders (the netfilter hook, any CPU).
	 */
	u32 peer_features;		/* from its HELLO */
	bool dg_own;			/* our pool reserves the datagram slots */
	bool dg_on;			/* both rings usable; under dg_lock */
	spinlock_t dg_lock;
	struct vmc_ring dg_tx, dg_rx;
	/*
	 * Datagrams waiting for room in dg_tx, in order; under dg_lock.  They
	 * stay charged to their sockets, so a sender faster than the peer
	 * blocks in sendmsg() as behind a full netfront queue, not drops.
	 */
	struct sk_buff_head dg_txq;
	unsigned int dg_txq_bytes;	/* their truesize */
	unsigned long dg_moved_at;	/* jiffies: the queue last moved */
	bool dg_stalled;		/* it expired: drop, not queue, until room */

	unsigned long msgs_in, msgs_out, bad_msgs, events;
	atomic_long_t notifies;		/* events we sent it */
#ifdef VMCF_EVIL
	bool evil_deaf;			/* test build: read nothing of it */
#endif
	struct rcu_head rcu;
};

/*
 * Connection states (struct vmcf_conn, one per TCP socket to a peer).  The
 * socket runs our functions (sk_prot, and sock->ops for poll) only while
 * WAITING, OFFERED, RING, REVERTING or DRAIN; PASS and DEAD sockets have
 * TCP's own functions back, and a call still inside ours when that happens
 * restarts (vmcf_restart) or returns what it already moved.
 *
 *  state     | event                               | action                            | next
 *  ----------+-------------------------------------+-----------------------------------+----------
 *  -         | ESTABLISHED, connect side, pair up  | take a ring slot; OFFER at        | OFFERED
 *            |                                     | seq_cut = write_seq; sends wait   |
 *  -         | ESTABLISHED, accept side, pair up   | use an OFFER that came first      | WAITING
 *  -         | ESTABLISHED, anything else          | nothing: plain TCP (counted)      | -
 *  OFFERED   | ACCEPT, ISN proof and ring valid    | attach the rx ring at rx_cut      | RING
 *  OFFERED   | REFUSE, bad proof, channel down     | free the slot, TCP's ops back     | PASS
 *  OFFERED   | no answer in VMCF_OFFER_TIMEOUT     | the peer is broken: channel down  | PASS
 *  WAITING   | OFFER for this 4-tuple, slot free   | no TCP send in flight: cut at     | RING
 *            |                                     | write_seq, ACCEPT with both ISNs  |
 *  WAITING   | bad OFFER, no slot, channel down,   | TCP's ops back                    | PASS
 *            | unload or suspend                   |                                   |
 *  RING      | sendmsg / recvmsg                   | ring; recv reads TCP to rx_cut    | RING
 *  RING      | shutdown(WR)                        | EOF flag; TCP's FIN waits for     | RING
 *            |                                     | close or the move back            |
 *  RING      | unload, suspend, tcp=0, MSG_OOB,    | stop both rings; REVERT naming    | REVERTING
 *            | TCP_ULP                             | how far we read the peer's ring   |
 *  RING      | REVERT(F) from the peer             | REVERTED(our read position);      | PASS
 *            |                                     | our ring's bytes from F to TCP    |
 *  REVERTING | REVERTED(F) or REVERT(F)            | our ring's bytes from F to TCP    | PASS
 *  REVERTING | no answer in VMCF_REVERT_TIMEOUT    | reset (not while its channel      | DEAD
 *            |                                     | closes: the teardown settles it)  |
 *  RING, REV | channel closes, the peer done (its  | save the peer's unread ring bytes | DRAIN
 *            | event channel end closed: destroyed | (they come before TCP's new ones) |
 *            | or torn down) and our REVERT unread |                                   |
 *            | by it; or its socket closed first   |                                   |
 *  RING, REV | channel closes, the peer not done,  | reset; CLOSE RST (it may yet act  | DEAD
 *            | or done after reading our REVERT    | on our REVERT: vmcf_conns_down()) |
 *            | with no answer to us                |                                   |
 *  DRAIN     | the saved bytes all read            | TCP's ops back                    | PASS
 *  RING, REV | CLOSE RST, corrupt ring, broken     | RST on TCP too, ECONNRESET, TCP's | DEAD
 *            | peer, bad REVERT                    | ops back                          |
 *  taken     | socket closed, or destroyed (also a | TCP's ops back; a slot the peer   | zombie
 *            | child its listener closed before    | may still read is kept until its  |
 *            | accept())                           | CLOSE, REFUSE or answer to REVERT |
 *  taken     | disconnect: connect(AF_UNSPEC)      | CLOSE RST while we hold its ring; | DEAD
 *            |                                     | TCP's ops back; slot as above     |
 *
 * Bytes sent on a ring never use TCP sequence space: TCP stays frozen
 * under the ring at the two cuts, and moving back continues it there.  The
 * sender owns its ring, so it alone can hand its unread bytes to TCP; a
 * peer that cannot (gone, or its socket closed) leaves them in the ring,
 * and the receiver saves them instead.
 *
 * Once the socket is visible, the state changes only through
 * vmcf_conn_set_state(), and a change out of RING comes before the message
 * or the vmcf_slot_put() that lets either side reuse a ring slot.
 */
enum vmcf_conn_state {
	VMCF_C_WAITING,
	VMCF_C_OFFERED,
	VMCF_C_RING,
	VMCF_C_REVERTING,
	VMCF_C_DRAIN,
	VMCF_C_PASS,
	VMCF_C_DEAD,
};

static const char * const vmcf_cstate_name[] = {
	[VMCF_C_WAITING] = "waiting",
	[VMCF_C_OFFERED] = "offered",
	[VMCF_C_RING] = "accelerated",
	[VMCF_C_REVERTING] = "reverting",
	[VMCF_C_DRAIN] = "draining",
	[VMCF_C_PASS] = "tcp",
	[VMCF_C_DEAD] = "reset",
};

struct vmcf_conn {
	struct hlist_node hnode;	/* vmcf_conn_hash, by sk, while taken */
	struct list_head wnode;		/* peer->waiting while WAITING */
	struct list_head pnode;		/* peer->attached while it has a socket */
	struct list_head anode;		/* vmcf_conn_all, for /proc */
	struct list_head rnode;		/* a vmcf_batch; under vmcf_batch_lock */
	struct sock *batch_sk;		/* held for that batch */
	bool batch_bh;			/* batch_sk bh-locked (vmcf_sock_lock) */
	struct sock *sk;		/* while taken; NULL once TCP's again */
	struct sock *hist_sk;		/* given back: held, for /proc only */
	struct proto *orig_prot;
	struct vmcf_peer *peer;		/* NULL once the channel is gone */
	refcount_t ref;
	int slot;			/* our tx slot, or -1 */
	unsigned int nslots;		/* slots from it the tx ring spans */
	u32 id;				/* our id for it: slot | generation << 16 */
	unsigned int domid;		/* the peer's, for /proc */
	u32 peer_id;			/* the peer's id (its tx slot) */
	enum vmcf_conn_state state;
	bool active;			/* we connected, and offer */
	bool rx_attached;
	bool peer_closed;		/* its CLOSE came: it reads no more */
	bool revert_sent;		/* our REVERT went: its answer frees our rx */
	u32 revert_end;			/* out-ring position where it ends */
	bool closing;			/* our close() began: no ops swap */
	bool fin_deferred;		/* shutdown(WR) on the ring: TCP FIN later */
	/*
	 * poll() and sock_is_readable() write ring headers without the
	 * socket lock while state is RING (the rx ring's only while
	 * rx_attached): they look and write under this lock, and what ends
	 * those writes (state leaving RING, rx_attached cleared in RING) is
	 * done under it too (vmcf_conn_set_state()).  Innermost: nothing is
	 * taken under it; BH off, as the TCP probe changes state in softirq.
	 */
	spinlock_t poll_lock;
	int err;			/* sticky error for the socket */
	struct vmc_tuple tuple;		/* as we see it */
	u32 isn_local, isn_remote;
	u32 rx_cut;			/* peer's write_seq at its cut */
	unsigned int tcp_senders;	/* tcp_sendmsg() calls in flight */
	struct vmc_msg_conn_offer *deferred;	/* OFFER waiting for them */
	struct vmc_ring tx, rx;
	/*
	 * The peer-written words of our rings as vmcf_wake_conns() last saw
	 * them (tx cons, tx cons_flags, rx prod, rx prod_flags): only a socket
	 * whose ring moved is woken.  Compared, never trusted.
	 */
	u32 seen[4];
	u8 *drain;			/* DRAIN: the peer's unread ring bytes */
	u32 drain_len, drain_off;
	unsigned long revert_at;	/* REVERT sent (jiffies) */
	unsigned long offered_at;	/* OFFER sent (jiffies) */
	u64 tx_bytes, rx_bytes;
	const char *why;		/* why it is not accelerated */
	struct rcu_head rcu;
};

/* An OFFER that came before its socket was ESTABLISHED here. */
struct vmcf_pending {
	struct list_head list;
	struct vmc_msg_conn_offer offer;
	unsigned long at;
};

/* A control message waiting for ring room. */
struct vmcf_queued {
	struct list_head list;
	u32 len;
	u8 msg[] __aligned(8);
};

static DEFINE_MUTEX(vmcf_lock);		/* the peer list; xenwatch, /proc */
static LIST_HEAD(vmcf_peers);
static bool vmcf_stopping;		/* unload under way; under vmcf_lock */
static bool vmcf_suspended;		/* frozen: no channels; under vmcf_lock */
static bool vmcf_draining;		/* unload, suspend: accelerate nothing new */
static atomic_t vmcf_inside = ATOMIC_INIT(0);	/* calls in our ops that may sleep */
static bool vmcf_exiting;		/* under kernel_param_lock(THIS_MODULE) */
static DEFINE_MUTEX(vmcf_batch_lock);	/* one vmcf_batch at a time */
static void vmcf_reap(struct work_struct *work);
static DECLARE_WORK(vmcf_reap_work, vmcf_reap);
static void vmcf_hist_tick(struct work_struct *work);
static DECLARE_DEFERRABLE_WORK(vmcf_hist_work, vmcf_hist_tick);
static unsigned int vmcf_domid;
static struct proc_dir_entry *vmcf_proc_dir;
static struct workqueue_struct *vmcf_wq;
static bool vmcf_published;
/*
 * This incarnation (vmc_proto.h): new at every load and resume, so that
 * Dom0 sees us come back however quickly.  Under vmcf_lock.
 */
static u64 vmcf_inc;
static char vmcf_base[40];		/* /local/domain/<self> */
static char vmcf_data[64];		/* .../data/xenvmc */
static char vmcf_addrs_val[VMC_XS_ADDRS_MAX + 1];

/* Resource counters, expected back at 0 after every teardown. */
static atomic_t vmcf_grants = ATOMIC_INIT(0);
static atomic_t vmcf_maps = ATOMIC_INIT(0);
static atomic_t vmcf_evtchns = ATOMIC_INIT(0);
static atomic_t vmcf_conns = ATOMIC_INIT(0);
static atomic_long_t vmcf_broken_channels = ATOMIC_LONG_INIT(0);

/* Why connections to peers were not accelerated, for /proc/xenvmc/stats. */
enum vmcf_fallback {
	VMCF_FB_DISABLED,	/* tcp=0 */
	VMCF_FB_NOT_READY,	/* channel or pools not up yet */
	VMCF_FB_NO_SLOT,	/* pool exhausted */
	VMCF_FB_NO_MEMORY,
	VMCF_FB_SOCKET,		/* ULP, sockmap, kernel socket, TFO */
	VMCF_FB_REFUSED,	/* the peer said no */
	VMCF_FB_AUTH,		/* ISN proof wrong */
	VMCF_FB_TIMEOUT,
	VMCF_FB_CTRL_FULL,
	VMCF_FB_DRAINING,	/* unload or suspend under way */
	VMCF_FB_EXCLUDED,	/* exclude_ports */
	VMCF_FB_NR
};

static const char * const vmcf_fb_name[] = {
	[VMCF_FB_DISABLED] = "fallback_disabled",
	[VMCF_FB_NOT_READY] = "fallback_channel_not_ready",
	[VMCF_FB_NO_SLOT] = "fallback_no_ring_slot",
	[VMCF_FB_NO_MEMORY] = "fallback_no_memory",
	[VMCF_FB_SOCKET] = "fallback_socket_unsupported",
	[VMCF_FB_REFUSED] = "fallback_refused_by_peer",
	[VMCF_FB_AUTH] = "fallback_auth_failed",
	[VMCF_FB_TIMEOUT] = "fallback_handshake_timeout",
	[VMCF_FB_CTRL_FULL] = "fallback_control_ring_full",
	[VMCF_FB_DRAINING] = "fallback_unload_or_suspend",
	[VMCF_FB_EXCLUDED] = "fallback_excluded_port",
};

static atomic_long_t vmcf_fallbacks[VMCF_FB_NR];
static atomic_long_t vmcf_accelerated = ATOMIC_LONG_INIT(0);
/* TCP sockets the tracepoint saw become ESTABLISHED; of them, to non-peers. */
static atomic_long_t vmcf_tcp_seen = ATOMIC_LONG_INIT(0);
static atomic_long_t vmcf_tcp_not_peer = ATOMIC_LONG_INIT(0);
static atomic_long_t vmcf_resets = ATOMIC_LONG_INIT(0);
static atomic_long_t vmcf_reverted = ATOMIC_LONG_INIT(0);	/* back to TCP */
static atomic_long_t vmcf_resent_bytes = ATOMIC_LONG_INIT(0);	/* ring -> TCP */
static atomic_long_t vmcf_drained = ATOMIC_LONG_INIT(0);	/* saved rings */
/* Our tx rings of more than one slot (ring_max_kb), ever. */
static atomic_long_t vmcf_big_rings = ATOMIC_LONG_INIT(0);
/* UDP through datagram rings. */
static atomic_long_t vmcf_udp_tx = ATOMIC_LONG_INIT(0);
static atomic_long_t vmcf_udp_rx = ATOMIC_LONG_INIT(0);
static atomic_long_t vmcf_udp_tx_full = ATOMIC_LONG_INIT(0);	/* dropped */
static atomic_long_t vmcf_udp_rx_nomem = ATOMIC_LONG_INIT(0);	/* dropped */
static atomic_long_t vmcf_udp_rx_unknown = ATOMIC_LONG_INIT(0);	/* not ours */
static atomic_long_t vmcf_udp_rx_source = ATOMIC_LONG_INIT(0);	/* not theirs */
static atomic_long_t vmcf_udp_bad = ATOMIC_LONG_INIT(0);	/* broke channel */
static atomic_long_t vmcf_udp_to_net = ATOMIC_LONG_INIT(0);	/* too big, not direct */
/* Busy-polling reads (SO_BUSY_POLL, busy_read) whose spin saw the data. */
static atomic_long_t vmcf_busy_poll_hits = ATOMIC_LONG_INIT(0);

static void vmcf_count_fallback(enum vmcf_fallback why)
{
	atomic_long_inc(&vmcf_fallbacks[why]);
}

/* ---- sending ---- */

static void vmcf_notify(struct vmcf_peer *p)
{
	if (p->irq >= 0) {
		atomic_long_inc(&p->notifies);
		notify_remote_via_irq(p->irq);
	}
}

/*
 * Move queued messages into the ring while they fit; tx_lock held.  When
 * the ring is full, ask the peer for an event once it has made room.
 */
static bool vmcf_flush_locked(struct vmcf_peer *p)
{
	struct vmcf_queued *q;
	bool notify = false, n;
	int err;

	if (p->tx_dead)
		return false;
	while ((q = list_first_entry_or_null(&p->backlog, struct vmcf_queued,
					     list))) {
		err = vmc_ring_msg_write(&p->out, q->msg, q->len, &n);
		notify |= n;
		if (err == -EAGAIN) {
			/* Room may have come while asking: then try again. */
			if (vmc_ring_prod_wait(&p->out, vmc_ring_msg_room(q->len)) >=
			    vmc_ring_msg_room(q->len))
				continue;
			break;
		}
		list_del(&q->list);
		p->backlog_len--;
		if (!err)
			p->msgs_out++;
		kfree(q);
	}
	return notify;
}

/*
 * Send one control message, in order after any queued ones.  Any context
 * (the TCP probe runs in softirq).  False when it could not even be queued.
 * With @end, where the message ends in the out ring once written: the peer
 * has read it when its consumer index is there (vmcf_revert_seen()).
 */
static bool vmcf_send_at(struct vmcf_peer *p, const void *msg, u32 *end)
{
	const struct vmc_msg_hdr *h = msg;
	u32 len = le16_to_cpu(h->len);
	struct vmcf_queued *q;
	bool notify, ok = true;

	q = kmalloc(sizeof(*q) + len, GFP_ATOMIC);
	spin_lock_bh(&p->tx_lock);
	if (!q || p->tx_dead || p->backlog_len >= VMCF_BACKLOG_MAX) {
		ok = false;
	} else {
		q->len = len;
		memcpy(q->msg, msg, len);
		list_add_tail(&q->list, &p->backlog);
		p->backlog_len++;
		/* Written in this order, each at its room: or the ring broke. */
		p->out_tail += vmc_ring_msg_room(len);
		if (end)
			*end = p->out_tail;
		q = NULL;
	}
	notify = vmcf_flush_locked(p);
	/* Under the lock: teardown sets tx_dead, then cancels the tick. */
	if (p->backlog_len && vmcf_wq && !p->tx_dead)
		queue_delayed_work(vmcf_wq, &p->tick, HZ);
	spin_unlock_bh(&p->tx_lock);
	kfree(q);
	if (notify)
		vmcf_notify(p);
	if (!ok)
		pr_warn_ratelimited("peer %u: control message %u dropped: backlog full\n",
				    p->domid, h->type);
	return ok;
}

static bool vmcf_send(struct vmcf_peer *p, const void *msg)
{
	return vmcf_send_at(p, msg, NULL);
}

/* Run @p's tick in a second (it re-arms itself while it has work). */
static void vmcf_tick_soon(struct vmcf_peer *p)
{
	spin_lock_bh(&p->tx_lock);
	/* Under the lock: teardown sets tx_dead, then cancels the tick. */
	if (vmcf_wq && !p->tx_dead)
		queue_delayed_work(vmcf_wq, &p->tick, HZ);
	spin_unlock_bh(&p->tx_lock);
}

static void vmcf_backlog_free(struct vmcf_peer *p)
{
	struct vmcf_queued *q, *tmp;

	list_for_each_entry_safe(q, tmp, &p->backlog, list)
		kfree(q);
	INIT_LIST_HEAD(&p->backlog);
	p->backlog_len = 0;
}

static void vmcf_send_hello(struct vmcf_peer *p)
{
	struct vmc_msg_hello m;

	vmc_msg_init(&m, VMC_MSG_HELLO);
	m.domid = cpu_to_le32(vmcf_domid);
	m.features = cpu_to_le32(VMC_FEAT_TCP | VMC_FEAT_BIGRING |
				 (p->dg_own ? VMC_FEAT_UDP : 0));
	m.pool_pages = cpu_to_le32(p->pool_pages);
	m.slots = cpu_to_le32(p->pool_slots);
	vmcf_send(p, &m);
}

/* ---- ring pools ---- */

static struct vmc_ring_hdr *vmcf_slot_hdr(void *pool, unsigned int slot)
{
	return pool + (slot / VMC_SLOTS_PER_PAGE) * PAGE_SIZE +
	       (slot % VMC_SLOTS_PER_PAGE) * sizeof(struct vmc_ring_hdr);
}

/* Our pool for @p: headers, then rings; every page granted to the peer. */
static int vmcf_pool_create(struct vmcf_peer *p)
{
	unsigned long gfn;
	unsigned int i;
	int ref;

	p->ring_pages = ring_kb / (PAGE_SIZE / 1024);
	p->pool_slots = pool_rings;
	p->pool_hdr = DIV_ROUND_UP(p->pool_slots, VMC_SLOTS_PER_PAGE);
	p->pool_pages = p->pool_hdr + p->pool_slots * p->ring_pages;
	p->pool = vzalloc(p->pool_pages * PAGE_SIZE);
	p->pool_grefs = kvcalloc(p->pool_pages, sizeof(*p->pool_grefs),
				 GFP_KERNEL);
	p->slot_used = bitmap_zalloc(p->pool_slots, GFP_KERNEL);
	p->conns = kvcalloc(p->pool_slots, sizeof(*p->conns), GFP_KERNEL);
	if (!p->pool || !p->pool_grefs || !p->slot_used || !p->conns)
		return -ENOMEM;
	/* The last slots are the datagram ring (vmc_proto.h), never TCP's. */
	p->dg_own = p->pool_slots > VMC_DGRAM_SLOTS;
	p->tcp_slots = p->pool_slots - (p->dg_own ? VMC_DGRAM_SLOTS : 0);
	if (p->dg_own) {
		i = p->pool_slots - VMC_DGRAM_SLOTS;
		bitmap_set(p->slot_used, i, VMC_DGRAM_SLOTS);
		if (vmc_ring_init(&p->dg_tx, vmcf_slot_hdr(p->pool, i),
				  p->pool + (p->pool_hdr + i * p->ring_pages) *
				  PAGE_SIZE,
				  VMC_DGRAM_SLOTS * p->ring_pages * PAGE_SIZE, true))
			return -EINVAL;
	}
	for (i = 0; i < p->pool_pages; i++) {
		gfn = xen_page_to_gfn(vmalloc_to_page(p->pool + i * PAGE_SIZE));
		ref = gnttab_grant_foreign_access(p->domid, gfn, 0);
		if (ref < 0)
			return ref;
		p->pool_grefs[i] = ref;
		p->pool_granted++;
		atomic_inc(&vmcf_grants);
	}
	return 0;
}

static void vmcf_pool_destroy(struct vmcf_peer *p)
{
	unsigned int i;

	/*
	 * With a NULL page, a grant the peer still maps takes its own page
	 * reference until it is unmapped (XSA-396), so vfree() is safe.
	 */
	for (i = 0; i < p->pool_granted; i++) {
		gnttab_end_foreign_access(p->pool_grefs[i], NULL);
		atomic_dec(&vmcf_grants);
	}
	p->pool_granted = 0;
	vfree(p->pool);
	p->pool = NULL;
	kvfree(p->pool_grefs);
	p->pool_grefs = NULL;
	bitmap_free(p->slot_used);
	p->slot_used = NULL;
	kvfree(p->conns);
	p->conns = NULL;
	p->peer_ready = false;
}

static void vmcf_send_pool(struct vmcf_peer *p)
{
	struct vmc_msg_pool m;
	unsigned int first, i, n;

	for (first = 0; first < p->pool_pages; first += n) {
		n = min_t(unsigned int, VMC_POOL_REFS_PER_MSG,
			  p->pool_pages - first);
		vmc_msg_init(&m, VMC_MSG_POOL);
		m.first = cpu_to_le32(first);
		m.count = cpu_to_le32(n);
		for (i = 0; i < n; i++)
			m.gref[i] = cpu_to_le32(p->pool_grefs[first + i]);
#ifdef VMCF_EVIL
		if (evil_gref)	/* refs far from any we granted */
			for (i = 0; i < n; i++)
				m.gref[i] = cpu_to_le32(0x7fff0000 + first + i);
#endif
		vmcf_send(p, &m);
	}
}

/* The peer's pool geometry from HELLO; 0 or -EPROTO. */
static int vmcf_rpool_geometry(struct vmcf_peer *p, u32 pages, u32 slots)
{
	u32 hdr, rp;

	if (!slots || slots > VMC_MAX_SLOTS || pages > VMC_POOL_MAX_PAGES)
		return -EPROTO;
	hdr = DIV_ROUND_UP(slots, VMC_SLOTS_PER_PAGE);
	if (pages <= hdr || (pages - hdr) % slots)
		return -EPROTO;
	rp = (pages - hdr) / slots;
	if (rp > VMC_RING_MAX_PAGES || (rp & (rp - 1)))
		return -EPROTO;
	p->rpool_grefs = kvcalloc(pages, sizeof(*p->rpool_grefs), GFP_KERNEL);
	if (!p->rpool_grefs)
		return -ENOMEM;
	p->rpool_pages = pages;
	p->rpool_slots = slots;
	p->rpool_hdr = hdr;
	p->rring_pages = rp;
	return 0;
}

#define VMCF_NO_HANDLE ((grant_handle_t)~0U)

/* Where a grant mapping of @page goes: its kernel linear address. */
static unsigned long vmcf_page_va(struct page *page)
{
	return (unsigned long)pfn_to_kaddr(page_to_pfn(page));
}

/*
 * The peer's pool is seen through one contiguous kernel mapping.  A PV
 * guest (no auto-translation) cannot vmap() grant-mapped frames (Xen
 * refuses a second PTE to a foreign frame), so there we reserve the
 * virtual range first, on the zero page, and let Xen write each grant's
 * PTE at its address, as xenbus_map_ring_pv() does.  Unlike its PTEs,
 * ours are present when Xen overwrites them, and Xen flushes no TLB on a
 * map (create_grant_pv_mapping()): vmcf_rpool_map() flushes them itself.
 * Auto-translated guests (PVH, HVM) map grants onto ballooned pages and
 * vmap those.
 */
static bool vmcf_pv(void)
{
	return !xen_feature(XENFEAT_auto_translated_physmap);
}

static unsigned long vmcf_rpool_va(struct vmcf_peer *p, unsigned int i)
{
	return vmcf_pv() ? (unsigned long)p->rpool + i * PAGE_SIZE :
			   vmcf_page_va(p->rpool_page[i]);
}

static void vmcf_rpool_unmap(struct vmcf_peer *p)
{
	struct gnttab_unmap_grant_ref *ops = NULL;
	struct page **pages = NULL;
	unsigned int i, k = 0;
	int err = 0;

	WRITE_ONCE(p->rpool_ready, false);
	if (!vmcf_pv() && p->rpool) {
		vunmap(p->rpool);
		p->rpool = NULL;
	}
	if (p->rpool_mapped) {
		ops = kvcalloc(p->rpool_mapped, sizeof(*ops), GFP_KERNEL);
		pages = kvcalloc(p->rpool_mapped, sizeof(*pages), GFP_KERNEL);
	}
	for (i = 0; ops && pages && i < p->rpool_pages; i++) {
		if (p->rpool_handle[i] == VMCF_NO_HANDLE)
			continue;
		gnttab_set_unmap_op(&ops[k], vmcf_rpool_va(p, i),
				    GNTMAP_host_map, p->rpool_handle[i]);
		/* Still mapped unless Xen says otherwise (it may never run). */
		ops[k].status = GNTST_general_error;
		pages[k++] = vmcf_pv() ? NULL : p->rpool_page[i];
	}
	if (k && vmcf_pv())
		err = HYPERVISOR_grant_table_op(GNTTABOP_unmap_grant_ref, ops, k);
	else if (k)
		err = gnttab_unmap_refs(ops, NULL, pages, k);
	/* The ops went in page order: forget the handles Xen released. */
	for (i = 0, k = 0; ops && pages && i < p->rpool_pages; i++) {
		if (p->rpool_handle[i] == VMCF_NO_HANDLE)
			continue;
		if (ops[k++].status == GNTST_okay) {
			p->rpool_handle[i] = VMCF_NO_HANDLE;
			p->rpool_mapped--;
			atomic_dec(&vmcf_maps);
		}
	}
	/*
	 * A frame still mapped (no memory for the ops, or its unmap failed)
	 * must never be reused: it is leaked.  Freed, a PVH guest would hand
	 * it to the next grant map, which Xen answers with domain_crash();
	 * xenbus_unmap_ring_hvm() leaks likewise.
	 */
	if (err || p->rpool_mapped)
		pr_warn_ratelimited("peer %u: pool unmap failed (%d): %u pages leaked\n",
				    p->domid, err, p->rpool_mapped);
	/* A PV range that still holds frames is leaked with them. */
	if (vmcf_pv() && p->rpool && !p->rpool_mapped)
		vunmap(p->rpool);
	p->rpool = NULL;
	if (p->rpool_page && p->rpool_handle) {
		/* The pages not (or no longer) mapped go back to the pool. */
		for (i = 0, k = 0; i < p->rpool_pages; i++)
			if (p->rpool_handle[i] == VMCF_NO_HANDLE)
				p->rpool_page[k++] = p->rpool_page[i];
		if (k)
			gnttab_free_pages(k, p->rpool_page);
	}
	p->rpool_mapped = 0;
	kvfree(ops);
	kvfree(pages);
	kvfree(p->rpool_page);
	p->rpool_page = NULL;
	kvfree(p->rpool_handle);
	p->rpool_handle = NULL;
	kvfree(p->rpool_grefs);
	p->rpool_grefs = NULL;
	p->rpool_pages = 0;
	p->rpool_got = 0;
}

/*
 * Both pools reserve the datagram slots: attach the peer's datagram ring
 * (its layout follows from HELLO's geometry alone) and switch them on.
 */
static int vmcf_dgram_attach(struct vmcf_peer *p)
{
	unsigned int slot = p->rpool_slots - VMC_DGRAM_SLOTS;

	if (!p->dg_own || !(p->peer_features & VMC_FEAT_UDP))
		return 0;
	if (p->rpool_slots <= VMC_DGRAM_SLOTS ||
	    vmc_ring_init(&p->dg_rx, vmcf_slot_hdr(p->rpool, slot),
			  p->rpool + (p->rpool_hdr + slot * p->rring_pages) *
			  PAGE_SIZE,
			  VMC_DGRAM_SLOTS * p->rring_pages * PAGE_SIZE, false))
		return -EPROTO;
	vmc_ring_cons_ask(&p->dg_rx, 1);	/* the first datagram wakes us */
	spin_lock_bh(&p->dg_lock);
	p->dg_on = true;
	spin_unlock_bh(&p->dg_lock);
	return 0;
}

/* Every vCPU of ours forgets its cached translations (PV only). */
static int vmcf_pv_flush_tlbs(void)
{
	struct mmuext_op op = { .cmd = MMUEXT_TLB_FLUSH_ALL };

	return HYPERVISOR_mmuext_op(&op, 1, NULL, DOMID_SELF);
}

/* Every grant of the peer's pool arrived: map them, one contiguous view. */
static int vmcf_rpool_map(struct vmcf_peer *p)
{
	struct gnttab_map_grant_ref *ops;
	unsigned int i, n = p->rpool_pages;
	struct page **zero;
	int err = -ENOMEM;

	p->rpool_handle = kvcalloc(n, sizeof(*p->rpool_handle), GFP_KERNEL);
	ops = kvcalloc(n, sizeof(*ops), GFP_KERNEL);
	if (!p->rpool_handle || !ops)
		goto out;
	if (vmcf_pv()) {
		zero = kvcalloc(n, sizeof(*zero), GFP_KERNEL);
		for (i = 0; zero && i < n; i++)
			zero[i] = ZERO_PAGE(0);
		p->rpool = zero ? vmap(zero, n, VM_MAP, PAGE_KERNEL_RO) : NULL;
		kvfree(zero);
		if (!p->rpool)
			goto out;
	} else {
		p->rpool_page = kvcalloc(n, sizeof(*p->rpool_page), GFP_KERNEL);
		if (!p->rpool_page)
			goto out;
		err = gnttab_alloc_pages(n, p->rpool_page);
		if (err) {
			kvfree(p->rpool_page);
			p->rpool_page = NULL;
			goto out;
		}
	}
	for (i = 0; i < n; i++)
		gnttab_set_map_op(&ops[i], vmcf_rpool_va(p, i), GNTMAP_host_map,
				  p->rpool_grefs[i], p->domid);
	if (vmcf_pv()) {
		gnttab_batch_map(ops, n);	/* Xen writes the PTEs */
		/*
		 * Over the zero page's: a CPU may hold that translation (x86
		 * caches any present one, speculatively too) and would read
		 * zeros for the peer's bytes.  Every vCPU's TLB is flushed
		 * before rpool_ready lets anyone read through the new ones.
		 */
		err = vmcf_pv_flush_tlbs();
	} else {
		err = gnttab_map_refs(ops, NULL, p->rpool_page, n);
	}
	/*
	 * Each op by its own status (set to 1 by gnttab_set_map_op(), so an
	 * op Xen never ran is not taken for mapped): even if the call failed,
	 * what did get mapped must be unmapped before its page is freed.
	 */
	for (i = 0; i < n; i++) {
		if (ops[i].status == GNTST_okay) {
			p->rpool_handle[i] = ops[i].handle;
			p->rpool_mapped++;
		} else {
			p->rpool_handle[i] = VMCF_NO_HANDLE;
		}
	}
	atomic_add(p->rpool_mapped, &vmcf_maps);
	if (err || p->rpool_mapped < n) {
		err = err ?: -EIO;
		goto out;
	}
	if (!vmcf_pv()) {
		p->rpool = vmap(p->rpool_page, n, VM_MAP, PAGE_KERNEL);
		if (!p->rpool) {
			err = -ENOMEM;
			goto out;
		}
	}
	WRITE_ONCE(p->rpool_ready, true);
	err = vmcf_dgram_attach(p);
out:
	kvfree(ops);
	return err;
}

/* Both pools mapped both ways: connections may be offered and accepted. */
static bool vmcf_pair_ready(struct vmcf_peer *p)
{
	return READ_ONCE(p->state) == VMCF_UP && READ_ONCE(p->peer_ready) &&
	       READ_ONCE(p->rpool_ready) && !READ_ONCE(p->closing);
}

static void vmcf_peer_broken(struct vmcf_peer *p, const char *why);
static bool vmcf_dg_expire(struct vmcf_peer *p);

/* ---- TCP: which sockets, and the switch of their operations ---- */

/*
 * Our copies of TCP's tables, built from the first socket of each family
 * that we take over (tcpv6_prot and inet6_stream_ops are not exported), so
 * fields that later kernels add are inherited.  Index: 0 IPv4, 1 IPv6.
 */
static struct proto vmcf_prot[2];
/* checkpatch-ok CONST_STRUCT: filled at run time from the socket's own ops */
static struct proto_ops vmcf_ops[2];
static const struct proto *vmcf_base_prot[2];
static const struct proto_ops *vmcf_base_ops[2];
static DEFINE_SPINLOCK(vmcf_prot_lock);

/* Sockets we took over, by sk; RCU readers, writers under the lock. */
static DEFINE_HASHTABLE(vmcf_conn_hash, 10);
static DEFINE_SPINLOCK(vmcf_conn_hash_lock);
static LIST_HEAD(vmcf_conn_all);	/* attached conns; under the lock */
static struct tracepoint *vmcf_tp;
static void vmcf_set_ops(struct proto *prot);

static int vmcf_fam(const struct sock *sk)
{
	return sk->sk_family == AF_INET6;
}

/* TCP's own table for @sk's family. */
static const struct proto *vmcf_tcp_base(const struct sock *sk)
{
	return vmcf_base_prot[vmcf_fam(sk)];
}

/* Caller holds rcu_read_lock() or the socket lock. */
static struct vmcf_conn *vmcf_conn_of(const struct sock *sk)
{
	struct vmcf_conn *c;

	hash_for_each_possible_rcu(vmcf_conn_hash, c, hnode, (unsigned long)sk)
		if (READ_ONCE(c->sk) == sk)
			return c;
	return NULL;
}

static void vmcf_conn_put(struct vmcf_conn *c)
{
	if (refcount_dec_and_test(&c->ref)) {
		kfree(c->deferred);
		kvfree(c->drain);
		atomic_dec(&vmcf_conns);
		kfree_rcu(c, rcu);
	}
}

static void vmcf_tuple_of(const struct sock *sk, struct vmc_tuple *t)
{
	const struct inet_sock *inet = inet_sk(sk);

	memset(t, 0, sizeof(*t));
	t->lport = cpu_to_le16(ntohs(inet->inet_sport));
	t->rport = cpu_to_le16(ntohs(inet->inet_dport));
#if IS_ENABLED(CONFIG_IPV6)
	if (sk->sk_family == AF_INET6 && !ipv6_addr_v4mapped(&sk->sk_v6_daddr)) {
		t->family = VMC_AF_INET6;
		memcpy(t->laddr, &sk->sk_v6_rcv_saddr, 16);
		memcpy(t->raddr, &sk->sk_v6_daddr, 16);
		return;
	}
#endif
	t->family = VMC_AF_INET;
	memcpy(t->laddr, &inet->inet_saddr, 4);
	memcpy(t->raddr, &inet->inet_daddr, 4);
}

static bool vmcf_entry_has(const struct vmc_peer_entry *e, u8 family,
			   const u8 *addr)
{
	int i;

	for (i = 0; i < e->nr_addrs; i++)
		if (e->addrs[i].family == family &&
		    !memcmp(e->addrs[i].addr, addr, family == VMC_AF_INET ? 4 : 16))
			return true;
	return false;
}

/*
 * Does the network deliver to @daddr straight at @p's host?  No gateway,
 * tunnel or IPsec on the route @dst, and the next hop's link-layer address
 * one of @p's vifs, which Dom0 reads from its own backends.  A DomU's
 * address claim is only its word: a claim of the gateway's address, or of
 * an outside host's, must not draw other DomUs' traffic (UDP) or their
 * connections' offers (TCP) to it.  RCU held.
 */
static bool vmcf_route_direct(struct vmcf_peer *p, struct dst_entry *dst,
			      u8 family, const u8 *daddr)
{
	struct net_device *dev = dst ? dst->dev : NULL;
	u8 ha[MAX_ADDR_LEN];
	struct neighbour *n;
	bool valid = false;
	unsigned int i;
	u32 key;

	if (!dev || (dev->flags & IFF_LOOPBACK) || dev->addr_len != ETH_ALEN)
		return false;
#ifdef CONFIG_XFRM
	if (dst->xfrm)
		return false;
#endif
	rcu_read_lock_bh();
	if (family == VMC_AF_INET) {
		memcpy(&key, daddr, 4);		/* network order, as ARP keys */
		if (!((struct rtable *)dst)->rt_uses_gateway)
			n = __ipv4_neigh_lookup_noref(dev, key);
		else
			n = NULL;
	} else {
		if (!(((struct rt6_info *)dst)->rt6i_flags & RTF_GATEWAY))
			n = __ipv6_neigh_lookup_noref(dev, daddr);
		else
			n = NULL;
	}
	if (n && (READ_ONCE(n->nud_state) & NUD_VALID)) {
		neigh_ha_snapshot(ha, n, dev);
		valid = true;
	}
	rcu_read_unlock_bh();
	if (!valid)
		return false;	/* unresolved: this packet resolves it */
	valid = false;
	spin_lock_bh(&p->conn_lock);
	for (i = 0; i < p->entry.nr_macs; i++)
		valid |= !memcmp(ha, p->entry.macs[i], ETH_ALEN);
	spin_unlock_bh(&p->conn_lock);
	return valid;
}

/* The peer Dom0 lists as owner of @t's remote address; RCU held. */
static struct vmcf_peer *vmcf_peer_by_addr(const struct vmc_tuple *t)
{
	struct vmcf_peer *p;
	bool hit;

	list_for_each_entry_rcu(p, &vmcf_peers, list) {
		spin_lock_bh(&p->conn_lock);
		hit = vmcf_entry_has(&p->entry, t->family, t->raddr);
		spin_unlock_bh(&p->conn_lock);
		if (hit)
			return p;
	}
	return NULL;
}

/*
 * Take ring slots of our pool for @c and set up its tx ring; conn_lock.
 * A ring of n adjacent slots (n = vmcf_ring_slots, then halved down to
 * 1) starts at a multiple of n: the peer checks exactly that
 * (vmc_ring_ref_in_pool()).  A bigger ring lets a writer run on while the
 * reader is still waking (an event and a vCPU wake-up under TCG took about
 * as long as filling 64 KiB), but it takes slots other connections could
 * use: only while half of the TCP slots stay free after it, so a busy pool
 * still gives every connection one.
 */
static int vmcf_slot_get(struct vmcf_peer *p, struct vmcf_conn *c)
{
	unsigned int slot, n = 1, used;
	int err;

	if (!p->slot_used)
		return -ENOSPC;
	if (vmcf_ring_slots > 1 && (p->peer_features & VMC_FEAT_BIGRING)) {
		n = vmcf_ring_slots;
		used = bitmap_weight(p->slot_used, p->tcp_slots);
		while (n > 1 && used + n > p->tcp_slots / 2)
			n /= 2;
	}
	for (;; n /= 2) {
		slot = bitmap_find_next_zero_area(p->slot_used, p->tcp_slots,
						  0, n, n - 1);
		if (slot < p->tcp_slots)
			break;
		if (n == 1)
			return -ENOSPC;
	}
	err = vmc_ring_init(&c->tx, vmcf_slot_hdr(p->pool, slot),
			    p->pool + (p->pool_hdr + slot * p->ring_pages) *
			    PAGE_SIZE, n * p->ring_pages * PAGE_SIZE, true);
	if (err)
		return err;
	bitmap_set(p->slot_used, slot, n);
	p->conns[slot] = c;
	refcount_inc(&c->ref);		/* the slot's reference */
	c->slot = slot;
	c->nslots = n;
	if (n > 1)
		atomic_long_inc(&vmcf_big_rings);
	/* A late message for an earlier user of the slot finds no conn. */
	c->id = slot | (u32)p->gen++ << 16;
	return 0;
}

/* Give the slot back; conn_lock held.  Drops the slot's reference later. */
static bool vmcf_slot_put(struct vmcf_peer *p, struct vmcf_conn *c)
{
	if (c->slot < 0)
		return false;
	bitmap_clear(p->slot_used, c->slot, c->nslots);
	p->conns[c->slot] = NULL;
	c->slot = -1;
	return true;
}

static void vmcf_ring_ref(const struct vmcf_peer *p, const struct vmcf_conn *c,
			  struct vmc_ring_ref *r)
{
	r->slot = cpu_to_le32(c->slot);
	r->page = cpu_to_le32(p->pool_hdr + c->slot * p->ring_pages);
	r->pages = cpu_to_le32(c->nslots * p->ring_pages);
}

/* Attach the peer's ring @r as @c's rx ring; 0 or -EPROTO. */
static int vmcf_attach_rx(struct vmcf_peer *p, struct vmcf_conn *c,
			  const struct vmc_ring_ref *r)
{
	u32 slot = le32_to_cpu(r->slot), page = le32_to_cpu(r->page);
	u32 pages = le32_to_cpu(r->pages), tcp_slots = p->rpool_slots;

	/* The layout is fixed by HELLO: anything else is a lie. */
	if (p->peer_features & VMC_FEAT_UDP)
		tcp_slots = tcp_slots > VMC_DGRAM_SLOTS ?
			    tcp_slots - VMC_DGRAM_SLOTS : 0;
	if (vmc_ring_ref_in_pool(r, p->rpool_hdr, p->rring_pages, tcp_slots,
				 VMC_RING_MAX_SLOTS))
		return -EPROTO;
	if (vmc_ring_init(&c->rx, vmcf_slot_hdr(p->rpool, slot),
			  p->rpool + page * PAGE_SIZE, pages * PAGE_SIZE, false))
		return -EPROTO;
	vmc_ring_cons_ask(&c->rx, 1);	/* the first byte wakes us */
	return 0;
}

/* Wake whoever sleeps on @sk, for a change of state. */
static void vmcf_wake(struct sock *sk)
{
	if (sk) {
		sk->sk_state_change(sk);
		sk->sk_write_space(sk);
	}
}

static void vmcf_send_close(struct vmcf_peer *p, struct vmcf_conn *c, u32 how);
static void vmcf_send_refuse(struct vmcf_peer *p, u32 conn, u32 reason);

/*
 * A call that began in our functions finds the socket given back to TCP
 * (or never found it ours: it raced with that).  Nothing was moved yet, so
 * the system call restarts, as after a signal with no handler, and this
 * time enters TCP's own functions.  None of ours ever sleeps inside TCP's:
 * module unload waits for no blocked reader.
 */
static int vmcf_restart(void)
{
	set_thread_flag(TIF_NOTIFY_SIGNAL);
	return -ERESTARTSYS;
}

/*
 * Only a task that returns to user space restarts a call: kernel threads
 * (nbd, iSCSI on a user-made socket) and io_uring workers never clear the
 * flag; they call TCP's function from ours instead (counted for unload).
 */
static bool vmcf_can_restart(void)
{
	return !(current->flags & (PF_KTHREAD | PF_IO_WORKER));
}

/* The conn of a socket we took, with a reference; NULL if none. */
static struct vmcf_conn *vmcf_conn_get(const struct sock *sk)
{
	struct vmcf_conn *c;

	rcu_read_lock();
	c = vmcf_conn_of(sk);
	if (c && !refcount_inc_not_zero(&c->ref))
		c = NULL;
	rcu_read_unlock();
	return c;
}

/*
 * Forget given-back connections whose socket is closed (all: every one).
 * Returns whether any given-back connection is left.
 */
static bool vmcf_hist_reap(bool all)
{
	struct vmcf_conn *c, *tmp;
	bool left = false;
	LIST_HEAD(done);

	spin_lock_bh(&vmcf_conn_hash_lock);
	list_for_each_entry_safe(c, tmp, &vmcf_conn_all, anode) {
		if (!c->hist_sk)
			continue;
		if (all || sock_flag(c->hist_sk, SOCK_DEAD))
			list_move(&c->anode, &done);
		else
			left = true;
	}
	spin_unlock_bh(&vmcf_conn_hash_lock);
	list_for_each_entry_safe(c, tmp, &done, anode) {
		list_del(&c->anode);
		sock_put(c->hist_sk);
		vmcf_conn_put(c);
	}
	return left;
}

/*
 * Every VMCF_HIST_PERIOD while given-back connections are listed: a closed
 * socket is let go even if nothing else is given back and nobody reads
 * /proc (a socket pinned for a listing is memory only, but without this
 * it stayed pinned for as long as the module was loaded).  It stops by
 * itself once none is left; unload cancels it after its last reap.
 * Deferrable: it never wakes an idle vCPU for this.
 */
static void vmcf_hist_tick(struct work_struct *work)
{
	if (vmcf_hist_reap(false))
		schedule_delayed_work(&vmcf_hist_work, VMCF_HIST_PERIOD);
}

/*
 * Change @c's state once its socket is visible; any context (the TCP
 * probe runs in softirq).  poll() and sock_is_readable() read the state
 * and then write ring headers, without the socket lock, as tcp_poll():
 * they do so under poll_lock, so that once this returns none of them
 * still acts on the old state.  A change out of RING must therefore come
 * before the message or vmcf_slot_put() that lets either side give the
 * slot to a new connection of the pair: a late store of ours would land
 * in that connection's header and could undo a request its sleeper made.
 */
static void vmcf_conn_set_state(struct vmcf_conn *c, enum vmcf_conn_state st)
{
	spin_lock_bh(&c->poll_lock);
	WRITE_ONCE(c->state, st);
	spin_unlock_bh(&c->poll_lock);
}

/*
 * Give the socket back to TCP's own functions; socket lock held (or the
 * socket not yet visible).  The socket's reference on @c moves to the
 * /proc listing, dropped once the socket is closed.  Our ring slot goes
 * back with @free_slot, when the peer reads it no more (it answered, is
 * gone, or sent the CLOSE); otherwise its CLOSE, REFUSE or answer to our
 * REVERT frees it later (vmcf_zombie_done()).
 */
static void vmcf_untake(struct vmcf_conn *c, bool free_slot)
{
	struct sock *sk = c->sk;
	struct socket *sock;
	struct vmcf_peer *p;
	bool put = false;
	int fam;

	/*
	 * Already detached (vmcf_destroy(): closed, or a child its listener
	 * destroyed before accept()) while a caller waited for the lock.
	 */
	if (!sk)
		return;
	sock = sk->sk_socket;
	fam = vmcf_fam(sk);
	WRITE_ONCE(sk->sk_prot, c->orig_prot);
	if (sock && READ_ONCE(sock->ops) == &vmcf_ops[fam])
		WRITE_ONCE(sock->ops, vmcf_base_ops[fam]);
	spin_lock_bh(&vmcf_conn_hash_lock);
	hash_del_rcu(&c->hnode);
	c->hist_sk = sk;
	spin_unlock_bh(&vmcf_conn_hash_lock);
	/* The peer is freed only an RCU grace period after it let go of c. */
	rcu_read_lock();
	p = READ_ONCE(c->peer);
	if (p) {
		spin_lock_bh(&p->conn_lock);
		list_del_init(&c->wnode);
		list_del_init(&c->pnode);
		if (free_slot && c->peer == p)
			put = vmcf_slot_put(p, c);
		WRITE_ONCE(c->sk, NULL);
		/* Not in p's lists: its teardown could not clear this later. */
		if (c->slot < 0)
			WRITE_ONCE(c->peer, NULL);
		spin_unlock_bh(&p->conn_lock);
	}
	WRITE_ONCE(c->sk, NULL);
	rcu_read_unlock();
	kvfree(c->drain);
	c->drain = NULL;
	if (put)
		vmcf_conn_put(c);
	vmcf_wake(sk);
	if (vmcf_hist_reap(false))
		schedule_delayed_work(&vmcf_hist_work, VMCF_HIST_PERIOD);
}

/*
 * An OFFER waiting for a TCP send to end (WAITING) on a connection that
 * will never take it: its sender must hear no, or after
 * VMCF_OFFER_TIMEOUT it takes the whole channel for broken.
 */
static void vmcf_refuse_deferred(struct vmcf_conn *c)
{
	if (c->deferred && c->peer)
		vmcf_send_refuse(c->peer, le32_to_cpu(c->deferred->conn),
				 VMC_R_UNSUPPORTED);
	kfree(c->deferred);
	c->deferred = NULL;
}

/*
 * Leave the ring for good (DEAD) and give the socket back to TCP; socket
 * lock held (or bh-locked: an unaccepted child).  DEAD comes first: the
 * CLOSE and the slot_put let either side reuse a ring.  With @tell, the
 * peer hears a CLOSE RST while we hold its ring: it resets its side, or,
 * if its own CLOSE came first, frees the slot it kept for our CLOSE.  Our
 * slot then stays while the peer may still read it (an ACCEPT on its way,
 * our REVERT not yet seen), but not once its CLOSE came: it stopped
 * reading before sending that.  Without @tell, the caller knows the peer
 * reads our ring no more (its CLOSE or answer came, or it is gone).
 */
static void vmcf_conn_drop(struct vmcf_conn *c, bool tell)
{
	vmcf_conn_set_state(c, VMCF_C_DEAD);
	vmcf_refuse_deferred(c);
	if (tell && c->peer && c->rx_attached)
		vmcf_send_close(c->peer, c, VMC_CLOSE_RST);
	vmcf_untake(c, !tell || c->peer_closed);
}

/*
 * End acceleration with an error the socket reports; socket lock held (or
 * bh-locked: a child not yet accepted, as inet_child_forget() disconnects
 * one).  With @tell, the peer hears it (CLOSE RST) and resets
 * its side too; TCP underneath is reset as well (it is frozen at the cut
 * and could not carry on), and the socket is TCP's again.
 */
static void vmcf_conn_kill(struct vmcf_conn *c, int err, const char *why,
			   bool tell)
{
	struct sock *sk = c->sk;

	if (!sk || c->state == VMCF_C_DEAD || c->state == VMCF_C_PASS)
		return;
	c->err = err;
	c->why = why;
	atomic_long_inc(&vmcf_resets);
	pr_warn_ratelimited("connection to peer %u reset: %s\n",
			    c->domid, why);
	vmcf_conn_drop(c, tell);
	/*
	 * As tcp_reset(): reads see the error once, then EOF; writes the
	 * error, or EPIPE once a read took it.  Not SOCK_DONE (a FIN's mark):
	 * tcp_recvmsg() checks it before sk_err and would return EOF first.
	 */
	tcp_disconnect(sk, 0);
	WRITE_ONCE(sk->sk_shutdown, SHUTDOWN_MASK);
	WRITE_ONCE(sk->sk_err, err);
	sk_error_report(sk);
}

/* Stay on TCP; socket lock held (or the socket not yet visible). */
static void vmcf_conn_pass(struct vmcf_conn *c, enum vmcf_fallback fb,
			   const char *why)
{
	vmcf_conn_set_state(c, VMCF_C_PASS);
	c->why = why;
	vmcf_count_fallback(fb);
	vmcf_refuse_deferred(c);
	if (c->fin_deferred) {
		c->fin_deferred = false;
		vmcf_tcp_base(c->sk)->shutdown(c->sk, SEND_SHUTDOWN);
	}
	vmcf_untake(c, true);
}

/* Tell the peer our socket is gone: it frees its ring for us. */
static void vmcf_send_close(struct vmcf_peer *p, struct vmcf_conn *c, u32 how)
{
	struct vmc_msg_conn_end m;

	vmc_msg_init(&m, VMC_MSG_CONN_CLOSE);
	m.conn = cpu_to_le32(c->peer_id);
	m.final = cpu_to_le32(c->tx.pos);
	m.how = cpu_to_le32(how);
	/*
	 * A hint for its writer, not once our REVERT went: its answer frees
	 * that ring, which may already carry a new connection of the pair.
	 * Its CLOSE, though, came before it saw our REVERT (after it, it
	 * sends none), and it keeps its slot for our CLOSE then.
	 */
	if (c->rx_attached && (!c->revert_sent || c->peer_closed))
		vmc_ring_set_closed(&c->rx);
	vmcf_send(p, &m);
}

static void vmcf_send_refuse(struct vmcf_peer *p, u32 conn, u32 reason)
{
	struct vmc_msg_conn_refuse m;

	vmc_msg_init(&m, VMC_MSG_CONN_REFUSE);
	m.conn = cpu_to_le32(conn);
	m.reason = cpu_to_le32(reason);
	vmcf_send(p, &m);
}

/*
 * Hand our ring's bytes from @from (the first one the peer did not read)
 * to TCP, which carries on from the cut; then the FIN that shutdown()
 * deferred.  Socket lock held; process context, or bh-locked with nothing
 * to send (a child not yet accepted: nobody wrote).  The bytes are ours (our
 * pool); only @from comes from the peer, and it must lie within the ring.
 */
static int vmcf_resend(struct sock *sk, struct vmcf_conn *c, u32 from)
{
	struct msghdr msg = { .msg_flags = MSG_DONTWAIT | MSG_NOSIGNAL };
	u32 left, seg, done, lowat;
	struct kvec iov[2];
	int n = 0, ret, sndbuf;
	bool shut;

	left = c->slot < 0 ? 0 : c->tx.pos - from;
	if (left > c->tx.size)
		return -EPROTO;
	if (left && !sk->sk_socket)
		return -ENOTCONN;	/* never accepted: nobody wrote */
	for (done = 0; done < left && n < 2; done += seg, n++) {
		iov[n].iov_base = vmc_ring_seg(&c->tx, from + done, left - done,
					       &seg);
		iov[n].iov_len = seg;
	}
	if (left) {
		/*
		 * At most one ring, in one call: room in the send buffer, no
		 * TCP_NOTSENT_LOWAT limit for it (both put back after), and
		 * the SEND_SHUTDOWN of a shutdown(WR) on the ring lifted: its
		 * FIN comes after these bytes.
		 */
		sndbuf = sk->sk_sndbuf;
		if (sk->sk_wmem_queued + 2 * left + SKB_TRUESIZE(PAGE_SIZE) >
		    sndbuf)
			WRITE_ONCE(sk->sk_sndbuf, sk->sk_wmem_queued + 2 * left +
				   SKB_TRUESIZE(PAGE_SIZE));
		lowat = tcp_sk(sk)->notsent_lowat;
		WRITE_ONCE(tcp_sk(sk)->notsent_lowat, UINT_MAX);
		shut = sk->sk_shutdown & SEND_SHUTDOWN;
		if (shut)
			WRITE_ONCE(sk->sk_shutdown, sk->sk_shutdown & ~SEND_SHUTDOWN);
		iov_iter_kvec(&msg.msg_iter, ITER_SOURCE, iov, n, left);
		ret = tcp_sendmsg_locked(sk, &msg, left);
		if (shut)
			WRITE_ONCE(sk->sk_shutdown, sk->sk_shutdown | SEND_SHUTDOWN);
		WRITE_ONCE(tcp_sk(sk)->notsent_lowat, lowat);
		if (sk->sk_sndbuf > sndbuf && !(sk->sk_userlocks & SOCK_SNDBUF_LOCK))
			WRITE_ONCE(sk->sk_sndbuf, max_t(int, sndbuf, sk->sk_wmem_queued));
		else if (sk->sk_userlocks & SOCK_SNDBUF_LOCK)
			WRITE_ONCE(sk->sk_sndbuf, sndbuf);
		if (ret != left)
			return ret < 0 ? ret : -ENOBUFS;
		atomic_long_add(left, &vmcf_resent_bytes);
	}
	if (c->fin_deferred)
		vmcf_tcp_base(sk)->shutdown(sk, SEND_SHUTDOWN);
	return 0;
}

/* The move back is complete: TCP carries both directions on. */
static void vmcf_reverted_to_tcp(struct sock *sk, struct vmcf_conn *c,
				 u32 from)
{
	int err = vmcf_resend(sk, c, from);

	if (err) {
		if (err == -EPROTO && c->peer)
			vmcf_peer_broken(c->peer, "REVERT beyond the ring");
		vmcf_conn_kill(c, ECONNRESET, err == -EPROTO ?
			       "peer's REVERT beyond the ring" :
			       "TCP refused the ring's bytes", false);
		return;
	}
	vmcf_conn_set_state(c, VMCF_C_PASS);
	atomic_long_inc(&vmcf_reverted);
	vmcf_untake(c, true);
}

/*
 * The peer will not hand its ring's bytes to TCP (gone, or its socket
 * closed): keep them, to be read after TCP's bytes up to the cut and
 * before any later ones.  Socket lock held, or bh-locked (a child not yet
 * accepted, vmcf_sock_lock()): then the copy is an atomic allocation.
 */
static void vmcf_drain(struct vmcf_conn *c, const char *why)
{
	long avail = c->rx_attached ? vmc_ring_avail(&c->rx) : 0;
	u32 done, seg;
	u8 *buf = NULL;

	if (avail < 0) {
		vmcf_conn_kill(c, ECONNRESET, "corrupt ring index", true);
		return;
	}
	if (avail) {
		buf = kvmalloc(avail, gfp_any() | __GFP_NOWARN);
		if (!buf) {
			vmcf_conn_kill(c, ECONNRESET, "no memory to save the ring",
				       true);
			return;
		}
		for (done = 0; done < avail; done += seg)
			memcpy(buf + done, vmc_ring_seg(&c->rx, c->rx.pos + done,
							avail - done, &seg),
			       seg);
	}
	c->drain = buf;
	c->drain_len = avail;
	c->drain_off = 0;
	c->why = why;
	atomic_long_inc(&vmcf_drained);
	if (c->fin_deferred)
		vmcf_tcp_base(c->sk)->shutdown(c->sk, SEND_SHUTDOWN);
	c->fin_deferred = false;
	vmcf_conn_set_state(c, VMCF_C_DRAIN);
	/*
	 * Its socket is gone and we read its ring no more: it may free it
	 * (after DRAIN, which ends poll()'s stores into it).
	 */
	if (c->peer && c->peer_closed && c->rx_attached &&
	    !READ_ONCE(c->peer->closing))
		vmcf_send_close(c->peer, c, VMC_CLOSE_FIN);
	WRITE_ONCE(c->rx_attached, false);
	if (!avail) {
		vmcf_conn_set_state(c, VMCF_C_PASS);
		vmcf_untake(c, true);
		return;
	}
	vmcf_wake(c->sk);
}

/*
 * Start moving @c back to TCP; socket lock held (or bh-locked: a child
 * not yet accepted, vmcf_sock_lock()).  We stop reading the peer's ring
 * and tell it where (REVERT); its answer says where it stopped reading
 * ours.  Each side then hands its own unread ring bytes to TCP.
 */
static void vmcf_revert_start(struct vmcf_conn *c, const char *why)
{
	struct vmc_msg_conn_end m;

	if (c->state != VMCF_C_RING)
		return;
	if (c->peer_closed) {
		vmcf_drain(c, why);	/* its socket is gone: it cannot */
		return;
	}
	vmc_msg_init(&m, VMC_MSG_CONN_REVERT);
	m.conn = cpu_to_le32(c->peer_id);
	m.final = cpu_to_le32(c->rx.pos);
	/* Before the REVERT: the peer's answer frees the ring we read. */
	vmcf_conn_set_state(c, VMCF_C_REVERTING);
	if (!vmcf_send_at(c->peer, &m, &c->revert_end)) {
		vmcf_conn_kill(c, ECONNRESET, "cannot send REVERT", true);
		return;
	}
	c->revert_sent = true;
	c->why = why;
	c->revert_at = jiffies;
	/* Its expiry; never re-armed once the channel's teardown began. */
	if (!READ_ONCE(c->peer->closing))
		queue_delayed_work(vmcf_wq, &c->peer->tick,
				   VMCF_REVERT_TIMEOUT + 1);
	vmcf_wake(c->sk);
}

/*
 * Accept side: the OFFER for WAITING @c came.  Cut our TCP writes at
 * write_seq, answer with our ring and the proof.  Socket lock held, or the
 * child socket not yet accepted (softirq, bh-locked).
 */
static void vmcf_accept(struct vmcf_conn *c, const struct vmc_msg_conn_offer *o)
{
	struct vmcf_peer *p = c->peer;
	struct vmc_msg_conn_accept m;
	int err;

	if (c->sk->sk_shutdown & SEND_SHUTDOWN) {
		/* Its FIN went on TCP: nothing may follow it on a ring. */
		vmcf_send_refuse(p, le32_to_cpu(o->conn), VMC_R_UNSUPPORTED);
		vmcf_conn_pass(c, VMCF_FB_SOCKET, "shut down before the offer");
		return;
	}
	spin_lock_bh(&p->conn_lock);
	list_del_init(&c->wnode);
	err = vmcf_slot_get(p, c);
	spin_unlock_bh(&p->conn_lock);
	if (err) {
		vmcf_send_refuse(p, le32_to_cpu(o->conn), VMC_R_NO_MEMORY);
		vmcf_conn_pass(c, VMCF_FB_NO_SLOT, "no ring slot");
		return;
	}
	if (vmcf_attach_rx(p, c, &o->ring)) {
		vmcf_send_refuse(p, le32_to_cpu(o->conn), VMC_R_PROTO);
		vmcf_conn_pass(c, VMCF_FB_REFUSED, "bad ring in offer");
		return;
	}
	c->peer_id = le32_to_cpu(o->conn);
	c->rx_cut = le32_to_cpu(o->seq_cut);
	/* Pairs with the acquire in vmcf_conn_moved(): rx set up first. */
	smp_store_release(&c->rx_attached, true);
	vmc_msg_init(&m, VMC_MSG_CONN_ACCEPT);
	m.conn = o->conn;
	m.peer_conn = cpu_to_le32(c->id);
	vmcf_ring_ref(p, c, &m.ring);
	m.seq_cut = cpu_to_le32(READ_ONCE(tcp_sk(c->sk)->write_seq));
	m.isn_offerer = cpu_to_le32(c->isn_remote);
	m.isn_accepter = cpu_to_le32(c->isn_local);
	if (!vmcf_send(p, &m)) {
		vmcf_conn_pass(c, VMCF_FB_CTRL_FULL, "control ring full");
		return;
	}
	vmcf_conn_set_state(c, VMCF_C_RING);
	c->why = NULL;
	atomic_long_inc(&vmcf_accelerated);
	vmcf_wake(c->sk->sk_socket ? c->sk : NULL);
}

/* The operator keeps this port on TCP (exclude_ports, read without lock). */
static bool vmcf_excluded(const struct vmc_tuple *t)
{
	unsigned int i, n = min_t(unsigned int, READ_ONCE(nr_exclude_ports),
				  ARRAY_SIZE(exclude_ports));
	u16 port;

	for (i = 0; i < n; i++) {
		port = READ_ONCE(exclude_ports[i]);
		if (port && (port == le16_to_cpu(t->lport) ||
			     port == le16_to_cpu(t->rport)))
			return true;
	}
	return false;
}

/*
 * The tracepoint: a TCP socket is about to become ESTABLISHED.  Softirq
 * (passive opens, most active opens) or process context (backlog), socket
 * locked either way.  Decides whether the socket is ours.
 */
static void vmcf_state_probe(void *data, const struct sock *csk,
			     const int oldstate, const int newstate)
{
	struct sock *sk = (struct sock *)csk;
	struct vmc_msg_conn_offer m;
	struct vmcf_pending *pend, *found = NULL;
	struct vmc_tuple t;
	struct vmcf_peer *p;
	struct vmcf_conn *c;
	int fam, err;

	if (newstate != TCP_ESTABLISHED || sk->sk_protocol != IPPROTO_TCP ||
	    (sk->sk_family != AF_INET && sk->sk_family != AF_INET6))
		return;
	vmcf_tuple_of(sk, &t);
	fam = vmcf_fam(sk);
	atomic_long_inc(&vmcf_tcp_seen);

	rcu_read_lock();
	c = NULL;
	p = vmcf_peer_by_addr(&t);
	/* Its address may be claimed; its host is what the route reaches. */
	if (p && !vmcf_route_direct(p, __sk_dst_get(sk), t.family, t.raddr))
		p = NULL;
	if (!p) {
		/* Not a co-resident peer: not ours (counted, not listed). */
		atomic_long_inc(&vmcf_tcp_not_peer);
		goto out_free;
	}
	if (!READ_ONCE(tcp)) {
		vmcf_count_fallback(VMCF_FB_DISABLED);
		goto out_free;
	}
	if (READ_ONCE(vmcf_draining)) {
		vmcf_count_fallback(VMCF_FB_DRAINING);
		goto out_free;
	}
	if (vmcf_excluded(&t)) {
		vmcf_count_fallback(VMCF_FB_EXCLUDED);
		goto out_free;
	}
	if (sk->sk_kern_sock || inet_csk(sk)->icsk_ulp_ops ||
	    tcp_sk(sk)->fastopen_rsk || tcp_sk(sk)->syn_data) {
		vmcf_count_fallback(VMCF_FB_SOCKET);
		goto out_free;
	}
	if (!vmcf_pair_ready(p)) {
		vmcf_count_fallback(VMCF_FB_NOT_READY);
		goto out_free;
	}
	/* Pairs with the release when the table is built below. */
	if (!smp_load_acquire(&vmcf_base_prot[fam]) &&
	    !strcmp(sk->sk_prot->name, "TCPv6")) {
		/* First IPv6 socket: build our table from its own. */
		spin_lock_bh(&vmcf_prot_lock);
		if (!vmcf_base_prot[fam]) {
			vmcf_prot[1] = *sk->sk_prot;
			vmcf_set_ops(&vmcf_prot[1]);
			/* Table complete before it is seen; pairs below. */
			smp_store_release(&vmcf_base_prot[1], sk->sk_prot);
		}
		spin_unlock_bh(&vmcf_prot_lock);
	}
	/* Not TCP's own table: sockmap, a ULP, something else.  Pairs above. */
	if (sk->sk_prot != smp_load_acquire(&vmcf_base_prot[fam])) {
		vmcf_count_fallback(VMCF_FB_SOCKET);
		goto out_free;
	}
	c = kzalloc(sizeof(*c), GFP_ATOMIC);
	if (!c) {
		vmcf_count_fallback(VMCF_FB_NO_MEMORY);
		goto out_free;
	}
	c->tuple = t;
	spin_lock_init(&c->poll_lock);
	refcount_set(&c->ref, 1);	/* the socket's reference */
	atomic_inc(&vmcf_conns);
	INIT_LIST_HEAD(&c->wnode);
	INIT_LIST_HEAD(&c->pnode);
	INIT_LIST_HEAD(&c->rnode);
	c->sk = sk;
	c->peer = p;
	c->domid = p->domid;
	c->slot = -1;
	c->orig_prot = sk->sk_prot;
	/* Both ISNs, as proof later: SYN and SYN-ACK are acked by now. */
	c->isn_local = READ_ONCE(tcp_sk(sk)->snd_una) - 1;
	c->isn_remote = READ_ONCE(tcp_sk(sk)->rcv_nxt) - 1;
	c->active = oldstate == TCP_SYN_SENT;
	sock_hold(sk);

	spin_lock_bh(&p->conn_lock);
	if (p->closing) {
		spin_unlock_bh(&p->conn_lock);
		sock_put(sk);
		atomic_dec(&vmcf_conns);
		vmcf_count_fallback(VMCF_FB_NOT_READY);
		goto out_free;
	}
	list_add_tail(&c->pnode, &p->attached);
	if (c->active) {
		err = vmcf_slot_get(p, c);
		c->state = VMCF_C_OFFERED;
	} else {
		err = 0;
		c->state = VMCF_C_WAITING;
		c->why = "waiting for the peer's offer";
		list_add_tail(&c->wnode, &p->waiting);
		list_for_each_entry(pend, &p->pending, list) {
			if (pend->offer.tuple.lport == c->tuple.rport &&
			    pend->offer.tuple.rport == c->tuple.lport &&
			    !memcmp(pend->offer.tuple.laddr, c->tuple.raddr, 16) &&
			    !memcmp(pend->offer.tuple.raddr, c->tuple.laddr, 16)) {
				list_del(&pend->list);
				p->nr_pending--;
				found = pend;
				break;
			}
		}
	}
	spin_unlock_bh(&p->conn_lock);

	spin_lock_bh(&vmcf_conn_hash_lock);
	hash_add_rcu(vmcf_conn_hash, &c->hnode, (unsigned long)sk);
	list_add_tail(&c->anode, &vmcf_conn_all);
	spin_unlock_bh(&vmcf_conn_hash_lock);
	WRITE_ONCE(sk->sk_prot, &vmcf_prot[fam]);

	if (c->active) {
		if (err) {
			vmcf_conn_pass(c, VMCF_FB_NO_SLOT, "no ring slot");
			goto out;
		}
		vmc_msg_init(&m, VMC_MSG_CONN_OFFER);
		m.conn = cpu_to_le32(c->id);
		m.tuple = c->tuple;
		vmcf_ring_ref(p, c, &m.ring);
		m.seq_cut = cpu_to_le32(READ_ONCE(tcp_sk(sk)->write_seq));
		c->why = "waiting for the peer's answer";
		c->offered_at = jiffies;
		if (!vmcf_send(p, &m))
			vmcf_conn_pass(c, VMCF_FB_CTRL_FULL, "control ring full");
		else
			vmcf_tick_soon(p);	/* it watches the answer's time */
	} else if (found) {
		vmcf_accept(c, &found->offer);
		kfree(found);
	}
out:
	rcu_read_unlock();
	return;
out_free:
	rcu_read_unlock();
	kfree(c);
}

/* The socket is gone (close, destroy): TCP's functions back; socket locked. */
static void vmcf_detach(struct sock *sk, struct vmcf_conn *c)
{
	struct vmcf_peer *p;
	bool put;

	spin_lock_bh(&vmcf_conn_hash_lock);
	hash_del_rcu(&c->hnode);
	list_del(&c->anode);
	spin_unlock_bh(&vmcf_conn_hash_lock);
	WRITE_ONCE(sk->sk_prot, c->orig_prot);
	/* The peer is freed only an RCU grace period after it let go of c. */
	rcu_read_lock();
	p = READ_ONCE(c->peer);
	put = false;
	if (p) {
		spin_lock_bh(&p->conn_lock);
		list_del_init(&c->wnode);
		list_del_init(&c->pnode);
		WRITE_ONCE(c->sk, NULL);
		/* The peer closed first, or never got the ring: nobody reads it. */
		if ((c->peer_closed || (c->state != VMCF_C_RING &&
					c->state != VMCF_C_OFFERED &&
					c->state != VMCF_C_REVERTING)) &&
		    c->peer == p)
			put = vmcf_slot_put(p, c);
		spin_unlock_bh(&p->conn_lock);
	}
	WRITE_ONCE(c->sk, NULL);
	rcu_read_unlock();
	sock_put(sk);
	if (put)
		vmcf_conn_put(c);
	vmcf_conn_put(c);
}

/* ---- TCP: the overridden operations ---- */

/*
 * How many TCP bytes may be read now: those before the peer's cut while
 * its ring (or what we saved of it) comes next; all of them otherwise.
 */
static u32 vmcf_tcp_room(struct sock *sk, struct vmcf_conn *c)
{
	u32 seq = READ_ONCE(tcp_sk(sk)->copied_seq);

	enum vmcf_conn_state st = READ_ONCE(c->state);

	/*
	 * Moving back (REVERTING): the peer's ring bytes from where we
	 * stopped come next, on TCP once it answers, or saved if it closed
	 * instead: nothing after the cut may be read (nor its FIN taken for
	 * EOF) before the state says which.
	 */
	if (st == VMCF_C_DRAIN || ((st == VMCF_C_RING || st == VMCF_C_REVERTING) &&
				   READ_ONCE(c->rx_attached)))
		return before(seq, c->rx_cut) ? c->rx_cut - seq : 0;
	return U32_MAX;
}

/*
 * Is there something to read before TCP's error?  tcp_recvmsg() returns
 * what was queued before a RST, then the FIN's EOF, and only then the
 * error; the ring's bytes and its EOF are all from before the cut, so
 * before any RST of TCP's.  One comes even from a peer that closed
 * cleanly: its socket may go at once when tcp_max_tw_buckets is reached,
 * and our TCP's next ACK or keepalive is answered with a RST.  Socket
 * lock held; @room as vmcf_tcp_room() (TCP's bytes before the cut first).
 */
static bool vmcf_rx_before_err(struct vmcf_conn *c, u32 room)
{
	if (room)
		return false;
	if (c->state == VMCF_C_DRAIN)
		return c->drain_off < c->drain_len;
	/* A corrupt index (avail < 0) counts: the ring path resets. */
	return c->state == VMCF_C_RING &&
	       (vmc_ring_avail(&c->rx) != 0 || vmc_ring_peer_eof(&c->rx));
}

/*
 * poll(): TCP's bytes before the cut still owed, to be waited for alone.
 * Only with SO_RCVLOWAT 1 does TCP wake a poller on the first of them
 * (tcp_data_ready()); with a higher mark poll() reports what follows the
 * cut as before, so that a poller may retry until they come (recvmsg()
 * answers EAGAIN meanwhile) but never sleeps past them.
 */
static bool vmcf_cut_owed(struct sock *sk, struct vmcf_conn *c)
{
	return vmcf_tcp_room(sk, c) && READ_ONCE(sk->sk_rcvlowat) <= 1;
}

/*
 * Wake-up conditions; sk_wait_event() evaluates them also without the
 * socket lock, so ring memory is looked at only under RCU (channel
 * teardown marks sockets, then waits a grace period before unmapping).
 */
static bool vmcf_rx_wakeup(struct sock *sk, struct vmcf_conn *c)
{
	enum vmcf_conn_state st = READ_ONCE(c->state);
	bool ret;
	u32 room;

	if (READ_ONCE(c->sk) != sk || READ_ONCE(sk->sk_err))
		return true;
	/*
	 * What recvmsg() reads next: TCP's bytes up to the cut, then the
	 * ring's (RING) or the saved ones (DRAIN).  While TCP's are owed
	 * and not come, only they (or a new state) end the wait: were the
	 * ring's or the saved bytes enough, the reader would spin until
	 * TCP's came (a segment before the cut lost and resent, or still in
	 * flight from a peer now gone).
	 */
	room = vmcf_tcp_room(sk, c);
	if (room)
		return READ_ONCE(c->state) != st || tcp_inq(sk) > 0 ||
		       (READ_ONCE(sk->sk_shutdown) & RCV_SHUTDOWN);
	if (st == VMCF_C_DRAIN)
		return true;
	if (st == VMCF_C_REVERTING)
		return READ_ONCE(c->state) != st;
	if ((READ_ONCE(sk->sk_shutdown) & RCV_SHUTDOWN) || tcp_inq(sk) > 0)
		return true;
	rcu_read_lock();
	ret = st == VMCF_C_RING && READ_ONCE(c->rx_attached) &&
	      READ_ONCE(c->state) == VMCF_C_RING &&
	      (vmc_ring_avail_peek(&c->rx) != 0 || vmc_ring_peer_eof(&c->rx));
	rcu_read_unlock();
	return ret;
}

static bool vmcf_tx_wakeup(struct sock *sk, struct vmcf_conn *c)
{
	enum vmcf_conn_state st = READ_ONCE(c->state);
	bool ret;

	if (READ_ONCE(c->sk) != sk ||
	    (st != VMCF_C_RING && st != VMCF_C_OFFERED &&
	     st != VMCF_C_REVERTING) ||
	    READ_ONCE(sk->sk_err) || READ_ONCE(c->peer_closed))
		return true;
	rcu_read_lock();
	ret = st == VMCF_C_RING && READ_ONCE(c->state) == VMCF_C_RING &&
	      (vmc_ring_space_peek(&c->tx) != 0 ||
	       vmc_ring_peer_closed(&c->tx));
	rcu_read_unlock();
	return ret;
}

/* Room in TCP's send buffer, or anything that ends the wait for it. */
static bool vmcf_tcp_wakeup(struct sock *sk, struct vmcf_conn *c)
{
	enum vmcf_conn_state st = READ_ONCE(c->state);

	return READ_ONCE(c->sk) != sk ||
	       (st != VMCF_C_WAITING && st != VMCF_C_DRAIN) ||
	       READ_ONCE(sk->sk_err) ||
	       (READ_ONCE(sk->sk_shutdown) & SEND_SHUTDOWN) ||
	       sk_stream_memory_free(sk);
}

/*
 * The event indices of a connection's rings have two writers: its reader
 * and writer (socket lock) and poll()/sock_is_readable() (poll_lock only,
 * as tcp_poll()).  Their requests are serialised under poll_lock: a poll
 * that read our position before we moved it must not store its request
 * after ours, behind where we now wait, and lose our sleeper's event.
 */
static long vmcf_rx_wait(struct vmcf_conn *c, bool drained)
{
	long avail;

	spin_lock_bh(&c->poll_lock);
	if (drained)
		vmc_ring_cons_drained(&c->rx);
	avail = vmc_ring_cons_wait(&c->rx);
	spin_unlock_bh(&c->poll_lock);
	return avail;
}

/* The reader took all it saw: vmc_ring_cons_drained(), as above. */
static bool vmcf_rx_drained(struct vmcf_conn *c)
{
	long avail;

	/*
	 * Most reads: no edge-triggered poller asked for every commit, and
	 * there is nothing to stop; vmc_ring_cons_drained() looks at the
	 * same flag first, without the lock.  Pairs with the release in
	 * vmc_ring_cons_every().
	 */
	if (!smp_load_acquire(&c->rx.every))
		return false;
	spin_lock_bh(&c->poll_lock);
	avail = vmc_ring_cons_drained(&c->rx);
	spin_unlock_bh(&c->poll_lock);
	return avail > 0;
}

static long vmcf_tx_wait(struct vmcf_conn *c, u32 want)
{
	long space;

	spin_lock_bh(&c->poll_lock);
	space = vmc_ring_prod_wait(&c->tx, want);
	spin_unlock_bh(&c->poll_lock);
	return space;
}

/*
 * Busy polling, asked for as on TCP (SO_BUSY_POLL, or the net.core.busy_read
 * sysctl when the socket was made): spin on the ring up to sk_ll_usec
 * before asking for an event and sleeping.  TCP spins on a NIC's queue;
 * we spin on the peer's commits.  Until the reader asks for an event
 * (vmc_ring_cons_wait()), a commit sends none, so an answer that comes
 * within the budget costs neither side a hypercall and this side no
 * halted-vCPU wake-up, which is most of a round trip between DomUs.
 * Socket lock not held, as tcp_recvmsg()'s sk_busy_loop(): the ring is
 * looked at only through vmcf_rx_wakeup() (under RCU).
 */
static void vmcf_busy_poll(struct sock *sk, struct vmcf_conn *c)
{
#ifdef CONFIG_NET_RX_BUSY_POLL
	unsigned long start = busy_loop_current_time();

	while (!vmcf_rx_wakeup(sk, c)) {
		if (need_resched() || signal_pending(current) ||
		    sk_busy_loop_timeout(sk, start))
			return;
		cpu_relax();
	}
	atomic_long_inc(&vmcf_busy_poll_hits);
#endif
}

static int vmcf_do_recvmsg(struct sock *sk, struct msghdr *msg, size_t len,
			   int flags, int *addr_len)
{
	DEFINE_WAIT_FUNC(wait, woken_wake_function);
	const struct proto *base = vmcf_tcp_base(sk);
	struct vmcf_conn *c;
	int copied = 0, ret, target;
	u32 seg, n, done, got, room;
	bool notify, fault = false, to_tcp = false, polled = false;
	long timeo, avail, slice, left;
	u8 *ptr;

	/* Urgent data and the error queue never use a ring. */
	if (flags & (MSG_ERRQUEUE | MSG_OOB))
		return base->recvmsg(sk, msg, len, flags, addr_len);
	c = vmcf_conn_get(sk);
	if (!c) {
		if (vmcf_can_restart())
			return vmcf_restart();
		return base->recvmsg(sk, msg, len, flags, addr_len);
	}

	lock_sock(sk);
	timeo = sock_rcvtimeo(sk, flags & MSG_DONTWAIT);
	target = sock_rcvlowat(sk, flags & MSG_WAITALL, len);
	while (copied < len) {
		if (c->sk != sk) {
			/* TCP's again: the rest comes from TCP's recvmsg. */
			if (!copied && vmcf_can_restart())
				copied = vmcf_restart();
			else if (!copied)
				to_tcp = true;
			break;
		}
		/* TCP first: what the peer sent before its cut, or all. */
		room = vmcf_tcp_room(sk, c);
		if (room && tcp_inq(sk) > 0) {
			n = min_t(size_t, len - copied, room);
			release_sock(sk);
			ret = base->recvmsg(sk, msg, n,
					    (flags & ~MSG_WAITALL) | MSG_DONTWAIT,
					    addr_len);
			lock_sock(sk);
			if (ret > 0) {
				copied += ret;
				/*
				 * Up to the cut: what follows it (ring, saved
				 * bytes) comes in this call too, as TCP gives
				 * all it has: an edge-triggered reader may
				 * take a short read for "nothing left".
				 */
				if ((flags & MSG_PEEK) ||
				    (copied >= target && (u32)ret < room))
					break;
				continue;
			}
			if (ret < 0 && ret != -EAGAIN) {
				if (!copied)
					copied = ret;
				break;
			}
		}
		if (c->state == VMCF_C_RING && !room && tcp_inq(sk) > 0) {
			vmcf_conn_kill(c, ECONNRESET, "TCP data after the cut", true);
			continue;
		}
		if (sk->sk_err && !vmcf_rx_before_err(c, room)) {
			if (!copied)
				copied = sock_error(sk);
			break;
		}
		if (room) {
			if (sk->sk_shutdown & RCV_SHUTDOWN)
				break;		/* TCP's EOF */
			goto wait;
		}
		if (c->state == VMCF_C_DRAIN) {
			/* What the peer left in its ring, then TCP again. */
			n = min_t(size_t, c->drain_len - c->drain_off,
				  len - copied);
			got = copy_to_iter(c->drain + c->drain_off, n,
					   &msg->msg_iter);
			if (!(flags & MSG_PEEK)) {
				c->drain_off += got;
				c->rx_bytes += got;
			}
			copied += got;
			if (got != n) {
				if (!copied)
					copied = -EFAULT;
				break;
			}
			if (c->drain_off == c->drain_len) {
				vmcf_conn_set_state(c, VMCF_C_PASS);
				vmcf_untake(c, true);
			}
			if ((flags & MSG_PEEK) || copied >= target)
				break;
			continue;
		}
		/* Moving back: nothing but TCP before the cut until it is done. */
		if (c->state != VMCF_C_RING)
			goto wait;
		/* Then the ring. */
		avail = vmc_ring_avail(&c->rx);
		if (avail < 0) {
			vmcf_conn_kill(c, ECONNRESET, "corrupt ring index", true);
			continue;
		}
		if (avail > 0) {
			n = min_t(size_t, avail, len - copied);
			/* A peek returns all it sees, as TCP's does. */
			if (!(flags & MSG_PEEK))
				n = min_t(u32, n, VMCF_CHUNK(&c->rx));
			for (done = 0; done < n; done += got) {
				ptr = vmc_ring_seg(&c->rx, c->rx.pos + done,
						   n - done, &seg);
				got = copy_to_iter(ptr, seg, &msg->msg_iter);
				if (got != seg) {
					done += got;
					fault = true;
					break;
				}
			}
			if (!(flags & MSG_PEEK) && done) {
				notify = vmc_ring_consume(&c->rx, done);
				c->rx_bytes += done;
				if (notify && c->peer)
					vmcf_notify(c->peer);
				/*
				 * All we saw: stop poll()'s per-commit events.
				 * Data committed meanwhile may have sent none:
				 * its edge is ours to give.
				 */
				if (done == avail && vmcf_rx_drained(c)) {
					vmc_ring_cons_every(&c->rx);
					sk->sk_data_ready(sk);
				}
			}
			copied += done;
			if (fault) {
				if (!copied)
					copied = -EFAULT;
				break;
			}
			/* A chunk of what we saw: the rest too, as TCP would. */
			if ((flags & MSG_PEEK) ||
			    (copied >= target && done == avail))
				break;
			continue;
		}
		if (vmc_ring_peer_eof(&c->rx) && vmc_ring_avail(&c->rx) == 0)
			break;		/* EOF after every byte */
		if (sk->sk_shutdown & RCV_SHUTDOWN)
			break;		/* shut for reading */
wait:
		if (copied >= target)
			break;
		if (!timeo) {
			/*
			 * poll()/epoll users wait for the next byte; one that
			 * came while we looked is read now, or its commit
			 * (which saw no request) leaves them waiting forever.
			 */
			if (c->state == VMCF_C_RING && !room &&
			    vmcf_rx_wait(c, true) != 0)
				continue;
			if (!copied)
				copied = -EAGAIN;
			break;
		}
		if (signal_pending(current)) {
			if (!copied)
				copied = sock_intr_errno(timeo);
			break;
		}
		if (c->state == VMCF_C_RING && !room) {
			/* Once a call, if asked: spin before the event. */
			if (!polled && sk_can_busy_loop(sk)) {
				polled = true;
				release_sock(sk);
				vmcf_busy_poll(sk, c);
				lock_sock(sk);
				continue;
			}
			/* Ask for an event, then look again before sleeping. */
			if (vmcf_rx_wait(c, false) != 0)
				continue;
		}
		add_wait_queue(sk_sleep(sk), &wait);
		if ((c->state == VMCF_C_RING || c->state == VMCF_C_DRAIN) &&
		    room && READ_ONCE(sk->sk_rcvlowat) > 1) {
			/*
			 * TCP's bytes before the cut wake no one until
			 * SO_RCVLOWAT of them came (tcp_data_ready()), and
			 * the ring's or our saved bytes after them may be
			 * here already: look every VMCF_CUT_LOOK too.
			 */
			slice = min_t(long, timeo, VMCF_CUT_LOOK);
			left = slice;
			sk_wait_event(sk, &left, vmcf_rx_wakeup(sk, c), &wait);
			if (timeo != MAX_SCHEDULE_TIMEOUT)
				timeo -= slice - left;
		} else {
			sk_wait_event(sk, &timeo, vmcf_rx_wakeup(sk, c),
				      &wait);
		}
		remove_wait_queue(sk_sleep(sk), &wait);
	}
	release_sock(sk);
	vmcf_conn_put(c);
	if (to_tcp)
		return base->recvmsg(sk, msg, len, flags, addr_len);
	return copied;
}

/* Every call that may sleep in our code is counted: unload waits for it. */
static int vmcf_recvmsg(struct sock *sk, struct msghdr *msg, size_t len,
			int flags, int *addr_len)
{
	int ret;

	atomic_inc(&vmcf_inside);
	ret = vmcf_do_recvmsg(sk, msg, len, flags, addr_len);
	atomic_dec(&vmcf_inside);
	return ret;
}

/*
 * TCP's sendmsg for a socket still ours (WAITING, DRAIN), without ever
 * sleeping inside it: MSG_DONTWAIT, and our own wait for room.  Socket
 * lock held; returns bytes sent, with *err 0 (go on) or the error that
 * ends the call (*raw: TCP's own, returned as it is).
 */
static size_t vmcf_tcp_send(struct sock *sk, struct vmcf_conn *c,
			    struct msghdr *msg, size_t size, long *timeo,
			    int *err, bool *raw)
{
	DEFINE_WAIT_FUNC(wait, woken_wake_function);
	const struct proto *base = vmcf_tcp_base(sk);
	unsigned int flags = msg->msg_flags;
	int ret;

	/* tcp_sendmsg() may still wait for its lock: an OFFER waits for it. */
	c->tcp_senders++;
	release_sock(sk);
	msg->msg_flags |= MSG_DONTWAIT;
	ret = base->sendmsg(sk, msg, size);
	msg->msg_flags = flags;
	lock_sock(sk);
	if (!--c->tcp_senders && c->deferred && c->state == VMCF_C_WAITING)
		vmcf_accept(c, c->deferred);
	if (!c->tcp_senders) {
		kfree(c->deferred);
		c->deferred = NULL;
	}
	*err = 0;
	if (ret > 0)
		return ret;
	if (ret < 0 && ret != -EAGAIN) {
		*err = ret;		/* TCP's own (it sent any SIGPIPE) */
		*raw = true;
		return 0;
	}
	if (!*timeo) {
		*err = -EAGAIN;
		return 0;
	}
	if (signal_pending(current)) {
		*err = sock_intr_errno(*timeo);
		return 0;
	}
	set_bit(SOCK_NOSPACE, &sk->sk_socket->flags);
	add_wait_queue(sk_sleep(sk), &wait);
	sk_wait_event(sk, timeo, vmcf_tcp_wakeup(sk, c), &wait);
	remove_wait_queue(sk_sleep(sk), &wait);
	return 0;
}

static int vmcf_do_sendmsg(struct sock *sk, struct msghdr *msg, size_t size)
{
	DEFINE_WAIT_FUNC(wait, woken_wake_function);
	const struct proto *base = vmcf_tcp_base(sk);
	struct vmcf_conn *c;
	u32 seg, n, done, got;
	size_t copied = 0;
	bool notify, raw = false, to_tcp = false;
	long timeo, space;
	int err = 0;
	u8 *ptr;

	c = vmcf_conn_get(sk);
	if (!c) {
		if (vmcf_can_restart())
			return vmcf_restart();
		return base->sendmsg(sk, msg, size);
	}

	lock_sock(sk);
	timeo = sock_sndtimeo(sk, msg->msg_flags & MSG_DONTWAIT);
	while (copied < size) {
		if (c->sk != sk) {
			if (!copied && vmcf_can_restart()) {
				err = vmcf_restart();
				raw = true;
			} else if (!copied) {
				to_tcp = true;
			}
			break;
		}
		if (msg->msg_flags & MSG_OOB) {
			/* Urgent data has no ring: back to TCP first. */
			if (c->state == VMCF_C_WAITING) {
				vmcf_conn_pass(c, VMCF_FB_SOCKET, "MSG_OOB used");
				continue;
			}
			vmcf_revert_start(c, "MSG_OOB: moved back to TCP");
		}
		if (c->state == VMCF_C_WAITING || c->state == VMCF_C_DRAIN) {
			copied += vmcf_tcp_send(sk, c, msg, size - copied,
						&timeo, &err, &raw);
			if (err)
				break;
			continue;
		}
		if (sk->sk_err) {
			err = sock_error(sk);
			break;
		}
		if (sk->sk_shutdown & SEND_SHUTDOWN || c->peer_closed ||
		    (c->state == VMCF_C_RING && vmc_ring_peer_closed(&c->tx))) {
			err = -EPIPE;
			break;
		}
		space = c->state == VMCF_C_RING ? vmc_ring_space(&c->tx) : 0;
		if (space < 0) {
			vmcf_conn_kill(c, ECONNRESET, "corrupt ring index", true);
			continue;
		}
		if (space == 0) {
			/* Ask for room, then look again (also before EAGAIN). */
			if (c->state == VMCF_C_RING &&
			    vmcf_tx_wait(c, min_t(size_t, size - copied,
						  c->tx.size / 2)) > 0)
				continue;
			if (!timeo) {
				err = -EAGAIN;
				break;
			}
			if (signal_pending(current)) {
				err = sock_intr_errno(timeo);
				break;
			}
			add_wait_queue(sk_sleep(sk), &wait);
			sk_wait_event(sk, &timeo, vmcf_tx_wakeup(sk, c), &wait);
			remove_wait_queue(sk_sleep(sk), &wait);
			continue;
		}
		n = min_t(size_t, min_t(size_t, space, size - copied),
			  VMCF_CHUNK(&c->tx));
		for (done = 0; done < n; done += got) {
			ptr = vmc_ring_seg(&c->tx, c->tx.pos + done, n - done,
					   &seg);
			got = copy_from_iter(ptr, seg, &msg->msg_iter);
			if (got != seg) {
				done += got;
				err = -EFAULT;
				break;
			}
		}
		if (done) {
			notify = vmc_ring_produce(&c->tx, done);
			c->tx_bytes += done;
			copied += done;
			if (notify && c->peer)
				vmcf_notify(c->peer);
		}
		if (err)
			break;
	}
	release_sock(sk);
	vmcf_conn_put(c);
	if (to_tcp)
		return base->sendmsg(sk, msg, size);
	if (copied)
		return copied;
	if (raw)
		return err;
	return sk_stream_error(sk, msg->msg_flags, err);
}

static int vmcf_sendmsg(struct sock *sk, struct msghdr *msg, size_t size)
{
	int ret;

	atomic_inc(&vmcf_inside);
	ret = vmcf_do_sendmsg(sk, msg, size);
	atomic_dec(&vmcf_inside);
	return ret;
}

static bool vmcf_sock_is_readable(struct sock *sk)
{
	const struct proto *base = vmcf_tcp_base(sk);
	enum vmcf_conn_state st;
	struct vmcf_conn *c;
	bool ret = false;
	long avail;
	int lowat;

	/*
	 * Lockless, as tcp_poll(), but for poll_lock: the state is read,
	 * then the peer's ring header written, and a state change must not
	 * fall between the two (vmcf_conn_set_state()).
	 */
	rcu_read_lock();
	c = vmcf_conn_of(sk);
	if (c) {
		spin_lock_bh(&c->poll_lock);
		st = READ_ONCE(c->state);
		if ((st == VMCF_C_DRAIN ||
		     (st == VMCF_C_RING && READ_ONCE(c->rx_attached))) &&
		    vmcf_cut_owed(sk, c)) {
			/*
			 * Readable with any of TCP's bytes before the cut, as
			 * the reader gets what follows too; not with the
			 * ring's or the saved ones alone.
			 */
			ret = tcp_inq(sk) > 0;
		} else if (st == VMCF_C_DRAIN) {
			ret = true;		/* the saved bytes */
		} else if (st == VMCF_C_RING && READ_ONCE(c->rx_attached)) {
			/* As tcp_poll(): readable from SO_RCVLOWAT bytes on. */
			lowat = clamp_t(int, READ_ONCE(sk->sk_rcvlowat), 1,
					c->rx.size);
			avail = vmc_ring_avail_peek(&c->rx);
			ret = avail < 0 || avail >= lowat ||
			      vmc_ring_peer_eof(&c->rx);
			/*
			 * Not readable: ask for an event when it will be (a
			 * reader asleep in recvmsg() wants min(lowat, len)
			 * bytes: only a shorter read than SO_RCVLOWAT, polled
			 * at the same time from another thread, waits longer
			 * than it would on TCP).  Readable: vmcf_poll() asks
			 * for more for an edge-triggered waiter.
			 */
			if (!ret) {
				avail = vmc_ring_cons_ask(&c->rx, lowat);
				ret = avail < 0 || avail >= lowat;
			}
		}
		spin_unlock_bh(&c->poll_lock);
	}
	rcu_read_unlock();
	if (!ret && base->sock_is_readable)
		ret = base->sock_is_readable(sk);
	return ret;
}

static __poll_t vmcf_poll(struct file *file, struct socket *sock,
			  poll_table *wait)
{
	struct sock *sk = sock->sk;
	__poll_t mask = vmcf_base_ops[vmcf_fam(sk)]->poll(file, sock, wait);
	enum vmcf_conn_state st;
	struct vmcf_conn *c;
	bool wr_shut;
	long space = 1;

	rcu_read_lock();
	c = vmcf_conn_of(sk);
	if (!c) {
		rcu_read_unlock();
		return mask;
	}
	/* The state read, then ring headers written: as sock_is_readable(). */
	spin_lock_bh(&c->poll_lock);
	st = READ_ONCE(c->state);
	/* Our shutdown(WR) on the ring: TCP's SEND_SHUTDOWN is not set yet. */
	wr_shut = st != VMCF_C_PASS && READ_ONCE(c->fin_deferred);
	if (wr_shut)
		mask |= EPOLLOUT | EPOLLWRNORM;	/* as tcp_poll() after SHUT_WR */
	else if (st == VMCF_C_OFFERED || st == VMCF_C_REVERTING)
		space = 0;
	else if (st == VMCF_C_RING && READ_ONCE(c->slot) >= 0 &&
		 !READ_ONCE(c->peer_closed))
		space = vmc_ring_space_peek(&c->tx);
	if (space == 0) {
		/*
		 * tcp_poll() sees only TCP's empty send queue.  Ask the peer
		 * for an event when room appears; sk_stream_write_space()
		 * then wakes us with EPOLLOUT.
		 */
		set_bit(SOCK_NOSPACE, &sock->flags);
		if (st == VMCF_C_RING)
			space = vmc_ring_prod_ask(&c->tx, c->tx.size / 2);
		if (space == 0)
			mask &= ~(EPOLLOUT | EPOLLWRNORM);
	}
	if (st == VMCF_C_RING && READ_ONCE(c->rx_attached)) {
		/*
		 * The peer's shutdown(WR) is the ring's EOF (its FIN waits),
		 * after TCP's bytes before the cut.
		 */
		if (vmc_ring_peer_eof(&c->rx) && !vmcf_cut_owed(sk, c)) {
			mask |= EPOLLIN | EPOLLRDNORM | EPOLLRDHUP;
			if (wr_shut ||
			    (READ_ONCE(sk->sk_shutdown) & SEND_SHUTDOWN))
				mask |= EPOLLHUP;
		}
		/*
		 * An edge-triggered waiter (epoll's EPOLLET; io_uring's poll,
		 * edge-triggered unless IORING_POLL_ADD_LEVEL) that finds data
		 * unread wants a new edge for more, as TCP gives one per
		 * segment: ask for an event on every commit until the reader
		 * drains the ring (vmc_ring_cons_drained() in recvmsg()).  Not
		 * for level-triggered poll(), select() and epoll, which look
		 * again anyway: for them it would cost a cross-VM event per
		 * commit for nothing.
		 */
		if ((poll_requested_events(wait) & EPOLLET) &&
		    vmc_ring_avail_peek(&c->rx) > 0)
			vmc_ring_cons_every(&c->rx);
	}
	spin_unlock_bh(&c->poll_lock);
	rcu_read_unlock();
	return mask;
}

static void vmcf_shutdown(struct sock *sk, int how)
{
	struct vmcf_conn *c;
	enum vmcf_conn_state st;

	/* inet_shutdown() holds the socket lock. */
	rcu_read_lock();
	c = vmcf_conn_of(sk);
	rcu_read_unlock();
	st = c && c->sk == sk ? c->state : VMCF_C_PASS;
	if ((how & SEND_SHUTDOWN) && (st == VMCF_C_RING ||
				      st == VMCF_C_OFFERED ||
				      st == VMCF_C_REVERTING)) {
		/*
		 * EOF after every byte of the ring.  TCP's FIN waits for close
		 * or the move back to TCP: the ring's bytes may yet have to
		 * go to TCP, before it.
		 */
		if (st != VMCF_C_REVERTING) {
			vmc_ring_set_eof(&c->tx);
			if (c->peer)
				vmcf_notify(c->peer);
		}
		c->fin_deferred = true;
		return;
	}
	vmcf_tcp_base(sk)->shutdown(sk, how);
}

static void vmcf_close(struct sock *sk, long timeout)
{
	DEFINE_WAIT_FUNC(wait, woken_wake_function);
	const struct proto *base = vmcf_tcp_base(sk);
	long timeo = VMCF_REVERT_TIMEOUT;
	struct vmcf_conn *c;
	bool unread;

	atomic_inc(&vmcf_inside);	/* unload waits for base->close() */
	c = vmcf_conn_get(sk);
	if (c)
		WRITE_ONCE(c->closing, true);	/* see vmcf_release_cb() */
	lock_sock(sk);
	/* Moving back: its ring's bytes go to TCP first, FIN after them. */
	if (c && c->sk == sk && c->state == VMCF_C_REVERTING) {
		add_wait_queue(sk_sleep(sk), &wait);
		sk_wait_event(sk, &timeo, READ_ONCE(c->state) !=
			      VMCF_C_REVERTING, &wait);
		remove_wait_queue(sk_sleep(sk), &wait);
	}
	if (c && c->sk == sk) {
		if (c->state == VMCF_C_RING && c->peer) {
			/* Unread data: RST, as TCP does (zero linger forces it). */
			unread = tcp_inq(sk) > 0 || vmc_ring_avail(&c->rx) > 0;
			if (unread) {
				sock_set_flag(sk, SOCK_LINGER);
				sk->sk_lingertime = 0;
			} else if (c->slot >= 0) {
				vmc_ring_set_eof(&c->tx);
			}
			vmcf_send_close(c->peer, c, unread ? VMC_CLOSE_RST :
							      VMC_CLOSE_FIN);
			vmcf_notify(c->peer);
		} else if (c->state == VMCF_C_OFFERED && c->slot >= 0) {
			vmc_ring_set_eof(&c->tx);	/* ACCEPT finds the zombie */
		} else if (c->state == VMCF_C_DRAIN ||
			   c->state == VMCF_C_REVERTING) {
			sock_set_flag(sk, SOCK_LINGER);	/* unread, or stuck */
			sk->sk_lingertime = 0;
			if (c->state == VMCF_C_REVERTING && c->peer)
				vmcf_send_close(c->peer, c, VMC_CLOSE_RST);
		}
		vmcf_detach(sk, c);
	}
	release_sock(sk);
	if (c)
		vmcf_conn_put(c);
	base->close(sk, timeout);
	atomic_dec(&vmcf_inside);
}

/*
 * A child socket that was never accepted is freed here, not in close.  A
 * REVERTING one (unload, suspend or tcp=0 moved it back) sends the CLOSE
 * RST close() sends: a peer whose socket closed before it saw our REVERT
 * keeps its slot for our CLOSE, and its own CLOSE, finding only our
 * zombie, gets none in reply.  Any other peer took our REVERT first (the
 * channel keeps order) and no longer knows the id.
 */
static void vmcf_destroy(struct sock *sk)
{
	const struct proto *base = vmcf_tcp_base(sk);
	struct vmcf_conn *c;

	atomic_inc(&vmcf_inside);
	rcu_read_lock();
	c = vmcf_conn_of(sk);
	rcu_read_unlock();
	if (c && c->sk == sk) {
		if ((c->state == VMCF_C_RING ||
		     c->state == VMCF_C_REVERTING) && READ_ONCE(c->peer))
			vmcf_send_close(c->peer, c, VMC_CLOSE_RST);
		vmcf_detach(sk, c);
	}
	base->destroy(sk);
	atomic_dec(&vmcf_inside);
}

/*
 * connect(AF_UNSPEC).  (A listener that closes with this child unaccepted
 * calls its own disconnect, TCP's, then destroys the child: vmcf_destroy().)
 */
static int vmcf_disconnect(struct sock *sk, int flags)
{
	struct vmcf_conn *c;

	rcu_read_lock();
	c = vmcf_conn_of(sk);
	rcu_read_unlock();
	/*
	 * TCP resets below; the ring goes as on a reset: a slot the peer may
	 * still read (OFFERED, REVERTING) is kept as in close(), and the
	 * peer hears our CLOSE even after its own (it keeps its slot for it).
	 */
	if (c && c->sk == sk) {
		c->why = "disconnected";
		vmcf_conn_drop(c, true);
	}
	return vmcf_tcp_base(sk)->disconnect(sk, flags);
}

/*
 * Give @c's socket back to TCP now (TCP_ULP): moves it back and waits for
 * the peer's answer.  Socket lock held.  -EBUSY if it could not.
 */
static int vmcf_to_tcp(struct sock *sk, struct vmcf_conn *c, const char *why)
{
	DEFINE_WAIT_FUNC(wait, woken_wake_function);
	long timeo = 2 * VMCF_REVERT_TIMEOUT;

	while (c->sk == sk) {
		if (c->state == VMCF_C_WAITING) {
			vmcf_conn_pass(c, VMCF_FB_SOCKET, why);
			break;
		}
		vmcf_revert_start(c, why);
		if (c->sk != sk)
			break;
		if (c->state == VMCF_C_DRAIN || !timeo)
			return -EBUSY;
		if (signal_pending(current))
			return sock_intr_errno(timeo);
		add_wait_queue(sk_sleep(sk), &wait);
		sk_wait_event(sk, &timeo, READ_ONCE(c->sk) != sk ||
			      (READ_ONCE(c->state) != VMCF_C_OFFERED &&
			       READ_ONCE(c->state) != VMCF_C_REVERTING), &wait);
		remove_wait_queue(sk_sleep(sk), &wait);
	}
	return 0;
}

static int vmcf_do_setsockopt(struct sock *sk, int level, int optname,
			      sockptr_t optval, unsigned int optlen)
{
	struct vmcf_conn *c;
	int err = 0;

	/* kTLS and other ULPs build on TCP's own tables: give it back first. */
	if (level == SOL_TCP && optname == TCP_ULP) {
		c = vmcf_conn_get(sk);
		if (c) {
			lock_sock(sk);
			err = vmcf_to_tcp(sk, c, "TCP_ULP set: moved back to TCP");
			release_sock(sk);
			vmcf_conn_put(c);
		}
		if (err)
			return err;
	}
	return vmcf_tcp_base(sk)->setsockopt(sk, level, optname, optval, optlen);
}

static int vmcf_setsockopt(struct sock *sk, int level, int optname,
			   sockptr_t optval, unsigned int optlen)
{
	int err;

	atomic_inc(&vmcf_inside);
	err = vmcf_do_setsockopt(sk, level, optname, optval, optlen);
	atomic_dec(&vmcf_inside);
	return err;
}

/* Bytes readable and bytes not yet consumed by the peer. */
static int vmcf_ioctl_value(struct sock *sk, int cmd, int *answ)
{
	enum vmcf_conn_state st;
	struct vmcf_conn *c;
	u32 inq;
	long n;

	rcu_read_lock();
	c = vmcf_conn_of(sk);
	st = c ? READ_ONCE(c->state) : VMCF_C_PASS;
	if (cmd == SIOCINQ && (st == VMCF_C_RING || st == VMCF_C_DRAIN)) {
		/* Readable now: what follows the cut once TCP's reach it. */
		inq = tcp_inq(sk);
		if (inq < vmcf_tcp_room(sk, c))
			n = 0;
		else if (st == VMCF_C_DRAIN)
			n = c->drain_len - c->drain_off;
		else
			n = max(vmc_ring_avail_peek(&c->rx), 0L);
		*answ = inq + n;
	} else if (cmd == SIOCOUTQ && st == VMCF_C_RING) {
		n = vmc_ring_space_peek(&c->tx);
		*answ = n < 0 ? 0 : c->tx.size - n;
	} else {
		rcu_read_unlock();
		return -ENOIOCTLCMD;
	}
	rcu_read_unlock();
	return 0;
}

#ifndef VMCF_IOCTL_KARG
static int vmcf_ioctl(struct sock *sk, int cmd, unsigned long arg)
{
	int answ, err;

	atomic_inc(&vmcf_inside);	/* TCP's ioctl may take the lock */
	err = vmcf_ioctl_value(sk, cmd, &answ);
	if (err == -ENOIOCTLCMD)
		err = vmcf_tcp_base(sk)->ioctl(sk, cmd, arg);
	else
		err = put_user(answ, (int __user *)arg);
	atomic_dec(&vmcf_inside);
	return err;
}
#else
static int vmcf_ioctl(struct sock *sk, int cmd, int *karg)
{
	int err;

	atomic_inc(&vmcf_inside);	/* TCP's ioctl may take the lock */
	err = vmcf_ioctl_value(sk, cmd, karg);
	if (err == -ENOIOCTLCMD)
		err = vmcf_tcp_base(sk)->ioctl(sk, cmd, karg);
	atomic_dec(&vmcf_inside);
	return err;
}
#endif

/*
 * release_sock() always calls this, also inside connect() and accept()
 * before user space has the fd: the moment to swap the socket-level ops.
 * No module reference is taken: every socket is given back before unload.
 */
static void vmcf_release_cb(struct sock *sk)
{
	struct socket *sock = sk->sk_socket;
	int fam = vmcf_fam(sk);
	const struct proto_ops *ops;
	struct vmcf_conn *c;
	bool ours;

	rcu_read_lock();
	c = vmcf_conn_of(sk);
	ours = c && READ_ONCE(c->sk) == sk && !READ_ONCE(c->closing);
	rcu_read_unlock();
	if (sock && ours && READ_ONCE(sock->ops) != &vmcf_ops[fam]) {
		ops = READ_ONCE(sock->ops);
		spin_lock_bh(&vmcf_prot_lock);
		if (!vmcf_base_ops[fam] && ops->poll == tcp_poll &&
		    ops->family == (fam ? PF_INET6 : PF_INET)) {
			vmcf_ops[fam] = *ops;
			vmcf_ops[fam].poll = vmcf_poll;
			vmcf_ops[fam].splice_read = NULL;	/* via recvmsg */
			vmcf_ops[fam].read_sock = NULL;
			vmcf_ops[fam].mmap = sock_no_mmap;
			vmcf_ops[fam].peek_len = NULL;
			vmcf_ops[fam].read_skb = NULL;
			vmcf_ops[fam].sendmsg_locked = NULL;	/* skmsg redirect */
#ifdef VMCF_HAVE_SENDPAGE
			vmcf_ops[fam].sendpage_locked = NULL;
#endif
#ifdef VMCF_HAVE_PEEK_OFF
			vmcf_ops[fam].set_peek_off = NULL;	/* SO_PEEK_OFF */
#endif
			/* Ops complete before seen; vmcf_poll() reads them. */
			smp_store_release(&vmcf_base_ops[fam], ops);
		}
		spin_unlock_bh(&vmcf_prot_lock);
		if (ops == vmcf_base_ops[fam])
			WRITE_ONCE(sock->ops, &vmcf_ops[fam]);
	}
	vmcf_tcp_base(sk)->release_cb(sk);
}

static void vmcf_set_ops(struct proto *prot)
{
	prot->close = vmcf_close;
	prot->sendmsg = vmcf_sendmsg;
	prot->recvmsg = vmcf_recvmsg;
	prot->sock_is_readable = vmcf_sock_is_readable;
	prot->shutdown = vmcf_shutdown;
	prot->ioctl = vmcf_ioctl;
	prot->release_cb = vmcf_release_cb;
	prot->destroy = vmcf_destroy;
	prot->disconnect = vmcf_disconnect;
	prot->setsockopt = vmcf_setsockopt;
	prot->psock_update_sk_prot = NULL;	/* no sockmap on ring sockets */
#ifdef VMCF_HAVE_SENDPAGE
	prot->sendpage = NULL;	/* sock_no_sendpage() -> our sendmsg */
#endif
}

static void vmcf_find_tp(struct tracepoint *tp, void *priv)
{
	if (!strcmp(tp->name, "inet_sock_set_state"))
		vmcf_tp = tp;
}

/* ---- TCP: control messages about connections (peer work) ---- */

/* Our conn for the id the peer names, with a reference; NULL if none. */
static struct vmcf_conn *vmcf_conn_by_id(struct vmcf_peer *p, u32 id)
{
	struct vmcf_conn *c = NULL;
	u32 slot = id & 0xffff;

	spin_lock_bh(&p->conn_lock);
	if (p->conns && slot < p->pool_slots && p->conns[slot] &&
	    p->conns[slot]->id == id) {
		c = p->conns[slot];
		refcount_inc(&c->ref);
	}
	spin_unlock_bh(&p->conn_lock);
	return c;
}

#ifdef VMCF_EVIL
/*
 * Test build: the next lock of a socket not yet accepted is held
 * evil_lock_delay_ms, so that the lab can close its listener meanwhile
 * (test/lab-tests/hostile.sh, "unaccepted").  Owned (@bh false) only in
 * the lab's negative control, a build that owns such sockets again.
 */
static void vmcf_evil_lock_delay(struct sock *sk, bool bh)
{
	unsigned int ms;

	if (READ_ONCE(sk->sk_socket) || sock_flag(sk, SOCK_DEAD))
		return;
	ms = xchg(&evil_lock_delay_ms, 0);
	if (!ms)
		return;
	pr_warn("EVIL: holding a socket not yet accepted %u ms\n", ms);
	if (bh)
		mdelay(ms);
	else
		msleep(ms);
}
#else
static inline void vmcf_evil_lock_delay(struct sock *sk, bool bh) { }
#endif

/*
 * Lock a socket of ours from process context (control messages, channel
 * teardown, unload, suspend).  A child socket its listener has not yet
 * handed to accept() is never owned: it is locked as softirq locks it,
 * bh_lock_sock() with no owner.  A listener that closes destroys such
 * children holding only that lock (inet_csk_listen_stop(), which WARNs at
 * an owned one, then inet_child_forget()), so as owner we would see it
 * reset and freed under us.  Bh-locked, allocations use gfp_any() and
 * nothing sleeps: what we do to such a socket the TCP probe does in
 * softirq, or inet_child_forget() under the same lock.  A socket that has
 * been grafted (accept()) or orphaned (close) stays so, and no listener
 * reaches it any more: that one is owned, as usual.  Returns true if it is
 * bh-locked; vmcf_sock_unlock() with that after.  For sparse, which cannot
 * follow a lock whose kind is chosen at run time, the bh lock is balanced
 * in place, as lock_sock() (unannotated) is: the @bh flag carries it.
 */
static bool vmcf_sock_lock(struct sock *sk)
{
	for (;;) {
		local_bh_disable();
		bh_lock_sock(sk);
		if (READ_ONCE(sk->sk_socket) || sock_flag(sk, SOCK_DEAD)) {
			bh_unlock_sock(sk);
			local_bh_enable();
			lock_sock(sk);
			return false;
		}
		if (!sock_owned_by_user(sk)) {
			__release(&sk->sk_lock.slock);	/* sparse: see above */
			vmcf_evil_lock_delay(sk, true);
			return true;		/* not accepted yet */
		}
		/*
		 * Not accepted, yet owned for a moment (accept() grafting it,
		 * tcp_abort() of `ss -K`): wait for it, never own it with them.
		 */
		bh_unlock_sock(sk);
		local_bh_enable();
		usleep_range(50, 200);
	}
}

static void vmcf_sock_unlock(struct sock *sk, bool bh)
{
	if (bh) {
		__acquire(&sk->sk_lock.slock);	/* sparse: vmcf_sock_lock() */
		bh_unlock_sock(sk);
		local_bh_enable();
	} else {
		release_sock(sk);
	}
}

/* Lock @c's socket if it still has one; returns it held, or NULL. */
static struct sock *vmcf_conn_lock(struct vmcf_peer *p, struct vmcf_conn *c,
				   bool *bh)
{
	struct sock *sk;

	spin_lock_bh(&p->conn_lock);
	sk = c->sk;
	if (sk)
		sock_hold(sk);
	spin_unlock_bh(&p->conn_lock);
	if (!sk)
		return NULL;
	*bh = vmcf_sock_lock(sk);
	/* Closed or given back while we waited: it is no longer ours. */
	if (READ_ONCE(c->sk) != sk) {
		vmcf_sock_unlock(sk, *bh);
		sock_put(sk);
		return NULL;
	}
	return sk;
}

/* A conn without a socket the peer is done with: its slot goes back. */
static void vmcf_zombie_done(struct vmcf_peer *p, struct vmcf_conn *c)
{
	bool put;

	spin_lock_bh(&p->conn_lock);
	put = !c->sk && c->peer == p && vmcf_slot_put(p, c);
	spin_unlock_bh(&p->conn_lock);
	if (put)
		vmcf_conn_put(c);
}

static void vmcf_conn_unlock(struct sock *sk, bool bh)
{
	if (sk) {
		vmcf_sock_unlock(sk, bh);
		sock_put(sk);
	}
}

static void vmcf_rx_offer(struct vmcf_peer *p,
			  const struct vmc_msg_conn_offer *m)
{
	struct vmcf_conn *c, *found = NULL;
	struct vmcf_pending *pend;
	struct sock *sk;
	bool bh = false;
#ifdef VMCF_EVIL
	unsigned int ms = xchg(&evil_offer_delay_ms, 0);

	if (ms) {
		pr_warn("EVIL: taking peer %u's OFFER %u ms late\n", p->domid,
			ms);
		msleep(ms);
	}
#endif

	if (!READ_ONCE(tcp) || READ_ONCE(vmcf_draining)) {
		vmcf_send_refuse(p, le32_to_cpu(m->conn), VMC_R_DISABLED);
		return;
	}
	/* The offerer must own the address it speaks from. */
	if (!vmcf_pair_ready(p) ||
	    !vmcf_entry_has(&p->entry, m->tuple.family, m->tuple.laddr)) {
		vmcf_send_refuse(p, le32_to_cpu(m->conn), VMC_R_AUTH);
		return;
	}
	spin_lock_bh(&p->conn_lock);
	list_for_each_entry(c, &p->waiting, wnode) {
		if (c->tuple.family == m->tuple.family &&
		    c->tuple.lport == m->tuple.rport &&
		    c->tuple.rport == m->tuple.lport &&
		    !memcmp(c->tuple.laddr, m->tuple.raddr, 16) &&
		    !memcmp(c->tuple.raddr, m->tuple.laddr, 16)) {
			found = c;
			refcount_inc(&c->ref);
			break;
		}
	}
	if (!found) {
		/* Its socket may not be ESTABLISHED here yet: keep it a while. */
		pend = p->nr_pending < VMCF_PENDING_MAX ?
		       kmalloc(sizeof(*pend), GFP_ATOMIC) : NULL;
		if (pend) {
			pend->offer = *m;
			pend->at = jiffies;
			list_add_tail(&pend->list, &p->pending);
			p->nr_pending++;
		}
		spin_unlock_bh(&p->conn_lock);
		if (!pend)
			vmcf_send_refuse(p, le32_to_cpu(m->conn), VMC_R_NO_MEMORY);
		else
			mod_delayed_work(vmcf_wq, &p->tick, HZ);
		return;
	}
	spin_unlock_bh(&p->conn_lock);
	sk = vmcf_conn_lock(p, found, &bh);
	if (sk && found->state == VMCF_C_WAITING) {
		if (!found->tcp_senders)
			vmcf_accept(found, m);
		else if (!found->deferred)
			found->deferred = kmemdup(m, sizeof(*m), gfp_any());
	}
	vmcf_conn_unlock(sk, bh);
	vmcf_conn_put(found);
}

/*
 * An ACCEPT for OFFERED @c that we do not take (wrong proof, bad ring);
 * @sk, if still ours, locked.  Its sender thinks the ring is on and may
 * read ours: it hears a CLOSE RST, resets its side and answers with its
 * own CLOSE (vmcf_rx_close()), which frees our slot; until then the slot
 * stays.  Without the CLOSE its slot would stay until the channel goes.
 * Our socket goes back to TCP, where the peer's TCP reset follows.
 */
static void vmcf_accept_reject(struct vmcf_peer *p, struct vmcf_conn *c,
			       struct sock *sk, u32 peer_conn,
			       enum vmcf_fallback fb, const char *why)
{
	vmcf_conn_set_state(c, VMCF_C_PASS);
	c->peer_id = peer_conn;
	vmcf_send_close(p, c, VMC_CLOSE_RST);
	c->why = why;
	vmcf_count_fallback(fb);
	if (sk && c->fin_deferred) {
		c->fin_deferred = false;
		vmcf_tcp_base(sk)->shutdown(sk, SEND_SHUTDOWN);
	}
	if (sk)
		vmcf_untake(c, false);
}

static void vmcf_rx_accept(struct vmcf_peer *p,
			   const struct vmc_msg_conn_accept *m)
{
	struct vmcf_conn *c = vmcf_conn_by_id(p, le32_to_cpu(m->conn));
	struct vmc_msg_conn_end r;
	struct sock *sk = NULL;
	bool bh = false;

	if (c)
		sk = vmcf_conn_lock(p, c, &bh);
	if (!c || c->state != VMCF_C_OFFERED) {
		/*
		 * Too late: we gave up on that offer (reset, unload).  The
		 * peer thinks the ring is on: tell it to reset its side.
		 */
		vmc_msg_init(&r, VMC_MSG_CONN_CLOSE);
		r.conn = m->peer_conn;
		r.how = cpu_to_le32(VMC_CLOSE_RST);
		vmcf_send(p, &r);
		goto out;
	}
	if (le32_to_cpu(m->isn_offerer) != c->isn_local ||
	    le32_to_cpu(m->isn_accepter) != c->isn_remote) {
		pr_warn_ratelimited("peer %u: wrong proof in ACCEPT: stays on TCP\n",
				    p->domid);
		vmcf_accept_reject(p, c, sk, le32_to_cpu(m->peer_conn),
				   VMCF_FB_AUTH, "peer failed the ISN proof");
	} else if (vmcf_attach_rx(p, c, &m->ring)) {
		vmcf_accept_reject(p, c, sk, le32_to_cpu(m->peer_conn),
				   VMCF_FB_REFUSED, "bad ring in accept");
	} else {
		c->peer_id = le32_to_cpu(m->peer_conn);
		c->rx_cut = le32_to_cpu(m->seq_cut);
		/* Pairs with the acquire in vmcf_conn_moved(). */
		smp_store_release(&c->rx_attached, true);
		vmcf_conn_set_state(c, VMCF_C_RING);
		c->why = NULL;
		atomic_long_inc(&vmcf_accelerated);
		if (!sk)
			vmcf_send_close(p, c, VMC_CLOSE_FIN);	/* closed meanwhile */
		else if (READ_ONCE(vmcf_draining) || !READ_ONCE(tcp))
			vmcf_revert_start(c, "moved back to TCP: unload, suspend or tcp=0");
		vmcf_wake(sk);
	}
out:
	vmcf_conn_unlock(sk, bh);
	if (c)
		vmcf_conn_put(c);
}

static void vmcf_rx_refuse(struct vmcf_peer *p,
			   const struct vmc_msg_conn_refuse *m)
{
	struct vmcf_conn *c = vmcf_conn_by_id(p, le32_to_cpu(m->conn));
	struct sock *sk;
	bool bh = false;

	if (!c)
		return;
	sk = vmcf_conn_lock(p, c, &bh);
	if (sk && c->state == VMCF_C_OFFERED)
		vmcf_conn_pass(c, VMCF_FB_REFUSED, "refused by the peer");
	else if (!sk)
		vmcf_zombie_done(p, c);	/* closed while offered */
	vmcf_conn_unlock(sk, bh);
	vmcf_conn_put(c);
}

/* The peer closed its socket: it reads no more of our ring. */
static void vmcf_rx_close(struct vmcf_peer *p, const struct vmc_msg_conn_end *m)
{
	struct vmcf_conn *c = vmcf_conn_by_id(p, le32_to_cpu(m->conn));
	struct sock *sk;
	bool bh = false;

	if (!c)
		return;
	sk = vmcf_conn_lock(p, c, &bh);
	WRITE_ONCE(c->peer_closed, true);	/* sendmsg: EPIPE */
	if (le32_to_cpu(m->how) == VMC_CLOSE_RST && sk &&
	    c->state != VMCF_C_DEAD && c->state != VMCF_C_PASS) {
		vmcf_conn_kill(c, ECONNRESET, "reset by the peer", false);
		/* Our CLOSE frees the slot the peer kept for us. */
		vmcf_send_close(p, c, VMC_CLOSE_RST);
	} else if (sk && c->state == VMCF_C_REVERTING) {
		vmcf_drain(c, "peer closed while moving back to TCP");
	}
	/* The slot is reused only once our socket is gone too. */
	vmcf_zombie_done(p, c);
	vmcf_wake(sk);
	vmcf_conn_unlock(sk, bh);
	vmcf_conn_put(c);
}

/*
 * Whether the peer has read our REVERT for @c: its consumer index in our
 * control ring is at or past where the REVERT ends (still in our backlog:
 * not yet).  Reading it is acting on it (the answer and the resend come
 * in the same step), even if the answer never reached us (lost in its
 * backlog when its channel closed).  A corrupt index says yes.
 */
static bool vmcf_revert_seen(struct vmcf_peer *p, struct vmcf_conn *c)
{
	bool seen;

	spin_lock_bh(&p->tx_lock);
	/* Validates the peer's index and keeps it in p->out.peer. */
	seen = vmc_ring_space(&p->out) < 0 ||
	       (s32)(p->out.peer - c->revert_end) >= 0;
	spin_unlock_bh(&p->tx_lock);
	return seen;
}

/*
 * REVERT (the peer moves the connection back to TCP and read our ring up to
 * final) or REVERTED (its answer to ours, same meaning).  Our socket may
 * be gone (we closed first): the peer then saves our ring (it knows we
 * closed from our CLOSE, which came before this), and its CLOSE frees our
 * slot.  Unless our REVERT came before that CLOSE: then this is its
 * answer, or its own REVERT crossing ours (it takes ours as the answer),
 * it reads our ring no more and sends no CLOSE: the slot goes back now.
 * With @done, read at teardown from a peer that is gone or done
 * (vmcf_last_answers()): a REVERT it sent without reading ours is no
 * promise to resend, and its ring is saved instead.
 */
static void vmcf_rx_revert(struct vmcf_peer *p,
			   const struct vmc_msg_conn_end *m, bool done)
{
	struct vmcf_conn *c = vmcf_conn_by_id(p, le32_to_cpu(m->conn));
	struct vmc_msg_conn_end r;
	struct sock *sk;
	bool bh = false;

	if (!c)
		return;
#ifdef VMCF_EVIL
	if (m->hdr.type == VMC_MSG_CONN_REVERT) {
		unsigned int ms = xchg(&evil_answer_delay_ms, 0);

		if (ms) {
			pr_warn("EVIL: answering peer %u's REVERT %u ms late\n",
				p->domid, ms);
			msleep(ms);
		}
	}
#endif
	sk = vmcf_conn_lock(p, c, &bh);
	if (sk && done && m->hdr.type == VMC_MSG_CONN_REVERT &&
	    (c->state == VMCF_C_RING ||
	     (c->state == VMCF_C_REVERTING && !vmcf_revert_seen(p, c)))) {
		/*
		 * Read at teardown from a peer now gone, and not an answer to
		 * a REVERT of ours it read: it resends nothing.
		 */
		vmcf_drain(c, "peer gone: moved back to TCP");
	} else if (sk && c->state == VMCF_C_RING &&
		   m->hdr.type == VMC_MSG_CONN_REVERT) {
		/* Our answer first: the peer reads TCP only after it. */
		vmc_msg_init(&r, VMC_MSG_CONN_REVERTED);
		r.conn = cpu_to_le32(c->peer_id);
		r.final = cpu_to_le32(c->rx.pos);
		/* Before the REVERTED, which frees the ring: as a state change. */
		spin_lock_bh(&c->poll_lock);
		WRITE_ONCE(c->rx_attached, false);
		spin_unlock_bh(&c->poll_lock);
		if (vmcf_send(p, &r)) {
			c->why = "moved back to TCP by the peer";
			vmcf_reverted_to_tcp(sk, c, le32_to_cpu(m->final));
		} else {
			/*
			 * It reads our ring no more (its REVERT said so), but
			 * keeps its own slot until our answer or CLOSE: try
			 * the CLOSE, or that slot stays until the channel goes.
			 */
			vmcf_conn_kill(c, ECONNRESET, "cannot send REVERTED",
				       false);
			vmcf_send_close(p, c, VMC_CLOSE_RST);
		}
	} else if (sk && c->state == VMCF_C_REVERTING) {
		/* Its answer, or its own REVERT crossing ours: same news. */
		vmcf_reverted_to_tcp(sk, c, le32_to_cpu(m->final));
	} else if (!sk && c->revert_sent) {
		vmcf_zombie_done(p, c);
	}
	vmcf_conn_unlock(sk, bh);
	vmcf_conn_put(c);
}

/*
 * Did the peer move @c's rings since we last looked?  Its tx ring (set up
 * before the slot was published under conn_lock) and, once attached, its
 * rx ring.  The peer's tasklet or work item, conn_lock held.  The peer's
 * pool stays mapped until both are stopped (vmcf_chan_close()).
 */
#define VMCF_MOVED_TX	1	/* room: writers (sk_write_space) */
#define VMCF_MOVED_RX	2	/* data: readers (sk_data_ready) */

static unsigned int vmcf_conn_moved(struct vmcf_conn *c)
{
	u32 now[4] = {
		le32_to_cpu(READ_ONCE(c->tx.hdr->cons)),
		le32_to_cpu(READ_ONCE(c->tx.hdr->cons_flags)),
	};
	unsigned int moved = 0;

	/* Pairs with smp_store_release() of rx_attached: c->rx is set up. */
	if (smp_load_acquire(&c->rx_attached)) {
		now[2] = le32_to_cpu(READ_ONCE(c->rx.hdr->prod));
		now[3] = le32_to_cpu(READ_ONCE(c->rx.hdr->prod_flags));
	}
	if (now[0] != c->seen[0])
		moved |= VMCF_MOVED_TX;
	if (now[2] != c->seen[2])
		moved |= VMCF_MOVED_RX;
	/* A flag (EOF, CLOSED) is news for readers, writers and poll(). */
	if (now[1] != c->seen[1] || now[3] != c->seen[3])
		moved |= VMCF_MOVED_TX | VMCF_MOVED_RX;
	memcpy(c->seen, now, sizeof(now));
	return moved;
}

/*
 * Wake the sockets of @p, all of them (@all: a control message may have
 * changed any connection's state) or only those whose rings the peer
 * moved: data, room, EOF or CLOSED.  Returns whether any ring moved.
 *
 * No sleeper misses its wake: it asked for an event (prod_event,
 * cons_event) and then re-checked its condition after add_wait_queue()
 * (sk_wait_event(), poll), and the peer moves an index before notifying.
 * Either that move happened after our last look, and we see it now, or
 * our earlier look saw it and its wake found the sleeper queued or the
 * sleeper's re-check found the move.  EOF and CLOSED are set before an
 * unconditional notify, and CLOSED also comes with a CLOSE message.
 * Readers wait for rx (data, EOF) and writers for tx (room, CLOSED), so
 * each is woken for its own ring: a request/response wakes its reader
 * once, not also through sk_write_space().
 *
 * One conn_lock hold scans for up to VMCF_WAKE_BATCH sockets to wake,
 * which are woken after it: a lock round trip per slot made every event
 * take the lock 32 times (the pool's slots) to wake one socket.
 */
#define VMCF_WAKE_BATCH	8

static bool vmcf_wake_conns(struct vmcf_peer *p, bool all)
{
	struct sock *sks[VMCF_WAKE_BATCH];
	u8 why[VMCF_WAKE_BATCH];
	unsigned int i = 0, n, k, m;
	struct vmcf_conn *c;
	bool moved = false;
	struct sock *sk;

	while (p->conns && i < p->pool_slots) {
		n = 0;
		spin_lock_bh(&p->conn_lock);
		for (; i < p->pool_slots && n < VMCF_WAKE_BATCH; i++) {
			c = p->conns[i];
			/* Read once: vmcf_untake() clears it without this lock. */
			sk = c ? READ_ONCE(c->sk) : NULL;
			if (!sk)
				continue;
			m = vmcf_conn_moved(c);
			moved |= m != 0;
			if (all)
				m = VMCF_MOVED_TX | VMCF_MOVED_RX;
			if (!m)
				continue;
			sock_hold(sk);
			sks[n] = sk;
			why[n++] = m;
		}
		spin_unlock_bh(&p->conn_lock);
		for (k = 0; k < n; k++) {
			if (why[k] & VMCF_MOVED_RX)
				sks[k]->sk_data_ready(sks[k]);
			if (why[k] & VMCF_MOVED_TX)
				sks[k]->sk_write_space(sks[k]);
			sock_put(sks[k]);
		}
	}
	return moved;
}

/*
 * Every socket still ours, each with a reference on it and on its conn,
 * to be locked one by one (the lists cannot be walked with sockets locked).
 */
static void vmcf_batch(struct list_head *batch)
{
	struct vmcf_conn *c;
	struct sock *sk;

	lockdep_assert_held(&vmcf_batch_lock);
	spin_lock_bh(&vmcf_conn_hash_lock);
	list_for_each_entry(c, &vmcf_conn_all, anode) {
		/* Read once: vmcf_untake() clears it without this lock. */
		sk = READ_ONCE(c->sk);
		if (!sk || !refcount_inc_not_zero(&c->ref))
			continue;
		/* Pinned: a taken socket is unhooked from this list first. */
		c->batch_sk = sk;
		sock_hold(sk);
		list_add_tail(&c->rnode, batch);
	}
	spin_unlock_bh(&vmcf_conn_hash_lock);
}

/* Next of a batch, its socket locked, or NULL; vmcf_batch_done() after. */
static struct vmcf_conn *vmcf_batch_next(struct list_head *batch)
{
	struct vmcf_conn *c = list_first_entry_or_null(batch, struct vmcf_conn,
						       rnode);

	if (c) {
		list_del_init(&c->rnode);
		c->batch_bh = vmcf_sock_lock(c->batch_sk);
	}
	return c;
}

static void vmcf_batch_done(struct vmcf_conn *c)
{
	struct sock *sk = c->batch_sk;

	vmcf_sock_unlock(sk, c->batch_bh);
	sock_put(sk);
	vmcf_conn_put(c);
}

/*
 * Move every connection still ours back to TCP (unload, suspend, tcp=0)
 * and wait for the peers' answers; one without an answer in time is reset.
 * With @drain_wait (unload), also wait that long for saved bytes to be
 * read, then reset what is left: nothing of ours may stay on a socket.
 * With @only (one peer's channel closing), wait for that peer only, and
 * reset nothing: what it does not answer, its teardown settles (saved or
 * reset, vmcf_conns_down()).
 */
static void vmcf_revert_all(const char *why, unsigned long drain_wait,
			    struct vmcf_peer *only)
{
	unsigned long start = jiffies;
	struct vmcf_conn *c;
	LIST_HEAD(batch);
	bool busy, late;

	do {
		busy = false;
		late = time_after(jiffies, start + VMCF_REVERT_TIMEOUT);
		mutex_lock(&vmcf_batch_lock);
		vmcf_batch(&batch);
		while ((c = vmcf_batch_next(&batch))) {
			if (c->sk != c->batch_sk || (only && c->peer != only)) {
				vmcf_batch_done(c);
				continue;
			}
			switch (c->state) {
			case VMCF_C_WAITING:
				vmcf_conn_pass(c, VMCF_FB_DRAINING, why);
				break;
			case VMCF_C_RING:
				vmcf_revert_start(c, why);
				/*
				 * One peer's channel: new connections of that
				 * peer can still reach RING meanwhile (nothing
				 * refuses its offers yet), so the deadline ends
				 * the wait for them too; the teardown that
				 * follows takes them back to TCP.
				 */
				busy |= c->state == VMCF_C_REVERTING &&
					(!only || !late);
				break;
			case VMCF_C_OFFERED:
				if (only) {
					busy |= !late;
					break;
				}
				/* The answer may wait for the peer's socket (3 s). */
				if (time_after(jiffies, start + VMCF_PENDING_TIMEOUT +
					       VMCF_REVERT_TIMEOUT))
					vmcf_conn_kill(c, ECONNRESET,
						       "no answer to the offer while moving back to TCP",
						       true);
				busy = true;
				break;
			case VMCF_C_REVERTING:
				if (only) {
					busy |= !late;
					break;
				}
				if (late)
					vmcf_conn_kill(c, ECONNRESET,
						       "no answer while moving back to TCP",
						       true);
				busy = true;
				break;
			case VMCF_C_DRAIN:
				if (drain_wait &&
				    time_after(jiffies, start + drain_wait))
					vmcf_conn_kill(c, ECONNRESET,
						       "saved bytes unread at unload",
						       false);
				busy |= drain_wait != 0;
				break;
			default:
				break;
			}
			vmcf_batch_done(c);
		}
		mutex_unlock(&vmcf_batch_lock);
		if (busy)
			msleep(20);
	} while (busy);
}

/* REVERTs a peer left unanswered: those connections are reset. */
static bool vmcf_revert_expire(void)
{
	bool again = false, leaving;
	struct vmcf_peer *p;
	struct vmcf_conn *c;
	LIST_HEAD(batch);

	mutex_lock(&vmcf_batch_lock);
	vmcf_batch(&batch);
	while ((c = vmcf_batch_next(&batch))) {
		/* A closing channel's teardown settles them (vmcf_conns_down()). */
		rcu_read_lock();
		p = READ_ONCE(c->peer);
		leaving = p && READ_ONCE(p->leaving);
		rcu_read_unlock();
		if (c->sk == c->batch_sk && c->state == VMCF_C_REVERTING &&
		    !leaving) {
			if (time_after(jiffies, c->revert_at + VMCF_REVERT_TIMEOUT))
				vmcf_conn_kill(c, ECONNRESET,
					       "peer did not answer REVERT", true);
			else
				again = true;
		}
		vmcf_batch_done(c);
	}
	mutex_unlock(&vmcf_batch_lock);
	return again;
}

/*
 * Once a second while offers wait or control messages are queued: refuse
 * stale offers, and push the queue (a safety net: the peer's event when it
 * makes room should have done it).
 */
static void vmcf_tick(struct work_struct *work)
{
	struct vmcf_peer *p = container_of(to_delayed_work(work),
					   struct vmcf_peer, tick);
	struct vmcf_pending *pend, *tmp;
	bool again, notify, silent = false;
	struct vmcf_conn *c;
	LIST_HEAD(stale);
	unsigned int i;

	spin_lock_bh(&p->tx_lock);
	notify = vmcf_flush_locked(p);
	again = p->backlog_len;
	spin_unlock_bh(&p->tx_lock);
	if (notify)
		vmcf_notify(p);

	spin_lock_bh(&p->conn_lock);
	list_for_each_entry_safe(pend, tmp, &p->pending, list) {
		if (time_after(jiffies, pend->at + VMCF_PENDING_TIMEOUT)) {
			list_move(&pend->list, &stale);
			p->nr_pending--;
		}
	}
	again |= p->nr_pending;
	for (i = 0; p->conns && i < p->pool_slots; i++) {
		c = p->conns[i];
		if (!c || c->state != VMCF_C_OFFERED)
			continue;
		again = true;
		silent |= time_after(jiffies, c->offered_at + VMCF_OFFER_TIMEOUT);
	}
	spin_unlock_bh(&p->conn_lock);
	/* Its teardown puts our offered connections back on TCP. */
	if (silent && READ_ONCE(p->state) == VMCF_UP)
		vmcf_peer_broken(p, "no answer to a connection offer");
	list_for_each_entry_safe(pend, tmp, &stale, list) {
		vmcf_count_fallback(VMCF_FB_TIMEOUT);
		vmcf_send_refuse(p, le32_to_cpu(pend->offer.conn),
				 VMC_R_TIMEOUT);
		kfree(pend);
	}
	again |= vmcf_revert_expire();
	again |= vmcf_dg_expire(p);
	if (again)
		queue_delayed_work(vmcf_wq, &p->tick, HZ);
}

/*
 * Whether the peer has closed its end of our event channel: Xen closes a
 * dead domain's ports, and a peer closes its own once its teardown is
 * over.  Either way it does nothing more with our connections, and every
 * control message it wrote is in its ring (written before it closed; the
 * hypercall orders our reads after).  If Xen cannot say, it may be alive.
 */
static bool vmcf_peer_done(struct vmcf_peer *p)
{
	struct evtchn_status st = { .dom = DOMID_SELF };

	if (p->irq < 0)
		return true;	/* no channel: nothing of ours on it */
	st.port = p->port;
	if (HYPERVISOR_event_channel_op(EVTCHNOP_status, &st))
		return false;
	return st.status != EVTCHNSTAT_interdomain;
}

/*
 * The channel is going and its work item has stopped: read the control
 * messages the peer left, for the ends of connections only (answers to
 * our REVERTs, its own REVERTs and CLOSEs).  An answer that came after
 * vmcf_revert_all()'s deadline tells how the peer moved the connection
 * back, where vmcf_conns_down() would have to reset it.  Nothing new
 * starts on a closing channel: the rest is left unread.  Not for a broken
 * peer.
 */
static void vmcf_last_answers(struct vmcf_peer *p, bool done)
{
	u8 buf[VMC_MSG_MAX] __aligned(8);
	const struct vmc_msg_hdr *h = (const void *)buf;
	unsigned int budget = 4 * VMCF_BACKLOG_MAX;
	long len;

	while (p->mapped && READ_ONCE(p->state) != VMCF_BROKEN && budget--) {
		len = vmc_ring_msg_peek(&p->in, VMC_MSG_MAX);
		if (len == -EAGAIN)
			break;
		if (len < 0) {
			vmcf_peer_broken(p, "corrupt control ring");
			break;
		}
		vmc_ring_msg_read(&p->in, buf, len);
		if (vmc_msg_check(buf, len)) {
			vmcf_peer_broken(p, "invalid control message");
			break;
		}
		p->msgs_in++;
		if (h->type == VMC_MSG_CONN_REVERT ||
		    h->type == VMC_MSG_CONN_REVERTED)
			vmcf_rx_revert(p, (const void *)buf, done);
		else if (h->type == VMC_MSG_CONN_CLOSE)
			vmcf_rx_close(p, (const void *)buf);
	}
}

/*
 * The channel goes down: every connection of @p stops using it.  Those
 * not on a ring yet stay on TCP.  A ring one moves back to TCP without the
 * peer only if the peer can no longer act on it: it closed its socket, or
 * it is @done (vmcf_peer_done()) and never read our REVERT.  We save what
 * it left in its ring (read before anything TCP brings later), and what
 * it had not read of ours is lost with it, as TCP's bytes in flight to a
 * vanished host are.  Otherwise the peer may still write its ring after
 * our copy, or act (or have acted) on our REVERT: resend from where we
 * read and wait for our bytes on TCP.  Saving then would lose or repeat
 * bytes, so the connection is reset, as a broken peer's are.  After this
 * no socket touches @p's pools.
 *
 *  RING or REVERTING, the peer ...           | action
 *  ------------------------------------------+------------------------------
 *  broke the protocol                        | reset
 *  closed its socket (CLOSE came)            | save its ring's unread bytes
 *  done, and our REVERT (if any) unread      | save its ring's unread bytes
 *  done, and it read our REVERT, no answer   | reset
 *  not done                                  | reset, CLOSE RST (it may read)
 */
static void vmcf_conns_down(struct vmcf_peer *p, bool done)
{
	bool broken = READ_ONCE(p->state) == VMCF_BROKEN;
	struct vmcf_conn *c;
	struct sock *sk;
	bool bh = false;
	unsigned int i;
	bool put;

	spin_lock_bh(&p->conn_lock);
	p->closing = true;	/* the probe attaches nothing from now on */
	spin_unlock_bh(&p->conn_lock);
	/* Every connection with a socket, then the zombies holding slots. */
	for (;;) {
		spin_lock_bh(&p->conn_lock);
		c = list_first_entry_or_null(&p->attached, struct vmcf_conn,
					     pnode);
		if (c) {
			list_del_init(&c->pnode);
			refcount_inc(&c->ref);
		}
		spin_unlock_bh(&p->conn_lock);
		if (!c)
			break;
		sk = vmcf_conn_lock(p, c, &bh);
		if (sk && (c->state == VMCF_C_WAITING ||
			   c->state == VMCF_C_OFFERED))
			vmcf_conn_pass(c, VMCF_FB_NOT_READY, "peer channel down");
		else if (sk && broken && (c->state == VMCF_C_RING ||
					  c->state == VMCF_C_REVERTING))
			vmcf_conn_kill(c, ECONNRESET, "peer broke the protocol",
				       false);
		else if (sk && !c->peer_closed &&
			 (c->state == VMCF_C_RING ||
			  c->state == VMCF_C_REVERTING) &&
			 (!done || (c->state == VMCF_C_REVERTING &&
				    vmcf_revert_seen(p, c))))
			vmcf_conn_kill(c, ECONNRESET,
				       "peer channel closed with the move back to TCP unagreed",
				       true);
		else if (sk && (c->state == VMCF_C_RING ||
				c->state == VMCF_C_REVERTING))
			vmcf_drain(c, "peer gone: moved back to TCP");
		spin_lock_bh(&p->conn_lock);
		list_del_init(&c->wnode);
		put = vmcf_slot_put(p, c);
		WRITE_ONCE(c->peer, NULL);
		spin_unlock_bh(&p->conn_lock);
		vmcf_conn_unlock(sk, bh);
		if (put)
			vmcf_conn_put(c);
		vmcf_conn_put(c);
	}
	for (i = 0; p->conns && i < p->pool_slots; i++) {
		spin_lock_bh(&p->conn_lock);
		c = p->conns[i];
		if (c)
			refcount_inc(&c->ref);
		spin_unlock_bh(&p->conn_lock);
		if (!c)
			continue;
		spin_lock_bh(&p->conn_lock);
		put = vmcf_slot_put(p, c);
		WRITE_ONCE(c->peer, NULL);
		spin_unlock_bh(&p->conn_lock);
		if (put)
			vmcf_conn_put(c);
		vmcf_conn_put(c);
	}
	/* poll() and sock_is_readable() peek at rings under RCU only. */
	synchronize_rcu();
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

/* A run of the peer's pool grants; in order, then mapped whole. */
static void vmcf_rx_pool(struct vmcf_peer *p, const struct vmc_msg_pool *m)
{
	u32 first = le32_to_cpu(m->first), count = le32_to_cpu(m->count), i;
	struct vmc_msg_ready r;

	if (p->state != VMCF_UP || first != p->rpool_got ||
	    count > p->rpool_pages - first) {
		vmcf_peer_broken(p, "POOL out of order or beyond the pool");
		return;
	}
	for (i = 0; i < count; i++)
		p->rpool_grefs[first + i] = le32_to_cpu(m->gref[i]);
	p->rpool_got += count;
	if (p->rpool_got < p->rpool_pages)
		return;
	if (vmcf_rpool_map(p)) {
		vmcf_peer_broken(p, "cannot map the peer's pool");
		return;
	}
	vmc_msg_init(&r, VMC_MSG_READY);
	r.pages = cpu_to_le32(p->rpool_pages);
	vmcf_send(p, &r);
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
		if (p->state != VMCF_CONNECTED || p->rpool_grefs) {
			vmcf_peer_broken(p, "unexpected HELLO");
			return;
		}
		if (vmcf_rpool_geometry(p, le32_to_cpu(hello->pool_pages),
					le32_to_cpu(hello->slots))) {
			vmcf_peer_broken(p, "HELLO with an impossible pool");
			return;
		}
		p->peer_features = le32_to_cpu(hello->features);
		WRITE_ONCE(p->state, VMCF_UP);
		p->why = NULL;
		pr_info("peer %u: channel up\n", p->domid);
		vmcf_send_pool(p);
		break;
	case VMC_MSG_POOL:
		vmcf_rx_pool(p, buf);
		break;
	case VMC_MSG_READY:
		if (le32_to_cpu(((const struct vmc_msg_ready *)buf)->pages) !=
		    p->pool_pages) {
			vmcf_peer_broken(p, "READY for another pool");
			return;
		}
		WRITE_ONCE(p->peer_ready, true);
		break;
	case VMC_MSG_CONN_OFFER:
		vmcf_rx_offer(p, buf);
		break;
	case VMC_MSG_CONN_ACCEPT:
		vmcf_rx_accept(p, buf);
		break;
	case VMC_MSG_CONN_REFUSE:
		vmcf_rx_refuse(p, buf);
		break;
	case VMC_MSG_CONN_CLOSE:
		vmcf_rx_close(p, buf);
		break;
	case VMC_MSG_CONN_REVERT:
	case VMC_MSG_CONN_REVERTED:
		vmcf_rx_revert(p, buf, false);
		break;
	case VMC_MSG_BYE:
		p->why = "peer said goodbye";
		WRITE_ONCE(p->state, VMCF_CLOSED);
		schedule_work(&vmcf_reap_work);
		break;
	default:
		break;
	}
}

/* ---- UDP: datagrams through the pair's datagram ring ---- */

static void vmcf_copy_skb(void *dst, u32 off, u32 len, const void *src)
{
	/* off + len <= skb->len by construction; zeroes if it ever were not. */
	if (skb_copy_bits(src, off, dst, len))
		memset(dst, 0, len);
}

/*
 * Write the waiting datagrams into the ring while they fit; dg_lock held.
 * When one does not fit, ask for an event once the peer has made room for
 * it (vmcf_evt() calls us again).  Returns whether to notify the peer;
 * -EPROTO in *err if the ring is corrupt.  The datagrams written go to
 * @done, for the caller to free after dg_lock: freeing one uncharges its
 * socket and runs its callbacks, and one that sent from there would come
 * back into vmcf_udp_out() and find dg_lock held.
 */
static bool vmcf_dg_flush_locked(struct vmcf_peer *p, int *err,
				 struct sk_buff_head *done)
{
	bool notify = false, n = false;
	struct sk_buff *skb;
	long space;
	u32 room;

	while ((skb = skb_peek(&p->dg_txq))) {
		*err = vmc_ring_msg_write_from(&p->dg_tx, skb->len,
					       vmcf_copy_skb, skb, &n);
		notify |= n;
		if (*err == -EAGAIN) {
			/* Room may have come while asking: then try again. */
			room = vmc_ring_msg_room(skb->len);
			space = vmc_ring_prod_wait(&p->dg_tx, room);
			if (space >= room)
				continue;
			*err = space < 0 ? space : 0;
			break;
		}
		if (*err)	/* -EPROTO: the caller breaks the channel */
			break;
		__skb_unlink(skb, &p->dg_txq);
		p->dg_txq_bytes -= skb->truesize;
		p->dg_moved_at = jiffies;
		p->dg_stalled = false;
		atomic_long_inc(&vmcf_udp_tx);
		__skb_queue_tail(done, skb);
	}
	return notify;
}

/*
 * The peer's tick: drop what waited too long for room (VMCF_DGRAM_WAIT).
 * Returns whether datagrams still wait (the tick comes again).
 */
static bool vmcf_dg_expire(struct vmcf_peer *p)
{
	struct sk_buff_head lost;
	bool waiting;

	__skb_queue_head_init(&lost);
	spin_lock_bh(&p->dg_lock);
	if (!skb_queue_empty(&p->dg_txq) &&
	    time_after(jiffies, p->dg_moved_at + VMCF_DGRAM_WAIT)) {
		skb_queue_splice_init(&p->dg_txq, &lost);
		p->dg_txq_bytes = 0;
		p->dg_stalled = true;
	}
	waiting = !skb_queue_empty(&p->dg_txq);
	spin_unlock_bh(&p->dg_lock);
	if (!skb_queue_empty(&lost))
		pr_warn_ratelimited("peer %u: made no room for datagrams: %u dropped\n",
				    p->domid, skb_queue_len(&lost));
	atomic_long_add(skb_queue_len(&lost), &vmcf_udp_tx_full);
	__skb_queue_purge(&lost);
	return waiting;
}

static void vmcf_dg_free(struct sk_buff_head *done)
{
	struct sk_buff *skb;

	while ((skb = __skb_dequeue(done)))
		consume_skb(skb);	/* uncharges its socket: sendmsg goes on */
}

/*
 * The pseudo-header sum of a checked datagram of @len bytes whose headers
 * are at @p, as a stack that leaves UDP's checksum to its device writes it
 * into the field: never 0 (the protocol number is in it), so never IPv4's
 * "no checksum".
 */
static __sum16 vmcf_udp_blank(const u8 *p, const struct vmc_dgram *d,
			      u32 len)
{
	const struct ipv6hdr *ip6 = (const struct ipv6hdr *)p;
	const struct iphdr *ip4 = (const struct iphdr *)p;

	if (d->family == VMC_AF_INET)
		return ~csum_tcpudp_magic(ip4->saddr, ip4->daddr,
					  len - d->hlen, IPPROTO_UDP, 0);
	return ~csum_ipv6_magic(&ip6->saddr, &ip6->daddr, len - d->hlen,
				IPPROTO_UDP, 0);
}

/*
 * May this datagram for @p take the ring instead of the network?  Only
 * when the ring delivers exactly what the network would:
 *   - its headers pass the receiver's check (vmc_dgram_check()): one that
 *     does not (a forwarded fragment, a raw socket's lengths) would break
 *     the pair's channel there;
 *   - it goes straight to @p's host (vmcf_route_direct());
 *   - its connection-tracking entry, if any, is confirmed: nf_confirm()
 *     runs at our priority, after us, so a new entry stolen here would
 *     never be confirmed and the replies would be NEW to the firewall
 *     (the first datagram of a flow takes the network);
 *   - no checksum is left to fill but UDP's own, and its field holds the
 *     pseudo-header sum, by which the receiver recognises it as left to
 *     fill (vmcf_dgram_deliver()): an inner one (a tunnel's), or a field
 *     left to fill that holds something else, would arrive unfilled.
 * RCU held (the hook).
 */
static bool vmcf_udp_direct(struct vmcf_peer *p, struct sk_buff *skb)
{
	u8 buf[VMC_DGRAM_HDR_MAX] __aligned(4);
	enum ip_conntrack_info ctinfo;
	const struct nf_conn *ct;
	struct vmc_dgram d;
	const u8 *hdr;

	hdr = skb_header_pointer(skb, 0, min_t(u32, skb->len,
					       VMC_DGRAM_HDR_MAX), buf);
	if (!hdr || vmc_dgram_check(hdr, skb->len, &d))
		return false;
	/* The receiver tells a blank field by its value (vmc_proto.h). */
	if (skb->ip_summed == CHECKSUM_PARTIAL &&
	    (skb_checksum_start_offset(skb) != d.hlen ||
	     skb->csum_offset != offsetof(struct udphdr, check) ||
	     ((const struct udphdr *)(hdr + d.hlen))->check !=
	     vmcf_udp_blank(hdr, &d, skb->len)))
		return false;
	ct = nf_ct_get(skb, &ctinfo);
	if (ct && !nf_ct_is_confirmed(ct))
		return false;
	return vmcf_route_direct(p, skb_dst(skb), d.family, d.daddr);
}

/*
 * Netfilter, IPv4 and IPv6 POST_ROUTING, last (after NAT and filters): a
 * UDP datagram for a co-resident peer goes into the pair's datagram ring
 * instead of out through netfront.  Any context.  Ring full: it waits in
 * dg_txq, still charged to its socket, up to VMCF_DGRAM_TXQ_BYTES per
 * pair; beyond that dropped and counted, as a full queue drops UDP.  Too
 * big for the ring, GSO, not straight to the peer (vmcf_udp_direct()), no
 * ring (yet, or any more): the network, unchanged.
 */
static unsigned int vmcf_udp_out(void *priv, struct sk_buff *skb,
				 const struct nf_hook_state *state)
{
	struct sk_buff_head done;
	struct vmc_tuple t = { };
	bool notify = false, tick = false, ready;
	struct vmcf_peer *p;
	int err = -ENOTCONN;

	if (!READ_ONCE(udp) || skb_is_gso(skb))
		return NF_ACCEPT;
	if (state->pf == NFPROTO_IPV4) {
		const struct iphdr *iph = ip_hdr(skb);

		if (iph->protocol != IPPROTO_UDP ||
		    ipv4_is_multicast(iph->daddr) || ipv4_is_lbcast(iph->daddr))
			return NF_ACCEPT;
		t.family = VMC_AF_INET;
		memcpy(t.raddr, &iph->daddr, 4);
	} else {
		const struct ipv6hdr *ip6 = ipv6_hdr(skb);

		if (ip6->nexthdr != IPPROTO_UDP ||
		    ipv6_addr_is_multicast(&ip6->daddr))
			return NF_ACCEPT;
		t.family = VMC_AF_INET6;
		memcpy(t.raddr, &ip6->daddr, 16);
	}
	__skb_queue_head_init(&done);
	rcu_read_lock();
	p = vmcf_peer_by_addr(&t);
	ready = p && vmcf_pair_ready(p);
	if (ready && !vmcf_udp_direct(p, skb)) {
		err = -EXDEV;	/* not straight to the peer: the network's */
	} else if (ready) {
		spin_lock_bh(&p->dg_lock);
		if (!p->dg_on) {
			err = -ENOTCONN;
		} else if (skb->len > vmc_ring_msg_max(p->dg_tx.size)) {
			err = -EMSGSIZE;
		} else if (skb_queue_empty(&p->dg_txq)) {
			err = vmc_ring_msg_write_from(&p->dg_tx, skb->len,
						      vmcf_copy_skb, skb,
						      &notify);
			if (!err)
				p->dg_stalled = false;	/* it made room */
		} else {
			err = -EAGAIN;	/* behind the waiting ones */
		}
		/* A peer that let the queue expire gets no queue until then. */
		if (err == -EAGAIN && !p->dg_stalled &&
		    p->dg_txq_bytes + skb->truesize <= VMCF_DGRAM_TXQ_BYTES) {
			/* Its route is only good under RCU: not needed now. */
			skb_dst_drop(skb);
			if (skb_queue_empty(&p->dg_txq)) {
				p->dg_moved_at = jiffies;
				tick = true;
			}
			__skb_queue_tail(&p->dg_txq, skb);
			p->dg_txq_bytes += skb->truesize;
			skb = NULL;
			notify |= vmcf_dg_flush_locked(p, &err, &done);
		}
		/* Under the lock: teardown unbinds the irq only after it. */
		if (notify)
			vmcf_notify(p);
		spin_unlock_bh(&p->dg_lock);
		if (err == -EPROTO)
			vmcf_peer_broken(p, "corrupt datagram ring index");
		if (tick)
			vmcf_tick_soon(p);	/* watches VMCF_DGRAM_WAIT */
	}
	rcu_read_unlock();
	vmcf_dg_free(&done);
	if (!skb)
		return NF_STOLEN;	/* queued (counted once written) */
	switch (err) {
	case 0:
		atomic_long_inc(&vmcf_udp_tx);
		consume_skb(skb);
		return NF_STOLEN;
	case -EAGAIN:
		atomic_long_inc(&vmcf_udp_tx_full);
		kfree_skb(skb);
		return NF_STOLEN;
	case -EMSGSIZE:
	case -EXDEV:
		atomic_long_inc(&vmcf_udp_to_net);
		return NF_ACCEPT;
	default:
		return NF_ACCEPT;
	}
}

static const struct nf_hook_ops vmcf_nf_ops[] = {
	{
		.hook = vmcf_udp_out,
		.pf = NFPROTO_IPV4,
		.hooknum = NF_INET_POST_ROUTING,
		.priority = NF_IP_PRI_LAST,
	},
	{
		.hook = vmcf_udp_out,
		.pf = NFPROTO_IPV6,
		.hooknum = NF_INET_POST_ROUTING,
		.priority = NF_IP6_PRI_LAST,
	},
};

/* A socket buffer being filled from the ring, and whether all went in. */
struct vmcf_skb_fill {
	struct sk_buff *skb;
	bool failed;
};

/*
 * Ring to socket buffer.  @off + @len <= skb->len by vmcf_dgram_skb(), so
 * this never fails; if it ever did, the page bytes left unwritten must
 * not reach a socket: the datagram is dropped.
 */
static void vmcf_store_skb(void *dst, u32 off, const void *src, u32 len)
{
	struct vmcf_skb_fill *f = dst;

	if (WARN_ON_ONCE(skb_store_bits(f->skb, off, src, len)))
		f->failed = true;
}

/*
 * A socket buffer for a received datagram of @len bytes.  Pages, not one
 * kmalloc: a 64 KiB datagram in one piece would need 128 KiB contiguous
 * from an atomic allocation, which a fragmented DomU fails, and its
 * truesize (what the receiving socket's SO_RCVBUF counts) would be twice
 * the datagram.  NULL when out of memory.
 */
static struct sk_buff *vmcf_dgram_skb(u32 len)
{
	u32 head = len <= VMCF_DGRAM_LINEAR ? len : VMCF_DGRAM_HEAD;
	struct sk_buff *skb;
	int err;

	BUILD_BUG_ON(VMCF_DGRAM_HEAD < VMC_DGRAM_HDR_MAX);
	/* Pages to fill: some kernels fill at most MAX_SKB_FRAGS - 1. */
	BUILD_BUG_ON(DIV_ROUND_UP(VMC_DGRAM_MAX - VMCF_DGRAM_HEAD, PAGE_SIZE) >
		     MAX_SKB_FRAGS - 1);
	/* Headroom, as netfront's: generic XDP need not copy it then. */
	skb = alloc_skb_with_frags(NET_SKB_PAD + head, len - head, 0, &err,
				   GFP_ATOMIC);
	if (!skb)
		return NULL;
	skb_reserve(skb, NET_SKB_PAD);
	skb_put(skb, head);
	skb->data_len = len - head;
	skb->len = len;
	return skb;
}

/*
 * Make @skb, a checked datagram for @dev from a peer whose vif has MAC
 * @src, look as netfront would have received it.
 *
 * Checksum: our sender copies the datagram as its stack left it, the UDP
 * field either complete or, with a checksum offload, the pseudo-header
 * sum alone ("Datagrams" in vmc_proto.h; vmcf_udp_direct() sends no
 * other).  Marked verified, a datagram of the second kind that the
 * receiver forwards (DNAT, IPVS) would leave unfilled.  So a field equal
 * to the pseudo-header sum is taken as blank: CHECKSUM_PARTIAL, as
 * netfront marks NETRXF_csum_blank; delivered here it counts as verified,
 * forwarded it is completed on the way out.  Any other field is a
 * complete checksum (or IPv4's 0, none): verified, memory to memory.  A
 * correct complete checksum equal to the pseudo-header sum by chance is
 * harmless: completing it gives the same value (it adds the same bytes to
 * the same start).  The peer chooses nothing here but its own datagrams'
 * checksums, as it could through netfront.
 *
 * Link header: an Ethernet device's received frames start with one, which
 * packet sockets (tcpdump), a macvlan's or bridge's receive handler and
 * MAC filters read: ours is what the peer's frame would have carried
 * through the bridge, its vif's MAC to ours (its first vif's, as Dom0
 * lists them: nothing says which vif an address sits behind).  On
 * another kind of device (a tunnel's address) the datagram starts at its
 * IP header, as before.  NET_SKB_PAD of headroom holds the header.
 */
static void vmcf_dgram_deliver(struct sk_buff *skb, struct net_device *dev,
			       const struct vmc_dgram *d, const u8 *src)
{
	const struct udphdr *uh = (const struct udphdr *)(skb->data + d->hlen);
	struct ethhdr *eth;

	skb->dev = dev;
	skb->protocol = htons(d->family == VMC_AF_INET ? ETH_P_IP : ETH_P_IPV6);
	skb_reset_network_header(skb);
	skb->pkt_type = PACKET_HOST;
	/* Both in the head: vmcf_dgram_skb() keeps the headers there. */
	if (uh->check != vmcf_udp_blank(skb->data, d, skb->len) ||
	    !skb_partial_csum_set(skb, d->hlen, offsetof(struct udphdr, check)))
		skb->ip_summed = CHECKSUM_UNNECESSARY;
	if (dev->type != ARPHRD_ETHER || skb_headroom(skb) < ETH_HLEN) {
		skb_reset_mac_header(skb);
		return;
	}
	eth = skb_push(skb, ETH_HLEN);
	skb_reset_mac_header(skb);
	ether_addr_copy(eth->h_dest, dev->dev_addr);
	ether_addr_copy(eth->h_source, src);
	eth->h_proto = skb->protocol;
	__skb_pull(skb, ETH_HLEN);
}

/*
 * What the peer put in the datagram ring: each datagram is copied out,
 * then checked (vmc_dgram_check; its source must be an address Dom0 lists
 * for the peer, its destination one of ours) and handed to our IP stack
 * as if netfront had received it: sockets, their buffers and their drops
 * are UDP's own.  vmcf_evt() (softirq, as netfront's receive path), at
 * most VMCF_DGRAM_BUDGET at a time; a malformed one breaks the channel.
 * Straight into the stack (netif_receive_skb(), as a NAPI poll would),
 * not through the backlog queue and one more softirq round.
 */
static bool vmcf_udp_in(struct vmcf_peer *p, bool *moved)
{
	u8 src[ETH_ALEN] __aligned(2);	/* ether_addr_copy() */
	unsigned int budget = VMCF_DGRAM_BUDGET;
	struct vmcf_skb_fill fill;
	struct net_device *dev;
	struct sk_buff *skb;
	struct vmc_dgram d;
	bool notify = false, owned;
	const char *bad;
	__be32 a4;
	long len;

	while (budget--) {
		len = vmc_ring_msg_peek(&p->dg_rx, VMC_DGRAM_MAX);
		if (len == -EAGAIN) {
			/* Ask for an event, then look once more. */
			if (vmc_ring_cons_wait(&p->dg_rx) == 0)
				return notify;
			continue;
		}
		if (len < 0) {
			bad = "corrupt datagram ring";
			goto broken;
		}
		*moved = true;
		skb = vmcf_dgram_skb(len);
		if (!skb) {
			atomic_long_inc(&vmcf_udp_rx_nomem);
			notify |= vmc_ring_consume(&p->dg_rx,
						   vmc_ring_msg_room(len));
			continue;
		}
		fill.skb = skb;
		fill.failed = false;
		notify |= vmc_ring_msg_read_to(&p->dg_rx, len, vmcf_store_skb,
					       &fill);
		if (fill.failed) {	/* a bug, warned once: as no memory */
			atomic_long_inc(&vmcf_udp_rx_nomem);
			kfree_skb(skb);
			continue;
		}
		bad = "malformed datagram";
		/* It reads only the headers: in the head, vmcf_dgram_skb(). */
		if (vmc_dgram_check(skb->data, len, &d))
			goto broken_skb;
		spin_lock_bh(&p->conn_lock);
		owned = vmcf_entry_has(&p->entry, d.family, d.saddr);
		/* Dom0 lists a peer only with a vif (vmcb_compose()). */
		if (p->entry.nr_macs)
			ether_addr_copy(src, p->entry.macs[0]);
		else
			eth_zero_addr(src);
		spin_unlock_bh(&p->conn_lock);
		/*
		 * Dropped, not fatal: an honest peer's new address (an IPv6
		 * temporary one) can be in use before Dom0 lists it for it.
		 */
		if (!owned) {
			atomic_long_inc(&vmcf_udp_rx_source);
			kfree_skb(skb);
			continue;
		}
		rcu_read_lock();
		if (d.family == VMC_AF_INET) {
			memcpy(&a4, d.daddr, 4);
			dev = __ip_dev_find(&init_net, a4, false);
		} else {
			dev = ipv6_dev_find(&init_net,
					    (const struct in6_addr *)d.daddr,
					    NULL);
		}
		/*
		 * We never claim an address of a loopback device (a service
		 * address on lo), so a well-behaved peer never writes one:
		 * dropped as not ours, as one we no longer hold.
		 */
		if (!dev || (dev->flags & IFF_LOOPBACK)) {
			rcu_read_unlock();
			atomic_long_inc(&vmcf_udp_rx_unknown);
			kfree_skb(skb);
			continue;
		}
		vmcf_dgram_deliver(skb, dev, &d, src);
		/*
		 * The stack may send from in here (an echo, a tunnel, a
		 * forward to a peer) and so reach vmcf_udp_out(), which takes
		 * dg_lock, or a socket's sendmsg: none of our locks is held.
		 */
		lockdep_assert_not_held(&p->dg_lock);
		lockdep_assert_not_held(&p->conn_lock);
		lockdep_assert_not_held(&p->tx_lock);
		netif_receive_skb(skb);
		rcu_read_unlock();
		atomic_long_inc(&vmcf_udp_rx);
	}
	tasklet_schedule(&p->evt);	/* budget spent: more next round */
	return notify;

broken_skb:
	kfree_skb(skb);
broken:
	atomic_long_inc(&vmcf_udp_bad);
	vmcf_peer_broken(p, bad);
	return notify;
}

/*
 * Read every control message the peer produced, then wake the sockets (all
 * of them after a control message, else those whose rings moved).  Runs
 * in the peer's work item, never concurrently with itself; queued by
 * vmcf_evt() for an event that brought control messages, and unprompted;
 * ends with the late EOI that unmasks the event channel.
 *
 * The EOI tells Xen's event code whether the event did anything: after
 * two spurious ones in a row it delays the unmask, exponentially up to a
 * second (drivers/xen/events/events_base.c, xen_irq_lateeoi_locked()).
 * That throttles a peer that only sends events; an event that moved a
 * ring is real work and must say so, or every event of a busy
 * request/response pair would wait for a timer.
 */
static void vmcf_work(struct work_struct *work)
{
	struct vmcf_peer *p = container_of(work, struct vmcf_peer, work);
	u8 buf[VMC_MSG_MAX] __aligned(8);
	bool notify = false, ctrl = false, moved = false;
	unsigned int backlog, budget = 256;
	long len;

#ifdef VMCF_EVIL
	if (READ_ONCE(p->evil_deaf))
		return;		/* and never EOI: its events stay masked */
#endif
	while (READ_ONCE(p->state) == VMCF_CONNECTED ||
	       READ_ONCE(p->state) == VMCF_UP) {
		if (!budget--) {
			/* A peer may write as fast as we read: others' turn. */
			queue_work(vmcf_wq, &p->work);
			break;
		}
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
		ctrl = true;
		vmcf_handle(p, buf, len);
	}
	spin_lock_bh(&p->tx_lock);
	backlog = p->backlog_len;
	notify |= vmcf_flush_locked(p);
	/* Queued messages went into the ring: the peer made room. */
	moved |= p->backlog_len != backlog;
	spin_unlock_bh(&p->tx_lock);
	if (notify)
		vmcf_notify(p);
	/*
	 * One event channel per pair.  A control message may have changed
	 * any connection's state: then wake them all; else those that moved.
	 */
	moved |= vmcf_wake_conns(p, ctrl);
	moved |= test_and_clear_bit(1, &p->eoi_pending);	/* vmcf_evt() */
	/* Unmask only an event that was delivered; runs also unprompted. */
	if (test_and_clear_bit(0, &p->eoi_pending))
		xen_irq_lateeoi(READ_ONCE(p->eoi_irq),
				(ctrl || moved) ? 0 : XEN_EOI_FLAG_SPURIOUS);
}

/* The peer may have made room for our waiting datagrams: write them. */
static bool vmcf_dg_room(struct vmcf_peer *p, bool *moved)
{
	struct sk_buff_head done;
	bool notify = false;
	int err = 0;

	if (skb_queue_empty_lockless(&p->dg_txq))
		return false;
	__skb_queue_head_init(&done);
	spin_lock_bh(&p->dg_lock);
	if (p->dg_on)
		notify = vmcf_dg_flush_locked(p, &err, &done);
	spin_unlock_bh(&p->dg_lock);
	*moved |= !skb_queue_empty(&done);
	vmcf_dg_free(&done);
	if (err == -EPROTO)
		vmcf_peer_broken(p, "corrupt datagram ring index");
	return notify;
}

/*
 * Soft irq, right after each event: wake the sockets whose rings moved
 * and read the datagrams, as netfront's receive path would, without a
 * thread switch between the event and the woken reader; control messages
 * (and a channel not yet up) go to the work item, which then EOIs.  Never
 * concurrently with itself; tasklet_kill() in vmcf_chan_close() stops it.
 */
static void vmcf_evt(struct tasklet_struct *t)
{
	struct vmcf_peer *p = from_tasklet(p, t, evt);
	bool moved = false, notify = false;

	if (READ_ONCE(p->stopping))
		return;
#ifdef VMCF_EVIL
	if (READ_ONCE(p->evil_deaf))
		return;		/* and never EOI: its events stay masked */
#endif
	if (READ_ONCE(p->state) != VMCF_UP) {
		queue_work(vmcf_wq, &p->work);
		return;
	}
	if (READ_ONCE(p->dg_on)) {
		notify = vmcf_udp_in(p, &moved);
		notify |= vmcf_dg_room(p, &moved);
	}
	moved |= vmcf_wake_conns(p, false);
	if (notify)
		vmcf_notify(p);
	/*
	 * A message, or room for our backlog: the work item's.  A message
	 * after this look comes with an event: the work item asked for one
	 * (vmc_ring_cons_wait()) before it last went idle.
	 */
	if (vmc_ring_avail_peek(&p->in) != 0 || READ_ONCE(p->backlog_len)) {
		if (moved)
			set_bit(1, &p->eoi_pending);
		queue_work(vmcf_wq, &p->work);
		return;
	}
	if (test_and_clear_bit(0, &p->eoi_pending))
		xen_irq_lateeoi(READ_ONCE(p->eoi_irq),
				moved ? 0 : XEN_EOI_FLAG_SPURIOUS);
}

/*
 * Hard irq: hand the event to vmcf_evt(), which EOIs it or has the work
 * item do it.  The event channel stays masked until that late EOI, so one
 * event at a time is in flight.
 */
static irqreturn_t vmcf_interrupt(int irq, void *dev_id)
{
	struct vmcf_peer *p = dev_id;

	if (READ_ONCE(p->stopping)) {
		xen_irq_lateeoi(irq, XEN_EOI_FLAG_SPURIOUS);
		return IRQ_HANDLED;
	}
	/*
	 * Xen raises a freshly bound interdomain port at once, so this can
	 * run inside request_irq(), before vmcf_bind_irq() has stored p->irq:
	 * the EOI must use the irq we were called for, or the port stays
	 * masked for good.  The bit orders the store for the EOI's reader.
	 */
	WRITE_ONCE(p->eoi_irq, irq);
	/* Pairs with test_and_clear_bit() (a full barrier) at the EOI. */
	smp_mb__before_atomic();
	set_bit(0, &p->eoi_pending);
	p->events++;
	tasklet_schedule(&p->evt);
	return IRQ_HANDLED;
}

/* ---- channel set-up and teardown (xenwatch thread, vmcf_lock held) ---- */

static int vmcf_bind_irq(struct vmcf_peer *p, evtchn_port_t port)
{
	int irq;

	/*
	 * On failure the port is not closed here: if request_irq() failed,
	 * the kernel's unbind already closed it, and a second close could
	 * hit the same number just given to another driver.  Only a failed
	 * bind (no memory) leaves the port open: one port leaked, until the
	 * domain goes away.
	 */
	irq = bind_evtchn_to_irqhandler_lateeoi(port, vmcf_interrupt, 0,
						"xenvmc", p);
	if (irq < 0)
		return irq;
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

static void vmcf_pending_free(struct vmcf_peer *p)
{
	struct vmcf_pending *pend, *tmp;

	spin_lock_bh(&p->conn_lock);
	list_for_each_entry_safe(pend, tmp, &p->pending, list)
		kfree(pend);
	INIT_LIST_HEAD(&p->pending);
	p->nr_pending = 0;
	spin_unlock_bh(&p->conn_lock);
}

/* Undo everything vmcf_chan_open/connect did, in reverse order. */
static void vmcf_chan_close(struct vmcf_peer *p)
{
	struct gnttab_unmap_grant_ref unmap;
	struct sk_buff_head lost;
	char node[24];
	bool done;

	/* Nothing to release (closed peers are closed again on every sync). */
	if (!p->held)
		return;
	/*
	 * The peer may well be alive (Dom0 dropped it from the table, its
	 * backend went away): move its connections back to TCP first, so
	 * that neither side's unread ring bytes are lost.  A dead peer does
	 * not answer: its connections are saved from its ring below.
	 */
	WRITE_ONCE(p->leaving, true);
	if (READ_ONCE(p->state) == VMCF_UP && !p->closing)
		vmcf_revert_all("peer channel closing: moved back to TCP", 0, p);
	/* No sender writes the datagram ring after this (dg_lock). */
	__skb_queue_head_init(&lost);
	spin_lock_bh(&p->dg_lock);
	p->dg_on = false;
	skb_queue_splice_init(&p->dg_txq, &lost);
	p->dg_txq_bytes = 0;
	spin_unlock_bh(&p->dg_lock);
	/* Waiting datagrams are lost, as in a queue that goes down. */
	atomic_long_add(skb_queue_len(&lost), &vmcf_udp_tx_full);
	__skb_queue_purge(&lost);
	p->peer_features = 0;
	if (p->irq >= 0) {
		WRITE_ONCE(p->stopping, true);
		disable_irq(p->irq);	/* waits for a running handler */
	}
	tasklet_kill(&p->evt);	/* the irq is off: it does not come back */
	cancel_work_sync(&p->work);	/* its EOI still finds the irq */
	clear_bit(0, &p->eoi_pending);
	clear_bit(1, &p->eoi_pending);
	cancel_delayed_work_sync(&p->tick);
	/* Whether the peer is done first: then all it wrote is in its ring. */
	done = vmcf_peer_done(p);
	vmcf_last_answers(p, done);
	vmcf_conns_down(p, done);	/* no socket touches the pools after */
	spin_lock_bh(&p->tx_lock);
	/*
	 * What fits goes into the ring first: a peer still tearing down reads
	 * its last answers there (vmcf_last_answers()); the rest is lost.
	 */
	if (vmcf_flush_locked(p) && !done)
		vmcf_notify(p);
	vmcf_backlog_free(p);
	p->tx_dead = true;	/* the out page goes below */
	spin_unlock_bh(&p->tx_lock);
	/*
	 * A send or revert of vmcf_conns_down() may have armed it again, and
	 * it walks p->conns: stopped for good (tx_dead) before the pools go.
	 */
	cancel_delayed_work_sync(&p->tick);
	vmcf_rpool_unmap(p);
	if (p->pool || p->pool_grefs)
		vmcf_pool_destroy(p);
	vmcf_pending_free(p);
	if (p->irq >= 0) {
		unbind_from_irqhandler(p->irq, p);	/* closes the port */
		p->irq = -1;
		atomic_dec(&vmcf_evtchns);
	}
	if (p->mapped) {
		gnttab_set_unmap_op(&unmap,
				    vmcf_page_va(p->in_page),
				    GNTMAP_host_map, p->in_handle);
		unmap.status = GNTST_general_error;
		if (gnttab_unmap_refs(&unmap, NULL, &p->in_page, 1) ||
		    unmap.status != GNTST_okay) {
			/* Still mapped: leaked (see vmcf_rpool_unmap()). */
			pr_warn_ratelimited("peer %u: unmap failed: %d: page leaked\n",
					    p->domid, unmap.status);
			p->in_page = NULL;
		} else {
			atomic_dec(&vmcf_maps);
		}
		p->mapped = false;
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
	p->held = false;
}

/* Grant our page and, as the lower domid, allocate the event channel. */
static int vmcf_chan_open(struct vmcf_peer *p)
{
	struct evtchn_alloc_unbound alloc = {
		.dom = DOMID_SELF,
		.remote_dom = p->domid,
	};
	int err;

	p->held = true;
	p->out_page = (void *)get_zeroed_page(GFP_KERNEL);
	if (!p->out_page)
		return -ENOMEM;
	err = vmc_ring_init(&p->out, p->out_page,
			    p->out_page + VMC_CTRL_DATA_OFF,
			    VMC_CTRL_DATA_SIZE, true);
	if (err)
		goto err_close;
	spin_lock_bh(&p->tx_lock);
	p->tx_dead = false;
	p->out_tail = p->out.pos;
	spin_unlock_bh(&p->tx_lock);
	spin_lock_bh(&p->conn_lock);
	p->closing = false;
	WRITE_ONCE(p->leaving, false);
	spin_unlock_bh(&p->conn_lock);
	err = gnttab_grant_foreign_access(p->domid,
					  xen_page_to_gfn(virt_to_page(p->out_page)),
					  0);
	if (err < 0)
		goto err_close;
	p->out_gref = err;
	p->granted = true;
	atomic_inc(&vmcf_grants);
	err = vmcf_pool_create(p);
	if (err)
		goto err_close;

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
	if (map.status == GNTST_okay) {	/* unmapped by vmcf_chan_close() */
		p->in_handle = map.handle;
		p->mapped = true;
		atomic_inc(&vmcf_maps);
	}
	if (err || !p->mapped) {
		pr_warn_ratelimited("peer %u: cannot map grant %u: %d/%d\n",
				    p->domid, gref, err, map.status);
		return -EIO;
	}
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
	list_del_rcu(&p->list);
	kfree_rcu(p, rcu);	/* the TCP probe walks the list under RCU */
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
	spin_lock_init(&p->conn_lock);
	spin_lock_init(&p->dg_lock);
	__skb_queue_head_init(&p->dg_txq);
	INIT_LIST_HEAD(&p->backlog);
	INIT_LIST_HEAD(&p->waiting);
	INIT_LIST_HEAD(&p->attached);
	INIT_LIST_HEAD(&p->pending);
	tasklet_setup(&p->evt, vmcf_evt);
	INIT_WORK(&p->work, vmcf_work);
	INIT_DELAYED_WORK(&p->tick, vmcf_tick);
	list_add_tail_rcu(&p->list, &vmcf_peers);
	return p;
}

static const char vmcf_why_limit[] = "max_peers channels open: stays on the network";

/* Channels holding pools (or about to): what max_peers bounds. */
static unsigned int vmcf_nr_open(void)
{
	struct vmcf_peer *p;
	unsigned int n = 0;

	lockdep_assert_held(&vmcf_lock);
	list_for_each_entry(p, &vmcf_peers, list)
		n += p->state == VMCF_OFFERED || p->state == VMCF_CONNECTED ||
		     p->state == VMCF_UP;
	return n;
}

/* (Re)open the channel to @p; a failure leaves it CLOSED with a reason. */
static void vmcf_peer_open(struct vmcf_peer *p)
{
	int err;

	vmcf_chan_close(p);
	p->state = VMCF_CLOSED;		/* its own slot is free now */
	if (vmcf_nr_open() >= max_peers) {
		p->why = vmcf_why_limit;
		return;
	}
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
		/*
		 * Only a missing directory is an empty table: after another
		 * error, forgetting every peer would reset every channel.
		 * The next event retries.
		 */
		if (PTR_ERR(names) != -ENOENT)
			return;
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
		spin_lock_bh(&p->conn_lock);
		p->entry = e;
		spin_unlock_bh(&p->conn_lock);
		/*
		 * A closed or broken channel gets a new chance when new.  An
		 * offered one starts over too: P may have come back, and Dom0
		 * relays our offer to it only once we write one again
		 * (vmc_back.c, vmcb_withhold()).  A fresh grant, not the same
		 * offer: the incarnation that left may have mapped our page
		 * and written into it.
		 */
		if (relist && (p->state == VMCF_CLOSED ||
			       p->state == VMCF_BROKEN ||
			       p->state == VMCF_OFFERED))
			vmcf_peer_open(p);
	}
	kfree(names);
	list_for_each_entry_safe(p, tmp, &vmcf_peers, list)
		if (!p->seen)
			vmcf_peer_free(p);
}

/*
 * A channel that went away makes room for a peer left waiting (called
 * after vmcf_sync_chans(), which has released what broken and closed
 * channels held).  True if one was opened: its peer's offer may already
 * be relayed, with no watch left to fire, so the caller syncs again.
 */
static bool vmcf_open_waiting(void)
{
	struct vmcf_peer *p;
	bool opened = false;

	list_for_each_entry(p, &vmcf_peers, list) {
		if (p->state != VMCF_CLOSED || p->why != vmcf_why_limit ||
		    vmcf_nr_open() >= max_peers)
			continue;
		vmcf_peer_open(p);
		opened |= p->state == VMCF_OFFERED;
	}
	return opened;
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
		if (IS_ERR(val)) {
			/*
			 * The peer's end is gone while it is still listed
			 * (Dom0 takes a peer that leaves out of the table
			 * first): it closed its channel, or it left and came
			 * back, and Dom0 withdrew what its previous
			 * incarnation offered.  A BYE it sent may be unread,
			 * or lost with a full ring.  Be ready for its next
			 * offer.
			 */
			if (PTR_ERR(val) == -ENOENT &&
			    (p->state == VMCF_CONNECTED || p->state == VMCF_UP))
				vmcf_peer_open(p);
			continue;
		}
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

/*
 * Is xenvmc/ the table Dom0 built for this incarnation?  Dom0 writes the
 * incarnation it is for into xenvmc/inc before any entry.  Another one:
 * the table is what our previous incarnation was told (a quick reload or a
 * resume Dom0 has not handled yet), and the offers relayed in it were made
 * to that one: connecting to them would map pages being torn down.  None:
 * a Dom0 module without incarnations, or a table wiped (and what Dom0
 * writes into it next is for us: it lists us only once it has adopted our
 * incarnation): the table counts as before.
 */
static bool vmcf_table_ours(void)
{
	unsigned int len;
	u64 inc = 0;
	char *val;
	int err;

	val = xenbus_read(XBT_NIL, vmcf_base, "xenvmc/inc", &len);
	if (IS_ERR(val)) {
		if (PTR_ERR(val) != -ENOENT)
			return false;	/* unknown: the next event tells */
	} else {
		err = vmc_xs_parse_inc(val, len, &inc);
		kfree(val);
		if (err) {
			pr_warn_ratelimited("unreadable xenvmc/inc from Dom0\n");
			return false;
		}
		if (inc != vmcf_inc)
			return false;
	}
	return true;
}

static void vmcf_table_changed(struct xenbus_watch *watch, const char *path,
			       const char *token)
{
	mutex_lock(&vmcf_lock);
	if (!vmcf_stopping && !vmcf_suspended && vmcf_table_ours()) {
		vmcf_sync_peers();
		vmcf_sync_chans();
		if (vmcf_open_waiting())
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
				if (vmc_addr_unicast(out[n].family, out[n].addr))
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
			if (vmc_addr_unicast(out[n].family, out[n].addr))
				n++;
		}
		read_unlock_bh(&in6->lock);
#endif
	}
	rtnl_unlock();
	return n;
}

/*
 * Publish our addresses (when changed), then state "1"; before the first
 * of this incarnation, the incarnation (vmc_proto.h: Dom0 judges it on
 * that node's own event, so it goes first).
 */
static void vmcf_publish_addrs(struct work_struct *work)
{
	struct vmc_addr addrs[VMC_MAX_ADDRS];
	char val[VMC_XS_ADDRS_MAX + 1], inc[VMC_XS_INC_LEN + 1];
	unsigned int n;
	int err = 0;

	n = vmcf_collect_addrs(addrs);
	vmc_xs_format_addrs(val, addrs, n);
	mutex_lock(&vmcf_lock);
	if (!vmcf_stopping && !vmcf_suspended &&
	    (!vmcf_published || strcmp(val, vmcf_addrs_val))) {
		if (!vmcf_published) {
			vmc_xs_format_inc(inc, vmcf_inc);
			err = xenbus_write(XBT_NIL, vmcf_data, "inc", inc);
		}
		if (!err)
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

static void vmcf_show_addr(struct seq_file *m, const struct vmc_tuple *t,
			   const u8 *addr, u16 port)
{
	if (t->family == VMC_AF_INET)
		seq_printf(m, "%pI4:%u", addr, port);
	else
		seq_printf(m, "[%pI6c]:%u", addr, port);
}

/* One line per peer channel, for debugging the control plane. */
static int vmcf_channels_show(struct seq_file *m, void *v)
{
	struct vmcf_peer *p;

	seq_puts(m, "domid state irq port out_prod out_cons in_prod in_cons backlog rpool_got rpool_pages rpool_ready peer_ready msgs_in msgs_out events notifies\n");
	mutex_lock(&vmcf_lock);
	list_for_each_entry(p, &vmcf_peers, list) {
		seq_printf(m, "%u %s %d %u ", p->domid,
			   vmcf_state_name[READ_ONCE(p->state)], p->irq, p->port);
		if (p->out_page)
			seq_printf(m, "%u %u ", le32_to_cpu(READ_ONCE(p->out.hdr->prod)),
				   le32_to_cpu(READ_ONCE(p->out.hdr->cons)));
		else
			seq_puts(m, "- - ");
		if (p->mapped)
			seq_printf(m, "%u %u ", le32_to_cpu(READ_ONCE(p->in.hdr->prod)),
				   le32_to_cpu(READ_ONCE(p->in.hdr->cons)));
		else
			seq_puts(m, "- - ");
		seq_printf(m, "%u %u %u %d %d %lu %lu %lu %ld\n",
			   p->backlog_len, p->rpool_got, p->rpool_pages,
			   READ_ONCE(p->rpool_ready), READ_ONCE(p->peer_ready),
			   p->msgs_in, p->msgs_out, p->events,
			   atomic_long_read(&p->notifies));
	}
	mutex_unlock(&vmcf_lock);
	return 0;
}

static int vmcf_connections_show(struct seq_file *m, void *v)
{
	struct vmcf_conn *c;

	vmcf_hist_reap(false);
	/* Stable columns, documented in the README. */
	seq_puts(m, "proto local remote peer state tx_bytes rx_bytes why\n");
	spin_lock_bh(&vmcf_conn_hash_lock);
	list_for_each_entry(c, &vmcf_conn_all, anode) {
		seq_puts(m, "tcp ");
		vmcf_show_addr(m, &c->tuple, c->tuple.laddr,
			       le16_to_cpu(c->tuple.lport));
		seq_putc(m, ' ');
		vmcf_show_addr(m, &c->tuple, c->tuple.raddr,
			       le16_to_cpu(c->tuple.rport));
		seq_printf(m, " %u %s %llu %llu %s\n", c->domid,
			   vmcf_cstate_name[READ_ONCE(c->state)], c->tx_bytes,
			   c->rx_bytes, c->why ? c->why : "-");
	}
	spin_unlock_bh(&vmcf_conn_hash_lock);
	return 0;
}

static int vmcf_stats_show(struct seq_file *m, void *v)
{
	struct vmcf_peer *p;
	unsigned long in = 0, out = 0, bad = 0;
	unsigned int open, waiting = 0;
	int i;

	mutex_lock(&vmcf_lock);
	list_for_each_entry(p, &vmcf_peers, list) {
		in += p->msgs_in;
		out += p->msgs_out;
		bad += p->bad_msgs;
		waiting += p->why == vmcf_why_limit;
	}
	open = vmcf_nr_open();
	mutex_unlock(&vmcf_lock);
	vmcf_hist_reap(false);
	seq_printf(m, "version %s\n", VMCF_VERSION);
	seq_printf(m, "proto_version %u\n", VMC_PROTO_VERSION);
	seq_printf(m, "domid %u\n", vmcf_domid);
	seq_printf(m, "incarnation %016llx\n", READ_ONCE(vmcf_inc));
	seq_printf(m, "grants_in_use %d\n", atomic_read(&vmcf_grants));
	seq_printf(m, "mapped_pages %d\n", atomic_read(&vmcf_maps));
	seq_printf(m, "event_channels %d\n", atomic_read(&vmcf_evtchns));
	seq_printf(m, "control_msgs_in %lu\n", in);
	seq_printf(m, "control_msgs_out %lu\n", out);
	seq_printf(m, "bad_control_msgs %lu\n", bad);
	seq_printf(m, "broken_channels %ld\n",
		   atomic_long_read(&vmcf_broken_channels));
	seq_printf(m, "tcp_enabled %d\n", READ_ONCE(tcp));
	seq_printf(m, "tcp_established_seen %ld\n",
		   atomic_long_read(&vmcf_tcp_seen));
	seq_printf(m, "tcp_not_to_a_peer %ld\n",
		   atomic_long_read(&vmcf_tcp_not_peer));
	seq_printf(m, "busy_poll_hits %ld\n",
		   atomic_long_read(&vmcf_busy_poll_hits));
	seq_printf(m, "connections %d\n", atomic_read(&vmcf_conns));
	seq_printf(m, "accelerated_total %ld\n",
		   atomic_long_read(&vmcf_accelerated));
	seq_printf(m, "resets_total %ld\n", atomic_long_read(&vmcf_resets));
	seq_printf(m, "reverted_total %ld\n", atomic_long_read(&vmcf_reverted));
	seq_printf(m, "reverted_bytes_resent %ld\n",
		   atomic_long_read(&vmcf_resent_bytes));
	seq_printf(m, "drained_total %ld\n", atomic_long_read(&vmcf_drained));
	seq_printf(m, "udp_enabled %d\n", READ_ONCE(udp));
	seq_printf(m, "udp_tx_datagrams %ld\n", atomic_long_read(&vmcf_udp_tx));
	seq_printf(m, "udp_rx_datagrams %ld\n", atomic_long_read(&vmcf_udp_rx));
	seq_printf(m, "udp_dropped_ring_full %ld\n",
		   atomic_long_read(&vmcf_udp_tx_full));
	seq_printf(m, "udp_dropped_no_memory %ld\n",
		   atomic_long_read(&vmcf_udp_rx_nomem));
	seq_printf(m, "udp_dropped_not_ours %ld\n",
		   atomic_long_read(&vmcf_udp_rx_unknown));
	seq_printf(m, "udp_dropped_bad_source %ld\n",
		   atomic_long_read(&vmcf_udp_rx_source));
	seq_printf(m, "udp_bad_datagrams %ld\n", atomic_long_read(&vmcf_udp_bad));
	seq_printf(m, "udp_sent_by_network %ld\n",
		   atomic_long_read(&vmcf_udp_to_net));
	for (i = 0; i < VMCF_FB_NR; i++)
		seq_printf(m, "%s %ld\n", vmcf_fb_name[i],
			   atomic_long_read(&vmcf_fallbacks[i]));
	seq_printf(m, "ring_bytes_per_connection %lu\n",
		   2 * (unsigned long)ring_kb * 1024);
	seq_printf(m, "ring_bytes_per_connection_max %lu\n",
		   2UL * vmcf_ring_slots * ring_kb * 1024);
	seq_printf(m, "rings_over_one_slot_total %ld\n",
		   atomic_long_read(&vmcf_big_rings));
	seq_printf(m, "channels_open %u\n", open);
	seq_printf(m, "max_peers %u\n", max_peers);
	seq_printf(m, "peers_over_max_peers %u\n", waiting);
	return 0;
}

/* ---- suspend, save/restore, migration; the tcp switch ---- */

/* Channels down: every peer hears BYE; Dom0 withdraws us from its tables. */
static void vmcf_leave(u32 reason)
{
	struct vmcf_peer *p, *tmp;
	struct vmc_msg_bye bye;

	vmc_msg_init(&bye, VMC_MSG_BYE);
	bye.reason = cpu_to_le32(reason);
	lockdep_assert_held(&vmcf_lock);
	list_for_each_entry(p, &vmcf_peers, list)
		if (p->state == VMCF_CONNECTED || p->state == VMCF_UP)
			vmcf_send(p, &bye);
	xenbus_rm(XBT_NIL, vmcf_base, "data/xenvmc");
	vmcf_published = false;
	list_for_each_entry_safe(p, tmp, &vmcf_peers, list)
		vmcf_peer_free(p);
}

/*
 * A new incarnation, at load and at resume: the peers heard our BYE, and
 * Dom0 must see us come back even if it never saw us leave.  Never 0,
 * which stands for none.
 */
static void vmcf_new_incarnation(void)
{
	u64 inc;

	do {
		inc = get_random_u64();
	} while (!inc);
	WRITE_ONCE(vmcf_inc, inc);
}

/*
 * Migration state (drivers/xen/manage.c do_suspend: tasks are frozen,
 * then every device's .freeze, then the domain is saved; .thaw if the
 * suspend was cancelled, .restore on the new host or after xl restore,
 * where the domid may differ and every grant and event channel is gone):
 *
 *   state     | event             | action                                | next
 *   ----------+-------------------+---------------------------------------+----------
 *   running   | .freeze           | every connection back to TCP (REVERT, | frozen
 *             |                   | 2 s at most, then reset); BYE; claim  |
 *             |                   | withdrawn; every channel torn down    |
 *   frozen    | .thaw / .restore  | read the domid again, a new           | running
 *             |                   | incarnation, watch our new table,     |
 *             |                   | publish the claim: channels and new   |
 *             |                   | connections come back                 |
 *
 * Blocked readers and writers were woken by the freezer and restart their
 * calls after it, on TCP's functions.
 */
static int vmcf_pm_freeze(struct device *dev)
{
	ktime_t t0 = ktime_get(), t1;
	long reverted = atomic_long_read(&vmcf_reverted);
	long resets = atomic_long_read(&vmcf_resets);

	WRITE_ONCE(vmcf_draining, true);
	vmcf_revert_all("suspend: moved back to TCP", 0, NULL);
	t1 = ktime_get();
	mutex_lock(&vmcf_lock);
	vmcf_suspended = true;
	vmcf_leave(VMC_R_SUSPEND);
	mutex_unlock(&vmcf_lock);
	/* What XenVMC adds to a save or migration: the operator sees it. */
	pr_info("suspend: back to TCP in %lld ms (%ld reverted, %ld reset), channels closed in %lld ms\n",
		ktime_ms_delta(t1, t0),
		atomic_long_read(&vmcf_reverted) - reverted,
		atomic_long_read(&vmcf_resets) - resets,
		ktime_ms_delta(ktime_get(), t1));
	return 0;
}

static int vmcf_pm_resume(struct device *dev)
{
	unsigned int old = vmcf_domid, domid;
	char *node;
	int err;

	if (xenbus_scanf(XBT_NIL, "domid", "", "%u", &domid) != 1)
		domid = old;
	node = kasprintf(GFP_KERNEL, "/local/domain/%u/xenvmc", domid);
	unregister_xenbus_watch(&vmcf_table_watch);
	mutex_lock(&vmcf_lock);
	vmcf_domid = domid;
	snprintf(vmcf_base, sizeof(vmcf_base), "/local/domain/%u", vmcf_domid);
	snprintf(vmcf_data, sizeof(vmcf_data), "%s/data/xenvmc", vmcf_base);
	vmcf_new_incarnation();
	if (node) {
		kfree(vmcf_table_watch.node);
		vmcf_table_watch.node = node;
	}
	vmcf_suspended = false;
	mutex_unlock(&vmcf_lock);
	WRITE_ONCE(vmcf_draining, false);
	err = register_xenbus_watch(&vmcf_table_watch);
	if (err)
		pr_err("resume: cannot watch %s (%d): no peers until reload\n",
		       vmcf_table_watch.node, err);
	queue_work(vmcf_wq, &vmcf_addr_work);
	pr_info("resumed in domain %u (was %u), incarnation %016llx\n", domid,
		old, READ_ONCE(vmcf_inc));
	return 0;
}

static const struct dev_pm_ops vmcf_pm_ops = {
	.freeze = vmcf_pm_freeze,
	.thaw = vmcf_pm_resume,
	.restore = vmcf_pm_resume,
};

static struct platform_driver vmcf_pm_driver = {
	.driver = {
		.name = "xenvmc",
		.pm = &vmcf_pm_ops,
	},
};

static struct platform_device *vmcf_pm_dev;

/* tcp=0 at run time: accelerated connections go back to TCP as well. */
static int vmcf_set_tcp(const char *val, const struct kernel_param *kp)
{
	int err = param_set_bool(val, kp);

	/* Called with kernel_param_lock held: vmcf_exiting is stable. */
	if (!err && !READ_ONCE(tcp) && READ_ONCE(vmcf_wq) && !vmcf_exiting)
		vmcf_revert_all("tcp=0: moved back to TCP", 0, NULL);
	return err;
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

#ifdef VMCF_EVIL
/*
 * Test-only misbehaviour, built by `make VMC_EVIL=1` (test/kbuild.sh puts
 * it in build/<release>/evil/), never in a normal build: this DomU attacks
 * one peer on command, so the lab can show what the peer survives
 * (test/lab-tests/hostile.sh).  Write "<attack> <domid>" to
 * /proc/xenvmc/evil:
 *
 *   index    a wild producer index in every ring we send on to the peer:
 *            each connection's, and the datagram ring's
 *   length   a datagram record longer than any datagram
 *   version  a control message of an unknown protocol version
 *   size     a control message whose length does not match its type
 *   storm    100000 events with nothing behind them
 *   deaf     never read the peer's control or datagram ring again
 *   loopback a well-formed UDP datagram from our IPv6 address to [::1]
 *   reoffer  publish a new channel offer (a wrong grant ref) while ours is
 *            up: the peer closes its channel to us (with
 *            evil_answer_delay_ms, while its REVERT waits for our answer)
 *
 * and load with evil_gref=1 to announce pool grant refs we never granted.
 */
static void vmcf_evil_index(struct vmcf_peer *p)
{
	struct vmcf_conn *c;
	unsigned int i;

	spin_lock_bh(&p->conn_lock);
	for (i = 0; p->conns && i < p->pool_slots; i++) {
		c = p->conns[i];
		if (c)
			WRITE_ONCE(c->tx.hdr->prod,
				   cpu_to_le32(c->tx.pos + c->tx.size + 4096));
	}
	spin_unlock_bh(&p->conn_lock);
	spin_lock_bh(&p->dg_lock);
	if (p->dg_on)
		WRITE_ONCE(p->dg_tx.hdr->prod,
			   cpu_to_le32(p->dg_tx.pos + 3 * p->dg_tx.size));
	spin_unlock_bh(&p->dg_lock);
}

static void vmcf_evil_length(struct vmcf_peer *p)
{
	u32 seg;

	spin_lock_bh(&p->dg_lock);
	if (p->dg_on && vmc_ring_space(&p->dg_tx) >= 4) {
		/* Records start 4-byte aligned: the word is contiguous. */
		*(__le32 *)vmc_ring_seg(&p->dg_tx, p->dg_tx.pos, 4, &seg) =
			cpu_to_le32(p->dg_tx.size * 2);
		vmc_ring_produce(&p->dg_tx, 4);
	}
	spin_unlock_bh(&p->dg_lock);
}

/*
 * A well-formed IPv6 datagram from our address @src to [::1]:7460, "EVIL":
 * the receiver must refuse it (vmc_addr_unicast()), not deliver it to a
 * socket bound to loopback, which the network cannot reach.
 */
static void vmcf_evil_loopback(struct vmcf_peer *p, const struct vmc_addr *src)
{
	u8 pkt[40 + 8 + 4] = { 0x60 };
	struct udphdr *uh = (struct udphdr *)(pkt + 40);
	bool notify = false;

	pkt[5] = 12;			/* payload: UDP header + 4 bytes */
	pkt[6] = IPPROTO_UDP;
	pkt[7] = 64;
	memcpy(pkt + 8, src->addr, 16);
	pkt[39] = 1;			/* ::1 */
	uh->source = htons(7460);
	uh->dest = htons(7460);
	uh->len = htons(12);
	memcpy(pkt + 48, "EVIL", 4);
	/* A valid checksum: UDP over IPv6 drops a zero one by itself. */
	uh->check = csum_ipv6_magic((struct in6_addr *)(pkt + 8),
				    (struct in6_addr *)(pkt + 24), 12,
				    IPPROTO_UDP, csum_partial(uh, 12, 0));
	spin_lock_bh(&p->dg_lock);
	if (p->dg_on)
		vmc_ring_msg_write(&p->dg_tx, pkt, sizeof(pkt), &notify);
	spin_unlock_bh(&p->dg_lock);
}

static ssize_t vmcf_evil_write(struct file *file, const char __user *ubuf,
			       size_t len, loff_t *off)
{
	struct vmc_addr addrs[VMC_MAX_ADDRS];
	unsigned int domid, i, n, v6;
	struct vmc_msg_ready m;
	char buf[32], what[16];
	struct vmcf_peer *p;
	ssize_t ret = len;

	if (len >= sizeof(buf) || copy_from_user(buf, ubuf, len))
		return -EINVAL;
	buf[len] = 0;
	if (sscanf(buf, "%15s %u", what, &domid) != 2)
		return -EINVAL;
	/* Our own IPv6 address, for "loopback" (rtnl: not under vmcf_lock). */
	n = vmcf_collect_addrs(addrs);
	for (v6 = 0; v6 < n && addrs[v6].family != VMC_AF_INET6; v6++)
		;
	mutex_lock(&vmcf_lock);
	list_for_each_entry(p, &vmcf_peers, list)
		if (p->domid == domid && p->state == VMCF_UP)
			goto found;
	mutex_unlock(&vmcf_lock);
	return -ENOENT;
found:
	pr_warn("EVIL TEST BUILD: %s against peer %u\n", what, domid);
	vmc_msg_init(&m, VMC_MSG_READY);
	if (!strcmp(what, "index")) {
		vmcf_evil_index(p);
	} else if (!strcmp(what, "length")) {
		vmcf_evil_length(p);
	} else if (!strcmp(what, "version")) {
		m.hdr.version = VMC_PROTO_VERSION + 7;
		vmcf_send(p, &m);
	} else if (!strcmp(what, "size")) {
		m.hdr.len = cpu_to_le16(sizeof(m.hdr));
		vmcf_send(p, &m);
	} else if (!strcmp(what, "storm")) {
		for (i = 0; i < 100000; i++) {
			notify_remote_via_evtchn(p->port);
			if (!(i % 1000))
				cond_resched();
		}
	} else if (!strcmp(what, "deaf")) {
		WRITE_ONCE(p->evil_deaf, true);
	} else if (!strcmp(what, "loopback") && v6 < n) {
		vmcf_evil_loopback(p, &addrs[v6]);
	} else if (!strcmp(what, "reoffer")) {
		/* The peer sees our channel start over, and closes its end. */
		snprintf(buf, sizeof(buf), "chan/%u", p->domid);
		xenbus_printf(XBT_NIL, vmcf_data, buf, "%u %u", p->out_gref + 1,
			      p->domid > vmcf_domid ? p->port : 0);
	} else {
		ret = -EINVAL;
	}
	vmcf_notify(p);
	mutex_unlock(&vmcf_lock);
	return ret;
}

static const struct proc_ops vmcf_evil_ops = {
	.proc_write = vmcf_evil_write,
};
#endif

static int __init vmcf_init(void)
{
	int err;

	if (!xen_domain() || xen_initial_domain()) {
		pr_err("not loaded: vmc_front runs in a Xen DomU only (this is %s)\n",
		       xen_domain() ? "Dom0: load vmc_back there" :
				      "not a Xen domain");
		return -ENODEV;
	}

	if (ring_kb < 4 || ring_kb > 1024 || (ring_kb & (ring_kb - 1)) ||
	    ring_kb * 1024 < PAGE_SIZE) {
		pr_err("not loaded: ring_kb=%u is not a power of two in 4..1024\n",
		       ring_kb);
		return -EINVAL;
	}
	if (!max_peers || max_peers > 1024) {
		pr_err("not loaded: max_peers=%u is not in 1..1024\n", max_peers);
		return -EINVAL;
	}
	/* Within what a peer accepts: VMC_RING_MAX_SLOTS, VMC_RING_MAX_PAGES. */
	vmcf_ring_slots = VMC_RING_MAX_SLOTS;
	while (vmcf_ring_slots > 1 &&
	       (vmcf_ring_slots * ring_kb > ring_max_kb ||
		vmcf_ring_slots * ring_kb >
		VMC_RING_MAX_PAGES * (PAGE_SIZE / 1024)))
		vmcf_ring_slots /= 2;
	if (!pool_rings || pool_rings > VMC_MAX_SLOTS ||
	    DIV_ROUND_UP(pool_rings, VMC_SLOTS_PER_PAGE) +
	    (u64)pool_rings * (ring_kb * 1024 / PAGE_SIZE) > VMC_POOL_MAX_PAGES) {
		pr_err("not loaded: pool_rings=%u with ring_kb=%u exceeds %u pages per peer\n",
		       pool_rings, ring_kb, VMC_POOL_MAX_PAGES);
		return -EINVAL;
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
	vmcf_new_incarnation();

	vmcf_wq = alloc_workqueue("xenvmc", WQ_MEM_RECLAIM | WQ_HIGHPRI, 0);
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
	    !proc_create_single("channels", 0444, vmcf_proc_dir,
				vmcf_channels_show) ||
	    !proc_create_single("stats", 0444, vmcf_proc_dir,
				vmcf_stats_show)) {
		pr_err("not loaded: cannot create /proc/xenvmc entries\n");
		err = -ENOMEM;
		goto err_remove_proc;
	}
#ifdef VMCF_EVIL
	if (!proc_create("evil", 0200, vmcf_proc_dir, &vmcf_evil_ops)) {
		err = -ENOMEM;
		goto err_remove_proc;
	}
	pr_warn("EVIL TEST BUILD: misbehaves on command, never use it\n");
#endif

	/*
	 * Start clean: nodes a previous incarnation failed to remove (its
	 * channel offers) would be relayed to our peers as ours.  Its
	 * result is not checked: -ENOENT, nothing left, is the usual one.
	 */
	xenbus_rm(XBT_NIL, vmcf_base, "data/xenvmc");
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

	vmcf_prot[0] = tcp_prot;
	vmcf_set_ops(&vmcf_prot[0]);
	vmcf_base_prot[0] = &tcp_prot;
	for_each_kernel_tracepoint(vmcf_find_tp, NULL);
	err = vmcf_tp ? tracepoint_probe_register(vmcf_tp, vmcf_state_probe,
						  NULL) : -ENOENT;
	if (err) {
		pr_err("not loaded: cannot attach to tracepoint inet_sock_set_state: %d\n",
		       err);
		goto err_unwatch;
	}

	/* Suspend and migration reach us through a device's PM callbacks. */
	err = platform_driver_register(&vmcf_pm_driver);
	if (err) {
		pr_err("not loaded: cannot register the suspend handler: %d\n",
		       err);
		goto err_untrace;
	}
	vmcf_pm_dev = platform_device_register_simple("xenvmc",
						      PLATFORM_DEVID_NONE,
						      NULL, 0);
	if (IS_ERR(vmcf_pm_dev)) {
		err = PTR_ERR(vmcf_pm_dev);
		pr_err("not loaded: cannot register the suspend device: %d\n",
		       err);
		goto err_unregister_driver;
	}

	err = nf_register_net_hooks(&init_net, vmcf_nf_ops,
				    ARRAY_SIZE(vmcf_nf_ops));
	if (err) {
		pr_err("not loaded: cannot register the UDP netfilter hooks: %d\n",
		       err);
		goto err_unregister_device;
	}

	register_inetaddr_notifier(&vmcf_inet_nb);
#if IS_ENABLED(CONFIG_IPV6)
	register_inet6addr_notifier(&vmcf_inet6_nb);
#endif
	queue_work(vmcf_wq, &vmcf_addr_work);

	pr_info("loaded in domain %u, version %s, protocol %u, incarnation %016llx\n",
		vmcf_domid, VMCF_VERSION, VMC_PROTO_VERSION, READ_ONCE(vmcf_inc));
	return 0;

err_unregister_device:
	platform_device_unregister(vmcf_pm_dev);
err_unregister_driver:
	platform_driver_unregister(&vmcf_pm_driver);
err_untrace:
	tracepoint_probe_unregister(vmcf_tp, vmcf_state_probe, NULL);
	tracepoint_synchronize_unregister();
err_unwatch:
	unregister_xenbus_watch(&vmcf_table_watch);
err_free_node:
	kfree(vmcf_table_watch.node);
err_remove_proc:
	proc_remove(vmcf_proc_dir);
err_destroy_wq:
	destroy_workqueue(vmcf_wq);
	return err;
}

/*
 * Unload: no new connection is taken; every one we hold goes back to TCP
 * (REVERT; saved bytes get VMCF_DRAIN_WAIT to be read); BYE on every
 * channel, our claim withdrawn (Dom0 then removes us from every peer's
 * table), every channel torn down.  Then no code of ours may still run:
 * callers inside our functions hold a conn reference (they restart on
 * TCP's), close() is counted, and the RCU-tasks grace period covers a
 * caller between loading a pointer to our code and running it.
 */
static void __exit vmcf_exit(void)
{
	unsigned long start = jiffies, t0 = jiffies, rev0, rev;

	kernel_param_lock(THIS_MODULE);
	vmcf_exiting = true;		/* tcp=0 no longer reverts */
	kernel_param_unlock(THIS_MODULE);
	platform_device_unregister(vmcf_pm_dev);
	platform_driver_unregister(&vmcf_pm_driver);
#if IS_ENABLED(CONFIG_IPV6)
	unregister_inet6addr_notifier(&vmcf_inet6_nb);
#endif
	unregister_inetaddr_notifier(&vmcf_inet_nb);
	/* After this no datagram enters a ring (it waits for running hooks). */
	nf_unregister_net_hooks(&init_net, vmcf_nf_ops, ARRAY_SIZE(vmcf_nf_ops));
	WRITE_ONCE(vmcf_draining, true);
	tracepoint_probe_unregister(vmcf_tp, vmcf_state_probe, NULL);
	tracepoint_synchronize_unregister();
	rev0 = jiffies;
	vmcf_revert_all("module unload: moved back to TCP", VMCF_DRAIN_WAIT, NULL);
	rev = jiffies - rev0;

	unregister_xenbus_watch(&vmcf_table_watch);
	flush_workqueue(vmcf_wq);
	mutex_lock(&vmcf_lock);
	vmcf_stopping = true;
	vmcf_leave(VMC_R_UNLOAD);
	mutex_unlock(&vmcf_lock);
	cancel_work_sync(&vmcf_reap_work);	/* finds vmcf_stopping set */
	cancel_work_sync(&vmcf_addr_work);

	vmcf_hist_reap(true);
	/*
	 * A caller that loaded a pointer to one of our functions before its
	 * socket was given back has entered it (and counted itself) once
	 * every task has passed a voluntary switch; then wait for the counts.
	 */
	synchronize_rcu_tasks();
	while (atomic_read(&vmcf_conns) || atomic_read(&vmcf_inside)) {
		if (time_after(jiffies, t0 + 10 * HZ)) {
			pr_warn_ratelimited("unload waits for %d connection(s) still in our code\n",
					    atomic_read(&vmcf_conns));
			t0 = jiffies;
		}
		msleep(20);
	}
	/* No connection left to give back, so none to queue it again. */
	cancel_delayed_work_sync(&vmcf_hist_work);
	synchronize_rcu();
	synchronize_rcu_tasks();
	rcu_barrier();

	destroy_workqueue(vmcf_wq);
	kfree(vmcf_table_watch.node);
	proc_remove(vmcf_proc_dir);
	/* Where an rmmod's time goes: moving connections back, the rest. */
	pr_info("unloaded in %u ms (connections moved back to TCP in %u ms)\n",
		jiffies_to_msecs(jiffies - start),
		jiffies_to_msecs(rev));
}

module_init(vmcf_init);
module_exit(vmcf_exit);

MODULE_DESCRIPTION("XenVMC DomU frontend: shared-memory TCP/UDP between co-resident VMs");
MODULE_AUTHOR("XenVMC developers");
MODULE_LICENSE("GPL");
MODULE_VERSION(VMCF_VERSION);
