#!/bin/sh
# SPDX-License-Identifier: GPL-2.0
# Prints the Debian kernel releases XenVMC is built and tested for, one per
# line: the 6.1 series (linux-headers-amd64) and the 6.12 series
# (linux-headers-6.12-amd64), resolved from the package metadata so a new
# Debian point release is picked up without editing this file.
set -eu
for meta in linux-headers-amd64 linux-headers-6.12-amd64; do
	apt-cache depends "$meta" 2>/dev/null |
		sed -n 's/^ *Depends: linux-headers-\(.*-amd64\)$/\1/p' | head -n 1
done
