// The RBD engine: a disk that is an image in a Ceph cluster, through librbd's asynchronous API.
//
// One cluster connection and one open image per disk, shared by every queue: librbd is
// thread-safe, and a second handle on the same image from one process would make the image's
// exclusive lock move back and forth between them on every write. Each queue's channel gives
// librbd its iovecs (reads land straight in the guest's pages) and learns of completions through
// a lock-free list that librbd's callback thread fills and an eventfd polled on the queue's
// io_uring, so the queue's thread sleeps in one place as with every other engine.
//
// How the toolstack names an image (QEMU's syntax, which libxl passes through for the qdisk
// backend as "aio:rbd:..."):
//   rbd:<pool>[/<namespace>]/<image>[@<snapshot>][:<key>=<value>]...
// `id` is the client's name without "client." (default admin), `conf` the ceph.conf to read
// (default: librados' own search, /etc/ceph/ceph.conf first); every other key is a Ceph option
// (mon_host, keyring, rbd_cache, ...). A ':' or '\' inside a value is written "\:" or "\\". A
// snapshot is read-only.
#pragma once
#include <atomic>
#include <expected>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "storage/engine.hpp"

namespace pvback::storage {

struct RbdOptions {
  std::string pool;
  std::string name_space;  // RADOS namespace inside the pool, or empty
  std::string image;
  std::string snapshot;    // empty: the image's head
  std::string id = "admin";
  std::string conf;        // empty: librados' default search
  std::vector<std::pair<std::string, std::string>> settings;  // other Ceph options, in order
  bool read_only = false;
  bool discard = true;     // the toolstack's discard-enable
  // Take the image's exclusive lock at open and keep it (librbd then hands it to no other client
  // that asks), for a process that serves the image alone (a data plane): lock_owner() names it.
  bool take_lock = false;
};

// Whether params names an RBD image: "rbd:..." or libxl's qdisk form "aio:rbd:..." / "raw:rbd:...".
bool names_rbd(std::string_view params);
// Parses the forms above into options (read_only and discard left at their defaults), or says
// what is wrong with it.
std::expected<RbdOptions, std::string> parse_rbd_params(std::string_view params);

class RbdEngine final : public Engine {
 public:
  // Connects to the cluster and opens the image. errno value on failure (logged with the cause);
  // a cluster that does not answer fails after client_mount_timeout (10 s unless set).
  static std::expected<std::unique_ptr<RbdEngine>, int> open(const RbdOptions& options);
  ~RbdEngine() override;

  const Capabilities& capabilities() const override { return caps_; }
  std::uint64_t sectors() const override { return sectors_.load(std::memory_order_acquire); }
  // librbd learns of a resize (`rbd resize`) through its watch on the image's header.
  bool refresh_size() override;
  std::string describe() const override { return description_; }
  const char* kind() const override { return "rbd"; }
  std::expected<std::unique_ptr<Channel>, int> open_channel(Loop& loop) override;

  // With RbdOptions::take_lock, the exclusive lock's owner (this process) as librbd names it, for
  // the control part to break once this process died: a dead owner's lock would otherwise hold
  // every write of its successor until the cluster drops its watch (30 s). Empty when no lock
  // was taken (read-only, or another client holds it: librbd then takes it at the first write).
  const std::string& lock_owner() const { return lock_owner_; }
  // Breaks the exclusive lock if `owner` (take_exclusive_lock's answer in a process that died)
  // still holds it, and has the cluster block that client (librbd's rbd_blocklist_on_break_lock).
  // 0, ENOENT if it holds none, or an errno value.
  [[nodiscard]] int break_lock_of(const std::string& owner);

  struct Handles;  // the cluster, pool and image (rbd_engine.cpp)

 private:
  RbdEngine();
  std::unique_ptr<Handles> handles_;
  std::string description_;
  std::string lock_owner_;
  Capabilities caps_;
  std::atomic<std::uint64_t> sectors_{0};
};

}  // namespace pvback::storage
