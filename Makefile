# SPDX-License-Identifier: GPL-2.0
#
# XenVMC: vmc_back.ko (Dom0) and vmc_front.ko (DomU).
#
#   make                 build both modules against KDIR (see below)
#   make KDIR=/path      build against that kernel build tree
#   make check           the test command: deps, both kernel series, unit, lab
#   make unit            user-space ring/protocol tests, TSan stress, fuzz smoke
#   make fuzz            longer libFuzzer runs (FUZZ_RUNS per target)
#   make modules-all     W=1 C=1 builds for every series in test/kernels.sh
#   make install         modules_install into KDIR's kernel (extra/ or updates/), depmod
#   make dkms-install    register with DKMS, build and install for KDIR's kernel
#   make dkms-remove     remove every DKMS build and /usr/src/xenvmc-*
#   make dkms-check      the DKMS packaging test (root; both kernel series)
#   make lab / bench / demo
#   make migrate         PVH live migration under load (lab; not in check, see below)
#
# Kbuild part: the kernel's make reads this file again with KERNELRELEASE set.
ifneq ($(KERNELRELEASE),)

obj-m := vmc_back.o vmc_front.o
ccflags-y := -I$(src)

# Kernel API differences between the 6.1 and 6.12 series, decided here once
# so the C files test feature names instead of version numbers:
#   VMCF_HAVE_SENDPAGE   struct proto has .sendpage (removed in 6.5)
#   VMCF_IOCTL_KARG      proto.ioctl takes int *karg (6.5 on)
#   VMCF_HAVE_PEEK_OFF   proto_ops has .set_peek_off for TCP (6.10 on)
vmc_kv := $(shell echo $$(( $(VERSION) * 256 + $(PATCHLEVEL) )))
ifeq ($(shell test $(vmc_kv) -lt $$(( 6 * 256 + 5 )) && echo y),y)
ccflags-y += -DVMCF_HAVE_SENDPAGE
else
ccflags-y += -DVMCF_IOCTL_KARG
endif
ifeq ($(shell test $(vmc_kv) -ge $$(( 6 * 256 + 10 )) && echo y),y)
ccflags-y += -DVMCF_HAVE_PEEK_OFF
endif
# VMC_EVIL=1: the test-only misbehaving frontend (vmc_front.c, VMCF_EVIL)
ifeq ($(VMC_EVIL),1)
ccflags-y += -DVMCF_EVIL
endif

else

# KDIR: the running kernel's build tree if there is one, else the newest
# installed Debian linux-headers-*-amd64.
KDIR ?= $(or $(wildcard /lib/modules/$(shell uname -r)/build), \
	$(lastword $(shell ls -d /usr/src/linux-headers-*-amd64 2>/dev/null | \
		grep -v -e -cloud- -e -rt- | sort -V)))

.PHONY: all modules clean check deps unit fuzz modules-all checkpatch lab bench demo migrate
.PHONY: install dkms-install dkms-remove dkms-check

# The release of KDIR's kernel, and the DKMS package (dkms.conf).
KRELEASE = $(shell sed -n 's/^\#define UTS_RELEASE "\(.*\)"/\1/p' $(KDIR)/include/generated/utsrelease.h 2>/dev/null)
# modules_install signs only with the kernel's own build key, which a
# distribution's headers do not ship: then it does not try (README: Secure Boot).
SIGN_KEY = $(shell sed -n 's/^CONFIG_MODULE_SIG_KEY="\(.*\)"/\1/p' $(KDIR)/.config 2>/dev/null)
NOSIGN = $(if $(wildcard $(KDIR)/$(SIGN_KEY)),,CONFIG_MODULE_SIG_ALL=)
DKMS_VERSION = $(shell sed -n 's/^PACKAGE_VERSION="\(.*\)"/\1/p' $(CURDIR)/dkms.conf)
DKMS_SRC = /usr/src/xenvmc-$(DKMS_VERSION)
DKMS_FILES = Makefile dkms.conf vmc_back.c vmc_front.c vmc_ring.h vmc_proto.h

all: modules

modules:
	@test -n "$(KDIR)" || { echo "xenvmc: no kernel headers found: apt-get install linux-headers-amd64 (or make KDIR=/path/to/build)" >&2; exit 1; }
	$(MAKE) -C $(KDIR) M=$(CURDIR) modules

install: modules
	$(MAKE) -C $(KDIR) M=$(CURDIR) $(NOSIGN) modules_install
	depmod $(if $(INSTALL_MOD_PATH),-b $(INSTALL_MOD_PATH)) -a $(KRELEASE)

dkms-install:
	@test -n "$(KRELEASE)" || { echo "xenvmc: no kernel release for KDIR '$(KDIR)'" >&2; exit 1; }
	dkms status xenvmc/$(DKMS_VERSION) | grep -q . && dkms remove xenvmc/$(DKMS_VERSION) --all || true
	rm -rf $(DKMS_SRC) && mkdir -p $(DKMS_SRC) && cp $(DKMS_FILES) $(DKMS_SRC)/
	dkms add xenvmc/$(DKMS_VERSION)
	dkms install xenvmc/$(DKMS_VERSION) -k $(KRELEASE)

dkms-remove:
	-dkms remove xenvmc/$(DKMS_VERSION) --all
	rm -rf /usr/src/xenvmc-*

dkms-check:
	test/dkms.sh

clean:
	@if [ -n "$(KDIR)" ]; then $(MAKE) -C $(KDIR) M=$(CURDIR) clean; fi
	rm -rf build test/out

deps:
	test/deps.sh

modules-all:
	test/kbuild.sh

checkpatch:
	test/checkpatch.sh

unit:
	$(MAKE) --no-print-directory -C test unit

fuzz:
	$(MAKE) --no-print-directory -C test fuzz

lab:
	test/lab.sh build

bench: modules-all
	test/lab.sh bench

demo: deps modules-all
	test/lab.sh demo

check:
	test/check.sh

# The back-to-the-network tests (revert.sh, migrate.sh) with PVH domu1 and
# domu2 (domu3, only destroyed, stays PV: one guest fewer to crash): 20
# localhost live migrations under load, alternating domu1 and domu2, and the
# migration timing.  Not part of check: under TCG the lab's PVH guests
# triple-fault in some boots (an emulator problem, seen without XenVMC),
# which the lab reports as PVH GUEST CRASH and retries.
migrate: deps modules-all
	LAB_DOMU1_TYPE=pvh LAB_DOMU2_TYPE=pvh LAB_SUITE="revert.sh migrate.sh" \
	LAB_REVERT_CYCLES=$${LAB_REVERT_CYCLES:-20} LAB_RETRIES=$${LAB_RETRIES:-2} \
	LAB_ONE_TIMEOUT=$${LAB_ONE_TIMEOUT:-3600} LAB_TEST_TIMEOUT=$${LAB_TEST_TIMEOUT:-5400} \
	LAB_TIMEOUT=$${LAB_TIMEOUT:-6600} \
	test/lab.sh run test/lab-tests/suite.sh test/lab-tests/*.sh

endif
