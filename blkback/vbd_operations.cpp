// VbdDriver's operator's requests (pvbackctl restart, pause and resume, through the host daemon's
// control socket): each is begun by a call that returns at once and ends from the loop, so that no
// device's XenStore events wait for another's storage.
//
//   restart  plane::begin_restart: the data plane is told to stop; its end (on_data_plane_event)
//            or, past 10 s, its kill (check_operations) starts the next one.
//   pause    Pause to the data plane: its queues take nothing more from the rings, answer what they
//            took, flush the storage; its Paused answers the operator. The device is paused from
//            the request on (a data plane started meanwhile starts paused) until resume, and an
//            error answer always means it is not paused: a drain past its timeout (a stalled
//            storage), a failed flush, a resume meanwhile, a connection that ended during the drain
//            resume it, so that a script's `pvbackctl pause && snapshot && pvbackctl resume` never
//            leaves a guest waiting on a pause nobody will end.
//   resume   Resume to the data plane; its Resumed (the requests that waited) answers the operator.
// The pause is the device's: a data plane restarted or crashed starts paused (its successor drains
// what the records left and flushes), a new connection of the frontend starts paused, and a
// successor of this process finds it in a marker beside the recovery records or in what the data
// plane it adopts says.
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "base/log.hpp"
#include "base/text_file.hpp"
#include "blkback/tunables.hpp"
#include "blkback/vbd_driver.hpp"

