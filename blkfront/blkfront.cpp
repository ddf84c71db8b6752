#include "blkfront/blkfront.hpp"

#include <poll.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <type_traits>

#include "base/log.hpp"
#include "xenbus/state_wait.hpp"

namespace pvback::blkfront {

namespace {

using Clock = std::chrono::steady_clock;
using ring::RingIdx;
constexpr unsigned kMaxRingOrder = 8;            // never share more than 256 ring pages per queue
constexpr unsigned kMaxQueues = 64;
constexpr std::uint32_t kDefaultPoolCap = 256;   // pages per queue when Options::pool_pages == 0
constexpr std::uint32_t kPage = static_cast<std::uint32_t>(kXenPageSize);

std::uint32_t ceil_div(std::uint64_t a, std::uint64_t b) { return static_cast<std::uint32_t>((a + b - 1) / b); }

}  // namespace

std::string_view protocol_name(Protocol p) {
  switch (p) {
    case Protocol::Native: return "native";
    case Protocol::X86_32: return blkif::kProtocolX86_32;
    case Protocol::X86_64: return blkif::kProtocolX86_64;
    case Protocol::Omitted: return "none";
  }
  return "?";
}

std::optional<Protocol> parse_protocol(std::string_view name) {
  if (name == "native") return Protocol::Native;
  if (name == blkif::kProtocolX86_32) return Protocol::X86_32;
  if (name == blkif::kProtocolX86_64) return Protocol::X86_64;
  if (name == "none" || name == "omitted") return Protocol::Omitted;
  return std::nullopt;
}

// ---------------------------------------------------------------------------------------------
// Queue

Queue::~Queue() { teardown(); }

int Queue::setup_ring(grant::GrantSharer& sharer, const grant::Platform& platform, DomId backend, unsigned order,
                      Protocol protocol) {
  const std::uint32_t pages = 1u << order;
  auto shared = sharer.share(backend, pages, Access::ReadWrite);
  if (!shared) return shared.error();
  ring_pages_ = std::move(*shared);
  if (protocol == Protocol::X86_32) {
    auto r = blkif::x86_32::FrontRing::initialise(ring_pages_.data(), pages);
    if (!r) return r.error();
    ring_ = *r;
  } else {
    // native, x86_64 and omitted all use the 64-bit layout on this host (static_assert in blkif.hpp)
    static_assert(std::is_same_v<blkif::native::FrontRing, blkif::x86_64::FrontRing>);
    auto r = blkif::x86_64::FrontRing::initialise(ring_pages_.data(), pages);
    if (!r) return r.error();
    ring_ = *r;
  }
  events_ = platform.open_event_channels();
  if (!events_) return ENOMEM;
  auto port = events_->alloc_unbound(backend);
  if (!port) return port.error();
  port_ = grant::BoundPort(*events_, *port);
  return 0;
}

int Queue::setup_pool(grant::GrantSharer& sharer, DomId backend, const Negotiated& neg) {
  const std::uint32_t ring_size = neg.ring_size;
  const std::uint32_t segs = neg.segments_per_request;
  const std::uint32_t indirect_pages = neg.indirect ? ceil_div(segs, blkif::kSegmentsPerIndirectPage) : 0;
  max_pages_per_request_ = segs + indirect_pages;
  auto pool = sharer.share(backend, neg.pool_pages, Access::ReadWrite);
  if (!pool) return pool.error();
  pool_ = std::move(*pool);
  free_pages_.clear();
  free_pages_.reserve(neg.pool_pages);
  for (std::uint32_t i = neg.pool_pages; i-- > 0;) free_pages_.push_back(i);
  shadows_.assign(ring_size, Shadow{});
  shadow_pages_.assign(std::size_t{ring_size} * max_pages_per_request_, 0);
  free_shadows_.clear();
  free_shadows_.reserve(ring_size);
  for (std::uint32_t i = ring_size; i-- > 0;) free_shadows_.push_back(i);
  users_.assign(ring_size, User{});
  free_users_.clear();
  free_users_.reserve(ring_size);
  for (std::uint32_t i = ring_size; i-- > 0;) free_users_.push_back(i);
  ready_.clear();
  ready_.reserve(ring_size);
  connected_ = true;
  error_ = 0;
  return 0;
}

void Queue::teardown() {
  connected_ = false;
  port_.reset();
  events_.reset();
  pool_.reset();
  ring_pages_.reset();
  ring_ = RingVariant{};
}

void Queue::fail_all(int error) {
  for (std::uint32_t id = 0; id < shadows_.size(); ++id) {
    if (!shadows_[id].busy) continue;
    Shadow& s = shadows_[id];
    User& u = users_[s.user];
    if (u.error == 0) u.error = error;
    s.busy = false;
    // pages stay out of the free list: the backend may still write into them.
    free_shadows_.push_back(id);
    --ring_in_flight_;
    if (--u.parts_left == 0) finish_user(s.user);
  }
  connected_ = false;
  if (error_ == 0) error_ = error;
}

int Queue::precheck() {
  if (!connected_) return error_ != 0 ? error_ : ENODEV;
  return 0;
}

std::uint32_t Queue::alloc_user(std::uint64_t tag, std::byte* read_buffer, std::uint32_t parts) {
  std::uint32_t u = free_users_.back();
  free_users_.pop_back();
  users_[u] = User{.busy = true, .tag = tag, .read_buffer = read_buffer, .parts_left = parts, .error = 0};
  return u;
}

std::uint32_t Queue::alloc_shadow() {
  std::uint32_t id = free_shadows_.back();
  free_shadows_.pop_back();
  ++ring_in_flight_;
  return id;
}

std::uint64_t Queue::max_request_bytes(std::uint64_t sector) const {
  const Negotiated& neg = owner_->neg_;
  const std::uint64_t first = (sector % blkif::kSectorsPerPage) * blkif::kSectorSize;
  return std::uint64_t{neg.segments_per_request} * kPage - first;
}

namespace {

template <class Ring>
void put_rw(Ring& ring, std::uint8_t op, std::uint16_t handle, std::uint64_t id, std::uint64_t sector,
            std::span<const blkif::Segment> segs) {
  typename Ring::Request req;
  std::memset(&req, 0, sizeof req);
  req.rw.operation = op;
  req.rw.nr_segments = static_cast<std::uint8_t>(segs.size());
  req.rw.handle = handle;
  req.rw.id = id;
  req.rw.sector_number = sector;
  for (std::size_t i = 0; i < segs.size(); ++i) req.rw.seg[i] = segs[i];
  ring.put_request(req);
}

template <class Ring>
void put_indirect(Ring& ring, std::uint8_t op, std::uint16_t handle, std::uint64_t id, std::uint64_t sector,
                  std::uint16_t nr_segments, std::span<const GrantRef> indirect_refs) {
  typename Ring::Request req;
  std::memset(&req, 0, sizeof req);
  req.indirect.operation = blkif::kOpIndirect;
  req.indirect.indirect_op = op;
  req.indirect.nr_segments = nr_segments;
  req.indirect.handle = handle;
  req.indirect.id = id;
  req.indirect.sector_number = sector;
  for (std::size_t i = 0; i < indirect_refs.size(); ++i) req.indirect.indirect_grefs[i] = indirect_refs[i];
  ring.put_request(req);
}

template <class Ring>
void put_other(Ring& ring, std::uint8_t op, std::uint16_t handle, std::uint64_t id, std::uint64_t sector,
               std::uint64_t nr_sectors, std::uint8_t flag) {
  typename Ring::Request req;
  std::memset(&req, 0, sizeof req);
  if (op == blkif::kOpDiscard) {
    req.discard.operation = op;
    req.discard.flag = flag;
    req.discard.handle = handle;
    req.discard.id = id;
    req.discard.sector_number = sector;
    req.discard.nr_sectors = nr_sectors;
  } else {  // flush / barrier without data
    req.rw.operation = op;
    req.rw.nr_segments = 0;
    req.rw.handle = handle;
    req.rw.id = id;
    req.rw.sector_number = sector;
  }
  ring.put_request(req);
}

}  // namespace

int Queue::submit_data(std::uint8_t op, std::uint64_t sector, std::byte* data, std::size_t length, std::uint64_t tag,
                       bool allow_split, const grant::SharedPages* granted, std::size_t granted_offset) {
  if (int e = precheck()) return e;
  const Negotiated& neg = owner_->neg_;
  const std::uint32_t align = std::max<std::uint32_t>(neg.sector_size, blkif::kSectorSize);
  if (length == 0 || length % align != 0 || (sector * blkif::kSectorSize) % align != 0) return EINVAL;
  const std::uint64_t nsect = length / blkif::kSectorSize;
  if (sector > neg.sectors || nsect > neg.sectors - sector) return EINVAL;
  if (granted != nullptr) {
    const std::uint64_t region = std::uint64_t{granted->pages()} * kPage;
    if (granted_offset % blkif::kSectorSize != 0 || granted_offset > region || length > region - granted_offset)
      return EINVAL;
  }

  // Lay out: in the pool the data starts at byte (sector % 8) * 512 of its first page, so every
  // page of the pool corresponds to one 4 KiB-aligned piece of the disk; in caller-granted pages
  // it starts where the caller put it. Split in parts of at most segments_per_request pages
  // (indirect) or 11 (direct); one part is one ring request.
  const std::uint32_t first = granted != nullptr
                                  ? static_cast<std::uint32_t>(granted_offset % kPage)
                                  : static_cast<std::uint32_t>(sector % blkif::kSectorsPerPage) * blkif::kSectorSize;
  const std::uint32_t granted_page = granted != nullptr ? static_cast<std::uint32_t>(granted_offset / kPage) : 0;
  const std::uint32_t total_pages = ceil_div(first + length, kPage);
  const std::uint32_t segs_per_part = neg.segments_per_request;
  const std::uint32_t parts = ceil_div(total_pages, segs_per_part);
  if (parts > 1 && !allow_split) return E2BIG;
  // Pool pages: the data's (unless granted by the caller) and the indirect descriptor pages.
  std::uint32_t pages_needed = granted != nullptr ? 0 : total_pages;
  if (neg.indirect) {
    for (std::uint32_t p = 0; p < parts; ++p) {
      std::uint32_t n = std::min(segs_per_part, total_pages - p * segs_per_part);
      if (n > blkif::kMaxSegmentsPerRequest) pages_needed += ceil_div(n, blkif::kSegmentsPerIndirectPage);
    }
  }
  if (parts > shadows_.size() || pages_needed > pool_.pages()) return E2BIG;
  if (parts > free_shadows_.size() || pages_needed > free_pages_.size()) return EAGAIN;
  const RingIdx ring_free = std::visit([](auto& r) { return r.free_requests(); }, ring_);
  if (parts > ring_free) return EAGAIN;

  const bool is_read = op == blkif::kOpRead;
  const std::uint32_t u = alloc_user(tag, is_read && granted == nullptr ? data : nullptr, parts);
  const std::uint16_t handle = static_cast<std::uint16_t>(neg.handle);
  std::uint64_t done = 0;  // bytes of the user buffer already assigned
  std::uint64_t part_sector = sector;
  std::uint32_t part_first = first;
  blkif::Segment segs[blkif::kMaxSegmentsPerRequest];
  for (std::uint32_t p = 0; p < parts; ++p) {
    const std::uint32_t npages = std::min(segs_per_part, total_pages - p * segs_per_part);
    const std::uint64_t part_len = std::min<std::uint64_t>(length - done, std::uint64_t{npages} * kPage - part_first);
    const bool use_indirect = npages > blkif::kMaxSegmentsPerRequest;
    const std::uint32_t nind = use_indirect ? ceil_div(npages, blkif::kSegmentsPerIndirectPage) : 0;
    const std::uint32_t pool_data = granted != nullptr ? 0 : npages;  // pool pages holding data
    const std::uint32_t id = alloc_shadow();
    Shadow& s = shadows_[id];
    // The backend answers an indirect request with its indirect_op (see blkif::make_response).
    s = Shadow{.busy = true, .operation = op, .user = u, .buffer_offset = done,
               .length = static_cast<std::uint32_t>(part_len), .first_offset = part_first,
               .data_pages = static_cast<std::uint16_t>(npages), .indirect_pages = static_cast<std::uint16_t>(nind),
               .granted = granted != nullptr};
    // Pool pages of this part: its data pages (none when granted), then its indirect pages.
    std::uint32_t* pages = &shadow_pages_[std::size_t{id} * max_pages_per_request_];
    for (std::uint32_t i = 0; i < pool_data + nind; ++i) {
      pages[i] = free_pages_.back();
      free_pages_.pop_back();
    }
    // Segments; copy write data into the pool pages.
    std::uint64_t off = 0;  // within this part
    GrantRef indirect_refs[blkif::kMaxIndirectPagesPerRequest] = {};
    if (use_indirect) {
      for (std::uint32_t i = 0; i < nind; ++i) indirect_refs[i] = pool_.refs()[pages[pool_data + i]];
    }
    for (std::uint32_t i = 0; i < npages; ++i) {
      const std::uint32_t start = i == 0 ? part_first : 0;
      const std::uint32_t len = static_cast<std::uint32_t>(std::min<std::uint64_t>(kPage - start, part_len - off));
      const GrantRef gref = granted != nullptr ? granted->refs()[granted_page + p * segs_per_part + i]
                                               : pool_.refs()[pages[i]];
      blkif::Segment seg{.gref = gref,
                         .first_sect = static_cast<std::uint8_t>(start / blkif::kSectorSize),
                         .last_sect = static_cast<std::uint8_t>((start + len - 1) / blkif::kSectorSize),
                         .pad = 0};
      if (!is_read && granted == nullptr) std::memcpy(pool_.page(pages[i]) + start, data + done + off, len);
      if (use_indirect) {
        std::byte* ipage = pool_.page(pages[pool_data + i / blkif::kSegmentsPerIndirectPage]);
        std::memcpy(ipage + (i % blkif::kSegmentsPerIndirectPage) * sizeof(blkif::Segment), &seg, sizeof seg);
      } else {
        segs[i] = seg;
      }
      off += len;
    }
    std::visit(
        [&](auto& r) {
          if (use_indirect)
            put_indirect(r, op, handle, id, part_sector, static_cast<std::uint16_t>(npages),
                         std::span<const GrantRef>(indirect_refs, nind));
          else
            put_rw(r, op, handle, id, part_sector, std::span<const blkif::Segment>(segs, npages));
        },
        ring_);
    done += part_len;
    part_sector += part_len / blkif::kSectorSize;
    part_first = 0;
  }
  return 0;
}

int Queue::submit_nodata(std::uint8_t op, std::uint64_t sector, std::uint64_t nr_sectors, std::uint8_t flag,
                         std::uint64_t tag) {
  if (int e = precheck()) return e;
  if (free_shadows_.empty()) return EAGAIN;
  const RingIdx ring_free = std::visit([](auto& r) { return r.free_requests(); }, ring_);
  if (ring_free == 0) return EAGAIN;
  const std::uint32_t u = alloc_user(tag, nullptr, 1);
  const std::uint32_t id = alloc_shadow();
  shadows_[id] = Shadow{.busy = true, .operation = op, .user = u};
  const std::uint16_t handle = static_cast<std::uint16_t>(owner_->neg_.handle);
  std::visit([&](auto& r) { put_other(r, op, handle, id, sector, nr_sectors, flag); }, ring_);
  return 0;
}

int Queue::submit_read(std::uint64_t sector, std::span<std::byte> buffer, std::uint64_t tag) {
  return submit_data(blkif::kOpRead, sector, buffer.data(), buffer.size(), tag, true);
}

int Queue::submit_write(std::uint64_t sector, std::span<const std::byte> buffer, std::uint64_t tag) {
  return submit_data(blkif::kOpWrite, sector, const_cast<std::byte*>(buffer.data()), buffer.size(), tag, true);
}

int Queue::submit_read_granted(std::uint64_t sector, const grant::SharedPages& pages, std::size_t offset,
                               std::size_t length, std::uint64_t tag) {
  return submit_data(blkif::kOpRead, sector, nullptr, length, tag, true, &pages, offset);
}

int Queue::submit_write_granted(std::uint64_t sector, const grant::SharedPages& pages, std::size_t offset,
                                std::size_t length, std::uint64_t tag) {
  return submit_data(blkif::kOpWrite, sector, nullptr, length, tag, true, &pages, offset);
}

int Queue::submit_barrier_write(std::uint64_t sector, std::span<const std::byte> buffer, std::uint64_t tag) {
  if (owner_->options_.enforce_features && !owner_->neg_.barrier) return connected_ ? EOPNOTSUPP : precheck();
  // A barrier is one ring request of direct segments.
  const std::uint32_t first = static_cast<std::uint32_t>(sector % blkif::kSectorsPerPage) * blkif::kSectorSize;
  if (ceil_div(first + buffer.size(), kPage) > blkif::kMaxSegmentsPerRequest) return E2BIG;
  return submit_data(blkif::kOpWriteBarrier, sector, const_cast<std::byte*>(buffer.data()), buffer.size(), tag,
                     false);
}

int Queue::submit_flush(std::uint64_t tag) {
  const Negotiated& neg = owner_->neg_;
  std::uint8_t op = blkif::kOpFlushDiskcache;
  if (!neg.flush && neg.barrier) op = blkif::kOpWriteBarrier;
  if (owner_->options_.enforce_features && !neg.flush && !neg.barrier) return connected_ ? EOPNOTSUPP : precheck();
  return submit_nodata(op, 0, 0, 0, tag);
}

int Queue::submit_discard(std::uint64_t sector, std::uint64_t nr_sectors, bool secure, std::uint64_t tag) {
  const Negotiated& neg = owner_->neg_;
  if (owner_->options_.enforce_features && (!neg.discard || (secure && !neg.discard_secure)))
    return connected_ ? EOPNOTSUPP : precheck();
  if (owner_->options_.enforce_features && (nr_sectors == 0 || sector > neg.sectors || nr_sectors > neg.sectors - sector))
    return EINVAL;
  return submit_nodata(blkif::kOpDiscard, sector, nr_sectors, secure ? blkif::kDiscardSecure : 0, tag);
}

int Queue::kick() {
  if (!connected_) return precheck();
  const bool notify = std::visit([](auto& r) { return r.push_requests_and_check_notify(); }, ring_);
  return notify ? port_.notify() : 0;
}

void Queue::finish_user(std::uint32_t u) {
  User& user = users_[u];
  ready_.push_back(Completion{.tag = user.tag, .error = user.error});
  user.busy = false;
  free_users_.push_back(u);
}

void Queue::complete_part(std::uint32_t id, std::int16_t status) {
  Shadow& s = shadows_[id];
  User& u = users_[s.user];
  const std::uint32_t* pages = &shadow_pages_[std::size_t{id} * max_pages_per_request_];
  int err = status == blkif::kRspOkay ? 0 : status == blkif::kRspEopnotsupp ? EOPNOTSUPP : EIO;
  if (err == 0 && u.read_buffer != nullptr && !s.granted) {
    std::uint64_t off = 0;
    for (std::uint32_t i = 0; i < s.data_pages; ++i) {
      const std::uint32_t start = i == 0 ? s.first_offset : 0;
      const std::uint32_t len = std::min<std::uint32_t>(kPage - start, static_cast<std::uint32_t>(s.length - off));
      std::memcpy(u.read_buffer + s.buffer_offset + off, pool_.page(pages[i]) + start, len);
      off += len;
    }
  }
  const std::uint32_t pool_pages = (s.granted ? 0u : std::uint32_t{s.data_pages}) + s.indirect_pages;
  for (std::uint32_t i = 0; i < pool_pages; ++i) free_pages_.push_back(pages[i]);
  s.busy = false;
  free_shadows_.push_back(id);
  --ring_in_flight_;
  if (err != 0 && u.error == 0) u.error = err;
  if (--u.parts_left == 0) finish_user(s.user);
}

void Queue::consume_responses() {
  if (!connected_) return;
  std::visit(
      [&](auto& r) {
        for (;;) {
          auto pending = r.unconsumed_responses();
          if (!pending) {
            PVBACK_LOG_RATELIMITED(Error, "blkfront queue %u: backend overflowed the response ring", index_);
            fail_all(EPROTO);
            return;
          }
          for (RingIdx n = *pending; n > 0; --n) {
            auto rsp = r.next_response();
            const std::uint64_t id = rsp.id;
            if (id >= shadows_.size() || !shadows_[id].busy) {
              PVBACK_LOG_RATELIMITED(Error, "blkfront queue %u: response with bad id %llu", index_,
                                     static_cast<unsigned long long>(id));
              fail_all(EPROTO);
              return;
            }
            const std::uint8_t expect = shadows_[id].operation;
            if (rsp.operation != expect) {  // Linux's blkfront disables the disk for this
              PVBACK_LOG_RATELIMITED(Error, "blkfront queue %u: response has operation %u for request op %u", index_,
                                     rsp.operation, expect);
              fail_all(EPROTO);
              return;
            }
            complete_part(static_cast<std::uint32_t>(id), rsp.status);
          }
          auto more = r.final_check_for_responses();
          if (!more) {
            fail_all(EPROTO);
            return;
          }
          if (!*more) return;
        }
      },
      ring_);
}

std::size_t Queue::poll(std::span<Completion> out) {
  consume_responses();
  const std::size_t n = std::min(out.size(), ready_.size());
  std::copy_n(ready_.begin(), n, out.begin());
  ready_.erase(ready_.begin(), ready_.begin() + static_cast<std::ptrdiff_t>(n));
  return n;
}

void Queue::acknowledge_events() {
  if (!events_) return;
  while (auto port = events_->pending()) events_->unmask(*port);
}

int Queue::wait_event(std::chrono::milliseconds timeout) {
  if (!events_) return ENODEV;
  pollfd p{events_->fd(), POLLIN, 0};
  int r = ::poll(&p, 1, static_cast<int>(timeout.count()));
  if (r < 0) return errno;
  if (r == 0) return ETIMEDOUT;
  acknowledge_events();
  return 0;
}

int Queue::wait(std::chrono::milliseconds timeout) {
  if (!ready_.empty()) return 0;
  if (!connected_) return error_ != 0 ? error_ : ENODEV;
  pollfd fds[2] = {{events_->fd(), POLLIN, 0}, {owner_->xs_.fd(), POLLIN, 0}};
  int r = ::poll(fds, 2, static_cast<int>(timeout.count()));
  if (r < 0) return errno;
  if (fds[1].revents & POLLIN) owner_->process_xenstore();
  if (!connected_) return ready_.empty() ? (error_ != 0 ? error_ : ENODEV) : 0;
  if (r == 0) return ETIMEDOUT;
  if (fds[0].revents & POLLIN) acknowledge_events();
  return 0;
}

int Queue::wait_for(std::uint64_t tag, std::chrono::milliseconds timeout) {
  const auto deadline = Clock::now() + timeout;
  for (;;) {
    consume_responses();
    for (auto it = ready_.begin(); it != ready_.end(); ++it) {
      if (it->tag == tag) {
        int err = it->error;
        ready_.erase(it);
        return err;
      }
    }
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now());
    if (left.count() <= 0) return ETIMEDOUT;
    int e = wait(std::min(left, std::chrono::milliseconds(1000)));
    if (e != 0 && e != ETIMEDOUT && e != EINTR) {
      // the device went away: our completion may have been failed into ready_
      for (auto it = ready_.begin(); it != ready_.end(); ++it)
        if (it->tag == tag) {
          int err = it->error;
          ready_.erase(it);
          return err;
        }
      return e;
    }
  }
}

