#!/bin/bash
# Lab test: the TCP fast path (vmc_front tcp=1).  Runs in Dom0:
#   test/lab.sh run test/lab-tests/tcp.sh
#
#   1. a 64 MiB checksummed stream domu1 -> domu2 is accelerated (the
#      connection is listed "accelerated" with the bytes on the ring) and
#      arrives intact; same domu2 -> domu1, and over IPv6
#   2. bytes sent over TCP before the cut, then the ring, arrive in order
#      (a client that writes right after connect)
#   2b. a port in exclude_ports stays on TCP, counted by reason
#   3. connections to dom0 are untouched
#   4. after every connection closed: no connection left, rings free
#   5. ring_max_kb=256 (the default, rings of up to 4 pool slots): a stream
#      each way with random write sizes arrives intact through them, and 24
#      connections at once all verify, more than 16 of them accelerated
#      (all-big rings would fit 8 in the pool: connections beyond half the
#      pool get one slot)
#   6. ring_max_kb=0 (one slot per ring): 24 connections at once all verify,
#      all 24 accelerated, none in a ring of more than one slot
pass=0; fail=0
ok()  { echo "PASS: $*"; pass=$((pass + 1)); }
bad() { echo "FAIL: $*"; fail=$((fail + 1)); }
check() { local what=$1; shift; if "$@"; then ok "$what"; else bad "$what"; fi; }
is() { eval "$*"; }
x() { lab-exec -n -t 300 "$@"; }
stat_of() { x "$1" "awk -v k=$2 '\$1 == k {print \$2}' /proc/xenvmc/stats"; }
wait_until() {
	local end=$(( $(date +%s) + $1 )); shift
	until "$@"; do [ "$(date +%s)" -ge "$end" ] && return 1; sleep 0.5; done
}
chan_up() { [ "$(x "$1" "awk -v d=$(xl domid "$2") '\$1 == d {print \$3}' /proc/xenvmc/peers")" = up ]; }
show() {
	for d in domu1 domu2; do
		echo "--- $d connections"; x $d cat /proc/xenvmc/connections
		echo "--- $d stats"; x $d cat /proc/xenvmc/stats
		echo "--- $d dmesg"; x $d 'dmesg | grep -i -E "xenvmc|BUG|WARN|Oops" | tail -20'
	done
}

# transfer FROM TO ADDR PORT MiB: checksummed stream, returns 0 when intact
transfer() {
	local from=$1 to=$2 addr=$3 port=$4 mib=$5 tx rx v=-4
	case $addr in *:*) v=-6 ;; esac
	x "$to" "rm -f /tmp/rx.md5; (nc $v -l $port | md5sum | cut -c1-32 > /tmp/rx.md5) > /dev/null 2>&1 &"
	wait_until 20 x "$to" "ss -ltn | grep -q ':$port '"
	tx=$(x "$from" "head -c ${mib}M /dev/urandom > /tmp/tx.bin && md5sum < /tmp/tx.bin | cut -c1-32")
	t0=$(date +%s.%N)
	x "$from" "nc -N $addr $port < /tmp/tx.bin" || return 1
	wait_until 60 x "$to" 'test -s /tmp/rx.md5'
	t1=$(date +%s.%N)
	rx=$(x "$to" 'cat /tmp/rx.md5')
	rate=$(echo "$t0 $t1 $mib" | awk '{ printf "%.0f", $3 * 8 * 1.048576 / ($2 - $1) }')
	echo "transfer $from -> $to ($addr:$port) ${mib} MiB: sent $tx received $rx (~$rate Mbit/s incl. ssh, TCG)"
	[ -n "$tx" ] && [ "$tx" = "$rx" ]
}

lab-unload front > /dev/null
LAB_FRONT_PARAMS="tcp=1" lab-load front > /dev/null
check "channels up (domu1 <-> domu2)" wait_until 30 is 'chan_up domu1 domu2 && chan_up domu2 domu1'
sleep 2		# pools exchanged after HELLO

