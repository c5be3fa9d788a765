// The C API (vhostuser/vhostuser.h) over Port, Device and Virtqueue.
#include <cstring>
#include <mutex>

#include "control/port.h"
#include "net/rarp.h"
#include "vhostuser/vhostuser.h"

using vhostuser::Port;
using vhostuser::Spinlock;
using vhostuser::Virtqueue;

struct vhu_port {
  std::unique_ptr<Port> impl;
};

extern "C" {

vhu_port* vhu_port_create(const vhu_port_options* options, char* error,
                          size_t error_size) {
  auto port = Port::Create(*options);
  if (!port.ok()) {
    if (error != nullptr && error_size > 0) {
      std::string message(port.status().message());
      size_t n = std::min(message.size(), error_size - 1);
      message.copy(error, n);
      error[n] = '\0';
    }
    return nullptr;
  }
  return new vhu_port{*std::move(port)};
}

void vhu_port_destroy(vhu_port* port) { delete port; }

bool vhu_port_next_event(vhu_port* port, vhu_event* event) {
  return port->impl->NextEvent(event);
}

void vhu_port_get_status(vhu_port* port, vhu_port_status* status) {
  port->impl->GetStatus(status);
}

bool vhu_vring_get_status(vhu_port* port, unsigned vring, vhu_vring_status* status) {
  return port->impl->GetVringStatus(vring, status);
}

uint32_t vhu_dequeue_burst(vhu_port* port, uint16_t qp, vhu_alloc_fn* alloc, void* aux,
                           void** pkts, uint32_t max, uint32_t* n_dropped) {
  uint32_t dropped_here;
  if (n_dropped == nullptr) n_dropped = &dropped_here;
  *n_dropped = 0;
  vhostuser::Device& device = port->impl->device();
  Virtqueue* vqp = device.FindVring(2u * qp + 1);
  if (vqp == nullptr) return 0;  // Out of range, or never configured.
  Virtqueue& vq = *vqp;
  std::lock_guard<Spinlock> lock(vq.lock());
  uint32_t injected = 0;
  uint8_t mac[6];
  // After a live migration QEMU may ask us to announce the guest (SEND_RARP): its RARP
  // comes first out of queue pair 0, once that ring moves packets.
  if (__builtin_expect(qp == 0 && device.rarp_pending(), 0) && max > 0 && vq.accessible() &&
      device.TakeRarp(mac)) {
    uint8_t* data;
    if (void* pkt = alloc(aux, vhostuser::kRarpFrameSize, &data)) {
      vhostuser::BuildRarpFrame(mac, data);
      pkts[injected++] = pkt;
    } else {
      device.ReturnRarp(mac);  // For the next call: the announcement must not be lost.
    }
  }
  uint32_t n = vq.Dequeue(alloc, aux, pkts + injected, max - injected, n_dropped);
  if (vq.failure() != nullptr) port->impl->ReportRingFailure();
  return injected + n;
}

uint32_t vhu_enqueue_burst(vhu_port* port, uint16_t qp, const vhu_tx_packet* pkts,
                           uint32_t n, uint32_t* n_dropped) {
  Virtqueue* vqp = port->impl->device().FindVring(2u * qp);
  if (vqp == nullptr) {  // Out of range, or never configured.
    if (n_dropped) *n_dropped = 0;
    return 0;
  }
  Virtqueue& vq = *vqp;
  std::lock_guard<Spinlock> lock(vq.lock());
  uint32_t sent = vq.Enqueue(pkts, n, n_dropped);
  if (vq.failure() != nullptr) port->impl->ReportRingFailure();
  return sent;
}

uint32_t vhu_port_max_rx_frame(vhu_port* port) {
  vhu_port_status status;
  port->impl->GetStatus(&status);
  if (status.features & vhostuser::Bit(vhostuser::feature::kNetMrgRxbuf)) return 65535;
  // Without mergeable buffers a frame must fit one receive chain; Linux posts chains of
  // at least 1518 bytes plus header (more with big_packets), the MTU the guest asked for
  // bounds what it expects.
  return status.mtu ? status.mtu + 18u : 1518u;
}

}  // extern "C"
