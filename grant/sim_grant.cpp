// GrantMapper and GrantSharer for the simulated hypervisor (sim/domains/): grant tables and
// guest memory are memfds shared by all processes; permissions are enforced here, as Xen does.
#include <signal.h>
#include <sys/mman.h>
#include <unistd.h>

#include <atomic>
#include <bit>
#include <cstddef>
#include <cerrno>
#include <cstring>
#include <map>
#include <memory>
#include <mutex>
#include <system_error>
#include <thread>
#include <vector>

#include "base/log.hpp"
#include "grant/implementations.hpp"
#include "grant/sim_control.hpp"
#include "grant/sim_layout.hpp"

namespace pvback::grant {
namespace {

namespace proto = sim_protocol;

static_assert(sizeof(grant_entry_v1_t) == 8 && offsetof(grant_entry_v1_t, flags) == 0 &&
                  offsetof(grant_entry_v1_t, domid) == 2 && offsetof(grant_entry_v1_t, frame) == 4,
              "grant entries are accessed as two 32-bit words: flags|domid<<16, frame");
static_assert(std::endian::native == std::endian::little);

constexpr std::uint32_t kInUse = GTF_reading | GTF_writing;

// A grant table seen as 32-bit words, so flags and domid change together atomically, as the
// guest's and Xen's cmpxchg on the entry do.
struct GrantTableView {
  std::uint32_t* words = nullptr;
  std::atomic_ref<std::uint32_t> header(GrantRef ref) const { return std::atomic_ref<std::uint32_t>(words[2 * ref]); }
  std::atomic_ref<std::uint32_t> frame(GrantRef ref) const { return std::atomic_ref<std::uint32_t>(words[2 * ref + 1]); }
};

void* map_shared(int fd, std::size_t bytes, int prot, const char* what) {
  void* p = ::mmap(nullptr, bytes, prot, MAP_SHARED, fd, 0);
  if (p == MAP_FAILED) throw std::system_error(errno, std::generic_category(), what);
  return p;
}

// A domain as a mapper sees it: its grant table, the hypervisor's pin words and its memory.
struct ForeignDomain {
  DomId domid = 0;
  UniqueFd memory_fd;
  std::uint64_t frames = 0;
  GrantTableView table;
  void* status = nullptr;
  std::uint32_t* pins = nullptr;
  std::uint32_t* holders = nullptr;  // pid holding each entry's pin lock, 0: none or not yet known
  std::uint32_t self_pid = 0;
  std::byte* memory = nullptr;  // whole guest memory, for grant copy
  std::uint64_t memory_bytes = 0;

  ForeignDomain() = default;
  ForeignDomain(const ForeignDomain&) = delete;
  ForeignDomain& operator=(const ForeignDomain&) = delete;
  ~ForeignDomain() {
    if (table.words != nullptr) ::munmap(table.words, proto::kGrantEntries * sizeof(grant_entry_v1_t));
    if (status != nullptr) ::munmap(status, proto::kStatusBytes);
    if (memory != nullptr) ::munmap(memory, memory_bytes);
  }

  bool alive() const {
    return std::atomic_ref<std::uint32_t>(static_cast<proto::DomainStatus*>(status)->alive).load(
               std::memory_order_acquire) != 0;
  }

  std::atomic_ref<std::uint32_t> pin_word(GrantRef ref) const { return std::atomic_ref<std::uint32_t>(pins[ref]); }

  std::atomic_ref<std::uint32_t> holder(GrantRef ref) const { return std::atomic_ref<std::uint32_t>(holders[ref]); }

