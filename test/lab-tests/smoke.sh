#!/bin/bash
# Lab smoke test: runs in Dom0 (test/lab.sh run test/lab-tests/smoke.sh).
# DomUs up, ping by name (IPv4/IPv6), checksummed 64 MiB transfer, XenVMC module state,
# xl save/restore, PVH live migration (when PVH DomUs are configured), xl destroy + re-create.
pass=0; fail=0; skip=0
ok()   { echo "PASS: $*"; pass=$((pass + 1)); }
bad()  { echo "FAIL: $*"; fail=$((fail + 1)); }
skp()  { echo "SKIP: $*"; skip=$((skip + 1)); }
check() { local what=$1; shift; if "$@"; then ok "$what"; else bad "$what"; fi; }
domid() { xl domid "$1" 2>/dev/null; }
echo "smoke: DomUs: $LAB_DOMUS; lab mode: ${LAB_MODE:-?} (TCG figures are relative only)"

# 1. all DomUs up and answering with the right host name
for d in $LAB_DOMUS; do
    h=$(lab-exec -n -t 60 "$d" hostname 2>&1)
    check "$d is up (hostname=$h, $(cat /run/lab/type-$d 2>/dev/null), $(lab-exec -n -t 30 $d uname -r))" [ "$h" = "$d" ]
done

t0=$(date +%s.%N); lab-exec -n domu1 true; t1=$(date +%s.%N)
echo "lab-exec round trip (ssh): $(echo "$t0 $t1" | awk '{printf "%.2f", $2 - $1}') s"

# 2. ping by name over the bridge, IPv4 and IPv6, both directions; dom0 and domu3 too
for pair in "domu1 domu2" "domu2 domu1" "domu1 domu3" "domu2 dom0"; do
    set -- $pair
    for v in 4 6; do
        check "ping -$v $1 -> $2" lab-exec -n -t 60 "$1" "ping -$v -c 2 -W 3 $2 > /dev/null"
    done
done

# 3. checksummed 64 MiB transfer domu1 -> domu2 (TCP, nc), md5 of what was sent vs received
lab-exec -n -t 300 domu2 'nc -l 5001 | md5sum | cut -c1-32' > /tmp/rx.md5 2>/tmp/rx.err &
rxpid=$!
for i in $(seq 1 30); do lab-exec -n -t 20 domu2 'ss -ltn | grep -q ":5001 "' && break; sleep 1; done
tx=$(lab-exec -n -t 120 domu1 'head -c 64M /dev/urandom > /tmp/tx.bin && md5sum < /tmp/tx.bin | cut -c1-32')
t0=$(date +%s.%N)
lab-exec -n -t 300 domu1 'nc -N domu2 5001 < /tmp/tx.bin'; src=$?
wait $rxpid; rrc=$?
t1=$(date +%s.%N)
rx=$(cat /tmp/rx.md5)
mbit=$(echo "$t0 $t1" | awk '{ printf "%.0f", 64 * 8 * 1.048576 / ($2 - $1) }')
check "64 MiB domu1 -> domu2 over TCP, md5 sent=$tx received=$rx (~$mbit Mbit/s incl. ssh setup, TCG)" \
    [ -n "$tx" ] && [ "$tx" = "$rx" ] && [ $src = 0 ] && [ $rrc = 0 ]
lab-exec -n domu1 'rm -f /tmp/tx.bin'

# 4. XenVMC modules: loaded where their .ko exists (unless LAB_MODULES=none)
kv=$(uname -r)
state=$(lsmod | grep -E '^vmc_' || true)
echo "modules: dom0: ${state:-none}"
if [ "${LAB_MODULES:-auto}" != none ] && [ -f /lab/modules/$kv/vmc_back.ko ]; then
    check "vmc_back loaded in dom0" grep -q '^vmc_back ' /proc/modules
else
    skp "vmc_back not expected in dom0 (LAB_MODULES=${LAB_MODULES:-auto}, build/$kv/vmc_back.ko $( [ -f /lab/modules/$kv/vmc_back.ko ] && echo present || echo absent))"
