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

# Which of the system's OVS and OVN daemons run, each by its pidfile and the name of
# the process it names (a stale pidfile's number may have been given to another
# process; the demo's and the tests' daemons keep their pidfiles elsewhere).
daemons=(/var/run/openvswitch/ovs-vswitchd.pid:ovs-vswitchd
         /var/run/openvswitch/ovsdb-server.pid:ovsdb-server
         /var/run/ovn/ovn-controller.pid:ovn-controller
         /var/run/ovn/ovn-northd.pid:ovn-northd
         /var/run/ovn/ovnnb_db.pid:ovsdb-server
         /var/run/ovn/ovnsb_db.pid:ovsdb-server)
daemon_running() {
  local pidfile=${1%%:*} name=${1#*:} pid
  pid=$(cat "$pidfile" 2>/dev/null) || return 1
  [[ $pid =~ ^[0-9]+$ && $(cat "/proc/$pid/comm" 2>/dev/null) == "$name"* ]]
}
ran_before=()
for d in "${daemons[@]}"; do daemon_running "$d" && ran_before+=("$d"); done
started_now() {  # Whether daemon $1 (an entry of 'daemons') runs and did not before.
  [[ " ${ran_before[*]:-} " != *" $1 "* ]] && daemon_running "$1"
}

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
  if started_now "${daemons[0]}" || started_now "${daemons[1]}"; then
    /usr/share/openvswitch/scripts/ovs-ctl stop >/dev/null 2>&1 || true
    if $systemd && installed_now openvswitch-switch; then
      systemctl disable openvswitch-switch >/dev/null 2>&1 || true
    fi
  fi
  if started_now "${daemons[2]}"; then
    if $systemd; then
      systemctl stop ovn-host ovn-controller >/dev/null 2>&1 || true
    fi
    if [[ -x /usr/share/ovn/scripts/ovn-ctl ]]; then
      /usr/share/ovn/scripts/ovn-ctl stop_controller >/dev/null 2>&1 || true
    fi
  fi
  if started_now "${daemons[3]}" || started_now "${daemons[4]}" \
     || started_now "${daemons[5]}"; then
    if $systemd; then
      systemctl stop ovn-central ovn-northd ovn-ovsdb-server-nb ovn-ovsdb-server-sb \
        >/dev/null 2>&1 || true
    fi
    if [[ -x /usr/share/ovn/scripts/ovn-ctl ]]; then
      /usr/share/ovn/scripts/ovn-ctl stop_northd >/dev/null 2>&1 || true
    fi
  fi
  if $systemd; then
    for package in ovn-central ovn-host; do
      if installed_now "$package"; then
        systemctl disable "$package" >/dev/null 2>&1 || true
      fi
    done
  fi
fi
for d in "${daemons[@]}"; do
  if daemon_running "$d"; then
    echo "install-deps: the system's Open vSwitch or OVN is running; left alone (it" \
         "shares the CPUs with what runs here, and the package test skips meanwhile)" >&2
    break
  fi
done

if ((hugepages > 0)); then
  have=$(cat /proc/sys/vm/nr_hugepages)
  if ((have < hugepages)); then echo "$hugepages" > /proc/sys/vm/nr_hugepages; fi
  mkdir -p /dev/hugepages
  mountpoint -q /dev/hugepages || mount -t hugetlbfs nodev /dev/hugepages
fi