  // Takes the entry's pin lock (see sim_protocol::pin) and returns its pin count.
  std::uint32_t lock_pins(GrantRef ref) const {
    auto owner = holder(ref);
    for (std::uint32_t spins = 1;; ++spins) {
      std::uint32_t free = 0;
      if (owner.load(std::memory_order_relaxed) == 0 &&
          owner.compare_exchange_weak(free, self_pid, std::memory_order_acquire, std::memory_order_relaxed))
        return pin_word(ref).load(std::memory_order_relaxed);
      if ((spins & 0x3FFF) == 0 && take_over_from_dead_holder(ref)) {
        const std::uint32_t pins_value = pin_word(ref).load(std::memory_order_relaxed);
        sync_in_use_flags(ref, pins_value);  // the dead holder may have changed them
        return pins_value;
      }
#if defined(__x86_64__) || defined(__i386__)
      __builtin_ia32_pause();
#else
      if ((spins & 0xFF) == 0) std::this_thread::yield();
#endif
    }
  }
  // True if the lock's holder no longer exists and the lock is now ours.
  bool take_over_from_dead_holder(GrantRef ref) const {
    std::uint32_t pid = holder(ref).load(std::memory_order_relaxed);
    if (pid == 0 || pid == self_pid || ::kill(static_cast<pid_t>(pid), 0) == 0 || errno != ESRCH) return false;
    if (!holder(ref).compare_exchange_strong(pid, self_pid, std::memory_order_acquire, std::memory_order_relaxed))
      return false;
    PVBACK_LOG(Notice, "sim grants: domain %u ref %u: pin lock held by process %u, which is gone: taken over", domid,
               ref, pid);
    return true;
  }
  void unlock_pins(GrantRef ref, std::uint32_t value) const {
    pin_word(ref).store(value, std::memory_order_relaxed);
    holder(ref).store(0, std::memory_order_release);
  }

  // Makes GTF_reading/GTF_writing reflect `pins` (called with the pin lock held).
  void sync_in_use_flags(GrantRef ref, std::uint32_t pins_value) const {
    std::uint32_t want = 0;
    if ((pins_value & (proto::pin::kReadMask | proto::pin::kWriteMask)) != 0) want |= GTF_reading;
    if ((pins_value & proto::pin::kWriteMask) != 0) want |= GTF_writing;
    auto header = table.header(ref);
    std::uint32_t old = header.load(std::memory_order_relaxed);
    while (!header.compare_exchange_weak(old, (old & ~kInUse) | want, std::memory_order_acq_rel)) {
    }
  }

  // Xen's acquire of a grant for `self`: validates the entry and sets the in-use flags in one
  // cmpxchg, then pins it. Returns GNTST_okay and the frame, or a GNTST_* error.
  std::int16_t acquire(DomId self, GrantRef ref, bool write, std::uint32_t* frame_out) const {
    if (ref >= proto::kGrantEntries) return GNTST_bad_gntref;
    std::uint32_t pins_value = lock_pins(ref);
    const std::uint32_t read_pins = pins_value & proto::pin::kReadMask;
    const std::uint32_t write_pins = (pins_value & proto::pin::kWriteMask) >> proto::pin::kWriteShift;
    if ((write ? write_pins >= proto::pin::kMaxWritePins : read_pins >= proto::pin::kMaxReadPins)) {
      unlock_pins(ref, pins_value);
      return GNTST_no_device_space;
    }
    auto header = table.header(ref);
    std::uint32_t old = header.load(std::memory_order_acquire);
    for (;;) {
      const std::uint32_t flags = old & 0xFFFFu;
      const std::uint32_t granted_to = old >> 16;
      if ((flags & GTF_type_mask) != GTF_permit_access || granted_to != self || (write && (flags & GTF_readonly))) {
        unlock_pins(ref, pins_value);
        return GNTST_permission_denied;
      }
      const std::uint32_t wanted = old | GTF_reading | (write ? GTF_writing : 0u);
      if (header.compare_exchange_weak(old, wanted, std::memory_order_acq_rel)) break;
    }
    const std::uint32_t frame = table.frame(ref).load(std::memory_order_acquire);
    if (frame >= frames) {
      sync_in_use_flags(ref, pins_value);
      unlock_pins(ref, pins_value);
      return GNTST_bad_page;
    }
    pins_value += write ? (1u << proto::pin::kWriteShift) : 1u;
    unlock_pins(ref, pins_value);
    *frame_out = frame;
    return GNTST_okay;
  }

