// Xen shared I/O rings (the protocol of xen/io/ring.h), as typed C++ templates.
//
// A shared ring is one contiguous area of 2^order Xen pages: a 64-byte header holding the four
// shared indices, then an array of entries, each large enough for a request or a response.
// Indices are free-running 32-bit counters; unsigned wrap-around at 2^32 is part of the protocol,
// so every comparison below is done on differences, never on the raw values.
//
// The other end is untrusted. Three rules follow, and this header makes them the easy path:
//  - entries are copied out of shared memory exactly once (copy_request/next_request); the caller
//    validates and uses only the copy, never the shared slot (XSA-155, double fetch);
//  - the producer index written by the other end is checked before it is used: an index claiming
//    more outstanding requests than the ring holds means the peer is broken or malicious and the
//    device must be disconnected rather than looped over (XSA-39); unconsumed_requests() and
//    final_check_for_requests() return kErrProducerOverflow (EPROTO) for that;
//  - responses are written as whole, fully initialised objects (the wire types have no implicit
//    padding, see blkif.hpp/netif.hpp), so nothing of ours leaks into the guest (XSA-216).
#pragma once
#include <algorithm>
#include <atomic>
#include <bit>
#include <cerrno>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <expected>
#include <type_traits>

#include "grant/types.hpp"

namespace pvback::ring {

using RingIdx = std::uint32_t;

// Byte offsets of the shared header fields (identical for every ring type and ABI).
struct SharedRingHeader {
  RingIdx req_prod;
  RingIdx req_event;
  RingIdx rsp_prod;
  RingIdx rsp_event;
  std::uint8_t pvt[4];  // netif smartpoll / tapif; unused by us, zeroed at init
  std::uint8_t pad[44];
};
static_assert(sizeof(SharedRingHeader) == 64);
inline constexpr std::size_t kSharedRingHeaderSize = sizeof(SharedRingHeader);

// Errors are errno values, as in the grant layer, so callers handle every layer alike.
// The peer's producer index claims more outstanding entries than the ring can hold: the peer is
// broken or malicious, disconnect the device.
inline constexpr int kErrProducerOverflow = EPROTO;
// attach/initialise was given no memory, or too little for a single entry.
inline constexpr int kErrInvalidArea = EINVAL;

// Largest power of two <= x (0 for 0): what __RD32 computes.
constexpr RingIdx round_down_pow2(std::size_t x) {
  if (x == 0) return 0;
  if (x > 0xffffffffu) x = 0xffffffffu;
  return std::bit_floor(static_cast<RingIdx>(x));
}

// The union of a request and a response, the unit of the ring array. Computed rather than
// declared as a union so that wire types may carry default member initialisers.
template <class Req, class Rsp>
inline constexpr std::size_t kEntrySize = [] {
  constexpr std::size_t size = std::max(sizeof(Req), sizeof(Rsp));
  constexpr std::size_t align = std::max(alignof(Req), alignof(Rsp));
  return (size + align - 1) / align * align;
}();

// Entries in a ring occupying `bytes` of shared memory (__RING_SIZE / __CONST_RING_SIZE).
template <class Req, class Rsp>
constexpr RingIdx ring_size_for_bytes(std::size_t bytes) {
  if (bytes < kSharedRingHeaderSize) return 0;
  return round_down_pow2((bytes - kSharedRingHeaderSize) / kEntrySize<Req, Rsp>);
}

template <class Req, class Rsp>
constexpr RingIdx ring_size_for_pages(std::size_t pages) {
  return ring_size_for_bytes<Req, Rsp>(pages * kXenPageSize);
}

template <class Req, class Rsp>
constexpr RingIdx ring_size_for_order(unsigned order) {
  return ring_size_for_pages<Req, Rsp>(std::size_t{1} << order);
}

namespace detail {

// Upper bound on a shared area we accept, far above any negotiated ring-page-order.
inline constexpr std::size_t kMaxRingPages = 1u << 16;

template <class T>
concept WireType = std::is_trivially_copyable_v<T> && std::is_standard_layout_v<T>;

// Copies an entry out of shared memory. The empty asm tells the compiler that `out` may have been
// changed behind its back and that it escaped, so every later use must read the private copy:
// the compiler can neither skip the copy nor re-read shared memory in its place.
template <WireType T>
inline T copy_from_shared(const std::byte* src) noexcept {
  T out;
  std::memcpy(&out, src, sizeof(T));
  __asm__ __volatile__("" : : "r"(&out) : "memory");
  return out;
}

template <WireType T>
inline void copy_to_shared(std::byte* dst, const T& value) noexcept {
  std::memcpy(dst, &value, sizeof(T));
}

// The shared indices live in memory the peer writes concurrently: every access is atomic.
inline std::atomic_ref<RingIdx> shared_index(std::byte* base, std::size_t offset) noexcept {
  return std::atomic_ref<RingIdx>(*reinterpret_cast<RingIdx*>(base + offset));
}

inline constexpr std::size_t kReqProd = offsetof(SharedRingHeader, req_prod);
inline constexpr std::size_t kReqEvent = offsetof(SharedRingHeader, req_event);
inline constexpr std::size_t kRspProd = offsetof(SharedRingHeader, rsp_prod);
inline constexpr std::size_t kRspEvent = offsetof(SharedRingHeader, rsp_event);

// State common to both ends: the shared area and the entry geometry.
template <class Req, class Rsp>
class RingBase {
 public:
  static constexpr std::size_t kEntryBytes = kEntrySize<Req, Rsp>;

