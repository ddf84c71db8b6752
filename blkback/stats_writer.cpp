#include "blkback/stats_writer.hpp"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>

#include "xenbus/state.hpp"

namespace pvback::blkback {
namespace {

void append_counters(std::string& out, const QueueStats& s) {
  out += '{';
  bool first = true;
  for (const auto& f : kQueueStatsFields) {
    if (!first) out += ", ";
    first = false;
    out += '"';
    out += f.name;
    out += "\": ";
    out += std::to_string((s.*f.member).get());
  }
  out += '}';
}

std::string json_string(const std::string& s) {
  std::string out = "\"";
  for (char c : s) {
    if (c == '"' || c == '\\') {
      out += '\\';
      out += c;
    } else if (static_cast<unsigned char>(c) < 0x20) {
      char buf[8];
      std::snprintf(buf, sizeof buf, "\\u%04x", c);
      out += buf;
    } else {
      out += c;
    }
  }
  return out + '"';
}

}  // namespace

std::string render_stats_json(const xenbus::BackendDevice& device, const VbdDriver& driver) {
  std::string out = "{\n";
  out += "  \"device\": " + json_string(device.name()) + ",\n";
  out += "  \"backend_path\": " + json_string(device.backend_path()) + ",\n";
  out += "  \"state\": " + json_string(std::string(xenbus::state_name(device.state()))) + ",\n";
  if (const Storage* s = driver.storage()) {
    out += "  \"storage\": {\"path\": " + json_string(s->path()) + ", \"sectors\": " + std::to_string(s->sectors()) +
           ", \"sector_size\": " + std::to_string(s->logical_block_size()) +
           ", \"direct\": " + (s->direct() ? "true" : "false") + ", \"read_only\": " +
           (driver.read_only() ? "true" : "false") + ", \"discard\": " + (s->discard_supported() ? "true" : "false") +
           "},\n";
  }
  const auto& n = driver.negotiated();
  const auto& qs = driver.queue_stats();
  if (driver.connected()) {
    out += "  \"negotiated\": {\"queues\": " + std::to_string(n.queues) +
           ", \"ring_page_order\": " + std::to_string(n.ring_page_order) + ", \"abi\": \"" +
           (n.abi == Abi::Native ? "native" : n.abi == Abi::X86_32 ? "x86_32-abi" : "x86_64-abi") +
           "\", \"persistent_grants\": " + (n.persistent_grants ? "true" : "false") + ", \"data_path\": \"" +
           (n.persistent_grants ? "persistent-map" : driver.options().data_path == DataPath::Map ? "map" : "copy") + "\"},\n";
  }
  QueueStats total;
  accumulate(total, driver.past_totals());
  for (const auto& q : qs) accumulate(total, *q);
  out += "  \"total\": ";
  append_counters(out, total);
  out += ",\n  \"queues\": [";
  for (std::size_t i = 0; i < qs.size(); ++i) {
    out += i == 0 ? "\n    " : ",\n    ";
    append_counters(out, *qs[i]);
  }
  out += qs.empty() ? "]\n}\n" : "\n  ]\n}\n";
  return out;
}

int write_file_atomically(const std::string& path, const std::string& content) {
  const std::string tmp = path + ".tmp";
  int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0) return errno;
  std::size_t done = 0;
  while (done < content.size()) {
    ssize_t n = ::write(fd, content.data() + done, content.size() - done);
    if (n < 0) {
      if (errno == EINTR) continue;
      int err = errno;
      ::close(fd);
      return err;
    }
    done += static_cast<std::size_t>(n);
  }
  ::close(fd);
  return ::rename(tmp.c_str(), path.c_str()) == 0 ? 0 : errno;
}

}  // namespace pvback::blkback
