#include "storage/nbd_engine.hpp"

#include <libnbd.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <deque>
#include <filesystem>
#include <new>
#include <thread>
#include <vector>

#include "base/log.hpp"
#include "storage/daemon_dir.hpp"
#include "storage/loop.hpp"

namespace pvback::storage {
namespace {

struct CloseNbd {
  void operator()(nbd_handle* h) const { nbd_close(h); }
};
using Handle = std::unique_ptr<nbd_handle, CloseNbd>;

int nbd_errno_or(int fallback) {
  const int e = nbd_get_errno();
  return e != 0 ? e : fallback;
}

// A connected handle, or an errno value (the cause logged when `log` is set).
std::expected<Handle, int> connect(const std::string& uri, bool log) {
  Handle h(nbd_create());
  if (!h) return std::unexpected(nbd_errno_or(ENOMEM));
  // The URI may name local files: an NBD server over TLS takes its certificates directory or its
  // pre-shared key file from the URI (nbds://...?tls-certificates=DIR or ?tls-psk-file=FILE),
  // which libnbd refuses unless allowed. The URI is the toolstack's (params of the backend
  // directory, which only dom0 writes), never a guest's.
  if (nbd_set_uri_allow_local_file(h.get(), true) == -1) return std::unexpected(nbd_errno_or(EINVAL));
  if (nbd_connect_uri(h.get(), uri.c_str()) == -1) {
    const int e = nbd_errno_or(ECONNREFUSED);
    if (log) PVBACK_LOG(Error, "nbd: cannot connect to %s: %s", uri.c_str(), nbd_get_error());
    return std::unexpected(e);
  }
  return h;
}

// Whether some process holds a lock on `path` (QEMU's image locks are OFD byte-range locks).
bool image_locked(const std::string& path) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return false;
  struct flock fl {};
  fl.l_type = F_WRLCK;
  fl.l_whence = SEEK_SET;
  const bool locked = ::fcntl(fd, F_OFD_GETLK, &fl) == 0 && fl.l_type != F_UNLCK;
  ::close(fd);
  return locked;
}

// QEMU's option syntax doubles a comma inside a value.
std::string qemu_escape(const std::string& s) {
  std::string out;
  for (char c : s) {
    out += c;
    if (c == ',') out += ',';
  }
  return out;
}

// user_data of an NbdChannel's completions.
constexpr std::uint64_t kPollIn = Loop::kEngineTag | 1;
constexpr std::uint64_t kPollOut = Loop::kEngineTag | 2;
constexpr std::uint64_t kNop = Loop::kEngineTag | 3;
// Largest trim or zero sent as one command (the protocol's length is 32 bits).
constexpr std::uint64_t kMaxRangeCommand = 1ull << 30;

class NbdChannel final : public Channel {
 public:
  NbdChannel(Loop& loop, const NbdEngine& engine, Handle h) : loop_(loop), engine_(engine), h_(std::move(h)) {}
  // Closed first: nbd_close runs the callbacks of commands still queued, which write into
  // commands_ and done_.
  ~NbdChannel() override { h_.reset(); }

