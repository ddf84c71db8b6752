// Userspace Xen block frontend (blkfront): a process acting as a guest attaches to a vbd, negotiates
// like Linux drivers/block/xen-blkfront.c and does block I/O through the shared rings.
//
//   grant::Platform platform(grant::PlatformConfig::from_env());
//   auto front = blkfront::BlkFront::attach(platform, "/local/domain/1/device/vbd/768", options);
//   (*front)->write(0, data);                        // sync helpers
//   auto& q = (*front)->queue(0);                    // async API
//   q.submit_read(8, buf, /*tag=*/7); q.kick(); q.wait(timeout); q.poll(completions);
//   (*front)->detach();
//
// Threading: a BlkFront and its queues are driven by one thread. Every call that waits also handles
// the XenStore watch on the backend's state, so a backend going Closing (hot unplug) fails every
// outstanding request with ENODEV and closes the device.
//
// Data path: each queue owns a pool of pages granted to the backend (read-write) once, at connect
// time. Write data is copied into pool pages at submit, read data out of them at completion (what
// Linux blkfront does with persistent grants): the backend always sees the same grant refs, which is
// what feature-persistent lets it cache.
//
// Caller-granted memory (zero copy): BlkFront::share_pages() grants pages of the caller's own to
// the backend once; submit_read_granted/submit_write_granted then put those pages' grant refs in
// the segments, so data moves between the backend and that memory with no copy here (only an
// indirect request's descriptor pages come from the pool). With feature-persistent the backend
// keeps them mapped, as it keeps the pool, which is why they must stay granted until detach().
//
// Threads: the queues of one BlkFront may be driven by different threads, one thread per queue,
// through the Queue calls that touch that queue alone (submit_*, kick, poll, event_fd,
// acknowledge_events, in_flight, free_pool_pages). Everything else (Queue::wait and wait_for,
// which handle the XenStore watch, BlkFront's own calls, share_pages) must not run concurrently
// with any of them: the caller serialises these (the fio engine holds every queue's lock).
//
// Raw access: a test playing a malicious frontend takes a queue's FrontRing (raw_ring()), the shared
// ring area, the pool pages and their grant refs, and the event channel, puts hand-made requests and
// reads raw responses. It must then not mix submit/poll on that queue (poll() treats unknown response
// ids as a protocol error).
#pragma once
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <expected>
#include <memory>
#include <span>
#include <string>
#include <variant>
#include <vector>

#include "grant/event_channel.hpp"
#include "grant/grant_table.hpp"
#include "grant/platform.hpp"
#include "ring/blkif.hpp"
#include "xenbus/state.hpp"
#include "xenbus/xenstore.hpp"

namespace pvback::blkfront {

// What the frontend writes in its "protocol" key, and so the ring ABI it uses.
enum class Protocol : std::uint8_t {
  Native,   // writes the native ABI's name (x86_64-abi here)
  X86_32,   // "x86_32-abi": 32-bit request layout
  X86_64,   // "x86_64-abi"
  Omitted,  // no key: the backend assumes its native ABI; we use native
};
std::string_view protocol_name(Protocol p);  // "native", "x86_32-abi", "x86_64-abi", "none"
std::optional<Protocol> parse_protocol(std::string_view name);

struct Options {
  unsigned max_queues = 4;                 // multi-queue: min(this, backend's multi-queue-max-queues)
  unsigned max_ring_page_order = 4;        // min(this, backend's max-ring-page-order), capped at 8
  unsigned max_indirect_segments = 32;     // 0: never use indirect descriptors
  bool persistent = true;                  // write feature-persistent = 1
  Protocol protocol = Protocol::Native;
  // Pool pages granted per queue; 0 = min(ring slots * pages per request, 256), never less than
  // one largest request. In-flight requests are bounded by both the ring and the free pool pages.
  unsigned pool_pages = 0;
  // Refuse flush/barrier/discard locally when the backend did not advertise them (EOPNOTSUPP), like
  // Linux; false sends them anyway (to test a backend's answer).
  bool enforce_features = true;
  std::chrono::milliseconds connect_timeout{10000};  // each of: backend InitWait, backend Connected
  std::chrono::milliseconds close_timeout{5000};     // each of: backend Closing, backend Closed
};

// The outcome of negotiation and what the backend told us about the disk.
struct Negotiated {
  std::string frontend_path;
  std::string backend_path;
  DomId backend_id = 0;
  std::uint32_t handle = 0;  // virtual-device, put in each request's handle field
  // Backend's offers.
  unsigned backend_max_ring_page_order = 0;
  unsigned backend_max_queues = 1;
  unsigned backend_max_indirect_segments = 0;
  bool backend_persistent = false;
  // Negotiated.
  unsigned ring_page_order = 0;
  unsigned num_queues = 1;
  Protocol protocol = Protocol::Native;
  bool persistent = false;             // both ends
  unsigned segments_per_request = 11;  // > 11 means indirect descriptors are used
  bool indirect = false;
  std::uint32_t ring_size = 0;          // requests per ring
  std::uint32_t pool_pages = 0;         // per queue
  // Disk.
  std::uint64_t sectors = 0;            // in 512-byte units
  std::uint32_t info = 0;               // VDISK_* bits
  std::uint32_t sector_size = 512;
  std::uint32_t physical_sector_size = 512;
  bool flush = false;
  bool barrier = false;
  bool discard = false;
  std::uint32_t discard_granularity = 0;
  std::uint32_t discard_alignment = 0;
  bool discard_secure = false;

