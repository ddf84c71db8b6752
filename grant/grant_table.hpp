// Narrow interface to grant tables, with a real-Xen and a simulated implementation.
//
// Backend side: GrantMapper maps another domain's grant refs into this process and copies
// through grant refs. Frontend side: GrantSharer shares pages of this domain with another one.
// Code above this layer cannot tell which implementation it has (see grant/platform.hpp).
#pragma once
#include <cerrno>
#include <cstdint>
#include <expected>
#include <span>
#include <utility>
#include <vector>

// libxengnttab 4.17 has no extern "C" guard of its own.
extern "C" {
#include <xengnttab.h>
}
#include <xen/grant_table.h>

#include "grant/types.hpp"

namespace pvback::grant {

class GrantMapper;
class GrantSharer;

// A batch of foreign grants mapped into this process: `pages()` pages, contiguous in virtual
// memory, page i backed by refs[i]. Unmapped on destruction. Must not outlive its GrantMapper.
class Mapping {
 public:
  Mapping() = default;
  Mapping(const Mapping&) = delete;
  Mapping& operator=(const Mapping&) = delete;
  Mapping(Mapping&& other) noexcept { *this = std::move(other); }
  Mapping& operator=(Mapping&& other) noexcept;
  ~Mapping() { reset(); }

  void* data() const { return addr_; }
  std::byte* page(std::uint32_t i) const { return static_cast<std::byte*>(addr_) + i * kXenPageSize; }
  std::uint32_t pages() const { return count_; }
  explicit operator bool() const { return addr_ != nullptr; }
  void reset() noexcept;

 private:
  friend class GrantMapper;
  Mapping(GrantMapper* owner, void* addr, std::uint32_t count) : owner_(owner), addr_(addr), count_(count) {}
  GrantMapper* owner_ = nullptr;
  void* addr_ = nullptr;
  std::uint32_t count_ = 0;
};

// One grant-copy segment, exactly libxengnttab's type so the Xen implementation passes batches
// through untouched. flags: GNTCOPY_source_gref and/or GNTCOPY_dest_gref; status: GNTST_*.
using CopySegment = xengnttab_grant_copy_segment_t;

class GrantMapper {
 public:
  virtual ~GrantMapper() = default;

  // Maps all `refs` of `domid` or none: on any failure nothing stays mapped and the error is an
  // errno value (EINVAL bad ref, EPERM permission/wrong domain/read-only grant, ENOMEM, ...).
  virtual std::expected<Mapping, int> map(DomId domid, std::span<const GrantRef> refs, Access access) = 0;

  // Performs every segment; each segment's `status` receives GNTST_okay or a GNTST_* error.
  // Returns 0, or an errno value if the batch as a whole could not be issued.
  virtual int copy(std::span<CopySegment> segments) = 0;

 protected:
  Mapping make_mapping(void* addr, std::uint32_t count) { return Mapping(this, addr, count); }
  virtual void unmap(void* addr, std::uint32_t count) noexcept = 0;
  friend class Mapping;
};

inline Mapping& Mapping::operator=(Mapping&& other) noexcept {
  if (this != &other) {
    reset();
    owner_ = std::exchange(other.owner_, nullptr);
    addr_ = std::exchange(other.addr_, nullptr);
    count_ = std::exchange(other.count_, 0);
  }
  return *this;
}

inline void Mapping::reset() noexcept {
  if (addr_ != nullptr) owner_->unmap(addr_, count_);
  owner_ = nullptr;
  addr_ = nullptr;
  count_ = 0;
}

// Pages of this domain shared with a peer domain: `refs()[i]` grants page i of `data()`.
// Access is ended and the pages freed on destruction. Must not outlive its GrantSharer.
class SharedPages {
 public:
  SharedPages() = default;
  SharedPages(const SharedPages&) = delete;
  SharedPages& operator=(const SharedPages&) = delete;
  SharedPages(SharedPages&& other) noexcept { *this = std::move(other); }
  SharedPages& operator=(SharedPages&& other) noexcept;
  ~SharedPages() { reset(); }

  void* data() const { return addr_; }
  std::byte* page(std::uint32_t i) const { return static_cast<std::byte*>(addr_) + i * kXenPageSize; }
  std::uint32_t pages() const { return static_cast<std::uint32_t>(refs_.size()); }
  std::span<const GrantRef> refs() const { return refs_; }
  explicit operator bool() const { return addr_ != nullptr; }
  void reset() noexcept;

 private:
  friend class GrantSharer;
  SharedPages(GrantSharer* owner, void* addr, std::vector<GrantRef> refs)
      : owner_(owner), addr_(addr), refs_(std::move(refs)) {}
  GrantSharer* owner_ = nullptr;
  void* addr_ = nullptr;
  std::vector<GrantRef> refs_;
};

class GrantSharer {
 public:
  virtual ~GrantSharer() = default;
  // Allocates `count` zeroed pages, contiguous in this process, each granted to `peer`.
  virtual std::expected<SharedPages, int> share(DomId peer, std::uint32_t count, Access access) = 0;

 protected:
  SharedPages make_shared_pages(void* addr, std::vector<GrantRef> refs) {
    return SharedPages(this, addr, std::move(refs));
  }
  // Ends foreign access (the peer keeps any mapping it still holds, as on Xen) and frees the pages.
  virtual void unshare(void* addr, std::span<const GrantRef> refs) noexcept = 0;
  friend class SharedPages;
};

inline SharedPages& SharedPages::operator=(SharedPages&& other) noexcept {
  if (this != &other) {
    reset();
    owner_ = std::exchange(other.owner_, nullptr);
    addr_ = std::exchange(other.addr_, nullptr);
    refs_ = std::move(other.refs_);
    other.refs_.clear();
  }
  return *this;
}

inline void SharedPages::reset() noexcept {
  if (addr_ != nullptr) owner_->unshare(addr_, refs_);
  owner_ = nullptr;
  addr_ = nullptr;
  refs_.clear();
}

}  // namespace pvback::grant
