#!/bin/bash
# Lab test: socket semantics over the TCP fast path.  Runs in Dom0:
#   test/lab.sh run test/lab-tests/suite.sh test/lab-tests/*.sh   (LAB_SUITE="tcpsem.sh")
#
# test/tools/sockcheck runs ~20 socket-semantics checks over fresh connections
# (read/write, sendmsg/recvmsg, readv/writev, sendfile, splice, MSG_PEEK,
# MSG_WAITALL, MSG_DONTWAIT, O_NONBLOCK/EAGAIN, poll/select/epoll LT and ET,
# EPOLLRDHUP/EPOLLHUP, SO_RCVTIMEO/SO_SNDTIMEO, SO_RCVLOWAT, SIOCINQ/SIOCOUTQ,
# half-close, close with unread data (RST), close with data in flight, a
# peer whose socket is gone after a clean close (our ACK of its FIN answered
# with a RST: what it sent is still read, then EOF), EINTR and SA_RESTART,
# MSG_OOB) and prints what it observes.  Each pair of DomUs
# runs it twice: with the fast path off (vmc_front freshly loaded with tcp=0:
# plain netfront TCP, the reference) and on (reloaded with tcp=1); every
# check whose output differs is one FAIL showing both outputs.  At the end the
# run-time switch (echo 0/1 > /sys/module/vmc_front/parameters/tcp) is checked:
# the DomUs must stay responsive and a later round must complete.
#   rounds: server domu2 / client domu1 (IPv4), server domu1 / client domu2
#   (IPv4), server domu2 / client domu1 (IPv6), and b4-21: server domu1 /
#   client domu2 (IPv4) with net.core.busy_read=1000 us in both DomUs, both
#   rounds (TCP busy-polls netfront's queue, XenVMC spins on the ring before
#   it sleeps: the spin must not change what the checks see); LAB_TCPSEM_PAIRS
#   picks them (default "v4-12 v4-21 v6-12"; `make check` runs v4-12 b4-21)
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
set_tcp() { for d in domu1 domu2; do x $d "echo $1 > /sys/module/vmc_front/parameters/tcp" || return 1; done; }
answer() { x domu1 true && x domu2 true; }
# reload vmc_front in domu1..3 with tcp=N (the plain-TCP reference uses a fresh
# load with tcp=0: writing tcp=0 at run time is checked on its own, at the end)
load_tcp() {
	lab-unload front > /dev/null 2>&1
	LAB_FRONT_PARAMS="tcp=$1" lab-load front > /dev/null || return 1
	wait_until 60 is 'chan_up domu1 domu2 && chan_up domu2 domu1' || return 1
	sleep 2		# pools exchanged after HELLO
}
W=$(mktemp -d)
port=7100

# run NAME SERVER CLIENT ADDR: sockcheck over one pair; output in $W/NAME.{c,s}
run() {
	local name=$1 srv=$2 cli=$3 addr=$4 rc
	port=$((port + 1))
	x "$srv" "rm -f /tmp/sc.out /tmp/sc.rc; (/tmp/sockcheck server $port > /tmp/sc.out 2>&1; echo \$? > /tmp/sc.rc) > /dev/null 2>&1 &"
	wait_until 30 x "$srv" "ss -ltn | grep -q ':$port '"
	local t0=$(date +%s)
	x "$cli" "/tmp/sockcheck client $addr $port" > "$W/$name.c" 2>&1
	rc=$?
	wait_until 120 x "$srv" 'test -s /tmp/sc.rc'
	x "$srv" 'cat /tmp/sc.out' > "$W/$name.s"
	echo "round $name: server $srv, client $cli -> $addr:$port: client exit $rc, server exit $(x "$srv" 'cat /tmp/sc.rc'), $(( $(date +%s) - t0 )) s"
	[ "$rc" = 0 ] && [ "$(x "$srv" 'cat /tmp/sc.rc')" = 0 ]
}

# compare REF NEW LABEL: one PASS/FAIL per check
compare() {
	local ref=$1 new=$2 label=$3 c a b
	for c in $checks; do
		a=$(cat "$W/$ref.c" "$W/$ref.s" | grep "^$c [CS]: ")
		b=$(cat "$W/$new.c" "$W/$new.s" | grep "^$c [CS]: ")
		if [ -z "$a" ]; then
			bad "$label: $c: no output over plain TCP"
		elif [ "$a" = "$b" ]; then
			ok "$label: $c: same as TCP"
		else
			bad "$label: $c differs from TCP"
			diff <(echo "$a") <(echo "$b") | sed -n 's/^</    TCP:    /p; s/^>/    XenVMC: /p'
		fi
	done
}

