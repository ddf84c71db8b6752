// libFuzzer target: the blkif request parser (blkback/request.hpp) on anything a guest can write.
//
// Input: 16 bytes of device limits, then one request as the guest's ABI lays it out (x86_32 or
// x86_64, chosen by the first byte), then descriptor bytes standing for an indirect request's
// granted pages. Besides crashes and sanitizer reports, every accepted request is checked against
// what acceptance promises: inside the disk, within the advertised features and limits, every
// segment inside its page. A violation aborts (a finding).
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <vector>

#include "blkback/request.hpp"
#include "tests/fuzz/check.hpp"

namespace {

using namespace pvback;
using namespace pvback::blkback::request;

constexpr std::size_t kLimitBytes = 16;

Limits read_limits(const std::uint8_t* p) {
  Limits l;
  const std::uint8_t flags = p[1];
  l.read_only = flags & 1;
  l.flush = flags & 2;
  l.barrier = flags & 4;
  l.discard = flags & 8;
  l.discard_supported = flags & 16;
  l.secure_discard = flags & 32;
  l.logical_block_size = 512u << (p[2] % 4);
  std::uint16_t max_indirect = 0;
  std::memcpy(&max_indirect, p + 3, 2);
  l.max_indirect_segments = max_indirect;
  std::uint64_t sectors = 0;
  std::memcpy(&sectors, p + 5, 8);
  // Mostly realistic sizes, sometimes anything (including 0 and 2^64-1).
  l.sectors = (p[13] & 1) != 0 ? sectors : sectors % (1ull << 40);
  return l;
}

void check_header(const blkif::native::Request& r, const Header& h, const Limits& l) {
  if (h.status != blkif::kRspOkay) {
    CHECK(h.status == blkif::kRspError || h.status == blkif::kRspEopnotsupp);
    CHECK(h.why != nullptr);
    return;
  }
  CHECK(h.why == nullptr);
  // The kind is the one the operation names.
  const std::uint8_t op = r.operation() == blkif::kOpIndirect ? r.indirect.indirect_op : r.operation();
  CHECK(h.indirect == (r.operation() == blkif::kOpIndirect));
  switch (h.kind) {
    case Kind::Read: CHECK(op == blkif::kOpRead); break;
    case Kind::Write: CHECK(op == blkif::kOpWrite); break;
    case Kind::Barrier: CHECK(op == blkif::kOpWriteBarrier); break;
    case Kind::Flush: CHECK(op == blkif::kOpFlushDiskcache); break;
    case Kind::Discard: CHECK(op == blkif::kOpDiscard); break;
    case Kind::Other: break;
  }
  switch (h.kind) {
    case Kind::Other:
      CHECK(false && "an unknown operation was accepted");
      break;
    case Kind::Flush:
      CHECK(l.flush && r.operation() == blkif::kOpFlushDiskcache && h.nsegs == 0);
      break;
    case Kind::Discard:
      CHECK(l.discard && l.discard_supported && !l.read_only);
      CHECK((r.discard.flag & blkif::kDiscardSecure) == 0 || l.secure_discard);
      CHECK(h.sector <= l.sectors && h.discard_sectors <= l.sectors - h.sector);
      CHECK(h.sector + h.discard_sectors <= std::uint64_t{INT64_MAX} / blkif::kSectorSize);  // an off_t range
      break;
    case Kind::Barrier:
      CHECK(l.barrier && !h.indirect);
      [[fallthrough]];
    case Kind::Read:
    case Kind::Write:
      if (h.kind != Kind::Read && h.nsegs != 0) CHECK(!l.read_only);
      if (h.indirect) {
        CHECK(r.operation() == blkif::kOpIndirect);
        CHECK(h.nsegs >= 1 && h.nsegs <= l.max_indirect_segments && h.nsegs <= blkif::kMaxIndirectSegments);
        CHECK(h.indirect_pages >= 1 && h.indirect_pages <= blkif::kMaxIndirectPagesPerRequest);
        CHECK(h.indirect_pages * blkif::kSegmentsPerIndirectPage >= h.nsegs);
        CHECK((h.indirect_pages - 1) * blkif::kSegmentsPerIndirectPage < h.nsegs);
      } else {
        CHECK(h.nsegs <= blkif::kMaxSegmentsPerRequest);
        CHECK(h.nsegs >= 1 || h.kind == Kind::Barrier);
      }
      break;
  }
}

void check_extent(const Header& h, const blkif::Segment* segs, const Extent& e, const Limits& l) {
  if (e.status != blkif::kRspOkay) {
    CHECK(e.status == blkif::kRspError && e.why != nullptr);
    return;
  }
  CHECK(h.sector <= l.sectors && e.sectors <= l.sectors - h.sector);
  CHECK(h.sector + e.sectors <= std::uint64_t{INT64_MAX} / blkif::kSectorSize);  // the I/O's end fits an off_t
  CHECK(e.offset == h.sector * blkif::kSectorSize && e.offset / blkif::kSectorSize == h.sector);
  CHECK(e.offset % l.logical_block_size == 0);
  std::uint64_t total = 0;
  for (std::uint32_t i = 0; i < h.nsegs; ++i) {
    CHECK(segs[i].first_sect <= segs[i].last_sect && segs[i].last_sect < blkif::kSectorsPerPage);
    total += segs[i].last_sect - segs[i].first_sect + 1u;
  }
  CHECK(total == e.sectors);
  CHECK((e.sectors * blkif::kSectorSize) % l.logical_block_size == 0);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (size < kLimitBytes) return 0;
  const Limits limits = read_limits(data);
  const bool is32 = (data[0] & 1) != 0;
  data += kLimitBytes;
  size -= kLimitBytes;

  blkif::native::Request req{};
  if (is32) {
    blkif::x86_32::Request wire{};
    std::memcpy(&wire, data, std::min(size, sizeof wire));
    req = blkif::to_native(wire);
    data += std::min(size, sizeof wire);
    size -= std::min(size, sizeof wire);
  } else {
    blkif::x86_64::Request wire{};
    std::memcpy(&wire, data, std::min(size, sizeof wire));
    req = blkif::to_native(wire);
    data += std::min(size, sizeof wire);
    size -= std::min(size, sizeof wire);
  }

  const Header h = parse_header(req, limits);
  check_header(req, h, limits);
  // The answer goes back in the guest's ABI with the request's id, whatever the request was.
  const auto rsp = blkif::make_response(req, h.status);
  CHECK(rsp.id == req.id() && rsp.status == h.status);
  if (h.status != blkif::kRspOkay || !moves_data(h.kind)) return 0;

  // The descriptors: the request's own, or (indirect) what the guest's pages hold; a page the
  // input does not cover reads as zeros, as a fresh granted page would.
  std::vector<blkif::Segment> segs(h.nsegs);
  const std::size_t bytes = h.indirect ? std::min(size, segs.size() * sizeof(blkif::Segment))
                                       : h.nsegs * sizeof(blkif::Segment);
  if (bytes != 0) std::memcpy(segs.data(), h.indirect ? static_cast<const void*>(data) : req.rw.seg, bytes);
  const Extent e = check_segments(h, segs, limits);
  check_extent(h, segs.data(), e, limits);
  return 0;
}
