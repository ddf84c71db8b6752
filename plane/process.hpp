// The control part's handle on one device's data-plane process: the backend's own executable run
// again as `<binary> --data-plane 3`, which serves the rings it is told to and holds no XenStore
// connection. Shared by pvback-blk (vbds) and pvback-net (vifs); what crosses the socket is each
// backend's protocol (plane/codec.hpp), what happens around it is here: launch, the wait for
// Ready, messages both ways, the end of the process, an orderly stop, and adoption of a data plane
// a dead predecessor of the control part left serving.
#pragma once
#include <sys/types.h>

#include <chrono>
#include <expected>
#include <functional>
#include <span>
#include <string>
#include <vector>

#include "base/unique_fd.hpp"
#include "plane/codec.hpp"

namespace pvback::plane {

struct Launch {
  std::string binary;      // empty: this very executable
  const char* argv0 = "";  // "pvback-blk", "pvback-net"
  std::string name;        // the device's log name, "vif 1/0"
  Protocol protocol;
  std::vector<std::byte> start;  // the Start message
  std::vector<int> fds;          // sent with it (the caller keeps its own)
  // It was given a listening socket: it outlives this control part for a successor to adopt.
  // Without one it gets SIGTERM when the control part dies.
  bool adoptable = false;
  std::chrono::milliseconds ready_timeout{10'000};
  // Called with the new process's pid before it is given anything (to put it in its control
  // group): an errno value it returns fails the launch.
  std::function<int(pid_t)> place;
};

class Process {
 public:
  Process() = default;
  Process(Process&& o) noexcept;
  Process& operator=(Process&& o) noexcept;
  ~Process();  // stop()s a process still running

  // Starts the data plane, sends it the Start message with its fds and waits for Ready. errno
  // value on failure (logged, naming the device); nothing is left running then.
  static std::expected<Process, int> launch(const Launch& launch);

  // Takes over a data plane a dead predecessor of this control part left serving, through its
  // listening socket at `path`: sends Adopt, returns its Adopted answer (the caller decodes it and
  // calls kill() on one it cannot use) with the fds that came with it. ENOENT / ECONNREFUSED:
  // none there. One that speaks another version of the protocol is killed (EPROTO).
  struct Adoption;
  static std::expected<Adoption, int> adopt(const std::string& path, const std::string& name, const Protocol& protocol);

  // Readable when the data plane said something or ended.
  int fd() const { return sock_.get(); }
  pid_t pid() const { return pid_; }
  bool running() const { return pid_ > 0; }
  const std::string& name() const { return name_; }

  struct Event {
    enum Kind { Nothing, Said, Ended } kind = Nothing;
    Notice notice;       // Said
    std::string reason;  // Ended: how it ended ("killed by signal 9 (Killed)")
  };
  // After fd() polled readable: one thing that happened. Ended: the process is reaped.
  Event take_event();

  // One message to it. 0 or an errno value.
  [[nodiscard]] int send(std::span<const std::byte> message);
  // Sends `notice` and waits up to `timeout` for a notice of type `reply`.
  [[nodiscard]] std::expected<Notice, int> request(const Notice& notice, std::uint32_t reply,
                                                   std::chrono::milliseconds timeout);

  // Stop: it finishes what is in flight, unmaps everything and exits; after `timeout`, SIGKILL.
  // Reaps it. Returns its wait status (0 for an adopted one, which is not our child).
  int stop(std::chrono::milliseconds timeout = std::chrono::milliseconds(10'000));
  // SIGKILL without asking (an adopted data plane this control part cannot use).
  void kill();

 private:
  int reap(bool block);
  Protocol protocol_{};
  // An adopted data plane is not our child: its end is seen, not waited for.
  bool child_ = true;
  std::string name_;
  UniqueFd sock_;
  pid_t pid_ = -1;
};

struct Process::Adoption {
  Process process;
  std::vector<std::byte> answer;  // the Adopted message
  std::vector<UniqueFd> fds;
};

// Where a successor of this control part can adopt its data plane: a listening socket at `path`
// (mode 0600: only root reaches it; the data plane, confined, reaches no path at all). Without
// one (empty path, or logged naming the device `name`) the data plane stops when its control
// part dies.
UniqueFd listen_for_adoption(const std::string& path, const std::string& name);

// "exited with status 1", "killed by signal 9 (Killed)" ...
std::string describe_wait_status(int status);

// Stops a data plane left serving by a dead control part, through its listening socket at `path`
// (the device it served is gone, or a new connection of its frontend needs what it holds): it
// finishes what is in flight and exits; waits up to `timeout` for that. Nothing there: 0.
int stop_orphan(const std::string& path, const Protocol& protocol,
                std::chrono::milliseconds timeout = std::chrono::milliseconds(10'000));

// Restarts of a data plane that died, at most `burst` within `window` (systemd's StartLimitBurst
// and StartLimitIntervalSec defaults): one more means the guest found a way to crash it, or it
// cannot start; the device then fails instead of keeping a core busy.
class RestartLimit {
 public:
  explicit RestartLimit(unsigned burst, std::chrono::steady_clock::duration window = std::chrono::seconds(10))
      : burst_(burst), window_(window) {}
  // true: restart (counted); false: past the burst.
  bool allow(std::chrono::steady_clock::time_point now = std::chrono::steady_clock::now());
  void reset() { recent_.clear(); }
  unsigned burst() const { return burst_; }
  std::chrono::steady_clock::duration window() const { return window_; }

 private:
  unsigned burst_;
  std::chrono::steady_clock::duration window_;
  std::vector<std::chrono::steady_clock::time_point> recent_;
};

// What a control part does when its data plane's fd() is readable (`name` names the device): a
// Fatal is the frontend's fault: `fail(error, reason)`. An end under a live connection is a crash,
// an OOM kill, a SIGKILL: another is started at once through `relaunch` (0 or an errno value),
// which resumes the rings; past `limit` the device fails instead (`fail(EIO, "the data plane keeps
// dying")`), so a guest that found a way to crash its data plane cannot keep a core busy
// restarting it. `restarts` counts those started.
// Any other notice it says goes to `said`, if given.
void handle_data_plane_event(Process& process, RestartLimit& limit, unsigned& restarts, const std::string& name,
                             const std::function<void(int, const std::string&)>& fail,
                             const std::function<int()>& relaunch,
                             const std::function<void(const Notice&)>& said = {});

// An operator's restart of a running data plane (pvbackctl restart, an upgrade reaching a running
// device): it is told to stop, finishes what is in flight and exits, its recovery records left
// live for whatever it took and did not answer; another is started through `relaunch` (from the
// binary on disk), which resumes the rings from those records, as after a crash but without
// counting against `limit` unless starting fails. The new process's pid, or ENOTCONN (none
// running) or, once the device failed through `fail`, EIO. Blocks until the old one is gone.
[[nodiscard]] std::expected<pid_t, int> restart_data_plane(Process& process, RestartLimit& limit, unsigned& restarts,
                                                           const std::string& name,
                                                           const std::function<void(int, const std::string&)>& fail,
                                                           const std::function<int()>& relaunch);

}  // namespace pvback::plane
