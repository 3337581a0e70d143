#!/bin/bash
# The XenVMC benchmark (not a test), run in Dom0 by `test/lab.sh bench` (`make bench`). One boot,
# vmc_front loaded in the DomUs; three columns:
#
#   netfront   domu1 -> domu2, tcp=0 (udp=0): netfront/netback/bridge
#   xenvmc     domu1 -> domu2, tcp=1 (udp=1 when the module has a UDP fast path): shared-memory rings
#   loopback   client and server inside domu1 (127.0.0.1)
#
# The fast path is switched with /sys/module/vmc_front/parameters/{tcp,udp}; it acts on NEW
# connections, and every run opens its own (iperf3, sockperf and crr clients start per run).
# Each figure LAB_BENCH_RUNS times per column (default 3), LAB_BENCH_SECS seconds each (default 5),
# columns round-robin: iperf3 TCP stream with -l 64 B .. 64 KiB (powers of 4) and 128 KiB (iperf3's default), TCP request/response
# 1 B (crr rr: a sockperf message carries its own header, so it cannot be 1 byte) and 1 KiB (sockperf
# ping-pong --tcp -m 1024), the 1 B request/response again with net.core.busy_read=LAB_BENCH_BUSY_READ
# us (default 100; 0 skips it) in both DomUs, TCP connect/request/response/close rate (crr crr), UDP stream (iperf3 -u
# -b 0) and UDP request/response (sockperf ping-pong -m 64; in the xenvmc column only if
# /proc/xenvmc/stats shows a udp counter). Plus memcpy bandwidth of one DomU vCPU (start, middle,
# end) and the kernel's own copy bandwidth there (memcpy_bw kread/kwrite), `xl list` CPU seconds
# of every domain around each stream run, domu1's accelerated_total / udp_tx_datagrams / fallback
# counters around every run (proof that xenvmc runs were accelerated and netfront runs were not), and /proc/xenvmc/stats during one accelerated stream (ring/grant memory).
# Also the stream's two kernel copies at once (memcpy_bw kwrite in domu1 while kread in domu2): the
# ceiling of one copy per byte per side in this lab.
#
# Everything raw goes to $LAB_ARTIFACTS/raw/; test/lab/report.py turns it into the table, the SVG and
# the ratio lines on the host. The integrity canary is paused during measurements, checked around.
set -o pipefail
T=${LAB_BENCH_SECS:-5}
N=${LAB_BENCH_RUNS:-3}
SIZES=${LAB_BENCH_SIZES:-"64 256 1024 4096 16384 65536 131072"}	# 128 KiB: iperf3's default
COLUMNS=${LAB_BENCH_COLUMNS:-"netfront xenvmc loopback"}
BUSY=${LAB_BENCH_BUSY_READ:-100}	# us; 0: no busy-polling row
A=domu1 B=domu2
A_IP=$(getent ahostsv4 $A | awk 'NR == 1 {print $1}'); A_IP=${A_IP:-10.99.0.11}
B_IP=$(getent ahostsv4 $B | awk 'NR == 1 {print $1}'); B_IP=${B_IP:-10.99.0.12}
RAW=$LAB_ARTIFACTS/raw
mkdir -p "$RAW"
LIMIT=$(( (T + 30) * N + 60 ))
x() { lab-exec -n -t "$LIMIT" "$@"; }
note() { echo "bench: $(date +%T) $*"; }
t_start=$(date +%s)

# ---------------------------------------------------------------- setup
# LAB_BENCH_DEMO=1: run the `make demo` script first in this boot (checks it, saves a boot)
if [ "${LAB_BENCH_DEMO:-0}" = 1 ] && [ -f "$LAB_FILES/demo.sh" ]; then
    d0=$(date +%s); bash "$LAB_FILES/demo.sh"; note "demo.sh: exit $?, $(( $(date +%s) - d0 )) s"
