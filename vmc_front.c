// SPDX-License-Identifier: GPL-2.0
/*
 * XenVMC DomU module: moves TCP and UDP traffic to a
 * co-resident DomU through shared memory (grant tables + event channels).
 *
 * This file currently holds the module frame the data path grows into:
 * the load-time checks, the /proc/xenvmc views and a self-test of the
 * shared ring code (vmc_ring.h) as compiled for this kernel.
 */
#define pr_fmt(fmt) "xenvmc-front: " fmt

#include <linux/module.h>
#include <linux/kernel.h>
#include <linux/slab.h>
#include <linux/gfp.h>
#include <linux/proc_fs.h>
#include <linux/seq_file.h>
#include <linux/random.h>
#include <xen/xen.h>
#include <xen/xenbus.h>

#include "vmc_ring.h"
#include "vmc_proto.h"

#define VMCF_VERSION "0.1"

static struct proc_dir_entry *vmcf_proc_dir;
static unsigned int vmcf_domid;

static int vmcf_peers_show(struct seq_file *m, void *v)
{
	/* The peer table arrives from Dom0 (vmc_back); none is known yet. */
	seq_puts(m, "domid generation addresses channel\n");
	return 0;
}

static int vmcf_connections_show(struct seq_file *m, void *v)
{
	seq_puts(m, "proto local remote state tx_bytes rx_bytes\n");
	return 0;
}

static int vmcf_stats_show(struct seq_file *m, void *v)
{
	seq_printf(m, "version %s\n", VMCF_VERSION);
	seq_printf(m, "proto_version %u\n", VMC_PROTO_VERSION);
	seq_printf(m, "domid %u\n", vmcf_domid);
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

	vmcf_proc_dir = proc_mkdir("xenvmc", NULL);
	if (!vmcf_proc_dir) {
		pr_err("not loaded: cannot create /proc/xenvmc\n");
		return -ENOMEM;
	}
	if (!proc_create_single("peers", 0444, vmcf_proc_dir,
				vmcf_peers_show) ||
	    !proc_create_single("connections", 0444, vmcf_proc_dir,
				vmcf_connections_show) ||
	    !proc_create_single("stats", 0444, vmcf_proc_dir,
				vmcf_stats_show)) {
		pr_err("not loaded: cannot create /proc/xenvmc entries\n");
		goto err_remove_proc;
	}

	pr_info("loaded in domain %u, version %s, protocol %u\n", vmcf_domid,
		VMCF_VERSION, VMC_PROTO_VERSION);
	return 0;

err_remove_proc:
	proc_remove(vmcf_proc_dir);
	return -ENOMEM;
}

static void __exit vmcf_exit(void)
{
	proc_remove(vmcf_proc_dir);
	pr_info("unloaded\n");
}

module_init(vmcf_init);
module_exit(vmcf_exit);

MODULE_DESCRIPTION("XenVMC DomU frontend: shared-memory TCP/UDP between co-resident VMs");
MODULE_AUTHOR("XenVMC developers");
MODULE_LICENSE("GPL");
MODULE_VERSION(VMCF_VERSION);
