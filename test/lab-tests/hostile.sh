#!/bin/bash
# Lab test: a hostile peer.  domu3 runs the test-only misbehaving frontend
# (make VMC_EVIL=1, built by test/kbuild.sh into build/<release>/evil/) and
# attacks domu1 on command (/proc/xenvmc/evil, see vmcf_evil_write()); domu2
# is a bystander talking to domu1 throughout.  Runs in Dom0 (test/lab.sh run
# test/lab-tests/suite.sh ..., LAB_SUITE).
#
# For each attack, domu1 must notice it and say so (a prefixed dmesg line
# naming domu3, a counter), reset or fall back only what is domu3's, keep its
# channel to domu2 up and accelerate a new connection to domu2 with every
# byte intact; at the end domu1's grants, mappings and event channels are
# back to what they were before domu3 loaded anything, and the bystander's
# request/response loop, which ran through every attack, lost nothing.  The
# lab's log scan fails the run on any Oops, BUG or WARNING in any domain.
#
#   index    wild producer indices in domu3's connection and datagram rings
#   length   a datagram record longer than any datagram
#   version  a control message of an unknown protocol version
#   size     a control message whose length does not match its type
#   storm    100000 events with nothing behind them
#   deaf     domu3 stops reading what domu1 sends it: domu1's UDP sender
#            must not stay blocked behind the full datagram ring (waiting
#            datagrams are dropped and counted), domu1's offer is never
#            answered, and its connection must go on over TCP
#   gref     domu3 announces pool grant refs it never granted
#   loopback a well-formed datagram from domu3's own address to [::1]: refused
#            (the channel closes), never delivered to domu1's loopback socket
#   late     domu3 publishes a new channel offer while domu1 streams to and
#            from it, and answers domu1's REVERT 5 s late: domu1 closes its
#            channel to domu3 without the answer and must reset the
#            connection (domu3 may yet resend on TCP), never save domu3's
#            ring: no byte corrupted or repeated either way
#
# Not an attack, but a race only the test build can widen (evil_lock_delay_ms):
#   unaccepted  domu3's listener closes while domu3, moving its connections
#            back to TCP (tcp=0), holds the lock of a child of it that nobody
#            accepted yet: no kernel WARNING, and domu1's client is reset as
#            over TCP.  A build that owns the child (lock_sock) fails here:
#            the close runs during the hold and WARNs.  Ours holds the bh
#            lock, and with the lab's one vCPU per DomU the close can only
#            run once we let go; on more vCPUs it would wait for that lock
#   cut      domu3 takes domu1's offer 3 s late (evil_offer_delay_ms), so its
#            server's first 8 KiB go on TCP before the cut and the next 64
#            KiB through the ring: domu1's one read of 256 KiB, once both
#            are there, returns all 72 KiB in order, as TCP returns all it
#            has (before, it stopped at the cut: a short read, which an
#            edge-triggered reader may take for "nothing left")
#   cutwait  likewise, but domu1 drops domu3's TCP segments (tc) until the
#            ring's 64 KiB are there: domu1's reader, blocked in recv(),
#            must sleep until TCP resends the first 8 KiB, then get all 72
#            KiB in order (before, it spun on the ring's bytes: seconds of
#            CPU)
pass=0; fail=0
ok()  { echo "PASS: $*"; pass=$((pass + 1)); }
bad() { echo "FAIL: $*"; fail=$((fail + 1)); }
check() { local what=$1; shift; if "$@"; then ok "$what"; else bad "$what"; return 1; fi; }
is() { eval "$*"; }
x() { lab-exec -n -t 300 "$@"; }
stat_of() { x "$1" "awk -v k=$2 '\$1 == k {print \$2}' /proc/xenvmc/stats"; }
wait_until() {
	local end=$(( $(date +%s) + $1 )); shift
	until "$@"; do [ "$(date +%s)" -ge "$end" ] && return 1; sleep 0.5; done
}
chan_up() { [ "$(x "$1" "awk -v d=$(xl domid "$2") '\$1 == d {print \$3}' /proc/xenvmc/peers")" = up ]; }
pools_up() { [ "$(x "$1" "awk -v d=$(xl domid "$2") '\$1 == d {print \$12 \$13}' /proc/xenvmc/channels")" = 11 ]; }
# accelerated connections of DOMU whose peer is DOMU2
naccel_with() { x "$1" "awk -v d=$(xl domid "$2") '\$4 == d && \$5 == \"accelerated\"' /proc/xenvmc/connections | wc -l"; }
resources() { echo "$(stat_of domu1 grants_in_use) $(stat_of domu1 mapped_pages) $(stat_of domu1 event_channels)"; }
A_IP=10.99.0.11 B_IP=10.99.0.12 C_IP=10.99.0.13
STALL="VMCSTREAM_STALL=${LAB_STALL_SECS:-60}"

