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
#include <xen/io/xs_wire.h>

#include <atomic>
#include <charconv>
#include <cstring>
#include <map>
#include <set>
#include <string>
#include <string_view>
#include <system_error>
#include <vector>

#include "base/log.hpp"
#include "base/unique_fd.hpp"
#include "grant/sim_layout.hpp"
#include "sim/xenstore/store.hpp"

namespace pvback::sim {

namespace {

// Bounds that keep one misbehaving client from hurting the daemon or other clients.
constexpr std::size_t kMaxWatchesGuest = 128;
constexpr std::size_t kMaxWatchesDom0 = 4096;
// Too many open transactions get ENOSPC, as cxenstored's transaction quota does.
constexpr std::size_t kMaxTransactionsGuest = 10;
constexpr std::size_t kMaxTransactionsDom0 = 256;
constexpr std::size_t kMaxConnectionsPerGuest = 64;
// Replies wait while this much output is queued (the client is not reading); watch events are
// queued regardless, and a client whose queue grows past the hard limit is disconnected.
constexpr std::size_t kPauseInputAt = 64 * 1024;
constexpr std::size_t kMaxQueuedOutput = 1024 * 1024;
constexpr std::size_t kReadChunk = 64 * 1024;
constexpr DomId kFirstReservedDomId = 0x7ff0;

constexpr std::uint64_t kStopKey = 0;
constexpr std::uint64_t kListenerKeyBase = 1;  // + domid
constexpr std::uint64_t kConnectionKeyBase = std::uint64_t{1} << 32;

const char* error_name(int err) {
  for (const auto& entry : xsd_errors)
    if (entry.errnum == err) return entry.errstring;
  return "EINVAL";
}

std::optional<unsigned> parse_number(std::string_view text, unsigned max) {
  unsigned value = 0;
  const char* end = text.data() + text.size();
  auto [ptr, ec] = std::from_chars(text.data(), end, value);
  if (text.empty() || ec != std::errc() || ptr != end || value > max) return std::nullopt;
  return value;
}

// Splits a payload of NUL-terminated strings. Fails unless the payload is exactly that.
std::optional<std::vector<std::string_view>> split_strings(std::string_view payload) {
  std::vector<std::string_view> out;
  if (payload.empty()) return out;
  if (payload.back() != '\0') return std::nullopt;
  std::size_t start = 0;
  while (start < payload.size()) {
    const std::size_t nul = payload.find('\0', start);
    out.push_back(payload.substr(start, nul - start));
    start = nul + 1;
  }
  return out;
}

struct Watch {
  std::string given_path;  // as registered: events report paths in the same (relative) form
  std::string abs_path;    // or the special "@..." name
  std::string token;
  bool relative = false;
};

struct Connection {
  std::uint64_t key = 0;
  UniqueFd fd;
  xs::Caller caller;
  std::string in;
  std::size_t in_consumed = 0;
  std::string out;
  std::size_t out_sent = 0;
  std::vector<Watch> watches;
  std::map<std::uint32_t, std::unique_ptr<xs::Transaction>> transactions;
  std::uint32_t epoll_events = 0;
  bool dead = false;

  std::size_t queued() const { return out.size() - out_sent; }
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
    connections_.clear();
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
      conn->fd = std::move(fd);
      conn->epoll_events = EPOLLIN;
      add_to_epoll(conn->fd.get(), conn->key, conn->epoll_events);
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
    if (conn.queued() >= kPauseInputAt) {
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
    constexpr std::size_t kHeader = sizeof(xsd_sockmsg);
    while (!conn.dead && conn.queued() < kPauseInputAt) {
      const std::size_t available = conn.in.size() - conn.in_consumed;
      if (available < kHeader) break;
      xsd_sockmsg header;
      std::memcpy(&header, conn.in.data() + conn.in_consumed, kHeader);
      if (header.len > XENSTORE_PAYLOAD_MAX) {
        PVBACK_LOG_RATELIMITED(Warning, "xenstore: dom%u sent a %u-byte payload, disconnecting",
                               conn.caller.domid, header.len);
        conn.dead = true;
        return;
      }
      if (available < kHeader + header.len) break;
      const std::string payload(conn.in.data() + conn.in_consumed + kHeader, header.len);
      conn.in_consumed += kHeader + header.len;
      handle_message(conn, header, payload);
    }
    conn.in.erase(0, conn.in_consumed);
    conn.in_consumed = 0;
    update_epoll(conn);
  }

