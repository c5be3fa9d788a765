#include "protocol/protocol.h"

#include <string>

#include "vhostuser/vhostuser.h"

namespace vhostuser {

const char* RequestName(uint32_t request) {
  static const char* const kNames[] = {
      "NONE",                  "GET_FEATURES",          "SET_FEATURES",
      "SET_OWNER",             "RESET_OWNER",           "SET_MEM_TABLE",
      "SET_LOG_BASE",          "SET_LOG_FD",            "SET_VRING_NUM",
      "SET_VRING_ADDR",        "SET_VRING_BASE",        "GET_VRING_BASE",
      "SET_VRING_KICK",        "SET_VRING_CALL",        "SET_VRING_ERR",
      "GET_PROTOCOL_FEATURES", "SET_PROTOCOL_FEATURES", "GET_QUEUE_NUM",
      "SET_VRING_ENABLE",      "SEND_RARP",             "NET_SET_MTU",
      "SET_BACKEND_REQ_FD",    "IOTLB_MSG",             "SET_VRING_ENDIAN",
      "GET_CONFIG",            "SET_CONFIG",            "CREATE_CRYPTO_SESSION",
      "CLOSE_CRYPTO_SESSION",  "POSTCOPY_ADVISE",       "POSTCOPY_LISTEN",
      "POSTCOPY_END",          "GET_INFLIGHT_FD",       "SET_INFLIGHT_FD",
      "GPU_SET_SOCKET",        "RESET_DEVICE",          "VRING_KICK",
      "GET_MAX_MEM_SLOTS",     "ADD_MEM_REG",           "REM_MEM_REG",
      "SET_STATUS",            "GET_STATUS",
  };
  if (request < sizeof kNames / sizeof kNames[0]) return kNames[request];
  return "UNKNOWN";
}

namespace {

const char* FeatureName(int bit) {
  switch (bit) {
    case 0: return "csum";
    case 1: return "guest_csum";
    case feature::kNetMtu: return "mtu";
    case 5: return "mac";
    case 7: return "guest_tso4";
    case 8: return "guest_tso6";
    case 10: return "guest_ufo";
    case 11: return "host_tso4";
    case 12: return "host_tso6";
    case 14: return "host_ufo";
    case feature::kNetMrgRxbuf: return "mrg_rxbuf";
    case feature::kNetStatus: return "status";
    case feature::kNetCtrlVq: return "ctrl_vq";
    case 18: return "ctrl_rx";
    case 19: return "ctrl_vlan";
    case feature::kNetGuestAnnounce: return "guest_announce";
    case feature::kNetMq: return "mq";
    case feature::kNotifyOnEmpty: return "notify_on_empty";
    case feature::kAnyLayout: return "any_layout";
    case feature::kRingIndirectDesc: return "indirect_desc";
    case feature::kRingEventIdx: return "event_idx";
    case feature::kProtocolFeatures: return "protocol_features";
    case feature::kVersion1: return "version_1";
    case feature::kAccessPlatform: return "access_platform";
    case feature::kRingPacked: return "ring_packed";
    case feature::kInOrder: return "in_order";
    default: return nullptr;
  }
}

const char* ProtocolFeatureName(int bit) {
  static const char* const kNames[] = {
      "mq",         "log_shmfd",       "rarp",         "reply_ack",
      "net_mtu",    "backend_req",     "cross_endian", "crypto_session",
      "pagefault",  "config",          "backend_send_fd", "host_notifier",
      "inflight_shmfd", "reset_device", "inband_notifications",
      "configure_mem_slots", "status",
  };
  if (bit >= 0 && bit < static_cast<int>(sizeof kNames / sizeof kNames[0])) {
    return kNames[bit];
  }
  return nullptr;
}

}  // namespace
}  // namespace vhostuser

extern "C" void vhu_format_features(uint64_t features, bool protocol, char* buf,
                                    size_t size) {
  std::string out;
  for (int bit = 0; bit < 64; ++bit) {
    if (!(features & (1ull << bit))) continue;
    const char* name = protocol ? vhostuser::ProtocolFeatureName(bit)
                                : vhostuser::FeatureName(bit);
    if (!out.empty()) out += ',';
    out += name ? name : "bit" + std::to_string(bit);
  }
  if (size == 0) return;
  size_t n = out.size() < size - 1 ? out.size() : size - 1;
  out.copy(buf, n);
  buf[n] = '\0';
}
