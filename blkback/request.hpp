// What one blkif request asks for, decided from the request alone: a pure function of the
// request's private copy and the device's limits, with no I/O, no allocation and no state. The
// queue (queue.cpp) calls it for every request it takes; tests/blkback/request and the libFuzzer
// target tests/fuzz/blkif_request_fuzz.cpp drive it directly with any bytes a guest could write.
//
// Two steps, because the descriptors of an indirect request live in pages the guest granted, which
// the queue copies in between (one batched grant copy for the whole batch):
//   parse_header()    operation, segment count, start sector, discard range, what is advertised;
//   check_segments()  every descriptor's sector range and alignment, and the request against the
//                     end of the disk.
// The answer is a blkif status: kRspOkay, or kRspError / kRspEopnotsupp with a reason for the log.
#pragma once
#include <cstdint>
#include <span>

#include "ring/blkif.hpp"

namespace pvback::blkback::request {

enum class Kind : std::uint8_t { Read, Write, Barrier, Flush, Discard, Other };

// What the device offers this frontend.
struct Limits {
  std::uint64_t sectors = 0;                  // size in 512-byte sectors
  std::uint32_t logical_block_size = 512;     // a power of two >= 512
  std::uint32_t max_indirect_segments = 0;    // as advertised (feature-max-indirect-segments)
  bool read_only = false;
  bool flush = false;                         // feature-flush-cache advertised
  bool barrier = false;                       // feature-barrier advertised
  bool discard = false;                       // feature-discard advertised
  bool discard_supported = false;             // the storage can discard
  bool secure_discard = false;                // ... and securely
};

struct Header {
  Kind kind = Kind::Other;
  bool indirect = false;
  std::int16_t status = blkif::kRspOkay;
  const char* why = nullptr;                  // set with a status other than kRspOkay
  std::uint32_t nsegs = 0;                    // descriptors to check (direct: in the request)
  std::uint32_t indirect_pages = 0;           // pages of descriptors to copy first
  std::uint64_t sector = 0;                   // first sector (read, write, barrier, discard)
  std::uint64_t discard_sectors = 0;
};

[[nodiscard]] Header parse_header(const blkif::native::Request& req, const Limits& limits) noexcept;

struct Extent {
  std::int16_t status = blkif::kRspOkay;
  const char* why = nullptr;
  std::uint64_t offset = 0;                   // bytes into the storage
  std::uint64_t sectors = 0;                  // 512-byte sectors the segments cover
};

// For a header of kind Read, Write or Barrier parsed as kRspOkay; `segs` are its nsegs descriptors
// (the request's own for a direct request, the copied pages' for an indirect one).
[[nodiscard]] Extent check_segments(const Header& header, std::span<const blkif::Segment> segs,
                                    const Limits& limits) noexcept;

// Whether the request moves data between guest pages and the storage.
constexpr bool moves_data(Kind k) { return k == Kind::Read || k == Kind::Write || k == Kind::Barrier; }

}  // namespace pvback::blkback::request
