#include "blkback/data_plane.hpp"

#include <signal.h>

#include "base/log.hpp"

namespace pvback::blkback {

std::expected<::pvback::plane::Process, int> launch_data_plane(const std::string& binary,
                                                               const plane::DataPlaneSpec& spec, int storage_fd,
                                                               int stats_fd, int listen_fd,
                                                               std::chrono::milliseconds ready_timeout,
                                                               const std::function<int(pid_t)>& place) {
  ::pvback::plane::Launch l;
  l.binary = binary;
  l.argv0 = "pvback-blk";
  l.name = spec.name;
  l.protocol = plane::kProtocol;
  l.start = plane::encode_start(spec);
  if (storage_fd >= 0) l.fds.push_back(storage_fd);  // none for an NBD server
  l.fds.push_back(stats_fd);
  if (listen_fd >= 0) l.fds.push_back(listen_fd);
  l.adoptable = listen_fd >= 0;
  l.ready_timeout = ready_timeout;
  l.place = place;
  auto p = ::pvback::plane::Process::launch(l);
  if (p) PVBACK_LOG(Info, "%s: data plane running (pid %d, %zu queue(s))", spec.name.c_str(), p->pid(), spec.queues.size());
  return p;
}

std::expected<::pvback::plane::Process, int> adopt_data_plane(const std::string& path, const std::string& name,
                                                              plane::DataPlaneSpec& spec, UniqueFd& stats) {
  auto a = ::pvback::plane::Process::adopt(path, name, plane::kProtocol);
  if (!a) return std::unexpected(a.error());
  auto adopted = plane::decode_start(a->answer, plane::Msg::Adopted);
  if (!adopted || a->fds.size() != 1) {
    PVBACK_LOG(Warning, "%s: the data plane left serving (pid %d) cannot be adopted (%s): killing it", name.c_str(),
               a->process.pid(), adopted ? "no statistics memory" : adopted.error().c_str());
    a->process.kill();
    return std::unexpected(EPROTO);
  }
  spec = std::move(*adopted);
  stats = std::move(a->fds[0]);
  PVBACK_LOG(Notice, "%s: adopted the data plane (pid %d) its predecessor left serving", name.c_str(),
             a->process.pid());
  return std::move(a->process);
}

int stop_orphan_data_plane(const std::string& path, std::chrono::milliseconds timeout) {
  return ::pvback::plane::stop_orphan(path, plane::kProtocol, timeout);
}

}  // namespace pvback::blkback
