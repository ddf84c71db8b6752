#include "netback/dpdk_exit.hpp"

#include <pthread.h>
#include <rte_bus.h>
#include <rte_dev.h>
#include <rte_eal.h>
#include <rte_errno.h>
#include <rte_ethdev.h>
#include <rte_lcore.h>
#include <rte_mbuf.h>
#include <rte_mempool.h>
#include <sched.h>
#include <unistd.h>

#include <algorithm>
#include <cstdlib>
#include <atomic>
#include <cerrno>
#include <cstring>
#include <mutex>
#include <string_view>

#include "base/log.hpp"
#include "netback/headers.hpp"
#include "ring/netif.hpp"

namespace pvback::netback {
namespace {

std::mutex eal_mutex;
bool eal_done = false;
int eal_result = 0;
std::vector<std::string> eal_argv_storage;  // rte_eal_init may keep pointers into argv
std::vector<char*> eal_argv;

// A non-EAL thread that uses a port registers as an lcore once (mempool caches are per lcore)
// and unregisters when it exits.
struct LcoreRegistration {
  bool registered = false;
  LcoreRegistration() {
    if (rte_thread_register() == 0) {
      registered = true;
    } else {
      PVBACK_LOG_RATELIMITED(Warning, "dpdk: rte_thread_register: %s (the port works without the mempool cache)",
                             rte_strerror(rte_errno));
    }
  }
  ~LcoreRegistration() {
    if (registered) rte_thread_unregister();
  }
  LcoreRegistration(const LcoreRegistration&) = delete;
  LcoreRegistration& operator=(const LcoreRegistration&) = delete;
};

inline void ensure_lcore() {
  if (rte_lcore_id() != LCORE_ID_ANY) [[likely]]
    return;
  thread_local LcoreRegistration registration;  // constructed once per thread
}

std::atomic<unsigned> pool_counter{0};

// Where the L3 header starts, from the Ethernet header (VLAN tags skipped). 0 if unknown.
std::uint16_t l2_length(const rte_mbuf* m) {
  const auto* p = rte_pktmbuf_mtod(m, const std::uint8_t*);
  std::uint16_t off = 12;
  while (off + 2u <= m->data_len) {
    const std::uint16_t type = static_cast<std::uint16_t>(p[off] << 8 | p[off + 1]);
    if (type == 0x8100 || type == 0x88a8) {
      off += 4;
      continue;
    }
    return static_cast<std::uint16_t>(off + 2);
  }
  return 0;
}

}  // namespace

std::vector<std::string> default_eal_args() {
  // lcore 0 on the first CPU this thread may run on (-l 0 fails if CPU 0 is not allowed).
  cpu_set_t set;
  CPU_ZERO(&set);
  int cpu = 0;
  if (pthread_getaffinity_np(pthread_self(), sizeof set, &set) == 0)
    for (int c = 0; c < CPU_SETSIZE; ++c)
      if (CPU_ISSET(c, &set)) {
        cpu = c;
        break;
      }
  return {"pvback",
          "--no-huge",
          "-m",
          "256",
          "--no-shconf",
          "--no-pci",
          "--no-telemetry",
          "--lcores=0@" + std::to_string(cpu),
          "--log-level=warning",
          "--file-prefix=pvback-" + std::to_string(::getpid())};
}

int init_eal(const std::vector<std::string>& extra) {
  std::lock_guard lock(eal_mutex);
  if (eal_done) return eal_result;
  eal_done = true;
  eal_argv_storage = default_eal_args();
  eal_argv_storage.insert(eal_argv_storage.end(), extra.begin(), extra.end());
  for (std::string& a : eal_argv_storage) eal_argv.push_back(a.data());
  eal_argv.push_back(nullptr);

  // rte_eal_init pins the calling thread to the main lcore's CPUs; this thread is the daemon's
  // main thread, whose affinity (and its future threads') must stay what the admin set.
  cpu_set_t saved;
  const bool have_saved = pthread_getaffinity_np(pthread_self(), sizeof saved, &saved) == 0;
  const int rc = rte_eal_init(static_cast<int>(eal_argv.size() - 1), eal_argv.data());
  if (have_saved) pthread_setaffinity_np(pthread_self(), sizeof saved, &saved);
  if (rc < 0) {
    eal_result = rte_errno != 0 ? rte_errno : EINVAL;
    PVBACK_LOG(Error, "dpdk: rte_eal_init: %s", rte_strerror(eal_result));
    return eal_result;
  }
  // With --no-shconf EAL still makes an (empty) runtime directory, /var/run/dpdk/<prefix>:
  // remove it when the process exits rather than leave one per daemon behind.
  static std::string runtime_dir;
  runtime_dir = rte_eal_get_runtime_dir();
  std::atexit([] { ::rmdir(runtime_dir.c_str()); });
  eal_result = 0;
  return 0;
}

// ---- DpdkPort ----

int DpdkPort::alloc_tx(std::span<PacketBuffer> bufs) {
  ensure_lcore();
  const std::uint32_t room = exit_.data_room_;
  for (std::size_t i = 0; i < bufs.size(); ++i) {
    PacketBuffer& b = bufs[i];
    const unsigned nseg = b.length == 0 ? 1 : (b.length + room - 1) / room;
    rte_mbuf* segs[kMaxChunks];
    if (b.length > kMaxPacketBytes || nseg > kMaxChunks ||
        rte_pktmbuf_alloc_bulk(exit_.pool_, segs, nseg) != 0) {
      for (std::size_t j = 0; j < i; ++j) {
        rte_pktmbuf_free(static_cast<rte_mbuf*>(bufs[j].handle));
        bufs[j].handle = nullptr;
        bufs[j].nr_chunks = 0;
      }
      return ENOBUFS;
    }
    std::uint32_t left = b.length;
    for (unsigned s = 0; s < nseg; ++s) {
      rte_mbuf* m = segs[s];
      const std::uint32_t len = std::min(left, room);
      m->data_len = static_cast<std::uint16_t>(len);
      if (s + 1 < nseg) m->next = segs[s + 1];
      b.chunks[s] = Chunk{rte_pktmbuf_mtod(m, std::byte*), len};
      left -= len;
    }
    segs[0]->nb_segs = static_cast<std::uint16_t>(nseg);
    segs[0]->pkt_len = b.length;
    b.nr_chunks = nseg;
    b.handle = segs[0];
  }
  return 0;
}

// Translates the metadata into mbuf offload flags. false if the device cannot do what the packet
// needs (the queue should not have let it through: capabilities() said so) or the headers are odd.
bool DpdkPort::set_tx_offloads(PacketBuffer& b, rte_mbuf* m) {
  m->ol_flags = 0;
  const PacketMeta& meta = b.meta;
  if (!meta.csum_partial) return meta.gso_type == netif::kGsoTypeNone;
  const ExitCapabilities& caps = exit_.caps_;
  if (!caps.tx_csum) return false;
  const std::uint16_t l2 = meta.l2_len != 0 ? meta.l2_len : l2_length(m);
  if (l2 == 0 || meta.csum_start <= l2 || l2 >= m->data_len) return false;
  const std::uint8_t version = rte_pktmbuf_mtod(m, const std::uint8_t*)[l2] >> 4;
  const std::uint16_t l3 = meta.l3_len != 0 ? meta.l3_len : static_cast<std::uint16_t>(meta.csum_start - l2);
  std::uint64_t flags = 0;
  if (version == 4) flags |= RTE_MBUF_F_TX_IPV4;
  else if (version == 6) flags |= RTE_MBUF_F_TX_IPV6;
  else return false;
  const bool tcp = meta.csum_offset == 16;
  if (tcp) flags |= RTE_MBUF_F_TX_TCP_CKSUM;
  else if (meta.csum_offset == 6) flags |= RTE_MBUF_F_TX_UDP_CKSUM;
  else return false;
  m->l2_len = l2;
  m->l3_len = l3;
  if (meta.gso_type != netif::kGsoTypeNone) {
    if (!tcp || meta.gso_size == 0) return false;
    if (meta.gso_type == netif::kGsoTypeTcpv4 ? !caps.tx_tso4 : !caps.tx_tso6) return false;
    std::uint16_t l4 = meta.l4_len;
    if (l4 == 0) {
      const std::uint32_t doff_at = std::uint32_t{l2} + l3 + 12;
      if (doff_at >= m->data_len) return false;
      l4 = static_cast<std::uint16_t>((rte_pktmbuf_mtod(m, const std::uint8_t*)[doff_at] >> 4) * 4);
    }
    if (std::uint32_t{l2} + l3 + l4 > m->data_len) return false;  // headers must be in segment 0
    // Cut here: frames of one MSS must fit the device's MTU (Linux's stack would drop them later).
    if (exit_.gso_ && std::uint32_t{l3} + l4 + meta.gso_size > exit_.mtu_) return false;
    m->l4_len = l4;
    m->tso_segsz = meta.gso_size;
    flags |= RTE_MBUF_F_TX_TCP_SEG;
    if (version == 4 && (exit_.tx_offloads_ & RTE_ETH_TX_OFFLOAD_IPV4_CKSUM)) flags |= RTE_MBUF_F_TX_IP_CKSUM;
  }
  m->ol_flags = flags;
  return true;
}

unsigned DpdkPort::transmit(std::span<PacketBuffer> bufs) {
  ensure_lcore();
  // Room for a burst and one more guest frame cut into its most segments; owner[i]: which of the
  // burst's `frames` guest frames burst[i] belongs to (0, 0, 1, 2, 2, ...).
  rte_mbuf* burst[kBurst + SoftGso::kMaxSegments];
  std::uint16_t owner[kBurst + SoftGso::kMaxSegments];
  std::uint16_t n = 0, frames = 0;
  unsigned sent_total = 0;
  for (std::size_t i = 0; i < bufs.size(); ++i) {
    PacketBuffer& b = bufs[i];
    auto* m = static_cast<rte_mbuf*>(b.handle);
    b.handle = nullptr;
    b.nr_chunks = 0;
    if (m == nullptr) continue;
    if (b.length == 0) {  // given up on by netback after alloc_tx (its grant copy failed)
      rte_pktmbuf_free(m);
      continue;
    }
    // The queue may have trimmed the chunks it did not fill.
    std::uint32_t total = 0;
    rte_mbuf* seg = m;
    for (unsigned s = 0; seg != nullptr; ++s, seg = seg->next) {
      seg->data_len = static_cast<std::uint16_t>(s < kMaxChunks ? b.chunks[s].len : 0);
      total += seg->data_len;
    }
    m->pkt_len = total;
    if (total != b.length || !set_tx_offloads(b, m)) {
      rte_pktmbuf_free(m);
      stats_.tx_dropped.add();
      PVBACK_LOG_RATELIMITED(Warning, "dpdk %s: dropping a packet (length %u, gso %u, csum_partial %d) the device cannot send",
                             exit_.name_.c_str(), b.length, b.meta.gso_type, b.meta.csum_partial);
      continue;
    }
    int cut = 0;  // segments made of it here (0: sent as it is)
    if (exit_.gso_ && (m->ol_flags & RTE_MBUF_F_TX_TCP_SEG)) {
      const std::uint64_t flags = m->ol_flags & ~RTE_MBUF_F_TX_TCP_SEG;
      cut = exit_.gso_->segment(m, m->tso_segsz, burst + n, SoftGso::kMaxSegments, flags);
      if (cut < 0) {
        rte_pktmbuf_free(m);
        stats_.tx_dropped.add();
        PVBACK_LOG_RATELIMITED(Warning, "dpdk %s: cannot segment a GSO packet (length %u, mss %u): %s",
                               exit_.name_.c_str(), b.length, b.meta.gso_size, std::strerror(-cut));
        continue;
      }
    }
    if (cut > 0) {
      rte_pktmbuf_free(m);  // each segment holds what it needs of it
      stats_.tx_segmented.add();
      for (int k = 0; k < cut; ++k) owner[n++] = frames;
    } else {
      owner[n] = frames;
      burst[n++] = m;
    }
    ++frames;
    if (n >= kBurst) {
      sent_total += send(burst, owner, n, frames);
      n = frames = 0;
    }
  }
  if (n != 0) sent_total += send(burst, owner, n, frames);
  return sent_total;
}

unsigned DpdkPort::send(rte_mbuf** burst, std::uint16_t* owner, std::uint16_t n, unsigned frames) {
  const std::uint16_t port = exit_.port_id_;
  // Each guest frame counted as failed once, whichever of its segments fail, in any order.
  bool lost[kBurst] = {};  // a burst holds at most kBurst frames (transmit() sends at kBurst)
  unsigned failed = 0;
  const auto fail = [&](std::uint16_t i) {
    rte_pktmbuf_free(burst[i]);
    stats_.tx_dropped.add();
    if (!lost[owner[i]]) {
      lost[owner[i]] = true;
      ++failed;
    }
  };
  // tx_prepare fixes up what the PMD needs (e.g. pseudo-header checksums for TSO or checksum
  // offload) and stops at the first frame it refuses: drop that one and go on.
  std::uint16_t prepared = 0;
  while (prepared < n) {
    prepared += rte_eth_tx_prepare(port, queue_, burst + prepared, static_cast<std::uint16_t>(n - prepared));
    if (prepared < n) {
      fail(prepared);
      std::memmove(burst + prepared, burst + prepared + 1, (n - prepared - 1) * sizeof burst[0]);
      std::memmove(owner + prepared, owner + prepared + 1, (n - prepared - 1) * sizeof owner[0]);
      --n;
    }
  }
  std::uint16_t done = 0;
  for (int attempt = 0; attempt < 16 && done < n; ++attempt)
    done += rte_eth_tx_burst(port, queue_, burst + done, static_cast<std::uint16_t>(n - done));
  stats_.tx_sent.add(done);
  for (std::uint16_t i = done; i < n; ++i) fail(i);
  return frames - failed;
}

unsigned DpdkPort::receive(std::span<PacketBuffer> bufs) {
  ensure_lcore();
  unsigned got = 0;
  while (got < bufs.size()) {
    rte_mbuf* burst[kBurst];
    const auto want = static_cast<std::uint16_t>(std::min<std::size_t>(kBurst, bufs.size() - got));
    const std::uint16_t n = rte_eth_rx_burst(exit_.port_id_, queue_, burst, want);
    for (std::uint16_t i = 0; i < n; ++i) {
      rte_mbuf* m = burst[i];
      if (m->nb_segs > kMaxChunks || m->pkt_len > kMaxPacketBytes) {
        rte_pktmbuf_free(m);
        stats_.rx_dropped.add();
        continue;
      }
      PacketBuffer& b = bufs[got++];
      b.length = m->pkt_len;
      b.meta = PacketMeta{};
      const std::uint64_t l4 = m->ol_flags & RTE_MBUF_F_RX_L4_CKSUM_MASK;
      const std::uint64_t ip = m->ol_flags & RTE_MBUF_F_RX_IP_CKSUM_MASK;
      if (l4 == RTE_MBUF_F_RX_L4_CKSUM_GOOD && ip != RTE_MBUF_F_RX_IP_CKSUM_BAD) b.meta.csum_validated = true;
      // Bounded by the chain itself, not only by nb_segs: a driver's chain longer than its
      // count must not run past chunks[].
      unsigned c = 0;
      std::uint32_t total = 0;
      rte_mbuf* seg = m;
      for (; seg != nullptr && c < kMaxChunks; seg = seg->next, ++c) {
        b.chunks[c] = Chunk{rte_pktmbuf_mtod(seg, std::byte*), seg->data_len};
        total += seg->data_len;
      }
      if (seg != nullptr || total != m->pkt_len) {
        rte_pktmbuf_free(m);
        stats_.rx_dropped.add();
        --got;
        continue;
      }
      b.nr_chunks = c;
      b.handle = m;
      // NONE: the L4 data is intact but its checksum field holds only the pseudo-header sum (a
      // local packet with a partial checksum, passed on by a virtio or tap PMD). The guest must be
      // told "checksum blank" with the data validated, or a guest that forwards the packet sends
      // it with a wrong checksum; csum_start/offset are found by parsing, as for a guest's own
      // blank packets. What cannot be marked so goes on unvalidated, for the guest to check.
      if (l4 == RTE_MBUF_F_RX_L4_CKSUM_NONE && ip != RTE_MBUF_F_RX_IP_CKSUM_BAD && setup_partial_checksum(b, false))
        b.meta.csum_validated = true;
    }
    if (n < want) break;
  }
  stats_.rx_received.add(got);
  return got;
}

void DpdkPort::release(std::span<PacketBuffer> bufs) {
  ensure_lcore();
  rte_mbuf* burst[kBurst];
  unsigned n = 0;
  for (PacketBuffer& b : bufs) {
    if (b.handle == nullptr) continue;
    burst[n++] = static_cast<rte_mbuf*>(b.handle);
    b.handle = nullptr;
    b.nr_chunks = 0;
    if (n == kBurst) {
      rte_pktmbuf_free_bulk(burst, n);
      n = 0;
    }
  }
  if (n != 0) rte_pktmbuf_free_bulk(burst, n);
}

// ---- DpdkExit ----

std::expected<std::unique_ptr<DpdkExit>, int> DpdkExit::create(const DpdkConfig& config) {
  if (config.devargs.empty() || config.max_queues == 0 || config.max_queues > 1024 ||
      config.mbufs_per_queue < 64)
    return std::unexpected(EINVAL);
  if (int err = init_eal(config.eal_args); err != 0) return std::unexpected(err);

  std::unique_ptr<DpdkExit> exit(new DpdkExit());
  exit->device_name_ = config.devargs.substr(0, config.devargs.find(','));
  exit->name_ = config.name.empty() ? exit->device_name_ : config.name;
  const char* dname = exit->name_.c_str();

  // rte_dev_probe() returns 0 for a device that is already probed (by another exit): refuse it
  // here, or two exits would drive (and one day close) the same port.
  std::uint16_t existing = 0;
  if (rte_eth_dev_get_port_by_name(exit->device_name_.c_str(), &existing) == 0) {
    PVBACK_LOG(Error, "dpdk %s: device %s exists already (port %u)", dname, exit->device_name_.c_str(), existing);
    return std::unexpected(EEXIST);
  }
  if (int rc = rte_dev_probe(config.devargs.c_str()); rc != 0) {
    PVBACK_LOG(Error, "dpdk %s: probe \"%s\": %s", dname, config.devargs.c_str(), rte_strerror(-rc));
    return std::unexpected(rc == -EEXIST ? EEXIST : -rc);
  }
  exit->probed_ = true;
  if (rte_eth_dev_get_port_by_name(exit->device_name_.c_str(), &exit->port_id_) != 0) {
    PVBACK_LOG(Error, "dpdk %s: no ethdev named %s after probing", dname, exit->device_name_.c_str());
    return std::unexpected(ENODEV);
  }
  const std::uint16_t port = exit->port_id_;
  rte_eth_dev_info info;
  if (int rc = rte_eth_dev_info_get(port, &info); rc != 0) return std::unexpected(-rc);
  if (config.max_queues > info.max_rx_queues || config.max_queues > info.max_tx_queues) {
    PVBACK_LOG(Error, "dpdk %s: %u queues wanted, the device has %u RX / %u TX", dname, config.max_queues,
               info.max_rx_queues, info.max_tx_queues);
    return std::unexpected(EINVAL);
  }
  const int socket = rte_eth_dev_socket_id(port) >= 0 ? rte_eth_dev_socket_id(port) : SOCKET_ID_ANY;

  // The pool: one per vif, 2 KiB of data per mbuf; bigger packets are chains.
  char pool_name[RTE_MEMPOOL_NAMESIZE];
  std::snprintf(pool_name, sizeof pool_name, "pvb%d_%u", static_cast<int>(::getpid()) % 100000,
                pool_counter.fetch_add(1));
  const unsigned nb_mbufs = config.max_queues * config.mbufs_per_queue;
  const unsigned cache = std::min(256u, config.mbufs_per_queue / 4);
  exit->pool_ = rte_pktmbuf_pool_create(pool_name, nb_mbufs, cache, 0, RTE_MBUF_DEFAULT_BUF_SIZE, socket);
  if (exit->pool_ == nullptr) {
    PVBACK_LOG(Error, "dpdk %s: mbuf pool of %u: %s", dname, nb_mbufs, rte_strerror(rte_errno));
    return std::unexpected(rte_errno != 0 ? rte_errno : ENOMEM);
  }
  exit->data_room_ = static_cast<std::uint16_t>(rte_pktmbuf_data_room_size(exit->pool_) - RTE_PKTMBUF_HEADROOM);

  // Offloads: what the device reports of what netif can use.
  const std::uint64_t tx_wanted = RTE_ETH_TX_OFFLOAD_IPV4_CKSUM | RTE_ETH_TX_OFFLOAD_TCP_CKSUM |
                                  RTE_ETH_TX_OFFLOAD_UDP_CKSUM | RTE_ETH_TX_OFFLOAD_TCP_TSO |
                                  RTE_ETH_TX_OFFLOAD_MULTI_SEGS;
  exit->tx_offloads_ = info.tx_offload_capa & tx_wanted;
  exit->rx_offloads_ = info.rx_offload_capa & (RTE_ETH_RX_OFFLOAD_IPV4_CKSUM | RTE_ETH_RX_OFFLOAD_TCP_CKSUM |
                                               RTE_ETH_RX_OFFLOAD_UDP_CKSUM);
  const std::uint32_t frame = config.mtu + RTE_ETHER_HDR_LEN + RTE_ETHER_CRC_LEN + 8;  // 8: two VLAN tags
  if (frame > exit->data_room_ && (info.rx_offload_capa & RTE_ETH_RX_OFFLOAD_SCATTER))
    exit->rx_offloads_ |= RTE_ETH_RX_OFFLOAD_SCATTER;
  ExitCapabilities caps;
  caps.tx_csum = (exit->tx_offloads_ & RTE_ETH_TX_OFFLOAD_TCP_CKSUM) && (exit->tx_offloads_ & RTE_ETH_TX_OFFLOAD_UDP_CKSUM);
  caps.tx_tso4 = config.tso && caps.tx_csum && (exit->tx_offloads_ & RTE_ETH_TX_OFFLOAD_TCP_TSO) &&
                 (exit->tx_offloads_ & RTE_ETH_TX_OFFLOAD_MULTI_SEGS);
  caps.tx_tso6 = caps.tx_tso4;
  // No TSO used: segment TCP/IPv4 here if the device can send what that makes (two-mbuf frames
  // whose IPv4 and TCP checksums it computes). DPDK 22.11's GSO library has no TCP/IPv6.
  if (!caps.tx_tso4 && config.soft_gso && caps.tx_csum && (exit->tx_offloads_ & RTE_ETH_TX_OFFLOAD_IPV4_CKSUM) &&
      (exit->tx_offloads_ & RTE_ETH_TX_OFFLOAD_MULTI_SEGS)) {
    // Its pools not there (EAL's memory is short): served all the same, without GSO.
    if (auto gso = SoftGso::create(dname, config.max_queues, socket)) {
      exit->gso_ = std::move(*gso);
      caps.tx_tso4 = true;
    }
  }
  exit->mtu_ = config.mtu;
  caps.rx_gso = false;
  // RX interrupts where the device's interrupt fd is level-triggered and needs no reading (the
  // TAP queue fd of net_tap: readable while packets wait), so that a queue sleeps in poll(2) until
  // a packet comes instead of polling: on a dom0 whose CPUs the guests' traffic also needs,
  // polling took them from iperf3 and delayed its ACKs by the 1 ms idle sleep. Other devices are
  // polled (an eventfd-type interrupt must be read and re-armed, which ethdev does not expose).
  const bool rx_interrupts = std::string_view(info.driver_name) == "net_tap";

  rte_eth_conf conf;
  std::memset(&conf, 0, sizeof conf);
  conf.txmode.offloads = exit->tx_offloads_;
  conf.rxmode.offloads = exit->rx_offloads_;
  conf.intr_conf.rxq = rx_interrupts ? 1 : 0;
  if (config.max_queues > 1 && info.flow_type_rss_offloads != 0) {
    conf.rxmode.mq_mode = RTE_ETH_MQ_RX_RSS;
    conf.rx_adv_conf.rss_conf.rss_hf = info.flow_type_rss_offloads & (RTE_ETH_RSS_IP | RTE_ETH_RSS_TCP | RTE_ETH_RSS_UDP);
    exit->rss_ = conf.rx_adv_conf.rss_conf.rss_hf != 0;
    if (!exit->rss_) conf.rxmode.mq_mode = RTE_ETH_MQ_RX_NONE;
  }
  const auto nq = static_cast<std::uint16_t>(config.max_queues);
  if (int rc = rte_eth_dev_configure(port, nq, nq, &conf); rc != 0) {
    PVBACK_LOG(Error, "dpdk %s: configure: %s", dname, rte_strerror(-rc));
    return std::unexpected(-rc);
  }
  if (int rc = rte_eth_dev_set_mtu(port, static_cast<std::uint16_t>(config.mtu)); rc != 0 && rc != -ENOTSUP)
    PVBACK_LOG(Warning, "dpdk %s: MTU %u: %s", dname, config.mtu, rte_strerror(-rc));
  std::uint16_t nb_rxd = static_cast<std::uint16_t>(config.rx_descriptors);
  std::uint16_t nb_txd = static_cast<std::uint16_t>(config.tx_descriptors);
  if (int rc = rte_eth_dev_adjust_nb_rx_tx_desc(port, &nb_rxd, &nb_txd); rc != 0) return std::unexpected(-rc);
  rte_eth_rxconf rxconf = info.default_rxconf;
  rxconf.offloads = conf.rxmode.offloads;
  rte_eth_txconf txconf = info.default_txconf;
  txconf.offloads = conf.txmode.offloads;
  for (std::uint16_t q = 0; q < nq; ++q) {
    if (int rc = rte_eth_rx_queue_setup(port, q, nb_rxd, socket, &rxconf, exit->pool_); rc != 0) {
      PVBACK_LOG(Error, "dpdk %s: RX queue %u: %s", dname, q, rte_strerror(-rc));
      return std::unexpected(-rc);
    }
    if (int rc = rte_eth_tx_queue_setup(port, q, nb_txd, socket, &txconf); rc != 0) {
      PVBACK_LOG(Error, "dpdk %s: TX queue %u: %s", dname, q, rte_strerror(-rc));
      return std::unexpected(-rc);
    }
    exit->ports_.push_back(std::unique_ptr<DpdkPort>(new DpdkPort(*exit, q)));
  }
  if (int rc = rte_eth_dev_start(port); rc != 0) {
    PVBACK_LOG(Error, "dpdk %s: start: %s", dname, rte_strerror(-rc));
    return std::unexpected(-rc);
  }
  exit->started_ = true;
  caps.poll_mode = true;
  if (rx_interrupts) {
    std::vector<int> fds;
    for (std::uint16_t q = 0; q < nq; ++q) {
      // net_tap's is always on: it has no enable operation (-ENOTSUP).
      const int fd = rte_eth_dev_rx_intr_ctl_q_get_fd(port, q);
      if (fd < 0) break;
      if (const int rc = rte_eth_dev_rx_intr_enable(port, q); rc != 0 && rc != -ENOTSUP) break;
      fds.push_back(fd);
    }
    if (fds.size() == nq) {
      for (std::uint16_t q = 0; q < nq; ++q) exit->ports_[q]->rx_fd_ = fds[q];
      caps.poll_mode = false;
    } else {
      PVBACK_LOG(Warning, "dpdk %s: no RX interrupt fd for queue %zu: its queues poll", dname, fds.size());
    }
  }
  exit->caps_ = caps;
  if (int rc = rte_eth_promiscuous_enable(port); rc != 0 && rc != -ENOTSUP)
    PVBACK_LOG(Warning, "dpdk %s: promiscuous mode: %s", dname, rte_strerror(-rc));
  PVBACK_LOG(Info, "dpdk %s: port %u (%s) started: %u queue(s), tx offloads %#llx, rx offloads %#llx%s%s", dname, port,
             info.driver_name, nq, static_cast<unsigned long long>(exit->tx_offloads_),
             static_cast<unsigned long long>(exit->rx_offloads_),
             exit->gso_ ? ", TCP/IPv4 GSO segmented in software" : "",
             caps.poll_mode ? ", RX polled" : ", RX interrupts");
  return exit;
}

DpdkExit::~DpdkExit() {
  if (probed_) {
    if (started_) {
      if (int rc = rte_eth_dev_stop(port_id_); rc != 0)
        PVBACK_LOG(Warning, "dpdk %s: stop: %s", name_.c_str(), rte_strerror(-rc));
    }
    // Closing frees the queues (and the mbufs they hold) and the port id; removing the device
    // lets the same devargs be probed again.
    rte_eth_dev_info info;
    rte_device* dev = nullptr;
    if (rte_eth_dev_info_get(port_id_, &info) == 0) dev = info.device;
    rte_eth_dev_close(port_id_);
    if (dev != nullptr) {
      if (int rc = rte_dev_remove(dev); rc != 0)
        PVBACK_LOG(Warning, "dpdk %s: remove: %s", name_.c_str(), rte_strerror(-rc));
    }
  }
  if (pool_ != nullptr) rte_mempool_free(pool_);
}

int DpdkExit::configure(unsigned queues, const GuestOffloads&, std::uint32_t mtu) {
  if (queues == 0 || queues > ports_.size()) return EINVAL;
  if (int rc = rte_eth_dev_set_mtu(port_id_, static_cast<std::uint16_t>(mtu)); rc != 0 && rc != -ENOTSUP) {
    PVBACK_LOG(Error, "dpdk %s: MTU %u: %s", name_.c_str(), mtu, rte_strerror(-rc));
    return -rc;
  }
  mtu_ = mtu;  // before the queues run
  if (!rss_) return 0;
  rte_eth_dev_info info;
  if (int rc = rte_eth_dev_info_get(port_id_, &info); rc != 0) return -rc;
  if (info.reta_size == 0) return 0;
  std::vector<rte_eth_rss_reta_entry64> reta((info.reta_size + RTE_ETH_RETA_GROUP_SIZE - 1) / RTE_ETH_RETA_GROUP_SIZE);
  for (unsigned i = 0; i < info.reta_size; ++i) {
    auto& group = reta[i / RTE_ETH_RETA_GROUP_SIZE];
    group.mask |= 1ull << (i % RTE_ETH_RETA_GROUP_SIZE);
    group.reta[i % RTE_ETH_RETA_GROUP_SIZE] = static_cast<std::uint16_t>(i % queues);
  }
  if (int rc = rte_eth_dev_rss_reta_update(port_id_, reta.data(), info.reta_size); rc != 0 && rc != -ENOTSUP) {
    PVBACK_LOG(Warning, "dpdk %s: RSS redirection table: %s", name_.c_str(), rte_strerror(-rc));
  }
  return 0;
}

void DpdkExit::set_link(bool up) {
  const int rc = up ? rte_eth_dev_set_link_up(port_id_) : rte_eth_dev_set_link_down(port_id_);
  if (rc != 0 && rc != -ENOTSUP)
    PVBACK_LOG_RATELIMITED(Warning, "dpdk %s: link %s: %s", name_.c_str(), up ? "up" : "down", rte_strerror(-rc));
}

}  // namespace pvback::netback
