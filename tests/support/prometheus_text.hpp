// A strict reader of Prometheus' text exposition format (0.0.4) for tests: what the daemons write
// for node_exporter's textfile collector is checked line by line (HELP and TYPE once per family and
// before its samples, a family's samples together, metric and label names, label escapes, values,
// no series twice, counters named *_total and never negative), and its samples can be summed.
// Where Debian's `promtool` is installed, promtool_check() also runs `promtool check metrics`.
#pragma once
#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>
#include <optional>
#include <set>
#include <sstream>
#include <string>
#include <vector>

namespace pvback::test {

struct PromSample {
  std::string name;
  std::map<std::string, std::string> labels;
  double value = 0;
};

struct PromText {
  std::vector<PromSample> samples;
  std::map<std::string, std::string> help, type;
  std::string error;  // the first problem found (with its line), empty if none

  // The sum of the samples of `name` whose labels include every one of `match`.
  double sum(const std::string& name, const std::map<std::string, std::string>& match = {}) const {
    double total = 0;
    for (const PromSample& s : samples) {
      if (s.name != name) continue;
      bool all = true;
      for (const auto& [k, v] : match) {
        const auto it = s.labels.find(k);
        all = all && it != s.labels.end() && it->second == v;
      }
      if (all) total += s.value;
    }
    return total;
  }
  std::size_t count(const std::string& name) const {
    std::size_t n = 0;
    for (const PromSample& s : samples) n += s.name == name;
    return n;
  }
};

namespace prom_detail {

inline bool name_start(char c) { return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_'; }
inline bool name_char(char c) { return name_start(c) || (c >= '0' && c <= '9'); }
inline bool metric_name(const std::string& s) {
  if (s.empty() || !(name_start(s[0]) || s[0] == ':')) return false;
  for (char c : s)
    if (!name_char(c) && c != ':') return false;
  return true;
}
inline bool label_name(const std::string& s) {
  if (s.empty() || !name_start(s[0]) || s.starts_with("__")) return false;
  for (char c : s)
    if (!name_char(c)) return false;
  return true;
}

}  // namespace prom_detail

inline PromText parse_prometheus_text(const std::string& text) {
  using namespace prom_detail;
  PromText out;
  if (!text.empty() && text.back() != '\n') {
    out.error = "the text does not end with a newline";
    return out;
  }
  std::set<std::string> closed;   // families whose samples ended (another family came after)
  std::set<std::string> series;   // name{sorted labels}
  std::string current;            // the family of the last HELP/TYPE/sample line
  std::istringstream in(text);
  std::string line;
  int number = 0;
  auto fail = [&](const std::string& why) {
    if (out.error.empty()) out.error = "line " + std::to_string(number) + ": " + why + ": " + line;
  };
  auto enter = [&](const std::string& family) {
    if (family == current) return true;
    if (closed.count(family) != 0) return false;
    if (!current.empty()) closed.insert(current);
    current = family;
    return true;
  };
  while (std::getline(in, line) && out.error.empty()) {
    ++number;
    if (line.empty()) continue;
    if (line[0] == '#') {
      std::istringstream words(line);
      std::string hash, keyword, name;
      words >> hash >> keyword >> name;
      if (keyword != "HELP" && keyword != "TYPE") continue;  // a plain comment
      if (!metric_name(name)) { fail("bad metric name"); break; }
      if (!enter(name)) { fail("family " + name + " continued after another"); break; }
      std::string rest;
      std::getline(words, rest);
      if (!rest.empty() && rest[0] == ' ') rest.erase(0, 1);
      if (keyword == "HELP") {
        if (out.help.count(name) != 0) { fail("second HELP"); break; }
        if (out.type.count(name) != 0 || out.count(name) != 0) { fail("HELP after TYPE or samples"); break; }
        out.help[name] = rest;
      } else {
        if (out.type.count(name) != 0) { fail("second TYPE"); break; }
        if (out.count(name) != 0) { fail("TYPE after samples"); break; }
        if (rest != "counter" && rest != "gauge" && rest != "histogram" && rest != "summary" && rest != "untyped") {
          fail("bad type");
          break;
        }
        out.type[name] = rest;
      }
      continue;
    }
    PromSample s;
    std::size_t i = 0;
    while (i < line.size() && line[i] != '{' && line[i] != ' ') ++i;
    s.name = line.substr(0, i);
    if (!metric_name(s.name)) { fail("bad metric name"); break; }
    if (i < line.size() && line[i] == '{') {
      ++i;
      while (i < line.size() && line[i] != '}') {
        std::size_t eq = line.find('=', i);
        if (eq == std::string::npos) { fail("label without '='"); break; }
        const std::string label = line.substr(i, eq - i);
        if (!label_name(label)) { fail("bad label name '" + label + "'"); break; }
        if (eq + 1 >= line.size() || line[eq + 1] != '"') { fail("label value not quoted"); break; }
        std::string value;
        std::size_t j = eq + 2;
        bool closed_quote = false;
        for (; j < line.size(); ++j) {
          if (line[j] == '\\') {
            if (j + 1 >= line.size()) break;
            const char e = line[++j];
            if (e == '\\' || e == '"') value += e;
            else if (e == 'n') value += '\n';
            else { fail("bad escape in a label value"); break; }
          } else if (line[j] == '"') {
            closed_quote = true;
            break;
          } else {
            value += line[j];
          }
        }
        if (!out.error.empty()) break;
        if (!closed_quote) { fail("unterminated label value"); break; }
        if (!s.labels.emplace(label, value).second) { fail("label '" + label + "' twice"); break; }
        i = j + 1;
        if (i < line.size() && line[i] == ',') ++i;
        else if (i >= line.size() || line[i] != '}') { fail("expected ',' or '}'"); break; }
      }
      if (!out.error.empty()) break;
      if (i >= line.size()) { fail("unterminated label set"); break; }
      ++i;  // '}'
    }
    if (i >= line.size() || line[i] != ' ') { fail("no value"); break; }
    std::istringstream rest(line.substr(i + 1));
    std::string value, timestamp, extra;
    rest >> value >> timestamp >> extra;
    char* end = nullptr;
    s.value = std::strtod(value.c_str(), &end);
    if (value.empty() || *end != '\0') { fail("bad value"); break; }
    if (!extra.empty()) { fail("trailing text"); break; }
    // Counters and gauges: the sample's name is its family's.
    if (!enter(s.name)) { fail("family " + s.name + " continued after another"); break; }
    const auto type = out.type.find(s.name);
    if (type == out.type.end() || out.help.count(s.name) == 0) { fail("sample without HELP and TYPE"); break; }
    if (type->second == "counter" && (!s.name.ends_with("_total") || s.value < 0)) { fail("bad counter"); break; }
    std::string key = s.name + "{";
    for (const auto& [k, v] : s.labels) key += k + "=" + v + ",";
    if (!series.insert(key).second) { fail("series twice"); break; }
    out.samples.push_back(std::move(s));
  }
  return out;
}

inline PromText parse_prometheus_file(const std::filesystem::path& path) {
  std::ifstream in(path);
  std::stringstream ss;
  ss << in.rdbuf();
  return parse_prometheus_text(ss.str());
}

// `promtool check metrics` on the file: nullopt if promtool is not installed, else its exit
// status (0: valid, and no lint problem) and its output.
inline std::optional<std::pair<int, std::string>> promtool_check(const std::filesystem::path& path) {
  if (std::system("command -v promtool >/dev/null 2>&1") != 0) return std::nullopt;
  const std::string command = "promtool check metrics < '" + path.string() + "' 2>&1";
  FILE* p = ::popen(command.c_str(), "r");
  if (p == nullptr) return std::nullopt;
  std::string output;
  char buf[512];
  while (std::fgets(buf, sizeof buf, p) != nullptr) output += buf;
  const int status = ::pclose(p);
  return std::make_pair(WIFEXITED(status) ? WEXITSTATUS(status) : -1, output);
}

}  // namespace pvback::test
