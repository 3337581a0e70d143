#!/bin/bash
# SPDX-License-Identifier: GPL-2.0
# Runs the user-space tests built by test/Makefile (in test/out/) and prints,
# as its last line, "N passed, N failed": the test cases of all programs.
#
#   run-unit.sh all    ring_test, proto_test, back_model, ring_stress, fuzz smoke
#   run-unit.sh smoke  only the libFuzzer targets, from a fresh corpus copy
#   run-unit.sh fuzz   only the libFuzzer targets, corpus kept in
#                      out/fuzz-corpus/ across runs (for long runs)
#
# A program prints "ok NAME" / "FAIL NAME: why" per test case; one that
# exits non-zero without a FAIL line (crash, sanitizer report, missing
# binary) counts one failure.  Each libFuzzer run is one test case:
# FUZZ_RUNS inputs (default 200000; FUZZ_RUNS_<target> overrides it for one
# target) from a copy of fuzz/corpus/TARGET in out/, so the committed corpus
# is never written; FUZZ_SEED fixes the seed.
set -u
cd "$(dirname "$0")" || exit 2
mode=${1:-all}
out=out
runs=${FUZZ_RUNS:-200000}
fuzz_targets="fuzz_ring fuzz_proto fuzz_xs fuzz_dgram"
passed=0
failed=0
mkdir -p "$out"

# run_prog NAME CMD...: run, show and log its output, count its cases.
run_prog() {
	local name=$1 log=$out/$1.log rc p f t0=$SECONDS
	shift
	if [ ! -x "$1" ]; then
		echo "FAIL $name: $1 not built"
		failed=$((failed + 1))
		return
	fi
	"$@" 2>&1 | tee "$log"
	rc=${PIPESTATUS[0]}
	p=$(grep -c '^ok ' "$log")
	f=$(grep -c '^FAIL ' "$log")
	if [ "$rc" -ne 0 ] && [ "$f" -eq 0 ]; then
		echo "FAIL $name: exit status $rc (see test/$log)"
		f=1
	fi
	echo "# $name: $p ok, $f FAIL, $((SECONDS - t0)) s"
	passed=$((passed + p))
	failed=$((failed + f))
}

# fuzz_start TARGET: start a bounded libFuzzer run in the background.
declare -A fuzz_pid fuzz_runs
fuzz_start() {
	local t=$1 corpus max_len runs_var=FUZZ_RUNS_$1
	if [ ! -x "$out/$t" ]; then
		fuzz_pid[$t]=none
		return
	fi
	if [ "$mode" != fuzz ]; then
		corpus=$out/corpus/$t		# fresh copy per smoke run
		rm -rf "$corpus"
	else
		corpus=$out/fuzz-corpus/$t	# grows across long runs
	fi
	mkdir -p "$corpus" "$out/fuzz-artifacts"
	cp -n fuzz/corpus/"$t"/* "$corpus"/ 2>/dev/null
	case $t in
	fuzz_proto) max_len=512 ;;	# messages are at most 144 bytes
	fuzz_xs) max_len=1024 ;;	# values at most ~600
	fuzz_dgram) max_len=65600 ;;	# IPv6 header + 64 KiB
	*) max_len=2048 ;;
	esac
	fuzz_runs[$t]=${!runs_var:-$runs}
	"$out/$t" -runs="${fuzz_runs[$t]}" -max_len=$max_len -timeout=20 \
		-rss_limit_mb=2048 -print_final_stats=1 \
		${FUZZ_SEED:+-seed=$FUZZ_SEED} \
		-artifact_prefix="$out/fuzz-artifacts/$t-" \
		"$corpus" >"$out/$t.log" 2>&1 &
	fuzz_pid[$t]=$!
}

# fuzz_finish TARGET: wait for it and count it as one test case.
fuzz_finish() {
	local t=$1 log=$out/$1.log rc stats seed crash
	if [ "${fuzz_pid[$t]}" = none ]; then
		echo "FAIL $t: $out/$t not built"
		failed=$((failed + 1))
		return
	fi
	wait "${fuzz_pid[$t]}"
	rc=$?
	stats=$(grep -E '^#[0-9]+[[:space:]]+DONE' "$log" | tail -n 1 |
		sed 's/[[:space:]]\+/ /g')
	seed=$(sed -n 's/.*INFO: Seed: \([0-9]*\).*/\1/p' "$log" | head -n 1)
	if [ "$rc" -eq 0 ] && [ -n "$stats" ]; then
		echo "ok $t (${fuzz_runs[$t]} runs, seed $seed)"
		echo "# $t: $stats"
		grep -E '^(Done [0-9]+ runs|stat::number_of_executed_units|stat::peak_rss_mb)' "$log" | sed 's/^/# /'
		passed=$((passed + 1))
	else
		crash=$(sed -n 's/.*Test unit written to \(.*\)/\1/p' "$log" | tail -n 1)
		echo "FAIL $t: exit status $rc, seed $seed${crash:+, input $crash} (see test/$log)"
		grep -E 'fuzz_[a-z]+: |ERROR: |SUMMARY: |runtime error' "$log" | head -n 5 | sed 's/^/# /'
		failed=$((failed + 1))
	fi
}

if [ "$mode" = all ]; then
	run_prog ring_test "$out/ring_test"
	run_prog proto_test "$out/proto_test"
	run_prog back_model "$out/back_model"
	TSAN_OPTIONS="halt_on_error=1 second_deadlock_stack=1 ${TSAN_OPTIONS:-}" \
		run_prog ring_stress "$out/ring_stress"
fi
case $mode in
all|smoke|fuzz)
	# The targets run side by side.
	for t in $fuzz_targets; do
		fuzz_start "$t"
	done
	for t in $fuzz_targets; do
		fuzz_finish "$t"
	done
	;;
*)
	echo "usage: $0 [all|smoke|fuzz]" >&2
	exit 2
	;;
esac

echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
