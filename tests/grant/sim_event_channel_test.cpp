// Event channels on the simulated hypervisor: Xen's binding rules, masking and latching.
#include <cstring>

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

}  // namespace
}  // namespace pvback::test