// ---------------------------------------------------------------------------------------------
// BlkFront

std::expected<grant::SharedPages, int> BlkFront::share_pages(std::uint32_t count) {
  if (count == 0) return std::unexpected(EINVAL);
  if (closed_ || !sharer_) return std::unexpected(ENODEV);
  return sharer_->share(neg_.backend_id, count, Access::ReadWrite);
}

std::string BlkFront::frontend_path_for(DomId self, unsigned devid) {
  return "/local/domain/" + std::to_string(self) + "/device/vbd/" + std::to_string(devid);
}

std::expected<std::unique_ptr<BlkFront>, int> BlkFront::attach(const grant::Platform& platform,
                                                               const std::string& frontend_path,
                                                               const Options& options) {
  std::unique_ptr<BlkFront> front(new BlkFront(platform, options));
  if (int e = front->do_attach(frontend_path)) return std::unexpected(e);
  return front;
}

BlkFront::~BlkFront() {
  if (!closed_ && xs_) detach();
  for (auto& q : queues_) q->teardown();
  if (watching_) xs_.unwatch(neg_.backend_path + "/state", watch_token_);
}

int BlkFront::write_state(xenbus::State s) {
  int e = xs_.write(neg_.frontend_path + "/state", std::to_string(static_cast<int>(s)));
  if (e == 0) state_ = s;
  return e;
}

