// A shared mapping of part of a file a frontend gave us: a guest memory region, or the
// dirty log of a live migration.
//
// The mapping keeps a descriptor of the file, closed through FdCloser after the unmap:
// when the frontend has let go of the file (its QEMU killed, its guest powered off),
// ours is the last reference, and dropping it frees every page of the guest's memory,
// a second or more per 64 GiB.  Without the descriptor our munmap() dropped it, on the
// control thread (a disconnect) or on ovs-vswitchd's main thread (a port deleted),
// while every other port's requests waited.
//
// Only the pages that hold [offset, offset + size) are mapped, not the file from its
// start.  The frontend chooses the offset, and a sparse memfd costs it nothing at any
// size: mapping from offset 0 let one message take terabytes of our address space,
// past any limit on the sizes we accept, until some allocation elsewhere in the
// switch failed.  Every mapping is registered with SigbusGuard, since the frontend can
// truncate the file under it at any time.
#ifndef NETDEV_VHOSTUSER_MEMORY_FILE_MAPPING_H
#define NETDEV_VHOSTUSER_MEMORY_FILE_MAPPING_H

#include <cstddef>
#include <cstdint>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "runtime/unique_fd.h"

namespace vhostuser {

class FileMapping {
 public:
  // Maps [offset, offset + size) of 'fd' (the caller keeps the fd; the mapping takes a
  // duplicate, which FdCloser closes as 'closer_owner's: 0, an owner all such
  // mappings share).  'fd' must be a
  // regular file (its kind was checked: fd_kind.h) that holds the whole range.  'what'
  // names the range in errors ("region 2").
  static absl::StatusOr<FileMapping> Map(int fd, uint64_t offset, uint64_t size,
                                         absl::string_view what,
                                         uint32_t closer_owner = 0);

  FileMapping() = default;
  FileMapping(FileMapping&& other) noexcept;
  FileMapping& operator=(FileMapping&& other) noexcept;
  FileMapping(const FileMapping&) = delete;
  FileMapping& operator=(const FileMapping&) = delete;
  ~FileMapping();

  // Where 'offset' of the file is mapped.
  uint8_t* data() const { return data_; }
  // What the mapping takes of our address space: whole pages of the file system's
  // size (huge pages on hugetlbfs).
  size_t mapped_bytes() const { return length_; }
  // Whether a SIGBUS hit the mapping: the file shrank under it, or the huge pages
  // behind it ran out.  Any thread.
  bool lost() const;

 private:
  void Release();

  void* base_ = nullptr;
  size_t length_ = 0;
  uint8_t* data_ = nullptr;
  int sigbus_guard_ = -1;
  UniqueFd file_;  // Closed through FdCloser, after the unmap.
};

}  // namespace vhostuser

#endif  // NETDEV_VHOSTUSER_MEMORY_FILE_MAPPING_H