  void update_epoll(Connection& conn) {
    if (conn.dead) return;
    std::uint32_t wanted = 0;
    if (conn.queued() < kPauseInputAt) wanted |= EPOLLIN;
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
    } else if (conn.out_sent > kPauseInputAt) {
      conn.out.erase(0, conn.out_sent);
      conn.out_sent = 0;
    }
    // Input held back while the queue was full can go on now.
    if (!conn.dead && conn.queued() < kPauseInputAt && conn.in.size() > conn.in_consumed) process_input(conn);
    update_epoll(conn);
  }

  void flush_and_reap() {
    for (auto& [key, conn] : connections_)
      if (!conn->dead && conn->queued() > 0) flush(*conn);
    std::erase_if(connections_, [](const auto& entry) { return entry.second->dead; });
  }

  // ---- replies and events

  void send_message(Connection& conn, std::uint32_t type, std::uint32_t req_id, std::uint32_t tx_id,
                    std::string_view payload) {
    if (conn.dead) return;
    if (conn.queued() + sizeof(xsd_sockmsg) + payload.size() > kMaxQueuedOutput) {
      PVBACK_LOG_RATELIMITED(Warning, "xenstore: dom%u does not read its connection, disconnecting",
                             conn.caller.domid);
      conn.dead = true;
      return;
    }
    xsd_sockmsg header{type, req_id, tx_id, static_cast<std::uint32_t>(payload.size())};
    conn.out.append(reinterpret_cast<const char*>(&header), sizeof(header));
    conn.out.append(payload);
  }

  void reply(Connection& conn, const xsd_sockmsg& request, std::string_view payload) {
    send_message(conn, request.type, request.req_id, request.tx_id, payload);
  }
  void reply_string(Connection& conn, const xsd_sockmsg& request, std::string text) {
    text.push_back('\0');
    reply(conn, request, text);
  }
  void reply_ok(Connection& conn, const xsd_sockmsg& request) { reply_string(conn, request, "OK"); }
  void reply_error(Connection& conn, const xsd_sockmsg& request, int err) {
    std::string text = error_name(err);
    text.push_back('\0');
    send_message(conn, XS_ERROR, request.req_id, request.tx_id, text);
  }
  void reply_status(Connection& conn, const xsd_sockmsg& request, int err) {
    if (err == 0)
      reply_ok(conn, request);
    else
      reply_error(conn, request, err);
  }

  void send_watch_event(Connection& conn, const Watch& watch, std::string_view abs_path) {
    std::string payload;
    if (watch.relative) {
      const std::string home = xs::domain_path(conn.caller.domid) + "/";
      payload = abs_path.substr(home.size());
    } else {
      payload = abs_path;
    }
    payload.push_back('\0');
    payload += watch.token;
    payload.push_back('\0');
    send_message(conn, XS_WATCH_EVENT, 0, 0, payload);
  }

  static bool watch_matches(const Watch& watch, const xs::Change& change) {
    if (watch.abs_path == change.path) return true;
    if (change.exact_only || change.path.front() != '/') return false;
    if (watch.abs_path == "/") return true;
    return change.path.size() > watch.abs_path.size() && change.path.starts_with(watch.abs_path) &&
           change.path[watch.abs_path.size()] == '/';
  }

  void fire(const std::vector<xs::Change>& changes) {
    for (const auto& change : changes) {
      for (auto& [key, conn] : connections_) {
        if (conn->dead || !xs::may_read(change.perms, conn->caller)) continue;
        for (const auto& watch : conn->watches) {
          if (!watch_matches(watch, change)) continue;
          send_watch_event(*conn, watch, change.path);
          if (conn->dead) break;
        }
      }
    }
  }

