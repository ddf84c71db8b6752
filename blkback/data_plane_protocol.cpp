#include "blkback/data_plane_protocol.hpp"

#include "plane/codec.hpp"

#include <cstring>
#include <type_traits>

namespace pvback::blkback::plane {
namespace {

using Writer = ::pvback::plane::Writer;
using Reader = ::pvback::plane::Reader;

void put_header(Writer& w, Msg type) { ::pvback::plane::put_header(w, kProtocol, static_cast<std::uint32_t>(type)); }

std::expected<Msg, std::string> get_header(Reader& r) {
  auto type = ::pvback::plane::get_header(r, kProtocol);
  if (!type) return std::unexpected(type.error());
  return static_cast<Msg>(*type);
}

void put_queue(Writer& w, const QueueConfig& q) {
  w.put(q.name);
  w.put(static_cast<std::uint32_t>(q.index));
  w.put(static_cast<std::uint32_t>(q.frontend_domid));
  w.put(static_cast<std::uint32_t>(q.abi));
  w.put(static_cast<std::uint32_t>(q.ring_refs.size()));
  for (GrantRef ref : q.ring_refs) w.put(static_cast<std::uint32_t>(ref));
  w.put(static_cast<std::uint32_t>(q.remote_port));
  w.put(static_cast<std::uint8_t>(q.data_path == DataPath::Map));
  w.put(static_cast<std::uint8_t>(q.persistent_grants));
  w.put(static_cast<std::uint32_t>(q.max_persistent_grants));
  w.put(static_cast<std::int64_t>(q.persistent_idle_expiry.count()));
  w.put(static_cast<std::uint32_t>(q.max_indirect_segments));
  w.put(static_cast<std::uint8_t>(q.flush_enabled));
  w.put(static_cast<std::uint8_t>(q.barrier_enabled));
  w.put(static_cast<std::uint8_t>(q.discard_enabled));
  w.put(q.recovery_path);
  w.put(static_cast<std::uint8_t>(q.resume));
  w.put(static_cast<std::int64_t>(q.bind_patience.count()));
  w.put(static_cast<std::int64_t>(q.poll_max.count()));
  w.put(static_cast<std::uint32_t>(q.submit_batch));
}

bool get_queue(Reader& r, QueueConfig& q) {
  std::uint32_t index = 0, domid = 0, abi = 0, nrefs = 0, port = 0, max_pg = 0, max_ind = 0;
  std::int64_t idle_ms = 0, patience_ms = 0, poll_us = 0;
  std::uint32_t submit_batch = 0;
  bool map = false;
  if (!r.get(q.name) || !r.get(index) || !r.get(domid) || !r.get(abi) || !r.get(nrefs)) return false;
  if (abi > static_cast<std::uint32_t>(Abi::X86_64) || domid > 0xFFFF || nrefs == 0 || nrefs > 64) return false;
  q.ring_refs.resize(nrefs);
  for (auto& ref : q.ring_refs) {
    std::uint32_t v = 0;
    if (!r.get(v)) return false;
    ref = v;
  }
  if (!r.get(port) || !r.get(map) || !r.get(q.persistent_grants) || !r.get(max_pg) || !r.get(idle_ms) ||
      !r.get(max_ind) || !r.get(q.flush_enabled) || !r.get(q.barrier_enabled) || !r.get(q.discard_enabled) ||
      !r.get(q.recovery_path) || !r.get(q.resume) || !r.get(patience_ms) || !r.get(poll_us) || !r.get(submit_batch))
    return false;
  if (idle_ms < 0 || patience_ms < 0 || poll_us < 0 || poll_us > kMaxPollMax.count() || submit_batch > kMaxSubmitBatch)
    return false;
  q.poll_max = std::chrono::microseconds(poll_us);
  q.submit_batch = submit_batch;
  q.index = index;
  q.frontend_domid = static_cast<DomId>(domid);
  q.abi = static_cast<Abi>(abi);
  q.remote_port = port;
  q.data_path = map ? DataPath::Map : DataPath::Copy;
  q.max_persistent_grants = max_pg;
  q.persistent_idle_expiry = std::chrono::milliseconds(idle_ms);
  q.max_indirect_segments = max_ind;
  q.bind_patience = std::chrono::milliseconds(patience_ms);
  return true;
}

}  // namespace

std::vector<std::byte> encode_start(const DataPlaneSpec& spec, Msg type) {
  Writer w;
  put_header(w, type);
  w.put(spec.name);
  w.put(spec.storage_path);
  w.put(static_cast<std::uint8_t>(spec.read_only));
  w.put(static_cast<std::uint8_t>(spec.discard));
  w.put(spec.inject_latency_us);
  w.put(static_cast<std::uint8_t>(spec.sandbox));
  w.put(spec.uid);
  w.put(spec.gid);
  w.put(spec.orphan_timeout_ms);
  w.put(spec.nbd_uri);
  w.put(static_cast<std::uint8_t>(spec.storage_ours));
  w.put(spec.rbd_params);
  w.put(static_cast<std::uint8_t>(spec.paused));
  w.put(static_cast<std::uint32_t>(spec.queues.size()));
  for (const QueueConfig& q : spec.queues) put_queue(w, q);
  return w.take();
}

std::expected<DataPlaneSpec, std::string> decode_start(std::span<const std::byte> message, Msg want) {
  Reader r(message);
  auto type = get_header(r);
  if (!type) return std::unexpected(type.error());
  if (*type != want) return std::unexpected(want == Msg::Start ? "not a Start message" : "not an Adopted message");
  DataPlaneSpec spec;
  std::uint32_t queues = 0;
  if (!r.get(spec.name) || !r.get(spec.storage_path) || !r.get(spec.read_only) || !r.get(spec.discard) ||
      !r.get(spec.inject_latency_us) || !r.get(spec.sandbox) || !r.get(spec.uid) || !r.get(spec.gid) ||
      !r.get(spec.orphan_timeout_ms) || !r.get(spec.nbd_uri) || !r.get(spec.storage_ours) ||
      !r.get(spec.rbd_params) || !r.get(spec.paused) || !r.get(queues))
    return std::unexpected("truncated Start message");
  if (queues == 0 || queues > 256) return std::unexpected("Start message with " + std::to_string(queues) + " queues");
  spec.queues.resize(queues);
  for (std::uint32_t i = 0; i < queues; ++i)
    if (!get_queue(r, spec.queues[i])) return std::unexpected("malformed queue " + std::to_string(i));
  if (!r.done()) return std::unexpected("trailing bytes after the Start message");
  return spec;
}

std::vector<std::byte> encode_notice(const Notice& notice) {
  return ::pvback::plane::encode_notice(kProtocol, {static_cast<std::uint32_t>(notice.type), notice.error, notice.reason});
}

std::expected<Notice, std::string> decode_notice(std::span<const std::byte> message) {
  auto n = ::pvback::plane::decode_notice(kProtocol, message);
  if (!n) return std::unexpected(n.error());
  return Notice{static_cast<Msg>(n->type), n->error, std::move(n->reason)};
}

std::vector<std::byte> encode_paused(const PauseFigures& f) {
  Writer w;
  put_header(w, Msg::Paused);
  w.put(f.drained);
  w.put(f.drain_us);
  w.put(f.flush_us);
  w.put(f.error);
  return w.take();
}

std::expected<PauseFigures, std::string> decode_paused(std::span<const std::byte> message) {
  Reader r(message);
  auto type = get_header(r);
  if (!type) return std::unexpected(type.error());
  if (*type != Msg::Paused) return std::unexpected("not a Paused message");
  PauseFigures f;
  if (!r.get(f.drained) || !r.get(f.drain_us) || !r.get(f.flush_us) || !r.get(f.error) || !r.done())
    return std::unexpected("malformed Paused message");
  if (f.error < 0) return std::unexpected("Paused with a negative errno");
  return f;
}

std::vector<std::byte> encode_resumed(std::uint64_t waiting) {
  Writer w;
  put_header(w, Msg::Resumed);
  w.put(waiting);
  return w.take();
}

std::expected<std::uint64_t, std::string> decode_resumed(std::span<const std::byte> message) {
  Reader r(message);
  auto type = get_header(r);
  if (!type) return std::unexpected(type.error());
  if (*type != Msg::Resumed) return std::unexpected("not a Resumed message");
  std::uint64_t waiting = 0;
  if (!r.get(waiting) || !r.done()) return std::unexpected("malformed Resumed message");
  return waiting;
}

std::vector<std::byte> encode_tune(const LiveTuning& t) {
  Writer w;
  put_header(w, Msg::Tune);
  w.put(static_cast<std::uint32_t>(t.max_persistent_grants));
  w.put(static_cast<std::int64_t>(t.persistent_idle_expiry.count()));
  w.put(static_cast<std::int64_t>(t.poll_max.count()));
  w.put(static_cast<std::uint32_t>(t.submit_batch));
  return w.take();
}

std::expected<LiveTuning, std::string> decode_tune(std::span<const std::byte> message) {
  Reader r(message);
  auto type = get_header(r);
  if (!type) return std::unexpected(type.error());
  if (*type != Msg::Tune) return std::unexpected("not a Tune message");
  std::uint32_t max_pg = 0, submit_batch = 0;
  std::int64_t idle_ms = 0, poll_us = 0;
  if (!r.get(max_pg) || !r.get(idle_ms) || !r.get(poll_us) || !r.get(submit_batch) || !r.done())
    return std::unexpected("malformed Tune message");
  // The limits the control part's own parser enforces (blkback/tunables.cpp).
  if (max_pg > 65'536 || idle_ms < 0 || idle_ms > 86'400'000 || poll_us < 0 || poll_us > kMaxPollMax.count() ||
      submit_batch > kMaxSubmitBatch)
    return std::unexpected("Tune out of range");
  return LiveTuning{max_pg, std::chrono::milliseconds(idle_ms), std::chrono::microseconds(poll_us), submit_batch};
}

std::expected<Msg, std::string> message_type(std::span<const std::byte> message) {
  Reader r(message);
  return get_header(r);
}

}  // namespace pvback::blkback::plane
