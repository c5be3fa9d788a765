#!/bin/sh
# /init of the test guests: a busybox userland on the kernel's initramfs, no disk.
#
# The test parametrises a guest through the kernel command line, so one cached image
# serves every scenario:
#   vhu.ip=[IFACE:]ADDR/PREFIX   address an interface (eth0 when IFACE is omitted) and
#                                bring it up; may be repeated, once per interface
#   vhu.mtu=[IFACE:]BYTES        set an interface's MTU before it comes up
#   vhu.ipv6=1                   keep IPv6 on (it is off by default: IPv6 sends router
#                                solicitations, DAD and MLD reports on its own schedule,
#                                which would spoil the exact packet counts tests compare)
#   vhu.run=NAME                 run /scenarios/NAME.sh once the network is set up
#   vhu.poweroff=1               power off after vhu.run instead of opening the shell
# Every line the tests wait for starts with "VHU-", so kernel or shell chatter cannot be
# taken for one.
export PATH=/bin
/bin/busybox --install -s /bin

mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
mkdir -p /dev/pts
mount -t devpts devpts /dev/pts
mount -t tmpfs tmpfs /tmp
# Kernel messages on the console would interleave with the command output the test
# parses; the test reads them with dmesg when it wants them.
dmesg -n 1

# Prints every value of a kernel command line parameter, one a line.
cmdline_values() {
  for word in $(cat /proc/cmdline); do
    case $word in "$1="*) echo "${word#*=}" ;; esac
  done
}

# Splits "[IFACE:]VALUE" into $iface and $value.
split_iface_value() {
  case $1 in
    *:*) iface=${1%%:*}; value=${1#*:} ;;
    *) iface=eth0; value=$1 ;;
  esac
}

if [ "$(cmdline_values vhu.ipv6)" != 1 ]; then
  echo 1 > /proc/sys/net/ipv6/conf/all/disable_ipv6
  echo 1 > /proc/sys/net/ipv6/conf/default/disable_ipv6
fi

# The virtio drivers are modules in this kernel; /etc/guest-modules lists them in
# dependency order (the image builder writes it).
while read -r module; do
  insmod "/lib/modules/$module.ko" || echo "VHU-ERROR insmod $module failed"
done < /etc/guest-modules
ip link set lo up

for spec in $(cmdline_values vhu.mtu); do
  split_iface_value "$spec"
  ip link set "$iface" mtu "$value" || echo "VHU-ERROR mtu $spec failed"
done
for spec in $(cmdline_values vhu.ip); do
  split_iface_value "$spec"
  ip addr add "$value" dev "$iface" && ip link set "$iface" up ||
    echo "VHU-ERROR ip $spec failed"
done

echo "VHU-GUEST-READY cpus=$(nproc) kernel=$(uname -r)"

scenario=$(cmdline_values vhu.run)
if [ -n "$scenario" ]; then
  sh "/scenarios/$scenario.sh"
  echo "VHU-RUN-DONE name=$scenario rc=$?"
  [ "$(cmdline_values vhu.poweroff)" = 1 ] && poweroff -f
fi

# The interactive shell the test drives over the serial console.  cttyhack gives it
# the console as its controlling terminal, so job control and ^C work.
export PS1='vhu# '
exec setsid cttyhack sh
