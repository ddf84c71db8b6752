// One request's path through a queue, from the ring to its answer, in the order it takes:
//   take      process_ring / take_one: the one read of the shared slot, into the slot's copy;
//   parse     parse_header, copy_indirect_descriptors, validate_segments (request.hpp's pure checks);
//   segments  the segment path makes its data reachable (segments.hpp);
//   storage   submit_pending / submit_*: the storage engine's channel (storage/engine.hpp);
//   complete  handle_completion: short transfers continued, a barrier's flush, errors;
//   answer    respond: the response in the ring, the recovery record told, the slot freed once the
//             answer is visible (queue.cpp's flush_responses).
#include <algorithm>
#include <cerrno>
#include <cstring>

#include "base/log.hpp"
#include "blkback/queue_impl.hpp"

namespace pvback::blkback {

// ---------------------------------------------------------------------------------------------
// Taking requests

// Returns the number of requests taken (from the ring or from a predecessor's record). A paused
// queue takes only what a predecessor's record left: those requests were taken before the pause.
std::uint32_t Queue::Impl::process_ring() {
  std::uint32_t taken = 0;
  if (recovered) {
    taken = resume_recovered();
    if (recovered) {  // the rest once bounce pages are free again
      backlog = true;
      return taken;
    }
  }
  if (paused) return taken;
  batch.clear();
  bool stalled = false;
  // The segment path hands out its pages (bounce pages) after the whole batch is taken, so the
  // take loop reserves them as it goes; a request is taken only while a largest one would fit.
  std::size_t reserved = 0;
  while (!stalled && !fatal_seen) {
    auto n = unconsumed();
    if (!n) {
      ring_overflow();
      break;
    }
    if (*n == 0) {
      if (polling()) break;  // notifications stay off until the queue is about to sleep
      auto more = final_check();
      if (!more) {
        ring_overflow();
        break;
      }
      if (!*more) break;
      continue;
    }
    for (ring::RingIdx i = 0; i < *n; ++i) {
      if (free_slots.empty() || !segments->room_for_one_more(reserved)) {
        stalled = true;
        count_waiting(*n - i);
        break;
      }
      take_one();
      reserved += segments->pages_taken(slots[batch.back()]);
    }
  }
  backlog = stalled;
  log.consumed(req_cons());
  if (batch.empty()) return taken;
  taken += static_cast<std::uint32_t>(batch.size());
  prepare_batch();
  return taken;
}

// Steps 2-3 for the requests taken into `batch`, then queues them for submission.
void Queue::Impl::prepare_batch() {
  stats.batches.add();
  maybe_purge(now_ns());
  copy_indirect_descriptors();
  for (std::uint32_t idx : batch) {
    Slot& s = slots[idx];
    if (s.status == blkif::kRspOkay) validate_segments(s);
  }
  segments->prepare(batch, slots);
  for (std::uint32_t idx : batch) {
    Slot& s = slots[idx];
    if (s.status != blkif::kRspOkay) {
      respond(idx);
      continue;
    }
    if (s.has_data()) segments->build_iov(idx, s);
    pending[(pending_head + pending_count) % ring_size] = idx;
    ++pending_count;
  }
  batch.clear();
}

// The kernel's oo_req: `waiting` requests from req_cons on stay in the ring for lack of a slot or
// bounce pages. Each is counted once, however many passes find it still waiting.
void Queue::Impl::count_waiting(ring::RingIdx waiting) {
  const ring::RingIdx from = req_cons();
  const ring::RingIdx end = from + waiting;
  // Requests before oo_counted_to were counted already (ring indexes wrap: compare distances).
  const ring::RingIdx start = oo_counted_to - from <= waiting ? oo_counted_to : from;
  stats.kernel_oo_req.add(end - start);
  oo_counted_to = end;
}

void Queue::Impl::take_one() {
  const std::uint32_t idx = free_slots.back();
  free_slots.pop_back();
  const ring::RingIdx at = req_cons();
  native::Request req = take_request();  // the one and only read of the shared slot
  notifications_armed = false;
  log.took(idx, at, req);
  take_recovered(idx, req);
}

// Starts serving `req` in slot `idx` (taken from the ring now, or by a predecessor).
void Queue::Impl::take_recovered(std::uint32_t idx, const native::Request& req) {
  ++slots_used;
  stats.in_flight.add();
  Slot& s = slots[idx];
  s.req = req;
  s.kind = Kind::Other;
  s.indirect = false;
  s.phase = Phase::Idle;
  s.reached_storage = false;
  s.status = blkif::kRspOkay;
  s.nsegs = 0;
  s.iov_count = s.iov_first = 0;
  s.offset = s.total_bytes = s.done_bytes = s.sectors = 0;
  parse_header(s);
  batch.push_back(idx);
}

void Queue::Impl::fail(Slot& s, std::int16_t status, const char* why) {
  if (s.status != blkif::kRspOkay) return;
  s.status = status;
  if (status == blkif::kRspEopnotsupp) stats.unsupported.add(); else stats.bad_requests.add();
  PVBACK_LOG_RATELIMITED(Warning, "%s: request id %llu op %u: %s", name, static_cast<unsigned long long>(s.req.id()),
                         s.req.operation(), why);
}

request::Limits Queue::Impl::limits() const {
  request::Limits l;
  const storage::Capabilities& caps = engine.capabilities();
  l.sectors = engine.sectors();  // read each time: the storage may grow while connected
  l.logical_block_size = caps.logical_block_size;
  l.max_indirect_segments = config.max_indirect_segments;
  l.read_only = caps.read_only;
  l.flush = config.flush_enabled;
  l.barrier = config.barrier_enabled;
  l.discard = config.discard_enabled;
  l.discard_supported = caps.discard;
  l.secure_discard = caps.secure_discard;
  return l;
}

void Queue::Impl::parse_header(Slot& s) {
  const request::Header h = request::parse_header(s.req, limits());
  s.kind = h.kind;
  s.indirect = h.indirect;
  if (h.status != blkif::kRspOkay) return fail(s, h.status, h.why);
  s.nsegs = h.nsegs;
  if (s.kind == Kind::Discard) {
    s.offset = h.sector << blkif::kSectorShift;
    s.sectors = h.discard_sectors;
  }
  // A direct request's descriptors are in the request; an indirect one's are copied in
  // copy_indirect_descriptors().
  if (!s.indirect)
    for (std::uint32_t i = 0; i < s.nsegs; ++i) s.segs[i] = s.req.rw.seg[i];
}

void Queue::Impl::copy_indirect_descriptors() {
  std::size_t n = 0;
  for (std::uint32_t idx : batch) {
    Slot& s = slots[idx];
    if (!s.indirect || s.status != blkif::kRspOkay) continue;
    const std::uint32_t pages = (s.nsegs + kSegsPerPage - 1) / kSegsPerPage;
    for (std::uint32_t p = 0; p < pages; ++p) {
      const std::uint32_t count = std::min(kSegsPerPage, s.nsegs - p * kSegsPerPage);
      grant::CopySegment& c = ind_segs[n];
      c = {};
      c.source.foreign.ref = s.req.indirect.indirect_grefs[p];
      c.source.foreign.domid = config.frontend_domid;
      c.source.foreign.offset = 0;
      c.dest.virt = s.segs + std::size_t{p} * kSegsPerPage;
      c.len = static_cast<std::uint16_t>(count * sizeof(blkif::Segment));
      c.flags = GNTCOPY_source_gref;
      ind_owner[n] = idx;
      ++n;
    }
  }
  if (n == 0) return;
  const int err = mapper->copy({ind_segs.data(), n});
  stats.grants_copied.add(n);
  for (std::size_t i = 0; i < n; ++i) {
    if (err != 0 || ind_segs[i].status != GNTST_okay)
      fail(slots[ind_owner[i]], blkif::kRspError, "cannot read the indirect descriptor page");
  }
}

void Queue::Impl::validate_segments(Slot& s) {
  if (!request::moves_data(s.kind)) return;
  request::Header h;
  h.kind = s.kind;
  h.indirect = s.indirect;
  h.nsegs = s.nsegs;
  h.sector = s.indirect ? s.req.indirect.sector_number : s.req.rw.sector_number;
  const request::Extent e = request::check_segments(h, {s.segs, s.nsegs}, limits());
  if (e.status != blkif::kRspOkay) return fail(s, e.status, e.why);
  s.sectors = e.sectors;
  s.total_bytes = e.sectors * blkif::kSectorSize;
  s.offset = e.offset;
}

// Reads finished together whose data the segment path still holds reach the guest together.
void Queue::Impl::finish_copybacks() {
  if (copyback.empty()) return;
  segments->copy_back(copyback, slots);
  for (std::uint32_t idx : copyback) respond(idx);
  copyback.clear();
}

// ---------------------------------------------------------------------------------------------
// Submission

void Queue::Impl::submit_pending() {
  unsubmitted = 0;
  while (pending_count != 0 && !barrier_active) {
    const std::uint32_t idx = pending[pending_head];
    Slot& s = slots[idx];
    if (s.kind == Kind::Barrier && submitted != 0) break;  // drain first
    pending_head = (pending_head + 1) % ring_size;
    --pending_count;
    if (!submit_slot(idx)) continue;
    if (s.kind == Kind::Barrier) barrier_active = true;
    // Started in small groups as the batch goes (QueueConfig::submit_batch): the first request is
    // at the disk while the others are still being built.
    if (config.submit_batch != 0 && ++unsubmitted >= config.submit_batch) {
      unsubmitted = 0;
      loop.submit();
    }
  }
}

// Starts a request's I/O; false if it was answered at once (an empty discard, or the channel
// refused it).
bool Queue::Impl::submit_slot(std::uint32_t idx) {
  Slot& s = slots[idx];
  switch (s.kind) {
    case Kind::Discard:
      return submit_discard(idx);
    case Kind::Flush:
      return submit_sync(idx);
    case Kind::Barrier:
      return s.nsegs == 0 ? submit_sync(idx) : submit_io(idx);
    case Kind::Read:
    case Kind::Write:
      return submit_io(idx);
    case Kind::Other:
      break;
  }
  respond(idx);
  return false;
}

// The channel refused the operation: answer the request with an error. Also reached when
// resubmitting the rest of a short transfer or the flush of a barrier, so undo what submission
// counted.
// The storage as a whole is gone and a successor would get it back: the request is left as it
// is, unanswered, in the recovery record.
bool Queue::Impl::storage_lost() {
  if (!config.on_storage_lost || config.recovery_path.empty()) return false;
  const int error = channel->storage_lost();
  if (error == 0) return false;
  if (!storage_lost_reported) {
    storage_lost_reported = true;
    config.on_storage_lost(error);
  }
  return true;
}

bool Queue::Impl::fail_submission(std::uint32_t idx, int error) {
  if (storage_lost()) return false;
  Slot& s = slots[idx];
  if (s.phase != Phase::Idle) --submitted;
  if (s.kind == Kind::Barrier) barrier_active = false;
  s.phase = Phase::Idle;
  if (error == EOPNOTSUPP) {
    fail(s, blkif::kRspEopnotsupp, "not supported by the storage");
  } else {
    s.status = blkif::kRspError;
    stats.io_errors.add();
    PVBACK_LOG_RATELIMITED(Warning, "%s: request id %llu: the storage refused it: %s", name,
                           static_cast<unsigned long long>(s.req.id()), std::strerror(error));
  }
  respond(idx);
  return false;
}

bool Queue::Impl::submit_io(std::uint32_t idx) {
  Slot& s = slots[idx];
  s.reached_storage = true;
  storage::Request rq;
  rq.op = s.kind == Kind::Read ? storage::Op::Read : storage::Op::Write;
  rq.offset = s.offset + s.done_bytes;
  rq.iov = s.iov + s.iov_first;
  rq.iovcnt = std::min(s.iov_count - s.iov_first, kMaxIov);
  for (std::uint32_t i = 0; i < rq.iovcnt; ++i) rq.length += rq.iov[i].iov_len;
  rq.tag = idx;
  if (int e = channel->submit(rq)) return fail_submission(idx, e);
  if (s.phase == Phase::Idle) ++submitted;
  s.phase = Phase::Io;
  return true;
}

bool Queue::Impl::submit_sync(std::uint32_t idx) {
  Slot& s = slots[idx];
  s.reached_storage = true;
  storage::Request rq;
  rq.op = storage::Op::Flush;
  rq.tag = idx;
  if (int e = channel->submit(rq)) return fail_submission(idx, e);
  if (s.phase == Phase::Idle) ++submitted;
  s.phase = Phase::Sync;
  return true;
}

// Asynchronous like any other operation: a discard of the whole disk keeps neither this queue's
// thread nor its disconnect waiting.
bool Queue::Impl::submit_discard(std::uint32_t idx) {
  Slot& s = slots[idx];
  if (s.sectors == 0) {
    respond(idx);
    return false;
  }
  s.reached_storage = true;
  storage::Request rq;
  rq.op = (s.req.discard.flag & blkif::kDiscardSecure) != 0 ? storage::Op::SecureDiscard : storage::Op::Discard;
  rq.offset = s.offset;
  rq.length = s.sectors << blkif::kSectorShift;
  rq.tag = idx;
  if (int e = channel->submit(rq)) return fail_submission(idx, e);
  ++submitted;
  s.phase = Phase::Discard;
  return true;
}

// ---------------------------------------------------------------------------------------------
// Completion

void Queue::Impl::handle_completion(std::uint32_t idx, int res) {
  if (res < 0 && storage_lost()) return;
  Slot& s = slots[idx];
  if (s.phase == Phase::Io) {
    if (res < 0) {
      PVBACK_LOG_RATELIMITED(Warning, "%s: %s at byte %llu failed: %s", name, s.kind == Kind::Read ? "read" : "write",
                             static_cast<unsigned long long>(s.offset), std::strerror(-res));
      stats.io_errors.add();
      return complete(idx, blkif::kRspError);
    }
    s.done_bytes += static_cast<std::uint64_t>(res);
    if (s.done_bytes < s.total_bytes) {
      if (res == 0) {
        PVBACK_LOG_RATELIMITED(Warning, "%s: short %s at byte %llu", name, s.kind == Kind::Read ? "read" : "write",
                               static_cast<unsigned long long>(s.offset + s.done_bytes));
        stats.io_errors.add();
        return complete(idx, blkif::kRspError);
      }
      // Short transfer (or more than IOV_MAX iovecs): advance the iovecs in place, resubmit.
      std::uint64_t left = static_cast<std::uint64_t>(res);
      while (left != 0 && left >= s.iov[s.iov_first].iov_len) left -= s.iov[s.iov_first++].iov_len;
      if (left != 0) {
        s.iov[s.iov_first].iov_base = static_cast<std::byte*>(s.iov[s.iov_first].iov_base) + left;
        s.iov[s.iov_first].iov_len -= left;
      }
      submit_io(idx);
      return;
    }
    if (s.kind == Kind::Barrier) {
      submit_sync(idx);
      return;
    }
    return complete(idx, blkif::kRspOkay);
  }
  if (s.phase == Phase::Sync) {
    if (res < 0) {
      PVBACK_LOG_RATELIMITED(Warning, "%s: fdatasync failed: %s", name, std::strerror(-res));
      stats.io_errors.add();
      return complete(idx, blkif::kRspError);
    }
    return complete(idx, blkif::kRspOkay);
  }
  if (s.phase == Phase::Discard) {
    if (res == -EOPNOTSUPP) {
      fail(s, blkif::kRspEopnotsupp, "discard not supported by the storage");
      return complete(idx, blkif::kRspEopnotsupp);
    }
    if (res < 0) {
      PVBACK_LOG_RATELIMITED(Warning, "%s: discard at byte %llu failed: %s", name,
                             static_cast<unsigned long long>(s.offset), std::strerror(-res));
      stats.io_errors.add();
      return complete(idx, blkif::kRspError);
    }
    return complete(idx, blkif::kRspOkay);
  }
}

void Queue::Impl::complete(std::uint32_t idx, std::int16_t status) {
  Slot& s = slots[idx];
  --submitted;
  if (s.kind == Kind::Barrier) barrier_active = false;
  s.phase = Phase::Idle;
  if (status != blkif::kRspOkay) s.status = status;
  if (s.kind == Kind::Read && s.status == blkif::kRspOkay && !segments->read_done_in_place()) {
    copyback.push_back(idx);
    return;
  }
  respond(idx);
}

// Linux xen-blkback's counters for a request answered now, whatever its status (stats.hpp).
void Queue::Impl::count_for_kernel(const Slot& s) {
  const std::uint64_t submitted_sectors = s.reached_storage ? s.sectors : 0;
  switch (s.kind) {
    case Kind::Read:
      stats.kernel_rd_req.add();
      stats.kernel_rd_sect.add(submitted_sectors);
      break;
    case Kind::Write:
      stats.kernel_wr_req.add();
      stats.kernel_wr_sect.add(submitted_sectors);
      break;
    case Kind::Barrier:
      stats.kernel_f_req.add();
      stats.kernel_wr_sect.add(submitted_sectors);
      break;
    case Kind::Flush:
      stats.kernel_f_req.add();
      break;
    case Kind::Discard: {
      // Linux counts a discard once xen_vbd_translate accepted it: writable, within the disk.
      const request::Limits l = limits();
      const auto& d = s.req.discard;
      if (!l.read_only && d.sector_number <= l.sectors && d.nr_sectors <= l.sectors - d.sector_number)
        stats.kernel_ds_req.add();
      break;
    }
    case Kind::Other:
      break;
  }
}

void Queue::Impl::respond(std::uint32_t idx) {
  Slot& s = slots[idx];
  segments->release(idx, s);
  if (s.status == blkif::kRspOkay) {
    switch (s.kind) {
      case Kind::Read:
        stats.reads.add();
        stats.sectors_read.add(s.sectors);
        break;
      case Kind::Write:
        stats.writes.add();
        stats.sectors_written.add(s.sectors);
        break;
      case Kind::Barrier:
        stats.barriers.add();
        stats.sectors_written.add(s.sectors);
        break;
      case Kind::Flush:
        stats.flushes.add();
        break;
      case Kind::Discard:
        stats.discards.add();
        stats.sectors_discarded.add(s.sectors);
        break;
      case Kind::Other:
        break;
    }
    if (s.indirect) stats.indirect.add();
  }
  count_for_kernel(s);
  const ring::RingIdx at = rsp_prod_pvt();
  put_response(blkif::make_response(s.req, s.status));
  log.answered(idx, at, s.status);
  responses_pending = true;
  s.kind = Kind::Other;
  s.nsegs = 0;
  unpushed.push_back(idx);  // freed by flush_responses()
  stats.in_flight.sub();
}

}  // namespace pvback::blkback
