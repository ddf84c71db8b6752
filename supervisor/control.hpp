// The host daemon's control socket, which an operator's tool (pvbackctl) talks to: an AF_UNIX
// SOCK_SEQPACKET socket (mode 0600, so root only) where each message is one request and gets one
// answer.
//
// A request is one line of words: "<version> <command> [<argument>...]", version 1:
//   1 list            every device: {"version":1,"ok":true,"devices":[{...}, ...]}
//   1 stats vbd-5-768 the device's statistics document: {"version":1,"ok":true,"stats":{...}}
//   1 info vbd-5-768  what the backend advertised and the frontend wrote (their XenStore
//                     directories' values) and the statistics document: {..., "info":{...}}
//   1 restart vif-5-0 a new data plane for a device served in the host daemon, resuming its rings
//                     from the old one's recovery records: {..., "restart":{"old_pid":N,
//                     "data_plane_pid":M}}; refused for a device with a backend process of its own
// Anything else is answered {"version":1,"ok":false,"error":"..."}. The server never waits on a
// client: a request is read only when it is there, and a client that does not take its answer
// (its socket buffer full) is disconnected.
#pragma once
#include <poll.h>

#include <expected>
#include <functional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "base/unique_fd.hpp"

namespace pvback::supervisor {

inline constexpr unsigned kControlProtocolVersion = 1;

// A parsed request: the command and its arguments, or the error to answer with.
struct ControlRequest {
  std::string command;
  std::vector<std::string> args;
};
std::expected<ControlRequest, std::string> parse_control_request(std::string_view message);
// The answers' envelopes: `body` is the members after "ok" (e.g. "\"devices\": [...]").
std::string control_answer(const std::string& body);
std::string control_error(const std::string& why);

class ControlServer {
 public:
  // Binds `path` (a stale socket of a dead predecessor is replaced; one a live daemon answers on
  // is not: EADDRINUSE). An errno value on failure.
  static std::expected<ControlServer, int> open(const std::string& path);
  ControlServer() = default;
  ControlServer(ControlServer&&) = default;
  ControlServer& operator=(ControlServer&&) = default;
  ~ControlServer();

  // Appends the fds to poll (the listening socket and every client's).
  void add_poll_fds(std::vector<pollfd>& fds) const;
  // After poll: accepts, reads requests and sends `answer(request)` for each. `fds` is what
  // add_poll_fds appended (with revents set).
  void handle(std::span<const pollfd> fds, const std::function<std::string(const ControlRequest&)>& answer);
  const std::string& path() const { return path_; }

 private:
  void accept_clients();
  UniqueFd listen_;
  std::string path_;
  std::vector<UniqueFd> clients_;
};

}  // namespace pvback::supervisor
