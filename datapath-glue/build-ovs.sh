#!/usr/bin/env bash
# Builds the parts of Open vSwitch 3.1 that our ovs-vswitchd links against, once per
# machine.
#
# Our daemon is OVS's own ovs-vswitchd with one more netdev provider, so it needs OVS's
# static libraries, its generated headers and three of vswitchd's objects.  Building
# them takes minutes; every clone and every build tree on a machine needs the very same
# result, so the build lives in a cache outside any source tree, keyed by what decides
# its content: the tarball's bytes, the configure flags, the compiler, the optional
# libraries configure finds, and this recipe.
#
# A build directory counts only once its stamp file exists, and the stamp is written
# last: a build that failed or was interrupted leaves no stamp and is redone from
# scratch by the next run.  Concurrent runs (two clones configuring at once) serialize
# on a lock file, so the second one finds the first one's result.
#
# Usage: build-ovs.sh [--print-dir]
#   --print-dir   only print the build directory this machine would use; build nothing.
#
# Prints, as its last line of stdout, the directory holding the built OVS tree.
#
# Environment:
#   VHU_OVS_TARBALL    OVS source tarball (default /usr/src/openvswitch/openvswitch.tar.gz,
#                      from Debian's openvswitch-source).
#   VHU_OVS_CACHE_DIR  cache root (default /var/cache/ovs-vhostuser, or
#                      ~/.cache/ovs-vhostuser when that is not writable).
#   VHU_OVS_JOBS       make's parallelism (default 2: the build machines have two cores).
#   CFLAGS, CPPFLAGS, LDFLAGS  reach OVS's configure, as usual, and so are part of the
#                      cache key: a package build (which exports the distribution's
#                      hardening flags) gets a build of its own, and a plain build, with
#                      none of them set, the same build as before.
set -euo pipefail

# Bump when the recipe below changes what ends up in the build directory, so that
# machines with an older cache build again instead of linking stale objects.
readonly RECIPE_VERSION=1

# --prefix and friends match Debian's own OVS packages, so that our daemon, started
# without OVS_RUNDIR and friends, finds the database socket and the run directory where
# Debian's ovs-vsctl, ovs-appctl and init scripts expect them.
readonly CONFIGURE_FLAGS="--enable-shared=no --prefix=/usr --localstatedir=/var --sysconfdir=/etc"

# The objects we take from vswitchd/.  ovs-vswitchd.o is built separately below, with
# its main() renamed so that our own main() can run first.
readonly OVS_LIBRARIES=(lib/libopenvswitch.la lib/libsflow.la ofproto/libofproto.la
                        ovsdb/libovsdb.la)
readonly VSWITCHD_OBJECTS=(vswitchd/bridge.o vswitchd/system-stats.o)
readonly RENAMED_MAIN=ovs_vswitchd_main

tarball=${VHU_OVS_TARBALL:-/usr/src/openvswitch/openvswitch.tar.gz}
jobs=${VHU_OVS_JOBS:-2}

log() { echo "build-ovs: $*" >&2; }
die() { log "$*"; exit 1; }

[[ -r $tarball ]] || die "cannot read $tarball (install Debian's openvswitch-source)"

