#include "sim/toolstack/device.hpp"

#include <poll.h>

#include <cerrno>
#include <chrono>

#include "sim/toolstack/nodes.hpp"
#include "xenbus/state.hpp"

namespace pvback::sim {

int plug_device(xenbus::XenStore& xs, const std::string& be, DomId bd, NodeValues backend_keys,
                const std::string& fe, DomId fd, NodeValues frontend_keys) {
  return xs.transact([&](xenbus::Txn t) -> int {
    if (auto exists = xs.exists(be + "/state", t); exists && *exists) return EEXIST;
    if (int e = write_node(xs, be, "", bd, fd, false, t)) return e;
    for (const auto& [key, value] : backend_keys)
      if (int e = write_node(xs, be + "/" + key, value, bd, fd, false, t)) return e;
    if (int e = write_node(xs, fe, "", fd, bd, false, t)) return e;
    for (const auto& [key, value] : frontend_keys)
      if (int e = write_node(xs, fe + "/" + key, value, fd, bd, false, t)) return e;
    return 0;
  });
}

int unplug_device(xenbus::XenStore& xs, const std::string& be, const std::string& fe, int timeout_ms) {
  auto exists = xs.exists(be);
  if (!exists) return exists.error();
  if (!*exists) return ENOENT;
  if (int e = xs.transact([&](xenbus::Txn t) {
        if (int e = xs.write(be + "/online", "0", t)) return e;
        // As libxl: ask a backend that is not closed yet to close; its frontend follows.
        auto state = xs.read(be + "/state", t);
        if (state && *state == std::to_string(XenbusStateClosed)) return 0;
        return xs.write(be + "/state", std::to_string(XenbusStateClosing), t);
      }))
    return e;
  // Wait for the backend to close (it follows the frontend) before tearing the nodes down.
  const std::string token = "unplug-device";
  const std::string state_path = be + "/state";
  xs.watch(state_path, token);
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(timeout_ms);
  for (;;) {
    auto state = xs.read(state_path);
    // Done when the backend closed, or removed its node already (it exits on online=0).
    if (!state || *state == std::to_string(XenbusStateClosed)) break;
    const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now());
    if (left.count() <= 0) break;
    pollfd p{xs.fd(), POLLIN, 0};
    if (::poll(&p, 1, static_cast<int>(left.count())) > 0)
      while (xs.read_watch()) {
      }
  }
  xs.unwatch(state_path, token);
  return xs.transact([&](xenbus::Txn t) {
    int e = xs.rm(be, t);
    if (e == 0 || e == ENOENT) e = xs.rm(fe, t);
    return e == ENOENT ? 0 : e;
  });
}

}  // namespace pvback::sim
