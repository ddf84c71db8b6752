// Event channels on the simulated hypervisor: Xen's binding rules, masking and latching.
#include <cerrno>
#include <cstdint>
#include <cstring>
#include <vector>

#include "tests/grant/sim_fixture.hpp"

namespace pvback::test {
namespace {

class SimEventChannelTest : public SimHypervisorTest {
 protected:
  void SetUp() override {
    SimHypervisorTest::SetUp();
    if (HasFatalFailure()) return;
    guest_ = platform(1).open_event_channels();
    backend_ = platform(0).open_event_channels();
  }
  void TearDown() override {
    backend_.reset();
    guest_.reset();
    SimHypervisorTest::TearDown();
  }

  // Waits for and returns the next pending port (masked now), or 0 if none arrives.
  static EvtchnPort next_pending(grant::EventChannels& channels) {
    if (!wait_readable(channels.fd())) return 0;
    auto port = channels.pending();
    return port ? *port : 0;
  }
  static bool nothing_pending(grant::EventChannels& channels) {
    auto port = channels.pending();
    return !port && port.error() == EAGAIN;
  }
  // Events go both ways between two bound, unmasked ends, which are left unmasked.
  static void expect_connected(grant::EventChannels& a, EvtchnPort a_port, grant::EventChannels& b,
                               EvtchnPort b_port) {
    EXPECT_EQ(a.notify(a_port), 0);
    EXPECT_EQ(next_pending(b), b_port);
    EXPECT_EQ(b.unmask(b_port), 0);
    EXPECT_EQ(b.notify(b_port), 0);
    EXPECT_EQ(next_pending(a), a_port);
    EXPECT_EQ(a.unmask(a_port), 0);
  }

