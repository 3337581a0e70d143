#!/bin/bash
# Lab test: the UDP fast path (vmc_front udp=1).  Runs in Dom0
# (LAB_SUITE=udp.sh test/lab.sh run test/lab-tests/suite.sh test/lab-tests/*.sh).
#
#   1. semantics, side by side: test/tools/udpcheck.c "sem" against an echo
#      server on domu2, IPv4 and IPv6, over netfront (udp=0) and through the
#      datagram ring (udp=1); each check's observed line must be identical,
#      and the second run must really have used the ring (counters)
#   2. integrity under overload: numbered, checksummed datagrams of random
#      size (up to 64 KiB) domu1 -> domu2 as fast as possible: none bad,
#      none duplicated (losses allowed and reported, as UDP)
#   3. broadcast, multicast and a non-peer (dom0) stay on the network
#   4. sockperf UDP ping-pong works through the ring
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
setudp() { x domu1 "echo $1 > /sys/module/vmc_front/parameters/udp"; x domu2 "echo $1 > /sys/module/vmc_front/parameters/udp"; }

for d in domu1 domu2; do
	lab-exec -t 60 $d 'cat > /tmp/udpcheck && chmod +x /tmp/udpcheck' < "$LAB_FILES/udpcheck"
done
lab-unload front > /dev/null
lab-load front > /dev/null
check "channels up (domu1 <-> domu2)" wait_until 60 is 'chan_up domu1 domu2 && chan_up domu2 domu1'
sleep 2
x domu2 "(/tmp/udpcheck echo 7700 > /dev/null 2>&1 &)"

# 1. semantics: netfront, then the ring
for addr in 10.99.0.12 fd99::12; do
	setudp 0
	tx0=$(stat_of domu1 udp_tx_datagrams)
	x domu1 "/tmp/udpcheck sem $addr 7700" > /tmp/sem.net
	check "sem $addr over netfront: nothing went through the ring" is '[ "$(stat_of domu1 udp_tx_datagrams)" = "$tx0" ]'
	setudp 1
	rx0=$(stat_of domu2 udp_rx_datagrams)
	x domu1 "/tmp/udpcheck sem $addr 7700" > /tmp/sem.ring
	tx1=$(stat_of domu1 udp_tx_datagrams); rx1=$(stat_of domu2 udp_rx_datagrams)
	check "sem $addr through the ring: domu1 sent $((tx1 - tx0)), domu2 received $((rx1 - rx0)) datagrams by ring" \
		is '[ $((tx1 - tx0)) -ge 15 ] && [ $((rx1 - rx0)) -ge 15 ]'
	while read -r name rest; do
		want=$(awk -v n="$name" '$1 == n {sub(/^[^ ]+ +/, ""); print}' /tmp/sem.net)
		check "sem $addr $name: same as netfront ($rest)" is '[ "$rest" = "$want" ] && [ -n "$want" ]'
	done < <(sed 's/  */ /g' /tmp/sem.ring)
	[ "$(wc -l < /tmp/sem.ring)" -ge 12 ] || bad "sem $addr: only $(wc -l < /tmp/sem.ring) checks ran"
	sed 's/^/  netfront: /' /tmp/sem.net | head -3
done

# 2. integrity under overload
setudp 1
n=${LAB_UDP_COUNT:-20000}
x domu2 "rm -f /tmp/sink.out; (/tmp/udpcheck sink 7701 300 > /tmp/sink.out 2>&1 &)"
sleep 1
tx0=$(stat_of domu1 udp_tx_datagrams); full0=$(stat_of domu1 udp_dropped_ring_full)
t0=$(date +%s.%N)
x domu1 "/tmp/udpcheck blast 10.99.0.12 7701 $n" > /dev/null
t1=$(date +%s.%N)
wait_until 60 x domu2 'grep -q ^udpcheck: /tmp/sink.out'
res=$(x domu2 'tail -1 /tmp/sink.out')
echo "  $res ($(echo "$t0 $t1 $n" | awk '{printf "%.0f datagrams/s", $3 / ($2 - $1)}') incl. ssh; ring-full drops $(( $(stat_of domu1 udp_dropped_ring_full) - full0 )))"
check "overload: every received datagram intact, none duplicated" x domu2 'tail -1 /tmp/sink.out | grep -q "bad 0 duplicate 0 lost"'
check "overload: went through the ring ($(( $(stat_of domu1 udp_tx_datagrams) - tx0 )) datagrams)" \
	is '[ $(( $(stat_of domu1 udp_tx_datagrams) - tx0 )) -ge $((n / 2)) ]'

# 3. broadcast, multicast, dom0: the network
tx0=$(stat_of domu1 udp_tx_datagrams)
lab-exec -t 60 domu1 'cat > /tmp/bc.py' <<'PY'
import socket
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.setsockopt(socket.SOL_SOCKET, socket.SO_BROADCAST, 1)
n = 0
for a in ("10.99.0.255", "255.255.255.255", "239.1.2.3", "10.99.0.1"):
    for i in range(5):
        try:
            s.sendto(b"x" * 100, (a, 7702))
            n += 1
        except OSError:
            pass
print("sent", n)
PY
echo "  broadcast/multicast/dom0: $(x domu1 'python3 /tmp/bc.py')"
check "broadcast, multicast and dom0 datagrams stayed on the network" is '[ "$(stat_of domu1 udp_tx_datagrams)" = "$tx0" ]'

# 4. sockperf UDP ping-pong
x domu2 "sockperf sr -i 10.99.0.12 -p 11112 --daemonize > /dev/null 2>&1"
sleep 1
tx0=$(stat_of domu1 udp_tx_datagrams)
lat=$(x domu1 "sockperf pp -i 10.99.0.12 -p 11112 -t 5 2>&1" | sed -n 's/.*avg-latency=\([0-9.]*\).*/\1/p' | tail -1)
check "sockperf UDP ping-pong through the ring (avg one-way ${lat:-?} us, TCG)" \
	is '[ -n "$lat" ] && [ $(( $(stat_of domu1 udp_tx_datagrams) - tx0 )) -ge 100 ]'

check "no Oops/BUG/WARNING in the DomUs" \
	is '! x domu1 "dmesg | grep -E \"Oops|BUG:|WARNING:\"" && ! x domu2 "dmesg | grep -E \"Oops|BUG:|WARNING:\""'
# The servers (a later test copies udpcheck over the running one: "Text file busy").
x domu2 "pkill -f 'udpcheck [e]cho 7700'; pkill -f '[s]ockperf sr -i 10.99.0.12 -p 11112'" || true
echo "domu1: $(x domu1 "grep ^udp_ /proc/xenvmc/stats" | tr '\n' ' ')"
echo "domu2: $(x domu2 "grep ^udp_ /proc/xenvmc/stats" | tr '\n' ' ')"
[ "$fail" = 0 ] || { x domu1 'dmesg | grep xenvmc | tail -20'; x domu2 'dmesg | grep xenvmc | tail -20'; }
echo "$pass passed, $fail failed"
[ "$fail" = 0 ]