  void release(GrantRef ref, bool write) const {
    std::uint32_t pins_value = lock_pins(ref);
    pins_value -= write ? (1u << proto::pin::kWriteShift) : 1u;
    sync_in_use_flags(ref, pins_value);
    unlock_pins(ref, pins_value);
  }
};

int errno_for(std::int16_t status) {
  switch (status) {
    case GNTST_bad_gntref:
    case GNTST_bad_page:
      return EINVAL;
    case GNTST_permission_denied:
      return EPERM;
    case GNTST_bad_domain:
      return ESRCH;
    case GNTST_no_device_space:
      return ENOSPC;
    default:
      return EIO;
  }
}

class SimGrantMapper final : public GrantMapper {
 public:
  SimGrantMapper(SimControl control) : control_(std::move(control)) {}

  ~SimGrantMapper() override {
    if (!mappings_.empty())
      PVBACK_LOG(Error, "sim grant mapper destroyed with %zu mappings still held", mappings_.size());
  }

  std::expected<Mapping, int> map(DomId domid, std::span<const GrantRef> refs, Access access) override {
    if (refs.empty() || refs.size() > kMaxBatch) return std::unexpected(EINVAL);
    auto domain = open_domain(domid);
    if (!domain) return std::unexpected(domain.error());
    const ForeignDomain& d = **domain;
    const bool write = access == Access::ReadWrite;
    const auto count = static_cast<std::uint32_t>(refs.size());

    std::vector<std::uint32_t> frames(count);
    for (std::uint32_t i = 0; i < count; ++i) {
      std::int16_t st = d.acquire(control_.self(), refs[i], write, &frames[i]);
      if (st != GNTST_okay) {
        // All or nothing: a partially applied batch is how XSA-362 went wrong.
        for (std::uint32_t j = 0; j < i; ++j) d.release(refs[j], write);
        return std::unexpected(errno_for(st));
      }
    }

    // One mapping per page inside a PROT_NONE reservation one page longer than the batch, so an
    // overrun faults just as it would past a grant mapping on Xen.
    const std::size_t reserve_bytes = (static_cast<std::size_t>(count) + 1) * kXenPageSize;
    void* reserve = ::mmap(nullptr, reserve_bytes, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    int err = 0;
    if (reserve == MAP_FAILED) {
      err = errno;
    } else {
      const int prot = write ? PROT_READ | PROT_WRITE : PROT_READ;
      for (std::uint32_t i = 0; i < count && err == 0; ++i) {
        void* slot = static_cast<std::byte*>(reserve) + std::size_t{i} * kXenPageSize;
        void* p = ::mmap(slot, kXenPageSize, prot, MAP_SHARED | MAP_FIXED, d.memory_fd.get(),
                         static_cast<off_t>(std::uint64_t{frames[i]} * kXenPageSize));
        if (p == MAP_FAILED) err = errno;
      }
      if (err != 0) ::munmap(reserve, reserve_bytes);
    }
    if (err != 0) {
      for (std::uint32_t i = 0; i < count; ++i) d.release(refs[i], write);
      return std::unexpected(err);
    }
    std::lock_guard lock(mutex_);
    mappings_.emplace(reserve, MapRecord{*domain, std::vector<GrantRef>(refs.begin(), refs.end()), write});
    return make_mapping(reserve, count);
  }

  int copy(std::span<CopySegment> segments) override {
    for (CopySegment& seg : segments) seg.status = copy_one(seg);
    return 0;
  }

 protected:
  void unmap(void* addr, std::uint32_t count) noexcept override {
    MapRecord record;
    {
      std::lock_guard lock(mutex_);
      auto it = mappings_.find(addr);
      if (it == mappings_.end()) {
        PVBACK_LOG(Error, "sim grant mapper: unmap of unknown mapping %p", addr);
        return;
      }
      record = std::move(it->second);
      mappings_.erase(it);
    }
    // Unmap before unpinning: once the pin is gone the guest may reuse the page.
    ::munmap(addr, (static_cast<std::size_t>(count) + 1) * kXenPageSize);
    for (GrantRef ref : record.refs) record.domain->release(ref, record.write);
  }

 private:
  static constexpr std::size_t kMaxBatch = 1u << 16;

  struct MapRecord {
    std::shared_ptr<ForeignDomain> domain;
    std::vector<GrantRef> refs;
    bool write = false;
  };

  // One control round trip per domain; a destroyed domain is noticed through its status page.
  std::expected<std::shared_ptr<ForeignDomain>, int> open_domain(DomId domid) {
    std::lock_guard lock(mutex_);
    if (auto it = domains_.find(domid); it != domains_.end()) {
      if (it->second->alive()) return it->second;
      domains_.erase(it);
    }
    proto::Request req;
    req.op = proto::Op::OpenDomain;
    req.domid = domid;
    std::vector<UniqueFd> fds;
    auto reply = control_.call(req, &fds);
    if (!reply) return std::unexpected(reply.error());
    if (fds.size() != 3 || reply->grant_entries != proto::kGrantEntries || reply->memory_bytes % kXenPageSize != 0)
      return std::unexpected(EPROTO);
    auto d = std::make_shared<ForeignDomain>();
    d->domid = domid;
    try {
      d->table.words = static_cast<std::uint32_t*>(map_shared(fds[0].get(), proto::kGrantEntries * sizeof(grant_entry_v1_t),
                                                              PROT_READ | PROT_WRITE, "mmap grant table"));
      d->status = map_shared(fds[2].get(), proto::kStatusBytes, PROT_READ | PROT_WRITE, "mmap grant status");
      d->pins = reinterpret_cast<std::uint32_t*>(static_cast<std::byte*>(d->status) + proto::kStatusHeaderBytes);
      d->holders = reinterpret_cast<std::uint32_t*>(static_cast<std::byte*>(d->status) + proto::kStatusHeaderBytes +
                                                    proto::kPinWordsBytes);
      d->self_pid = static_cast<std::uint32_t>(::getpid());
      d->memory_bytes = reply->memory_bytes;
      d->memory = static_cast<std::byte*>(
          map_shared(fds[1].get(), reply->memory_bytes, PROT_READ | PROT_WRITE, "mmap guest memory"));
    } catch (const std::system_error& e) {
      PVBACK_LOG(Error, "sim grant mapper: domain %u: %s", domid, e.what());
      return std::unexpected(e.code().value());
    }
    d->frames = reply->memory_bytes / kXenPageSize;
    d->memory_fd = std::move(fds[1]);
    domains_[domid] = d;
    return d;
  }

  struct Side {
    std::shared_ptr<ForeignDomain> domain;
    GrantRef ref = 0;
    bool acquired = false;
    bool write = false;
    std::byte* ptr = nullptr;
  };

  std::int16_t resolve(bool is_gref, xengnttab_grant_copy_segment::xengnttab_copy_ptr& where, std::uint16_t len,
                       bool write, Side& side) {
    if (!is_gref) {
      side.ptr = static_cast<std::byte*>(where.virt);
      return GNTST_okay;
    }
    if (std::uint32_t{where.foreign.offset} + len > kXenPageSize) return GNTST_bad_copy_arg;
    auto domain = open_domain(where.foreign.domid);
    if (!domain) return GNTST_bad_domain;
    side.domain = *domain;
    std::uint32_t frame = 0;
    std::int16_t st = side.domain->acquire(control_.self(), where.foreign.ref, write, &frame);
    if (st != GNTST_okay) return st;
    side.acquired = true;
    side.write = write;
    side.ref = where.foreign.ref;
    side.ptr = side.domain->memory + std::uint64_t{frame} * kXenPageSize + where.foreign.offset;
    return GNTST_okay;
  }

  std::int16_t copy_one(CopySegment& seg) {
    Side source;
    Side dest;
    std::int16_t st = resolve((seg.flags & GNTCOPY_source_gref) != 0, seg.source, seg.len, false, source);
    if (st == GNTST_okay) st = resolve((seg.flags & GNTCOPY_dest_gref) != 0, seg.dest, seg.len, true, dest);
    if (st == GNTST_okay && seg.len != 0) std::memmove(dest.ptr, source.ptr, seg.len);
    // Pinned only for the duration of the copy, like Xen's acquire_grant_for_copy.
    if (source.acquired) source.domain->release(source.ref, false);
    if (dest.acquired) dest.domain->release(dest.ref, true);
    return st;
  }

  SimControl control_;
  std::mutex mutex_;
  std::map<DomId, std::shared_ptr<ForeignDomain>> domains_;
  std::map<void*, MapRecord> mappings_;
};

// The guest side: pages of this domain's memory granted to a peer. Frames and grant refs come
// in leases from the hypervisor, so several processes acting as one domain never collide.
class SimGrantSharer final : public GrantSharer {
 public:
  SimGrantSharer(SimControl control) : control_(std::move(control)) {
    proto::Request req;
    req.op = proto::Op::OpenDomain;
    req.domid = control_.self();
    std::vector<UniqueFd> fds;
    auto reply = control_.call(req, &fds);
    if (!reply)
      throw std::system_error(reply.error(), std::generic_category(),
                              "simulated hypervisor: cannot open own domain " + std::to_string(control_.self()));
    if (fds.size() < 2 || reply->grant_entries != proto::kGrantEntries)
      throw std::system_error(EPROTO, std::generic_category(), "simulated hypervisor: bad OpenDomain reply");
    table_.words = static_cast<std::uint32_t*>(map_shared(fds[0].get(), proto::kGrantEntries * sizeof(grant_entry_v1_t),
                                                          PROT_READ | PROT_WRITE, "mmap own grant table"));
    memory_fd_ = std::move(fds[1]);
  }

