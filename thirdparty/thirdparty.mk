# thirdparty/thirdparty.mk — static musl builds of CubeOS's third-party C
# libraries (see thirdparty/README.md). Include from the top-level Makefile:
#
#   include thirdparty/thirdparty.mk
#   api/proxy: CFLAGS += $(MBEDTLS_CFLAGS)
#   api/proxy: LDLIBS += $(MBEDTLS_LDLIBS)
#
# Link with `musl-gcc -static`. Third-party headers are -isystem so that
# project code can build with -Wall -Wextra -Werror.

CUBEOS_CACHE   ?= /var/cache/cubeos
THIRDPARTY_DIR ?= $(CUBEOS_CACHE)/thirdparty
THIRDPARTY_SRC := $(patsubst %/,%,$(dir $(lastword $(MAKEFILE_LIST))))
THIRDPARTY_CC  ?= musl-gcc

# Kernel UAPI headers (linux/, asm/ ...) for musl builds; after musl's own.
LINUX_UAPI_CFLAGS := -idirafter $(THIRDPARTY_DIR)/linux-uapi/include

ZLIB_CFLAGS    := -isystem $(THIRDPARTY_DIR)/zlib/include
ZLIB_LDLIBS    := -L$(THIRDPARTY_DIR)/zlib/lib -lz

LIBELF_CFLAGS  := -isystem $(THIRDPARTY_DIR)/libelf/include $(ZLIB_CFLAGS)
LIBELF_LDLIBS  := -L$(THIRDPARTY_DIR)/libelf/lib -lelf $(ZLIB_LDLIBS)

# Full libbpf (needs libelf + zlib at link time).
LIBBPF_CFLAGS  := -isystem $(THIRDPARTY_DIR)/libbpf/include $(LIBELF_CFLAGS) $(LINUX_UAPI_CFLAGS)
LIBBPF_LDLIBS  := -L$(THIRDPARTY_DIR)/libbpf/lib -lbpf $(LIBELF_LDLIBS)
# Loaders of light skeletons (bpftool gen skeleton -L): headers only, no library.
LIBBPF_LSKEL_CFLAGS := -isystem $(THIRDPARTY_DIR)/libbpf/include $(LINUX_UAPI_CFLAGS)
# The BPF programs themselves: clang -O2 -g -target bpf $(BPF_CFLAGS) -c x.bpf.c
BPF_CFLAGS     := -isystem $(THIRDPARTY_DIR)/libbpf/include -isystem $(THIRDPARTY_DIR)/linux-uapi/include

MBEDTLS_CFLAGS := -isystem $(THIRDPARTY_DIR)/mbedtls/include
MBEDTLS_LDLIBS := -L$(THIRDPARTY_DIR)/mbedtls/lib -lmbedtls -lmbedx509 -lmbedcrypto

LWIP_CFLAGS    := -isystem $(THIRDPARTY_DIR)/lwip/include
LWIP_LDLIBS    := -L$(THIRDPARTY_DIR)/lwip/lib -llwip

# Programs, not libraries: static mke2fs and e2fsck for the appliance initramfs.
E2FSPROGS_BIN  := $(THIRDPARTY_DIR)/e2fsprogs/bin

.PHONY: thirdparty thirdparty-test

# Builds what is missing from the cache (a warm run takes well under a second).
thirdparty:
	@CUBEOS_CACHE='$(CUBEOS_CACHE)' THIRDPARTY_DIR='$(THIRDPARTY_DIR)' bash $(THIRDPARTY_SRC)/build.sh

thirdparty-test: thirdparty
	@CUBEOS_CACHE='$(CUBEOS_CACHE)' THIRDPARTY_DIR='$(THIRDPARTY_DIR)' bash $(THIRDPARTY_SRC)/smoke.sh

# `make thirdparty-print-LWIP_CFLAGS` prints a variable (used by smoke.sh).
thirdparty-print-%:
	@echo '$($*)'
