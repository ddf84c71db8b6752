// Crash recovery for one blkif ring: exactly-once answers across a SIGKILL, a crash, an OOM kill
// or an upgrade of pvback-blk.
//
// Why the shared ring is not enough: responses are written in completion order into the slots of
// requests already taken, so once request B (taken after A) completes first, B's response sits in
// A's slot and A exists nowhere but in the process that took it. A successor that attached at
// rsp_prod would execute B again (answering its id twice) and never answer A.
//
// So each queue keeps a record in memory that outlives the process: a small file on tmpfs
// (/run/pvback/recovery/vbd-<domid>-<devid>-q<N>, MAP_SHARED), one entry per request slot.
//   took(slot, idx, req)    the private copy of the request the queue consumed at ring index idx
//   consumed(req_cons)      every request before req_cons has its entry (once per batch)
//   answered(slot, r, st)   its response was written at response index r with status st
//   pushed(rsp_prod)        responses before rsp_prod are visible to the frontend
// Each is a few stores into that mapping: no system call, no lock. A slot is not reused before
// its answer is pushed. A successor reads the record with recover() (a pure function: it trusts
// nothing the guest can write without checking it against the record) and then
//   - re-executes every request that was taken and not answered, from its private copy;
//   - re-answers (same status, not executed again) every answer that was written but never made
//     visible, at the ring's visible rsp_prod;
//   - consumes new requests from the record's req_cons, not from rsp_prod.
// A re-executed write may reach the storage twice; that is what a guest sees of any device
// across a reset (the data is the same, nothing overlapping was in flight, as blkif requires).
//
// The record is trusted only while it is live (written since the ring was connected, not retired
// by an orderly end) and belongs to this very ring: same frontend domain, ring references, event
// channel, size and ABI, and indices consistent with the shared ring. Otherwise (a frontend that
// reconnected meanwhile, a stale file) the queue starts afresh. A frontend that reconnects with
// a new ring on exactly the same grant references and event channel, with indices that happen
// to fit the old record, while no backend runs, would be taken for the old ring: we know of no
// frontend that does all of that.
#pragma once
#include <cstdint>
#include <expected>
#include <span>
#include <string>
#include <vector>

#include "grant/types.hpp"
#include "ring/blkif.hpp"

namespace pvback::blkback {

// What identifies the ring a record belongs to.
struct RecoveryKey {
  DomId frontend_domid = 0;
  EvtchnPort remote_port = 0;
  std::uint32_t ring_size = 0;
  std::uint32_t abi = 0;            // Abi as a number
  std::vector<GrantRef> ring_refs;
};

namespace recovery {

inline constexpr std::uint32_t kFree = 0;
inline constexpr std::uint32_t kTaken = 1;
inline constexpr std::uint32_t kAnswered = 2;
inline constexpr std::uint32_t kMaxRingRefs = 256;

// One request slot. `state` is written last (release) when an entry changes meaning.
struct alignas(64) Entry {
  std::uint32_t state;
  std::uint32_t ring_idx;     // kTaken: where the request stood
  std::uint32_t rsp_idx;      // kAnswered: where its response was written
  std::int16_t status;        // kAnswered
  std::uint16_t pad;
  blkif::native::Request req;
};

struct alignas(64) Header {  // entries follow it, 64-byte aligned
  char magic[8];
  std::uint32_t version;
  std::uint32_t ring_size;
  std::uint32_t entry_size;
  std::uint32_t abi;
  std::uint32_t frontend_domid;
  std::uint32_t remote_port;
  std::uint32_t ring_ref_count;
  std::uint32_t valid;        // 1 once the key is complete; 0 while (re)initialising
  std::uint32_t req_cons;     // requests before this index have an entry
  std::uint32_t pushed;       // responses before this index are visible
  GrantRef ring_refs[kMaxRingRefs];
};

static_assert(sizeof(Header) % alignof(Entry) == 0);

// What a successor does before serving the ring.
struct Recovered {
  ring::RingIdx req_cons = 0;   // next request to take from the ring
  ring::RingIdx rsp_prod = 0;   // responses before it are visible; the next one goes here
  struct Request {
    std::uint32_t slot;
    blkif::native::Request req;
  };
  struct Answer {
    std::uint32_t slot;
    blkif::native::Response rsp;
  };
  std::vector<Request> reexecute;  // in ring order
  std::vector<Answer> reanswer;    // in the order they were first answered
  // Entries that mean nothing any more (an answer already visible, a request taken in a batch
  // whose consumption was never recorded and that will be taken from the ring again): mark them
  // free before taking anything, or they would be counted once req_cons passes them.
  std::vector<std::uint32_t> forget;
};

// Reads a predecessor's record against the shared ring's indices (which the guest can write).
// An error string when the record does not belong to this ring or contradicts it: start afresh.
std::expected<Recovered, const char*> recover(const Header& header, std::span<const Entry> entries,
                                               const RecoveryKey& key, ring::RingIdx shared_req_prod,
                                               ring::RingIdx shared_rsp_prod);

}  // namespace recovery

// The record of one queue, mapped from its file. Move-only; unmaps on destruction (the file
// stays for a successor; remove() deletes it when the device is gone for good).
class RecoveryLog {
 public:
  RecoveryLog() = default;  // disabled: every call is a no-op
  // Opens or creates the file and maps it. errno value on failure.
  static std::expected<RecoveryLog, int> open(const std::string& path, std::uint32_t ring_size);
  RecoveryLog(RecoveryLog&& other) noexcept;
  RecoveryLog& operator=(RecoveryLog&& other) noexcept;
  RecoveryLog(const RecoveryLog&) = delete;
  ~RecoveryLog();

  bool enabled() const { return header_ != nullptr; }
  const std::string& path() const { return path_; }
  const recovery::Header& header() const { return *header_; }
  std::span<const recovery::Entry> entries() const { return {entries_, ring_size_}; }

  // Starts a record for a fresh ring whose first request and response index is `start`.
  void reset(const RecoveryKey& key, ring::RingIdx start) noexcept;

  void took(std::uint32_t slot, ring::RingIdx idx, const blkif::native::Request& req) noexcept;
  void consumed(ring::RingIdx req_cons) noexcept;
  void answered(std::uint32_t slot, ring::RingIdx rsp_idx, std::int16_t status) noexcept;
  void pushed(ring::RingIdx rsp_prod) noexcept;
  // The slot's answer is visible (after pushed()) or the entry is stale: kFree.
  void forget(std::uint32_t slot) noexcept;

  // An orderly end with nothing taken and unanswered: the record no longer describes a ring a
  // successor must resume (it starts from the ring's rsp_prod, which is then exact).
  void retire() noexcept;
  // Deletes the file (the device is gone: nothing will resume it).
  void remove() noexcept;

 private:
  std::string path_;
  recovery::Header* header_ = nullptr;
  recovery::Entry* entries_ = nullptr;
  std::uint32_t ring_size_ = 0;
  std::size_t bytes_ = 0;
};

}  // namespace pvback::blkback
