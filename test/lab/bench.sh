#!/bin/bash
# Baseline benchmark (not a test), run in Dom0 by `test/lab.sh bench`: plain netfront (XenVMC modules
# not loaded unless LAB_MODULES says otherwise). One boot: iperf3 TCP domu1->domu2 (netfront/netback/
# bridge), iperf3 TCP loopback inside domu1, sockperf ping-pong TCP and UDP domu1<->domu2, memcpy
# bandwidth of one DomU vCPU (64 KiB buffers). The integrity canary is paused during measurements and
# checked before and after.
set -o pipefail
T=${LAB_BENCH_SECS:-10}
A=domu1 B=domu2
out=$LAB_ARTIFACTS/bench.txt
py_iperf='import json,sys; d=json.load(sys.stdin); print("%.0f" % (d["end"]["sum_received"]["bits_per_second"] / 1e6))'
note() { echo "bench: $*"; }

lab-canary pass big >/dev/null || note "canary FAILED before the benchmark"
for d in $A $B; do lab-exec -n $d 'lab-canary pass >/dev/null && lab-canary pause' || note "canary FAILED in $d"; done
lab-canary pause

lab-exec $A 'cat > /tmp/memcpy_bw && chmod +x /tmp/memcpy_bw' < /lab/files/memcpy_bw
lab-exec -n $B 'iperf3 -s -D -p 5201; sockperf sr --tcp -i 0.0.0.0 -p 11111 --daemonize >/dev/null 2>&1; sockperf sr -i 0.0.0.0 -p 11112 --daemonize >/dev/null 2>&1'
lab-exec -n $A 'iperf3 -s -D -p 5202'
sleep 2

note "iperf3 TCP $A -> $B, ${T}s"
net=$(lab-exec -n $A "iperf3 -c $B -p 5201 -t $T -J" | python3 -c "$py_iperf") || net=ERR
note "iperf3 TCP loopback in $A, ${T}s"
lo=$(lab-exec -n $A "iperf3 -c 127.0.0.1 -p 5202 -t $T -J" | python3 -c "$py_iperf") || lo=ERR
sp() {  # sockperf ping-pong: prints "avg p99" one-way latency in usec
    lab-exec -n $A "sockperf pp $1 -i 10.99.0.12 -p $2 -t $T 2>&1" | tee -a $LAB_ARTIFACTS/sockperf.log |
        awk '/avg-latency=/ {sub(/.*avg-latency=/, ""); sub(/ .*/, ""); avg=$0}
             /percentile 99.000 =/ {p99=$NF} END {printf "%s %s\n", avg ? avg : "ERR", p99 ? p99 : "ERR"}'
}
note "sockperf ping-pong TCP $A <-> $B, ${T}s"
read -r tcp_avg tcp_p99 < <(sp --tcp 11111)
note "sockperf ping-pong UDP $A <-> $B, ${T}s"
read -r udp_avg udp_p99 < <(sp "" 11112)
note "memcpy bandwidth, one vCPU of $A and of Dom0"
mu=$(lab-exec -n $A "/tmp/memcpy_bw 3 65536" | sed -n 's/.*s, \([0-9.]*\) MiB.*/\1/p')
m0=$(/lab/files/memcpy_bw 3 65536 | sed -n 's/.*s, \([0-9.]*\) MiB.*/\1/p')

lab-canary resume
for d in $A $B; do lab-exec -n $d 'lab-canary resume; lab-canary pass >/dev/null' || note "canary FAILED in $d after the benchmark"; done
lab-canary pass big >/dev/null || note "canary FAILED in dom0 after the benchmark"

xenver=$(xl info | awk -F': ' '/^xen_version/ {print $2}')
types="$(cat /run/lab/type-$A)/$(cat /run/lab/type-$B)"
mode=$(echo "${LAB_MODE:-tcg}" | tr a-z A-Z)
mods=$(lab-exec -n $A "grep -c '^vmc_front ' /proc/modules" 2>/dev/null); [ "${mods:-0}" -gt 0 ] && mods="vmc_front loaded" || mods="none (plain netfront)"
{
echo "XenVMC lab baseline benchmark"
echo "lab mode: $mode$([ "$mode" = TCG ] && echo ' (emulated CPU: figures are RELATIVE ONLY, not hardware numbers)')"
echo "Xen $xenver; Dom0 $(uname -r); $A $(lab-exec -n $A uname -r); $B $(lab-exec -n $B uname -r); DomU types $types; XenVMC modules: $mods"
echo
printf '| %-52s | %-22s |\n' "measurement ($T s each)" "result"
printf '|%s|%s|\n' "------------------------------------------------------" "------------------------"
printf '| %-52s | %-22s |\n' "iperf3 TCP $A -> $B (netfront/netback/bridge)" "$net Mbit/s"
printf '| %-52s | %-22s |\n' "iperf3 TCP loopback inside $A" "$lo Mbit/s"
printf '| %-52s | %-22s |\n' "sockperf ping-pong TCP $A <-> $B, avg / p99" "$tcp_avg / $tcp_p99 us"
printf '| %-52s | %-22s |\n' "sockperf ping-pong UDP $A <-> $B, avg / p99" "$udp_avg / $udp_p99 us"
printf '| %-52s | %-22s |\n' "memcpy 64 KiB buffers, one vCPU of $A" "$mu MiB/s"
printf '| %-52s | %-22s |\n' "memcpy 64 KiB buffers, one vCPU of Dom0" "$m0 MiB/s"
echo
echo "sockperf latencies are one-way (half the round trip), in microseconds."
[ "$mode" = TCG ] && echo "Under TCG the emulated CPU is the bottleneck everywhere: compare ratios (to loopback, to memcpy) only."
} | tee "$out"
[ "$net" != ERR ] && [ "$lo" != ERR ] && [ -n "$mu" ]
