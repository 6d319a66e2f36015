# The nested test harness (included by the top Makefile). See qemu-tests/README.md.
#
#   make qemu-test    boots L1 in QEMU, runs the VMM tests inside it, prints
#                     one line per test and "qemu-test: N passed, M failed"
#   make qemu-bench   the same L1, benchmarks instead (table + commands)
#
# QEMU_TESTS_ONLY=a,b runs only those tests; QEMU_TESTS_TIMEOUT=S bounds L1.
# N_BOOT=, N_CLONES= size the benchmark (3 cold boots, 10 clones by default).

GUESTCTL := $(BUILD)/guestctl
L1UTIL   := $(BUILD)/qemu-tests/l1util
QEMU_TESTS_DEPS := $(GUESTCTL) $(L1UTIL) $(BUILD)/cube-vmm $(BUILD)/api-vmtool guest-kernel guest-rootfs

.PHONY: qemu-test qemu-bench
all: $(GUESTCTL)

$(GUESTCTL): $(BUILD)/qemu-tests/guestctl.o $(BUILD)/libcube.a
	$(CC) $(LDFLAGS) -o $@ $^

# l1util needs nothing from lib/.
$(L1UTIL): $(BUILD)/qemu-tests/l1util.o
	$(CC) $(LDFLAGS) -o $@ $^

qemu-test: $(QEMU_TESTS_DEPS)
	@bash qemu-tests/run.sh test

qemu-bench: $(QEMU_TESTS_DEPS)
	@bash qemu-tests/run.sh bench