int BlkFront::wait_backend_state(std::initializer_list<xenbus::State> wanted, std::chrono::milliseconds timeout,
                                 bool fail_on_closing) {
  if (fail_on_closing)
    return xenbus::wait_for_state(xs_, neg_.backend_path + "/state", wanted, {XenbusStateClosing}, timeout, &backend_state_);
  return xenbus::wait_for_state(xs_, neg_.backend_path + "/state", wanted, {}, timeout, &backend_state_);
}

int BlkFront::publish_rings() {
  const std::string fe = neg_.frontend_path;
  return xs_.transact([&](xenbus::Txn t) -> int {
    // Remove what an earlier attach with other parameters may have left behind.
    if (auto dir = xs_.directory(fe, t)) {
      for (const auto& name : *dir) {
        if (name.starts_with("ring-ref") || name.starts_with("queue-") || name == "ring-page-order" ||
            name == "multi-queue-num-queues" || name == "event-channel" || name == "protocol" ||
            name == "feature-persistent") {
          if (int e = xs_.rm(fe + "/" + name, t)) return e;
        }
      }
    }
    const unsigned order = neg_.ring_page_order;
    if (order > 0) {
      if (int e = xs_.write(fe + "/ring-page-order", std::to_string(order), t)) return e;
    }
    const bool multi = queues_.size() > 1;
    if (multi) {
      if (int e = xs_.write(fe + "/multi-queue-num-queues", std::to_string(queues_.size()), t)) return e;
    }
    for (std::size_t i = 0; i < queues_.size(); ++i) {
      Queue& q = *queues_[i];
      const std::string dir = multi ? fe + "/queue-" + std::to_string(i) : fe;
      auto refs = q.ring_refs();
      if (order == 0) {
        if (int e = xs_.write(dir + "/ring-ref", std::to_string(refs[0]), t)) return e;
      } else {
        for (std::size_t r = 0; r < refs.size(); ++r)
          if (int e = xs_.write(dir + "/ring-ref" + std::to_string(r), std::to_string(refs[r]), t)) return e;
      }
      if (int e = xs_.write(dir + "/event-channel", std::to_string(q.port()), t)) return e;
    }
    std::string_view proto;
    switch (neg_.protocol) {
      case Protocol::Native: proto = blkif::kProtocolNative; break;
      case Protocol::X86_32: proto = blkif::kProtocolX86_32; break;
      case Protocol::X86_64: proto = blkif::kProtocolX86_64; break;
      case Protocol::Omitted: break;
    }
    if (!proto.empty()) {
      if (int e = xs_.write(fe + "/protocol", proto, t)) return e;
    }
    return xs_.write(fe + "/feature-persistent", options_.persistent ? "1" : "0", t);
  });
}

