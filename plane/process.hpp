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
#include "plane/options.hpp"

namespace pvback::plane {

// The executables this process starts data planes from, pinned: opened once, so that a data plane
// started again (after a crash, a reconnection) runs the binary this process was started with,
// not what a package upgrade has put at the path since, which may speak another protocol.
// pin_binary() at start (logged if it cannot be opened: the path is used then). A launch of a
// pinned path runs the pinned file.
void pin_binary(const std::string& path);
// The operator's restart onto the binary on disk (pvbackctl restart): `path` run with
// --protocol-version must answer `protocol`'s magic and version; it is pinned anew then. 0, or
// EPROTO (another version: logged with both, naming the device `name`), ENOEXEC (no answer), or
// the errno of running it. It waits for the answer, up to 5 s.
[[nodiscard]] int repin_binary(const std::string& path, const Protocol& protocol, const std::string& name);
// What `--protocol-version` prints: "<magic in hex> <version>".
std::string protocol_version_line(const Protocol& protocol);

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
  // It was given a listening socket (Launch::adoptable, or adopted): it can outlive this process.
  bool adoptable() const { return adoptable_; }

  struct Event {
    enum Kind { Nothing, Said, Ended } kind = Nothing;
    // Said: a notice decoded; for a message of the backend's protocol that is not a notice (one
    // with figures, blkback's Paused), its type alone, the backend decoding `message`.
    Notice notice;
    std::vector<std::byte> message;  // Said: the message as it came
    std::string reason;  // Ended: how it ended ("killed by signal 9 (Killed)")
  };
  // After fd() polled readable, or while has_unread(): one thing that happened. Ended: the process
  // is reaped.
  Event take_event();
  // Messages that came while request() waited for its answer, which take_event() returns first:
  // the caller of request() handles them afterwards (fd() does not tell of them).
  bool has_unread() const { return !unread_.empty(); }

  // One message to it. 0 or an errno value.
  [[nodiscard]] int send(std::span<const std::byte> message);
  // Sends `notice` and waits up to `timeout` for a notice of type `reply`; whatever else it says
  // meanwhile is kept for take_event() (has_unread()).
  [[nodiscard]] std::expected<Notice, int> request(const Notice& notice, std::uint32_t reply,
                                                   std::chrono::milliseconds timeout);

  // Stop: it finishes what is in flight, unmaps everything and exits; after `timeout`, SIGKILL.
  // Reaps it. Returns its wait status (0 for an adopted one, which is not our child).
  int stop(std::chrono::milliseconds timeout = std::chrono::milliseconds(10'000));
  // Tells it to stop without waiting: its end is then seen on fd() (take_event's Ended). 0 or an
  // errno value.
  [[nodiscard]] int ask_to_stop();
  // SIGKILL without asking (an adopted data plane this control part cannot use).
  void kill();
  // Lets it go, serving, for a successor of this control part to adopt (Launch::adoptable): the
  // channel is closed, so it serves on orphaned, as after this control part's death. Not reaped:
  // call it only on the way out.
  void release();

 private:
  int reap(bool block);
  Protocol protocol_{};
  // An adopted data plane is not our child: its end is seen, not waited for.
  bool child_ = true;
  bool adoptable_ = false;
  std::string name_;
  UniqueFd sock_;
  pid_t pid_ = -1;
  std::vector<std::vector<std::byte>> unread_;
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

// A control part stopping while its device lives on: its data plane `process`, if adoptable
// (Process::adoptable), is released, serving, for the next control part (logged, naming the
// device) as `on_stop` says (--on-stop, plane/options.hpp; auto: if `own_unit`, it runs in a
// systemd scope of its own, CgroupLeaf::own_unit). True if so.
bool leave_for_successor(Process& process, OnStop on_stop, bool own_unit, std::chrono::milliseconds orphan_timeout);

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

// An operator's restart of a running data plane under way (pvbackctl restart, an upgrade reaching
// a running device), which the control part's loop never waits for: begin_restart told the data
// plane to stop (it finishes what is in flight and exits, its recovery records left live for
// whatever it took and did not answer). When its end is seen (handle_data_plane_event), or at
// `deadline` (check_restart SIGKILLs it then), another is started through `relaunch` (from the
// binary on disk), which resumes the rings from those records, as after a crash but without
// counting against the limit unless starting fails; `done` is told the new process's pid, or EIO
// once the device failed, or (abandon) why the restart ended otherwise.
struct PendingRestart {
  pid_t old_pid = -1;
  std::chrono::steady_clock::time_point deadline{};
  std::function<void(std::expected<pid_t, int>)> done;
  bool active() const { return static_cast<bool>(done); }
  // Tells `done` (once) and forgets it.
  void finish(std::expected<pid_t, int> result);
};

// 0, or ENOTCONN (no data plane runs), EBUSY (a restart is under way already).
[[nodiscard]] int begin_restart(Process& process, PendingRestart& pending, const std::string& name,
                                std::function<void(std::expected<pid_t, int>)> done,
                                std::chrono::milliseconds stop_timeout = std::chrono::milliseconds(10'000));

// What a control part does when its data plane's fd() is readable (`name` names the device): a
// Fatal is the frontend's fault: `fail(error, reason)`. An end under a live connection is a crash,
// an OOM kill, a SIGKILL: another is started at once through `relaunch` (0 or an errno value),
// which resumes the rings; past `limit` the device fails instead (`fail(EIO, "the data plane keeps
// dying")`), so a guest that found a way to crash its data plane cannot keep a core busy
// restarting it. `restarts` counts those started. The end of a data plane `restarting` told to
// stop is the restart's (PendingRestart).
// Anything else it says goes to `said`, if given.
void handle_data_plane_event(Process& process, RestartLimit& limit, unsigned& restarts, const std::string& name,
                             const std::function<void(int, const std::string&)>& fail,
                             const std::function<int()>& relaunch,
                             const std::function<void(const Process::Event&)>& said = {},
                             PendingRestart* restarting = nullptr);

// From the control part's timer: a restart whose data plane did not stop by its deadline (a
// stalled storage) kills it and goes on as handle_data_plane_event would at its end.
void check_restart(Process& process, PendingRestart& pending, RestartLimit& limit, unsigned& restarts,
                   const std::string& name, const std::function<void(int, const std::string&)>& fail,
                   const std::function<int()>& relaunch);

}  // namespace pvback::plane
