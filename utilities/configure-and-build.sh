#!/usr/bin/env bash
# Configures (first time only) and builds ovs-vhostuser into ./build.
#
# Shared by ovs-vhostuser-demo and run-tests.  The first configure on a machine also
# builds the parts of OVS our daemon links against, into a cache under
# /var/cache/ovs-vhostuser (datapath-glue/build-ovs.sh); later ones reuse it.
#
# Environment: VHU_BUILD_DIR (default build), VHU_JOBS (default: number of CPUs).
set -euo pipefail
cd "$(dirname "$0")/.."

build_dir=${VHU_BUILD_DIR:-build}
jobs=${VHU_JOBS:-$(nproc)}

# An existing tree keeps its generator and options: cmake --build reconfigures it
# by itself when a CMakeLists.txt changed.
if [[ ! -f $build_dir/CMakeCache.txt ]]; then
    cmake -S . -B "$build_dir" -G Ninja
fi
cmake --build "$build_dir" --parallel "$jobs"
