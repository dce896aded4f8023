# pgcast — one Makefile for everything.
#
#   make              release build, programs in bin/
#   make asan         the same with AddressSanitizer + UBSan, in build/asan/bin (tests use it)
#   make test         install what is missing, build, run every test (PostgreSQL, lighttpd,
#                     Apache and Chromium are started privately on loopback and stopped after)
#   make bench        benchmarks (prints figures; never asserts timings)
#   make run          the demo
#   make install PREFIX=/usr/local DESTDIR=
#                     programs, units, configs, client (docs/deploy.md, "Install");
#                     make uninstall takes them away again (the configuration stays)
#   make deb          the Debian package, in build/deb/ (debian/)
#   make static       self-contained CGI programs (only the kernel and nothing else needed:
#                     no libc either) and the shared-hosting drop-in folder, in build/static/
#
# Sources are found by folder: core/*.c is the shared library, fcgi/*.c the FastCGI runtime,
# sse/, poll/, ws-sidecar/, migrate/ one program each, tests/unit/test_*.c one test each,
# tests/fuzz/fuzz_*.c one libFuzzer target each, bench/*.c one benchmark tool each.

PREFIX  ?= /usr/local
DESTDIR ?=
# The programs look for /etc/pgcast/pgcast.conf whatever PREFIX is.
SYSCONFDIR     ?= /etc
DATADIR        ?= $(PREFIX)/share
DOCDIR         ?= $(DATADIR)/doc/pgcast
SYSTEMDUNITDIR ?= $(PREFIX)/lib/systemd/system
SYSUSERSDIR    ?= $(PREFIX)/lib/sysusers.d
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
EXTRA_LDFLAGS ?=
LDFLAGS_ALL = -pthread $(EXTRA_CFLAGS) $(EXTRA_LDFLAGS)

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

.PHONY: all asan deps deps-bench test bench run install install-files uninstall programs deb deb-lint clean fuzz static
.DEFAULT_GOAL := all
# keep objects of tests and benches (make would delete them as intermediates)
.SECONDARY:

all: deps
	@$(MAKE) --no-print-directory build-all

build-all: $(PROGS) $(UNIT_BINS) $(BENCH_BINS)

# The programs alone (what an install or the Debian package needs).
programs: $(PROGS)

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

$(BINDIR)/pgcast-migrate: $(LINK_EXTRA) $(call obj,$(MIG_SRC)) $(BUILD)/obj/gen/sql_embedded.o $(CORE_LIB)
	@mkdir -p $(dir $@)
	$(CC) $(LDFLAGS_ALL) -o $@ $^ $(PKG_LIBS)

$(BINDIR)/pgcast-sse.fcgi: $(LINK_EXTRA) $(call obj,$(SSE_SRC)) $(FCGI_LIB) $(CORE_LIB)
	@mkdir -p $(dir $@)
	$(CC) $(LDFLAGS_ALL) -o $@ $^ $(PKG_LIBS)

$(BINDIR)/pgcast-poll.fcgi: $(LINK_EXTRA) $(call obj,$(POLL_SRC)) $(FCGI_LIB) $(CORE_LIB)
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

# Self-contained programs for shared hosting (docs/shared-hosting.md): linked statically
# (glibc included) against Debian's static archives, so a host needs none of libpq,
# json-c, libfcgi or OpenSSL. Debian ships no static libjwt: static/jwt_openssl.c gives
# token.c the part of its API it uses, on OpenSSL; static/no_gss_ldap.c leaves libpq
# without GSSAPI and LDAP (no static archives either); static/nss_builtin.c keeps glibc
# from loading the host's NSS modules (built for another glibc). The drop-in folder
# build/static/realtime/ is shared-hosting/realtime/ plus the two programs. The objects
# are the release build's (after `make`, only the links are left to do).
STATIC_DIR  = build/static
STATIC_LIBS = -static -L$(STATIC_DIR)/deps -lpq -lpgcommon_shlib -lpgport_shlib -ljson-c -lfcgi -lssl -lcrypto \
              -lm -ldl -lpthread
static: deps
	@./scripts/static-deps.sh $(STATIC_DIR)/deps
	@$(MAKE) --no-print-directory $(STATIC_DIR)/pgcast-sse.fcgi $(STATIC_DIR)/pgcast-poll.fcgi \
	    $(STATIC_DIR)/pgcast-migrate BINDIR=$(STATIC_DIR) \
	    LINK_EXTRA="$(patsubst %.c,$(BUILD)/obj/%.o,$(wildcard static/*.c))" \
	    PKG_LIBS="$(STATIC_LIBS)"
	rm -rf $(STATIC_DIR)/realtime && mkdir -p $(STATIC_DIR)/realtime
	install -m 0644 shared-hosting/realtime/.htaccess $(STATIC_DIR)/realtime/
	install -m 0600 shared-hosting/realtime/pgcast.conf $(STATIC_DIR)/realtime/
	install -m 0755 -s $(STATIC_DIR)/pgcast-sse.fcgi $(STATIC_DIR)/pgcast-poll.fcgi $(STATIC_DIR)/realtime/

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

