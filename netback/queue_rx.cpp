// Queue, RX: the port's packets into the guest's posted buffers. See queue_impl.hpp.
//
// RX (port -> guest): receive() fills at most kRxBatch buffers, and only when no packet of the
// previous batch still waits for guest buffers, so a queue never holds more than one batch.
// Without steering it asks for at most as many packets as the guest posted buffers. Per packet:
// multicast filter, offload checks against what the guest negotiated, slots needed (data slots of
// 4096 - xdp_headroom bytes, + a GSO extra, + a hash extra) and the plan that puts it into the
// guest's posted requests (both pure: rx_postings.hpp), then one batched grant copy into the
// guest's buffers and the responses (first data slot, extras, other data slots: Linux's order).
//
// Stall: a guest that posts fewer RX buffers than the next packet needs (none, when nothing is
// held) for rx_stall_timeout makes the queue stalled (gauge
// `stalled`, rx_stalls counted): held packets and whatever the port delivers are dropped
// (rx_stalled) until buffers appear again. The driver reads the gauge to drop the carrier.
#include <poll.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <mutex>
#include <shared_mutex>
#include <system_error>

#include "base/log.hpp"
#include "base/unique_fd.hpp"
#include "netback/headers.hpp"
#include "netback/queue_impl.hpp"

