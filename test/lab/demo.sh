#!/bin/bash
# `make demo` (test/lab.sh demo): runs in Dom0 of the lab, modules already loaded (vmc_front with
# tcp=0). Shows Dom0's view of the DomUs, domu1 and domu2 discovering each other (/proc/xenvmc/peers),
# then one iperf3 TCP stream domu1 -> domu2 over netfront (tcp=0) and one through XenVMC (tcp=1,
# switched with /sys/module/vmc_front/parameters/tcp; it acts on new connections), and prints both
# figures and their ratio. LAB_DEMO_SECS: seconds per stream (default 5).
set -o pipefail
T=${LAB_DEMO_SECS:-5}
A=domu1 B=domu2
x() { lab-exec -n -t 120 "$@"; }
step() { echo "demo: $*"; }
py_iperf='import json,sys; d=json.load(sys.stdin); print("%.0f" % (d["end"]["sum_received"]["bits_per_second"] / 1e6))'
acc() { x $A "awk '\$1 == \"accelerated_total\" {print \$2}' /proc/xenvmc/stats" 2>/dev/null; }
set_tcp() { local d; for d in $A $B; do x $d "echo $1 > /sys/module/vmc_front/parameters/tcp"; done; }
chan_up() { [ "$(x "$1" "awk -v d=$(xl domid "$2") '\$1 == d {print \$3}' /proc/xenvmc/peers" 2>/dev/null)" = up ]; }

step "Dom0 /proc/xenvmc/domains (which DomUs are co-resident, who owns which address):"
sed 's/^/    /' /proc/xenvmc/domains
step "waiting for the $A <-> $B control channel"
for i in $(seq 1 30); do chan_up $A $B && chan_up $B $A && break; sleep 1; done
sleep 2	# ring pools are exchanged right after HELLO
for d in $A $B; do
    step "$d /proc/xenvmc/peers (domid gen channel addresses why):"
    x $d 'cat /proc/xenvmc/peers' | sed 's/^/    /'
done

x $B 'iperf3 -s -D -p 5201 --pidfile /tmp/demo-iperf3.pid'
sleep 1
step "iperf3 TCP $A -> $B, ${T} s, plain netfront (tcp=0) ..."
set_tcp 0
net=$(x $A "iperf3 -c $B -p 5201 -t $T -J" | python3 -c "$py_iperf") || net=""
step "iperf3 TCP $A -> $B, ${T} s, XenVMC (tcp=1) ..."
set_tcp 1
a0=$(acc)
vmc=$(x $A "iperf3 -c $B -p 5201 -t $T -J" | python3 -c "$py_iperf") || vmc=""
a1=$(acc)
set_tcp 0
x $B 'kill $(cat /tmp/demo-iperf3.pid) 2>/dev/null'
accel=no; [ -n "$a0" ] && [ -n "$a1" ] && [ "$a1" -gt "$a0" ] && accel=yes

echo
step "result (lab mode $(echo "${LAB_MODE:-tcg}" | tr a-z A-Z)$([ "${LAB_MODE:-tcg}" = tcg ] && echo ': emulated CPU, only the ratio means anything'))"
echo "demo: netfront  ${net:-ERR} Mbit/s"
if [ $accel = yes ]; then
    echo "demo: XenVMC    ${vmc:-ERR} Mbit/s (accelerated: accelerated_total in $A $a0 -> $a1)"
else
    echo "demo: XenVMC    ${vmc:-ERR} Mbit/s NOT ACCELERATED (accelerated_total in $A ${a0:-?} -> ${a1:-?})"
fi
if [ -n "$net" ] && [ -n "$vmc" ] && [ "$net" -gt 0 ]; then
    echo "demo: ratio XenVMC / netfront $(awk -v a="$vmc" -v b="$net" 'BEGIN {printf "%.2f", a / b}')"
fi
[ -n "$net" ] && [ -n "$vmc" ] && [ $accel = yes ]
