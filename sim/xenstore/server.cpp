#include "sim/xenstore/server.hpp"

#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <atomic>
#include <cstring>
#include <map>
#include <mutex>
#include <string>
#include <string_view>
#include <system_error>
#include <vector>

#include "base/log.hpp"
#include "base/unique_fd.hpp"
#include "grant/sim_layout.hpp"
#include "sim/xenstore/protocol.hpp"

namespace pvback::sim {

namespace {

constexpr std::size_t kMaxConnectionsPerGuest = 64;
constexpr std::size_t kReadChunk = 64 * 1024;

constexpr std::uint64_t kStopKey = 0;
constexpr std::uint64_t kListenerKeyBase = 1;  // + domid
constexpr std::uint64_t kConnectionKeyBase = std::uint64_t{1} << 32;

// A client socket; what the protocol keeps of it (caller, output queue, watches, transactions)
// is the xs::Session it is.
struct Connection : xs::Session {
  std::uint64_t key = 0;
  UniqueFd fd;
  std::string in;  // received, not yet a whole message (or held back while output is queued)
  std::uint32_t epoll_events = 0;
  pid_t peer_pid = 0;  // SO_PEERCRED at accept
};

struct Listener {
  UniqueFd fd;
  std::filesystem::path path;
};

void bind_listener(Listener& listener, const std::filesystem::path& path, mode_t mode) {
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  const std::string text = path.string();
  if (text.size() >= sizeof(addr.sun_path))
    throw std::system_error(ENAMETOOLONG, std::generic_category(), "socket path too long: " + text);
  std::memcpy(addr.sun_path, text.c_str(), text.size() + 1);
  UniqueFd fd(::socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0));
  if (!fd) throw std::system_error(errno, std::generic_category(), "socket");
  ::unlink(text.c_str());  // a previous run's socket
  if (::bind(fd.get(), reinterpret_cast<const sockaddr*>(&addr), sizeof(addr)) != 0)
    throw std::system_error(errno, std::generic_category(), "bind " + text);
  if (mode != 0) ::chmod(text.c_str(), mode);
  if (::listen(fd.get(), 64) != 0) throw std::system_error(errno, std::generic_category(), "listen " + text);
  listener.fd = std::move(fd);
  listener.path = path;
}

}  // namespace

