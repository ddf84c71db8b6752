// EventChannels on libxenevtchn (/dev/xen/evtchn).
#include <fcntl.h>

// xenevtchn.h (Xen 4.17) has no extern "C" guard of its own.
extern "C" {
#include <xenevtchn.h>
}

#include <cerrno>
#include <memory>
#include <system_error>

#include "grant/implementations.hpp"

namespace pvback::grant {
namespace {

struct EvtchnCloser {
  void operator()(xenevtchn_handle* h) const noexcept { xenevtchn_close(h); }
};

int last_error(int fallback = EIO) { return errno != 0 ? errno : fallback; }

class XenEventChannels final : public EventChannels {
 public:
  XenEventChannels() : handle_(xenevtchn_open(nullptr, 0)) {
    if (!handle_)
      throw std::system_error(errno, std::generic_category(),
                              "cannot open the Xen event-channel device /dev/xen/evtchn (xenevtchn_open); "
                              "is this a Xen domain with the xen-evtchn module loaded?");
    fd_ = xenevtchn_fd(handle_.get());
    // pending() must report EAGAIN instead of blocking: callers poll fd() first.
    int flags = ::fcntl(fd_, F_GETFL);
    if (flags < 0 || ::fcntl(fd_, F_SETFL, flags | O_NONBLOCK) != 0)
      throw std::system_error(errno, std::generic_category(), "cannot make the event-channel fd non-blocking");
  }

  int fd() const override { return fd_; }

  std::expected<EvtchnPort, int> bind_interdomain(DomId remote, EvtchnPort remote_port) override {
    xenevtchn_port_or_error_t port = xenevtchn_bind_interdomain(handle_.get(), remote, remote_port);
    if (port < 0) return std::unexpected(last_error());
    return static_cast<EvtchnPort>(port);
  }

  std::expected<EvtchnPort, int> alloc_unbound(DomId remote) override {
    xenevtchn_port_or_error_t port = xenevtchn_bind_unbound_port(handle_.get(), remote);
    if (port < 0) return std::unexpected(last_error());
    return static_cast<EvtchnPort>(port);
  }

  int notify(EvtchnPort local) override { return xenevtchn_notify(handle_.get(), local) == 0 ? 0 : last_error(); }

  std::expected<EvtchnPort, int> pending() override {
    xenevtchn_port_or_error_t port = xenevtchn_pending(handle_.get());
    if (port < 0) return std::unexpected(last_error(EAGAIN));
    return static_cast<EvtchnPort>(port);
  }

  int unmask(EvtchnPort local) override { return xenevtchn_unmask(handle_.get(), local) == 0 ? 0 : last_error(); }
  int unbind(EvtchnPort local) override { return xenevtchn_unbind(handle_.get(), local) == 0 ? 0 : last_error(); }
  // IOCTL_EVTCHN_RESTRICT_DOMID: the kernel enforces it (see EventChannels::restrict_to).
  int restrict_to(DomId domid) override {
    return xenevtchn_restrict(handle_.get(), domid) == 0 ? 0 : last_error();
  }

 private:
  std::unique_ptr<xenevtchn_handle, EvtchnCloser> handle_;
  int fd_ = -1;
};

}  // namespace

std::unique_ptr<EventChannels> open_xen_event_channels() { return std::make_unique<XenEventChannels>(); }

}  // namespace pvback::grant
