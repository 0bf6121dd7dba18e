#!/bin/sh
# Runs every test binary under BUILD_DIR/tests/{unit,integration,conformance,client} from the repo root,
# with sanitizers failing hard and leaks counted, each under a timeout. Prints one line per binary
# and, last, exactly one line "N passed, N failed" over all of them; exits 1 if anything failed.
#
# Usage: scripts/run-tests.sh BUILD_DIR        (e.g. build/asan)
# Env:   TEST_TIMEOUT   seconds per binary (default 300)
#        TEST_FILTER    only binaries whose path contains this string
#        TEST_VERBOSE=1 print every binary's full output (otherwise only the failing ones')
set -u

if [ $# -ne 1 ] || [ ! -d "$1" ]; then
	echo "usage: $0 BUILD_DIR" >&2
	exit 2
fi
build=${1%/}
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root" || exit 2

export ASAN_OPTIONS="detect_leaks=1:abort_on_error=1:halt_on_error=1"
export UBSAN_OPTIONS="halt_on_error=1:print_stacktrace=1"
timeout_s=${TEST_TIMEOUT:-300}
logdir="$build/test-logs"
mkdir -p "$logdir"

total_pass=0
total_fail=0
nbin=0

for suite in unit integration conformance client; do
	dir="$build/tests/$suite"
	[ -d "$dir" ] || continue
	for bin in "$dir"/test_*; do
		if [ ! -f "$bin" ] || [ ! -x "$bin" ]; then continue; fi
		case "$bin" in *.d | *.o) continue ;; esac
		if [ -n "${TEST_FILTER:-}" ]; then
			case "$bin" in *"$TEST_FILTER"*) ;; *) continue ;; esac
		fi
		name="$suite/$(basename "$bin")"
		log="$logdir/$suite-$(basename "$bin").log"
		nbin=$((nbin + 1))
		start=$(date +%s)
		timeout -k 10 "$timeout_s" "$bin" >"$log" 2>&1
		rc=$?
		secs=$(($(date +%s) - start))

		# cmocka's summary: "[==========] N test(s) run.", "[  PASSED  ] N test(s).",
		# "[  FAILED  ] N test(s), listed below:". Fixture errors (setup/teardown failures) are
		# in neither PASSED nor that FAILED count, so failures are at least run - passed.
		run=$(sed -n 's/^\[==========\] \([0-9][0-9]*\) test(s) run\..*/\1/p' "$log" | tail -n 1)
		passed=$(sed -n 's/^\[  PASSED  \] \([0-9][0-9]*\) test(s)\..*/\1/p' "$log" | tail -n 1)
		failed=$(sed -n 's/^\[  FAILED  \] \([0-9][0-9]*\) test(s).*/\1/p' "$log" | tail -n 1)
		skipped=$(sed -n 's/^\[  SKIPPED \] \([0-9][0-9]*\) test(s).*/\1/p' "$log" | tail -n 1)
		run=${run:-0}
		passed=${passed:-0}
		failed=${failed:-0}
		skipped=${skipped:-0}
		missing=$((run - passed - skipped))
		[ "$missing" -gt "$failed" ] && failed=$missing

		note=""
		if [ -z "$(sed -n '/^\[  PASSED  \]/p' "$log")" ]; then
			# No summary: the binary crashed, hung or never started.
			[ "$failed" -lt 1 ] && failed=1
			if [ "$rc" -eq 124 ] || [ "$rc" -eq 137 ]; then
				note="timed out after ${timeout_s}s"
			else
				note="no cmocka summary, exit $rc"
			fi
		elif [ "$rc" -ne 0 ] && [ "$failed" -eq 0 ]; then
			# All tests passed but the binary failed anyway (a leak in the test process, a
			# sanitizer report at exit, a timeout during teardown).
			failed=1
			note="exit $rc after all tests passed"
		elif [ "$rc" -ne 0 ]; then
			note="exit $rc"
		fi

		total_pass=$((total_pass + passed))
		total_fail=$((total_fail + failed))
		if [ "$failed" -eq 0 ]; then
			printf 'ok    %-36s %3d tests  %4ds\n' "$name" "$passed" "$secs"
			[ "${TEST_VERBOSE:-0}" = 1 ] && cat "$log"
		else
			printf 'FAIL  %-36s %3d ok, %d failing  %4ds  %s\n' "$name" "$passed" "$failed" \
				"$secs" "$note"
			grep -E '^\[  (FAILED  |ERROR   )\] [A-Za-z_]' "$log" | sed 's/^/        /' |
				sort -u | head -n 40
			echo "      ---- output of $name (full log: $log) ----"
			if [ "${TEST_VERBOSE:-0}" = 1 ]; then
				cat "$log"
			else
				tail -n 150 "$log"
			fi
			echo "      ---- end of $name ----"
		fi
	done
done

if [ "$nbin" -eq 0 ]; then
	echo "no test binaries under $build/tests" >&2
	total_fail=$((total_fail + 1))
fi
echo "$total_pass passed, $total_fail failed"
[ "$total_fail" -eq 0 ]
