# CubeOS - the one entry point. See README.md.
#
#   make deps    install build and test dependencies (idempotent)
#   make         build every binary that exists
#   make run     boot the appliance image (qcow2) in QEMU, serial console on stdio
#   make image   build the appliance image (build/image/cubeos.qcow2)
#   make test    format check, unit tests (ASan/UBSan), fuzz pass, kernel tests,
#                third-party builds + smoke tests, SDK suites (JS and Python),
#                the VMM tests in a nested L1 (qemu-tests/), the image boot tests
#   make bench   benchmarks, printed as tables (agent, VMM in L1, appliance boot)

CUBEOS_CACHE ?= /var/cache/cubeos
export CUBEOS_CACHE

BUILD   := build
CC      := musl-gcc
WARN    := -Wall -Wextra -Werror -Wshadow -Wno-unused-parameter
CFLAGS  ?= -O2 -g
# musl ships no kernel UAPI headers: borrow only linux/, asm/ and asm-generic/
# from Debian's linux-libc-dev, never glibc's own headers.
KINC    := $(BUILD)/kinc
CFLAGS  += -std=gnu11 -D_GNU_SOURCE $(WARN) -fno-strict-aliasing -isystem $(KINC)
LDFLAGS += -static

# Unit tests and fuzzers build with clang against glibc: musl has no
# sanitizer runtimes.
HOSTCC     := clang
SAN_FLAGS  := -std=gnu11 -D_GNU_SOURCE $(WARN) -g -O1 -fsanitize=address,undefined -fno-omit-frame-pointer \
              -fno-sanitize-recover=all
FUZZ_FLAGS := -std=gnu11 -D_GNU_SOURCE -g -O1 -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=all

LIB_SRCS   := $(wildcard lib/*.c)
LIB_OBJS   := $(LIB_SRCS:%.c=$(BUILD)/%.o)
AGENT_SRCS := $(wildcard agent/*.c)
AGENT_OBJS := $(AGENT_SRCS:%.c=$(BUILD)/%.o) $(BUILD)/agent/kernel_py.o

BINS := $(BUILD)/cube-agent $(BUILD)/cube-bench

.PHONY: all deps run run-agent test unit fuzz sdk kernel-test bench clean format format-check thirdparty thirdparty-test
all: $(BINS)

include thirdparty/thirdparty.mk

$(KINC)/.stamp:
	@mkdir -p $(KINC)
	ln -sfn /usr/include/linux $(KINC)/linux
	ln -sfn /usr/include/asm-generic $(KINC)/asm-generic
	ln -sfn /usr/include/$$(gcc -print-multiarch)/asm $(KINC)/asm
	@touch $@

$(BUILD)/%.o: %.c $(wildcard lib/*.h agent/*.h) $(KINC)/.stamp
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -c -o $@ $<

# The interpreter kernel (Python) is embedded in the agent binary.
$(BUILD)/agent/kernel_py.o: agent/interp/kernel.py
	@mkdir -p $(dir $@)
	printf '.section .note.GNU-stack,"",@progbits\n.section .rodata\n.global interp_kernel_py\ninterp_kernel_py:\n.incbin "%s"\n.byte 0\n' $< \
	  | $(CC) -c -x assembler -o $@ -

$(BUILD)/libcube.a: $(LIB_OBJS)
	ar rcs $@ $^

$(BUILD)/cube-agent: $(AGENT_OBJS) $(BUILD)/libcube.a
	$(CC) $(LDFLAGS) -o $@ $^

$(BUILD)/cube-bench: $(BUILD)/tools/bench.o $(BUILD)/libcube.a
	$(CC) $(LDFLAGS) -o $@ $^

# --- dependencies -----------------------------------------------------------
DEB_PKGS := $(shell cat deps.txt */deps.txt agent/tests/deps.txt 2>/dev/null | grep -v '^\#' | sort -u)
deps:
	@missing=""; for p in $(DEB_PKGS); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
	  echo "deps: installing$$missing"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing; \
	else echo "deps: Debian packages present"; fi
	bash agent/tests/sdk-deps.sh