  std::unique_ptr<grant::EventChannels> guest_;
  std::unique_ptr<grant::EventChannels> backend_;
};

TEST_F(SimEventChannelTest, AllocBindNotifyBothWays) {
  auto guest_port = guest_->alloc_unbound(0);
  ASSERT_TRUE(guest_port) << std::strerror(guest_port.error());
  auto backend_port = backend_->bind_interdomain(1, *guest_port);
  ASSERT_TRUE(backend_port) << std::strerror(backend_port.error());

  // Binding marks the new local port pending, as Xen does.
  EXPECT_EQ(next_pending(*backend_), *backend_port);
  EXPECT_EQ(backend_->unmask(*backend_port), 0);
  EXPECT_TRUE(nothing_pending(*backend_));
  EXPECT_TRUE(nothing_pending(*guest_));

  EXPECT_EQ(backend_->notify(*backend_port), 0);
  EXPECT_EQ(next_pending(*guest_), *guest_port);
  EXPECT_EQ(guest_->unmask(*guest_port), 0);
  EXPECT_TRUE(nothing_pending(*guest_));

  EXPECT_EQ(guest_->notify(*guest_port), 0);
  EXPECT_EQ(next_pending(*backend_), *backend_port);
  EXPECT_EQ(backend_->unmask(*backend_port), 0);

  EXPECT_EQ(guest_->notify(9999), EINVAL);
  EXPECT_EQ(guest_->unmask(9999), EINVAL);
}

TEST_F(SimEventChannelTest, PendingPortStaysMaskedAndEventsLatch) {
  auto guest_port = guest_->alloc_unbound(0);
  ASSERT_TRUE(guest_port);
  auto backend_port = backend_->bind_interdomain(1, *guest_port);
  ASSERT_TRUE(backend_port);
  ASSERT_EQ(next_pending(*backend_), *backend_port);  // the bind event; now masked

  EXPECT_EQ(guest_->notify(*guest_port), 0);
  EXPECT_EQ(guest_->notify(*guest_port), 0);
  EXPECT_TRUE(nothing_pending(*backend_)) << "a masked port must not be reported";
  EXPECT_EQ(backend_->unmask(*backend_port), 0);
  EXPECT_EQ(next_pending(*backend_), *backend_port) << "events while masked are latched";
  EXPECT_EQ(backend_->unmask(*backend_port), 0);
  EXPECT_TRUE(nothing_pending(*backend_)) << "two notifications latch as one event";
}

TEST_F(SimEventChannelTest, SeveralPortsOnOneHandle) {
  auto a = guest_->alloc_unbound(0);
  auto b = guest_->alloc_unbound(0);
  ASSERT_TRUE(a && b);
  EXPECT_NE(*a, *b);
  auto ba = backend_->bind_interdomain(1, *a);
  auto bb = backend_->bind_interdomain(1, *b);
  ASSERT_TRUE(ba && bb);
  EXPECT_EQ(backend_->notify(*bb), 0);
  EXPECT_EQ(next_pending(*guest_), *b);
  EXPECT_TRUE(nothing_pending(*guest_));
  EXPECT_EQ(backend_->notify(*ba), 0);
  EXPECT_EQ(next_pending(*guest_), *a);
}

TEST_F(SimEventChannelTest, RebindAfterBoundSideCloses) {
  auto guest_port = guest_->alloc_unbound(0);
  ASSERT_TRUE(guest_port);
  auto first = backend_->bind_interdomain(1, *guest_port);
  ASSERT_TRUE(first);
  // Bound ports cannot be bound twice.
  auto second_backend = platform(0).open_event_channels();
  auto twice = second_backend->bind_interdomain(1, *guest_port);
  ASSERT_FALSE(twice);
  EXPECT_EQ(twice.error(), EINVAL);

  EXPECT_EQ(backend_->unbind(*first), 0);
  EXPECT_EQ(backend_->unbind(*first), EINVAL);
  auto rebound = second_backend->bind_interdomain(1, *guest_port);
  ASSERT_TRUE(rebound) << std::strerror(rebound.error());
  ASSERT_EQ(next_pending(*second_backend), *rebound);
  ASSERT_EQ(second_backend->unmask(*rebound), 0);
  // The guest keeps notifying through the fds it got at allocation time.
  EXPECT_EQ(guest_->notify(*guest_port), 0);
  EXPECT_EQ(next_pending(*second_backend), *rebound);
  EXPECT_EQ(second_backend->notify(*rebound), 0);
  EXPECT_EQ(next_pending(*guest_), *guest_port);
}

TEST_F(SimEventChannelTest, DisconnectClosesPortsLikeProcessExit) {
  auto guest_port = guest_->alloc_unbound(0);
  ASSERT_TRUE(guest_port);
  {
    auto short_lived = platform(0).open_event_channels();
    ASSERT_TRUE(short_lived->bind_interdomain(1, *guest_port));
  }  // the handle goes away without unbinding
  auto rebound = backend_->bind_interdomain(1, *guest_port);
  EXPECT_TRUE(rebound) << "the port must be unbound again after the binder disconnected";
}

TEST_F(SimEventChannelTest, BindingRulesAreEnforced) {
  auto for_dom2 = guest_->alloc_unbound(2);
  ASSERT_TRUE(for_dom2);
  auto wrong_domain = backend_->bind_interdomain(1, *for_dom2);
  ASSERT_FALSE(wrong_domain);
  EXPECT_EQ(wrong_domain.error(), EINVAL);
  auto dom2 = platform(2).open_event_channels();
  EXPECT_TRUE(dom2->bind_interdomain(1, *for_dom2)) << "the named domain may bind";

  auto no_port = backend_->bind_interdomain(1, 4000);
  ASSERT_FALSE(no_port);
  EXPECT_EQ(no_port.error(), EINVAL);
  auto no_domain = backend_->bind_interdomain(55, 1);
  ASSERT_FALSE(no_domain);
  EXPECT_EQ(no_domain.error(), ESRCH);
  auto alloc_for_nobody = guest_->alloc_unbound(55);
  ASSERT_FALSE(alloc_for_nobody);
  EXPECT_EQ(alloc_for_nobody.error(), ESRCH);
}

TEST_F(SimEventChannelTest, BoundPortUnbindsOnDestruction) {
  auto guest_port = guest_->alloc_unbound(0);
  ASSERT_TRUE(guest_port);
  {
    auto port = backend_->bind_interdomain(1, *guest_port);
    ASSERT_TRUE(port);
    grant::BoundPort bound(*backend_, *port);
    EXPECT_EQ(bound.notify(), 0);
  }
  auto other = platform(0).open_event_channels();
  EXPECT_TRUE(other->bind_interdomain(1, *guest_port));
}

TEST_F(SimEventChannelTest, DomainDestroyReleasesChannels) {
  auto guest_port = guest_->alloc_unbound(0);
  ASSERT_TRUE(guest_port);
  auto backend_port = backend_->bind_interdomain(1, *guest_port);
  ASSERT_TRUE(backend_port);
  ASSERT_EQ(destroy_domain(1), 0);
  EXPECT_EQ(destroyed(), std::vector<DomId>{1});
  // The dead domain's handle can do nothing more; the backend's port just has no peer.
  auto after = guest_->alloc_unbound(0);
  ASSERT_FALSE(after);
  EXPECT_EQ(after.error(), ESRCH);
  EXPECT_EQ(backend_->notify(*backend_port), 0);
  // A new domain 1 can bind to the backend's port, which went back to unbound naming domain 1.
  ASSERT_EQ(create_domain(1), 0);
  auto reborn = platform(1).open_event_channels();
  auto port = reborn->bind_interdomain(0, *backend_port);
  EXPECT_TRUE(port) << std::strerror(port.error());
  EXPECT_EQ(backend_->unbind(*backend_port), 0);
}

// restrict_to (Linux's IOCTL_EVTCHN_RESTRICT_DOMID): the backend's handle, confined to domain 1.

TEST_F(SimEventChannelTest, RestrictedHandleBindsItsDomainsPorts) {
  auto guest_port = guest_->alloc_unbound(0);
  ASSERT_TRUE(guest_port);
  ASSERT_EQ(backend_->restrict_to(1), 0);
  auto backend_port = backend_->bind_interdomain(1, *guest_port);
  ASSERT_TRUE(backend_port) << std::strerror(backend_port.error());
  ASSERT_EQ(next_pending(*backend_), *backend_port);
  ASSERT_EQ(backend_->unmask(*backend_port), 0);
  expect_connected(*guest_, *guest_port, *backend_, *backend_port);
  EXPECT_EQ(backend_->unbind(*backend_port), 0);
}

TEST_F(SimEventChannelTest, RestrictedHandleCannotBindAnotherDomainsPort) {
  auto dom2 = platform(2).open_event_channels();
  auto dom2_port = dom2->alloc_unbound(0);
  ASSERT_TRUE(dom2_port);
  ASSERT_EQ(backend_->restrict_to(1), 0);
  auto refused = backend_->bind_interdomain(2, *dom2_port);
  ASSERT_FALSE(refused);
  EXPECT_EQ(refused.error(), EACCES);
  auto nobody = backend_->bind_interdomain(55, 1);
  ASSERT_FALSE(nobody);
  EXPECT_EQ(nobody.error(), EACCES) << "refused before the domain is looked up, as on Linux";

  // Nothing was bound: an unrestricted handle binds the port and talks to domain 2 through it.
  auto other = platform(0).open_event_channels();
  auto bound = other->bind_interdomain(2, *dom2_port);
  ASSERT_TRUE(bound) << std::strerror(bound.error());
  ASSERT_EQ(next_pending(*other), *bound);
  ASSERT_EQ(other->unmask(*bound), 0);
  expect_connected(*dom2, *dom2_port, *other, *bound);
}

TEST_F(SimEventChannelTest, RestrictedHandleAllocatesNoPorts) {
  ASSERT_EQ(backend_->restrict_to(1), 0);
  auto for_dom2 = backend_->alloc_unbound(2);
  ASSERT_FALSE(for_dom2);
  EXPECT_EQ(for_dom2.error(), EACCES);
  auto for_dom1 = backend_->alloc_unbound(1);
  ASSERT_FALSE(for_dom1);
  EXPECT_EQ(for_dom1.error(), EACCES) << "Linux refuses alloc_unbound to the restricted domain too";
}

TEST_F(SimEventChannelTest, RestrictIsOnceOnlyAndToAGuest) {
  // Refused domids leave the handle unrestricted, as on Linux.
  EXPECT_EQ(backend_->restrict_to(0), EINVAL);
  EXPECT_EQ(backend_->restrict_to(0x7FF0), EINVAL);  // DOMID_FIRST_RESERVED
  auto dom2 = platform(2).open_event_channels();  // kept: its ports close with it
  auto dom2_port = dom2->alloc_unbound(0);
  ASSERT_TRUE(dom2_port);
  auto guest_port = guest_->alloc_unbound(0);
  ASSERT_TRUE(guest_port);

  ASSERT_EQ(backend_->restrict_to(1), 0);
  EXPECT_EQ(backend_->restrict_to(2), EACCES) << "a restriction cannot be moved";
  EXPECT_EQ(backend_->restrict_to(1), EACCES) << "nor repeated, as on Linux";
  EXPECT_EQ(backend_->restrict_to(0), EACCES) << "the once-only check comes first";
  auto still_refused = backend_->bind_interdomain(2, *dom2_port);
  ASSERT_FALSE(still_refused);
  EXPECT_EQ(still_refused.error(), EACCES);
  EXPECT_TRUE(backend_->bind_interdomain(1, *guest_port));
}

TEST_F(SimEventChannelTest, PortsBoundBeforeRestrictKeepWorking) {
  auto dom2 = platform(2).open_event_channels();
  auto guest_port = guest_->alloc_unbound(0);
  auto dom2_port = dom2->alloc_unbound(0);
  ASSERT_TRUE(guest_port && dom2_port);
  auto to_guest = backend_->bind_interdomain(1, *guest_port);
  auto to_dom2 = backend_->bind_interdomain(2, *dom2_port);
  ASSERT_TRUE(to_guest && to_dom2);
  for (int i = 0; i < 2; ++i) {
    EvtchnPort port = next_pending(*backend_);
    ASSERT_TRUE(port == *to_guest || port == *to_dom2);
    ASSERT_EQ(backend_->unmask(port), 0);
  }

  ASSERT_EQ(backend_->restrict_to(1), 0);
  expect_connected(*guest_, *guest_port, *backend_, *to_guest);
  // Linux leaves even another domain's already-bound port working; only new binds are confined.
  expect_connected(*dom2, *dom2_port, *backend_, *to_dom2);
  EXPECT_EQ(backend_->unbind(*to_dom2), 0);
  auto rebind = backend_->bind_interdomain(2, *dom2_port);
  ASSERT_FALSE(rebind) << "once unbound, it cannot be bound again";
  EXPECT_EQ(rebind.error(), EACCES);
}

// A compromised data plane does not have to use SimEventChannels: it may write any request on
// its connection. pvback-sim enforces the restriction whatever the client sends.
TEST_F(SimEventChannelTest, SimulatorEnforcesRestrictionOnRawRequests) {
  auto dom2 = platform(2).open_event_channels();  // kept: its ports close with it
  auto dom2_port = dom2->alloc_unbound(0);
  ASSERT_TRUE(dom2_port);
  auto control = grant::SimControl::connect(run_dir_, 0);
  ASSERT_TRUE(control);
  auto call = [&](sim_protocol::Op op, std::uint32_t domid, std::uint32_t remote, std::uint32_t port = 0) {
    sim_protocol::Request req;
    req.op = op;
    req.domid = domid;
    req.remote = remote;
    req.port = port;
    std::vector<UniqueFd> fds;
    auto reply = control->call(req, &fds);
    return reply ? 0 : reply.error();
  };
  using Op = sim_protocol::Op;
  EXPECT_EQ(call(Op::RestrictDomain, 1, 1), EPERM) << "acts as its own domain only";
  ASSERT_EQ(call(Op::RestrictDomain, 0, 1), 0);

  EXPECT_EQ(call(Op::BindInterdomain, 0, 2, *dom2_port), EACCES);
  EXPECT_EQ(call(Op::BindInterdomain, 0, 0x10001, *dom2_port), EACCES) << "no truncation to domain 1";
  EXPECT_EQ(call(Op::AllocUnbound, 0, 2), EACCES);
  EXPECT_EQ(call(Op::AllocUnbound, 0, 1), EACCES);
  EXPECT_EQ(call(Op::RestrictDomain, 0, 2), EACCES);
  EXPECT_EQ(call(Op::Hello, 0, 0), EINVAL) << "a connection cannot start over unrestricted";
  EXPECT_EQ(call(Op::BindInterdomain, 0, 2, *dom2_port), EACCES);

  auto guest_port = guest_->alloc_unbound(0);
  ASSERT_TRUE(guest_port);
  EXPECT_EQ(call(Op::BindInterdomain, 0, 1, *guest_port), 0) << "its own domain's port it binds";
  auto bound = backend_->bind_interdomain(2, *dom2_port);
  EXPECT_TRUE(bound) << "the refused binds left domain 2's port unbound";
}

}  // namespace
}  // namespace pvback::test
