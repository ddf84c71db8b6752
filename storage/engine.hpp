// The storage-engine seam: what a blkif queue asks of whatever stores its disk, and nothing more.
//
// An Engine is one opened disk (a file, a block device, later an NBD export or an RBD image): its
// size, what it can do, and a Channel per queue. A Channel runs on its queue's Loop (loop.hpp):
// submit() queues an operation on the loop's io_uring (or on the engine's own connection), the
// loop's next submit starts it, and the loop hands every completion tagged as the engine's back to
// on_completion(), which reports the operation's own tag to a CompletionSink. The queue never
// learns which engine serves it, as SPDK's vhost-blk sees only its bdev layer and rust-vmm's
// virtio-blk executor only a storage trait.
#pragma once
#include <sys/uio.h>

#include <cstdint>
#include <expected>
#include <memory>
#include <string>

namespace pvback::storage {

class Loop;

enum class Op : std::uint8_t {
  Read,           // into iov, `length` bytes at `offset`
  Write,          // from iov
  Flush,          // everything completed before it is durable (fdatasync)
  Discard,        // the range may read back as anything afterwards
  SecureDiscard,  // ... and its old contents are erased
  WriteZeroes,    // the range reads back as zeroes
};

const char* op_name(Op op);

struct Request {
  Op op = Op::Read;
  std::uint64_t offset = 0;       // bytes
  std::uint64_t length = 0;       // bytes; for Read/Write the sum of the iovecs
  const iovec* iov = nullptr;     // Read/Write: straight into the guest's (mapped) pages
  std::uint32_t iovcnt = 0;       // at most IOV_MAX
  std::uint32_t tag = 0;          // the caller's; reported back with the result
};

// What the disk can do; published to the frontend by the vbd.
struct Capabilities {
  bool read_only = false;
  bool direct = false;                  // no page cache between the guest and the disk
  bool flush_needed = true;             // writes can be volatile until a Flush
  bool discard = false;
  bool secure_discard = false;
  bool write_zeroes = false;
  std::uint32_t logical_block_size = 512;   // bytes, >= 512: the smallest addressable unit
  std::uint32_t physical_block_size = 512;
  std::uint32_t dma_alignment = 512;        // buffers and offsets of Read/Write, in bytes
  std::uint32_t discard_granularity = 0;    // bytes
  std::uint32_t discard_alignment = 0;      // bytes
  std::uint64_t max_transfer = 0;           // bytes per Read/Write, 0: no limit
};

// A completed operation: `res` is the number of bytes transferred (Read/Write; fewer than asked is
// a short transfer the caller continues), 0 (the others), or -errno.
class CompletionSink {
 public:
  virtual void completed(std::uint32_t tag, int res) = 0;

 protected:
  ~CompletionSink() = default;
};

// 0, or why `op` cannot go to a disk with these capabilities: EROFS (a change to a read-only
// disk), EOPNOTSUPP (an operation it does not offer). What every channel refuses at submit().
[[nodiscard]] int refusal(const Capabilities& caps, Op op);

// One queue's path to the disk. Used only from its loop's thread.
class Channel {
 public:
  virtual ~Channel() = default;  // call only once in_flight() is 0: every operation reported
  // Queues one operation. 0, or an errno value when it cannot be queued now (the caller answers
  // it with an error); the result of a queued one always comes back through on_completion.
  [[nodiscard]] virtual int submit(const Request& request) = 0;
  // A completion of the loop whose user_data has kEngineTag set.
  virtual void on_completion(std::uint64_t user_data, int res, CompletionSink& sink) = 0;
  // Operations queued or running, not yet reported.
  virtual std::uint32_t in_flight() const = 0;
  // Not 0 (an errno value) once the storage behind this channel is gone as a whole and a new
  // process would get it back: pvback-blk's own storage daemon died. Its errors then say nothing
  // about the requests, and a queue that has a recovery record leaves them unanswered for a
  // successor (QueueConfig::on_storage_lost).
  virtual int storage_lost() const { return 0; }
};

class Engine {
 public:
  virtual ~Engine() = default;
  virtual const Capabilities& capabilities() const = 0;
  // Size in 512-byte sectors, whole logical blocks only. Read by every queue; refresh_size()
  // (from the control thread) re-reads it and returns true if it changed.
  virtual std::uint64_t sectors() const = 0;
  virtual bool refresh_size() = 0;
  // "file /var/lib/xen/disk.img", for logs and statistics.
  virtual std::string describe() const = 0;
  virtual const char* kind() const = 0;  // "file", "block", ...
  // A channel for one queue, running on `loop`. errno value on failure.
  virtual std::expected<std::unique_ptr<Channel>, int> open_channel(Loop& loop) = 0;
};

}  // namespace pvback::storage
