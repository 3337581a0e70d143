#!/bin/bash
# Lab test: Dom0 with many (small) DomUs keeps every table right.
# Not in the default suite; it wants LAB_NUM_DOMUS=8 (any N >= 4 works):
#
#   LAB_NUM_DOMUS=8 LAB_DOMU_MEM=128 LAB_MEM=4096 LAB_SUITE=eight.sh \
#     test/lab.sh run test/lab-tests/suite.sh test/lab-tests/*.sh
#
#   1. Dom0's /proc/xenvmc/domains lists every DomU as peer, with its
#      addresses; every DomU's /proc/xenvmc/peers lists the N - 1 others with
#      their addresses and channel up, and nobody else; one event channel
#      per peer
#   2. one DomU unloads vmc_front: it leaves every other table within 1 s
#      (LAB_EIGHT_LEAVE_SECS), their channels to it go down (N - 2), Dom0
#      marks it off; reloading brings it back everywhere
#   3. one DomU is destroyed (xl destroy): it leaves every DomU's table and
#      Dom0's; re-created, it comes back everywhere
# Each DomU's table is read once per round, all DomUs in parallel.
pass=0; fail=0
ok()  { echo "PASS: $*"; pass=$((pass + 1)); }
bad() { echo "FAIL: $*"; fail=$((fail + 1)); }
check() { local what=$1; shift; if "$@"; then ok "$what"; else bad "$what"; fi; }
# x DOMU CMD: lab-exec, retried while ssh itself fails (exit 255: 8 small
# DomUs under TCG sometimes time out in the banner exchange)
x() {
	local rc
	for _ in 1 2 3; do
		lab-exec -n -t 60 "$@"; rc=$?
		[ "$rc" = 255 ] || return "$rc"
		sleep 1
	done
	return "$rc"
}
limit=${LAB_EIGHT_LEAVE_SECS:-1}	# the issue: "within 1 s of any change"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

