// pvback-blkfront: a userspace Xen block frontend acting as a guest, for tests and benchmarks.
//
//   pvback-blkfront [--run-dir DIR --domid N] --devid D [negotiation options] COMMAND [command options]
//
// Exit codes: 0 OK, 1 verification failure (or I/O error), 2 usage or attach error.
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <csignal>
#include <cinttypes>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <random>
#include <string>
#include <vector>

#include "base/log.hpp"
#include "blkfront/blkfront.hpp"

namespace {

using namespace pvback;
using Clock = std::chrono::steady_clock;
// Set by SIGTERM or SIGINT: a timed run (randread, seqwrite, ...) stops as at its deadline.
std::atomic<bool> g_stop{false};

void usage(FILE* out) {
  std::fprintf(out,
               "usage: pvback-blkfront [--run-dir DIR] [--domid N] --devid D [options] COMMAND [args]\n"
               "  platform: PVBACK_PLATFORM/PVBACK_SIM_DIR/PVBACK_DOMID, or --run-dir (sim) and --domid\n"
               "  --queues N          max queues (default 4)\n"
               "  --ring-order N      max ring page order (default 4)\n"
               "  --indirect N        max indirect segments, 0 = off (default 32)\n"
               "  --no-persistent     do not offer feature-persistent\n"
               "  --protocol P        native|x86_32-abi|x86_64-abi|none (default native)\n"
               "  --pool-pages N      granted data pages per queue (default auto)\n"
               "  --timeout-ms N      handshake timeout (default 10000)\n"
               "commands:\n"
               "  info\n"
               "  write-verify --seed S [--bytes N] [--bs B] [--offset BYTES] [--iodepth D]\n"
               "  verify       --seed S [--bytes N] [--bs B] [--offset BYTES] [--iodepth D]\n"
               "  randread     [--bs 4096] [--iodepth 32] [--seconds 5] [--bytes N]\n"
               "  randwrite    [--bs 4096] [--iodepth 32] [--seconds 5] [--bytes N]\n"
               "  seqread|seqwrite [--bs 131072] [--iodepth 8] [--seconds 5] [--bytes N]\n"
               "  flush | discard --sector S --sectors N [--secure]\n"
               "  storm        [--seconds 5]   a hostile guest: notifies queue 0's event channel in a tight\n"
               "                               loop without any request (XSA-332's class; bench/blk_event_storm.sh)\n");
}

bool parse_u64(const char* text, std::uint64_t* out) {
  if (text == nullptr || *text == '\0') return false;
  char* end = nullptr;
  errno = 0;
  unsigned long long v = std::strtoull(text, &end, 0);
  if (errno != 0) return false;
  std::uint64_t mult = 1;
  if (*end == 'k' || *end == 'K') mult = 1ull << 10, ++end;
  else if (*end == 'm' || *end == 'M') mult = 1ull << 20, ++end;
  else if (*end == 'g' || *end == 'G') mult = 1ull << 30, ++end;
  if (*end != '\0') return false;
  *out = v * mult;
  return true;
}

std::uint64_t splitmix(std::uint64_t x) {
  x += 0x9e3779b97f4a7c15ull;
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
  return x ^ (x >> 31);
}

// The pattern: every 8-byte word of the disk is a function of the seed and its offset.
void fill_pattern(std::byte* buf, std::uint64_t disk_offset, std::size_t len, std::uint64_t seed) {
  for (std::size_t i = 0; i < len; i += 8) {
    std::uint64_t w = splitmix(seed ^ ((disk_offset + i) / 8 * 0x100000001b3ull));
    std::memcpy(buf + i, &w, 8);
  }
}

struct Op {
  std::uint64_t sector = 0;
  std::uint32_t len = 0;
  bool write = false;
};

struct Slot {
  std::vector<std::byte> buf;
  Op op;
  unsigned queue = 0;
  bool busy = false;
};

// Runs ops from `next` with up to `iodepth` in flight across all queues. `prepare` fills write
// buffers; `done` checks a completed op (returns false to count a failure).
struct RunResult {
  std::uint64_t ops = 0;
  std::uint64_t bytes = 0;
  std::uint64_t errors = 0;
  double seconds = 0;
};

RunResult run_io(blkfront::BlkFront& front, unsigned iodepth, std::uint32_t max_len,
                 const std::function<bool(Op&)>& next, const std::function<void(Slot&)>& prepare,
                 const std::function<bool(Slot&, int)>& done) {
  std::vector<Slot> slots(iodepth);
  for (auto& s : slots) s.buf.resize(max_len);
  std::vector<std::uint32_t> free_slots;
  for (std::uint32_t i = iodepth; i-- > 0;) free_slots.push_back(i);
  const unsigned nq = front.num_queues();
  std::vector<bool> dirty(nq, false);
  std::vector<blkfront::Completion> completions(256);
  RunResult res;
  bool have_op = false, exhausted = false;
  Op pending;
  unsigned rr = 0;
  std::uint32_t inflight = 0;
  std::uint64_t iterations = 0;
  const auto start = Clock::now();
  for (;;) {
    // Submit as much as fits.
    while (!free_slots.empty()) {
      if (!have_op) {
        if (exhausted || !next(pending)) {
          exhausted = true;
          break;
        }
        have_op = true;
      }
      std::uint32_t si = free_slots.back();
      Slot& s = slots[si];
      s.op = pending;
      s.queue = rr % nq;
      if (s.op.write) prepare(s);
      auto& q = front.queue(s.queue);
      std::span<std::byte> data(s.buf.data(), s.op.len);
      int e = s.op.write ? q.submit_write(s.op.sector, data, si) : q.submit_read(s.op.sector, data, si);
      if (e == EAGAIN) {
        // try the other queues once, then wait for completions
        bool ok = false;
        for (unsigned k = 1; k < nq && !ok; ++k) {
          s.queue = (rr + k) % nq;
          auto& q2 = front.queue(s.queue);
          e = s.op.write ? q2.submit_write(s.op.sector, data, si) : q2.submit_read(s.op.sector, data, si);
          ok = e == 0;
        }
        if (!ok && e == EAGAIN) break;
      }
      if (e != 0) {
        std::fprintf(stderr, "pvback-blkfront: submit sector %" PRIu64 " len %u: %s\n", s.op.sector, s.op.len,
                     std::strerror(e));
        ++res.errors;
        have_op = false;
        exhausted = true;
        break;
      }
      have_op = false;
      ++rr;
      s.busy = true;
      free_slots.pop_back();
      dirty[s.queue] = true;
      ++inflight;
    }
    for (unsigned i = 0; i < nq; ++i)
      if (dirty[i]) {
        front.queue(i).kick();
        dirty[i] = false;
      }
    if (inflight == 0 && (exhausted || !have_op)) break;
    // A busy loop may never wait: look at the backend's state now and then (hot unplug).
    if ((++iterations & 63) == 0 && front.process_xenstore() == ENODEV) {
      std::fprintf(stderr, "pvback-blkfront: device went away\n");
      ++res.errors;
      break;
    }
    // Reap.
    std::uint64_t reaped = 0;
    for (unsigned i = 0; i < nq; ++i) {
      std::size_t n;
      while ((n = front.queue(i).poll(completions)) > 0) {
        for (std::size_t c = 0; c < n; ++c) {
          Slot& s = slots[completions[c].tag];
          if (completions[c].error != 0) {
            std::fprintf(stderr, "pvback-blkfront: %s sector %" PRIu64 " len %u: %s\n", s.op.write ? "write" : "read",
                         s.op.sector, s.op.len, std::strerror(completions[c].error));
            ++res.errors;
          } else if (!done(s, 0)) {
            ++res.errors;
          }
          res.ops++;
          res.bytes += s.op.len;
          s.busy = false;
          free_slots.push_back(static_cast<std::uint32_t>(completions[c].tag));
          --inflight;
          ++reaped;
        }
      }
    }
    if (reaped == 0) {
      int e = front.wait_any(std::chrono::milliseconds(1000));
      if (e == ENODEV) {
        std::fprintf(stderr, "pvback-blkfront: device went away\n");
        ++res.errors;
        break;
      }
    }
    if (res.errors > 0 && exhausted && inflight == 0) break;
  }
  res.seconds = std::chrono::duration<double>(Clock::now() - start).count();
  return res;
}

struct Args {
  std::uint64_t seed = 1;
  bool seed_set = false;
  std::uint64_t bytes = 0;
  std::uint64_t bs = 0;
  std::uint64_t offset = 0;
  std::uint64_t iodepth = 0;
  std::uint64_t seconds = 5;
  std::uint64_t sector = 0;
  std::uint64_t sectors = 0;
  bool secure = false;
};

void print_info(const blkfront::BlkFront& front) {
  const auto& n = front.negotiated();
  std::printf("frontend: %s\nbackend: %s (domain %u)\n", n.frontend_path.c_str(), n.backend_path.c_str(),
              n.backend_id);
  std::printf("protocol: %s\nqueues: %u (backend max %u)\nring-page-order: %u (backend max %u), %u requests/ring\n",
              std::string(blkfront::protocol_name(n.protocol)).c_str(), n.num_queues, n.backend_max_queues,
              n.ring_page_order, n.backend_max_ring_page_order, n.ring_size);
  std::printf("segments-per-request: %u (%s; backend max indirect %u)\npersistent: %s (backend %s)\npool-pages: %u per queue\n",
              n.segments_per_request, n.indirect ? "indirect" : "direct", n.backend_max_indirect_segments,
              n.persistent ? "yes" : "no", n.backend_persistent ? "yes" : "no", n.pool_pages);
  std::printf("sectors: %" PRIu64 " (%" PRIu64 " bytes)\nsector-size: %u\nphysical-sector-size: %u\ninfo: %u%s%s%s\n",
              n.sectors, n.size_bytes(), n.sector_size, n.physical_sector_size, n.info,
              n.readonly() ? " readonly" : "", n.info & blkif::kVdiskCdrom ? " cdrom" : "",
              n.info & blkif::kVdiskRemovable ? " removable" : "");
  std::printf("flush: %d\nbarrier: %d\ndiscard: %d", n.flush, n.barrier, n.discard);
  if (n.discard)
    std::printf(" (granularity %u, alignment %u, secure %d)", n.discard_granularity, n.discard_alignment,
                n.discard_secure);
  std::printf("\n");
}

// Cuts [offset, offset+bytes) into consecutive chunks of random aligned sizes in [align, bs],
// then shuffles them: random offsets, partial pages and multi-page requests, full coverage.
std::vector<Op> random_partition(std::uint64_t offset, std::uint64_t bytes, std::uint32_t bs, std::uint32_t align,
                                 bool write, std::mt19937_64& rng) {
  std::vector<Op> ops;
  std::uint64_t pos = offset;
  const std::uint64_t end = offset + bytes;
  while (pos < end) {
    std::uint64_t len;
    switch (rng() % 4) {
      case 0: len = align; break;                                   // one sector (partial page)
      case 1: len = (1 + rng() % 8) * align; break;                 // within a page or two
      default: len = (1 + rng() % (bs / align)) * align; break;     // up to bs, multi-page
    }
    len = std::min(len, end - pos);
    ops.push_back(Op{pos / blkif::kSectorSize, static_cast<std::uint32_t>(len), write});
    pos += len;
  }
  std::shuffle(ops.begin(), ops.end(), rng);
  return ops;
}

int cmd_verify(blkfront::BlkFront& front, const Args& a, bool do_write) {
  const auto& n = front.negotiated();
  const std::uint32_t align = std::max<std::uint32_t>(n.sector_size, blkif::kSectorSize);
  std::uint64_t bytes = a.bytes ? a.bytes : std::min<std::uint64_t>(n.size_bytes() - a.offset, 64ull << 20);
  bytes -= bytes % align;
  const std::uint32_t bs = static_cast<std::uint32_t>(std::max<std::uint64_t>(a.bs ? a.bs : 256 * 1024, align));
  if (a.offset % align != 0 || a.offset + bytes > n.size_bytes() || bytes == 0) {
    std::fprintf(stderr, "pvback-blkfront: range outside the disk or misaligned\n");
    return 2;
  }
  const unsigned iodepth = static_cast<unsigned>(a.iodepth ? a.iodepth : 16);
  std::mt19937_64 rng(a.seed * 7919 + 17);
  std::uint64_t mismatches = 0;
  auto check = [&](Slot& s, int) {
    std::vector<std::byte> expect(s.op.len);
    fill_pattern(expect.data(), s.op.sector * blkif::kSectorSize, s.op.len, a.seed);
    if (std::memcmp(expect.data(), s.buf.data(), s.op.len) != 0) {
      for (std::uint32_t i = 0; i < s.op.len; ++i)
        if (expect[i] != s.buf[i]) {
          if (mismatches < 10)
            std::fprintf(stderr, "pvback-blkfront: mismatch at byte %" PRIu64 " (read of sector %" PRIu64
                                 " len %u)\n",
                         s.op.sector * blkif::kSectorSize + i, s.op.sector, s.op.len);
          break;
        }
      ++mismatches;
      return false;
    }
    return true;
  };
  auto prepare = [&](Slot& s) { fill_pattern(s.buf.data(), s.op.sector * blkif::kSectorSize, s.op.len, a.seed); };
  if (do_write) {
    auto ops = random_partition(a.offset, bytes, bs, align, true, rng);
    std::size_t i = 0;
    auto r = run_io(front, iodepth, bs, [&](Op& op) { return i < ops.size() ? (op = ops[i++], true) : false; },
                    prepare, [](Slot&, int) { return true; });
    std::printf("write: %" PRIu64 " requests, %" PRIu64 " bytes in %.3f s, %.1f MB/s\n", r.ops, r.bytes, r.seconds,
                static_cast<double>(r.bytes) / 1e6 / r.seconds);
    if (r.errors) return 1;
    if (n.flush || n.barrier) {
      if (int e = front.flush()) {
        std::fprintf(stderr, "pvback-blkfront: flush: %s\n", std::strerror(e));
        return 1;
      }
    }
  }
  auto ops = random_partition(a.offset, bytes, bs, align, false, rng);
  std::size_t i = 0;
  auto r = run_io(front, iodepth, bs, [&](Op& op) { return i < ops.size() ? (op = ops[i++], true) : false; }, prepare,
                  check);
  std::printf("read: %" PRIu64 " requests, %" PRIu64 " bytes in %.3f s, %.1f MB/s\n", r.ops, r.bytes, r.seconds,
              static_cast<double>(r.bytes) / 1e6 / r.seconds);
  if (mismatches || r.errors) {
    std::printf("verify: FAILED (%" PRIu64 " mismatching requests, %" PRIu64 " errors)\n", mismatches,
                r.errors - mismatches);
    return 1;
  }
  std::printf("verify: OK (%" PRIu64 " bytes, seed %" PRIu64 ")\n", bytes, a.seed);
  return 0;
}

int cmd_bench(blkfront::BlkFront& front, const Args& a, const std::string& mode) {
  const auto& n = front.negotiated();
  const bool seq = mode.starts_with("seq");
  const bool write = mode.ends_with("write");
  const std::uint32_t align = std::max<std::uint32_t>(n.sector_size, blkif::kSectorSize);
  std::uint32_t bs = static_cast<std::uint32_t>(a.bs ? a.bs : seq ? 131072 : 4096);
  bs = std::max(bs - bs % align, align);
  const unsigned iodepth = static_cast<unsigned>(a.iodepth ? a.iodepth : seq ? 8 : 32);
  std::uint64_t span = a.bytes ? std::min(a.bytes, n.size_bytes()) : n.size_bytes();
  if (span < bs) {
    std::fprintf(stderr, "pvback-blkfront: disk smaller than one block\n");
    return 2;
  }
  const std::uint64_t blocks = span / bs;
  std::mt19937_64 rng(a.seed);
  const auto deadline = Clock::now() + std::chrono::seconds(a.seconds);
  std::uint64_t seq_block = 0, count = 0;
  auto next = [&](Op& op) {
    if ((count++ & 63) == 0 && (Clock::now() >= deadline || g_stop.load(std::memory_order_relaxed))) return false;
    std::uint64_t b = seq ? seq_block++ % blocks : rng() % blocks;
    op = Op{b * bs / blkif::kSectorSize, bs, write};
    return true;
  };
  auto r = run_io(front, iodepth, bs, next, [](Slot&) {}, [](Slot&, int) { return true; });
  std::printf("%s: iops=%.0f mbps=%.1f ops=%" PRIu64 " bytes=%" PRIu64 " seconds=%.3f bs=%u iodepth=%u queues=%u errors=%" PRIu64 "\n",
              mode.c_str(), static_cast<double>(r.ops) / r.seconds, static_cast<double>(r.bytes) / 1e6 / r.seconds,
              r.ops, r.bytes, r.seconds, bs, iodepth, front.num_queues(), r.errors);
  return r.errors ? 1 : 0;
}

}  // namespace

