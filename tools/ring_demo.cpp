// pvback-ring-demo: a ring round trip between two processes through the platform layer.
//
// The "guest" (domain 1) shares a ring page and data pages with Dom0, allocates an unbound event
// channel and publishes both in XenStore like a PV frontend. The "backend" (domain 0) waits for
// the frontend to be Initialised, maps the ring, binds the channel and serves every request by a
// batched grant copy of the request's data page and a checksum. The guest verifies each response.
// It runs on whatever PVBACK_PLATFORM selects; scripts/demo.sh runs it on pvback-sim.
#include <poll.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cinttypes>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include "base/log.hpp"
#include "grant/platform.hpp"
#include "ring/ring.hpp"
#include "xenbus/xenstore.hpp"

namespace {

using namespace pvback;

constexpr DomId kGuest = 1;
constexpr std::uint32_t kDataPages = 32;
const std::string kFrontend = "/local/domain/1/device/demo/0";
const std::string kBackend = "/local/domain/0/backend/demo/1/0";

struct DemoRequest {
  std::uint64_t id;
  std::uint32_t gref;   // data page to checksum
  std::uint32_t length; // bytes from offset 0
};
struct DemoResponse {
  std::uint64_t id;
  std::uint64_t checksum;
};
using DemoFront = ring::FrontRing<DemoRequest, DemoResponse>;
using DemoBack = ring::BackRing<DemoRequest, DemoResponse>;

std::uint64_t checksum(const std::byte* data, std::size_t len) {
  std::uint64_t h = 1469598103934665603ull;  // FNV-1a
  for (std::size_t i = 0; i < len; ++i) h = (h ^ static_cast<std::uint8_t>(data[i])) * 1099511628211ull;
  return h;
}

[[noreturn]] void die(const char* what, int err) {
  PVBACK_LOG(Error, "%s: %s", what, std::strerror(err));
  std::exit(1);
}

template <class T>
T must(std::expected<T, int> v, const char* what) {
  if (!v) die(what, v.error());
  return std::move(*v);
}

void wait_readable(int fd) {
  pollfd p{fd, POLLIN, 0};
  while (::poll(&p, 1, 10000) <= 0) die("timed out waiting for an event", ETIMEDOUT);
}

// Waits until `path` holds `value`, via a XenStore watch.
void wait_for_value(xenbus::XenStore& xs, const std::string& path, const std::string& value) {
  if (int e = xs.watch(path, "wait")) die("watch", e);
  for (;;) {
    auto v = xs.read(path);
    if (v && *v == value) break;
    wait_readable(xs.fd());
    while (xs.read_watch()) {
    }
  }
  xs.unwatch(path, "wait");
}

int run_guest(const grant::Platform& platform, std::uint64_t total) {
  log::set_program("demo-guest");
  auto xs = must(xenbus::XenStore::open(platform.config().xenstore_path()), "guest: open XenStore");
  auto sharer = platform.open_sharer();
  auto events = platform.open_event_channels();
  auto ring_page = must(sharer->share(0, 1, Access::ReadWrite), "guest: share ring page");
  auto data = must(sharer->share(0, kDataPages, Access::ReadOnly), "guest: share data pages");
  auto front = must(DemoFront::initialise(ring_page.data(), 1), "guest: ring init");
  grant::BoundPort port(*events, must(events->alloc_unbound(0), "guest: alloc unbound port"));

  wait_for_value(xs, kBackend + "/state", "2");  // InitWait
  xs.write(kFrontend + "/ring-ref", std::to_string(ring_page.refs()[0]));
  xs.write(kFrontend + "/event-channel", std::to_string(port.port()));
  xs.write(kFrontend + "/state", "3");  // Initialised
  std::printf("guest:   shared ring ref %u, %u data pages, event channel %u\n", ring_page.refs()[0], kDataPages,
              port.port());

  wait_for_value(xs, kBackend + "/state", "4");  // Connected
  std::vector<std::uint64_t> expected(front.size());
  std::uint64_t sent = 0, done = 0, notifies = 0;
  auto start = std::chrono::steady_clock::now();
  while (done < total) {
    // At most one request per data page in flight, so no page is rewritten before it was read.
    while (sent < total && sent - done < kDataPages && !front.full()) {
      std::uint32_t slot = static_cast<std::uint32_t>(sent % kDataPages);
      std::byte* page = data.page(slot);
      std::uint32_t len = 64 + static_cast<std::uint32_t>(sent % 4000);
      for (std::uint32_t i = 0; i < len; i += 8) std::memcpy(page + i, &sent, std::min<std::uint32_t>(8, len - i));
      expected[sent % front.size()] = checksum(page, len);
      front.put_request(DemoRequest{sent, data.refs()[slot], len});
      ++sent;
    }
    if (front.push_requests_and_check_notify()) {
      port.notify();
      ++notifies;
    }
    bool progress = false;
    while (must(front.final_check_for_responses(), "guest: response ring")) {
      while (*front.unconsumed_responses() > 0) {
        DemoResponse rsp = front.next_response();
        if (rsp.id != done || rsp.checksum != expected[rsp.id % front.size()]) {
          std::fprintf(stderr, "guest: response %" PRIu64 " wrong (expected id %" PRIu64 ")\n", rsp.id, done);
          return 1;
        }
        ++done;
        progress = true;
      }
    }
    if (!progress && done < sent) {
      wait_readable(events->fd());
      if (auto p = events->pending()) events->unmask(*p);
    }
  }
  double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  std::printf("guest:   %" PRIu64 " requests verified in %.3f s (%.0f round trips/s, %" PRIu64 " notifications sent)\n",
              done, secs, static_cast<double>(done) / secs, notifies);
  // Close like a PV frontend: the backend unmaps before we end foreign access to the pages.
  xs.write(kFrontend + "/state", "5");  // Closing
  wait_for_value(xs, kBackend + "/state", "6");
  xs.write(kFrontend + "/state", "6");
  return 0;
}

int run_backend(const grant::Platform& platform) {
  log::set_program("demo-backend");
  auto xs = must(xenbus::XenStore::open(platform.config().xenstore_path()), "backend: open XenStore");
  // The backend node is Dom0's; the guest may read it (as libxl sets it up).
  const xenbus::Permission perms[] = {{0, xenbus::PermAccess::None}, {kGuest, xenbus::PermAccess::Read}};
  if (int e = xs.write(kBackend + "/state", "2"); e != 0 || xs.set_permissions(kBackend, perms) != 0 ||
                                                  xs.set_permissions(kBackend + "/state", perms) != 0)
    die("backend: publish backend node", e ? e : EACCES);
  wait_for_value(xs, kFrontend + "/state", "3");
  auto ring_ref = must(xs.read_uint(kFrontend + "/ring-ref", UINT32_MAX), "backend: ring-ref");
  auto remote_port = must(xs.read_uint(kFrontend + "/event-channel", UINT32_MAX), "backend: event-channel");

  auto mapper = platform.open_mapper();
  auto events = platform.open_event_channels();
  const GrantRef ref = static_cast<GrantRef>(ring_ref);
  auto ring_map = must(mapper->map(kGuest, {&ref, 1}, Access::ReadWrite), "backend: map ring");
  auto back = must(DemoBack::attach(ring_map.data(), 1), "backend: attach ring");
  grant::BoundPort port(*events, must(events->bind_interdomain(kGuest, static_cast<EvtchnPort>(remote_port)),
                                      "backend: bind event channel"));
  xs.write(kBackend + "/state", "4");
  std::printf("backend: mapped ring ref %u, bound event channel %u -> local port %u\n", ref,
              static_cast<unsigned>(remote_port), port.port());

  std::vector<DemoRequest> batch;
  std::vector<grant::CopySegment> copies;
  std::vector<std::byte> buffers(static_cast<std::size_t>(back.size()) * kXenPageSize);
  batch.reserve(back.size());
  copies.reserve(back.size());
  std::uint64_t served = 0, batches = 0;
  if (int e = xs.watch(kFrontend + "/state", "state")) die("backend: watch", e);
  for (;;) {
    auto more = back.final_check_for_requests();
    if (!more) die("backend: frontend overflowed the ring", EPROTO);
    if (!*more) {
      pollfd fds[2] = {{events->fd(), POLLIN, 0}, {xs.fd(), POLLIN, 0}};
      ::poll(fds, 2, 1000);
      if (auto p = events->pending()) events->unmask(*p);
      if (fds[1].revents & POLLIN) {
        while (xs.read_watch()) {
        }
        auto state = xs.read(kFrontend + "/state");
        if (!state || *state == "5" || *state == "6") break;  // the frontend is closing or vanished
      }
      continue;
    }
    // Copy every pending request out of the ring once, then one grant-copy batch for all of them.
    batch.clear();
    copies.clear();
    for (;;) {
      auto pending = back.unconsumed_requests();
      if (!pending) die("backend: frontend overflowed the ring", pending.error());
      if (*pending == 0 || batch.size() == back.size()) break;
      DemoRequest req = back.next_request();
      if (req.length > kXenPageSize) req.length = kXenPageSize;
      grant::CopySegment seg{};
      seg.source.foreign = {req.gref, 0, kGuest};
      seg.dest.virt = buffers.data() + batch.size() * kXenPageSize;
      seg.len = static_cast<std::uint16_t>(req.length);
      seg.flags = GNTCOPY_source_gref;
      copies.push_back(seg);
      batch.push_back(req);
    }
    if (int e = mapper->copy(copies)) die("backend: grant copy", e);
    for (std::size_t i = 0; i < batch.size(); ++i) {
      std::uint64_t sum = copies[i].status == GNTST_okay
                              ? checksum(buffers.data() + i * kXenPageSize, batch[i].length)
                              : 0;
      back.put_response(DemoResponse{batch[i].id, sum});
    }
    served += batch.size();
    ++batches;
    if (back.push_responses_and_check_notify()) port.notify();
  }
  port.reset();
  ring_map.reset();
  xs.write(kBackend + "/state", "6");
  std::printf("backend: served %" PRIu64 " requests in %" PRIu64 " batches, ring unmapped\n", served, batches);
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  std::setvbuf(stdout, nullptr, _IOLBF, 0);  // keep the two processes' lines in order through a pipe
  std::uint64_t total = argc > 1 ? std::strtoull(argv[1], nullptr, 10) : 200000;
  auto config = grant::PlatformConfig::from_env();
  std::fflush(stdout);
  pid_t child = ::fork();
  if (child < 0) die("fork", errno);
  if (child == 0) {
    config.self = kGuest;
    std::exit(run_guest(grant::Platform(config), total));
  }
  config.self = 0;
  int rc = run_backend(grant::Platform(config));
  int status = 0;
  ::waitpid(child, &status, 0);
  if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
    std::fprintf(stderr, "guest process failed\n");
    return 1;
  }
  return rc;
}