int BlkFront::read_connect_info() {
  const std::string be = neg_.backend_path;
  auto opt_uint = [&](const std::string& key, std::uint64_t def, std::uint64_t max) -> std::uint64_t {
    auto v = xs_.read_uint(be + "/" + key, max);
    return v ? *v : def;
  };
  auto sectors = xs_.read_uint(be + "/sectors");
  if (!sectors) {
    PVBACK_LOG(Error, "blkfront %s: backend has no valid sectors", neg_.frontend_path.c_str());
    return sectors.error() == ENOENT ? EPROTO : sectors.error();
  }
  neg_.sectors = *sectors;
  neg_.info = static_cast<std::uint32_t>(opt_uint("info", 0, UINT32_MAX));
  auto ss = xs_.read_uint(be + "/sector-size", UINT32_MAX);
  if (!ss || *ss < 512 || (*ss & (*ss - 1)) != 0 || *ss > 65536) {
    PVBACK_LOG(Error, "blkfront %s: backend has no valid sector-size", neg_.frontend_path.c_str());
    return EPROTO;
  }
  neg_.sector_size = static_cast<std::uint32_t>(*ss);
  neg_.physical_sector_size = static_cast<std::uint32_t>(opt_uint("physical-sector-size", *ss, UINT32_MAX));
  neg_.flush = opt_uint("feature-flush-cache", 0, 1) == 1;
  neg_.barrier = opt_uint("feature-barrier", 0, 1) == 1;
  neg_.discard = opt_uint("feature-discard", 0, 1) == 1;
  if (neg_.discard) {
    neg_.discard_granularity = static_cast<std::uint32_t>(opt_uint("discard-granularity", 0, UINT32_MAX));
    neg_.discard_alignment = static_cast<std::uint32_t>(opt_uint("discard-alignment", 0, UINT32_MAX));
    neg_.discard_secure = opt_uint("discard-secure", 0, 1) == 1;
  }
  neg_.backend_persistent = opt_uint("feature-persistent", 0, 1) == 1;
  neg_.persistent = options_.persistent && neg_.backend_persistent;
  neg_.backend_max_indirect_segments =
      static_cast<unsigned>(opt_uint("feature-max-indirect-segments", 0, UINT32_MAX));
  const unsigned indirect = std::min({options_.max_indirect_segments, neg_.backend_max_indirect_segments,
                                      static_cast<unsigned>(blkif::kMaxIndirectSegments)});
  neg_.indirect = indirect > blkif::kMaxSegmentsPerRequest;
  neg_.segments_per_request = neg_.indirect ? indirect : blkif::kMaxSegmentsPerRequest;
  const std::uint32_t per_request =
      neg_.segments_per_request + (neg_.indirect ? ceil_div(indirect, blkif::kSegmentsPerIndirectPage) : 0);
  std::uint32_t pool = options_.pool_pages;
  if (pool == 0) pool = std::min<std::uint64_t>(std::uint64_t{neg_.ring_size} * per_request, kDefaultPoolCap);
  neg_.pool_pages = std::max(pool, per_request);
  return 0;
}

