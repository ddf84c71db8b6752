// The Copy way of segments.hpp: the queue's own bounce pages, filled from and emptied into the
// guest's grants with batched grant copies; no guest page is ever mapped into this process.
#include <sys/mman.h>

#include <algorithm>
#include <vector>

#include "blkback/segments.hpp"

namespace pvback::blkback {
namespace {

// Page-aligned anonymous memory, unmapped on destruction.
struct PageBuffer {
  std::byte* data = nullptr;
  std::size_t bytes = 0;
  PageBuffer() = default;
  PageBuffer(const PageBuffer&) = delete;
  PageBuffer& operator=(const PageBuffer&) = delete;
  ~PageBuffer() {
    if (data != nullptr) ::munmap(data, bytes);
  }
  int allocate(std::size_t n) {
    void* p = ::mmap(nullptr, n, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED) return errno;
    data = static_cast<std::byte*>(p);
    bytes = n;
    return 0;
  }
};

class CopiedSegments final : public SegmentPath {
 public:
  CopiedSegments(const SegmentPathConfig& c, grant::GrantMapper& mapper, QueueStats& stats, RequestFailer& failer)
      : config_(c), mapper_(mapper), stats_(stats), failer_(failer) {}

  // A bounded pool with back-pressure: a request is taken from the ring only while a largest one
  // still fits, so the pool never runs dry in the middle of a request.
  int init() {
    const std::uint32_t pool = std::max<std::uint32_t>(
        std::min<std::uint32_t>(config_.ring_size * blkif::kMaxSegmentsPerRequest, 4096), 2 * config_.max_segs);
    if (int err = pages_.allocate(std::size_t{pool} * kXenPageSize); err != 0) return err;
    free_.reserve(pool);
    for (std::uint32_t i = pool; i > 0; --i) free_.push_back(i - 1);
    bounce_.resize(std::size_t{config_.ring_size} * config_.max_segs);
    held_.assign(config_.ring_size, 0);
    copies_.resize(pool);
    owner_.resize(pool);
    return 0;
  }

  bool room_for_one_more(std::size_t reserved) const override {
    return free_.size() >= reserved + config_.max_segs;
  }
  std::uint32_t pages_taken(const Slot& s) const override { return s.has_data() ? s.nsegs : 0; }

  // Bounce pages for every data request; one grant copy brings in the data of all writes.
  void prepare(std::span<const std::uint32_t> batch, std::span<Slot> slots) override {
    std::size_t n = 0;
    for (std::uint32_t idx : batch) {
      Slot& s = slots[idx];
      if (!s.has_data()) continue;
      std::uint32_t* bounce = bounce_of(idx);
      for (std::uint32_t i = 0; i < s.nsegs; ++i) {
        bounce[i] = free_.back();  // room_for_one_more() guaranteed max_segs pages were free
        free_.pop_back();
        if (s.kind != Kind::Read) add_copy(n++, idx, s.segs[i], bounce[i], /*to_guest=*/false);
      }
      held_[idx] = s.nsegs;
    }
    run_copies(n, slots, "cannot copy from the guest's grant");
  }

  void build_iov(std::uint32_t idx, Slot& s) override {
    const std::uint32_t* bounce = bounce_of(idx);
    fill_iov(s, [&](std::uint32_t i) { return page(bounce[i]); });
  }

  bool read_done_in_place() const override { return false; }

  // One grant copy takes the data of every read finished together to the guest.
  void copy_back(std::span<const std::uint32_t> reads, std::span<Slot> slots) override {
    std::size_t n = 0;
    for (std::uint32_t idx : reads) {
      const Slot& s = slots[idx];
      const std::uint32_t* bounce = bounce_of(idx);
      for (std::uint32_t i = 0; i < s.nsegs; ++i) add_copy(n++, idx, s.segs[i], bounce[i], /*to_guest=*/true);
    }
    run_copies(n, slots, "cannot copy into the guest's grant");
  }

  void release(std::uint32_t idx, Slot&) override {
    const std::uint32_t* bounce = bounce_of(idx);
    for (std::uint32_t i = 0; i < held_[idx]; ++i) free_.push_back(bounce[i]);
    held_[idx] = 0;
  }

 private:
  std::uint32_t* bounce_of(std::uint32_t idx) { return &bounce_[std::size_t{idx} * config_.max_segs]; }
  std::byte* page(std::uint32_t bounce) const { return pages_.data + std::size_t{bounce} * kXenPageSize; }

  void add_copy(std::size_t n, std::uint32_t idx, const blkif::Segment& g, std::uint32_t bounce, bool to_guest) {
    grant::CopySegment& c = copies_[n];
    c = {};
    const std::uint32_t at = g.first_sect * blkif::kSectorSize;
    auto& guest = to_guest ? c.dest : c.source;
    (to_guest ? c.source : c.dest).virt = page(bounce) + at;
    guest.foreign.ref = g.gref;
    guest.foreign.domid = config_.frontend_domid;
    guest.foreign.offset = static_cast<std::uint16_t>(at);
    c.len = static_cast<std::uint16_t>((g.last_sect - g.first_sect + 1u) * blkif::kSectorSize);
    c.flags = to_guest ? GNTCOPY_dest_gref : GNTCOPY_source_gref;
    owner_[n] = idx;
  }

  void run_copies(std::size_t n, std::span<Slot> slots, const char* why) {
    if (n == 0) return;
    const int err = mapper_.copy({copies_.data(), n});
    stats_.grants_copied.add(n);
    for (std::size_t i = 0; i < n; ++i)
      if (err != 0 || copies_[i].status != GNTST_okay) failer_.fail(slots[owner_[i]], blkif::kRspError, why);
  }

  SegmentPathConfig config_;
  grant::GrantMapper& mapper_;
  QueueStats& stats_;
  RequestFailer& failer_;
  PageBuffer pages_;
  std::vector<std::uint32_t> free_;
  std::vector<std::uint32_t> bounce_;  // per slot and segment: its bounce page
  std::vector<std::uint32_t> held_;    // per slot: bounce pages it holds
  std::vector<grant::CopySegment> copies_;
  std::vector<std::uint32_t> owner_;
};

}  // namespace

std::unique_ptr<SegmentPath> make_mapped_segments(const SegmentPathConfig& config, grant::GrantMapper& mapper,
                                                  QueueStats& stats, RequestFailer& failer);

std::expected<std::unique_ptr<SegmentPath>, int> SegmentPath::create(const SegmentPathConfig& config,
                                                                     grant::GrantMapper& mapper, QueueStats& stats,
                                                                     RequestFailer& failer) {
  if (config.way != SegmentPathConfig::Way::Copy) return make_mapped_segments(config, mapper, stats, failer);
  auto copied = std::make_unique<CopiedSegments>(config, mapper, stats, failer);
  if (int err = copied->init()) return std::unexpected(err);
  return copied;
}

}  // namespace pvback::blkback
