# Parley build. `make` builds build/parleyd; `make test` builds with ASan+UBSan into build/asan and
# runs every suite; `make run` starts a server on localhost:8080 with data in ./var.

CC      ?= gcc
SAN     ?= 0
ifeq ($(SAN),1)
BUILD   ?= build/asan
SANFLAGS = -fsanitize=address,undefined -fno-sanitize-recover=all -fno-omit-frame-pointer
OPT      = -O1
else
BUILD   ?= build
SANFLAGS =
OPT      = -O2
endif

PKGS    := libuv jansson libjwt libsodium sqlite3 openssl
PKG_CFLAGS := $(shell pkg-config --cflags $(PKGS) 2>/dev/null)
PKG_LIBS   := $(shell pkg-config --libs $(PKGS) 2>/dev/null)
CFLAGS  := -std=c17 -D_GNU_SOURCE -Wall -Wextra -Werror -Wshadow -Wstrict-prototypes -g $(OPT) \
           $(SANFLAGS) -Isrc $(PKG_CFLAGS) $(EXTRA_CFLAGS)
LDFLAGS := $(SANFLAGS)
LDLIBS  := $(PKG_LIBS) -lhttp_parser -lpthread -lm

COMMON_SRC := $(wildcard src/common/*.c)
SERVER_SRC := $(filter-out src/server/main.c,$(shell find src/server -name '*.c' | sort))
TLIB_SRC   := $(wildcard tests/lib/*.c)
UNIT_SRC   := $(wildcard tests/unit/test_*.c)
INTEG_SRC  := $(wildcard tests/integration/test_*.c tests/conformance/test_*.c)

COMMON_OBJ := $(COMMON_SRC:%.c=$(BUILD)/obj/%.o)
SERVER_OBJ := $(SERVER_SRC:%.c=$(BUILD)/obj/%.o)
TLIB_OBJ   := $(TLIB_SRC:%.c=$(BUILD)/obj/%.o)
UNIT_BIN   := $(UNIT_SRC:tests/%.c=$(BUILD)/tests/%)
INTEG_BIN  := $(INTEG_SRC:tests/%.c=$(BUILD)/tests/%)

.PHONY: all deps test-deps run test check fuzz format clean
all: $(BUILD)/parleyd $(BUILD)/parley-wscat

deps:
	@scripts/install-deps.sh build
test-deps:
	@scripts/install-deps.sh test

$(BUILD)/obj/%.o: %.c
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -MMD -MP -c $< -o $@

$(BUILD)/parleyd: $(BUILD)/obj/src/server/main.o $(SERVER_OBJ) $(COMMON_OBJ)
	$(CC) $(LDFLAGS) $^ $(LDLIBS) -o $@

$(BUILD)/parley-wscat: $(BUILD)/obj/src/tools/wscat.o $(COMMON_OBJ)
	$(CC) $(LDFLAGS) $^ $(LDLIBS) -o $@

# End-to-end crypto (src/client/e2e) is tested on its own, without the server.
E2E_SRC := $(wildcard src/client/e2e/*.c)
E2E_OBJ := $(E2E_SRC:%.c=$(BUILD)/obj/%.o)
$(BUILD)/tests/unit/test_e2e%: tests/unit/test_e2e%.c $(E2E_OBJ) $(COMMON_OBJ)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) $< $(E2E_OBJ) $(COMMON_OBJ) $(LDFLAGS) $(LDLIBS) -lcmocka -o $@

$(BUILD)/tests/unit/%: tests/unit/%.c $(SERVER_OBJ) $(COMMON_OBJ)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) $< $(SERVER_OBJ) $(COMMON_OBJ) $(LDFLAGS) $(LDLIBS) -lcmocka -o $@

$(BUILD)/tests/%: tests/%.c $(TLIB_OBJ) $(COMMON_OBJ)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -Itests $< $(TLIB_OBJ) $(COMMON_OBJ) $(LDFLAGS) $(LDLIBS) -lcmocka -o $@

tests-build: $(BUILD)/parleyd $(UNIT_BIN) $(INTEG_BIN)

run: deps
	@$(MAKE) --no-print-directory all
	@scripts/run.sh

# Everything under ASan and UBSan, leaks failing the run.
test: test-deps
	@$(MAKE) --no-print-directory SAN=1 tests-build
	@scripts/run-tests.sh build/asan

check: test

fuzz: test-deps
	@scripts/fuzz.sh

format:
	clang-format -i $$(find src tests bench bots -name '*.[ch]' 2>/dev/null)

clean:
	rm -rf build

-include $(shell find $(BUILD)/obj -name '*.d' 2>/dev/null)

# ---------------------------------------------------------------- client: libparley and parley
# (this section, to its end, is the client's: src/client, src/tui, tests/client)
# libparley (src/client, public header src/client/parley.h) is a static library of its own
# objects plus the common ones; parley (src/tui) links it with libcurl and ncursesw. Client
# tests (tests/client/test_*.c) start real parleyd processes through tests/lib and link
# libparley; scripts/run-tests.sh runs them with the other suites.
CLIENT_PKGS  := libcurl ncursesw
CLIENT_LIBS  := $(shell pkg-config --libs $(CLIENT_PKGS) 2>/dev/null)
CLIENT_SRC   := $(wildcard src/client/*.c src/client/e2e/*.c)
TUI_SRC      := $(wildcard src/tui/*.c)
CLIENT_OBJ   := $(CLIENT_SRC:%.c=$(BUILD)/obj/%.o)
TUI_OBJ      := $(TUI_SRC:%.c=$(BUILD)/obj/%.o)
CTEST_SRC    := $(wildcard tests/client/test_*.c)
CTEST_BIN    := $(CTEST_SRC:tests/%.c=$(BUILD)/tests/%)

$(TUI_OBJ): CFLAGS += $(shell pkg-config --cflags ncursesw 2>/dev/null)

$(BUILD)/libparley.a: $(CLIENT_OBJ) $(COMMON_OBJ)
	@rm -f $@
	ar rcs $@ $^

$(BUILD)/parley: $(TUI_OBJ) $(BUILD)/libparley.a
	$(CC) $(LDFLAGS) $(TUI_OBJ) $(BUILD)/libparley.a $(CLIENT_LIBS) $(LDLIBS) -o $@

$(BUILD)/tests/client/%: tests/client/%.c $(TLIB_OBJ) $(BUILD)/libparley.a
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -Itests $< $(TLIB_OBJ) $(BUILD)/libparley.a $(LDFLAGS) $(CLIENT_LIBS) \
		$(LDLIBS) -lcmocka -o $@

# The public header stands alone: strict C17, no project include paths.
$(BUILD)/obj/parley-h-check.o: src/client/parley.h
	@mkdir -p $(dir $@)
	$(CC) -std=c17 -pedantic -Wall -Wextra -Werror -x c -c $< -o $@

# Objects reached only through the pattern rules above are kept (make would delete them as
# intermediate files and rebuild them on every run).
.SECONDARY: $(TLIB_OBJ) $(CLIENT_OBJ) $(TUI_OBJ) $(COMMON_OBJ)

all: $(BUILD)/libparley.a $(BUILD)/parley $(BUILD)/obj/parley-h-check.o
tests-build: $(BUILD)/libparley.a $(BUILD)/parley $(BUILD)/obj/parley-h-check.o $(CTEST_BIN)

bench: all
	bench/run all