int BlkFront::do_attach(const std::string& frontend_path) {
  neg_.frontend_path = frontend_path;
  neg_.protocol = options_.protocol;
  auto xs = xenbus::XenStore::open(platform_.config().xenstore_path());
  if (!xs) {
    PVBACK_LOG(Error, "blkfront: cannot open XenStore: %s", std::strerror(xs.error()));
    return xs.error();
  }
  xs_ = std::move(*xs);
  auto backend = xs_.read(frontend_path + "/backend");
  if (!backend) {
    PVBACK_LOG(Error, "blkfront %s: no backend node: %s", frontend_path.c_str(), std::strerror(backend.error()));
    return backend.error();
  }
  neg_.backend_path = *backend;
  auto backend_id = xs_.read_uint(frontend_path + "/backend-id", 0xffff);
  if (!backend_id) return backend_id.error();
  neg_.backend_id = static_cast<DomId>(*backend_id);
  if (auto vdev = xs_.read_uint(frontend_path + "/virtual-device", UINT32_MAX)) {
    neg_.handle = static_cast<std::uint32_t>(*vdev);
  } else {
    auto slash = frontend_path.rfind('/');
    auto devid = xenbus::parse_uint(std::string_view(frontend_path).substr(slash + 1), UINT32_MAX);
    neg_.handle = devid ? static_cast<std::uint32_t>(*devid) : 0;
  }

  watch_token_ = "blkfront:" + frontend_path;
  if (int e = xs_.watch(neg_.backend_path + "/state", watch_token_)) return e;
  watching_ = true;
  // Initialising: also what asks a backend left Closed by an earlier detach to get ready again.
  if (int e = write_state(XenbusStateInitialising)) return e;

  auto fail = [&](int e, const char* what) {
    PVBACK_LOG(Error, "blkfront %s: %s: %s", frontend_path.c_str(), what, std::strerror(e));
    if (state_ != XenbusStateInitialising) {
      write_state(XenbusStateClosing);
      for (auto& q : queues_) q->teardown();
      write_state(XenbusStateClosed);
    }
    closed_ = true;
    return e;
  };

  if (int e = wait_backend_state({XenbusStateInitWait, XenbusStateConnected}, options_.connect_timeout, false))
    return fail(e, "waiting for the backend's InitWait");

  const std::string be = neg_.backend_path;
  neg_.backend_max_ring_page_order =
      static_cast<unsigned>(xs_.read_uint(be + "/max-ring-page-order", 64).value_or(0));
  neg_.backend_max_queues = static_cast<unsigned>(xs_.read_uint(be + "/multi-queue-max-queues", 65536).value_or(1));
  if (neg_.backend_max_queues == 0) neg_.backend_max_queues = 1;
  neg_.ring_page_order = std::min({options_.max_ring_page_order, neg_.backend_max_ring_page_order, kMaxRingOrder});
  neg_.num_queues = std::max(1u, std::min({options_.max_queues, neg_.backend_max_queues, kMaxQueues}));
  neg_.ring_size = options_.protocol == Protocol::X86_32
                       ? blkif::x86_32::Ring::size_for_order(neg_.ring_page_order)
                       : blkif::x86_64::Ring::size_for_order(neg_.ring_page_order);

  sharer_ = platform_.open_sharer();
  if (!sharer_) return fail(ENOMEM, "opening the grant sharer");
  for (unsigned i = 0; i < neg_.num_queues; ++i) {
    queues_.push_back(std::unique_ptr<Queue>(new Queue(*this, i)));
    if (int e = queues_.back()->setup_ring(*sharer_, platform_, neg_.backend_id, neg_.ring_page_order,
                                           options_.protocol))
      return fail(e, "setting up a ring");
  }
  if (int e = publish_rings()) return fail(e, "writing ring details");
  if (int e = write_state(XenbusStateInitialised)) return fail(e, "switching to Initialised");

  if (int e = wait_backend_state({XenbusStateConnected}, options_.connect_timeout, true))
    return fail(e, "waiting for the backend's Connected");
  if (int e = read_connect_info()) return fail(e, "reading the disk's details");
  for (auto& q : queues_)
    if (int e = q->setup_pool(*sharer_, neg_.backend_id, neg_)) return fail(e, "sharing the data pool");
  if (int e = write_state(XenbusStateConnected)) return fail(e, "switching to Connected");
  connected_ = true;
  PVBACK_LOG(Info,
             "blkfront %s: connected to %s (domain %u): %llu sectors of %u bytes, %u queue(s), ring order %u, "
             "%u segments/request%s, persistent %s, protocol %s",
             frontend_path.c_str(), be.c_str(), neg_.backend_id, static_cast<unsigned long long>(neg_.sectors),
             neg_.sector_size, neg_.num_queues, neg_.ring_page_order, neg_.segments_per_request,
             neg_.indirect ? " (indirect)" : "", neg_.persistent ? "yes" : "no",
             std::string(protocol_name(neg_.protocol)).c_str());
  return 0;
}

