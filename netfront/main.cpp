// pvback-netfront: a userspace Xen network frontend acting as a guest, for tests and benchmarks.
//
//   pvback-netfront COMMAND --frontend-path P [--run-dir DIR] [--domid N] [negotiation options] [command options]
//     guest  [--netns NS] [--tap NAME] [--address A/P] [--mtu N]   simulated guest on a TAP device
//     flood  [--size 64] [--count N] [--seconds S]                  guest → backend packets per second
//     info                                                          negotiate, print, disconnect
//
// Exit codes: 0 OK, 1 runtime failure, 2 usage or attach error.
#include <poll.h>
#include <signal.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cinttypes>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <thread>
#include <vector>

#include "base/log.hpp"
#include "netfront/guest.hpp"
#include "netfront/netfront.hpp"

namespace {

using namespace pvback;
using Clock = std::chrono::steady_clock;

std::atomic<bool> g_stop{false};
void on_signal(int) { g_stop = true; }

void usage(FILE* out) {
  std::fprintf(out,
               "usage: pvback-netfront COMMAND --frontend-path P [options]\n"
               "  platform: PVBACK_PLATFORM/PVBACK_SIM_DIR/PVBACK_DOMID, or --run-dir DIR (sim) and --domid N\n"
               "  --frontend-path P   /local/domain/<domid>/device/vif/<handle> (or --handle H)\n"
               "  --queues N          max queues (default: 8 for guest, 1 for flood and info)\n"
               "  --no-split          do not use split event channels\n"
               "  --no-sg | --no-gso | --no-csum-offload | --no-ipv6-csum\n"
               "  --no-ctrl-ring      do not set up the control ring\n"
               "  --multicast-control write request-multicast-control\n"
               "  --xdp [HEADROOM]    write xdp-headroom (default 256) when the backend offers it\n"
               "  --timeout-ms N      handshake timeout (default 10000)\n"
               "commands:\n"
               "  guest  [--netns NS] [--tap NAME (eth0)] [--address 10.99.0.2/24] [--mtu N]\n"
               "  flood  [--size 64] [--count N] [--seconds S]\n"
               "  info\n");
}

bool parse_num(const char* text, std::uint64_t max, std::uint64_t* out) {
  if (text == nullptr) return false;
  auto v = xenbus::parse_uint(text, max);
  if (!v) return false;
  *out = *v;
  return true;
}

void print_info(const netfront::NetFront& front) {
  const auto& n = front.negotiated();
  const auto& b = n.backend;
  std::printf("vif: %s\nfrontend: %s\nbackend: %s (domain %u)\nmac: %s\n", n.vif_name().c_str(),
              n.frontend_path.c_str(), n.backend_path.c_str(), n.backend_id, netfront::format_mac(n.mac).c_str());
  std::printf("backend offers: max-queues %u split %d ctrl-ring %d rx-copy %d sg %d gso-tcpv4 %d gso-tcpv6 %d "
              "ipv6-csum %d multicast %d dynamic-multicast %d xdp-headroom %d\n",
              b.max_queues, b.split_event_channels, b.ctrl_ring, b.rx_copy, b.sg, b.gso_tcpv4, b.gso_tcpv6,
              b.ipv6_csum_offload, b.multicast_control, b.dynamic_multicast_control, b.xdp_headroom);
  std::printf("queues: %u\nevent channels: %s\nctrl ring: %s\nmulticast control: %s\n", n.num_queues,
              n.split_event_channels ? "split" : "single", n.ctrl_ring ? "yes" : "no",
              n.multicast_control ? "requested" : "no");
  if (n.xdp_headroom_written) std::printf("xdp-headroom: %u\n", n.xdp_headroom);
  std::printf("tx: sg %s gso-tcpv4 %s gso-tcpv6 %s ipv6-csum %s; ring sizes tx %u rx %u\n", n.tx_sg ? "on" : "off",
              n.tx_gso_tcpv4 ? "on" : "off", n.tx_gso_tcpv6 ? "on" : "off", n.tx_ipv6_csum ? "on" : "off",
              n.tx_ring_size, n.rx_ring_size);
}

int run_flood(netfront::NetFront& front, std::uint64_t size, std::uint64_t count, double seconds) {
  const auto& n = front.negotiated();
  std::vector<std::byte> frame(size, std::byte{0});
  const std::uint8_t dst[6] = {0x02, 0, 0, 0, 0, 0x01};  // locally administered unicast
  std::memcpy(frame.data(), dst, 6);
  std::memcpy(frame.data() + 6, n.mac.data(), 6);
  frame[12] = std::byte{0x88};  // local experimental ethertype
  frame[13] = std::byte{0xb5};
  const unsigned nq = front.num_queues();
  std::uint64_t sent = 0;
  const auto start = Clock::now();
  const auto deadline = seconds > 0 ? start + std::chrono::duration_cast<Clock::duration>(
                                                  std::chrono::duration<double>(seconds))
                                    : Clock::time_point::max();
  while (!g_stop && (count == 0 || sent < count) && Clock::now() < deadline) {
    bool progress = false;
    for (unsigned i = 0; i < nq; ++i) {
      auto& q = front.queue(i);
      q.reap_tx();
      for (int b = 0; b < 64 && (count == 0 || sent < count); ++b) {
        std::memcpy(frame.data() + 14, &sent, std::min<std::size_t>(8, size > 14 ? size - 14 : 0));
        int e = q.send(frame, {}, false);
        if (e == EAGAIN) break;
        if (e != 0) {
          std::fprintf(stderr, "pvback-netfront: send: %s\n", std::strerror(e));
          return 1;
        }
        ++sent;
        progress = true;
      }
      q.flush_tx();
    }
    if (!progress) {
      for (unsigned i = 0; i < nq; ++i) front.queue(i).wait(std::chrono::milliseconds(nq == 1 ? 10 : 1));
      if (front.process_xenstore() == ENODEV) break;
    }
  }
  // Collect the remaining responses (bounded).
  const auto drain_deadline = Clock::now() + std::chrono::seconds(2);
  for (;;) {
    std::uint32_t inflight = 0;
    for (unsigned i = 0; i < nq; ++i) {
      front.queue(i).reap_tx();
      inflight += front.queue(i).tx_in_flight();
    }
    if (inflight == 0 || Clock::now() > drain_deadline) break;
    for (unsigned i = 0; i < nq; ++i) front.queue(i).wait(std::chrono::milliseconds(5));
  }
  const double secs = std::chrono::duration<double>(Clock::now() - start).count();
  netfront::QueueStats total;
  for (unsigned i = 0; i < nq; ++i) {
    const auto& s = front.queue(i).stats();
    total.tx_okay += s.tx_okay;
    total.tx_error += s.tx_error;
    total.tx_dropped += s.tx_dropped;
    total.tx_bad_response += s.tx_bad_response;
    total.tx_notifies += s.tx_notifies;
  }
  std::printf("frames %" PRIu64 " size %" PRIu64 " seconds %.3f pps %.0f okay %" PRIu64 " error %" PRIu64
              " dropped %" PRIu64 " bad %" PRIu64 " notifies %" PRIu64 "\n",
              sent, size, secs, secs > 0 ? sent / secs : 0.0, total.tx_okay, total.tx_error, total.tx_dropped,
              total.tx_bad_response, total.tx_notifies);
  return 0;
}

int run_guest(netfront::NetFront& front, const netfront::GuestConfig& cfg) {
  const unsigned nq = front.num_queues();
  auto fds = netfront::create_guest_tap(cfg, front.negotiated(), nq);
  if (!fds) return 1;
  std::atomic<bool> stop{false};
  std::vector<netfront::ForwardStats> stats(nq);
  std::vector<std::thread> threads;
  for (unsigned i = 0; i < nq; ++i)
    threads.emplace_back([&, i] { netfront::forward_queue(front.queue(i), (*fds)[i], front.negotiated(), stop, stats[i]); });
  int rc = 0;
  while (!g_stop) {
    pollfd p{front.xenstore_fd(), POLLIN, 0};
    ::poll(&p, 1, 200);
    if (front.process_xenstore() == ENODEV) {
      PVBACK_LOG(Notice, "netfront %s: backend closed", front.negotiated().vif_name().c_str());
      break;
    }
    bool broken = false;
    for (unsigned i = 0; i < nq; ++i) broken |= front.queue(i).error() != 0;
    if (broken) {
      rc = 1;
      break;
    }
  }
  stop = true;
  for (auto& t : threads) t.join();
  for (int fd : *fds) ::close(fd);
  for (unsigned i = 0; i < nq; ++i)
    PVBACK_LOG(Info, "netfront %s q%u: to backend %" PRIu64 ", from backend %" PRIu64 ", dropped %" PRIu64
               ", tap errors %" PRIu64,
               front.negotiated().vif_name().c_str(), i, stats[i].to_backend, stats[i].from_backend, stats[i].dropped,
               stats[i].tap_errors);
  return rc;
}

}  // namespace

