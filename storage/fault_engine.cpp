#include "storage/fault_engine.hpp"

#include <poll.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <algorithm>
#include <deque>
#include <cerrno>
#include <random>

#include "storage/loop.hpp"

namespace pvback::storage {

// user_data of the fault channel's own completions: kEngineTag | kOwn | what << 56 | entry. The
// inner channel's are kEngineTag with bit 62 clear (engine.hpp's convention for wrappers).
namespace {
constexpr std::uint64_t kOwn = std::uint64_t{1} << 62;
constexpr unsigned kWhatShift = 56;
enum What : std::uint64_t { kDelayDone = 1, kErrorDone = 2, kResumePoll = 3 };
constexpr std::uint64_t own(What w, std::uint32_t entry = 0) {
  return Loop::kEngineTag | kOwn | (std::uint64_t{w} << kWhatShift) | entry;
}
}  // namespace

class FaultChannel final : public Channel, private CompletionSink {
 public:
  FaultChannel(FaultEngine& engine, Loop& loop, std::unique_ptr<Channel> inner, std::uint64_t seed)
      : engine_(engine), loop_(loop), inner_(std::move(inner)), random_(seed), matches_(engine.plan_.rules.size(), 0) {}

  ~FaultChannel() override {
    std::lock_guard lock(engine_.channels_mutex_);
    std::erase(engine_.resume_fds_, resume_fd_.get());
  }

  int open() {
    resume_fd_.reset(::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK));
    if (!resume_fd_) return errno;
    std::lock_guard lock(engine_.channels_mutex_);
    engine_.resume_fds_.push_back(resume_fd_.get());
    return 0;
  }

  int submit(const Request& rq) override {
    const std::uint32_t e = new_entry(rq);
    Entry& entry = entries_[e];
    const auto& plan = engine_.plan_;
    std::int64_t us = plan.min_latency.count();
    if (plan.max_latency > plan.min_latency)
      us = std::uniform_int_distribution<std::int64_t>(plan.min_latency.count(), plan.max_latency.count())(random_);
    if (const FaultRule* rule = match(rq)) {
      entry.error = rule->error;
      entry.short_bytes = rule->short_bytes;
      us += rule->delay.count();
    }
    ++in_flight_;
    if (us > 0) {
      io_uring_sqe* sqe = loop_.sqe();
      if (sqe == nullptr) return undo(e, EAGAIN);
      entry.ts.tv_sec = us / 1'000'000;
      entry.ts.tv_nsec = (us % 1'000'000) * 1000;
      io_uring_prep_timeout(sqe, &entry.ts, 0, 0);
      io_uring_sqe_set_data64(sqe, own(kDelayDone, e));
      engine_.delayed_.fetch_add(1, std::memory_order_relaxed);
      return 0;
    }
    if (int err = start(e)) return undo(e, err);
    return 0;
  }

  void on_completion(std::uint64_t user_data, int res, CompletionSink& sink) override {
    sink_ = &sink;
    if ((user_data & kOwn) == 0) return inner_->on_completion(user_data, res, *this);
    const auto what = static_cast<What>((user_data >> kWhatShift) & 0x3f);
    const auto e = static_cast<std::uint32_t>(user_data & 0xffffffffu);
    switch (what) {
      case kDelayDone:  // the timeout's -ETIME is the expected result
        if (int err = start(e)) finish(e, -err);
        break;
      case kErrorDone:
        finish(e, -entries_[e].error);
        break;
      case kResumePoll: {
        poll_armed_ = false;
        std::uint64_t n;
        [[maybe_unused]] ssize_t r = ::read(resume_fd_.get(), &n, sizeof n);
        std::vector<std::uint32_t> held;
        held.swap(held_);
        for (std::uint32_t h : held)
          if (int err = start(h)) finish(h, -err);
        break;
      }
    }
  }

  std::uint32_t in_flight() const override { return in_flight_; }
  int storage_lost() const override { return inner_->storage_lost(); }

 private:
  struct Entry {
    Request rq;
    int error = 0;
    std::uint32_t short_bytes = 0;
    __kernel_timespec ts{};
  };

  std::uint32_t new_entry(const Request& rq) {
    std::uint32_t e;
    if (!free_.empty()) {
      e = free_.back();
      free_.pop_back();
    } else {
      e = static_cast<std::uint32_t>(entries_.size());
      entries_.emplace_back();
    }
    entries_[e] = Entry{};
    entries_[e].rq = rq;
    return e;
  }