int BlkFront::process_xenstore() {
  if (closed_) return ENODEV;
  bool changed = false;
  while (auto ev = xs_.read_watch())
    if (ev->token == watch_token_) changed = true;
  if (!changed) return 0;
  auto v = xs_.read(neg_.backend_path + "/state");
  std::optional<xenbus::State> s;
  if (v) s = xenbus::parse_state(*v);
  if (s) backend_state_ = *s;
  const bool gone = (!v && v.error() == ENOENT) || (s && (*s == XenbusStateClosing || *s == XenbusStateClosed));
  if (gone && connected_) {
    PVBACK_LOG(Notice, "blkfront %s: backend is %s: closing", neg_.frontend_path.c_str(),
               s ? std::string(xenbus::state_name(*s)).c_str() : "gone");
    close_after_unplug();
    return ENODEV;
  }
  // A backend rewrites its state after publishing a new size (online resize), as Linux blkfront's
  // revalidation expects: pick the new size up.
  if (connected_ && s && *s == XenbusStateConnected) {
    if (auto sectors = xs_.read_uint(neg_.backend_path + "/sectors"); sectors && *sectors != neg_.sectors) {
      PVBACK_LOG(Notice, "blkfront %s: disk resized from %llu to %llu sectors", neg_.frontend_path.c_str(),
                 static_cast<unsigned long long>(neg_.sectors), static_cast<unsigned long long>(*sectors));
      neg_.sectors = *sectors;
    }
  }
  return 0;
}

