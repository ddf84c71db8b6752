// pvbackctl without a daemon: the answers' parser, the checks on an answer, the command line and
// the formatting of list, info and stats.
#include <cerrno>

#include <gtest/gtest.h>

#include "ctl/client.hpp"
#include "ctl/command_line.hpp"
#include "ctl/format.hpp"
#include "ctl/json.hpp"

namespace pvback::ctl {
namespace {

Json parsed(std::string_view text) {
  auto v = parse_json(text);
  EXPECT_TRUE(v.has_value()) << text << ": " << (v ? "" : v.error());
  return v ? *v : Json{};
}

TEST(CtlJson, ParsesWhatTheDaemonWrites) {
  const Json v = parsed(R"({"version": 1, "ok": true, "a": [1, -2.5e3, "x\"\n\u0001"], "b": {"c": null, "d": false},
                            "big": 18446744073709551615})");
  ASSERT_TRUE(v.is(Json::Type::Object));
  EXPECT_EQ(v.find("version")->integer(), 1);
  EXPECT_TRUE(v.find("ok")->boolean);
  EXPECT_EQ(v.find("a")->items.size(), 3u);
  EXPECT_EQ(v.find("a")->items[1].text, "-2.5e3");
  EXPECT_EQ(v.find("a")->items[2].text, "x\"\n\x01");
  EXPECT_TRUE(v.find("b")->find("c")->is(Json::Type::Null));
  EXPECT_FALSE(v.find("b")->find("d")->boolean);
  // A counter beyond int64 keeps its literal.
  EXPECT_EQ(v.find("big")->scalar(), "18446744073709551615");
  EXPECT_FALSE(v.find("big")->integer().has_value());
  EXPECT_EQ(v.find("missing"), nullptr);
  EXPECT_EQ(to_json(*v.find("a")), R"([1, -2.5e3, "x\"\u000a\u0001"])");
}

TEST(CtlJson, RefusesMalformedText) {
  for (const char* bad : {"", "{", "{\"a\" 1}", "{\"a\": 1,}", "[1 2]", "01", "1.", "\"open", "tru", "{} x",
                          "\"\\q\"", "\"\x01\"", "{1: 2}"})
    EXPECT_FALSE(parse_json(bad).has_value()) << bad;
  EXPECT_NE(parse_json("{\"a\" 1}").error().find("at byte"), std::string::npos);
  EXPECT_FALSE(parse_json(std::string(kMaxJsonDepth + 2, '[') + std::string(kMaxJsonDepth + 2, ']')).has_value());
  EXPECT_TRUE(parse_json(std::string(kMaxJsonDepth, '[') + std::string(kMaxJsonDepth, ']')).has_value());
}

TEST(CtlClient, ChecksEveryAnswer) {
  EXPECT_TRUE(check_answer(R"({"version": 1, "ok": true, "devices": []})").has_value());
  const auto refused = check_answer(R"({"version": 1, "ok": false, "error": "no such device: vbd-9-9"})");
  ASSERT_FALSE(refused.has_value());
  EXPECT_EQ(refused.error().status, kRefused);
  EXPECT_EQ(refused.error().message, "no such device: vbd-9-9");
  for (const char* bad : {"garbage", "[]", R"({"version": 1})", R"({"version": 1, "ok": "yes"})",
                          R"({"version": 1, "ok": false})"}) {
    const auto e = check_answer(bad);
    ASSERT_FALSE(e.has_value()) << bad;
    EXPECT_EQ(e.error().status, kBadAnswer) << bad;
    EXPECT_NE(e.error().message.find("malformed answer"), std::string::npos) << e.error().message;
  }
  const auto other = check_answer(R"({"version": 2, "ok": true})");
  ASSERT_FALSE(other.has_value());
  EXPECT_NE(other.error().message.find("protocol version 2"), std::string::npos);
}

TEST(CtlClient, EachConnectFailureHasItsOwnMessageAndStatus) {
  const Error absent = connect_error("/run/pvback/control.sock", ENOENT);
  const Error stale = connect_error("/run/pvback/control.sock", ECONNREFUSED);
  const Error denied = connect_error("/run/pvback/control.sock", EACCES);
  EXPECT_EQ(absent.status, kNotRunning);
  EXPECT_EQ(stale.status, kNotRunning);
  EXPECT_EQ(denied.status, kPermission);
  EXPECT_NE(absent.message.find("not running"), std::string::npos);
  EXPECT_NE(stale.message.find("dead daemon"), std::string::npos);
  EXPECT_NE(denied.message.find("run pvbackctl as root"), std::string::npos);
  EXPECT_NE(absent.message, stale.message);
}