  RingIdx size() const noexcept { return size_; }
  std::byte* area() const noexcept { return base_; }
  explicit operator bool() const noexcept { return base_ != nullptr; }

  // Shared index snapshots (acquire: entries published before the index are visible after it).
  RingIdx shared_req_prod() const noexcept { return index(kReqProd).load(std::memory_order_acquire); }
  RingIdx shared_rsp_prod() const noexcept { return index(kRspProd).load(std::memory_order_acquire); }
  RingIdx shared_req_event() const noexcept { return index(kReqEvent).load(std::memory_order_relaxed); }
  RingIdx shared_rsp_event() const noexcept { return index(kRspEvent).load(std::memory_order_relaxed); }

 protected:
  RingBase() = default;
  RingBase(std::byte* base, RingIdx size) noexcept : base_(base), size_(size) {}

  static std::expected<RingIdx, int> checked_size(const void* area, std::size_t pages) noexcept {
    if (area == nullptr || pages == 0 || pages > kMaxRingPages) return std::unexpected(kErrInvalidArea);
    RingIdx size = ring_size_for_pages<Req, Rsp>(pages);
    if (size == 0) return std::unexpected(kErrInvalidArea);
    return size;
  }

  std::atomic_ref<RingIdx> index(std::size_t offset) const noexcept { return shared_index(base_, offset); }
  std::byte* slot(RingIdx idx) const noexcept {
    return base_ + kSharedRingHeaderSize + std::size_t{idx & (size_ - 1)} * kEntryBytes;
  }

  // Producer side of the event-index protocol: publish `new_prod`, then tell whether the peer
  // asked to be woken for any index in (old_prod, new_prod].
  bool publish_and_check_notify(std::size_t prod_offset, std::size_t event_offset, RingIdx new_prod) noexcept {
    RingIdx old_prod = index(prod_offset).load(std::memory_order_relaxed);
    index(prod_offset).store(new_prod, std::memory_order_release);  // entries before index
    // The peer stores its event index and then re-reads our producer index (final_check_*):
    // a full fence on both sides guarantees one of us sees the other's store.
    std::atomic_thread_fence(std::memory_order_seq_cst);
    RingIdx event = index(event_offset).load(std::memory_order_relaxed);
    return static_cast<RingIdx>(new_prod - event) < static_cast<RingIdx>(new_prod - old_prod);
  }

