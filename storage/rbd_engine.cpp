#include "storage/rbd_engine.hpp"

#include <rados/librados.h>
#include <rbd/librbd.h>
#include <sys/eventfd.h>
#include <poll.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <deque>
#include <iterator>
#include <optional>
#include <thread>

#include "base/log.hpp"
#include "base/unique_fd.hpp"
#include "storage/loop.hpp"

namespace pvback::storage {

struct RbdEngine::Handles {
  rados_t cluster = nullptr;
  rados_ioctx_t pool = nullptr;
  rbd_image_t image = nullptr;
  ~Handles() {
    if (image != nullptr) rbd_close(image);  // flushes librbd's cache and releases the image's lock
    if (pool != nullptr) rados_ioctx_destroy(pool);
    if (cluster != nullptr) rados_shutdown(cluster);
  }
};

namespace {

constexpr std::string_view kPrefixes[] = {"rbd:", "aio:rbd:", "raw:rbd:"};

// Splits at unescaped ':' and undoes the "\:" and "\\" escapes; nullopt if a '\' escapes
// anything else or ends the string.
std::optional<std::vector<std::string>> split_fields(std::string_view s) {
  std::vector<std::string> fields(1);
  for (std::size_t i = 0; i < s.size(); ++i) {
    const char c = s[i];
    if (c == '\\') {
      if (i + 1 == s.size() || (s[i + 1] != ':' && s[i + 1] != '\\')) return std::nullopt;
      fields.back() += s[++i];
    } else if (c == ':') {
      fields.emplace_back();
    } else {
      fields.back() += c;
    }
  }
  return fields;
}

bool printable(const std::string& s) {
  for (unsigned char c : s)
    if (c < 0x20 || c == 0x7f) return false;
  return true;
}

// user_data of an RbdChannel's eventfd poll.
constexpr std::uint64_t kCompleted = Loop::kEngineTag | 1;

class RbdChannel final : public Channel {
 public:
  RbdChannel(Loop& loop, const RbdEngine& engine, rbd_image_t image, UniqueFd wake)
      : loop_(loop), engine_(engine), image_(image), wake_(std::move(wake)) {}
  // Every operation was reported (the caller's contract), but librbd's thread may still be
  // between publishing the last one and writing the eventfd.
  ~RbdChannel() override {
    while (callbacks_running_.load(std::memory_order_acquire) != 0) std::this_thread::yield();
  }

  int submit(const Request& rq) override {
    if (int e = refusal(engine_.capabilities(), rq.op)) return e;  // secure discard: never offered
    Command& c = command(rq.tag);
    c.tag = rq.tag;
    c.op = rq.op;
    c.length = rq.length;
    if (int r = rbd_aio_create_completion(&c, &RbdChannel::on_done, &c.completion); r < 0) return -r;
    int r = 0;
    switch (rq.op) {
      case Op::Read:
        r = rbd_aio_readv(image_, rq.iov, static_cast<int>(rq.iovcnt), rq.offset, c.completion);
        break;
      case Op::Write:
        r = rbd_aio_writev(image_, rq.iov, static_cast<int>(rq.iovcnt), rq.offset, c.completion);
        break;
      case Op::Flush:
        r = rbd_aio_flush(image_, c.completion);
        break;
      case Op::Discard:
      case Op::SecureDiscard:
        r = rbd_aio_discard(image_, rq.offset, rq.length, c.completion);
        break;
      case Op::WriteZeroes:
        r = rbd_aio_write_zeroes(image_, rq.offset, rq.length, c.completion, 0, 0);
        break;
    }
    if (r < 0) {
      rbd_aio_release(c.completion);
      c.completion = nullptr;
      PVBACK_LOG_RATELIMITED(Warning, "%s: %s refused: %s", engine_.describe().c_str(), op_name(rq.op),
                             std::strerror(-r));
      return -r;
    }
    ++in_flight_;
    arm();
    return 0;
  }