  int submit(const Request& rq) override {
    const Capabilities& caps = engine_.capabilities();
    if (int e = refusal(caps, rq.op)) return e;  // secure discard: never offered over NBD
    Command& c = command(rq.tag);
    // `left` holds one extra count while the parts are being queued, so that a callback run from
    // inside libnbd meanwhile cannot finish the request early.
    c.channel = this;
    c.tag = rq.tag;
    c.parts = 0;
    c.left = 1;
    c.bytes = rq.op == Op::Read || rq.op == Op::Write ? rq.length : 0;
    c.error = 0;
    c.scatter = nullptr;
    const nbd_completion_callback done{.callback = &NbdChannel::on_done, .user_data = &c, .free = nullptr};
    std::uint64_t offset = rq.offset;
    int error = 0;
    auto queued = [&](std::int64_t cookie) {
      if (cookie == -1) {
        --c.left;
        error = nbd_errno_or(EIO);
        PVBACK_LOG_RATELIMITED(Warning, "nbd: %s of %s failed: %s", op_name(rq.op), engine_.uri().c_str(),
                               nbd_get_error());
        return false;
      }
      ++c.parts;
      return true;
    };
    // Counted before each call, for the same reason.
    auto count = [&] { ++c.left; };
    switch (rq.op) {
      case Op::Read:
      case Op::Write: {
        // A request in many pieces (with persistent grants every guest page is one) goes as one
        // command through the command's bounce buffer, copied once here or at completion, instead
        // of a round trip to the server per page: 256 of them for 1 MiB.
        iovec whole{};
        const iovec* iov = rq.iov;
        std::uint32_t iovcnt = rq.iovcnt;
        const bool one_piece = iovcnt > 1 && contiguous(rq.iov, rq.iovcnt);
        if (one_piece) {
          whole = {rq.iov[0].iov_base, rq.length};  // contiguous in memory: one piece as it is
          iov = &whole;
          iovcnt = 1;
        } else if (std::byte* bounce = iovcnt > 1 ? bounce_for(c, rq.length) : nullptr) {
          if (rq.op == Op::Write) {
            std::size_t at = 0;
            for (std::uint32_t i = 0; i < rq.iovcnt; ++i) {
              std::memcpy(bounce + at, rq.iov[i].iov_base, rq.iov[i].iov_len);
              at += rq.iov[i].iov_len;
            }
          } else {
            c.scatter = rq.iov;  // into the guest's pages once the read is back
            c.scatter_count = rq.iovcnt;
          }
          whole = {bounce, rq.length};
          iov = &whole;
          iovcnt = 1;
        }  // else: past the bounce budget, one command per piece
        for (std::uint32_t i = 0; i < iovcnt && error == 0; ++i) {
          auto* base = static_cast<std::byte*>(iov[i].iov_base);
          // One command per contiguous piece, no larger than the server takes.
          for (std::size_t at = 0; at < iov[i].iov_len && error == 0;) {
            const std::size_t n = std::min<std::size_t>(iov[i].iov_len - at, caps.max_transfer);
            count();
            const std::int64_t cookie =
                rq.op == Op::Read ? nbd_aio_pread(h_.get(), base + at, n, offset, done, 0)
                                  : nbd_aio_pwrite(h_.get(), base + at, n, offset, done, 0);
            if (!queued(cookie)) break;
            offset += n;
            at += n;
          }
        }
        break;
      }
      case Op::Flush:
        if (!caps.flush_needed) {  // the server says its writes are durable: nothing to wait for
          done_.push_back(rq.tag);
          ++in_flight_;
          arm_nop();
          return 0;
        }
        count();
        queued(nbd_aio_flush(h_.get(), done, 0));
        break;
      case Op::Discard:
      case Op::WriteZeroes:
      case Op::SecureDiscard:
        for (std::uint64_t left = rq.length; left != 0;) {
          const std::uint64_t n = std::min(left, kMaxRangeCommand);
          count();
          const std::int64_t cookie = rq.op == Op::WriteZeroes ? nbd_aio_zero(h_.get(), n, offset, done, 0)
                                                               : nbd_aio_trim(h_.get(), n, offset, done, 0);
          if (!queued(cookie)) break;
          offset += n;
          left -= n;
        }
        break;
    }
    if (c.parts == 0) return error != 0 ? error : EIO;  // nothing went out: refused now
    if (error != 0 && c.error == 0) c.error = error;    // some went out: it fails once they are back
    ++in_flight_;
    if (--c.left == 0) {  // every part already answered
      done_.push_back(rq.tag);
      arm_nop();
    }
    arm();
    return 0;
  }

