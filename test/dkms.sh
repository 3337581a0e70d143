#!/bin/bash
# SPDX-License-Identifier: GPL-2.0
# DKMS packaging test (make dkms-check; a stage of make check). Needs root.
# Installs Debian's dkms if missing, then for each kernel release that
# test/kernels.sh names (their headers come from test/deps.sh):
#   dkms add (from /usr/src/xenvmc-VERSION, a copy of the git-tracked files
#   the build needs), dkms build -k REL, dkms install -k REL, checks the .ko
#   files under /lib/modules/REL/ and their modinfo, dkms remove --all.
# Also `make install` into a scratch INSTALL_MOD_PATH.  Always passes -k:
# the machine's own kernel has no headers.  Leaves no trace: the DKMS tree,
# /usr/src/xenvmc-* and a signing key dkms generated here are removed.
# Checks are `check NAME eval '...'`: the single quotes are meant.
# shellcheck disable=SC2016,SC2034,SC2317
set -u
top=$(cd "$(dirname "$0")/.." && pwd)
cd "$top" || exit 1
pass=0; fail=0
ok()  { echo "PASS: $*"; pass=$((pass + 1)); }
bad() { echo "FAIL: $*"; fail=$((fail + 1)); }
check() { local what=$1; shift; if "$@"; then ok "$what"; else bad "$what"; fi; }
finish() { echo "dkms: $(( $(date +%s) - t0 )) s"; echo "$pass passed, $fail failed"; [ "$fail" = 0 ]; exit; }
t0=$(date +%s)
log=$top/test/out/dkms
mkdir -p "$log"

[ "$(id -u)" = 0 ] || { bad "dkms test needs root"; finish; }
# one DKMS test at a time on this machine (the DKMS tree and /usr/src are shared)
exec 8> /run/xenvmc-dkms.lock
flock -n 8 || { echo "dkms: another DKMS test is running; waiting for it"; flock 8; }
if ! dpkg-query -W -f='${Status}' dkms 2>/dev/null | grep -q 'ok installed'; then
	echo "dkms: installing Debian's dkms"
	export DEBIAN_FRONTEND=noninteractive
	apt-get update -qq
	apt-get install -y -qq --no-install-recommends dkms > "$log/apt.log" 2>&1 ||
		{ cat "$log/apt.log"; bad "apt-get install dkms"; finish; }
fi
echo "dkms: $(dkms --version)"

conf_var() { sed -n "s/^$1=\"\\{0,1\\}\\([^\"]*\\)\"\\{0,1\\}\$/\\1/p" dkms.conf; }
src_version() { sed -n "s/^#define $1 \"\\(.*\\)\"\$/\\1/p" "$2"; }
name=$(conf_var PACKAGE_NAME)
ver=$(conf_var PACKAGE_VERSION)
vb=$(src_version VMCB_VERSION vmc_back.c)
vf=$(src_version VMCF_VERSION vmc_front.c)
check "dkms.conf: PACKAGE_NAME xenvmc" [ "$name" = xenvmc ]
newest=$(printf '%s\n%s\n' "$vb" "$vf" | sort -V | tail -n 1)
check "dkms.conf: PACKAGE_VERSION '$ver' is the newest module version (vmc_back $vb, vmc_front $vf)" \
	eval '[ -n "$ver" ] && [ "$ver" = "$newest" ]'
[ "$vb" = "$vf" ] || echo "NOTE: vmc_back.c says $vb, vmc_front.c says $vf"
check "dkms.conf: AUTOINSTALL=yes" [ "$(conf_var AUTOINSTALL)" = yes ]
if [ "$name" != xenvmc ] || [ -z "$ver" ]; then finish; fi

# The files the build needs, as git tracks them (a forgotten `git add` of a
# new header fails here, not in a user's dkms build).
if git -C "$top" rev-parse --git-dir > /dev/null 2>&1; then
	mapfile -t files < <(git -C "$top" ls-files | grep -E '^(Makefile|dkms\.conf|[^/]*\.[ch])$')
else
	files=(Makefile dkms.conf vmc_back.c vmc_front.c vmc_ring.h vmc_proto.h)
fi
echo "dkms: sources: ${files[*]}"
check "dkms.conf is tracked by git" eval 'printf "%s\n" "${files[@]}" | grep -qx dkms.conf'

key_existed=0
[ -e /var/lib/dkms/mok.key ] && key_existed=1
cleanup() {
	dkms remove "$name/$ver" --all > "$log/remove.log" 2>&1
	rm -rf /usr/src/"$name"-*
}
dkms status "$name" 2>/dev/null | grep -q . && { echo "dkms: removing a left-over $name"; cleanup; }
rm -rf /usr/src/"$name"-*
src=/usr/src/$name-$ver
mkdir -p "$src" && cp "${files[@]}" "$src/"
t=$(date +%s)
check "dkms add $name/$ver" eval 'dkms add "$name/$ver" > "$log/add.log" 2>&1 || { cat "$log/add.log"; false; }'

