#include "blkback/persistent_grants.hpp"

#include <algorithm>
#include <bit>

namespace pvback::blkback {

PersistentGrants::PersistentGrants(std::uint32_t capacity) : capacity_(capacity) {
  entries_.resize(capacity);
  free_.reserve(capacity);
  for (std::uint32_t i = capacity; i > 0; --i) free_.push_back(static_cast<std::int32_t>(i - 1));
  size_table(capacity);
}

void PersistentGrants::size_table(std::uint32_t capacity) {
  const std::uint32_t slots = std::bit_ceil(std::max<std::uint32_t>(16, capacity * 2));
  table_.assign(slots, kNone);
  mask_ = slots - 1;
  shift_ = 32 - static_cast<unsigned>(std::countr_zero(slots));
}

std::uint32_t PersistentGrants::set_capacity(std::uint32_t capacity) {
  if (capacity > entries_.size()) {
    const auto old = static_cast<std::uint32_t>(entries_.size());
    entries_.resize(capacity);  // indices stay valid: the free list and the LRU links hold indices
    free_.reserve(capacity);  // remove() never allocates on the I/O path
    for (std::uint32_t i = capacity; i > old; --i) free_.push_back(static_cast<std::int32_t>(i - 1));
    if (capacity * 2 > table_.size()) {
      size_table(capacity);
      for (std::int32_t e = head_; e != kNone; e = at(e).next) {
        std::uint32_t i = home(at(e).gref);
        while (table_[i] != kNone) i = (i + 1) & mask_;
        table_[i] = e;
      }
    }
  }
  capacity_ = capacity;
  return trim();
}

template <class Go>
std::uint32_t PersistentGrants::remove_idle_while(Go go) {
  std::uint32_t removed = 0;
  for (std::int32_t e = head_; e != kNone && go(at(e));) {
    const std::int32_t next = at(e).next;
    if (at(e).users == 0) {
      remove(e);
      ++removed;
    }
    e = next;
  }
  return removed;
}

std::uint32_t PersistentGrants::trim() {
  return remove_idle_while([this](const Entry&) { return size_ > capacity_; });
}

std::int32_t PersistentGrants::find(GrantRef gref) const {
  if (size_ == 0) return kNone;
  for (std::uint32_t i = home(gref);; i = (i + 1) & mask_) {
    const std::int32_t e = table_[i];
    if (e == kNone) return kNone;
    if (entries_[static_cast<std::uint32_t>(e)].gref == gref) return e;
  }
}

std::int32_t PersistentGrants::insert(GrantRef gref, grant::Mapping mapping, std::int64_t now) {
  const std::int32_t e = free_.back();
  free_.pop_back();
  Entry& entry = at(e);
  entry.gref = gref;
  entry.mapping = std::move(mapping);
  entry.users = 0;
  entry.last_use = now;
  lru_append(e);
  std::uint32_t i = home(gref);
  while (table_[i] != kNone) i = (i + 1) & mask_;
  table_[i] = e;
  ++size_;
  return e;
}

void PersistentGrants::touch(std::int32_t index, std::int64_t now) {
  at(index).last_use = now;
  if (tail_ == index) return;
  lru_unlink(index);
  lru_append(index);
}

std::uint32_t PersistentGrants::expire(std::int64_t cutoff) {
  const std::uint32_t over = trim();  // entries in use when the bound shrank
  return over + remove_idle_while([cutoff](const Entry& entry) { return entry.last_use < cutoff; });
}

void PersistentGrants::clear() {
  while (head_ != kNone) remove(head_);
}

void PersistentGrants::remove(std::int32_t index) {
  Entry& entry = at(index);
  table_erase(entry.gref);
  lru_unlink(index);
  entry.mapping.reset();
  entry.users = 0;
  free_.push_back(index);
  --size_;
}

// Backward-shift deletion keeps every probe sequence intact without tombstones.
void PersistentGrants::table_erase(GrantRef gref) {
  std::uint32_t i = home(gref);
  while (entries_[static_cast<std::uint32_t>(table_[i])].gref != gref) i = (i + 1) & mask_;
  std::uint32_t j = i;
  for (;;) {
    j = (j + 1) & mask_;
    if (table_[j] == kNone) break;
    const std::uint32_t k = home(entries_[static_cast<std::uint32_t>(table_[j])].gref);
    // Move table_[j] into the hole at i unless its home lies cyclically in (i, j].
    const bool k_in_range = i <= j ? (i < k && k <= j) : (i < k || k <= j);
    if (!k_in_range) {
      table_[i] = table_[j];
      i = j;
    }
  }
  table_[i] = kNone;
}

void PersistentGrants::lru_unlink(std::int32_t index) {
  Entry& entry = at(index);
  if (entry.prev != kNone) at(entry.prev).next = entry.next; else head_ = entry.next;
  if (entry.next != kNone) at(entry.next).prev = entry.prev; else tail_ = entry.prev;
  entry.prev = entry.next = kNone;
}

void PersistentGrants::lru_append(std::int32_t index) {
  Entry& entry = at(index);
  entry.prev = tail_;
  entry.next = kNone;
  if (tail_ != kNone) at(tail_).next = index; else head_ = index;
  tail_ = index;
}

}  // namespace pvback::blkback
