# cube-vmm: the static musl binary, its unit tests (ASan/UBSan, glibc) and
# its fuzzers. Every vmm source except main.c also links into the tests, so
# they can drive real code paths (and /dev/kvm where the host has one).
VMM_SRCS      := $(wildcard vmm/*.c vmm/dev/*.c vmm/virtio/*.c)
VMM_OBJS      := $(VMM_SRCS:%.c=$(BUILD)/%.o)
VMM_LIB_SRCS  := $(filter-out vmm/main.c,$(VMM_SRCS))
VMM_HDRS      := $(wildcard vmm/*.h vmm/dev/*.h vmm/virtio/*.h)

all: $(BUILD)/cube-vmm

$(VMM_OBJS): $(VMM_HDRS)

$(BUILD)/cube-vmm: $(VMM_OBJS) $(BUILD)/libcube.a
	$(CC) $(LDFLAGS) -o $@ $^ -lpthread

UNIT_TESTS += $(patsubst vmm/tests/%.c,$(BUILD)/san/vmm/%,$(wildcard vmm/tests/test_*.c))
FUZZERS    += $(patsubst vmm/fuzz/%.c,$(BUILD)/fuzz/vmm/%,$(wildcard vmm/fuzz/fuzz_*.c))

$(BUILD)/san/vmm/test_%: vmm/tests/test_%.c $(LIB_SRCS) $(VMM_LIB_SRCS) $(VMM_HDRS) $(wildcard lib/*.h vmm/tests/*.h) \
                         lib/tests/test.h
	@mkdir -p $(dir $@)
	$(HOSTCC) $(SAN_FLAGS) -o $@ $< $(LIB_SRCS) $(VMM_LIB_SRCS) -lpthread

$(BUILD)/fuzz/vmm/fuzz_%: vmm/fuzz/fuzz_%.c $(LIB_SRCS) $(VMM_LIB_SRCS) $(VMM_HDRS) $(wildcard lib/*.h)
	@mkdir -p $(dir $@)
	$(HOSTCC) $(FUZZ_FLAGS) -o $@ $< $(LIB_SRCS) $(VMM_LIB_SRCS) -lpthread
