#include "base/prometheus.hpp"

namespace pvback::prometheus {

std::string escape_label_value(std::string_view value) {
  std::string out;
  out.reserve(value.size());
  for (char c : value) {
    if (c == '\\') out += "\\\\";
    else if (c == '"') out += "\\\"";
    else if (c == '\n') out += "\\n";
    else out += c;
  }
  return out;
}

namespace {

// HELP text escapes backslash and newline only.
std::string escape_help(std::string_view text) {
  std::string out;
  for (char c : text) {
    if (c == '\\') out += "\\\\";
    else if (c == '\n') out += "\\n";
    else out += c;
  }
  return out;
}

}  // namespace

Exposition::Family* Exposition::find(std::string_view name) {
  for (Family& f : families_)
    if (f.name == name) return &f;
  return nullptr;
}

void Exposition::family(std::string_view name, Type type, std::string_view help) {
  if (find(name) != nullptr) return;
  families_.push_back(Family{std::string(name), escape_help(help), type, {}});
}

void Exposition::sample(std::string_view name, const Labels& labels, std::uint64_t value) {
  Family* f = find(name);
  if (f == nullptr) return;
  std::string& out = f->samples;
  out += name;
  if (!labels.empty()) {
    out += '{';
    for (std::size_t i = 0; i < labels.size(); ++i) {
      if (i != 0) out += ',';
      out += labels[i].first;
      out += "=\"";
      out += escape_label_value(labels[i].second);
      out += '"';
    }
    out += '}';
  }
  out += ' ';
  out += std::to_string(value);
  out += '\n';
}

void append_device_metrics(Exposition& e, const std::string& prefix, const Labels& device, unsigned state,
                           std::size_t queues, unsigned restarts) {
  e.family(prefix + "_state", Type::Gauge,
           "The backend's XenbusState (1 Initialising, 2 InitWait, 3 Initialised, 4 Connected, 5 Closing, 6 Closed)");
  e.sample(prefix + "_state", device, state);
  e.family(prefix + "_queues", Type::Gauge, "Queues (rings) of the current connection, 0 if not connected");
  e.sample(prefix + "_queues", device, queues);
  e.family(prefix + "_data_plane_restarts_total", Type::Counter,
           "Data-plane processes started again during the current connection (after a death, or an operator's "
           "restart); from 0 at each connection");
  e.sample(prefix + "_data_plane_restarts_total", device, restarts);
}

std::string Exposition::render() const {
  std::string out;
  for (const Family& f : families_) {
    out += "# HELP " + f.name + " " + f.help + "\n";
    out += "# TYPE " + f.name + (f.type == Type::Counter ? " counter\n" : " gauge\n");
    out += f.samples;
  }
  return out;
}

}  // namespace pvback::prometheus