  // Consumer side of the event-index protocol (RING_FINAL_CHECK_FOR_*): if nothing is pending,
  // ask to be woken at the next entry and re-check, so an entry published concurrently is not
  // missed. `count_pending` is the end's own checked count of unconsumed entries.
  template <class CountPending>
  std::expected<bool, int> final_check(std::size_t event_offset, RingIdx cons, CountPending count_pending) noexcept {
    auto pending = count_pending();
    if (!pending) return std::unexpected(pending.error());
    if (*pending != 0) return true;
    index(event_offset).store(cons + 1, std::memory_order_relaxed);
    std::atomic_thread_fence(std::memory_order_seq_cst);
    pending = count_pending();
    if (!pending) return std::unexpected(pending.error());
    return *pending != 0;
  }

  std::byte* base_ = nullptr;
  RingIdx size_ = 0;
};

}  // namespace detail

// The backend's end: consumes requests, produces responses.
template <detail::WireType Req, detail::WireType Rsp>
class BackRing : public detail::RingBase<Req, Rsp> {
  using Base = detail::RingBase<Req, Rsp>;
  using Base::index;
  using Base::slot;

 public:
  using Request = Req;
  using Response = Rsp;

  BackRing() = default;

  // Attaches to a shared ring the frontend initialised: `pages` contiguous Xen pages at `area`.
  // `start` is where both private indices begin (0 for a fresh ring; BACK_RING_ATTACH's _i).
  static std::expected<BackRing, int> attach(void* area, std::size_t pages, RingIdx start = 0) noexcept {
    auto size = Base::checked_size(area, pages);
    if (!size) return std::unexpected(size.error());
    return BackRing(static_cast<std::byte*>(area), *size, start);
  }

  // Attaches where the shared ring's responses stand (BACK_RING_ATTACH(..., sring->rsp_prod)):
  // requests the frontend published after the last response are consumed again. A backend that
  // restarts (or reconnects to a ring a frontend kept) under a frontend that stayed Connected must
  // not start at 0, which would replay or skip 2^32-wrapped history. A fresh ring has rsp_prod 0,
  // so this is attach(area, pages) there. The frontend owns rsp_prod's memory: a hostile value
  // leaves req_prod - rsp_prod impossible, which unconsumed_requests()/requests_overflow() catch.
  static std::expected<BackRing, int> attach_at_rsp_prod(void* area, std::size_t pages) noexcept {
    auto size = Base::checked_size(area, pages);
    if (!size) return std::unexpected(size.error());
    auto* base = static_cast<std::byte*>(area);
    const RingIdx start = detail::shared_index(base, detail::kRspProd).load(std::memory_order_acquire);
    return BackRing(base, *size, start);
  }

  // Attaches with both private indices given (a backend resuming from its own record of the
  // ring: requests before req_cons were taken, responses from rsp_prod_pvt on are still to come).
  // EINVAL if they cannot both be true of one ring.
  static std::expected<BackRing, int> attach_resume(void* area, std::size_t pages, RingIdx req_cons,
                                                    RingIdx rsp_prod_pvt) noexcept {
    auto size = Base::checked_size(area, pages);
    if (!size) return std::unexpected(size.error());
    if (static_cast<RingIdx>(req_cons - rsp_prod_pvt) > *size) return std::unexpected(EINVAL);
    BackRing r(static_cast<std::byte*>(area), *size, rsp_prod_pvt);
    r.req_cons_ = req_cons;
    return r;
  }

  RingIdx req_cons() const noexcept { return req_cons_; }
  RingIdx rsp_prod_pvt() const noexcept { return rsp_prod_pvt_; }
  // The req_prod that unconsumed_requests() last refused as impossible (kErrProducerOverflow):
  // the value it judged, which the shared page may no longer hold.
  RingIdx refused_req_prod() const noexcept { return refused_req_prod_; }

  // True if the frontend's req_prod is impossible: it claims more requests awaiting a response
  // than the ring holds (RING_REQUEST_PROD_OVERFLOW). Also catches req_prod moving backwards.
  bool requests_overflow(RingIdx req_prod) const noexcept {
    return static_cast<RingIdx>(req_prod - rsp_prod_pvt_) > this->size_;
  }
  bool requests_overflow() const noexcept { return requests_overflow(this->shared_req_prod()); }

