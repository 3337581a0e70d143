#!/bin/bash
# Where a ping-pong's time goes, TCP against UDP through XenVMC (the latency targets of issues 5
# and 6): a diagnostic, not a test.  Runs in Dom0 of a lab:
#
#   test/lab.sh run test/lab/latency.sh
#
# domu1 and domu2 pinned apart and every canary paused, as in make bench.  For each of UDP and
# TCP (sockperf ping-pong, 64 B, domu1 -> domu2 and back; vmc_front tcp=1 udp=1):
#   1. an untraced run of LAB_LAT_SECS (default 5) s: sockperf's one-way figure;
#   2. a traced run: ftrace's function_graph in both DomUs, limited to the functions below, so
#      that each traced call costs a few microseconds and nothing else is recorded.
# Printed per DomU: each traced function's calls per exchange and median duration, the context
# switches per exchange by the task switched to (switch-to:, from the sched_switch event); and two
# intervals read off the same DomU's clock (funcgraph-abstime):
#   evt->recv  from the end of vmcf_evt() (the event's soft irq, which woke the reader) to the
#              end of the system call that returned the data: the reader's wake-up, context
#              switch and copy;
#   recv->send from the end of that system call to the start of the next sending one: user
#              space (sockperf's own work between reading the request and sending the answer).
# Last, for scale, both untraced over netfront.  The rest of a one-way time is the event's way
# from one DomU to the other (the hypercall in the sender, Xen, the receiver's upcall and vCPU
# wake-up), which neither DomU can trace.
set -o pipefail
T=${LAB_LAT_SECS:-5}
A=domu1 B=domu2 B_IP=10.99.0.12
TR=/sys/kernel/tracing
x() { lab-exec -n -t 600 "$@"; }
chan_up() { [ "$(x "$1" "awk -v d=$(xl domid "$2") '\$1 == d {print \$3}' /proc/xenvmc/peers")" = up ]; }
fails=0
# The send path (the system calls, UDP's IP output, XenVMC's send and notify), the receive
# path (the upcall's handler, the soft irq, UDP's IP input, the socket's wake-up) and the
# receiving system calls.  Names a kernel lacks are skipped.
FUNCS="__x64_sys_sendto __x64_sys_sendmsg __x64_sys_write __x64_sys_recvfrom __x64_sys_recvmsg
__x64_sys_read __x64_sys_epoll_wait __x64_sys_select __x64_sys_poll
udp_sendmsg ip_make_skb udp_send_skb ip_send_skb ip_output nf_hook_slow ip_route_output_flow
ip_finish_output2 vmcf_udp_out vmcf_sendmsg vmcf_tcp_send vmcf_recvmsg vmcf_notify
vmcf_interrupt vmcf_evt vmcf_udp_in vmcf_wake_conns alloc_skb_with_frags __ip_dev_find
netif_receive_skb ip_rcv ip_route_input_noref ip_local_deliver udp_rcv
__udp_enqueue_schedule_skb sock_def_readable udp_recvmsg xen_irq_lateeoi schedule"

lab-unload front > /dev/null
LAB_FRONT_PARAMS="tcp=1 udp=1" lab-load front $A $B > /dev/null
for i in $(seq 60); do chan_up $A $B && chan_up $B $A && break; sleep 1; done
sleep 3
lab-canary pause > /dev/null 2>&1
xl vcpu-pin $A all 0 && xl vcpu-pin $B all 1 || echo "xl vcpu-pin failed: DomUs not pinned"
x $B '(sockperf sr -i 0.0.0.0 -p 5501 > /dev/null 2>&1 &); (sockperf sr --tcp -i 0.0.0.0 -p 5502 > /dev/null 2>&1 &)'
sleep 2
for d in $A $B; do
	x $d "[ -d $TR/options ] || mount -t tracefs nodev $TR
	      echo 0 > $TR/tracing_on; echo nop > $TR/current_tracer; : > $TR/set_ftrace_filter
	      for f in $(echo $FUNCS); do echo \$f >> $TR/set_ftrace_filter 2> /dev/null; done
	      echo 16384 > $TR/buffer_size_kb
	      echo function_graph > $TR/current_tracer
	      echo 1 > $TR/options/funcgraph-abstime; echo 1 > $TR/options/funcgraph-tail
	      echo 1 > $TR/events/sched/sched_switch/enable
	      echo \"$d traces: \$(wc -l < $TR/set_ftrace_filter) functions\"" ||
		{ echo "cannot set up ftrace in $d"; echo "0 passed, 1 failed"; exit 1; }
done

