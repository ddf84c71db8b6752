// The io_uring engine: a regular file or a block device, read and written with readv/writev on
// the queue's own io_uring (the file registered as a fixed file), flushed with fdatasync. Discard
// and write-zeroes of a file are fallocate() on the same ring; a block device's discard, which has
// no io_uring form on the kernels pvback supports, runs on one helper thread per channel, so a
// whole-disk discard never blocks the queue's thread.
#pragma once
#include <atomic>
#include <string>

#include "base/unique_fd.hpp"
#include "storage/engine.hpp"

namespace pvback::storage {

struct FileOptions {
  std::string path;
  bool read_only = false;
  bool allow_direct = true;  // O_DIRECT when the file system accepts it
  bool discard = true;       // the toolstack's discard-enable
  // flock() the file (file_engine.cpp's lock_storage) before serving it. Off where the serving is
  // done by another open file: a data-plane process gets one from reopen_locked().
  bool lock = true;
};

class FileEngine final : public Engine {
 public:
  // Opens, locks (see file_engine.cpp) and probes. errno value on failure.
  static std::expected<std::unique_ptr<FileEngine>, int> open(const FileOptions& options);
  // The same for a file opened (and locked, if it is to be) by someone else, e.g. a data-plane
  // process given its storage by the control process. O_DIRECT is whatever `fd` was opened with;
  // options.path only names it in logs.
  static std::expected<std::unique_ptr<FileEngine>, int> adopt(UniqueFd fd, const FileOptions& options);
  // A new open file of the same file, with the same access and O_DIRECT, locked as open() locks:
  // what a data-plane process serves. Its lock is released only when every I/O of the process
  // that held it has finished, so the next one given to a successor waits for a killed
  // predecessor's writes.
  [[nodiscard]] std::expected<UniqueFd, int> reopen_locked() const;

  const Capabilities& capabilities() const override { return caps_; }
  std::uint64_t sectors() const override { return sectors_.load(std::memory_order_acquire); }
  bool refresh_size() override;
  std::string describe() const override;
  const char* kind() const override { return block_device_ ? "block" : "file"; }
  std::expected<std::unique_ptr<Channel>, int> open_channel(Loop& loop) override;

  const std::string& path() const { return path_; }
  int fd() const { return fd_.get(); }
  bool block_device() const { return block_device_; }
  // A file in memory (tmpfs, ramfs; O_DIRECT or not): its file system reads and writes without
  // waiting for a disk but cannot say so to io_uring (no RWF_NOWAIT), which would hand every read
  // and write to a worker thread; the channel does them itself, at once (FileChannel::submit).
  bool in_memory() const { return in_memory_; }

 private:
  FileEngine() = default;
  static std::expected<std::unique_ptr<FileEngine>, int> probe(UniqueFd fd, const FileOptions& options);
  UniqueFd fd_;
  std::string path_;
  bool block_device_ = false;
  bool in_memory_ = false;
  Capabilities caps_;
  std::atomic<std::uint64_t> sectors_{0};
};

}  // namespace pvback::storage
