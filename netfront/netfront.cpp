#include "netfront/netfront.hpp"

#include <poll.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>

#include "base/log.hpp"
#include "xenbus/state_wait.hpp"

namespace pvback::netfront {

namespace {

using Clock = std::chrono::steady_clock;
using ring::RingIdx;
constexpr unsigned kMaxQueues = 64;
constexpr std::uint32_t kPage = static_cast<std::uint32_t>(kXenPageSize);

void drain_events(grant::EventChannels& ev) {
  for (;;) {
    auto port = ev.pending();
    if (!port) break;
    ev.unmask(*port);
  }
}

// A TX slot holding an extra-info segment: the 8-byte segment, the rest of the 12-byte slot zeroed.
netif::TxRequest extra_slot(const netif::ExtraInfo& extra) {
  netif::TxRequest req{};
  static_assert(sizeof(extra) <= sizeof(req));
  std::memcpy(&req, &extra, sizeof extra);
  return req;
}

}  // namespace

std::string format_mac(const Mac& mac) {
  char buf[18];
  std::snprintf(buf, sizeof buf, "%02x:%02x:%02x:%02x:%02x:%02x", mac[0], mac[1], mac[2], mac[3], mac[4], mac[5]);
  return buf;
}

std::optional<Mac> parse_mac(std::string_view text) {
  // Exactly six two-digit hex bytes separated by ':' (what libxl writes).
  if (text.size() != 17) return std::nullopt;
  Mac mac{};
  auto hex = [](char c) -> int {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
  };
  for (std::size_t i = 0; i < 6; ++i) {
    const int hi = hex(text[i * 3]), lo = hex(text[i * 3 + 1]);
    if (hi < 0 || lo < 0) return std::nullopt;
    if (i < 5 && text[i * 3 + 2] != ':') return std::nullopt;
    mac[i] = static_cast<std::uint8_t>(hi * 16 + lo);
  }
  return mac;
}

std::string Negotiated::vif_name() const { return "vif" + std::to_string(self) + "." + std::to_string(handle); }

// ---------------------------------------------------------------------------------------------
// Queue

Queue::~Queue() { teardown(); }

int Queue::setup(grant::GrantSharer& sharer, const grant::Platform& platform, DomId backend, bool split) {
  auto txp = sharer.share(backend, 1, Access::ReadWrite);
  if (!txp) return txp.error();
  tx_ring_page_ = std::move(*txp);
  auto rxp = sharer.share(backend, 1, Access::ReadWrite);
  if (!rxp) return rxp.error();
  rx_ring_page_ = std::move(*rxp);
  auto tx = netif::TxRing::Front::initialise(tx_ring_page_.data(), 1);
  if (!tx) return tx.error();
  tx_ = *tx;
  auto rx = netif::RxRing::Front::initialise(rx_ring_page_.data(), 1);
  if (!rx) return rx.error();
  rx_ = *rx;

  // TX pages are only read by the backend (Linux grants them read-only); RX pages are written.
  auto txpool = sharer.share(backend, tx_.size(), Access::ReadOnly);
  if (!txpool) return txpool.error();
  tx_pool_ = std::move(*txpool);
  auto rxpool = sharer.share(backend, rx_.size(), Access::ReadWrite);
  if (!rxpool) return rxpool.error();
  rx_pool_ = std::move(*rxpool);
  tx_free_ids_.clear();
  for (std::uint32_t i = tx_.size(); i-- > 0;) tx_free_ids_.push_back(static_cast<std::uint16_t>(i));
  tx_busy_.assign(tx_.size(), 0);
  tx_in_flight_ = 0;

  events_ = platform.open_event_channels();
  if (!events_) return ENOMEM;
  auto p = events_->alloc_unbound(backend);
  if (!p) return p.error();
  tx_port_ = grant::BoundPort(*events_, *p);
  split_ = split;
  if (split) {
    auto p2 = events_->alloc_unbound(backend);
    if (!p2) return p2.error();
    rx_port_ = grant::BoundPort(*events_, *p2);
  }
  connected_ = true;
  error_ = 0;
  return 0;
}

void Queue::teardown() {
  connected_ = false;
  rx_port_.reset();
  tx_port_.reset();
  events_.reset();
  tx_pool_.reset();
  rx_pool_.reset();
  tx_ring_page_.reset();
  rx_ring_page_.reset();
  tx_ = {};
  rx_ = {};
}

int Queue::check_usable() {
  if (error_ != 0) return error_;
  if (!connected_) return ENODEV;
  return 0;
}

void Queue::mark_broken(const char* what) {
  ++stats_.protocol_errors;
  if (error_ == 0) {
    PVBACK_LOG(Error, "netfront %s q%u: %s: queue disabled", owner_->neg_.vif_name().c_str(), index_, what);
    error_ = EPROTO;
  }
}

int Queue::event_fd() const { return events_ ? events_->fd() : -1; }

std::uint32_t Queue::tx_free_slots() const {
  if (!tx_) return 0;
  return std::min<std::uint32_t>(tx_.free_requests(), static_cast<std::uint32_t>(tx_free_ids_.size()));
}

void Queue::push_tx() {
  if (tx_.push_requests_and_check_notify()) {
    ++stats_.tx_notifies;
    tx_port_.notify();
  }
}

void Queue::flush_tx() {
  if (connected_ && tx_) push_tx();
}

int Queue::send(std::span<const std::byte> frame, const TxMeta& meta, bool push) {
  if (int e = check_usable()) return e;
  const Negotiated& neg = owner_->neg_;
  const std::size_t len = frame.size();
  if (len == 0 || len > netif::kMaxTxSize) return EMSGSIZE;
  if (meta.first_offset >= kPage) return EINVAL;
  const bool gso = meta.gso_type != netif::kGsoTypeNone;
  if (gso) {
    if (meta.gso_type == netif::kGsoTypeTcpv4 ? !neg.tx_gso_tcpv4
        : meta.gso_type == netif::kGsoTypeTcpv6 ? !neg.tx_gso_tcpv6
                                                 : true)
      return EOPNOTSUPP;
    if (meta.gso_size == 0) return EINVAL;
  }
  // Layout: the first slot at first_offset, at most first_slot_bytes (or up to the page end),
  // then whole pages. No slot crosses its page.
  std::uint32_t first = kPage - meta.first_offset;
  if (meta.first_slot_bytes != 0) first = std::min<std::uint32_t>(first, meta.first_slot_bytes);
  first = std::min<std::uint32_t>(first, static_cast<std::uint32_t>(len));
  const std::uint32_t rest = static_cast<std::uint32_t>(len) - first;
  const std::uint32_t data_slots = 1 + (rest + kPage - 1) / kPage;
  if (data_slots > 1 && !neg.tx_sg) return EMSGSIZE;
  if (data_slots > netif::kNrSlotsMin) return EMSGSIZE;
  const std::uint32_t ring_slots = data_slots + (gso ? 1 : 0);
  if (tx_.free_requests() < ring_slots || tx_free_ids_.size() < data_slots) return EAGAIN;

  std::uint16_t flags = 0;
  if (meta.csum_blank) flags |= netif::kTxfCsumBlank;
  if (meta.data_validated) flags |= netif::kTxfDataValidated;
  std::size_t done = 0;
  for (std::uint32_t s = 0; s < data_slots; ++s) {
    const std::uint16_t id = tx_free_ids_.back();
    tx_free_ids_.pop_back();
    tx_busy_[id] = 1;
    ++tx_in_flight_;
    const std::uint32_t off = s == 0 ? meta.first_offset : 0;
    const std::uint32_t n = s == 0 ? first : std::min<std::uint32_t>(kPage, static_cast<std::uint32_t>(len - done));
    std::memcpy(tx_pool_.page(id) + off, frame.data() + done, n);
    netif::TxRequest req{};
    req.gref = tx_pool_.refs()[id];
    req.offset = static_cast<std::uint16_t>(off);
    req.id = id;
    if (s == 0) {
      req.flags = flags;
      if (gso) req.flags |= netif::kTxfExtraInfo;
      req.size = static_cast<std::uint16_t>(len);  // first slot: the whole frame
    } else {
      req.size = static_cast<std::uint16_t>(n);
    }
    if (s + 1 < data_slots) req.flags |= netif::kTxfMoreData;
    tx_.put_request(req);
    if (s == 0 && gso) {
      netif::ExtraInfo extra{};
      extra.type = netif::kExtraTypeGso;
      extra.flags = 0;
      extra.u.gso.size = meta.gso_size;
      extra.u.gso.type = meta.gso_type;
      extra.u.gso.pad = 0;
      extra.u.gso.features = 0;
      tx_.put_request(extra_slot(extra));
    }
    done += n;
  }
  ++stats_.tx_frames;
  stats_.tx_bytes += len;
  stats_.tx_slots += ring_slots;
  if (push) push_tx();
  return 0;
}

int Queue::send_mcast(std::uint8_t type, const Mac& mac) {
  if (int e = check_usable()) return e;
  if (tx_.free_requests() < 2 || tx_free_ids_.empty()) return EAGAIN;
  const std::uint16_t id = tx_free_ids_.back();
  tx_free_ids_.pop_back();
  tx_busy_[id] = 1;
  ++tx_in_flight_;
  // A dummy request: no data, only the extra-info segment (netif.h, multicast control).
  netif::TxRequest req{};
  req.gref = tx_pool_.refs()[id];
  req.offset = 0;
  req.flags = netif::kTxfExtraInfo;
  req.id = id;
  req.size = 0;
  tx_.put_request(req);
  netif::ExtraInfo extra{};
  extra.type = type;
  extra.flags = 0;
  std::memcpy(extra.u.mcast.addr, mac.data(), 6);
  tx_.put_request(extra_slot(extra));
  push_tx();
  return 0;
}

std::uint32_t Queue::reap_tx() {
  if (!tx_ || error_ != 0) return 0;
  std::uint32_t handled = 0;
  for (;;) {
    auto n = tx_.unconsumed_responses();
    if (!n) {
      mark_broken("TX response producer overflow");
      return handled;
    }
    for (RingIdx i = 0; i < *n; ++i) {
      const netif::TxResponse rsp = tx_.next_response();
      ++handled;
      if (rsp.status == netif::kRspNull) {
        ++stats_.tx_null;
        continue;
      }
      if (rsp.id >= tx_busy_.size() || !tx_busy_[rsp.id]) {
        ++stats_.tx_bad_response;
        PVBACK_LOG_RATELIMITED(Warning, "netfront %s q%u: TX response for inactive id %u",
                               owner_->neg_.vif_name().c_str(), index_, rsp.id);
        continue;
      }
      tx_busy_[rsp.id] = 0;
      tx_free_ids_.push_back(rsp.id);
      --tx_in_flight_;
      switch (rsp.status) {
        case netif::kRspOkay: ++stats_.tx_okay; break;
        case netif::kRspError: ++stats_.tx_error; break;
        case netif::kRspDropped: ++stats_.tx_dropped; break;
        default: ++stats_.tx_bad_response; break;
      }
    }
    auto more = tx_.final_check_for_responses();
    if (!more) {
      mark_broken("TX response producer overflow");
      return handled;
    }
    if (!*more) return handled;
  }
}

void Queue::post_rx_slot(RingIdx idx) {
  const std::uint32_t slot = idx & (rx_.size() - 1);
  netif::RxRequest req{};
  req.id = static_cast<std::uint16_t>(slot);
  req.pad = 0;
  req.gref = rx_pool_.refs()[slot];
  rx_.put_request(req);
}

void Queue::refill_rx() {
  if (!rx_posting_ || !connected_ || error_ != 0 || !rx_) return;
  if (rx_.free_requests() == 0) return;
  while (rx_.free_requests() > 0) post_rx_slot(rx_.req_prod_pvt());
  if (rx_.push_requests_and_check_notify()) {
    ++stats_.rx_notifies;
    if (split_) rx_port_.notify();
    else tx_port_.notify();
  }
}

void Queue::set_rx_posting(bool on) {
  rx_posting_ = on;
  if (on) refill_rx();
}

std::uint32_t Queue::rx_posted() const {
  if (!rx_) return 0;
  return rx_.req_prod_pvt() - rx_.rsp_cons();
}

// Consumes the responses of one frame (extras, then data slots chained by more_data), as
// xennet_get_responses/xennet_get_extras do. `available` responses are published. Returns true
// with a complete, valid frame; false if it had to be dropped (counted).
bool Queue::consume_one_rx(RxFrame& out, std::uint32_t available) {
  out.data.clear();
  out.meta = RxMeta{};
  RxMeta& meta = out.meta;
  const std::uint32_t mask = rx_.size() - 1;
  std::uint32_t used = 0;
  bool bad = false;
  bool have_gso = false;
  netif::ExtraGso gso{};

  RingIdx idx = rx_.rsp_cons();
  netif::RxResponse rsp = rx_.next_response();
  ++used;
  const RingIdx first_idx = idx;
  meta.csum_blank = rsp.flags & netif::kRxfCsumBlank;
  meta.data_validated = rsp.flags & netif::kRxfDataValidated;

  if (rsp.flags & netif::kRxfExtraInfo) {
    bool more = true;
    while (more) {
      if (used >= available) {
        ++stats_.rx_need_more_slots;
        bad = true;
        break;
      }
      const netif::ExtraInfo extra = rx_.next_response<netif::ExtraInfo>();
      ++used;
      more = extra.flags & netif::kExtraFlagMore;
      switch (extra.type) {
        case netif::kExtraTypeGso:
          have_gso = true;
          gso = extra.u.gso;
          break;
        case netif::kExtraTypeHash:
          meta.has_hash = true;
          meta.hash_type = extra.u.hash.type;
          meta.hash_algorithm = extra.u.hash.algorithm;
          meta.hash = std::uint32_t{extra.u.hash.value[0]} | std::uint32_t{extra.u.hash.value[1]} << 8 |
                      std::uint32_t{extra.u.hash.value[2]} << 16 | std::uint32_t{extra.u.hash.value[3]} << 24;
          break;
        case netif::kExtraTypeXdp:
          meta.has_xdp = true;
          meta.xdp_headroom = extra.u.xdp.headroom;
          break;
        case netif::kExtraTypeMcastAdd:
        case netif::kExtraTypeMcastDel:
          break;  // meaningless on RX; Linux accepts and ignores them too
        default:
          ++stats_.rx_bad_extra;
          bad = true;
          break;
      }
    }
  }

  std::uint32_t data_slots = 0;
  bool counted_too_many = false;
  if (!bad || used < available) {
    // Data slots: the first response, then one per more_data.
    RingIdx data_idx = first_idx;
    for (;;) {
      ++data_slots;
      if (data_slots > kMaxRxSlots && !counted_too_many) {
        ++stats_.rx_too_many_slots;
        counted_too_many = true;
        bad = true;
      }
      if (rsp.status < 0 || std::uint32_t{rsp.offset} + static_cast<std::uint32_t>(rsp.status) > kPage) {
        ++stats_.rx_bad_slot;
        bad = true;
      } else if (!bad && rsp.status > 0) {
        const std::byte* src = rx_pool_.page(data_idx & mask) + rsp.offset;
        out.data.insert(out.data.end(), src, src + rsp.status);
      }
      if (!(rsp.flags & netif::kRxfMoreData)) break;
      if (used >= available) {
        ++stats_.rx_need_more_slots;
        bad = true;
        break;
      }
      data_idx = rx_.rsp_cons();
      rsp = rx_.next_response();
      ++used;
    }
  }

  if (have_gso && !bad) {
    if (gso.size == 0 || (gso.type != netif::kGsoTypeTcpv4 && gso.type != netif::kGsoTypeTcpv6)) {
      ++stats_.rx_bad_gso;
      bad = true;
    } else {
      meta.gso_type = gso.type;
      meta.gso_size = gso.size;
    }
  }
  meta.slots = used;
  if (bad) {
    ++stats_.rx_dropped_frames;
    PVBACK_LOG_RATELIMITED(Warning, "netfront %s q%u: dropped a malformed received frame (%u slots)",
                           owner_->neg_.vif_name().c_str(), index_, used);
    return false;
  }
  ++stats_.rx_frames;
  stats_.rx_bytes += out.data.size();
  return true;
}

bool Queue::receive(RxFrame& out) {
  if (check_usable() != 0 || !rx_) return false;
  for (;;) {
    auto n = rx_.unconsumed_responses();
    if (!n) {
      mark_broken("RX response producer overflow");
      return false;
    }
    if (*n == 0) {
      refill_rx();
      auto more = rx_.final_check_for_responses();
      if (!more) {
        mark_broken("RX response producer overflow");
        return false;
      }
      if (!*more) return false;
      continue;
    }
    const bool ok = consume_one_rx(out, *n);
    refill_rx();
    if (ok) return true;
  }
}

bool Queue::poll_events() {
  if (!events_) return false;
  bool any = false;
  for (;;) {
    auto port = events_->pending();
    if (!port) break;
    any = true;
    events_->unmask(*port);
  }
  return any;
}

int Queue::wait(std::chrono::milliseconds timeout) {
  if (int e = check_usable()) return e;
  auto t = tx_.final_check_for_responses();
  auto r = rx_.final_check_for_responses();
  if (!t || !r) {
    mark_broken("response producer overflow");
    return error_;
  }
  if (*t || *r) return 0;
  pollfd p{events_->fd(), POLLIN, 0};
  int n = ::poll(&p, 1, static_cast<int>(timeout.count()));
  if (n < 0) return errno;
  if (n == 0) return ETIMEDOUT;
  poll_events();
  return 0;
}

// ---------------------------------------------------------------------------------------------
// NetFront

std::string NetFront::frontend_path_for(DomId self, unsigned handle) {
  return "/local/domain/" + std::to_string(self) + "/device/vif/" + std::to_string(handle);
}

std::expected<std::unique_ptr<NetFront>, int> NetFront::attach(const grant::Platform& platform,
                                                               const std::string& frontend_path,
                                                               const Options& options) {
  std::unique_ptr<NetFront> front(new NetFront(platform, options));
  if (int e = front->do_attach(frontend_path)) return std::unexpected(e);
  return front;
}

NetFront::~NetFront() {
  if (!closed_ && state_ != XenbusStateInitialising) detach();
  for (auto& q : queues_) q->teardown();
  ctrl_port_.reset();
  ctrl_events_.reset();
  ctrl_ring_page_.reset();
  ctrl_data_.reset();
  if (watching_) xs_.unwatch(neg_.backend_path + "/state", watch_token_);
}

int NetFront::write_state(xenbus::State s) {
  int e = xs_.write(neg_.frontend_path + "/state", std::to_string(static_cast<int>(s)));
  if (e == 0) state_ = s;
  return e;
}

int NetFront::wait_backend_state(std::initializer_list<xenbus::State> wanted, std::chrono::milliseconds timeout,
                                 bool fail_on_closing) {
  if (fail_on_closing)
    return xenbus::wait_for_state(xs_, neg_.backend_path + "/state", wanted, {XenbusStateClosing, XenbusStateClosed}, timeout, &backend_state_);
  return xenbus::wait_for_state(xs_, neg_.backend_path + "/state", wanted, {}, timeout, &backend_state_);
}

void NetFront::read_backend_features() {
  const std::string be = neg_.backend_path + "/";
  auto flag = [&](const char* key) { return xs_.read_uint(be + key, UINT32_MAX).value_or(0) != 0; };
  BackendFeatures& f = neg_.backend;
  auto mq = xs_.read_uint(be + "multi-queue-max-queues", UINT32_MAX);
  f.multi_queue_key = xs_.exists(be + "multi-queue-max-queues").value_or(false);
  f.max_queues = mq ? static_cast<unsigned>(*mq) : 0;
  f.split_event_channels = flag("feature-split-event-channels");
  f.ctrl_ring = flag("feature-ctrl-ring");
  f.rx_copy = flag("feature-rx-copy");
  f.rx_flip = flag("feature-rx-flip");
  f.sg = flag("feature-sg");
  f.gso_tcpv4 = flag("feature-gso-tcpv4");
  f.gso_tcpv6 = flag("feature-gso-tcpv6");
  f.gso_tcpv4_prefix = flag("feature-gso-tcpv4-prefix");
  f.ipv6_csum_offload = flag("feature-ipv6-csum-offload");
  f.no_csum_offload = flag("feature-no-csum-offload");
  f.multicast_control = flag("feature-multicast-control");
  f.dynamic_multicast_control = flag("feature-dynamic-multicast-control");
  f.xdp_headroom = flag("feature-xdp-headroom");
}

int NetFront::setup_ctrl() {
  auto page = sharer_->share(neg_.backend_id, 1, Access::ReadWrite);
  if (!page) return page.error();
  ctrl_ring_page_ = std::move(*page);
  auto r = netif::CtrlRing::Front::initialise(ctrl_ring_page_.data(), 1);
  if (!r) return r.error();
  ctrl_ = *r;
  // One page for hash keys and mapping tables; the backend only reads it.
  auto data = sharer_->share(neg_.backend_id, 1, Access::ReadOnly);
  if (!data) return data.error();
  ctrl_data_ = std::move(*data);
  ctrl_events_ = platform_.open_event_channels();
  if (!ctrl_events_) return ENOMEM;
  auto port = ctrl_events_->alloc_unbound(neg_.backend_id);
  if (!port) return port.error();
  ctrl_port_ = grant::BoundPort(*ctrl_events_, *port);
  return 0;
}

int NetFront::publish() {
  const std::string fe = neg_.frontend_path;
  return xs_.transact([&](xenbus::Txn t) -> int {
    // Remove what an earlier attach with other parameters may have left behind.
    if (auto dir = xs_.directory(fe, t)) {
      for (const auto& name : *dir) {
        if (name.ends_with("ring-ref") || name.starts_with("queue-") || name.starts_with("event-channel") ||
            name == "multi-queue-num-queues" || name.starts_with("request-") || name.starts_with("feature-") ||
            name == "xdp-headroom") {
          if (int e = xs_.rm(fe + "/" + name, t)) return e;
        }
      }
    }
    auto w = [&](const std::string& path, const std::string& value) { return xs_.write(path, value, t); };
    const unsigned nq = static_cast<unsigned>(queues_.size());
    // As Linux: the count is written whenever the backend speaks multi-queue, even for one queue.
    if (neg_.backend.multi_queue_key) {
      if (int e = w(fe + "/multi-queue-num-queues", std::to_string(nq))) return e;
    }
    for (unsigned i = 0; i < nq; ++i) {
      Queue& q = *queues_[i];
      const std::string dir = nq > 1 ? fe + "/queue-" + std::to_string(i) : fe;
      if (int e = w(dir + "/tx-ring-ref", std::to_string(q.tx_ring_ref()))) return e;
      if (int e = w(dir + "/rx-ring-ref", std::to_string(q.rx_ring_ref()))) return e;
      if (q.split()) {
        if (int e = w(dir + "/event-channel-tx", std::to_string(q.tx_port()))) return e;
        if (int e = w(dir + "/event-channel-rx", std::to_string(q.rx_port()))) return e;
      } else {
        if (int e = w(dir + "/event-channel", std::to_string(q.tx_port()))) return e;
      }
    }
    const std::pair<const char*, bool> features[] = {
        {"request-rx-copy", true},
        {"feature-rx-notify", true},
        {"feature-sg", options_.sg},
        {"feature-gso-tcpv4", options_.gso_tcpv4},
        {"feature-gso-tcpv6", options_.gso_tcpv6},
        {"feature-ipv6-csum-offload", options_.ipv6_csum_offload},
    };
    for (const auto& [key, on] : features)
      if (int e = w(fe + "/" + key, on ? "1" : "0")) return e;
    if (!options_.csum_offload) {
      if (int e = w(fe + "/feature-no-csum-offload", "1")) return e;
    }
    if (neg_.ctrl_ring) {
      if (int e = w(fe + "/ctrl-ring-ref", std::to_string(ctrl_ring_page_.refs()[0]))) return e;
      if (int e = w(fe + "/event-channel-ctrl", std::to_string(ctrl_port_.port()))) return e;
    }
    if (neg_.multicast_control) {
      if (int e = w(fe + "/request-multicast-control", "1")) return e;
    }
    if (neg_.xdp_headroom_written) {
      if (int e = w(fe + "/xdp-headroom", std::to_string(neg_.xdp_headroom))) return e;
    }
    return 0;
  });
}

int NetFront::do_attach(const std::string& frontend_path) {
  neg_.frontend_path = frontend_path;
  neg_.self = platform_.config().self;
  auto xs = xenbus::XenStore::open(platform_.config().xenstore_path());
  if (!xs) {
    PVBACK_LOG(Error, "netfront: cannot open XenStore: %s", std::strerror(xs.error()));
    return xs.error();
  }
  xs_ = std::move(*xs);
  if (auto h = xs_.read_uint(frontend_path + "/handle", UINT32_MAX)) {
    neg_.handle = static_cast<std::uint32_t>(*h);
  } else {
    auto slash = frontend_path.rfind('/');
    auto devid = xenbus::parse_uint(std::string_view(frontend_path).substr(slash + 1), UINT32_MAX);
    neg_.handle = devid ? static_cast<std::uint32_t>(*devid) : 0;
  }
  const std::string name = neg_.vif_name();
  auto backend = xs_.read(frontend_path + "/backend");
  if (!backend) {
    PVBACK_LOG(Error, "netfront %s: no backend node under %s: %s", name.c_str(), frontend_path.c_str(),
               std::strerror(backend.error()));
    return backend.error();
  }
  neg_.backend_path = *backend;
  auto backend_id = xs_.read_uint(frontend_path + "/backend-id", 0xffff);
  if (!backend_id) return backend_id.error();
  neg_.backend_id = static_cast<DomId>(*backend_id);
  // The MAC is the toolstack's, in our own node (xen_net_read_mac).
  auto mac_text = xs_.read(frontend_path + "/mac");
  std::optional<Mac> mac;
  if (mac_text) mac = parse_mac(*mac_text);
  if (!mac) {
    PVBACK_LOG(Error, "netfront %s: no valid %s/mac", name.c_str(), frontend_path.c_str());
    return EINVAL;
  }
  neg_.mac = *mac;

  watch_token_ = "netfront:" + frontend_path;
  if (int e = xs_.watch(neg_.backend_path + "/state", watch_token_)) return e;
  watching_ = true;
  if (int e = write_state(XenbusStateInitialising)) return e;

  auto fail = [&](int e, const char* what) {
    PVBACK_LOG(Error, "netfront %s: %s: %s", name.c_str(), what, std::strerror(e));
    if (state_ != XenbusStateInitialising) {
      write_state(XenbusStateClosing);
      write_state(XenbusStateClosed);
    }
    for (auto& q : queues_) q->teardown();
    closed_ = true;
    return e;
  };

  if (int e = wait_backend_state({XenbusStateInitWait, XenbusStateConnected}, options_.connect_timeout, false))
    return fail(e, "waiting for the backend's InitWait");
  read_backend_features();
  const BackendFeatures& bf = neg_.backend;
  if (options_.require_rx_copy && !bf.rx_copy) return fail(ENODEV, "backend does not support feature-rx-copy");

  neg_.num_queues = std::max(1u, std::min({options_.max_queues, std::max(bf.max_queues, 1u), kMaxQueues}));
  neg_.split_event_channels = options_.split_event_channels && bf.split_event_channels;
  neg_.ctrl_ring = options_.ctrl_ring && bf.ctrl_ring;
  neg_.multicast_control = options_.multicast_control && (bf.multicast_control || bf.dynamic_multicast_control);
  if (bf.xdp_headroom) {
    neg_.xdp_headroom_written = true;
    neg_.xdp_headroom = options_.xdp ? options_.xdp_headroom : 0;
  }
  neg_.tx_sg = options_.sg && bf.sg;
  neg_.tx_gso_tcpv4 = neg_.tx_sg && bf.gso_tcpv4;
  neg_.tx_gso_tcpv6 = neg_.tx_sg && bf.gso_tcpv6;
  neg_.tx_ipv6_csum = bf.ipv6_csum_offload;

  sharer_ = platform_.open_sharer();
  if (!sharer_) return fail(ENOMEM, "opening the grant sharer");
  for (unsigned i = 0; i < neg_.num_queues; ++i) {
    queues_.push_back(std::unique_ptr<Queue>(new Queue(*this, i)));
    queues_.back()->rx_posting_ = options_.post_rx_buffers;
    if (int e = queues_.back()->setup(*sharer_, platform_, neg_.backend_id, neg_.split_event_channels))
      return fail(e, "setting up a queue");
  }
  neg_.tx_ring_size = queues_[0]->tx_.size();
  neg_.rx_ring_size = queues_[0]->rx_.size();
  if (neg_.ctrl_ring) {
    if (int e = setup_ctrl()) return fail(e, "setting up the control ring");
  }
  if (int e = publish()) return fail(e, "writing ring details");
  // Linux netfront posts its RX buffers and goes straight to Connected (no Initialised).
  for (auto& q : queues_) q->refill_rx();
  if (int e = write_state(XenbusStateConnected)) return fail(e, "switching to Connected");
  if (int e = wait_backend_state({XenbusStateConnected}, options_.connect_timeout, true))
    return fail(e, "waiting for the backend's Connected");
  connected_ = true;
  // As xennet_connect: kick the backend once, it may have missed requests queued meanwhile.
  for (auto& q : queues_) {
    q->notify_tx();
    if (q->split()) q->notify_rx();
  }
  PVBACK_LOG(Info,
             "netfront %s: connected to %s (domain %u): mac %s, %u queue(s), %s event channel(s), sg %s, "
             "gso v4/v6 %s/%s, ctrl ring %s",
             name.c_str(), neg_.backend_path.c_str(), neg_.backend_id, format_mac(neg_.mac).c_str(), neg_.num_queues,
             neg_.split_event_channels ? "split" : "single", neg_.tx_sg ? "on" : "off",
             neg_.tx_gso_tcpv4 ? "on" : "off", neg_.tx_gso_tcpv6 ? "on" : "off", neg_.ctrl_ring ? "on" : "off");
  return 0;
}

int NetFront::process_xenstore() {
  if (closed_) return ENODEV;
  bool changed = false;
  while (auto ev = xs_.read_watch())
    if (ev->token == watch_token_) changed = true;
  if (!changed) return connected_ ? 0 : ENODEV;
  auto v = xs_.read(neg_.backend_path + "/state");
  std::optional<xenbus::State> s;
  if (v) s = xenbus::parse_state(*v);
  if (s) backend_state_ = *s;
  const bool gone = (!v && v.error() == ENOENT) || (s && (*s == XenbusStateClosing || *s == XenbusStateClosed));
  if (gone && connected_) {
    PVBACK_LOG(Notice, "netfront %s: backend is %s", neg_.vif_name().c_str(),
               s ? std::string(xenbus::state_name(*s)).c_str() : "gone");
    connected_ = false;
  }
  return connected_ ? 0 : ENODEV;
}

int NetFront::detach() {
  if (closed_) return 0;
  int result = 0;
  connected_ = false;
  for (auto& q : queues_) q->connected_ = false;
  if (state_ != XenbusStateInitialising) {
    write_state(XenbusStateClosing);
    result = wait_backend_state({XenbusStateClosing, XenbusStateClosed}, options_.close_timeout, false);
    write_state(XenbusStateClosed);
    // Grants are ended once the backend let go of them (it unmaps when we are Closed).
    if (result == 0) result = wait_backend_state({XenbusStateClosed}, options_.close_timeout, false);
    if (result != 0)
      PVBACK_LOG(Warning, "netfront %s: backend did not close: %s", neg_.vif_name().c_str(), std::strerror(result));
  }
  for (auto& q : queues_) q->teardown();
  ctrl_port_.reset();
  ctrl_events_.reset();
  ctrl_ring_page_.reset();
  ctrl_data_.reset();
  ctrl_ = {};
  if (state_ != XenbusStateClosed) write_state(XenbusStateClosed);
  closed_ = true;
  PVBACK_LOG(Info, "netfront %s: closed", neg_.vif_name().c_str());
  return result;
}

int NetFront::set_multicast_control(bool on) {
  if (!connected_) return ENODEV;
  if (!neg_.backend.dynamic_multicast_control) return EOPNOTSUPP;
  int e = xs_.write(neg_.frontend_path + "/request-multicast-control", on ? "1" : "0");
  if (e == 0) neg_.multicast_control = on;
  return e;
}

// ---------------------------------------------------------------------------------------------
// Control ring

std::expected<NetFront::CtrlResult, int> NetFront::ctrl_request(std::uint16_t type, std::uint32_t d0,
                                                                std::uint32_t d1, std::uint32_t d2) {
  if (!neg_.ctrl_ring || !ctrl_) return std::unexpected(EOPNOTSUPP);
  if (!connected_) return std::unexpected(ENODEV);
  if (ctrl_.full()) return std::unexpected(EAGAIN);
  netif::CtrlRequest req{};
  req.id = ctrl_next_id_++;
  req.type = type;
  req.data[0] = d0;
  req.data[1] = d1;
  req.data[2] = d2;
  ctrl_.put_request(req);
  if (ctrl_.push_requests_and_check_notify()) ctrl_port_.notify();
  const auto deadline = Clock::now() + options_.ctrl_timeout;
  for (;;) {
    auto n = ctrl_.unconsumed_responses();
    if (!n) return std::unexpected(EPROTO);
    if (*n > 0) {
      const netif::CtrlResponse rsp = ctrl_.next_response();
      if (rsp.id != req.id || rsp.type != type) {
        PVBACK_LOG_RATELIMITED(Warning, "netfront %s: control response id %u type %u for request id %u type %u",
                               neg_.vif_name().c_str(), rsp.id, rsp.type, req.id, type);
        return std::unexpected(EPROTO);
      }
      return CtrlResult{rsp.status, rsp.data};
    }
    auto more = ctrl_.final_check_for_responses();
    if (!more) return std::unexpected(EPROTO);
    if (*more) continue;
    if (Clock::now() >= deadline) return std::unexpected(ETIMEDOUT);
    pollfd p{ctrl_events_->fd(), POLLIN, 0};
    if (int e = xenbus::poll_until(&p, 1, deadline); e != 0 && e != EINTR) return std::unexpected(e);
    drain_events(*ctrl_events_);
  }
}

std::expected<NetFront::CtrlResult, int> NetFront::set_hash_algorithm(std::uint32_t algorithm) {
  return ctrl_request(netif::kCtrlTypeSetHashAlgorithm, algorithm);
}

std::expected<NetFront::CtrlResult, int> NetFront::get_hash_flags() {
  return ctrl_request(netif::kCtrlTypeGetHashFlags);
}

std::expected<NetFront::CtrlResult, int> NetFront::set_hash_flags(std::uint32_t flags) {
  return ctrl_request(netif::kCtrlTypeSetHashFlags, flags);
}

std::expected<NetFront::CtrlResult, int> NetFront::set_hash_key(std::span<const std::uint8_t> key) {
  if (!ctrl_data_) return std::unexpected(EOPNOTSUPP);
  if (key.size() > kXenPageSize) return std::unexpected(EINVAL);
  std::memset(ctrl_data_.page(0), 0, kXenPageSize);
  if (!key.empty()) std::memcpy(ctrl_data_.page(0), key.data(), key.size());
  return ctrl_request(netif::kCtrlTypeSetHashKey, ctrl_data_.refs()[0], static_cast<std::uint32_t>(key.size()));
}

std::expected<NetFront::CtrlResult, int> NetFront::get_hash_mapping_size() {
  return ctrl_request(netif::kCtrlTypeGetHashMappingSize);
}

std::expected<NetFront::CtrlResult, int> NetFront::set_hash_mapping_size(std::uint32_t entries) {
  return ctrl_request(netif::kCtrlTypeSetHashMappingSize, entries);
}

std::expected<NetFront::CtrlResult, int> NetFront::set_hash_mapping(std::span<const std::uint32_t> table,
                                                                    std::uint32_t offset) {
  if (!ctrl_data_) return std::unexpected(EOPNOTSUPP);
  if (table.size_bytes() > kXenPageSize) return std::unexpected(EINVAL);
  std::memset(ctrl_data_.page(0), 0, kXenPageSize);
  if (!table.empty()) std::memcpy(ctrl_data_.page(0), table.data(), table.size_bytes());
  return ctrl_request(netif::kCtrlTypeSetHashMapping, ctrl_data_.refs()[0], static_cast<std::uint32_t>(table.size()),
                      offset);
}

}  // namespace pvback::netfront
