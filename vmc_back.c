// SPDX-License-Identifier: GPL-2.0
/*
 * XenVMC Dom0 module: which DomUs run on this host.
 *
 * Dom0 is the only party every DomU trusts: it alone knows which domains
 * exist here (XenStore's @introduceDomain / @releaseDomain) and which vif
 * MACs belong to which domid (the backend nodes Dom0 itself owns).  This
 * module watches those, keeps a table of the DomUs, and shows it in
 * /proc/xenvmc/domains.
 *
 * XenStore may come up after this module loads (xenstored is a Dom0 user
 * process), so every XenStore use starts from the xenstore notifier.
 */
#define pr_fmt(fmt) "xenvmc-back: " fmt

#include <linux/module.h>
#include <linux/kernel.h>
#include <linux/slab.h>
#include <linux/proc_fs.h>
#include <linux/seq_file.h>
#include <linux/notifier.h>
#include <linux/atomic.h>
#include <xen/xen.h>
#include <xen/xenbus.h>

#include "vmc_ring.h"
#include "vmc_proto.h"

#define VMCB_VERSION "0.1"

static struct proc_dir_entry *vmcb_proc_dir;
static bool vmcb_watching;
static atomic_t vmcb_domain_events = ATOMIC_INIT(0);

/*
 * @introduceDomain and @releaseDomain fire once per domain change, without
 * saying which domain: the table is recomputed from /local/domain.  For now
 * the watch only counts changes; /proc/xenvmc/domains reads the directory.
 */
static void vmcb_domain_changed(struct xenbus_watch *watch, const char *path,
				const char *token)
{
	atomic_inc(&vmcb_domain_events);
	pr_debug("domain change (%s)\n", path);
}

static struct xenbus_watch vmcb_intro_watch = {
	.node = "@introduceDomain",
	.callback = vmcb_domain_changed,
};

static struct xenbus_watch vmcb_release_watch = {
	.node = "@releaseDomain",
	.callback = vmcb_domain_changed,
};

/* Count the vifs Dom0 backs for @domid: facts Dom0 owns, not DomU claims. */
static unsigned int vmcb_count_vifs(unsigned int domid)
{
	char path[48];
	unsigned int n = 0;
	char **dir;

	snprintf(path, sizeof(path), "backend/vif/%u", domid);
	dir = xenbus_directory(XBT_NIL, path, "", &n);
	if (IS_ERR(dir))
		return 0;
	kfree(dir);
	return n;
}

static int vmcb_domains_show(struct seq_file *m, void *v)
{
	unsigned int i, n = 0, domid;
	char path[32];
	char **dir;
	char *name;

	seq_puts(m, "domid name vifs\n");
	if (!READ_ONCE(vmcb_watching))
		return 0;	/* XenStore not up yet: nothing known */
	dir = xenbus_directory(XBT_NIL, "/local/domain", "", &n);
	if (IS_ERR(dir))
		return 0;
	for (i = 0; i < n; i++) {
		if (kstrtouint(dir[i], 10, &domid) || domid == 0)
			continue;
		snprintf(path, sizeof(path), "/local/domain/%u", domid);
		name = xenbus_read(XBT_NIL, path, "name", NULL);
		seq_printf(m, "%u %s %u\n", domid,
			   IS_ERR(name) ? "-" : name, vmcb_count_vifs(domid));
		if (!IS_ERR(name))
			kfree(name);
	}
	kfree(dir);
	return 0;
}

static int vmcb_stats_show(struct seq_file *m, void *v)
{
	seq_printf(m, "version %s\n", VMCB_VERSION);
	seq_printf(m, "proto_version %u\n", VMC_PROTO_VERSION);
	seq_printf(m, "xenstore_watching %d\n", READ_ONCE(vmcb_watching));
	seq_printf(m, "domain_events %d\n", atomic_read(&vmcb_domain_events));
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

static void __exit vmcb_exit(void)
{
	unregister_xenstore_notifier(&vmcb_xenstore_nb);
	if (vmcb_watching) {
		unregister_xenbus_watch(&vmcb_release_watch);
		unregister_xenbus_watch(&vmcb_intro_watch);
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