TEST(CtlCommandLine, ParsesOptionsAnywhere) {
  auto c = parse_command_line({"stats", "vbd-5-768", "--queue", "1", "--watch", "0.5", "--count", "3", "--json"});
  ASSERT_TRUE(c.has_value()) << c.error();
  EXPECT_EQ(c->command, "stats");
  EXPECT_EQ(c->device, "vbd-5-768");
  EXPECT_EQ(c->queue, 1u);
  EXPECT_EQ(c->watch_seconds, 0.5);
  EXPECT_EQ(c->count, 3u);
  EXPECT_TRUE(c->json);
  c = parse_command_line({"--socket", "/tmp/s", "stats", "--watch", "vif-1-0"});
  ASSERT_TRUE(c.has_value()) << c.error();
  EXPECT_EQ(c->socket, "/tmp/s");
  EXPECT_EQ(c->watch_seconds, kDefaultWatchSeconds);
  EXPECT_EQ(c->device, "vif-1-0");
  EXPECT_TRUE(parse_command_line({"--help"})->help);
  c = parse_command_line({"pause", "--timeout", "120", "vbd-5-768"});
  ASSERT_TRUE(c.has_value()) << c.error();
  EXPECT_EQ(c->command, "pause");
  EXPECT_EQ(c->device, "vbd-5-768");
  EXPECT_EQ(c->timeout_seconds, 120u);
  c = parse_command_line({"resume", "vbd-5-768", "--json"});
  ASSERT_TRUE(c.has_value()) << c.error();
  EXPECT_EQ(c->command, "resume");
  EXPECT_FALSE(c->timeout_seconds.has_value());
}

TEST(CtlCommandLine, RefusesWhatItCannotDo) {
  for (const std::vector<std::string>& bad :
       std::vector<std::vector<std::string>>{{},
                                             {"frobnicate"},
                                             {"info"},
                                             {"list", "x"},
                                             {"stats", "vbd-1-2", "--queue", "x"},
                                             {"list", "--watch"},
                                             {"stats", "vbd-1-2", "--count", "2"},
                                             {"stats", "vbd-1-2", "--watch", "0"},
                                             {"--socket"},
                                             {"list", "--bogus"},
                                             {"pause"},
                                             {"resume"},
                                             {"pause", "vbd-1-2", "vbd-1-3"},
                                             {"pause", "vbd-1-2", "--timeout", "0"},
                                             {"pause", "vbd-1-2", "--timeout", "3601"},
                                             {"pause", "vbd-1-2", "--timeout"},
                                             {"resume", "vbd-1-2", "--timeout", "5"},
                                             {"stats", "vbd-1-2", "--timeout", "5"}})
    EXPECT_FALSE(parse_command_line(bad).has_value()) << (bad.empty() ? "(nothing)" : bad[0]);
  EXPECT_EQ(parse_command_line({"frobnicate"}).error(), "unknown command 'frobnicate'");
  EXPECT_EQ(parse_command_line({"resume", "vbd-1-2", "--timeout", "5"}).error(), "--timeout is an option of pause");
}

TEST(CtlFormat, ListIsOneLinePerDevice) {
  const Json answer = parsed(R"({"version": 1, "ok": true, "devices": [
    {"device": "vbd-5-768", "kind": "vbd", "domid": 5, "devid": 768, "served_by": "host", "state": 4,
     "state_name": "Connected", "storage": "/srv/disk.img", "data_plane_pid": 4242, "uptime_s": 3725},
    {"device": "vif-5-0", "kind": "vif", "domid": 5, "devid": 0, "served_by": "process", "backend_pid": 99,
     "state": "2", "state_name": "InitWait", "uptime_s": 5},
    {"device": "vbd-6-768", "kind": "vbd", "domid": 6, "devid": 768, "served_by": "none", "closed": true}]})");
  const std::string text = format_list(answer);
  EXPECT_EQ(text,
            "DEVICE     KIND  DOMAIN  DEVID  STATE      SERVED-BY   PID  UPTIME  STORAGE/EXIT\n"
            "vbd-5-768  vbd        5    768  Connected  host       4242  1h02m   /srv/disk.img\n"
            "vif-5-0    vif        5      0  InitWait   process      99  5s      -\n"
            "vbd-6-768  vbd        6    768  closed     none          -  -       -\n");
  EXPECT_EQ(format_list(parsed(R"({"version": 1, "ok": true, "devices": []})")), "no devices\n");
  EXPECT_EQ(format_uptime(59), "59s");
  EXPECT_EQ(format_uptime(90061), "1d01h");
  EXPECT_EQ(format_uptime(std::nullopt), "-");
}

