#include "xenbus/xenstore.hpp"

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <mutex>
#include <utility>

// xenstore.h has no extern "C" guard of its own.
extern "C" {
#include <xenstore.h>
}

#include "base/log.hpp"

namespace pvback::xenbus {
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
  // Creating the watch pipe now keeps fd() stable for the whole life of the connection.
  if (xs_fileno(handle) < 0) return std::unexpected(last_error());
  return store;
}

XenStore::XenStore(XenStore&& other) noexcept
    : handle_(std::exchange(other.handle_, nullptr)), connection_error_(other.connection_error_.exchange(0)) {}

XenStore& XenStore::operator=(XenStore&& other) noexcept {
  if (this != &other) {
    close();
    handle_ = std::exchange(other.handle_, nullptr);
    connection_error_.store(other.connection_error_.exchange(0));
  }
  return *this;
}

XenStore::~XenStore() { close(); }

void XenStore::close() {
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
  errno = 0;
  if (!xs_watch(handle_, path.c_str(), token.c_str())) return failed();
  return 0;
}

int XenStore::unwatch(const std::string& path, const std::string& token) {
  if (handle_ == nullptr) return ENOTCONN;
  errno = 0;
  if (!xs_unwatch(handle_, path.c_str(), token.c_str())) return failed();
  return 0;
}

int XenStore::fd() const { return handle_ != nullptr ? xs_fileno(handle_) : -1; }

std::expected<WatchEvent, int> XenStore::read_watch() {
  if (handle_ == nullptr) return std::unexpected(ENOTCONN);
  errno = 0;
  MallocPtr<char*> event(xs_check_watch(handle_));
  if (!event) {
    // With nothing queued, libxenstore answers EAGAIN while connected and EINVAL once its reader
    // thread has closed the socket (the server hung up).
    if (errno == EINVAL) {
      errno = ECONNRESET;
      return std::unexpected(failed());
    }
    return std::unexpected(last_error());
  }
  return WatchEvent{event.get()[XS_WATCH_PATH], event.get()[XS_WATCH_TOKEN]};
}

}  // namespace pvback::xenbus
