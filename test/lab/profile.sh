#!/bin/bash
# Where the CPU goes in a 16 KiB TCP stream (LAB_PROFILE_LEN: another write size;
# LAB_PROFILE_LOAD=rr: in a 1 B request/response) (the copy-limit target of issues 5 and 9): a
# diagnostic, not a test.  domu1 and domu2 are pinned apart, as in make bench.  Runs in Dom0 of
# a lab whose image has perf:
#
#   LAB_PACKAGES=linux-perf test/lab.sh run test/lab/profile.sh
#   (or in a suite: LAB_SUITE="... profile.sh", the file given as an extra file)
#
# For each path (XenVMC domu1 -> domu2, netfront domu1 -> domu2, loopback inside domu1), one
# iperf3 -l 16384 stream of LAB_PROFILE_SECS (default 10) s (vmc_front loaded with tcp=1 and
# LAB_PROFILE_PARAMS) with `perf record -e cpu-clock -a`
# (software clock sampling: the lab's PV guests have no PMU) in each DomU involved; prints the
# stream's rate and each side's top symbols, and the share of samples in a few groups: the copies
# (copy_user*, memcpy*, rep_movs*), XenVMC itself (vmcf_*, vmc_*), hypercalls and Xen
# (xen_*, hypercall_page), the idle loop, and everything else; then who calls xen_hypercall_pv
# (perf record -g), and the events each DomU received over the stream (/proc/xenvmc/channels).
# Debian's `perf` wrapper wants a perf_<major.minor> for the running kernel; bookworm's
# linux-perf is /usr/bin/perf itself.
set -o pipefail
T=${LAB_PROFILE_SECS:-10}
L=${LAB_PROFILE_LEN:-16384}	# iperf3 -l: bytes per write
A=domu1 B=domu2 B_IP=10.99.0.12
x() { lab-exec -n -t 600 "$@"; }
chan_up() { [ "$(x "$1" "awk -v d=$(xl domid "$2") '\$1 == d {print \$3}' /proc/xenvmc/peers")" = up ]; }
fails=0

PERF=$(x $A 'ls /usr/bin/perf_* /usr/bin/perf 2> /dev/null | head -1')
for d in $A $B; do
	x $d "$PERF --version" || { echo "no perf in $d (LAB_PACKAGES=linux-perf)"; echo "0 passed, 1 failed"; exit 1; }
done
lab-unload front > /dev/null
LAB_FRONT_PARAMS="tcp=1 ${LAB_PROFILE_PARAMS:-}" lab-load front $A $B > /dev/null
for i in $(seq 60); do chan_up $A $B && chan_up $B $A && break; sleep 1; done
sleep 3
lab-canary pause > /dev/null 2>&1
# As make bench: each DomU on its own physical CPU (unpinned, Xen may run both on one).
xl vcpu-pin $A all 0 && xl vcpu-pin $B all 1 || echo "xl vcpu-pin failed: DomUs not pinned"
x $B 'iperf3 -s -D -p 5400; iperf3 -s -D -p 5401'
x $A 'iperf3 -s -D -p 5402'
LOAD=${LAB_PROFILE_LOAD:-stream}
if [ "$LOAD" = rr ]; then
	for d in $A $B; do lab-exec -t 60 $d 'cat > /tmp/crr && chmod +x /tmp/crr' < /lab/files/crr; done
	x $B '/tmp/crr server 5410 -d > /dev/null; /tmp/crr server 5411 -d > /dev/null'
	x $A '/tmp/crr server 5412 -d > /dev/null'
fi

# summary FILE: top symbols and groups from a perf.data in the DomU.  A PV guest's idle loop
# halts in a hypercall (xen_safe_halt: SCHEDOP_block), so xen_hypercall_pv's samples under
# xen_safe_halt count as idle, not as hypercalls (callers from perf record -g).
summary() {
	local d=$1 f=$2 callers halt
	x $d "$PERF report -i $f --stdio --no-children --sort sym -g none --percent-limit 1.5 2>/dev/null | grep -v '^#' | grep -v '^\$' | head -25" | sed "s/^/    $d: /"
	# who makes the hypercalls (PV guests: every one enters Xen through xen_hypercall_pv)
	callers=$(x $d "$PERF report -i $f --stdio --no-children --sort sym -S xen_hypercall_pv -g graph,0.5,callee,function,percent --max-stack 6 2>/dev/null | grep -v '^#' | grep -v '^\$' | head -40")
	halt=$(echo "$callers" | grep -o '[0-9.]*%--xen_safe_halt' | head -1 | cut -d% -f1)
	x $d "$PERF report -i $f --stdio --no-children --sort sym -g none 2>/dev/null | grep -v '^#'" | awk -v d="$d" -v halt="${halt:-0}" '
		$1 ~ /%$/ { p = $1 + 0; s = $NF
			if (s ~ /^(copy_user|_copy_to_user|_copy_from_user|copy_page|memcpy|__memcpy|rep_movs|rep_stos_alternative|copy_to_user|copy_from_user)/) g["copies"] += p
			else if (s ~ /^(vmcf_|vmc_)/) g["xenvmc"] += p
			else if (s ~ /^(xen_|hypercall_page|HYPERVISOR|pv_|__xen|xen_hypercall)/) g["xen/hypercalls"] += p
			else if (s ~ /^(default_idle|xen_safe_halt|do_idle|cpuidle|poll_idle|arch_cpu_idle|native_safe_halt)/) g["idle"] += p
			else g["other kernel+user"] += p }
		END { g["xen/hypercalls"] -= halt; g["idle"] += halt
			printf "    %s: groups:", d; for (k in g) printf " %s %.1f%%;", k, g[k]; printf "\n" }'
	echo "$callers" | sed "s/^/    $d hypercall callers: /"
}