for d in domu1 domu2 domu3; do
	lab-exec -t 60 $d 'cat > /tmp/vmcstream && chmod +x /tmp/vmcstream' < "$LAB_FILES/vmcstream"
done
lab-exec -t 60 domu1 'cat > /tmp/udpcheck && chmod +x /tmp/udpcheck' < "$LAB_FILES/udpcheck"
kv3=$(x domu3 uname -r)
evil_ko=/lab/modules/$kv3/evil/vmc_front.ko
if [ ! -f "$evil_ko" ]; then
	bad "no test build $evil_ko in Dom0 (test/kbuild.sh builds it)"
	echo "$pass passed, $fail failed"; exit 1
fi
lab-exec -t 60 domu3 "mkdir -p ${evil_ko%/*} && cat > $evil_ko" < "$evil_ko"
lab-unload front > /dev/null
lab-load back > /dev/null
LAB_FRONT_PARAMS="tcp=1 udp=1" lab-load front domu1 domu2 > /dev/null
check "channel domu1 <-> domu2 up" wait_until 60 is 'chan_up domu1 domu2 && chan_up domu2 domu1'
wait_until 60 is 'pools_up domu1 domu2 && pools_up domu2 domu1' || echo "  (ring pools not both mapped after 60 s)"
sleep 2
base=$(resources)
echo "  domu1 resources with domu2 only (grants maps evtchns): $base"

# The bystander: domu1 <-> domu2 request/response through every attack.
x domu2 "rm -f /tmp/bys.*; ($STALL /tmp/vmcstream server 7001 > /tmp/bys.rs 2>&1 &)"
wait_until 20 x domu2 "ss -ltn | grep -q ':7001 '"
# It runs until every attack is over (SIGUSR1 below); the time is a bound.
x domu1 "rm -f /tmp/bys.*; ($STALL /tmp/vmcstream rr $B_IP 7001 ${LAB_HOSTILE_SECS:-1200} > /tmp/bys.rc 2>&1 &)"
bys_t0=$(date +%s)
check "bystander connection domu1 -> domu2 accelerated" wait_until 30 is '[ "$(naccel_with domu1 domu2)" -ge 1 ]'

