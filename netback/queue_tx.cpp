// Queue, TX: the guest's packets to the port. See queue_impl.hpp.
//
// TX (guest -> port), one batch = every request the guest produced (at most a ring):
//   1. each slot is copied out of the ring once (TxRequest or ExtraInfo) into tx_reqs_/the
//      packet's extras and only the copy is validated (XSA-155). Rules follow Linux netback
//      (xenvif_count_requests, xenvif_get_extras): a packet is the first slot, its extra-info
//      slots, then the slots chained by kTxfMoreData. Packets of more than max_slots slots are
//      dropped, more than fatal_slots (or a chain running past req_prod, or a producer overflow)
//      disconnect the vif. Unlike Linux, a bad extra (type 0/unknown/duplicate, bad GSO) and a
//      slot crossing its page are dropped rather than fatal;
//   2. port.alloc_tx for the good packets, then ONE batched grant copy guest -> port chunks
//      (segments split at chunk boundaries; zero-length frags are never copied: XSA-448);
//   3. per segment status: a failed copy drops only its packet; offload metadata is filled, the
//      checksum completed in software if the exit cannot take it; port.transmit hands every
//      buffer back (a buffer netback gave up on goes back with length 0);
//   4. responses for every slot in ring order (extras answer kRspNull, like Linux), logged in the
//      ring's journal before the first is written (ring_journal.hpp), one push, one notify if
//      the ring asks.
// Rate limit (the `rate` key): Linux's credit scheduler. Credit `bytes` per `usec` window, at
// most max(128 KiB, bytes) accumulated; a packet larger than the remaining credit stops TX (the
// requests stay in the ring, nothing is dropped) until the window ends; the loop's poll timeout
// is that deadline.
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
// TX

void Queue::Impl::add_credit() {
  // As Linux's tx_add_credit: allow a burst of up to max(128 KiB, bytes) so that a packet larger
  // than one window's credit can still pass eventually.
  const std::uint64_t max_burst = std::max<std::uint64_t>(131072, rate.bytes);
  std::uint64_t max_credit = remaining_credit + rate.bytes;
  if (max_credit < remaining_credit) max_credit = ~std::uint64_t{0};
  remaining_credit = std::min(max_credit, max_burst);
}

bool Queue::Impl::credit_exceeded(std::uint32_t size, std::int64_t now) {
  if (credit_deadline != 0) {
    if (now < credit_deadline) return true;
    credit_deadline = 0;
    add_credit();
  }
  const std::int64_t period = static_cast<std::int64_t>(rate.usec) * 1000;
  const std::int64_t next = credit_window_start + period;
  if (now >= next) {
    credit_window_start = now;
    add_credit();
  }
  if (size > remaining_credit) {
    credit_deadline = std::max(next, now + 1);
    credit_window_start = credit_deadline;
    stats.rate_limited.add();
    return true;
  }
  return false;
}

std::uint32_t Queue::Impl::tx_respond(const TxPacket& p, std::int16_t status, std::uint32_t n) {
  tx_rsps[n++] = TxResponse{tx_reqs[p.first].id, status};
  for (unsigned e = 0; e < p.nextras; ++e) tx_rsps[n++] = TxResponse{0, netif::kRspNull};
  for (unsigned k = 1; k < p.nslots; ++k) tx_rsps[n++] = TxResponse{tx_reqs[p.first + k].id, status};
  return n;
}

