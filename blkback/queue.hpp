// One blkif ring of a vbd and everything that serves it: the mapped ring, its event channel, an
// io_uring, the persistent-grant cache and the request slots. One thread per queue runs run().
//
// Hot path per wake-up: take every unconsumed request out of the ring (one copy each, validated on
// the copy), map all grants the batch needs (or find them in the persistent cache, or grant-copy
// them into bounce pages), hand every read/write/flush/discard of the batch to the storage
// engine's channel (storage/engine.hpp), which queues them on the queue's io_uring, start them all
// with one io_uring_submit, then reap completions, push all responses and notify once if the
// frontend's event index asks for it.
#pragma once
#include <chrono>
#include <cstdint>
#include <expected>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "blkback/stats.hpp"
#include "grant/platform.hpp"
#include "grant/types.hpp"
#include "storage/engine.hpp"

namespace pvback::blkback {

enum class Abi { Native, X86_32, X86_64 };
// Map: map the guest's grants and do I/O straight into them (zero copy).
// Copy: grant-copy between guest pages and bounce pages owned by the queue.
// Both choose how grants that are not persistent are served: once persistent grants are
// negotiated, the persistent cache (mapped grants) is the data path.
enum class DataPath { Map, Copy };

// Defaults of the polling window and of the submission batch (bench/results/blk_randread.txt).
inline constexpr std::chrono::microseconds kDefaultPollMax{200};
inline constexpr unsigned kDefaultSubmitBatch = 2;
inline constexpr std::chrono::microseconds kMaxPollMax{1000};
inline constexpr unsigned kMaxSubmitBatch = 4096;

struct QueueConfig {
  std::string name;                  // for logs: "vbd 1/51712 q0"
  unsigned index = 0;
  DomId frontend_domid = 0;
  Abi abi = Abi::Native;
  std::vector<GrantRef> ring_refs;   // 1 << ring-page-order pages
  EvtchnPort remote_port = 0;        // the frontend's event channel for this queue
  DataPath data_path = DataPath::Map;
  bool persistent_grants = false;    // negotiated: both ends enabled it
  unsigned max_persistent_grants = 1056;                 // per queue; LRU beyond that
  std::chrono::milliseconds persistent_idle_expiry{60'000};  // unused this long -> unmapped
  unsigned max_indirect_segments = 256;                  // as advertised; more is refused
  bool flush_enabled = true;         // feature-flush-cache advertised
  bool barrier_enabled = true;       // feature-barrier advertised
  bool discard_enabled = false;      // feature-discard advertised
  // The crash-recovery record (recovery.hpp); empty: none (a restart may then lose or repeat
  // answers). `resume`: a live record of this very ring, left by a predecessor, is resumed.
  std::string recovery_path;
  bool resume = false;
  // How long a port still bound by a killed predecessor is waited for (0: not a successor).
  std::chrono::milliseconds bind_patience{0};
  // Called from the queue's thread, once, when the storage engine's channel reports its storage
  // gone (storage::Channel::storage_lost) while the queue has a recovery record: the failed
  // requests are left unanswered in the record, and the handler is expected not to return (it
  // ends the process, so that a successor executes them again). Without a handler or a record,
  // they are answered with errors.
  std::function<void(int error)> on_storage_lost;
  // The operator paused the device before this queue started (a data plane started again while
  // paused): it takes nothing from the ring until resume(), but serves what `recovery_path`'s
  // record left (those requests were taken; the frontend waits for their answers).
  bool start_paused = false;
  // The longest the queue polls its ring and completions before it sleeps (adaptive up to this;
  // 0: it never polls). While it polls, the frontend is asked for no notifications.
  std::chrono::microseconds poll_max{kDefaultPollMax};
  // Requests started per io_uring_enter while a batch taken from the ring is submitted (0: the
  // whole batch at once). Small starts the first I/O sooner (more than 2 at once are plugged
  // until the last is built); large costs fewer system calls.
  unsigned submit_batch = kDefaultSubmitBatch;
};

// The limits a running queue takes at once (Queue::tune; blkback/tunables.hpp names them).
struct LiveTuning {
  unsigned max_persistent_grants = 0;
  std::chrono::milliseconds persistent_idle_expiry{0};
  std::chrono::microseconds poll_max{0};
  unsigned submit_batch = 0;
  bool operator==(const LiveTuning&) const = default;
};

inline LiveTuning live_tuning_of(const QueueConfig& c) {
  return {c.max_persistent_grants, c.persistent_idle_expiry, c.poll_max, c.submit_batch};
}
// A queue's configuration with the live tuning in it (what a data plane started again, or an
// adopting successor, is given).
inline void apply_live_tuning(QueueConfig& c, const LiveTuning& t) {
  c.max_persistent_grants = t.max_persistent_grants;
  c.persistent_idle_expiry = t.persistent_idle_expiry;
  c.poll_max = t.poll_max;
  c.submit_batch = t.submit_batch;
}

class Queue {
 public:
  // Called from the queue's thread when the frontend broke the protocol so badly (ring overflow,
  // a mapping of the ring that fails) that the device must be disconnected. errno + reason.
  using FatalHandler = std::function<void(int error, const std::string& reason)>;

  // Maps the ring, binds the event channel, creates the io_uring and opens the engine's channel
  // on it. errno value on failure (the caller reports it; nothing stays mapped or bound).
  static std::expected<std::unique_ptr<Queue>, int> create(const grant::Platform& platform, storage::Engine& engine,
                                                           QueueConfig config, QueueStats& stats, FatalHandler on_fatal);
  ~Queue();  // waits for every in-flight I/O, then unmaps everything (persistent grants included)

  // Serves the ring until stop() or a fatal protocol error. Blocking; run it on its own thread.
  void run();
  // Thread-safe, async-signal-unsafe; makes run() return soon (in-flight I/O is completed first).
  void stop();

  // The operator's pause (pvbackctl pause), thread-safe: the queue takes nothing more from the
  // ring (requests the frontend adds wait there, unanswered, not failed) but finishes and answers
  // every request it took (and those a predecessor's record left it), then flushes the storage
  // and calls `done` from its own thread. resume() takes from the ring again and calls `done`
  // with the number of requests that waited there. Each call supersedes the one before: a `done`
  // not called by then never is. A queue stopping or failing calls none.
  struct PauseReport {
    std::uint64_t drained = 0;  // requests in flight when the pause began
    std::chrono::microseconds drain{0}, flush{0};
    int error = 0;  // the flush's errno
  };
  void pause(std::function<void(const PauseReport&)> done);
  void resume(std::function<void(std::uint64_t waiting)> done);

  // The operator's change of the limits that take effect at once (pvbackctl set), thread-safe:
  // the queue takes them on its own thread; a smaller persistent-grant cache unmaps its least
  // recently used idle grants at once, those in use once their requests are answered.
  void tune(const LiveTuning& tuning);

 private:
  struct Impl;
  explicit Queue(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace pvback::blkback
