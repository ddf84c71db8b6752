#include "xenbus/xenstore.hpp"

#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <list>
#include <map>
#include <memory>
#include <mutex>
#include <thread>
#include <utility>

// xenstore.h has no extern "C" guard of its own.
extern "C" {
#include <xenstore.h>
}

#include "base/log.hpp"
#include "base/unique_fd.hpp"

namespace pvback::xenbus {
namespace detail {

// Takes libxenstore's watch events off its queue on a thread of its own, as they arrive, and
// keeps them coalesced per token (see kMaxPendingPathsPerToken) for read_watch(). fd() is an
// eventfd that is readable while events are pending, or once the connection is found lost.
class WatchQueue {
 public:
  static constexpr unsigned kBatch = 256;  // events taken per hold of the lock

  explicit WatchQueue(xs_handle* handle) : handle_(handle) {}
  WatchQueue(const WatchQueue&) = delete;
  WatchQueue& operator=(const WatchQueue&) = delete;
  ~WatchQueue() {
    if (thread_.joinable()) {
      const std::uint64_t one = 1;
      [[maybe_unused]] auto n = ::write(stop_fd_.get(), &one, sizeof one);
      thread_.join();
    }
  }

  // 0 or an errno value.
  int start() {
    event_fd_.reset(::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK));
    stop_fd_.reset(::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK));
    if (!event_fd_ || !stop_fd_) return errno != 0 ? errno : EMFILE;
    const int pipe = xs_fileno(handle_);
    if (pipe < 0) return errno != 0 ? errno : EIO;
    // Signals stay with the threads that expect them (the daemons take theirs through a signalfd
    // and block them only after connecting): this thread blocks them all, as libxenstore's does.
    sigset_t all, old;
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &old);
    try {
      thread_ = std::thread([this, pipe] { run(pipe); });
    } catch (const std::system_error& e) {
      pthread_sigmask(SIG_SETMASK, &old, nullptr);
      return e.code().value() != 0 ? e.code().value() : EAGAIN;
    }
    pthread_sigmask(SIG_SETMASK, &old, nullptr);
    return 0;
  }

  int fd() const { return event_fd_.get(); }

  void add_watch(const std::string& path, const std::string& token) {
    std::lock_guard lock(mutex_);
    watched_.emplace(token, path);
  }
  void remove_watch(const std::string& path, const std::string& token) {
    std::lock_guard lock(mutex_);
    auto [first, last] = watched_.equal_range(token);
    for (auto it = first; it != last; ++it)
      if (it->second == path) {
        watched_.erase(it);
        break;
      }
  }

  // The oldest pending event; EAGAIN if none, EINVAL once the connection is lost and nothing is
  // left (libxenstore's own answer in that case).
  std::expected<WatchEvent, int> pop() {
    std::lock_guard lock(mutex_);
    drain_locked();  // what already arrived, and a loss noticed at once
    if (queue_.empty()) {
      clear_fd_locked();
      return std::unexpected(lost_ ? EINVAL : EAGAIN);
    }
    Pending front = std::move(queue_.front());
    auto token = tokens_.find(front.token);
    // The front of the queue is the oldest pending event of its token.
    if (token != tokens_.end()) {
      token->second.entries.erase(token->second.entries.begin());
      if (token->second.entries.empty()) tokens_.erase(token);
    }
    queue_.pop_front();
    if (queue_.empty() && !lost_) clear_fd_locked();
    ++stats_.delivered;
    return WatchEvent{std::move(front.path), std::move(front.token)};
  }

  WatchQueueStats stats() const {
    std::lock_guard lock(mutex_);
    WatchQueueStats s = stats_;
    s.pending = queue_.size();
    return s;
  }

 private:
  struct Pending {
    std::string path;
    std::string token;
  };
  struct TokenState {
    // This token's pending events, oldest first, at most kMaxPendingPathsPerToken.
    std::vector<std::list<Pending>::iterator> entries;
    bool collapsed = false;  // its one pending event stands for everything under the watch
  };

  void run(int pipe) {
    for (;;) {
      pollfd fds[] = {{pipe, POLLIN, 0}, {stop_fd_.get(), POLLIN, 0}};
      // The timeout only notices a lost connection, which libxenstore never signals on its pipe.
      if (::poll(fds, 2, static_cast<int>(kXenStoreProbeInterval.count())) < 0 && errno != EINTR) {
        PVBACK_LOG_RATELIMITED(Error, "xenstore: watch drain: poll: %s", std::strerror(errno));
        std::this_thread::sleep_for(std::chrono::milliseconds(10));
      }
      if (fds[1].revents & POLLIN) return;
      // Keep up with libxenstore's reader thread: loop while full batches come out.
      for (;;) {
        std::lock_guard lock(mutex_);
        if (drain_locked() < kBatch || lost_) break;
      }
      std::lock_guard lock(mutex_);
      if (lost_) return;  // nothing will come any more; the eventfd has been signalled
    }
  }

  // Takes up to kBatch events from libxenstore; how many it took.
  unsigned drain_locked() {
    unsigned taken = 0;
    while (taken < kBatch && !lost_) {
      errno = 0;
      char** event = xs_check_watch(handle_);
      if (event == nullptr) {
        // EINVAL: nothing queued and libxenstore's reader thread has closed the socket.
        if (errno == EINVAL) {
          lost_ = true;
          signal_fd_locked();
        }
        break;
      }
      ++taken;
      push_locked(event[XS_WATCH_PATH], event[XS_WATCH_TOKEN]);
      std::free(event);
    }
    return taken;
  }

  void push_locked(std::string_view path, std::string_view token) {
    ++stats_.received;
    auto it = tokens_.find(token);
    if (it == tokens_.end()) it = tokens_.emplace(std::string(token), TokenState{}).first;
    TokenState& state = it->second;
    if (state.collapsed) {
      ++stats_.coalesced;
      return;
    }
    for (const auto& entry : state.entries)
      if (entry->path == path) {
        ++stats_.coalesced;
        return;
      }
    if (state.entries.size() >= kMaxPendingPathsPerToken) {
      // Keep the oldest in its place (so nothing is reported later than it happened), as one
      // event for the watched path; drop the rest.
      for (std::size_t i = 1; i < state.entries.size(); ++i) queue_.erase(state.entries[i]);
      state.entries.resize(1);
      auto watched = watched_.find(it->first);
      if (watched != watched_.end()) state.entries.front()->path = watched->second;
      state.collapsed = true;
      stats_.coalesced += kMaxPendingPathsPerToken;  // the ones dropped and this one
      return;
    }
    const bool was_empty = queue_.empty();
    state.entries.push_back(queue_.insert(queue_.end(), Pending{std::string(path), it->first}));
    if (was_empty) signal_fd_locked();
  }

  void signal_fd_locked() {
    const std::uint64_t one = 1;
    [[maybe_unused]] auto n = ::write(event_fd_.get(), &one, sizeof one);
  }
  void clear_fd_locked() {
    std::uint64_t count;
    [[maybe_unused]] auto n = ::read(event_fd_.get(), &count, sizeof count);
  }

  xs_handle* const handle_;
  mutable std::mutex mutex_;
  std::list<Pending> queue_;
  std::map<std::string, TokenState, std::less<>> tokens_;  // tokens with events pending
  std::multimap<std::string, std::string> watched_;        // token -> watched path
  WatchQueueStats stats_;
  bool lost_ = false;
  UniqueFd event_fd_;
  UniqueFd stop_fd_;
  std::thread thread_;
};

}  // namespace detail

