#!/bin/bash
# Lab test: resource limits (issue 8.3).  Runs in Dom0 (test/lab.sh run
# test/lab-tests/suite.sh ..., LAB_SUITE).
#
# What a peer can make domu1 spend is bounded by domu1's own parameters:
# pool_rings * ring_kb per peer (granted once, when the channel opens) and
# max_peers channels.  Connections take rings from the fixed pools and never
# allocate grants or mappings of their own.  So:
#   1. domu2 holds 400 connections to domu1 at once (more than the pool has
#      rings): every one carries its data intact, those beyond the pool stay
#      on TCP and are counted, and domu1's grants, mappings and event
#      channels never move from their idle values (sampled every 0.2 s).
#   2. domu2 opens and closes connections in a loop (10 x 200, or
#      LAB_LIMITS_ROUNDS x 200), each verified: afterwards
#      no connection is left, grants/mappings/event channels are back at
#      baseline, and domu1's slab has not grown by more than 8 MiB.
#   2b. sockets given back to TCP, then closed, are let go within seconds
#      with nobody reading /proc/xenvmc (which lets them go too): 200
#      connections domu2 -> domu1 held and accelerated (one 4 KiB ring
#      each), domu1 set to tcp=0 (each given back, listed in /proc), then
#      closed; domu1's TCP slab (active objects) falls back by more than half
#   3. domu1 reloaded with max_peers=1: one channel (domu2 or domu3), the
#      other peer waits with a reason and its connections go over TCP
#      (verified, not accelerated); when the first peer unloads, the waiting
#      one gets the channel and accelerates.
#   4. max_peers=0 is refused at load with a message that names it.
pass=0; fail=0
ok()  { echo "PASS: $*"; pass=$((pass + 1)); }
bad() { echo "FAIL: $*"; fail=$((fail + 1)); }
check() { local what=$1; shift; if "$@"; then ok "$what"; else bad "$what"; return 1; fi; }
is() { eval "$*"; }
x() { lab-exec -n -t 900 "$@"; }
stat_of() { local v; v=$(x "$1" "awk -v k=$2 '\$1 == k {print \$2}' /proc/xenvmc/stats"); echo "${v:-0}"; }
wait_until() {
	local end=$(( $(date +%s) + $1 )); shift
	until "$@"; do [ "$(date +%s)" -ge "$end" ] && return 1; sleep 0.5; done
}
peer_state() { x "$1" "awk -v d=$(xl domid "$2") '\$1 == d {print \$3}' /proc/xenvmc/peers"; }
chan_up() { [ "$(peer_state "$1" "$2")" = up ]; }
pools_up() { [ "$(x "$1" "awk -v d=$(xl domid "$2") '\$1 == d {print \$12 \$13}' /proc/xenvmc/channels")" = 11 ]; }
resources() { echo "$(stat_of domu1 grants_in_use) $(stat_of domu1 mapped_pages) $(stat_of domu1 event_channels)"; }
slab_kb() { x domu1 "awk '\$1 == \"Slab:\" {print \$2}' /proc/meminfo"; }
A_IP=10.99.0.11
PORT=7301

# xfer_from DOMU ARGS...: xfer client in DOMU against domu1's server; true on OK
xfer_from() {
	local d=$1; shift
	xout=$(x "$d" "ulimit -n 8192; /tmp/xfer $*" 2>&1)
	echo "$xout" | grep -E '^(RESULT|many:|stream:)' | sed "s/^/    $d: /"
	echo "$xout" | grep -q '^RESULT [a-z]* OK'
}
# the line /proc/xenvmc/peers of domu1 has for DOMU
peer_line() { x domu1 cat /proc/xenvmc/peers | awk -v d="$(xl domid "$1")" '$1 == d'; }

for d in domu1 domu2 domu3; do
	lab-exec -t 60 $d 'cat > /tmp/xfer && chmod +x /tmp/xfer' < "$LAB_FILES/xfer"
