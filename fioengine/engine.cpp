// The fio engine's pvback side (pvback_fio.h): fio jobs as one simulated (or real) guest's blkfront.
//
// One frontend (blkfront::BlkFront) per vbd per process, shared by the jobs of this fio that name
// it, each job driving a queue of its own from its own thread: fio's numjobs become the vbd's
// queues, as a guest's CPUs become blk-mq's hardware queues. A job's fio buffers are pages granted
// to the backend once (BlkFront::share_pages), so reads and writes move between the backend and
// fio's memory with no copy (Queue::submit_*_granted); with persistent grants the backend keeps
// them mapped, as Linux blkback does with a frontend's persistent pool.
//
// Locks: a job touches only its own queue, under that queue's lock (never contended but at an
// unplug or resize); whatever concerns the whole frontend (the XenStore watch, sharing pages) runs
// under the device lock plus every queue's lock, as BlkFront's threading contract asks.
#include <poll.h>
#include <stdlib.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstdarg>
#include <cstdio>
#include <cstring>
#include <deque>
#include <exception>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <tuple>
#include <utility>
#include <vector>

#include "base/log.hpp"
#include "blkfront/blkfront.hpp"
#include "fioengine/pvback_fio.h"
#include "grant/platform.hpp"
#include "xenbus/state_wait.hpp"
#include "xenbus/xenstore.hpp"

namespace pvback::fioengine {
namespace {

using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;
constexpr std::size_t kPage = kXenPageSize;
constexpr auto kProbeTimeout = 10s;

// The message for fio (err) and the log.
[[gnu::format(printf, 2, 3)]] void fail(char* err, const char* fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  std::vsnprintf(err, PVBACK_FIO_ERR, fmt, ap);
  va_end(ap);
  // The log's lines already name the program.
  constexpr std::string_view kPrefix = "pvback: ";
  PVBACK_LOG(Error, "%s", std::string_view(err).starts_with(kPrefix) ? err + kPrefix.size() : err);
}

void init_logging() {
  static std::once_flag once;
  std::call_once(once, [] {
    log::set_program("pvback-fio");
    // fio's own output is what a user reads: only trouble unless PVBACK_LOG_LEVEL asks for more.
    if (std::getenv("PVBACK_LOG_LEVEL") == nullptr) log::set_min_level(log::Level::Warning);
  });
}

// A vbd name as pvback_fio.h describes it: the frontend path and the domain acting as the guest.
struct Target {
  std::string frontend_path;
  grant::PlatformConfig config;
  std::string label;  // "vbd 1/51712", for messages
};

std::optional<unsigned> xvd_devid(std::string_view name) {
  // Linux's xvd numbering (major 202, 16 minors a disk): xvda..xvdp.
  if (name.size() == 4 && name.starts_with("xvd") && name[3] >= 'a' && name[3] <= 'p')
    return (202u << 8) | (static_cast<unsigned>(name[3] - 'a') << 4);
  return std::nullopt;
}

int resolve(const char* name, Target& t, char* err) {
  std::string_view n(name);
  try {
    t.config = grant::PlatformConfig::from_env();
  } catch (const std::exception& e) {
    fail(err, "pvback: %s", e.what());
    return EINVAL;
  }
  const bool domid_set = std::getenv("PVBACK_DOMID") != nullptr;
  constexpr std::string_view kPrefix = "/local/domain/";
  std::optional<std::uint64_t> domid, devid;
  if (n.starts_with(kPrefix)) {
    const auto rest = n.substr(kPrefix.size());
    const auto slash = rest.find('/');
    constexpr std::string_view kMiddle = "/device/vbd/";
    if (slash != std::string_view::npos && rest.substr(slash, kMiddle.size()) == kMiddle) {
      if (auto d = xenbus::parse_uint(rest.substr(0, slash), 0x7FEF)) domid = *d;
      if (auto d = xenbus::parse_uint(rest.substr(slash + kMiddle.size()), UINT32_MAX)) devid = *d;
    }
    if (!domid || !devid) {
      fail(err, "pvback: '%s' is not a frontend path /local/domain/<domid>/device/vbd/<devid>", name);
      return EINVAL;
    }
    if (domid_set && *domid != t.config.self) {
      fail(err, "pvback: '%s' is domain %u's vbd, but PVBACK_DOMID is %u", name, static_cast<unsigned>(*domid),
           t.config.self);
      return EINVAL;
    }
    t.config.self = static_cast<DomId>(*domid);
  } else {
    if (auto x = xvd_devid(n)) devid = *x;
    else if (auto d = xenbus::parse_uint(n, UINT32_MAX)) devid = *d;
    if (!devid) {
      fail(err,
           "pvback: filename '%s' names no vbd: give a devid (51712), xvda..xvdp, or a frontend path "
           "(/local/domain/1/device/vbd/51712)",
           name);
      return EINVAL;
    }
    if (!domid_set) {
      fail(err, "pvback: filename '%s' is a devid: set PVBACK_DOMID to the guest's domain (or give the frontend path)",
           name);
      return EINVAL;
    }
  }
  t.frontend_path = blkfront::BlkFront::frontend_path_for(t.config.self, static_cast<unsigned>(*devid));
  t.label = "vbd " + std::to_string(t.config.self) + "/" + std::to_string(*devid);
  return 0;
}

// One frontend on a vbd, shared by this process's jobs on it.
class Device {
 public:
  Device(Target target, grant::Platform platform) : target_(std::move(target)), platform_(std::move(platform)) {}
  ~Device() {
    if (front_) {
      if (int e = front_->detach())
        PVBACK_LOG(Warning, "%s: detach: %s", label().c_str(), std::strerror(e));
    }
    retired_.clear();  // the backend has let go of them (Closed), or gave up: see detach()
    front_.reset();
  }
  Device(const Device&) = delete;
  Device& operator=(const Device&) = delete;