# modinfo_ok KO VERSION: description, author, license, version, every parameter described
modinfo_ok() {
	local ko=$1 want=$2 f v
	for f in description author license; do
		v=$(modinfo -F "$f" "$ko")
		[ -n "$v" ] || { echo "  $ko: no $f"; return 1; }
	done
	[ "$(modinfo -F license "$ko")" = GPL ] || { echo "  $ko: license $(modinfo -F license "$ko")"; return 1; }
	v=$(modinfo -F version "$ko")
	[ "$v" = "$want" ] || { echo "  $ko: version '$v', source says '$want'"; return 1; }
	# parm lines: "name:description (type)"; an undescribed one is "name: (type)"
	if modinfo -F parm "$ko" | grep -Ev '^[A-Za-z0-9_]+:[^ (]'; then
		echo "  $ko: parameter(s) above without a description"; return 1
	fi
}

rels=$("$top/test/kernels.sh")
[ -n "$rels" ] || { bad "test/kernels.sh names no kernel (run test/deps.sh)"; cleanup; finish; }
for rel in $rels; do
	[ -d "/usr/src/linux-headers-$rel" ] || { bad "$rel: no headers (test/deps.sh installs them)"; continue; }
	t=$(date +%s)
	if dkms build "$name/$ver" -k "$rel" > "$log/build-$rel.log" 2>&1; then
		ok "$rel: dkms build ($(( $(date +%s) - t )) s)"
	else
		tail -n 30 "$log/build-$rel.log"
		find /var/lib/dkms/"$name"/"$ver"/build -name make.log -exec tail -n 30 {} \; 2>/dev/null
		bad "$rel: dkms build"; continue
	fi
	check "$rel: dkms install" eval 'dkms install "$name/$ver" -k "$rel" > "$log/install-$rel.log" 2>&1 || { tail -n 20 "$log/install-$rel.log"; false; }'
	check "$rel: dkms status says installed" eval 'dkms status "$name/$ver" -k "$rel" | grep -q ": installed"'
	for m in vmc_back:"$vb" vmc_front:"$vf"; do
		mod=${m%%:*}
		ko=$(find "/lib/modules/$rel/" -name "$mod.ko*" -path '*dkms*' | head -n 1)
		check "$rel: $mod.ko installed under /lib/modules/$rel/ (${ko#/lib/modules/"$rel"/})" [ -n "$ko" ]
		[ -n "$ko" ] || continue
		check "$rel: $mod.ko modinfo: description, author, GPL, version ${m#*:}, every parameter described" \
			modinfo_ok "$ko" "${m#*:}"
		check "$rel: $mod.ko vermagic $rel" eval '[ "$(modinfo -F vermagic "$ko" | cut -d" " -f1)" = "$rel" ]'
		check "$rel: modules.dep lists $mod" grep -q "/$mod.ko" "/lib/modules/$rel/modules.dep"
		# dkms signs what it builds whenever the kernel's sign-file exists
		# (the README's Secure Boot section relies on it)
		if [ -f /var/lib/dkms/mok.pub ]; then
			serial=$(openssl x509 -inform DER -in /var/lib/dkms/mok.pub -noout -serial 2>/dev/null | sed 's/^serial=//')
			check "$rel: $mod.ko signed with /var/lib/dkms/mok.pub (signer '$(modinfo -F signer "$ko")')" \
				eval '[ -n "$serial" ] && [ "$(modinfo -F sig_key "$ko" | tr -d ":\n")" = "$serial" ]'
		fi
	done
done

t=$(date +%s)
cleanup
check "dkms remove --all: nothing left in the DKMS tree" eval '! dkms status "$name" | grep -q .'
for rel in $rels; do
	check "$rel: no $name module left under /lib/modules/$rel/updates/dkms" \
		eval '[ -z "$(find "/lib/modules/$rel/updates/dkms" -name "vmc_*" 2>/dev/null)" ]'
	check "$rel: modules.dep no longer lists them" eval '! grep -q "/vmc_[a-z]*\.ko" "/lib/modules/$rel/modules.dep"'
done
check "/usr/src/$name-* removed" eval '[ -z "$(ls -d /usr/src/"$name"-* 2>/dev/null)" ]'
if [ "$key_existed" = 0 ] && [ -e /var/lib/dkms/mok.key ]; then
	rm -f /var/lib/dkms/mok.key /var/lib/dkms/mok.pub
	echo "dkms: removed the signing key dkms generated during this test"
fi

# make install (modules_install + depmod) into a scratch tree, for each release
scratch=$(mktemp -d)
for rel in $rels; do
	[ -d "/usr/src/linux-headers-$rel" ] || continue
	b=$scratch/src-$rel
	mkdir -p "$b" && cp "${files[@]}" "$b/"
	if make -C "$b" KDIR="/usr/src/linux-headers-$rel" INSTALL_MOD_PATH="$scratch/root" install \
			> "$log/make-install-$rel.log" 2>&1; then
		n=$(find "$scratch/root/lib/modules/$rel" -name 'vmc_*.ko*' | wc -l)
		check "$rel: make install puts 2 modules under lib/modules/$rel/ ($n) and depmod lists them" \
			eval '[ "$n" = 2 ] && [ "$(grep -c "/vmc_[a-z]*\.ko" "$scratch/root/lib/modules/$rel/modules.dep")" = 2 ]'
	else
		tail -n 20 "$log/make-install-$rel.log"; bad "$rel: make install"
	fi
done
rm -rf "$scratch"
finish
