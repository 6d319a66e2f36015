# api/: the control-plane daemons, static musl binaries:
#   build/cube-api    the E2B REST API (:3000): auth, sandboxes, templates, TTL (api/main_api.c)
#   build/cube-proxy  the sandbox proxy (:80, TLS :443): E2B routing to the agent over vsock
#                     (api/main_proxy.c)
#   build/cube-dns    the DNS responder (:53) for <domain> and *.<domain> (api/main_dns.c)
#   build/cube-oci    a container image (registry or tarball) -> template ext4 rootfs (api/main_oci.c)
#   build/cube        the CLI, also build/cubemastercli (api/tools/cube.c + api/cli*.c)
# Every api/*.c other than the main_*.c files goes into the daemons (build/libapi.a), the unit tests
# (api/tests/test_*.c, ASan/UBSan, glibc) and the fuzzers (api/fuzz/fuzz_*.c).
API_SRCS     := $(wildcard api/*.c)
API_MAINS    := $(wildcard api/main_*.c)
API_LIB_SRCS := $(filter-out $(API_MAINS),$(API_SRCS))
API_HDRS     := $(wildcard api/*.h)
API_LIB_OBJS := $(API_LIB_SRCS:%.c=$(BUILD)/%.o)

API_BINS := $(patsubst api/main_%.c,$(BUILD)/cube-%,$(API_MAINS))
all: $(API_BINS)

$(API_SRCS:%.c=$(BUILD)/%.o): $(API_HDRS)

# The daemons link api/ as an archive, so each takes only the objects it uses
# (cube-dns needs no TLS, cube-api no proxy_tls.o). mbedtls (proxy_tls.c): the
# daemons link thirdparty's static musl build, the tests and fuzzers Debian's
# libmbedtls-dev (same 2.28 release; see cubeos/cubeos.mk).
API_HOST_TLS_LIBS := -lmbedtls -lmbedx509 -lmbedcrypto
$(BUILD)/api/proxy_tls.o: CFLAGS += $(MBEDTLS_CFLAGS)
$(BUILD)/api/proxy_tls.o: | $(CUBEOS_MBEDTLS_STAMP)
# oci_http.c: the registry client's HTTPS (cube-oci, and cube-api's image builds).
$(BUILD)/api/oci_http.o: CFLAGS += $(MBEDTLS_CFLAGS)
$(BUILD)/api/oci_http.o: | $(CUBEOS_MBEDTLS_STAMP)

$(BUILD)/libapi.a: $(API_LIB_OBJS)
	rm -f $@ && $(AR) rcs $@ $^

$(BUILD)/cube-%: $(BUILD)/api/main_%.o $(BUILD)/libapi.a $(BUILD)/libcube.a | $(CUBEOS_MBEDTLS_STAMP)
	$(CC) $(LDFLAGS) -o $@ $^ $(MBEDTLS_LDLIBS) -lpthread

UNIT_TESTS += $(patsubst api/tests/%.c,$(BUILD)/san/api/%,$(wildcard api/tests/test_*.c))
FUZZERS    += $(patsubst api/fuzz/%.c,$(BUILD)/fuzz/api/%,$(wildcard api/fuzz/fuzz_*.c))

$(BUILD)/san/api/test_%: api/tests/test_%.c $(LIB_SRCS) $(API_LIB_SRCS) $(API_HDRS) $(wildcard lib/*.h api/tests/*.h) \
                         lib/tests/test.h
	@mkdir -p $(dir $@)
	$(HOSTCC) $(SAN_FLAGS) -o $@ $< $(LIB_SRCS) $(API_LIB_SRCS) $(API_HOST_TLS_LIBS) -lpthread

$(BUILD)/fuzz/api/fuzz_%: api/fuzz/fuzz_%.c $(LIB_SRCS) $(API_LIB_SRCS) $(API_HDRS) $(wildcard lib/*.h)
	@mkdir -p $(dir $@)
	$(HOSTCC) $(FUZZ_FLAGS) -o $@ $< $(LIB_SRCS) $(API_LIB_SRCS) $(API_HOST_TLS_LIBS) -lpthread

# api-vmtool: api/vm.c from the command line (nested tests: qemu-tests/l1/tests/20-api-vm.sh).
# It links vm.o alone, so it builds whatever state the rest of api/ is in.
$(BUILD)/api-vmtool: $(BUILD)/api/tools/vmtool.o $(BUILD)/api/vm.o $(BUILD)/libcube.a
	$(CC) $(LDFLAGS) -o $@ $^ -lpthread
$(BUILD)/api/tools/vmtool.o: api/vm.h
all: $(BUILD)/api-vmtool

# cube (alias cubemastercli, a symlink): the CLI, api/cli*.c from libapi.a.
$(BUILD)/cube: $(BUILD)/api/tools/cube.o $(BUILD)/libapi.a $(BUILD)/libcube.a
	$(CC) $(LDFLAGS) -o $@ $^ -lpthread
$(BUILD)/cubemastercli: $(BUILD)/cube
	ln -sf cube $@
$(BUILD)/api/tools/cube.o: api/cli.h
all: $(BUILD)/cube $(BUILD)/cubemastercli

# cube-oci (api/main_oci.c) against Debian's docker-registry on loopback, over
# HTTP and HTTPS, the ext4 checked with debugfs (api/tests/oci-registry.sh).
.PHONY: oci-registry-test
oci-registry-test: $(BUILD)/cube-oci $(BUILD)/cube-agent
	bash api/tests/oci-registry.sh $(BUILD)/cube-oci $(BUILD)/cube-agent