  // ---- requests

  // The transaction a request names, or nullptr for tx_id 0. Unknown ids are ENOENT.
  std::expected<xs::Transaction*, int> transaction_of(Connection& conn, std::uint32_t tx_id) {
    if (tx_id == 0) return nullptr;
    auto it = conn.transactions.find(tx_id);
    if (it == conn.transactions.end()) return std::unexpected(ENOENT);
    return it->second.get();
  }

  void handle_message(Connection& conn, const xsd_sockmsg& request, const std::string& payload) {
    switch (request.type) {
      case XS_READ:
      case XS_WRITE:
      case XS_MKDIR:
      case XS_RM:
      case XS_DIRECTORY:
      case XS_DIRECTORY_PART:
      case XS_GET_PERMS:
      case XS_SET_PERMS:
        handle_node_request(conn, request, payload);
        return;
      case XS_WATCH:
        handle_watch(conn, request, payload);
        return;
      case XS_UNWATCH:
        handle_unwatch(conn, request, payload);
        return;
      case XS_TRANSACTION_START:
        handle_transaction_start(conn, request);
        return;
      case XS_TRANSACTION_END:
        handle_transaction_end(conn, request, payload);
        return;
      case XS_GET_DOMAIN_PATH:
      case XS_IS_DOMAIN_INTRODUCED:
      case XS_INTRODUCE:
      case XS_RELEASE:
        handle_domain_request(conn, request, payload);
        return;
      case XS_RESET_WATCHES:
        conn.watches.clear();
        conn.transactions.clear();
        reply_ok(conn, request);
        return;
      case XS_CONTROL:
      case XS_RESUME:
      case XS_SET_TARGET:
        reply_error(conn, request, ENOSYS);
        return;
      default:
        reply_error(conn, request, EINVAL);
        return;
    }
  }

  void handle_node_request(Connection& conn, const xsd_sockmsg& request, const std::string& payload) {
    auto tx = transaction_of(conn, request.tx_id);
    if (!tx) return reply_error(conn, request, tx.error());

    // WRITE carries the value after the path's NUL, unterminated; the others are string lists.
    std::vector<std::string_view> args;
    std::string_view value;
    if (request.type == XS_WRITE) {
      const std::size_t nul = payload.find('\0');
      if (nul == std::string::npos) return reply_error(conn, request, EINVAL);
      args.push_back(std::string_view(payload).substr(0, nul));
      value = std::string_view(payload).substr(nul + 1);
    } else {
      auto split = split_strings(payload);
      if (!split || split->empty()) return reply_error(conn, request, EINVAL);
      args = std::move(*split);
    }
    const std::size_t expected_args = request.type == XS_DIRECTORY_PART ? 2 : 1;
    if (request.type == XS_SET_PERMS ? args.size() < 2 : args.size() != expected_args)
      return reply_error(conn, request, EINVAL);

    auto path = xs::canonical_path(args[0], conn.caller.domid);
    if (!path) return reply_error(conn, request, path.error());

    std::vector<xs::Change> changes;
    switch (request.type) {
      case XS_READ: {
        auto result = store_.read(*tx, *path, conn.caller);
        if (!result) return reply_error(conn, request, result.error());
        return reply(conn, request, *result);
      }
      case XS_WRITE:
        reply_status(conn, request, store_.write(*tx, *path, value, conn.caller, changes));
        break;
      case XS_MKDIR:
        reply_status(conn, request, store_.mkdir(*tx, *path, conn.caller, changes));
        break;
      case XS_RM:
        reply_status(conn, request, store_.rm(*tx, *path, conn.caller, changes));
        break;
      case XS_DIRECTORY: {
        auto list = store_.children(*tx, *path, conn.caller);
        if (!list) return reply_error(conn, request, list.error());
        // libxenstore falls back to DIRECTORY_PART on E2BIG.
        if (list->names.size() > XENSTORE_PAYLOAD_MAX) return reply_error(conn, request, E2BIG);
        return reply(conn, request, list->names);
      }
      case XS_DIRECTORY_PART: {
        auto offset = parse_number(args[1], UINT32_MAX);
        if (!offset) return reply_error(conn, request, EINVAL);
        auto list = store_.children(*tx, *path, conn.caller);
        if (!list) return reply_error(conn, request, list.error());
        return reply(conn, request, directory_part(*list, *offset));
      }
      case XS_GET_PERMS: {
        auto perms = store_.get_perms(*tx, *path, conn.caller);
        if (!perms) return reply_error(conn, request, perms.error());
        std::string text;
        for (const auto& perm : *perms) {
          text += xs::format_perm(perm);
          text.push_back('\0');
        }
        return reply(conn, request, text);
      }
      case XS_SET_PERMS: {
        xs::PermList perms;
        for (std::size_t i = 1; i < args.size(); ++i) {
          auto perm = xs::parse_perm(args[i]);
          if (!perm) return reply_error(conn, request, EINVAL);
          perms.push_back(*perm);
        }
        reply_status(conn, request, store_.set_perms(*tx, *path, perms, conn.caller, changes));
        break;
      }
    }
    fire(changes);
  }