# parse DOMU FILE EXCHANGES: the table for one DomU's trace (see the top of this file): one
# "name value" line per call or interval, sorted, then per name the calls per exchange and
# the median
parse() {
	awk -F'|' '
	function dur(s) { return match(s, /[0-9.]+ us/) ? substr(s, RSTART, RLENGTH - 3) + 0 : -1 }
	NF >= 3 {
		ts = $1 + 0; c = $3
		if (c ~ /sched_switch:/ && match(c, /next_comm=[^ ]+/)) {	# whom the CPU went to
			w = substr(c, RSTART + 10, RLENGTH - 10); sub(/\/[0-9]+$/, "", w)
			print "switch-to:" w, 0; next
		}
		if (c ~ /^ *} \/\* /) {		# exit: "} /* name */", its duration in $2
			f = c; sub(/^ *} \/\* /, "", f); sub(/ \*\/.*/, "", f)
		} else if (c ~ /\(\);/) {	# a leaf: "name();"
			f = c; sub(/^ */, "", f); sub(/\(\);.*/, "", f)
		} else {
			if (c ~ /\(\) \{/) {	# entry: "name() {"
				f = c; sub(/^ */, "", f); sub(/\(\) \{.*/, "", f); sub(/ \[[^]]*\]$/, "", f)
				if (f ~ /^__x64_sys_(sendto|sendmsg|write)$/ && recv_end) {
					print "recv->send", (ts - recv_end) * 1e6; recv_end = 0
				}
			}
			next
		}
		sub(/ \[[^]]*\]$/, "", f)	# a function of a module: "name [module]"
		if (dur($2) >= 0) print f, dur($2)
		if (f == "vmcf_evt") evt_end = ts
		if (f ~ /^__x64_sys_(recvfrom|recvmsg|read)$/ && evt_end) {
			print "evt->recv", (ts - evt_end) * 1e6; evt_end = 0; recv_end = ts
		}
	}' "$2" | sort -k1,1 -k2,2g | awk -v d="$1" -v n="$3" '
	function out() { if (k != "") printf "    %s: %-28s %9.2f %11.1f\n", d, k, m / n, a[int((m + 1) / 2)] }
	BEGIN { printf "    %s: %-28s %9s %11s\n", d, "function / interval", "per exch.", "median us" }
	$1 != k { out(); k = $1; m = 0 }
	{ a[++m] = $2 }
	END { out() }'
}

# avg: sockperf's one-way average (us) from its output on stdin
avg() { sed -n 's/.*avg-latency=\([0-9.]*\).*/\1/p'; }
# counter NAME: domu1's counter NAME (/proc/xenvmc/stats)
counter() { x $A "awk -v k=$1 '\$1 == k {print \$2}' /proc/xenvmc/stats"; }
# run NAME SOCKPERF_ARGS COUNTER: one untraced and one traced run; fails unless both ran and
# went through XenVMC (domu1's COUNTER grew)
run() {
	local name=$1 args="$2 -m 64 -t $T" out rc n d c0
	echo "=== $name: sockperf pp $args, domu1 -> domu2"
	c0=$(counter "$3")
	out=$(x $A "sockperf pp $args 2>&1") || { echo "$out" | tail -5; return 1; }
	echo "  untraced: one-way $(echo "$out" | avg) us"
	for d in $A $B; do x $d "echo > $TR/trace; echo 1 > $TR/tracing_on"; done
	out=$(x $A "sockperf pp $args 2>&1"); rc=$?
	for d in $A $B; do x $d "echo 0 > $TR/tracing_on"; done
	[ "$rc" = 0 ] || { echo "$out" | tail -5; return 1; }
	echo "  traced: one-way $(echo "$out" | avg) us"
	n=$(echo "$out" | sed -n 's/.*ReceivedMessages=\([0-9]*\).*/\1/p' | head -1)
	echo "  exchanges (sockperf's ReceivedMessages): ${n:=0}"
	[ "$n" -gt 0 ] || return 1
	for d in $A $B; do
		x $d "cat $TR/trace" > "/tmp/lat-$name-$d.trace"
		echo "  $d: $(grep -c . "/tmp/lat-$name-$d.trace") trace lines, $(x $d "grep '^overrun' $TR/per_cpu/cpu0/stats")"
		parse $d "/tmp/lat-$name-$d.trace" "$n"
	done
	echo "  domu1: $3 grew from $c0 to $(counter "$3")"
	[ "$(counter "$3")" -gt "$c0" ] || { echo "  NOT through XenVMC"; return 1; }
}

run udp "-i $B_IP -p 5501" udp_tx_datagrams || fails=$((fails + 1))
run tcp "--tcp -i $B_IP -p 5502" accelerated_total || fails=$((fails + 1))
for d in $A $B; do x $d "echo 0 > $TR/events/sched/sched_switch/enable; echo nop > $TR/current_tracer; : > $TR/set_ftrace_filter"; done
# For scale, the same two untraced over netfront (tcp=0 udp=0 at run time).
for d in $A $B; do x $d 'echo 0 > /sys/module/vmc_front/parameters/tcp; echo 0 > /sys/module/vmc_front/parameters/udp'; done
echo "=== netfront, untraced: one-way UDP $(x $A "sockperf pp -i $B_IP -p 5501 -m 64 -t $T 2>&1" | avg) us, TCP $(x $A "sockperf pp --tcp -i $B_IP -p 5502 -m 64 -t $T 2>&1" | avg) us"
x $B 'pkill sockperf'
lab-canary resume > /dev/null 2>&1
echo "$((2 - fails)) passed, $fails failed"
[ "$fails" = 0 ]
