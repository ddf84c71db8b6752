#include "blkback/storage.hpp"

#include <fcntl.h>
#include <linux/falloc.h>
#include <linux/fs.h>
#include <sys/ioctl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstdio>
#include <fstream>
#include <thread>

#include "base/log.hpp"

namespace pvback::blkback {
namespace {

// A queue attribute of the block device dev (sysfs), or 0 if unreadable.
std::uint64_t queue_attribute(dev_t dev, const char* name) {
  char path[128];
  std::snprintf(path, sizeof path, "/sys/dev/block/%u:%u/queue/%s", major(dev), minor(dev), name);
  std::ifstream in(path);
  std::uint64_t value = 0;
  if (!(in >> value)) {
    // Partitions have no queue/ of their own; their disk's is one level up.
    std::snprintf(path, sizeof path, "/sys/dev/block/%u:%u/../queue/%s", major(dev), minor(dev), name);
    std::ifstream parent(path);
    if (!(parent >> value)) return 0;
  }
  return value;
}

bool power_of_two_at_least_512(std::uint64_t v) { return v >= 512 && (v & (v - 1)) == 0 && v <= 65536; }

}  // namespace

Storage::Storage(Storage&& o) noexcept { *this = std::move(o); }

Storage& Storage::operator=(Storage&& o) noexcept {
  if (this != &o) {
    fd_ = std::move(o.fd_);
    path_ = std::move(o.path_);
    read_only_ = o.read_only_;
    direct_ = o.direct_;
    block_device_ = o.block_device_;
    logical_block_size_ = o.logical_block_size_;
    physical_block_size_ = o.physical_block_size_;
    dma_alignment_ = o.dma_alignment_;
    sectors_.store(o.sectors_.load());
    discard_ = o.discard_;
    secure_discard_ = o.secure_discard_;
    discard_granularity_ = o.discard_granularity_;
    discard_alignment_ = o.discard_alignment_;
  }
  return *this;
}

// A pvback-blk killed with I/O in flight leaves it running: the kernel finishes (or cancels) its
// io_uring requests after the process is gone, and only then drops the open file. A successor
// that answered those requests again could otherwise see a stale write land after its own. The
// flock() belongs to the open file, so it is held until that moment: the successor waits for it
// (LOCK_EX for a writable disk; LOCK_SH for a read-only one, which several guests may share).
static int lock_storage(int fd, const StorageOptions& options) {
  constexpr auto kWait = std::chrono::seconds(30);
  const int how = options.read_only ? LOCK_SH : LOCK_EX;
  const auto deadline = std::chrono::steady_clock::now() + kWait;
  bool said = false;
  while (::flock(fd, how | LOCK_NB) != 0) {
    if (errno == EINTR) continue;
    if (errno != EWOULDBLOCK) return errno == ENOLCK || errno == EOPNOTSUPP ? 0 : errno;  // no locks there
    if (std::chrono::steady_clock::now() >= deadline) {
      PVBACK_LOG(Error, "%s: still locked by another process after %llds (another backend serving it for writing, "
                 "or a killed pvback-blk's I/O that never completes)", options.path.c_str(),
                 static_cast<long long>(kWait.count()));
      return EBUSY;
    }
    if (!said) {
      PVBACK_LOG(Notice, "%s: locked by another process (a predecessor's I/O still in flight?): waiting",
                 options.path.c_str());
      said = true;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  return 0;
}

std::expected<Storage, int> Storage::open(const StorageOptions& options) {
  if (options.path.empty()) return std::unexpected(EINVAL);
  Storage s;
  s.path_ = options.path;
  s.read_only_ = options.read_only;
  const int access = options.read_only ? O_RDONLY : O_RDWR;
  int fd = -1;
  if (options.allow_direct) {
    fd = ::open(options.path.c_str(), access | O_CLOEXEC | O_DIRECT);
    // tmpfs and some FUSE file systems refuse O_DIRECT: serve them buffered.
    if (fd >= 0) s.direct_ = true;
    else if (errno != EINVAL) return std::unexpected(errno);
  }
  if (fd < 0) fd = ::open(options.path.c_str(), access | O_CLOEXEC);
  if (fd < 0) return std::unexpected(errno);
  s.fd_.reset(fd);
  if (int e = lock_storage(fd, options)) return std::unexpected(e);

  struct stat st {};
  if (::fstat(fd, &st) != 0) return std::unexpected(errno);
  if (S_ISBLK(st.st_mode)) {
    s.block_device_ = true;
    int logical = 0;
    unsigned int physical = 0;
    if (::ioctl(fd, BLKSSZGET, &logical) == 0 && power_of_two_at_least_512(static_cast<std::uint64_t>(logical)))
      s.logical_block_size_ = static_cast<std::uint32_t>(logical);
    if (::ioctl(fd, BLKPBSZGET, &physical) == 0 && power_of_two_at_least_512(physical))
      s.physical_block_size_ = physical;
    s.dma_alignment_ = s.logical_block_size_;
    if (options.discard && !options.read_only) {
      const std::uint64_t max_bytes = queue_attribute(st.st_rdev, "discard_max_bytes");
      const std::uint64_t granularity = queue_attribute(st.st_rdev, "discard_granularity");
      s.discard_ = max_bytes > 0;
      s.discard_granularity_ = static_cast<std::uint32_t>(granularity > 0 ? granularity : s.logical_block_size_);
      s.secure_discard_ = s.discard_ && queue_attribute(st.st_rdev, "max_secure_erase_sectors") > 0;
    }
  } else if (S_ISREG(st.st_mode)) {
    // Requests to a file must respect the logical block size of the device under it when
    // O_DIRECT is used; that is the sector-size we publish.
    const std::uint64_t logical = queue_attribute(st.st_dev, "logical_block_size");
    if (s.direct_ && power_of_two_at_least_512(logical)) s.logical_block_size_ = static_cast<std::uint32_t>(logical);
    s.dma_alignment_ = s.logical_block_size_;
    if (power_of_two_at_least_512(static_cast<std::uint64_t>(st.st_blksize)))
      s.physical_block_size_ = static_cast<std::uint32_t>(st.st_blksize);
    if (s.physical_block_size_ < s.logical_block_size_) s.physical_block_size_ = s.logical_block_size_;
    if (options.discard && !options.read_only) {
      // Punching a hole past the end changes nothing and tells whether the file system can.
      const off_t probe_at = st.st_size + (1 << 20);
      s.discard_ = ::fallocate(fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, probe_at, 4096) == 0;
      s.discard_granularity_ = s.physical_block_size_;
    }
  } else {
    return std::unexpected(ENOTBLK);
  }
  s.refresh_size();
  PVBACK_LOG(Info, "%s: %s, %llu sectors, sector-size %u, physical %u, %s%s%s", s.path_.c_str(),
             s.block_device_ ? "block device" : "file", static_cast<unsigned long long>(s.sectors()),
             s.logical_block_size_, s.physical_block_size_, s.direct_ ? "O_DIRECT" : "buffered",
             s.read_only_ ? ", read-only" : "", s.discard_ ? (s.secure_discard_ ? ", discard+secure" : ", discard") : "");
  return s;
}

bool Storage::refresh_size() {
  std::uint64_t bytes = 0;
  struct stat st {};
  if (::fstat(fd_.get(), &st) != 0) return false;
  if (S_ISBLK(st.st_mode)) {
    if (::ioctl(fd_.get(), BLKGETSIZE64, &bytes) != 0) return false;
  } else {
    bytes = static_cast<std::uint64_t>(st.st_size);
  }
  // Only whole logical blocks are addressable.
  bytes -= bytes % logical_block_size_;
  const std::uint64_t sectors = bytes / 512;
  return sectors_.exchange(sectors, std::memory_order_acq_rel) != sectors;
}

int Storage::discard(std::uint64_t offset, std::uint64_t length, bool secure) const {
  if (!discard_ || (secure && !secure_discard_)) return EOPNOTSUPP;
  if (read_only_) return EROFS;
  if (length == 0) return 0;
  if (block_device_) {
    std::uint64_t range[2] = {offset, length};
    return ::ioctl(fd_.get(), secure ? BLKSECDISCARD : BLKDISCARD, range) == 0 ? 0 : errno;
  }
  return ::fallocate(fd_.get(), FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, static_cast<off_t>(offset),
                     static_cast<off_t>(length)) == 0
             ? 0
             : errno;
}

}  // namespace pvback::blkback