# make install: everything an install needs, under PREFIX (DESTDIR for staging), and in
# SYSCONFDIR: /etc/pgcast/pgcast.conf (from pgcast.conf.example, never overwritten: mode
# 0640, group pgcast, it holds secrets), Apache's and lighttpd's conf-available files
# (when those servers are installed; enable them with a2enconf / lighty-enable-mod). Run
# as root without DESTDIR, it also creates the system user the units run as (pgcast).
install: all
	@$(MAKE) --no-print-directory install-files
	@if [ -z "$(DESTDIR)" ] && [ "$$(id -u)" = 0 ]; then ./scripts/install-system.sh \
	    "$(SYSUSERSDIR)/pgcast.conf" "$(SYSCONFDIR)/pgcast/pgcast.conf"; fi

# install-files: the files only (the Debian package uses it; no user, no ownership).
PKG_SUBST = sed -e 's|@bindir@|$(PREFIX)/bin|g' -e 's|@sysconfdir@|$(SYSCONFDIR)|g' -e 's|@datadir@|$(DATADIR)|g' -e 's|@docdir@|$(DOCDIR)|g'
CLIENT_FILES = $(addprefix client/,pgcast.js pgcast.d.ts react.js react.d.ts package.json README.md)
install-files:
	install -d $(DESTDIR)$(PREFIX)/bin $(DESTDIR)$(DATADIR)/pgcast/sql \
	    $(DESTDIR)$(DATADIR)/pgcast/lighttpd-conf $(DESTDIR)$(DATADIR)/pgcast/apache-conf \
	    $(DESTDIR)$(DATADIR)/pgcast/client $(DESTDIR)$(DOCDIR) \
	    $(DESTDIR)$(SYSTEMDUNITDIR) $(DESTDIR)$(SYSUSERSDIR) $(DESTDIR)$(SYSCONFDIR)/pgcast
	install -m 0755 $(PROGS) $(DESTDIR)$(PREFIX)/bin/
	install -m 0644 $(SQL_FILES) $(DESTDIR)$(DATADIR)/pgcast/sql/
	install -m 0644 pgcast.conf.example $(DESTDIR)$(DATADIR)/pgcast/
	install -m 0644 lighttpd-conf/*.conf $(DESTDIR)$(DATADIR)/pgcast/lighttpd-conf/
	./scripts/lighttpd-daemons-conf.sh lighttpd-conf/pgcast.conf > $(DESTDIR)$(DATADIR)/pgcast/lighttpd-conf/pgcast-daemons.conf
	chmod 0644 $(DESTDIR)$(DATADIR)/pgcast/lighttpd-conf/pgcast-daemons.conf
	install -m 0644 apache-conf/*.conf $(DESTDIR)$(DATADIR)/pgcast/apache-conf/
	install -m 0644 $(CLIENT_FILES) $(DESTDIR)$(DATADIR)/pgcast/client/
	install -m 0644 docs/*.md $(DESTDIR)$(DOCDIR)/
	install -d $(DESTDIR)$(DATADIR)/man/man1
	for p in $(PROGS); do n=$$(basename $$p); case $$n in \
	    pgcast-sse.fcgi) d="Server-Sent Events handler of pgcast (FastCGI)" ;; \
	    pgcast-poll.fcgi) d="polling, publish and presence handler of pgcast (FastCGI)" ;; \
	    pgcast-ws) d="WebSocket sidecar of pgcast" ;; \
	    pgcast-migrate) d="applies pgcast's database migrations and grants" ;; \
	    pgcast-relay) d="one LISTEN connection per host for pgcast's processes" ;; \
	    *) d="a program of pgcast" ;; esac; \
	    ./scripts/manpage.sh $$p "$$d" "$$(sed -n 's/.*PGCAST_VERSION "\(.*\)"/\1/p' core/version.h)" \
	        > $(DESTDIR)$(DATADIR)/man/man1/$$n.1 && chmod 0644 $(DESTDIR)$(DATADIR)/man/man1/$$n.1 || exit 1; \
	done
	for u in systemd/*.in; do \
	    $(PKG_SUBST) $$u > $(DESTDIR)$(SYSTEMDUNITDIR)/$$(basename $$u .in) || exit 1; \
	    chmod 0644 $(DESTDIR)$(SYSTEMDUNITDIR)/$$(basename $$u .in) || exit 1; \
	done
	install -m 0644 systemd/pgcast.sysusers $(DESTDIR)$(SYSUSERSDIR)/pgcast.conf
	@if [ -e $(DESTDIR)$(SYSCONFDIR)/pgcast/pgcast.conf ]; then \
	    echo "$(DESTDIR)$(SYSCONFDIR)/pgcast/pgcast.conf exists: left as it is"; \
	else \
	    echo "install -m 0640 pgcast.conf.example $(DESTDIR)$(SYSCONFDIR)/pgcast/pgcast.conf"; \
	    install -m 0640 pgcast.conf.example $(DESTDIR)$(SYSCONFDIR)/pgcast/pgcast.conf; \
	fi
	@for s in apache2:conf-available/apache2-pgcast.conf.in:pgcast.conf \
	          apache2:apache-conf/pgcast-capacity.conf:pgcast-capacity.conf \
	          lighttpd:conf-available/lighttpd-pgcast.conf.in:50-pgcast.conf; do \
	    srv=$${s%%:*}; rest=$${s#*:}; in=$${rest%%:*}; name=$${rest#*:}; \
	    dir=$(DESTDIR)$(SYSCONFDIR)/$$srv/conf-available; \
	    if [ -z "$(DESTDIR)" ] && [ ! -d $(SYSCONFDIR)/$$srv ]; then continue; fi; \
	    if [ -e $$dir/$$name ]; then echo "$$dir/$$name exists: left as it is"; continue; fi; \
	    echo "install $$in -> $$dir/$$name"; \
	    install -d $$dir && $(PKG_SUBST) $$in > $$dir/$$name && chmod 0644 $$dir/$$name || exit 1; \
	done

# make uninstall (same PREFIX, DESTDIR, SYSCONFDIR as the install): the installed files go;
# /etc/pgcast/pgcast.conf and the pgcast user stay (the admin's), and so does a
# conf-available file that is still enabled (a2disconf pgcast / lighty-disable-mod pgcast).
uninstall:
	rm -f $(addprefix $(DESTDIR)$(PREFIX)/bin/,$(notdir $(PROGS)))
	rm -f $(addprefix $(DESTDIR)$(DATADIR)/man/man1/,$(addsuffix .1,$(notdir $(PROGS))))
	rm -f $(addprefix $(DESTDIR)$(SYSTEMDUNITDIR)/,$(notdir $(basename $(wildcard systemd/*.in)))) \
	    $(DESTDIR)$(SYSUSERSDIR)/pgcast.conf
	rm -rf $(DESTDIR)$(DATADIR)/pgcast $(DESTDIR)$(DOCDIR)
	@for f in apache2:pgcast.conf apache2:pgcast-capacity.conf lighttpd:50-pgcast.conf; do \
	    srv=$${f%%:*}; name=$${f#*:}; \
	    if [ -e $(DESTDIR)$(SYSCONFDIR)/$$srv/conf-enabled/$$name ]; then \
	        echo "$(SYSCONFDIR)/$$srv/conf-available/$$name is enabled: left (disable it, then uninstall again)"; \
	    else rm -f $(DESTDIR)$(SYSCONFDIR)/$$srv/conf-available/$$name; fi; \
	done
	@echo "kept: $(SYSCONFDIR)/pgcast/pgcast.conf and the pgcast user (userdel pgcast)"

# The Debian package (debian/): built with dpkg-buildpackage from the same Makefile
# (programs with Debian's hardening flags in build/deb/, then install-files); the .deb,
# .buildinfo and .changes are moved to build/deb/. `make deb-lint` runs lintian on it.
DEB_VERSION = $(shell dpkg-parsechangelog -S Version 2>/dev/null)
DEB_ARCH    = $(shell dpkg --print-architecture)
DEB_FILE    = build/deb/pgcast_$(DEB_VERSION)_$(DEB_ARCH).deb
deb: deps
	@grep -q '"$(DEB_VERSION)"' core/version.h || { \
	    echo "debian/changelog's version $(DEB_VERSION) is not core/version.h's" >&2; exit 1; }
	dpkg-buildpackage -b -us -uc
	@mkdir -p build/deb
	mv ../pgcast_$(DEB_VERSION)_$(DEB_ARCH).deb ../pgcast_$(DEB_VERSION)_$(DEB_ARCH).buildinfo \
	    ../pgcast_$(DEB_VERSION)_$(DEB_ARCH).changes build/deb/
	@if [ -e ../pgcast-dbgsym_$(DEB_VERSION)_$(DEB_ARCH).deb ]; then \
	    mv ../pgcast-dbgsym_$(DEB_VERSION)_$(DEB_ARCH).deb build/deb/; fi
	@echo "built $(DEB_FILE)"

deb-lint:
	lintian --info --display-info $(DEB_FILE)

clean:
	rm -rf build bin

-include $(shell find build -name '*.d' 2>/dev/null)