class XenStoreServer::Impl {
 public:
  explicit Impl(std::filesystem::path run_dir) : run_dir_(std::move(run_dir)) {
    std::filesystem::create_directories(run_dir_);
    epoll_.reset(::epoll_create1(EPOLL_CLOEXEC));
    if (!epoll_) throw std::system_error(errno, std::generic_category(), "epoll_create1");
    stop_fd_.reset(::eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC));
    if (!stop_fd_) throw std::system_error(errno, std::generic_category(), "eventfd");
    add_to_epoll(stop_fd_.get(), kStopKey, EPOLLIN);
    // Only root may act as Dom0, as with xenstored's own socket.
    bind_listener(listeners_[0], sim_layout::xenstore_socket(run_dir_), 0600);
    add_to_epoll(listeners_[0].fd.get(), kListenerKeyBase, EPOLLIN);
  }

  ~Impl() {
    for (auto& [domid, listener] : listeners_) ::unlink(listener.path.c_str());
  }

  void stop() {
    stop_requested_.store(true);
    const std::uint64_t one = 1;
    [[maybe_unused]] auto written = ::write(stop_fd_.get(), &one, sizeof(one));
  }

  void run() {
    epoll_event events[64];
    while (!stop_requested_.load()) {
      const int n = ::epoll_wait(epoll_.get(), events, 64, -1);
      if (n < 0) {
        if (errno == EINTR) continue;
        PVBACK_LOG(Error, "xenstore: epoll_wait: %s", strerror(errno));
        break;
      }
      for (int i = 0; i < n; ++i) dispatch(events[i]);
      flush_and_reap();
    }
    // The guests' sockets go away with the daemon; Dom0's stays until destruction.
    std::vector<DomId> guests;
    for (const auto& [domid, listener] : listeners_)
      if (domid != 0) guests.push_back(domid);
    for (DomId domid : guests) close_guest_listener(domid);
    for (auto& [key, conn] : connections_) protocol_.detach(*conn);
    connections_.clear();
    std::lock_guard lock(peers_mutex_);
    dom0_peers_.clear();
  }

 private:
  void add_to_epoll(int fd, std::uint64_t key, std::uint32_t events) {
    epoll_event ev{};
    ev.events = events;
    ev.data.u64 = key;
    if (::epoll_ctl(epoll_.get(), EPOLL_CTL_ADD, fd, &ev) != 0)
      throw std::system_error(errno, std::generic_category(), "epoll_ctl");
  }

  void dispatch(const epoll_event& ev) {
    const std::uint64_t key = ev.data.u64;
    if (key == kStopKey) return;
    if (key < kConnectionKeyBase) {
      accept_on(static_cast<DomId>(key - kListenerKeyBase));
      return;
    }
    auto it = connections_.find(key);
    if (it == connections_.end()) return;
    Connection& conn = *it->second;
    if (conn.dead) return;
    if (ev.events & EPOLLOUT) flush(conn);
    if (ev.events & (EPOLLIN | EPOLLHUP | EPOLLERR)) read_from(conn);
  }

  void accept_on(DomId domid) {
    auto it = listeners_.find(domid);
    if (it == listeners_.end()) return;
    for (;;) {
      UniqueFd fd(::accept4(it->second.fd.get(), nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC));
      if (!fd) {
        if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR)
          PVBACK_LOG_RATELIMITED(Warning, "xenstore: accept: %s", strerror(errno));
        return;
      }
      if (domid != 0 && connections_of(domid) >= kMaxConnectionsPerGuest) {
        PVBACK_LOG_RATELIMITED(Warning, "xenstore: domain %u has too many connections", domid);
        continue;
      }
      auto conn = std::make_unique<Connection>();
      conn->key = kConnectionKeyBase + next_connection_serial_++;
      conn->caller = xs::Caller{domid, domid == 0};
      ucred cred{};
      socklen_t len = sizeof cred;
      if (::getsockopt(fd.get(), SOL_SOCKET, SO_PEERCRED, &cred, &len) == 0) conn->peer_pid = cred.pid;
      conn->fd = std::move(fd);
      conn->epoll_events = EPOLLIN;
      add_to_epoll(conn->fd.get(), conn->key, conn->epoll_events);
      protocol_.attach(*conn);
      if (domid == 0) {
        std::lock_guard lock(peers_mutex_);
        dom0_peers_[conn->key] = conn->peer_pid;
      }
      connections_.emplace(conn->key, std::move(conn));
    }
  }

  std::size_t connections_of(DomId domid) const {
    std::size_t count = 0;
    for (const auto& [key, conn] : connections_)
      if (!conn->dead && !conn->caller.privileged && conn->caller.domid == domid) ++count;
    return count;
  }

  void read_from(Connection& conn) {
    if (conn.queued() >= xs::kPauseInputAt) {
      update_epoll(conn);
      return;
    }
    const std::size_t old_size = conn.in.size();
    conn.in.resize(old_size + kReadChunk);
    const ssize_t got = ::recv(conn.fd.get(), conn.in.data() + old_size, kReadChunk, 0);
    if (got <= 0) {
      conn.in.resize(old_size);
      if (got < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)) return;
      conn.dead = true;  // EOF or error
      return;
    }
    conn.in.resize(old_size + static_cast<std::size_t>(got));
    process_input(conn);
  }

  // Handles every complete message buffered, unless the client stopped reading our replies.
  void process_input(Connection& conn) {
    conn.in.erase(0, protocol_.consume(conn, conn.in));
    update_epoll(conn);
  }

  void update_epoll(Connection& conn) {
    if (conn.dead) return;
    std::uint32_t wanted = 0;
    if (conn.queued() < xs::kPauseInputAt) wanted |= EPOLLIN;
    if (conn.queued() > 0) wanted |= EPOLLOUT;
    if (wanted == conn.epoll_events) return;
    epoll_event ev{};
    ev.events = wanted;
    ev.data.u64 = conn.key;
    if (::epoll_ctl(epoll_.get(), EPOLL_CTL_MOD, conn.fd.get(), &ev) != 0) {
      conn.dead = true;
      return;
    }
    conn.epoll_events = wanted;
  }

  void flush(Connection& conn) {
    while (conn.queued() > 0) {
      const ssize_t sent =
          ::send(conn.fd.get(), conn.out.data() + conn.out_sent, conn.queued(), MSG_NOSIGNAL | MSG_DONTWAIT);
      if (sent < 0) {
        if (errno == EINTR) continue;
        if (errno != EAGAIN && errno != EWOULDBLOCK) conn.dead = true;
        break;
      }
      conn.out_sent += static_cast<std::size_t>(sent);
    }
    if (conn.out_sent == conn.out.size()) {
      conn.out.clear();
      conn.out_sent = 0;
    } else if (conn.out_sent > xs::kPauseInputAt) {
      conn.out.erase(0, conn.out_sent);
      conn.out_sent = 0;
    }
    // Input held back while the queue was full can go on now.
    if (!conn.dead && conn.queued() < xs::kPauseInputAt && !conn.in.empty()) process_input(conn);
    update_epoll(conn);
  }

  void flush_and_reap() {
    for (auto& [key, conn] : connections_)
      if (!conn->dead && conn->queued() > 0) flush(*conn);
    std::erase_if(connections_, [this](const auto& entry) {
      if (!entry.second->dead) return false;
      protocol_.detach(*entry.second);
      std::lock_guard lock(peers_mutex_);
      dom0_peers_.erase(entry.first);
      return true;
    });
  }

 public:
  std::vector<pid_t> dom0_client_pids() const {
    std::lock_guard lock(peers_mutex_);
    std::vector<pid_t> pids;
    for (const auto& [key, pid] : dom0_peers_) pids.push_back(pid);
    return pids;
  }

 private:

  // The guest's own socket, from INTRODUCE until RELEASE (the protocol's domain hooks).
  int open_guest_listener(DomId domid) {
    try {
      const auto path = sim_layout::guest_xenstore_socket(run_dir_, domid);
      std::filesystem::create_directories(path.parent_path());
      Listener listener;
      bind_listener(listener, path, 0);
      add_to_epoll(listener.fd.get(), kListenerKeyBase + domid, EPOLLIN);
      listeners_[domid] = std::move(listener);
    } catch (const std::exception& e) {
      PVBACK_LOG(Error, "xenstore: cannot create the socket of domain %u: %s", domid, e.what());
      return EIO;
    }
    return 0;
  }

  void close_guest_listener(DomId domid) {
    auto it = listeners_.find(domid);
    if (it == listeners_.end()) return;
    std::error_code ec;
    std::filesystem::remove(it->second.path, ec);
    std::filesystem::remove(it->second.path.parent_path(), ec);
    listeners_.erase(it);
  }

  std::filesystem::path run_dir_;
  UniqueFd epoll_;
  UniqueFd stop_fd_;
  std::atomic<bool> stop_requested_{false};
  std::map<DomId, Listener> listeners_;  // 0 = the Dom0 socket
  std::map<std::uint64_t, std::unique_ptr<Connection>> connections_;
  std::uint64_t next_connection_serial_ = 0;
  mutable std::mutex peers_mutex_;
  std::map<std::uint64_t, pid_t> dom0_peers_;  // the Dom0 socket's live connections' peers
  // Last: its hooks use listeners_ and epoll_, so it goes first. Every connection in
  // connections_ is attached to it, and detached before it is destroyed.
  xs::Protocol protocol_{{[this](DomId domid) { return open_guest_listener(domid); },
                          [this](DomId domid) { close_guest_listener(domid); }}};
};

XenStoreServer::XenStoreServer(std::filesystem::path run_dir) : impl_(std::make_unique<Impl>(std::move(run_dir))) {}
XenStoreServer::~XenStoreServer() = default;
void XenStoreServer::run() { impl_->run(); }
void XenStoreServer::stop() { impl_->stop(); }
std::vector<pid_t> XenStoreServer::dom0_client_pids() const { return impl_->dom0_client_pids(); }

}  // namespace pvback::sim