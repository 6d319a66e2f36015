# net/: the sandbox switch (eBPF tc programs) and, later, the egress gateway.
#   build/net/switch.bpf.o     clang -target bpf
#   build/net/switch.lskel.h   its light skeleton (bpftool gen skeleton -L): the loader
#                              needs only libbpf's header-only skel_internal.h at run time
# The unit test (net/tests/test_switch.c) runs every verdict and NAT path in the kernel with
# BPF_PROG_TEST_RUN; it needs root with BPF and says SKIP elsewhere.
NET_LIBBPF_STAMP := $(THIRDPARTY_DIR)/libbpf/.done
NET_HDRS := $(wildcard net/*.h)

$(NET_LIBBPF_STAMP):
	bash thirdparty/build.sh libbpf

$(BUILD)/net/%.bpf.o: net/%.bpf.c $(NET_HDRS) | $(NET_LIBBPF_STAMP)
	@mkdir -p $(dir $@)
	clang -O2 -g -target bpf -Wall -Werror $(BPF_CFLAGS) -c $< -o $@

$(BUILD)/net/%.lskel.h: $(BUILD)/net/%.bpf.o
	bpftool gen skeleton -L $< name net_$* > $@.tmp && mv $@.tmp $@

UNIT_TESTS += $(BUILD)/san/net/test_switch

$(BUILD)/san/net/test_switch: net/tests/test_switch.c net/switch.c $(NET_HDRS) $(BUILD)/net/switch.lskel.h \
                              lib/tests/test.h
	@mkdir -p $(dir $@)
	$(HOSTCC) $(SAN_FLAGS) -isystem $(THIRDPARTY_DIR)/libbpf/include -I$(BUILD)/net -Inet -o $@ $< net/switch.c

# net-switchctl: the switch on one interface, driven from stdin (net/tools/switchctl.c);
# net/tests/switch-ns.sh runs it between network namespaces.
$(BUILD)/net/net-switchctl: net/tools/switchctl.c net/switch.c net/tc.c $(NET_HDRS) $(BUILD)/net/switch.lskel.h \
                            lib/rtnl.c lib/rtnl.h
	$(HOSTCC) -std=gnu11 -D_GNU_SOURCE $(WARN) -g -O1 -isystem $(THIRDPARTY_DIR)/libbpf/include -I$(BUILD)/net -Inet \
		-o $@ $< net/switch.c net/tc.c lib/rtnl.c

.PHONY: net-test
net-test: $(BUILD)/net/net-switchctl
	bash net/tests/switch-ns.sh $(BUILD)/net/net-switchctl