  void on_completion(std::uint64_t user_data, int res, CompletionSink& sink) override {
    if (user_data == kPollIn || user_data == kPollOut) {
      (user_data == kPollIn ? in_armed_ : out_armed_) = false;
      if (res >= 0) {
        const int r = user_data == kPollIn ? nbd_aio_notify_read(h_.get()) : nbd_aio_notify_write(h_.get());
        if (r == -1)
          PVBACK_LOG_RATELIMITED(Error, "nbd: connection to %s: %s", engine_.uri().c_str(), nbd_get_error());
      }
    } else if (user_data == kNop) {
      nop_armed_ = false;
    }
    // Commands the dead connection will never answer are failed by libnbd itself (their
    // callbacks run with an error), so nothing is left in flight for ever. A report may submit
    // again (a barrier's flush after its write) and finish at once: taken in rounds until none.
    while (!done_.empty()) {
      reporting_.swap(done_);
      for (std::uint32_t tag : reporting_) {
        Command& c = commands_[tag];
        if (c.scatter != nullptr && c.error == 0) {
          std::size_t at = 0;
          for (std::uint32_t i = 0; i < c.scatter_count; ++i) {
            std::memcpy(c.scatter[i].iov_base, c.bounce.get() + at, c.scatter[i].iov_len);
            at += c.scatter[i].iov_len;
          }
        }
        c.scatter = nullptr;
        --in_flight_;
        sink.completed(tag, c.error != 0 ? -c.error : static_cast<int>(c.bytes));
      }
      reporting_.clear();
    }
    arm();
  }

  std::uint32_t in_flight() const override { return in_flight_; }

  // pvback's own daemon is gone (its connection dead): the control part starts a new one.
  int storage_lost() const override {
    if (!engine_.server_is_ours()) return 0;  // a server someone else runs: errors are errors
    return nbd_aio_is_dead(h_.get()) == 1 || nbd_aio_is_closed(h_.get()) == 1 ? ENOTCONN : 0;
  }

 private:
  struct Command {
    NbdChannel* channel = nullptr;
    std::uint32_t tag = 0;
    std::uint32_t parts = 0;
    std::uint32_t left = 0;
    std::uint64_t bytes = 0;  // reported on success (NBD transfers all or nothing)
    int error = 0;
    const iovec* scatter = nullptr;  // a read through the bounce buffer: where it goes
    std::uint32_t scatter_count = 0;
    std::unique_ptr<std::byte[]> bounce;  // kept with the tag for its next request
    std::size_t bounce_size = 0;
  };

  // Up to this many bytes of bounce buffers per channel, kept per tag once allocated (a ring of
  // 32 requests of 256 KiB is 8 MiB); a request that finds none goes in pieces.
  static constexpr std::size_t kBounceBudget = 32u << 20;

  static bool contiguous(const iovec* iov, std::uint32_t n) {
    for (std::uint32_t i = 1; i < n; ++i)
      if (static_cast<const std::byte*>(iov[i - 1].iov_base) + iov[i - 1].iov_len != iov[i].iov_base) return false;
    return true;
  }
  // The tag's bounce buffer of at least `bytes`, or nullptr when the budget is spent.
  std::byte* bounce_for(Command& c, std::size_t bytes) {
    if (c.bounce_size >= bytes) return c.bounce.get();
    if (bounce_bytes_ - c.bounce_size + bytes > kBounceBudget) return nullptr;
    std::unique_ptr<std::byte[]> grown(new (std::nothrow) std::byte[bytes]);
    if (!grown) return nullptr;
    bounce_bytes_ = bounce_bytes_ - c.bounce_size + bytes;
    c.bounce = std::move(grown);
    c.bounce_size = bytes;
    return c.bounce.get();
  }

  // Stable addresses (libnbd holds a pointer until the callback), grown on first use of a tag.
  Command& command(std::uint32_t tag) {
    while (commands_.size() <= tag) commands_.emplace_back();
    return commands_[tag];
  }

  static int on_done(void* user_data, int* error) {
    auto* c = static_cast<Command*>(user_data);
    if (*error != 0 && c->error == 0) c->error = *error;
    if (--c->left == 0) c->channel->done_.push_back(c->tag);
    return 1;  // retire the command
  }