void BlkFront::close_after_unplug() {
  connected_ = false;
  for (auto& q : queues_) q->fail_all(ENODEV);
  write_state(XenbusStateClosing);
  write_state(XenbusStateClosed);
  // As in detach(): end the grants once the backend has let go of them (bounded wait).
  wait_backend_state({XenbusStateClosed}, options_.close_timeout, false);
  for (auto& q : queues_) q->teardown();
  closed_ = true;
}

int BlkFront::wait_any(std::chrono::milliseconds timeout) {
  if (closed_) return ENODEV;
  std::vector<pollfd> fds;
  fds.reserve(queues_.size() + 1);
  fds.push_back({xs_.fd(), POLLIN, 0});
  for (auto& q : queues_) fds.push_back({q->events_->fd(), POLLIN, 0});
  int r = ::poll(fds.data(), fds.size(), static_cast<int>(timeout.count()));
  if (r < 0) return errno;
  if (fds[0].revents & POLLIN) {
    if (int e = process_xenstore()) return e;
  }
  for (std::size_t i = 1; i < fds.size(); ++i)
    if (fds[i].revents & POLLIN) queues_[i - 1]->acknowledge_events();
  return r == 0 ? ETIMEDOUT : 0;
}

int BlkFront::detach() {
  if (closed_) return 0;
  int result = 0;
  connected_ = false;
  for (auto& q : queues_) q->connected_ = false;
  for (auto& q : queues_) q->fail_all(ENODEV);
  if (state_ != XenbusStateInitialising) {
    write_state(XenbusStateClosing);
    result = wait_backend_state({XenbusStateClosing, XenbusStateClosed}, options_.close_timeout, false);
    write_state(XenbusStateClosed);
    // Linux blkback unmaps the rings and (persistent) grants when the frontend is Closed, so the
    // grants are ended only once the backend followed: a backend that still maps a page would
    // make its release leak it (Xen defers it; the simulation cannot).
    if (result == 0)
      result = wait_backend_state({XenbusStateClosed}, options_.close_timeout, false);
    if (result != 0)
      PVBACK_LOG(Warning, "blkfront %s: backend did not close: %s", neg_.frontend_path.c_str(),
                 std::strerror(result));
  }
  for (auto& q : queues_) q->teardown();
  if (state_ != XenbusStateClosed) write_state(XenbusStateClosed);
  closed_ = true;
  return result;
}

