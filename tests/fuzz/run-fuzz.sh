#!/usr/bin/env bash
# Builds the libFuzzer targets in a clang tree of their own and runs one of them.
#
#   tests/fuzz/run-fuzz.sh [--build-only | --no-build] [BUILD_DIR [TARGET [SECONDS]]]
#                          [-- LIBFUZZER_ARGS...]
#
# BUILD_DIR (default build/fuzz) is configured with CC=clang CXX=clang++,
# -DVHU_WITH_OVS=OFF -DVHU_FUZZ=ON -DVHU_SANITIZE=address,undefined.  TARGET is
# "control" or "virtqueue"; SECONDS defaults to 30.  The run starts from the seeds in
# tests/fuzz/corpus/TARGET and from BUILD_DIR/corpus/TARGET, where it adds what it
# finds; a crash leaves its input in BUILD_DIR/artifacts/ and fails the run.  The
# minutes-long runs of tests/fuzz/README.md are this script with more SECONDS and
# JOBS/nice (e.g. nice -n 19 tests/fuzz/run-fuzz.sh build/fuzz control 1800).
set -euo pipefail
src=$(cd "$(dirname "$0")/../.." && pwd)
build=1 run=1
case ${1:-} in
  --build-only) run=0; shift ;;
  --no-build) build=0; shift ;;
esac
dir=${1:-$src/build/fuzz}
target=${2:-control}
seconds=${3:-30}
shift $(( $# < 3 ? $# : 3 ))
[[ ${1:-} == -- ]] && shift
extra=("$@")

if ((build)); then
  CC=clang CXX=clang++ cmake -S "$src" -B "$dir" -G Ninja -DVHU_WITH_OVS=OFF -DVHU_FUZZ=ON \
    -DVHU_SANITIZE=address,undefined -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
  cmake --build "$dir" -j"${VHU_JOBS:-2}" --target fuzz_control fuzz_virtqueue
fi
((run)) || exit 0

binary=$dir/bin/fuzz_$target
[[ -x $binary ]] || { echo "run-fuzz: no $binary (build it first)" >&2; exit 2; }
case $target in
  control) max_len=16384 ;;
  *) max_len=8192 ;;
esac
mkdir -p "$dir/corpus/$target" "$dir/artifacts"
export ASAN_OPTIONS=detect_leaks=1:abort_on_error=1:allocator_may_return_null=1
export UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1
echo "run-fuzz: $binary for ${seconds}s" >&2
exec "$binary" -max_total_time="$seconds" -max_len="$max_len" -timeout=10 \
  -rss_limit_mb=2048 -print_final_stats=1 -artifact_prefix="$dir/artifacts/$target-" \
  "${extra[@]}" "$dir/corpus/$target" "$src/tests/fuzz/corpus/$target"