  // Requests published and not yet consumed, or kErrProducerOverflow (disconnect the device).
  // req_prod behind req_cons (but not behind rsp_prod_pvt) has moved backwards too: without
  // the second check prod - req_cons would count ~2^32 requests.
  std::expected<RingIdx, int> unconsumed_requests() const noexcept {
    RingIdx prod = this->shared_req_prod();
    if (requests_overflow(prod) ||
        static_cast<RingIdx>(prod - req_cons_) > static_cast<RingIdx>(prod - rsp_prod_pvt_)) {
      refused_req_prod_ = prod;  // the value judged, for the error message (the guest may move it)
      return std::unexpected(kErrProducerOverflow);
    }
    return static_cast<RingIdx>(prod - req_cons_);
  }

  // Would consuming index `cons` exceed the slots we have not answered yet? A loop that consumes
  // requests stops here so that it never reads a slot it has not answered
  // (RING_REQUEST_CONS_OVERFLOW).
  bool request_cons_overflow(RingIdx cons) const noexcept {
    return static_cast<RingIdx>(cons - rsp_prod_pvt_) >= this->size_;
  }

  // Copies the request at `idx` out of shared memory, once. Validate and use only the copy.
  template <detail::WireType T = Req>
  T copy_request(RingIdx idx) const noexcept {
    static_assert(sizeof(T) <= Base::kEntryBytes);
    return detail::copy_from_shared<T>(slot(idx));
  }

  // Copies the request at req_cons and consumes it. Precondition: unconsumed_requests() > 0.
  template <detail::WireType T = Req>
  T next_request() noexcept {
    return copy_request<T>(req_cons_++);
  }
  void skip_requests(RingIdx count) noexcept { req_cons_ += count; }

  // Writes a response into the slot at rsp_prod_pvt (not yet visible to the frontend).
  template <detail::WireType T = Rsp>
  void put_response(const T& response) noexcept {
    static_assert(sizeof(T) <= Base::kEntryBytes);
    detail::copy_to_shared(slot(rsp_prod_pvt_++), response);
  }

  // Makes the responses written so far visible (RING_PUSH_RESPONSES).
  void push_responses() noexcept { index(detail::kRspProd).store(rsp_prod_pvt_, std::memory_order_release); }

  // Publishes responses; true if the frontend must be notified (RING_PUSH_RESPONSES_AND_CHECK_NOTIFY).
  [[nodiscard]] bool push_responses_and_check_notify() noexcept {
    return this->publish_and_check_notify(detail::kRspProd, detail::kRspEvent, rsp_prod_pvt_);
  }

  // Before going idle: if nothing is pending, ask for a notification at the next request and
  // re-check, so a request published concurrently is not missed (RING_FINAL_CHECK_FOR_REQUESTS).
  // true: more work; false: sleep until notified; error: disconnect.
  [[nodiscard]] std::expected<bool, int> final_check_for_requests() noexcept {
    return this->final_check(detail::kReqEvent, req_cons_, [this] { return unconsumed_requests(); });
  }

 private:
  BackRing(std::byte* base, RingIdx size, RingIdx start) noexcept
      : Base(base, size), rsp_prod_pvt_(start), req_cons_(start) {}

  RingIdx rsp_prod_pvt_ = 0;
  RingIdx req_cons_ = 0;
  mutable RingIdx refused_req_prod_ = 0;
};

// The frontend's end: produces requests, consumes responses. Used by our userspace frontends and
// tests; it checks the backend's rsp_prod the same way the backend checks req_prod.
template <detail::WireType Req, detail::WireType Rsp>
class FrontRing : public detail::RingBase<Req, Rsp> {
  using Base = detail::RingBase<Req, Rsp>;
  using Base::index;
  using Base::slot;

 public:
  using Request = Req;
  using Response = Rsp;

  FrontRing() = default;

