// The persistent-grant cache of one queue: gref -> single-page Mapping (ReadWrite, as Linux maps
// persistent grants), bounded, with LRU order for idle expiry. Everything is preallocated at
// construction: lookups, inserts and removals never allocate. Single-threaded (the queue's thread).
#pragma once
#include <cstdint>
#include <vector>

#include "grant/grant_table.hpp"
#include "grant/types.hpp"

namespace pvback::blkback {

class PersistentGrants {
 public:
  static constexpr std::int32_t kNone = -1;

  struct Entry {
    GrantRef gref = 0;
    grant::Mapping mapping;
    std::uint32_t users = 0;      // in-flight segments using it: never evicted while > 0
    std::int64_t last_use = 0;    // steady clock, ns
    std::int32_t prev = kNone;    // LRU list, head = least recently used
    std::int32_t next = kNone;
  };

  explicit PersistentGrants(std::uint32_t capacity);

  std::uint32_t capacity() const { return capacity_; }
  std::uint32_t size() const { return size_; }
  bool full() const { return size_ >= capacity_; }

  // Index of the entry for `gref`, or kNone.
  std::int32_t find(GrantRef gref) const;
  // Adds a new entry (precondition: !full() and find(gref) == kNone); returns its index.
  std::int32_t insert(GrantRef gref, grant::Mapping mapping, std::int64_t now);
  Entry& at(std::int32_t index) { return entries_[static_cast<std::uint32_t>(index)]; }
  // Marks the entry used now: moves it to the LRU tail.
  void touch(std::int32_t index, std::int64_t now);
  // Unmaps every entry unused since `cutoff` and not in use; returns how many were removed.
  std::uint32_t expire(std::int64_t cutoff);
  // The operator's new bound: growing allocates room for it (once, off the I/O path), shrinking
  // unmaps the least recently used entries not in use until the size fits; those in use go at the
  // next expire() once idle. Returns how many were unmapped now.
  std::uint32_t set_capacity(std::uint32_t capacity);
  // Unmaps everything (entries in use included: call only when no I/O is in flight).
  void clear();

 private:
  std::uint32_t home(GrantRef gref) const { return (gref * 0x9E3779B1u) >> shift_; }
  void table_erase(GrantRef gref);
  void lru_unlink(std::int32_t index);
  void lru_append(std::int32_t index);
  void remove(std::int32_t index);
  // Unmaps idle entries, least recently used first, while more than capacity_ are kept.
  std::uint32_t trim();
  // Unmaps the entries not in use from the least recently used on, while go(entry) holds.
  template <class Go>
  std::uint32_t remove_idle_while(Go go);
  void size_table(std::uint32_t capacity);

  std::uint32_t capacity_;
  std::uint32_t size_ = 0;
  std::vector<Entry> entries_;
  std::vector<std::int32_t> free_;
  std::vector<std::int32_t> table_;  // open addressing, linear probing, entry index or kNone
  std::uint32_t mask_ = 0;
  unsigned shift_ = 0;
  std::int32_t head_ = kNone;
  std::int32_t tail_ = kNone;
};

}  // namespace pvback::blkback