int BlkFront::sync_wait(Queue& q, std::uint64_t tag) {
  return q.wait_for(tag, std::max(options_.connect_timeout, std::chrono::milliseconds(30000)));
}

// Sync I/O on queue 0, in pieces no larger than one submit carries.
template <class Byte>
int BlkFront::sync_io(std::uint64_t sector, std::span<Byte> buffer) {
  if (queues_.empty()) return ENODEV;
  Queue& q = *queues_[0];
  std::size_t done = 0;
  while (done < buffer.size()) {
    const std::uint64_t s = sector + done / blkif::kSectorSize;
    std::size_t len = std::min<std::uint64_t>(buffer.size() - done, q.max_request_bytes(s));
    const std::uint32_t align = std::max<std::uint32_t>(neg_.sector_size, blkif::kSectorSize);
    if (len > align) len -= len % align;
    const std::uint64_t tag = sync_tag_++;
    int e;
    if constexpr (std::is_const_v<Byte>) e = q.submit_write(s, buffer.subspan(done, len), tag);
    else e = q.submit_read(s, buffer.subspan(done, len), tag);
    if (e == 0) e = q.kick();
    if (e == 0) e = sync_wait(q, tag);
    if (e != 0) return e;
    done += len;
  }
  return 0;
}

int BlkFront::read(std::uint64_t sector, std::span<std::byte> buffer) { return sync_io(sector, buffer); }

int BlkFront::write(std::uint64_t sector, std::span<const std::byte> buffer) { return sync_io(sector, buffer); }

int BlkFront::flush() {
  if (queues_.empty()) return ENODEV;
  Queue& q = *queues_[0];
  const std::uint64_t tag = sync_tag_++;
  int e = q.submit_flush(tag);
  if (e == 0) e = q.kick();
  return e == 0 ? sync_wait(q, tag) : e;
}

int BlkFront::discard(std::uint64_t sector, std::uint64_t nr_sectors, bool secure) {
  if (queues_.empty()) return ENODEV;
  Queue& q = *queues_[0];
  const std::uint64_t tag = sync_tag_++;
  int e = q.submit_discard(sector, nr_sectors, secure, tag);
  if (e == 0) e = q.kick();
  return e == 0 ? sync_wait(q, tag) : e;
}

}  // namespace pvback::blkfront
