#include "netback/tap_exit.hpp"

#include <fcntl.h>
#include <linux/if_tun.h>
#include <net/if.h>
#include <net/if_arp.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "base/log.hpp"
#include "netback/vnet_header.hpp"

namespace pvback::netback {
namespace {

// A slot: [pad][virtio_net_hdr_v1][frame...]. The frame starts 64 bytes in (cache-line aligned,
// which suits the grant copies); the header sits just before it so one write()/read() moves both.
constexpr std::size_t kFrameOffset = 64;
constexpr std::size_t kHdrOffset = kFrameOffset - kVnetHdrLen;
constexpr std::size_t kSlotBytes = (kFrameOffset + kMaxPacketBytes + 4095) & ~std::size_t{4095};

void* slot_handle(std::uint32_t index) { return reinterpret_cast<void*>(std::uintptr_t{index} + 1); }
std::uint32_t slot_index(const void* handle) {
  return static_cast<std::uint32_t>(reinterpret_cast<std::uintptr_t>(handle) - 1);
}

void copy_name(ifreq& ifr, const std::string& name) {
  std::memset(&ifr, 0, sizeof ifr);
  std::memcpy(ifr.ifr_name, name.data(), name.size());  // size checked by create()
}

}  // namespace

// ---- TapPort ----

int TapPort::Arena::init(unsigned count) {
  if (count == 0) return EINVAL;
  bytes = kSlotBytes * count;
  // Anonymous and lazily populated: a small-packet workload touches one page per slot.
  void* p = ::mmap(nullptr, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
  if (p == MAP_FAILED) {
    bytes = 0;
    return errno;
  }
  base = static_cast<std::byte*>(p);
  free.reserve(count);
  for (std::uint32_t i = count; i-- > 0;) free.push_back(i);
  return 0;
}

std::byte* TapPort::Arena::slot(std::uint32_t i) const { return base + std::size_t{i} * kSlotBytes; }

TapPort::Arena::~Arena() {
  if (base != nullptr) ::munmap(base, bytes);
}

TapPort::~TapPort() = default;

std::expected<std::unique_ptr<TapPort>, int> TapPort::on_fd(UniqueFd fd, unsigned tx_buffers, unsigned rx_buffers) {
  if (!fd) return std::unexpected(EBADF);
  std::unique_ptr<TapPort> port(new TapPort());
  port->fd_ = std::move(fd);
  if (int err = port->tx_.init(tx_buffers); err != 0) return std::unexpected(err);
  if (int err = port->rx_.init(rx_buffers); err != 0) return std::unexpected(err);
  port->tx_frames_.resize(tx_buffers);
  port->tx_slots_.resize(tx_buffers);
  port->tx_results_.resize(tx_buffers);
  return port;
}

int TapPort::prepare_batched_tx() {
  if (writer_prepared_) return writer_.batched() ? 0 : EALREADY;
  writer_prepared_ = true;
  const int e = writer_.init(fd_.get(), static_cast<unsigned>(tx_frames_.size()));
  if (e != 0)
    PVBACK_LOG(Warning, "tap: no batched writes (io_uring: %s): one write() per frame", std::strerror(e));
  return e;
}

int TapPort::alloc_tx(std::span<PacketBuffer> bufs) {
  if (bufs.size() > tx_.free.size()) return ENOBUFS;
  for (const PacketBuffer& b : bufs)
    if (b.length > kMaxPacketBytes) return ENOBUFS;
  for (PacketBuffer& b : bufs) {
    const std::uint32_t i = tx_.free.back();
    tx_.free.pop_back();
    b.handle = slot_handle(i);
    b.nr_chunks = 1;
    b.chunks[0] = Chunk{tx_.slot(i) + kFrameOffset, b.length};
  }
  return 0;
}

unsigned TapPort::transmit(std::span<PacketBuffer> bufs) {
  if (!writer_prepared_) (void)prepare_batched_tx();
  std::size_t n = 0;
  for (PacketBuffer& b : bufs) {
    if (b.handle == nullptr) {  // not from alloc_tx: nothing to send or give back
      stats_.tx_dropped.add();
      continue;
    }
    const std::uint32_t i = slot_index(b.handle);
    std::byte* slot = tx_.slot(i);
    b.handle = nullptr;
    b.nr_chunks = 0;
    virtio_net_hdr_v1 hdr;
    if (b.length == 0) {
      // Given up on by netback after alloc_tx (its grant copy failed): only the slot comes back.
      tx_.free.push_back(i);
    } else if (!meta_to_vnet_header(b.meta, b.length, hdr)) {
      stats_.tx_dropped.add();
      PVBACK_LOG_RATELIMITED(Warning, "tap: dropping a packet with gso_type %u gso_size %u",
                             b.meta.gso_type, b.meta.gso_size);
      tx_.free.push_back(i);
    } else {
      std::memcpy(slot + kHdrOffset, &hdr, sizeof hdr);
      // Every slot is out at most once, so n never passes the slot count the arrays hold.
      tx_frames_[n] = iovec{slot + kHdrOffset, kVnetHdrLen + b.length};
      tx_slots_[n] = i;
      ++n;
    }
  }
  if (n == 0) return 0;
  writer_.write(std::span(tx_frames_).first(n), tx_results_);
  unsigned sent = 0;
  for (std::size_t k = 0; k < n; ++k) {
    const int r = tx_results_[k];
    if (r >= 0 && static_cast<std::size_t>(r) == tx_frames_[k].iov_len) {
      ++sent;
    } else {
      // -EAGAIN: the host side is not taking packets (sndbuf full); -EIO: the device is down;
      // -EINVAL: the kernel refused the header (e.g. hdr_len beyond the packet).
      stats_.tx_dropped.add();
      if (r < 0 && r != -EAGAIN && r != -EIO)
        PVBACK_LOG_RATELIMITED(Warning, "tap: write of %zu bytes: %s", tx_frames_[k].iov_len - kVnetHdrLen,
                               std::strerror(-r));
    }
    tx_.free.push_back(tx_slots_[k]);
  }
  stats_.tx_sent.add(sent);
  return sent;
}

unsigned TapPort::receive(std::span<PacketBuffer> bufs) {
  unsigned got = 0;
  while (got < bufs.size() && !rx_.free.empty()) {
    const std::uint32_t i = rx_.free.back();
    std::byte* slot = rx_.slot(i);
    const ssize_t n = ::read(fd_.get(), slot + kHdrOffset, kVnetHdrLen + kMaxPacketBytes);
    if (n < 0) {
      // EAGAIN: nothing more; EBADFD: the queue is detached. Either way: done for now.
      if (errno != EAGAIN && errno != EINTR && errno != EBADFD)
        PVBACK_LOG_RATELIMITED(Warning, "tap: read: %s", std::strerror(errno));
      break;
    }
    PacketBuffer& b = bufs[got];
    virtio_net_hdr_v1 hdr;
    std::memcpy(&hdr, slot + kHdrOffset, sizeof hdr);
    // tun reports the whole packet's length even when it truncated the copy: never trust more
    // than the slot holds.
    if (n < static_cast<ssize_t>(kVnetHdrLen + 14) || n > static_cast<ssize_t>(kVnetHdrLen + kMaxPacketBytes) ||
        !vnet_header_to_meta(hdr, b.meta)) {
      stats_.rx_dropped.add();
      continue;  // slot stays free
    }
    rx_.free.pop_back();
    b.length = static_cast<std::uint32_t>(n - kVnetHdrLen);
    b.nr_chunks = 1;
    b.chunks[0] = Chunk{slot + kFrameOffset, b.length};
    b.handle = slot_handle(i);
    ++got;
  }
  stats_.rx_received.add(got);
  return got;
}

void TapPort::release(std::span<PacketBuffer> bufs) {
  for (PacketBuffer& b : bufs) {
    if (b.handle == nullptr) continue;
    rx_.free.push_back(slot_index(b.handle));
    b.handle = nullptr;
    b.nr_chunks = 0;
  }
}

// ---- TapExit ----

std::expected<std::unique_ptr<TapExit>, int> TapExit::create(const TapConfig& config) {
  if (config.name.empty() || config.name.size() >= IFNAMSIZ || config.max_queues == 0 ||
      config.name.find('/') != std::string::npos)
    return std::unexpected(EINVAL);
  std::unique_ptr<TapExit> exit(new TapExit());
  exit->name_ = config.name;

  const bool multi = config.max_queues > 1;
  for (unsigned q = 0; q < config.max_queues; ++q) {
    UniqueFd fd(::open("/dev/net/tun", O_RDWR | O_NONBLOCK | O_CLOEXEC));
    if (!fd) {
      const int err = errno;
      PVBACK_LOG(Error, "tap %s: open /dev/net/tun: %s", config.name.c_str(), std::strerror(err));
      return std::unexpected(err);
    }
    ifreq ifr;
    copy_name(ifr, config.name);
    ifr.ifr_flags = IFF_TAP | IFF_NO_PI | IFF_VNET_HDR;
    if (multi) ifr.ifr_flags |= IFF_MULTI_QUEUE;
    // The first queue must create the device: IFF_TUN_EXCL fails if the name exists (a tap of
    // the same name would otherwise be attached to, and any other device reported as EINVAL).
    if (q == 0) ifr.ifr_flags |= IFF_TUN_EXCL;
    int set = ::ioctl(fd.get(), TUNSETIFF, &ifr);
    if (set != 0 && q == 0 && errno == EBUSY && config.reattach) {
      // A predecessor's persistent device: attach to it (TUNSETIFF refuses one that is not a TAP
      // with these flags).
      ifr.ifr_flags &= ~IFF_TUN_EXCL;
      set = ::ioctl(fd.get(), TUNSETIFF, &ifr);
      if (set == 0) exit->reattached_ = true;
    }
    if (set != 0) {
      int err = errno;
      if (q == 0 && err == EBUSY) err = EEXIST;
      PVBACK_LOG(Error, "tap %s: TUNSETIFF (queue %u): %s", config.name.c_str(), q, std::strerror(err));
      return std::unexpected(err);
    }
    if (q == 0) {
      int hdr_len = kVnetHdrLen;
      if (::ioctl(fd.get(), TUNSETVNETHDRSZ, &hdr_len) != 0) {
        const int err = errno;
        PVBACK_LOG(Error, "tap %s: TUNSETVNETHDRSZ: %s", config.name.c_str(), std::strerror(err));
        return std::unexpected(err);
      }
      // No offloads towards us until configure() knows what the guest takes.
      if (::ioctl(fd.get(), TUNSETOFFLOAD, 0u) != 0) {
        const int err = errno;
        PVBACK_LOG(Error, "tap %s: TUNSETOFFLOAD: %s", config.name.c_str(), std::strerror(err));
        return std::unexpected(err);
      }
    }
    auto port = TapPort::on_fd(std::move(fd), config.tx_buffers, config.rx_buffers);
    if (!port) return std::unexpected(port.error());
    exit->ports_.push_back(std::move(*port));
  }

  if (int err = exit->open_ctl(); err != 0) return std::unexpected(err);

  ifreq ifr;
  copy_name(ifr, config.name);
  ifr.ifr_hwaddr.sa_family = ARPHRD_ETHER;
  std::memcpy(ifr.ifr_hwaddr.sa_data, config.host_mac.data(), 6);
  if (::ioctl(exit->ctl_.get(), SIOCSIFHWADDR, &ifr) != 0) {
    const int err = errno;
    PVBACK_LOG(Error, "tap %s: SIOCSIFHWADDR: %s", config.name.c_str(), std::strerror(err));
    return std::unexpected(err);
  }
  if (int err = exit->set_mtu(config.mtu); err != 0) return std::unexpected(err);
  if (config.tx_queue_len) {
    copy_name(ifr, config.name);
    ifr.ifr_qlen = static_cast<int>(*config.tx_queue_len);
    if (::ioctl(exit->ctl_.get(), SIOCSIFTXQLEN, &ifr) != 0) return std::unexpected(errno);
  }
  // Like the kernel's vif: no carrier until a frontend connects. A device a predecessor left keeps
  // its carrier until its new owner knows whether the frontend is still connected: turning it off
  // and on again would stop the host's traffic for up to a second (linkwatch's rate limit).
  if (!exit->reattached_) exit->set_link(false);
  if (config.bring_up) {
    copy_name(ifr, config.name);
    if (::ioctl(exit->ctl_.get(), SIOCGIFFLAGS, &ifr) != 0) return std::unexpected(errno);
    ifr.ifr_flags |= IFF_UP;
    if (::ioctl(exit->ctl_.get(), SIOCSIFFLAGS, &ifr) != 0) return std::unexpected(errno);
  }
  if (config.persist) {
    if (int err = exit->set_persist(true); err != 0) {
      PVBACK_LOG(Error, "tap %s: TUNSETPERSIST: %s", config.name.c_str(), std::strerror(err));
      return std::unexpected(err);
    }
  }
  PVBACK_LOG(Info, "tap %s: %s (ifindex %d, %u queue(s)%s)", config.name.c_str(),
             exit->reattached_ ? "re-attached to the existing device" : "created", exit->ifindex_, config.max_queues,
             config.persist ? ", persistent" : "");
  return exit;
}

std::expected<std::unique_ptr<TapExit>, int> TapExit::adopt(const std::string& name, std::vector<UniqueFd> fds) {
  if (name.empty() || name.size() >= IFNAMSIZ || fds.empty()) return std::unexpected(EINVAL);
  std::unique_ptr<TapExit> exit(new TapExit());
  exit->name_ = name;
  exit->reattached_ = true;
  for (UniqueFd& fd : fds) {
    ifreq ifr;
    std::memset(&ifr, 0, sizeof ifr);
    if (::ioctl(fd.get(), TUNGETIFF, &ifr) != 0) return std::unexpected(errno);
    if (std::strncmp(ifr.ifr_name, name.c_str(), IFNAMSIZ) != 0 || (ifr.ifr_flags & IFF_TAP) == 0) {
      PVBACK_LOG(Error, "tap %s: a queue fd handed over belongs to \"%.16s\"", name.c_str(), ifr.ifr_name);
      return std::unexpected(ENODEV);
    }
    auto port = TapPort::on_fd(std::move(fd));
    if (!port) return std::unexpected(port.error());
    (*port)->attached_ = (ifr.ifr_flags & IFF_DETACH_QUEUE) == 0;
    exit->ports_.push_back(std::move(*port));
  }
  if (int err = exit->open_ctl(); err != 0) return std::unexpected(err);
  PVBACK_LOG(Info, "tap %s: taken over from the data plane serving it (ifindex %d, %zu queue(s))", name.c_str(),
             exit->ifindex_, exit->ports_.size());
  return exit;
}

int TapExit::open_ctl() {
  ctl_.reset(::socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0));
  if (!ctl_) ctl_.reset(::socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0));
  if (!ctl_) return errno;
  ifreq ifr;
  copy_name(ifr, name_);
  if (::ioctl(ctl_.get(), SIOCGIFINDEX, &ifr) != 0) return errno;
  ifindex_ = ifr.ifr_ifindex;
  return 0;
}

