# Prints, for every network interface, its driver and its queue count, on lines the
# test can parse: "VHU-LINK iface=eth0 driver=virtio_net tx_queues=2 rx_queues=2".
for dev in /sys/class/net/*; do
  iface=${dev##*/}
  [ -e "$dev/device/driver" ] || continue
  driver=$(basename "$(readlink "$dev/device/driver")")
  tx=$(ls -d "$dev"/queues/tx-* | wc -l)
  rx=$(ls -d "$dev"/queues/rx-* | wc -l)
  echo "VHU-LINK iface=$iface driver=$driver tx_queues=$tx rx_queues=$rx"
done