bool Queue::Impl::process_tx() {
  auto pending = tx.unconsumed_requests();
  if (!pending) {
    fatal(pending.error(), "tx ring: producer index overflow");
    return false;
  }
  const ring::RingIdx avail = *pending;
  stats.tx_ring_pending.set(avail);
  if (avail == 0) return false;
  const bool limited = rate.bytes != 0 && rate.usec != 0;
  const std::int64_t now = limited ? now_ns() : 0;
  const ring::RingIdx cons = tx.req_cons();

  ring::RingIdx used = 0;
  std::uint32_t nreq = 0;
  unsigned npkts = 0;
  while (used < avail) {
    const TxRequest first = tx.copy_request(cons + used);
    if (limited && first.size > remaining_credit && credit_exceeded(first.size, now)) break;
    const tx::Packet r = tx::read_packet(tx, cons + used, avail - used, first, tx_limits, &tx_reqs[nreq]);
    switch (r.fatal) {
      case tx::Fatal::None:
        break;
      case tx::Fatal::ExtraPastEnd:
        fatal(EPROTO, "tx ring: extra info missing after the last request");
        return false;
      case tx::Fatal::DataPastEnd:
        fatal(EPROTO, "tx ring: packet continues past the last request");
        return false;
      case tx::Fatal::TooManySlots:
        PVBACK_LOG_RATELIMITED(Error, "%s: tx packet of more than %u slots", name, config.fatal_slots);
        fatal(E2BIG, "tx ring: malicious frontend, packet of too many slots");
        return false;
    }
    TxPacket& p = tx_pkts[npkts];
    p = TxPacket{};
    p.first = nreq;
    p.flags = first.flags;
    p.total = r.total;
    p.nslots = r.nslots;
    p.nextras = r.nextras;
    p.first_len = r.first_len;
    p.has_gso = r.has_gso;
    p.gso = r.gso;
    nreq += r.nslots;
    used += r.consumed;
    ++npkts;

    p.verdict = TxVerdict::Drop;
    switch (r.verdict) {
      case tx::Verdict::Control: {
        p.verdict = TxVerdict::Control;
        MacAddress mac;
        std::memcpy(mac.data(), r.mcast.addr, mac.size());
        if (r.mcast_type == netif::kExtraTypeMcastAdd) {
          if (config.multicast_control && !shared.multicast_add(mac)) p.verdict = TxVerdict::ControlFailed;
          stats.mcast_add.add();
        } else {
          if (config.multicast_control) shared.multicast_del(mac);
          stats.mcast_del.add();
        }
        break;
      }
      case tx::Verdict::TooManySlots:
        stats.tx_too_many_slots.add();
        PVBACK_LOG_RATELIMITED(Warning, "%s: tx packet of %u slots dropped (limit %u)", name, r.nslots,
                               config.max_slots);
        break;
      case tx::Verdict::BadExtra:
        stats.tx_bad_extra.add();
        PVBACK_LOG_RATELIMITED(Warning, "%s: tx packet with a bad extra-info segment dropped", name);
        break;
      case tx::Verdict::BadSize:
        stats.tx_bad_size.add();
        PVBACK_LOG_RATELIMITED(Warning, "%s: tx packet of bad size dropped (size %u, first slot %u)", name, p.total,
                               p.first_len);
        break;
      case tx::Verdict::BadOffset:
        stats.tx_bad_offset.add();
        PVBACK_LOG_RATELIMITED(Warning, "%s: tx slot crossing its page dropped", name);
        break;
      case tx::Verdict::Ok:
        p.verdict = TxVerdict::Ok;
        if (limited) remaining_credit -= std::min<std::uint64_t>(remaining_credit, p.total);
        break;
    }
  }
  if (used == 0) return false;
  tx.skip_requests(used);
  stats.batches.add();

  // Buffers from the port for the good packets.
  unsigned nbufs = 0;
  for (unsigned k = 0; k < npkts; ++k) {
    TxPacket& p = tx_pkts[k];
    if (p.verdict != TxVerdict::Ok) continue;
    PacketBuffer& b = tx_bufs[nbufs];
    b.length = p.total;
    b.meta = PacketMeta{};
    b.nr_chunks = 0;
    b.handle = nullptr;
    p.buf = static_cast<std::int32_t>(nbufs);
    tx_buf_owner[nbufs] = k;
    ++nbufs;
  }
  if (nbufs != 0 && port.alloc_tx(std::span(tx_bufs.data(), nbufs)) != 0) {
    stats.tx_no_buffers.add(nbufs);
    PVBACK_LOG_RATELIMITED(Warning, "%s: port has no buffers, %u tx packets dropped", name, nbufs);
    for (unsigned k = 0; k < npkts; ++k)
      if (tx_pkts[k].verdict == TxVerdict::Ok) tx_pkts[k].verdict = TxVerdict::Drop;
    nbufs = 0;
  }

  // One batched copy guest -> port chunks.
  std::size_t nsegs = 0;
  for (unsigned bi = 0; bi < nbufs; ++bi) {
    const std::uint32_t k = tx_buf_owner[bi];
    TxPacket& p = tx_pkts[k];
    PacketBuffer& b = tx_bufs[bi];
    unsigned c = 0;
    std::uint32_t pos = 0;
    bool short_chunks = false;
    for (unsigned s = 0; s < p.nslots && !short_chunks; ++s) {
      const TxRequest& r = tx_reqs[p.first + s];
      std::uint32_t len = s == 0 ? p.first_len : r.size;
      std::uint32_t off = r.offset;
      while (len > 0) {  // zero-length frags are never copied (XSA-448)
        while (c < b.nr_chunks && pos >= b.chunks[c].len) {
          ++c;
          pos = 0;
        }
        if (c >= b.nr_chunks || nsegs >= tx_segs.size()) {
          short_chunks = true;
          break;
        }
        const std::uint32_t n = std::min(len, b.chunks[c].len - pos);
        grant::CopySegment& seg = tx_segs[nsegs];
        seg = grant::CopySegment{};
        seg.source.foreign.ref = r.gref;
        seg.source.foreign.offset = static_cast<std::uint16_t>(off);
        seg.source.foreign.domid = config.frontend_domid;
        seg.dest.virt = b.chunks[c].data + pos;
        seg.len = static_cast<std::uint16_t>(n);
        seg.flags = GNTCOPY_source_gref;
        tx_seg_owner[nsegs++] = k;
        len -= n;
        off += n;
        pos += n;
      }
    }
    if (short_chunks) {
      // The port gave less room than asked: a port bug, not the guest's.
      PVBACK_LOG_RATELIMITED(Error, "%s: port gave %u chunks too small for %u bytes", name, b.nr_chunks, b.length);
      stats.tx_no_buffers.add();
      p.verdict = TxVerdict::Drop;
    }
  }
  if (nsegs != 0) {
    stats.grant_copy_segments.add(nsegs);
    const int err = mapper->copy(std::span(tx_segs.data(), nsegs));
    for (std::size_t s = 0; s < nsegs; ++s) {
      if (err == 0 && tx_segs[s].status == GNTST_okay) continue;
      TxPacket& p = tx_pkts[tx_seg_owner[s]];
      if (p.verdict == TxVerdict::Ok) {
        p.verdict = TxVerdict::Drop;
        stats.tx_bad_grant.add();
        PVBACK_LOG_RATELIMITED(Warning, "%s: tx grant copy from gref %u failed (status %d, error %d)", name,
                               tx_segs[s].source.foreign.ref, tx_segs[s].status, err);
      }
    }
  }

  // Metadata; buffers of dropped packets go back with length 0.
  unsigned nvalid = 0;
  for (unsigned bi = 0; bi < nbufs; ++bi) {
    TxPacket& p = tx_pkts[tx_buf_owner[bi]];
    PacketBuffer& b = tx_bufs[bi];
    if (p.verdict == TxVerdict::Ok) {
      if (p.flags & netif::kTxfCsumBlank) b.meta.csum_partial = true;
      else if (p.flags & netif::kTxfDataValidated) b.meta.csum_validated = true;
      // A GSO packet is always partial; one the guest did not mark "checksum blank" gets the
      // pseudo-header sum written in (Linux's checksum_setup recalculates it the same way).
      const bool fixup = p.has_gso && !b.meta.csum_partial;
      if (p.has_gso) {
        b.meta.gso_type = p.gso.type;
        b.meta.gso_size = p.gso.size;
        b.meta.csum_partial = true;
        b.meta.csum_validated = false;
      }
      if (b.meta.csum_partial) {
        bool ok = setup_partial_checksum(b, fixup);
        if (ok && p.has_gso) {
          // GSO must describe the packet: TCP (csum at 16), over the IP version its type names.
          // A mismatch would reach the exit's segmentation (virtio_net_hdr) as a lie.
          std::byte ip_first{};
          const unsigned version = gather(b, b.meta.l2_len, &ip_first, 1) ? std::to_integer<unsigned>(ip_first) >> 4 : 0;
          ok = b.meta.csum_offset == 16 && b.meta.l4_len != 0 &&
               version == (p.gso.type == netif::kGsoTypeTcpv4 ? 4u : 6u);
          if (!ok) stats.tx_bad_extra.add();
        } else if (ok && !caps.tx_csum) {
          ok = complete_checksum(b);
        }
        if (!ok) {
          stats.tx_bad_checksum.add();
          PVBACK_LOG_RATELIMITED(Warning, "%s: tx packet with checksum blank is not TCP/UDP over IP, dropped", name);
          p.verdict = TxVerdict::Drop;
        }
      }
    }
    if (p.verdict == TxVerdict::Ok) {
      ++nvalid;
      stats.tx_packets.add();
      stats.tx_bytes.add(b.length);
    } else {
      b.length = 0;
    }
  }
  if (nbufs != 0) {
    const unsigned sent = port.transmit(std::span(tx_bufs.data(), nbufs));
    if (sent < nvalid) stats.tx_port_dropped.add(nvalid - sent);
  }

  // One response per slot taken, in ring order: logged whole before the first reaches the ring
  // (ring_journal.hpp), so a successor never reads one back as a request.
  std::uint32_t nrsp = 0;
  for (unsigned k = 0; k < npkts; ++k) {
    const TxPacket& p = tx_pkts[k];
    const bool failed = p.verdict == TxVerdict::Drop || p.verdict == TxVerdict::ControlFailed;
    nrsp = tx_respond(p, failed ? netif::kRspError : netif::kRspOkay, nrsp);
  }
  for (std::uint32_t k = 0; k < nrsp; ++k) config.tx_journal.stage(k, tx_rsps[k]);
  config.tx_journal.commit(tx.rsp_prod_pvt(), nrsp);
  for (std::uint32_t k = 0; k < nrsp; ++k) tx.put_response(tx_rsps[k]);
  const bool notify_guest = tx.push_responses_and_check_notify();
  config.tx_journal.done();
  if (notify_guest) notify(tx_port, stats);
  stats.tx_ring_pending.set(avail - used);
  return true;
}

}  // namespace pvback::netback
