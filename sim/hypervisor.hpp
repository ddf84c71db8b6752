// The whole simulated hypervisor in one object: the XenStore server and the domain manager
// (grant tables, event channels), each on its own thread, wired together the way a toolstack
// would: creating a domain writes its /local/domain/<domid> subtree and INTRODUCEs it;
// destroying it RELEASEs it (@releaseDomain) and removes the subtree.
//
// Used by the pvback-sim daemon and by in-process tests.
#pragma once
#include <filesystem>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "grant/platform.hpp"
#include "xenbus/xenstore.hpp"

namespace pvback::sim {

class XenStoreServer;
class DomainManager;

class SimHypervisor {
 public:
  // Serves in `run_dir` (created if needed). Both servers accept connections when this returns.
  explicit SimHypervisor(std::filesystem::path run_dir);
  ~SimHypervisor();
  SimHypervisor(const SimHypervisor&) = delete;
  SimHypervisor& operator=(const SimHypervisor&) = delete;

  const std::filesystem::path& run_dir() const { return run_dir_; }
  // The platform a process acting as domain `self` uses to reach this hypervisor.
  grant::PlatformConfig platform(DomId self) const;

  // Stops the XenStore server as if xenstored had died: every client connection is closed (the
  // clients see the server hang up) and nothing is served any more; the domain manager keeps
  // running. For tests of a lost XenStore connection. Idempotent.
  void stop_xenstore();
  // The pids of the processes connected to Dom0's XenStore socket (XenStoreServer::dom0_client_pids).
  std::vector<pid_t> xenstore_dom0_clients() const;

 private:
  void domain_created(DomId domid, const std::string& name);
  void domain_destroyed(DomId domid);
  xenbus::XenStore* toolstack();

  std::filesystem::path run_dir_;
  std::unique_ptr<XenStoreServer> xenstore_;
  std::unique_ptr<DomainManager> domains_;
  std::thread xenstore_thread_;
  std::thread domains_thread_;
  std::mutex toolstack_mutex_;
  xenbus::XenStore toolstack_;  // Dom0 connection the hooks use, opened on first use
  bool xenstore_stopped_ = false;  // under toolstack_mutex_
};

}  // namespace pvback::sim
