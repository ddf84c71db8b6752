// The crash-recovery record of one blkif ring. See recovery.hpp for the protocol.
#include "blkback/recovery.hpp"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cstring>

#include "base/unique_fd.hpp"

namespace pvback::blkback {
namespace recovery {
namespace {

constexpr char kMagic[8] = {'P', 'V', 'B', 'K', 'R', 'C', 'V', '1'};
constexpr std::uint32_t kVersion = 1;

std::uint32_t load(const std::uint32_t& v) {
  return std::atomic_ref<const std::uint32_t>(v).load(std::memory_order_acquire);
}

}  // namespace

std::expected<Recovered, const char*> recover(const Header& header, std::span<const Entry> entries,
                                               const RecoveryKey& key, ring::RingIdx shared_req_prod,
                                               ring::RingIdx shared_rsp_prod) {
  if (std::memcmp(header.magic, kMagic, sizeof kMagic) != 0 || header.version != kVersion ||
      header.entry_size != sizeof(Entry))
    return std::unexpected("no record of this format");
  if (load(header.valid) != 1) return std::unexpected("the record is not live (a clean end, or never completed)");
  const std::uint32_t size = key.ring_size;
  if (header.ring_size != size || entries.size() != size || header.abi != key.abi ||
      header.frontend_domid != key.frontend_domid || header.remote_port != key.remote_port ||
      header.ring_ref_count != key.ring_refs.size() || key.ring_refs.size() > kMaxRingRefs ||
      !std::equal(key.ring_refs.begin(), key.ring_refs.end(), header.ring_refs))
    return std::unexpected("the record belongs to another ring");

  const ring::RingIdx req_cons = load(header.req_cons);
  const ring::RingIdx pushed = load(header.pushed);
  const std::uint32_t unanswered = req_cons - pushed;  // taken, without a visible answer
  if (unanswered > size) return std::unexpected("the record's indices are inconsistent");
  if (static_cast<ring::RingIdx>(shared_req_prod - req_cons) > size)
    return std::unexpected("the frontend's req_prod does not fit the record");

  Recovered out;
  std::vector<std::pair<std::uint32_t, std::uint32_t>> taken;     // (~distance behind req_cons, slot)
  std::vector<std::pair<std::uint32_t, std::uint32_t>> unpushed;  // (rsp_idx - pushed, slot)
  for (std::uint32_t slot = 0; slot < size; ++slot) {
    const Entry& e = entries[slot];
    const std::uint32_t state = load(e.state);
    if (state == kTaken) {
      // An entry at or past req_cons belongs to a batch whose consumption was never recorded: its
      // request is still in the ring. Any other is a request taken and not answered, however far
      // behind req_cons (a slow flush stays while many later requests come and go).
      if (static_cast<std::uint32_t>(e.ring_idx - req_cons) < size) {
        out.forget.push_back(slot);
      } else {
        taken.emplace_back(~static_cast<std::uint32_t>(req_cons - 1u - e.ring_idx), slot);  // oldest first
      }
    } else if (state == kAnswered) {
      const std::uint32_t ahead = e.rsp_idx - pushed;
      if (ahead < size) unpushed.emplace_back(ahead, slot); else out.forget.push_back(slot);
    } else if (state != kFree) {
      return std::unexpected("the record has an entry in an unknown state");
    }
  }
  if (taken.size() + unpushed.size() != unanswered)
    return std::unexpected("the record's entries do not match its indices");
  std::sort(taken.begin(), taken.end());
  std::sort(unpushed.begin(), unpushed.end());
  for (std::size_t i = 0; i < unpushed.size(); ++i)
    if (unpushed[i].first != i) return std::unexpected("the record's answers are not contiguous");
  // The guest owns rsp_prod's memory. A process killed between publishing responses and noting
  // it left rsp_prod up to `unpushed` ahead of the record; anything else is not ours.
  const std::uint32_t visible = shared_rsp_prod - pushed;
  if (visible > unpushed.size()) return std::unexpected("the frontend's rsp_prod does not fit the record");

  out.req_cons = req_cons;
  out.rsp_prod = shared_rsp_prod;
  for (const auto& [age, slot] : taken) out.reexecute.push_back({slot, entries[slot].req});
  for (std::size_t i = 0; i < visible; ++i) out.forget.push_back(unpushed[i].second);
  for (std::size_t i = visible; i < unpushed.size(); ++i) {
    const Entry& e = entries[unpushed[i].second];
    out.reanswer.push_back({unpushed[i].second, blkif::make_response(e.req, e.status)});
  }
  return out;
}

}  // namespace recovery

using recovery::Entry;
using recovery::Header;

std::expected<RecoveryLog, int> RecoveryLog::open(const std::string& path, std::uint32_t ring_size) {
  UniqueFd fd(::open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600));
  if (!fd) return std::unexpected(errno);
  const std::size_t bytes = sizeof(Header) + std::size_t{ring_size} * sizeof(Entry);
  struct stat st {};
  if (::fstat(fd.get(), &st) != 0) return std::unexpected(errno);
  if (!S_ISREG(st.st_mode)) return std::unexpected(EINVAL);
  if (static_cast<std::size_t>(st.st_size) != bytes && ::ftruncate(fd.get(), static_cast<off_t>(bytes)) != 0)
    return std::unexpected(errno);
  void* p = ::mmap(nullptr, bytes, PROT_READ | PROT_WRITE, MAP_SHARED, fd.get(), 0);
  if (p == MAP_FAILED) return std::unexpected(errno);
  RecoveryLog log;
  log.path_ = path;
  log.header_ = static_cast<Header*>(p);
  log.entries_ = reinterpret_cast<Entry*>(static_cast<std::byte*>(p) + sizeof(Header));
  log.ring_size_ = ring_size;
  log.bytes_ = bytes;
  return log;
}