fi
{
    echo "date $(date -u +%Y-%m-%dT%H:%M:%SZ)"
    echo "mode ${LAB_MODE:-tcg}"
    echo "xen $(xl info | awk -F': ' '/^xen_version/ {print $2}')"
    echo "dom0_kernel $(uname -r)"
    echo "domu1_kernel $(x $A uname -r)"
    echo "domu2_kernel $(x $B uname -r)"
    echo "domu_types $(cat /run/lab/type-$A 2>/dev/null)/$(cat /run/lab/type-$B 2>/dev/null)"
    echo "domu_vcpus ${LAB_DOMU_VCPUS:-1}"
    echo "secs $T"
    echo "runs $N"
    echo "sizes $SIZES"
    echo "columns $COLUMNS"
    echo "busy_read $BUSY"
} > "$RAW/meta.txt"

# LAB_BENCH_FRONT_PARAMS (e.g. "ring_kb=256"): vmc_front reloaded with them in both DomUs; the
# report names them next to the date.
if [ -n "${LAB_BENCH_FRONT_PARAMS:-}" ]; then
    note "vmc_front reloaded in $A and $B with $LAB_BENCH_FRONT_PARAMS"
    lab-unload front $A $B > /dev/null 2>&1
    LAB_FRONT_PARAMS="tcp=0 $LAB_BENCH_FRONT_PARAMS" lab-load front $A $B || note "cannot load vmc_front with $LAB_BENCH_FRONT_PARAMS"
    echo "front_params $LAB_BENCH_FRONT_PARAMS" >> "$RAW/meta.txt"
fi
for d in $A $B; do
    if ! x $d "grep -q '^vmc_front ' /proc/modules"; then
        note "vmc_front not loaded in $d: loading it (tcp=0)"
        LAB_FRONT_PARAMS="tcp=0" lab-load front $d
    fi
    x $d 'echo 0 > /sys/module/vmc_front/parameters/tcp' 2>/dev/null
    for f in crr memcpy_bw; do
        lab-exec -t 60 $d "cat > /tmp/$f && chmod +x /tmp/$f" < /lab/files/$f || note "cannot copy $f into $d"
    done
done
{ for p in ring_kb pool_rings; do echo "$p $(x $A cat /sys/module/vmc_front/parameters/$p 2>/dev/null)"; done; } >> "$RAW/meta.txt"

# LAB_BENCH_PIN (default 1): domu1's vCPU on physical CPU 0, domu2's on CPU 1 (xl vcpu-pin), for
# every column. The copy-limit targets assume it (sender and receiver copy in parallel, each on its
# own vCPU), and the lab has only 2 physical CPUs: unpinned, Xen's scheduler ran both DomUs on one
# CPU for part of some runs, which halved XenVMC's stream in those runs and not in the others
# (13-20 MiB/s pinned together against 45-91 pinned apart, iperf3 -l 128 KiB, 2026-11-27).
# Dom0's vCPUs stay unpinned, so netback (the netfront column) may run on either CPU.
PIN=${LAB_BENCH_PIN:-1}
if [ "$PIN" = 1 ] && [ "$(xl info | awk -F': ' '/^nr_cpus/ {print $2}')" -ge 2 ] 2>/dev/null; then
    xl vcpu-pin $A all 0 && xl vcpu-pin $B all 1 && echo "pin $A=0 $B=1" >> "$RAW/meta.txt" ||
        note "xl vcpu-pin failed: DomUs not pinned"
else
    echo "pin none" >> "$RAW/meta.txt"
fi
xl vcpu-list > "$RAW/vcpu-list.txt" 2>&1

# The channel domu1 <-> domu2 must be up (and its ring pools mapped) before the xenvmc column.
chan_up() { [ "$(x "$1" "awk -v d=$(xl domid "$2") '\$1 == d {print \$3}' /proc/xenvmc/peers" 2>/dev/null)" = up ]; }
for i in $(seq 1 30); do chan_up $A $B && chan_up $B $A && break; sleep 1; done
sleep 2
for d in $A $B; do x $d 'cat /proc/xenvmc/peers' > "$RAW/peers-$d.txt" 2>&1; done