  ~SimGrantSharer() override {
    if (!shares_.empty()) PVBACK_LOG(Error, "sim grant sharer destroyed with %zu shares still live", shares_.size());
    ::munmap(table_.words, proto::kGrantEntries * sizeof(grant_entry_v1_t));
  }

  std::expected<SharedPages, int> share(DomId peer, std::uint32_t count, Access access) override {
    if (count == 0 || count > kMaxShare) return std::unexpected(EINVAL);
    std::lock_guard lock(mutex_);
    auto base = allocate_frames(count);
    if (!base) return std::unexpected(base.error());
    if (free_refs_.size() < count) {
      if (int err = lease(0, static_cast<std::uint32_t>(count - free_refs_.size())); err != 0) {
        free_frames(*base, count);
        return std::unexpected(err);
      }
    }
    void* addr = ::mmap(nullptr, std::size_t{count} * kXenPageSize, PROT_READ | PROT_WRITE, MAP_SHARED,
                        memory_fd_.get(), static_cast<off_t>(std::uint64_t{*base} * kXenPageSize));
    if (addr == MAP_FAILED) {
      int err = errno;
      free_frames(*base, count);
      return std::unexpected(err);
    }
    std::memset(addr, 0, std::size_t{count} * kXenPageSize);
    std::vector<GrantRef> refs(free_refs_.end() - count, free_refs_.end());
    free_refs_.resize(free_refs_.size() - count);
    const std::uint32_t flags = GTF_permit_access | (access == Access::ReadOnly ? GTF_readonly : 0u);
    for (std::uint32_t i = 0; i < count; ++i) {
      table_.frame(refs[i]).store(*base + i, std::memory_order_relaxed);
      // Release: the peer must see the frame before the entry becomes valid.
      table_.header(refs[i]).store(flags | (std::uint32_t{peer} << 16), std::memory_order_release);
    }
    shares_.emplace(addr, *base);
    return make_shared_pages(addr, std::move(refs));
  }

