// The data-plane process's side of plane/process.hpp, for every backend: what it tells its control
// part (ControlLink), its confinement (confine), and its main thread's loop while the queue
// threads serve (serve_control): orders from the control part, the control part's death (it
// serves on, orphaned, and waits for a successor to adopt it on its listening socket), adoption,
// an orderly stop, SIGTERM, and the orphan timeout.
#pragma once
#include <sys/types.h>

#include <chrono>
#include <functional>
#include <mutex>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "base/unique_fd.hpp"
#include "plane/codec.hpp"
#include "sandbox/sandbox.hpp"

namespace pvback::plane {

// The current control part, as the queue threads see it: a Fatal goes to it, or waits for the
// successor that adopts this data plane.
class ControlLink {
 public:
  ControlLink(int fd, const Protocol& protocol) : protocol_(protocol), fd_(fd) {}
  int fd() const;
  // Thread-safe; the first one is kept and sent to the control part now attached and to every one
  // that attaches later (each may die before it acted on it); later ones are dropped.
  void fatal(int error, const std::string& reason);
  // Tells the current control part (e.g. Ready). Logs a failure.
  void say(std::uint32_t type, int error, const std::string& reason = {});
  // Thread-safe: one message of the protocol's own (one with figures) to the current control
  // part; none while orphaned (an adopting successor learns the state from Adopted). Logs a failure.
  void send(std::span<const std::byte> message);
  // Until the data plane said Ready, its control part reads nothing else (Process::launch): a
  // Fatal or a message a queue thread raises before then (a resumed request that finds the ring
  // broken, a pause) is held and follows the Ready: the messages in order, then the Fatal.
  void detach();        // the control part died
  void attach(int fd);  // a successor adopted us: a Fatal it has not heard of goes to it

 private:
  Protocol protocol_;
  mutable std::mutex mutex_;
  int fd_;
  // Under mutex_: sends one message, logging a failure.
  void send_locked(std::span<const std::byte> message);
  bool pending_ = false;  // a Fatal was raised: error_, reason_
  int error_ = 0;
  std::string reason_;
  bool ready_ = false;  // Ready was said: messages go out as they come
  std::vector<std::vector<std::byte>> held_;  // messages sent before Ready
};

// The data plane's first message: its control part's Start (into `buffer`) with the fds that
// came with it. Its length, or nothing (logged: the socket closed or failed).
std::optional<std::size_t> receive_start(int sock, std::span<std::byte> buffer, std::vector<UniqueFd>& fds);

// The sandbox policy of a data plane serving `profile`'s data path on the platform the
// environment names (grant/platform.hpp): on the simulated one it may probe whether a process
// exists (sandbox::Policy::probe_processes).
sandbox::Policy data_plane_policy(sandbox::Profile profile);

// Applies the sandbox (sandbox/sandbox.hpp) as the last step before serving: from here on the
// process holds what it needs and can reach nothing else. 0, or an errno value with `why` set
// (a data plane that cannot confine itself does not serve: its control part fails the device,
// naming the step). `on` false: not confined (--no-sandbox), logged. `uid`/`gid` 0: kept.
[[nodiscard]] int confine(const std::string& name, bool on, std::uint32_t uid, std::uint32_t gid,
                          sandbox::Policy policy, std::string& why);

struct ServeHooks {
  // A message from the control part that is not Stop (pvback-blk: Resize; pvback-net: new rate
  // and headroom). `link` answers it if it asks for an answer.
  std::function<void(std::uint32_t type, std::span<const std::byte> message, ControlLink& link)> on_message;
  // The answer to a successor's Adopt (what it serves), sent with `adopted_fds`.
  std::function<std::vector<std::byte>()> adopted;
  std::vector<int> adopted_fds;
};

// The data plane's main thread while its queue threads serve, until its control part says Stop,
// SIGTERM/SIGINT/SIGHUP arrive on `signal_fd`, or (orphaned) nobody adopts it on `listener`
// within `orphan_timeout` (at once without a listener). `name` names the device in the log.
void serve_control(ControlLink& link, const UniqueFd& listener, const UniqueFd& signal_fd, const std::string& name,
                   const Protocol& protocol, std::chrono::milliseconds orphan_timeout, const ServeHooks& hooks);

}  // namespace pvback::plane
