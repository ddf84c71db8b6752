// blkif: a request copied in the guest's ABI converts to the same native request; responses
// converted to the guest's ABI carry no stray bytes (XSA-216).
#include <gtest/gtest.h>

#include <array>
#include <cstdint>
#include <cstring>

#include "ring/blkif.hpp"
#include "tests/ring/shared_area.hpp"

namespace pvback::blkif {
namespace {

using ring::testing::SharedArea;

constexpr std::uint64_t kId = 0x1122334455667788ull;  // every byte distinct: catches misplaced halves
constexpr std::uint64_t kSector = 0x0102030405060708ull;

template <class T>
std::array<unsigned char, sizeof(T)> bytes_of(const T& value) {
  std::array<unsigned char, sizeof(T)> out;
  std::memcpy(out.data(), &value, sizeof(T));
  return out;
}

// Sends `request` through a ring of the guest ABI and returns the backend's native conversion.
template <class Abi>
native::Request through_ring(const typename Abi::Request& request) {
  SharedArea area(1);  // slots pre-filled with 0xAA
  auto front = *Abi::FrontRing::initialise(area.data(), 1);
  auto back = *Abi::BackRing::attach(area.data(), 1);
  front.put_request(request);
  front.push_requests();
  EXPECT_EQ(back.unconsumed_requests().value(), 1u);
  return to_native(back.next_request());
}

struct X86_32 {
  using Request = x86_32::Request;
  using FrontRing = x86_32::FrontRing;
  using BackRing = x86_32::BackRing;
};
struct X86_64 {
  using Request = x86_64::Request;
  using FrontRing = x86_64::FrontRing;
  using BackRing = x86_64::BackRing;
};

template <class Abi>
class BlkifAbi : public ::testing::Test {};
using Abis = ::testing::Types<X86_32, X86_64>;
TYPED_TEST_SUITE(BlkifAbi, Abis);

TYPED_TEST(BlkifAbi, ReadWriteRequestConverts) {
  typename TypeParam::Request req{};
  req.rw.operation = kOpWrite;
  req.rw.nr_segments = kMaxSegmentsPerRequest;
  req.rw.handle = 0x5a5a;
  req.rw.id = kId;
  req.rw.sector_number = kSector;
  for (unsigned i = 0; i < kMaxSegmentsPerRequest; ++i)
    req.rw.seg[i] = Segment{.gref = 1000 + i, .first_sect = static_cast<std::uint8_t>(i % 8), .last_sect = 7, .pad = 0};

  native::Request out = through_ring<TypeParam>(req);
  EXPECT_EQ(out.operation(), kOpWrite);
  EXPECT_EQ(out.rw.nr_segments, kMaxSegmentsPerRequest);
  EXPECT_EQ(out.rw.handle, 0x5a5a);
  EXPECT_EQ(std::uint64_t{out.rw.id}, kId);
  EXPECT_EQ(std::uint64_t{out.rw.sector_number}, kSector);
  for (unsigned i = 0; i < kMaxSegmentsPerRequest; ++i) {
    EXPECT_EQ(out.rw.seg[i].gref, 1000 + i);
    EXPECT_EQ(out.rw.seg[i].first_sect, i % 8);
    EXPECT_EQ(out.rw.seg[i].last_sect, 7);
  }
}

TYPED_TEST(BlkifAbi, DiscardRequestConvertsAndLeavesNoStaleBytes) {
  typename TypeParam::Request req;
  std::memset(&req, 0xAA, sizeof(req));  // guest garbage beyond the discard fields
  req.discard.operation = kOpDiscard;
  req.discard.flag = kDiscardSecure;
  req.discard.handle = 3;
  req.discard.id = kId;
  req.discard.sector_number = kSector;
  req.discard.nr_sectors = 0xA0B0C0D0E0F00102ull;

  native::Request out = through_ring<TypeParam>(req);
  EXPECT_EQ(out.operation(), kOpDiscard);
  EXPECT_EQ(out.discard.flag, kDiscardSecure);
  EXPECT_EQ(out.discard.handle, 3);
  EXPECT_EQ(std::uint64_t{out.discard.id}, kId);
  EXPECT_EQ(std::uint64_t{out.discard.sector_number}, kSector);
  EXPECT_EQ(std::uint64_t{out.discard.nr_sectors}, 0xA0B0C0D0E0F00102ull);
  auto raw = bytes_of(out);
  for (std::size_t i = sizeof(native::RequestDiscard); i < raw.size(); ++i) ASSERT_EQ(raw[i], 0) << i;
}

TYPED_TEST(BlkifAbi, IndirectRequestConverts) {
  typename TypeParam::Request req{};
  req.indirect.operation = kOpIndirect;
  req.indirect.indirect_op = kOpRead;
  req.indirect.nr_segments = 4000;
  req.indirect.id = kId;
  req.indirect.sector_number = kSector;
  req.indirect.handle = 0xbeef;
  for (unsigned i = 0; i < kMaxIndirectPagesPerRequest; ++i) req.indirect.indirect_grefs[i] = 0x10000 + i;

  native::Request out = through_ring<TypeParam>(req);
  EXPECT_EQ(out.operation(), kOpIndirect);
  EXPECT_EQ(out.indirect.indirect_op, kOpRead);
  EXPECT_EQ(out.indirect.nr_segments, 4000);
  EXPECT_EQ(std::uint64_t{out.indirect.id}, kId);
  EXPECT_EQ(std::uint64_t{out.indirect.sector_number}, kSector);
  EXPECT_EQ(out.indirect.handle, 0xbeef);
  for (unsigned i = 0; i < kMaxIndirectPagesPerRequest; ++i) EXPECT_EQ(out.indirect.indirect_grefs[i], 0x10000 + i);
}

TYPED_TEST(BlkifAbi, UnknownOperationKeepsIdForTheErrorResponse) {
  typename TypeParam::Request req;
  std::memset(&req, 0xCC, sizeof(req));
  req.other.operation = 0x77;
  req.other.id = kId;
  native::Request out = through_ring<TypeParam>(req);
  EXPECT_EQ(out.operation(), 0x77);
  EXPECT_EQ(out.id(), kId);
  native::Response rsp = make_response(out, kRspError);
  EXPECT_EQ(rsp.id, kId);
  EXPECT_EQ(rsp.operation, 0x77);
  EXPECT_EQ(rsp.status, kRspError);
  auto raw = bytes_of(out);
  for (std::size_t i = sizeof(native::RequestOther); i < raw.size(); ++i) ASSERT_EQ(raw[i], 0) << i;
}

// The x86_32 layout really differs: id sits at offset 4, not 8.
TEST(BlkifX86_32, IdIsFourByteAligned) {
  x86_32::Request req{};
  req.rw.id = kId;
  auto raw = bytes_of(req);
  std::uint64_t at4;
  std::memcpy(&at4, raw.data() + 4, sizeof(at4));
  EXPECT_EQ(at4, kId);
  EXPECT_EQ(alignof(x86_32::Request), 4u);
}

// Responses: write into slots full of 0xAA and check every byte of the slot's response part.
template <class Front, class Back, class Response>
std::array<unsigned char, sizeof(Response)> response_bytes_in_ring(const Response& rsp) {
  SharedArea area(1, 0xAA);
  auto front = *Front::initialise(area.data(), 1);
  auto back = *Back::attach(area.data(), 1);
  back.put_response(rsp);
  back.push_responses();
  std::array<unsigned char, sizeof(Response)> out;
  std::memcpy(out.data(), area.data() + ring::kSharedRingHeaderSize, sizeof(Response));
  EXPECT_EQ(front.unconsumed_responses().value(), 1u);
  return out;
}

TEST(BlkifResponse, X86_32HasNoPaddingLeak) {
  native::Response native_rsp{.id = kId, .operation = kOpRead, .status = kRspEopnotsupp};
  auto raw = response_bytes_in_ring<x86_32::FrontRing, x86_32::BackRing>(to_x86_32(native_rsp));
  const std::array<unsigned char, 12> expected = {0x88, 0x77, 0x66, 0x55, 0x44, 0x33, 0x22, 0x11,
                                                  kOpRead, 0x00, 0xFE, 0xFF};
  EXPECT_EQ(raw, expected);
}

TEST(BlkifResponse, X86_64HasNoPaddingLeak) {
  native::Response native_rsp{.id = kId, .operation = kOpFlushDiskcache, .status = kRspOkay};
  auto raw = response_bytes_in_ring<x86_64::FrontRing, x86_64::BackRing>(to_x86_64(native_rsp));
  const std::array<unsigned char, 16> expected = {0x88, 0x77, 0x66, 0x55, 0x44, 0x33, 0x22, 0x11,
                                                  kOpFlushDiskcache, 0, 0, 0, 0, 0, 0, 0};
  EXPECT_EQ(raw, expected);
}

TEST(BlkifResponse, RoundTripThroughGuestAbis) {
  for (std::int16_t status : {kRspOkay, kRspError, kRspEopnotsupp}) {
    native::Response in{.id = kId ^ static_cast<std::uint64_t>(status), .operation = kOpIndirect, .status = status};
    x86_32::Response r32 = to_x86_32(in);
    x86_64::Response r64 = to_x86_64(in);
    EXPECT_EQ(std::uint64_t{r32.id}, in.id);
    EXPECT_EQ(r32.operation, in.operation);
    EXPECT_EQ(r32.status, status);
    EXPECT_EQ(r64.id, in.id);
    EXPECT_EQ(r64.operation, in.operation);
    EXPECT_EQ(r64.status, status);
    EXPECT_EQ(r64.pad0, 0);
    EXPECT_EQ(r64.pad1, 0u);
    EXPECT_EQ(r32.pad0, 0);
  }
}

TEST(BlkifConstants, IndirectGeometry) {
  EXPECT_EQ(kSegmentsPerIndirectPage, 512u);
  EXPECT_EQ(kMaxIndirectSegments, 4096u);
  EXPECT_EQ(kSectorsPerPage, 8);
  EXPECT_EQ(x86_32::Ring::size_for_order(0), 32u);
  EXPECT_EQ(x86_64::Ring::size_for_order(0), 32u);
  EXPECT_EQ(x86_64::Ring::size_for_order(4), 512u);
}

}  // namespace
}  // namespace pvback::blkif