 protected:
  void unshare(void* addr, std::span<const GrantRef> refs) noexcept override {
    std::lock_guard lock(mutex_);
    auto it = shares_.find(addr);
    if (it == shares_.end()) {
      PVBACK_LOG(Error, "sim grant sharer: unshare of unknown pages %p", addr);
      return;
    }
    const std::uint32_t base = it->second;
    shares_.erase(it);
    for (std::size_t i = 0; i < refs.size(); ++i) {
      if (end_foreign_access(refs[i])) {
        free_refs_.push_back(refs[i]);
        frame_used_[base + i] = false;
      } else {
        // Still mapped by the peer: reusing the page would hand our future data to it.
        PVBACK_LOG_RATELIMITED(Warning, "grant ref %u still in use by its peer at unshare; leaking the page",
                               refs[i]);
      }
    }
    ::munmap(addr, refs.size() * kXenPageSize);
  }

 private:
  static constexpr std::uint32_t kMaxShare = 1u << 16;

  // gnttab_end_foreign_access: clear the entry unless the peer has it mapped.
  bool end_foreign_access(GrantRef ref) {
    auto header = table_.header(ref);
    std::uint32_t old = header.load(std::memory_order_acquire);
    do {
      if ((old & kInUse) != 0) return false;
    } while (!header.compare_exchange_weak(old, 0, std::memory_order_acq_rel));
    return true;
  }

