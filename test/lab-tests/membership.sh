#!/bin/bash
# Lab test: Dom0 membership and DomU control channels (vmc_back + vmc_front).
# Runs in Dom0: test/lab.sh run test/lab-tests/membership.sh
#
#   1. every DomU is listed in Dom0 with its addresses; each DomU lists the
#      others as peers and their channel comes up (HELLO both ways)
#   2. resources: one grant, one mapping, one event channel per peer
#   3. a frontend unloads: it leaves every table within 1 s, its peers'
#      resources return to their baseline; reload brings it back
#   4. load orders: back restarted under running fronts; fronts before back
#   5. spoofing: domu3 adds domu2's address; never listed as its owner
#   5b. a domain with no vif (Dom0 writes its nodes: /local/domain/999 with
#      a frontend's state and claim, no backend/vif/999) claims an address
#      first; domu2 claims it later and is listed for it all the same
#   6. garbage: domu3 writes malformed offers, claims and an incarnation
#      into its own nodes; refused, counted, nobody else affected
pass=0; fail=0
ok()  { echo "PASS: $*"; pass=$((pass + 1)); }
bad() { echo "FAIL: $*"; fail=$((fail + 1)); }
check() { local what=$1; shift; if "$@"; then ok "$what"; else bad "$what"; fi; }
is() { eval "$*"; }		# check "..." is '[ ... ]'
x() { lab-exec -n -t 60 "$@"; }
domid() { xl domid "$1" 2>/dev/null; }
ip4() { getent ahostsv4 "$1" | awk '{print $1; exit}'; }
dom0_stat() { awk -v k="$1" '$1 == k {print $2}' /proc/xenvmc/stats; }
stat_of() { x "$1" "awk -v k=$2 '\$1 == k {print \$2}' /proc/xenvmc/stats"; }
# the line of peer $2 in DomU $1's /proc/xenvmc/peers ("" when not listed)
peer_line() { x "$1" "awk -v d=$(domid "$2") '\$1 == d' /proc/xenvmc/peers"; }
dom0_line() { awk -v d="$(domid "$1")" '$1 == d' /proc/xenvmc/domains; }
chan() { peer_line "$1" "$2" | awk '{print $3}'; }
# wait_until SECS CMD...: poll CMD every 0.5 s
wait_until() {
	local end=$(( $(date +%s) + $1 )); shift
	until "$@"; do [ "$(date +%s)" -ge "$end" ] && return 1; sleep 0.5; done
}
all_up() {	# every DomU sees every other DomU's channel up
	local a b
	for a in $LAB_DOMUS; do for b in $LAB_DOMUS; do
		[ "$a" = "$b" ] && continue
		[ "$(chan "$a" "$b")" = up ] || return 1
	done; done
}
# Per peer a DomU holds 1 event channel, 1 + P grants (its control page and
# its ring pool of P pages) and 1 + P' mappings (the peer's control page and
# pool); every peer here runs the same parameters, so the counts are
# multiples of one peer's cost.
res() { echo "$(stat_of "$1" grants_in_use) $(stat_of "$1" mapped_pages) $(stat_of "$1" event_channels)"; }
resources_are() {	# resources_are DOMU N: what N peers hold, exactly
	local g m e
	read -r g m e < <(res "$1")
	[ "$e" = "$2" ] && [ -n "$g" ] && [ "$g" = $(( per_grants * $2 )) ] &&
	[ "$m" = $(( per_maps * $2 )) ]
}
all_down() {
	local d
	for d in $LAB_DOMUS; do resources_are "$d" 0 || return 1; done
}
show() {
	echo "--- dom0 /proc/xenvmc/domains"; cat /proc/xenvmc/domains 2>&1
	echo "--- dom0 /proc/xenvmc/stats"; cat /proc/xenvmc/stats 2>&1
	for d in $LAB_DOMUS; do
		echo "--- $d /proc/xenvmc/peers"; x "$d" cat /proc/xenvmc/peers 2>&1
		echo "--- $d /proc/xenvmc/stats"; x "$d" cat /proc/xenvmc/stats 2>&1
		echo "--- $d dmesg (xenvmc)"; x "$d" 'dmesg | grep xenvmc | tail -20' 2>&1
	done
	echo "--- dom0 dmesg (xenvmc)"; dmesg | grep xenvmc | tail -20
}

