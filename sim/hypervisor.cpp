#include "sim/hypervisor.hpp"

extern "C" {
#include <xenstore.h>
}

#include <array>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <string>

#include "base/log.hpp"
#include "grant/sim_layout.hpp"
#include "sim/domains/domain_manager.hpp"
#include "sim/run_dir.hpp"
#include "sim/toolstack/nodes.hpp"
#include "sim/xenstore/server.hpp"

namespace pvback::sim {

SimHypervisor::SimHypervisor(std::filesystem::path run_dir) : run_dir_(std::move(run_dir)) {
  prepare_run_dir(run_dir_);
  xenstore_ = std::make_unique<XenStoreServer>(run_dir_);
  DomainHooks hooks;
  hooks.created = [this](DomId domid, const std::string& name) { domain_created(domid, name); };
  hooks.destroyed = [this](DomId domid) { domain_destroyed(domid); };
  domains_ = std::make_unique<DomainManager>(run_dir_, std::move(hooks));
  xenstore_thread_ = std::thread([this] { xenstore_->run(); });
  domains_thread_ = std::thread([this] { domains_->run(); });
  // What xen-init-dom0 writes on a real host.
  std::lock_guard lock(toolstack_mutex_);
  xenbus::XenStore* xs = toolstack();
  int err = xs == nullptr ? ENOTCONN : write_node(*xs, "/local/domain/0/name", "Domain-0", 0, 0, false);
  if (err == 0) err = write_node(*xs, "/local/domain/0/domid", "0", 0, 0, false);
  if (err != 0) PVBACK_LOG(Error, "sim: cannot write Domain-0's XenStore nodes: %s", std::strerror(err));
}

SimHypervisor::~SimHypervisor() {
  domains_->stop();
  domains_thread_.join();
  stop_xenstore();
}

std::vector<pid_t> SimHypervisor::xenstore_dom0_clients() const { return xenstore_->dom0_client_pids(); }

void SimHypervisor::stop_xenstore() {
  {
    std::lock_guard lock(toolstack_mutex_);
    toolstack_ = xenbus::XenStore();
    xenstore_stopped_ = true;  // the hooks must not connect to a socket nobody answers on
  }
  xenstore_->stop();
  if (xenstore_thread_.joinable()) xenstore_thread_.join();
}

grant::PlatformConfig SimHypervisor::platform(DomId self) const {
  grant::PlatformConfig config;
  config.kind = grant::PlatformConfig::Kind::Sim;
  config.sim_dir = run_dir_.string();
  config.self = self;
  return config;
}

xenbus::XenStore* SimHypervisor::toolstack() {
  if (xenstore_stopped_) {
    PVBACK_LOG(Error, "sim: the XenStore server is stopped");
    return nullptr;
  }
  if (!toolstack_) {
    auto xs = xenbus::XenStore::open(sim_layout::xenstore_socket(run_dir_));
    if (!xs) {
      PVBACK_LOG(Error, "sim: cannot connect to own XenStore: %s", std::strerror(xs.error()));
      return nullptr;
    }
    toolstack_ = std::move(*xs);
  }
  return &toolstack_;
}

// What libxl writes for a new domain: the domain's own subtree readable by it, and the
// directories the guest writes into (device/, data/, ...) owned by it.
void SimHypervisor::domain_created(DomId domid, const std::string& name) {
  std::lock_guard lock(toolstack_mutex_);
  xenbus::XenStore* xs = toolstack();
  if (xs == nullptr) return;
  const std::string dom = "/local/domain/" + std::to_string(domid);
  int err = write_node(*xs, dom, "", 0, domid, false);
  if (err == 0) err = write_node(*xs, dom + "/name", name, 0, domid, false);
  if (err == 0) err = write_node(*xs, dom + "/domid", std::to_string(domid), 0, domid, false);
  for (const char* dir : {"device", "data", "control", "drivers", "feature", "attr", "error"})
    if (err == 0) err = write_node(*xs, dom + "/" + dir, "", domid, domid, true);
  if (err == 0 && !xs_introduce_domain(xs->native(), domid, 0, 0)) err = errno;
  if (err != 0)
    PVBACK_LOG(Error, "sim: setting up XenStore for domain %u failed: %s", domid, std::strerror(err));
  else
    PVBACK_LOG(Info, "sim: domain %u (%s) created", domid, name.c_str());
}

void SimHypervisor::domain_destroyed(DomId domid) {
  std::lock_guard lock(toolstack_mutex_);
  xenbus::XenStore* xs = toolstack();
  if (xs == nullptr) return;
  // As on Xen: xenstored reports @releaseDomain when the domain dies and the toolstack then
  // removes the subtree; the subtree goes even if the release failed.
  const std::string dom = "/local/domain/" + std::to_string(domid);
  int release_err = xs_release_domain(xs->native(), domid) ? 0 : errno;
  int rm_err = xs->rm(dom);
  if (rm_err == ENOENT) rm_err = 0;
  if (release_err != 0 || rm_err != 0)
    PVBACK_LOG(Error, "sim: releasing domain %u from XenStore failed: %s", domid,
               std::strerror(release_err != 0 ? release_err : rm_err));
  else
    PVBACK_LOG(Info, "sim: domain %u destroyed", domid);
}

}  // namespace pvback::sim
