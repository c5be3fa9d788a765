// The dirty page log of a live migration: one bit per 4 KiB page of guest-physical
// memory, in a shared memory area the frontend (QEMU) gives with SET_LOG_BASE and reads
// while it copies the guest.  Every byte the switch writes into guest memory while
// logging is on (VHOST_F_LOG_ALL) marks its page, after the write, so that QEMU copies
// the page again.
//
// The log is hostile input like the rest: its fd must be a shared-memory file of the
// size announced, its size is bounded, and a page beyond the log's end is never marked
// (the frontend then sent a log too small for its guest, which costs only its own
// migration).  The data path marks it from PMD threads, so a frontend that truncates
// the file under it must lose its port, not kill the switch: the mapping is guarded
// (file_mapping.h) and lost() tells.
#ifndef NETDEV_VHOSTUSER_MEMORY_DIRTY_LOG_H
#define NETDEV_VHOSTUSER_MEMORY_DIRTY_LOG_H

#include <cstdint>
#include <memory>

#include "absl/status/statusor.h"
#include "memory/file_mapping.h"
#include "memory/guest_memory.h"

namespace vhostuser {

class DirtyLog {
 public:
  static constexpr uint64_t kPageSize = 4096;

  // Maps 'size' bytes at 'offset' of 'fd' (the caller keeps the fd), refusing a log
  // larger than 'max_size' bytes.  'closer_owner': as for FileMapping::Map().
  static absl::StatusOr<std::unique_ptr<DirtyLog>> Map(int fd, uint64_t size,
                                                       uint64_t offset, uint64_t max_size,
                                                       uint32_t closer_owner = 0);
  DirtyLog(const DirtyLog&) = delete;
  DirtyLog& operator=(const DirtyLog&) = delete;

  // Marks the pages of guest-physical [gpa, gpa + len).  Any thread.
  void MarkGuest(uint64_t gpa, uint64_t len) const;
  // Marks the pages of [host, host + len), a range of our mapping of 'memory' (one
  // region: everything the data path writes was translated as one range).
  void MarkHost(const GuestMemory& memory, const void* host, uint64_t len) const;

  uint64_t size() const { return size_; }
  // Whether the log's file shrank under the data path's marks (a SIGBUS was
  // absorbed: the marks since went nowhere).  Any thread.
  bool lost() const { return file_.lost(); }

 private:
  DirtyLog() = default;
  FileMapping file_;
  uint8_t* bitmap_ = nullptr;
  uint64_t size_ = 0;
};

}  // namespace vhostuser

#endif  // NETDEV_VHOSTUSER_MEMORY_DIRTY_LOG_H
