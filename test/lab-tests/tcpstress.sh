#!/bin/bash
# Lab test: integrity and stress over the TCP fast path.  Runs in Dom0:
#   test/lab.sh run test/lab-tests/suite.sh test/lab-tests/*.sh   (LAB_SUITE="tcpstress.sh")
#
# test/tools/xfer (server in domu2, clients in domu1), fast path on (tcp=1):
#   1. 1 GiB each way at once on one connection, random write sizes 1 B..1 MiB
#      and random read sizes, content verified at both ends (+ a short plain
#      TCP stream for the throughput ratio)
#   2. 1000 concurrent connections, 4 KiB each way, each verified; those
#      beyond the ring pool stay on TCP (counted, expected)
#   3. slow reader: 4 streams, one not read for 20 s: the others keep going
#   4. ping-pong: 8 connections of 1..100-byte request/responses for
#      LAB_STRESS_PP_SECS (default 180) s; no connection without progress for 30 s
#   5. nothing left afterwards, no Oops/BUG/WARNING
pass=0; fail=0
ok()  { echo "PASS: $*"; pass=$((pass + 1)); }
bad() { echo "FAIL: $*"; fail=$((fail + 1)); }
check() { local what=$1; shift; if "$@"; then ok "$what"; else bad "$what"; fi; }
is() { eval "$*"; }
x() { lab-exec -n -t 900 "$@"; }
stat_of() { x "$1" "awk -v k=$2 '\$1 == k {print \$2}' /proc/xenvmc/stats"; }
wait_until() {
	local end=$(( $(date +%s) + $1 )); shift
	until "$@"; do [ "$(date +%s)" -ge "$end" ] && return 1; sleep 0.5; done
}
chan_up() { [ "$(x "$1" "awk -v d=$(xl domid "$2") '\$1 == d {print \$3}' /proc/xenvmc/peers")" = up ]; }
fallbacks() { x "$1" "grep -E '^(fallback|resets)' /proc/xenvmc/stats | awk '\$2 != 0' | tr '\n' ' '"; }
PORT=7201
SRV=10.99.0.12
PP_SECS=${LAB_STRESS_PP_SECS:-180}

# xfer_run LABEL ARGS...: runs xfer in domu1, shows its output, true on RESULT ... OK
xfer_run() {
	local label=$1 out t0 acc0 acc1; shift
	acc0=$(stat_of domu1 accelerated_total)
	t0=$(date +%s)
	out=$(x domu1 "ulimit -n 8192; /tmp/xfer $*" 2>&1)
	acc1=$(stat_of domu1 accelerated_total)
	echo "$out" | sed 's/^/    /'
	echo "    ($label: xfer $*: $(( $(date +%s) - t0 )) s; accelerated_total in domu1 +$((acc1 - acc0)); non-zero fallback/reset counters: $(fallbacks domu1))"
	last_acc=$((acc1 - acc0))
	echo "$out" | grep -q '^RESULT [a-z]* OK'
}

for d in domu1 domu2; do
	lab-exec -t 60 $d 'cat > /tmp/xfer && chmod +x /tmp/xfer' < "$LAB_FILES/xfer"
done
x domu2 "ulimit -n 8192; (/tmp/xfer server $PORT > /tmp/xfer-server.log 2>&1 & echo \$! > /tmp/xfer-server.pid) > /dev/null 2>&1"
check "xfer server listening in domu2" wait_until 30 x domu2 "ss -ltn | grep -q ':$PORT '"

# 1. streams: the plain-TCP reference with vmc_front loaded tcp=0 (the
# default; information only, so with LAB_STRESS_INFO=1: about 40 s under TCG),
# then reloaded with tcp=1 (no run-time switch: tcpsem.sh checks it)
lab-canary pause > /dev/null 2>&1
lab-unload front > /dev/null 2>&1
if [ "${LAB_STRESS_INFO:-0}" = 1 ]; then
	lab-load front > /dev/null
	xfer_run "plain TCP" stream $SRV $PORT 128 1
	echo "reference: 128 MiB each way over plain netfront TCP (above)"
	lab-unload front > /dev/null
fi
LAB_FRONT_PARAMS="tcp=1" lab-load front > /dev/null
check "channels up (domu1 <-> domu2)" wait_until 60 is 'chan_up domu1 domu2 && chan_up domu2 domu1'
sleep 2		# pools exchanged after HELLO
check "warm-up: 64 MiB each way over XenVMC verified" xfer_run "warm-up" stream $SRV $PORT 64 2
check "1 GiB each way at once, random sizes, verified both ends" xfer_run "1 GiB" stream $SRV $PORT 1024 3
check "the 1 GiB connection was accelerated" is '[ "$last_acc" -ge 1 ]'
lab-canary resume > /dev/null 2>&1