set -- $LAB_DOMUS
[ $# -ge 3 ] || { echo "membership: needs 3 DomUs"; echo "0 passed, 1 failed"; exit 1; }
npeers=$(( $# - 1 ))
lab-load all > /dev/null

# 1. discovery and channels
check "all channels up within 20 s" wait_until 20 all_up
for d in $LAB_DOMUS; do
	check "dom0 lists $d ($(domid $d)) as peer with $(ip4 $d)" \
		is '[[ "$(dom0_line '"$d"')" =~ \ peer\ .*$(ip4 '"$d"') ]]'
done
check "domu1 lists domu2 with $(ip4 domu2) and an fd99:: address" \
	is '[[ "$(peer_line domu1 domu2)" =~ $(ip4 domu2).*fd99:: || "$(peer_line domu1 domu2)" =~ fd99::.*$(ip4 domu2) ]]'

# 2. resources: the same per peer everywhere; HELLO seen from every peer
wait_until 20 is '[ "$(stat_of domu1 mapped_pages)" -gt $((npeers * 1)) ]'	# pools mapped
read -r g m e < <(res domu1)
per_grants=$(( g / npeers )); per_maps=$(( m / npeers ))
echo "domu1 holds $g grants, $m mappings, $e event channels for $npeers peers"
check "each peer costs a control page and a whole ring pool ($per_grants grants, $per_maps mappings)" \
	is '[ $per_grants -gt 1 ] && [ $per_maps -gt 1 ] && [ $((per_grants * npeers)) = $g ]'
for d in $LAB_DOMUS; do
	check "$d: $npeers peers' grants, mappings, event channels" wait_until 20 resources_are "$d" $npeers
	check "$d: HELLO from every peer" is '[ "$(stat_of '"$d"' control_msgs_in)" -ge '$npeers' ]'
done

# 3. unload one frontend: gone from the others within 1 s, resources back.
# Timed on Dom0's clock alone: from domu3's leaving (it removes its
# data/xenvmc node right after its BYE: the first change there) to
# domu1's watcher (20 ms looks at its table) writing data/vmctest/gone,
# both seen by xenstore-watch here.
# Two DomUs' clocks, or the end of a rmmod whose tail outlasts its
# leaving, made a worse ruler (-1.295 s once, 2.382 s another time).
gone_id=$(domid domu3) d1=$(domid domu1)
xenstore-rm /local/domain/$d1/data/vmctest 2>/dev/null
x domu1 "(while grep -q '^$gone_id ' /proc/xenvmc/peers; do sleep 0.02; done; xenstore-write data/vmctest/gone 1) > /dev/null 2>&1 &"
stampw() { xenstore-watch "$1" | while read -r l; do echo "$(date +%s.%N) $2 $l"; done; }
stampw /local/domain/$gone_id/data/xenvmc left > /tmp/leave.log &
stampw /local/domain/$d1/data/vmctest/gone gone >> /tmp/leave.log &
sleep 2
t_mark=$(date +%s.%N)
x domu3 'rmmod vmc_front'
wait_until 10 is "! xenstore-read /local/domain/$gone_id/data/xenvmc/state >/dev/null 2>&1 && xenstore-read /local/domain/$d1/data/vmctest/gone >/dev/null 2>&1"
sleep 1
pkill -f "xenstore-watch /local/domain/($gone_id/data/xenvmc|$d1/data/vmctest)"
# The watches fire once when set: only events after the mark count.
dt=$(awk -v m="$t_mark" '$1 > m && !($2 in t) { t[$2] = $1 }
	END { if (!("left" in t) || !("gone" in t)) print "never"; else printf "%.3f", t["gone"] - t["left"] }' /tmp/leave.log)
check "domu3 unloads: gone from domu1's table $dt s after it left (<= 1 s)" \
	awk -v d="$dt" 'BEGIN { exit !(d != "never" && d <= 1.0) }'
xenstore-rm /local/domain/$d1/data/vmctest 2>/dev/null
check "domu1: resources back to $((npeers - 1)) each" wait_until 10 resources_are domu1 $((npeers - 1))
check "dom0 lists domu3 as off" is '[[ "$(dom0_line domu3)" =~ \ off\  ]]'
lab-load front domu3 > /dev/null
check "domu3 reloaded: all channels up again" wait_until 20 all_up

# 4a. backend restarted while the frontends run (it then also finds 5b's
# domain with no vif: only a new domain or a load makes it list them again)
fake=999 fakeip=10.99.0.77
xenstore-write /local/domain/$fake/data/xenvmc/state 1 \
	/local/domain/$fake/data/xenvmc/addrs "$(printf '%02x' ${fakeip//./ })"
rmmod vmc_back
check "vmc_back unloaded: every DomU's channels torn down" wait_until 20 all_down
lab-load back > /dev/null
check "vmc_back reloaded: all channels up again" wait_until 20 all_up
# 4b. frontends first, backend last
lab-unload all > /dev/null
lab-load front > /dev/null
sleep 1
lab-load back > /dev/null
check "fronts loaded before back: all channels up" wait_until 20 all_up

# 5. spoofing: domu3 claims domu2's IPv4 address too
a2=$(ip4 domu2)
x domu3 "ip addr add $a2/32 dev eth0"
sleep 2
check "dom0 marks domu3's claim of $a2 as a conflict" \
	is '[[ "$(dom0_line domu3)" == *"$a2(conflict)"* ]]'
check "domu1: $a2 still listed for domu2" is '[[ "$(peer_line domu1 domu2)" =~ (^| |,)$a2(,| |$) ]]'
check "domu1: $a2 not listed for domu3" is '! [[ "$(peer_line domu1 domu3)" =~ (^| |,)$a2(,| |$) ]]'
x domu3 "ip addr del $a2/32 dev eth0"

# 5b. a claimant with no vif holds no address
check "dom0 lists domain $fake (no vif) with its claim of $fakeip" \
	is '[[ "$(awk -v d=$fake '"'"'$1 == d'"'"' /proc/xenvmc/domains)" =~ ^$fake\ off\ .*\ -\ $fakeip\ .*no\ vif ]]'
x domu2 "ip addr add $fakeip/32 dev eth0"
check "domu2 claims $fakeip after it: domu1 lists it for domu2" \
	wait_until 10 is '[[ "$(peer_line domu1 domu2)" =~ (^| |,)$fakeip(,| |$) ]]'
check "dom0 does not mark domu2's $fakeip a conflict" \
	is '[[ "$(dom0_line domu2)" == *"$fakeip"* && "$(dom0_line domu2)" != *"$fakeip(conflict)"* ]]'
x domu2 "ip addr del $fakeip/32 dev eth0"
# Dom0 lists it, off, until a domain comes or goes or vmc_back reloads
# (revert.sh and smoke.sh do both): only those events list /local/domain.
xenstore-rm /local/domain/$fake

# 6. garbage from domu3 into its own nodes: channel offers, then claims
chan0=$(dom0_stat bad_channel_offers)
x domu3 "xenstore-write data/xenvmc/chan/$(domid domu1) 'garbage here'"
x domu3 "xenstore-write data/xenvmc/chan/$(domid domu1) $(head -c 3000 /dev/zero | tr '\0' 9)"
x domu3 "xenstore-write data/xenvmc/chan/notanumber '1 2'"
sleep 2
check "malformed channel offers refused and counted ($chan0 -> $(dom0_stat bad_channel_offers))" \
	is '[ "$(dom0_stat bad_channel_offers)" -ge $((chan0 + 3)) ]'
bad0=$(dom0_stat bad_claims)
x domu3 'xenstore-write data/xenvmc/addrs "zz not an address"'
sleep 2
check "malformed claim refused and counted" \
	is '[ "$(dom0_stat bad_claims)" -gt "$bad0" ] && [[ "$(dom0_line domu3)" == *malformed* ]]'
check "domu3 left the other tables" wait_until 10 is '[ -z "$(peer_line domu1 domu3)" ]'
check "domu1 and domu2 keep their channel" is '[ "$(chan domu1 domu2)" = up ]'
check "no Oops/BUG/WARNING in dom0" is '! dmesg | grep -E "Oops|BUG:|WARNING:|general protection"'
lab-unload front domu3 > /dev/null
lab-load front domu3 > /dev/null
check "domu3 reloaded after garbage: all channels up" wait_until 20 all_up
bad0=$(dom0_stat bad_claims)
x domu3 'xenstore-write data/xenvmc/inc "not an incarnation"'
sleep 2
check "malformed incarnation refused and counted" \
	is '[ "$(dom0_stat bad_claims)" -gt "$bad0" ] && [[ "$(dom0_line domu3)" == *"malformed incarnation"* ]]'
check "domu3 left the other tables" wait_until 10 is '[ -z "$(peer_line domu1 domu3)" ]'
lab-unload front domu3 > /dev/null
lab-load front domu3 > /dev/null
check "domu3 reloaded after a bad incarnation: all channels up" wait_until 20 all_up

# 7. each module refuses the wrong kind of domain, saying why
kv1=$(x domu1 uname -r)
lab-exec -t 60 domu1 "cat > /tmp/vmc_back.ko" < /lab/modules/$kv1/vmc_back.ko
check "vmc_back refuses to load in a DomU, with a reason in dmesg" \
	is '! x domu1 "insmod /tmp/vmc_back.ko" && x domu1 "dmesg | grep -q \"xenvmc-back: not loaded: vmc_back runs in Xen Dom0 only\""'
check "vmc_front refuses to load in Dom0, with a reason in dmesg" \
	is '! insmod /lab/modules/$(uname -r)/vmc_front.ko 2>/dev/null && dmesg | grep -q "xenvmc-front: not loaded: vmc_front runs in a Xen DomU only"'
check "vmc_front refuses a bad parameter, naming it" \
	is '! x domu3 "rmmod vmc_front; insmod /lab/modules/\$(uname -r)/vmc_front.ko ring_kb=3" && x domu3 "dmesg | grep -q \"not loaded: ring_kb=3\""'
lab-load front domu3 > /dev/null

[ "$fail" = 0 ] || show
echo "$pass passed, $fail failed"
[ "$fail" = 0 ]
