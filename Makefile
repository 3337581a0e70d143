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
#   make lab / bench / demo
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

else

# KDIR: the running kernel's build tree if there is one, else the newest
# installed Debian linux-headers-*-amd64.
KDIR ?= $(or $(wildcard /lib/modules/$(shell uname -r)/build), \
	$(lastword $(shell ls -d /usr/src/linux-headers-*-amd64 2>/dev/null | \
		grep -v -e -cloud- -e -rt- | sort -V)))

.PHONY: all modules clean check deps unit fuzz modules-all checkpatch lab bench demo

all: modules

modules:
	@test -n "$(KDIR)" || { echo "xenvmc: no kernel headers found: apt-get install linux-headers-amd64 (or make KDIR=/path/to/build)" >&2; exit 1; }
	$(MAKE) -C $(KDIR) M=$(CURDIR) modules

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

demo: modules-all
	test/lab.sh demo

check:
	test/check.sh

endif
