#include "sim/hypervisor.hpp"

extern "C" {
#include <xenstore.h>
}

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <string>

#include "base/log.hpp"
#include "grant/sim_layout.hpp"
#include "sim/domains/domain_manager.hpp"
#include "sim/run_dir.hpp"
#include "sim/xenstore/server.hpp"

namespace pvback::sim {
namespace {

bool write_node(xs_handle* xs, const std::string& path, const std::string& value, DomId owner, DomId reader,
                bool reader_may_write) {
  if (!xs_write(xs, XBT_NULL, path.c_str(), value.data(), static_cast<unsigned>(value.size()))) return false;
  xs_permissions perms[2] = {{owner, XS_PERM_NONE},
                             {reader, static_cast<unsigned>(reader_may_write ? XS_PERM_WRITE | XS_PERM_READ : XS_PERM_READ)}};
  return xs_set_permissions(xs, XBT_NULL, path.c_str(), perms, owner == reader ? 1 : 2);
}

}  // namespace

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
  if (xs_handle* xs = toolstack(); xs == nullptr || !write_node(xs, "/local/domain/0/name", "Domain-0", 0, 0, false) ||
                                   !write_node(xs, "/local/domain/0/domid", "0", 0, 0, false))
    PVBACK_LOG(Error, "sim: cannot write Domain-0's XenStore nodes: %s", std::strerror(errno));
}

SimHypervisor::~SimHypervisor() {
  domains_->stop();
  domains_thread_.join();
  {
    std::lock_guard lock(toolstack_mutex_);
    if (toolstack_ != nullptr) xs_close(toolstack_);
    toolstack_ = nullptr;
  }
  xenstore_->stop();
  xenstore_thread_.join();
}

grant::PlatformConfig SimHypervisor::platform(DomId self) const {
  grant::PlatformConfig config;
  config.kind = grant::PlatformConfig::Kind::Sim;
  config.sim_dir = run_dir_.string();
  config.self = self;
  return config;
}

xs_handle* SimHypervisor::toolstack() {
  if (toolstack_ == nullptr) {
    // libxenstore only takes its socket from the environment.
    ::setenv("XENSTORED_PATH", sim_layout::xenstore_socket(run_dir_).c_str(), 1);
    toolstack_ = xs_open(0);
    if (toolstack_ == nullptr) PVBACK_LOG(Error, "sim: cannot connect to own XenStore: %s", std::strerror(errno));
  }
  return toolstack_;
}

// What libxl writes for a new domain: the domain's own subtree readable by it, and the
// directories the guest writes into (device/, data/, ...) owned by it.
void SimHypervisor::domain_created(DomId domid, const std::string& name) {
  std::lock_guard lock(toolstack_mutex_);
  xs_handle* xs = toolstack();
  if (xs == nullptr) return;
  const std::string dom = "/local/domain/" + std::to_string(domid);
  bool ok = write_node(xs, dom, "", 0, domid, false) && write_node(xs, dom + "/name", name, 0, domid, false) &&
            write_node(xs, dom + "/domid", std::to_string(domid), 0, domid, false);
  for (const char* dir : {"device", "data", "control", "drivers", "feature", "attr", "error"})
    ok = ok && write_node(xs, dom + "/" + dir, "", domid, domid, true);
  if (!ok || !xs_introduce_domain(xs, domid, 0, 0))
    PVBACK_LOG(Error, "sim: setting up XenStore for domain %u failed: %s", domid, std::strerror(errno));
  else
    PVBACK_LOG(Info, "sim: domain %u (%s) created", domid, name.c_str());
}

void SimHypervisor::domain_destroyed(DomId domid) {
  std::lock_guard lock(toolstack_mutex_);
  xs_handle* xs = toolstack();
  if (xs == nullptr) return;
  const std::string dom = "/local/domain/" + std::to_string(domid);
  if (!xs_release_domain(xs, domid) || (!xs_rm(xs, XBT_NULL, dom.c_str()) && errno != ENOENT))
    PVBACK_LOG(Error, "sim: releasing domain %u from XenStore failed: %s", domid, std::strerror(errno));
  else
    PVBACK_LOG(Info, "sim: domain %u destroyed", domid);
}

}  // namespace pvback::sim