# events: the event count each of domu1 and domu2 received from the other (channels view, the
# column named events)
events() {
	local ev="NR == 1 {for (i = 1; i <= NF; i++) if (\$i == \"events\") k = i} NR > 1 && \$1 == d {print \$k}"
	echo "$(x $A "awk -v d=$(xl domid $B) '$ev' /proc/xenvmc/channels")" \
	     "$(x $B "awk -v d=$(xl domid $A) '$ev' /proc/xenvmc/channels")"
}

# perf_done DOMU...: wait until perf record has written its file in each (a report of a file still
# being written, as after a fixed 3 s under load, printed nothing)
perf_done() {
	local d
	for d; do
		x $d "for i in \$(seq 60); do pidof ${PERF##*/} > /dev/null || exit 0; sleep 1; done; exit 1" ||
			echo "  perf record still running in $d after 60 s"
	done
}

# prof NAME CLIENT SERVER_DOMS DST PORT: one profiled stream (LAB_PROFILE_LOAD=rr: one crr rr
# 1 B request/response run instead, to the crr server on PORT + 10)
prof() {
	local name=$1 cli=$2 doms=$3 dst=$4 port=$5 d out
	if [ "$LOAD" = rr ]; then
		echo "=== $name: crr rr 1 B for $T s from $cli to $dst"
		for d in $doms; do
			x $d "($PERF record -q -g -e cpu-clock -F 999 -a -o /tmp/$name.data -- sleep $((T + 2)) > /dev/null 2>&1 &) > /dev/null 2>&1"
		done
		sleep 1
		ev0=$(events)
		out=$(x $cli "/tmp/crr rr $dst $((port + 10)) $T 1") || { out=ERROR; fails=$((fails + 1)); }
		ev1=$(events)
		perf_done $doms
		echo "  $out; domu1 accelerated_total $(x $A "awk '\$1 == \"accelerated_total\" {print \$2}' /proc/xenvmc/stats")"
		echo "  events received over the run (domu1 domu2): before $ev0, after $ev1"
		for d in $doms; do summary $d /tmp/$name.data; done
		return
	fi
	echo "=== $name: iperf3 -l $L -t $T from $cli to $dst"
	for d in $doms; do
		x $d "($PERF record -q -g -e cpu-clock -F 999 -a -o /tmp/$name.data -- sleep $((T + 2)) > /dev/null 2>&1 &) > /dev/null 2>&1"
	done
	sleep 1
	ev0=$(events)
	out=$(x $cli "iperf3 -c $dst -p $port -t $T -l $L -J" | python3 -c 'import json,sys; d=json.load(sys.stdin); print("%.1f MiB/s" % (d["end"]["sum_received"]["bytes"] / d["end"]["sum_received"]["seconds"] / 1048576))') || { out=ERROR; fails=$((fails + 1)); }
	ev1=$(events)
	perf_done $doms
	echo "  rate: $out; domu1 accelerated_total $(x $A "awk '\$1 == \"accelerated_total\" {print \$2}' /proc/xenvmc/stats")"
	echo "  events received over the stream (domu1 domu2): before $ev0, after $ev1"
	for d in $doms; do summary $d /tmp/$name.data; done
}

prof xenvmc $A "$A $B" $B_IP 5400
x $A 'echo 0 > /sys/module/vmc_front/parameters/tcp'; x $B 'echo 0 > /sys/module/vmc_front/parameters/tcp'
prof netfront $A "$A $B" $B_IP 5401
prof loopback $A "$A" 127.0.0.1 5402
lab-canary resume > /dev/null 2>&1
echo "$((3 - fails)) passed, $fails failed"
[ "$fails" = 0 ]
