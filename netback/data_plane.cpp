#include "netback/data_plane.hpp"

#include "base/log.hpp"

namespace pvback::netback {

std::expected<plane::Process, int> launch_data_plane(const std::string& binary, const PlaneSpec& spec, int stats_fd,
                                                     int record_fd, std::span<const int> tap_fds, int listen_fd,
                                                     std::chrono::milliseconds ready_timeout,
                                                     const std::function<int(pid_t)>& place) {
  plane::Launch l;
  l.binary = binary;
  l.argv0 = "pvback-net";
  l.name = spec.rings.name;
  l.protocol = kPlaneProtocol;
  l.start = encode_plane_spec(spec);
  l.fds = {stats_fd, record_fd};
  l.fds.insert(l.fds.end(), tap_fds.begin(), tap_fds.end());
  if (listen_fd >= 0) l.fds.push_back(listen_fd);
  l.adoptable = listen_fd >= 0;
  l.ready_timeout = ready_timeout;
  l.place = place;
  auto p = plane::Process::launch(l);
  if (p)
    PVBACK_LOG(Info, "%s: data plane running (pid %d, %zu queue(s)%s)", l.name.c_str(), p->pid(),
               spec.rings.queues.size(), spec.rings.ctrl ? " and the control ring" : "");
  return p;
}

std::expected<AdoptedDataPlane, int> adopt_data_plane(const std::string& path, const std::string& name) {
  auto a = plane::Process::adopt(path, name, kPlaneProtocol);
  if (!a) return std::unexpected(a.error());
  auto spec = decode_plane_spec(a->answer, PlaneMsg::Adopted);
  const std::size_t want = spec ? 2 + spec->tap_fds : 0;
  if (!spec || a->fds.size() != want) {
    PVBACK_LOG(Warning, "%s: the data plane left serving (pid %d) cannot be adopted (%s): killing it", name.c_str(),
               a->process.pid(), spec ? "its fds do not match" : spec.error().c_str());
    a->process.kill();
    return std::unexpected(EPROTO);
  }
  AdoptedDataPlane d{std::move(a->process), std::move(*spec), std::move(a->fds[0]), std::move(a->fds[1]), {}};
  for (std::size_t i = 2; i < a->fds.size(); ++i) d.taps.push_back(std::move(a->fds[i]));
  PVBACK_LOG(Notice, "%s: adopted the data plane (pid %d) its predecessor left serving", name.c_str(), d.process.pid());
  return d;
}

int stop_orphan_data_plane(const std::string& path, std::chrono::milliseconds timeout) {
  return plane::stop_orphan(path, kPlaneProtocol, timeout);
}

}  // namespace pvback::netback
