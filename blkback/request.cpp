// The pure blkif request parser. See request.hpp.
#include "blkback/request.hpp"

#include <algorithm>
#include <cstdint>

namespace pvback::blkback::request {
namespace {

constexpr std::uint32_t kSegsPerPage = blkif::kSegmentsPerIndirectPage;
// The storage is addressed with off_t byte offsets: no range may end past this sector, whatever
// size the limits claim (found by tests/fuzz/blkif_request_fuzz: with a size above 2^55 sectors a
// sector number passed the size check and its byte offset wrapped around).
constexpr std::uint64_t kAddressableSectors = std::uint64_t{INT64_MAX} / blkif::kSectorSize;

Header refuse(Header h, std::int16_t status, const char* why) {
  h.status = status;
  h.why = why;
  return h;
}

}  // namespace

Header parse_header(const blkif::native::Request& r, const Limits& limits) noexcept {
  Header h;
  switch (r.operation()) {
    case blkif::kOpRead:
      h.kind = Kind::Read;
      break;
    case blkif::kOpWrite:
      h.kind = Kind::Write;
      break;
    case blkif::kOpWriteBarrier:
      h.kind = Kind::Barrier;
      if (!limits.barrier) return refuse(h, blkif::kRspEopnotsupp, "barrier not advertised");
      break;
    case blkif::kOpFlushDiskcache:
      h.kind = Kind::Flush;
      // The segments of a flush mean nothing and are ignored.
      if (!limits.flush) return refuse(h, blkif::kRspEopnotsupp, "flush not advertised");
      return h;
    case blkif::kOpDiscard: {
      h.kind = Kind::Discard;
      if (!limits.discard) return refuse(h, blkif::kRspEopnotsupp, "discard not advertised");
      if (limits.read_only) return refuse(h, blkif::kRspError, "discard on read-only storage");
      if (!limits.discard_supported) return refuse(h, blkif::kRspEopnotsupp, "discard not supported by the storage");
      if ((r.discard.flag & blkif::kDiscardSecure) != 0 && !limits.secure_discard)
        return refuse(h, blkif::kRspEopnotsupp, "secure discard not supported");
      const std::uint64_t end = std::min(limits.sectors, kAddressableSectors);
      if (r.discard.sector_number > end || r.discard.nr_sectors > end - r.discard.sector_number)
        return refuse(h, blkif::kRspError, "discard beyond the end of the disk");
      h.sector = r.discard.sector_number;
      h.discard_sectors = r.discard.nr_sectors;
      return h;
    }
    case blkif::kOpIndirect: {
      h.indirect = true;
      if (r.indirect.indirect_op == blkif::kOpRead) h.kind = Kind::Read;
      else if (r.indirect.indirect_op == blkif::kOpWrite) h.kind = Kind::Write;
      else return refuse(h, blkif::kRspError, "indirect request with an operation other than read/write");
      const std::uint32_t nsegs = r.indirect.nr_segments;
      const std::uint32_t pages = (nsegs + kSegsPerPage - 1) / kSegsPerPage;
      if (nsegs == 0 || nsegs > limits.max_indirect_segments || pages > blkif::kMaxIndirectPagesPerRequest)
        return refuse(h, blkif::kRspError, "bad number of indirect segments");
      h.nsegs = nsegs;
      h.indirect_pages = pages;
      h.sector = r.indirect.sector_number;
      if (h.kind == Kind::Write && limits.read_only) return refuse(h, blkif::kRspError, "write on read-only storage");
      return h;
    }
    default:
      return refuse(h, blkif::kRspEopnotsupp, "unknown operation");
  }
  // read / write / barrier (direct); a barrier without segments is a pure ordering point.
  const std::uint32_t nsegs = r.rw.nr_segments;
  if ((nsegs == 0 && h.kind != Kind::Barrier) || nsegs > blkif::kMaxSegmentsPerRequest)
    return refuse(h, blkif::kRspError, "bad number of segments");
  if (h.kind != Kind::Read && nsegs != 0 && limits.read_only)
    return refuse(h, blkif::kRspError, "write on read-only storage");
  h.nsegs = nsegs;
  h.sector = r.rw.sector_number;
  return h;
}

Extent check_segments(const Header& h, std::span<const blkif::Segment> segs, const Limits& limits) noexcept {
  Extent e;
  auto refuse_extent = [&](const char* why) {
    e.status = blkif::kRspError;
    e.why = why;
    return e;
  };
  const std::uint32_t lbs = limits.logical_block_size;
  // lbs is a power of two, so the product's wrap-around does not change its remainder.
  if ((h.sector * blkif::kSectorSize) % lbs != 0) return refuse_extent("sector not aligned to the block size");
  std::uint64_t total = 0;
  for (const blkif::Segment& g : segs) {
    if (g.first_sect > g.last_sect || g.last_sect >= blkif::kSectorsPerPage)
      return refuse_extent("bad first_sect/last_sect");
    const std::uint32_t count = g.last_sect - g.first_sect + 1u;
    if ((g.first_sect * blkif::kSectorSize) % lbs != 0 || (count * blkif::kSectorSize) % lbs != 0)
      return refuse_extent("segment not aligned to the block size");
    total += count;
  }
  const std::uint64_t end = std::min(limits.sectors, kAddressableSectors);
  if (h.sector > end || total > end - h.sector)
    return refuse_extent("access beyond the end of the disk");
  e.offset = h.sector * blkif::kSectorSize;
  e.sectors = total;
  return e;
}

}  // namespace pvback::blkback::request
