// EventChannels for the simulated hypervisor: each port is a pair of eventfds handed over by the
// hypervisor at allocation/bind time, so notify() is a write(2) to the peer's eventfd and never
// passes through a daemon. One epoll set gives the single fd to poll.
#include <sys/epoll.h>

#include <cerrno>
#include <cstring>
#include <map>
#include <mutex>
#include <system_error>

#include "base/log.hpp"
#include "grant/implementations.hpp"
#include "grant/sim_control.hpp"

namespace pvback::grant {
namespace {

namespace proto = sim_protocol;

class SimEventChannels final : public EventChannels {
 public:
  explicit SimEventChannels(SimControl control) : control_(std::move(control)) {
    epoll_.reset(::epoll_create1(EPOLL_CLOEXEC));
    if (!epoll_) throw std::system_error(errno, std::generic_category(), "epoll_create1");
  }

  int fd() const override { return epoll_.get(); }

  std::expected<EvtchnPort, int> bind_interdomain(DomId remote, EvtchnPort remote_port) override {
    proto::Request req;
    req.op = proto::Op::BindInterdomain;
    req.domid = control_.self();
    req.remote = remote;
    req.port = remote_port;
    return add(req);
  }

  std::expected<EvtchnPort, int> alloc_unbound(DomId remote) override {
    proto::Request req;
    req.op = proto::Op::AllocUnbound;
    req.domid = control_.self();
    req.remote = remote;
    return add(req);
  }

  int notify(EvtchnPort local) override {
    int peer;
    {
      std::lock_guard lock(mutex_);
      auto it = ports_.find(local);
      if (it == ports_.end()) return EINVAL;
      peer = it->second.peer.get();
      std::uint64_t one = 1;
      // Written under the lock so a concurrent unbind cannot close (and recycle) the fd.
      if (::write(peer, &one, sizeof(one)) < 0 && errno != EAGAIN) return errno;
    }
    return 0;
  }

  std::expected<EvtchnPort, int> pending() override {
    for (;;) {
      epoll_event ev{};
      int n = ::epoll_wait(epoll_.get(), &ev, 1, 0);
      if (n < 0) {
        if (errno == EINTR) continue;
        return std::unexpected(errno);
      }
      if (n == 0) return std::unexpected(EAGAIN);
      const EvtchnPort port = ev.data.u32;
      std::lock_guard lock(mutex_);
      auto it = ports_.find(port);
      if (it == ports_.end()) continue;  // unbound meanwhile
      std::uint64_t count;
      [[maybe_unused]] ssize_t r = ::read(it->second.local.get(), &count, sizeof(count));
      // Masked until unmask(): further events latch in the eventfd counter.
      epoll_event masked{};
      masked.events = 0;
      masked.data.u32 = port;
      ::epoll_ctl(epoll_.get(), EPOLL_CTL_MOD, it->second.local.get(), &masked);
      return port;
    }
  }

  int unmask(EvtchnPort local) override {
    std::lock_guard lock(mutex_);
    auto it = ports_.find(local);
    if (it == ports_.end()) return EINVAL;
    epoll_event ev{};
    ev.events = EPOLLIN;
    ev.data.u32 = local;
    if (::epoll_ctl(epoll_.get(), EPOLL_CTL_MOD, it->second.local.get(), &ev) != 0) return errno;
    return 0;
  }

  int unbind(EvtchnPort local) override {
    Port port;
    {
      std::lock_guard lock(mutex_);
      auto it = ports_.find(local);
      if (it == ports_.end()) return EINVAL;
      port = std::move(it->second);
      ports_.erase(it);
      ::epoll_ctl(epoll_.get(), EPOLL_CTL_DEL, port.local.get(), nullptr);
    }
    proto::Request req;
    req.op = proto::Op::Close;
    req.domid = control_.self();
    req.port = local;
    auto reply = control_.call(req);
    if (!reply) {
      PVBACK_LOG(Warning, "sim event channels: closing port %u: %s", local, std::strerror(reply.error()));
      return reply.error();
    }
    return 0;
  }

  // Only asks: pvback-sim records the restriction on this connection and enforces it there.
  int restrict_to(DomId domid) override {
    proto::Request req;
    req.op = proto::Op::RestrictDomain;
    req.domid = control_.self();
    req.remote = domid;
    auto reply = control_.call(req);
    return reply ? 0 : reply.error();
  }

 private:
  struct Port {
    UniqueFd local;  // readable when this port has an event
    UniqueFd peer;   // written to notify the other end
  };

  std::expected<EvtchnPort, int> add(const proto::Request& req) {
    std::vector<UniqueFd> fds;
    auto reply = control_.call(req, &fds);
    if (!reply) return std::unexpected(reply.error());
    if (fds.size() != 2) return std::unexpected(EPROTO);
    const EvtchnPort port = reply->port;
    epoll_event ev{};
    ev.events = EPOLLIN;
    ev.data.u32 = port;
    std::lock_guard lock(mutex_);
    if (ports_.contains(port) || ::epoll_ctl(epoll_.get(), EPOLL_CTL_ADD, fds[0].get(), &ev) != 0) {
      PVBACK_LOG(Error, "sim event channels: cannot track new port %u", port);
      return std::unexpected(EPROTO);
    }
    ports_.emplace(port, Port{std::move(fds[0]), std::move(fds[1])});
    return port;
  }

  SimControl control_;
  UniqueFd epoll_;
  std::mutex mutex_;
  std::map<EvtchnPort, Port> ports_;
};

}  // namespace

std::unique_ptr<EventChannels> open_sim_event_channels(const std::filesystem::path& run_dir, DomId self) {
  return std::make_unique<SimEventChannels>(connect_sim_control_or_throw(run_dir, self));
}

}  // namespace pvback::grant
