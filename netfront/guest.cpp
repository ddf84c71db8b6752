#include "netfront/guest.hpp"

#include <fcntl.h>
#include <linux/if_tun.h>
#include <net/if.h>
#include <net/if_arp.h>
#include <netinet/in.h>
#include <arpa/inet.h>
#include <poll.h>
#include <sched.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "base/log.hpp"

namespace pvback::netfront {

namespace {

// struct virtio_net_hdr (linux/virtio_net.h, which C++ cannot include: a member is named `class`).
struct virtio_net_hdr {
  std::uint8_t flags;
  std::uint8_t gso_type;
  std::uint16_t hdr_len;
  std::uint16_t gso_size;
  std::uint16_t csum_start;
  std::uint16_t csum_offset;
};
static_assert(sizeof(virtio_net_hdr) == 10);
constexpr std::uint8_t VIRTIO_NET_HDR_F_NEEDS_CSUM = 1;
constexpr std::uint8_t VIRTIO_NET_HDR_F_DATA_VALID = 2;
constexpr std::uint8_t VIRTIO_NET_HDR_GSO_NONE = 0;
constexpr std::uint8_t VIRTIO_NET_HDR_GSO_TCPV4 = 1;
constexpr std::uint8_t VIRTIO_NET_HDR_GSO_TCPV6 = 4;
constexpr std::uint8_t VIRTIO_NET_HDR_GSO_ECN = 0x80;

std::uint16_t be16(std::span<const std::byte> f, std::size_t at) {
  return static_cast<std::uint16_t>((std::to_integer<unsigned>(f[at]) << 8) | std::to_integer<unsigned>(f[at + 1]));
}
unsigned u8(std::span<const std::byte> f, std::size_t at) { return std::to_integer<unsigned>(f[at]); }

class NetnsGuard {
 public:
  // Enters /var/run/netns/<name> on this thread; restores the original namespace on destruction.
  int enter(const std::string& name) {
    if (name.empty()) return 0;
    orig_ = ::open("/proc/self/ns/net", O_RDONLY | O_CLOEXEC);
    if (orig_ < 0) return errno;
    int fd = ::open(("/var/run/netns/" + name).c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0) return errno;
    int r = ::setns(fd, CLONE_NEWNET);
    int e = errno;
    ::close(fd);
    return r == 0 ? 0 : e;
  }
  ~NetnsGuard() {
    if (orig_ >= 0) {
      if (::setns(orig_, CLONE_NEWNET) != 0) PVBACK_LOG(Error, "netfront: cannot return to the original netns");
      ::close(orig_);
    }
  }

