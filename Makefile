# pgcast — one Makefile for everything.
#
#   make              release build, programs in bin/
#   make asan         the same with AddressSanitizer + UBSan, in build/asan/bin (tests use it)
#   make test         install what is missing, build, run every test (PostgreSQL, lighttpd,
#                     Apache and Chromium are started privately on loopback and stopped after)
#   make bench        benchmarks (prints figures; never asserts timings)
#   make run          the demo
#   make install PREFIX=/usr/local DESTDIR=
#
# Sources are found by folder: core/*.c is the shared library, fcgi/*.c the FastCGI runtime,
# sse/, poll/, ws-sidecar/, migrate/ one program each, tests/unit/test_*.c one test each,
# tests/fuzz/fuzz_*.c one libFuzzer target each, bench/*.c one benchmark tool each.

PREFIX  ?= /usr/local
DESTDIR ?=
CC      ?= cc
BUILD   ?= build/release
BINDIR  ?= bin

PKGS     = libpq json-c libjwt libmicrohttpd libcrypto
# '=' (not ':=') so pkg-config runs after the deps step has installed the packages.
PKG_CFLAGS = $(shell pkg-config --cflags $(PKGS))
PKG_LIBS   = $(shell pkg-config --libs $(PKGS)) -lfcgi

WARN     = -std=c11 -Wall -Wextra -Werror -Wshadow -Wno-unused-parameter
OPT     ?= -O2 -g
EXTRA_CFLAGS ?=
CFLAGS_ALL = $(WARN) $(OPT) $(EXTRA_CFLAGS) -D_GNU_SOURCE -pthread -Icore -Ifcgi -Imigrate $(PKG_CFLAGS)
LDFLAGS_ALL = -pthread $(EXTRA_CFLAGS)