# 2. 1000 connections: plain TCP first (the run-time switch acts on new
# connections), so a limit of the DomUs' TCP stacks is told apart from ours;
# the kernels' own abort counters are shown after each
tcpabort() { x "$1" "nstat 2>/dev/null | awk '/TcpExt(TCPAbortOn|ListenOverflows|ListenDrops|TCPMemoryPressures)/ && \$2 != 0 {printf \"%s %s; \", \$1, \$2}'"; }
x domu1 'echo 0 > /sys/module/vmc_front/parameters/tcp'; x domu2 'echo 0 > /sys/module/vmc_front/parameters/tcp'
x domu1 'nstat -n' > /dev/null; x domu2 'nstat -n' > /dev/null
# 4 KiB each way: a 256 MiB DomU's TCP memory (tcp_mem, printed) is about 12-19 MiB. With
# 1000 x 32 KiB, 87 connections that had stayed on TCP were reset (lab run suite-mixed, domu2
# on 6.12); the suspect, TCP resetting orphans when out of memory, is not confirmed: in run
# sem-prof (all 6.1) the plain-TCP 32 KiB round verified 1000 of 1000 (memory pressure, no
# abort).  Both 32 KiB rounds, plain and XenVMC, stay information only until that is explained
# (LAB_STRESS_INFO=1 runs them: about 5 min under TCG, which make check cannot spare).
echo "    tcp_mem (pages) domu1: $(x domu1 'cat /proc/sys/net/ipv4/tcp_mem'); domu2: $(x domu2 'cat /proc/sys/net/ipv4/tcp_mem')"
if [ "${LAB_STRESS_INFO:-0}" = 1 ]; then
	xfer_run "1000 x 32 KiB, plain TCP (information only)" many $SRV $PORT 1000 32 | grep -E 'RESULT|verified' | tail -2
	echo "    plain TCP 32 KiB: TCP abort/overflow counters: domu1: $(tcpabort domu1) domu2: $(tcpabort domu2)"
	wait_until 120 is '[ "$(stat_of domu1 connections)" = 0 ] && [ "$(stat_of domu2 connections)" = 0 ]'
	x domu1 'nstat -n' > /dev/null; x domu2 'nstat -n' > /dev/null
fi
xfer_run "1000 connections, plain TCP" many $SRV $PORT 1000 4 && plain_ok=yes || plain_ok=no
echo "    plain TCP: TCP abort/overflow counters: domu1: $(tcpabort domu1) domu2: $(tcpabort domu2)"
x domu1 'echo 1 > /sys/module/vmc_front/parameters/tcp'; x domu2 'echo 1 > /sys/module/vmc_front/parameters/tcp'
check "plain TCP: connections drained" \
	wait_until 120 is '[ "$(stat_of domu1 connections)" = 0 ] && [ "$(stat_of domu2 connections)" = 0 ]'
x domu1 'nstat -n' > /dev/null; x domu2 'nstat -n' > /dev/null
check "1000 concurrent connections, each verified (plain TCP: $plain_ok)" xfer_run "1000 connections" many $SRV $PORT 1000 4
echo "    XenVMC: TCP abort/overflow counters: domu1: $(tcpabort domu1) domu2: $(tcpabort domu2)"
acc_4k=$last_acc
if [ "${LAB_STRESS_INFO:-0}" = 1 ]; then
	wait_until 120 is '[ "$(stat_of domu1 connections)" = 0 ] && [ "$(stat_of domu2 connections)" = 0 ]'
	x domu1 'nstat -n' > /dev/null; x domu2 'nstat -n' > /dev/null
	xfer_run "1000 x 32 KiB, XenVMC (information only)" many $SRV $PORT 1000 32 | grep -E 'RESULT|verified|reset' | tail -6
	echo "    XenVMC 32 KiB: TCP abort/overflow counters: domu1: $(tcpabort domu1) domu2: $(tcpabort domu2); reset counters: domu1: $(fallbacks domu1) domu2: $(fallbacks domu2)"
fi
echo "1000 connections: $acc_4k accelerated (accelerated_total), the rest on TCP (pool_rings=$(x domu1 cat /sys/module/vmc_front/parameters/pool_rings) per peer and direction)"
check "some of the 1000 connections were accelerated" is '[ "$acc_4k" -ge 1 ]'
check "connections drained after the 1000 (domu1, domu2)" \
	wait_until 120 is '[ "$(stat_of domu1 connections)" = 0 ] && [ "$(stat_of domu2 connections)" = 0 ]'

# 3. slow reader
check "slow reader: the other connections keep going" xfer_run "slow reader" slow $SRV $PORT 4 60 20
check "the slow-reader connections were accelerated" is '[ "$last_acc" -ge 4 ]'

# 4. ping-pong
check "ping-pong ${PP_SECS} s, 8 connections, no stall > 30 s" xfer_run "ping-pong" pingpong $SRV $PORT 8 "$PP_SECS" 30
check "the ping-pong connections were accelerated" is '[ "$last_acc" -ge 8 ]'

# 5. the end
check "xfer server still running (no crash)" x domu2 'kill -0 $(cat /tmp/xfer-server.pid)'
x domu2 'kill $(cat /tmp/xfer-server.pid); cat /tmp/xfer-server.log' | sed 's/^/    server: /'
check "no connection left in domu1 and domu2" \
	wait_until 120 is '[ "$(stat_of domu1 connections)" = 0 ] && [ "$(stat_of domu2 connections)" = 0 ]'
check "no Oops/BUG/WARNING in the DomUs" \
	is '! x domu1 "dmesg | grep -E \"Oops|BUG:|WARNING:\"" && ! x domu2 "dmesg | grep -E \"Oops|BUG:|WARNING:\""'
if [ "$fail" != 0 ]; then
	for d in domu1 domu2; do
		echo "--- $d stats"; x $d cat /proc/xenvmc/stats | grep -v ' 0$'
		echo "--- $d connections (first 20)"; x $d 'head -20 /proc/xenvmc/connections'
		echo "--- $d dmesg"; x $d 'dmesg | grep -i -E "xenvmc|BUG|WARN|Oops" | tail -30'
	done
fi
echo "$pass passed, $fail failed"
[ "$fail" = 0 ]