  int attach(const blkfront::Options& options, char* err) {
    try {
      auto front = blkfront::BlkFront::attach(platform_, target_.frontend_path, options);
      if (!front) {
        fail(err, "pvback: %s: cannot attach to %s: %s", label().c_str(), target_.frontend_path.c_str(),
             std::strerror(front.error()));
        return front.error();
      }
      front_ = std::move(*front);
    } catch (const std::exception& e) {  // the platform's handles throw when the hypervisor is absent
      fail(err, "pvback: %s: %s", label().c_str(), e.what());
      return ENXIO;
    }
    queue_locks_ = std::vector<std::mutex>(front_->num_queues());
    queue_taken_.assign(front_->num_queues(), false);
    const auto& n = front_->negotiated();
    PVBACK_LOG(Info, "%s: attached: %u queue(s), ring order %u, %u segments/request, persistent grants %s",
               label().c_str(), n.num_queues, n.ring_page_order, n.segments_per_request, n.persistent ? "on" : "off");
    return 0;
  }

  const std::string& label() const { return target_.label; }
  blkfront::BlkFront& front() { return *front_; }
  std::mutex& queue_lock(unsigned q) { return queue_locks_[q]; }

  std::optional<unsigned> take_queue() {
    std::lock_guard lock(device_lock_);
    for (unsigned q = 0; q < queue_taken_.size(); ++q)
      if (!queue_taken_[q]) {
        queue_taken_[q] = true;
        return q;
      }
    return std::nullopt;
  }
  void release_queue(unsigned q) {
    std::lock_guard lock(device_lock_);
    queue_taken_[q] = false;
  }

  std::expected<grant::SharedPages*, int> share(std::uint32_t pages) {
    auto whole = lock_whole();
    auto shared = front_->share_pages(pages);
    if (!shared) return std::unexpected(shared.error());
    live_.push_back(std::make_unique<grant::SharedPages>(std::move(*shared)));
    return live_.back().get();
  }
  // Pages a job is done with: the backend may still map them (persistent grants) until detach.
  void retire(grant::SharedPages* pages) {
    std::lock_guard lock(device_lock_);
    auto it = std::find_if(live_.begin(), live_.end(), [&](auto& p) { return p.get() == pages; });
    if (it == live_.end()) return;
    retired_.push_back(std::move(*it));
    live_.erase(it);
  }

