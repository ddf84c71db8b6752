// The data-plane process's side (`pvback-net --data-plane 3`): takes the vif's rings, its TAP
// queue fds, the statistics memory and the record from the control part, maps the rings, binds
// the channels (handles restricted to the guest's domain), confines itself, and only then touches
// the guest's memory (finishes what a killed predecessor logged, takes the rings). It never touches
// XenStore, and issues no TAP ioctl: queues, offloads, MTU and carrier stay with the control part.
#include <sys/prctl.h>

#include <cerrno>
#include <cstring>
#include <memory>
#include <vector>

#include "base/fd_passing.hpp"
#include "base/log.hpp"
#include "grant/platform.hpp"
#include "netback/data_plane.hpp"
#include "netback/stats.hpp"
#include "netback/tap_exit.hpp"
#include "plane/serve.hpp"
#include "plane/shared_stats.hpp"
#include "sandbox/sandbox.hpp"
#include "xenbus/backend_daemon.hpp"

namespace pvback::netback {
namespace {

struct Serving {
  plane::SharedStats<QueueStats> stats;
  std::vector<QueueStats*> stats_ptrs;
  UniqueFd record;
  std::vector<std::unique_ptr<TapPort>> ports;
  std::unique_ptr<VifRings> rings;  // declared last: stopped and unmapped first
};

// Everything before the first guest-controlled byte is read: errno value, or 0. `fds`: the
// statistics memory, the record, the TAP queue fds, and the listening socket if there is one.
int set_up(plane::ControlLink& link, const PlaneSpec& spec, std::vector<UniqueFd>& fds, Serving& s, std::string& why) {
  const std::size_t want = 2 + spec.tap_fds;
  if (fds.size() != want && fds.size() != want + 1) {
    why = "Start came with " + std::to_string(fds.size()) + " fds, not " + std::to_string(want) + " or " +
          std::to_string(want + 1);
    return EPROTO;
  }
  const auto n = static_cast<unsigned>(spec.rings.queues.size());
  auto stats = plane::SharedStats<QueueStats>::adopt(UniqueFd(::dup(fds[0].get())), n);
  if (!stats) {
    why = "the statistics memory";
    return stats.error();
  }
  s.stats = std::move(*stats);
  for (unsigned i = 0; i < n; ++i) s.stats_ptrs.push_back(&s.stats.at(i));
  s.record = std::move(fds[1]);
  std::vector<Port*> ports;
  for (std::uint32_t i = 0; i < spec.tap_fds; ++i) {
    auto port = TapPort::on_fd(std::move(fds[2 + i]));
    if (!port) {
      why = "TAP queue " + std::to_string(i);
      return port.error();
    }
    // Before the seccomp filter, which refuses io_uring_setup; without it, a write() per frame.
    (void)(*port)->prepare_batched_tx();
    ports.push_back(port->get());
    s.ports.push_back(std::move(*port));
  }
  const grant::Platform platform(grant::PlatformConfig::from_env());
  auto on_fatal = [&link](int error, const std::string& reason) { link.fatal(error, reason); };
  auto rings = VifRings::create(platform, spec.rings, ports, s.stats_ptrs, s.record.get(), on_fatal);
  if (!rings) {
    why = "cannot map the rings or bind the event channels";
    return rings.error();
  }
  s.rings = std::move(*rings);
  return 0;
}


}  // namespace

int serve_as_data_plane(int sock) {
  log::set_program("pvback-net-dp");
  ::prctl(PR_SET_NAME, "pvback-net-dp");
  UniqueFd signal_fd = xenbus::take_termination_signals();  // before any thread starts
  std::vector<std::byte> buf(kMaxPlaneMessage);
  std::vector<UniqueFd> fds;
  auto n = plane::receive_start(sock, buf, fds);
  if (!n) return 1;
  plane::ControlLink link(sock, kPlaneProtocol);
  auto spec = decode_plane_spec(std::span(buf).first(*n));
  if (!spec) {
    PVBACK_LOG(Error, "data plane: %s", spec.error().c_str());
    link.say(plane::kReady, EPROTO, spec.error());
    return 1;
  }
  const std::string& name = spec->rings.name;
  Serving s;
  std::string why;
  int e = set_up(link, *spec, fds, s, why);
  // What the net data path needs beyond what every data plane does: nothing of the storage's
  // (Profile::Net). Its network namespace is a new, empty one (the policy's default): a TAP queue
  // fd reads and writes the device it is attached to whatever namespace its holder is in, and the
  // data plane needs no other network.
  if (e == 0)
    e = plane::confine(name, spec->sandbox, spec->uid, spec->gid, plane::data_plane_policy(sandbox::Profile::Net), why);
  if (e != 0) {
    PVBACK_LOG(Error, "%s: data plane: %s: %s", name.c_str(), why.c_str(), std::strerror(e));
    link.say(plane::kReady, e, why);
    return 1;
  }
  // Handed to an adopting successor: the statistics memory, the record, the TAP queue fds.
  const UniqueFd listener = fds.size() == 3 + spec->tap_fds ? std::move(fds.back()) : UniqueFd();
  std::vector<int> adopted_fds = {fds[0].get(), s.record.get()};
  for (const auto& p : s.ports) adopted_fds.push_back(p->rx_fd());
  // Confined: now the guest's rings are read (a logged batch finished, each taken at rsp_prod).
  if (int e = s.rings->start()) {
    link.say(plane::kReady, e, "cannot take the rings");
    return 1;
  }
  link.say(plane::kReady, 0);

  plane::ServeHooks hooks;
  hooks.on_message = [&](std::uint32_t type, std::span<const std::byte> message, plane::ControlLink&) {
    if (type == static_cast<std::uint32_t>(PlaneMsg::SetRate)) {
      auto rate = decode_set_rate(message);
      if (!rate) {
        PVBACK_LOG(Error, "%s: data plane: %s", name.c_str(), rate.error().c_str());
        return;
      }
      s.rings->shared().set_rate(*rate);
      spec->rings.rate = *rate;
    } else if (type == static_cast<std::uint32_t>(PlaneMsg::SetXdpHeadroom)) {
      auto headroom = decode_set_xdp_headroom(message);
      if (!headroom) {
        PVBACK_LOG(Error, "%s: data plane: %s", name.c_str(), headroom.error().c_str());
        return;
      }
      s.rings->shared().set_xdp_headroom(*headroom);
      for (QueueConfig& q : spec->rings.queues) q.xdp_headroom = *headroom;
    } else {
      PVBACK_LOG(Warning, "%s: data plane: unexpected message %u from the control part", name.c_str(), type);
    }
  };
  hooks.adopted = [&] { return encode_plane_spec(*spec, PlaneMsg::Adopted); };
  hooks.adopted_fds = adopted_fds;
  plane::serve_control(link, listener, signal_fd, name, kPlaneProtocol,
                       std::chrono::milliseconds(spec->orphan_timeout_ms), hooks);
  return 0;  // ~Serving stops the queues and unmaps the rings
}

}  // namespace pvback::netback
