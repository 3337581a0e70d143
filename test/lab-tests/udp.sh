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
#   5. what the receiving stack sees: tcpdump on domu2 shows each datagram
#      with an Ethernet header (domu1's vif MAC to domu2's, as through the
#      bridge), IPv4 and IPv6; and a datagram that domu2 forwards (tc's
#      stateless nat turns its destination into an address in a network
#      namespace of domu2, behind a veth with its checksum offload off)
#      leaves with a correct UDP checksum, though domu1's stack left it to
#      its device: tcpdump -vv checks it on the veth's way out, after the
#      stack completed it (netfront's own IPv4 offload cannot be turned off)
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

# 5. the receiving stack's view: link header, and forwarding's checksum
check "domu1 leaves UDP checksums to its device (else 5 checks nothing)" \
	x domu1 "ethtool -k eth0 | grep -q '^tx-checksumming: on'"
lab-exec -t 60 domu1 'cat > /tmp/send.py' <<'PY'
import socket, sys, time
for a in sys.argv[2:]:
    s = socket.socket(socket.AF_INET6 if ":" in a else socket.AF_INET, socket.SOCK_DGRAM)
    for i in range(5):
        s.sendto(b"%c" % (65 + i) * 100, (a, int(sys.argv[1])))
        time.sleep(0.05)
PY
# tcpdump_start DOMU FILE ARGS...: capture in the background, return once it listens
tcpdump_start() {
	local d=$1 f=$2; shift 2
	x $d "rm -f $f $f.err; (timeout 120 tcpdump -n -l -i eth0 $* > $f 2> $f.err &)"
	wait_until 60 x $d "grep -q 'listening on' $f.err"
}
rx0=$(stat_of domu2 udp_rx_datagrams)
tcpdump_start domu2 /tmp/td-eth -e -c 10 "'udp port 7703'"
x domu1 "python3 /tmp/send.py 7703 10.99.0.12 fd99::12"
wait_until 30 is '[ "$(x domu2 "wc -l < /tmp/td-eth")" -ge 10 ]'
x domu2 "cat /tmp/td-eth" > /tmp/td-eth
sed 's/^/  tcpdump -e (domu2): /' /tmp/td-eth | head -2
check "received by ring: domu2 took $(( $(stat_of domu2 udp_rx_datagrams) - rx0 )) datagrams from the ring (10 sent)" \
	is '[ $(( $(stat_of domu2 udp_rx_datagrams) - rx0 )) -ge 10 ]'
mac1=$(x domu1 cat /sys/class/net/eth0/address); mac2=$(x domu2 cat /sys/class/net/eth0/address)
eth4='^[0-9:.]+ '$mac1' > '$mac2', ethertype IPv4 \(0x0800\), length 142: 10\.99\.0\.11\.[0-9]+ > 10\.99\.0\.12\.7703: UDP, length 100$'
eth6='^[0-9:.]+ '$mac1' > '$mac2', ethertype IPv6 \(0x86dd\), length 162: fd99::11\.[0-9]+ > fd99::12\.7703: UDP, length 100$'
check "tcpdump sees an Ethernet header $mac1 > $mac2 on each ring datagram, IPv4" is '[ "$(grep -cE "$eth4" /tmp/td-eth)" = 5 ]'
check "tcpdump sees an Ethernet header $mac1 > $mac2 on each ring datagram, IPv6" is '[ "$(grep -cE "$eth6" /tmp/td-eth)" = 5 ]'
# what an earlier, interrupted run may have left; the settings changed, to restore
x domu2 "tc qdisc del dev eth0 ingress; ip link del vmcv0; ip netns del vmct" > /dev/null 2>&1
read -r fwd0 red0 < <(x domu2 "sysctl -n net.ipv4.ip_forward net.ipv4.conf.all.send_redirects" | tr '\n' ' ')
x domu2 "ip netns add vmct && ip link add vmcv0 type veth peer name vmcv1 netns vmct &&
	ip addr add 10.98.0.1/24 dev vmcv0 && ip link set vmcv0 up && ethtool -K vmcv0 tx off > /dev/null &&
	ip -n vmct addr add 10.98.0.2/24 dev vmcv1 && ip -n vmct link set vmcv1 up &&
	ip -n vmct route add default via 10.98.0.1 &&
	sysctl -qw net.ipv4.ip_forward=1 net.ipv4.conf.all.send_redirects=0 &&
	tc qdisc add dev eth0 ingress && tc filter add dev eth0 parent ffff: protocol ip prio 1 u32 \
		match ip dst 10.99.0.12/32 match ip dport 7704 0xffff action nat ingress 10.99.0.12/32 10.98.0.2" ||
	bad "domu2: forwarding set-up failed"
rx0=$(stat_of domu2 udp_rx_datagrams)
x domu2 "rm -f /tmp/td-fwd /tmp/td-fwd.err; (timeout 120 tcpdump -n -l -vv -i vmcv0 -Q out -c 5 'udp and dst port 7704' > /tmp/td-fwd 2> /tmp/td-fwd.err &)"
wait_until 60 x domu2 "grep -q 'listening on' /tmp/td-fwd.err"
x domu1 "python3 /tmp/send.py 7704 10.99.0.12"
wait_until 30 is '[ "$(x domu2 "grep -c 10.98.0.2.7704: /tmp/td-fwd")" -ge 5 ]'
x domu2 "cat /tmp/td-fwd" > /tmp/td-fwd
grep -F '> 10.98.0.2.7704:' /tmp/td-fwd | sed 's/^ */  tcpdump -vv (domu2, vmcv0 out): /' | head -2
check "forwarded: domu2 took the 5 datagrams from the ring" \
	is '[ $(( $(stat_of domu2 udp_rx_datagrams) - rx0 )) -ge 5 ]'
check "forwarded: all 5 left domu2 with a correct UDP checksum" \
	is '[ "$(grep -cF "> 10.98.0.2.7704: [udp sum ok] UDP, length 100" /tmp/td-fwd)" = 5 ]'
x domu2 "tc qdisc del dev eth0 ingress; ip link del vmcv0; ip netns del vmct;
	sysctl -qw net.ipv4.ip_forward=${fwd0:-0} net.ipv4.conf.all.send_redirects=${red0:-1}" || true

check "no Oops/BUG/WARNING in the DomUs" \
	is '! x domu1 "dmesg | grep -E \"Oops|BUG:|WARNING:\"" && ! x domu2 "dmesg | grep -E \"Oops|BUG:|WARNING:\""'
# The servers (a later test copies udpcheck over the running one: "Text file busy").
x domu2 "pkill -f 'udpcheck [e]cho 7700'; pkill -f '[s]ockperf sr -i 10.99.0.12 -p 11112'" || true
echo "domu1: $(x domu1 "grep ^udp_ /proc/xenvmc/stats" | tr '\n' ' ')"
echo "domu2: $(x domu2 "grep ^udp_ /proc/xenvmc/stats" | tr '\n' ' ')"
[ "$fail" = 0 ] || { x domu1 'dmesg | grep xenvmc | tail -20'; x domu2 'dmesg | grep xenvmc | tail -20'; }
echo "$pass passed, $fail failed"
[ "$fail" = 0 ]