# run SRV_DOMU CLI_DOMU IP PORT SECS NAME: a stream SRV <- CLI in the background
run() {
	x "$1" "rm -f /tmp/$6.s; ($STALL /tmp/vmcstream server $4 > /tmp/$6.s 2>&1 &)"
	wait_until 20 x "$1" "ss -ltn | grep -q ':$4 '"
	x "$2" "rm -f /tmp/$6.c; ($STALL /tmp/vmcstream stream $3 $4 $5 > /tmp/$6.c 2>&1 &)"
}
# intact SRV_DOMU CLI_DOMU NAME: both ends finished, errors 0, sent == received
intact() {
	local s c
	wait_until 200 is "x $1 'grep -q ^vmcstream: /tmp/$3.s' && x $2 'grep -q ^vmcstream: /tmp/$3.c'" || return 1
	s=$(x "$1" "tail -1 /tmp/$3.s"); c=$(x "$2" "tail -1 /tmp/$3.c")
	echo "  $3 server: $s"; echo "  $3 client: $c"
	[[ $s == *"errors 0 stalls 0"* && $c == *"errors 0 stalls 0"* ]] || return 1
	[ "$(echo "$s" | awk '{print $4}')" = "$(echo "$c" | awk '{print $6}')" ] &&
		[ "$(echo "$c" | awk '{print $4}')" = "$(echo "$s" | awk '{print $6}')" ]
}
# bystander NAME: domu1's channel to domu2 is up, and a new connection to
# domu2 is accelerated and intact
port=7100
bystander() {
	local acc0
	port=$((port + 1))
	check "$1: domu1's channel to domu2 still up" is 'chan_up domu1 domu2 && chan_up domu2 domu1'
	acc0=$(stat_of domu1 accelerated_total)
	run domu2 domu1 $B_IP $port 2 by$port
	check "$1: a new connection domu1 -> domu2 accelerated" \
		wait_until 20 is '[ "$(stat_of domu1 accelerated_total)" -gt "$acc0" ]'
	check "$1: ... and intact both ways" intact domu2 domu1 by$port
}
evil_load() {
	x domu3 "rmmod vmc_front 2>/dev/null; insmod $evil_ko tcp=1 udp=1 $*" ||
		{ bad "cannot load the test build in domu3"; return 1; }
	wait_until 60 is 'chan_up domu1 domu3 && chan_up domu3 domu1 && pools_up domu1 domu3 && pools_up domu3 domu1'
}
evil() { x domu3 "echo $1 $(xl domid domu1) > /proc/xenvmc/evil"; }
# said: domu1's last dmesg line about domu3
said() { x domu1 "dmesg | grep 'xenvmc-front: peer $(xl domid domu3): ' | tail -1"; }
# broke WHAT B0: domu1 closed its channel to domu3 (broken_channels past B0)
# and logged why
broke() {
	local before=$2	# 'is' evaluates the test in its own scope: not "$2"
	check "$1: domu1 closes its channel to domu3" \
		wait_until 30 is '[ "$(stat_of domu1 broken_channels)" -gt "$before" ]'
	echo "  domu1: $(said)"
}

# index: wild producer indices under an accelerated connection
check "index: channel domu1 <-> domu3 up (test build loaded)" evil_load
run domu1 domu3 $A_IP 7201 60 ix
check "index: a connection domu3 -> domu1 accelerated" wait_until 30 is '[ "$(naccel_with domu1 domu3)" -ge 1 ]'
r0=$(stat_of domu1 resets_total); b0=$(stat_of domu1 broken_channels)
evil index
check "index: domu1 resets the connection or closes the channel" \
	wait_until 30 is '[ "$(stat_of domu1 resets_total)" -gt "$r0" ] || [ "$(stat_of domu1 broken_channels)" -gt "$b0" ]'
echo "  domu1: $(x domu1 "dmesg | grep xenvmc-front | tail -2 | tr '\n' ' '")"
check "index: domu1 no longer accelerates anything with domu3" \
	wait_until 30 is '[ "$(naccel_with domu1 domu3)" = 0 ]'
x domu3 "pkill vmcstream" || true
x domu1 "pkill -f 'vmcstream server 7201'" || true
bystander index

for a in length version size; do
	check "$a: channel domu1 <-> domu3 up (test build reloaded)" evil_load
	b0=$(stat_of domu1 broken_channels)
	evil $a
	broke $a "$b0"
	bystander $a
done

