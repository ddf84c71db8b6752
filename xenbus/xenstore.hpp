// A XenStore connection on the real libxenstore (the same library talks to xenstored on Xen and to
// the simulator's server through XENSTORED_PATH).
//
// Every operation reports failure as an errno value (ENOENT, EACCES, EAGAIN, ...) instead of
// throwing: backends call these while handling watches and a misbehaving peer must never be able
// to unwind a daemon. Values come from other domains, so the integer readers parse strictly.
#pragma once
#include <atomic>
#include <chrono>
#include <cstdint>
#include <expected>
#include <functional>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "grant/types.hpp"

struct xs_handle;

namespace pvback::xenbus {

// A transaction id; the default (XBT_NULL) means "outside any transaction".
struct Txn {
  std::uint32_t id = 0;
};

enum class PermAccess : std::uint8_t { None = 0, Read = 1, Write = 2, ReadWrite = 3 };

// One entry of a node's permission list. As in XenStore, the first entry names the owner and
// gives the access of every domain not listed after it.
struct Permission {
  DomId domid = 0;
  PermAccess access = PermAccess::None;
  bool operator==(const Permission&) const = default;
};

struct WatchEvent {
  std::string path;   // the node that changed (may be below the watched path)
  std::string token;
};

// Strict decimal parsing of XenStore values: no sign for unsigned, no whitespace, no trailing
// characters, no empty string. EINVAL for malformed input, ERANGE for out-of-range values.
std::expected<std::uint64_t, int> parse_uint(std::string_view text, std::uint64_t max = UINT64_MAX);
std::expected<std::int64_t, int> parse_int(std::string_view text, std::int64_t min = INT64_MIN,
                                           std::int64_t max = INT64_MAX);

// True for the errno values a failed call gets only from a broken connection (EBADF, EPIPE,
// ECONNRESET, ...), never from a server's error reply: XenStore's wire protocol has no such
// error names, and libxenstore closes its socket (every later call then fails with EBADF) when the
// server hangs up or answers out of step.
bool is_connection_error(int error);

// How often a daemon that holds a XenStore connection checks, with XenStore::probe(), that the
// server still answers. libxenstore reports a dead connection only to the calls made on it: the
// fd it offers for polling is its watch pipe, which never reports POLLHUP or POLLERR. So an idle
// daemon would keep running on a dead connection until its next XenStore call, which may be
// never. One small read a second per daemon is no load for xenstored, and a lost connection is
// then noticed within about a second. Probes run from the daemons' main loops only, never on a
// data path.
inline constexpr std::chrono::milliseconds kXenStoreProbeInterval{1000};

// XSA-349: a guest fires a watch on its own directory as often as it can write (a child of a
// watched node, rewritten in a tight loop), and libxenstore's reader thread queues every event it
// receives, without bound, until the owner reads it. A XenStore therefore takes libxenstore's
// events on a thread of its own as they come and keeps, per watch token, at most this many
// distinct pending paths: the next one collapses the token's pending events into one event for
// the watched path ("something under it changed, re-read it"). Pending events then cost at most
// this many paths per token the process registered, however long its main thread is busy.
inline constexpr std::size_t kMaxPendingPathsPerToken = 64;

// What the watch-event drain of one connection has seen; for tests and statistics.
struct WatchQueueStats {
  std::uint64_t received = 0;   // events taken from libxenstore
  std::uint64_t coalesced = 0;  // of those, merged into an event already pending
  std::uint64_t delivered = 0;  // events returned by read_watch()
  std::size_t pending = 0;      // events waiting for read_watch() now
};

namespace detail {
class WatchQueue;
}

class XenStore {
 public:
  // Bounded so a path that is hammered by another writer cannot keep us retrying forever.
  static constexpr unsigned kDefaultTransactionAttempts = 16;

  // Connects to the XenStore daemon. With a non-empty `socket_path`, XENSTORED_PATH is set to it
  // for the duration of xs_open (and restored afterwards); otherwise libxenstore's default applies
  // (XENSTORED_PATH from the environment, then the local socket, then /dev/xen/xenbus).
  static std::expected<XenStore, int> open(const std::string& socket_path = {});

