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
//                     from the old one's recovery records: {..., "restart":{"device":...,
//                     "old_pid":N, "data_plane_pid":M}}; refused for a device with a backend
//                     process of its own
//   1 pause vbd-5-768 [SECONDS]
//                     a vbd served in the host daemon takes no more requests from its rings,
//                     answers those in flight and flushes its storage (within SECONDS, default
//                     30): {..., "pause":{"device":..., "paused":true, "drained":N,
//                     "drain_ms":..., "flush_ms":..., "took_ms":...}}; an error means it is not
//                     paused (a drain past its timeout is resumed)
//   1 resume vbd-5-768
//                     takes its requests again: {..., "resume":{"device":..., "paused":false,
//                     "waiting":N, "paused_ms":...}}
// Anything else is answered {"version":1,"ok":false,"error":"..."}. The server never waits on a
// client: a request is read only when it is there, and a client that does not take its answer
// (its socket buffer full) is disconnected. Nor does it wait for a request that takes a while
// (restart, pause, resume): the answer comes on the client's connection when the request is done,
// the loop serving everything else meanwhile; the client's further messages wait until then, and a
// client that went away meanwhile is forgotten (what it asked for is done all the same).
#pragma once
#include <poll.h>

#include <cstdint>
#include <expected>
#include <functional>
#include <optional>
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

// A client's connection, for a later answer (ControlServer::reply).
using ClientId = std::uint64_t;
// The answer to a request now, or nothing: it is under way, and reply() will answer it.
using Answerer = std::function<std::optional<std::string>(const ControlRequest&, ClientId)>;

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
  // After poll: accepts, reads requests and sends `answer(request, client)` for each that has
  // one now. `fds` is what add_poll_fds appended (with revents set).
  void handle(std::span<const pollfd> fds, const Answerer& answer);
  // The answer to `client`'s request that answer() left under way (perhaps from within answer()).
  // A client gone meanwhile: nothing.
  void reply(ClientId client, const std::string& answer);
  const std::string& path() const { return path_; }

 private:
  struct Client {
    UniqueFd fd;
    ClientId id = 0;
    bool waiting = false;  // its request is under way: not read from until answered
    bool gone = false;     // closed, broken, or not taking its answers: dropped
  };
  void accept_clients();
  void send_to(Client& client, const std::string& answer);
  void prune();
  UniqueFd listen_;
  std::string path_;
  std::vector<Client> clients_;
  ClientId next_id_ = 1;
  bool handling_ = false;
};

}  // namespace pvback::supervisor