  // The backend's state changed (a watch fired): unplug fails every queue's requests, resize
  // updates the size. Needs the whole frontend.
  void handle_xenstore() {
    auto whole = lock_whole();
    front_->process_xenstore();
  }
  int xenstore_fd() { return front_->xenstore().fd(); }

 private:
  struct Whole {
    std::unique_lock<std::mutex> device;
    std::vector<std::unique_lock<std::mutex>> queues;
  };
  Whole lock_whole() {
    Whole w{std::unique_lock(device_lock_), {}};
    for (auto& m : queue_locks_) w.queues.emplace_back(m);
    return w;
  }

  Target target_;
  grant::Platform platform_;
  std::unique_ptr<blkfront::BlkFront> front_;
  std::mutex device_lock_;
  std::vector<std::mutex> queue_locks_;
  std::vector<bool> queue_taken_;
  std::vector<std::unique_ptr<grant::SharedPages>> live_, retired_;
};

// This process's devices by frontend path. A device is attached by its first job and detached
// when its last job leaves, both under the registry lock, so an attach never overlaps a detach.
struct Registry {
  std::mutex lock;
  struct Entry {
    std::shared_ptr<Device> device;
    unsigned users = 0;
  };
  std::map<std::string, Entry> devices;
};
Registry& registry() {
  static Registry r;
  return r;
}

struct JobFile {
  std::shared_ptr<Device> device;
  unsigned queue = 0;
  std::uint64_t in_flight = 0;  // submitted, not yet reaped
  bool unpublished = false;     // submitted since the last commit
};

}  // namespace
}  // namespace pvback::fioengine

struct pvback_fio_job {
  pvback_fio_params params{};
  std::string name;
  std::vector<pvback::fioengine::JobFile> files;
  // fio's buffers: granted to files[0]'s backend, or plain memory.
  pvback::grant::SharedPages* granted = nullptr;
  void* plain = nullptr;
  std::vector<pvback::blkfront::Completion> scratch;
  std::vector<pollfd> fds;
  std::deque<std::pair<void*, int>> stash;  // reaped by a flush, for fio's next getevents
};