  bool readonly() const { return info & blkif::kVdiskReadonly; }
  std::uint64_t size_bytes() const { return sectors * blkif::kSectorSize; }
};

struct Completion {
  std::uint64_t tag = 0;
  int error = 0;  // 0, EIO (BLKIF_RSP_ERROR), EOPNOTSUPP, ENODEV (device went away), EPROTO (bad ring)
};

using RingVariant = std::variant<blkif::x86_64::FrontRing, blkif::x86_32::FrontRing>;

class BlkFront;

class Queue {
 public:
  Queue(const Queue&) = delete;
  Queue& operator=(const Queue&) = delete;
  ~Queue();

  unsigned index() const { return index_; }

  // Async API. Submits only queue requests (nothing is visible to the backend before kick()).
  // Returns 0 or: EINVAL (misaligned/beyond the disk), EAGAIN (ring or pool full: poll first),
  // E2BIG (can never fit), EOPNOTSUPP (feature not negotiated), ENODEV (disconnected).
  // `buffer` must stay valid until the completion for `tag` (reads are copied into it then).
  // Requests needing more segments than one ring request carries are split (or use indirect
  // descriptors when negotiated); the user sees a single completion.
  int submit_read(std::uint64_t sector, std::span<std::byte> buffer, std::uint64_t tag);
  int submit_write(std::uint64_t sector, std::span<const std::byte> buffer, std::uint64_t tag);
  // The same with the data in `length` bytes at `offset` of `pages` (from BlkFront::share_pages of
  // this frontend), which the backend reads or writes directly: no copy. `offset` must be a
  // multiple of 512 (a segment addresses 512-byte sectors of a page); EINVAL otherwise or when the
  // range is not inside `pages`. The pages must stay valid until the completion for `tag`.
  int submit_read_granted(std::uint64_t sector, const grant::SharedPages& pages, std::size_t offset,
                          std::size_t length, std::uint64_t tag);
  int submit_write_granted(std::uint64_t sector, const grant::SharedPages& pages, std::size_t offset,
                           std::size_t length, std::uint64_t tag);
  // BLKIF_OP_WRITE_BARRIER with data (at most 11 segments, never split).
  int submit_barrier_write(std::uint64_t sector, std::span<const std::byte> buffer, std::uint64_t tag);
  // BLKIF_OP_FLUSH_DISKCACHE with no segments (barrier with no data when only barrier is offered).
  int submit_flush(std::uint64_t tag);
  int submit_discard(std::uint64_t sector, std::uint64_t nr_sectors, bool secure, std::uint64_t tag);

