#include "memory/file_mapping.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>

#include <cerrno>
#include <cstring>
#include <utility>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "memory/sigbus_guard.h"
#include "runtime/fd_closer.h"

namespace vhostuser {

absl::StatusOr<FileMapping> FileMapping::Map(int fd, uint64_t offset, uint64_t size,
                                             absl::string_view what,
                                             uint32_t closer_owner) {
  if (size == 0 || offset + size < offset) {
    return absl::InvalidArgumentError(
        absl::StrFormat("%s of %#x bytes at file offset %#x is not a range", what, size,
                        offset));
  }
  struct stat st;
  if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
    return absl::InvalidArgumentError(
        absl::StrCat(what, " fd is not a shared-memory file"));
  }
  // Mapping past the end of the file would turn the first access into SIGBUS.
  const uint64_t end = offset + size;
  if (end > static_cast<uint64_t>(st.st_size)) {
    return absl::InvalidArgumentError(absl::StrFormat(
        "%s ends at file offset %#x, beyond the file's %#x bytes", what, end, st.st_size));
  }
  // mmap() takes offsets, and on hugetlbfs lengths, in whole pages of the file
  // system's size; st_blksize is that size (4 KiB, or the huge page size).
  uint64_t page = st.st_blksize > 0 ? static_cast<uint64_t>(st.st_blksize) : 4096;
  if ((page & (page - 1)) != 0 || page < 4096) page = 4096;
  const uint64_t first = offset & ~(page - 1);
  const uint64_t last = (end + page - 1) & ~(page - 1);
  if (last < end || last - first > SIZE_MAX) {
    return absl::InvalidArgumentError(absl::StrCat(what, " is too large"));
  }
  const size_t length = static_cast<size_t>(last - first);
  static const uint32_t kSharedOwner = FdCloser::NewOwner();
  UniqueFd file = UniqueFd::FromFrontend(fcntl(fd, F_DUPFD_CLOEXEC, 0),
                                         closer_owner != 0 ? closer_owner : kSharedOwner);
  if (!file.valid()) {
    return absl::ResourceExhaustedError(
        absl::StrCat("cannot keep ", what, "'s fd: ", strerror(errno)));
  }
  // MAP_NORESERVE: on hugetlbfs, a shared mapping otherwise reserves a huge page for
  // every page of the range the file does not hold yet.  The frontend's own mapping has
  // reserved them already, unless it chose not to (QEMU's reserve=off, for hugepages
  // overcommitted), and then ours failed for want of pages the guest may never use.
  // And a sparse file made us take the free pages of the whole system, for as long as
  // the file lived.  A page missing when we touch it is then a SIGBUS, as a truncated
  // file is: the guard below takes it, and the port goes.  Elsewhere (tmpfs, memfd)
  // the flag changes nothing: shared file pages are not reserved per mapping.
  //
  // Mapped without access, then given it: under mlockall(MCL_FUTURE), which
  // ovs-vswitchd's --mlockall sets (ovs-ctl passes it by default), an accessible
  // mapping is filled in and locked as it is made: every page of the range allocated
  // (a sparse memfd up to vhost-max-guest-memory), charged to us and pinned, on the
  // control thread.  An inaccessible mapping is not filled in, and mprotect() fills in
  // no shared mapping: pages come in as the data path touches them, as they do
  // without mlockall, and are locked then.
  void* base = mmap(nullptr, length, PROT_NONE, MAP_SHARED | MAP_NORESERVE, fd,
                    static_cast<off_t>(first));
  if (base == MAP_FAILED) {
    return absl::ResourceExhaustedError(absl::StrCat(
        "mmap of ", what, " (", length, " bytes) failed: ", strerror(errno)));
  }
  if (mprotect(base, length, PROT_READ | PROT_WRITE) != 0) {
    const int error = errno;
    munmap(base, length);
    return absl::ResourceExhaustedError(absl::StrCat(
        "cannot give access to ", what, " (", length, " bytes): ", strerror(error)));
  }
  const int guard = SigbusGuard::Register(base, length, page);
  if (guard < 0) {
    munmap(base, length);
    return absl::ResourceExhaustedError(
        absl::StrCat("cannot map ", what, ": ", SigbusGuard::kMaxMappings,
                     " files of frontends are mapped already"));
  }
  FileMapping mapping;
  mapping.base_ = base;
  mapping.length_ = length;
  mapping.data_ = static_cast<uint8_t*>(base) + (offset - first);
  mapping.sigbus_guard_ = guard;
  mapping.file_ = std::move(file);
  return mapping;
}

FileMapping::FileMapping(FileMapping&& other) noexcept
    : base_(std::exchange(other.base_, nullptr)),
      length_(std::exchange(other.length_, 0)),
      data_(std::exchange(other.data_, nullptr)),
      sigbus_guard_(std::exchange(other.sigbus_guard_, -1)),
      file_(std::move(other.file_)) {}

FileMapping& FileMapping::operator=(FileMapping&& other) noexcept {
  if (this != &other) {
    Release();
    base_ = std::exchange(other.base_, nullptr);
    length_ = std::exchange(other.length_, 0);
    data_ = std::exchange(other.data_, nullptr);
    sigbus_guard_ = std::exchange(other.sigbus_guard_, -1);
    file_ = std::move(other.file_);
  }
  return *this;
}

FileMapping::~FileMapping() { Release(); }

void FileMapping::Release() {
  if (base_ == nullptr) return;
  SigbusGuard::Unregister(sigbus_guard_);
  munmap(base_, length_);
  file_.reset();  // After the unmap: this may be the file's last reference.
  base_ = nullptr;
  sigbus_guard_ = -1;
}

bool FileMapping::lost() const {
  return sigbus_guard_ >= 0 && SigbusGuard::Faulted(sigbus_guard_);
}

}  // namespace vhostuser