  XenStore();
  XenStore(const XenStore&) = delete;
  XenStore& operator=(const XenStore&) = delete;
  XenStore(XenStore&& other) noexcept;
  XenStore& operator=(XenStore&& other) noexcept;
  ~XenStore();

  explicit operator bool() const { return handle_ != nullptr; }

  // The errno value of the first call that failed because the connection broke (see
  // is_connection_error()), 0 while none did. Sticky: libxenstore never reconnects a handle, so
  // from then on every call fails and the owner should give the connection (the process) up.
  int connection_error() const { return connection_error_.load(std::memory_order_relaxed); }
  bool connection_lost() const { return connection_error() != 0; }

  // One round trip that tells whether the server still answers: a read of `path` (its value,
  // ENOENT and EACCES are all answers). 0 if it answered, else the errno value; a broken connection
  // also shows in connection_error(). Blocks like any call while the server is slow to answer.
  [[nodiscard]] int probe(const std::string& path) const;

  std::expected<std::string, int> read(const std::string& path, Txn txn = {}) const;
  std::expected<std::uint64_t, int> read_uint(const std::string& path, std::uint64_t max = UINT64_MAX,
                                              Txn txn = {}) const;
  std::expected<std::int64_t, int> read_int(const std::string& path, std::int64_t min = INT64_MIN,
                                            std::int64_t max = INT64_MAX, Txn txn = {}) const;
  // True if the node exists, false on ENOENT; other errors are returned.
  std::expected<bool, int> exists(const std::string& path, Txn txn = {}) const;
  std::expected<std::vector<std::string>, int> directory(const std::string& path, Txn txn = {}) const;

  // The int-returning calls give 0 on success, an errno value otherwise.
  int write(const std::string& path, std::string_view value, Txn txn = {});
  int mkdir(const std::string& path, Txn txn = {});
  // Removes the node and its children. A node that is already gone is not an error.
  int rm(const std::string& path, Txn txn = {});

  std::expected<std::vector<Permission>, int> get_permissions(const std::string& path, Txn txn = {}) const;
  int set_permissions(const std::string& path, std::span<const Permission> perms, Txn txn = {});

  std::expected<Txn, int> transaction_start();
  // 0 on commit; EAGAIN if a conflicting change means the transaction must be redone.
  int transaction_end(Txn txn, bool abort);

  // Runs `body` in a transaction and commits it, redoing both when the commit reports EAGAIN, at
  // most `max_attempts` times. A non-zero return from `body` aborts the transaction and is
  // returned. `attempts`, if given, receives how many times `body` ran.
  int transact(const std::function<int(Txn)>& body, unsigned max_attempts = kDefaultTransactionAttempts,
               unsigned* attempts = nullptr);

  // XenStore fires each watch once right after it is registered. Events queued before unwatch()
  // may still be returned by read_watch() afterwards: match on the token. Events are coalesced
  // (see kMaxPendingPathsPerToken): an event for a path already pending with the same token is
  // merged into it, and a token with too many distinct paths pending gets one event for the
  // watched path instead. Every change is still covered by an event delivered no later than its
  // own would have been, so a reader that re-reads the nodes after an event misses nothing.
  int watch(const std::string& path, const std::string& token);
  int unwatch(const std::string& path, const std::string& token);

  // Becomes readable when watch events are pending; -1 if not connected. It is an eventfd of this
  // connection's watch drain, stable for the life of the connection, not the connection itself:
  // a lost connection shows through it at most once, up to a second late (see
  // kXenStoreProbeInterval), when read_watch() then reports it.
  int fd() const;
  // Next pending watch event without blocking. EAGAIN when nothing is pending.
  std::expected<WatchEvent, int> read_watch();
  WatchQueueStats watch_stats() const;

  xs_handle* native() const { return handle_; }

 private:
  explicit XenStore(xs_handle* handle);
  void close();
  // errno of the libxenstore call that just failed, remembered in connection_error_ when it
  // says the connection is broken.
  int failed() const;

  xs_handle* handle_ = nullptr;
  // Stopped before handle_ is closed.
  std::unique_ptr<detail::WatchQueue> watches_;
  mutable std::atomic<int> connection_error_{0};
};

}  // namespace pvback::xenbus
