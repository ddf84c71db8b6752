// base/prometheus: the text exposition the daemons write for node_exporter's textfile collector.
// Its output is checked by the test's own reader of the format (tests/support/prometheus_text.hpp)
// and, where Debian's prometheus package is installed, by `promtool check metrics`.
#include "base/prometheus.hpp"

#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>

#include "tests/support/prometheus_text.hpp"

namespace pvback::test {
namespace {

using prometheus::Exposition;
using prometheus::Type;

struct FakeStats {
  Counter done, bytes, pending;
};

constexpr prometheus::QueueMetric<FakeStats> kRows[] = {
    {"x_ops_total", Type::Counter, "Operations done", "op", "a", &FakeStats::done},
    {"x_bytes_total", Type::Counter, "Bytes", nullptr, nullptr, &FakeStats::bytes, 512},
    {"x_pending", Type::Gauge, "Pending", nullptr, nullptr, &FakeStats::pending},
};

TEST(Prometheus, FamiliesStayTogetherWhateverTheOrderOfTheirSamples) {
  Exposition e;
  e.family("b_total", Type::Counter, "B");
  e.family("a", Type::Gauge, "A");
  e.sample("b_total", {{"d", "1"}}, 1);
  e.sample("a", {{"d", "1"}}, 2);
  e.sample("b_total", {{"d", "2"}}, 3);
  e.family("b_total", Type::Gauge, "declared again: ignored");
  e.sample("undeclared", {}, 4);
  EXPECT_EQ(e.render(),
            "# HELP b_total B\n# TYPE b_total counter\nb_total{d=\"1\"} 1\nb_total{d=\"2\"} 3\n"
            "# HELP a A\n# TYPE a gauge\na{d=\"1\"} 2\n");
  const PromText parsed = parse_prometheus_text(e.render());
  EXPECT_EQ(parsed.error, "");
  EXPECT_EQ(parsed.sum("b_total"), 4);
}

TEST(Prometheus, LabelValuesAndHelpAreEscaped) {
  EXPECT_EQ(prometheus::escape_label_value("a\\b\"c\nd"), "a\\\\b\\\"c\\nd");
  Exposition e;
  e.family("m", Type::Gauge, "line one\nback\\slash");
  e.sample("m", {{"path", "/dev/\"x\"\\y\n"}}, 7);
  EXPECT_EQ(e.render(), "# HELP m line one\\nback\\\\slash\n# TYPE m gauge\nm{path=\"/dev/\\\"x\\\"\\\\y\\n\"} 7\n");
  const PromText parsed = parse_prometheus_text(e.render());
  ASSERT_EQ(parsed.error, "");
  ASSERT_EQ(parsed.samples.size(), 1u);
  EXPECT_EQ(parsed.samples[0].labels.at("path"), "/dev/\"x\"\\y\n");
}

TEST(Prometheus, QueueSeriesCarryTheQueueAndPastConnectionsCountOnlyForCounters) {
  FakeStats q0, q1, past;
  q0.done.add(3);
  q1.done.add(4);
  q0.bytes.add(2);  // sectors: scaled to bytes
  q1.pending.set(5);
  past.done.add(10);
  past.pending.set(99);  // a gauge of an ended connection means nothing
  const std::vector<FakeStats*> queues = {&q0, &q1};
  Exposition e;
  prometheus::append_queue_metrics(e, {{"domid", "1"}}, past, queues, kRows);
  const PromText parsed = parse_prometheus_text(e.render());
  ASSERT_EQ(parsed.error, "") << e.render();
  EXPECT_EQ(parsed.sum("x_ops_total", {{"queue", "0"}, {"op", "a"}, {"domid", "1"}}), 3);
  EXPECT_EQ(parsed.sum("x_ops_total", {{"queue", "1"}}), 4);
  EXPECT_EQ(parsed.sum("x_ops_total", {{"queue", "past"}}), 10);
  EXPECT_EQ(parsed.sum("x_ops_total"), 17);  // the device's total since it is served
  EXPECT_EQ(parsed.sum("x_bytes_total", {{"queue", "0"}}), 1024);
  EXPECT_EQ(parsed.count("x_pending"), 2u);  // no queue="past" for a gauge
  EXPECT_EQ(parsed.sum("x_pending"), 5);
}

TEST(Prometheus, TheTestReaderRefusesMalformedText) {
  for (const char* bad : {
           "m 1\n",                                            // no HELP/TYPE
           "# HELP m x\n# TYPE m gauge\nm{a=\"1\" 1\n",         // unterminated labels
           "# HELP m x\n# TYPE m gauge\nm{a=1} 1\n",            // unquoted
           "# HELP m x\n# TYPE m gauge\nm{a=\"\\q\"} 1\n",      // bad escape
           "# HELP m x\n# TYPE m gauge\nm 1\nm 2\n",            // series twice
           "# HELP m x\n# TYPE m counter\nm 1\n",               // counter without _total
           "# HELP m x\n# TYPE m gauge\nm one\n",               // value
           "# HELP a x\n# TYPE a gauge\na 1\n# HELP b x\n# TYPE b gauge\nb 1\na{x=\"1\"} 2\n",  // split family
           "# HELP m x\n# TYPE m gauge\nm 1",                   // no final newline
       })
    EXPECT_NE(parse_prometheus_text(bad).error, "") << bad;
}

// The whole format checked by Prometheus' own tool too, when Debian's prometheus is installed.
TEST(Prometheus, PromtoolAcceptsTheExposition) {
  FakeStats q0, past;
  q0.done.add(1);
  const std::vector<FakeStats*> queues = {&q0};
  Exposition e;
  prometheus::append_queue_metrics(e, {{"domid", "1"}, {"devid", "51712"}}, past, queues, kRows);
  const auto path = std::filesystem::temp_directory_path() / ("pvback-prom-" + std::to_string(::getpid()) + ".prom");
  std::ofstream(path) << e.render();
  const auto checked = promtool_check(path);
  std::filesystem::remove(path);
  if (!checked) GTEST_SKIP() << "promtool is not installed (Debian's prometheus package)";
  EXPECT_EQ(checked->first, 0) << checked->second;
}

}  // namespace
}  // namespace pvback::test