RecoveryLog::RecoveryLog(RecoveryLog&& other) noexcept { *this = std::move(other); }

RecoveryLog& RecoveryLog::operator=(RecoveryLog&& other) noexcept {
  if (this != &other) {
    if (header_ != nullptr) ::munmap(header_, bytes_);
    path_ = std::move(other.path_);
    header_ = std::exchange(other.header_, nullptr);
    entries_ = std::exchange(other.entries_, nullptr);
    ring_size_ = std::exchange(other.ring_size_, 0);
    bytes_ = std::exchange(other.bytes_, 0);
  }
  return *this;
}

RecoveryLog::~RecoveryLog() {
  if (header_ != nullptr) ::munmap(header_, bytes_);
}

namespace {
void store(std::uint32_t& field, std::uint32_t value) {
  std::atomic_ref<std::uint32_t>(field).store(value, std::memory_order_release);
}
}  // namespace

void RecoveryLog::reset(const RecoveryKey& key, ring::RingIdx start) noexcept {
  if (header_ == nullptr) return;
  store(header_->valid, 0);
  std::memset(static_cast<void*>(entries_), 0, std::size_t{ring_size_} * sizeof(Entry));
  std::memcpy(header_->magic, recovery::kMagic, sizeof header_->magic);
  header_->version = recovery::kVersion;
  header_->ring_size = ring_size_;
  header_->entry_size = sizeof(Entry);
  header_->abi = key.abi;
  header_->frontend_domid = key.frontend_domid;
  header_->remote_port = key.remote_port;
  const std::size_t refs = std::min<std::size_t>(key.ring_refs.size(), recovery::kMaxRingRefs);
  header_->ring_ref_count = static_cast<std::uint32_t>(refs);
  std::fill(std::begin(header_->ring_refs), std::end(header_->ring_refs), GrantRef{0});
  std::copy_n(key.ring_refs.begin(), refs, header_->ring_refs);
  store(header_->req_cons, start);
  store(header_->pushed, start);
  store(header_->valid, 1);
}

void RecoveryLog::took(std::uint32_t slot, ring::RingIdx idx, const blkif::native::Request& req) noexcept {
  if (header_ == nullptr) return;
  Entry& e = entries_[slot];
  // The slot's previous answer was pushed before it was freed: kFree until the copy is whole.
  store(e.state, recovery::kFree);
  e.ring_idx = idx;
  e.req = req;
  store(e.state, recovery::kTaken);
}

void RecoveryLog::consumed(ring::RingIdx req_cons) noexcept {
  if (header_ != nullptr) store(header_->req_cons, req_cons);
}

void RecoveryLog::answered(std::uint32_t slot, ring::RingIdx rsp_idx, std::int16_t status) noexcept {
  if (header_ == nullptr) return;
  Entry& e = entries_[slot];
  e.rsp_idx = rsp_idx;
  e.status = status;
  store(e.state, recovery::kAnswered);
}

void RecoveryLog::pushed(ring::RingIdx rsp_prod) noexcept {
  if (header_ != nullptr) store(header_->pushed, rsp_prod);
}

void RecoveryLog::forget(std::uint32_t slot) noexcept {
  if (header_ != nullptr) store(entries_[slot].state, recovery::kFree);
}

void RecoveryLog::retire() noexcept {
  if (header_ != nullptr) store(header_->valid, 0);
}

void RecoveryLog::remove() noexcept {
  if (header_ == nullptr) return;
  ::unlink(path_.c_str());
  ::munmap(header_, bytes_);
  header_ = nullptr;
  entries_ = nullptr;
}

}  // namespace pvback::blkback
