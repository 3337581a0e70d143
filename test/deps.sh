#!/bin/sh
# SPDX-License-Identifier: GPL-2.0
# Installs, from Debian's archive, what building and unit-testing XenVMC
# needs; idempotent (apt-get runs only when something is missing).  The lab
# installs its own packages (test/lab.sh).
set -eu
pkgs="make gcc libc6-dev perl xz-utils sparse linux-source-6.1 clang libclang-rt-14-dev
linux-headers-amd64 linux-headers-6.12-amd64"
missing=
for p in $pkgs; do
	dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'ok installed' ||
		missing="$missing $p"
done
if [ -z "$missing" ]; then
	echo "deps: all build and test packages present"
	exit 0
fi
echo "deps: installing$missing"
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
# shellcheck disable=SC2086
apt-get install -y -qq --no-install-recommends $missing >/dev/null
# The header meta packages may have moved on; make sure each series' headers
# named by test/kernels.sh are installed.
for rel in $("$(dirname "$0")/kernels.sh"); do
	[ -d "/usr/src/linux-headers-$rel" ] ||
		apt-get install -y -qq --no-install-recommends "linux-headers-$rel" >/dev/null
done
echo "deps: done"
