// netif: extra-info segments share tx request / rx response slots; responses are fully defined.
#include <gtest/gtest.h>

#include <cstdint>
#include <cstring>

#include "ring/netif.hpp"
#include "tests/ring/shared_area.hpp"

namespace pvback::netif {
namespace {

using ring::testing::SharedArea;

TEST(Netif, TxExtraInfoTravelsInRequestSlots) {
  SharedArea area(1);
  auto front = *TxRing::Front::initialise(area.data(), 1);
  auto back = *TxRing::Back::attach(area.data(), 1);
  front.put_request(TxRequest{.gref = 77, .offset = 128, .flags = kTxfExtraInfo | kTxfCsumBlank, .id = 5, .size = 9000});
  ExtraInfo gso{};
  gso.type = kExtraTypeGso;
  gso.u.gso = ExtraGso{.size = 1448, .type = kGsoTypeTcpv4, .pad = 0, .features = 0};
  front.put_request(gso);
  front.push_requests();

  ASSERT_EQ(back.unconsumed_requests().value(), 2u);
  TxRequest first = back.next_request();
  EXPECT_EQ(first.gref, 77u);
  EXPECT_EQ(first.flags, kTxfExtraInfo | kTxfCsumBlank);
  EXPECT_EQ(first.size, 9000);
  ExtraInfo extra = back.next_request<ExtraInfo>();
  EXPECT_EQ(extra.type, kExtraTypeGso);
  EXPECT_EQ(extra.flags & kExtraFlagMore, 0);
  EXPECT_EQ(extra.u.gso.size, 1448);
  EXPECT_EQ(extra.u.gso.type, kGsoTypeTcpv4);

  back.put_response(TxResponse{.id = first.id, .status = kRspOkay});
  back.put_response(TxResponse{.id = 0, .status = kRspNull});
  back.push_responses();
  EXPECT_EQ(front.next_response().id, 5);
  EXPECT_EQ(front.next_response().status, kRspNull);
}

TEST(Netif, RxResponsesAndExtrasAreFullyDefined) {
  SharedArea area(1, 0xAA);
  auto front = *RxRing::Front::initialise(area.data(), 1);
  auto back = *RxRing::Back::attach(area.data(), 1);
  front.put_request(RxRequest{.id = 1, .pad = 0, .gref = 10});
  front.put_request(RxRequest{.id = 2, .pad = 0, .gref = 11});
  front.push_requests();
  back.skip_requests(2);

  back.put_response(RxResponse{.id = 1, .offset = 0, .flags = kRxfExtraInfo | kRxfDataValidated, .status = 1500});
  ExtraInfo hash{};  // value-initialised: union bytes beyond the hash member are zero
  hash.type = kExtraTypeHash;
  hash.u.hash.type = kHashTypeBitIpv4Tcp;
  hash.u.hash.algorithm = kHashAlgorithmToeplitz;
  back.put_response(hash);
  back.push_responses();

  unsigned char raw[16];
  std::memcpy(raw, area.data() + ring::kSharedRingHeaderSize, sizeof(raw));
  const unsigned char expected[16] = {1, 0, 0, 0, kRxfExtraInfo | kRxfDataValidated, 0, 0xDC, 0x05,
                                      kExtraTypeHash, 0, kHashTypeBitIpv4Tcp, kHashAlgorithmToeplitz, 0, 0, 0, 0};
  EXPECT_EQ(std::memcmp(raw, expected, sizeof(raw)), 0);
  EXPECT_EQ(front.next_response().status, 1500);
  EXPECT_EQ(front.next_response<ExtraInfo>().u.hash.algorithm, kHashAlgorithmToeplitz);
}

TEST(Netif, CtrlRingRoundTrip) {
  SharedArea area(1);
  auto front = *CtrlRing::Front::initialise(area.data(), 1);
  auto back = *CtrlRing::Back::attach(area.data(), 1);
  EXPECT_EQ(back.size(), 128u);
  front.put_request(CtrlRequest{.id = 9, .type = kCtrlTypeSetHashKey, .data = {100, kMaxHashKeySize, 0}});
  EXPECT_TRUE(front.push_requests_and_check_notify());
  CtrlRequest req = back.next_request();
  EXPECT_EQ(req.type, kCtrlTypeSetHashKey);
  EXPECT_EQ(req.data[1], kMaxHashKeySize);
  back.put_response(CtrlResponse{.id = req.id, .type = req.type, .status = kCtrlStatusSuccess, .data = 0});
  EXPECT_TRUE(back.push_responses_and_check_notify());
  CtrlResponse rsp = front.next_response();
  EXPECT_EQ(rsp.id, 9);
  EXPECT_EQ(rsp.status, kCtrlStatusSuccess);
}

TEST(Netif, RingSizes) {
  EXPECT_EQ(kTxRingSize, 256u);
  EXPECT_EQ(kRxRingSize, 256u);
  EXPECT_EQ(kCtrlRingSize, 128u);
  EXPECT_EQ(kLegacySlotsMax, 18u);
  EXPECT_EQ(kHashTypeAll, 0xFu);
}

}  // namespace
}  // namespace pvback::netif
