#!/usr/bin/env python3
"""XenVMC benchmark report: turns the raw output of test/lab/bench.sh (artifacts/raw/ of a lab run)
into a Markdown table (bench.md), an SVG plot of TCP stream throughput (bench.svg) and the headline
ratio lines (ratios.txt), all in OUTDIR. Prints bench.md, then the ratio lines LAST, one per line:
`ratio NAME VALUE` (VALUE `n/a` when a figure is missing or the XenVMC run was not accelerated).

    test/lab/report.py RAWDIR OUTDIR [--verdict TEXT]

Plain python3, no third-party modules (the SVG is written by hand), so it runs on any host and can be
fed saved raw data to re-render a report.
"""
import json
import os
import re
import statistics
import sys

COLS = ["netfront", "xenvmc", "loopback"]
TITLE = {"netfront": "netfront", "xenvmc": "XenVMC", "loopback": "loopback"}
TARGETS = [  # name, ratio key, threshold, text
    ("XenVMC 16 KiB stream >= 1.5x loopback", "tcp_stream_16k_vs_loopback", 1.5),
    ("XenVMC 16 KiB stream >= 0.5x copy limit (one vCPU memcpy)", "tcp_stream_16k_vs_copy_limit", 0.5),
    ("XenVMC stream at iperf3's default 128 KiB writes >= 1.5x loopback", "tcp_stream_128k_vs_loopback", 1.5),
    ("XenVMC stream at iperf3's default 128 KiB writes >= 0.5x copy limit", "tcp_stream_128k_vs_copy_limit", 0.5),
    ("XenVMC 1 B request/response latency <= 1/4 of netfront", "tcp_rr_1b_latency_netfront_over_xenvmc", 4.0),
    ("XenVMC connect/request/close rate within 10 % of netfront (>= 0.9x)", "tcp_crr_xenvmc_over_netfront", 0.9),
    ("XenVMC UDP stream, 16 KiB datagrams, >= 0.5x copy limit", "udp_stream_16k_vs_copy_limit", 0.5),
    ("XenVMC UDP 64 B request/response latency <= 1/4 of netfront", "udp_rr_latency_netfront_over_xenvmc", 4.0),
]


def read(path):
    try:
        with open(path, errors="replace") as f:
            return f.read()
    except OSError:
        return None


def kv(path):
    d = {}
    for line in (read(path) or "").splitlines():
        p = line.split(None, 1)
        if p:
            d[p[0]] = p[1].strip() if len(p) > 1 else ""
    return d


def runs(path):
    """Split a repeat() file into the outputs of each run (text between @@RUN and @@RC)."""
    text = read(path)
    if text is None:
        return None
    out, cur = [], None
    for line in text.splitlines():
        if line.startswith("@@RUN"):
            cur = []
        elif line.startswith("@@RC"):
            if cur is not None:
                out.append(("\n".join(cur), line.split()[1] if len(line.split()) > 1 else "?"))
            cur = None
        elif cur is not None:
            cur.append(line)
    return out


def iperf_runs(path):
    """[(MiB/s received, bytes received, extra)] of every iperf3 -J run that produced a result."""
    res = []
    for text, _rc in runs(path) or []:
        try:
            j = json.loads(text[text.index("{"):])
        except (ValueError, json.JSONDecodeError):
            continue
        end = j.get("end", {})
        if "sum_received" in end and end["sum_received"].get("bytes"):
            s = end["sum_received"]
            res.append((s["bits_per_second"] / 8 / 2**20, s["bytes"], s.get("lost_percent")))
        elif "sum" in end:  # older iperf3 UDP: the sender's sum with the receiver's loss
            s = end["sum"]
            lost = s.get("lost_percent", 0.0) or 0.0
            res.append((s["bits_per_second"] * (1 - lost / 100) / 8 / 2**20,
                        s.get("bytes", 0) * (1 - lost / 100), lost))
    return res


def crr_runs(path, key):
    res = []
    for text, _rc in runs(path) or []:
        m = re.search(r"crr: mode=\S+ .*count=(\d+) errors=(\d+) rate=([\d.]+) \S+=([\d.]+)", text)
        if m and int(m.group(1)) > 0:
            res.append({"count": int(m.group(1)), "errors": int(m.group(2)),
                        "rate": float(m.group(3)), "lat": float(m.group(4))}[key])
    return res


def sockperf_runs(path):
    res = []
    for text, _rc in runs(path) or []:
        m = re.search(r"avg-latency=([\d.]+)", text)
        if m:
            res.append(float(m.group(1)))
    return res


def xl_cpu(path):
    d = {}
    for line in (read(path) or "").splitlines()[1:]:
        p = line.split()
        if len(p) >= 6:
            try:
                d[p[0]] = float(p[-1])
            except ValueError:
                pass
    return d


