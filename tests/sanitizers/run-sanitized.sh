#!/usr/bin/env bash
# Builds the backend library and its unit tests with sanitizers in a tree of their own
# (no OVS needed) and runs them there.
#   run-sanitized.sh SOURCE_DIR BUILD_DIR SANITIZERS [TEST_BINARY]
# SANITIZERS is what -fsanitize= takes: "address,undefined" or "thread".  TEST_BINARY is
# the gtest target to build and run: vhostuser_unit_tests (default) or
# vhostuser_hostile_tests (the replay suite in process).
set -euo pipefail
src=$1 build=$2 sanitizers=$3 binary=${4:-vhostuser_unit_tests}
cmake -S "$src" -B "$build" -G Ninja -DVHU_WITH_OVS=OFF -DVHU_SANITIZE="$sanitizers" \
      -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
cmake --build "$build" -j2 --target "$binary"
export ASAN_OPTIONS=detect_leaks=1:abort_on_error=1:strict_string_checks=1
export UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1
export TSAN_OPTIONS=halt_on_error=1:second_deadlock_stack=1
"$build/bin/$binary" ${GTEST_FILTER:+--gtest_filter=$GTEST_FILTER}