  void on_completion(std::uint64_t user_data, int res, CompletionSink& sink) override {
    if (user_data != kCompleted) return;
    armed_ = false;
    if (res < 0 && res != -ECANCELED)
      PVBACK_LOG_RATELIMITED(Error, "%s: cannot poll its completions: %s", engine_.describe().c_str(),
                             std::strerror(-res));
    // Drained before the list is taken: a completion published after this read writes it again.
    std::uint64_t count = 0;
    [[maybe_unused]] const ssize_t n = ::read(wake_.get(), &count, sizeof count);
    // Newest first: turned around so they are reported in the order librbd finished them.
    Command* newest = completed_.exchange(nullptr, std::memory_order_acquire);
    Command* oldest = nullptr;
    while (newest != nullptr) {
      Command* next = newest->next;
      newest->next = oldest;
      oldest = newest;
      newest = next;
    }
    for (Command* c = oldest; c != nullptr;) {
      Command* next = c->next;  // the report may submit again under the same tag
      rbd_aio_release(c->completion);
      c->completion = nullptr;
      --in_flight_;
      int result = c->result;
      if (result >= 0) result = c->op == Op::Read || c->op == Op::Write ? static_cast<int>(c->length) : 0;
      sink.completed(c->tag, result);
      c = next;
    }
    arm();
  }

  std::uint32_t in_flight() const override { return in_flight_; }

 private:
  struct Command {
    RbdChannel* channel = nullptr;
    rbd_completion_t completion = nullptr;
    Command* next = nullptr;
    std::uint64_t length = 0;
    std::uint32_t tag = 0;
    Op op = Op::Read;
    int result = 0;
  };

  // Stable addresses (librbd holds a pointer until the callback), grown on first use of a tag.
  Command& command(std::uint32_t tag) {
    while (commands_.size() <= tag) commands_.emplace_back().channel = this;
    return commands_[tag];
  }

  // On one of librbd's threads: publish the result, and wake the queue's thread if the list was
  // empty (otherwise a wake-up is already on its way).
  static void on_done(rbd_completion_t completion, void* arg) {
    auto* c = static_cast<Command*>(arg);
    RbdChannel* ch = c->channel;
    ch->callbacks_running_.fetch_add(1, std::memory_order_acq_rel);
    const ssize_t r = rbd_aio_get_return_value(completion);
    c->result = r < 0 ? static_cast<int>(r) : 0;
    Command* head = ch->completed_.load(std::memory_order_relaxed);
    do {
      c->next = head;
    } while (!ch->completed_.compare_exchange_weak(head, c, std::memory_order_release, std::memory_order_relaxed));
    if (head == nullptr) {
      const std::uint64_t one = 1;
      [[maybe_unused]] const ssize_t n = ::write(ch->wake_.get(), &one, sizeof one);
    }
    ch->callbacks_running_.fetch_sub(1, std::memory_order_acq_rel);
  }

  void arm() {
    if (in_flight_ == 0 || armed_) return;
    io_uring_sqe* sqe = loop_.sqe();
    if (sqe == nullptr) return;  // armed again at the next submit or completion
    io_uring_prep_poll_add(sqe, wake_.get(), POLLIN);
    io_uring_sqe_set_data64(sqe, kCompleted);
    armed_ = true;
  }