namespace pvback::netback {

using namespace queue_detail;

// ---------------------------------------------------------------------------------------------
// RX

// Checks a packet for `target`'s guest (filters, offloads), computing what it needs of the guest's
// buffers and how many slots (rx_postings.hpp). false: dropped and counted (target's RX lock held).
bool Queue::Impl::rx_acceptable(Impl& t, PacketBuffer& b, bool has_hash, rx::Needs* needs, unsigned* needed) {
  const GuestOffloads& g = t.config.guest;
  if (b.length < kEthHlen || b.length > kMaxPacketBytes) {
    t.stats.rx_too_big_for_guest.add();
    return false;
  }
  if (t.config.multicast_control) {
    MacAddress dst;
    if (gather(b, 0, reinterpret_cast<std::byte*>(dst.data()), 6) && (dst[0] & 1) != 0) {
      static constexpr MacAddress kBroadcast{0xff, 0xff, 0xff, 0xff, 0xff, 0xff};
      if (dst != kBroadcast && !shared.multicast_allowed(dst)) {
        t.stats.rx_multicast_filtered.add();
        return false;
      }
    }
  }
  unsigned extras = has_hash ? 1 : 0;
  if (b.meta.gso_type != netif::kGsoTypeNone) {
    const bool ok = (b.meta.gso_type == netif::kGsoTypeTcpv4 && g.gso_tcpv4) ||
                    (b.meta.gso_type == netif::kGsoTypeTcpv6 && g.gso_tcpv6);
    if (!ok || b.meta.gso_size == 0) {
      t.stats.rx_gso_not_negotiated.add();
      PVBACK_LOG_RATELIMITED(Warning, "%s: rx GSO packet (type %u) the guest did not negotiate, dropped", t.name,
                             b.meta.gso_type);
      return false;
    }
    ++extras;
  }
  if (b.meta.csum_partial) {
    bool guest_takes = g.csum;
    if (guest_takes && !g.ipv6_csum) {
      auto h = parse_headers(b);
      if (!h || h->ipv6) guest_takes = false;
    }
    if (!guest_takes) {
      if (b.meta.gso_type != netif::kGsoTypeNone || !complete_checksum(b)) {
        t.stats.rx_bad_checksum.add();
        return false;
      }
    }
  }
  // The headroom is vif-wide: this thread's copy (below kXenPageSize / 2).
  *needs = rx::Needs{b.length, static_cast<std::uint16_t>(xdp_headroom), extras, g.sg};
  auto slots = rx::slots_needed(*needs, t.rx.size());
  if (!slots) {
    t.stats.rx_too_big_for_guest.add();
    if (slots.error() == rx::Refusal::NeedsSg)
      PVBACK_LOG_RATELIMITED(Warning, "%s: rx packet of %u bytes for a guest without feature-sg, dropped", t.name,
                             b.length);
    return false;
  }
  *needed = *slots;
  return true;
}

// Delivers pkts[0..n) into `t`'s RX ring (t.rx_mutex held by the caller), with this thread's
// scratch and grant handle. hold: stop at the first packet that does not fit (this queue's own
// packets); otherwise such packets are dropped. Returns how many packets were resolved
// (delivered or dropped).
unsigned Queue::Impl::deliver(Impl& t, PacketBuffer* const* pkts, const RxHash* hashes, unsigned n, bool hold) {
  auto avail = t.rx.unconsumed_requests();
  if (!avail) {
    if (&t == this) fatal(avail.error(), "rx ring: producer index overflow");
    t.stats.rx_no_buffers.add(n);
    return n;
  }
  const ring::RingIdx posted = *avail;
  const ring::RingIdx cons = t.rx.req_cons();
  ring::RingIdx used = 0;
  unsigned nplans = 0;
  std::size_t nsegs = 0;
  unsigned i = 0;
  for (; i < n; ++i) {
    PacketBuffer& b = *pkts[i];
    const RxHash& h = hashes[i];
    rx::Needs needs;
    unsigned needed = 0;
    if (!rx_acceptable(t, b, h.valid, &needs, &needed)) continue;
    const rx::Plan p = rx::plan_packet(t.rx, cons + used, posted - used, needed, needs,
                                       std::span(b.chunks, std::min(b.nr_chunks, kMaxChunks)), rx_slot_plan,
                                       rx_seg_plan);
    if (p.verdict == rx::Verdict::Wait) {
      if (hold) {
        t.rx_head_needed = needed;  // what the stall check waits for
        break;
      }
      t.stats.rx_no_buffers.add();
      continue;
    }
    RxPlan& plan = rx_plans[nplans];
    // Short chunks: a port bug; the packet is answered with an error.
    plan = RxPlan{&b, used, static_cast<std::uint16_t>(needed), p.verdict == rx::Verdict::ShortChunks};
    const bool gso = b.meta.gso_type != netif::kGsoTypeNone;
    const unsigned nextras = needs.extras;
    for (std::size_t k = 0; k < p.segments; ++k) {
      const rx::Segment& from = rx_seg_plan[k];
      grant::CopySegment& seg = rx_segs[nsegs];
      seg = grant::CopySegment{};
      seg.source.virt = b.chunks[from.chunk].data + from.chunk_offset;
      seg.dest.foreign.ref = rx_slot_plan[from.slot].gref;
      seg.dest.foreign.offset = from.offset;
      seg.dest.foreign.domid = t.config.frontend_domid;
      seg.len = from.len;
      seg.flags = GNTCOPY_dest_gref;
      rx_seg_owner[nsegs++] = nplans;
    }
    for (unsigned pos = 0; pos < needed; ++pos) {
      const rx::Slot& slot = rx_slot_plan[pos];
      RxPrepared& out = rx_rsps[used + pos];
      out = RxPrepared{};
      out.plan = nplans;
      if (slot.extra) {
        out.extra = true;
        ExtraInfo& ex = out.ex;
        const bool gso_here = gso && pos == 1;
        if (gso_here) {
          ex.type = netif::kExtraTypeGso;
          ex.u.gso.size = b.meta.gso_size;
          ex.u.gso.type = b.meta.gso_type;
        } else {
          ex.type = netif::kExtraTypeHash;
          ex.u.hash.type = h.type;
          ex.u.hash.algorithm = static_cast<std::uint8_t>(netif::kHashAlgorithmToeplitz);
          ex.u.hash.value[0] = static_cast<std::uint8_t>(h.value);
          ex.u.hash.value[1] = static_cast<std::uint8_t>(h.value >> 8);
          ex.u.hash.value[2] = static_cast<std::uint8_t>(h.value >> 16);
          ex.u.hash.value[3] = static_cast<std::uint8_t>(h.value >> 24);
        }
        if (pos < nextras) ex.flags = netif::kExtraFlagMore;
        continue;
      }
      RxResponse& rsp = out.rsp;
      rsp.id = slot.id;
      rsp.offset = slot.offset;
      rsp.status = static_cast<std::int16_t>(slot.bytes);
      std::uint16_t flags = slot.more ? netif::kRxfMoreData : 0;
      if (pos == 0) {
        if (b.meta.csum_partial) flags |= netif::kRxfCsumBlank | netif::kRxfDataValidated;
        else if (b.meta.csum_validated) flags |= netif::kRxfDataValidated;
        if (nextras != 0) flags |= netif::kRxfExtraInfo;
      }
      rsp.flags = flags;
    }
    used += needed;
    ++nplans;
  }
  if (nplans != 0) {
    if (nsegs != 0) {
      stats.grant_copy_segments.add(nsegs);
      const int err = mapper->copy(std::span(rx_segs.data(), nsegs));
      for (std::size_t s = 0; s < nsegs; ++s)
        if (err != 0 || rx_segs[s].status != GNTST_okay) rx_plans[rx_seg_owner[s]].error = true;
    }
    // Logged whole in the ring's journal before the first response overwrites a request slot
    // (ring_journal.hpp): a successor never reads a response back as a buffer to fill.
    RingJournal& journal = t.config.rx_journal;
    for (ring::RingIdx r = 0; r < used; ++r) {
      RxPrepared& out = rx_rsps[r];
      if (!out.extra && rx_plans[out.plan].error) out.rsp.status = netif::kRspError;
      if (out.extra) journal.stage(r, out.ex);
      else journal.stage(r, out.rsp);
    }
    journal.commit(t.rx.rsp_prod_pvt(), used);
    for (ring::RingIdx r = 0; r < used; ++r) {
      const RxPrepared& out = rx_rsps[r];
      if (out.extra) t.rx.put_response(out.ex);
      else t.rx.put_response(out.rsp);
    }
    for (unsigned k = 0; k < nplans; ++k) {
      if (rx_plans[k].error) {
        t.stats.rx_bad_grant.add();
        PVBACK_LOG_RATELIMITED(Warning, "%s: rx grant copy into the guest failed, packet answered with an error",
                               t.name);
      } else {
        t.stats.rx_packets.add();
        t.stats.rx_bytes.add(rx_plans[k].buf->length);
      }
    }
    t.rx.skip_requests(used);
    const bool notify_guest = t.rx.push_responses_and_check_notify();
    journal.done();
    if (notify_guest) notify(t.config.split_event_channels ? t.rx_port : t.tx_port, stats);
  }
  t.stats.rx_ring_posted.set(posted - used);
  return i;
}

void Queue::Impl::drop_held_locked(Counter QueueStats::*reason) {
  if (rx_held_count != 0) (stats.*reason).add(rx_held_count);
  rx_held_first = 0;
  rx_held_count = 0;
}

void Queue::Impl::release_batch_if_done() {
  if (rx_received != 0 && rx_held_count == 0) {
    port.release(std::span(rx_bufs.data(), rx_received));
    rx_received = 0;
  }
}

// Waiting for RX buffers: asks for an event as soon as the guest posts any (req_event = prod + 1,
// as Linux's xenvif_rx_ring_slots_available does; the ring's final check would fire at once while
// the guest has posted too few for a held packet). true if buffers arrived meanwhile.
bool Queue::Impl::arm_rx_event() {
  auto* base = static_cast<std::byte*>(rx_mapping.data());
  const ring::RingIdx prod = rx.shared_req_prod();
  ring::detail::shared_index(base, ring::detail::kReqEvent).store(prod + 1, std::memory_order_relaxed);
  std::atomic_thread_fence(std::memory_order_seq_cst);
  return rx.shared_req_prod() != prod;
}

// Hash and target queue of every packet just received; delivers the other queues' packets and
// keeps this queue's in rx_held.

bool Queue::Impl::process_rx() {
  bool work = false;
  bool want_receive = false;
  ring::RingIdx posted = 0;
  {
    std::lock_guard lock(rx_mutex);
    auto avail = rx.unconsumed_requests();
    if (!avail) {
      fatal(avail.error(), "rx ring: producer index overflow");
      return false;
    }
    posted = *avail;
    stats.rx_ring_posted.set(posted);
    const std::int64_t now = now_ns();
    // Starved: fewer buffers posted than the packet at the head needs (any at all when none is
    // held). Not just "none posted": a guest that keeps one buffer posted while the head packet
    // needs three would otherwise never stall, and Dom0 would hold its packets for ever (the
    // pattern of XSA-392 / CVE-2021-28714, as Linux's xenvif_rx_queue_stalled() checks it). A
    // stall ends once the guest posts what the packet that caused it needed (its packets are
    // dropped meanwhile), not at the first buffer, or the carrier would flap.
    if (rx_held_count == 0 && !stalled) rx_head_needed = 1;
    const bool starved = posted < rx_head_needed;
    if (!starved) {
      last_rx_buffers = now;
      if (stalled) {
        stalled = false;
        stats.stalled.set(0);
        PVBACK_LOG(Notice, "%s: guest rx ready again", name);
      }
    } else if (!stalled && config.rx_stall_timeout.count() > 0 &&
               now - last_rx_buffers >= std::chrono::nanoseconds(config.rx_stall_timeout).count()) {
      stalled = true;
      stats.rx_stalls.add();
      stats.stalled.set(1);
      PVBACK_LOG_RATELIMITED(Warning, "%s: guest posted %u rx buffer(s) for %lld ms while the next packet needs %u: "
                             "stalled, dropping", name, posted, static_cast<long long>(config.rx_stall_timeout.count()),
                             rx_held_count != 0 ? rx_head_needed : 1u);
    }
    if (stalled) {
      if (rx_held_count != 0) work = true;
      drop_held_locked(&QueueStats::rx_stalled);
    } else if (rx_held_count != 0) {
      const unsigned done = deliver(*this, rx_held.data() + rx_held_first, rx_held_hash.data() + rx_held_first,
                                    rx_held_count, true);
      if (done != 0) work = true;
      rx_held_first += done;
      rx_held_count -= done;
      if (rx_held_count != 0 && fatal_seen) drop_held_locked(&QueueStats::rx_no_buffers);
    }
  }
  if (fatal_seen) return false;
  release_batch_if_done();

  if (stalled) {
    // Drain the port so nothing piles up in Dom0 while the guest does not take packets.
    for (unsigned round = 0; round < kStallDrainBatches; ++round) {
      const unsigned got = port.receive(std::span(rx_bufs.data(), kRxBatch));
      if (got == 0) break;
      work = true;
      port.release(std::span(rx_bufs.data(), got));
      std::lock_guard lock(rx_mutex);
      stats.rx_stalled.add(got);
      if (got < kRxBatch) break;
    }
    return work;
  }
  if (rx_received != 0) return work;  // still holding a batch

  const bool steering = config.group != nullptr && config.group->size() > 1 &&
                        hash.algorithm == netif::kHashAlgorithmToeplitz && hash.flags != 0;
  want_receive = steering || posted != 0;
  if (!want_receive) return work;
  const unsigned ask = steering ? kRxBatch : std::min<unsigned>(kRxBatch, posted);
  rx_received = port.receive(std::span(rx_bufs.data(), ask));
  if (rx_received == 0) return work;
  work = true;
  steer_batch();
  if (rx_held_count != 0) {
    std::lock_guard lock(rx_mutex);
    const unsigned done = deliver(*this, rx_held.data(), rx_held_hash.data(), rx_held_count, true);
    rx_held_first += done;
    rx_held_count -= done;
  }
  release_batch_if_done();
  return work;
}

}  // namespace pvback::netback
