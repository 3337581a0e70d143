#!/bin/sh
# SPDX-License-Identifier: GPL-2.0
# Builds both modules with W=1 C=1 (sparse) for every kernel release that
# test/kernels.sh names (or those given as arguments), each in
# build/<release>/ (or $XENVMC_BUILD/<release>/), and fails on any compiler
# or sparse warning.
set -eu
top=$(cd "$(dirname "$0")/.." && pwd)
rels=${*:-$("$top/test/kernels.sh")}
[ -n "$rels" ] || { echo "kbuild: no kernel release found (run test/deps.sh)" >&2; exit 1; }
status=0
for rel in $rels; do
	kdir=/usr/src/linux-headers-$rel
	[ -d "$kdir" ] || { echo "kbuild: $kdir missing: apt-get install linux-headers-$rel" >&2; exit 1; }
	out=${XENVMC_BUILD:-$top/build}/$rel
	mkdir -p "$out"
	cp "$top"/Makefile "$top"/vmc_back.c "$top"/vmc_front.c \
	   "$top"/vmc_ring.h "$top"/vmc_proto.h "$out"/
	log=$out/build.log
	if ! make -C "$kdir" M="$out" W=1 C=1 modules >"$log" 2>&1; then
		cat "$log"; echo "kbuild: $rel: build FAILED"; status=1; continue
	fi
	if grep -E 'warning|error' "$log"; then
		echo "kbuild: $rel: warnings (see $log)"; status=1; continue
	fi
	echo "kbuild: $rel: vmc_back.ko vmc_front.ko built, W=1 C=1 clean"
	# The test-only misbehaving frontend (VMC_EVIL=1) for the lab's
	# hostile-peer test, held to the same standard.
	mkdir -p "$out/evil"
	cp "$out"/Makefile "$out"/*.c "$out"/*.h "$out/evil/"
	log=$out/evil/build.log
	if ! make -C "$kdir" M="$out/evil" W=1 C=1 VMC_EVIL=1 modules >"$log" 2>&1 ||
	   grep -E 'warning|error' "$log"; then
		cat "$log"; echo "kbuild: $rel: test build VMC_EVIL=1 FAILED"; status=1; continue
	fi
	rm -f "$out/evil/vmc_back.ko"
	echo "kbuild: $rel: evil/vmc_front.ko (test build VMC_EVIL=1) built, W=1 C=1 clean"
done
exit $status
