#include "sim/toolstack/vbd.hpp"

#include <poll.h>

#include <cerrno>
#include <chrono>
#include <vector>

#include "sim/toolstack/nodes.hpp"
#include "xenbus/state.hpp"

namespace pvback::sim {

std::string vbd_backend_path(DomId backend_domid, DomId frontend_domid, std::uint32_t devid) {
  return "/local/domain/" + std::to_string(backend_domid) + "/backend/vbd/" + std::to_string(frontend_domid) + "/" +
         std::to_string(devid);
}

std::string vbd_frontend_path(DomId frontend_domid, std::uint32_t devid) {
  return "/local/domain/" + std::to_string(frontend_domid) + "/device/vbd/" + std::to_string(devid);
}

int add_vbd(xenbus::XenStore& xs, const VbdSpec& spec) {
  if (spec.params.empty() || (spec.mode != "r" && spec.mode != "w") ||
      (spec.device_type != "disk" && spec.device_type != "cdrom") || spec.frontend_domid == spec.backend_domid)
    return EINVAL;
  const std::string be = vbd_backend_path(spec.backend_domid, spec.frontend_domid, spec.devid);
  const std::string fe = vbd_frontend_path(spec.frontend_domid, spec.devid);
  const DomId bd = spec.backend_domid, fd = spec.frontend_domid;
  return xs.transact([&](xenbus::Txn t) -> int {
    if (auto exists = xs.exists(be + "/state", t); exists && *exists) return EEXIST;
    const std::pair<const char*, std::string> backend_keys[] = {
        {"frontend", fe},
        {"frontend-id", std::to_string(fd)},
        {"online", "1"},
        {"removable", spec.device_type == "cdrom" ? "1" : "0"},
        {"bootable", "1"},
        {"dev", spec.dev_name},
        {"type", "phy"},
        {"mode", spec.mode},
        {"device-type", spec.device_type},
        {"params", spec.params},
        {"discard-enable", spec.discard_enable ? "1" : "0"},
        {"state", std::to_string(XenbusStateInitialising)},
    };
    if (int e = write_node(xs, be, "", bd, fd, false, t)) return e;
    for (const auto& [key, value] : backend_keys)
      if (int e = write_node(xs, be + "/" + key, value, bd, fd, false, t)) return e;
    const std::pair<const char*, std::string> frontend_keys[] = {
        {"backend", be},
        {"backend-id", std::to_string(bd)},
        {"virtual-device", std::to_string(spec.devid)},
        {"device-type", spec.device_type},
        {"state", std::to_string(XenbusStateInitialising)},
    };
    if (int e = write_node(xs, fe, "", fd, bd, false, t)) return e;
    for (const auto& [key, value] : frontend_keys)
      if (int e = write_node(xs, fe + "/" + key, value, fd, bd, false, t)) return e;
    return 0;
  });
}

int remove_vbd(xenbus::XenStore& xs, DomId backend_domid, DomId frontend_domid, std::uint32_t devid, int timeout_ms) {
  const std::string be = vbd_backend_path(backend_domid, frontend_domid, devid);
  const std::string fe = vbd_frontend_path(frontend_domid, devid);
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
  const std::string token = "remove-vbd";
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