# domids (re-read after a DomU is re-created), addresses (the lab's /etc/hosts)
declare -A id ip4 ip6
learn() {
	local d
	for d in "${all[@]}"; do
		id[$d]=$(xl domid "$d" 2>/dev/null)
		ip4[$d]=$(awk -v n="$d" '$2 == n && $1 !~ /:/ {print $1; exit}' /etc/hosts)
		ip6[$d]=$(awk -v n="$d" '$2 == n && $1 ~ /:/ {print $1; exit}' /etc/hosts)
	done
}
# fetch FILE DOMU...: FILE of every DOMU in $tmp/DOMU.FILE, in parallel
fetch() {
	local f=$1 d; shift
	for d in "$@"; do
		x "$d" "cat /proc/xenvmc/$f" > "$tmp/$d.$f" 2> /dev/null &
	done
	wait
}
# has_addrs ADDRS DOMU: an address column holds DOMU's IPv4 and IPv6
has_addrs() {
	[[ ",$1," == *",${ip4[$2]},"* ]] && [[ ",$1," == *",${ip6[$2]},"* ]]
}
why=""	# the first reason a table check failed
# peers_right DOMU MEMBER...: DOMU's peers table lists exactly the MEMBERs
# other than DOMU, each with its addresses and channel up
peers_right() {
	local d=$1 e n=0 dom chan addrs; shift
	local f=$tmp/$d.peers
	[ "$(head -n 1 "$f" 2>/dev/null)" = "domid gen channel addresses why" ] ||
		{ why="$d: no peers table"; return 1; }
	for e in "$@"; do
		[ "$e" = "$d" ] && continue
		n=$((n + 1))
		read -r dom chan addrs < <(awk -v i="${id[$e]}" '$1 == i {print $1, $3, $4}' "$f")
		[ -n "$dom" ] || { why="$d does not list $e (${id[$e]})"; return 1; }
		[ "$chan" = up ] || { why="$d: channel to $e is '$chan'"; return 1; }
		has_addrs "$addrs" "$e" || { why="$d: $e listed with '$addrs'"; return 1; }
	done
	[ "$(tail -n +2 "$f" | wc -l)" = "$n" ] ||
		{ why="$d lists $(tail -n +2 "$f" | awk '{print $1}' | tr '\n' ' ')instead of $n peers"; return 1; }
}
# tables_right MEMBER...: every MEMBER's peers table is right (one fetch)
tables_right() {
	local d
	fetch peers "$@"
	for d in "$@"; do peers_right "$d" "$@" || return 1; done
	why=""
}
# dom0_right PEER... -- OFF... -- GONE...: Dom0 lists each PEER as peer with
# its addresses, each OFF as off, no line for each GONE (by domid)
dom0_right() {
	local mode=peer d dom st addrs
	for d in "$@"; do
		case $d in --) [ $mode = peer ] && mode=off || mode=gone; continue ;; esac
		read -r dom st addrs < <(awk -v i="${id[$d]:-none}" '$1 == i {print $1, $2, $5}' /proc/xenvmc/domains)
		case $mode in
		peer) if [ "$st" != peer ] || ! has_addrs "$addrs" "$d"; then
			why="dom0: $d is '$st $addrs'"; return 1; fi ;;
		off) [ "$st" = off ] || { why="dom0: $d is '$st', not off"; return 1; } ;;
		gone) [ -z "$dom" ] || { why="dom0 still lists $d (${id[$d]})"; return 1; } ;;
		esac
	done
	why=""
}
# evtchns_are N DOMU...: each DOMU holds N event channels (one per live channel)
evtchns_are() {
	local n=$1 d v; shift
	fetch stats "$@"
	for d in "$@"; do
		v=$(awk '$1 == "event_channels" {print $2}' "$tmp/$d.stats")
		[ "$v" = "$n" ] || { why="$d holds '$v' event channels, not $n"; return 1; }
	done
	why=""
}
# wait_until SECS CMD...: retry CMD until it holds (each round reads every table)
wait_until() {
	local end=$(( $(date +%s) + $1 )); shift
	until "$@"; do [ "$(date +%s)" -ge "$end" ] && return 1; sleep 1; done
}
# because WHAT SECS CMD...: check with the reason of a failure in its name
because() {
	local what=$1; shift
	if wait_until "$@"; then ok "$what"; else bad "$what: $why"; fi
}
without() { local e=$1 d; shift; for d in "$@"; do [ "$d" != "$e" ] && echo "$d"; done; }
# watch_gone VICTIM OBSERVER...: each OBSERVER notes when VICTIM's domid
# leaves its peers table (in /tmp/gone-ID, its own clock)
watch_gone() {
	local v=${id[$1]} d; shift
	for d in "$@"; do
		x "$d" "rm -f /tmp/gone-$v; (while grep -q '^$v ' /proc/xenvmc/peers; do sleep 0.02; done; date +%s.%N > /tmp/gone-$v) > /dev/null 2>&1 &" &
	done
	wait
}
# left_within T0 VICTIM OBSERVER...: every OBSERVER saw VICTIM leave within $limit s of T0
left_within() {
	local t0=$1 v=${id[$2]} d t dt worst="" rc=0; shift 2
	for d in "$@"; do
		t=$(x "$d" "cat /tmp/gone-$v 2>/dev/null")
		dt=$(awk -v a="$t0" -v b="$t" 'BEGIN { if (b == "") print "never"; else printf "%.3f", b - a }')
		echo "  $d: gone after $dt s"
		if [ "$dt" = never ] || awk -v d="$dt" -v l="$limit" 'BEGIN { exit !(d > l) }'; then rc=1
		elif [ -z "$worst" ] || awk -v d="$dt" -v w="$worst" 'BEGIN { exit !(d > w) }'; then worst=$dt; fi
	done
	echo "  slowest: ${worst:-none in time} s"
	return $rc
}
show() {
	echo "--- dom0 /proc/xenvmc/domains"; cat /proc/xenvmc/domains 2>&1
	echo "--- dom0 /proc/xenvmc/stats"; cat /proc/xenvmc/stats 2>&1
	fetch peers "${all[@]}"
	for d in "${all[@]}"; do echo "--- $d /proc/xenvmc/peers"; cat "$tmp/$d.peers"; done
	echo "--- dom0 dmesg (xenvmc)"; dmesg | grep xenvmc | tail -30
	xl list
}

