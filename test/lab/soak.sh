#!/bin/bash
# Reliability soak of the lab itself: run the smoke test N times (no retries, so every attempt counts)
# alternating a PV configuration (6.1 + 6.12 DomUs) and a PVH one (localhost migration), and tally the
# verdicts: canary (LAB UNRELIABLE), PVH guest crashes, boot failures, test failures.
#   test/lab/soak.sh [N]        (default 20; results under ${LAB_SOAK_DIR:-test/results/soak-<time>})
set -u
N=${1:-20}
here=$(cd "$(dirname "$0")" && pwd); repo=$(dirname "$(dirname "$here")")
dir=${LAB_SOAK_DIR:-$repo/test/results/soak-$(date +%Y%m%d-%H%M%S)}
mkdir -p "$dir"
declare -A count=()
for i in $(seq 1 "$N"); do
    if [ $((i % 2)) = 1 ]; then cfg="pv"; envs=(LAB_DOMU_TYPE=pv LAB_DOMU2_KERNEL=6.12)
    else cfg="pvh"; envs=(LAB_DOMU_TYPE=pvh LAB_DOMU3_KERNEL=6.12); fi
    t0=$(date +%s)
    env "${envs[@]}" LAB_RETRIES=0 LAB_MODULES=${LAB_MODULES:-none} LAB_RESULTS="$dir/run-$i-$cfg" \
        "$repo/test/lab.sh" run "$repo/test/lab-tests/smoke.sh" > "$dir/run-$i-$cfg.log" 2>&1
    rc=$?
    count[$rc]=$(( ${count[$rc]:-0} + 1 ))
    verdict=$(sed -n 's/^verdict: //p' "$dir/run-$i-$cfg/summary.txt" 2>/dev/null | head -1)
    canary=$(grep -h '^canary: ' "$dir/run-$i-$cfg/attempt-1/summary.txt" 2>/dev/null | tr '\n' ' ')
    echo "run $i ($cfg): exit $rc in $(( $(date +%s) - t0 )) s: $verdict | $canary" | tee -a "$dir/soak.txt"
done
{ echo "soak: $N runs:"; for rc in "${!count[@]}"; do echo "  exit $rc: ${count[$rc]}"; done; } | tee -a "$dir/soak.txt"
