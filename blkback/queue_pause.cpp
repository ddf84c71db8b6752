// The operator's pause of one queue (Queue::pause, Queue::resume): the pieces of Queue::Impl that
// carry it out on the queue's own thread. See queue.hpp for the contract.
//
// A paused queue takes nothing from the ring (process_ring stops before req_prod is read) and does
// not arm its event-channel poll, so the frontend's notifications wait on the channel instead of
// being counted as spurious wake-ups; everything else goes on: completions are answered, a
// predecessor's recorded requests are executed. Once nothing taken is left unanswered (Draining),
// one storage flush goes to the queue's own channel (Flushing), tagged past the slots, and its end
// reports the pause. resume() re-arms the poll and takes whatever the frontend queued meanwhile.
#include <sys/eventfd.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <optional>
#include <utility>

#include "base/log.hpp"
#include "blkback/queue_impl.hpp"

namespace pvback::blkback {
namespace {

std::chrono::microseconds since(std::int64_t from_ns, std::int64_t to_ns) {
  return std::chrono::duration_cast<std::chrono::microseconds>(std::chrono::nanoseconds(to_ns - from_ns));
}

}  // namespace

void Queue::Impl::request_pause(bool pause, std::function<void(const Queue::PauseReport&)> paused_done,
                                std::function<void(std::uint64_t)> resumed_done) {
  {
    std::lock_guard lock(control.mutex);
    control.pending = true;
    control.pause = pause;
    control.paused = std::move(paused_done);
    control.resumed = std::move(resumed_done);
  }
  const std::uint64_t one = 1;
  [[maybe_unused]] const ssize_t r = ::write(control.fd.get(), &one, sizeof one);
}

void Queue::Impl::request_tuning(const LiveTuning& tuning) {
  {
    std::lock_guard lock(control.mutex);
    control.tune_pending = true;
    control.tuning = tuning;
  }
  const std::uint64_t one = 1;
  [[maybe_unused]] const ssize_t r = ::write(control.fd.get(), &one, sizeof one);
}

void Queue::Impl::apply_tuning(const LiveTuning& tuning) {
  apply_live_tuning(config, tuning);
  poll_ns = std::min<std::int64_t>(poll_ns, std::chrono::duration_cast<std::chrono::nanoseconds>(config.poll_max).count());
  set_timer_period();  // the next arming of the purge timer
  if (segments) {
    segments->set_max_persistent(tuning.max_persistent_grants);
    // Grants idle longer than the new expiry go now, not at the timer armed with the old one.
    segments->expire(now_ns() - std::chrono::duration_cast<std::chrono::nanoseconds>(tuning.persistent_idle_expiry).count());
  }
  PVBACK_LOG(Info, "%s: max_persistent_grants %u, persistent_grant_unused_seconds %lld, poll_max_us %lld, "
             "submit_batch %u", name, tuning.max_persistent_grants,
             static_cast<long long>(std::chrono::duration_cast<std::chrono::seconds>(tuning.persistent_idle_expiry).count()),
             static_cast<long long>(tuning.poll_max.count()), tuning.submit_batch);
}

void Queue::Impl::arm_control() {
  if (control_armed || stopping || !control.fd) return;
  if (io_uring_sqe* sqe = loop.sqe()) {
    io_uring_prep_poll_add(sqe, control.fd.get(), POLLIN);
    io_uring_sqe_set_data64(sqe, kTagControl);
    control_armed = true;
  }
}

bool Queue::Impl::take_control() {
  std::uint64_t n = 0;
  [[maybe_unused]] const ssize_t r = ::read(control.fd.get(), &n, sizeof n);
  bool pause = false;
  std::function<void(const Queue::PauseReport&)> paused_done;
  std::function<void(std::uint64_t)> resumed_done;
  std::optional<LiveTuning> tuning;
  bool pending = false;
  {
    std::lock_guard lock(control.mutex);
    if (std::exchange(control.tune_pending, false)) tuning = control.tuning;
    pending = std::exchange(control.pending, false);
    if (pending) {
      pause = control.pause;
      paused_done = std::move(control.paused);
      resumed_done = std::move(control.resumed);
    }
  }
  if (tuning) apply_tuning(*tuning);
  if (!pending) return false;
  if (pause) {
    // Asked again while paused: drained again (nothing, or what a predecessor left) and flushed
    // again, so that the answer always follows a flush.
    paused = true;
    pause_done = std::move(paused_done);
    pause_phase = PausePhase::Draining;
    pause_started_ns = now_ns();
    pause_drained = slots_used + (recovered ? recovered->reexecute.size() : 0);
    return false;
  }
  // A flush of a pause still in flight ends on its own (pause_flushed ignores it).
  paused = false;
  pause_phase = PausePhase::None;
  pause_done = nullptr;
  std::uint64_t waiting = 0;
  if (auto u = unconsumed()) waiting = *u;
  if (resumed_done) resumed_done(waiting);
  return true;
}

void Queue::Impl::advance_pause() {
  if (pause_phase != PausePhase::Draining || slots_used != 0 || recovered || pause_flush_in_flight) return;
  // A queue that stops or fails answers no pause: its data plane is ending, or its device failing.
  if (stopping || fatal_seen) return;
  flush_started_ns = now_ns();
  storage::Request rq;
  rq.op = storage::Op::Flush;
  rq.tag = pause_flush_tag();
  const int e = channel->submit(rq);
  if (e == 0) {
    pause_phase = PausePhase::Flushing;
    pause_flush_in_flight = true;
    ++submitted;  // waited for like any I/O before the channel goes
    return;
  }
  // A read-only storage has nothing to flush.
  report_pause(e == EROFS || e == EOPNOTSUPP ? 0 : e);
}

void Queue::Impl::pause_flushed(int res) {
  pause_flush_in_flight = false;
  --submitted;
  // Resumed meanwhile, or paused again (that pause flushes after its own drain).
  if (pause_phase != PausePhase::Flushing) return;
  if (res < 0) {
    PVBACK_LOG_RATELIMITED(Warning, "%s: the pause's flush failed: %s", name, std::strerror(-res));
    stats.io_errors.add();
  }
  report_pause(res < 0 ? -res : 0);
}

void Queue::Impl::report_pause(int error) {
  const std::int64_t now = now_ns();
  const Queue::PauseReport report{pause_drained, since(pause_started_ns, flush_started_ns),
                                  since(flush_started_ns, now), error};
  pause_phase = PausePhase::None;
  if (auto done = std::exchange(pause_done, nullptr)) done(report);
}

}  // namespace pvback::blkback