  // Initialises the shared header (SHARED_RING_INIT) and attaches. `start` lets tests begin with
  // indices just below 2^32; real frontends use 0.
  static std::expected<FrontRing, int> initialise(void* area, std::size_t pages, RingIdx start = 0) noexcept {
    auto size = Base::checked_size(area, pages);
    if (!size) return std::unexpected(size.error());
    auto* base = static_cast<std::byte*>(area);
    std::memset(base + offsetof(SharedRingHeader, pvt), 0, sizeof(SharedRingHeader::pvt) + sizeof(SharedRingHeader::pad));
    detail::shared_index(base, detail::kReqEvent).store(start + 1, std::memory_order_relaxed);
    detail::shared_index(base, detail::kRspEvent).store(start + 1, std::memory_order_relaxed);
    detail::shared_index(base, detail::kReqProd).store(start, std::memory_order_relaxed);
    detail::shared_index(base, detail::kRspProd).store(start, std::memory_order_release);
    return FrontRing(base, *size, start);
  }

  // Attaches to an already initialised ring (FRONT_RING_ATTACH).
  static std::expected<FrontRing, int> attach(void* area, std::size_t pages, RingIdx start = 0) noexcept {
    auto size = Base::checked_size(area, pages);
    if (!size) return std::unexpected(size.error());
    return FrontRing(static_cast<std::byte*>(area), *size, start);
  }

  RingIdx req_prod_pvt() const noexcept { return req_prod_pvt_; }
  RingIdx rsp_cons() const noexcept { return rsp_cons_; }

  RingIdx free_requests() const noexcept { return this->size_ - (req_prod_pvt_ - rsp_cons_); }
  bool full() const noexcept { return free_requests() == 0; }

  // Writes a request into the slot at req_prod_pvt (not yet visible). Precondition: !full().
  template <detail::WireType T = Req>
  void put_request(const T& request) noexcept {
    static_assert(sizeof(T) <= Base::kEntryBytes);
    detail::copy_to_shared(slot(req_prod_pvt_++), request);
  }

  void push_requests() noexcept { index(detail::kReqProd).store(req_prod_pvt_, std::memory_order_release); }

  [[nodiscard]] bool push_requests_and_check_notify() noexcept {
    return this->publish_and_check_notify(detail::kReqProd, detail::kReqEvent, req_prod_pvt_);
  }

  // True if the backend's rsp_prod is impossible (RING_RESPONSE_PROD_OVERFLOW).
  bool responses_overflow(RingIdx rsp_prod) const noexcept {
    return static_cast<RingIdx>(rsp_prod - rsp_cons_) > this->size_;
  }

  std::expected<RingIdx, int> unconsumed_responses() const noexcept {
    RingIdx prod = this->shared_rsp_prod();
    if (responses_overflow(prod)) return std::unexpected(kErrProducerOverflow);
    return static_cast<RingIdx>(prod - rsp_cons_);
  }

  template <detail::WireType T = Rsp>
  T copy_response(RingIdx idx) const noexcept {
    static_assert(sizeof(T) <= Base::kEntryBytes);
    return detail::copy_from_shared<T>(slot(idx));
  }

  template <detail::WireType T = Rsp>
  T next_response() noexcept {
    return copy_response<T>(rsp_cons_++);
  }

  [[nodiscard]] std::expected<bool, int> final_check_for_responses() noexcept {
    return this->final_check(detail::kRspEvent, rsp_cons_, [this] { return unconsumed_responses(); });
  }

 private:
  FrontRing(std::byte* base, RingIdx size, RingIdx start) noexcept
      : Base(base, size), req_prod_pvt_(start), rsp_cons_(start) {}

  RingIdx req_prod_pvt_ = 0;
  RingIdx rsp_cons_ = 0;
};

// Both ends' types for one protocol, e.g. `using TxRing = RingTypes<TxRequest, TxResponse>`.
template <detail::WireType Req, detail::WireType Rsp>
struct RingTypes {
  using Request = Req;
  using Response = Rsp;
  using Back = BackRing<Req, Rsp>;
  using Front = FrontRing<Req, Rsp>;
  static constexpr std::size_t kEntryBytes = kEntrySize<Req, Rsp>;
  static constexpr RingIdx size_for_order(unsigned order) { return ring_size_for_order<Req, Rsp>(order); }
};

}  // namespace pvback::ring