  // Publishes queued requests; notifies the backend if the ring says so. 0 or an errno value.
  int kick();
  // Consumes responses and returns up to out.size() completions (the rest stay for the next call).
  std::size_t poll(std::span<Completion> out);
  // Blocks until this queue's event channel fires, the backend's state changes or the timeout.
  // Returns 0 (something may be ready), ETIMEDOUT, or ENODEV once the device is gone.
  int wait(std::chrono::milliseconds timeout);
  // Sync helper: waits until the completion for `tag` is available and returns its error. Other
  // completions collected meanwhile are kept for poll().
  int wait_for(std::uint64_t tag, std::chrono::milliseconds timeout);

  std::uint32_t in_flight() const { return ring_in_flight_; }  // ring requests awaiting a response
  std::uint32_t free_pool_pages() const { return static_cast<std::uint32_t>(free_pages_.size()); }
  bool connected() const { return connected_; }
  int error() const { return error_; }  // EPROTO after a bad response, ENODEV after unplug
  // Largest byte count one submit can carry starting at `sector` (segments and pool bounded).
  std::uint64_t max_request_bytes(std::uint64_t sector) const;

  // Raw access (tests acting as a malicious frontend).
  RingVariant& raw_ring() { return ring_; }
  std::byte* shared_ring() const { return static_cast<std::byte*>(ring_pages_.data()); }
  std::span<const GrantRef> ring_refs() const { return ring_pages_.refs(); }
  grant::SharedPages& pool() { return pool_; }
  grant::EventChannels& events() { return *events_; }
  EvtchnPort port() const { return port_.port(); }
  int notify() { return port_.notify(); }
  // Waits for the event channel only (unmasks it); 0 or ETIMEDOUT. For raw use.
  int wait_event(std::chrono::milliseconds timeout);
  // For a caller's own poll loop: readable when the event channel fired (-1 once torn down);
  // acknowledge_events() then unmasks it before the caller polls for responses.
  int event_fd() const { return events_ ? events_->fd() : -1; }
  void acknowledge_events();

 private:
  friend class BlkFront;
  struct Shadow {
    bool busy = false;
    std::uint8_t operation = 0;  // the ring operation (kOpIndirect for indirect)
    std::uint32_t user = 0;      // index into users_
    std::uint64_t buffer_offset = 0;  // where this part's data sits in the user buffer
    std::uint32_t length = 0;
    std::uint32_t first_offset = 0;   // byte offset of the data in its first page
    std::uint16_t data_pages = 0;
    std::uint16_t indirect_pages = 0;
    bool granted = false;  // data in the caller's granted pages: nothing to copy, no pool data pages
  };
  struct User {
    bool busy = false;
    std::uint64_t tag = 0;
    std::byte* read_buffer = nullptr;  // reads only
    std::uint32_t parts_left = 0;
    int error = 0;
  };

  Queue(BlkFront& owner, unsigned index) : owner_(&owner), index_(index) {}
  int setup_ring(grant::GrantSharer& sharer, const grant::Platform& platform, DomId backend, unsigned order,
                 Protocol protocol);
  int setup_pool(grant::GrantSharer& sharer, DomId backend, const Negotiated& neg);
  void teardown();
  void fail_all(int error);

  // The data is either `data` (copied through pool pages) or, when `granted` is set, at
  // `granted_offset` of those caller-granted pages.
  int submit_data(std::uint8_t op, std::uint64_t sector, std::byte* data, std::size_t length, std::uint64_t tag,
                  bool allow_split, const grant::SharedPages* granted = nullptr, std::size_t granted_offset = 0);
  int submit_nodata(std::uint8_t op, std::uint64_t sector, std::uint64_t nr_sectors, std::uint8_t flag,
                    std::uint64_t tag);
  int precheck();
  std::uint32_t alloc_user(std::uint64_t tag, std::byte* read_buffer, std::uint32_t parts);
  std::uint32_t alloc_shadow();
  void consume_responses();
  void complete_part(std::uint32_t id, std::int16_t status);
  void finish_user(std::uint32_t u);