acc0=$(stat_of domu1 accelerated_total)
# A watcher records the connection while it is open.
x domu1 "rm -f /tmp/conns; (for i in \$(seq 1 400); do grep -E ' accelerated ' /proc/xenvmc/connections >> /tmp/conns; sleep 0.05; done) > /dev/null 2>&1 &"
check "64 MiB domu1 -> domu2 (IPv4) intact" transfer domu1 domu2 domu2 6001 64
check "the connection was accelerated" is '[ "$(stat_of domu1 accelerated_total)" -gt "$acc0" ]'
echo "domu1 saw: $(x domu1 'sort -u /tmp/conns | tail -3')"
check "64 MiB domu2 -> domu1 (IPv4) intact" transfer domu2 domu1 domu1 6002 64
check "16 MiB domu1 -> domu2 (IPv6) intact" transfer domu1 domu2 "fd99::12" 6003 16
check "IPv6 connection accelerated too" is '[ "$(stat_of domu1 accelerated_total)" -ge $((acc0 + 3)) ]'

# 2. data written immediately after connect, both ways: a request/response
x domu2 "(for i in 1 2 3; do echo reply\$i; sleep 0.2; done | nc -l 6004 > /tmp/req.txt) > /dev/null 2>&1 &"
wait_until 20 x domu2 "ss -ltn | grep -q ':6004 '"
resp=$(x domu1 '(echo hello; sleep 2) | nc -N domu2 6004')
check "request/response: both directions in order (got: $(echo $resp))" \
	is '[ "$(echo $resp)" = "reply1 reply2 reply3" ] && [ "$(x domu2 cat /tmp/req.txt)" = hello ]'

# 2b. an excluded port stays on TCP (exclude_ports, set at run time), counted
ex0=$(stat_of domu1 fallback_excluded_port)
x domu1 'echo 6006 > /sys/module/vmc_front/parameters/exclude_ports'
check "excluded port 6006: 4 MiB intact" transfer domu1 domu2 domu2 6006 4
check "excluded port 6006: stayed on TCP, counted (fallback_excluded_port $ex0 -> $(stat_of domu1 fallback_excluded_port))" \
	is '[ "$(stat_of domu1 fallback_excluded_port)" -gt "${ex0:-0}" ]'
x domu1 'echo 0 > /sys/module/vmc_front/parameters/exclude_ports'

# 3. dom0 is no peer: untouched
before=$(stat_of domu1 accelerated_total)
x domu1 "(nc -l 6005 > /dev/null) > /dev/null 2>&1 &"
wait_until 20 x domu1 "ss -ltn | grep -q ':6005 '"
head -c 1M /dev/zero | nc -N domu1 6005
check "connection from dom0 not accelerated" is '[ "$(stat_of domu1 accelerated_total)" = "$before" ]'

# 4. everything closed: nothing left
check "no connection left in domu1 and domu2" \
	wait_until 20 is '[ "$(stat_of domu1 connections)" = 0 ] && [ "$(stat_of domu2 connections)" = 0 ]'

# many PORT: 24 connections at once, 4 MiB each way, to the xfer server on
# domu2's PORT; sets $out (xfer's output) and $acc (how many domu1 accelerated)
many() {
	local acc0

	acc0=$(stat_of domu1 accelerated_total)
	out=$(x domu1 "ulimit -n 4096; /tmp/xfer many $b_ip $1 24 4096" 2>&1)
	echo "$out" | grep -E 'RESULT|verified|accelerated' | sed 's/^/    /'
	acc=$(( $(stat_of domu1 accelerated_total) - acc0 ))
}

