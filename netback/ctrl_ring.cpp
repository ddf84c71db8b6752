// ControlRing: the vif's control ring served on its own thread. See ctrl_ring.hpp.
//
// Per wake-up: every unconsumed request is copied out of the ring once, answered on the copy by
// handle_ctrl_request() (ctrl_messages.hpp: the new HashConfig is built and checked there, XSA-270)
// which this stores in VifShared in one set_hash(), and the responses of the batch are published
// together with at most one notification.
#include "netback/ctrl_ring.hpp"

#include <poll.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cstring>
#include <system_error>

#include "base/log.hpp"
#include "base/stop_signal.hpp"
#include "base/unique_fd.hpp"
#include "netback/ctrl_messages.hpp"
#include "ring/netif.hpp"

namespace pvback::netback {
namespace {

using netif::CtrlRequest;
using netif::CtrlResponse;

struct Answer {
  std::uint32_t status = netif::kCtrlStatusNotSupported;
  std::uint32_t data = 0;
};


}  // namespace

struct ControlRing::Impl {
  Impl(ControlRingConfig c, VifShared& s, FatalHandler f)
      : config(std::move(c)), shared(s), on_fatal(std::move(f)), name(config.name.c_str()) {}

  int init(const grant::Platform& platform);
  int attach();
  void run();
  void process_ring();
  Answer handle(const CtrlRequest& req);
  // Copies `len` bytes from the start of the frontend's grant `gref`; false if the grant is bad.
  bool copy_from_guest(GrantRef gref, void* dest, std::uint32_t len);
  void fatal(int error, const char* reason);

  ControlRingConfig config;
  VifShared& shared;
  FatalHandler on_fatal;
  const char* name;

