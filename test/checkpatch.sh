#!/bin/sh
# SPDX-License-Identifier: GPL-2.0
# Runs checkpatch.pl --strict (from Debian's linux-source-6.1, unpacked once
# into a cache) on every kernel source of XenVMC.  Fails on any report,
# except one whose line is preceded by a comment that justifies it:
#   /* checkpatch-ok TYPE: the reason */
set -eu
top=$(cd "$(dirname "$0")/.." && pwd)
cache=${XENVMC_CACHE:-/var/cache/xenvmc}/checkpatch
tarball=$(ls /usr/src/linux-source-6.1.tar.xz 2>/dev/null || true)
[ -n "$tarball" ] || { echo "checkpatch: apt-get install linux-source-6.1" >&2; exit 1; }
cp=$cache/linux-source-6.1/scripts/checkpatch.pl
if [ ! -x "$cp" ] || [ "$tarball" -nt "$cp" ]; then
	mkdir -p "$cache"
	tar -xJf "$tarball" -C "$cache" linux-source-6.1/scripts
	touch "$cp"
fi
cd "$top"
status=0
for f in vmc_back.c vmc_front.c vmc_ring.h vmc_proto.h; do
	out=$(perl "$cp" --no-tree --strict --terse --show-types -f "$f" || true)
	bad=0
	for ln in $(echo "$out" | sed -n "s/^$f:\([0-9]*\): .*/\1/p"); do
		line=$(echo "$out" | grep "^$f:$ln: ")
		type=$(echo "$line" | sed -n 's/^[^ ]* [A-Z]*:\([A-Z_]*\):.*/\1/p')
		if [ "$ln" -gt 1 ] &&
		   sed -n "$((ln - 1))p" "$f" | grep -q "checkpatch-ok $type:"; then
			echo "checkpatch: $line (justified by the comment above it)"
		else
			echo "$line"
			bad=$((bad + 1))
		fi
	done
	if [ "$bad" -eq 0 ]; then
		echo "checkpatch: $f: clean"
	else
		status=1
	fi
done
exit $status