class Fig:
    """median, min, max of a list of run results"""

    def __init__(self, vals, unit, better="high"):
        self.vals = [v for v in vals if v is not None]
        self.unit, self.better = unit, better

    @property
    def ok(self):
        return bool(self.vals)

    @property
    def med(self):
        return statistics.median(self.vals) if self.vals else None

    def cell(self, fmt="%.1f"):
        if not self.vals:
            return "ERR (no result)"
        s = (fmt % self.med) + " " + self.unit
        if len(self.vals) > 1:
            s += " (" + (fmt % min(self.vals)) + "-" + (fmt % max(self.vals)) + ")"
        return s + ("" if len(self.vals) >= 3 else " [%d run%s]" % (len(self.vals), "s"[len(self.vals) == 1:]))


def size_name(n):
    n = int(n)
    return "%d KiB" % (n // 1024) if n >= 1024 else "%d B" % n


def ratio(a, b):
    if a is None or b is None or not b:
        return None
    return a / b


def fmt_ratio(r):
    return "n/a" if r is None else "%.2f" % r


def main():
    args = sys.argv[1:]
    verdict = None
    if "--verdict" in args:
        i = args.index("--verdict")
        verdict = args[i + 1]
        del args[i:i + 2]
    if len(args) != 2:
        print(__doc__, file=sys.stderr)
        return 2
    raw, outdir = args
    os.makedirs(outdir, exist_ok=True)
    meta = kv(os.path.join(raw, "meta.txt"))
    sizes = meta.get("sizes", "64 256 1024 4096 16384 65536 131072").split()
    cols = [c for c in meta.get("columns", " ".join(COLS)).split() if c in COLS]
    mode = meta.get("mode", "?").upper()
    P = lambda name: os.path.join(raw, name)  # noqa: E731

    # ---- acceleration check: domu1's counters around every run (@@S0 / @@S1 lines)
    nruns = int(meta.get("runs", 3))
    files = {  # group: [(file prefix, expected accelerated connections per run or None)]
        "stream": [("stream-%s" % s, 2) for s in sizes],  # iperf3: control + data connection
        "rr": [("rr1", 1), ("rr1k", 1), ("rr1busy", 1)],
        "crr": [("crr", "count")],
        "udp": [("udp", 1), ("udp16", 1), ("udprr", None)],  # iperf3 -u still opens its TCP control connection
    }
    xenvmc_udp = meta.get("xenvmc_udp", "no") == "yes"
    accel, fallbacks, nf_accel = {}, {}, 0
    for g, fl in files.items():
        got = exp = 0
        udp_tx = None
        for prefix, e in fl:
            for c in cols:
                for d, text in counter_runs(P("%s-%s.txt" % (prefix, c))):
                    a = d.get("accelerated_total", 0)
                    if c != "xenvmc":
                        nf_accel += a
                        continue
                    got += a
                    if e == "count":
                        m = re.search(r"count=(\d+) errors=(\d+)", text)
                        exp += int(m.group(1)) + int(m.group(2)) if m else 0
                    elif e:
                        exp += e
                    if g == "udp":
                        udp_tx = (udp_tx or 0) + d.get("udp_tx_datagrams", 0)
                    for k, v in d.items():
                        if k.startswith("fallback_") and v:
                            fallbacks[k] = fallbacks.get(k, 0) + v
        if "xenvmc" not in cols or (g == "udp" and not xenvmc_udp):
            state = "unknown"
        elif g == "udp":
            state = "yes" if udp_tx else "NOT ACCELERATED"
        elif exp == 0:
            state = "unknown"
        elif got <= 0:
            state = "NOT ACCELERATED"
        elif got < exp:
            state = "partly"
        else:
            state = "yes"
        accel[g] = (state, got, exp, udp_tx)

    def mark(g, col, cell):
        if col != "xenvmc":
            return cell
        state, d, exp, _u = accel[g]
        if state == "NOT ACCELERATED":
            return "NOT ACCELERATED (" + cell + ")"
        if state == "partly":
            return cell + " (only %d of %d connections accelerated)" % (d, exp)
        return cell

    def accel_ok(g):
        return accel[g][0] == "yes"

    # ---- figures
    stream = {c: {s: Fig([r[0] for r in iperf_runs(P("stream-%s-%s.txt" % (s, c)))], "MiB/s")
                  for s in sizes} for c in cols}
    rr1 = {c: Fig(crr_runs(P("rr1-%s.txt" % c), "lat"), "us", "low") for c in cols}
    rr1k = {c: Fig(sockperf_runs(P("rr1k-%s.txt" % c)), "us", "low") for c in cols}
    busy = meta.get("busy_read", "0")
    rr1busy = {c: Fig(crr_runs(P("rr1busy-%s.txt" % c), "lat"), "us", "low") for c in cols}
    crr = {c: Fig(crr_runs(P("crr-%s.txt" % c), "rate"), "conn/s") for c in cols}
    udp_na = {c: (read(P("udp-%s.txt" % c)) or "").strip() == "udp n/a" for c in cols}
    udp = {c: Fig([r[0] * 8 * 2**20 / 1e6 for r in iperf_runs(P("udp-%s.txt" % c))], "Mbit/s") for c in cols}
    udploss = {c: [r[2] for r in iperf_runs(P("udp-%s.txt" % c)) if r[2] is not None] for c in cols}
    # MiB/s, to compare with the copy limit
    udp16 = {c: Fig([r[0] for r in iperf_runs(P("udp16-%s.txt" % c))], "MiB/s") for c in cols}
    udprr = {c: Fig(sockperf_runs(P("udprr-%s.txt" % c)), "us", "low") for c in cols}
    def mib(name):  # the "N MiB/s" figures memcpy_bw printed into raw/NAME
        return Fig([float(x) for x in re.findall(r"([\d.]+) MiB", read(P(name)) or "")], "MiB/s")
    memcpy = mib("memcpy-domu1.txt")
    # the kernel's own copies in domu1 (memcpy_bw kread / kwrite: what XenVMC's two copies use)
    kread, kwrite = mib("kread-domu1.txt"), mib("kwrite-domu1.txt")
    kread16, kwrite16 = mib("kread16k-domu1.txt"), mib("kwrite16k-domu1.txt")
    mem0 = mib("memcpy-dom0.txt")
    # the stream's two copies at once (kwrite in domu1 while kread in domu2): per pair the slower
    kw_par, kr_par = mib("kwrite-par-domu1.txt"), mib("kread-par-domu2.txt")
    kpar = Fig([min(a, b) for a, b in zip(kw_par.vals, kr_par.vals)], "MiB/s")

    # CPU seconds per GiB moved (xl list deltas around the N runs of each stream)
    def cpu_per_gib(c, s):
        tot, ok = {}, False
        for r in range(1, nruns + 1):
            a = xl_cpu(P("cpu-%s-stream-%s-%d-a.txt" % (c, s, r)))
            b = xl_cpu(P("cpu-%s-stream-%s-%d-b.txt" % (c, s, r)))
            for d in b:
                if d in a:
                    tot[d] = tot.get(d, 0) + b[d] - a[d]
                    ok = True
        gib = sum(r[1] for r in iperf_runs(P("stream-%s-%s.txt" % (s, c)))) / 2**30
        if not ok or not gib:
            return None
        return {d: v / gib for d, v in tot.items()}

    med = lambda f: f.med if f.ok else None  # noqa: E731
    s16 = "16384" if "16384" in sizes else sizes[-1]
    R = {}
    x_ok = "xenvmc" in cols
    xs = med(stream["xenvmc"][s16]) if x_ok and accel_ok("stream") else None
    R["tcp_stream_16k_vs_loopback"] = ratio(xs, med(stream["loopback"][s16])) if "loopback" in cols else None
    R["tcp_stream_16k_vs_copy_limit"] = ratio(xs, med(memcpy))
    # Not a target: the same stream against the slower of the kernel's two copies (copy_from_user
    # on send, copy_to_user on receive), each on its own vCPU: the limit for this design here.
    kcopy = min(med(kread), med(kwrite)) if kread.ok and kwrite.ok else None
    R["tcp_stream_16k_vs_kernel_copy"] = ratio(xs, kcopy)
    # Nor this: against one system call + one kernel copy per 16 KiB (pread/pwrite of a memfd), the
    # most any socket moving 16 KiB writes with one copy per side could reach, before its own work.
    kcopy16 = min(med(kread16), med(kwrite16)) if kread16.ok and kwrite16.ok else None
    R["tcp_stream_16k_vs_syscall_copy_16k"] = ratio(xs, kcopy16)
    R["tcp_stream_16k_vs_netfront"] = ratio(xs, med(stream["netfront"][s16])) if "netfront" in cols else None
    # The issue names no write size: iperf3's own default (128 KiB) is judged too, when measured.
    if "131072" in sizes:
        x128 = med(stream["xenvmc"]["131072"]) if x_ok and accel_ok("stream") else None
        R["tcp_stream_128k_vs_loopback"] = ratio(x128, med(stream["loopback"]["131072"])) if "loopback" in cols else None
        R["tcp_stream_128k_vs_copy_limit"] = ratio(x128, med(memcpy))
        # Not a target: against the two copies run at once with nothing to wait for, the ceiling
        # of one copy per byte per side in this lab.
        R["tcp_stream_128k_vs_two_copies"] = ratio(x128, med(kpar))
    rr_ok = x_ok and accel_ok("rr")
    R["tcp_rr_1b_latency_netfront_over_xenvmc"] = ratio(med(rr1["netfront"]), med(rr1["xenvmc"])) if rr_ok and "netfront" in cols else None
    R["tcp_rr_1b_busy_read_latency_netfront_over_xenvmc"] = (
        ratio(med(rr1busy["netfront"]), med(rr1busy["xenvmc"])) if rr_ok and busy != "0" and "netfront" in cols else None)
    R["tcp_rr_1k_latency_netfront_over_xenvmc"] = ratio(med(rr1k["netfront"]), med(rr1k["xenvmc"])) if rr_ok and "netfront" in cols else None
    R["tcp_crr_xenvmc_over_netfront"] = ratio(med(crr["xenvmc"]), med(crr["netfront"])) if x_ok and accel[("crr")][0] in ("yes", "partly") and "netfront" in cols else None
    if x_ok and not udp_na["xenvmc"] and accel["udp"][0] == "yes" and "netfront" in cols:
        R["udp_stream_xenvmc_over_netfront"] = ratio(med(udp["xenvmc"]), med(udp["netfront"]))
        R["udp_rr_latency_netfront_over_xenvmc"] = ratio(med(udprr["netfront"]), med(udprr["xenvmc"]))
        R["udp_stream_16k_xenvmc_over_netfront"] = ratio(med(udp16["xenvmc"]), med(udp16["netfront"]))
        R["udp_stream_16k_vs_copy_limit"] = ratio(med(udp16["xenvmc"]), med(memcpy))
        R["udp_stream_16k_vs_kernel_copy"] = ratio(med(udp16["xenvmc"]), kcopy)

    # ---- Markdown
    L = []
    stamp = "%s, lab mode %s, Xen %s, Dom0 %s, DomUs %s / %s (%s, %s vCPU each)" % (
        meta.get("date", "?"), mode, meta.get("xen", "?"), meta.get("dom0_kernel", "?"),
        meta.get("domu1_kernel", "?"), meta.get("domu2_kernel", "?"), meta.get("domu_types", "?"),
        meta.get("domu_vcpus", "1"))
    stamp += ", vmc_front ring_kb %s, pool_rings %s" % (meta.get("ring_kb", "?"), meta.get("pool_rings", "?"))
    if meta.get("front_params"):
        stamp += " (loaded with %s, not the defaults)" % meta["front_params"]
    pin = meta.get("pin", "none")
    if pin != "none":
        stamp += ", vCPUs pinned (%s: physical CPU of each DomU, every column)" % pin
    else:
        stamp += ", vCPUs not pinned"
    L.append("# XenVMC benchmark")
    L.append("")
    L.append("%s. `make bench`, one lab boot; %s runs of %s s per figure: median (min-max)." % (
        stamp, meta.get("runs", "?"), meta.get("secs", "?")))
    if verdict:
        L.append("")
        L.append("Lab verdict: %s." % verdict)
    if mode == "TCG":
        L.append("")
        L.append("**TCG: the CPU is emulated; absolute figures are far below hardware and only the ratios "
                 "measured side by side in this run mean anything. The emulated CPU also compresses "
                 "ratios (every path is CPU-bound on the same slow emulated cores).**")
    L.append("")
    hdr = ["measurement"] + [TITLE[c] + (" (domu1 -> domu2)" if c != "loopback" else " (in domu1)") for c in cols]
    if "xenvmc" in cols and "netfront" in cols:
        hdr.append("XenVMC / netfront")
    if "xenvmc" in cols and "loopback" in cols:
        hdr.append("XenVMC / loopback")
    L.append("| " + " | ".join(hdr) + " |")
    L.append("|" + "|".join("---" for _ in hdr) + "|")

    def row(name, figs, g, fmt="%.1f", inverse=False, na=None):
        cells = [name]
        for c in cols:
            if na and na.get(c):
                cells.append(na[c])
            else:
                cells.append(mark(g, c, figs[c].cell(fmt)) if g else figs[c].cell(fmt))
        ok = g is None or accel_ok(g) or accel[g][0] == "partly"
        for other in ("netfront", "loopback"):
            if "xenvmc" in cols and other in cols:
                if na and na.get("xenvmc"):
                    cells.append("n/a")
                    continue
                x, o = med(figs["xenvmc"]), med(figs[other])
                r = ratio(o, x) if inverse else ratio(x, o)
                cells.append(("%.2fx" % r if r is not None and ok else "n/a") +
                             (" (faster)" if inverse and r is not None and ok and r > 1 else ""))
        L.append("| " + " | ".join(cells) + " |")

    for s in sizes:
        row("TCP stream, iperf3 -l %s" % size_name(s), {c: stream[c][s] for c in cols}, "stream")
    row("TCP request/response 1 B, one-way avg (crr rr)", rr1, "rr", inverse=True)
    if busy != "0":
        row("TCP request/response 1 B, net.core.busy_read=%s us, one-way avg (crr rr)" % busy, rr1busy, "rr",
            inverse=True)
    row("TCP request/response 1 KiB, one-way avg (sockperf --tcp -m 1024)", rr1k, "rr", inverse=True)
    row("TCP connect/request/response/close rate, 1 B (crr)", crr, "crr", fmt="%.0f")
    na = {c: "n/a (UDP fast path not implemented)" for c in cols if udp_na[c]}
    row("UDP stream, iperf3 -u -b 0, received", udp, "udp", fmt="%.0f", na=na)
    row("UDP stream, 16 KiB datagrams, iperf3 -u -b 0 -l 16384, received", udp16, "udp", na=na)
    row("UDP request/response 64 B, one-way avg (sockperf)", udprr, "udp", inverse=True, na=na)
    cpu16 = {c: cpu_per_gib(c, s16) for c in cols}
    cells = ["CPU seconds per GiB moved, TCP stream %s, all domains (Dom0 + domu1 + domu2)" % size_name(s16)]
    for c in cols:
        d = cpu16[c]
        cells.append("%.1f s (Dom0 %.1f)" % (sum(d.values()), d.get("Domain-0", 0)) if d else "ERR")
    for other in ("netfront", "loopback"):
        if "xenvmc" in cols and other in cols:
            a, b = cpu16["xenvmc"], cpu16[other]
            cells.append("%.2fx" % (sum(a.values()) / sum(b.values())) if a and b and sum(b.values()) else "n/a")
    L.append("| " + " | ".join(cells) + " |")
    L.append("| " + " | ".join(["memcpy 64 KiB buffers, one vCPU of domu1 (the copy limit)", memcpy.cell("%.0f")] +
                               [""] * (len(hdr) - 2)) + " |")
    for f, what in ((kread, "read: copy_to_user"), (kwrite, "write: copy_from_user")):
        L.append("| " + " | ".join(["kernel copy, %s of a 64 KiB memfd, one vCPU of domu1" % what,
                                   f.cell("%.0f")] + [""] * (len(hdr) - 2)) + " |")
    if kpar.ok:
        L.append("| " + " | ".join(["two kernel copies at once, 128 KiB: copy_from_user in domu1 while copy_to_user "
                                   "in domu2, each on its own vCPU (the slower of each pair)", kpar.cell("%.0f")] +
                                  [""] * (len(hdr) - 2)) + " |")
    for f, what in ((kread16, "pread"), (kwrite16, "pwrite")):
        if f.ok:
            L.append("| " + " | ".join(["one system call per 16 KiB: %s of a 16 KiB memfd, one vCPU of domu1" % what,
                                       f.cell("%.0f")] + [""] * (len(hdr) - 2)) + " |")
    L.append("")
    L.append("Latencies are one-way (half the round trip), averages; lower is better, so their ratio "
             "columns show other / XenVMC. `crr rr` keeps one connection and moves exactly 1 byte each "
             "way (a sockperf message carries its own header, so it cannot be 1 byte); `crr` opens, requests 1 B, reads "
             "1 B and closes a new connection each time. UDP stream: received rate with `-b 0`%s. "
             "Dom0 memcpy: %s." % (
                 ", loss " + ", ".join("%s %.0f%%" % (TITLE[c], statistics.median(udploss[c]))
                                      for c in cols if udploss[c]) if any(udploss.values()) else "",
                 mem0.cell("%.0f")))

    # CPU per GiB
    L.append("")
    L.append("## CPU per GiB moved (TCP stream, `xl list` CPU seconds of each domain over the %s runs, "
             "divided by the GiB received)" % meta.get("runs", "?"))
    L.append("")
    L.append("| column | message size | Dom0 | domu1 | domu2 | all domains |")
    L.append("|---|---|---|---|---|---|")
    for c in cols:
        for s in sizes:
            d = cpu_per_gib(c, s)
            if not d:
                L.append("| %s | %s | ERR | ERR | ERR | ERR |" % (TITLE[c], size_name(s)))
                continue
            g = lambda k: d.get(k)  # noqa: E731
            L.append("| %s | %s | %s | %s | %s | %s |" % (
                TITLE[c], size_name(s),
                *["%.1f s" % v if v is not None else "-" for v in (g("Domain-0"), g("domu1"), g("domu2"))],
                "%.1f s" % sum(d.values())))
    L.append("")
    L.append("Every domain's CPU time counts, including the ssh session that starts the client "
             "(about 1 s per run under TCG, the same in every column).")

    # acceleration
    L.append("")
    L.append("## Was the XenVMC column accelerated?")
    L.append("")
    if "xenvmc" not in cols:
        L.append("No XenVMC column in this run.")
    else:
        names = {"stream": "TCP streams", "rr": "request/response", "crr": "connect/request/close",
                 "udp": "UDP"}
        for g, (state, d, exp, udp_tx) in accel.items():
            st = {"yes": "accelerated", "partly": "PARTLY accelerated", "NOT ACCELERATED": "**NOT ACCELERATED**",
                  "unknown": "unknown"}[state]
            if g == "udp":
                if not xenvmc_udp:
                    L.append("- UDP: n/a (no udp counter in /proc/xenvmc/stats: UDP fast path not implemented)")
                else:
                    L.append("- UDP: `udp_tx_datagrams` in domu1 grew by %s over the XenVMC UDP runs: %s" % (
                        "?" if udp_tx is None else udp_tx, st))
                continue
            L.append("- %s: `accelerated_total` in domu1 grew by %d over the XenVMC runs, which opened %d "
                     "connections: %s" % (names[g], d, exp, st))
        for prefix, what in (("rr1", "1 B request/response"),
                             ("rr1busy", "1 B request/response, busy_read=%s us" % busy)):
            ev = [(d, re.search(r"count=(\d+)", t)) for d, t in counter_runs(P("%s-xenvmc.txt" % prefix))]
            n = sum(int(m.group(1)) for _d, m in ev if m)
            if n and any("events_in" in d for d, _m in ev):
                L.append("- %s: domu1 (the client) took %.2f events and sent %.2f per exchange; its reads "
                         "found the answer while spinning %d times (`busy_poll_hits`) in %d exchanges" % (
                             what, sum(d.get("events_in", 0) for d, _m in ev) / n,
                             sum(d.get("events_out", 0) for d, _m in ev) / n,
                             sum(d.get("busy_poll_hits", 0) for d, _m in ev), n))
        if fallbacks:
            L.append("- fallbacks to plain TCP during the XenVMC runs (domu1): " +
                     ", ".join("`%s` +%d" % kv_ for kv_ in sorted(fallbacks.items())))
        else:
            L.append("- no fallback to plain TCP counted during the XenVMC runs (domu1)")
        L.append("- netfront and loopback runs: `accelerated_total` grew by %d in all (must be 0)%s" % (
            nf_accel, "" if nf_accel == 0 else " **WRONG**"))
        st = kv(P("stats-end-domu1.txt"))
        st2 = kv(P("stats-end-domu2.txt"))
        if st:
            L.append("- at the end (all servers stopped): domu1 `connections` %s, `resets_total` %s; domu2 "
                     "`connections` %s, `resets_total` %s" % (st.get("connections", "?"), st.get("resets_total", "?"),
                                                            st2.get("connections", "?"), st2.get("resets_total", "?")))

    # memory
    L.append("")
    L.append("## Ring and grant memory (/proc/xenvmc/stats)")
    L.append("")
    dur = read(P("during-xenvmc.txt")) or ""
    dstats = kv_text(dur.split("@@CONNECTIONS")[0]) if dur else {}
    idle = kv(P("stats-start-domu1.txt"))
    peers_up = sum(1 for ln in (read(P("peers-domu1.txt")) or "").splitlines()[1:] if len(ln.split()) > 2 and ln.split()[2] == "up")
    if dstats or idle:
        ring_kb = meta.get("ring_kb", "?")
        pool = meta.get("pool_rings", "?")
        L.append("vmc_front parameters: ring_kb %s, pool_rings %s; domu1 has %d peer channel%s up." % (
            ring_kb, pool, peers_up, "s"[peers_up == 1:]))
        L.append("")
        L.append("| domu1 | idle (channels up, no connection) | during one accelerated stream |")
        L.append("|---|---|---|")
        keys = [k for k in ("grants_in_use", "mapped_pages", "event_channels", "connections",
                            "ring_bytes_per_connection") if k in idle or k in dstats]
        for k in keys:
            L.append("| %s | %s | %s |" % (k, idle.get(k, "-"), dstats.get(k, "-")))
        try:
            gr = int(dstats.get("grants_in_use") or idle.get("grants_in_use"))
            L.append("")
            L.append("Granted by domu1: %d pages = %.2f MiB for %d peer%s, %.2f MiB per peer (its outgoing "
                     "ring pool + control page); each pair holds two such pools (one per direction). A "
                     "connection takes one ring per direction from the pools (%s bytes in all), no new "
                     "allocation." % (gr, gr * 4096 / 2**20, peers_up, "s"[peers_up == 1:],
                                      gr * 4096 / 2**20 / max(peers_up, 1),
                                      dstats.get("ring_bytes_per_connection") or idle.get("ring_bytes_per_connection", "?")))
        except (TypeError, ValueError):
            pass
        conns = dur.split("@@CONNECTIONS")[1].strip() if "@@CONNECTIONS" in dur else ""
        if conns:
            L.append("")
            L.append("domu1's /proc/xenvmc/connections during that stream:")
            L.append("")
            L.append("```")
            L.extend(conns.splitlines()[:8])
            L.append("```")
    else:
        L.append("No /proc/xenvmc/stats captured.")

    # targets
    L.append("")
    L.append("## Targets")
    L.append("")
    L.append("| target | measured | met? |")
    L.append("|---|---|---|")
    for text, key, thr in TARGETS:
        r = R.get(key)
        L.append("| %s | %s | %s |" % (text, fmt_ratio(r) + ("x" if r is not None else ""),
                                       "n/a" if r is None else ("yes" if r >= thr else "**NO**")))
    r = R.get("tcp_stream_16k_vs_kernel_copy")
    if r is not None:
        L.append("| (not a target) XenVMC 16 KiB stream / the kernel's slower copy (%s MiB/s), "
                 "the copies XenVMC makes | %sx | - |" % ("%.0f" % kcopy, fmt_ratio(r)))
    r = R.get("tcp_stream_16k_vs_syscall_copy_16k")
    if r is not None:
        L.append("| (not a target) XenVMC 16 KiB stream / one system call and kernel copy per 16 KiB (%s MiB/s), "
                 "the most any one-copy socket could reach | %sx | - |" % ("%.0f" % kcopy16, fmt_ratio(r)))
    r = R.get("tcp_stream_128k_vs_two_copies")
    if r is not None:
        L.append("| (not a target) XenVMC 128 KiB stream / two kernel copies at once (%s MiB/s), the ceiling "
                 "of one copy per byte per side here | %sx | - |" % ("%.0f" % kpar.med, fmt_ratio(r)))
    r = R.get("tcp_rr_1b_busy_read_latency_netfront_over_xenvmc")
    if r is not None:
        L.append("| (not a target: both columns spin) XenVMC 1 B request/response latency with net.core.busy_read=%s "
                 "us, netfront / XenVMC | %sx | - |" % (busy, fmt_ratio(r)))
    r = R.get("tcp_stream_16k_vs_netfront")
    L.append("| the seed's hardware claim: 8-9x netfront throughput | %s | %s |" % (
        fmt_ratio(r) + ("x" if r is not None else ""),
        "n/a" if r is None else ("yes" if r >= 8 else "no (see below)")))
    L.append("")
    L.append("The seed measured 8-9x over netfront on real hardware, where netfront's per-packet cost "
             "(netback, bridge, grant copies, interrupts) dominates. %s" % (
                 "Under TCG every instruction is emulated at a similar cost, so the per-packet work that "
                 "XenVMC saves is a smaller share of the total: the emulated CPU compresses the ratios, and "
                 "these figures do not tell what hardware would show." if mode == "TCG" else ""))
    L.append("")
    L.append("Ratio lines (`make bench` prints them last):")
    L.append("")
    L.append("```")
    rl = ["ratio %s %s" % (k, fmt_ratio(v)) for k, v in R.items()]
    L.extend(rl)
    L.append("```")
    md = "\n".join(L) + "\n"
    with open(os.path.join(outdir, "bench.md"), "w") as f:
        f.write(md)
    with open(os.path.join(outdir, "ratios.txt"), "w") as f:
        f.write("\n".join(rl) + "\n")
    with open(os.path.join(outdir, "bench.svg"), "w") as f:
        f.write(svg(stream, cols, sizes, memcpy, stamp, mode, accel))
    print(md)
    for line in rl:
        print(line)
    return 0


def counter_runs(path):
    """[(counter deltas of domu1 over the run, run output)] from the @@S0/@@RUN/@@RC/@@S1 lines"""
    out, s0, cur, text = [], None, None, read(path) or ""
    for line in text.splitlines():
        if line.startswith("@@S0"):
            s0, cur = parse_counters(line), None
        elif line.startswith("@@RUN"):
            cur = []
        elif line.startswith("@@RC"):
            cur = "\n".join(cur or [])
        elif isinstance(cur, list):
            cur.append(line)
        elif line.startswith("@@S1") and s0 is not None:
            s1 = parse_counters(line)
            out.append(({k: s1[k] - s0.get(k, 0) for k in s1}, cur if isinstance(cur, str) else ""))
            s0 = None
    return out


def parse_counters(line):
    p = line.split()[1:]
    d = {}
    for k, v in zip(p[0::2], p[1::2]):
        try:
            d[k] = int(v)
        except ValueError:
            pass
    return d


def kv_text(text):
    d = {}
    for line in text.splitlines():
        p = line.split(None, 1)
        if len(p) == 2:
            d[p[0]] = p[1].strip()
    return d


def svg(stream, cols, sizes, memcpy, stamp, mode, accel):
    W, H = 900, 470
    x0, y0, x1, y1 = 80, 60, 690, 400  # plot area
    colors = {"netfront": "#d62728", "xenvmc": "#1f77b4", "loopback": "#2ca02c"}
    vals = [v for c in cols for s in sizes for v in stream[c][s].vals]
    if memcpy.ok:
        vals.append(memcpy.med)
    ymax = max(vals) * 1.1 if vals else 1
    step = nice_step(ymax / 6)
    ymax = step * (int(ymax / step) + 1)
    n = len(sizes)

    def X(i):
        return x0 + (x1 - x0) * (i / (n - 1) if n > 1 else 0.5)

    def Y(v):
        return y1 - (y1 - y0) * v / ymax

    o = ['<svg xmlns="http://www.w3.org/2000/svg" width="%d" height="%d" viewBox="0 0 %d %d" '
         'font-family="sans-serif" font-size="12">' % (W, H, W, H),
         '<rect width="100%" height="100%" fill="white"/>',
         '<text x="%d" y="22" font-size="15" font-weight="bold">XenVMC: TCP stream domu1 -&gt; domu2 vs '
         'netfront and loopback (iperf3)</text>' % x0,
         '<text x="%d" y="40" font-size="10">%s</text>' % (x0, esc(stamp)),
         '<rect x="%d" y="%d" width="%d" height="%d" fill="none" stroke="#888"/>' % (x0, y0, x1 - x0, y1 - y0)]
    v = 0.0
    while v <= ymax + 1e-9:
        o.append('<line x1="%d" y1="%.1f" x2="%d" y2="%.1f" stroke="#ddd"/>' % (x0, Y(v), x1, Y(v)))
        o.append('<text x="%d" y="%.1f" text-anchor="end">%g</text>' % (x0 - 6, Y(v) + 4, v))
        v += step
    for i, s in enumerate(sizes):
        o.append('<text x="%.1f" y="%d" text-anchor="middle">%s</text>' % (X(i), y1 + 18, size_name(s)))
    o.append('<text x="%d" y="%d" text-anchor="middle">iperf3 -l (write size)</text>' % ((x0 + x1) // 2, y1 + 38))
    o.append('<text x="20" y="%d" transform="rotate(-90 20 %d)" text-anchor="middle">MiB/s received '
             '(median, bars: min-max)</text>' % ((y0 + y1) // 2, (y0 + y1) // 2))
    if memcpy.ok:
        o.append('<line x1="%d" y1="%.1f" x2="%d" y2="%.1f" stroke="#555" stroke-dasharray="6,4"/>' % (
            x0, Y(memcpy.med), x1, Y(memcpy.med)))
    ly = y0 + 10
    for c in cols:
        pts = [(X(i), Y(stream[c][s].med), stream[c][s]) for i, s in enumerate(sizes) if stream[c][s].ok]
        col = colors[c]
        if pts:
            o.append('<polyline fill="none" stroke="%s" stroke-width="2" points="%s"/>' % (
                col, " ".join("%.1f,%.1f" % (px, py) for px, py, _ in pts)))
        for px, py, f in pts:
            o.append('<line x1="%.1f" y1="%.1f" x2="%.1f" y2="%.1f" stroke="%s"/>' % (
                px, Y(min(f.vals)), px, Y(max(f.vals)), col))
            o.append('<circle cx="%.1f" cy="%.1f" r="3.5" fill="%s"/>' % (px, py, col))
        label = {"netfront": "netfront (tcp=0)", "xenvmc": "XenVMC (tcp=1)", "loopback": "loopback in domu1"}[c]
        if c == "xenvmc" and accel.get("stream", ("yes",))[0] == "NOT ACCELERATED":
            label += " NOT ACCELERATED"
        o.append('<line x1="%d" y1="%d" x2="%d" y2="%d" stroke="%s" stroke-width="2"/>' % (
            x1 + 15, ly, x1 + 40, ly, col))
        o.append('<text x="%d" y="%d">%s</text>' % (x1 + 45, ly + 4, esc(label)))
        ly += 20
    if memcpy.ok:
        o.append('<line x1="%d" y1="%d" x2="%d" y2="%d" stroke="#555" stroke-dasharray="6,4"/>' % (
            x1 + 15, ly, x1 + 40, ly))
        o.append('<text x="%d" y="%d">memcpy, 1 vCPU</text>' % (x1 + 45, ly + 4))
        o.append('<text x="%d" y="%d">(copy limit)</text>' % (x1 + 45, ly + 18))
        ly += 34
    if mode == "TCG":
        o.append('<text x="%d" y="%d" font-size="10" fill="#a00">TCG: emulated CPU,</text>' % (x1 + 15, ly + 10))
        o.append('<text x="%d" y="%d" font-size="10" fill="#a00">ratios only</text>' % (x1 + 15, ly + 24))
    o.append("</svg>")
    return "\n".join(o) + "\n"


def nice_step(x):
    if x <= 0:
        return 1
    e = 10 ** int(("%e" % x).split("e")[1])
    for m in (1, 2, 2.5, 5, 10):
        if m * e >= x:
            return m * e
    return 10 * e


def esc(s):
    return s.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


if __name__ == "__main__":
    sys.exit(main())
