#include "blkback/shared_stats.hpp"

#include <fcntl.h>
#include <sys/mman.h>
#include <unistd.h>
#include <sys/stat.h>

#include <cerrno>
#include <new>
#include <utility>

namespace pvback::blkback {

SharedQueueStats::SharedQueueStats(SharedQueueStats&& o) noexcept
    : fd_(std::move(o.fd_)), base_(std::exchange(o.base_, nullptr)), queues_(std::exchange(o.queues_, 0)) {}

SharedQueueStats& SharedQueueStats::operator=(SharedQueueStats&& o) noexcept {
  if (this != &o) {
    this->~SharedQueueStats();
    new (this) SharedQueueStats(std::move(o));
  }
  return *this;
}

SharedQueueStats::~SharedQueueStats() {
  if (base_ != nullptr) ::munmap(base_, sizeof(QueueStats) * queues_);
  base_ = nullptr;
}

std::expected<SharedQueueStats, int> SharedQueueStats::create(unsigned queues) {
  UniqueFd fd(::memfd_create("pvback-blk-stats", MFD_CLOEXEC | MFD_ALLOW_SEALING));
  if (!fd) return std::unexpected(errno);
  const std::size_t bytes = sizeof(QueueStats) * queues;
  if (::ftruncate(fd.get(), static_cast<off_t>(bytes)) != 0) return std::unexpected(errno);
  // The size cannot change under the other process's mapping.
  if (::fcntl(fd.get(), F_ADD_SEALS, F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_SEAL) != 0) return std::unexpected(errno);
  auto mapped = adopt(std::move(fd), queues);
  if (!mapped) return mapped;
  for (unsigned i = 0; i < queues; ++i) new (&mapped->base_[i]) QueueStats();
  return mapped;
}

std::expected<SharedQueueStats, int> SharedQueueStats::adopt(UniqueFd fd, unsigned queues) {
  const std::size_t bytes = sizeof(QueueStats) * queues;
  struct stat st {};
  if (queues == 0 || ::fstat(fd.get(), &st) != 0 || static_cast<std::size_t>(st.st_size) < bytes)
    return std::unexpected(EINVAL);
  void* p = ::mmap(nullptr, bytes, PROT_READ | PROT_WRITE, MAP_SHARED, fd.get(), 0);
  if (p == MAP_FAILED) return std::unexpected(errno);
  SharedQueueStats s;
  s.fd_ = std::move(fd);
  s.base_ = static_cast<QueueStats*>(p);
  s.queues_ = queues;
  return s;
}

}  // namespace pvback::blkback