# one pair of rounds (fast path off, then on) and the comparison
pair() {
	local tag=$1 srv=$2 cli=$3 addr=$4 acc0 acc1 fb h0 h1 d
	for d in domu1 domu2; do x $d "sysctl -qw net.core.busy_read=${BUSY:-0}"; done
	check "$tag: vmc_front reloaded with tcp=0, channels up" load_tcp 0
	acc0=$(stat_of "$cli" accelerated_total)
	check "$tag: sockcheck over plain TCP completed" run "$tag-tcp" "$srv" "$cli" "$addr"
	check "$tag: nothing accelerated with tcp=0" is '[ "$(stat_of "$cli" accelerated_total)" = "$acc0" ]'
	check "$tag: vmc_front reloaded with tcp=1, channels up" load_tcp 1
	acc0=$(stat_of "$cli" accelerated_total)
	h0=$(( $(stat_of "$cli" busy_poll_hits) + $(stat_of "$srv" busy_poll_hits) ))
	check "$tag: sockcheck over XenVMC completed" run "$tag-vmc" "$srv" "$cli" "$addr"
	acc1=$(stat_of "$cli" accelerated_total)
	h1=$(( $(stat_of "$cli" busy_poll_hits) + $(stat_of "$srv" busy_poll_hits) ))
	echo "$tag: busy_poll_hits in $cli and $srv grew by $((h1 - h0))"
	if [ "${BUSY:-0}" = 0 ]; then
		check "$tag: no read spun (busy_read 0)" is '[ $((h1 - h0)) = 0 ]'
	else
		check "$tag: reads found data while spinning (busy_poll_hits grew)" is '[ $((h1 - h0)) -gt 0 ]'
	fi
	for d in domu1 domu2; do x $d "sysctl -qw net.core.busy_read=0"; done
	fb=$(x "$cli" "grep -E '^(fallback|resets)' /proc/xenvmc/stats | awk '\$2 != 0' | tr '\n' ' '")
	echo "$tag: accelerated_total in $cli grew by $((acc1 - acc0)) (connections made: $((nchecks + 1))); non-zero fallback/reset counters: ${fb:-none}"
	check "$tag: the XenVMC round was accelerated" is '[ "$acc1" -gt "$acc0" ]'
	check "$tag: every connection of the XenVMC round accelerated ($((acc1 - acc0)) of $((nchecks + 1)))" \
		is '[ $((acc1 - acc0)) -ge $((nchecks + 1)) ]'
	compare "$tag-tcp" "$tag-vmc" "$tag"
}

for d in domu1 domu2; do
	lab-exec -t 60 $d 'cat > /tmp/sockcheck && chmod +x /tmp/sockcheck' < "$LAB_FILES/sockcheck"
done
checks=$(x domu1 '/tmp/sockcheck list')
nchecks=$(echo $checks | wc -w)

for p in ${LAB_TCPSEM_PAIRS:-v4-12 v4-21 v6-12}; do
	case $p in
	v4-12) pair "v4 domu1->domu2" domu2 domu1 10.99.0.12 ;;
	v4-21) pair "v4 domu2->domu1" domu1 domu2 10.99.0.11 ;;
	v6-12) pair "v6 domu1->domu2" domu2 domu1 fd99::12 ;;
	b4-21) BUSY=1000 pair "v4 busy_read domu2->domu1" domu1 domu2 10.99.0.11 ;;
	*) bad "LAB_TCPSEM_PAIRS: unknown pair $p" ;;
	esac
done

# the run-time switch: tcp=1 -> 0 -> 1 by writing the parameter, DomUs still answer
check "vmc_front reloaded with tcp=1, channels up" load_tcp 1
check "writing tcp=0 at run time in domu1 and domu2" set_tcp 0
if is 'sleep 30; answer'; then
	ok "domu1 and domu2 still answer 30 s after tcp=0"
	check "writing tcp=1 again" set_tcp 1
	check "a sockcheck round after tcp=0 -> 1 completes" run after-toggle domu2 domu1 10.99.0.12
else
	bad "domu1 and domu2 still answer 30 s after tcp=0 (lab-exec fails: ssh banner timeouts)"
fi

# keep the raw outputs
[ -n "$LAB_ARTIFACTS" ] && mkdir -p "$LAB_ARTIFACTS/tcpsem" && cp "$W"/* "$LAB_ARTIFACTS/tcpsem/" 2>/dev/null

check "no connection left in domu1 and domu2" \
	wait_until 60 is '[ "$(stat_of domu1 connections)" = 0 ] && [ "$(stat_of domu2 connections)" = 0 ]'
check "no Oops/BUG/WARNING in the DomUs" \
	is '! x domu1 "dmesg | grep -E \"Oops|BUG:|WARNING:\"" && ! x domu2 "dmesg | grep -E \"Oops|BUG:|WARNING:\""'
if [ "$fail" != 0 ]; then
	for d in domu1 domu2; do
		echo "--- $d stats"; x $d cat /proc/xenvmc/stats | grep -v ' 0$'
		echo "--- $d connections"; x $d cat /proc/xenvmc/connections
		echo "--- $d dmesg"; x $d 'dmesg | grep -i -E "xenvmc|BUG|WARN|Oops" | tail -30'
	done
fi
rm -rf "$W"
echo "$pass passed, $fail failed"
[ "$fail" = 0 ]