done
check "xfer in place in domu1..3" is 'x domu1 "[ -s /tmp/xfer ]" && x domu2 "[ -s /tmp/xfer ]" && x domu3 "[ -s /tmp/xfer ]"'
lab-unload front > /dev/null
lab-load back > /dev/null
LAB_FRONT_PARAMS="tcp=1" lab-load front domu1 domu2 > /dev/null
check "channel domu1 <-> domu2 up" wait_until 60 is 'chan_up domu1 domu2 && chan_up domu2 domu1'
check "ring pools mapped both ways" wait_until 60 is 'pools_up domu1 domu2 && pools_up domu2 domu1'
x domu1 "ulimit -n 8192; (/tmp/xfer server $PORT > /tmp/xfer-server.log 2>&1 & echo \$! > /tmp/xfer-server.pid) > /dev/null 2>&1"
check "xfer server listening in domu1" wait_until 30 x domu1 "ss -ltn | grep -q ':$PORT '"
slots=$(x domu1 cat /sys/module/vmc_front/parameters/pool_rings); slots=$((${slots:-4} - 4))
base=$(resources)
slab0=$(slab_kb)
acc0=$(stat_of domu1 accelerated_total)
a=$(stat_of domu1 fallback_no_ring_slot); b=$(stat_of domu2 fallback_no_ring_slot); nos0=$((a + b))
echo "domu1 idle: grants_in_use mapped_pages event_channels = $base; Slab $slab0 kB; $slots TCP rings per pool"

# 1. many at once: the sampler keeps the distinct resource values it sees
x domu1 "(while :; do awk '\$1 ~ /^(grants_in_use|mapped_pages|event_channels)\$/ {printf \"%s \", \$2} END {print \"\"}' /proc/xenvmc/stats; sleep 0.2; done > /tmp/res.log & echo \$! > /tmp/res.pid) > /dev/null 2>&1"
check "400 connections from domu2 held at once, each verified" xfer_from domu2 many $A_IP $PORT 400 16
x domu1 'kill $(cat /tmp/res.pid)'
seen=$(x domu1 'cat /tmp/res.log' | sed 's/ *$//' | sort -u)
open_acc=$(echo "$xout" | sed -n 's/^many: accelerated.*: \([0-9]*\) of .*/\1/p')
acc1=$(stat_of domu1 accelerated_total)
a=$(stat_of domu1 fallback_no_ring_slot); b=$(stat_of domu2 fallback_no_ring_slot); nos1=$((a + b))
echo "  accelerated while all were open (domu2's /proc/xenvmc/connections): ${open_acc:-?}; accelerated_total in domu1: +$((acc1 - acc0)); fallback_no_ring_slot (domu1 + domu2): +$((nos1 - nos0))"
echo "  domu1 grants/mappings/event channels seen while they were open: $(echo "$seen" | tr '\n' ';')"
check "some were accelerated, no more at once than a pool has rings ($slots)" \
	is '[ "${open_acc:-0}" -ge 1 ] && [ "$open_acc" -le "$slots" ]'
check "those beyond the pools stayed on TCP, counted as fallback_no_ring_slot" \
	is '[ $((nos1 - nos0)) -ge 1 ]'
check "domu1's grants, mappings and event channels never moved from idle ($base)" \
	is '[ "$seen" = "$base" ]'

# 2. open/close in a loop
# A failed round prints what xfer said about each connection that failed.
tcpctr="TcpOutRsts TcpExtTCPTimeWaitOverflow TcpExtTCPAbortOnData TcpExtTCPAbortOnClose TcpExtTCPAbortOnMemory"
tcpctrs() { x "$1" "nstat -az $tcpctr | awk '/^Tcp/ {printf \"%s %s \", \$1, \$2}'"; }
echo "  domu1 TCP counters before: $(tcpctrs domu1)"
ok_rounds=0
rounds=${LAB_LIMITS_ROUNDS:-10}
for r in $(seq "$rounds"); do
	if xfer_from domu2 many $A_IP $PORT 200 4 > /dev/null; then
		ok_rounds=$((ok_rounds + 1))
	else
		echo "  round $r failed:"
		echo "$xout" | grep -v '^many: accelerated' | head -20 | sed 's/^/    /'
		x domu1 'tail -5 /tmp/xfer-server.log' | sed 's/^/    domu1: /'
		for d in domu1 domu2; do
			x $d 'dmesg | grep -E "xenvmc|TCP" | tail -5' | sed "s/^/    $d: /"
			echo "    $d: $(x $d "grep -E '^(fallback|resets)' /proc/xenvmc/stats | awk '\$2 != 0' | tr '\n' ' '")"
			echo "    $d: $(tcpctrs $d)"
		done
	fi
done
# domu1 closes first and keeps a TIME_WAIT socket for each (60 s); past
# tcp_max_tw_buckets (1024 in a DomU this size) the socket goes at once and
# the client's next ACK gets a RST, maybe before it read the ring.
echo "  domu1 TCP counters after: $(tcpctrs domu1)"
check "$rounds rounds of 200 connections opened and closed, each verified ($ok_rounds/$rounds)" \
	is '[ "$ok_rounds" = "$rounds" ]'
