// Narrow interface to event channels, with a real-Xen and a simulated implementation.
//
// One EventChannels handle owns many local ports and exposes a single fd to poll: readable when
// some port has a pending event. pending() returns one such port and leaves it masked until
// unmask(port), exactly like libxenevtchn; events arriving while masked are latched.
#pragma once
#include <chrono>
#include <cstdint>
#include <expected>

#include "grant/types.hpp"

namespace pvback::grant {

class EventChannels {
 public:
  virtual ~EventChannels() = default;

  virtual int fd() const = 0;
  // Backend side: binds to the frontend's unbound port. Returns the local port or an errno value.
  virtual std::expected<EvtchnPort, int> bind_interdomain(DomId remote, EvtchnPort remote_port) = 0;
  // Frontend side: a new port that `remote` may bind to.
  virtual std::expected<EvtchnPort, int> alloc_unbound(DomId remote) = 0;
  // Returns 0 or an errno value. Never blocks and never passes through a daemon.
  virtual int notify(EvtchnPort local) = 0;
  // A port with a pending event (now masked), or an errno value (EAGAIN if none).
  virtual std::expected<EvtchnPort, int> pending() = 0;
  virtual int unmask(EvtchnPort local) = 0;
  virtual int unbind(EvtchnPort local) = 0;

  // Confines this handle to `domid` for good, so that a sandboxed data plane holding it cannot
  // bind (and so signal or snoop on) another guest's event channels. Returns 0 or an errno value.
  // The semantics are Linux's IOCTL_EVTCHN_RESTRICT_DOMID (drivers/xen/evtchn.c), which
  // libxenevtchn's xenevtchn_restrict() issues, and the simulated hypervisor enforces the same
  // ones itself, per control connection, so no client code can skip them:
  //  - EACCES if the handle is already restricted, even to the same domain: it is done once,
  //    before the handle is given away, and never undone or moved;
  //  - then EINVAL if `domid` is 0 or not a guest (>= DOMID_FIRST_RESERVED, 0x7FF0). Whether the
  //    domain exists is not checked;
  //  - afterwards bind_interdomain() to any other domain fails with EACCES before anything is
  //    asked of the hypervisor (nothing is bound, the remote port stays bindable by others; the
  //    refusal comes first, so it is EACCES even for a domain that does not exist);
  //  - alloc_unbound() fails with EACCES whatever the remote, `domid` included: a restricted
  //    handle only binds ports the frontend offers. So does binding a VIRQ (not in this interface);
  //  - ports bound before, to any domain, keep working: notify, pending, unmask, unbind.
  // The restriction belongs to the handle (on Xen the open /dev/xen/evtchn file): a process that
  // can open a new handle is not confined by it, which is for its sandbox to prevent.
  [[nodiscard]] virtual int restrict_to(DomId domid) = 0;
};

// bind_interdomain() for a process that may be taking over from a killed predecessor. Xen binds
// only an unbound port (EINVAL otherwise), and a SIGKILLed process's ports are unbound when its
// event channel file is released: after it is reaped when io_uring still holds that file for an
// armed poll. So EINVAL is retried every few milliseconds for up to `patience` (0: one attempt),
// with one line in the log. `who` names the device in that line.
// What a successor gives the bind. The storage lock already waited for the predecessor's I/O, so
// what remains is the release of its files: short, and well below the 10 s a supervisor gives a
// backend to stop (the control thread waits here).
inline constexpr std::chrono::milliseconds kSuccessorBindPatience{5'000};
std::expected<EvtchnPort, int> bind_interdomain_patiently(EventChannels& channels, DomId remote, EvtchnPort remote_port,
                                                          std::chrono::milliseconds patience, const char* who);

// RAII ownership of one bound or allocated local port.
class BoundPort {
 public:
  BoundPort() = default;
  BoundPort(EventChannels& channels, EvtchnPort port) : channels_(&channels), port_(port) {}
  BoundPort(const BoundPort&) = delete;
  BoundPort& operator=(const BoundPort&) = delete;
  BoundPort(BoundPort&& o) noexcept : channels_(o.channels_), port_(o.port_) { o.channels_ = nullptr; }
  BoundPort& operator=(BoundPort&& o) noexcept {
    if (this != &o) {
      reset();
      channels_ = o.channels_;
      port_ = o.port_;
      o.channels_ = nullptr;
    }
    return *this;
  }
  ~BoundPort() { reset(); }

  EvtchnPort port() const { return port_; }
  explicit operator bool() const { return channels_ != nullptr; }
  int notify() const { return channels_->notify(port_); }
  void reset() noexcept {
    if (channels_ != nullptr) channels_->unbind(port_);
    channels_ = nullptr;
  }

 private:
  EventChannels* channels_ = nullptr;
  EvtchnPort port_ = 0;
};

}  // namespace pvback::grant
