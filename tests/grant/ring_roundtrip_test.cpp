// Cross-process round trip: a forked "guest" (domain 1) shares a ring page and data pages and
// allocates an event channel; this process (domain 0) maps the ring, binds, and serves requests,
// reading the data through grant copy. Only grant tables, eventfds and shared memory connect them.
#include <sys/wait.h>
#include <unistd.h>

#include <cstring>

#include "ring/ring.hpp"
#include "tests/grant/sim_fixture.hpp"

namespace pvback::test {
namespace {

struct ChecksumRequest {
  std::uint64_t id;
  std::uint32_t data_ref;
  std::uint32_t length;
};
struct ChecksumResponse {
  std::uint64_t id;
  std::uint32_t checksum;
  std::int32_t status;
};
using ChecksumRing = ring::RingTypes<ChecksumRequest, ChecksumResponse>;

struct Handoff {
  GrantRef ring_ref;
  EvtchnPort port;
};

constexpr std::uint32_t kRequests = 300;
constexpr std::uint32_t kDataPages = 4;

std::uint32_t checksum(const std::byte* data, std::size_t len) {
  std::uint32_t sum = 0;
  for (std::size_t i = 0; i < len; ++i) sum = sum * 31 + static_cast<std::uint32_t>(data[i]);
  return sum;
}

bool write_all(int fd, const void* data, std::size_t len) { return ::write(fd, data, len) == static_cast<ssize_t>(len); }
bool read_all(int fd, void* data, std::size_t len) { return ::read(fd, data, len) == static_cast<ssize_t>(len); }

// The guest's side; returns the exit code (0: every response verified).
int run_guest(const grant::Platform& platform, int to_backend, int from_backend) {
  auto sharer = platform.open_sharer();
  auto channels = platform.open_event_channels();
  auto ring_page = sharer->share(0, 1, Access::ReadWrite);
  auto data = sharer->share(0, kDataPages, Access::ReadOnly);
  if (!ring_page || !data) return 10;
  auto front = ChecksumRing::Front::initialise(ring_page->data(), 1);
  if (!front) return 11;
  auto port = channels->alloc_unbound(0);
  if (!port) return 12;
  Handoff handoff{ring_page->refs()[0], *port};
  if (!write_all(to_backend, &handoff, sizeof(handoff))) return 13;

  std::uint32_t expected[kDataPages] = {};
  bool busy[kDataPages] = {};
  std::uint32_t issued = 0;
  std::uint32_t verified = 0;
  while (verified < kRequests) {
    for (std::uint32_t page = 0; page < kDataPages && issued < kRequests && !front->full(); ++page) {
      if (busy[page]) continue;
      const std::uint32_t length = 1 + (issued * 997) % kXenPageSize;
      for (std::uint32_t i = 0; i < length; ++i) data->page(page)[i] = static_cast<std::byte>(issued + i * 7);
      expected[page] = checksum(data->page(page), length);
      busy[page] = true;
      front->put_request(ChecksumRequest{(std::uint64_t{issued} << 8) | page, data->refs()[page], length});
      ++issued;
    }
    if (front->push_requests_and_check_notify() && channels->notify(*port) != 0) return 14;
    bool progressed = false;
    for (;;) {
      auto more = front->unconsumed_responses();
      if (!more) return 15;
      if (*more == 0) break;
      ChecksumResponse rsp = front->next_response();
      const std::uint32_t page = rsp.id & 0xFF;
      if (page >= kDataPages || !busy[page] || rsp.status != 0 || rsp.checksum != expected[page]) return 16;
      busy[page] = false;
      ++verified;
      progressed = true;
    }
    if (verified == kRequests) break;
    if (progressed) continue;  // freed pages: issue more before sleeping
    auto again = front->final_check_for_responses();
    if (!again) return 17;
    if (!*again) {
      if (!wait_readable(channels->fd())) return 18;
      auto pending = channels->pending();
      if (!pending || *pending != *port || channels->unmask(*port) != 0) return 19;
    }
  }
  char done = 'v';
  if (!write_all(to_backend, &done, 1)) return 20;
  // Keep the pages granted until the backend has unmapped the ring.
  char bye;
  if (!read_all(from_backend, &bye, 1)) return 21;
  return 0;
}

using RingRoundTripTest = SimHypervisorTest;

TEST_F(RingRoundTripTest, GuestProcessAndBackendExchangeRequests) {
  int to_backend[2];
  int from_backend[2];
  ASSERT_EQ(::pipe(to_backend), 0);
  ASSERT_EQ(::pipe(from_backend), 0);
  const grant::Platform guest_platform = platform(1);
  pid_t guest = ::fork();
  ASSERT_GE(guest, 0);
  if (guest == 0) {
    ::close(to_backend[0]);
    ::close(from_backend[1]);
    int code = run_guest(guest_platform, to_backend[1], from_backend[0]);
    ::_exit(code);
  }
  ::close(to_backend[1]);
  ::close(from_backend[0]);
  UniqueFd from_guest(to_backend[0]);
  UniqueFd to_guest(from_backend[1]);

  auto finish_guest = [&] {
    to_guest.reset();  // the guest stops waiting, whatever happened
    int status = 0;
    ::waitpid(guest, &status, 0);
    return status;
  };

  Handoff handoff{};
  if (!read_all(from_guest.get(), &handoff, sizeof(handoff))) {
    ADD_FAILURE() << "guest exited early with status " << finish_guest();
    return;
  }
  grant::Platform backend = platform(0);
  auto mapper = backend.open_mapper();
  auto channels = backend.open_event_channels();
  const GrantRef ring_refs[] = {handoff.ring_ref};
  auto ring_mapping = mapper->map(1, ring_refs, Access::ReadWrite);
  ASSERT_TRUE(ring_mapping) << std::strerror(ring_mapping.error());
  auto back = ChecksumRing::Back::attach(ring_mapping->data(), 1);
  ASSERT_TRUE(back);
  auto port = channels->bind_interdomain(1, handoff.port);
  ASSERT_TRUE(port) << std::strerror(port.error());

  std::uint32_t served = 0;
  std::vector<std::byte> buffer(kXenPageSize);
  bool ok = true;
  while (ok && served < kRequests) {
    for (;;) {
      auto more = back->unconsumed_requests();
      if (!more || *more == 0) {
        ok = more.has_value();
        break;
      }
      ChecksumRequest req = back->next_request();
      ChecksumResponse rsp{req.id, 0, -1};
      if (req.length <= kXenPageSize) {
        grant::CopySegment seg{};
        seg.source.foreign.ref = req.data_ref;
        seg.source.foreign.domid = 1;
        seg.dest.virt = buffer.data();
        seg.len = static_cast<std::uint16_t>(req.length);
        seg.flags = GNTCOPY_source_gref;
        if (mapper->copy({&seg, 1}) == 0 && seg.status == GNTST_okay) {
          rsp.checksum = checksum(buffer.data(), req.length);
          rsp.status = 0;
        }
      }
      back->put_response(rsp);
      ++served;
    }
    if (back->push_responses_and_check_notify()) ok = ok && channels->notify(*port) == 0;
    if (!ok || served == kRequests) break;
    auto again = back->final_check_for_requests();
    if (!again) {
      ok = false;
    } else if (!*again) {
      ok = wait_readable(channels->fd());
      auto pending = ok ? channels->pending() : std::expected<EvtchnPort, int>(std::unexpected(EIO));
      ok = pending && *pending == *port && channels->unmask(*port) == 0;
    }
  }
  EXPECT_TRUE(ok) << "backend stopped after " << served << " requests";
  EXPECT_EQ(served, kRequests);
  char verdict = 0;
  EXPECT_TRUE(read_all(from_guest.get(), &verdict, 1));
  EXPECT_EQ(verdict, 'v');
  ring_mapping->reset();
  EXPECT_EQ(channels->unbind(*port), 0);
  const char bye = 'b';
  EXPECT_TRUE(write_all(to_guest.get(), &bye, 1));
  int status = finish_guest();
  ASSERT_TRUE(WIFEXITED(status));
  EXPECT_EQ(WEXITSTATUS(status), 0) << "guest failure code";
}

}  // namespace
}  // namespace pvback::test