 private:
  int orig_ = -1;
};

int configure_interface(const GuestConfig& cfg, const Negotiated& neg) {
  int s = ::socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  if (s < 0) return errno;
  auto fail = [&](const char* what) {
    int e = errno;
    PVBACK_LOG(Error, "netfront %s: %s on %s: %s", neg.vif_name().c_str(), what, cfg.tap.c_str(), std::strerror(e));
    ::close(s);
    return e;
  };
  ifreq ifr{};
  std::strncpy(ifr.ifr_name, cfg.tap.c_str(), IFNAMSIZ - 1);
  ifr.ifr_hwaddr.sa_family = ARPHRD_ETHER;
  std::memcpy(ifr.ifr_hwaddr.sa_data, neg.mac.data(), 6);
  if (::ioctl(s, SIOCSIFHWADDR, &ifr) != 0) return fail("setting the MAC");
  if (cfg.mtu != 0) {
    ifr = {};
    std::strncpy(ifr.ifr_name, cfg.tap.c_str(), IFNAMSIZ - 1);
    ifr.ifr_mtu = static_cast<int>(cfg.mtu);
    if (::ioctl(s, SIOCSIFMTU, &ifr) != 0) return fail("setting the MTU");
  }
  if (!cfg.address.empty()) {
    const auto slash = cfg.address.find('/');
    const std::string ip = cfg.address.substr(0, slash);
    unsigned prefix = 24;
    if (slash != std::string::npos) {
      auto p = xenbus::parse_uint(std::string_view(cfg.address).substr(slash + 1), 32);
      if (!p) {
        ::close(s);
        return EINVAL;
      }
      prefix = static_cast<unsigned>(*p);
    }
    sockaddr_in sin{};
    sin.sin_family = AF_INET;
    if (::inet_pton(AF_INET, ip.c_str(), &sin.sin_addr) != 1) {
      ::close(s);
      return EINVAL;
    }
    ifr = {};
    std::strncpy(ifr.ifr_name, cfg.tap.c_str(), IFNAMSIZ - 1);
    std::memcpy(&ifr.ifr_addr, &sin, sizeof sin);
    if (::ioctl(s, SIOCSIFADDR, &ifr) != 0) return fail("setting the address");
    sin.sin_addr.s_addr = prefix == 0 ? 0 : htonl(~std::uint32_t{0} << (32 - prefix));
    std::memcpy(&ifr.ifr_netmask, &sin, sizeof sin);
    if (::ioctl(s, SIOCSIFNETMASK, &ifr) != 0) return fail("setting the netmask");
  }
  ifr = {};
  std::strncpy(ifr.ifr_name, cfg.tap.c_str(), IFNAMSIZ - 1);
  if (::ioctl(s, SIOCGIFFLAGS, &ifr) != 0) return fail("reading flags");
  ifr.ifr_flags |= IFF_UP;
  if (::ioctl(s, SIOCSIFFLAGS, &ifr) != 0) return fail("setting the link up");
  ::close(s);
  return 0;
}

}  // namespace

std::optional<FrameHeaders> parse_frame_headers(std::span<const std::byte> f) {
  FrameHeaders h;
  if (f.size() < 14) return std::nullopt;
  std::size_t off = 12;
  std::uint16_t type = be16(f, off);
  off += 2;
  while (type == 0x8100 || type == 0x88a8) {
    if (f.size() < off + 4) return std::nullopt;
    type = be16(f, off + 2);
    off += 4;
  }
  h.l2_len = static_cast<std::uint16_t>(off);
  std::uint8_t proto = 0;
  if (type == 0x0800) {
    if (f.size() < off + 20) return std::nullopt;
    const unsigned ihl = (u8(f, off) & 0xf) * 4;
    if ((u8(f, off) >> 4) != 4 || ihl < 20 || f.size() < off + ihl) return std::nullopt;
    const std::uint16_t frag = be16(f, off + 6);
    if (frag & 0x3fff) return std::nullopt;  // a fragment: no L4 header to speak of
    proto = static_cast<std::uint8_t>(u8(f, off + 9));
    h.ipv4 = true;
    h.l3_len = static_cast<std::uint16_t>(ihl);
  } else if (type == 0x86dd) {
    if (f.size() < off + 40) return std::nullopt;
    std::size_t l3 = 40;
    proto = static_cast<std::uint8_t>(u8(f, off + 6));
    for (int guard = 0; guard < 8; ++guard) {
      if (proto == 0 || proto == 43 || proto == 60) {
        if (f.size() < off + l3 + 8) return std::nullopt;
        const std::size_t len = (u8(f, off + l3 + 1) + 1) * 8;
        proto = static_cast<std::uint8_t>(u8(f, off + l3));
        l3 += len;
      } else if (proto == 44) {
        return std::nullopt;  // fragment
      } else {
        break;
      }
    }
    h.ipv6 = true;
    h.l3_len = static_cast<std::uint16_t>(l3);
  } else {
    return h;  // not IP
  }
  const std::size_t l4 = off + h.l3_len;
  if (proto == 6) {
    if (f.size() < l4 + 20) return std::nullopt;
    const unsigned doff = (u8(f, l4 + 12) >> 4) * 4;
    if (doff < 20 || f.size() < l4 + doff) return std::nullopt;
    h.l4_proto = 6;
    h.l4_len = static_cast<std::uint16_t>(doff);
  } else if (proto == 17) {
    if (f.size() < l4 + 8) return std::nullopt;
    h.l4_proto = 17;
    h.l4_len = 8;
  }
  return h;
}

std::expected<std::vector<int>, int> create_guest_tap(const GuestConfig& cfg, const Negotiated& neg,
                                                      unsigned queues) {
  NetnsGuard ns;
  if (int e = ns.enter(cfg.netns)) {
    PVBACK_LOG(Error, "netfront %s: cannot enter netns %s: %s", neg.vif_name().c_str(), cfg.netns.c_str(),
               std::strerror(e));
    return std::unexpected(e);
  }
  std::vector<int> fds;
  auto fail = [&](int e, const char* what) {
    PVBACK_LOG(Error, "netfront %s: %s (%s): %s", neg.vif_name().c_str(), what, cfg.tap.c_str(), std::strerror(e));
    for (int fd : fds) ::close(fd);
    return std::unexpected(e);
  };
  // What the namespace's kernel may hand us: partial checksums when the backend takes csum_blank
  // frames (IPv6 too only with feature-ipv6-csum-offload: TUN_F_CSUM does not tell them apart),
  // TSO when the backend takes GSO. Linux netfront derives its NETIF_F_* the same way.
  unsigned offload = 0;
  if (neg.tx_ipv6_csum) {
    offload |= TUN_F_CSUM;
    if (neg.tx_gso_tcpv4) offload |= TUN_F_TSO4;
    if (neg.tx_gso_tcpv6) offload |= TUN_F_TSO6;
  }
  for (unsigned i = 0; i < queues; ++i) {
    int fd = ::open("/dev/net/tun", O_RDWR | O_CLOEXEC | O_NONBLOCK);
    if (fd < 0) return fail(errno, "opening /dev/net/tun");
    fds.push_back(fd);
    ifreq ifr{};
    std::strncpy(ifr.ifr_name, cfg.tap.c_str(), IFNAMSIZ - 1);
    ifr.ifr_flags = IFF_TAP | IFF_NO_PI | IFF_VNET_HDR | (queues > 1 ? IFF_MULTI_QUEUE : 0);
    if (::ioctl(fd, TUNSETIFF, &ifr) != 0) return fail(errno, "TUNSETIFF");
    int hdr = sizeof(virtio_net_hdr);
    if (::ioctl(fd, TUNSETVNETHDRSZ, &hdr) != 0) return fail(errno, "TUNSETVNETHDRSZ");
    if (::ioctl(fd, TUNSETOFFLOAD, offload) != 0) return fail(errno, "TUNSETOFFLOAD");
  }
  if (int e = configure_interface(cfg, neg)) return fail(e, "configuring the interface");
  PVBACK_LOG(Info, "netfront %s: tap %s in netns %s, %u queue(s), offloads csum %s tso4 %s tso6 %s",
             neg.vif_name().c_str(), cfg.tap.c_str(), cfg.netns.empty() ? "(current)" : cfg.netns.c_str(), queues,
             offload & TUN_F_CSUM ? "on" : "off", offload & TUN_F_TSO4 ? "on" : "off",
             offload & TUN_F_TSO6 ? "on" : "off");
  return fds;
}

namespace {

// virtio_net_hdr from the namespace's kernel → TxMeta. false: a frame we cannot send.
bool tx_meta_from_vnet(const virtio_net_hdr& h, TxMeta& m) {
  m = {};
  if (h.flags & VIRTIO_NET_HDR_F_NEEDS_CSUM) {
    m.csum_blank = true;  // as Linux netfront does for CHECKSUM_PARTIAL
    m.data_validated = true;
  } else if (h.flags & VIRTIO_NET_HDR_F_DATA_VALID) {
    m.data_validated = true;
  }
  switch (h.gso_type & ~VIRTIO_NET_HDR_GSO_ECN) {
    case VIRTIO_NET_HDR_GSO_NONE: break;
    case VIRTIO_NET_HDR_GSO_TCPV4: m.gso_type = netif::kGsoTypeTcpv4; m.gso_size = h.gso_size; break;
    case VIRTIO_NET_HDR_GSO_TCPV6: m.gso_type = netif::kGsoTypeTcpv6; m.gso_size = h.gso_size; break;
    default: return false;
  }
  return true;
}

// RxMeta → virtio_net_hdr for the namespace's kernel.
void vnet_from_rx(const RxFrame& f, virtio_net_hdr& h) {
  h = {};
  const bool partial = f.meta.csum_blank || f.meta.gso_type != netif::kGsoTypeNone;
  if (partial) {
    if (auto p = parse_frame_headers(f.data); p && (p->l4_proto == 6 || p->l4_proto == 17)) {
      h.flags = VIRTIO_NET_HDR_F_NEEDS_CSUM;
      h.csum_start = static_cast<std::uint16_t>(p->l2_len + p->l3_len);
      h.csum_offset = p->l4_proto == 6 ? 16 : 6;
      if (f.meta.gso_type != netif::kGsoTypeNone && p->l4_proto == 6) {
        h.gso_type = f.meta.gso_type == netif::kGsoTypeTcpv4 ? VIRTIO_NET_HDR_GSO_TCPV4 : VIRTIO_NET_HDR_GSO_TCPV6;
        h.gso_size = f.meta.gso_size;
        h.hdr_len = static_cast<std::uint16_t>(p->l2_len + p->l3_len + p->l4_len);
      }
    }
  } else if (f.meta.data_validated) {
    h.flags = VIRTIO_NET_HDR_F_DATA_VALID;
  }
}

}  // namespace

void forward_queue(Queue& q, int tap_fd, const Negotiated& neg, const std::atomic<bool>& stop, ForwardStats& stats) {
  std::vector<std::byte> buf(sizeof(virtio_net_hdr) + 65536 + 64);
  std::size_t pending_len = 0;  // a frame read from the tap that did not fit the ring yet
  TxMeta pending_meta;
  RxFrame rx;
  const std::string name = neg.vif_name() + " q" + std::to_string(q.index());
  while (!stop.load(std::memory_order_relaxed)) {
    if (q.error() != 0 || !q.connected()) break;
    q.reap_tx();
    // TAP → backend.
    for (int batch = 0; batch < 64; ++batch) {
      if (pending_len == 0) {
        ssize_t n = ::read(tap_fd, buf.data(), buf.size());
        if (n < 0) {
          if (errno != EAGAIN && errno != EINTR) ++stats.tap_errors;
          break;
        }
        if (static_cast<std::size_t>(n) <= sizeof(virtio_net_hdr)) continue;
        virtio_net_hdr h;
        std::memcpy(&h, buf.data(), sizeof h);
        if (!tx_meta_from_vnet(h, pending_meta)) {
          ++stats.dropped;
          continue;
        }
        pending_len = static_cast<std::size_t>(n) - sizeof(virtio_net_hdr);
      }
      int e = q.send(std::span(buf.data() + sizeof(virtio_net_hdr), pending_len), pending_meta, false);
      if (e == EAGAIN) break;
      if (e != 0) {
        ++stats.dropped;
        PVBACK_LOG_RATELIMITED(Warning, "netfront %s: dropped a %zu-byte frame: %s", name.c_str(), pending_len,
                               std::strerror(e));
      } else {
        ++stats.to_backend;
      }
      pending_len = 0;
    }
    q.flush_tx();
    // Backend → TAP.
    while (q.receive(rx)) {
      virtio_net_hdr h;
      vnet_from_rx(rx, h);
      iovec iov[2] = {{&h, sizeof h}, {rx.data.data(), rx.data.size()}};
      if (::writev(tap_fd, iov, 2) < 0) ++stats.tap_errors;
      else ++stats.from_backend;
    }
    // Sleep until the tap or the event channel has something (re-arming the rings first).
    if (q.wait(std::chrono::milliseconds(0)) == 0) continue;
    pollfd fds[2] = {{tap_fd, static_cast<short>(pending_len == 0 ? POLLIN : 0), 0}, {q.event_fd(), POLLIN, 0}};
    ::poll(fds, 2, 100);
    q.poll_events();
  }
}

}  // namespace pvback::netfront
