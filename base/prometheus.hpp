// Prometheus' text exposition format (version 0.0.4), as node_exporter's textfile collector reads
// it: metric families, each a "# HELP" and a "# TYPE" line and then all of its samples together,
// however many devices (or processes' files) contribute samples to it.
//
// The daemons write it as a file, replaced atomically, into the directory that node_exporter's
// --collector.textfile.directory names: no listening socket in a privileged daemon.
#pragma once
#include <cstdint>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "base/counter.hpp"

namespace pvback::prometheus {

enum class Type { Counter, Gauge };

using Labels = std::vector<std::pair<std::string, std::string>>;

class Exposition {
 public:
  // Declares a family (its name, snake_case, counters ending in _total). Declaring one again is
  // harmless: the first help and type stay.
  void family(std::string_view name, Type type, std::string_view help);
  // One sample of a declared family (an undeclared name is ignored: a programming error shows as
  // a missing series in tests, never as a malformed file).
  void sample(std::string_view name, const Labels& labels, std::uint64_t value);
  bool empty() const { return families_.empty(); }
  // The whole exposition, families in the order they were first declared.
  std::string render() const;

 private:
  struct Family {
    std::string name, help;
    Type type;
    std::string samples;  // rendered lines
  };
  Family* find(std::string_view name);
  std::vector<Family> families_;
};

// A label value escaped for the text format (backslash, double quote, newline).
std::string escape_label_value(std::string_view value);

// The series every backend has per device, `prefix` being "pvback_vbd" or "pvback_vif":
// <prefix>_state (its XenbusState), <prefix>_queues (of the current connection) and
// <prefix>_data_plane_restarts_total (during the current connection).
void append_device_metrics(Exposition& e, const std::string& prefix, const Labels& device, unsigned state,
                           std::size_t queues, unsigned restarts);

// One per-queue series of a backend: a counter of its QueueStats, with at most one label of its
// own beside the device's and the queue's (rows sharing a name are one family).
template <class Stats>
struct QueueMetric {
  const char* name;
  Type type;
  const char* help;
  const char* label;  // nullptr: none
  const char* value;
  Counter Stats::*member;
  std::uint64_t scale = 1;  // e.g. 512 for sectors shown as bytes
};

// Every row for each live queue (queue="0", "1", ...) and, for counters, queue="past": what the
// device's earlier connections counted (pvback's statistics file's totals include it), so that a
// sum over queue stays monotonic across the frontend's reconnections.
template <class Stats, class Queues, class Rows>
void append_queue_metrics(Exposition& e, const Labels& device, const Stats& past, const Queues& queues,
                          const Rows& rows) {
  for (const auto& r : rows) e.family(r.name, r.type, r.help);
  auto emit = [&](const Stats& stats, const std::string& queue, bool gauges) {
    for (const auto& r : rows) {
      if (r.type == Type::Gauge && !gauges) continue;
      Labels labels = device;
      labels.emplace_back("queue", queue);
      if (r.label != nullptr) labels.emplace_back(r.label, r.value);
      e.sample(r.name, labels, (stats.*r.member).get() * r.scale);
    }
  };
  for (std::size_t i = 0; i < queues.size(); ++i) emit(*queues[i], std::to_string(i), true);
  emit(past, "past", false);
}

}  // namespace pvback::prometheus