int main(int argc, char** argv) {
  log::set_program("pvback-netfront");
  if (argc < 2 || std::strcmp(argv[1], "--help") == 0 || std::strcmp(argv[1], "-h") == 0) {
    usage(argc < 2 ? stderr : stdout);
    return argc < 2 ? 2 : 0;
  }
  const std::string command = argv[1];
  if (command != "guest" && command != "flood" && command != "info") {
    usage(stderr);
    return 2;
  }
  auto config = grant::PlatformConfig::from_env();
  netfront::Options options;
  options.max_queues = command == "guest" ? 8 : 1;
  netfront::GuestConfig guest;
  std::string frontend_path;
  std::uint64_t handle = 0, size = 64, count = 0, seconds = 0, num = 0;
  bool have_handle = false;
  for (int i = 2; i < argc; ++i) {
    const std::string arg = argv[i];
    const char* value = i + 1 < argc ? argv[i + 1] : nullptr;
    auto need = [&](std::uint64_t max, std::uint64_t* out) {
      if (!parse_num(value, max, out)) {
        std::fprintf(stderr, "pvback-netfront: %s needs a number\n", arg.c_str());
        std::exit(2);
      }
      ++i;
    };
    auto need_str = [&]() -> std::string {
      if (value == nullptr) {
        std::fprintf(stderr, "pvback-netfront: %s needs a value\n", arg.c_str());
        std::exit(2);
      }
      ++i;
      return value;
    };
    if (arg == "--frontend-path") frontend_path = need_str();
    else if (arg == "--handle") need(UINT32_MAX, &handle), have_handle = true;
    else if (arg == "--run-dir") config.kind = grant::PlatformConfig::Kind::Sim, config.sim_dir = need_str();
    else if (arg == "--domid") need(0x7fef, &num), config.self = static_cast<DomId>(num);
    else if (arg == "--queues") need(64, &num), options.max_queues = static_cast<unsigned>(std::max<std::uint64_t>(num, 1));
    else if (arg == "--no-split") options.split_event_channels = false;
    else if (arg == "--no-sg") options.sg = false;
    else if (arg == "--no-gso") options.gso_tcpv4 = options.gso_tcpv6 = false;
    else if (arg == "--no-csum-offload") options.csum_offload = false;
    else if (arg == "--no-ipv6-csum") options.ipv6_csum_offload = false;
    else if (arg == "--no-ctrl-ring") options.ctrl_ring = false;
    else if (arg == "--multicast-control") options.multicast_control = true;
    else if (arg == "--xdp") {
      options.xdp = true;
      if (value != nullptr && value[0] != '-') need(0xffff, &num), options.xdp_headroom = static_cast<std::uint16_t>(num);
    } else if (arg == "--timeout-ms") need(UINT32_MAX, &num), options.connect_timeout = std::chrono::milliseconds(num);
    else if (arg == "--netns") guest.netns = need_str();
    else if (arg == "--tap") guest.tap = need_str();
    else if (arg == "--address") guest.address = need_str();
    else if (arg == "--mtu") need(65535, &num), guest.mtu = static_cast<unsigned>(num);
    else if (arg == "--size") need(65535, &size);
    else if (arg == "--count") need(UINT64_MAX, &count);
    else if (arg == "--seconds") need(UINT32_MAX, &seconds);
    else {
      std::fprintf(stderr, "pvback-netfront: unknown option %s\n", arg.c_str());
      usage(stderr);
      return 2;
    }
  }
  if (config.kind == grant::PlatformConfig::Kind::Sim && config.sim_dir.empty()) {
    std::fprintf(stderr, "pvback-netfront: the simulated platform needs --run-dir or PVBACK_SIM_DIR\n");
    return 2;
  }
  if (frontend_path.empty()) {
    if (!have_handle) {
      std::fprintf(stderr, "pvback-netfront: --frontend-path (or --handle) is required\n");
      return 2;
    }
    frontend_path = netfront::NetFront::frontend_path_for(config.self, static_cast<unsigned>(handle));
  }
  // The gsos are negotiated per what we accept on RX too: --no-csum-offload also turns off what
  // needs partial checksums.
  if (!options.csum_offload) options.gso_tcpv4 = options.gso_tcpv6 = false;
  if (size < 14) size = 14;
  if (command == "flood" && count == 0 && seconds == 0) count = 1000000;

  struct sigaction sa{};
  sa.sa_handler = on_signal;
  sigaction(SIGINT, &sa, nullptr);
  sigaction(SIGTERM, &sa, nullptr);
  signal(SIGPIPE, SIG_IGN);

  grant::Platform platform(config);
  auto front = netfront::NetFront::attach(platform, frontend_path, options);
  if (!front) {
    std::fprintf(stderr, "pvback-netfront: attach %s: %s\n", frontend_path.c_str(), std::strerror(front.error()));
    return 2;
  }
  int rc = 0;
  if (command == "info") print_info(**front);
  else if (command == "flood") rc = run_flood(**front, size, count, static_cast<double>(seconds));
  else rc = run_guest(**front, guest);
  if ((*front)->detach() != 0 && rc == 0) rc = 1;
  return rc;
}
