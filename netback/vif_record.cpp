// The record of a connected vif. See vif_record.hpp.
//
// Layout: Header (the connection's key, which guest-state copy is current), two GuestSetState
// copies, the control ring's journal, then each queue's TX and RX journals. The guest state is
// written into the copy that is not current and then made current, so a process killed while
// saving leaves the previous state whole.
#include "netback/vif_record.hpp"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cstring>

namespace pvback::netback {
namespace {

constexpr char kMagic[8] = {'P', 'V', 'N', 'E', 'T', 'R', 'E', 'C'};
constexpr std::uint32_t kVersion = 1;

std::uint32_t load(const std::uint32_t& v) {
  return std::atomic_ref<const std::uint32_t>(v).load(std::memory_order_acquire);
}
void store(std::uint32_t& v, std::uint32_t value) {
  std::atomic_ref<std::uint32_t>(v).store(value, std::memory_order_release);
}

struct alignas(64) StateCopy {
  GuestSetState state;
};

}  // namespace

struct alignas(64) VifRecord::Header {
  char magic[8];
  std::uint32_t version;
  std::uint32_t valid;  // 1 once the key is complete; 0 while (re)initialising
  std::uint32_t frontend_domid;
  std::uint32_t queues;
  std::uint32_t ctrl;
  std::uint32_t ctrl_ref;
  std::uint32_t ctrl_port;
  std::uint32_t state_saved;    // 0: no guest state yet
  std::uint32_t state_current;  // which copy holds it
  std::uint32_t pad;
  VifRecordKey::Queue keys[kRecordMaxQueues];
};

namespace {

constexpr std::size_t kStateOffset = sizeof(VifRecord::Header);
constexpr std::size_t kCtrlJournalOffset = kStateOffset + 2 * sizeof(StateCopy);
constexpr std::size_t kQueueJournalsOffset = kCtrlJournalOffset + sizeof(JournalBlock);

}  // namespace

std::size_t VifRecord::bytes_for(unsigned queues) {
  return kQueueJournalsOffset + std::size_t{2} * queues * sizeof(JournalBlock);
}

std::expected<std::unique_ptr<VifRecord>, int> VifRecord::map(int fd, unsigned queues) {
  if (queues == 0 || queues > kRecordMaxQueues) return std::unexpected(EINVAL);
  const std::size_t bytes = bytes_for(queues);
  struct stat st {};
  if (::fstat(fd, &st) != 0) return std::unexpected(errno);
  if (static_cast<std::size_t>(st.st_size) < bytes) return std::unexpected(EINVAL);
  void* p = ::mmap(nullptr, bytes, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
  if (p == MAP_FAILED) return std::unexpected(errno);
  std::unique_ptr<VifRecord> r(new VifRecord());
  r->base_ = static_cast<std::byte*>(p);
  r->header_ = static_cast<Header*>(p);
  r->bytes_ = bytes;
  r->queues_ = queues;
  return r;
}

VifRecord::~VifRecord() {
  if (base_ != nullptr) ::munmap(base_, bytes_);
}

bool VifRecord::begin(const VifRecordKey& key, bool resume, std::string& why) {
  Header& h = *header_;
  const std::size_t n = key.queues.size();
  if (resume) {
    if (std::memcmp(h.magic, kMagic, sizeof kMagic) != 0 || h.version != kVersion) {
      why = "no record of this format";
    } else if (load(h.valid) != 1) {
      why = "the record is not live";
    } else if (h.frontend_domid != key.frontend_domid || h.queues != n || n != queues_ ||
               h.ctrl != (key.ctrl ? 1u : 0u) || (key.ctrl && (h.ctrl_ref != key.ctrl_ref || h.ctrl_port != key.ctrl_port)) ||
               !std::equal(key.queues.begin(), key.queues.end(), h.keys)) {
      why = "the record belongs to another connection";
    } else {
      return true;
    }
  }
  store(h.valid, 0);
  std::memset(static_cast<void*>(base_ + sizeof(Header)), 0, bytes_ - sizeof(Header));
  std::memcpy(h.magic, kMagic, sizeof kMagic);
  h.version = kVersion;
  h.frontend_domid = key.frontend_domid;
  h.queues = static_cast<std::uint32_t>(std::min<std::size_t>(n, kRecordMaxQueues));
  h.ctrl = key.ctrl ? 1 : 0;
  h.ctrl_ref = key.ctrl_ref;
  h.ctrl_port = key.ctrl_port;
  h.state_saved = 0;
  h.state_current = 0;
  std::fill(std::begin(h.keys), std::end(h.keys), VifRecordKey::Queue{});
  std::copy_n(key.queues.begin(), h.queues, h.keys);
  store(h.valid, 1);
  return false;
}

JournalBlock* VifRecord::tx_journal(unsigned queue) const {
  if (queue >= queues_) return nullptr;
  return reinterpret_cast<JournalBlock*>(base_ + kQueueJournalsOffset) + 2 * std::size_t{queue};
}

JournalBlock* VifRecord::rx_journal(unsigned queue) const {
  if (queue >= queues_) return nullptr;
  return reinterpret_cast<JournalBlock*>(base_ + kQueueJournalsOffset) + 2 * std::size_t{queue} + 1;
}

JournalBlock* VifRecord::ctrl_journal() const { return reinterpret_cast<JournalBlock*>(base_ + kCtrlJournalOffset); }

std::optional<GuestSetState> VifRecord::guest_state() const {
  if (load(header_->state_saved) == 0) return std::nullopt;
  const auto* copies = reinterpret_cast<const StateCopy*>(base_ + kStateOffset);
  GuestSetState s;
  std::memcpy(&s, &copies[load(header_->state_current) & 1].state, sizeof s);
  return s;
}

void VifRecord::save(const GuestSetState& state) noexcept {
  auto* copies = reinterpret_cast<StateCopy*>(base_ + kStateOffset);
  const std::uint32_t next = load(header_->state_saved) == 0 ? 0 : (load(header_->state_current) & 1) ^ 1;
  std::memcpy(&copies[next].state, &state, sizeof state);
  store(header_->state_current, next);
  store(header_->state_saved, 1);
}

std::expected<UniqueFd, int> open_record(const std::string& path, unsigned queues) {
  UniqueFd fd;
  if (path.empty()) {
    fd.reset(::memfd_create("pvback-net-record", MFD_CLOEXEC));
  } else {
    fd.reset(::open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600));
  }
  if (!fd) return std::unexpected(errno);
  struct stat st {};
  if (::fstat(fd.get(), &st) != 0) return std::unexpected(errno);
  if (!S_ISREG(st.st_mode)) return std::unexpected(EINVAL);
  const std::size_t bytes = VifRecord::bytes_for(queues);
  if (static_cast<std::size_t>(st.st_size) != bytes && ::ftruncate(fd.get(), static_cast<off_t>(bytes)) != 0)
    return std::unexpected(errno);
  return fd;
}

}  // namespace pvback::netback