  // "<generation>\0" then whole names from byte `offset` of the child list while they fit; an
  // extra "\0" marks the end of the list.
  static std::string directory_part(const xs::Store::ChildList& list, std::size_t offset) {
    std::string out = std::to_string(list.generation);
    out.push_back('\0');
    if (offset >= list.names.size()) {
      out.push_back('\0');
      return out;
    }
    const std::size_t room = XENSTORE_PAYLOAD_MAX - out.size() - 1;
    std::size_t end = offset;
    while (end < list.names.size()) {
      const std::size_t next = list.names.find('\0', end) + 1;
      if (next - offset > room) break;
      end = next;
    }
    out.append(list.names, offset, end - offset);
    if (end == list.names.size()) out.push_back('\0');
    return out;
  }

  void handle_watch(Connection& conn, const xsd_sockmsg& request, const std::string& payload) {
    auto args = split_strings(payload);
    if (!args || args->size() != 2) return reply_error(conn, request, EINVAL);
    Watch watch;
    watch.given_path = (*args)[0];
    watch.token = (*args)[1];
    if (watch.given_path.starts_with('@')) {
      if (watch.given_path != "@introduceDomain" && watch.given_path != "@releaseDomain")
        return reply_error(conn, request, EINVAL);
      watch.abs_path = watch.given_path;
    } else {
      auto path = xs::canonical_path(watch.given_path, conn.caller.domid);
      if (!path) return reply_error(conn, request, path.error());
      watch.abs_path = *path;
      watch.relative = !watch.given_path.starts_with('/');
    }
    for (const auto& existing : conn.watches)
      if (existing.abs_path == watch.abs_path && existing.token == watch.token)
        return reply_error(conn, request, EEXIST);
    const std::size_t limit = conn.caller.privileged ? kMaxWatchesDom0 : kMaxWatchesGuest;
    if (conn.watches.size() >= limit) return reply_error(conn, request, E2BIG);
    conn.watches.push_back(std::move(watch));
    reply_ok(conn, request);
    // Every new watch fires once, so the client can read the initial state.
    send_watch_event(conn, conn.watches.back(), conn.watches.back().abs_path);
  }

  void handle_unwatch(Connection& conn, const xsd_sockmsg& request, const std::string& payload) {
    auto args = split_strings(payload);
    if (!args || args->size() != 2) return reply_error(conn, request, EINVAL);
    std::string abs_path((*args)[0]);
    if (!abs_path.starts_with('@')) {
      auto path = xs::canonical_path(abs_path, conn.caller.domid);
      if (!path) return reply_error(conn, request, path.error());
      abs_path = *path;
    }
    const auto removed = std::erase_if(conn.watches, [&](const Watch& watch) {
      return watch.abs_path == abs_path && watch.token == (*args)[1];
    });
    reply_status(conn, request, removed ? 0 : ENOENT);
  }

