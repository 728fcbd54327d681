# Build and install apt_netcon as a C library.
#
#   make                      cargo build --release (the .so, the .a, the CLI)
#   make install PREFIX=/usr/local [DESTDIR=...]
#   make uninstall PREFIX=/usr/local
#
# Installs:
#   $(LIBDIR)/libapt_netcon.so.$(ABI)   the shared library (SONAME libapt_netcon.so.$(ABI))
#   $(LIBDIR)/libapt_netcon.so          symlink to it, for -lapt_netcon
#   $(LIBDIR)/libapt_netcon.a           the static library
#   $(INCLUDEDIR)/apt_netcon.h
#   $(PKGCONFIGDIR)/apt_netcon.pc       for `pkg-config --cflags --libs apt_netcon`

PREFIX       ?= /usr/local
EXEC_PREFIX  ?= $(PREFIX)
LIBDIR       ?= $(EXEC_PREFIX)/lib
INCLUDEDIR   ?= $(PREFIX)/include
PKGCONFIGDIR ?= $(LIBDIR)/pkgconfig
DESTDIR      ?=

CARGO        ?= cargo
# A cargo profile: release or dev.
PROFILE      ?= release
CARGO_TARGET_DIR ?= target
PROFILE_DIR  := $(if $(filter dev,$(PROFILE)),debug,$(PROFILE))
BUILD_DIR    := $(CARGO_TARGET_DIR)/$(PROFILE_DIR)

INSTALL      ?= install
HEADER       := include/apt_netcon.h
# Both come from the committed header (tests/header.rs keeps it equal to
# Cargo.toml's version and to src/host/ffi/).
ABI          := $(shell sed -n 's/^\#define APTNC_ABI_VERSION \([0-9][0-9]*\).*/\1/p' $(HEADER))
VERSION      := $(shell sed -n 's/^\#define APTNC_VERSION "\(.*\)"/\1/p' $(HEADER))
SONAME       := libapt_netcon.so.$(ABI)
# What the Rust standard library needs when linking the static library
# (`cargo rustc --crate-type staticlib -- --print native-static-libs`, Linux).
LIBS_PRIVATE ?= -lgcc_s -lutil -lrt -lpthread -lm -ldl -lc

.PHONY: all build install uninstall check-vars

all: build

build:
	$(CARGO) build --profile $(PROFILE) --locked

check-vars:
	@test -n "$(ABI)" || { echo "no APTNC_ABI_VERSION in $(HEADER)" >&2; exit 1; }
	@test -n "$(VERSION)" || { echo "no APTNC_VERSION in $(HEADER)" >&2; exit 1; }

install: check-vars build
	$(INSTALL) -d $(DESTDIR)$(LIBDIR) $(DESTDIR)$(INCLUDEDIR) $(DESTDIR)$(PKGCONFIGDIR)
	$(INSTALL) -m 755 $(BUILD_DIR)/libapt_netcon.so $(DESTDIR)$(LIBDIR)/$(SONAME)
	ln -sf $(SONAME) $(DESTDIR)$(LIBDIR)/libapt_netcon.so
	$(INSTALL) -m 644 $(BUILD_DIR)/libapt_netcon.a $(DESTDIR)$(LIBDIR)/libapt_netcon.a
	$(INSTALL) -m 644 $(HEADER) $(DESTDIR)$(INCLUDEDIR)/apt_netcon.h
	printf '%s\n' \
	  'prefix=$(PREFIX)' \
	  'libdir=$(LIBDIR)' \
	  'includedir=$(INCLUDEDIR)' \
	  '' \
	  'Name: apt_netcon' \
	  'Description: Streaming detector for the Suspicious APT Package Manager Network Connection EQL rule' \
	  'Version: $(VERSION)' \
	  'Cflags: -I$${includedir}' \
	  'Libs: -L$${libdir} -lapt_netcon' \
	  'Libs.private: $(LIBS_PRIVATE)' \
	  > $(DESTDIR)$(PKGCONFIGDIR)/apt_netcon.pc
	chmod 644 $(DESTDIR)$(PKGCONFIGDIR)/apt_netcon.pc

uninstall: check-vars
	rm -f $(DESTDIR)$(LIBDIR)/$(SONAME) $(DESTDIR)$(LIBDIR)/libapt_netcon.so \
	      $(DESTDIR)$(LIBDIR)/libapt_netcon.a $(DESTDIR)$(INCLUDEDIR)/apt_netcon.h \
	      $(DESTDIR)$(PKGCONFIGDIR)/apt_netcon.pc
