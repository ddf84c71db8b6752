#include "ctl/format.hpp"

#include <algorithm>
#include <cstdio>
#include <vector>

namespace pvback::ctl {
namespace {

using Row = std::vector<std::string>;

// Columns padded to their widest cell; a column whose every cell after the header is a number
// is aligned right.
std::string render_table(const std::vector<Row>& rows) {
  std::size_t columns = 0;
  for (const Row& r : rows) columns = std::max(columns, r.size());
  std::vector<std::size_t> width(columns, 0);
  std::vector<bool> numeric(columns, true);
  for (std::size_t i = 0; i < rows.size(); ++i)
    for (std::size_t c = 0; c < rows[i].size(); ++c) {
      width[c] = std::max(width[c], rows[i][c].size());
      if (i > 0 && rows[i][c].find_first_not_of("0123456789.-") != std::string::npos) numeric[c] = false;
    }
  std::string out;
  for (const Row& r : rows) {
    std::string line;
    for (std::size_t c = 0; c < r.size(); ++c) {
      const std::string pad(width[c] - r[c].size(), ' ');
      const bool last = c + 1 == r.size();
      line += numeric[c] ? pad + r[c] : last ? r[c] : r[c] + pad;
      if (!last) line += "  ";
    }
    out += line + "\n";
  }
  return out;
}

std::string member(const Json& object, std::string_view key, const std::string& otherwise = "-") {
  const Json* v = object.find(key);
  return v == nullptr || v->is(Json::Type::Null) ? otherwise : v->scalar();
}

// Every member of an object as "  name  value" lines (nested objects in compact JSON).
void append_members(std::vector<Row>& rows, const Json* object) {
  if (object == nullptr) return;
  for (const auto& [name, value] : object->members)
    rows.push_back({"  " + name, value.is(Json::Type::Object) || value.is(Json::Type::Array) ? to_json(value)
                                                                                             : value.scalar()});
}

}  // namespace

std::string format_uptime(std::optional<std::int64_t> seconds) {
  if (!seconds || *seconds < 0) return "-";
  const std::int64_t s = *seconds;
  char buf[48];
  if (s >= 86400) std::snprintf(buf, sizeof buf, "%lldd%02lldh", static_cast<long long>(s / 86400), static_cast<long long>(s % 86400 / 3600));
  else if (s >= 3600) std::snprintf(buf, sizeof buf, "%lldh%02lldm", static_cast<long long>(s / 3600), static_cast<long long>(s % 3600 / 60));
  else if (s >= 60) std::snprintf(buf, sizeof buf, "%lldm%02llds", static_cast<long long>(s / 60), static_cast<long long>(s % 60));
  else std::snprintf(buf, sizeof buf, "%llds", static_cast<long long>(s));
  return buf;
}

std::string format_list(const Json& answer) {
  const Json* devices = answer.find("devices");
  if (devices == nullptr || devices->items.empty()) return "no devices\n";
  std::vector<Row> rows = {{"DEVICE", "KIND", "DOMAIN", "DEVID", "STATE", "SERVED-BY", "PID", "UPTIME", "STORAGE/EXIT"}};
  for (const Json& d : devices->items) {
    const std::string served = member(d, "served_by");
    // The data plane's pid for a device the host daemon serves, the backend process's otherwise.
    std::string pid = member(d, served == "process" ? "backend_pid" : "data_plane_pid");
    if (pid == "-1") pid = "-";
    const Json* uptime = d.find("uptime_s");
    std::string target = member(d, "storage", "");
    if (target.empty()) target = member(d, "exit");
    // A device nobody serves: closed by its frontend, or waiting for its backend's restart.
    std::string state = member(d, "state_name", d.find("closed") != nullptr ? "closed" : "-");
    if (member(d, "paused") == "true") state += ",paused";
    rows.push_back({member(d, "device"), member(d, "kind"), member(d, "domid"), member(d, "devid"), state, served, pid,
                    format_uptime(uptime ? uptime->integer() : std::nullopt), target});
  }
  return render_table(rows);
}

std::string format_info(const Json& answer) {
  const Json* info = answer.find("info");
  if (info == nullptr) return "";
  const Json* stats = info->find("stats");
  const Json empty;
  const Json& s = stats != nullptr ? *stats : empty;
  std::vector<Row> rows = {{"device", member(*info, "device")},
                           {"served by", member(*info, "served_by")},
                           {"state", member(s, "state")},
                           {"backend", member(*info, "backend_path")},
                           {"frontend", member(*info, "frontend_path")}};
  if (const Json* plane = s.find("data_plane"))
    rows.push_back({"data plane", "pid " + member(*plane, "pid") + ", " + member(*plane, "restarts") + " restart(s)"});
  if (const Json* paused = info->find("paused"))
    rows.push_back(
        {"paused", paused->boolean ? "yes (pvbackctl resume " + member(*info, "device") + " ends it)" : "no"});
  if (const Json* storage = s.find("storage")) {
    rows.push_back({"storage", member(*storage, "engine") + " " + member(*storage, "target") + ", " +
                                   member(*storage, "sectors") + " sectors of " + member(*storage, "sector_size") +
                                   " bytes" + (member(*storage, "read_only") == "true" ? ", read-only" : "")});
  }
  if (s.find("exit") != nullptr) rows.push_back({"exit", member(s, "exit")});
  if (const Json* tunables = info->find("tunables"); tunables != nullptr && !tunables->items.empty()) {
    rows.push_back({"tunables (pvbackctl set " + member(*info, "device") + " NAME=VALUE)", ""});
    for (const Json& t : tunables->items)
      rows.push_back({"  " + member(t, "name"), member(t, "value") + (member(t, "when") == "now"
                                                                          ? "  (set: in effect now)"
                                                                          : "  (set: at the frontend's next connection)")});
  }
  rows.push_back({"backend directory (the toolstack's keys and what the backend advertised)", ""});
  append_members(rows, info->find("backend"));
  rows.push_back({"frontend wrote", ""});
  append_members(rows, info->find("frontend"));
  rows.push_back({"negotiated", s.find("negotiated") ? "" : "- (not connected)"});
  append_members(rows, s.find("negotiated"));
  std::string out;
  for (const Row& r : rows) {
    std::string line = r[0];
    if (!r[1].empty()) line += std::string(std::max<std::size_t>(2, 34 - std::min<std::size_t>(r[0].size(), 32)), ' ') + r[1];
    out += line + "\n";
  }
  return out;
}

std::string format_set(const Json& answer) {
  const Json* r = answer.find("set");
  if (r == nullptr) return "done\n";
  std::string out;
  if (const Json* devices = r->find("devices"))
    for (const Json& d : devices->items) {
      const std::string device = member(d, "device", "?");
      if (d.find("error") != nullptr) {
        out += device + ": not changed: " + member(d, "error") + "\n";
      } else if (member(d, "when") == "next-start") {
        out += device + ": " + member(d, "note") + "\n";
      } else {
        const std::string when = member(d, "when");
        out += device + ": " + member(d, "name") + " " + member(d, "old") + " -> " + member(d, "value") +
               (when == "now" ? ", in effect now" : ", in effect at the frontend's next connection") + "\n";
      }
    }
  if (out.empty()) out = "no device of that kind now\n";
  if (r->find("new_devices") != nullptr) out += "devices started from now on take it too\n";
  if (const Json* lost = r->find("not_kept")) out += "warning: " + lost->scalar() + " (kept until the host daemon restarts)\n";
  return out;
}

std::string format_operation(const std::string& command, const std::string& device, const Json& answer) {
  const Json* r = answer.find(command);
  if (r == nullptr) return device + ": done\n";
  if (command == "restart")
    return device + ": data plane pid " + member(*r, "old_pid", "?") + " replaced by pid " +
           member(*r, "data_plane_pid", "?") + "\n";
  if (command == "pause")
    return device + ": paused: " + member(*r, "drained", "?") + " request(s) in flight drained in " +
           member(*r, "drain_ms", "?") + " ms, the storage flushed in " + member(*r, "flush_ms", "?") + " ms\n";
  if (command == "resume") {
    const auto ms = r->find("paused_ms") ? r->find("paused_ms")->integer() : std::nullopt;
    char paused[32] = "?";
    if (ms) std::snprintf(paused, sizeof paused, "%.1f s", static_cast<double>(*ms) / 1000.0);
    return device + ": resumed after " + paused + " paused: " + member(*r, "waiting", "?") +
           " request(s) had waited in the rings\n";
  }
  return device + ": done\n";
}

std::expected<Json, std::string> select_counters(const Json& stats, std::optional<unsigned> queue) {
  if (!queue) {
    const Json* total = stats.find("total");
    if (total == nullptr) return std::unexpected("the statistics have no totals");
    return *total;
  }
  const Json* queues = stats.find("queues");
  const std::size_t n = queues ? queues->items.size() : 0;
  if (*queue >= n)
    return std::unexpected(n == 0 ? "no queue: the frontend is not connected"
                                  : "no queue " + std::to_string(*queue) + ": the connection has " +
                                        std::to_string(n) + " (0 to " + std::to_string(n - 1) + ")");
  return queues->items[*queue];
}

std::expected<std::string, std::string> format_stats(const Json& stats, std::optional<unsigned> queue) {
  const Json* queues = stats.find("queues");
  std::vector<const Json*> columns;
  Row header = {"COUNTER"};
  if (queue) {
    auto selected = select_counters(stats, queue);
    if (!selected) return std::unexpected(selected.error());
    columns.push_back(&queues->items[*queue]);
    header.push_back("QUEUE-" + std::to_string(*queue));
  } else {
    columns.push_back(stats.find("total"));
    header.push_back("TOTAL");
    if (columns.back() == nullptr) return std::unexpected("the statistics have no totals");
    for (std::size_t i = 0; queues != nullptr && i < queues->items.size(); ++i) {
      columns.push_back(&queues->items[i]);
      // (Not "Q" + std::to_string(i): GCC 12's -Wrestrict misfires on it.)
      std::string name = std::to_string(i);
      header.push_back(name.insert(0, 1, 'Q'));
    }
  }
  std::string out = member(stats, "device") + "  " + member(stats, "state");
  if (const Json* plane = stats.find("data_plane"))
    out += "  data plane pid " + member(*plane, "pid") + ", " + member(*plane, "restarts") + " restart(s)";
  std::vector<Row> rows = {header};
  for (const auto& [name, value] : columns.front()->members) {
    Row row = {name};
    for (const Json* c : columns) row.push_back(member(*c, name));
    rows.push_back(std::move(row));
  }
  out += "\n" + render_table(rows);
  // A vbd's counters under Linux xen-blkback's names (its sysfs statistics/), all queues and
  // connections together.
  if (const Json* kernel = stats.find("kernel"); kernel != nullptr && !queue) {
    std::vector<Row> k = {{"KERNEL-NAME", "TOTAL"}};
    for (const auto& [name, value] : kernel->members) k.push_back({name, value.scalar()});
    out += render_table(k);
  }
  return out;
}

std::string format_rates(const Json& now, const Json* before, double seconds) {
  std::vector<Row> rows = {{"COUNTER", "VALUE"}};
  if (before) rows[0].push_back("PER-SECOND");
  for (const auto& [name, value] : now.members) {
    Row row = {name, value.scalar()};
    const Json* old = before ? before->find(name) : nullptr;
    const auto a = old ? old->integer() : std::nullopt;
    const auto b = value.integer();
    if (a && b && seconds > 0) {
      char buf[32];
      std::snprintf(buf, sizeof buf, "%.1f", static_cast<double>(*b - *a) / seconds);
      row.push_back(buf);
    } else if (before) {
      row.push_back("-");
    }
    rows.push_back(std::move(row));
  }
  return render_table(rows);
}

}  // namespace pvback::ctl
