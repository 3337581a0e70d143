#!/bin/bash
# PVH probe (runs in Dom0): how often do the lab's PVH DomUs survive localhost live migration under
# TCG, with or without XenVMC loaded?  An experiment on the lab, not a test of XenVMC: it migrates
# each PVH DomU LAB_PVH_ROUNDS times (default 5) with light traffic between the DomUs, and tallies
# migrations that completed with the guest alive against guests that died (triple fault or other).
#   LAB_DOMU_TYPE=pvh LAB_NUM_DOMUS=2 [LAB_MODULES=none] LAB_RETRIES=0 \
#       test/lab.sh run test/lab/pvh-probe.sh
# Prints "pvh-probe: modules=<m> migrations ok=<n> died=<n> (where)" and fails if a guest died.
rounds=${LAB_PVH_ROUNDS:-5}
mods=$(lab-exec -n -t 30 domu1 "grep -c '^vmc_front ' /proc/modules" 2>/dev/null)
echo "pvh-probe: DomUs $LAB_DOMUS, vmc_front in domu1: ${mods:-?}, $rounds rounds"
ok=0; died=0; where=""
alive() { xl list "$1" 2>/dev/null | awk 'NR == 2 { exit ($5 ~ /c/) }' && lab-exec -n -t 60 "$1" true; }
for r in $(seq 1 "$rounds"); do
    for d in $LAB_DOMUS; do
        [ "$(cat /run/lab/type-$d 2>/dev/null)" = pvh ] || continue
        other=domu1; [ "$d" = domu1 ] && other=domu2
        # light traffic across the migration: a ping flood-ish loop from the other DomU
        lab-exec -n -t 120 "$other" "ping -i 0.2 -w 40 $d > /dev/null" &
        pp=$!
        t0=$(date +%s)
        if xl migrate -s '' "$d" 'xl migrate-receive' > /tmp/pvh-migrate.log 2>&1 && alive "$d"; then
            ok=$((ok + 1)); echo "round $r $d: migrated in $(( $(date +%s) - t0 )) s, alive"
        else
            died=$((died + 1)); where="$where $d@round$r"
            echo "round $r $d: FAILED after $(( $(date +%s) - t0 )) s: $(tail -2 /tmp/pvh-migrate.log | tr '\n' ' ')"
            xl list
            kill $pp 2>/dev/null; wait $pp 2>/dev/null
            break 2
        fi
        wait $pp 2>/dev/null
    done
done
xl dmesg | grep -E -i 'triple fault|domain_crash' | tail -3
echo "pvh-probe: modules=${mods:-?} migrations ok=$ok died=$died${where:+ ($where)}"
[ $died = 0 ]
