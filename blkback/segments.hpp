// How a request's data segments reach memory the storage can read and write: the three ways of a
// blkif backend behind one interface, so that the queue's path of a request is the same for all.
//
//   Map         every batch maps the grants it needs (one map call for all reads, one for all
//               writes) and unmaps them when the last request using the mapping is answered;
//   Persistent  Map with a cache of grants mapped once and kept (feature-persistent): hits need no
//               hypercall; misses are added to the cache while it has room, or mapped per batch;
//   Copy        bounce pages owned by the queue; one batched grant copy brings every write's data
//               in, one batched grant copy takes every read's data out (no guest page is mapped).
//
// A queue calls, per batch: prepare() once for the requests it took, build_iov() for each request
// still valid, and, as requests finish, copy_back() (reads, when read_done_in_place() is false) and
// release(). State per request lives here, indexed by slot; the Slot carries only what every path
// shares. Used only from the queue's thread.
#pragma once
#include <cstdint>
#include <expected>
#include <memory>
#include <span>

#include "blkback/slot.hpp"
#include "blkback/stats.hpp"
#include "grant/grant_table.hpp"
#include "grant/types.hpp"

namespace pvback::blkback {

struct SegmentPathConfig {
  enum class Way { Map, Persistent, Copy } way = Way::Map;
  const char* name = "";                 // for logs
  DomId frontend_domid = 0;
  std::uint32_t ring_size = 0;           // slots
  std::uint32_t max_segs = 0;            // per request
  std::uint32_t max_persistent_grants = 0;
};

class SegmentPath {
 public:
  static std::expected<std::unique_ptr<SegmentPath>, int> create(const SegmentPathConfig& config,
                                                                 grant::GrantMapper& mapper, QueueStats& stats,
                                                                 RequestFailer& failer);
  virtual ~SegmentPath() = default;  // unmaps everything: only once no I/O is in flight

  // Back-pressure while taking a batch: whether a request of up to max_segs segments still fits
  // when `reserved` pages are promised to requests taken already, and what one request takes.
  virtual bool room_for_one_more(std::size_t reserved) const {
    (void)reserved;
    return true;
  }
  virtual std::uint32_t pages_taken(const Slot&) const { return 0; }

  // Makes the data segments of every valid request of `batch` reachable; a request whose grants
  // cannot be mapped or copied is failed through the failer.
  virtual void prepare(std::span<const std::uint32_t> batch, std::span<Slot> slots) = 0;
  // Fills s.iov for a request prepare() accepted (contiguous pieces merged).
  virtual void build_iov(std::uint32_t idx, Slot& s) = 0;
  // False: a read's data lands in the path's own pages, and copy_back() must take it to the guest
  // before the request is answered.
  virtual bool read_done_in_place() const { return true; }
  virtual void copy_back(std::span<const std::uint32_t> reads, std::span<Slot> slots) {
    (void)reads;
    (void)slots;
  }
  // Gives back what request idx holds (mappings, cache references, bounce pages).
  virtual void release(std::uint32_t idx, Slot& s) = 0;

  // Idle state kept between requests (persistent grants): whether there is any, and dropping what
  // has not been used since `cutoff_ns` (steady clock).
  virtual bool keeps_idle_state() const { return false; }
  virtual void expire(std::int64_t cutoff_ns) { (void)cutoff_ns; }
  // The operator's new max_persistent_grants (Queue::tune): no effect without persistent grants.
  virtual void set_max_persistent(std::uint32_t max) { (void)max; }

 protected:
  // The iovecs of `s`, with page_of(i) the page of segment i.
  template <class PageOf>
  static void fill_iov(Slot& s, PageOf page_of) {
    std::uint32_t k = 0;
    for (std::uint32_t i = 0; i < s.nsegs; ++i) {
      const blkif::Segment& g = s.segs[i];
      std::byte* base = page_of(i) + g.first_sect * blkif::kSectorSize;
      const std::size_t len = (g.last_sect - g.first_sect + 1u) * blkif::kSectorSize;
      if (k != 0 && static_cast<std::byte*>(s.iov[k - 1].iov_base) + s.iov[k - 1].iov_len == base) {
        s.iov[k - 1].iov_len += len;
      } else {
        s.iov[k].iov_base = base;
        s.iov[k].iov_len = len;
        ++k;
      }
    }
    s.iov_count = k;
    s.iov_first = 0;
  }
};

}  // namespace pvback::blkback
