// SPDX-License-Identifier: GPL-2.0
/*
 * vmc_back.c itself, in user space, against a fake XenStore (unit/kshim.h
 * stands in for the kernel).  Watch events are queued in the order of the
 * writes, as xenstored sends them, and Dom0's xenwatch thread handles them
 * only when a test says so: a Dom0 that runs late, as in the quick-reload
 * window that incarnations close (vmc_proto.h, "Incarnations").  The tests
 * play the frontends: they write and read the frontends' XenStore nodes.
 *
 * Test cases, each printing "ok NAME" or "FAIL NAME: ..." (the directed
 * ones run in order, each from where the last one left the store):
 *   setup                    DomUs 1 and 2 with incarnations, 3 without
 *   quick_reload_bye_read    1 reloads while Dom0 is late; its peers have
 *   quick_reload_bye_unread  (or have not) read its BYE and withdrawn
 *   slow_reload              1 reloads, Dom0 on time
 *   no_gap                   a new incarnation, data/xenvmc never removed
 *   old_front                3 (no incarnations) reloads: as before
 *   bad_inc                  malformed incarnations are refused
 *   back_reload              vmc_back reloaded under running frontends
 *   double_reload_destroy    two reloads before Dom0 runs; then destroyed
 *   random                   BACK_MODEL_RUNS (default 200) runs of random
 *                            interleavings, invariants above t_random()
 * BACK_MODEL_SEED=N starts the random runs at seed N and traces them.
 */
#include "../../vmc_back.c"

#include <assert.h>

int kshim_quiet = 1;
static int fails;
static long checks;