# The compiler flags configure reads from the environment decide what is built, so they
# go into the key.  The -f*-prefix-map= options that dpkg-buildflags adds name the
# caller's source tree, where OVS is not built: they would change nothing but the key,
# and would give every clone a build of its own, so they are dropped.  An empty
# variable is unset: configure would take an empty CFLAGS as "no -g -O2".
for var in CFLAGS CPPFLAGS LDFLAGS; do
    kept=()
    read -r -a words <<< "${!var:-}"
    for word in "${words[@]}"; do
        case $word in
            -ffile-prefix-map=*|-fdebug-prefix-map=*|-fmacro-prefix-map=*) ;;
            *) kept+=("$word") ;;
        esac
    done
    if ((${#kept[@]})); then
        export "$var=${kept[*]}"
    else
        unset "$var"
    fi
done

cache_root() {
    if [[ -n ${VHU_OVS_CACHE_DIR:-} ]]; then
        echo "$VHU_OVS_CACHE_DIR"
    elif mkdir -p /var/cache/ovs-vhostuser 2>/dev/null && [[ -w /var/cache/ovs-vhostuser ]]; then
        echo /var/cache/ovs-vhostuser
    else
        echo "${XDG_CACHE_HOME:-$HOME/.cache}/ovs-vhostuser"
    fi
}

# The libraries OVS's configure uses when it finds them (AF_XDP needs libxdp, libbpf
# and libnuma; DNS names in remotes need libunbound; SSL, libcap-ng; libunwind gives
# backtraces), by their headers: installing one, say libxdp-dev to get the afxdp port
# type, must give a new build rather than the cached one without it.  Prints the
# headers found, one line.
optional_libraries() {
    local header found=() multiarch
    multiarch=$(gcc -print-multiarch 2>/dev/null || true)
    for header in openssl/ssl.h cap-ng.h unbound.h numa.h xdp/xsk.h bpf/libbpf.h libunwind.h; do
        if [[ -e /usr/include/$header || -e /usr/local/include/$header ||
              ( -n $multiarch && -e /usr/include/$multiarch/$header ) ]]; then
            found+=("$header")
        fi
    done
    echo "optional ${found[*]}"
}

build_key() {
    local compiler
    compiler=$(gcc --version 2>/dev/null | head -n1 || echo unknown)
    {
        sha256sum < "$tarball" | cut -d' ' -f1
        echo "$CONFIGURE_FLAGS"
        echo "$compiler"
        echo "recipe $RECIPE_VERSION"
        # Only when set, so that the key of a build without them stays what it was.
        if [[ -n ${CFLAGS:-}${CPPFLAGS:-}${LDFLAGS:-} ]]; then
            echo "CFLAGS=${CFLAGS:-} CPPFLAGS=${CPPFLAGS:-} LDFLAGS=${LDFLAGS:-}"
        fi
        optional_libraries
    } | sha256sum | cut -c1-16
}

root=$(cache_root)
dir=$root/ovs-$(build_key)
stamp=$dir/.build-complete

if [[ ${1:-} == --print-dir ]]; then
    echo "$dir"
    exit 0
fi

mkdir -p "$root"
exec 9>"$dir.lock"
if ! flock -n 9; then
    log "waiting for another build of $dir to finish"
    flock 9
fi

if [[ -e $stamp ]]; then
    echo "$dir"
    exit 0
fi

# Runs make in the OVS tree, keeping its chatter in build.log; on failure shows the end
# of the log, which is where the compiler's complaint is.
ovs_make() {
    if ! make -C "$dir/src" -j"$jobs" "$@" >> "$dir/build.log" 2>&1; then
        tail -n 40 "$dir/build.log" >&2
        die "make $* failed; full log in $dir/build.log"
    fi
}

# Prints a variable of the configured OVS Makefile.
ovs_make_var() {
    make -C "$dir/src" -s --no-print-directory --eval='print-var-%: ; @echo $($*)' \
        "print-var-$1"
}

started=$(date +%s)
log "building OVS from $tarball into $dir (takes a few minutes, once per machine)"
rm -rf "$dir"
mkdir -p "$dir/src"
tar -xzf "$tarball" -C "$dir/src" --strip-components=1

log "configure $CONFIGURE_FLAGS"
# shellcheck disable=SC2086 # the flags are words on purpose
if ! (cd "$dir/src" && ./configure $CONFIGURE_FLAGS) > "$dir/configure.log" 2>&1; then
    tail -n 40 "$dir/configure.log" >&2
    die "configure failed; full log in $dir/configure.log"
fi

# Automake builds BUILT_SOURCES (generated headers such as lib/vswitch-idl.h) only for
# "make all", not for the individual targets asked for below, so build them first.
log "make generated sources"
read -r -a built_sources <<< "$(ovs_make_var BUILT_SOURCES)"
ovs_make "${built_sources[@]}"

# The AVX512 variant of the datapath's lookup functions is its own library, built only
# when the assembler supports AVX512.
libraries=("${OVS_LIBRARIES[@]}")
if grep -q '^#define HAVE_LD_AVX512_GOOD 1' "$dir/src/config.h"; then
    libraries+=(lib/libopenvswitchavx512.la)
fi
log "make ${libraries[*]} ${VSWITCHD_OBJECTS[*]}"
ovs_make "${libraries[@]}" "${VSWITCHD_OBJECTS[@]}"

log "make vswitchd/ovs-vswitchd.o with main renamed to $RENAMED_MAIN"
cppflags=$(ovs_make_var CPPFLAGS)
rm -f "$dir/src/vswitchd/ovs-vswitchd.o"
ovs_make vswitchd/ovs-vswitchd.o CPPFLAGS="$cppflags -Dmain=$RENAMED_MAIN"
if ! nm "$dir/src/vswitchd/ovs-vswitchd.o" | grep -q " T $RENAMED_MAIN\$"; then
    die "vswitchd/ovs-vswitchd.o does not define $RENAMED_MAIN"
fi

# What the OVS libraries need at link time, as configure found it on this machine (for
# example -lunbound only when libunbound-dev is installed).
echo "$(ovs_make_var SSL_LIBS) $(ovs_make_var CAPNG_LDADD) $(ovs_make_var LIBS)" \
    | xargs -n1 | awk '!seen[$0]++' | xargs > "$dir/link-libraries.txt"

{
    echo "tarball=$tarball"
    echo "configure_flags=$CONFIGURE_FLAGS"
    echo "environment=CFLAGS=${CFLAGS:-} CPPFLAGS=${CPPFLAGS:-} LDFLAGS=${LDFLAGS:-}"
    echo "recipe=$RECIPE_VERSION"
    echo "seconds=$(($(date +%s) - started))"
    date -u +%Y-%m-%dT%H:%M:%SZ
} > "$stamp.tmp"
mv "$stamp.tmp" "$stamp"
log "done in $(($(date +%s) - started)) s"
echo "$dir"