  // Polls the socket in the directions libnbd waits for, while anything is in flight.
  void arm() {
    if (in_flight_ == 0 || nbd_aio_is_dead(h_.get()) == 1 || nbd_aio_is_closed(h_.get()) == 1) return;
    const unsigned dir = nbd_aio_get_direction(h_.get());
    const int fd = nbd_aio_get_fd(h_.get());
    if (fd < 0) return;
    if ((dir & LIBNBD_AIO_DIRECTION_READ) != 0 && !in_armed_) in_armed_ = poll(fd, POLLIN, kPollIn);
    if ((dir & LIBNBD_AIO_DIRECTION_WRITE) != 0 && !out_armed_) out_armed_ = poll(fd, POLLOUT, kPollOut);
  }
  bool poll(int fd, unsigned events, std::uint64_t tag) {
    io_uring_sqe* sqe = loop_.sqe();
    if (sqe == nullptr) return false;
    io_uring_prep_poll_add(sqe, fd, events);
    io_uring_sqe_set_data64(sqe, tag);
    return true;
  }
  void arm_nop() {
    if (nop_armed_) return;
    if (io_uring_sqe* sqe = loop_.sqe()) {
      io_uring_prep_nop(sqe);
      io_uring_sqe_set_data64(sqe, kNop);
      nop_armed_ = true;
    }
  }

  Loop& loop_;
  const NbdEngine& engine_;
  Handle h_;
  std::deque<Command> commands_;
  std::vector<std::uint32_t> done_;
  std::vector<std::uint32_t> reporting_;
  std::uint32_t in_flight_ = 0;
  std::size_t bounce_bytes_ = 0;
  bool in_armed_ = false, out_armed_ = false, nop_armed_ = false;
};

}  // namespace

const char* qemu_format_name(const std::string& f) {
  if (f == "raw" || f == "aio") return "raw";
  if (f == "vhd" || f == "vpc") return "vpc";
  for (const char* known : {"qcow2", "qcow", "vhdx", "vmdk", "qed", "luks"})
    if (f == known) return known;
  return nullptr;
}

std::expected<std::unique_ptr<NbdEngine>, int> NbdEngine::open(const NbdOptions& options) {
  std::unique_ptr<NbdEngine> e(new NbdEngine);
  e->options_ = options;
  e->server_is_ours_ = options.server_is_ours || !options.image.empty();
  if (!options.image.empty()) {
    if (int err = e->start_storage_daemon(options)) return std::unexpected(err);
  } else if (options.uri.empty()) {
    return std::unexpected(EINVAL);
  } else {
    e->uri_ = options.uri;
    e->description_ = "nbd " + options.uri;
  }
  auto h = connect(e->uri_, true);
  if (!h) return std::unexpected(h.error());
  const std::int64_t size = nbd_get_size(h->get());
  if (size < 0) {
    PVBACK_LOG(Error, "nbd: %s: no size: %s", e->uri_.c_str(), nbd_get_error());
    return std::unexpected(nbd_errno_or(EIO));
  }
  Capabilities& c = e->caps_;
  c.read_only = options.read_only || nbd_is_read_only(h->get()) == 1;
  c.flush_needed = nbd_can_flush(h->get()) == 1;
  c.discard = options.discard && !c.read_only && nbd_can_trim(h->get()) == 1;
  c.write_zeroes = !c.read_only && nbd_can_zero(h->get()) == 1;
  auto block = [&](int which, std::uint64_t fallback) {
    const std::int64_t v = nbd_get_block_size(h->get(), which);
    return v > 0 ? static_cast<std::uint64_t>(v) : fallback;
  };
  const std::uint64_t minimum = block(LIBNBD_SIZE_MINIMUM, 512);
  c.logical_block_size = minimum >= 512 && minimum <= 4096 && (minimum & (minimum - 1)) == 0
                             ? static_cast<std::uint32_t>(minimum) : 512;
  const std::uint64_t preferred = block(LIBNBD_SIZE_PREFERRED, 4096);
  c.physical_block_size = preferred >= c.logical_block_size && preferred <= 65536 && (preferred & (preferred - 1)) == 0
                              ? static_cast<std::uint32_t>(preferred) : c.logical_block_size;
  c.dma_alignment = 1;  // memory goes through a socket
  c.max_transfer = std::max<std::uint64_t>(block(LIBNBD_SIZE_MAXIMUM, 32u << 20), 4096);
  if (minimum > 4096) {
    PVBACK_LOG(Error, "nbd: %s needs requests aligned to %llu bytes; blkif sectors are at most 4096", e->uri_.c_str(),
               static_cast<unsigned long long>(minimum));
    return std::unexpected(EINVAL);
  }
  c.discard_granularity = c.physical_block_size;
  const auto bytes = static_cast<std::uint64_t>(size) - static_cast<std::uint64_t>(size) % c.logical_block_size;
  e->sectors_.store(bytes / 512);
  PVBACK_LOG(Info, "%s: %llu sectors, sector-size %u%s%s%s", e->description_.c_str(),
             static_cast<unsigned long long>(bytes / 512), c.logical_block_size, c.read_only ? ", read-only" : "",
             c.discard ? ", discard" : "", c.flush_needed ? "" : ", no flush needed");
  return e;
}

