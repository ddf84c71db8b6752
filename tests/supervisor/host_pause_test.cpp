// The operator's pause and resume of a vbd the host daemon serves (the control socket's `1 pause`
// and `1 resume`, pvbackctl's pause and resume), and the requests that take a while (a restart, a
// pause's drain) not holding the host daemon's loop. The guest is the userspace blkfront; the disk
// is read from its backing file directly, as a snapshot taken then would copy it. Storage latency
// injected into every operation (--inject-latency-us) keeps requests in flight to drain.
#include <fcntl.h>
#include <signal.h>
#include <unistd.h>

#include <map>

#include "ctl/json.hpp"
#include "tests/supervisor/host_fixture.hpp"

namespace pvback::test {
namespace {

constexpr std::uint64_t kBlock = 4096;
const std::string kVbd = "vbd-1-51712";

const ctl::Json& at(const ctl::Json& v, std::string_view key) {
  static const ctl::Json null;
  const ctl::Json* m = v.find(key);
  return m != nullptr ? *m : null;
}

class HostPauseTest : public HostTest {
 protected:
  // Two queues, and every storage operation waiting a random 0..`latency_us` first.
  static std::vector<std::string> vbd_args(unsigned latency_us) {
    std::vector<std::string> args;
    for (const std::string& a : {std::string("--max-queues"), std::string("2"), std::string("--inject-latency-us"),
                                 std::to_string(latency_us)})
      args.insert(args.end(), {"--blk-arg", a});
    return args;
  }

  void start_with_latency(unsigned latency_us) {
    start_supervisor(vbd_args(latency_us));
    if (HasFatalFailure()) return;
    add_vbd();
    ASSERT_TRUE(eventually([&] { return state(vbd_path()) == XenbusStateInitWait; })) << log_text();
  }

  static ctl::Json parsed(const std::string& text) {
    auto doc = ctl::parse_json(text);
    EXPECT_TRUE(doc.has_value()) << "not JSON: " << text;
    return doc ? *doc : ctl::Json{};
  }
  static bool ok(const ctl::Json& answer) { return at(answer, "ok").boolean; }

  // The device's entry in `1 list`.
  ctl::Json listed(const std::string& device = kVbd) {
    const std::string list = control("1 list");
    const ctl::Json doc = parsed(list);
    for (const auto& d : at(doc, "devices").items)
      if (at(d, "device").text == device) return d;
    ADD_FAILURE() << device << " not listed: " << list;
    return {};
  }

  // A counter of the vbd's statistics, summed over its queues (in_flight: taken, not answered).
  std::int64_t total(const std::string& counter) {
    return at(at(at(parsed(control("1 stats " + kVbd)), "stats"), "total"), counter).integer().value_or(-1);
  }

  // `count` blocks written from block `first`, one request each, alternately on both queues (the
  // tag is the block), published at once. What each wrote, by tag.
  static std::map<std::uint64_t, std::vector<std::byte>> submit_writes(blkfront::BlkFront& front, std::uint64_t first,
                                                                       unsigned count, unsigned seed) {
    std::map<std::uint64_t, std::vector<std::byte>> writes;
    for (unsigned i = 0; i < count; ++i) {
      const std::uint64_t block = first + i;
      auto& data = writes[block] = pattern(kBlock, seed * 1000 + i);
      EXPECT_EQ(front.queue(i % 2).submit_write(block * (kBlock / 512), data, block), 0);
    }
    for (unsigned q = 0; q < 2; ++q) EXPECT_EQ(front.queue(q).kick(), 0);
    return writes;
  }

  // Every answer in the rings now, by tag (its error).
  static std::map<std::uint64_t, int> reap(blkfront::BlkFront& front) {
    std::map<std::uint64_t, int> out;
    for (unsigned q = 0; q < 2; ++q) {
      blkfront::Completion c[64];
      while (const std::size_t n = front.queue(q).poll(c))
        for (std::size_t k = 0; k < n; ++k) EXPECT_TRUE(out.emplace(c[k].tag, c[k].error).second) << "answered twice";
    }
    return out;
  }