# loopback: a well-formed datagram from domu3's own IPv6 address to [::1]:7460 must break the
# channel, and never reach a socket bound to loopback in domu1 (the network cannot reach one). A
# datagram domu1 sends itself afterwards shows the listener was there to receive it.
check "loopback: channel domu1 <-> domu3 up (test build reloaded)" evil_load
lab-exec -t 60 domu1 'cat > /tmp/lo6.py' <<'EOF'
import socket, sys
s = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
if sys.argv[1] == "send":
    s.sendto(b"CTRL", ("::1", 7460))
    sys.exit(0)
s.bind(("::1", 7460))
s.settimeout(60)
try:
    while True:
        print(s.recv(100), flush=True)
except socket.timeout:
    pass
EOF
x domu1 "rm -f /tmp/lo6.out; (python3 /tmp/lo6.py listen > /tmp/lo6.out 2>&1 &)"
check "loopback: domu1 listens on [::1]:7460" wait_until 10 x domu1 "ss -uln | grep -q '\[::1\]:7460'"
b0=$(stat_of domu1 broken_channels); u0=$(stat_of domu1 udp_bad_datagrams)
evil loopback
broke loopback "$b0"
check "loopback: counted as a bad datagram ($u0 -> $(stat_of domu1 udp_bad_datagrams))" \
	is '[ "$(stat_of domu1 udp_bad_datagrams)" -gt "$u0" ]'
x domu1 "python3 /tmp/lo6.py send"
check "loopback: the listener got domu1's own datagram" wait_until 10 x domu1 "grep -q CTRL /tmp/lo6.out"
check "loopback: nothing of domu3's reached [::1]:7460 ($(x domu1 'tr "\n" " " < /tmp/lo6.out'))" \
	x domu1 "! grep -q EVIL /tmp/lo6.out"
x domu1 "pkill -f 'lo6.py listen'" || true
bystander loopback

# storm: events alone are no protocol error; domu1 stays useful to all
check "storm: channel domu1 <-> domu3 up (test build reloaded)" evil_load
ev0=$(x domu1 "awk -v d=$(xl domid domu3) '\$1 == d {print \$NF}' /proc/xenvmc/channels")
evil storm
echo "  domu1 saw $(( $(x domu1 "awk -v d=$(xl domid domu3) '\$1 == d {print \$NF}' /proc/xenvmc/channels") - ev0 )) of 100000 events (the rest coalesced or throttled)"
check "storm: channel domu1 <-> domu3 still up" chan_up domu1 domu3
acc0=$(stat_of domu1 accelerated_total)
run domu1 domu3 $A_IP 7301 2 st
check "storm: domu1 still accelerates a connection from domu3" \
	wait_until 30 is '[ "$(stat_of domu1 accelerated_total)" -gt "$acc0" ]'
check "storm: ... intact both ways" intact domu1 domu3 st
bystander storm

# deaf: domu1's offer is never answered; its connection goes on over TCP
check "deaf: channel domu1 <-> domu3 up (test build reloaded)" evil_load
b0=$(stat_of domu1 broken_channels)
evil deaf
u0=$(stat_of domu1 udp_dropped_ring_full); t0=$(date +%s)
check "deaf: domu1 sends 5000 datagrams to domu3 (random sizes) without blocking for good" \
	x domu1 "timeout 200 /tmp/udpcheck blast $C_IP 7450 5000 > /dev/null 2>&1"
echo "  ... in $(( $(date +%s) - t0 )) s; dropped as ring full: $(( $(stat_of domu1 udp_dropped_ring_full) - u0 ))"
check "deaf: the datagrams domu3 made no room for were dropped and counted" \
	is '[ "$(stat_of domu1 udp_dropped_ring_full)" -gt "$u0" ]'
run domu3 domu1 $C_IP 7401 5 df
broke deaf "$b0"
check "deaf: the unanswered connection went on over TCP, intact both ways" intact domu3 domu1 df
echo "  domu1 control backlog to domu3 (bounded by 1024): $(x domu1 "awk -v d=$(xl domid domu3) '\$1 == d {print \$9}' /proc/xenvmc/channels")"
bystander deaf

