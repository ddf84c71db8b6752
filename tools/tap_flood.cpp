// pvback-tap-flood: the TAP exit alone, without a guest, rings or grant copies: 64-byte frames
// written into a TAP device as fast as one thread can, through the same TapPort pvback-net's queues
// use (its batched writes), or with one write() per frame. bench/net_pps.sh runs it next to
// pvback-net so that pvback's TAP figure has the kernel's own ceiling for a TAP, measured in the
// same run on the same machine, beside it.
//
//   pvback-tap-flood --name tflood0 [--size 64] [--seconds 5] [--batch 64]   (--batch 0: write())
// prints: frames N seconds S pps P cpu C pps_per_core R   (cpu: cores this process used)
// Needs CAP_NET_ADMIN; run it in a network namespace of its own (ip netns exec): the device is up,
// and frames to 02:00:00:00:00:01 with a local experimental ethertype go nowhere.
#include <sys/resource.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include "netback/tap_exit.hpp"
#include "netback/vnet_header.hpp"

using namespace pvback::netback;

namespace {

double cpu_seconds() {
  rusage u{};
  ::getrusage(RUSAGE_SELF, &u);
  return static_cast<double>(u.ru_utime.tv_sec + u.ru_stime.tv_sec) +
         static_cast<double>(u.ru_utime.tv_usec + u.ru_stime.tv_usec) / 1e6;
}

int usage() {
  std::fprintf(stderr, "usage: pvback-tap-flood --name IFNAME [--size 64] [--seconds 5] [--batch 64]\n");
  return 2;
}

}  // namespace

int main(int argc, char** argv) {
  std::string name;
  unsigned long size = 64, batch = 64;
  double seconds = 5;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    if (i + 1 >= argc) return usage();
    const char* v = argv[++i];
    if (a == "--name") name = v;
    else if (a == "--size") size = std::strtoul(v, nullptr, 10);
    else if (a == "--seconds") seconds = std::strtod(v, nullptr);
    else if (a == "--batch") batch = std::strtoul(v, nullptr, 10);
    else return usage();
  }
  if (name.empty() || size < 14 || size > 1514 || batch > 256 || seconds <= 0) return usage();

  TapConfig config;
  config.name = name;
  config.bring_up = true;
  auto exit = TapExit::create(config);
  if (!exit) {
    std::fprintf(stderr, "pvback-tap-flood: cannot create %s: %s\n", name.c_str(), std::strerror(exit.error()));
    return 1;
  }
  if (int e = (*exit)->configure(1, GuestOffloads{}, 1500); e != 0) {
    std::fprintf(stderr, "pvback-tap-flood: configure: %s\n", std::strerror(e));
    return 1;
  }
  (*exit)->set_link(true);
  TapPort& port = (*exit)->tap_port(0);

  std::vector<std::byte> frame(size, std::byte{0});
  const std::uint8_t dst[6] = {0x02, 0, 0, 0, 0, 0x01};
  const std::uint8_t src[6] = {0x00, 0x16, 0x3e, 0, 0, 0x01};
  std::memcpy(frame.data(), dst, 6);
  std::memcpy(frame.data() + 6, src, 6);
  frame[12] = std::byte{0x88};
  frame[13] = std::byte{0xb5};
  // The reference without batching: header and frame in one buffer, one write() each.
  std::vector<std::byte> with_header(kVnetHdrLen + size, std::byte{0});
  std::memcpy(with_header.data() + kVnetHdrLen, frame.data(), size);

  std::vector<PacketBuffer> bufs(std::max(batch, 1ul));
  std::uint64_t frames = 0, failed = 0;
  using Clock = std::chrono::steady_clock;
  const double cpu0 = cpu_seconds();
  const auto start = Clock::now();
  const auto deadline = start + std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(seconds));
  while (Clock::now() < deadline) {
    if (batch == 0) {
      for (int k = 0; k < 64; ++k) {
        if (::write(port.rx_fd(), with_header.data(), with_header.size()) == static_cast<ssize_t>(with_header.size()))
          ++frames;
        else
          ++failed;
      }
      continue;
    }
    for (PacketBuffer& b : bufs) {
      b = PacketBuffer{};
      b.length = static_cast<std::uint32_t>(size);
    }
    if (port.alloc_tx(bufs) != 0) {
      std::fprintf(stderr, "pvback-tap-flood: alloc_tx failed\n");
      return 1;
    }
    for (PacketBuffer& b : bufs) std::memcpy(b.chunks[0].data, frame.data(), size);  // as netback's copy would
    const unsigned sent = port.transmit(bufs);
    frames += sent;
    failed += bufs.size() - sent;
  }
  const double secs = std::chrono::duration<double>(Clock::now() - start).count();
  const double cores = (cpu_seconds() - cpu0) / secs;
  const double pps = static_cast<double>(frames) / secs;
  std::printf("frames %llu failed %llu seconds %.3f pps %.0f cpu %.2f pps_per_core %.0f batched %d\n",
              static_cast<unsigned long long>(frames), static_cast<unsigned long long>(failed), secs, pps, cores,
              pps / std::max(cores, 1e-9), batch > 0 && port.batched_tx() ? 1 : 0);
  return failed == 0 || frames > 0 ? 0 : 1;
}