lab-canary pass big > /dev/null || note "canary FAILED before the benchmark"
# Every DomU's canary pauses, not only domu1's and domu2's: domu3's passes (CPU work every 30 s)
# took 2.6-4.3 CPU seconds of some 5 s runs on the lab's 2 CPUs (2026-11-27).
for d in ${LAB_DOMUS:-$A $B}; do x $d 'lab-canary pass >/dev/null && lab-canary pause' || note "canary FAILED in $d"; done
lab-canary pause

# ---------------------------------------------------------------- helpers
# Columns are measured round-robin (run 1 of every column, then run 2, ...), so a slower or busier
# moment of the shared host hits every column alike. The fast path is switched only between the
# netfront and xenvmc runs (loopback never goes through XenVMC): rounds alternate the order
# netfront loopback xenvmc / xenvmc loopback netfront, one switch per round.
HAVE_UDP=no
x $A 'test -w /sys/module/vmc_front/parameters/udp && grep -q "^udp" /proc/xenvmc/stats' && HAVE_UDP=yes
echo "xenvmc_udp $HAVE_UDP" >> "$RAW/meta.txt"
CUR=""
mode() {	# mode COLUMN: tcp (and udp) switches of both DomUs for that column
    local v=0
    case $1 in loopback) return 0 ;; xenvmc) v=1 ;; esac
    [ "$CUR" = $v ] && return 0
    local cmd="echo $v > /sys/module/vmc_front/parameters/tcp"
    [ $HAVE_UDP = yes ] && cmd="$cmd; echo $v > /sys/module/vmc_front/parameters/udp"
    x $A "$cmd" & x $B "$cmd" & wait
    CUR=$v
}
stats() {	# stats TAG: /proc/xenvmc/stats of both DomUs
    local d
    for d in $A $B; do x $d 'cat /proc/xenvmc/stats' > "$RAW/stats-$1-$d.txt" 2>/dev/null; done
}
srv_of() { [ "$1" = loopback ] && echo $A || echo $B; }
dst_of() { [ "$1" = loopback ] && echo 127.0.0.1 || echo $B_IP; }
port_of() { case $1 in netfront) echo 5210 ;; xenvmc) echo 5310 ;; loopback) echo 5410 ;; esac; }
order() {	# order ROUND: the columns in this round's order
    local c out=""
    for c in netfront loopback xenvmc; do [[ " $COLUMNS " = *" $c "* ]] && out="$out $c"; done
    [ $(( $1 % 2 )) = 0 ] && out=$(echo $out | tr ' ' '\n' | tac | tr '\n' ' ')
    echo $out
}
# one FILE CMD: one run in domu1, appended to FILE: the accelerated_total / udp_tx_datagrams /
# busy_poll_hits / fallback counters of domu1 before (@@S0) and after (@@S1), and the events it took
# and sent over all its channels (columns events, notifies of /proc/xenvmc/channels); the output
# between @@RUN and @@RC.
one() {
    local s="grep -E '^(accelerated_total|udp_tx_datagrams|busy_poll_hits|fallback_)' /proc/xenvmc/stats 2>/dev/null | tr '\n' ' '"
    s="$s; awk 'NR > 1 {e += \$16; n += \$17} END {print \"events_in\", e + 0, \"events_out\", n + 0}' /proc/xenvmc/channels 2>/dev/null"
    x $A "echo @@S0 \$($s); echo @@RUN; timeout -k 5 $((T + 30)) $2 2>&1; echo @@RC \$?; echo @@S1 \$($s)" >> "$1"
}
start_servers() {	# start_servers HOST PORTBASE: iperf3, sockperf TCP, sockperf UDP, crr
    local h=$1 p=$2
    x $h "iperf3 -s -D -p $p --pidfile /tmp/bench-iperf3-$p.pid
          (sockperf sr --tcp -i 0.0.0.0 -p $((p + 1)) > /dev/null 2>&1 & echo \$! >> /tmp/bench-srv.pids)
          (sockperf sr -i 0.0.0.0 -p $((p + 2)) > /dev/null 2>&1 & echo \$! >> /tmp/bench-srv.pids)
          /tmp/crr server $((p + 3)) -d >> /tmp/bench-srv.pids"
}
stop_servers() {
    x $1 'kill $(cat /tmp/bench-iperf3-*.pid /tmp/bench-srv.pids 2>/dev/null) 2>/dev/null; rm -f /tmp/bench-srv.pids /tmp/bench-iperf3-*.pid'
}
memcpy_run() {	# also the kernel's own copies (pread/pwrite of a memfd): what XenVMC's copies cost
    x $A "/tmp/memcpy_bw 3 65536" >> "$RAW/memcpy-$A.txt" 2>&1
    x $A "/tmp/memcpy_bw 3 65536 kread" >> "$RAW/kread-$A.txt" 2>&1
    x $A "/tmp/memcpy_bw 3 65536 kwrite" >> "$RAW/kwrite-$A.txt" 2>&1
    # one system call per 16 KiB, as iperf3 -l 16384 makes: the most a one-copy-per-side stream
    # of 16 KiB writes could reach here, before any socket work
    x $A "/tmp/memcpy_bw 3 16384 kread" >> "$RAW/kread16k-$A.txt" 2>&1
    x $A "/tmp/memcpy_bw 3 16384 kwrite" >> "$RAW/kwrite16k-$A.txt" 2>&1
    /lab/files/memcpy_bw 3 65536 >> "$RAW/memcpy-dom0.txt" 2>&1
    # the stream's two copies at once, each on its own vCPU: copy_from_user in domu1 (as a sender)
    # while copy_to_user in domu2 (as a receiver), with nothing to wait for; the slower one is the
    # ceiling of any design with one copy per byte per side here (two copies at once run slower
    # than one alone in this lab: the emulator's CPUs share the host's)
    x $A "/tmp/memcpy_bw 3 131072 kwrite" >> "$RAW/kwrite-par-$A.txt" 2>&1 &
    x $B "/tmp/memcpy_bw 3 131072 kread" >> "$RAW/kread-par-$B.txt" 2>&1
    wait $!
}
# measure NAME FILE 'CMD' (@DST@, @P0@..@P4@ filled in per column): N rounds over the columns,
# appended to $RAW/FILE-COLUMN.txt
measure() {
    local name=$1 f=$2 cmd=$3 r c run
    note "$name, $N x ${T}s per column"
    for r in $(seq 1 $N); do
        for c in $(order $r); do
            [ "$f" = udp ] || [ "$f" = udprr ] && [ "$c" = xenvmc ] && [ $HAVE_UDP = no ] && continue
            mode $c
            run=${cmd//@DST@/$(dst_of $c)}; run=${run//@P0@/$(port_of $c)}
            run=${run//@P1@/$(( $(port_of $c) + 1 ))}; run=${run//@P2@/$(( $(port_of $c) + 2 ))}
            run=${run//@P3@/$(( $(port_of $c) + 3 ))}; run=${run//@P4@/$(( $(port_of $c) + 4 ))}
            [ "${f%%-*}" = stream ] && xl list > "$RAW/cpu-$c-$f-$r-a.txt"
            one "$RAW/$f-$c.txt" "$run"
            [ "${f%%-*}" = stream ] && xl list > "$RAW/cpu-$c-$f-$r-b.txt"
        done
    done
}

# ---------------------------------------------------------------- the runs
note "columns: $COLUMNS (round-robin); XenVMC UDP fast path available: $HAVE_UDP"
[ $HAVE_UDP = no ] && echo "udp n/a" > "$RAW/udp-xenvmc.txt"
for c in $COLUMNS; do x $(srv_of $c) 'rm -f /tmp/bench-srv.pids'; done
mode netfront
for c in $COLUMNS; do start_servers $(srv_of $c) $(port_of $c); done
sleep 2
stats start
memcpy_run
for size in $SIZES; do
    measure "iperf3 TCP stream -l $size" "stream-$size" "iperf3 -c @DST@ -p @P0@ -t $T -l $size -J"
done
memcpy_run
if [[ " $COLUMNS " = *" xenvmc "* ]]; then
    note "ring/grant memory during one accelerated stream"
    mode xenvmc
    x $A "iperf3 -c $B_IP -p 5310 -t $((T + 4)) -l 16384 > /dev/null 2>&1 &
          sleep 5; cat /proc/xenvmc/stats; echo '@@CONNECTIONS'; cat /proc/xenvmc/connections; sleep $T" \
        > "$RAW/during-xenvmc.txt" 2>&1
    sleep 2
fi
measure "TCP request/response 1 B (crr rr)" rr1 "/tmp/crr rr @DST@ @P3@ $T 1"
if [ "$BUSY" != 0 ]; then
    # busy_read is read when a socket is made: set it, then start a crr server whose listener (and
    # so every accepted socket) has it; the client's socket is made per run.
    for d in $A $B; do x $d "sysctl -qw net.core.busy_read=$BUSY"; done
    for c in $COLUMNS; do
        x $(srv_of $c) "/tmp/crr server $(( $(port_of $c) + 4 )) -d >> /tmp/bench-srv.pids"
    done
    sleep 1
    measure "TCP request/response 1 B, net.core.busy_read=$BUSY (crr rr)" rr1busy "/tmp/crr rr @DST@ @P4@ $T 1"
    for d in $A $B; do x $d "sysctl -qw net.core.busy_read=0"; done
fi
measure "TCP request/response 1 KiB (sockperf ping-pong --tcp -m 1024)" rr1k "sockperf pp --tcp -i @DST@ -p @P1@ -t $T -m 1024"
measure "TCP connect/request/response/close rate (crr crr)" crr "/tmp/crr crr @DST@ @P3@ $T 1"
measure "UDP stream (iperf3 -u -b 0)" udp "iperf3 -c @DST@ -p @P0@ -u -b 0 -t $T -J"
measure "UDP stream 16 KiB datagrams (iperf3 -u -b 0 -l 16384)" udp16 "iperf3 -c @DST@ -p @P0@ -u -b 0 -l 16384 -t $T -J"
measure "UDP request/response 64 B (sockperf ping-pong -m 64)" udprr "sockperf pp -i @DST@ -p @P2@ -t $T -m 64"
[ $HAVE_UDP = no ] && note "XenVMC UDP: n/a (no udp counter in /proc/xenvmc/stats: UDP fast path not implemented)"
memcpy_run
mode netfront
for c in $COLUMNS; do stop_servers $(srv_of $c); done
stats end
for d in $A $B; do x $d 'cat /proc/xenvmc/connections' > "$RAW/connections-end-$d.txt" 2>/dev/null; done

lab-canary resume
for d in ${LAB_DOMUS:-$A $B}; do x $d 'lab-canary resume; lab-canary pass >/dev/null' || note "canary FAILED in $d after the benchmark"; done
lab-canary pass big > /dev/null || note "canary FAILED in dom0 after the benchmark"
echo "bench_secs $(( $(date +%s) - t_start ))" >> "$RAW/meta.txt"
note "done in $(( $(date +%s) - t_start )) s; raw data in artifacts/raw (report: test/lab/report.py)"
# a measurement that produced nothing at all fails the run
grep -q '"sum_received"' "$RAW"/stream-*.txt 2>/dev/null