namespace pvback::fioengine {
namespace {

void leave(JobFile& f) {
  if (!f.device) return;
  Registry& r = registry();
  std::lock_guard lock(r.lock);
  f.device->release_queue(f.queue);
  for (auto it = r.devices.begin(); it != r.devices.end(); ++it) {
    if (it->second.device != f.device) continue;
    f.device.reset();
    if (--it->second.users == 0) r.devices.erase(it);  // the last job: detaches, under the lock
    break;
  }
}

int add_file(pvback_fio_job& job, const char* name, unsigned jobs_on_vbd, unsigned* index, char* err) {
  Target target;
  if (int e = resolve(name, target, err)) return e;
  Registry& r = registry();
  std::lock_guard lock(r.lock);
  auto& entry = r.devices[target.frontend_path];
  if (!entry.device) {
    blkfront::Options o;
    o.max_queues = job.params.queues != 0 ? job.params.queues : std::max(1u, jobs_on_vbd);
    o.max_ring_page_order = job.params.ring_order;
    o.max_indirect_segments = job.params.indirect;
    o.persistent = job.params.persistent != 0;
    if (!job.params.zero_copy) {
      // The data of every request in flight goes through the pool: room for a full iodepth of
      // the largest block size (and its indirect pages), within the grant table's means.
      const std::uint64_t per_request = (job.params.max_bs + kPage - 1) / kPage + 2;
      o.pool_pages = static_cast<unsigned>(std::clamp<std::uint64_t>(job.params.iodepth * per_request, 256, 4096));
    }
    auto device = std::make_shared<Device>(target, grant::Platform(target.config));
    if (int e = device->attach(o, err)) {
      r.devices.erase(target.frontend_path);
      return e;
    }
    entry.device = std::move(device);
  }
  auto queue = entry.device->take_queue();
  if (!queue) {
    const unsigned queues = entry.device->front().num_queues();
    fail(err,
         "pvback: %s: job %s finds all %u queue(s) taken by other jobs: each job needs a queue of its own "
         "(%u asked for, the backend offers %u); set pvback_queues or run fewer jobs on this vbd",
         entry.device->label().c_str(), job.name.c_str(), queues,
         job.params.queues != 0 ? job.params.queues : jobs_on_vbd,
         entry.device->front().negotiated().backend_max_queues);
    if (entry.users == 0) r.devices.erase(target.frontend_path);
    return EBUSY;
  }
  ++entry.users;
  job.files.push_back(JobFile{.device = entry.device, .queue = *queue});
  *index = static_cast<unsigned>(job.files.size() - 1);
  PVBACK_LOG(Info, "%s: job %s on queue %u", entry.device->label().c_str(), job.name.c_str(), *queue);
  return 0;
}

int submit(pvback_fio_job& job, unsigned index, pvback_fio_op op, std::uint64_t offset, void* buffer,
           std::uint64_t length, void* cookie) {
  if (index >= job.files.size()) return EINVAL;
  JobFile& f = job.files[index];
  blkfront::Queue& q = f.device->front().queue(f.queue);
  const auto tag = reinterpret_cast<std::uint64_t>(cookie);
  const std::uint64_t sector = offset / blkif::kSectorSize;
  if ((op == PVBACK_FIO_READ || op == PVBACK_FIO_WRITE || op == PVBACK_FIO_TRIM) &&
      (offset % blkif::kSectorSize != 0 || length % blkif::kSectorSize != 0))
    return EINVAL;
  // fio's buffer inside the granted region (only on the vbd whose backend it is granted to).
  std::optional<std::size_t> at;
  if (job.granted != nullptr && index == 0 && buffer != nullptr) {
    const auto* base = static_cast<const std::byte*>(job.granted->data());
    const auto* p = static_cast<const std::byte*>(buffer);
    if (p >= base && static_cast<std::uint64_t>(p - base) + length <= std::uint64_t{job.granted->pages()} * kPage)
      at = static_cast<std::size_t>(p - base);
  }
  int e;
  {
    std::lock_guard lock(f.device->queue_lock(f.queue));
    auto bytes = std::span(static_cast<std::byte*>(buffer), static_cast<std::size_t>(length));
    switch (op) {
      case PVBACK_FIO_READ:
        e = at ? q.submit_read_granted(sector, *job.granted, *at, length, tag) : q.submit_read(sector, bytes, tag);
        break;
      case PVBACK_FIO_WRITE:
        e = at ? q.submit_write_granted(sector, *job.granted, *at, length, tag) : q.submit_write(sector, bytes, tag);
        break;
      case PVBACK_FIO_TRIM:
        e = q.submit_discard(sector, length / blkif::kSectorSize, false, tag);
        break;
      default:
        e = EOPNOTSUPP;
    }
  }
  if (e == 0) {
    ++f.in_flight;
    f.unpublished = true;
  } else if (e == EAGAIN && f.in_flight == 0) {
    // Full with nothing of ours in flight: waiting would never free anything.
    PVBACK_LOG_RATELIMITED(Error, "%s: queue %u has no room for a request of %llu bytes with none in flight",
                           f.device->label().c_str(), f.queue, static_cast<unsigned long long>(length));
    e = ENOSPC;
  }
  return e;
}

int collect(pvback_fio_job& job, unsigned min, unsigned max, long long timeout_ns, void** cookies, int* errors);
int commit(pvback_fio_job& job);

// fio's fsync/fdatasync, as its libaio engine does them: once the job's requests in flight are
// done (their completions are kept for fio's next getevents), a flush, waited for. A flush beside
// writes in flight would not cover them, and fio, seeing no new write complete, would issue one
// more per request it starts; fio's end_fsync requeues a busy sync without reaping, so it cannot
// be turned away either.
int flush(pvback_fio_job& job, unsigned index) {
  if (index >= job.files.size()) return EINVAL;
  for (;;) {
    std::uint64_t in_flight = 0;
    for (const JobFile& f : job.files) in_flight += f.in_flight;
    if (in_flight == 0) break;
    const auto want = static_cast<unsigned>(std::min<std::uint64_t>(in_flight, 1024));
    std::vector<void*> cookies(want);
    std::vector<int> errors(want);
    const int n = collect(job, want, want, -1, cookies.data(), errors.data());
    if (n < 0) return -n;
    for (int i = 0; i < n; ++i) job.stash.emplace_back(cookies[i], errors[i]);
  }
  JobFile& f = job.files[index];
  int e;
  {
    std::lock_guard lock(f.device->queue_lock(f.queue));
    e = f.device->front().queue(f.queue).submit_flush(0);
  }
  if (e != 0) return e;
  ++f.in_flight;
  f.unpublished = true;
  if (int c = commit(job)) return c;
  void* cookie = nullptr;
  int error = 0;
  const int n = collect(job, 1, 1, -1, &cookie, &error);  // the only request in flight
  return n == 1 ? error : n < 0 ? -n : EIO;
}

int commit(pvback_fio_job& job) {
  int result = 0;
  for (JobFile& f : job.files) {
    if (!f.unpublished) continue;
    f.unpublished = false;
    std::lock_guard lock(f.device->queue_lock(f.queue));
    if (int e = f.device->front().queue(f.queue).kick(); e != 0 && result == 0) result = e;
  }
  return result;
}

// Completions from the job's queues (not the stash), waiting as reap does.
int collect(pvback_fio_job& job, unsigned min, unsigned max, long long timeout_ns, void** cookies, int* errors) {
  const std::optional<Clock::time_point> deadline =
      timeout_ns < 0 ? std::nullopt : std::optional(Clock::now() + std::chrono::nanoseconds(timeout_ns));
  unsigned got = 0;
  if (job.scratch.size() < max) job.scratch.resize(max);
  std::vector<pollfd>& fds = job.fds;
  for (;;) {
    std::uint64_t outstanding = 0;
    for (JobFile& f : job.files) {
      if (got < max && f.in_flight > 0) {
        std::size_t n;
        {
          std::lock_guard lock(f.device->queue_lock(f.queue));
          n = f.device->front().queue(f.queue).poll(std::span(job.scratch).subspan(0, max - got));
        }
        for (std::size_t i = 0; i < n; ++i) {
          cookies[got] = reinterpret_cast<void*>(job.scratch[i].tag);
          errors[got] = job.scratch[i].error;
          ++got;
        }
        f.in_flight -= n;
      }
      outstanding += f.in_flight;
    }
    if (got >= min || got >= max || outstanding == 0) return static_cast<int>(got);
    int wait_ms = 1000;  // a bounded slice, so a lost event costs a second, not a hang
    if (deadline) {
      const auto left = std::chrono::ceil<std::chrono::milliseconds>(*deadline - Clock::now());
      if (left.count() <= 0) return static_cast<int>(got);
      wait_ms = static_cast<int>(std::min<long long>(left.count(), wait_ms));
    }
    fds.clear();
    for (JobFile& f : job.files) {
      int event_fd;
      {
        std::lock_guard lock(f.device->queue_lock(f.queue));  // an unplug tears the channel down
        event_fd = f.device->front().queue(f.queue).event_fd();
      }
      fds.push_back({event_fd, POLLIN, 0});
      fds.push_back({f.device->xenstore_fd(), POLLIN, 0});
    }
    const int r = ::poll(fds.data(), fds.size(), wait_ms);
    if (r < 0 && errno != EINTR) return -errno;
    if (r <= 0) continue;
    for (std::size_t i = 0; i < job.files.size(); ++i) {
      JobFile& f = job.files[i];
      if (fds[2 * i + 1].revents & POLLIN) f.device->handle_xenstore();
      if (fds[2 * i].revents & POLLIN) {
        std::lock_guard lock(f.device->queue_lock(f.queue));
        f.device->front().queue(f.queue).acknowledge_events();
      }
    }
  }
}

int reap(pvback_fio_job& job, unsigned min, unsigned max, long long timeout_ns, void** cookies, int* errors) {
  unsigned got = 0;
  for (; got < max && !job.stash.empty(); ++got) {
    std::tie(cookies[got], errors[got]) = job.stash.front();
    job.stash.pop_front();
  }
  if (got >= min || got >= max) return static_cast<int>(got);
  const int n = collect(job, min - got, max - got, timeout_ns, cookies + got, errors + got);
  return n < 0 ? (got > 0 ? static_cast<int>(got) : n) : static_cast<int>(got) + n;
}

void* alloc_buffers(pvback_fio_job& job, std::size_t bytes) {
  const std::size_t pages = (bytes + kPage - 1) / kPage;
  if (job.params.zero_copy && !job.files.empty() && pages <= UINT32_MAX) {
    Device& d = *job.files[0].device;
    auto shared = d.share(static_cast<std::uint32_t>(pages));
    if (shared) {
      job.granted = *shared;
      PVBACK_LOG(Info, "%s: job %s: %zu KiB of fio buffers granted to the backend: zero copy",
                 d.label().c_str(), job.name.c_str(), pages * kPage / 1024);
      return job.granted->data();
    }
    PVBACK_LOG(Warning, "%s: job %s: cannot grant %zu KiB of fio buffers to the backend (%s): "
               "I/O is copied through the frontend's pool",
               d.label().c_str(), job.name.c_str(), pages * kPage / 1024, std::strerror(shared.error()));
  }
  void* p = nullptr;
  if (::posix_memalign(&p, kPage, std::max<std::size_t>(pages, 1) * kPage) != 0) return nullptr;
  job.plain = p;
  return p;
}

void free_buffers(pvback_fio_job& job) {
  if (job.granted != nullptr) job.files[0].device->retire(job.granted);
  job.granted = nullptr;
  std::free(job.plain);
  job.plain = nullptr;
}

int probe(const char* name, unsigned long long* bytes, char* err) {
  Target t;
  if (int e = resolve(name, t, err)) return e;
  auto xs = xenbus::XenStore::open(t.config.xenstore_path());
  if (!xs) {
    fail(err, "pvback: %s: cannot open XenStore (PVBACK_SIM_DIR, XENSTORED_PATH): %s", t.label.c_str(),
         std::strerror(xs.error()));
    return xs.error();
  }
  auto backend = xs->read(t.frontend_path + "/backend");
  if (!backend) {
    fail(err, "pvback: %s: no such vbd (%s/backend: %s)", t.label.c_str(), t.frontend_path.c_str(),
         std::strerror(backend.error()));
    return backend.error() == ENOENT ? ENODEV : backend.error();
  }
  auto sectors = xs->read_uint(*backend + "/sectors");
  if (!sectors) {
    // The backend publishes the size with InitWait: wait for that.
    const std::string state = *backend + "/state";
    const std::string token = "pvback-fio-probe";
    if (int e = xs->watch(state, token)) return e;
    xenbus::State last = XenbusStateUnknown;
    const int e = xenbus::wait_for_state(*xs, state, {XenbusStateInitWait, XenbusStateConnected}, {},
                                         std::chrono::duration_cast<std::chrono::milliseconds>(kProbeTimeout), &last);
    xs->unwatch(state, token);
    if (e == 0) sectors = xs->read_uint(*backend + "/sectors");
    if (!sectors) {
      fail(err, "pvback: %s: its backend %s published no size (state %d after %lld s)", t.label.c_str(),
           backend->c_str(), static_cast<int>(last), static_cast<long long>(kProbeTimeout.count()));
      return e != 0 ? e : EPROTO;
    }
  }
  *bytes = *sectors * blkif::kSectorSize;
  return 0;
}

// Exceptions never cross into fio's C.
template <class F>
int guarded(char* err, F&& f) {
  try {
    return f();
  } catch (const std::exception& e) {
    fail(err, "pvback: %s", e.what());
    return EIO;
  }
}

}  // namespace
}  // namespace pvback::fioengine

