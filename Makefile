# pgtide — build, test, demo.
#
#   make              build build/pgtide
#   make deps         install missing Debian packages (apt-get; run as root)
#   make test         deps + build + the whole test suite on throwaway clusters
#   make test-asan    the same suite with AddressSanitizer + UndefinedBehaviorSanitizer
#   make demo         a real migration between two throwaway local clusters
#   make fuzz         build the libFuzzer harnesses (clang)
#   make test-faults  the fault-injection suites only; SEEDS=N kill-anywhere seeds (FAULTS=kill_anywhere: that suite alone)
#   make lint-lua     luacheck on lua/, tests/ and examples/ (.luacheckrc); run by `make test`
#   make lint-c       clang-format check of engine/ and tests/ C files (.clang-format); run by `make test`
#   make format-c     format them in place
#   make install      build/pgtide, its man page and bash completion under $(DESTDIR)$(PREFIX) (/usr/local)
#   make uninstall    remove them again
#   make deb          build/pgtide_VERSION_ARCH.deb (docs/install.md)

BUILD   ?= build
CC      ?= gcc
SAN     ?=
PKGS    := lua5.4 libuv libpq libedit
PKG_CFLAGS := $(shell pkg-config --cflags $(PKGS) 2>/dev/null)
PKG_LIBS   := $(shell pkg-config --libs $(PKGS) 2>/dev/null) -llua5.4-lpeg

OPT     ?= -O2
CFLAGS  += -std=c11 -D_GNU_SOURCE -Wall -Wextra -Werror -g $(OPT) -Iengine $(PKG_CFLAGS)
ifeq ($(SAN),1)
CFLAGS  += -fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=undefined
LDFLAGS += -fsanitize=address,undefined
endif
LDLIBS  += $(PKG_LIBS) -lz -lm
# Linked, libmimalloc takes malloc over for the whole process (glibc lets a library replace
# it): faster and denser than glibc's on the Lua heap's millions of small blocks (main.c,
# GC_PAUSE). The sanitizer build keeps glibc's malloc, which the sanitizers intercept.
ifneq ($(SAN),1)
LDLIBS  += -lmimalloc
endif

