#include "blkback/td3_stats.hpp"

#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "base/log.hpp"
#include "base/text_file.hpp"

namespace pvback::blkback {

std::array<std::byte, 96> encode_vbd3_stats(const QueueStats& k) {
  // version, pad, oo_reqs, read_reqs_submitted, read_reqs_completed, read_sectors,
  // read_total_ticks, write_reqs_submitted, write_reqs_completed, write_sectors,
  // write_total_ticks, io_errors, flags: native byte order, as tapdisk3 writes it for the host's
  // own libxenstat. pvback counts a request when it answers it: submitted and completed agree.
  const std::uint64_t counters[11] = {k.kernel_oo_req.get(), k.kernel_rd_req.get(), k.kernel_rd_req.get(),
                                      k.kernel_rd_sect.get(), 0, k.kernel_wr_req.get(), k.kernel_wr_req.get(),
                                      k.kernel_wr_sect.get(), 0, 0, 0};
  std::array<std::byte, 96> out{};
  const std::uint32_t version = 1;
  std::memcpy(out.data(), &version, sizeof version);
  std::memcpy(out.data() + 8, counters, sizeof counters);
  return out;
}

Td3Stats::Td3Stats(xenbus::XenStore& xs, const std::string& backend_path, DomId domid, std::uint32_t devid, pid_t pid,
                   std::string shm_dir)
    : dir_(shm_dir + "/td3-" + std::to_string(pid)),
      path_(dir_ + "/vbd-" + std::to_string(domid) + "-" + std::to_string(devid)) {
  // A predecessor that died (SIGKILL, a crash) left its file: it goes, and its directory if empty.
  if (const auto old = xs.read_uint(backend_path + "/kthread-pid", INT32_MAX);
      old && static_cast<pid_t>(*old) != pid && ::kill(static_cast<pid_t>(*old), 0) != 0 && errno == ESRCH) {
    const std::string old_dir = shm_dir + "/td3-" + std::to_string(*old);
    ::unlink((old_dir + path_.substr(dir_.size())).c_str());
    ::rmdir(old_dir.c_str());
  }
  if (::mkdir(dir_.c_str(), 0755) != 0 && errno != EEXIST)
    PVBACK_LOG(Warning, "cannot make %s for xentop: %s", dir_.c_str(), std::strerror(errno));
  if (const int e = xs.write(backend_path + "/kthread-pid", std::to_string(pid)))
    PVBACK_LOG(Warning, "%s: cannot write kthread-pid for xentop: %s", backend_path.c_str(), std::strerror(e));
}

Td3Stats::~Td3Stats() {
  ::unlink(path_.c_str());
  ::rmdir(dir_.c_str());  // fails while another disk's file is there: it stays for that one
}

int Td3Stats::write(const QueueStats& kernel) {
  const auto bytes = encode_vbd3_stats(kernel);
  return write_file_atomically(path_, std::string(reinterpret_cast<const char*>(bytes.data()), bytes.size()));
}

}  // namespace pvback::blkback
