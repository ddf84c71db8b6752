// Control protocol of the simulated hypervisor: the ABI between pvback::sim::DomainManager and
// its clients (grant/sim_*.cpp, pvback-sim-ctl).
//
// Transport: a SOCK_SEQPACKET unix socket at sim_layout::control_socket(run_dir). Every message
// is exactly one fixed-size Request, answered by exactly one fixed-size Reply; file descriptors
// travel with the reply as SCM_RIGHTS. The first request on a connection must be Hello, which
// fixes the domain the connection acts as. Event-channel ports allocated or bound through a
// connection are closed when it disconnects (like process exit on Xen). RestrictDomain confines a
// connection's later AllocUnbound/BindInterdomain for good, as an open /dev/xen/evtchn is.
//
// Shared memory handed out by OpenDomain (all memfds, all MAP_SHARED by everyone):
//  - grant table: kGrantEntries grant_entry_v1_t (written by the guest, in-use flags by mappers);
//  - guest memory: memory_bytes, frame N at offset N * kXenPageSize (sparse);
//  - hypervisor status (not given to the domain itself): a DomainStatus header page, then one
//    std::uint32_t pin word per grant entry (see pin::), then one lock-holder pid per entry.
#pragma once
#include <cstddef>
#include <cstdint>

#include <xen/grant_table.h>

#include "grant/types.hpp"

namespace pvback::sim_protocol {

inline constexpr std::uint32_t kMagic = 0x50564853;  // "PVHS"
// 2: RestrictDomain. A client and a pvback-sim of different builds refuse each other at Hello
// (the connection is dropped) instead of failing later at the first new request.
inline constexpr std::uint32_t kVersion = 2;

inline constexpr std::uint32_t kGrantFrames = 32;
inline constexpr std::uint32_t kGrantEntries =
    static_cast<std::uint32_t>(kGrantFrames * kXenPageSize / sizeof(grant_entry_v1_t));  // 16384
// Xen reserves the first refs for the toolstack (console, xenstore); sharers never hand them out.
inline constexpr std::uint32_t kFirstSharableRef = 8;
inline constexpr std::uint64_t kDefaultMemoryBytes = 256ull << 20;
inline constexpr std::uint64_t kMaxMemoryBytes = 64ull << 30;
inline constexpr std::uint32_t kMaxPortsPerDomain = 4096;
inline constexpr std::size_t kNameSize = 64;
inline constexpr std::uint32_t kListBatch = 32;

enum class Op : std::uint32_t {
  Hello = 1,           // domid: the domain this connection acts as
  CreateDomain = 2,    // domid, name, memory_bytes (0 = default). Dom0 only.
  DestroyDomain = 3,   // domid. Dom0 only.
  ListDomains = 4,     // start: first index; reply: up to kListBatch entries, more != 0 if truncated
  OpenDomain = 5,      // domid; reply fds: grant table, memory[, status if domid != self]
  AllocUnbound = 6,    // domid: self, remote; reply: port, fds: local eventfd, peer eventfd
  BindInterdomain = 7, // domid: self, remote, remote_port; reply as AllocUnbound
  Close = 8,           // domid: self, port
  LeaseShareRange = 9, // domid: self; frames, refs: minimum sizes; reply: base_frame/frames, base_ref/refs
  RestrictDomain = 10, // domid: self, remote: the only domain this connection may bind event channels of
                       // from now on, as Linux's IOCTL_EVTCHN_RESTRICT_DOMID (EventChannels::restrict_to)
};

struct Request {
  std::uint32_t magic = kMagic;
  std::uint32_t version = kVersion;
  Op op{};
  std::uint32_t domid = 0;
  std::uint32_t remote = 0;
  std::uint32_t port = 0;  // remote_port for BindInterdomain, local port for Close
  std::uint32_t start = 0;
  std::uint32_t frames = 0;
  std::uint32_t refs = 0;
  std::uint32_t reserved = 0;
  std::uint64_t memory_bytes = 0;
  char name[kNameSize] = {};
};

struct DomainInfo {
  std::uint32_t domid;
  std::uint32_t reserved;
  std::uint64_t memory_bytes;
  char name[kNameSize];
};

struct Reply {
  std::uint32_t magic = kMagic;
  std::int32_t error = 0;  // 0 or an errno value
  std::uint32_t port = 0;
  std::uint32_t fd_count = 0;
  std::uint64_t memory_bytes = 0;
  std::uint32_t grant_entries = 0;
  std::uint32_t base_frame = 0;
  std::uint32_t frames = 0;
  std::uint32_t base_ref = 0;
  std::uint32_t refs = 0;
  std::uint32_t count = 0;  // ListDomains: entries used
  std::uint32_t more = 0;
  std::uint32_t reserved = 0;
  DomainInfo domains[kListBatch] = {};
};

inline constexpr std::uint32_t kMaxReplyFds = 3;

// First page of the status memfd. `alive` drops to 0 when the domain is destroyed, so mappers
// that cached the domain's memfds notice and re-open (or fail) instead of using the zombie.
struct DomainStatus {
  std::uint32_t alive;
  std::uint32_t domid;
};
inline constexpr std::size_t kStatusHeaderBytes = kXenPageSize;
inline constexpr std::size_t kPinWordsBytes = kGrantEntries * sizeof(std::uint32_t);
inline constexpr std::size_t kStatusBytes = kStatusHeaderBytes + 2 * kPinWordsBytes;

// One pin word per grant entry, shared by every process mapping the domain's grants, and one lock
// word per entry after them: 0 when free, else the pid of the process holding the entry's pin
// lock. The lock serialises pin-count changes with the GTF_reading/GTF_writing updates of the
// entry, so the last unpin cannot clear a flag that a concurrent pin has just relied on.
//
// Xen does this inside a hypercall, which no signal interrupts; here the mapping process does it,
// and SIGKILL may strike while it holds the lock. Taking the lock and naming its holder are one
// compare-and-swap (0 -> pid), releasing it is one store, so no kill leaves a lock without its
// holder's name; a waiter that finds the holder gone (kill(pid, 0): ESRCH) takes the lock over
// with another compare-and-swap (dead pid -> its own) and re-derives the in-use flags from the
// pin count, which a holder writes only just before it releases.
namespace pin {
inline constexpr std::uint32_t kReadMask = 0xFFFFu;        // read-only pins
inline constexpr std::uint32_t kWriteShift = 16;            // writable pins in bits 16..30 (31 unused)
inline constexpr std::uint32_t kWriteMask = 0x7FFFu << kWriteShift;
inline constexpr std::uint32_t kMaxReadPins = 0xFFFFu;
inline constexpr std::uint32_t kMaxWritePins = 0x7FFFu;
}  // namespace pin

}  // namespace pvback::sim_protocol
