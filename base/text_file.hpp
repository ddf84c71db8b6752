// Small text output helpers for the statistics files the backends keep.
#pragma once
#include <string>

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

}  // namespace pvback
