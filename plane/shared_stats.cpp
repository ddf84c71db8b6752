#include "plane/shared_stats.hpp"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>

namespace pvback::plane {

SharedMemory::SharedMemory(SharedMemory&& o) noexcept
    : fd_(std::move(o.fd_)), base_(std::exchange(o.base_, nullptr)), bytes_(std::exchange(o.bytes_, 0)) {}

SharedMemory& SharedMemory::operator=(SharedMemory&& o) noexcept {
  if (this != &o) {
    if (base_ != nullptr) ::munmap(base_, bytes_);
    fd_ = std::move(o.fd_);
    base_ = std::exchange(o.base_, nullptr);
    bytes_ = std::exchange(o.bytes_, 0);
  }
  return *this;
}

SharedMemory::~SharedMemory() {
  if (base_ != nullptr) ::munmap(base_, bytes_);
}

std::expected<SharedMemory, int> SharedMemory::create(const char* name, std::size_t bytes) {
  UniqueFd fd(::memfd_create(name, MFD_CLOEXEC | MFD_ALLOW_SEALING));
  if (!fd) return std::unexpected(errno);
  if (::ftruncate(fd.get(), static_cast<off_t>(bytes)) != 0) return std::unexpected(errno);
  // The size cannot change under the other process's mapping.
  if (::fcntl(fd.get(), F_ADD_SEALS, F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_SEAL) != 0) return std::unexpected(errno);
  return adopt(std::move(fd), bytes);
}

std::expected<SharedMemory, int> SharedMemory::adopt(UniqueFd fd, std::size_t bytes) {
  struct stat st {};
  if (bytes == 0 || ::fstat(fd.get(), &st) != 0 || static_cast<std::size_t>(st.st_size) < bytes)
    return std::unexpected(EINVAL);
  void* p = ::mmap(nullptr, bytes, PROT_READ | PROT_WRITE, MAP_SHARED, fd.get(), 0);
  if (p == MAP_FAILED) return std::unexpected(errno);
  SharedMemory m;
  m.fd_ = std::move(fd);
  m.base_ = p;
  m.bytes_ = bytes;
  return m;
}

}  // namespace pvback::plane
