// One request's state from the moment a queue takes it off the ring to its answer: the contract
// between the stages of queue.cpp (take and parse, segments, storage, answer), as Linux's
// xen-blkback keeps it in common.h. A queue has one Slot per ring entry, preallocated.
#pragma once
#include <sys/uio.h>

#include <cstdint>

#include "blkback/request.hpp"
#include "ring/blkif.hpp"

namespace pvback::blkback {

using request::Kind;

// Where a slot's storage operation stands.
enum class Phase : std::uint8_t { Idle, Io, Sync, Discard };

struct Slot {
  blkif::native::Request req{};       // the private copy: the only read of the shared slot
  Kind kind = Kind::Other;
  bool indirect = false;
  Phase phase = Phase::Idle;
  bool reached_storage = false;       // handed to the storage engine at least once (the kernel's counters)
  std::int16_t status = blkif::kRspOkay;
  std::uint32_t nsegs = 0;
  blkif::Segment* segs = nullptr;     // the slot's own copy of the descriptors (capacity max_segs)
  iovec* iov = nullptr;               // filled by the segment path (capacity max_segs)
  std::uint32_t iov_count = 0;
  std::uint32_t iov_first = 0;        // first iovec not fully transferred (short I/O resume)
  std::uint64_t offset = 0;           // byte offset on the storage
  std::uint64_t total_bytes = 0;
  std::uint64_t done_bytes = 0;
  std::uint64_t sectors = 0;          // 512-byte sectors of the request

  // Its data segments reach guest memory through the segment path.
  bool has_data() const { return status == blkif::kRspOkay && nsegs != 0 && request::moves_data(kind); }
};

// How a stage refuses a request: the status it will be answered with, and why (logged).
class RequestFailer {
 public:
  virtual void fail(Slot& s, std::int16_t status, const char* why) = 0;

 protected:
  ~RequestFailer() = default;
};

}  // namespace pvback::blkback