#define CHECK(c, ...)							\
	do {								\
		checks++;						\
		if (!(c)) {						\
			fails++;					\
			printf("# %s:%d: %s: ", __FILE__, __LINE__, #c); \
			printf(__VA_ARGS__);				\
			printf("\n");					\
		}							\
	} while (0)

/* ---- the fake XenStore ---- */

#define MAXN 8192
static char *st_path[MAXN], *st_val[MAXN];
static int st_n;

struct ev {
	struct xenbus_watch *w;		/* NULL: unregistered since */
	char *path;
};

#define MAXEV 100000
static struct ev evq[MAXEV];
static int evh, evt;
static struct xenbus_watch *watches[4096];
static int nwatch;

/* Dom0's relative paths are relative to /local/domain/0. */
static char *full(const char *dir, const char *node)
{
	char *p;

	if (asprintf(&p, "%s%s%s%s", dir[0] == '/' ? "" : "/local/domain/0/",
		     dir, node[0] ? "/" : "", node) < 0)
		abort();
	return p;
}

static int st_find(const char *p)
{
	for (int i = 0; i < st_n; i++)
		if (!strcmp(st_path[i], p))
			return i;
	return -1;
}

static void st_set(const char *p, const char *v)
{
	int i = st_find(p);

	if (i < 0) {
		assert(st_n < MAXN);
		i = st_n++;
		st_path[i] = strdup(p);
		st_val[i] = NULL;
	}
	free(st_val[i]);
	st_val[i] = strdup(v);
}

/* p is of, or below it */
static int child(const char *p, const char *of)
{
	size_t n = strlen(of);

	return !strncmp(p, of, n) && (p[n] == 0 || p[n] == '/');
}

/* As xs_watch_msg(): will_handle() may refuse an event before it queues. */
static void queue(struct xenbus_watch *w, const char *path)
{
	if (w->will_handle && !w->will_handle(w, path, ""))
		return;
	w->nr_pending++;
	assert(evt < MAXEV);
	evq[evt].w = w;
	evq[evt++].path = strdup(path);
}

/* A write fires the watches on it and above; a removal those below too. */
static void fire(const char *p, int rm)
{
	for (int i = 0; i < nwatch; i++)
		if (watches[i]->node[0] != '@' &&
		    (child(p, watches[i]->node) ||
		     (rm && child(watches[i]->node, p))))
			queue(watches[i], p);
}

static void fire_special(const char *name)
{
	for (int i = 0; i < nwatch; i++)
		if (!strcmp(watches[i]->node, name))
			queue(watches[i], name);
}

static void sim_write(const char *p, const char *v)
{
	char *q = strdup(p), *s;

	for (s = q + 1; (s = strchr(s, '/')); s++) {	/* parents exist */
		*s = 0;
		if (st_find(q) < 0)
			st_set(q, "");
		*s = '/';
	}
	free(q);
	st_set(p, v);
	fire(p, 0);
}

static int sim_rm(const char *p)
{
	int found = 0;

	for (int i = 0; i < st_n; i++) {
		if (!child(st_path[i], p))
			continue;
		found = 1;
		free(st_path[i]);
		free(st_val[i]);
		st_path[i] = st_path[--st_n];
		st_val[i] = st_val[st_n];
		i--;
	}
	if (!found)
		return -ENOENT;
	fire(p, 1);
	return 0;
}

static const char *sim_get(const char *p)
{
	int i = st_find(p);

	return i < 0 ? NULL : st_val[i];
}

void *xenbus_read(struct xenbus_transaction t, const char *dir,
		  const char *node, unsigned int *len)
{
	char *p = full(dir, node);
	int i = st_find(p);

	free(p);
	if (i < 0)
		return ERR_PTR(-ENOENT);
	if (len)
		*len = strlen(st_val[i]);
	return strdup(st_val[i]);
}

int xenbus_write(struct xenbus_transaction t, const char *dir,
		 const char *node, const char *val)
{
	char *p = full(dir, node);

	sim_write(p, val);
	free(p);
	return 0;
}

int xenbus_rm(struct xenbus_transaction t, const char *dir, const char *node)
{
	char *p = full(dir, node);
	int err = sim_rm(p);

	free(p);
	return err;
}

/* One allocation, as the kernel's: the pointers, then the names. */
char **xenbus_directory(struct xenbus_transaction t, const char *dir,
			const char *node, unsigned int *num)
{
	char *p = full(dir, node), **out, *sp;
	size_t n = strlen(p), names = 0;
	unsigned int cnt = 0;
	int i, pass;

	if (st_find(p) < 0) {
		free(p);
		return ERR_PTR(-ENOENT);
	}
	for (pass = 0, out = NULL, sp = NULL; pass < 2; pass++) {
		for (i = 0; i < st_n; i++) {
			const char *name = st_path[i] + n + 1;

			if (strncmp(st_path[i], p, n) || st_path[i][n] != '/' ||
			    strchr(name, '/'))
				continue;
			if (!pass) {
				cnt++;
				names += strlen(name) + 1;
				continue;
			}
			*out++ = sp;
			sp += sprintf(sp, "%s", name) + 1;
		}
		if (!pass) {
			out = calloc(1, cnt * sizeof(char *) + names + 1);
			sp = (char *)(out + cnt);
		}
	}
	free(p);
	*num = cnt;
	return out - cnt;
}

int register_xenbus_watch(struct xenbus_watch *w)
{
	watches[nwatch++] = w;
	queue(w, w->node);		/* fires once at registration */
	return 0;
}

/* As the kernel's: no event of @w is delivered after it returns. */
void unregister_xenbus_watch(struct xenbus_watch *w)
{
	for (int i = 0; i < nwatch; i++)
		if (watches[i] == w)
			watches[i--] = watches[--nwatch];
	for (int i = evh; i < evt; i++)
		if (evq[i].w == w)
			evq[i].w = NULL;
}

int register_xenstore_notifier(struct notifier_block *nb)
{
	nb->notifier_call(nb, 0, NULL);	/* XenStore is up */
	return 0;
}

static int (*show_domains)(struct seq_file *, void *);
static int (*show_stats)(struct seq_file *, void *);

struct proc_dir_entry *proc_mkdir(const char *n, void *p)
{
	static struct proc_dir_entry e;

	return &e;
}

struct proc_dir_entry *proc_create_single(const char *n, int mode,
					  struct proc_dir_entry *p,
					  int (*show)(struct seq_file *, void *))
{
	if (!strcmp(n, "domains"))
		show_domains = show;
	else
		show_stats = show;
	return p;
}

/* The conversions vmc_back.c uses, %pM %pI4 %pI6c included. */
void seq_printf(struct seq_file *m, const char *fmt, ...)
{
	char spec[32], *o;
	const char *s, *f;
	const u8 *a;
	va_list ap;

	va_start(ap, fmt);
	for (f = fmt; *f; f++) {
		o = m->buf + m->n;
		if (*f != '%') {
			*o = *f;
			m->n++;
			continue;
		}
		s = f++;
		if (*f == 'p') {
			a = va_arg(ap, const u8 *);
			if (f[1] == 'M') {
				m->n += sprintf(o, "%02x:%02x:%02x:%02x:%02x:%02x",
						a[0], a[1], a[2], a[3], a[4], a[5]);
				f += 1;
			} else if (f[2] == '4') {
				m->n += sprintf(o, "%u.%u.%u.%u",
						a[0], a[1], a[2], a[3]);
				f += 2;
			} else {
				m->n += sprintf(o, "ipv6");
				f += 3;
			}
			continue;
		}
		while (strchr("0123456789l", *f))
			f++;
		snprintf(spec, sizeof(spec), "%.*s", (int)(f - s + 1), s);
		if (*f == 's')
			m->n += sprintf(o, spec, va_arg(ap, char *));
		else if (*f == 'c')
			m->n += sprintf(o, spec, va_arg(ap, int));
		else if (strstr(spec, "ll"))
			m->n += sprintf(o, spec, va_arg(ap, unsigned long long));
		else if (strchr(spec, 'l'))
			m->n += sprintf(o, spec, va_arg(ap, unsigned long));
		else
			m->n += sprintf(o, spec, va_arg(ap, unsigned int));
	}
	m->buf[m->n] = 0;
	va_end(ap);
}

/* ---- Dom0's xenwatch thread, when a test lets it run ---- */

static int dom0_step(void)
{
	struct ev e;

	if (evh == evt)
		return 0;
	e = evq[evh++];
	if (e.w) {
		e.w->nr_pending--;
		e.w->callback(e.w, e.path, "");
	}
	free(e.path);
	return 1;
}

static void run_dom0(void)
{
	while (dom0_step())
		;
}

static void show(const char *what)
{
	struct seq_file m = { .n = 0 };
	char *l;

	show_domains(&m, NULL);
	printf("# %s: /proc/xenvmc/domains\n", what);
	for (l = strtok(m.buf, "\n"); l; l = strtok(NULL, "\n"))
		printf("#   %s\n", l);
}

static unsigned long stat_of(const char *k)
{
	struct seq_file m = { .n = 0 };
	char *p;

	show_stats(&m, NULL);
	p = strstr(m.buf, k);
	return p ? strtoul(p + strlen(k) + 1, NULL, 10) : ~0UL;
}

/* ---- the DomUs, as their frontends write and read XenStore ---- */

static const char *P(const char *fmt, ...)
{
	static char buf[8][256];
	static int next;
	char *b = buf[next++ % 8];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(b, 256, fmt, ap);
	va_end(ap);
	return b;
}

static void domain_create(int d)
{
	sim_write(P("/local/domain/%d/domid", d), P("%d", d));
	sim_write(P("/local/domain/0/backend/vif/%d/0/mac", d),
		  P("00:16:3e:00:00:%02x", d));
	fire_special("@introduceDomain");
}

static void domain_destroy(int d)
{
	sim_rm(P("/local/domain/%d", d));
	sim_rm(P("/local/domain/0/backend/vif/%d", d));
	fire_special("@releaseDomain");
}

/* The writes of a load, in vmc_front's order; @inc NULL: an older one. */
static void front_load(int d, const char *inc)
{
	if (inc)
		sim_write(P("/local/domain/%d/data/xenvmc/inc", d), inc);
	sim_write(P("/local/domain/%d/data/xenvmc/addrs", d),
		  P("0a0000%02x", d));
	sim_write(P("/local/domain/%d/data/xenvmc/state", d), "1");
}

static void front_unload(int d)
{
	sim_rm(P("/local/domain/%d/data/xenvmc", d));
}

static void front_offer(int d, int p, const char *v)
{
	sim_write(P("/local/domain/%d/data/xenvmc/chan/%d", d, p), v);
}

static void front_withdraw(int d, int p)
{
	sim_rm(P("/local/domain/%d/data/xenvmc/chan/%d", d, p));
}

/* What d's frontend reads: its acknowledgment, offers relayed, entries. */
static const char *tbl_inc(int d)
{
	return sim_get(P("/local/domain/%d/xenvmc/inc", d));
}

static const char *tbl_chan(int d, int p)
{
	return sim_get(P("/local/domain/%d/xenvmc/chan/%d", d, p));
}

static long tbl_gen(int d, int p)
{
	const char *v = sim_get(P("/local/domain/%d/xenvmc/peers/%d", d, p));

	return v ? strtol(v, NULL, 10) : -1;
}

static int streq(const char *a, const char *b)
{
	return a && b && !strcmp(a, b);
}

/* A new incarnation each call. */
static const char *newinc(void)
{
	static char incs[64][VMC_XS_INC_LEN + 1];
	static unsigned int n = 0x10;
	char *b = incs[n % 64];

	vmc_xs_format_inc(b, (u64)n++ * 0x1111);
	return b;
}

#define X0 "00000000000000a0"
#define Y0 "00000000000000b0"

/* ---- directed cases ---- */

static void t_setup(void)
{
	sim_back_init();
	domain_create(1);
	domain_create(2);
	domain_create(3);
	run_dom0();
	front_load(1, X0);
	front_load(2, Y0);
	front_load(3, NULL);
	run_dom0();
	front_offer(1, 2, "10 0");
	front_offer(2, 1, "20 7");
	front_offer(1, 3, "11 0");
	front_offer(3, 1, "30 8");
	run_dom0();
	show("after setup");
	CHECK(streq(tbl_inc(1), X0) && streq(tbl_inc(2), Y0) && !tbl_inc(3),
	      "acks %s %s %s", tbl_inc(1), tbl_inc(2), tbl_inc(3));
	CHECK(tbl_gen(2, 1) > 0 && tbl_gen(1, 2) > 0, "entries");
	CHECK(streq(tbl_chan(2, 1), "10 0") && streq(tbl_chan(1, 2), "20 7"),
	      "relays %s %s", tbl_chan(2, 1), tbl_chan(1, 2));
	CHECK(streq(tbl_chan(3, 1), "11 0") && streq(tbl_chan(1, 3), "30 8"),
	      "relays between 1 and 3");
}

/*
 * The bug: rmmod && insmod in 1 while Dom0's watch runs late.  Its peers
 * have read its BYE and withdrawn their offers, or not yet.
 */
static void t_quick_reload(int bye_read)
{
	long g21 = tbl_gen(2, 1), g31 = tbl_gen(3, 1);
	const char *x = newinc();
	char old[VMC_XS_INC_LEN + 1];

	snprintf(old, sizeof(old), "%s", tbl_inc(1) ? tbl_inc(1) : "");
	front_unload(1);		/* BYE sent, data/xenvmc removed */
	if (bye_read) {
		front_withdraw(2, 1);
		front_withdraw(3, 1);
	}
	front_load(1, x);		/* the same claim, a new incarnation */
	CHECK(streq(tbl_inc(1), old), "1's table still for %s (%s)", old,
	      tbl_inc(1));
	run_dom0();
	show("after Dom0 caught up");
	CHECK(tbl_gen(2, 1) > g21, "2's entry for 1: gen %ld -> %ld", g21,
	      tbl_gen(2, 1));
	CHECK(tbl_gen(3, 1) > g31, "3's entry for 1: gen %ld -> %ld", g31,
	      tbl_gen(3, 1));
	CHECK(streq(tbl_inc(1), x), "1's table for %s (%s)", x, tbl_inc(1));
	CHECK(tbl_gen(1, 2) > 0 && tbl_gen(1, 3) > 0, "1's table rebuilt");
	CHECK(!tbl_chan(2, 1) && !tbl_chan(3, 1),
	      "the old incarnation's offers withdrawn (%s, %s)",
	      tbl_chan(2, 1), tbl_chan(3, 1));
	CHECK(!tbl_chan(1, 2), "2's offer to 1 withheld (%s)", tbl_chan(1, 2));
	if (bye_read)
		CHECK(!tbl_chan(1, 3), "3 withdrew (%s)", tbl_chan(1, 3));
	else
		CHECK(streq(tbl_chan(1, 3), "30 8"),
		      "3 (no incarnations) relayed as before (%s)",
		      tbl_chan(1, 3));
	sim_write("/local/domain/2/data/xenvmc/addrs", "0a000002");
	run_dom0();
	CHECK(!tbl_chan(1, 2), "still withheld after another write of 2 (%s)",
	      tbl_chan(1, 2));
	/* 2's frontend writes its offer again on the gen change: the same
	 * value (a grant reference is often reused) */
	front_offer(2, 1, "20 7");
	run_dom0();
	CHECK(streq(tbl_chan(1, 2), "20 7"), "rewritten offer relayed (%s)",
	      tbl_chan(1, 2));
	front_offer(1, 2, "12 0");
	run_dom0();
	CHECK(streq(tbl_chan(2, 1), "12 0"), "1's new offer relayed (%s)",
	      tbl_chan(2, 1));
	front_offer(2, 1, "21 7");
	run_dom0();
	CHECK(streq(tbl_chan(1, 2), "21 7"), "then relayed as usual (%s)",
	      tbl_chan(1, 2));
	if (!bye_read) {
		front_withdraw(3, 1);
		run_dom0();
	}
	front_offer(3, 1, "30 8");
	front_offer(1, 3, "13 0");
	run_dom0();
	CHECK(streq(tbl_chan(1, 3), "30 8") && streq(tbl_chan(3, 1), "13 0"),
	      "relays between 1 and 3");
}

static void t_quick_reload_bye_read(void)
{
	t_quick_reload(1);
}

static void t_quick_reload_bye_unread(void)
{
	t_quick_reload(0);
}

static void t_slow_reload(void)
{
	long g = tbl_gen(2, 1);
	const char *x = newinc();

	front_unload(1);
	run_dom0();
	CHECK(tbl_gen(2, 1) == -1, "1 left 2's table");
	CHECK(!tbl_inc(1) && tbl_gen(1, 2) == -1, "1's table wiped");
	front_withdraw(2, 1);
	run_dom0();
	front_load(1, x);
	run_dom0();
	CHECK(tbl_gen(2, 1) > g, "back with a new gen");
	CHECK(streq(tbl_inc(1), x), "table for %s (%s)", x, tbl_inc(1));
	front_offer(2, 1, "22 7");
	front_offer(1, 2, "14 0");
	run_dom0();
	CHECK(streq(tbl_chan(1, 2), "22 7") && streq(tbl_chan(2, 1), "14 0"),
	      "relays");
}

/* Its own old offers are still in its data/xenvmc here, and relayed. */
static void t_no_gap(void)
{
	unsigned long u = stat_of("reloads_unseen");
	long g = tbl_gen(2, 1);
	const char *x = newinc();

	sim_write("/local/domain/1/data/xenvmc/inc", x);
	run_dom0();
	CHECK(tbl_gen(2, 1) > g, "gen %ld -> %ld", g, tbl_gen(2, 1));
	CHECK(streq(tbl_inc(1), x), "table for %s (%s)", x, tbl_inc(1));
	CHECK(!tbl_chan(1, 2), "2's offer withheld (%s)", tbl_chan(1, 2));
	CHECK(stat_of("reloads_unseen") == u + 1, "counted");
	front_offer(2, 1, "22 7");
	front_offer(1, 2, "14 0");
	run_dom0();
	CHECK(streq(tbl_chan(1, 2), "22 7") && streq(tbl_chan(2, 1), "14 0"),
	      "relays");
}

/*
 * 3 claims 1's address too, after 1 (so 1 keeps it).  1 comes back with
 * no event seeing it leave: its claims keep their age, so 3's entry does
 * not change, not even for a moment (its gen would show it).
 */
static void t_squatter(void)
{
	const char *x = newinc(), *e;
	long g;

	sim_write("/local/domain/3/data/xenvmc/addrs", "0a000003 0a000001");
	run_dom0();
	g = tbl_gen(2, 3);
	e = sim_get("/local/domain/2/xenvmc/peers/3");
	CHECK(g > 0 && e && !strstr(e, "0a000001"), "3 not listed for 1's address (%s)", e);
	sim_write("/local/domain/1/data/xenvmc/inc", x);
	run_dom0();
	CHECK(tbl_gen(2, 3) == g, "3's entry: gen %ld -> %ld", g, tbl_gen(2, 3));
	e = sim_get("/local/domain/2/xenvmc/peers/1");
	CHECK(e && strstr(e, "0a000001"), "1 keeps its address (%s)", e);
	sim_write("/local/domain/3/data/xenvmc/addrs", "0a000003");
	run_dom0();
}

/* Nothing Dom0 could see: the old behaviour, on record. */
static void t_old_front(void)
{
	long g = tbl_gen(1, 3);

	front_unload(3);
	front_load(3, NULL);
	run_dom0();
	printf("# 1's entry for 3 after its quick reload: gen %ld -> %ld\n", g,
	       tbl_gen(1, 3));
	CHECK(!tbl_inc(3), "no acknowledgment for a frontend without them");
	CHECK(tbl_gen(1, 3) > 0, "still listed");
}

static void t_bad_inc(void)
{
	unsigned long b = stat_of("bad_claims");

	sim_write("/local/domain/2/data/xenvmc/inc", "00000000000000B0");
	run_dom0();
	show("after 2's malformed incarnation");
	CHECK(stat_of("bad_claims") == b + 1, "counted");
	CHECK(tbl_gen(1, 2) == -1, "2 left 1's table");
	sim_write("/local/domain/2/data/xenvmc/inc", "0000000000000000");
	run_dom0();
	CHECK(tbl_gen(1, 2) == -1, "0 refused too");
	sim_write("/local/domain/2/data/xenvmc/inc", Y0);
	run_dom0();
	CHECK(tbl_gen(1, 2) > 0, "a good one listed again");
	CHECK(streq(tbl_inc(2), Y0), "table for " Y0);
}

/*
 * "01" and "+1" name peer 1 too (kstrtouint() takes them): refused and
 * counted, never relayed, so one write cannot cost one relay per alias.
 */
static void t_chan_alias(void)
{
	unsigned long b = stat_of("bad_channel_offers");
	const char *before = tbl_chan(1, 2);
	char keep[32];

	snprintf(keep, sizeof(keep), "%s", before ? before : "");
	sim_write("/local/domain/2/data/xenvmc/chan/01", "99 9");
	sim_write("/local/domain/2/data/xenvmc/chan/+1", "98 8");
	run_dom0();
	CHECK(stat_of("bad_channel_offers") >= b + 2, "counted (%lu -> %lu)", b,
	      stat_of("bad_channel_offers"));
	CHECK(streq(tbl_chan(1, 2), keep), "1 still holds 2's offer %s (%s)",
	      keep, tbl_chan(1, 2));
	sim_rm("/local/domain/2/data/xenvmc/chan/01");
	sim_rm("/local/domain/2/data/xenvmc/chan/+1");
	run_dom0();
	CHECK(streq(tbl_chan(1, 2), keep), "and after the aliases went (%s)",
	      tbl_chan(1, 2));
}

/*
 * A DomU that writes its own nodes in a loop: Dom0's kernel queues an
 * event per write (XSA-349), so vmc_back bounds them per DomU; the last
 * write still wins, since every event re-reads the nodes.
 */
static void t_flood(void)
{
	int i, queued = 0;

	for (i = 0; i < 20000; i++)
		sim_write("/local/domain/3/data/xenvmc/addrs",
			  i % 2 ? "0a000003 0a000033" : "0a000003");
	for (i = evh; i < evt; i++)
		queued += evq[i].w && strstr(evq[i].w->node, "/3/");
	CHECK(queued > 0 && queued <= (int)max_domains + 16,
	      "%d events queued for 3 (max_domains %u)", queued, max_domains);
	run_dom0();
	CHECK(tbl_gen(1, 3) > 0 &&
	      strstr(sim_get("/local/domain/1/xenvmc/peers/3"), "0a000033"),
	      "3 listed with its last claim (%s)",
	      sim_get("/local/domain/1/xenvmc/peers/3"));
	sim_write("/local/domain/3/data/xenvmc/addrs", "0a000003");
	run_dom0();
}

/* A module load starts with zeroed statics. */
static void back_reload(void)
{
	sim_back_exit();
	run_dom0();
	vmcb_stopping = false;
	vmcb_watching = false;
	vmcb_nr_doms = 0;
	vmcb_reloads_unseen = 0;
	sim_back_init();
}

/* Incarnations learnt from the first events, nothing taken as reborn. */
static void t_back_reload(void)
{
	char i1[VMC_XS_INC_LEN + 1], i2[VMC_XS_INC_LEN + 1];

	snprintf(i1, sizeof(i1), "%s", tbl_inc(1) ? tbl_inc(1) : "");
	snprintf(i2, sizeof(i2), "%s", tbl_inc(2) ? tbl_inc(2) : "");
	back_reload();
	run_dom0();
	show("after vmc_back reload");
	CHECK(streq(tbl_inc(1), i1) && streq(tbl_inc(2), i2), "tables %s %s",
	      tbl_inc(1), tbl_inc(2));
	CHECK(tbl_gen(1, 2) > 0 && tbl_gen(2, 1) > 0, "listed");
	CHECK(stat_of("reloads_unseen") == 0, "nothing reborn");
	CHECK(streq(tbl_chan(1, 2), "22 7") && streq(tbl_chan(2, 1), "14 0"),
	      "offers relayed (%s %s)", tbl_chan(1, 2), tbl_chan(2, 1));
}

static void t_double_reload_destroy(void)
{
	long g = tbl_gen(2, 1);
	struct vmcb_relay *r;
	struct vmcb_dom *e;
	const char *x;
	int left = 0;

	front_unload(1);
	front_withdraw(2, 1);
	front_load(1, newinc());
	front_unload(1);
	x = newinc();
	front_load(1, x);
	run_dom0();
	CHECK(tbl_gen(2, 1) > g, "gen moved");
	CHECK(streq(tbl_inc(1), x), "the last one adopted (%s)", tbl_inc(1));
	domain_destroy(1);
	run_dom0();
	CHECK(tbl_gen(2, 1) == -1, "1 gone from 2's table");
	CHECK(!vmcb_find(1), "1 forgotten");
	list_for_each_entry(e, &vmcb_doms, list)
		list_for_each_entry(r, &e->relays, list)
			left += r->peer == 1;
	CHECK(!left, "%d relays or withheld offers to 1 left", left);
}

/*
 * An event of 2's queued before 1's destruction writes into 1's table:
 * XenStore recreates /local/domain/1 for it.  The rescan must still see 1
 * gone (a directory holding nothing but ours is no domain), or its entry,
 * watch and max_domains slot would stay for good.
 */
static void t_destroy_recreated(void)
{
	front_load(3, newinc());
	front_offer(3, 2, "31 3");
	run_dom0();
	CHECK(vmcb_find(3) && tbl_gen(2, 3) > 0, "3 listed");
	front_offer(2, 3, "23 2");	/* its relay lands after 3 went */
	domain_destroy(3);
	run_dom0();
	CHECK(!vmcb_find(3), "3 forgotten");
	CHECK(tbl_gen(2, 3) == -1, "3 gone from 2's table");
	CHECK(!sim_get("/local/domain/3"), "no /local/domain/3 left (%s)",
	      sim_get("/local/domain/3/xenvmc/chan/2") ?: "-");
	front_withdraw(2, 3);
	run_dom0();
}

/* ---- random interleavings ----
 *
 * The frontends of 1..3 (3 without incarnations in odd runs) load (inc,
 * addrs, state: one write at a time), unload, offer and withdraw, while
 * Dom0 handles one event now and then, or catches up.  Each offer carries
 * a sequence number.  An incarnation whose table was ever acknowledged may
 * have used an offer; its unload is the line an offer must be newer than.
 * Checked after every Dom0 step, for DomUs and peers with incarnations:
 *   fresh  a table acknowledged for its DomU's current incarnation holds
 *          no offer older than that line;
 *   fresh2 nor does it after this step, if the frontend read the
 *          acknowledgment before the step (reads are not atomic);
 *   acked  no relay in a table without an acknowledgment;
 * and after Dom0 has caught up:
 *   gen    a peer that saw gen G for D, when D has since come back with a
 *          new incarnation, sees another gen (or none).
 */
static long seqno, line[4];
static int acked[4];			/* this incarnation was acked */
static int stage[4];			/* 0 unloaded .. 3 state written */
static char cur_inc[4][VMC_XS_INC_LEN + 1];
static char prev_ack[4][VMC_XS_INC_LEN + 1];	/* "": none */
static long seen_gen[4][4];
static char seen_inc[4][4][VMC_XS_INC_LEN + 1];
static int trace;

#define TR(...)						\
	do {						\
		if (trace) {				\
			printf("# ");			\
			printf(__VA_ARGS__);		\
		}					\
	} while (0)

static void rnd_check(int caught_up, int old3)
{
	const char *ack, *cur, *v;
	int d, p, newstyle;

	for (d = 1; d <= 3; d++) {
		ack = tbl_inc(d);
		cur = sim_get(P("/local/domain/%d/data/xenvmc/inc", d));
		if (ack && cur && !strcmp(ack, cur))
			acked[d] = 1;
		for (p = 1; p <= 3; p++) {
			if (p == d)
				continue;
			v = tbl_chan(d, p);
			newstyle = !(old3 && (p == 3 || d == 3));
			if (v && cur && newstyle && (!prev_ack[d][0] ||
						     !strcmp(prev_ack[d], cur)))
				CHECK(strtol(v, NULL, 10) > line[d],
				      "fresh2: %d read ack '%s' (inc %s), then %d's offer %s (line %ld)",
				      d, prev_ack[d], cur, p, v, line[d]);
			if (v && ack && cur && !strcmp(ack, cur) && newstyle)
				CHECK(strtol(v, NULL, 10) > line[d],
				      "fresh: %d (inc %s) holds %d's offer %s (line %ld)",
				      d, cur, p, v, line[d]);
			if (d != 3 || !old3)
				CHECK(!v || ack, "acked: %d holds %d's offer %s",
				      d, p, v);
			if (caught_up && seen_gen[p][d] > 0 && stage[d] == 3 &&
			    strcmp(seen_inc[p][d], cur_inc[d]) &&
			    !(d == 3 && old3))
				CHECK(tbl_gen(p, d) != seen_gen[p][d],
				      "gen: %d saw %d at gen %ld (inc %s), now inc %s, gen %ld",
				      p, d, seen_gen[p][d], seen_inc[p][d],
				      cur_inc[d], tbl_gen(p, d));
		}
		snprintf(prev_ack[d], sizeof(prev_ack[d]), "%s", ack ? ack : "");
	}
}

static void t_random(unsigned int seed, int steps, int old3)
{
	int f0 = fails, i, d, p, r, a, b;

	srand(seed);
	for (i = 0; i < steps && fails == f0; i++) {
		d = 1 + rand() % 3;
		p = 1 + rand() % 3;
		r = rand() % 100;
		if (r < 30) {
			if (evh < evt)
				TR("dom0 handles %s\n", evq[evh].path);
			dom0_step();
			rnd_check(0, old3);
		} else if (r < 35) {
			TR("dom0 catches up; the peers look\n");
			run_dom0();
			rnd_check(1, old3);
			for (a = 1; a <= 3; a++)
				for (b = 1; b <= 3; b++)
					if (a != b && stage[b] == 3) {
						seen_gen[a][b] = tbl_gen(a, b);
						strcpy(seen_inc[a][b], cur_inc[b]);
					}
		} else if (r < 55) {
			if (stage[d] == 0 && !(d == 3 && old3)) {
				strcpy(cur_inc[d], newinc());
				sim_write(P("/local/domain/%d/data/xenvmc/inc", d),
					  cur_inc[d]);
				TR("%d writes inc %s\n", d, cur_inc[d]);
			} else if (stage[d] == 1) {
				sim_write(P("/local/domain/%d/data/xenvmc/addrs", d),
					  P("0a0000%02x", d));
				TR("%d writes addrs\n", d);
			} else if (stage[d] == 2) {
				sim_write(P("/local/domain/%d/data/xenvmc/state", d),
					  "1");
				TR("%d writes state\n", d);
			}
			if (stage[d] < 3)
				stage[d]++;
		} else if (r < 62) {
			if (!stage[d])
				continue;
			front_unload(d);
			++seqno;
			if (acked[d] || (d == 3 && old3))
				line[d] = seqno;
			acked[d] = 0;
			stage[d] = 0;
			TR("%ld: %d unloads\n", seqno, d);
		} else if (r < 90) {
			if (stage[d] != 3 || p == d)
				continue;
			front_offer(d, p, P("%ld 0", ++seqno));
			TR("%ld: %d offers to %d\n", seqno, d, p);
		} else {
			if (stage[d] != 3 || p == d)
				continue;
			front_withdraw(d, p);
			TR("%d withdraws its offer to %d\n", d, p);
		}
	}
	if (fails != f0)
		printf("# random: seed %u (old3 %d) failed: BACK_MODEL_SEED=%u BACK_MODEL_RUNS=1 traces it\n",
		       seed, old3, seed);
}

/* A fresh Dom0, store and three DomUs. */
static void fresh(void)
{
	int i;

	for (i = 0; i < st_n; i++) {
		free(st_path[i]);
		free(st_val[i]);
	}
	st_n = 0;
	back_reload();
	run_dom0();
	seqno = 0;
	memset(line, 0, sizeof(line));
	memset(acked, 0, sizeof(acked));
	memset(stage, 0, sizeof(stage));
	memset(prev_ack, 0, sizeof(prev_ack));
	memset(seen_gen, 0, sizeof(seen_gen));
	evh = evt = 0;
	domain_create(1);
	domain_create(2);
	domain_create(3);
	run_dom0();
}

static void t_random_runs(void)
{
	const char *env = getenv("BACK_MODEL_RUNS");
	const char *seed = getenv("BACK_MODEL_SEED");
	int n = env ? atoi(env) : 200, k0 = seed ? atoi(seed) : 0, k;
	int f0 = fails;
	long c0 = checks;

	trace = seed != NULL;
	for (k = k0; k < k0 + n && fails == f0; k++) {
		fresh();
		t_random(k, 3000, k & 1);
	}
	printf("# random: %d runs of 3000 steps, %ld checks\n", k - k0,
	       checks - c0);
}

static int npass, nfail;

static void run(const char *name, void (*fn)(void))
{
	int f0 = fails;

	fn();
	if (fails == f0) {
		printf("ok %s\n", name);
		npass++;
	} else {
		printf("FAIL %s: %d checks failed (lines above)\n", name,
		       fails - f0);
		nfail++;
	}
}

int main(void)
{
	setvbuf(stdout, NULL, _IOLBF, 0);
	run("setup", t_setup);
	run("quick_reload_bye_read", t_quick_reload_bye_read);
	run("quick_reload_bye_unread", t_quick_reload_bye_unread);
	run("slow_reload", t_slow_reload);
	run("no_gap", t_no_gap);
	run("squatter", t_squatter);
	run("old_front", t_old_front);
	run("bad_inc", t_bad_inc);
	run("chan_alias", t_chan_alias);
	run("flood", t_flood);
	run("back_reload", t_back_reload);
	run("double_reload_destroy", t_double_reload_destroy);
	run("destroy_recreated", t_destroy_recreated);
	run("random", t_random_runs);
	printf("back_model: %d ok, %d FAIL\n", npass, nfail);
	return nfail != 0;
}