check "no connection left in domu1 and domu2" \
	wait_until 120 is '[ "$(stat_of domu1 connections)" = 0 ] && [ "$(stat_of domu2 connections)" = 0 ]'
check "domu1's grants, mappings and event channels back at idle" is '[ "$(resources)" = "$base" ]'
slab1=$(slab_kb)
echo "  domu1 Slab: $slab0 kB idle, $slab1 kB after $((400 + rounds * 200)) connections"
check "domu1's slab grew by less than 8 MiB" is '[ $((slab1 - slab0)) -lt 8192 ]'
acc2=$(stat_of domu1 accelerated_total)
check "the loop's connections were accelerated too" is '[ $((acc2 - acc1)) -ge 10 ]'

# 2b. given back, closed, let go
hn=${LAB_LIMITS_HIST:-200}
lab-exec -t 60 domu1 'cat > /tmp/hold.py' <<'PY'
import os, socket, sys, time
# hold.py server PORT N | client IP PORT N: N connections, a byte each way,
# "held"; the client closes them all once /tmp/hold.close exists, the
# server each one at its EOF, then "closed".
n = int(sys.argv[-1])
if sys.argv[1] == "server":
    ls = socket.socket(); ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    ls.bind(("0.0.0.0", int(sys.argv[2]))); ls.listen(n)
    cs = [ls.accept()[0] for _ in range(n)]
    for c in cs:
        c.recv(1); c.send(b"y")
else:
    cs = [socket.create_connection((sys.argv[2], int(sys.argv[3]))) for _ in range(n)]
    for c in cs:
        c.send(b"x"); c.recv(1)
print("held", len(cs), flush=True)
if sys.argv[1] == "server":
    for c in cs:
        c.recv(1); c.close()
else:
    while not os.path.exists("/tmp/hold.close"):
        time.sleep(0.1)
    for c in cs:
        c.close()
print("closed", flush=True)
PY
x domu1 'cat /tmp/hold.py' | lab-exec -t 60 domu2 'cat > /tmp/hold.py'
lab-unload front domu1 domu2 > /dev/null
LAB_FRONT_PARAMS="tcp=1 ring_kb=4 ring_max_kb=0 pool_rings=$((hn + 8))" lab-load front domu1 domu2 > /dev/null
check "2b: domu1 and domu2 reloaded with $((hn + 4)) one-page TCP rings each, pools mapped" \
	wait_until 60 is 'pools_up domu1 domu2 && pools_up domu2 domu1'
tcp_slab() { x domu1 "awk '\$1 == \"TCP\" {print \$2}' /proc/slabinfo"; }
x domu1 "rm -f /tmp/hold.close; (python3 /tmp/hold.py server 7302 $hn > /tmp/hold-s.log 2>&1 &)"
wait_until 30 x domu1 "ss -ltn | grep -q ':7302 '"
t0=$(tcp_slab)
x domu2 "rm -f /tmp/hold.close; (python3 /tmp/hold.py client $A_IP 7302 $hn > /tmp/hold-c.log 2>&1 &)"
wait_until 120 x domu1 "grep -q held /tmp/hold-s.log"
t1=$(tcp_slab)
nacc=$(x domu1 "grep -c ' accelerated ' /proc/xenvmc/connections")
check "2b: $hn connections held, $nacc accelerated in domu1" is '[ "$nacc" -ge $((hn * 3 / 4)) ]'
x domu1 'echo 0 > /sys/module/vmc_front/parameters/tcp'
check "2b: tcp=0 in domu1: all given back to TCP" \
	wait_until 60 is '[ "$(x domu1 "grep -c \" accelerated \" /proc/xenvmc/connections")" = 0 ]'
# From here until the slab is read, nothing reads domu1's /proc/xenvmc.
x domu2 'touch /tmp/hold.close'
check "2b: all closed" wait_until 60 x domu1 "grep -q closed /tmp/hold-s.log"
sleep 12
t2=$(tcp_slab)
echo "  domu1 TCP slab, active objects: $t0 before, $t1 held, $t2 closed 12 s later"
check "2b: the slab saw the $hn sockets (else the next check means nothing)" is '[ $((t1 - t0)) -ge $((hn * 3 / 4)) ]'
check "2b: closed given-back sockets let go with no /proc read" is '[ $((t2 - t0)) -lt $((hn / 2)) ]'
x domu1 "pkill -f '[h]old.py server'"; x domu2 "pkill -f '[h]old.py client'"	# if one hung
lab-unload front domu2 > /dev/null
LAB_FRONT_PARAMS="tcp=1" lab-load front domu2 > /dev/null