namespace {

struct FreeDeleter {
  void operator()(void* p) const { std::free(p); }
};
template <class T>
using MallocPtr = std::unique_ptr<T, FreeDeleter>;

// libxenstore reports failures through errno; a zero errno after a failed call would turn an
// error into a success, so never let that through.
int last_error() { return errno != 0 ? errno : EIO; }

unsigned to_native(PermAccess access) {
  unsigned bits = XS_PERM_NONE;
  if (access == PermAccess::Read || access == PermAccess::ReadWrite) bits |= XS_PERM_READ;
  if (access == PermAccess::Write || access == PermAccess::ReadWrite) bits |= XS_PERM_WRITE;
  return bits;
}

PermAccess from_native(unsigned bits) {
  const bool readable = (bits & XS_PERM_READ) != 0;
  const bool writable = (bits & XS_PERM_WRITE) != 0;
  if (readable && writable) return PermAccess::ReadWrite;
  if (readable) return PermAccess::Read;
  if (writable) return PermAccess::Write;
  return PermAccess::None;
}

}  // namespace

bool is_connection_error(int error) {
  switch (error) {
    case EBADF:         // libxenstore closed its socket (EOF, a reply out of step, an earlier failure)
    case EPIPE:         // the server closed its end before our request went out
    case ECONNRESET:
    case ECONNABORTED:
    case ENOTCONN:
    case ESHUTDOWN:
      return true;
    default:
      return false;
  }
}