using namespace pvback::fioengine;

extern "C" int pvback_fio_resolve(const char* name, char path[PVBACK_FIO_PATH], char err[PVBACK_FIO_ERR]) {
  init_logging();
  return guarded(err, [&] {
    Target t;
    if (int e = resolve(name, t, err)) return e;
    std::snprintf(path, PVBACK_FIO_PATH, "%s", t.frontend_path.c_str());
    return 0;
  });
}

extern "C" int pvback_fio_probe(const char* name, unsigned long long* bytes, char err[PVBACK_FIO_ERR]) {
  init_logging();
  return guarded(err, [&] { return probe(name, bytes, err); });
}

extern "C" int pvback_fio_job_create(const pvback_fio_params* params, pvback_fio_job** job, char err[PVBACK_FIO_ERR]) {
  init_logging();
  return guarded(err, [&] {
    auto j = std::make_unique<pvback_fio_job>();
    j->params = *params;
    j->name = params->job_name != nullptr ? params->job_name : "?";
    *job = j.release();
    return 0;
  });
}

extern "C" int pvback_fio_job_add_file(pvback_fio_job* job, const char* name, unsigned jobs_on_vbd,
                                       unsigned* file_index, char err[PVBACK_FIO_ERR]) {
  return guarded(err, [&] { return add_file(*job, name, jobs_on_vbd, file_index, err); });
}

