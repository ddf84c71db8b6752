#include "netback/vif_rings.hpp"

#include <cerrno>
#include <cstring>

#include "base/log.hpp"

namespace pvback::netback {

VifRecordKey record_key(const VifRingsSpec& spec) {
  VifRecordKey key;
  key.frontend_domid = spec.frontend_domid;
  for (const QueueConfig& q : spec.queues)
    key.queues.push_back({q.tx_ring_ref, q.rx_ring_ref, q.tx_event_channel,
                          q.split_event_channels ? q.rx_event_channel : q.tx_event_channel});
  if (spec.ctrl) {
    key.ctrl = true;
    key.ctrl_ref = spec.ctrl->ring_ref;
    key.ctrl_port = spec.ctrl->event_channel;
  }
  return key;
}

std::expected<std::unique_ptr<VifRings>, int> VifRings::create(const grant::Platform& platform, VifRingsSpec spec,
                                                               std::span<Port* const> ports,
                                                               std::span<QueueStats* const> stats, int record_fd,
                                                               Queue::FatalHandler on_fatal) {
  const char* name = spec.name.c_str();
  const auto n = static_cast<unsigned>(spec.queues.size());
  if (n == 0 || ports.size() < n || stats.size() < n) {
    PVBACK_LOG(Error, "%s: %u queue(s) for %zu port(s) and %zu statistics", name, n, ports.size(), stats.size());
    return std::unexpected(EINVAL);
  }
  std::unique_ptr<VifRings> v(new VifRings());
  auto record = VifRecord::map(record_fd, n);
  if (!record) {
    PVBACK_LOG(Error, "%s: cannot map the vif's record: %s", name, std::strerror(record.error()));
    return std::unexpected(record.error());
  }
  v->record_ = std::move(*record);
  std::string why;
  v->resumed_ = v->record_->begin(record_key(spec), spec.resume, why);
  if (spec.resume && !v->resumed_)
    PVBACK_LOG(Notice, "%s: not resuming from the record (%s): the rings are taken from their rsp_prod", name,
               why.c_str());

  v->shared_ = std::make_unique<VifShared>(n);
  v->group_ = std::make_unique<QueueGroup>(n);
  v->shared_->set_rate(spec.rate);
  v->shared_->set_multicast_control(spec.multicast_control);
  if (auto saved = v->resumed_ ? v->record_->guest_state() : std::nullopt) v->shared_->restore(*saved);
  // From here on every change the guest makes is in the record before the guest hears of it.
  v->shared_->persist_to(v->record_.get());

  for (unsigned i = 0; i < n; ++i) {
    QueueConfig c = spec.queues[i];
    c.group = v->group_.get();
    c.tx_journal = RingJournal(v->record_->tx_journal(i));
    c.rx_journal = RingJournal(v->record_->rx_journal(i));
    auto q = Queue::create(platform, std::move(c), *ports[i], *v->shared_, *stats[i], on_fatal);
    if (!q) {
      PVBACK_LOG(Error, "%s: queue %u: cannot map the rings or bind the event channels: %s", name, i,
                 std::strerror(q.error()));
      return std::unexpected(q.error());
    }
    v->queues_.push_back(std::move(*q));
  }
  if (spec.ctrl) {
    ControlRingConfig c = *spec.ctrl;
    c.journal = RingJournal(v->record_->ctrl_journal());
    auto ctrl = ControlRing::create(platform, std::move(c), *v->shared_, on_fatal);
    if (!ctrl) {
      PVBACK_LOG(Error, "%s: cannot map the control ring or bind its event channel: %s", name,
                 std::strerror(ctrl.error()));
      return std::unexpected(ctrl.error());
    }
    v->ctrl_ = std::move(*ctrl);
  }
  v->spec_ = std::move(spec);
  return v;
}

int VifRings::start() {
  for (std::size_t i = 0; i < queues_.size(); ++i)
    if (int e = queues_[i]->attach()) {
      PVBACK_LOG(Error, "%s: queue %zu: cannot take its rings: %s", spec_.name.c_str(), i, std::strerror(e));
      return e;
    }
  if (ctrl_)
    if (int e = ctrl_->attach()) {
      PVBACK_LOG(Error, "%s: cannot take the control ring: %s", spec_.name.c_str(), std::strerror(e));
      return e;
    }
  for (auto& q : queues_) threads_.emplace_back([queue = q.get()] { queue->run(); });
  if (ctrl_) threads_.emplace_back([ctrl = ctrl_.get()] { ctrl->run(); });
  return 0;
}

VifRings::~VifRings() {
  if (ctrl_) ctrl_->stop();
  for (auto& q : queues_) q->stop();
  for (auto& t : threads_) t.join();
  ctrl_.reset();
  queues_.clear();
  group_.reset();  // after the queues registered in it
}

}  // namespace pvback::netback
