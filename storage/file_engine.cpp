#include "storage/file_engine.hpp"

#include <fcntl.h>
#include <linux/falloc.h>
#include <linux/fs.h>
#include <linux/magic.h>
#include <sys/eventfd.h>
#include <sys/file.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <sys/sysmacros.h>
#include <sys/uio.h>
#include <unistd.h>

#include <poll.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <deque>
#include <fstream>
#include <mutex>
#include <system_error>
#include <thread>
#include <utility>
#include <vector>

#include "base/log.hpp"
#include "storage/loop.hpp"

namespace pvback::storage {
namespace {

// A queue attribute of the block device dev (sysfs), or 0 if unreadable.
std::uint64_t queue_attribute(dev_t dev, const char* name) {
  char path[128];
  std::snprintf(path, sizeof path, "/sys/dev/block/%u:%u/queue/%s", major(dev), minor(dev), name);
  std::ifstream in(path);
  std::uint64_t value = 0;
  if (!(in >> value)) {
    // Partitions have no queue/ of their own; their disk's is one level up.
    std::snprintf(path, sizeof path, "/sys/dev/block/%u:%u/../queue/%s", major(dev), minor(dev), name);
    std::ifstream parent(path);
    if (!(parent >> value)) return 0;
  }
  return value;
}

bool power_of_two_at_least_512(std::uint64_t v) { return v >= 512 && (v & (v - 1)) == 0 && v <= 65536; }

// A pvback-blk killed with I/O in flight leaves it running: the kernel finishes (or cancels) its
// io_uring requests after the process is gone, and only then drops the open file. A successor
// that answered those requests again could otherwise see a stale write land after its own. The
// flock() belongs to the open file, so it is held until that moment: the successor waits for it
// (LOCK_EX for a writable disk; LOCK_SH for a read-only one, which several guests may share).
int lock_storage(int fd, const FileOptions& options) {
  constexpr auto kWait = std::chrono::seconds(30);
  const int how = options.read_only ? LOCK_SH : LOCK_EX;
  const auto deadline = std::chrono::steady_clock::now() + kWait;
  bool said = false;
  while (::flock(fd, how | LOCK_NB) != 0) {
    if (errno == EINTR) continue;
    if (errno != EWOULDBLOCK) return errno == ENOLCK || errno == EOPNOTSUPP ? 0 : errno;  // no locks there
    if (std::chrono::steady_clock::now() >= deadline) {
      PVBACK_LOG(Error, "%s: still locked by another process after %llds (another backend serving it for writing, "
                 "or a killed pvback-blk's I/O that never completes)", options.path.c_str(),
                 static_cast<long long>(kWait.count()));
      return EBUSY;
    }
    if (!said) {
      PVBACK_LOG(Notice, "%s: locked by another process (a predecessor's I/O still in flight?): waiting",
                 options.path.c_str());
      said = true;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  return 0;
}

// Completion tags of a FileChannel: the caller's tag for operations on the ring, and one for the
// poll on the discard helper's eventfd.
constexpr std::uint64_t kWorkerPoll = Loop::kEngineTag | (std::uint64_t{1} << 40);
// user_data of the NOP that reports a transfer done inline: kInline | tag. As many can be pending
// as the loop has entries (at most 4096: blkback::Queue's).
constexpr std::size_t kMaxInlinePending = 4096;
constexpr std::uint64_t kInlineBit = std::uint64_t{1} << 41;
constexpr std::uint64_t kInline = Loop::kEngineTag | kInlineBit;

// Runs a block device's discards (BLKDISCARD / BLKSECDISCARD are ioctls, which io_uring cannot
// run before Linux 6.12's block uring_cmd) off the queue's thread. Discards are rare and large:
// one mutex and one eventfd write per discard cost nothing next to the discard itself.
class DiscardWorker {
 public:
  struct Job {
    std::uint32_t tag;
    std::uint64_t range[2];
    bool secure;
    int res;
  };

  explicit DiscardWorker(int fd) : fd_(fd) {}
  ~DiscardWorker() {
    {
      std::lock_guard lock(mutex_);
      stopping_ = true;
    }
    wake_.notify_one();
    if (thread_.joinable()) thread_.join();
  }
  // The thread starts with the first discard: a data-plane process confines itself (which it can
  // do only while it has one thread) after its channels are open and before any request.
  int open() {
    done_fd_.reset(::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK));
    if (!done_fd_) return errno;
    return 0;
  }
  int done_fd() const { return done_fd_.get(); }

  // EAGAIN if the thread cannot be started.
  int add(const Job& job) {
    if (!thread_.joinable()) {
      try {
        thread_ = std::thread([this] { work(); });
      } catch (const std::system_error&) {
        return EAGAIN;
      }
    }
    {
      std::lock_guard lock(mutex_);
      todo_.push_back(job);
    }
    wake_.notify_one();
    return 0;
  }
  // Takes the finished jobs (after the eventfd fired).
  void take_done(std::vector<Job>& out) {
    std::uint64_t n;
    [[maybe_unused]] ssize_t r = ::read(done_fd_.get(), &n, sizeof n);
    std::lock_guard lock(mutex_);
    out.insert(out.end(), done_.begin(), done_.end());
    done_.clear();
  }

 private:
  void work() {
    std::unique_lock lock(mutex_);
    for (;;) {
      wake_.wait(lock, [this] { return stopping_ || !todo_.empty(); });
      if (todo_.empty()) return;  // stopping, and nothing left (the channel drained first)
      Job job = todo_.front();
      todo_.pop_front();
      lock.unlock();
      job.res = ::ioctl(fd_, job.secure ? BLKSECDISCARD : BLKDISCARD, job.range) == 0 ? 0 : -errno;
      lock.lock();
      done_.push_back(job);
      const std::uint64_t one = 1;
      [[maybe_unused]] ssize_t r = ::write(done_fd_.get(), &one, sizeof one);
    }
  }

  int fd_;
  UniqueFd done_fd_;
  std::mutex mutex_;
  std::condition_variable wake_;
  std::deque<Job> todo_;
  std::vector<Job> done_;
  bool stopping_ = false;
  std::thread thread_;
};

class FileChannel final : public Channel {
 public:
  FileChannel(Loop& loop, const FileEngine& engine) : loop_(loop), engine_(engine) {}

  int open() {
    if (int e = loop_.register_file(engine_.fd())) {
      PVBACK_LOG(Error, "%s: io_uring_register_files: %s", engine_.path().c_str(), std::strerror(e));
      return e;
    }
    if (engine_.in_memory()) inline_done_.reserve(kMaxInlinePending);
    if (engine_.block_device() && engine_.capabilities().discard) {
      worker_ = std::make_unique<DiscardWorker>(engine_.fd());
      if (int e = worker_->open()) return e;
    }
    return 0;
  }

  int submit(const Request& rq) override {
    if (int e = refusal(engine_.capabilities(), rq.op)) return e;
    if (engine_.block_device() && (rq.op == Op::Discard || rq.op == Op::SecureDiscard)) {
      if (!arm_worker_poll()) return EAGAIN;
      if (int e = worker_->add({rq.tag, {rq.offset, rq.length}, rq.op == Op::SecureDiscard, 0})) return e;
      ++in_flight_;
      ++worker_jobs_;
      return 0;
    }
    io_uring_sqe* sqe = loop_.sqe();
    if (sqe == nullptr) return EAGAIN;
    if (engine_.in_memory() && (rq.op == Op::Read || rq.op == Op::Write)) return submit_inline(sqe, rq);
    switch (rq.op) {
      case Op::Read:
        io_uring_prep_readv(sqe, 0, rq.iov, rq.iovcnt, rq.offset);
        break;
      case Op::Write:
        io_uring_prep_writev(sqe, 0, rq.iov, rq.iovcnt, rq.offset);
        break;
      case Op::Flush:
        io_uring_prep_fsync(sqe, 0, IORING_FSYNC_DATASYNC);
        break;
      case Op::Discard:
      case Op::SecureDiscard:  // a file has no secure erase: capabilities() never offers it
        io_uring_prep_fallocate(sqe, 0, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, rq.offset, rq.length);
        break;
      case Op::WriteZeroes:
        io_uring_prep_fallocate(sqe, 0, FALLOC_FL_ZERO_RANGE | FALLOC_FL_KEEP_SIZE, rq.offset, rq.length);
        break;
    }
    sqe->flags |= IOSQE_FIXED_FILE;
    io_uring_sqe_set_data64(sqe, Loop::kEngineTag | rq.tag);
    ++in_flight_;
    return 0;
  }

  void on_completion(std::uint64_t user_data, int res, CompletionSink& sink) override {
    if ((user_data & kInlineBit) != 0) {
      const auto tag = static_cast<std::uint32_t>(user_data);
      // NOPs complete in the order they were queued: their results are taken from the front.
      const auto from = inline_done_.begin() + static_cast<std::ptrdiff_t>(inline_head_);
      const auto it = std::find_if(from, inline_done_.end(), [&](const auto& d) { return d.first == tag; });
      if (it == from) {
        res = it->second;
        if (++inline_head_ == inline_done_.size()) {
          inline_done_.clear();
          inline_head_ = 0;
        }
      } else if (it != inline_done_.end()) {
        res = it->second;
        inline_done_.erase(it);
      }
      --in_flight_;
      sink.completed(tag, res);
      return;
    }
    if (user_data != kWorkerPoll) {
      --in_flight_;
      sink.completed(static_cast<std::uint32_t>(user_data), res);
      return;
    }
    poll_armed_ = false;
    done_.clear();
    worker_->take_done(done_);
    for (const auto& job : done_) {
      --in_flight_;
      --worker_jobs_;
      sink.completed(job.tag, job.res);
    }
    if (worker_jobs_ != 0) arm_worker_poll();
  }

  std::uint32_t in_flight() const override { return in_flight_; }

 private:
  // The transfer now, in this thread (a copy between the page cache and the guest's pages); its
  // result is reported when the NOP that stands for it completes, like any other operation's.
  int submit_inline(io_uring_sqe* sqe, const Request& rq) {
    const ssize_t n = rq.op == Op::Read ? ::preadv(engine_.fd(), rq.iov, static_cast<int>(rq.iovcnt),
                                                   static_cast<off_t>(rq.offset))
                                        : ::pwritev(engine_.fd(), rq.iov, static_cast<int>(rq.iovcnt),
                                                    static_cast<off_t>(rq.offset));
    inline_done_.emplace_back(rq.tag, n < 0 ? -errno : static_cast<int>(n));
    io_uring_prep_nop(sqe);
    io_uring_sqe_set_data64(sqe, kInline | rq.tag);
    ++in_flight_;
    return 0;
  }

  bool arm_worker_poll() {
    if (poll_armed_) return true;
    io_uring_sqe* sqe = loop_.sqe();
    if (sqe == nullptr) return false;
    io_uring_prep_poll_add(sqe, worker_->done_fd(), POLLIN);
    io_uring_sqe_set_data64(sqe, kWorkerPoll);
    poll_armed_ = true;
    return true;
  }

  Loop& loop_;
  const FileEngine& engine_;
  std::uint32_t in_flight_ = 0;
  std::unique_ptr<DiscardWorker> worker_;
  std::vector<DiscardWorker::Job> done_;
  std::vector<std::pair<std::uint32_t, int>> inline_done_;  // (tag, result) of transfers done inline
  std::size_t inline_head_ = 0;                             // those before it were reported
  std::uint32_t worker_jobs_ = 0;
  bool poll_armed_ = false;
};

}  // namespace

std::expected<std::unique_ptr<FileEngine>, int> FileEngine::open(const FileOptions& options) {
  if (options.path.empty()) return std::unexpected(EINVAL);
  const int access = options.read_only ? O_RDONLY : O_RDWR;
  int fd = -1;
  if (options.allow_direct) {
    fd = ::open(options.path.c_str(), access | O_CLOEXEC | O_DIRECT);
    // tmpfs and some FUSE file systems refuse O_DIRECT: serve them buffered.
    if (fd < 0 && errno != EINVAL) return std::unexpected(errno);
  }
  if (fd < 0) fd = ::open(options.path.c_str(), access | O_CLOEXEC);
  if (fd < 0) return std::unexpected(errno);
  UniqueFd owned(fd);
  if (options.lock) {
    if (int e = lock_storage(fd, options)) return std::unexpected(e);
  }
  return probe(std::move(owned), options);
}

std::expected<std::unique_ptr<FileEngine>, int> FileEngine::adopt(UniqueFd fd, const FileOptions& options) {
  if (!fd) return std::unexpected(EBADF);
  return probe(std::move(fd), options);
}

std::expected<UniqueFd, int> FileEngine::reopen_locked() const {
  // Through /proc/self/fd: the very file this engine has open, even if its path was renamed or
  // replaced since.
  const std::string self = "/proc/self/fd/" + std::to_string(fd_.get());
  const int flags = (caps_.read_only ? O_RDONLY : O_RDWR) | O_CLOEXEC | (caps_.direct ? O_DIRECT : 0);
  UniqueFd fd(::open(self.c_str(), flags));
  if (!fd) return std::unexpected(errno);
  FileOptions o;
  o.path = path_;
  o.read_only = caps_.read_only;
  if (int e = lock_storage(fd.get(), o)) return std::unexpected(e);
  return fd;
}

std::expected<std::unique_ptr<FileEngine>, int> FileEngine::probe(UniqueFd owned, const FileOptions& options) {
  std::unique_ptr<FileEngine> s(new FileEngine);
  s->path_ = options.path;
  Capabilities& c = s->caps_;
  c.read_only = options.read_only;
  const int fd = owned.get();
  const int fl = ::fcntl(fd, F_GETFL);
  if (fl < 0) return std::unexpected(errno);
  c.direct = (fl & O_DIRECT) != 0;
  s->fd_ = std::move(owned);

  struct stat st {};
  if (::fstat(fd, &st) != 0) return std::unexpected(errno);
  if (S_ISBLK(st.st_mode)) {
    s->block_device_ = true;
    int logical = 0;
    unsigned int physical = 0;
    if (::ioctl(fd, BLKSSZGET, &logical) == 0 && power_of_two_at_least_512(static_cast<std::uint64_t>(logical)))
      c.logical_block_size = static_cast<std::uint32_t>(logical);
    if (::ioctl(fd, BLKPBSZGET, &physical) == 0 && power_of_two_at_least_512(physical)) c.physical_block_size = physical;
    c.dma_alignment = c.logical_block_size;
    if (options.discard && !options.read_only) {
      const std::uint64_t max_bytes = queue_attribute(st.st_rdev, "discard_max_bytes");
      const std::uint64_t granularity = queue_attribute(st.st_rdev, "discard_granularity");
      c.discard = max_bytes > 0;
      c.discard_granularity = static_cast<std::uint32_t>(granularity > 0 ? granularity : c.logical_block_size);
      c.secure_discard = c.discard && queue_attribute(st.st_rdev, "max_secure_erase_sectors") > 0;
    }
    c.write_zeroes = !options.read_only;  // blkdev fallocate(ZERO_RANGE): write-zeroes, else zero writes
  } else if (S_ISREG(st.st_mode)) {
    struct statfs fs {};
    s->in_memory_ = ::fstatfs(fd, &fs) == 0 &&
                    (fs.f_type == TMPFS_MAGIC || fs.f_type == static_cast<decltype(fs.f_type)>(RAMFS_MAGIC));
    // Requests to a file must respect the logical block size of the device under it when
    // O_DIRECT is used; that is the sector-size we publish.
    const std::uint64_t logical = queue_attribute(st.st_dev, "logical_block_size");
    if (c.direct && power_of_two_at_least_512(logical)) c.logical_block_size = static_cast<std::uint32_t>(logical);
    c.dma_alignment = c.logical_block_size;
    if (power_of_two_at_least_512(static_cast<std::uint64_t>(st.st_blksize)))
      c.physical_block_size = static_cast<std::uint32_t>(st.st_blksize);
    if (c.physical_block_size < c.logical_block_size) c.physical_block_size = c.logical_block_size;
    if (!options.read_only) {
      // Punching a hole past the end changes nothing and tells whether the file system can.
      const off_t probe_at = st.st_size + (1 << 20);
      const bool punch = ::fallocate(fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, probe_at, 4096) == 0;
      c.discard = options.discard && punch;
      c.discard_granularity = c.physical_block_size;
      // Zeroing a range past the end (then punching it out again) tells whether it can zero
      // ranges: tmpfs can punch holes but not that.
      c.write_zeroes = punch && ::fallocate(fd, FALLOC_FL_ZERO_RANGE | FALLOC_FL_KEEP_SIZE, probe_at, 4096) == 0 &&
                       ::fallocate(fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, probe_at, 4096) == 0;
    }
  } else {
    return std::unexpected(ENOTBLK);
  }
  s->refresh_size();
  PVBACK_LOG(Info, "%s: %s, %llu sectors, sector-size %u, physical %u, %s%s%s%s", s->path_.c_str(), s->kind(),
             static_cast<unsigned long long>(s->sectors()), c.logical_block_size, c.physical_block_size,
             c.direct ? "O_DIRECT" : "buffered",
             s->in_memory_ ? ", in memory (read and written inline)" : "", c.read_only ? ", read-only" : "",
             c.discard ? (c.secure_discard ? ", discard+secure" : ", discard") : "");
  return s;
}

bool FileEngine::refresh_size() {
  std::uint64_t bytes = 0;
  struct stat st {};
  if (::fstat(fd_.get(), &st) != 0) return false;
  if (S_ISBLK(st.st_mode)) {
    if (::ioctl(fd_.get(), BLKGETSIZE64, &bytes) != 0) return false;
  } else {
    bytes = static_cast<std::uint64_t>(st.st_size);
  }
  // Only whole logical blocks are addressable.
  bytes -= bytes % caps_.logical_block_size;
  const std::uint64_t sectors = bytes / 512;
  return sectors_.exchange(sectors, std::memory_order_acq_rel) != sectors;
}

std::string FileEngine::describe() const { return std::string(kind()) + " " + path_; }

std::expected<std::unique_ptr<Channel>, int> FileEngine::open_channel(Loop& loop) {
  auto channel = std::make_unique<FileChannel>(loop, *this);
  if (int e = channel->open()) return std::unexpected(e);
  return channel;
}

}  // namespace pvback::storage