  // Declared first so they are destroyed last: the Mapping and BoundPort below refer to them.
  std::unique_ptr<grant::GrantMapper> mapper;
  std::unique_ptr<grant::EventChannels> channels;
  grant::Mapping ring_mapping;
  grant::BoundPort port;
  netif::CtrlRing::Back ring;
  StopSignal stop;
  bool fatal_seen = false;
  bool attached = false;
  CtrlResponse responses[netif::kCtrlRingSize];  // one batch's, in ring order
};

int ControlRing::Impl::init(const grant::Platform& platform) {
  try {
    mapper = platform.open_mapper();
    channels = platform.open_event_channels();
  } catch (const std::system_error& e) {
    PVBACK_LOG(Error, "%s: cannot open grant/event channel handles: %s", name, e.what());
    return e.code().value() != 0 ? e.code().value() : EIO;
  } catch (const std::exception& e) {
    PVBACK_LOG(Error, "%s: cannot open grant/event channel handles: %s", name, e.what());
    return EIO;
  }
  if (!mapper || !channels) return EIO;
  if (int e = channels->restrict_to(config.frontend_domid))
    PVBACK_LOG(Warning, "%s: cannot restrict the event-channel handle to domain %u: %s", name, config.frontend_domid,
               std::strerror(e));

  const GrantRef ref = config.ring_ref;
  auto mapped = mapper->map(config.frontend_domid, {&ref, 1}, Access::ReadWrite);
  if (!mapped) {
    PVBACK_LOG(Error, "%s: cannot map the control ring (gref %u) of domain %u: %s", name, ref,
               config.frontend_domid, std::strerror(mapped.error()));
    return mapped.error();
  }
  ring_mapping = std::move(*mapped);
  auto local = grant::bind_interdomain_patiently(*channels, config.frontend_domid, config.event_channel,
                                                config.bind_patience, name);
  if (!local) {
    PVBACK_LOG(Error, "%s: cannot bind event channel %u of domain %u: %s", name, config.event_channel,
               config.frontend_domid, std::strerror(local.error()));
    return local.error();
  }
  port = grant::BoundPort(*channels, *local);

  if (int e = stop.open()) return e;
  return 0;
}

int ControlRing::Impl::attach() {
  // A batch a killed predecessor logged and did not make visible is answered first
  // (ring_journal.hpp): its slots may hold responses, which must not be read as requests.
  const Replay replay = config.journal.replay<netif::CtrlRing>(ring_mapping.data());
  if (replay == Replay::Rewritten)
    PVBACK_LOG(Notice, "%s: answered the batch its predecessor had logged and not made visible", name);
  else if (replay == Replay::Mismatch)
    PVBACK_LOG(Warning, "%s: rsp_prod fits neither end of the logged batch: taken from rsp_prod", name);
  // Attach where the ring's responses stand, as Linux does, so a ring reused across a reconnect
  // keeps its indices; a req_prod already more than a ring ahead of them is refused.
  auto back = netif::CtrlRing::Back::attach_at_rsp_prod(ring_mapping.data(), 1);
  if (!back) return back.error();
  ring = *back;
  if (ring.requests_overflow()) {
    PVBACK_LOG(Error, "%s: control ring of domain %u has req_prod beyond its size", name, config.frontend_domid);
    return ring::kErrProducerOverflow;
  }
  port.notify();  // whatever a predecessor did or did not say
  attached = true;
  return 0;
}

void ControlRing::Impl::fatal(int error, const char* reason) {
  if (fatal_seen) return;
  fatal_seen = true;
  PVBACK_LOG(Error, "%s: %s; disconnecting", name, reason);
  if (on_fatal) on_fatal(error, reason);
}

void ControlRing::Impl::run() {
  if (!attached) {
    fatal(EINVAL, "served before its ring was attached");
    return;
  }
  // The frontend may have queued requests before we bound the event channel.
  if (!stop.requested()) process_ring();
  while (!fatal_seen && !stop.requested()) {
    pollfd fds[2] = {{channels->fd(), POLLIN, 0}, {stop.fd(), POLLIN, 0}};
    const int r = ::poll(fds, 2, -1);
    if (r < 0) {
      if (errno == EINTR) continue;
      const int err = errno;
      PVBACK_LOG(Error, "%s: poll: %s", name, std::strerror(err));
      fatal(err, "poll failed");
      break;
    }
    if ((fds[1].revents & POLLIN) != 0) break;
    if ((fds[0].revents & (POLLERR | POLLHUP | POLLNVAL)) != 0) {
      fatal(EIO, "event channel handle failed");
      break;
    }
    if ((fds[0].revents & POLLIN) == 0) continue;
    // Unmask before looking at the ring: an event from now on wakes us again.
    for (;;) {
      auto p = channels->pending();
      if (!p) break;
      channels->unmask(*p);
    }
    process_ring();
  }
}

void ControlRing::Impl::process_ring() {
  for (;;) {
    auto n = ring.unconsumed_requests();
    if (!n) {
      fatal(n.error(), "control ring producer index overflow");
      return;
    }
    // Answered in order; the batch is logged whole before the first response overwrites a
    // request slot (ring_journal.hpp).
    const ring::RingIdx batch = std::min<ring::RingIdx>(*n, netif::kCtrlRingSize);
    for (ring::RingIdx i = 0; i < batch; ++i) {
      const CtrlRequest req = ring.next_request();
      const Answer a = handle(req);
      CtrlResponse& rsp = responses[i];
      rsp = CtrlResponse{};  // every byte defined before it reaches the guest
      rsp.id = req.id;
      rsp.type = req.type;
      rsp.status = a.status;
      rsp.data = a.data;
      config.journal.stage(i, rsp);
    }
    if (batch != 0) {
      config.journal.commit(ring.rsp_prod_pvt(), batch);
      for (ring::RingIdx i = 0; i < batch; ++i) ring.put_response(responses[i]);
      const bool notify_guest = ring.push_responses_and_check_notify();
      config.journal.done();
      if (notify_guest) port.notify();
    }
    auto more = ring.final_check_for_requests();
    if (!more) {
      fatal(more.error(), "control ring producer index overflow");
      return;
    }
    if (!*more) return;
  }
}

Answer ControlRing::Impl::handle(const CtrlRequest& req) {
  const CtrlOutcome out = handle_ctrl_request(req, shared.hash(), shared.num_queues(),
                                              [this](GrantRef gref, void* dest, std::uint32_t len) {
                                                return copy_from_guest(gref, dest, len);
                                              });
  if (out.why[0] != '\0') {
    if (out.status == netif::kCtrlStatusNotSupported) PVBACK_LOG_RATELIMITED(Info, "%s: %s", name, out.why.data());
    else PVBACK_LOG_RATELIMITED(Warning, "%s: %s", name, out.why.data());
  }
  if (out.next) shared.set_hash(*out.next);
  return {out.status, out.data};
}

bool ControlRing::Impl::copy_from_guest(GrantRef gref, void* dest, std::uint32_t len) {
  grant::CopySegment c{};
  c.source.foreign.ref = gref;
  c.source.foreign.domid = config.frontend_domid;
  c.source.foreign.offset = 0;  // netif.h: the data starts at the beginning of the grant
  c.dest.virt = dest;
  c.len = static_cast<std::uint16_t>(len);
  c.flags = GNTCOPY_source_gref;
  const int err = mapper->copy({&c, 1});
  return err == 0 && c.status == GNTST_okay;
}

std::expected<std::unique_ptr<ControlRing>, int> ControlRing::create(const grant::Platform& platform,
                                                                     ControlRingConfig config, VifShared& shared,
                                                                     FatalHandler on_fatal) {
  std::unique_ptr<Impl> impl;
  try {
    impl = std::make_unique<Impl>(std::move(config), shared, std::move(on_fatal));
    if (int err = impl->init(platform); err != 0) return std::unexpected(err);
  } catch (const std::bad_alloc&) {
    return std::unexpected(ENOMEM);
  }
  return std::unique_ptr<ControlRing>(new ControlRing(std::move(impl)));
}

ControlRing::ControlRing(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
ControlRing::~ControlRing() = default;

int ControlRing::attach() { return impl_->attach(); }

void ControlRing::run() { impl_->run(); }

void ControlRing::stop() {
  impl_->stop.request();
}

}  // namespace pvback::netback
