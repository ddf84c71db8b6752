// The control part <-> data plane encoding (blkback/data_plane_protocol.hpp): what is encoded is
// decoded the same, and anything malformed is refused rather than guessed (a confined data plane
// taken over by a guest can send its control part anything).
#include <gtest/gtest.h>

#include "blkback/data_plane_protocol.hpp"

namespace pvback::blkback::plane {
namespace {

DataPlaneSpec two_queues() {
  DataPlaneSpec spec;
  spec.name = "vbd 3/51712";
  spec.storage_path = "/srv/disk.img";
  spec.read_only = true;
  spec.discard = false;
  spec.inject_latency_us = 2000;
  spec.uid = spec.gid = 0x70000003;
  spec.orphan_timeout_ms = 60000;
  spec.nbd_uri = "nbd+unix:///disk?socket=/tmp/pvback-qsd-1/nbd.sock";
  spec.storage_ours = true;
  spec.rbd_params = "rbd:pool/image:id=admin";
  spec.paused = true;
  for (unsigned i = 0; i < 2; ++i) {
    QueueConfig q;
    q.name = "vbd 3/51712 q" + std::to_string(i);
    q.index = i;
    q.frontend_domid = 3;
    q.abi = Abi::X86_32;
    q.ring_refs = {8u + i, 9u + i, 10u + i, 11u + i};
    q.remote_port = 40 + i;
    q.data_path = DataPath::Map;
    q.persistent_grants = i == 0;
    q.max_persistent_grants = 77;
    q.persistent_idle_expiry = std::chrono::milliseconds(1234);
    q.max_indirect_segments = 64;
    q.barrier_enabled = false;
    q.discard_enabled = true;
    q.recovery_path = "/run/pvback/recovery/vbd-3-51712-q" + std::to_string(i);
    q.resume = true;
    q.bind_patience = std::chrono::milliseconds(5000);
    q.poll_max = std::chrono::microseconds(300 + i);
    q.submit_batch = 7 + i;
    spec.queues.push_back(q);
  }
  return spec;
}

TEST(DataPlaneProtocol, StartRoundTrips) {
  const DataPlaneSpec spec = two_queues();
  auto back = decode_start(encode_start(spec));
  ASSERT_TRUE(back.has_value()) << back.error();
  EXPECT_EQ(back->name, spec.name);
  EXPECT_EQ(back->storage_path, spec.storage_path);
  EXPECT_TRUE(back->read_only);
  EXPECT_FALSE(back->discard);
  EXPECT_EQ(back->inject_latency_us, 2000u);
  EXPECT_EQ(back->uid, 0x70000003u);
  EXPECT_EQ(back->orphan_timeout_ms, 60000u);
  EXPECT_EQ(back->nbd_uri, spec.nbd_uri);
  EXPECT_TRUE(back->storage_ours);
  EXPECT_EQ(back->rbd_params, spec.rbd_params);
  EXPECT_TRUE(back->paused);
  auto running = spec;
  running.paused = false;
  EXPECT_FALSE(decode_start(encode_start(running)).value().paused);
  ASSERT_EQ(back->queues.size(), 2u);
  for (unsigned i = 0; i < 2; ++i) {
    const QueueConfig &a = spec.queues[i], &b = back->queues[i];
    EXPECT_EQ(b.name, a.name);
    EXPECT_EQ(b.index, a.index);
    EXPECT_EQ(b.frontend_domid, a.frontend_domid);
    EXPECT_EQ(b.abi, a.abi);
    EXPECT_EQ(b.ring_refs, a.ring_refs);
    EXPECT_EQ(b.remote_port, a.remote_port);
    EXPECT_EQ(b.data_path, a.data_path);
    EXPECT_EQ(b.persistent_grants, a.persistent_grants);
    EXPECT_EQ(b.max_persistent_grants, a.max_persistent_grants);
    EXPECT_EQ(b.persistent_idle_expiry, a.persistent_idle_expiry);
    EXPECT_EQ(b.max_indirect_segments, a.max_indirect_segments);
    EXPECT_EQ(b.flush_enabled, a.flush_enabled);
    EXPECT_EQ(b.barrier_enabled, a.barrier_enabled);
    EXPECT_EQ(b.discard_enabled, a.discard_enabled);
    EXPECT_EQ(b.recovery_path, a.recovery_path);
    EXPECT_EQ(b.resume, a.resume);
    EXPECT_EQ(b.bind_patience, a.bind_patience);
    EXPECT_EQ(b.poll_max, a.poll_max);
    EXPECT_EQ(b.submit_batch, a.submit_batch);
  }
}

TEST(DataPlaneProtocol, AdoptedIsTheSameSpecUnderItsOwnType) {
  const auto msg = encode_start(two_queues(), Msg::Adopted);
  EXPECT_TRUE(decode_start(msg, Msg::Adopted).has_value());
  EXPECT_FALSE(decode_start(msg).has_value()) << "an Adopted taken for a Start";
  EXPECT_EQ(message_type(msg).value(), Msg::Adopted);
}

TEST(DataPlaneProtocol, EveryTruncationAndTrailingByteIsRefused) {
  const auto msg = encode_start(two_queues());
  for (std::size_t n = 0; n < msg.size(); ++n)
    EXPECT_FALSE(decode_start(std::span(msg).first(n)).has_value()) << "accepted " << n << " of " << msg.size();
  auto longer = msg;
  longer.push_back(std::byte{0});
  EXPECT_FALSE(decode_start(longer).has_value());
}

TEST(DataPlaneProtocol, AnotherVersionOrMagicIsRefusedByName) {
  auto msg = encode_start(two_queues());
  auto other_version = msg;
  other_version[4] = std::byte{99};
  auto r = decode_start(other_version);
  ASSERT_FALSE(r.has_value());
  EXPECT_NE(r.error().find("version"), std::string::npos) << r.error();
  auto other_magic = msg;
  other_magic[0] = std::byte{0};
  EXPECT_FALSE(decode_start(other_magic).has_value());
}

TEST(DataPlaneProtocol, OutOfRangeFieldsAreRefused) {
  auto spec = two_queues();
  spec.queues[0].ring_refs.assign(65, 1);  // more ring pages than a ring has
  EXPECT_FALSE(decode_start(encode_start(spec)).has_value());
  spec = two_queues();
  spec.queues[1].ring_refs.clear();
  EXPECT_FALSE(decode_start(encode_start(spec)).has_value());
  spec = two_queues();
  spec.queues.clear();
  EXPECT_FALSE(decode_start(encode_start(spec)).has_value());
  spec = two_queues();
  spec.queues[1].poll_max = std::chrono::microseconds(1001);  // above --poll-max-us's bound
  EXPECT_FALSE(decode_start(encode_start(spec)).has_value());
  spec = two_queues();
  spec.queues[0].submit_batch = 4097;
  EXPECT_FALSE(decode_start(encode_start(spec)).has_value());
  spec = two_queues();
  spec.queues[0].frontend_domid = 0xFFFF;  // fits; a domid above 16 bits cannot be encoded
  EXPECT_TRUE(decode_start(encode_start(spec)).has_value());
  // A boolean byte other than 0 or 1.
  auto msg = encode_start(two_queues());
  const std::size_t read_only_at = 12 + 4 + two_queues().name.size() + 4 + two_queues().storage_path.size();
  msg[read_only_at] = std::byte{2};
  EXPECT_FALSE(decode_start(msg).has_value());
}

TEST(DataPlaneProtocol, NoticesRoundTripAndMalformedOnesAreRefused) {
  const Notice fatal{Msg::Fatal, 71, "ring overflow: req_prod 4096 ahead of rsp_prod 0"};
  auto back = decode_notice(encode_notice(fatal));
  ASSERT_TRUE(back.has_value()) << back.error();
  EXPECT_EQ(back->type, Msg::Fatal);
  EXPECT_EQ(back->error, 71);
  EXPECT_EQ(back->reason, fatal.reason);
  for (Msg m : {Msg::Stop, Msg::Resize, Msg::Adopt, Msg::Ready, Msg::Resized, Msg::Pause, Msg::Resume})
    EXPECT_TRUE(decode_notice(encode_notice({m, 0, {}})).has_value());
  EXPECT_FALSE(decode_notice(encode_start(two_queues())).has_value()) << "a Start taken for a notice";
  auto msg = encode_notice(fatal);
  msg.resize(msg.size() - 1);
  EXPECT_FALSE(decode_notice(msg).has_value());
  // A reason length past the message's end.
  msg = encode_notice(fatal);
  msg[16] = std::byte{0xFF};
  msg[17] = std::byte{0xFF};
  EXPECT_FALSE(decode_notice(msg).has_value());
}

// The pause's answers carry figures: what is encoded is decoded the same, and neither is taken for
// the other, for a notice or for a truncated or longer message.
TEST(DataPlaneProtocol, TuneRoundTripsAndMalformedOrOutOfRangeOnesAreRefused) {
  const LiveTuning t{512, std::chrono::seconds(30), std::chrono::microseconds(150), 4};
  const auto tune = encode_tune(t);
  auto back = decode_tune(tune);
  ASSERT_TRUE(back.has_value()) << back.error();
  EXPECT_EQ(*back, t);
  EXPECT_EQ(message_type(tune).value(), Msg::Tune);
  for (std::size_t n = 0; n < tune.size(); ++n) EXPECT_FALSE(decode_tune(std::span(tune).first(n)).has_value()) << n;
  auto longer = tune;
  longer.push_back(std::byte{0});
  EXPECT_FALSE(decode_tune(longer).has_value());
  EXPECT_FALSE(decode_tune(encode_tune({65'537, std::chrono::seconds(30)})).has_value()) << "above the table's bound";
  EXPECT_FALSE(decode_tune(encode_tune({8, std::chrono::milliseconds(-1)})).has_value());
  EXPECT_FALSE(decode_tune(encode_tune({8, std::chrono::seconds(1), std::chrono::microseconds(1001), 2})).has_value())
      << "a polling window above its bound";
  EXPECT_FALSE(decode_tune(encode_tune({8, std::chrono::seconds(1), std::chrono::microseconds(-1), 2})).has_value());
  EXPECT_FALSE(decode_tune(encode_tune({8, std::chrono::seconds(1), std::chrono::microseconds(0), 4097})).has_value())
      << "a submission batch above its bound";
  EXPECT_FALSE(decode_tune(encode_resumed(7)).has_value()) << "a Resumed taken for a Tune";
  EXPECT_FALSE(decode_notice(tune).has_value()) << "a Tune taken for a notice";
}

TEST(DataPlaneProtocol, PausedAndResumedRoundTripAndMalformedOnesAreRefused) {
  const PauseFigures figures{12, 3456789, 2100, 0};
  const auto paused = encode_paused(figures);
  auto back = decode_paused(paused);
  ASSERT_TRUE(back.has_value()) << back.error();
  EXPECT_EQ(back->drained, 12u);
  EXPECT_EQ(back->drain_us, 3456789u);
  EXPECT_EQ(back->flush_us, 2100u);
  EXPECT_EQ(back->error, 0);
  EXPECT_EQ(decode_paused(encode_paused({0, 1, 2, 5})).value().error, 5) << "a failed flush's errno";
  EXPECT_EQ(message_type(paused).value(), Msg::Paused);
  const auto resumed = encode_resumed(7);
  EXPECT_EQ(decode_resumed(resumed).value(), 7u);
  EXPECT_EQ(message_type(resumed).value(), Msg::Resumed);

  EXPECT_FALSE(decode_paused(resumed).has_value()) << "a Resumed taken for a Paused";
  EXPECT_FALSE(decode_resumed(paused).has_value()) << "a Paused taken for a Resumed";
  EXPECT_FALSE(decode_notice(paused).has_value()) << "a Paused taken for a notice";
  EXPECT_FALSE(decode_notice(resumed).has_value()) << "a Resumed taken for a notice";
  EXPECT_FALSE(decode_paused(encode_notice({Msg::Pause, 0, {}})).has_value());
  for (const auto* msg : {&paused, &resumed}) {
    for (std::size_t n = 0; n < msg->size(); ++n) {
      EXPECT_FALSE(decode_paused(std::span(*msg).first(n)).has_value()) << n;
      EXPECT_FALSE(decode_resumed(std::span(*msg).first(n)).has_value()) << n;
    }
    auto longer = *msg;
    longer.push_back(std::byte{0});
    EXPECT_FALSE(decode_paused(longer).has_value());
    EXPECT_FALSE(decode_resumed(longer).has_value());
  }
  auto negative = encode_paused({1, 1, 1, -5});
  EXPECT_FALSE(decode_paused(negative).has_value()) << "a negative errno";
  auto other_version = paused;
  other_version[4] = std::byte{3};
  EXPECT_FALSE(decode_paused(other_version).has_value()) << "a version 3 data plane knows no Paused";
}

}  // namespace
}  // namespace pvback::blkback::plane
