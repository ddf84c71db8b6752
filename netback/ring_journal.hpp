// Exactly-once responses on a netif ring (TX, RX or control) across a SIGKILL, a crash or an OOM
// kill of whatever serves it: a write-ahead log of each batch's responses.
//
// Why the shared ring alone is not enough. A netif backend answers every request it takes, in
// ring order, within the batch that took it, so between batches rsp_prod equals req_cons and a
// successor may start where rsp_prod stands. But response k is written into the very slot that
// held request k, one by one, before rsp_prod is pushed. A process killed in the middle leaves
// slots rsp_prod.. partly overwritten by responses nobody sees; a successor starting at rsp_prod
// reads them back as requests: an RX request's grant reference is then an old response's flags
// and status, and the packet copied there lands in whatever page of the guest that number names
// (an RX buffer filled twice, or another page written); a TX request's is an id and a status,
// and a control request's parameters are an old status. The slots of a batch are only safe to
// read again as long as no response of the batch was written.
//
// So every batch is logged before its first response touches the ring:
//   stage(k, rsp)      response k of the batch, into the journal (memory outliving the process)
//   commit(start, n)   the batch is whole: n responses from ring index `start` on
//   ...                the responses are written into the ring and rsp_prod is pushed
//   done()             the batch is visible; the journal is free again
// A successor (replay(), before it serves the ring) finds either
//   - no committed batch: nothing of the last batch touched the ring, whose slots still hold the
//     guest's requests from rsp_prod on: it takes them again (a TX frame the killed process had
//     already sent goes out twice, which the network above tolerates as any duplicate; an RX
//     buffer it had filled is filled again and answered once; a packet it was delivering is lost,
//     as any drop);
//   - a committed batch with rsp_prod at its start: it writes the logged responses again, all of
//     them, and pushes: the guest sees every request of the batch answered once, as the killed
//     process decided (frames it sent are not sent again, buffers it filled are not refilled);
//   - a committed batch with rsp_prod at its end: it was visible already; nothing to do;
//   - rsp_prod anywhere else: the guest, which owns that index, moved it; the batch is dropped
//     and the ring taken from rsp_prod (what the guest breaks is its own).
// Each step is a few stores into shared memory: no system call, no lock (a ring has one writer at
// a time: its queue's thread, or for RX whoever holds the queue's RX lock).
#pragma once
#include <atomic>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <expected>
#include <type_traits>

#include "ring/ring.hpp"

namespace pvback::netback {

// The largest netif ring has 256 slots (TX and RX); a response is at most 12 bytes (control).
inline constexpr std::uint32_t kJournalSlots = 256;
inline constexpr std::size_t kJournalSlotBytes = 16;

struct alignas(64) JournalBlock {
  std::uint32_t state;  // kJournalIdle or kJournalCommitted, written last (release)
  std::uint32_t start;  // ring index of the batch's first response
  std::uint32_t count;  // responses in the batch
  std::uint32_t pad;
  std::byte slots[kJournalSlots][kJournalSlotBytes];
};
inline constexpr std::uint32_t kJournalIdle = 0;
inline constexpr std::uint32_t kJournalCommitted = 1;

// What replay() found.
enum class Replay {
  Nothing,    // no committed batch
  Visible,    // the batch was visible already
  Rewritten,  // the batch's responses were written and pushed: notify the guest
  Mismatch,   // rsp_prod fits neither end of the batch: dropped
};

// A ring's view of its journal; default-constructed it logs nothing (tests, no record).
class RingJournal {
 public:
  RingJournal() = default;
  explicit RingJournal(JournalBlock* block) : block_(block) {}
  explicit operator bool() const { return block_ != nullptr; }

  template <class Rsp>
    requires(std::is_trivially_copyable_v<Rsp> && sizeof(Rsp) <= kJournalSlotBytes)
  void stage(std::uint32_t k, const Rsp& rsp) noexcept {
    if (block_ != nullptr && k < kJournalSlots) std::memcpy(block_->slots[k], &rsp, sizeof rsp);
  }
  // The fences order the journal's state against the ring's slots and rsp_prod as another
  // process sees them (a weakly ordered CPU could make a later ring store visible first); one per
  // batch.
  void commit(ring::RingIdx start, std::uint32_t count) noexcept {
    if (block_ == nullptr) return;
    block_->start = start;
    block_->count = count;
    std::atomic_ref<std::uint32_t>(block_->state).store(kJournalCommitted, std::memory_order_release);
    std::atomic_thread_fence(std::memory_order_seq_cst);  // before the first response reaches the ring
  }
  void done() noexcept {
    if (block_ == nullptr) return;
    std::atomic_thread_fence(std::memory_order_seq_cst);  // after the push of rsp_prod
    std::atomic_ref<std::uint32_t>(block_->state).store(kJournalIdle, std::memory_order_release);
  }

  // Before serving a ring of `Types` (netif::TxRing, RxRing, CtrlRing) at `area` (one page):
  // finishes a batch a killed predecessor committed and did not make visible (see above). The
  // journal is idle afterwards.
  template <class Types>
  Replay replay(void* area) noexcept {
    if (block_ == nullptr) return Replay::Nothing;
    if (std::atomic_ref<std::uint32_t>(block_->state).load(std::memory_order_acquire) != kJournalCommitted)
      return Replay::Nothing;
    const ring::RingIdx start = block_->start;
    const std::uint32_t count = block_->count;
    auto ring = Types::Back::attach_resume(area, 1, start + count, start);
    const ring::RingIdx rsp_prod = ring ? ring->shared_rsp_prod() : start;
    Replay result = Replay::Mismatch;
    if (ring && count <= kJournalSlots && count <= ring->size()) {
      if (rsp_prod == start + count) {
        result = Replay::Visible;
      } else if (rsp_prod == start) {
        using Rsp = typename Types::Response;
        for (std::uint32_t k = 0; k < count; ++k) {
          Rsp rsp;
          std::memcpy(&rsp, block_->slots[k], sizeof rsp);
          ring->put_response(rsp);
        }
        ring->push_responses();
        result = Replay::Rewritten;
      }
    }
    done();
    return result;
  }

 private:
  JournalBlock* block_ = nullptr;
};

}  // namespace pvback::netback
