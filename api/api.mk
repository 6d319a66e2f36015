# api/: the control-plane daemons, static musl binaries:
#   build/cube-api    the E2B REST API (:3000): auth, sandboxes, templates, TTL (api/main_api.c)
#   build/cube-proxy  the sandbox proxy (:80, later :443): E2B routing to the agent over vsock
#                     (api/main_proxy.c)
# Every api/*.c other than the main_*.c files links into both daemons, the unit tests
# (api/tests/test_*.c, ASan/UBSan, glibc) and the fuzzers (api/fuzz/fuzz_*.c).
API_SRCS     := $(wildcard api/*.c)
API_MAINS    := $(wildcard api/main_*.c)
API_LIB_SRCS := $(filter-out $(API_MAINS),$(API_SRCS))
API_HDRS     := $(wildcard api/*.h)
API_LIB_OBJS := $(API_LIB_SRCS:%.c=$(BUILD)/%.o)

API_BINS := $(patsubst api/main_%.c,$(BUILD)/cube-%,$(API_MAINS))
all: $(API_BINS)

$(API_SRCS:%.c=$(BUILD)/%.o): $(API_HDRS)

$(BUILD)/cube-%: $(BUILD)/api/main_%.o $(API_LIB_OBJS) $(BUILD)/libcube.a
	$(CC) $(LDFLAGS) -o $@ $^ -lpthread

UNIT_TESTS += $(patsubst api/tests/%.c,$(BUILD)/san/api/%,$(wildcard api/tests/test_*.c))
FUZZERS    += $(patsubst api/fuzz/%.c,$(BUILD)/fuzz/api/%,$(wildcard api/fuzz/fuzz_*.c))

$(BUILD)/san/api/test_%: api/tests/test_%.c $(LIB_SRCS) $(API_LIB_SRCS) $(API_HDRS) $(wildcard lib/*.h api/tests/*.h) \
                         lib/tests/test.h
	@mkdir -p $(dir $@)
	$(HOSTCC) $(SAN_FLAGS) -o $@ $< $(LIB_SRCS) $(API_LIB_SRCS) -lpthread

$(BUILD)/fuzz/api/fuzz_%: api/fuzz/fuzz_%.c $(LIB_SRCS) $(API_LIB_SRCS) $(API_HDRS) $(wildcard lib/*.h)
	@mkdir -p $(dir $@)
	$(HOSTCC) $(FUZZ_FLAGS) -o $@ $< $(LIB_SRCS) $(API_LIB_SRCS) -lpthread

# api-vmtool: api/vm.c from the command line (nested tests: qemu-tests/l1/tests/20-api-vm.sh).
# It links vm.o alone, so it builds whatever state the rest of api/ is in.
$(BUILD)/api-vmtool: $(BUILD)/api/tools/vmtool.o $(BUILD)/api/vm.o $(BUILD)/libcube.a
	$(CC) $(LDFLAGS) -o $@ $^ -lpthread
$(BUILD)/api/tools/vmtool.o: api/vm.h
all: $(BUILD)/api-vmtool
