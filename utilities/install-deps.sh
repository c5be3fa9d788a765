#!/usr/bin/env bash
# Installs, from Debian's packages, everything that building ovs-vhostuser, its demo
# and its tests need.  Idempotent: when every package is already there it only checks
# (dpkg-query) and returns within a second or two.
#
# Usage: utilities/install-deps.sh [--bench] [--hugepages N]
#   --bench         also install what the benchmarks compare with and the tests do not
#                   need: Debian's OVS-DPDK (openvswitch-switch-dpdk), the baseline of
#                   switch_bench.py, port_scale_bench.py and afxdp_pvp_bench.py, and
#                   perf (linux-perf) for pmd_profile.py.
#   --hugepages N   also reserve N 2 MiB hugepages and mount hugetlbfs on /dev/hugepages
#                   (the DPDK vhost PMD baseline in the benchmarks wants them; our own
#                   switch never does).
set -euo pipefail

bench=false
hugepages=0
while (($#)); do
  case $1 in
    --bench) bench=true; shift ;;
    --hugepages)
      [[ ${2:-} =~ ^[0-9]+$ ]] || { echo "install-deps: --hugepages wants a count" >&2; exit 2; }
      hugepages=$2; shift 2 ;;
    *) echo "install-deps: unknown argument $1" >&2; exit 2 ;;
  esac
done

packages=(
  build-essential g++ cmake pkg-config ninja-build
  libabsl-dev libgtest-dev libgmock-dev googletest libbenchmark-dev
  openvswitch-source openvswitch-common openvswitch-switch
  ovn-central ovn-host
  libssl-dev libcap-ng-dev libunbound-dev libnuma-dev libxdp-dev libbpf-dev
  autoconf automake libtool python3
  dpdk dpdk-dev libdpdk-dev
  qemu-system-x86 busybox-static cpio
  libvirt-daemon-system libvirt-clients
  procps iproute2 psmisc
  clang clang-14 libclang-rt-14-dev
  ccache
)
# Its ovs-vswitchd is an alternative of lower priority than openvswitch-switch's, so
# installing it leaves the system's OVS as it was.
if $bench; then packages+=(openvswitch-switch-dpdk linux-perf); fi

missing=()
for p in "${packages[@]}"; do
  status=$(dpkg-query -W -f='${Status}' "$p" 2>/dev/null || true)
  [[ $status == "install ok installed" ]] || missing+=("$p")
done

# Whether the system's OVS or OVN daemons run, by their pidfiles (the demo's and the
# tests' daemons keep theirs elsewhere).
pid_running() { [[ -r $1 ]] && kill -0 "$(cat "$1" 2>/dev/null)" 2>/dev/null; }
system_ovs_running() { pid_running /var/run/openvswitch/ovs-vswitchd.pid \
                         || pid_running /var/run/openvswitch/ovsdb-server.pid; }
system_ovn_running() { pid_running /var/run/ovn/ovn-controller.pid \
                         || pid_running /var/run/ovn/ovn-northd.pid \
                         || pid_running /var/run/ovn/ovnnb_db.pid \
                         || pid_running /var/run/ovn/ovnsb_db.pid; }
ovs_ran_before=false ovn_ran_before=false
system_ovs_running && ovs_ran_before=true
system_ovn_running && ovn_ran_before=true

if ((${#missing[@]})); then
  echo "install-deps: installing ${missing[*]}" >&2
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# The distribution's OVS and OVN services are needed by nothing here: the demo and the
# tests run their own daemons in private directories.  But a package this run installs
# starts its services (its postinst), which would then hold CPU the benchmarks need,
# the system OVS's sockets and pidfiles the package test needs free, and, for
# ovn-controller, the system's OVS as a chassis: those are stopped, and kept from
# starting at boot.  Services that ran before are the machine's own (an operator trying
# the demo on a compute node) and are left alone.
installed_now() { [[ " ${missing[*]:-} " == *" $1 "* ]]; }
systemd=false
[[ -d /run/systemd/system ]] && systemd=true
if ((${#missing[@]})); then
  if ! $ovs_ran_before && system_ovs_running; then
    /usr/share/openvswitch/scripts/ovs-ctl stop >/dev/null 2>&1 || true
    if $systemd && installed_now openvswitch-switch; then
      systemctl disable openvswitch-switch >/dev/null 2>&1 || true
    fi
  fi
  if ! $ovn_ran_before && system_ovn_running; then
    if $systemd; then
      for unit in ovn-host ovn-controller ovn-central ovn-northd ovn-ovsdb-server-nb \
                  ovn-ovsdb-server-sb; do
        systemctl stop "$unit" >/dev/null 2>&1 || true
      done
    fi
    if [[ -x /usr/share/ovn/scripts/ovn-ctl ]]; then
      /usr/share/ovn/scripts/ovn-ctl stop_controller >/dev/null 2>&1 || true
      /usr/share/ovn/scripts/ovn-ctl stop_northd >/dev/null 2>&1 || true
    fi
  fi
  if $systemd && { installed_now ovn-central || installed_now ovn-host; }; then
    systemctl disable ovn-central ovn-host >/dev/null 2>&1 || true
  fi
fi
if system_ovs_running || system_ovn_running; then
  echo "install-deps: the system's Open vSwitch or OVN is running; left alone (it" \
       "shares the CPUs with what runs here, and the package test skips meanwhile)" >&2
fi

if ((hugepages > 0)); then
  have=$(cat /proc/sys/vm/nr_hugepages)
  if ((have < hugepages)); then echo "$hugepages" > /proc/sys/vm/nr_hugepages; fi
  mkdir -p /dev/hugepages
  mountpoint -q /dev/hugepages || mount -t hugetlbfs nodev /dev/hugepages
fi
