// Small text output helpers for the statistics files the backends keep.
#pragma once
#include <memory>
#include <string>
#include <vector>

#include "base/counter.hpp"

namespace pvback {

// Writes `content` to `path` atomically (write a sibling, then rename), so a reader (cat, the
// operator CLI, a test) never sees a partial file. 0 or an errno value.
int write_file_atomically(const std::string& path, const std::string& content);

// `s` as a JSON string literal, quotes included.
std::string json_string(const std::string& s);

// Appends {"name": value, ...} for a table of {name, pointer-to-Counter-member} fields (the
// backends' kQueueStatsFields).
template <class Stats, class Fields>
void append_json_counters(std::string& out, const Stats& stats, const Fields& fields) {
  out += '{';
  bool first = true;
  for (const auto& field : fields) {
    if (!first) out += ", ";
    first = false;
    out += '"';
    out += field.name;
    out += "\": ";
    out += std::to_string((stats.*field.member).get());
  }
  out += '}';
}

// The closing part of a backend's statistics file: "total" (`past`, the queues of earlier
// connections, plus every live queue), "queues" (each live queue), and the object's last brace.
// `queues` holds pointers (or unique_ptrs) to each live queue's Stats.
template <class Stats, class Queues, class Fields>
void append_json_queue_stats(std::string& out, const Stats& past, const Queues& queues, const Fields& fields) {
  Stats total;
  add_queue_totals(total, past, queues, fields);
  out += "  \"total\": ";
  append_json_counters(out, total, fields);
  out += ",\n  \"queues\": [";
  for (std::size_t i = 0; i < queues.size(); ++i) {
    out += i == 0 ? "\n    " : ",\n    ";
    append_json_counters(out, *queues[i], fields);
  }
  out += queues.empty() ? "]\n}\n" : "\n  ]\n}\n";
}

}  // namespace pvback
