// The storage behind one vbd: a regular file or a block device, opened once per vbd.
//
// Queues share it read-only except for the size, which the main thread refreshes on resize.
#pragma once
#include <atomic>
#include <cstdint>
#include <expected>
#include <string>

#include "base/unique_fd.hpp"

namespace pvback::blkback {

struct StorageOptions {
  std::string path;
  bool read_only = false;
  bool allow_direct = true;      // O_DIRECT when the storage accepts it
  bool discard = true;           // toolstack's discard-enable
};

class Storage {
 public:
  // Opens and probes the storage. errno value on failure.
  static std::expected<Storage, int> open(const StorageOptions& options);
  Storage(Storage&&) noexcept;
  Storage& operator=(Storage&&) noexcept;
  Storage(const Storage&) = delete;

  int fd() const { return fd_.get(); }
  const std::string& path() const { return path_; }
  bool read_only() const { return read_only_; }
  bool direct() const { return direct_; }          // opened with O_DIRECT: buffers and offsets must be
                                                    // aligned to dma_alignment()
  bool block_device() const { return block_device_; }
  std::uint32_t logical_block_size() const { return logical_block_size_; }   // bytes, >= 512
  std::uint32_t physical_block_size() const { return physical_block_size_; }
  std::uint32_t dma_alignment() const { return dma_alignment_; }             // bytes
  // Size in 512-byte sectors; refresh_size() re-reads it (online resize).
  std::uint64_t sectors() const { return sectors_.load(std::memory_order_acquire); }
  // Re-reads the size; returns true if it changed.
  bool refresh_size();

  bool discard_supported() const { return discard_; }
  bool secure_discard_supported() const { return secure_discard_; }
  std::uint32_t discard_granularity() const { return discard_granularity_; }  // bytes
  std::uint32_t discard_alignment() const { return discard_alignment_; }      // bytes

  // Discards [offset, offset+length) in bytes: punch hole on a file (reads back zeros),
  // BLKDISCARD / BLKSECDISCARD on a block device. 0 or an errno value. Blocking.
  int discard(std::uint64_t offset, std::uint64_t length, bool secure) const;

 private:
  Storage() = default;
  UniqueFd fd_;
  std::string path_;
  bool read_only_ = false;
  bool direct_ = false;
  bool block_device_ = false;
  std::uint32_t logical_block_size_ = 512;
  std::uint32_t physical_block_size_ = 512;
  std::uint32_t dma_alignment_ = 512;
  std::atomic<std::uint64_t> sectors_{0};
  bool discard_ = false;
  bool secure_discard_ = false;
  std::uint32_t discard_granularity_ = 0;
  std::uint32_t discard_alignment_ = 0;
};

}  // namespace pvback::blkback