std::expected<XenStore, int> XenStore::open(const std::string& socket_path) {
  // The environment is process-wide; serialise our own temporary override of it.
  static std::mutex env_mutex;
  xs_handle* handle = nullptr;
  int error = 0;
  {
    std::lock_guard lock(env_mutex);
    std::optional<std::string> previous;
    if (!socket_path.empty()) {
      if (const char* old = std::getenv("XENSTORED_PATH")) previous = old;
      if (setenv("XENSTORED_PATH", socket_path.c_str(), 1) != 0) return std::unexpected(last_error());
    }
    errno = 0;
    // Not XS_UNWATCH_FILTER: libxenstore 4.17's xs_unwatch() leaks the body of every queued event
    // it filters out. Callers match tokens instead, so a stale event after unwatch() is harmless.
    handle = xs_open(0);
    error = handle == nullptr ? last_error() : 0;
    if (!socket_path.empty()) {
      if (previous)
        setenv("XENSTORED_PATH", previous->c_str(), 1);
      else
        unsetenv("XENSTORED_PATH");
    }
  }
  if (handle == nullptr) {
    PVBACK_LOG(Error, "xenstore: cannot connect%s%s: %s", socket_path.empty() ? "" : " to ",
               socket_path.c_str(), std::strerror(error));
    return std::unexpected(error);
  }
  XenStore store(handle);
  // The watch pipe and the drain exist from the start, so fd() is stable for the whole life of
  // the connection.
  errno = 0;
  if (xs_fileno(handle) < 0) return std::unexpected(last_error());
  store.watches_ = std::make_unique<detail::WatchQueue>(handle);
  if (int e = store.watches_->start(); e != 0) {
    PVBACK_LOG(Error, "xenstore: cannot start the watch drain: %s", std::strerror(e));
    return std::unexpected(e);
  }
  return store;
}

XenStore::XenStore() = default;
XenStore::XenStore(xs_handle* handle) : handle_(handle) {}

XenStore::XenStore(XenStore&& other) noexcept
    : handle_(std::exchange(other.handle_, nullptr)),
      watches_(std::move(other.watches_)),
      connection_error_(other.connection_error_.exchange(0)) {}

XenStore& XenStore::operator=(XenStore&& other) noexcept {
  if (this != &other) {
    close();
    handle_ = std::exchange(other.handle_, nullptr);
    watches_ = std::move(other.watches_);
    connection_error_.store(other.connection_error_.exchange(0));
  }
  return *this;
}

XenStore::~XenStore() { close(); }

void XenStore::close() {
  watches_.reset();  // its thread uses the handle
  if (handle_ != nullptr) xs_close(handle_);
  handle_ = nullptr;
}

int XenStore::failed() const {
  const int error = last_error();
  if (is_connection_error(error)) {
    int none = 0;  // the first cause is the one worth reporting
    connection_error_.compare_exchange_strong(none, error, std::memory_order_relaxed);
  }
  return error;
}

int XenStore::probe(const std::string& path) const {
  int error = 0;
  // A request already sent when libxenstore's reader thread sees the server hang up fails with
  // EINVAL (no reply will come), which a server may also answer. libxenstore has closed its
  // socket by then, so a second request fails at once with EBADF if that is what happened.
  for (int attempt = 0; attempt < 2; ++attempt) {
    auto value = read(path);
    error = value ? 0 : value.error();
    if (error == 0 || error == ENOENT || error == EACCES || error == EPERM) return 0;
    if (connection_lost()) break;
  }
  return error;
}

std::expected<std::string, int> XenStore::read(const std::string& path, Txn txn) const {
  if (handle_ == nullptr) return std::unexpected(ENOTCONN);
  unsigned len = 0;
  errno = 0;
  MallocPtr<char> data(static_cast<char*>(xs_read(handle_, txn.id, path.c_str(), &len)));
  if (!data) return std::unexpected(failed());
  return std::string(data.get(), len);
}

std::expected<std::uint64_t, int> XenStore::read_uint(const std::string& path, std::uint64_t max,
                                                      Txn txn) const {
  auto text = read(path, txn);
  if (!text) return std::unexpected(text.error());
  return parse_uint(*text, max);
}

std::expected<std::int64_t, int> XenStore::read_int(const std::string& path, std::int64_t min,
                                                    std::int64_t max, Txn txn) const {
  auto text = read(path, txn);
  if (!text) return std::unexpected(text.error());
  return parse_int(*text, min, max);
}

std::expected<bool, int> XenStore::exists(const std::string& path, Txn txn) const {
  auto value = read(path, txn);
  if (value) return true;
  if (value.error() == ENOENT) return false;
  return std::unexpected(value.error());
}

std::expected<std::vector<std::string>, int> XenStore::directory(const std::string& path, Txn txn) const {
  if (handle_ == nullptr) return std::unexpected(ENOTCONN);
  unsigned count = 0;
  errno = 0;
  MallocPtr<char*> entries(xs_directory(handle_, txn.id, path.c_str(), &count));
  if (!entries) return std::unexpected(failed());
  std::vector<std::string> names;
  names.reserve(count);
  for (unsigned i = 0; i < count; ++i) names.emplace_back(entries.get()[i]);
  return names;
}