  Loop& loop_;
  const RbdEngine& engine_;
  rbd_image_t image_;
  UniqueFd wake_;
  std::deque<Command> commands_;
  std::atomic<Command*> completed_{nullptr};
  std::atomic<unsigned> callbacks_running_{0};
  std::uint32_t in_flight_ = 0;
  bool armed_ = false;
};

}  // namespace

bool names_rbd(std::string_view params) {
  for (std::string_view p : kPrefixes)
    if (params.starts_with(p)) return true;
  return false;
}

std::expected<RbdOptions, std::string> parse_rbd_params(std::string_view params) {
  std::string_view rest;
  for (std::string_view p : kPrefixes)
    if (params.starts_with(p)) rest = params.substr(p.size());
  if (rest.empty()) return std::unexpected("no image named after \"rbd:\"");
  auto fields = split_fields(rest);
  if (!fields) return std::unexpected("a '\\' escapes only ':' and '\\'");
  RbdOptions o;
  std::string name = (*fields)[0];
  if (const auto at = name.find('@'); at != std::string::npos) {
    o.snapshot = name.substr(at + 1);
    name.resize(at);
    if (o.snapshot.empty()) return std::unexpected("an empty snapshot name after '@'");
  }
  std::vector<std::string> parts;
  for (std::size_t from = 0;;) {
    const auto slash = name.find('/', from);
    parts.push_back(name.substr(from, slash == std::string::npos ? std::string::npos : slash - from));
    if (slash == std::string::npos) break;
    from = slash + 1;
  }
  if (parts.size() < 2 || parts.size() > 3)
    return std::unexpected("\"" + name + "\" is not <pool>/<image> or <pool>/<namespace>/<image>");
  for (const auto& p : parts)
    if (p.empty()) return std::unexpected("\"" + name + "\" has an empty pool, namespace or image name");
  o.pool = parts.front();
  o.image = parts.back();
  if (parts.size() == 3) o.name_space = parts[1];
  for (std::size_t i = 1; i < fields->size(); ++i) {
    const std::string& f = (*fields)[i];
    const auto eq = f.find('=');
    if (eq == 0 || eq == std::string::npos || eq + 1 == f.size())
      return std::unexpected("\"" + f + "\" is not <key>=<value>");
    std::string key = f.substr(0, eq), value = f.substr(eq + 1);
    if (key == "id") {
      o.id = value;
    } else if (key == "conf") {
      o.conf = value;
    } else {
      o.settings.emplace_back(std::move(key), std::move(value));
    }
  }
  for (const std::string* s : {&o.pool, &o.name_space, &o.image, &o.snapshot, &o.id, &o.conf})
    if (!printable(*s)) return std::unexpected("a control character in a name");
  for (const auto& [k, v] : o.settings)
    if (!printable(k) || !printable(v)) return std::unexpected("a control character in option " + k);
  return o;
}

namespace {

// The exclusive lock's owner as librbd names it, or empty.
std::string lock_owner_of(rbd_image_t image) {
  rbd_lock_mode_t mode{};
  char* owners[4] = {};
  size_t count = std::size(owners);
  if (rbd_lock_get_owners(image, &mode, owners, &count) < 0) return "";
  std::string owner = count > 0 && owners[0] != nullptr ? owners[0] : "";
  rbd_lock_get_owners_cleanup(owners, count);
  return owner;
}

}  // namespace

RbdEngine::RbdEngine() : handles_(std::make_unique<Handles>()) {}
RbdEngine::~RbdEngine() = default;

std::expected<std::unique_ptr<RbdEngine>, int> RbdEngine::open(const RbdOptions& o) {
  std::unique_ptr<RbdEngine> e(new RbdEngine);
  Handles& h = *e->handles_;
  std::string name = o.pool + "/" + (o.name_space.empty() ? "" : o.name_space + "/") + o.image;
  if (!o.snapshot.empty()) name += "@" + o.snapshot;
  e->description_ = "rbd " + name + " (client." + o.id + ")";
  const char* what = e->description_.c_str();
  auto failed = [&](const char* step, int r) {
    PVBACK_LOG(Error, "%s: %s: %s", what, step, std::strerror(-r));
    return std::unexpected(-r);
  };
  if (int r = rados_create(&h.cluster, o.id.c_str()); r < 0) return failed("cannot create a cluster handle", r);
  // An explicit conf must be read; librados' default search may find none when the options name
  // the monitors themselves.
  if (int r = rados_conf_read_file(h.cluster, o.conf.empty() ? nullptr : o.conf.c_str()); r < 0 && !o.conf.empty())
    return failed(("cannot read " + o.conf).c_str(), r);
  // librados waits 300 s for an unreachable cluster by default; a device must fail sooner.
  if (int r = rados_conf_set(h.cluster, "client_mount_timeout", "10"); r < 0) return failed("client_mount_timeout", r);
  for (const auto& [key, value] : o.settings)
    if (int r = rados_conf_set(h.cluster, key.c_str(), value.c_str()); r < 0)
      return failed(("Ceph option " + key + "=" + value).c_str(), r);
  if (int r = rados_connect(h.cluster); r < 0) return failed("cannot connect to the cluster", r);
  if (int r = rados_ioctx_create(h.cluster, o.pool.c_str(), &h.pool); r < 0)
    return failed(("no pool " + o.pool).c_str(), r);
  if (!o.name_space.empty()) rados_ioctx_set_namespace(h.pool, o.name_space.c_str());
  const bool read_only = o.read_only || !o.snapshot.empty();
  const char* snap = o.snapshot.empty() ? nullptr : o.snapshot.c_str();
  // Read-only opens take no exclusive lock, so another host may write the image meanwhile.
  const int r = read_only ? rbd_open_read_only(h.pool, o.image.c_str(), &h.image, snap)
                          : rbd_open(h.pool, o.image.c_str(), &h.image, snap);
  if (r < 0) {
    h.image = nullptr;
    return failed("cannot open the image", r);
  }
  if (o.take_lock && !read_only) {
    // Before any I/O: from rbd_lock_acquire on, librbd answers a write without the lock with
    // EROFS rather than asking for the lock, so one that fails is undone by opening again.
    if (int l = rbd_lock_acquire(h.image, RBD_LOCK_MODE_EXCLUSIVE); l == 0) {
      e->lock_owner_ = lock_owner_of(h.image);
    } else {
      PVBACK_LOG(Warning, "%s: the image's exclusive lock is not ours (%s): librbd takes it at the first write", what,
                 std::strerror(-l));
      rbd_close(h.image);
      h.image = nullptr;
      if (int again = rbd_open(h.pool, o.image.c_str(), &h.image, snap); again < 0) {
        h.image = nullptr;
        return failed("cannot open the image again", again);
      }
    }
  }
  rbd_image_info_t info{};
  if (int s = rbd_stat(h.image, &info, sizeof info); s < 0) return failed("cannot stat the image", s);
  Capabilities& c = e->caps_;
  c.read_only = read_only;
  c.flush_needed = true;  // librbd's cache (rbd_cache, on by default) holds writes until a flush
  c.discard = o.discard && !read_only;
  c.write_zeroes = !read_only;
  c.logical_block_size = 512;
  c.physical_block_size = 4096;
  c.dma_alignment = 1;  // memory goes through librbd's messenger
  // Smaller discards are rounded to what RADOS can free; Linux's krbd also advertises 64 KiB.
  c.discard_granularity = 64 * 1024;
  e->sectors_.store(info.size / 512);
  PVBACK_LOG(Info, "%s: %llu sectors in %llu-byte objects%s%s", what, static_cast<unsigned long long>(info.size / 512),
             static_cast<unsigned long long>(info.obj_size), read_only ? ", read-only" : "",
             c.discard ? ", discard" : "");
  return e;
}

int RbdEngine::break_lock_of(const std::string& owner) {
  rbd_lock_mode_t mode{};
  char* owners[4] = {};
  size_t count = std::size(owners);
  const int r = rbd_lock_get_owners(handles_->image, &mode, owners, &count);
  if (r == -ENOENT) return ENOENT;
  if (r < 0) return -r;
  bool held = false;
  for (size_t i = 0; i < count; ++i) held = held || (owners[i] != nullptr && owner == owners[i]);
  rbd_lock_get_owners_cleanup(owners, count);
  if (!held) return ENOENT;
  const int b = rbd_lock_break(handles_->image, RBD_LOCK_MODE_EXCLUSIVE, owner.c_str());
  return b < 0 ? -b : 0;
}

bool RbdEngine::refresh_size() {
  std::uint64_t bytes = 0;
  if (rbd_get_size(handles_->image, &bytes) < 0) return false;
  const std::uint64_t sectors = bytes / 512;
  return sectors_.exchange(sectors, std::memory_order_acq_rel) != sectors;
}

std::expected<std::unique_ptr<Channel>, int> RbdEngine::open_channel(Loop& loop) {
  UniqueFd wake(::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK));
  if (!wake) return std::unexpected(errno);
  return std::make_unique<RbdChannel>(loop, *this, handles_->image, std::move(wake));
}

}  // namespace pvback::storage
