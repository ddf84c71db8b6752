// Runtime choice between real Xen and the simulated hypervisor.
//
// Selected by PlatformConfig (usually from the environment: PVBACK_PLATFORM=xen|sim,
// PVBACK_SIM_DIR=<run dir of pvback-sim>, PVBACK_DOMID=<this process's domain, default 0>).
// Everything above this layer receives the interfaces and cannot tell which one it runs on.
#pragma once
#include <memory>
#include <string>

#include "grant/event_channel.hpp"
#include "grant/grant_table.hpp"

namespace pvback::grant {

struct PlatformConfig {
  enum class Kind { Xen, Sim };
  Kind kind = Kind::Xen;
  std::string sim_dir;  // run directory of pvback-sim (Kind::Sim only)
  DomId self = 0;       // the domain this process acts as

  // Reads PVBACK_PLATFORM, PVBACK_SIM_DIR and PVBACK_DOMID; without PVBACK_PLATFORM it picks
  // Xen when /dev/xen/gntdev exists and the simulation when PVBACK_SIM_DIR is set.
  static PlatformConfig from_env();
  // The XenStore socket the real libxenstore should use (exported as XENSTORED_PATH), or
  // empty to let libxenstore use its default (real Xen).
  std::string xenstore_path() const;
  // Where backends keep their live statistics files: <sim_dir>/stats, or /run/pvback on Xen.
  std::string stats_dir() const;
  // Where backends keep the records that let a successor resume a ring exactly where a killed or
  // crashed process left it (memory that outlives a process, gone at reboot as guests are):
  // <sim_dir>/recovery, or /run/pvback/recovery on Xen.
  std::string recovery_dir() const;
  // What the names of host-wide objects a backend creates (its data planes' control groups) start
  // with: nothing on Xen (one host, one XenStore, so "vbd-5-768" is unique), and a tag of the
  // pvback-sim instance in the simulation, where several simulated hosts share one machine.
  std::string host_tag() const;
};

class Platform {
 public:
  explicit Platform(PlatformConfig config);
  const PlatformConfig& config() const { return config_; }

  // Each call opens a new handle (one per thread or queue is the intended use).
  std::unique_ptr<GrantMapper> open_mapper() const;
  std::unique_ptr<GrantSharer> open_sharer() const;
  std::unique_ptr<EventChannels> open_event_channels() const;

  // Whether O_DIRECT I/O may target pages mapped with open_mapper(). Not in a Xen PV domain: there
  // gntdev's mappings are grant PTEs written by Xen, and in the real-Xen tier (Linux 6.1 dom0,
  // Xen 4.17) O_DIRECT into them was followed by "BUG: Bad page map" and failed grant unmaps in
  // dom0's kernel in 2 of 6 runs (none in the runs without it).
  bool direct_io_into_mappings() const;

 private:
  PlatformConfig config_;
};

}  // namespace pvback::grant