NbdEngine::~NbdEngine() { stop_storage_daemon(); }

std::expected<std::unique_ptr<Channel>, int> NbdEngine::open_channel(Loop& loop) {
  auto h = connect(uri_, true);
  if (!h) return std::unexpected(h.error());
  if (nbd_get_size(h->get()) / 512 < static_cast<std::int64_t>(sectors())) {
    PVBACK_LOG(Error, "nbd: %s shrank since it was opened", uri_.c_str());
    return std::unexpected(EIO);
  }
  return std::make_unique<NbdChannel>(loop, *this, std::move(*h));
}

int NbdEngine::revive_storage_daemon() {
  if (qsd_pid_ <= 0) return 0;
  int status = 0;
  if (::waitpid(qsd_pid_, &status, WNOHANG) != qsd_pid_) return 0;  // it runs
  PVBACK_LOG(Warning, "%s: qemu-storage-daemon (pid %d) %s %d: starting another", description_.c_str(),
             static_cast<int>(qsd_pid_), WIFEXITED(status) ? "exited with status" : "was killed by signal",
             WIFEXITED(status) ? WEXITSTATUS(status) : WTERMSIG(status));
  qsd_pid_ = 0;
  stop_storage_daemon();  // its directory
  return start_storage_daemon(options_);
}

