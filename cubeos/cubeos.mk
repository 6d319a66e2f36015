# cubeos: the appliance's PID1 (static musl binary build/bin/cubeos: build/cubeos/
# holds its objects), its unit tests
# (ASan/UBSan, glibc) and its fuzzers. Every cubeos source except main.c also
# links into the tests and fuzzers.
CUBEOS_SRCS     := $(wildcard cubeos/*.c)
CUBEOS_OBJS     := $(CUBEOS_SRCS:%.c=$(BUILD)/%.o)
CUBEOS_LIB_SRCS := $(filter-out cubeos/main.c,$(CUBEOS_SRCS))
CUBEOS_HDRS     := $(wildcard cubeos/*.h)

all: $(BUILD)/bin/cubeos

$(CUBEOS_OBJS): $(CUBEOS_HDRS)

# mbedtls (the appliance CA, ca.c): the product links thirdparty's static musl
# build; the tests and fuzzers (clang, ASan, glibc) link Debian's
# libmbedtls-dev (cubeos/deps.txt), the same 2.28 release (ca.c checks the
# version). A musl archive cannot go into a glibc sanitizer binary.
CUBEOS_MBEDTLS_STAMP := $(THIRDPARTY_DIR)/mbedtls/.done
CUBEOS_HOST_TLS_LIBS := -lmbedx509 -lmbedcrypto

$(CUBEOS_MBEDTLS_STAMP):
	bash thirdparty/build.sh mbedtls

$(BUILD)/cubeos/ca.o: CFLAGS += $(MBEDTLS_CFLAGS)
$(BUILD)/cubeos/ca.o: | $(CUBEOS_MBEDTLS_STAMP)

$(BUILD)/bin/cubeos: $(CUBEOS_OBJS) $(BUILD)/libcube.a
	@mkdir -p $(dir $@)
	$(CC) $(LDFLAGS) -o $@ $^ $(MBEDTLS_LDLIBS)

UNIT_TESTS += $(patsubst cubeos/tests/%.c,$(BUILD)/san/cubeos/%,$(wildcard cubeos/tests/test_*.c))
FUZZERS    += $(patsubst cubeos/fuzz/%.c,$(BUILD)/fuzz/cubeos/%,$(wildcard cubeos/fuzz/fuzz_*.c))

# The PID1 test runs the real static binary in a new PID and mount namespace;
# the selftest test runs its --selftest mode.
$(BUILD)/san/cubeos/test_pid1 $(BUILD)/san/cubeos/test_selftest: $(BUILD)/bin/cubeos

$(BUILD)/san/cubeos/test_%: cubeos/tests/test_%.c $(LIB_SRCS) $(CUBEOS_LIB_SRCS) $(CUBEOS_HDRS) \
                            $(wildcard lib/*.h cubeos/tests/*.h) lib/tests/test.h
	@mkdir -p $(dir $@)
	$(HOSTCC) $(SAN_FLAGS) -o $@ $< $(LIB_SRCS) $(CUBEOS_LIB_SRCS) $(CUBEOS_HOST_TLS_LIBS)

$(BUILD)/fuzz/cubeos/fuzz_%: cubeos/fuzz/fuzz_%.c $(LIB_SRCS) $(CUBEOS_LIB_SRCS) $(CUBEOS_HDRS) $(wildcard lib/*.h)
	@mkdir -p $(dir $@)
	$(HOSTCC) $(FUZZ_FLAGS) -o $@ $< $(LIB_SRCS) $(CUBEOS_LIB_SRCS) $(CUBEOS_HOST_TLS_LIBS)