std::vector<int> TapExit::queue_fds() const {
  std::vector<int> fds;
  for (const auto& p : ports_) fds.push_back(p->fd_.get());
  return fds;
}

int TapExit::set_persist(bool persist) {
  if (ports_.empty()) return ENODEV;
  return ::ioctl(ports_.front()->fd_.get(), TUNSETPERSIST, persist ? 1 : 0) == 0 ? 0 : errno;
}

TapExit::~TapExit() = default;  // closing the last queue fd removes the device

ExitCapabilities TapExit::capabilities() const {
  ExitCapabilities caps;
  caps.tx_csum = true;   // the kernel takes VIRTIO_NET_HDR_F_NEEDS_CSUM
  caps.tx_tso4 = true;   // and GSO packets, segmenting them if the route needs it
  caps.tx_tso6 = true;
  caps.rx_gso = true;    // it delivers GSO to us once TUNSETOFFLOAD allows
  caps.poll_mode = false;
  return caps;
}

unsigned TapExit::attached_queues() const {
  unsigned n = 0;
  for (const auto& p : ports_) n += p->attached_ ? 1 : 0;
  return n;
}

int TapExit::set_mtu(std::uint32_t mtu) {
  ifreq ifr;
  copy_name(ifr, name_);
  ifr.ifr_mtu = static_cast<int>(mtu);
  if (::ioctl(ctl_.get(), SIOCSIFMTU, &ifr) != 0) {
    const int err = errno;
    PVBACK_LOG(Error, "tap %s: SIOCSIFMTU %u: %s", name_.c_str(), mtu, std::strerror(err));
    return err;
  }
  return 0;
}