# unaccepted: a listener closes while we hold the lock of its unaccepted child
check "unaccepted: channel domu1 <-> domu3 up (test build reloaded)" evil_load
x domu3 "rm -f /tmp/ua.go; nohup python3 -c '
import os, socket, time
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind((\"0.0.0.0\", 7470)); s.listen(8)
while not os.path.exists(\"/tmp/ua.go\"): time.sleep(0.05)
s.close()' > /dev/null 2>&1 &"
wait_until 30 x domu3 "ss -ltn | grep -q ':7470 '" || echo "  (domu3: nothing listening on 7470 after 30 s)"
x domu1 "rm -f /tmp/ua.out; nohup python3 -c '
import socket
c = socket.create_connection((\"$C_IP\", 7470)); c.sendall(b\"x\" * 1000); c.settimeout(60)
try: print(\"eof\" if c.recv(10) == b\"\" else \"data\")
except ConnectionResetError: print(\"reset\")
except socket.timeout: print(\"hang\")' > /tmp/ua.out 2>&1 &"
check "unaccepted: domu3's child of the listener accelerated before any accept()" \
	wait_until 30 is '[ "$(x domu3 "grep -c \":7470 .* accelerated \" /proc/xenvmc/connections")" -ge 1 ]'
w0=$(x domu3 "dmesg | grep -c 'WARNING:'")
x domu3 "echo 3000 > /sys/module/vmc_front/parameters/evil_lock_delay_ms; rm -f /tmp/ua.tcp0; (echo 0 > /sys/module/vmc_front/parameters/tcp; touch /tmp/ua.tcp0) > /dev/null 2>&1 &"
sleep 1
x domu3 "touch /tmp/ua.go"
check "unaccepted: domu3's move back to TCP (tcp=0) ends" wait_until 60 x domu3 'test -e /tmp/ua.tcp0'
echo "  domu3: $(x domu3 "dmesg | grep -E 'EVIL: holding|WARNING:' | tail -2 | tr '\n' ' '")"
check "unaccepted: no kernel WARNING in domu3 (it had $w0)" \
	is '[ "$(x domu3 "dmesg | grep -c WARNING:")" = "$w0" ]'
check "unaccepted: domu1's client was reset, as over TCP" \
	wait_until 60 x domu1 'grep -qx reset /tmp/ua.out'
echo "  domu1's client: $(x domu1 'cat /tmp/ua.out')"
check "unaccepted: nothing left of it on a ring in domu3" \
	is '[ "$(x domu3 "grep -c \":7470 .* \(accelerated\|reverting\|offered\|waiting\) \" /proc/xenvmc/connections")" = 0 ]'
x domu3 'echo 1 > /sys/module/vmc_front/parameters/tcp'

# late: domu1 closes its channel to domu3 before domu3 answers its REVERT
check "late: channel domu1 <-> domu3 up (test build reloaded)" evil_load
run domu3 domu1 $C_IP 7601 40 lt
check "late: a connection domu1 -> domu3 accelerated" wait_until 30 is '[ "$(naccel_with domu1 domu3)" -ge 1 ]'
sleep 3
r0=$(stat_of domu1 resets_total)
x domu3 "echo 5000 > /sys/module/vmc_front/parameters/evil_answer_delay_ms"
evil reoffer
check "late: both ends of the stream finished (intact or reset)" \
	wait_until 200 is "x domu3 'grep -q ^vmcstream: /tmp/lt.s' && x domu1 'grep -q ^vmcstream: /tmp/lt.c'"
echo "  lt server (domu3): $(x domu3 'grep -v STALL /tmp/lt.s | tail -2 | tr "\n" " "')"
echo "  lt client (domu1): $(x domu1 'grep -v STALL /tmp/lt.c | tail -2 | tr "\n" " "')"
echo "  domu1: $(x domu1 "dmesg | grep -E 'xenvmc-front: (connection to )?peer $(xl domid domu3)' | tail -2 | tr '\n' ' '")"
check "late: domu1 reset the connection (resets_total $r0 -> $(stat_of domu1 resets_total))" \
	is '[ "$(stat_of domu1 resets_total)" -gt "$r0" ]'
check "late: no byte corrupted or repeated either way" \
	is 'x domu3 "! grep -q BAD /tmp/lt.s" && x domu1 "! grep -q BAD /tmp/lt.c"'
check "late: domu1's channel to domu2 still up" is 'chan_up domu1 domu2 && chan_up domu2 domu1'

# cut: TCP's bytes before the cut and the ring's after it, in one read
check "cut: channel domu1 <-> domu3 up (test build reloaded)" evil_load
x domu3 "nohup python3 -c '
import socket, time
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind((\"0.0.0.0\", 7480)); s.listen(1)
c, _ = s.accept(); c.sendall(b\"a\" * 8192); time.sleep(6)
c.sendall(b\"b\" * 65536); time.sleep(30)' > /dev/null 2>&1 &"
wait_until 30 x domu3 "ss -ltn | grep -q ':7480 '" || echo "  (domu3: nothing listening on 7480 after 30 s)"
x domu3 "echo 3000 > /sys/module/vmc_front/parameters/evil_offer_delay_ms"
x domu1 "rm -f /tmp/cut.c; nohup python3 -c '
import socket, time
c = socket.create_connection((\"$C_IP\", 7480)); time.sleep(15)
d = c.recv(262144)
line = [l.split() for l in open(\"/proc/xenvmc/connections\") if \":7480 \" in l]
print(len(d), d == b\"a\" * 8192 + b\"b\" * 65536, *(line[0][4:7] if line else [\"none\"]))' > /tmp/cut.c 2>&1 &"
check "cut: domu3 took domu1's offer late" \
	wait_until 30 x domu3 "dmesg | grep -q 'EVIL: taking peer .* OFFER'"
wait_until 60 x domu1 'test -s /tmp/cut.c'
echo "  domu1's read: $(x domu1 'cat /tmp/cut.c') (bytes, content right, state, ring bytes out, in)"
check "cut: the first 8 KiB came on TCP, the next 64 through the ring" \
	is '[ "$(x domu1 "cut -d\" \" -f3,5 /tmp/cut.c")" = "accelerated 65536" ]'
check "cut: one read returned all 72 KiB, in order" \
	is '[ "$(x domu1 "cut -d\" \" -f1,2 /tmp/cut.c")" = "73728 True" ]'

# cutwait: the ring's bytes here, TCP's before the cut not yet: no spin
check "cutwait: channel domu1 <-> domu3 up (test build reloaded)" evil_load
x domu3 "nohup python3 -c '
import socket, time
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind((\"0.0.0.0\", 7481)); s.listen(1)
c, _ = s.accept(); time.sleep(5); c.sendall(b\"a\" * 8192); time.sleep(6)
c.sendall(b\"b\" * 65536); time.sleep(60)' > /dev/null 2>&1 &"
wait_until 30 x domu3 "ss -ltn | grep -q ':7481 '" || echo "  (domu3: nothing listening on 7481 after 30 s)"
x domu3 "echo 8000 > /sys/module/vmc_front/parameters/evil_offer_delay_ms"
x domu1 "rm -f /tmp/cw.*; nohup python3 -c '
import socket, time
c = socket.create_connection((\"$C_IP\", 7481)); open(\"/tmp/cw.up\", \"w\").close()
t = time.process_time(); d = b\"\"
while len(d) < 73728:
    r = c.recv(262144)
    if not r: break
    d += r
cpu = time.process_time() - t
line = [l.split() for l in open(\"/proc/xenvmc/connections\") if \":7481 \" in l]
print(len(d), d == b\"a\" * 8192 + b\"b\" * 65536, *(line[0][4:7] if line else [\"none\"]), \"%.2f\" % cpu)' > /tmp/cw.out 2>&1 &"
wait_until 30 x domu1 'test -e /tmp/cw.up'
x domu1 'tc qdisc del dev eth0 clsact 2>/dev/null'
check "cutwait: domu1 drops domu3's segments from port 7481 (tc)" \
	x domu1 "tc qdisc add dev eth0 clsact && tc filter add dev eth0 ingress protocol ip prio 1 u32 match ip src $C_IP/32 match ip sport 7481 0xffff action drop"
sleep 14
cw_drop=$(x domu1 "tc -s filter show dev eth0 ingress | sed -n 's/.*Sent [0-9]* bytes \([0-9]*\) pkt.*/\1/p' | head -1")
x domu1 'tc qdisc del dev eth0 clsact'
check "cutwait: ... and it dropped some (${cw_drop:-no} packets) before the cut" is '[ "${cw_drop:-0}" -gt 0 ]'
wait_until 90 x domu1 'test -s /tmp/cw.out'
echo "  domu1's reader: $(x domu1 'cat /tmp/cw.out') (bytes, content right, state, ring bytes out, in, CPU s)"
check "cutwait: the first 8 KiB came on TCP, the next 64 through the ring" \
	is '[ "$(x domu1 "cut -d\" \" -f3,5 /tmp/cw.out")" = "accelerated 65536" ]'
check "cutwait: the reader got all 72 KiB, in order" \
	is '[ "$(x domu1 "cut -d\" \" -f1,2 /tmp/cw.out")" = "73728 True" ]'
cw_cpu=$(x domu1 "cut -d' ' -f6 /tmp/cw.out")
check "cutwait: the reader slept while TCP's bytes were owed (${cw_cpu:-?} CPU s, under 1.5)" \
	is 'awk -v c="$cw_cpu" "BEGIN { exit !(c != \"\" && c < 1.5) }"'
x domu1 'tc qdisc del dev eth0 clsact 2>/dev/null'
x domu3 'pkill -f "bind..\"0.0.0.0\", 748"' || true

# gref: refs never granted in domu3's pool announcement
x domu3 "rmmod vmc_front" || true
b0=$(stat_of domu1 broken_channels)
x domu3 "insmod $evil_ko tcp=1 udp=1 evil_gref=1" || bad "gref: cannot load the test build with evil_gref=1"
broke gref "$b0"
check "gref: domu1 never maps domu3's pool" is '! pools_up domu1 domu3'
run domu3 domu1 $C_IP 7501 3 gr
check "gref: a connection domu1 -> domu3 goes over TCP, intact both ways" intact domu3 domu1 gr
bystander gref

# the end: domu3 unloads; domu1 is back where it started
x domu3 "rmmod vmc_front" || bad "rmmod of the test build failed"
wait_until 30 is '! chan_up domu1 domu3' || true
check "domu1's resources back to where they were with domu2 only ($base)" \
	wait_until 30 is '[ "$(resources)" = "$base" ]'
echo "  domu1 resources now: $(resources)"
check "bystander: still running after the last attack ($(( $(date +%s) - bys_t0 )) s)" \
	x domu1 "pkill -USR1 -f 'vmcstream [r]r $B_IP 7001'"
wait_until 60 x domu1 'grep -q ^vmcstream: /tmp/bys.rc'
echo "  bystander client: $(x domu1 'tail -1 /tmp/bys.rc')"
check "bystander: its request/response loop through every attack lost nothing" \
	x domu1 "tail -1 /tmp/bys.rc | grep -q 'errors 0 stalls 0'"
echo "  domu1's counters: $(x domu1 "grep -E '^(broken_channels|bad_control_msgs|resets_total|udp_bad_datagrams|fallback_handshake_timeout) ' /proc/xenvmc/stats | tr '\n' ' '")"

echo "$pass passed, $fail failed"
[ "$fail" = 0 ]