CORE_SRC  = $(wildcard core/*.c)
FCGI_SRC  = $(wildcard fcgi/*.c)
SSE_SRC   = $(wildcard sse/*.c)
POLL_SRC  = $(wildcard poll/*.c)
WS_SRC    = $(wildcard ws-sidecar/*.c)
MIG_SRC   = $(wildcard migrate/*.c)
RELAY_SRC = $(wildcard relay/*.c)
UNIT_SRC  = $(wildcard tests/unit/test_*.c)
BENCH_SRC = $(wildcard bench/*.c)
SQL_FILES = $(sort $(wildcard sql/[0-9]*.sql))

obj = $(patsubst %.c,$(BUILD)/obj/%.o,$(1))

CORE_LIB = $(BUILD)/libpgcast-core.a
FCGI_LIB = $(BUILD)/libpgcast-fcgi.a
SQL_EMBED = $(BUILD)/gen/sql_embedded.c

PROGS = $(if $(SSE_SRC),$(BINDIR)/pgcast-sse.fcgi) \
        $(if $(POLL_SRC),$(BINDIR)/pgcast-poll.fcgi) \
        $(if $(WS_SRC),$(BINDIR)/pgcast-ws) \
        $(BINDIR)/pgcast-migrate \
        $(if $(RELAY_SRC),$(BINDIR)/pgcast-relay)
UNIT_BINS  = $(patsubst tests/unit/%.c,$(BUILD)/tests/%,$(UNIT_SRC))
BENCH_BINS = $(patsubst bench/%.c,$(BUILD)/bench/%,$(BENCH_SRC))

.PHONY: all asan deps deps-bench test bench run install clean fuzz
.DEFAULT_GOAL := all
# keep objects of tests and benches (make would delete them as intermediates)
.SECONDARY:

all: deps
	@$(MAKE) --no-print-directory build-all

build-all: $(PROGS) $(UNIT_BINS) $(BENCH_BINS)

# The sanitizer build the tests run: same sources, separate objects.
asan: deps
	@$(MAKE) --no-print-directory build-all BUILD=build/asan BINDIR=build/asan/bin \
	    OPT="-O1 -g -fno-omit-frame-pointer" \
	    EXTRA_CFLAGS="-fsanitize=address,undefined -fno-sanitize-recover=undefined"

deps:
	@./scripts/install-deps.sh

deps-bench:
	@./scripts/install-deps.sh --bench

$(BUILD)/obj/%.o: %.c
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS_ALL) -MMD -MP -c $< -o $@

$(CORE_LIB): $(call obj,$(CORE_SRC))
	@mkdir -p $(dir $@)
	rm -f $@ && ar rcs $@ $^

$(FCGI_LIB): $(call obj,$(FCGI_SRC))
	@mkdir -p $(dir $@)
	rm -f $@ && ar rcs $@ $^

# SQL migrations are compiled into pgcast-migrate so an installed binary needs no data dir.
$(SQL_EMBED): $(SQL_FILES) scripts/embed-sql.sh
	@mkdir -p $(dir $@)
	./scripts/embed-sql.sh $(SQL_FILES) > $@.tmp && mv $@.tmp $@

$(BUILD)/obj/gen/sql_embedded.o: $(SQL_EMBED)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS_ALL) -c $< -o $@

$(BINDIR)/pgcast-migrate: $(call obj,$(MIG_SRC)) $(BUILD)/obj/gen/sql_embedded.o $(CORE_LIB)
	@mkdir -p $(dir $@)
	$(CC) $(LDFLAGS_ALL) -o $@ $^ $(PKG_LIBS)

$(BINDIR)/pgcast-sse.fcgi: $(call obj,$(SSE_SRC)) $(FCGI_LIB) $(CORE_LIB)
	@mkdir -p $(dir $@)
	$(CC) $(LDFLAGS_ALL) -o $@ $^ $(PKG_LIBS)

$(BINDIR)/pgcast-poll.fcgi: $(call obj,$(POLL_SRC)) $(FCGI_LIB) $(CORE_LIB)
	@mkdir -p $(dir $@)
	$(CC) $(LDFLAGS_ALL) -o $@ $^ $(PKG_LIBS)

$(BINDIR)/pgcast-relay: $(call obj,$(RELAY_SRC)) $(CORE_LIB)
	@mkdir -p $(dir $@)
	$(CC) $(LDFLAGS_ALL) -o $@ $^ $(PKG_LIBS)

$(BINDIR)/pgcast-ws: $(call obj,$(WS_SRC)) $(CORE_LIB)
	@mkdir -p $(dir $@)
	$(CC) $(LDFLAGS_ALL) -o $@ $^ $(PKG_LIBS)

$(BUILD)/tests/%: $(BUILD)/obj/tests/unit/%.o $(if $(FCGI_SRC),$(FCGI_LIB)) $(CORE_LIB)
	@mkdir -p $(dir $@)
	$(CC) $(LDFLAGS_ALL) -o $@ $^ $(PKG_LIBS)

$(BUILD)/bench/%: $(BUILD)/obj/bench/%.o $(CORE_LIB)
	@mkdir -p $(dir $@)
	$(CC) $(LDFLAGS_ALL) -o $@ $^ $(PKG_LIBS)

# libFuzzer targets need clang; built on demand by the tests (tests/fuzz.sh).
FUZZ_SRC  = $(wildcard tests/fuzz/fuzz_*.c)
FUZZ_BINS = $(patsubst tests/fuzz/%.c,build/fuzz/%,$(FUZZ_SRC))
fuzz: deps $(FUZZ_BINS)
# (a target may include a parser of the sidecar's: it rebuilds when any of them changes)
build/fuzz/%: tests/fuzz/%.c $(CORE_SRC) $(WS_SRC) $(wildcard core/*.h ws-sidecar/*.h)
	@mkdir -p $(dir $@)
	clang $(WARN) -g -O1 -D_GNU_SOURCE -pthread -Icore $(PKG_CFLAGS) \
	    -fsanitize=fuzzer,address,undefined -o $@ $< $(CORE_SRC) $(PKG_LIBS)

test: deps
	@$(MAKE) --no-print-directory asan
	@$(MAKE) --no-print-directory all
	@./tests/run.sh

bench: deps deps-bench
	@$(MAKE) --no-print-directory all
	@./bench/run.sh

run: deps
	@$(MAKE) --no-print-directory all
	@./scripts/run-demo.sh

install: all
	install -d $(DESTDIR)$(PREFIX)/bin $(DESTDIR)$(PREFIX)/share/pgcast/sql \
	    $(DESTDIR)$(PREFIX)/share/pgcast/lighttpd-conf $(DESTDIR)$(PREFIX)/share/pgcast/apache-conf
	install -m 0755 $(PROGS) $(DESTDIR)$(PREFIX)/bin/
	install -m 0644 $(SQL_FILES) $(DESTDIR)$(PREFIX)/share/pgcast/sql/
	install -m 0644 pgcast.conf.example $(DESTDIR)$(PREFIX)/share/pgcast/
	-install -m 0644 lighttpd-conf/* $(DESTDIR)$(PREFIX)/share/pgcast/lighttpd-conf/
	-install -m 0644 apache-conf/* $(DESTDIR)$(PREFIX)/share/pgcast/apache-conf/

clean:
	rm -rf build bin

-include $(shell find build -name '*.d' 2>/dev/null)
