// Runs a XenStoreServer on a temporary run directory for the duration of a test, and small
// helpers around libxenstore.
#pragma once
#include <poll.h>
#include <stdlib.h>
// xenstore.h has no extern "C" guard of its own.
extern "C" {
#include <xenstore.h>
}

#include <filesystem>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <utility>

#include "grant/sim_layout.hpp"
#include "sim/xenstore/server.hpp"

namespace pvback::test {

class ServerThread {
 public:
  ServerThread() {
    char tmpl[] = "/tmp/pvback-xs-XXXXXX";
    if (!::mkdtemp(tmpl)) throw std::runtime_error("mkdtemp failed");
    run_dir_ = tmpl;
    server_ = std::make_unique<sim::XenStoreServer>(run_dir_);
    thread_ = std::thread([this] { server_->run(); });
  }
  ~ServerThread() {
    server_->stop();
    thread_.join();
    server_.reset();
    std::error_code ec;
    std::filesystem::remove_all(run_dir_, ec);
  }
  const std::filesystem::path& run_dir() const { return run_dir_; }
  std::filesystem::path dom0_socket() const { return sim_layout::xenstore_socket(run_dir_); }
  std::filesystem::path guest_socket(DomId domid) const { return sim_layout::guest_xenstore_socket(run_dir_, domid); }

 private:
  std::filesystem::path run_dir_;
  std::unique_ptr<sim::XenStoreServer> server_;
  std::thread thread_;
};

struct XsCloser {
  void operator()(xs_handle* h) const { xs_close(h); }
};
using XsHandle = std::unique_ptr<xs_handle, XsCloser>;

// libxenstore takes the socket from XENSTORED_PATH when the handle is opened.
inline XsHandle open_xs(const std::filesystem::path& socket) {
  ::setenv("XENSTORED_PATH", socket.c_str(), 1);
  return XsHandle(xs_open(0));
}

inline std::optional<std::string> read_node(xs_handle* h, const std::string& path, xs_transaction_t t = XBT_NULL) {
  unsigned len = 0;
  void* data = xs_read(h, t, path.c_str(), &len);
  if (!data) return std::nullopt;
  std::string value(static_cast<char*>(data), len);
  free(data);
  return value;
}

inline bool write_node(xs_handle* h, const std::string& path, const std::string& value,
                       xs_transaction_t t = XBT_NULL) {
  return xs_write(h, t, path.c_str(), value.data(), static_cast<unsigned>(value.size()));
}

// The next watch event as {path, token}, or nullopt if none arrives within a generous bound
// (the bound only turns a hang into a failure; no test depends on timing).
inline std::optional<std::pair<std::string, std::string>> next_event(xs_handle* h, int timeout_ms = 10000) {
  for (;;) {
    if (char** event = xs_check_watch(h)) {
      std::pair<std::string, std::string> out{event[XS_WATCH_PATH], event[XS_WATCH_TOKEN]};
      free(event);
      return out;
    }
    pollfd pfd{xs_fileno(h), POLLIN, 0};
    if (::poll(&pfd, 1, timeout_ms) <= 0) return std::nullopt;
  }
}

}  // namespace pvback::test