run: image
	bash image/run.sh $(BUILD)/image/cubeos.qcow2

run-agent: $(BUILD)/cube-agent
	bash agent/run-local.sh

# --- tests ------------------------------------------------------------------
# Agent tests and fuzzers (agent/tests/unit, agent/fuzz) link the library plus
# the agent sources that stand alone (no agent state, no event loop).
AGENT_UNIT_SRCS := agent/multipart.c agent/portbridge.c
UNIT_TESTS := $(patsubst lib/tests/%.c,$(BUILD)/san/%,$(wildcard lib/tests/test_*.c)) \
              $(patsubst agent/tests/unit/%.c,$(BUILD)/san/agent/%,$(wildcard agent/tests/unit/test_*.c))
FUZZERS    := $(patsubst lib/fuzz/%.c,$(BUILD)/fuzz/%,$(wildcard lib/fuzz/fuzz_*.c)) \
              $(patsubst agent/fuzz/%.c,$(BUILD)/fuzz/agent/%,$(wildcard agent/fuzz/fuzz_*.c))

include vmm/vmm.mk
include cubeos/cubeos.mk
include api/api.mk
include net/net.mk
-include kernel/kernel.mk initramfs/initramfs.mk qemu-tests/qemu-tests.mk image/image.mk

$(BUILD)/san/test_%: lib/tests/test_%.c $(LIB_SRCS) $(wildcard lib/*.h lib/fuzz/*.h) lib/tests/test.h
	@mkdir -p $(dir $@)
	$(HOSTCC) $(SAN_FLAGS) -o $@ $< $(LIB_SRCS)

$(BUILD)/fuzz/fuzz_%: lib/fuzz/fuzz_%.c $(LIB_SRCS) $(wildcard lib/*.h lib/fuzz/*.h)
	@mkdir -p $(dir $@)
	$(HOSTCC) $(FUZZ_FLAGS) -o $@ $< $(LIB_SRCS)

$(BUILD)/san/agent/test_%: agent/tests/unit/test_%.c $(LIB_SRCS) $(AGENT_UNIT_SRCS) $(wildcard lib/*.h agent/*.h) \
                           lib/tests/test.h
	@mkdir -p $(dir $@)
	$(HOSTCC) $(SAN_FLAGS) -o $@ $< $(LIB_SRCS) $(AGENT_UNIT_SRCS)

$(BUILD)/fuzz/agent/fuzz_%: agent/fuzz/fuzz_%.c $(LIB_SRCS) $(AGENT_UNIT_SRCS) $(wildcard lib/*.h agent/*.h)
	@mkdir -p $(dir $@)
	$(HOSTCC) $(FUZZ_FLAGS) -o $@ $< $(LIB_SRCS) $(AGENT_UNIT_SRCS)

unit: $(UNIT_TESTS)
	@bash lib/tests/run.sh $(UNIT_TESTS)

FUZZ_SECONDS ?= 20
fuzz: $(FUZZERS)
	@bash lib/fuzz/run.sh $(FUZZ_SECONDS) $(FUZZERS)

sdk: $(BUILD)/cube-agent
	bash agent/tests/run-sdk.sh

# The interpreter kernel's own tests: pytest from the SDK suites' venv, the
# kernel itself on Debian's python3 (what templates ship).
PY_VENV = $(CUBEOS_CACHE)/venv/$(shell sha256sum agent/tests/sdk-py/requirements-e2b-latest.txt | cut -c1-64)
kernel-test:
	cd agent/interp && KERNEL_PYTHON=/usr/bin/python3 $(PY_VENV)/bin/python -m pytest -q -p no:cacheprovider test_kernel.py

test: all format-check unit fuzz net-test oci-registry-test kernel-test thirdparty thirdparty-test sdk qemu-test image-test

bench: all
	bash tools/bench.sh
	$(MAKE) qemu-bench
	$(MAKE) image-bench
	$(MAKE) api-bench

format:
	clang-format -i $$(git ls-files '*.c' '*.h')

format-check:
	clang-format --dry-run --Werror $$(git ls-files '*.c' '*.h')

clean:
	rm -rf $(BUILD)