# 5. bigger rings for the first connections (ring_max_kb, the default made explicit)
lab-unload front domu1 domu2 > /dev/null
LAB_FRONT_PARAMS="tcp=1 ring_max_kb=256" lab-load front domu1 domu2 > /dev/null
check "ring_max_kb=256: channels up" wait_until 30 is 'chan_up domu1 domu2 && chan_up domu2 domu1'
sleep 2
for d in domu1 domu2; do lab-exec -t 60 $d 'cat > /tmp/xfer && chmod +x /tmp/xfer' < "$LAB_FILES/xfer"; done
x domu2 "ulimit -n 4096; (/tmp/xfer server 6020 > /tmp/xfer-big.log 2>&1 & echo \$! > /tmp/xfer-big.pid) > /dev/null 2>&1"
wait_until 20 x domu2 "ss -ltn | grep -q ':6020 '"
b_ip=$(getent ahostsv4 domu2 | awk 'NR == 1 {print $1}')	# xfer takes numeric addresses
big1=$(stat_of domu1 rings_over_one_slot_total); big2=$(stat_of domu2 rings_over_one_slot_total)
out=$(x domu1 "/tmp/xfer stream $b_ip 6020 64 5" 2>&1)
echo "$out" | sed 's/^/    /'
check "ring_max_kb=256: 64 MiB each way at once, random sizes, verified both ends" \
	is 'echo "$out" | grep -q "^RESULT stream OK"'
check "ring_max_kb=256: both sides wrote into rings of more than one slot (domu1 ${big1:-?} -> $(stat_of domu1 rings_over_one_slot_total), domu2 ${big2:-?} -> $(stat_of domu2 rings_over_one_slot_total))" \
	is '[ "$(stat_of domu1 rings_over_one_slot_total)" -gt "${big1:-0}" ] && [ "$(stat_of domu2 rings_over_one_slot_total)" -gt "${big2:-0}" ]'
many 6020
check "ring_max_kb=256: 24 connections at once (4 MiB each way) all verified" is 'echo "$out" | grep -q "^RESULT many OK"'
check "ring_max_kb=256: $acc of the 24 accelerated, more than the 8 that rings of 4 slots alone would fit" \
	is '[ "$acc" -gt 16 ]'
x domu2 'kill $(cat /tmp/xfer-big.pid) 2>/dev/null'
check "ring_max_kb=256: no connection left" \
	wait_until 20 is '[ "$(stat_of domu1 connections)" = 0 ] && [ "$(stat_of domu2 connections)" = 0 ]'

# 6. bigger rings off: one slot each, so all 24 fit in the 32 TCP slots
lab-unload front domu1 domu2 > /dev/null
LAB_FRONT_PARAMS="tcp=1 ring_max_kb=0" lab-load front domu1 domu2 > /dev/null
check "ring_max_kb=0: channels up" wait_until 30 is 'chan_up domu1 domu2 && chan_up domu2 domu1'
sleep 2
x domu2 "ulimit -n 4096; (/tmp/xfer server 6021 > /tmp/xfer-one.log 2>&1 & echo \$! > /tmp/xfer-one.pid) > /dev/null 2>&1"
wait_until 20 x domu2 "ss -ltn | grep -q ':6021 '"
many 6021
check "ring_max_kb=0: 24 connections at once all verified" is 'echo "$out" | grep -q "^RESULT many OK"'
check "ring_max_kb=0: $acc of the 24 accelerated, in rings of one slot (rings over one slot: domu1 $(stat_of domu1 rings_over_one_slot_total), domu2 $(stat_of domu2 rings_over_one_slot_total))" \
	is '[ "$acc" = 24 ] && [ "$(stat_of domu1 rings_over_one_slot_total)" = 0 ] && [ "$(stat_of domu2 rings_over_one_slot_total)" = 0 ]'
x domu2 'kill $(cat /tmp/xfer-one.pid) 2>/dev/null'
check "ring_max_kb=0: no connection left" \
	wait_until 20 is '[ "$(stat_of domu1 connections)" = 0 ] && [ "$(stat_of domu2 connections)" = 0 ]'
check "no Oops/BUG/WARNING in the DomUs" \
	is '! x domu1 "dmesg | grep -E \"Oops|BUG:|WARNING:\"" && ! x domu2 "dmesg | grep -E \"Oops|BUG:|WARNING:\""'
[ "$fail" = 0 ] || show
echo "$pass passed, $fail failed"
[ "$fail" = 0 ]
