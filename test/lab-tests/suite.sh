#!/bin/bash
# The lab part of `make check`: one boot, every lab test in turn.  Runs in
# Dom0 (test/lab.sh run test/lab-tests/suite.sh test/lab-tests/*.sh).
# Order matters: smoke, revert and migrate last, since they save, restore
# and destroy DomUs (each re-creates what it destroyed).
# Each test's "N passed, N failed" is added up; the last line is the total.
order=${LAB_SUITE:-"membership.sh tcp.sh udp.sh hostile.sh limits.sh tcpsem.sh tcpstress.sh smoke.sh revert.sh migrate.sh"}
passed=0; failed=0
times=""
# Each PASS/FAIL line gets the seconds since its test began: where a test's
# time goes, for keeping the suite inside CI's limit.
stamp() {
	local l t0=$SECONDS
	while IFS= read -r l; do
		case $l in
		PASS:* | FAIL:*) echo "$l [$((SECONDS - t0)) s]" ;;
		*) echo "$l" ;;
		esac
	done
}
for t in $order; do
	t0=$(date +%s)
	f=$LAB_FILES/$t
	echo "=== lab test $t"
	if [ ! -f "$f" ]; then
		echo "=== $t: missing"; failed=$((failed + 1)); continue
	fi
	out=$(mktemp)
	timeout -k 10 "${LAB_ONE_TIMEOUT:-1500}" bash "$f" < /dev/null 2>&1 | stamp | tee "$out"
	rc=${PIPESTATUS[0]}
	read -r p f_ < <(sed -n 's/^\([0-9]\+\) passed, \([0-9]\+\) failed.*/\1 \2/p' "$out" | tail -n 1)
	rm -f "$out"
	if [ -z "${p:-}" ]; then
		echo "=== $t: no result line (exit $rc): 1 failure"
		failed=$((failed + 1))
		times="$times ${t%.sh} $(( $(date +%s) - t0 ))s"
		continue
	fi
	passed=$((passed + p)); failed=$((failed + f_))
	[ "$rc" -ne 0 ] && [ "$f_" -eq 0 ] && failed=$((failed + 1))
	echo "=== $t: $p passed, $f_ failed (exit $rc, $(( $(date +%s) - t0 )) s)"
	times="$times ${t%.sh} $(( $(date +%s) - t0 ))s"
	# Each test starts from the same state: modules loaded, defaults.
	lab-unload front > /dev/null 2>&1
	lab-load all > /dev/null 2>&1
done
# One line with every test's time, so that CI's tail shows where it went.
echo "=== suite times:$times"
echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
