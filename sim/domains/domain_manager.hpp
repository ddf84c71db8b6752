// The simulated hypervisor's domains: grant-table memory, guest memory and event channels,
// served on the control socket sim_layout::control_socket(run_dir) (protocol:
// grant/sim_protocol.hpp). Domain 0 exists from the start; others are created and destroyed
// through the socket (pvback-sim-ctl). Single-threaded: run() serves until stop().
#pragma once
#include <cstdint>
#include <filesystem>
#include <functional>
#include <map>
#include <memory>
#include <set>
#include <string>

#include "base/unique_fd.hpp"
#include "grant/sim_protocol.hpp"
#include "grant/types.hpp"

namespace pvback::sim {

struct DomainHooks {
  // Called on the manager's thread, before the creating request is answered.
  std::function<void(DomId, const std::string& name)> created;
  std::function<void(DomId)> destroyed;
};

class DomainManager {
 public:
  // Binds the control socket (replacing a stale one), so clients may connect as soon as the
  // constructor returns. Throws std::system_error on failure.
  explicit DomainManager(std::filesystem::path run_dir, DomainHooks hooks = {});
  ~DomainManager();
  DomainManager(const DomainManager&) = delete;
  DomainManager& operator=(const DomainManager&) = delete;

  void run();
  void stop();  // thread-safe; run() returns soon after

 private:
  struct Port;
  struct Domain;
  struct Connection;

  void accept_connection();
  bool serve(Connection& conn);  // false: drop the connection
  void drop_connection(int id);
  sim_protocol::Reply handle(Connection& conn, const sim_protocol::Request& req, std::vector<int>& fds);
  int create_domain(DomId domid, std::string name, std::uint64_t memory_bytes);
  int destroy_domain(DomId domid);
  void close_port(Domain& domain, EvtchnPort port);
  Domain* find(std::uint32_t domid);

  std::filesystem::path run_dir_;
  DomainHooks hooks_;
  UniqueFd listen_fd_;
  UniqueFd stop_fd_;
  std::map<DomId, std::unique_ptr<Domain>> domains_;
  std::map<int, std::unique_ptr<Connection>> connections_;
  int next_connection_id_ = 1;
};

}  // namespace pvback::sim