# 3. max_peers=1 in domu1, domu2 and domu3 both listed
x domu1 'kill $(cat /tmp/xfer-server.pid)'
lab-unload front domu1 > /dev/null
LAB_FRONT_PARAMS="tcp=1" lab-load front domu3 > /dev/null
LAB_FRONT_PARAMS="tcp=1 max_peers=1" lab-load front domu1 > /dev/null
x domu1 "ulimit -n 8192; (/tmp/xfer server $PORT > /tmp/xfer-server.log 2>&1 & echo \$! > /tmp/xfer-server.pid) > /dev/null 2>&1"
wait_until 30 x domu1 "ss -ltn | grep -q ':$PORT '"
check "max_peers=1: domu1 has one channel up (domu2 or domu3)" \
	wait_until 60 is 'chan_up domu1 domu2 || chan_up domu1 domu3'
sleep 5
st2=$(peer_state domu1 domu2) st3=$(peer_state domu1 domu3)
if [ "$st2" = up ]; then up=domu2 other=domu3; else up=domu3 other=domu2; fi
echo "  domu1's channels: domu2 $st2, domu3 $st3"
x domu1 'cat /proc/xenvmc/peers' | sed 's/^/    domu1 peers: /'
check "max_peers=1: stats say 1 channel open, 1 peer over the limit" \
	is '[ "$(stat_of domu1 channels_open)" = 1 ] && [ "$(stat_of domu1 peers_over_max_peers)" = 1 ]'
check "max_peers=1: $other is listed closed with the reason" is 'peer_line $other | grep -q "closed.*max_peers"'
acc0=$(stat_of domu1 accelerated_total)
check "max_peers=1: $other's stream to domu1 arrives intact (over TCP)" xfer_from "$other" stream $A_IP $PORT 8 5
check "max_peers=1: and was not accelerated" is '[ "$(stat_of domu1 accelerated_total)" = "$acc0" ]'
wait_until 60 is 'pools_up domu1 $up && pools_up $up domu1'
check "max_peers=1: $up's stream to domu1 is accelerated and intact" xfer_from "$up" stream $A_IP $PORT 8 6
check "max_peers=1: (accelerated_total grew)" is '[ "$(stat_of domu1 accelerated_total)" -gt "$acc0" ]'
lab-unload front "$up" > /dev/null
check "max_peers=1: $up unloaded, $other gets the channel" wait_until 90 is 'chan_up domu1 $other'
wait_until 60 is 'pools_up domu1 $other && pools_up $other domu1'
acc0=$(stat_of domu1 accelerated_total)
check "max_peers=1: $other's stream now accelerated and intact" xfer_from "$other" stream $A_IP $PORT 8 7
check "max_peers=1: (accelerated_total grew)" is '[ "$(stat_of domu1 accelerated_total)" -gt "$acc0" ]'
LAB_FRONT_PARAMS="tcp=1" lab-load front "$up" > /dev/null
check "max_peers=1: $up reloaded waits in turn (1 open, 1 over the limit)" \
	wait_until 60 is 'peer_line $up | grep -q "closed.*max_peers" && [ "$(stat_of domu1 channels_open)" = 1 ] && [ "$(stat_of domu1 peers_over_max_peers)" = 1 ]'
check "max_peers=1: $other's channel still up" chan_up domu1 "$other"
x domu1 'kill $(cat /tmp/xfer-server.pid)'

# 4. a bad value is refused with its name
lab-unload front > /dev/null
if LAB_FRONT_PARAMS="max_peers=0" lab-load front domu1 > /dev/null 2>&1; then
	bad "max_peers=0 refused at load"
else
	check "max_peers=0 refused at load, dmesg names it" is 'x domu1 "dmesg | tail -5" | grep -q "not loaded: max_peers=0"'
fi
lab-unload front > /dev/null

# (the lab also scans every domain's log for these at the end of the run)
for d in domu1 domu2 domu3; do
	check "no Oops/BUG/WARNING in $d" is '[ "$(x $d "dmesg | grep -cE \"Oops|BUG:|WARNING:\"")" = 0 ]'
done
if [ "$fail" != 0 ]; then
	for d in domu1 domu2 domu3; do
		echo "--- $d stats"; x $d cat /proc/xenvmc/stats 2>/dev/null | grep -v ' 0$'
		echo "--- $d dmesg"; x $d 'dmesg | grep -i -E "xenvmc|BUG|WARN|Oops" | tail -20'
	done
fi
echo "$pass passed, $fail failed"
[ "$fail" = 0 ]
