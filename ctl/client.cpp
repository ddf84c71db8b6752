#include "ctl/client.hpp"

#include <poll.h>
#include <sys/socket.h>

#include <cerrno>
#include <cstring>

#include "base/fd_passing.hpp"

namespace pvback::ctl {
namespace {

constexpr unsigned kProtocolVersion = 1;

}  // namespace

Error connect_error(const std::string& path, int error) {
  switch (error) {
    case ENOENT:
      return {kNotRunning, "no control socket at " + path + ": pvback-supervisor is not running (or runs with "
                           "another run directory or --control-socket; --socket names it)"};
    case ECONNREFUSED:
      return {kNotRunning, "nothing answers on " + path + ": pvback-supervisor is not running (the socket is a "
                           "dead daemon's)"};
    case EACCES:
    case EPERM:
      return {kPermission, "permission denied on " + path + ": the control socket is root's alone (mode 0600); "
                           "run pvbackctl as root"};
    case ENOTSOCK:
    case EPROTOTYPE:
      return {kNotRunning, path + " is not pvback-supervisor's control socket (" + std::strerror(error) + ")"};
    default:
      return {kNotRunning, "cannot connect to " + path + ": " + std::strerror(error)};
  }
}

std::expected<Json, Error> check_answer(const std::string& answer) {
  auto bad = [](const std::string& why) { return std::unexpected(Error{kBadAnswer, "malformed answer from pvback-supervisor: " + why}); };
  auto doc = parse_json(answer);
  if (!doc) return bad(doc.error());
  if (!doc->is(Json::Type::Object)) return bad("not a JSON object");
  const Json* version = doc->find("version");
  if (version == nullptr || version->integer() != kProtocolVersion)
    return std::unexpected(Error{kBadAnswer, "pvback-supervisor speaks protocol version " +
                                                 (version ? version->scalar() : std::string("(none)")) +
                                                 ", this pvbackctl " + std::to_string(kProtocolVersion)});
  const Json* ok = doc->find("ok");
  if (ok == nullptr || !ok->is(Json::Type::Bool)) return bad("no \"ok\"");
  if (ok->boolean) return std::move(*doc);
  const Json* error = doc->find("error");
  if (error == nullptr || !error->is(Json::Type::String)) return bad("refused without an \"error\"");
  return std::unexpected(Error{kRefused, error->text});
}

std::expected<Client, Error> Client::connect(const std::string& path) {
  auto sock = connect_seqpacket(path);
  if (!sock) return std::unexpected(connect_error(path, sock.error()));
  Client client;
  client.sock_ = std::move(*sock);
  client.path_ = path;
  return client;
}

std::expected<Json, Error> Client::request(const std::string& request, std::chrono::milliseconds timeout,
                                           std::string* raw) {
  const std::string message = std::to_string(kProtocolVersion) + " " + request;
  if (::send(sock_.get(), message.data(), message.size(), MSG_NOSIGNAL) != static_cast<ssize_t>(message.size()))
    return std::unexpected(Error{kBadAnswer, "sending to " + path_ + ": " + std::strerror(errno)});
  pollfd p{sock_.get(), POLLIN, 0};
  int ready = 0;
  do {
    ready = ::poll(&p, 1, static_cast<int>(timeout.count()));
  } while (ready < 0 && errno == EINTR);
  if (ready == 0)
    return std::unexpected(Error{kBadAnswer, "no answer from pvback-supervisor within " +
                                                 std::to_string(timeout.count() / 1000) + " s"});
  // One message is one answer: its length first, then the whole of it.
  const ssize_t length = ::recv(sock_.get(), nullptr, 0, MSG_PEEK | MSG_TRUNC);
  if (length <= 0)
    return std::unexpected(Error{kBadAnswer, length == 0 ? "pvback-supervisor closed the connection without answering"
                                                         : "reading from " + path_ + ": " + std::strerror(errno)});
  std::string answer(static_cast<std::size_t>(length), '\0');
  const ssize_t got = ::recv(sock_.get(), answer.data(), answer.size(), 0);
  if (got != length) return std::unexpected(Error{kBadAnswer, "reading from " + path_ + ": a short answer"});
  if (raw != nullptr) *raw = answer;
  return check_answer(answer);
}

}  // namespace pvback::ctl