  // Waits (up to `timeout`) until `count` answers came, every one of them a success.
  static void expect_answered(blkfront::BlkFront& front, std::map<std::uint64_t, int>& answers, std::size_t count,
                              std::chrono::milliseconds timeout = 60s) {
    const bool all = eventually([&] {
      for (unsigned q = 0; q < 2; ++q) front.queue(q).wait(5ms);
      answers.merge(reap(front));
      return answers.size() >= count;
    }, timeout);
    EXPECT_TRUE(all) << answers.size() << " of " << count << " answered";
    EXPECT_EQ(answers.size(), count);
    for (const auto& [tag, error] : answers) EXPECT_EQ(error, 0) << "block " << tag;
  }

  // A block of the backing file, as a snapshot would copy it.
  std::vector<std::byte> disk_block(std::uint64_t block) const {
    std::vector<std::byte> out(kBlock);
    const UniqueFd fd(::open(disk_.c_str(), O_RDONLY | O_CLOEXEC));
    EXPECT_EQ(::pread(fd.get(), out.data(), out.size(), static_cast<off_t>(block * kBlock)),
              static_cast<ssize_t>(kBlock));
    return out;
  }

  // Nothing of `writes` answered within 500 ms, none taken by the data plane, none on the disk.
  void expect_waiting(blkfront::BlkFront& front, const std::map<std::uint64_t, std::vector<std::byte>>& writes) {
    for (unsigned q = 0; q < 2; ++q) front.queue(q).wait(250ms);
    EXPECT_TRUE(reap(front).empty()) << "answered while paused";
    EXPECT_EQ(total("in_flight"), 0) << "taken while paused";
    for (const auto& [block, data] : writes) EXPECT_FALSE(disk_block(block) == data) << "block " << block << " written";
  }
};

// Writes in flight at the pause are answered before its answer, the storage then holds every one
// of them, and new requests wait in the rings, neither answered nor failed, until the resume.
TEST_F(HostPauseTest, APausedVbdAnswersWhatItTookAndTakesNothingNewUntilResumed) {
  start_with_latency(1'000'000);  // up to 1 s per operation
  if (HasFatalFailure()) return;
  auto front = attach();
  ASSERT_NE(front, nullptr);
  ASSERT_EQ(front->num_queues(), 2u);
  const auto writes = submit_writes(*front, 0, 16, 1);
  // Every one taken by the data plane (answered or in flight) before the pause is asked.
  ASSERT_TRUE(eventually([&] { return total("writes") + total("in_flight") >= 16; }, 30s)) << log_text();

  const std::string answer = control("1 pause " + kVbd, 60s);
  std::printf("%s", answer.c_str());
  const ctl::Json paused = parsed(answer);
  ASSERT_TRUE(ok(paused)) << answer << log_text();
  const ctl::Json& figures = at(paused, "pause");
  EXPECT_TRUE(at(figures, "paused").boolean);
  EXPECT_EQ(at(figures, "device").text, kVbd);
  const auto drained = at(figures, "drained").integer();
  ASSERT_TRUE(drained.has_value()) << answer;
  EXPECT_LE(*drained, 16);
  for (const char* f : {"drain_ms", "flush_ms", "took_ms"}) EXPECT_GE(at(figures, f).integer().value_or(-1), 0) << f;
  // Answered before the pause was: every answer is in the rings already.
  std::map<std::uint64_t, int> answers = reap(*front);
  EXPECT_EQ(answers.size(), 16u);
  for (const auto& [tag, error] : answers) EXPECT_EQ(error, 0) << "block " << tag;
  for (const auto& [block, data] : writes) EXPECT_TRUE(disk_block(block) == data) << "block " << block;
  EXPECT_TRUE(at(listed(), "paused").boolean);
  EXPECT_TRUE(at(at(parsed(control("1 info " + kVbd)), "info"), "paused").boolean);
  EXPECT_EQ(log_count("paused on request"), 1u) << log_text();

  const auto later = submit_writes(*front, 100, 2, 2);  // one on each queue
  expect_waiting(*front, later);
  EXPECT_NE(control("1 pause " + kVbd).find("is paused already"), std::string::npos);

  const std::string resumed = control("1 resume " + kVbd);
  std::printf("%s", resumed.c_str());
  const ctl::Json r = parsed(resumed);
  ASSERT_TRUE(ok(r)) << resumed;
  EXPECT_FALSE(at(at(r, "resume"), "paused").boolean);
  EXPECT_EQ(at(at(r, "resume"), "waiting").integer(), 2) << resumed;
  std::map<std::uint64_t, int> after;
  expect_answered(*front, after, 2);
  for (const auto& [block, data] : later) EXPECT_TRUE(disk_block(block) == data) << "block " << block;
  EXPECT_FALSE(at(listed(), "paused").boolean);
  EXPECT_NE(control("1 resume " + kVbd).find("is not paused"), std::string::npos);
}

// While one vbd's pause drains, and while its restart waits for the old data plane, against a
// slow storage, the host daemon answers another device's requests: the request made second is
// answered first. A restart or another pause of the device meanwhile is refused.
TEST_F(HostPauseTest, APauseDrainingAndARestartStoppingDoNotHoldTheHostDaemon) {
  start_with_latency(2'000'000);  // up to 2 s per operation
  if (HasFatalFailure()) return;
  add_guest2_vbd();
  const std::string vbd2 = sim::vbd_backend_path(0, kGuest2, kDevid);
  ASSERT_TRUE(eventually([&] { return state(vbd2) == XenbusStateInitWait; })) << log_text();
  auto front = attach();
  ASSERT_NE(front, nullptr);
  const pid_t first_plane = listed_data_plane_pid();
  std::map<std::uint64_t, int> answers;
  std::size_t submitted = 0;
  for (const std::string& request : {"1 pause " + kVbd, "1 restart " + kVbd}) {
    SCOPED_TRACE(request);
    const auto writes = submit_writes(*front, submitted, 8, static_cast<unsigned>(submitted + 3));
    submitted += writes.size();
    ASSERT_TRUE(eventually([&] { return total("in_flight") >= 4; }, 30s)) << "not in flight";
    auto slow = control_connection();
    ASSERT_TRUE(slow.send(request));
    const std::string list = control("1 list");
    const std::string stats2 = control("1 stats vbd-2-51712");
    const bool answered_first = !slow.answered();
    EXPECT_TRUE(answered_first) << "the second device's requests were answered only after the slow one";
    EXPECT_NE(list.find("\"device\": \"vbd-2-51712\""), std::string::npos) << list;
    EXPECT_NE(stats2.find("\"ok\": true, \"stats\""), std::string::npos) << stats2;
    if (answered_first) {
      const std::string busy = control("1 restart " + kVbd);
      EXPECT_NE(busy.find("under way"), std::string::npos) << busy;
    }
    const std::string done = slow.answer(60s);
    std::printf("%s", done.c_str());
    ASSERT_NE(done.find("\"ok\": true"), std::string::npos) << done << log_text();
    // The writes the data plane had not taken yet when the pause began (on a loaded machine, some
    // of the 8) wait in the rings until the resume.
    if (request.starts_with("1 pause")) {
      ASSERT_NE(control("1 resume " + kVbd).find("\"ok\": true"), std::string::npos);
    }
    expect_answered(*front, answers, submitted);
    for (const auto& [block, data] : writes) EXPECT_TRUE(disk_block(block) == data) << "block " << block;
  }
  EXPECT_NE(listed_data_plane_pid(), first_plane);
  EXPECT_EQ(state(vbd_path()), XenbusStateConnected);
}

// A stalled storage: the drain does not finish within the pause's timeout, the operator gets an
// error, and the device is not left paused (its new requests are taken).
TEST_F(HostPauseTest, ADrainPastItsTimeoutIsGivenUpAndTheVbdResumed) {
  start_with_latency(10'000'000);  // up to 10 s per operation
  if (HasFatalFailure()) return;
  auto front = attach();
  ASSERT_NE(front, nullptr);
  submit_writes(*front, 0, 8, 4);
  ASSERT_TRUE(eventually([&] { return total("in_flight") >= 4; }, 30s)) << "not in flight";
  const std::string answer = control("1 pause " + kVbd + " 1", 30s);
  std::printf("%s", answer.c_str());
  EXPECT_NE(answer.find("\"ok\": false"), std::string::npos) << answer;
  EXPECT_NE(answer.find("the drain did not finish within 1 s"), std::string::npos) << answer;
  EXPECT_NE(answer.find("resumed, not paused"), std::string::npos) << answer;
  EXPECT_FALSE(at(listed(), "paused").boolean);
  submit_writes(*front, 100, 2, 5);
  std::map<std::uint64_t, int> answers;
  expect_answered(*front, answers, 10, 90s);
}

// The pause is the device's: the data plane started after its predecessor was killed starts
// paused, and so does the one of a new connection of the frontend.
TEST_F(HostPauseTest, APauseOutlivesItsDataPlaneAndTheFrontendsReconnection) {
  start_with_latency(1000);
  if (HasFatalFailure()) return;
  auto front = attach();
  ASSERT_NE(front, nullptr);
  write_and_verify(*front, 1);
  ASSERT_TRUE(ok(parsed(control("1 pause " + kVbd)))) << log_text();
  const pid_t first = listed_data_plane_pid();
  ASSERT_GT(first, 1);
  ASSERT_EQ(::kill(first, SIGKILL), 0);
  ASSERT_TRUE(eventually([&] { return listed_data_plane_pid() > 1 && listed_data_plane_pid() != first; })) << log_text();
  EXPECT_TRUE(at(listed(), "paused").boolean);
  EXPECT_TRUE(eventually([&] { return log_count("the data plane started paused") == 1; })) << log_text();

  ASSERT_EQ(front->detach(), 0);
  front.reset();
  ASSERT_TRUE(eventually([&] { return state(vbd_path()) == XenbusStateClosed; })) << log_text();
  EXPECT_TRUE(at(listed(), "paused").boolean);
  front = attach();
  ASSERT_NE(front, nullptr);
  EXPECT_TRUE(at(listed(), "paused").boolean);
  const auto writes = submit_writes(*front, 20, 2, 6);
  expect_waiting(*front, writes);
  ASSERT_TRUE(ok(parsed(control("1 resume " + kVbd))));
  std::map<std::uint64_t, int> answers;
  expect_answered(*front, answers, 2);
  for (const auto& [block, data] : writes) EXPECT_TRUE(disk_block(block) == data) << "block " << block;
}

// ... and the host daemon's: its successor adopting the data plane (after a SIGKILL) learns the
// pause from it, and one started after a SIGTERM (which stops the data planes) from the marker
// beside the recovery records.
TEST_F(HostPauseTest, APauseOutlivesTheHostDaemon) {
  start_with_latency(1000);
  if (HasFatalFailure()) return;
  auto front = attach();
  ASSERT_NE(front, nullptr);
  ASSERT_TRUE(ok(parsed(control("1 pause " + kVbd)))) << log_text();
  const pid_t plane = listed_data_plane_pid();
  ASSERT_EQ(::kill(supervisor_pid(), SIGKILL), 0);
  ASSERT_TRUE(wait_supervisor_exit().has_value());
  start_supervisor(vbd_args(1000));
  ASSERT_TRUE(eventually([&] { return listed_data_plane_pid() == plane; })) << control("1 list") << log_text();
  EXPECT_TRUE(at(listed(), "paused").boolean);

  ASSERT_EQ(::kill(supervisor_pid(), SIGTERM), 0);
  ASSERT_TRUE(wait_supervisor_exit().has_value());
  start_supervisor(vbd_args(1000));
  ASSERT_TRUE(eventually([&] { return listed_data_plane_pid() > 1 && listed_data_plane_pid() != plane; }))
      << control("1 list") << log_text();
  EXPECT_TRUE(at(listed(), "paused").boolean);
  EXPECT_NE(log_text().find("paused by the operator before this process started"), std::string::npos) << log_text();
  const auto writes = submit_writes(*front, 30, 2, 7);
  expect_waiting(*front, writes);
  ASSERT_TRUE(ok(parsed(control("1 resume " + kVbd))));
  std::map<std::uint64_t, int> answers;
  expect_answered(*front, answers, 2);
}

}  // namespace
}  // namespace pvback::test