# The engine's feature folders (docs/engine.md); engine/gen/ holds the build's own generator.
ENGINE_DIRS := runtime pg cdc live
ENGINE_MAIN := engine/runtime/main.c
ENGINE_SRC := $(filter-out $(ENGINE_MAIN),$(foreach d,$(ENGINE_DIRS),$(wildcard engine/$(d)/*.c)))
ENGINE_HDR := $(foreach d,$(ENGINE_DIRS),$(wildcard engine/$(d)/*.h))
ENGINE_OBJ := $(patsubst engine/%.c,$(BUILD)/obj/%.o,$(ENGINE_SRC))
MAIN_OBJ   := $(patsubst engine/%.c,$(BUILD)/obj/%.o,$(ENGINE_MAIN))
LUA_SRC    := $(shell find lua -name '*.lua' | sort)
UNIT_SRC   := $(wildcard tests/unit/test_*.c)
UNIT_BIN   := $(patsubst tests/unit/%.c,$(BUILD)/tests/%,$(UNIT_SRC))

# postgresql-server-dev-15: PGXS and the server headers, to build the test security label
# provider (tests/fixtures/seclabel/; PostgreSQL's packages ship none).
DEB_PACKAGES := gcc make pkg-config python3 liblua5.4-dev lua-lpeg-dev libuv1-dev libpq-dev \
                libedit-dev libmimalloc-dev zlib1g-dev postgresql-15 postgresql-15-orafce postgresql-server-dev-15 tmux clang-format lua-check \
                dpkg-dev chromium

.PHONY: all deps test test-asan test-faults demo fuzz fuzz-run clean unit lint-c format-c lint-lua \
        install uninstall deb

all: $(BUILD)/pgtide $(UNIT_BIN)

# Objects mirror the folders: engine/cdc/apply.c -> $(BUILD)/obj/cdc/apply.o.
$(BUILD)/obj/%.o: engine/%.c $(ENGINE_HDR) | $(BUILD)/obj
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -c $< -o $@

$(BUILD)/embed_lua: engine/gen/embed_lua.c | $(BUILD)/obj
	$(CC) -std=c11 -O1 -Wall -Wextra -Werror $< -o $@

$(BUILD)/lua_modules.c: $(BUILD)/embed_lua $(LUA_SRC)
	$(BUILD)/embed_lua lua $(LUA_SRC) > $@.tmp && mv $@.tmp $@

$(BUILD)/obj/lua_modules.o: $(BUILD)/lua_modules.c engine/runtime/modules.h
	$(CC) $(CFLAGS) -c $< -o $@

$(BUILD)/pgtide: $(MAIN_OBJ) $(ENGINE_OBJ) $(BUILD)/obj/lua_modules.o
	$(CC) $(LDFLAGS) $^ $(LDLIBS) -o $@

$(BUILD)/tests/%: tests/unit/%.c tests/unit/tap.h $(ENGINE_OBJ) $(BUILD)/obj/lua_modules.o | $(BUILD)/tests
	$(CC) $(CFLAGS) $(LDFLAGS) $< $(ENGINE_OBJ) $(BUILD)/obj/lua_modules.o $(LDLIBS) -o $@

$(BUILD)/obj $(BUILD)/tests:
	mkdir -p $@

deps:
	@missing=""; for p in $(DEB_PACKAGES); do \
	  dpkg-query -W -f='$${Status}' $$p 2>/dev/null | grep -q 'install ok installed' || missing="$$missing $$p"; \
	done; \
	if [ -n "$$missing" ]; then \
	  echo "installing:$$missing"; \
	  if [ "$$(id -u)" != 0 ]; then echo "make deps: run as root to install$$missing" >&2; exit 1; fi; \
	  apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q $$missing; \
	fi

test: deps
	$(MAKE) lint-c
	$(MAKE) lint-lua
	$(MAKE) all
	PGTIDE=$(BUILD)/pgtide UNIT_DIR=$(BUILD)/tests bash tests/run.sh

# The C style (.clang-format): `make lint-c` fails on any file clang-format would change;
# `make format-c` rewrites them.
C_STYLE_SRC := $(wildcard engine/*/*.c engine/*/*.h tests/unit/*.c tests/unit/*.h tests/fuzz/*.c tests/fixtures/*/*.c)
lint-c:
	@command -v clang-format >/dev/null || { echo "make lint-c needs clang-format (make deps, or apt-get install -y clang-format)" >&2; exit 1; }
	@clang-format --dry-run -Werror $(C_STYLE_SRC) && echo "lint-c: $(words $(C_STYLE_SRC)) C files formatted as .clang-format says"

format-c:
	clang-format -i $(C_STYLE_SRC)

# The Lua style and mistakes luacheck finds (.luacheckrc: Lua 5.4, the engine's globals).
lint-lua:
	@command -v luacheck >/dev/null || { echo "make lint-lua needs luacheck (make deps, or apt-get install -y lua-check)" >&2; exit 1; }
	luacheck --quiet --no-color lua tests examples

test-asan: deps
	$(MAKE) BUILD=build-asan SAN=1 OPT=-O1 all
	ASAN_OPTIONS=detect_leaks=1:abort_on_error=0:halt_on_error=1 \
	LSAN_OPTIONS=suppressions=$(CURDIR)/tests/lsan.supp:print_suppressions=0 \
	UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
	PGTIDE=build-asan/pgtide UNIT_DIR=build-asan/tests bash tests/run.sh

# Fault injection (SIGKILL, server restarts, terminated sessions at seeded random points of each
# phase): PGTIDE_FAULT_SEED=N replays. The kill-anywhere suite runs SEEDS seeds (3 in `make test`)
# numbered SEED_BASE+1 .. SEED_BASE+SEEDS.
SEEDS     ?= 3
SEED_BASE ?= 0
test-faults: deps
	$(MAKE) all
	PGTIDE_FAULT_SEEDS=$(SEEDS) PGTIDE_FAULT_SEED_BASE=$(SEED_BASE) FILE_TIMEOUT=$$((600 + 90 * $(SEEDS))) \
	NO_UNIT=1 TEST_DIRS=tests/faults PGTIDE=$(BUILD)/pgtide UNIT_DIR=$(BUILD)/tests bash tests/run.sh $(FAULTS)

demo: deps
	$(MAKE) all
	PGTIDE=$(BUILD)/pgtide bash scripts/demo.sh

# libFuzzer harnesses (clang with libclang-rt): `make fuzz`, then `make fuzz-run FUZZ_SECONDS=1800`.
FUZZ_SECONDS ?= 60
fuzz: build-fuzz/fuzz_pgoutput build-fuzz/fuzz_playbook build-fuzz/fuzz_json

build-fuzz/fuzz_pgoutput: tests/fuzz/fuzz_pgoutput.c engine/cdc/pgoutput.c engine/cdc/relcache.c engine/cdc/pgoutput.h engine/cdc/relcache.h
	@command -v clang >/dev/null || { echo "make fuzz needs clang and libclang-rt-14-dev (apt-get install -y clang libclang-rt-14-dev)" >&2; exit 1; }
	mkdir -p build-fuzz
	clang -g -O1 -fsanitize=fuzzer,address,undefined -Iengine $(filter %.c,$^) -o $@

build-fuzz/fuzz_playbook: tests/fuzz/fuzz_playbook.c $(ENGINE_SRC) $(BUILD)/lua_modules.c $(ENGINE_HDR)
	@command -v clang >/dev/null || { echo "make fuzz needs clang and libclang-rt-14-dev" >&2; exit 1; }
	mkdir -p build-fuzz
	clang -g -O1 -std=c11 -D_GNU_SOURCE -fsanitize=fuzzer,address,undefined -Iengine $(PKG_CFLAGS) \
	  tests/fuzz/fuzz_playbook.c $(ENGINE_SRC) $(BUILD)/lua_modules.c $(PKG_LIBS) -lz -lm -o $@

build-fuzz/fuzz_json: tests/fuzz/fuzz_json.c engine/runtime/json.c engine/runtime/bindings.h
	@command -v clang >/dev/null || { echo "make fuzz needs clang and libclang-rt-14-dev" >&2; exit 1; }
	mkdir -p build-fuzz
	clang -g -O1 -std=c11 -D_GNU_SOURCE -fsanitize=fuzzer,address,undefined -Iengine $(PKG_CFLAGS) \
	  tests/fuzz/fuzz_json.c $(PKG_LIBS) -lm -o $@

fuzz-run: fuzz
	mkdir -p build-fuzz/corpus-pgoutput build-fuzz/corpus-playbook build-fuzz/corpus-json
	build-fuzz/fuzz_pgoutput -max_total_time=$(FUZZ_SECONDS) build-fuzz/corpus-pgoutput tests/fuzz/corpus/pgoutput
	build-fuzz/fuzz_playbook -max_total_time=$(FUZZ_SECONDS) -timeout=10 build-fuzz/corpus-playbook tests/fuzz/corpus/playbook
	build-fuzz/fuzz_json -max_total_time=$(FUZZ_SECONDS) -max_len=4096 build-fuzz/corpus-json tests/fuzz/corpus/json

# Install (docs/install.md): the binary is all that runs (the Lua modules are built into it).
PREFIX ?= /usr/local
INSTALL_BIN        = $(DESTDIR)$(PREFIX)/bin/pgtide
INSTALL_MAN        = $(DESTDIR)$(PREFIX)/share/man/man1/pgtide.1
INSTALL_COMPLETION = $(DESTDIR)$(PREFIX)/share/bash-completion/completions/pgtide
install: $(BUILD)/pgtide
	install -D -m 755 $(BUILD)/pgtide "$(INSTALL_BIN)"
	install -D -m 644 docs/pgtide.1 "$(INSTALL_MAN)"
	install -D -m 644 scripts/pgtide.bash-completion "$(INSTALL_COMPLETION)"

uninstall:
	rm -f "$(INSTALL_BIN)" "$(INSTALL_MAN)" "$(INSTALL_COMPLETION)"

# The Debian package, from `make install DESTDIR=... PREFIX=/usr` staged in $(BUILD)/deb
# (scripts/deb.sh: control file, Depends from the binary's libraries, dpkg-deb).
deb: $(BUILD)/pgtide
	rm -rf $(BUILD)/deb
	$(MAKE) --no-print-directory -o $(BUILD)/pgtide install DESTDIR=$(abspath $(BUILD))/deb/debian/pgtide PREFIX=/usr
	bash scripts/deb.sh "$(BUILD)/deb" "$(BUILD)"

clean:
	rm -rf build build-asan build-fuzz
