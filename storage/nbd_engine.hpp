// The NBD engine: a disk served by an NBD server, through libnbd's asynchronous API. Each queue's
// channel has its own connection; reads and writes go straight from and into the guest's pages
// (one NBD command per contiguous piece), and the connection's socket is polled on the queue's
// io_uring like everything else.
//
// Two ways to name the disk:
//   an NBD URI (nbd://host[:port]/export, nbd+unix:///export?socket=PATH): a server someone else
//     runs (nbdkit, qemu-nbd, nbd-server, a storage appliance);
//   an image and its format (qcow2, vhdx, vpc, vmdk, qed, luks, raw): pvback starts and owns a
//     qemu-storage-daemon exporting it on a private UNIX socket, and stops it with the engine. QEMU
//     reads and writes the format; nothing of it is written here.
#pragma once
#include <sys/types.h>

#include <atomic>
#include <string>

#include "storage/engine.hpp"

namespace pvback::storage {

struct NbdOptions {
  std::string uri;       // either this ...
  std::string image;     // ... or an image file and its QEMU format name
  std::string format;
  bool read_only = false;
  bool discard = true;   // the toolstack's discard-enable
  // An image: writes answered once QEMU's own caches are in the file (a daemon killed then loses
  // no answered write), or at once (writeback).
  bool writethrough = true;
  std::string qsd_binary = "qemu-storage-daemon";
  // The server at `uri` is pvback's own storage daemon, started by another process (a data plane
  // connecting to its control part's daemon): a dead connection is storage lost (storage_lost()),
  // not an error to answer the guest with. An engine that starts the daemon itself knows.
  bool server_is_ours = false;
};

// The QEMU format name for a format libxl writes in params ("qcow2:/path", "vhd:/path", "aio:..."),
// or nullptr if it is not one QEMU reads through this engine. "raw" and "aio" give "raw".
const char* qemu_format_name(const std::string& libxl_format);

class NbdEngine final : public Engine {
 public:
  // Connects once to learn the disk's size and what the server can do. errno value on failure
  // (logged with the cause).
  static std::expected<std::unique_ptr<NbdEngine>, int> open(const NbdOptions& options);
  ~NbdEngine() override;

  const Capabilities& capabilities() const override { return caps_; }
  std::uint64_t sectors() const override { return sectors_.load(std::memory_order_acquire); }
  // NBD announces the size at connect only; a resized export is seen by the next connect.
  bool refresh_size() override { return false; }
  std::string describe() const override { return description_; }
  const char* kind() const override { return "nbd"; }
  std::expected<std::unique_ptr<Channel>, int> open_channel(Loop& loop) override;

  const std::string& uri() const { return uri_; }
  pid_t storage_daemon() const { return qsd_pid_; }  // 0 when this engine did not start it
  // The server is pvback's own daemon (this engine's, or the control part's for a data plane).
  bool server_is_ours() const { return server_is_ours_; }
  // This engine's storage daemon, started again if it died (the image's new socket is in uri()
  // then). 0 when it runs (or the server is not ours), or an errno value.
  [[nodiscard]] int revive_storage_daemon();

 private:
  NbdEngine() = default;
  int start_storage_daemon(const NbdOptions& options);
  void stop_storage_daemon();

  std::string uri_;
  std::string description_;
  Capabilities caps_;
  std::atomic<std::uint64_t> sectors_{0};
  NbdOptions options_;
  bool server_is_ours_ = false;
  pid_t qsd_pid_ = 0;
  std::string qsd_dir_;  // holds the daemon's socket
};

}  // namespace pvback::storage