read -r -a all <<< "$LAB_DOMUS"
n=${#all[@]}
[ "$n" -ge 4 ] || { echo "eight: needs LAB_NUM_DOMUS >= 4 (8 meant), has $n"; echo "0 passed, 1 failed"; exit 1; }
[ "$n" = 8 ] || echo "eight: running with $n DomUs (meant for 8)"
victim=${all[$((n / 2))]}	# unloads vmc_front (domu5 of 8)
doomed=${all[$((n - 1))]}	# destroyed and re-created (domu8 of 8)
lab-load all > /dev/null
learn
for d in "${all[@]}"; do echo "$d: domid ${id[$d]} ${ip4[$d]} ${ip6[$d]}"; done

# 1. every table, full membership
t=$(date +%s)
because "all $n DomUs list the $((n - 1)) others with their addresses, channels up" 120 tables_right "${all[@]}"
echo "  (took $(( $(date +%s) - t )) s)"
because "dom0 lists all $n DomUs as peers with their addresses" 10 dom0_right "${all[@]}"
check "dom0 lists nothing else" [ "$(tail -n +2 /proc/xenvmc/domains | wc -l)" = "$n" ]
because "every DomU holds $((n - 1)) event channels" 30 evtchns_are $((n - 1)) "${all[@]}"

# 2. unload vmc_front in one DomU
mapfile -t rest < <(without "$victim" "${all[@]}")
watch_gone "$victim" "${rest[@]}"
# rmmod tears down N - 1 channels first (seconds with 7 peers under TCG),
# then withdraws from XenStore: count from its return, as membership.sh does.
# shellcheck disable=SC2016	# expanded in the DomU
read -r t t0 < <(x "$victim" 'a=$(date +%s.%N); rmmod vmc_front; echo "$a $(date +%s.%N)"' | tail -n 1)
echo "  rmmod vmc_front in $victim took $(awk -v a="$t" -v b="$t0" 'BEGIN { printf "%.1f", b - a }') s"
sleep "$limit"
check "$victim unloads: gone from all $((n - 1)) other tables within $limit s of rmmod's return" \
	left_within "$t0" "$victim" "${rest[@]}"
because "the others list exactly each other, channels up" 20 tables_right "${rest[@]}"
because "their channels to $victim are down ($((n - 2)) event channels each)" 20 evtchns_are $((n - 2)) "${rest[@]}"
because "dom0: $victim off, the others peers" 10 dom0_right "${rest[@]}" -- "$victim" --
lab-load front "$victim" > /dev/null
because "$victim reloaded: back in every table, channels up" 60 tables_right "${all[@]}"
because "dom0: all $n peers again" 10 dom0_right "${all[@]}"
because "every DomU holds $((n - 1)) event channels again" 30 evtchns_are $((n - 1)) "${all[@]}"

# 3. destroy one DomU
mapfile -t rest < <(without "$doomed" "${all[@]}")
watch_gone "$doomed" "${rest[@]}"
# xl destroy first tears the devices down (hotplug scripts: ~16 s under TCG
# here), then removes the domain's XenStore tree: count from its return.
t=$(date +%s.%N)
xl destroy "$doomed"
t0=$(date +%s.%N)
echo "  xl destroy took $(awk -v a="$t" -v b="$t0" 'BEGIN { printf "%.1f", b - a }') s"
sleep "$limit"
check "$doomed destroyed: gone from all $((n - 1)) other tables within $limit s of xl destroy's return" \
	left_within "$t0" "$doomed" "${rest[@]}"
because "dom0 forgets $doomed (${id[$doomed]})" 10 dom0_right "${rest[@]}" -- -- "$doomed"
check "dom0 lists $((n - 1)) DomUs" [ "$(tail -n +2 /proc/xenvmc/domains | wc -l)" = $((n - 1)) ]
because "the others list exactly each other, channels up" 20 tables_right "${rest[@]}"
because "their channels to $doomed are down ($((n - 2)) event channels each)" 20 evtchns_are $((n - 2)) "${rest[@]}"
check "$doomed re-created" lab-create "$doomed"
lab-load front "$doomed" > /dev/null
learn
because "$doomed (now ${id[$doomed]}) back in every table, channels up" 60 tables_right "${all[@]}"
because "dom0: all $n peers again" 10 dom0_right "${all[@]}"
because "every DomU holds $((n - 1)) event channels again" 30 evtchns_are $((n - 1)) "${all[@]}"

check "no Oops/BUG/WARNING in dom0" eval '! dmesg | grep -E "Oops|BUG:|WARNING:|general protection"'
[ "$fail" = 0 ] || show
echo "$pass passed, $fail failed"
[ "$fail" = 0 ]
