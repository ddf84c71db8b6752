// xentop's view of a vbd3 disk (Xen 4.19+): libxenstat reads backend/vbd3/<domid>/<devid>/
// kthread-pid from XenStore, then the binary file /dev/shm/td3-<pid>/vbd-<domid>-<devid>, in
// blktap's `struct vbd3_stats` layout (Xen's tools/libs/stat/xenstat_priv.h: version 1, a pad,
// eleven 64-bit counters, of which it shows oo_reqs, read_reqs_submitted, read_sectors,
// write_reqs_submitted, write_sectors). A vbd3 disk pvback serves writes both, so that xentop's
// VBD columns show it as they show tapdisk3's; a backend/vbd disk has no such route (xen-blkback's
// sysfs statistics are the kernel's alone).
#pragma once
#include <sys/types.h>

#include <array>
#include <cstdint>
#include <string>

#include "blkback/stats.hpp"
#include "xenbus/xenstore.hpp"

namespace pvback::blkback {

// The file's 96 bytes for `kernel` (the kernel counters' totals).
std::array<std::byte, 96> encode_vbd3_stats(const QueueStats& kernel);

class Td3Stats {
 public:
  // For the vbd3 disk at `backend_path` (<domid>/<devid> at its end) served by process `pid`:
  // writes kthread-pid and makes the directory. `shm_dir` is /dev/shm but in tests.
  Td3Stats(xenbus::XenStore& xs, const std::string& backend_path, DomId domid, std::uint32_t devid, pid_t pid,
           std::string shm_dir = "/dev/shm");
  ~Td3Stats();
  Td3Stats(const Td3Stats&) = delete;
  Td3Stats& operator=(const Td3Stats&) = delete;
  // Rewrites the file (atomically: libxenstat never reads half of it). 0 or an errno value.
  int write(const QueueStats& kernel);
  const std::string& path() const { return path_; }

 private:
  std::string dir_;
  std::string path_;
};

}  // namespace pvback::blkback