  BlkFront* owner_;
  unsigned index_;
  grant::SharedPages ring_pages_;
  RingVariant ring_;
  std::unique_ptr<grant::EventChannels> events_;
  grant::BoundPort port_;
  grant::SharedPages pool_;
  std::vector<std::uint32_t> free_pages_;     // pool page indices
  std::vector<Shadow> shadows_;               // by ring request id
  std::vector<std::uint32_t> shadow_pages_;   // shadows_.size() * max_pages_per_request_
  std::vector<std::uint32_t> free_shadows_;
  std::vector<User> users_;
  std::vector<std::uint32_t> free_users_;
  std::vector<Completion> ready_;
  std::uint32_t max_pages_per_request_ = 0;  // data + indirect
  std::uint32_t ring_in_flight_ = 0;
  bool connected_ = false;
  int error_ = 0;
};

class BlkFront {
 public:
  // Attaches as the platform's domain to the vbd whose frontend node is `frontend_path`
  // (/local/domain/<me>/device/vbd/<devid>) and returns once both ends are Connected.
  // Errors: ETIMEDOUT (backend never reached InitWait/Connected), ENOENT (no such device),
  // ENODEV (backend closed during the handshake), or what XenStore/grants/event channels said.
  static std::expected<std::unique_ptr<BlkFront>, int> attach(const grant::Platform& platform,
                                                              const std::string& frontend_path,
                                                              const Options& options = {});
  // Allocates `count` zeroed pages granted read-write to the backend, for Queue::submit_*_granted.
  // They must be destroyed after detach() (the backend may keep them mapped until it is Closed) and
  // before this BlkFront. 0 pages or after detach: EINVAL / ENODEV; else what the sharer said.
  std::expected<grant::SharedPages, int> share_pages(std::uint32_t count);

  // The frontend path of vbd `devid` of the platform's own domain.
  static std::string frontend_path_for(DomId self, unsigned devid);

  ~BlkFront();
  BlkFront(const BlkFront&) = delete;
  BlkFront& operator=(const BlkFront&) = delete;

  const Negotiated& negotiated() const { return neg_; }
  const Options& options() const { return options_; }
  unsigned num_queues() const { return static_cast<unsigned>(queues_.size()); }
  Queue& queue(unsigned i) { return *queues_.at(i); }
  bool connected() const { return connected_; }
  xenbus::State state() const { return state_; }
  xenbus::XenStore& xenstore() { return xs_; }

  // Sync helpers on queue 0 (chunked to what one submit carries). 0 or an errno value.
  int read(std::uint64_t sector, std::span<std::byte> buffer);
  int write(std::uint64_t sector, std::span<const std::byte> buffer);
  int flush();
  int discard(std::uint64_t sector, std::uint64_t nr_sectors, bool secure = false);

  // Handles pending XenStore watch events (backend state); on backend Closing/Closed/gone while
  // connected, fails outstanding requests and closes. Returns 0, or ENODEV once closed.
  int process_xenstore();
  // Waits for any queue's event channel or a XenStore event; handles the latter. 0/ETIMEDOUT/ENODEV.
  int wait_any(std::chrono::milliseconds timeout);

  // Fails outstanding requests (ENODEV), Closing, waits for the backend's Closing/Closed, Closed,
  // waits for the backend's Closed (Linux blkback unmaps then), and only then ends the grants.
  // 0, or ETIMEDOUT if the backend did not follow (we close anyway; grants still mapped leak).
  int detach();

 private:
  friend class Queue;
  BlkFront(const grant::Platform& platform, Options options) : platform_(platform), options_(options) {}
  int do_attach(const std::string& frontend_path);
  int wait_backend_state(std::initializer_list<xenbus::State> wanted, std::chrono::milliseconds timeout,
                         bool fail_on_closing);
  int write_state(xenbus::State s);
  int publish_rings();
  int read_connect_info();
  void close_after_unplug();
  int sync_wait(Queue& q, std::uint64_t tag);
  template <class Byte>
  int sync_io(std::uint64_t sector, std::span<Byte> buffer);

  grant::Platform platform_;
  Options options_;
  Negotiated neg_;
  xenbus::XenStore xs_;
  std::unique_ptr<grant::GrantSharer> sharer_;
  std::vector<std::unique_ptr<Queue>> queues_;
  std::string watch_token_;
  bool watching_ = false;
  bool connected_ = false;
  bool closed_ = false;
  xenbus::State state_ = XenbusStateInitialising;
  xenbus::State backend_state_ = XenbusStateUnknown;
  std::uint64_t sync_tag_ = 1ull << 63;
};

}  // namespace pvback::blkfront