TEST(CtlFormat, APausedDeviceSaysSoInListAndInfo) {
  const Json list = parsed(R"({"version": 1, "ok": true, "devices": [
    {"device": "vbd-5-768", "kind": "vbd", "domid": 5, "devid": 768, "served_by": "host", "state": 4,
     "state_name": "Connected", "storage": "/srv/disk.img", "data_plane_pid": 4242, "paused": true, "uptime_s": 5},
    {"device": "vbd-6-768", "kind": "vbd", "domid": 6, "devid": 768, "served_by": "host", "state": 4,
     "state_name": "Connected", "storage": "/srv/b.img", "data_plane_pid": 4243, "paused": false, "uptime_s": 5}]})");
  const std::string text = format_list(list);
  EXPECT_NE(text.find("vbd-5-768  vbd        5    768  Connected,paused  host"), std::string::npos) << text;
  EXPECT_NE(text.find("vbd-6-768  vbd        6    768  Connected         host"), std::string::npos) << text;
  const std::string info = format_info(parsed(R"({"version": 1, "ok": true, "info": {"device": "vbd-5-768",
    "served_by": "host", "paused": true, "backend_path": "/b", "frontend_path": "/f", "backend": {}, "frontend": {},
    "stats": null}})"));
  EXPECT_NE(info.find("\npaused                            yes (pvbackctl resume vbd-5-768 ends it)\n"), std::string::npos)
      << info;
}

TEST(CtlFormat, RestartPauseAndResumeSayWhatTheyDid) {
  EXPECT_EQ(format_operation("pause", "vbd-5-768", parsed(R"({"version": 1, "ok": true, "pause": {"device":
    "vbd-5-768", "paused": true, "drained": 12, "drain_ms": 340, "flush_ms": 2, "took_ms": 343}})")),
            "vbd-5-768: paused: 12 request(s) in flight drained in 340 ms, the storage flushed in 2 ms\n");
  EXPECT_EQ(format_operation("resume", "vbd-5-768", parsed(R"({"version": 1, "ok": true, "resume": {"device":
    "vbd-5-768", "paused": false, "waiting": 3, "paused_ms": 61234}})")),
            "vbd-5-768: resumed after 61.2 s paused: 3 request(s) had waited in the rings\n");
  EXPECT_EQ(format_operation("restart", "vif-5-0", parsed(R"({"version": 1, "ok": true, "restart": {"device":
    "vif-5-0", "old_pid": 10, "data_plane_pid": 11}})")),
            "vif-5-0: data plane pid 10 replaced by pid 11\n");
}

TEST(CtlCommandLine, SetTakesATargetAndOneNameValue) {
  auto c = parse_command_line({"set", "vbd-5-768", "max_queues=2", "--json"});
  ASSERT_TRUE(c.has_value()) << c.error();
  EXPECT_EQ(c->command, "set");
  EXPECT_EQ(c->device, "vbd-5-768");
  EXPECT_EQ(c->setting, "max_queues=2");
  EXPECT_TRUE(c->json);
  c = parse_command_line({"set", "all", "rx_stall_timeout_msecs=0"});
  ASSERT_TRUE(c.has_value()) << c.error();
  EXPECT_EQ(c->device, "all");
  for (const std::vector<std::string>& bad :
       {std::vector<std::string>{"set", "vbd-5-768"}, {"set", "vbd-5-768", "max_queues"},
        {"set", "vbd-5-768", "max_queues=2", "--queue", "1"}, {"set", "all", "max_queues=2", "--timeout", "5"},
        {"set", "vbd-5-768", "=2"}, {"set", "vbd-5-768", "a=1", "b=2"}, {"set"}}) {
    EXPECT_FALSE(parse_command_line(bad).has_value()) << bad.size();
  }
}