  int undo(std::uint32_t e, int error) {
    --in_flight_;
    free_.push_back(e);
    return error;
  }

  const FaultRule* match(const Request& rq) {
    const auto& rules = engine_.plan_.rules;
    for (std::size_t i = 0; i < rules.size(); ++i) {
      const FaultRule& r = rules[i];
      if ((r.ops & op_bit(rq.op)) == 0) continue;
      const std::uint64_t end = rq.offset + std::max<std::uint64_t>(rq.length, 1);
      const std::uint64_t rule_end = r.length > UINT64_MAX - r.offset ? UINT64_MAX : r.offset + r.length;
      if (rq.op != Op::Flush && (end <= r.offset || rq.offset >= rule_end)) continue;
      if (matches_[i]++ % std::max(1u, r.every) != 0) continue;
      return &r;
    }
    return nullptr;
  }

  // Runs (or fails, or holds) an entry whose latency has passed. 0, or the errno value with which
  // it was refused (nothing of it left queued then).
  int start(std::uint32_t e) {
    Entry& entry = entries_[e];
    if (entry.error != 0) {
      io_uring_sqe* sqe = loop_.sqe();
      if (sqe == nullptr) return EAGAIN;
      io_uring_prep_nop(sqe);
      io_uring_sqe_set_data64(sqe, own(kErrorDone, e));
      engine_.failed_.fetch_add(1, std::memory_order_relaxed);
      return 0;
    }
    if (engine_.stalled_.load(std::memory_order_acquire)) {
      if (!arm_resume_poll()) return EAGAIN;
      held_.push_back(e);
      engine_.held_.fetch_add(1, std::memory_order_relaxed);
      return 0;
    }
    Request inner = entry.rq;
    inner.tag = e;
    return inner_->submit(inner);
  }

  bool arm_resume_poll() {
    if (poll_armed_) return true;
    io_uring_sqe* sqe = loop_.sqe();
    if (sqe == nullptr) return false;
    io_uring_prep_poll_add(sqe, resume_fd_.get(), POLLIN);
    io_uring_sqe_set_data64(sqe, own(kResumePoll));
    poll_armed_ = true;
    return true;
  }

  // The inner channel's completion of entry `tag`.
  void completed(std::uint32_t tag, int res) override {
    Entry& entry = entries_[tag];
    if (res > 0 && entry.short_bytes != 0 && static_cast<std::uint32_t>(res) > entry.short_bytes &&
        (entry.rq.op == Op::Read || entry.rq.op == Op::Write)) {
      res = static_cast<int>(entry.short_bytes);
      engine_.shortened_.fetch_add(1, std::memory_order_relaxed);
    }
    finish(tag, res);
  }

  void finish(std::uint32_t e, int res) {
    const std::uint32_t tag = entries_[e].rq.tag;
    --in_flight_;
    free_.push_back(e);
    sink_->completed(tag, res);
  }

  FaultEngine& engine_;
  Loop& loop_;
  std::unique_ptr<Channel> inner_;
  std::mt19937_64 random_;
  std::vector<std::uint64_t> matches_;
  std::deque<Entry> entries_;  // stable addresses: a queued timeout points at its entry's ts
  std::vector<std::uint32_t> free_;
  std::vector<std::uint32_t> held_;
  UniqueFd resume_fd_;
  bool poll_armed_ = false;
  std::uint32_t in_flight_ = 0;
  CompletionSink* sink_ = nullptr;
};

FaultEngine::FaultEngine(std::unique_ptr<Engine> inner, FaultPlan plan)
    : inner_(std::move(inner)), plan_(std::move(plan)) {}

std::expected<std::unique_ptr<Channel>, int> FaultEngine::open_channel(Loop& loop) {
  auto inner = inner_->open_channel(loop);
  if (!inner) return std::unexpected(inner.error());
  const std::uint64_t seed = plan_.seed + channels_opened_.fetch_add(1);
  auto channel = std::make_unique<FaultChannel>(*this, loop, std::move(*inner), seed);
  if (int e = channel->open()) return std::unexpected(e);
  return channel;
}

void FaultEngine::stall() { stalled_.store(true, std::memory_order_release); }

void FaultEngine::resume() {
  stalled_.store(false, std::memory_order_release);
  std::lock_guard lock(channels_mutex_);
  const std::uint64_t one = 1;
  for (int fd : resume_fds_) [[maybe_unused]] ssize_t r = ::write(fd, &one, sizeof one);
}

}  // namespace pvback::storage