int XenStore::write(const std::string& path, std::string_view value, Txn txn) {
  if (handle_ == nullptr) return ENOTCONN;
  errno = 0;
  if (!xs_write(handle_, txn.id, path.c_str(), value.data(), static_cast<unsigned>(value.size())))
    return failed();
  return 0;
}

int XenStore::mkdir(const std::string& path, Txn txn) {
  if (handle_ == nullptr) return ENOTCONN;
  errno = 0;
  if (!xs_mkdir(handle_, txn.id, path.c_str())) return failed();
  return 0;
}

int XenStore::rm(const std::string& path, Txn txn) {
  if (handle_ == nullptr) return ENOTCONN;
  errno = 0;
  if (!xs_rm(handle_, txn.id, path.c_str())) {
    const int error = failed();
    return error == ENOENT ? 0 : error;
  }
  return 0;
}

std::expected<std::vector<Permission>, int> XenStore::get_permissions(const std::string& path, Txn txn) const {
  if (handle_ == nullptr) return std::unexpected(ENOTCONN);
  unsigned count = 0;
  errno = 0;
  MallocPtr<xs_permissions> perms(xs_get_permissions(handle_, txn.id, path.c_str(), &count));
  if (!perms) return std::unexpected(failed());
  std::vector<Permission> result;
  result.reserve(count);
  for (unsigned i = 0; i < count; ++i) {
    const xs_permissions& p = perms.get()[i];
    result.push_back(Permission{static_cast<DomId>(p.id), from_native(p.perms)});
  }
  return result;
}

int XenStore::set_permissions(const std::string& path, std::span<const Permission> perms, Txn txn) {
  if (handle_ == nullptr) return ENOTCONN;
  if (perms.empty()) return EINVAL;  // XenStore needs at least the owner entry
  std::vector<xs_permissions> native(perms.size());
  for (std::size_t i = 0; i < perms.size(); ++i) {
    native[i].id = perms[i].domid;
    native[i].perms = to_native(perms[i].access);
  }
  errno = 0;
  if (!xs_set_permissions(handle_, txn.id, path.c_str(), native.data(), static_cast<unsigned>(native.size())))
    return failed();
  return 0;
}

std::expected<Txn, int> XenStore::transaction_start() {
  if (handle_ == nullptr) return std::unexpected(ENOTCONN);
  errno = 0;
  const xs_transaction_t id = xs_transaction_start(handle_);
  if (id == XBT_NULL) return std::unexpected(failed());
  return Txn{id};
}

int XenStore::transaction_end(Txn txn, bool abort) {
  if (handle_ == nullptr) return ENOTCONN;
  errno = 0;
  if (!xs_transaction_end(handle_, txn.id, abort)) return failed();
  return 0;
}

int XenStore::transact(const std::function<int(Txn)>& body, unsigned max_attempts, unsigned* attempts) {
  unsigned ran = 0;
  int result = EAGAIN;
  while (ran < max_attempts) {
    auto txn = transaction_start();
    if (!txn) {
      result = txn.error();
      break;
    }
    ++ran;
    const int body_result = body(*txn);
    if (body_result != 0) {
      transaction_end(*txn, /*abort=*/true);
      result = body_result;
      break;
    }
    result = transaction_end(*txn, /*abort=*/false);
    if (result != EAGAIN) break;
  }
  if (attempts != nullptr) *attempts = ran;
  if (result == EAGAIN)
    PVBACK_LOG(Warning, "xenstore: transaction still conflicting after %u attempts", ran);
  return result;
}

int XenStore::watch(const std::string& path, const std::string& token) {
  if (handle_ == nullptr) return ENOTCONN;
  // Known before the first event (the one the registration fires) can arrive.
  watches_->add_watch(path, token);
  errno = 0;
  if (!xs_watch(handle_, path.c_str(), token.c_str())) {
    watches_->remove_watch(path, token);
    return failed();
  }
  return 0;
}

int XenStore::unwatch(const std::string& path, const std::string& token) {
  if (handle_ == nullptr) return ENOTCONN;
  errno = 0;
  if (!xs_unwatch(handle_, path.c_str(), token.c_str())) return failed();
  watches_->remove_watch(path, token);
  return 0;
}

int XenStore::fd() const { return watches_ ? watches_->fd() : -1; }

std::expected<WatchEvent, int> XenStore::read_watch() {
  if (handle_ == nullptr) return std::unexpected(ENOTCONN);
  auto event = watches_->pop();
  if (!event && event.error() == EINVAL) {
    // With nothing queued, libxenstore answers EAGAIN while connected and EINVAL once its reader
    // thread has closed the socket (the server hung up).
    errno = ECONNRESET;
    return std::unexpected(failed());
  }
  return event;
}

WatchQueueStats XenStore::watch_stats() const { return watches_ ? watches_->stats() : WatchQueueStats{}; }

}  // namespace pvback::xenbus
