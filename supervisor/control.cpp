#include "supervisor/control.hpp"

#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

#include "base/fd_passing.hpp"
#include "base/log.hpp"
#include "base/text_file.hpp"

namespace pvback::supervisor {
namespace {

// More clients than an operator's tools would ever hold open: the rest wait in the backlog.
constexpr std::size_t kMaxClients = 16;
constexpr std::size_t kMaxRequest = 1024;
constexpr std::size_t kMaxWords = 8;
// An answer is one message: room for every device's entry of `list`.
constexpr int kSendBuffer = 4 << 20;

}  // namespace

std::expected<ControlRequest, std::string> parse_control_request(std::string_view message) {
  if (!message.empty() && message.back() == '\n') message.remove_suffix(1);
  std::vector<std::string> words;
  std::size_t at = 0;
  while (at < message.size()) {
    if (message[at] == ' ') {
      ++at;
      continue;
    }
    const std::size_t end = std::min(message.find(' ', at), message.size());
    std::string word(message.substr(at, end - at));
    if (!std::all_of(word.begin(), word.end(), [](char c) { return c > 0x20 && c < 0x7f && c != '"' && c != '\\'; }))
      return std::unexpected("a request is printable words separated by spaces");
    words.push_back(std::move(word));
    if (words.size() > kMaxWords) return std::unexpected("too many words");
    at = end;
  }
  if (words.empty()) return std::unexpected("empty request");
  if (words[0] != std::to_string(kControlProtocolVersion))
    return std::unexpected("unsupported protocol version (this daemon speaks " +
                           std::to_string(kControlProtocolVersion) + ")");
  if (words.size() < 2) return std::unexpected("no command");
  ControlRequest request;
  request.command = words[1];
  request.args.assign(words.begin() + 2, words.end());
  return request;
}

std::string control_answer(const std::string& body) {
  return "{\"version\": " + std::to_string(kControlProtocolVersion) + ", \"ok\": true" +
         (body.empty() ? "" : ", " + body) + "}\n";
}

std::string control_error(const std::string& why) {
  return "{\"version\": " + std::to_string(kControlProtocolVersion) + ", \"ok\": false, \"error\": " +
         json_string(why) + "}\n";
}

std::expected<ControlServer, int> ControlServer::open(const std::string& path) {
  auto addr = unix_address(path);
  if (!addr) return std::unexpected(addr.error());
  // A socket a live daemon answers on stays; a dead one's is replaced.
  if (connect_seqpacket(path)) return std::unexpected(EADDRINUSE);
  ::unlink(path.c_str());
  ControlServer server;
  server.listen_.reset(::socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC | SOCK_NONBLOCK, 0));
  if (!server.listen_) return std::unexpected(errno);
  // The mode before bind, so the socket is never reachable by anyone but root.
  if (::fchmod(server.listen_.get(), 0600) != 0) return std::unexpected(errno);
  if (::bind(server.listen_.get(), reinterpret_cast<const sockaddr*>(&*addr), sizeof *addr) != 0)
    return std::unexpected(errno);
  if (::chmod(path.c_str(), 0600) != 0 || ::listen(server.listen_.get(), 16) != 0) {
    const int e = errno;
    ::unlink(path.c_str());
    return std::unexpected(e);
  }
  server.path_ = path;
  return server;
}

ControlServer::~ControlServer() {
  if (listen_) ::unlink(path_.c_str());
}

void ControlServer::add_poll_fds(std::vector<pollfd>& fds) const {
  if (!listen_) return;
  fds.push_back({listen_.get(), clients_.size() < kMaxClients ? short{POLLIN} : short{0}, 0});
  // A client waiting for an answer is polled for nothing but its end (POLLHUP, POLLERR).
  for (const auto& c : clients_) fds.push_back({c.fd.get(), c.waiting ? short{0} : short{POLLIN}, 0});
}

void ControlServer::accept_clients() {
  while (clients_.size() < kMaxClients) {
    UniqueFd client(::accept4(listen_.get(), nullptr, nullptr, SOCK_CLOEXEC | SOCK_NONBLOCK));
    if (!client) {
      if (errno != EAGAIN && errno != EINTR) PVBACK_LOG_RATELIMITED(Warning, "control socket: accept: %s", std::strerror(errno));
      return;
    }
    ::setsockopt(client.get(), SOL_SOCKET, SO_SNDBUF, &kSendBuffer, sizeof kSendBuffer);
    clients_.push_back({std::move(client), next_id_++});
  }
}

void ControlServer::handle(std::span<const pollfd> fds, const Answerer& answer) {
  if (!listen_ || fds.empty()) return;
  // fds[0] is the listening socket, fds[1..] the clients as add_poll_fds listed them. Clients are
  // neither added nor removed until the end (reply() from within answer() only marks them).
  handling_ = true;
  for (const pollfd& p : fds.subspan(1)) {
    if (p.revents == 0) continue;
    const auto c = std::ranges::find_if(clients_, [&](const Client& k) { return k.fd.get() == p.fd && !k.gone; });
    if (c == clients_.end()) continue;
    if (c->waiting) {
      // Gone before its answer: what it asked for goes on, its answer is dropped.
      if ((p.revents & (POLLHUP | POLLERR)) != 0) c->gone = true;
      continue;
    }
    char buffer[kMaxRequest + 1];
    const ssize_t got = ::recv(p.fd, buffer, sizeof buffer, MSG_DONTWAIT | MSG_TRUNC);
    if (got < 0 && (errno == EAGAIN || errno == EINTR)) continue;
    if (got <= 0) {  // the client closed (or broke) its end
      c->gone = true;
      continue;
    }
    std::optional<std::string> now;
    if (static_cast<std::size_t>(got) > kMaxRequest) {
      now = control_error("request too long");
    } else if (auto request = parse_control_request(std::string_view(buffer, static_cast<std::size_t>(got)));
               !request) {
      now = control_error(request.error());
    } else {
      c->waiting = true;
      now = answer(*request, c->id);
    }
    if (now) send_to(*c, *now);
  }
  handling_ = false;
  prune();
  if (fds[0].revents & POLLIN) accept_clients();
}

void ControlServer::reply(ClientId client, const std::string& answer) {
  const auto c = std::ranges::find_if(clients_, [&](const Client& k) { return k.id == client; });
  if (c == clients_.end() || !c->waiting) return;
  send_to(*c, answer);
  if (!handling_) prune();
}

void ControlServer::send_to(Client& c, const std::string& answer) {
  c.waiting = false;
  if (c.gone) return;
  // Never waits: a client that does not read its answers loses its connection.
  if (::send(c.fd.get(), answer.data(), answer.size(), MSG_DONTWAIT | MSG_NOSIGNAL) !=
      static_cast<ssize_t>(answer.size())) {
    PVBACK_LOG_RATELIMITED(Warning, "control socket: a client not taking its answer (%s) is disconnected",
                           std::strerror(errno));
    c.gone = true;
  }
}

void ControlServer::prune() {
  std::erase_if(clients_, [](const Client& c) { return c.gone; });
}

}  // namespace pvback::supervisor