namespace pvback::blkback {
namespace {

using Clock = std::chrono::steady_clock;

// How long an operator's restart waits for the old data plane to finish what is in flight.
constexpr std::chrono::milliseconds kRestartStopTimeout{10'000};
// How long the data plane has to confirm a resume (it only tells its queues).
constexpr std::chrono::milliseconds kResumeTimeout{5'000};

std::int64_t ms_since(Clock::time_point t) {
  return std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now() - t).count();
}

xenbus::Outcome failed(int error, std::string message) { return xenbus::Outcome::failed(error, std::move(message)); }

std::int64_t figure(std::uint64_t v) { return static_cast<std::int64_t>(std::min<std::uint64_t>(v, INT64_MAX)); }

}  // namespace

void VbdDriver::on_data_plane_event() {
  const pid_t before = plane_.pid();
  ::pvback::plane::handle_data_plane_event(
      plane_, restart_limit_, plane_restarts_, name_,
      [this](int error, const std::string& reason) { fail_connection(error, reason); },
      [this] { return launch_data_plane(true); },
      [this](const ::pvback::plane::Process::Event& ev) { on_data_plane_said(ev); }, &restarting_);
  // A resume whose data plane died before it confirmed: the one started since is not paused.
  if (operation_.kind == Operation::Resume && plane_.running() && plane_.pid() != before)
    finish_operation({0, "", {{"waiting", 0}, {"paused_ms", operation_.paused_ms}}});
}

void VbdDriver::on_data_plane_said(const ::pvback::plane::Process::Event& ev) {
  const auto type = static_cast<plane::Msg>(ev.notice.type);
  if (type == plane::Msg::LockOwner) {
    record_lock_owner(ev.notice.reason);
    return;
  }
  if (type == plane::Msg::Paused) {
    auto f = plane::decode_paused(ev.message);
    if (!f) {
      PVBACK_LOG(Error, "%s: data plane: %s", name_.c_str(), f.error().c_str());
      return;
    }
    if (operation_.kind != Operation::Pause) {
      // A data plane started paused (a restart, a crash, a new connection) drained what it took over.
      if (paused_)
        PVBACK_LOG(Info, "%s: the data plane started paused: %llu request(s) it took over drained, the storage "
                   "flushed%s", name_.c_str(), static_cast<unsigned long long>(f->drained),
                   f->error != 0 ? " (failed)" : "");
      return;
    }
    if (f->error != 0) {
      // What the guest was told is done may not be on the storage: no snapshot should be taken.
      PVBACK_LOG(Error, "%s: the pause's flush of the storage failed (%s): resuming", name_.c_str(),
                 std::strerror(f->error));
      paused_ = false;
      keep_pause_marker();
      tell_resume();
      finish_operation(failed(f->error, std::string("the storage's flush failed (") + std::strerror(f->error) +
                                            "): resumed, not paused"));
      return;
    }
    const std::int64_t took = ms_since(operation_.started);
    PVBACK_LOG(Notice, "%s: paused on request: %llu request(s) in flight drained in %llu ms, the storage flushed in "
               "%llu ms", name_.c_str(), static_cast<unsigned long long>(f->drained),
               static_cast<unsigned long long>(f->drain_us / 1000),
               static_cast<unsigned long long>(f->flush_us / 1000));
    finish_operation({0, "", {{"drained", figure(f->drained)}, {"drain_ms", figure(f->drain_us / 1000)},
                              {"flush_ms", figure(f->flush_us / 1000)}, {"took_ms", took}}});
    return;
  }
  if (type == plane::Msg::Resumed) {
    auto waiting = plane::decode_resumed(ev.message);
    if (!waiting) {
      PVBACK_LOG(Error, "%s: data plane: %s", name_.c_str(), waiting.error().c_str());
      return;
    }
    if (operation_.kind != Operation::Resume) return;  // the resume of a pause that failed
    PVBACK_LOG(Notice, "%s: resumed on request after %lld ms paused: %llu request(s) had waited in the rings",
               name_.c_str(), static_cast<long long>(operation_.paused_ms),
               static_cast<unsigned long long>(*waiting));
    finish_operation({0, "", {{"waiting", figure(*waiting)}, {"paused_ms", operation_.paused_ms}}});
  }
}

void VbdDriver::finish_operation(const xenbus::Outcome& outcome) {
  auto done = std::exchange(operation_.done, nullptr);
  operation_ = Operation{};
  if (done) done(outcome);
}

int VbdDriver::begin_restart(xenbus::OperationDone done) {
  if (operation_.kind != Operation::None) return EBUSY;
  if (!plane_.running()) return connected() && plane_configs_.empty() ? EOPNOTSUPP : ENOTCONN;
  // Onto the binary on disk (an upgrade reaches the device so), if it speaks this protocol: one of
  // another version would not start, and the device would fail.
  if (!options_.data_plane_binary.empty())
    if (const int e = ::pvback::plane::repin_binary(options_.data_plane_binary, plane::kProtocol, name_)) return e;
  return ::pvback::plane::begin_restart(
      plane_, restarting_, name_,
      [done = std::move(done), old = plane_.pid()](std::expected<pid_t, int> started) {
        if (started) {
          done({0, "", {{"old_pid", old}, {"data_plane_pid", *started}}});
        } else if (started.error() == EIO) {
          done(failed(EIO, "the new data plane did not start: the device failed"));
        } else {
          done(failed(started.error(), "the connection ended before the new data plane started (the frontend "
                                       "disconnected, or the host daemon is stopping)"));
        }
      },
      kRestartStopTimeout);
}

int VbdDriver::begin_pause(std::chrono::milliseconds drain_timeout, xenbus::OperationDone done) {
  if (!plane_.running()) return connected() && plane_configs_.empty() ? EOPNOTSUPP : ENOTCONN;
  if (restarting_.active() || operation_.kind != Operation::None) return EBUSY;
  if (paused_) return EALREADY;
  if (const int e = plane_.send(plane::encode_notice({plane::Msg::Pause, 0, {}}))) return e;
  const auto now = Clock::now();
  paused_ = true;
  paused_since_ = now;
  keep_pause_marker();
  operation_ = Operation{Operation::Pause, now, now + drain_timeout, drain_timeout, std::move(done), 0};
  PVBACK_LOG(Notice, "%s: pausing on request: no more requests taken from the rings, those in flight drained "
             "(up to %lld s) and the storage flushed", name_.c_str(),
             static_cast<long long>(std::chrono::duration_cast<std::chrono::seconds>(drain_timeout).count()));
  return 0;
}

int VbdDriver::begin_resume(xenbus::OperationDone done) {
  if (!paused_) return EALREADY;
  if (restarting_.active() || operation_.kind == Operation::Resume) return EBUSY;
  const std::int64_t paused_ms = ms_since(paused_since_);
  if (operation_.kind == Operation::Pause) {
    PVBACK_LOG(Notice, "%s: resumed on request before the pause's drain finished", name_.c_str());
    finish_operation(failed(ECANCELED, "resumed (pvbackctl resume) before the drain finished: not paused"));
  }
  paused_ = false;
  keep_pause_marker();
  if (!plane_.running()) {
    PVBACK_LOG(Notice, "%s: resumed on request after %lld ms paused (not connected: its next connection starts "
               "unpaused)", name_.c_str(), static_cast<long long>(paused_ms));
    done({0, "", {{"waiting", 0}, {"paused_ms", paused_ms}}});
    return 0;
  }
  tell_resume();
  const auto now = Clock::now();
  operation_ = Operation{Operation::Resume, now, now + kResumeTimeout, kResumeTimeout, std::move(done), paused_ms};
  return 0;
}

void VbdDriver::check_operations() {
  ::pvback::plane::check_restart(
      plane_, restarting_, restart_limit_, plane_restarts_, name_,
      [this](int error, const std::string& reason) { fail_connection(error, reason); },
      [this] { return launch_data_plane(true); });
  if (operation_.kind == Operation::None || Clock::now() < operation_.deadline) return;
  const auto seconds = std::chrono::duration_cast<std::chrono::seconds>(operation_.timeout).count();
  if (operation_.kind == Operation::Resume) {
    finish_operation(
        failed(ETIMEDOUT, "the data plane did not confirm the resume within " + std::to_string(seconds) + " s"));
    return;
  }
  // A stalled storage. The guest is not left waiting on a pause that failed.
  std::uint64_t in_flight = 0;
  for (const QueueStats* s : stats_) in_flight += s->in_flight.get();
  PVBACK_LOG(Warning, "%s: the pause's drain did not finish within %lld s (%llu request(s) still in flight: the "
             "storage may be stalled): resuming", name_.c_str(), static_cast<long long>(seconds),
             static_cast<unsigned long long>(in_flight));
  paused_ = false;
  keep_pause_marker();
  tell_resume();
  finish_operation(failed(ETIMEDOUT, "the drain did not finish within " + std::to_string(seconds) + " s (" +
                                         std::to_string(in_flight) +
                                         " request(s) still in flight: the storage may be stalled): resumed, "
                                         "not paused"));
}

// One that cannot be told is dying: the data plane started next is not paused (paused_ is false).
void VbdDriver::tell_resume() {
  if (const int e = plane_.send(plane::encode_notice({plane::Msg::Resume, 0, {}})))
    PVBACK_LOG(Warning, "%s: cannot tell the data plane to resume: %s", name_.c_str(), std::strerror(e));
}

// disconnect(): the data plane is gone with the connection.
void VbdDriver::abandon_operations() {
  if (restarting_.active()) restarting_.finish(std::unexpected(ENOTCONN));
  if (operation_.kind == Operation::Pause) {
    paused_ = false;
    keep_pause_marker();
    finish_operation(failed(ENOTCONN, "the connection ended before the drain finished (the frontend disconnected, "
                                      "or the host daemon is stopping): not paused"));
  } else if (operation_.kind == Operation::Resume) {
    finish_operation({0, "", {{"waiting", 0}, {"paused_ms", operation_.paused_ms}}});
  }
}

std::string VbdDriver::pause_marker_path() const {
  return recovery_prefix_.empty() ? "" : recovery_prefix_ + ".paused";
}

void VbdDriver::keep_pause_marker() const {
  const std::string path = pause_marker_path();
  if (path.empty()) return;
  if (!paused_) {
    ::unlink(path.c_str());
  } else if (const int e = write_file_atomically(path, "paused by the operator (pvbackctl pause)\n")) {
    PVBACK_LOG(Warning, "%s: cannot note the pause in %s (%s): a successor of this process would not keep it",
               name_.c_str(), path.c_str(), std::strerror(e));
  }
}

std::expected<TunableChange, std::string> VbdDriver::set_tunable(xenbus::XenStore& xs, std::string_view key,
                                                                  std::string_view value) {
  BackendOptions changed = options_;
  auto change = ::pvback::set_tunable(vbd_tunables(), "vbd", changed, key, value);
  if (!change) return change;
  if (changed.persistent_grants && !options_.persistent_grants && engine_ && engine_->capabilities().direct &&
      !platform_.direct_io_into_mappings())
    return std::unexpected(name_ + ": feature_persistent cannot be turned on while the disk is open: it is served "
                           "with O_DIRECT, which this dom0 cannot do into mapped grants; set it in the config file, "
                           "for the next time the device starts");
  const LiveTuning before = live_tuning(options_);
  const BackendOptions previous = options_;
  options_ = changed;
  // A frontend that read the directory negotiated from it: advertised before it connects again.
  if (change->when == TakesEffect::NextConnect && !backend_path_.empty()) {
    if (connected() || xenbus::frontend_has_read_advertisement(xs, backend_path_)) {
      advertised_stale_ = wanted_advertisement() != advertised_;
    } else if (const int e = write_negotiable(xs)) {
      options_ = previous;
      return std::unexpected(name_ + ": not set: it cannot be advertised to the frontend: " + std::strerror(e));
    }
  }
  if (const LiveTuning now = live_tuning(options_); now != before) {
    for (auto& q : queues_) q->tune(now);
    // Its start's configs too: a data plane started again after a crash has it.
    for (auto& c : plane_configs_) apply_live_tuning(c, now);
    if (plane_.running())
      if (const int e = plane_.send(plane::encode_tune(now)))
        PVBACK_LOG(Warning, "%s: the data plane was not told (%s): its next start has it", name_.c_str(),
                   std::strerror(e));
  }
  PVBACK_LOG(Notice, "%s: %s = %llu (was %llu), %s", name_.c_str(), change->name.c_str(),
             static_cast<unsigned long long>(change->value), static_cast<unsigned long long>(change->old_value),
             change->when == TakesEffect::Now ? "in effect now" : "in effect at the frontend's next connection");
  return change;
}

}  // namespace pvback::blkback
