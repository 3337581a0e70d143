/* SPDX-License-Identifier: GPL-2.0 */
/*
 * Just enough of the kernel for vmc_back.c in user space (unit/back_model.c):
 * lists, allocation, printing, and the xenbus calls, which back_model.c
 * implements on a fake XenStore.  test/Makefile makes the header names
 * vmc_back.c includes (linux/list.h, xen/xenbus.h, ...) under out/kshim,
 * each of which only includes this file.
 */
#ifndef KSHIM_H
#define KSHIM_H
#define _GNU_SOURCE
#include "vmc_user.h"
#include <stdio.h>
#include <stdlib.h>
#include <stdarg.h>
#include <string.h>
#include <errno.h>
#include <ctype.h>

#define __init
#define __exit
#define module_param(a, b, c)
#define MODULE_PARM_DESC(a, b)
#define MODULE_DESCRIPTION(x)
#define MODULE_AUTHOR(x)
#define MODULE_LICENSE(x)
#define MODULE_VERSION(x)
#define module_init(f) int sim_back_init(void) { return f(); }
#define module_exit(f) void sim_back_exit(void) { f(); }
#ifndef pr_fmt
#define pr_fmt(fmt) fmt
#endif
/* Dom0's log lines go to stdout, marked, unless they are expected. */
extern int kshim_quiet;
#define pr_info(fmt, ...) do { if (!kshim_quiet) printf("# dom0: " pr_fmt(fmt), ##__VA_ARGS__); } while (0)
#define pr_err(fmt, ...) printf("# dom0 error: " pr_fmt(fmt), ##__VA_ARGS__)
#define pr_warn_ratelimited(fmt, ...) do { if (!kshim_quiet) printf("# dom0: " pr_fmt(fmt), ##__VA_ARGS__); } while (0)

#define GFP_KERNEL 0
#define kzalloc(n, f) calloc(1, (n))
#define kfree(p) free((void *)(p))
#define kstrdup(s, f) strdup(s)
static inline char *kasprintf(int gfp, const char *fmt, ...)
{
	va_list ap; char *s;
	(void)gfp;
	va_start(ap, fmt);
	if (vasprintf(&s, fmt, ap) < 0)
		s = NULL;
	va_end(ap);
	return s;
}
#define strscpy(d, s, n) snprintf((d), (n), "%s", (s))
static inline int kstrtouint(const char *s, unsigned int base, unsigned int *res)
{
	unsigned long v = 0;
	const char *p = s;
	(void)base;
	if (*p == '+')
		p++;
	if (!*p)
		return -EINVAL;
	for (; *p; p++) {
		if (*p == '\n' && !p[1])
			break;
		if (!isdigit((unsigned char)*p))
			return -EINVAL;
		v = v * 10 + (*p - '0');
		if (v > 0xffffffffUL)
			return -ERANGE;
	}
	*res = v;
	return 0;
}
#define ETH_ALEN 6
static inline bool mac_pton(const char *s, u8 *mac)
{
	unsigned int b[6], i;
	if (strlen(s) != 17 || sscanf(s, "%x:%x:%x:%x:%x:%x", &b[0], &b[1], &b[2], &b[3], &b[4], &b[5]) != 6)
		return false;
	for (i = 0; i < 6; i++)
		mac[i] = b[i];
	return true;
}
#define DOMID_FIRST_RESERVED 0x7FF0U
#define IS_ERR(p) ((unsigned long)(p) >= (unsigned long)-4095)
#define PTR_ERR(p) ((long)(p))
#define ERR_PTR(e) ((void *)(long)(e))

/* lists */
struct list_head { struct list_head *next, *prev; };
#define LIST_HEAD_INIT(n) { &(n), &(n) }
#define LIST_HEAD(n) struct list_head n = LIST_HEAD_INIT(n)
static inline void INIT_LIST_HEAD(struct list_head *l) { l->next = l->prev = l; }
static inline void __list_add(struct list_head *n, struct list_head *p, struct list_head *x)
{ x->prev = n; n->next = x; n->prev = p; p->next = n; }
static inline void list_add(struct list_head *n, struct list_head *h) { __list_add(n, h, h->next); }
static inline void list_add_tail(struct list_head *n, struct list_head *h) { __list_add(n, h->prev, h); }
static inline void list_del(struct list_head *e) { e->next->prev = e->prev; e->prev->next = e->next; e->next = e->prev = NULL; }
#define container_of(p, t, m) ((t *)((char *)(p) - offsetof(t, m)))
#define list_entry(p, t, m) container_of(p, t, m)
#define list_first_entry(h, t, m) list_entry((h)->next, t, m)
#define list_next_entry(p, m) list_entry((p)->m.next, __typeof__(*(p)), m)
#define list_entry_is_head(p, h, m) (&(p)->m == (h))
#define list_for_each_entry(p, h, m) \
	for (p = list_first_entry(h, __typeof__(*p), m); !list_entry_is_head(p, h, m); p = list_next_entry(p, m))
#define list_for_each_entry_safe(p, n, h, m) \
	for (p = list_first_entry(h, __typeof__(*p), m), n = list_next_entry(p, m); \
	     !list_entry_is_head(p, h, m); p = n, n = list_next_entry(n, m))

#define DEFINE_MUTEX(m) int m
#define mutex_lock(m) ((void)(m))
#define mutex_unlock(m) ((void)(m))

/* seq_file, proc */
struct seq_file { char buf[65536]; size_t n; };
void seq_printf(struct seq_file *m, const char *fmt, ...);
static inline void seq_puts(struct seq_file *m, const char *s) { seq_printf(m, "%s", s); }
static inline void seq_putc(struct seq_file *m, char c) { seq_printf(m, "%c", c); }
struct proc_dir_entry { int x; };
struct proc_dir_entry *proc_mkdir(const char *n, void *p);
struct proc_dir_entry *proc_create_single(const char *n, int mode, struct proc_dir_entry *p, int (*show)(struct seq_file *, void *));
static inline void proc_remove(struct proc_dir_entry *p) { (void)p; }

/* notifier, xen */
struct notifier_block { int (*notifier_call)(struct notifier_block *, unsigned long, void *); };
#define NOTIFY_DONE 0
int register_xenstore_notifier(struct notifier_block *nb);
static inline void unregister_xenstore_notifier(struct notifier_block *nb) { (void)nb; }
static inline int xen_initial_domain(void) { return 1; }
static inline int xen_domain(void) { return 1; }
struct xenbus_transaction { u32 id; };
#define XBT_NIL ((struct xenbus_transaction) { 0 })
struct xenbus_watch {
	struct list_head list;
	const char *node;
	unsigned int nr_pending;	/* events queued, not yet delivered */
	bool (*will_handle)(struct xenbus_watch *, const char *path, const char *token);
	void (*callback)(struct xenbus_watch *, const char *path, const char *token);
};
void *xenbus_read(struct xenbus_transaction t, const char *dir, const char *node, unsigned int *len);
int xenbus_write(struct xenbus_transaction t, const char *dir, const char *node, const char *val);
int xenbus_rm(struct xenbus_transaction t, const char *dir, const char *node);
char **xenbus_directory(struct xenbus_transaction t, const char *dir, const char *node, unsigned int *num);
int register_xenbus_watch(struct xenbus_watch *w);
void unregister_xenbus_watch(struct xenbus_watch *w);
#endif
