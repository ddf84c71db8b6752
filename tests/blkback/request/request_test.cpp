// The pure blkif request parser (blkback/request.hpp), case by case: every refusal with its
// status, the edges of the disk, block-size alignment, indirect limits. The libFuzzer target
// tests/fuzz/blkif_request_fuzz.cpp checks the same invariants on arbitrary bytes.
#include "blkback/request.hpp"

#include <cstring>
#include <limits>

#include <gtest/gtest.h>

namespace pvback::blkback::request {
namespace {

using blkif::native::Request;

Limits disk(std::uint64_t sectors = 1 << 20) {
  Limits l;
  l.sectors = sectors;
  l.max_indirect_segments = 256;
  l.flush = l.barrier = l.discard = l.discard_supported = true;
  return l;
}

Request rw(std::uint8_t op, std::uint64_t sector, std::uint8_t nsegs) {
  Request r{};
  r.rw.operation = op;
  r.rw.nr_segments = nsegs;
  r.rw.id = 42;
  r.rw.sector_number = sector;
  for (std::uint8_t i = 0; i < nsegs && i < blkif::kMaxSegmentsPerRequest; ++i) r.rw.seg[i] = {100u + i, 0, 7, 0};
  return r;
}

Request indirect(std::uint8_t op, std::uint64_t sector, std::uint16_t nsegs) {
  Request r{};
  r.indirect.operation = blkif::kOpIndirect;
  r.indirect.indirect_op = op;
  r.indirect.nr_segments = nsegs;
  r.indirect.sector_number = sector;
  return r;
}

Request discard(std::uint64_t sector, std::uint64_t count, std::uint8_t flag = 0) {
  Request r{};
  r.discard.operation = blkif::kOpDiscard;
  r.discard.flag = flag;
  r.discard.sector_number = sector;
  r.discard.nr_sectors = count;
  return r;
}

Extent extent(const Request& r, const Limits& l) {
  const Header h = parse_header(r, l);
  EXPECT_EQ(h.status, blkif::kRspOkay) << h.why;
  return check_segments(h, {r.rw.seg, h.nsegs}, l);
}

TEST(BlkifRequest, DirectReadCoversItsSegments) {
  const Request r = rw(blkif::kOpRead, 16, 3);
  const Header h = parse_header(r, disk());
  EXPECT_EQ(h.kind, Kind::Read);
  EXPECT_FALSE(h.indirect);
  EXPECT_EQ(h.nsegs, 3u);
  const Extent e = extent(r, disk());
  EXPECT_EQ(e.status, blkif::kRspOkay);
  EXPECT_EQ(e.offset, 16u * 512);
  EXPECT_EQ(e.sectors, 24u);
}

TEST(BlkifRequest, SegmentCountsOutsideOneToElevenAreErrors) {
  for (std::uint8_t n : {0, 12, 255}) {
    const Header h = parse_header(rw(blkif::kOpWrite, 0, n), disk());
    EXPECT_EQ(h.status, blkif::kRspError) << int{n};
    EXPECT_STREQ(h.why, "bad number of segments");
  }
  EXPECT_EQ(parse_header(rw(blkif::kOpWrite, 0, 11), disk()).status, blkif::kRspOkay);
}

TEST(BlkifRequest, BarrierWithoutSegmentsIsAnOrderingPointAndNeedsTheFeature) {
  Limits l = disk();
  const Header h = parse_header(rw(blkif::kOpWriteBarrier, 0, 0), l);
  EXPECT_EQ(h.status, blkif::kRspOkay);
  EXPECT_EQ(h.kind, Kind::Barrier);
  l.read_only = true;  // nothing is written
  EXPECT_EQ(parse_header(rw(blkif::kOpWriteBarrier, 0, 0), l).status, blkif::kRspOkay);
  EXPECT_EQ(parse_header(rw(blkif::kOpWriteBarrier, 0, 1), l).status, blkif::kRspError);
  l.barrier = false;
  EXPECT_EQ(parse_header(rw(blkif::kOpWriteBarrier, 0, 0), l).status, blkif::kRspEopnotsupp);
}

TEST(BlkifRequest, FlushIgnoresItsSegmentsAndNeedsTheFeature) {
  Request r = rw(blkif::kOpFlushDiskcache, ~0ull, 200);
  Limits l = disk();
  const Header h = parse_header(r, l);
  EXPECT_EQ(h.status, blkif::kRspOkay);
  EXPECT_EQ(h.kind, Kind::Flush);
  EXPECT_EQ(h.nsegs, 0u);
  l.flush = false;
  EXPECT_EQ(parse_header(r, l).status, blkif::kRspEopnotsupp);
}

TEST(BlkifRequest, WritesToReadOnlyStorageAreErrors) {
  Limits l = disk();
  l.read_only = true;
  EXPECT_EQ(parse_header(rw(blkif::kOpRead, 0, 1), l).status, blkif::kRspOkay);
  EXPECT_STREQ(parse_header(rw(blkif::kOpWrite, 0, 1), l).why, "write on read-only storage");
  EXPECT_EQ(parse_header(indirect(blkif::kOpWrite, 0, 20), l).status, blkif::kRspError);
  EXPECT_EQ(parse_header(indirect(blkif::kOpRead, 0, 20), l).status, blkif::kRspOkay);
  EXPECT_STREQ(parse_header(discard(0, 8), l).why, "discard on read-only storage");
}

TEST(BlkifRequest, UnknownAndReservedOperationsAreNotSupported) {
  for (std::uint8_t op : {blkif::kOpReserved1, std::uint8_t{7}, std::uint8_t{255}}) {
    Request r{};
    r.other.operation = op;
    const Header h = parse_header(r, disk());
    EXPECT_EQ(h.status, blkif::kRspEopnotsupp) << int{op};
    EXPECT_EQ(h.kind, Kind::Other);
  }
}

TEST(BlkifRequest, TheLastSectorIsReachableAndOnePastItIsNot) {
  const Limits l = disk(1000);
  EXPECT_EQ(extent(rw(blkif::kOpRead, 992, 1), l).status, blkif::kRspOkay);  // 992..999
  const Extent past = extent(rw(blkif::kOpRead, 993, 1), l);
  EXPECT_EQ(past.status, blkif::kRspError);
  EXPECT_STREQ(past.why, "access beyond the end of the disk");
}

TEST(BlkifRequest, ASectorNumberThatWrapsIsBeyondTheEnd) {
  // sector * 512 and sector + count both overflow 64 bits here; neither may wrap into the disk.
  for (std::uint64_t sector : {~0ull, ~0ull - 7, 1ull << 55, (1ull << 55) - 1})
    EXPECT_EQ(extent(rw(blkif::kOpWrite, sector, 1), disk()).status, blkif::kRspError) << sector;
}

// Found by tests/fuzz/blkif_request_fuzz: with a (claimed) size above 2^55 sectors, a sector past
// 2^55 passed the size check and its byte offset wrapped to the start of the disk.
TEST(BlkifRequest, NoRangeEndsPastWhatAFileOffsetCanAddressWhateverTheClaimedSize) {
  const Limits huge = disk(~0ull);
  EXPECT_STREQ(extent(rw(blkif::kOpRead, 1ull << 55, 1), huge).why, "access beyond the end of the disk");
  EXPECT_EQ(extent(rw(blkif::kOpRead, (1ull << 54) - 16, 1), huge).status, blkif::kRspOkay);
  // Past 2^54 sectors the byte offset no longer fits an off_t (it would be negative), even where
  // it does not wrap 64 bits.
  EXPECT_EQ(extent(rw(blkif::kOpRead, (1ull << 54) + 8, 1), huge).status, blkif::kRspError);
  EXPECT_EQ(parse_header(discard((1ull << 54) + 8, 8), huge).status, blkif::kRspError);
  EXPECT_EQ(parse_header(discard(1ull << 55, 8), huge).status, blkif::kRspError);
  EXPECT_EQ(parse_header(discard(0, 1ull << 55), huge).status, blkif::kRspError);
}

TEST(BlkifRequest, SegmentSectorRangesMustStayInTheirPage) {
  const Limits l = disk();
  Request r = rw(blkif::kOpRead, 0, 1);
  r.rw.seg[0] = {1, 3, 2, 0};  // first after last
  EXPECT_STREQ(extent(r, l).why, "bad first_sect/last_sect");
  r.rw.seg[0] = {1, 0, 8, 0};  // a ninth sector in a 4 KiB page
  EXPECT_STREQ(extent(r, l).why, "bad first_sect/last_sect");
  r.rw.seg[0] = {1, 5, 5, 0};  // one sector
  const Extent e = extent(r, l);
  EXPECT_EQ(e.status, blkif::kRspOkay);
  EXPECT_EQ(e.sectors, 1u);
}

TEST(BlkifRequest, FourKiBLogicalBlocksRefuseUnalignedSectorsAndSegments) {
  Limits l = disk();
  l.logical_block_size = 4096;
  EXPECT_EQ(extent(rw(blkif::kOpRead, 8, 2), l).status, blkif::kRspOkay);
  EXPECT_STREQ(extent(rw(blkif::kOpRead, 4, 1), l).why, "sector not aligned to the block size");
  Request r = rw(blkif::kOpRead, 8, 1);
  r.rw.seg[0] = {1, 0, 3, 0};  // half a block
  EXPECT_STREQ(extent(r, l).why, "segment not aligned to the block size");
}

TEST(BlkifRequest, IndirectSegmentCountIsBoundedByTheAdvertisedLimitAndEightPages) {
  Limits l = disk();
  EXPECT_EQ(parse_header(indirect(blkif::kOpRead, 0, 0), l).status, blkif::kRspError);
  const Header h = parse_header(indirect(blkif::kOpRead, 0, 256), l);
  EXPECT_EQ(h.status, blkif::kRspOkay);
  EXPECT_TRUE(h.indirect);
  EXPECT_EQ(h.indirect_pages, 1u);
  EXPECT_EQ(parse_header(indirect(blkif::kOpRead, 0, 257), l).status, blkif::kRspError);
  l.max_indirect_segments = 65535;  // a misconfigured limit still cannot exceed eight pages
  EXPECT_EQ(parse_header(indirect(blkif::kOpRead, 0, 4096), l).indirect_pages, 8u);
  EXPECT_STREQ(parse_header(indirect(blkif::kOpRead, 0, 4097), l).why, "bad number of indirect segments");
  EXPECT_STREQ(parse_header(indirect(blkif::kOpFlushDiskcache, 0, 8), l).why,
               "indirect request with an operation other than read/write");
}

TEST(BlkifRequest, DiscardRangesAreCheckedWithoutOverflow) {
  const Limits l = disk(1000);
  const Header h = parse_header(discard(10, 990), l);
  EXPECT_EQ(h.status, blkif::kRspOkay);
  EXPECT_EQ(h.sector, 10u);
  EXPECT_EQ(h.discard_sectors, 990u);
  EXPECT_EQ(parse_header(discard(1000, 0), l).status, blkif::kRspOkay);
  EXPECT_EQ(parse_header(discard(10, 991), l).status, blkif::kRspError);
  EXPECT_EQ(parse_header(discard(1, ~0ull), l).status, blkif::kRspError);  // 1 + count wraps to 0
  EXPECT_EQ(parse_header(discard(~0ull, 2), l).status, blkif::kRspError);
}

TEST(BlkifRequest, DiscardNeedsTheFeatureTheStorageAndForSecureEraseItsSupport) {
  Limits l = disk();
  EXPECT_STREQ(parse_header(discard(0, 8, blkif::kDiscardSecure), l).why, "secure discard not supported");
  l.secure_discard = true;
  EXPECT_EQ(parse_header(discard(0, 8, blkif::kDiscardSecure), l).status, blkif::kRspOkay);
  l.discard_supported = false;
  EXPECT_EQ(parse_header(discard(0, 8), l).status, blkif::kRspEopnotsupp);
  l.discard = false;
  EXPECT_STREQ(parse_header(discard(0, 8), l).why, "discard not advertised");
}

TEST(BlkifRequest, A32BitGuestsRequestParsesLikeTheNativeOne) {
  // The x86_32 layout puts sector_number 4 bytes earlier; to_native() must move it.
  blkif::x86_32::Request r32{};
  r32.rw.operation = blkif::kOpRead;
  r32.rw.nr_segments = 1;
  r32.rw.id = 9;
  r32.rw.sector_number = 64;
  r32.rw.seg[0] = {5, 0, 7, 0};
  const Request n = blkif::to_native(r32);
  const Extent e = extent(n, disk());
  EXPECT_EQ(e.status, blkif::kRspOkay);
  EXPECT_EQ(e.offset, 64u * 512);
  EXPECT_EQ(n.id(), 9u);
}

}  // namespace
}  // namespace pvback::blkback::request