  int lease(std::uint32_t frames, std::uint32_t refs) {
    proto::Request req;
    req.op = proto::Op::LeaseShareRange;
    req.domid = control_.self();
    req.frames = frames;
    req.refs = refs;
    auto reply = control_.call(req);
    if (!reply) return reply.error();
    if (reply->frames != 0) {
      if (frame_used_.size() < std::size_t{reply->base_frame} + reply->frames)
        frame_used_.resize(std::size_t{reply->base_frame} + reply->frames, true);
      for (std::uint32_t i = 0; i < reply->frames; ++i) frame_used_[reply->base_frame + i] = false;
    }
    for (std::uint32_t i = reply->refs; i > 0; --i) free_refs_.push_back(reply->base_ref + i - 1);
    return 0;
  }

  // First fit over the leased frames; frames outside our leases are marked used.
  std::expected<std::uint32_t, int> allocate_frames(std::uint32_t count) {
    for (int attempt = 0; attempt < 2; ++attempt) {
      std::uint32_t run = 0;
      for (std::size_t f = 0; f < frame_used_.size(); ++f) {
        run = frame_used_[f] ? 0 : run + 1;
        if (run == count) {
          auto base = static_cast<std::uint32_t>(f + 1 - count);
          for (std::uint32_t i = 0; i < count; ++i) frame_used_[base + i] = true;
          return base;
        }
      }
      if (attempt == 0) {
        if (int err = lease(count, 0); err != 0) return std::unexpected(err);
      }
    }
    return std::unexpected(ENOMEM);
  }

  void free_frames(std::uint32_t base, std::uint32_t count) {
    for (std::uint32_t i = 0; i < count; ++i) frame_used_[base + i] = false;
  }

  SimControl control_;
  std::mutex mutex_;
  GrantTableView table_;
  UniqueFd memory_fd_;
  std::vector<bool> frame_used_;
  std::vector<GrantRef> free_refs_;
  std::map<void*, std::uint32_t> shares_;  // address -> first frame
};

}  // namespace

SimControl connect_sim_control_or_throw(const std::filesystem::path& run_dir, DomId self) {
  auto control = SimControl::connect(run_dir, self);
  if (!control)
    throw std::system_error(control.error(), std::generic_category(),
                            "cannot connect to the simulated hypervisor at " +
                                sim_layout::control_socket(run_dir).string() + " as domain " + std::to_string(self));
  return std::move(*control);
}

std::unique_ptr<GrantMapper> open_sim_mapper(const std::filesystem::path& run_dir, DomId self) {
  return std::make_unique<SimGrantMapper>(connect_sim_control_or_throw(run_dir, self));
}

std::unique_ptr<GrantSharer> open_sim_sharer(const std::filesystem::path& run_dir, DomId self) {
  return std::make_unique<SimGrantSharer>(connect_sim_control_or_throw(run_dir, self));
}

}  // namespace pvback::grant