// qemu-storage-daemon exporting the image on a UNIX socket in a private directory. It dies with
// this process (PR_SET_PDEATHSIG): a successor starts its own once the image's lock is free.
int NbdEngine::start_storage_daemon(const NbdOptions& o) {
  const char* fmt = qemu_format_name(o.format);
  if (fmt == nullptr) {
    PVBACK_LOG(Error, "%s: unknown image format \"%s\"", o.image.c_str(), o.format.c_str());
    return EINVAL;
  }
  if (::access(o.image.c_str(), o.read_only ? R_OK : R_OK | W_OK) != 0) {
    const int e = errno;
    PVBACK_LOG(Error, "%s: %s", o.image.c_str(), std::strerror(e));
    return e;
  }
  // What SIGKILLed predecessors (of any device) left behind goes first.
  const std::filesystem::path tmp = std::filesystem::temp_directory_path();
  sweep_stale_daemon_dirs(tmp);
  auto made = make_daemon_dir(tmp);
  if (!made) return made.error();
  const std::string dir = made->string();
  qsd_dir_ = dir;
  const std::string socket = dir + "/nbd.sock";
  const std::string ro = o.read_only ? ",read-only=on" : "";
  // Discards reach the file (holes punched) only if both nodes pass them down.
  const std::string unmap = o.discard && !o.read_only ? ",discard=unmap" : "";
  struct stat st {};
  const char* protocol = ::stat(o.image.c_str(), &st) == 0 && S_ISBLK(st.st_mode) ? "host_device" : "file";
  const std::vector<std::string> args = {
      o.qsd_binary,
      "--blockdev", std::string("driver=") + protocol + ",node-name=file0,filename=" + qemu_escape(o.image) + ro + unmap,
      "--blockdev", std::string("driver=") + fmt + ",node-name=disk0,file=file0" + ro + unmap,
      "--nbd-server", "addr.type=unix,addr.path=" + qemu_escape(socket),
      // writethrough: a write is answered once QEMU's own caches (a qcow2's cluster tables) are
      // in the file, so a daemon killed with writes already answered loses none of them (it costs
      // an fdatasync per write: bench/blk_engines.sh); the guest's flush still makes them durable.
      "--export", std::string("type=nbd,id=export0,node-name=disk0,name=disk,writable=") +
                      (o.read_only ? "off" : o.writethrough ? "on,writethrough=on" : "on"),
  };
  std::vector<char*> argv;
  for (const auto& a : args) argv.push_back(const_cast<char*>(a.c_str()));
  argv.push_back(nullptr);
  uri_ = "nbd+unix:///disk?socket=" + socket;
  // A predecessor's daemon (pvback-blk killed, its daemon told by PR_SET_PDEATHSIG) may still hold
  // the image's lock for a moment: a daemon that exits before serving is started again until then.
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(20);
  // Past the first 2 s, only while another process still holds a lock on the image.
  const auto retry_until = std::chrono::steady_clock::now() + std::chrono::seconds(2);
  int last_status = 0;
  for (unsigned attempt = 0;; ++attempt) {
    const pid_t parent = ::getpid();
    const pid_t pid = ::fork();
    if (pid < 0) return errno;
    if (pid == 0) {
      // pvback-blk takes its termination signals through a signalfd, so they are blocked here: the
      // daemon must get them (from stop_storage_daemon, and as its parent-death signal).
      sigset_t none;
      ::sigemptyset(&none);
      ::sigprocmask(SIG_SETMASK, &none, nullptr);
      ::setsid();  // a signal to pvback-blk's process group (a terminal's ^C) is not for it
      ::prctl(PR_SET_PDEATHSIG, SIGTERM);
      if (::getppid() != parent) ::_exit(1);
      ::execvp(argv[0], argv.data());
      ::_exit(127);
    }
    qsd_pid_ = pid;
    description_ = std::string(fmt) + " " + o.image + " (qemu-storage-daemon, pid " + std::to_string(pid) + ")";
    // Ready once an NBD client gets through the handshake.
    for (;;) {
      if (::waitpid(pid, &last_status, WNOHANG) == pid) {
        qsd_pid_ = 0;
        break;
      }
      if (std::filesystem::exists(socket) && connect(uri_, false)) return 0;
      if (std::chrono::steady_clock::now() >= deadline) {
        PVBACK_LOG(Error, "%s: qemu-storage-daemon does not serve it after 20 s", o.image.c_str());
        return ETIMEDOUT;
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
    const bool missing = WIFEXITED(last_status) && WEXITSTATUS(last_status) == 127;
    const auto now = std::chrono::steady_clock::now();
    if (missing || now >= deadline || (now >= retry_until && !image_locked(o.image))) break;
    if (attempt == 0)
      PVBACK_LOG(Notice, "%s: qemu-storage-daemon exited before serving it (the image locked by a predecessor's "
                 "daemon?): trying again", o.image.c_str());
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  PVBACK_LOG(Error, "%s: qemu-storage-daemon exited (%s %d) without serving it", o.image.c_str(),
             WIFEXITED(last_status) ? "status" : "signal",
             WIFEXITED(last_status) ? WEXITSTATUS(last_status) : WTERMSIG(last_status));
  return EIO;
}

void NbdEngine::stop_storage_daemon() {
  if (qsd_pid_ > 0) {
    ::kill(qsd_pid_, SIGTERM);  // it flushes and closes the image

    int status = 0;
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
    while (::waitpid(qsd_pid_, &status, WNOHANG) == 0) {
      if (std::chrono::steady_clock::now() >= deadline) {
        PVBACK_LOG(Warning, "%s: qemu-storage-daemon (pid %d) ignored SIGTERM for 10 s: killing it",
                   description_.c_str(), static_cast<int>(qsd_pid_));
        ::kill(qsd_pid_, SIGKILL);
        ::waitpid(qsd_pid_, &status, 0);
        break;
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
    qsd_pid_ = 0;
  }
  if (!qsd_dir_.empty()) {
    std::error_code ec;
    std::filesystem::remove_all(qsd_dir_, ec);
    qsd_dir_.clear();
  }
}

}  // namespace pvback::storage