  void handle_transaction_start(Connection& conn, const xsd_sockmsg& request) {
    if (request.tx_id != 0) return reply_error(conn, request, EBUSY);
    const std::size_t limit = conn.caller.privileged ? kMaxTransactionsDom0 : kMaxTransactionsGuest;
    if (conn.transactions.size() >= limit) return reply_error(conn, request, ENOSPC);
    std::uint32_t id;
    do {
      id = next_transaction_id_++;
    } while (id == 0 || conn.transactions.contains(id));
    conn.transactions.emplace(id, store_.begin());
    reply_string(conn, request, std::to_string(id));
  }

  void handle_transaction_end(Connection& conn, const xsd_sockmsg& request, const std::string& payload) {
    auto args = split_strings(payload);
    if (!args || args->size() != 1 || ((*args)[0] != "T" && (*args)[0] != "F"))
      return reply_error(conn, request, EINVAL);
    auto it = conn.transactions.find(request.tx_id);
    if (request.tx_id == 0 || it == conn.transactions.end()) return reply_error(conn, request, ENOENT);
    std::unique_ptr<xs::Transaction> tx = std::move(it->second);
    conn.transactions.erase(it);
    if ((*args)[0] == "F") return reply_ok(conn, request);
    std::vector<xs::Change> changes;
    const int err = store_.commit(*tx, changes);
    reply_status(conn, request, err);
    fire(changes);
  }

  void handle_domain_request(Connection& conn, const xsd_sockmsg& request, const std::string& payload) {
    auto args = split_strings(payload);
    const std::size_t expected_args = request.type == XS_INTRODUCE ? 3 : 1;
    if (!args || args->size() != expected_args) return reply_error(conn, request, EINVAL);
    auto domid = parse_number((*args)[0], kFirstReservedDomId - 1);
    if (!domid) return reply_error(conn, request, EINVAL);
    switch (request.type) {
      case XS_GET_DOMAIN_PATH:
        return reply_string(conn, request, xs::domain_path(static_cast<DomId>(*domid)));
      case XS_IS_DOMAIN_INTRODUCED:
        return reply_string(conn, request, *domid == 0 || introduced_.contains(*domid) ? "T" : "F");
      case XS_INTRODUCE: {
        if (!conn.caller.privileged) return reply_error(conn, request, EACCES);
        if (*domid == 0 || !parse_number((*args)[1], UINT32_MAX) || !parse_number((*args)[2], UINT32_MAX))
          return reply_error(conn, request, EINVAL);
        const bool was_introduced = introduced_.contains(*domid);
        const int err = introduce(static_cast<DomId>(*domid));
        reply_status(conn, request, err);
        if (err == 0 && !was_introduced) fire({xs::Change{"@introduceDomain", true, xs::PermList{{0, 'n'}}}});
        return;
      }
      case XS_RELEASE: {
        if (!conn.caller.privileged) return reply_error(conn, request, EACCES);
        if (*domid == 0) return reply_error(conn, request, EINVAL);
        const int err = release(static_cast<DomId>(*domid));
        reply_status(conn, request, err);
        if (err == 0) fire({xs::Change{"@releaseDomain", true, xs::PermList{{0, 'n'}}}});
        return;
      }
    }
  }

  int introduce(DomId domid) {
    if (introduced_.contains(domid)) return 0;  // re-introduction after a restart of the toolstack
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
    introduced_.insert(domid);
    return 0;
  }

  int release(DomId domid) {
    if (!introduced_.erase(domid)) return ENOENT;
    close_guest_listener(domid);
    for (auto& [key, conn] : connections_)
      if (!conn->caller.privileged && conn->caller.domid == domid) conn->dead = true;
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
  std::uint32_t next_transaction_id_ = 1;
  std::set<unsigned> introduced_;
  xs::Store store_;
};

XenStoreServer::XenStoreServer(std::filesystem::path run_dir) : impl_(std::make_unique<Impl>(std::move(run_dir))) {}
XenStoreServer::~XenStoreServer() = default;
void XenStoreServer::run() { impl_->run(); }
void XenStoreServer::stop() { impl_->stop(); }

}  // namespace pvback::sim
