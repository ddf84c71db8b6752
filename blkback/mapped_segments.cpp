// The Map and Persistent ways of segments.hpp: guest pages mapped into this process, the storage
// reading and writing them directly (zero copy).
#include <chrono>
#include <optional>
#include <vector>

#include "blkback/persistent_grants.hpp"
#include "blkback/segments.hpp"

namespace pvback::blkback {
namespace {

std::int64_t now_ns() {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

// One map() call's pages, shared by the requests of a batch until the last one is answered.
struct BatchMap {
  grant::Mapping mapping;
  std::uint32_t users = 0;
};

// Grant refs collected for one batched map() call.
struct MapBatch {
  std::vector<GrantRef> refs;
  std::vector<std::uint32_t> slots;
};

class MappedSegments final : public SegmentPath {
 public:
  MappedSegments(const SegmentPathConfig& c, grant::GrantMapper& mapper, QueueStats& stats, RequestFailer& failer)
      : config_(c), mapper_(mapper), stats_(stats), failer_(failer) {
    if (c.way == SegmentPathConfig::Way::Persistent) persistent_.emplace(c.max_persistent_grants);
    const std::size_t total = std::size_t{c.ring_size} * c.max_segs;
    pg_.assign(total, PersistentGrants::kNone);
    per_slot_.resize(c.ring_size);
    batch_maps_.resize(c.ring_size);
    free_batch_maps_.reserve(c.ring_size);
    for (std::uint32_t i = c.ring_size; i > 0; --i) free_batch_maps_.push_back(static_cast<std::int32_t>(i - 1));
    max_map_batch_ = std::max<std::uint32_t>(2048, c.max_segs);
    for (MapBatch* b : {&read_batch_, &write_batch_}) {
      b->refs.reserve(max_map_batch_);
      b->slots.reserve(c.ring_size);
    }
    scratch_refs_.reserve(c.max_segs);
  }

  ~MappedSegments() override {
    if (persistent_) {
      persistent_->clear();
      stats_.persistent_grants.set(0);
    }
    for (BatchMap& b : batch_maps_) b.mapping.reset();
  }

  // Persistent cache first (a miss is added while it has room), then one ReadWrite map for the
  // rest of the batch's reads and one ReadOnly map for the rest of its writes.
  void prepare(std::span<const std::uint32_t> batch, std::span<Slot> slots) override {
    const std::int64_t now = persistent_ ? now_ns() : 0;
    for (std::uint32_t idx : batch) {
      Slot& s = slots[idx];
      if (!s.has_data()) continue;
      PerSlot& p = per_slot_[idx];
      std::int32_t* pg = pg_of(idx);
      p.unmapped = 0;
      for (std::uint32_t i = 0; i < s.nsegs; ++i) {
        pg[i] = persistent_ ? cached(s.segs[i].gref, now) : PersistentGrants::kNone;
        if (pg[i] == PersistentGrants::kNone) ++p.unmapped;
      }
      if (p.unmapped != 0) {
        if (s.kind == Kind::Read) add_to_batch(read_batch_, idx, s, slots, Access::ReadWrite);
        else add_to_batch(write_batch_, idx, s, slots, Access::ReadOnly);
      }
    }
    flush_batch(read_batch_, slots, Access::ReadWrite);
    flush_batch(write_batch_, slots, Access::ReadOnly);
  }

  void build_iov(std::uint32_t idx, Slot& s) override {
    const std::int32_t* pg = pg_of(idx);
    const PerSlot& p = per_slot_[idx];
    std::uint32_t np = 0;
    fill_iov(s, [&](std::uint32_t i) -> std::byte* {
      if (pg[i] != PersistentGrants::kNone) return static_cast<std::byte*>(persistent_->at(pg[i]).mapping.data());
      return batch_maps_[p.batch_map].mapping.page(p.map_first + np++);
    });
  }

  void release(std::uint32_t idx, Slot& s) override {
    if (persistent_ && request::moves_data(s.kind)) {
      std::int32_t* pg = pg_of(idx);
      for (std::uint32_t i = 0; i < s.nsegs; ++i) {
        if (pg[i] != PersistentGrants::kNone) {
          persistent_->at(pg[i]).users--;
          pg[i] = PersistentGrants::kNone;
        }
      }
    }
    PerSlot& p = per_slot_[idx];
    if (p.batch_map >= 0) {
      BatchMap& b = batch_maps_[p.batch_map];
      if (--b.users == 0) {
        b.mapping.reset();
        free_batch_maps_.push_back(p.batch_map);
      }
      p.batch_map = -1;
    }
  }

  bool keeps_idle_state() const override { return persistent_ && persistent_->size() != 0; }

  void set_max_persistent(std::uint32_t max) override {
    if (!persistent_) return;
    if (const std::uint32_t removed = persistent_->set_capacity(max); removed != 0)
      stats_.persistent_evictions.add(removed);
    stats_.persistent_grants.set(persistent_->size());
  }

  void expire(std::int64_t cutoff_ns) override {
    if (!persistent_) return;
    if (const std::uint32_t removed = persistent_->expire(cutoff_ns); removed != 0) {
      stats_.persistent_evictions.add(removed);
      stats_.persistent_grants.set(persistent_->size());
    }
  }

 private:
  struct PerSlot {
    std::int32_t batch_map = -1;  // index into batch_maps_, or -1
    std::uint32_t map_first = 0;  // its first page in that mapping
    std::uint32_t unmapped = 0;   // segments not served by the persistent cache
  };

  std::int32_t* pg_of(std::uint32_t idx) { return &pg_[std::size_t{idx} * config_.max_segs]; }

  // The cache entry for gref (mapped now if it is new and the cache has room), referenced once
  // more; kNone if it must be mapped with the batch.
  std::int32_t cached(GrantRef gref, std::int64_t now) {
    std::int32_t e = persistent_->find(gref);
    if (e != PersistentGrants::kNone) {
      stats_.persistent_hits.add();
    } else {
      stats_.persistent_misses.add();
      if (persistent_->full()) return PersistentGrants::kNone;
      auto m = mapper_.map(config_.frontend_domid, {&gref, 1}, Access::ReadWrite);
      if (!m) return PersistentGrants::kNone;
      e = persistent_->insert(gref, std::move(*m), now);
      stats_.persistent_grants.set(persistent_->size());
    }
    persistent_->at(e).users++;
    persistent_->touch(e, now);
    return e;
  }

  void add_to_batch(MapBatch& b, std::uint32_t idx, const Slot& s, std::span<Slot> slots, Access access) {
    PerSlot& p = per_slot_[idx];
    if (b.refs.size() + p.unmapped > max_map_batch_) flush_batch(b, slots, access);
    p.map_first = static_cast<std::uint32_t>(b.refs.size());
    const std::int32_t* pg = pg_of(idx);
    for (std::uint32_t i = 0; i < s.nsegs; ++i)
      if (pg[i] == PersistentGrants::kNone) b.refs.push_back(s.segs[i].gref);
    b.slots.push_back(idx);
  }

  std::int32_t take_batch_map(grant::Mapping mapping, std::uint32_t users, std::size_t pages) {
    const std::int32_t bm = free_batch_maps_.back();
    free_batch_maps_.pop_back();
    batch_maps_[bm].mapping = std::move(mapping);
    batch_maps_[bm].users = users;
    stats_.grants_mapped.add(pages);
    return bm;
  }

  void flush_batch(MapBatch& b, std::span<Slot> slots, Access access) {
    if (b.slots.empty()) return;
    const char* why = access == Access::ReadWrite ? "cannot map the grants for writing" : "cannot map the grants";
    if (auto m = mapper_.map(config_.frontend_domid, b.refs, access)) {
      const std::int32_t bm = take_batch_map(std::move(*m), static_cast<std::uint32_t>(b.slots.size()), b.refs.size());
      for (std::uint32_t idx : b.slots) per_slot_[idx].batch_map = bm;
    } else if (b.slots.size() == 1) {
      failer_.fail(slots[b.slots[0]], blkif::kRspError, why);
    } else {
      // map() is all-or-nothing: find the culprits one request at a time.
      for (std::uint32_t idx : b.slots) {
        PerSlot& p = per_slot_[idx];
        scratch_refs_.assign(b.refs.begin() + p.map_first, b.refs.begin() + p.map_first + p.unmapped);
        auto one = mapper_.map(config_.frontend_domid, scratch_refs_, access);
        if (!one) {
          failer_.fail(slots[idx], blkif::kRspError, why);
          continue;
        }
        p.batch_map = take_batch_map(std::move(*one), 1, scratch_refs_.size());
        p.map_first = 0;
      }
    }
    b.refs.clear();
    b.slots.clear();
  }

  SegmentPathConfig config_;
  grant::GrantMapper& mapper_;
  QueueStats& stats_;
  RequestFailer& failer_;
  std::optional<PersistentGrants> persistent_;
  std::vector<std::int32_t> pg_;  // per slot and segment: its persistent entry, or kNone
  std::vector<PerSlot> per_slot_;
  std::vector<BatchMap> batch_maps_;
  std::vector<std::int32_t> free_batch_maps_;
  MapBatch read_batch_, write_batch_;
  std::vector<GrantRef> scratch_refs_;
  std::uint32_t max_map_batch_ = 0;
};

}  // namespace

std::unique_ptr<SegmentPath> make_mapped_segments(const SegmentPathConfig& config, grant::GrantMapper& mapper,
                                                  QueueStats& stats, RequestFailer& failer) {
  return std::make_unique<MappedSegments>(config, mapper, stats, failer);
}

}  // namespace pvback::blkback