int main(int argc, char** argv) {
  log::set_program("pvback-blkfront");
  // SIGTERM/SIGINT end a timed run early as its deadline would: the I/O in flight completes, the
  // figures are printed and the frontend closes its device (benchmarks stop their guests so).
  struct sigaction sa {};
  sa.sa_handler = [](int) { g_stop.store(true, std::memory_order_relaxed); };
  ::sigaction(SIGTERM, &sa, nullptr);
  ::sigaction(SIGINT, &sa, nullptr);
  std::setvbuf(stdout, nullptr, _IOLBF, 0);
  auto config = grant::PlatformConfig::from_env();
  blkfront::Options options;
  std::uint64_t devid = 0;
  bool devid_set = false;
  std::string command;
  Args a;
  for (int i = 1; i < argc; ++i) {
    const std::string arg = argv[i];
    const char* value = i + 1 < argc ? argv[i + 1] : nullptr;
    std::uint64_t v = 0;
    auto num = [&](std::uint64_t max) -> std::uint64_t {
      if (!parse_u64(value, &v) || v > max) {
        std::fprintf(stderr, "pvback-blkfront: %s needs a number up to %" PRIu64 "\n", arg.c_str(), max);
        std::exit(2);
      }
      ++i;
      return v;
    };
    if (arg == "-h" || arg == "--help") {
      usage(stdout);
      return 0;
    } else if (arg == "--run-dir" && value) {
      config.kind = grant::PlatformConfig::Kind::Sim;
      config.sim_dir = value;
      ++i;
    } else if (arg == "--domid") {
      config.self = static_cast<DomId>(num(0x7fef));
    } else if (arg == "--devid") {
      devid = num(UINT32_MAX);
      devid_set = true;
    } else if (arg == "--queues") {
      options.max_queues = static_cast<unsigned>(num(64));
    } else if (arg == "--ring-order") {
      options.max_ring_page_order = static_cast<unsigned>(num(8));
    } else if (arg == "--indirect") {
      options.max_indirect_segments = static_cast<unsigned>(num(blkif::kMaxIndirectSegments));
    } else if (arg == "--no-persistent") {
      options.persistent = false;
    } else if (arg == "--protocol" && value) {
      auto p = blkfront::parse_protocol(value);
      if (!p) {
        std::fprintf(stderr, "pvback-blkfront: unknown protocol %s\n", value);
        return 2;
      }
      options.protocol = *p;
      ++i;
    } else if (arg == "--pool-pages") {
      options.pool_pages = static_cast<unsigned>(num(16384));
    } else if (arg == "--timeout-ms") {
      options.connect_timeout = std::chrono::milliseconds(num(3600000));
    } else if (arg == "--seed") {
      a.seed = num(UINT64_MAX);
      a.seed_set = true;
    } else if (arg == "--bytes") {
      a.bytes = num(UINT64_MAX);
    } else if (arg == "--bs") {
      a.bs = num(64ull << 20);
    } else if (arg == "--offset") {
      a.offset = num(UINT64_MAX);
    } else if (arg == "--iodepth") {
      a.iodepth = num(4096);
    } else if (arg == "--seconds") {
      a.seconds = num(86400);
    } else if (arg == "--sector") {
      a.sector = num(UINT64_MAX);
    } else if (arg == "--sectors") {
      a.sectors = num(UINT64_MAX);
    } else if (arg == "--secure") {
      a.secure = true;
    } else if (command.empty() && !arg.starts_with("-")) {
      command = arg;
    } else {
      std::fprintf(stderr, "pvback-blkfront: unexpected argument %s\n", arg.c_str());
      usage(stderr);
      return 2;
    }
  }
  static const char* const kCommands[] = {"info", "write-verify", "verify", "randread", "randwrite",
                                          "seqread", "seqwrite", "flush", "discard", "storm"};
  if (!devid_set || std::find(std::begin(kCommands), std::end(kCommands), command) == std::end(kCommands)) {
    usage(stderr);
    return 2;
  }
  if ((command == "write-verify" || command == "verify") && !a.seed_set) {
    std::fprintf(stderr, "pvback-blkfront: %s needs --seed\n", command.c_str());
    return 2;
  }
  if (config.kind == grant::PlatformConfig::Kind::Sim && config.sim_dir.empty()) {
    std::fprintf(stderr, "pvback-blkfront: the simulated platform needs --run-dir or PVBACK_SIM_DIR\n");
    return 2;
  }

  grant::Platform platform(config);
  const std::string path = blkfront::BlkFront::frontend_path_for(config.self, static_cast<unsigned>(devid));
  auto front = blkfront::BlkFront::attach(platform, path, options);
  if (!front) {
    std::fprintf(stderr, "pvback-blkfront: attach %s: %s\n", path.c_str(), std::strerror(front.error()));
    return 2;
  }
  int rc = 0;
  if (command == "info") {
    print_info(**front);
  } else if (command == "write-verify" || command == "verify") {
    rc = cmd_verify(**front, a, command == "write-verify");
  } else if (command == "flush") {
    int e = (*front)->flush();
    std::printf("flush: %s\n", e ? std::strerror(e) : "OK");
    rc = e ? 1 : 0;
  } else if (command == "storm") {
    auto& q = (*front)->queue(0);
    const auto until = std::chrono::steady_clock::now() + std::chrono::duration<double>(a.seconds ? a.seconds : 5);
    std::uint64_t sent = 0;
    while (std::chrono::steady_clock::now() < until) {
      for (int i = 0; i < 256; ++i) q.notify();
      sent += 256;
    }
    std::printf("storm: %llu notifications\n", static_cast<unsigned long long>(sent));
  } else if (command == "discard") {
    int e = (*front)->discard(a.sector, a.sectors, a.secure);
    std::printf("discard: %s\n", e ? std::strerror(e) : "OK");
    rc = e ? 1 : 0;
  } else {
    rc = cmd_bench(**front, a, command);
  }
  (*front)->detach();
  return rc;
}