extern "C" void* pvback_fio_job_alloc_buffers(pvback_fio_job* job, size_t bytes) {
  try {
    return alloc_buffers(*job, bytes);
  } catch (const std::exception& e) {
    PVBACK_LOG(Error, "job %s: buffers: %s", job->name.c_str(), e.what());
    return nullptr;
  }
}

extern "C" void pvback_fio_job_free_buffers(pvback_fio_job* job) { free_buffers(*job); }

extern "C" int pvback_fio_job_submit(pvback_fio_job* job, unsigned file_index, pvback_fio_op op, uint64_t offset,
                                     void* buffer, uint64_t length, void* cookie) {
  return submit(*job, file_index, op, offset, buffer, length, cookie);
}

extern "C" int pvback_fio_job_flush(pvback_fio_job* job, unsigned file_index) {
  try {
    return flush(*job, file_index);
  } catch (const std::exception& e) {
    PVBACK_LOG(Error, "job %s: flush: %s", job->name.c_str(), e.what());
    return EIO;
  }
}

extern "C" int pvback_fio_job_commit(pvback_fio_job* job) { return commit(*job); }

extern "C" int pvback_fio_job_reap(pvback_fio_job* job, unsigned min, unsigned max, long long timeout_ns,
                                   void** cookies, int* errors) {
  try {
    return reap(*job, min, max, timeout_ns, cookies, errors);
  } catch (const std::exception& e) {
    PVBACK_LOG(Error, "job %s: %s", job->name.c_str(), e.what());
    return -EIO;
  }
}

extern "C" void pvback_fio_job_destroy(pvback_fio_job* job) {
  if (job == nullptr) return;
  try {
    free_buffers(*job);
    for (JobFile& f : job->files) leave(f);
  } catch (const std::exception& e) {
    PVBACK_LOG(Error, "job %s: leaving: %s", job->name.c_str(), e.what());
  }
  delete job;
}
