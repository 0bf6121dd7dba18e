#!/bin/sh
# Builds the libFuzzer targets tests/fuzz/fuzz_*.c with clang (ASan + UBSan) into build/fuzz/, and
# runs each for FUZZ_SECONDS (default 20) on its corpus build/fuzz/corpus/<target>, seeded from
# tests/fuzz/seeds/<target>/ (and using tests/fuzz/dict/<target>.dict). Fails if any target
# finds a crash, a leak or a timeout; the input that did it is kept in build/fuzz/artifacts/.
#
# Usage: scripts/fuzz.sh [target ...]       e.g. FUZZ_SECONDS=600 scripts/fuzz.sh fuzz_ws
# Reproduce a finding: build/fuzz/<target> build/fuzz/artifacts/<target>-crash-...
set -eu
cd "$(dirname "$0")/.."

cc=${FUZZ_CC:-clang}
secs=${FUZZ_SECONDS:-20}
max_len=${FUZZ_MAX_LEN:-8192}
out=build/fuzz
pkgs="jansson libsodium openssl"

command -v "$cc" >/dev/null || { echo "fuzz: $cc not found (make test-deps installs it)" >&2; exit 2; }
# shellcheck disable=SC2086 # word splitting of lists of packages and flags is meant here
pkg_cflags=$(pkg-config --cflags $pkgs)
# shellcheck disable=SC2086
pkg_libs=$(pkg-config --libs $pkgs)
san="-fsanitize=address,undefined -fno-sanitize-recover=all -fno-omit-frame-pointer"
cflags="-std=c17 -D_GNU_SOURCE -g -O1 $san -Isrc $pkg_cflags"
# The code under test: everything in src/common, the HTTP parser, the config reader and the
# end-to-end message formats of libparley.
srcs="$(ls src/common/*.c src/client/e2e/*.c) src/server/net/http.c src/server/config.c"

if [ $# -gt 0 ]; then
	targets="$*"
else
	targets=$(for f in tests/fuzz/fuzz_*.c; do basename "$f" .c; done)
fi

mkdir -p "$out/obj" "$out/artifacts" "$out/corpus"
objs=""
for s in $srcs; do
	o="$out/obj/$(echo "$s" | tr / _ | sed 's/\.c$/.o/')"
	# shellcheck disable=SC2086
	"$cc" $cflags -fsanitize=fuzzer-no-link -Wall -Wextra -c "$s" -o "$o"
	objs="$objs $o"
done

count() { find "$1" -type f | wc -l; }

failed=""
for t in $targets; do
	src=tests/fuzz/$t.c
	[ -f "$src" ] || { echo "fuzz: no such target $src" >&2; exit 2; }
	echo "== $t: building"
	# shellcheck disable=SC2086
	"$cc" $cflags -Wall -Wextra -Werror -Wshadow -Wstrict-prototypes -fsanitize=fuzzer \
		"$src" $objs $pkg_libs -lhttp_parser -lpthread -lm -o "$out/$t"

	corpus=$out/corpus/$t
	mkdir -p "$corpus"
	if [ -d "tests/fuzz/seeds/$t" ]; then
		for f in "tests/fuzz/seeds/$t"/*; do
			if [ -f "$f" ]; then cp "$f" "$corpus/seed-$(basename "$f")"; fi
		done
	fi
	dict=""
	if [ -f "tests/fuzz/dict/$t.dict" ]; then dict="-dict=tests/fuzz/dict/$t.dict"; fi

	echo "== $t: fuzzing for ${secs}s (corpus $corpus: $(count "$corpus") inputs)"
	log=$out/$t.log
	rc=0
	# shellcheck disable=SC2086
	ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1} \
		UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1} \
		"$out/$t" -max_total_time="$secs" -timeout=10 -rss_limit_mb=2048 -max_len="$max_len" \
		-print_final_stats=1 -artifact_prefix="$out/artifacts/$t-" $dict "$corpus" \
		>"$log" 2>&1 || rc=$?
	if [ "$rc" -ne 0 ]; then
		echo "== $t: FAILED (exit $rc); the end of $log:"
		tail -n 60 "$log"
		failed="$failed $t"
	else
		grep -E '^Done [0-9]+ runs' "$log" || true
		grep -E '^stat::(number_of_executed_units|new_units_added|peak_rss_mb)' "$log" || true
		echo "== $t: ok (corpus now $(count "$corpus") inputs)"
	fi
done

if [ -n "$failed" ]; then
	echo "fuzz: findings in:$failed (inputs in $out/artifacts/)" >&2
	exit 1
fi
echo "fuzz: all targets ran ${secs}s without findings"