int TapExit::configure(unsigned queues, const GuestOffloads& offloads, std::uint32_t mtu) {
  if (queues == 0 || queues > ports_.size()) return EINVAL;
  // Attach first, then detach, so the device never has no queue.
  for (unsigned q = 0; q < ports_.size(); ++q) {
    TapPort& p = *ports_[q];
    if (q < queues && !p.attached_) {
      ifreq ifr;
      std::memset(&ifr, 0, sizeof ifr);
      ifr.ifr_flags = IFF_ATTACH_QUEUE;
      if (::ioctl(p.fd_.get(), TUNSETQUEUE, &ifr) != 0) {
        const int err = errno;
        PVBACK_LOG(Error, "tap %s: attach queue %u: %s", name_.c_str(), q, std::strerror(err));
        return err;
      }
      p.attached_ = true;
    }
  }
  for (unsigned q = queues; q < ports_.size(); ++q) {
    TapPort& p = *ports_[q];
    if (!p.attached_) continue;
    ifreq ifr;
    std::memset(&ifr, 0, sizeof ifr);
    ifr.ifr_flags = IFF_DETACH_QUEUE;
    if (::ioctl(p.fd_.get(), TUNSETQUEUE, &ifr) != 0) {
      const int err = errno;
      PVBACK_LOG(Error, "tap %s: detach queue %u: %s", name_.c_str(), q, std::strerror(err));
      return err;
    }
    p.attached_ = false;
  }

  // What the kernel may hand us (and we the guest). TUN_F_CSUM covers IPv4 and IPv6 alike (tun
  // has only NETIF_F_HW_CSUM): a guest with csum but not ipv6_csum may see IPv6 partial
  // checksums, which the queue completes. TSO needs csum (the kernel ignores it otherwise) and sg.
  unsigned flags = 0;
  if (offloads.csum || offloads.ipv6_csum) {
    flags |= TUN_F_CSUM;
    if (offloads.sg && offloads.gso_tcpv4) flags |= TUN_F_TSO4;
    if (offloads.sg && offloads.gso_tcpv6) flags |= TUN_F_TSO6;
  }
  if (::ioctl(ports_[0]->fd_.get(), TUNSETOFFLOAD, flags) != 0) {
    const int err = errno;
    PVBACK_LOG(Error, "tap %s: TUNSETOFFLOAD %#x: %s", name_.c_str(), flags, std::strerror(err));
    return err;
  }
  offload_flags_ = flags;
  return set_mtu(mtu);
}

void TapExit::set_link(bool up) {
  int on = up ? 1 : 0;
  // Queue 0 is always attached (configure() keeps at least one queue, the first).
  if (::ioctl(ports_[0]->fd_.get(), TUNSETCARRIER, &on) != 0)
    PVBACK_LOG_RATELIMITED(Warning, "tap %s: TUNSETCARRIER %d: %s", name_.c_str(), on, std::strerror(errno));
}

}  // namespace pvback::netback