fi
for d in $LAB_DOMUS; do
    dkv=$(lab-exec -n -t 30 $d uname -r)
    s=$(lab-exec -n -t 30 $d "grep -E '^vmc_' /proc/modules | cut -d' ' -f1" | tr '\n' ' ')
    echo "modules: $d ($dkv): ${s:-none}"
    if [ "${LAB_MODULES:-auto}" != none ] && [ -f /lab/modules/$dkv/vmc_front.ko ]; then
        check "vmc_front loaded in $d" [ -n "$s" ]
    fi
done

# 5. xl save / xl restore of domu3: same guest afterwards (a marker in its tmpfs survives), reachable.
# Sections 5 and 7 take about 2 min under TCG; LAB_SMOKE_LIFECYCLE=0 (make check) skips them, because
# revert.sh saves/restores domu1 under load and destroys and re-creates domu3 in the same suite.
lifecycle=${LAB_SMOKE_LIFECYCLE:-1}
[ "$lifecycle" = 1 ] || skp "xl save/restore and destroy/re-create of domu3: LAB_SMOKE_LIFECYCLE=0 (revert.sh does both under load)"
d=domu3
if [ "$lifecycle" = 1 ] && echo " $LAB_DOMUS " | grep -q " $d "; then
    lab-exec -n $d 'echo before-save > /run/lab/marker'
    id0=$(domid $d)
    t0=$(date +%s)
    if xl save $d /var/lib/xen/$d.save > /tmp/save.log 2>&1; then
        t1=$(date +%s)
        check "xl save $d (${id0}) in $((t1 - t0)) s; domain gone after save" sh -c "! xl domid $d >/dev/null 2>&1"
        if xl restore /var/lib/xen/$d.save > /tmp/restore.log 2>&1; then
            t2=$(date +%s)
            id1=$(domid $d)
            ok "xl restore $d in $((t2 - t1)) s (domid $id0 -> $id1)"
            check "$d after restore: marker kept (not rebooted), reachable from domu1" \
                sh -c "[ \"\$(lab-exec -n -t 60 $d cat /run/lab/marker)\" = before-save ] && lab-exec -n -t 60 domu1 'ping -c 2 -W 3 $d >/dev/null'"
        else
            bad "xl restore $d: $(tail -3 /tmp/restore.log)"
        fi
        rm -f /var/lib/xen/$d.save
    else
        bad "xl save $d: $(tail -3 /tmp/save.log)"
    fi
fi

# 6. PVH live migration (localhost): every PVH DomU
npvh=0
for d in $LAB_DOMUS; do
    [ "$(cat /run/lab/type-$d 2>/dev/null)" = pvh ] || continue
    npvh=$((npvh + 1))
    lab-exec -n $d 'echo before-migrate > /run/lab/marker'
    id0=$(domid $d); t0=$(date +%s)
    if xl migrate -s '' $d 'xl migrate-receive' > /tmp/migrate-$d.log 2>&1; then
        id1=$(domid $d)
        other=domu1; [ $d = domu1 ] && other=domu2
        check "xl migrate (localhost) $d in $(( $(date +%s) - t0 )) s: domid $id0 -> $id1, marker kept, reachable from $other" \
            sh -c "[ '$id0' != '$id1' ] && [ \"\$(lab-exec -n -t 60 $d cat /run/lab/marker)\" = before-migrate ] && lab-exec -n -t 60 $other 'ping -c 2 -W 3 $d >/dev/null'"
    else
        bad "xl migrate $d: $(tail -3 /tmp/migrate-$d.log | tr '\n' ' ')"
    fi
done
[ $npvh = 0 ] && skp "xl migrate: no PVH DomU configured (LAB_DOMU_TYPE=pvh or LAB_DOMU<N>_TYPE=pvh); Debian's Xen cannot migrate PV guests"

# 7. xl destroy domu3, then re-create it from its config
d=domu3
if [ "$lifecycle" = 1 ] && echo " $LAB_DOMUS " | grep -q " $d "; then
    xl destroy $d
    check "xl destroy $d: domain gone" sh -c "! xl domid $d >/dev/null 2>&1"
    check "re-create $d (lab-create) and reach it" lab-create $d
fi

echo "canary so far: $(lab-canary status)"
echo "$pass passed, $fail failed, $skip skipped"
[ $fail = 0 ]