TEST(CtlFormat, SetSaysWhatChangedOnEachDeviceAndWhen) {
  EXPECT_EQ(format_set(parsed(R"({"version": 1, "ok": true, "set": {"target": "vbd", "devices": [
    {"device": "vbd-5-768", "name": "max_persistent_grants", "old": 1056, "value": 64, "when": "now"},
    {"device": "vbd-6-768", "name": "max_persistent_grants", "old": 64, "value": 64, "when": "now"},
    {"device": "vbd-7-768", "when": "next-start", "note": "served by a backend process of its own (pid 9): it takes the value when it starts again"}],
    "new_devices": true}})")),
            "vbd-5-768: max_persistent_grants 1056 -> 64, in effect now\n"
            "vbd-6-768: max_persistent_grants 64 -> 64, in effect now\n"
            "vbd-7-768: served by a backend process of its own (pid 9): it takes the value when it starts again\n"
            "devices started from now on take it too\n");
  EXPECT_EQ(format_set(parsed(R"({"version": 1, "ok": true, "set": {"target": "vif-5-0", "devices": [
    {"device": "vif-5-0", "name": "max_queues", "old": 4, "value": 1, "when": "next-connect"}],
    "not_kept": "cannot keep it in /run/pvback/tunables.conf: Read-only file system"}})")),
            "vif-5-0: max_queues 4 -> 1, in effect at the frontend's next connection\n"
            "warning: cannot keep it in /run/pvback/tunables.conf: Read-only file system (kept until the host "
            "daemon restarts)\n");
}

TEST(CtlFormat, StatsAsATableAndPerQueue) {
  const Json stats = parsed(R"({"device": "vbd 5/768", "state": "Connected", "data_plane": {"pid": 7, "restarts": 1},
    "total": {"reads": 30, "writes": 4}, "queues": [{"reads": 10, "writes": 4}, {"reads": 20, "writes": 0}]})");
  auto all = format_stats(stats, std::nullopt);
  ASSERT_TRUE(all.has_value());
  EXPECT_EQ(*all,
            "vbd 5/768  Connected  data plane pid 7, 1 restart(s)\n"
            "COUNTER  TOTAL  Q0  Q1\n"
            "reads       30  10  20\n"
            "writes       4   4   0\n");
  auto one = format_stats(stats, 1u);
  ASSERT_TRUE(one.has_value());
  EXPECT_NE(one->find("COUNTER  QUEUE-1\nreads         20\n"), std::string::npos) << *one;
  auto none = format_stats(stats, 2u);
  ASSERT_FALSE(none.has_value());
  EXPECT_EQ(none.error(), "no queue 2: the connection has 2 (0 to 1)");
  EXPECT_EQ(select_counters(stats, 0u)->find("reads")->integer(), 10);
}

TEST(CtlFormat, AVbdsKernelCountersFollowInATableOfTheirOwn) {
  const Json stats = parsed(R"({"device": "vbd 5/768", "state": "Connected",
    "kernel": {"oo_req": 0, "rd_req": 31, "wr_sect": 16},
    "total": {"reads": 30}, "queues": [{"reads": 30}]})");
  auto all = format_stats(stats, std::nullopt);
  ASSERT_TRUE(all.has_value());
  EXPECT_EQ(*all,
            "vbd 5/768  Connected\n"
            "COUNTER  TOTAL  Q0\n"
            "reads       30  30\n"
            "KERNEL-NAME  TOTAL\n"
            "oo_req           0\n"
            "rd_req          31\n"
            "wr_sect         16\n");
  // One queue's view has no kernel table: those are the device's, all queues together.
  auto one = format_stats(stats, 0u);
  ASSERT_TRUE(one.has_value());
  EXPECT_EQ(one->find("KERNEL-NAME"), std::string::npos) << *one;
}

TEST(CtlFormat, WatchShowsRatesPerSecond) {
  const Json before = parsed(R"({"reads": 10, "in_flight": 3})");
  const Json now = parsed(R"({"reads": 30, "in_flight": 1})");
  EXPECT_EQ(format_rates(now, &before, 2.0),
            "COUNTER    VALUE  PER-SECOND\n"
            "reads         30        10.0\n"
            "in_flight      1        -1.0\n");
  EXPECT_EQ(format_rates(now, nullptr, 0), "COUNTER    VALUE\nreads         30\nin_flight      1\n");
}

}  // namespace
}  // namespace pvback::ctl
