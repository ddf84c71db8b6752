// Disks of every kind pvback-blk serves, for whole-device tests that run the same workload on each:
// a raw file (file engine), a qcow2 image and a qcow2 over a backing file (qemu-storage-daemon of
// pvback-blk's own, NBD engine), and nbdkit's memory plugin as a remote NBD server on loopback, in
// the clear and over TLS with a pre-shared key.
// An image in a real Ceph cluster (RBD engine) where the binary has the cluster. Another kind is
// one more DiskKind, one more make_* function and one more case in make_test_disk.
#pragma once
#include <netinet/in.h>
#include <signal.h>
#include <spawn.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <functional>
#include <iterator>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "tests/blkback/device/vbd_fixture.hpp"
#ifdef PVBACK_TEST_RBD_DISKS
#include "tests/support/ceph_cluster.hpp"
#endif

extern char** environ;

namespace pvback::test {

// Rbd only in binaries built with PVBACK_TEST_RBD_DISKS (they require the ctest fixture "ceph").
enum class DiskKind { RawFile, Qcow2, Qcow2WithBacking, NbdkitMemory, NbdkitTls, Rbd };

inline const char* disk_kind_name(DiskKind kind) {
  switch (kind) {
    case DiskKind::RawFile: return "raw";
    case DiskKind::Qcow2: return "qcow2";
    case DiskKind::Qcow2WithBacking: return "qcow2backing";
    case DiskKind::NbdkitMemory: return "nbdkit";
    case DiskKind::NbdkitTls: return "nbdkittls";
    case DiskKind::Rbd: return "rbd";
  }
  return "?";
}

inline void PrintTo(DiskKind kind, std::ostream* os) { *os << disk_kind_name(kind); }

// A command's exit status (0: success), its output appended to `log` when one is given.
inline int run_command(const std::string& command, const std::filesystem::path& log = {}) {
  const std::string full = log.empty() ? command : command + " >>" + log.string() + " 2>&1";
  const int status = std::system(full.c_str());
  return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

inline std::vector<std::byte> read_whole_file(const std::filesystem::path& path) {
  std::ifstream in(path, std::ios::binary);
  std::vector<char> bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  std::vector<std::byte> out(bytes.size());
  std::memcpy(out.data(), bytes.data(), bytes.size());
  return out;
}

// Bytes the file occupies on its file system (holes not counted).
inline std::uint64_t allocated_bytes(const std::filesystem::path& path) {
  struct stat st {};
  return ::stat(path.c_str(), &st) == 0 ? static_cast<std::uint64_t>(st.st_blocks) * 512 : 0;
}

// `qemu-img check` of an image nobody holds open: 0 when clean.
inline int qemu_img_check(const std::filesystem::path& image, const std::filesystem::path& log) {
  return run_command("qemu-img check -q " + image.string(), log);
}

// A server process the test owns: SIGTERM and reaped at destruction.
class ServerProcess {
 public:
  ServerProcess() = default;
  ServerProcess(const ServerProcess&) = delete;
  ServerProcess& operator=(const ServerProcess&) = delete;
  ~ServerProcess() { stop(); }
  // Runs `shell_command` under /bin/sh with `listen_fd`, if >= 0, as its fd 3, and its output in `log`.
  void start(const std::string& shell_command, int listen_fd, const std::filesystem::path& log) {
    posix_spawn_file_actions_t actions;
    posix_spawn_file_actions_init(&actions);
    posix_spawn_file_actions_addopen(&actions, 1, log.c_str(), O_WRONLY | O_CREAT | O_APPEND, 0644);
    posix_spawn_file_actions_adddup2(&actions, 1, 2);
    if (listen_fd >= 0) posix_spawn_file_actions_adddup2(&actions, listen_fd, 3);
    const char* argv[] = {"/bin/sh", "-c", shell_command.c_str(), nullptr};
    const int rc = ::posix_spawn(&pid_, "/bin/sh", &actions, nullptr, const_cast<char**>(argv), environ);
    posix_spawn_file_actions_destroy(&actions);
    ASSERT_EQ(rc, 0) << shell_command;
  }
  void stop() {
    if (pid_ <= 0) return;
    ::kill(pid_, SIGTERM);
    ::waitpid(pid_, nullptr, 0);
    pid_ = 0;
  }
  pid_t pid() const { return pid_; }

 private:
  pid_t pid_ = 0;
};

// A disk made for a test: what "params" names, what the guest must read before it writes anything,
// and the checks to run once pvback-blk (and its storage daemon) are gone.
struct TestDisk {
  DiskKind kind = DiskKind::RawFile;
  std::string params;
  std::vector<std::byte> initial;
  std::filesystem::path image;  // the file pvback-blk serves, if it is one
  std::function<void()> check_after = [] {};
  std::unique_ptr<ServerProcess> server;  // a remote server the test runs
  std::shared_ptr<void> owned;             // anything else the disk lives in (an RBD image)
};

inline void make_raw_file(const std::filesystem::path& dir, std::uint64_t bytes, TestDisk& disk) {
  disk.image = dir / "disk.img";
  std::ofstream(disk.image).close();
  std::filesystem::resize_file(disk.image, bytes);
  disk.params = disk.image.string();
  disk.initial.assign(bytes, std::byte{0});
}

inline void make_qcow2(const std::filesystem::path& dir, std::uint64_t bytes, TestDisk& disk) {
  disk.image = dir / "disk.qcow2";
  ASSERT_EQ(run_command("qemu-img create -q -f qcow2 " + disk.image.string() + " " + std::to_string(bytes)), 0);
  disk.params = "qcow2:" + disk.image.string();
  disk.initial.assign(bytes, std::byte{0});
  disk.check_after = [image = disk.image, log = dir / "qemu-img.log"] {
    EXPECT_EQ(qemu_img_check(image, log), 0) << "qemu-img check " << image << ": see " << log;
  };
}

// A qcow2 overlay over a raw backing file that holds a pattern in its first two thirds (the overlay
// is larger: beyond the backing file's end it reads zeroes). The backing file must stay unchanged.
inline void make_qcow2_with_backing(const std::filesystem::path& dir, std::uint64_t bytes, TestDisk& disk) {
  const std::filesystem::path backing = dir / "backing.raw";
  const std::uint64_t backing_bytes = bytes / 3 * 2 / 65536 * 65536;
  disk.initial.assign(bytes, std::byte{0});
  fill_pattern(std::span(disk.initial).first(backing_bytes), 0, 0xBAC);
  {
    std::ofstream out(backing, std::ios::binary);
    out.write(reinterpret_cast<const char*>(disk.initial.data()), static_cast<std::streamsize>(backing_bytes));
  }
  disk.image = dir / "overlay.qcow2";
  ASSERT_EQ(run_command("qemu-img create -q -f qcow2 -b " + backing.string() + " -F raw " + disk.image.string() + " " +
                        std::to_string(bytes)),
            0);
  disk.params = "qcow2:" + disk.image.string();
  disk.check_after = [image = disk.image, backing, log = dir / "qemu-img.log",
                      expected = std::vector<std::byte>(disk.initial.begin(), disk.initial.begin() + backing_bytes)] {
    EXPECT_EQ(qemu_img_check(image, log), 0) << "qemu-img check " << image << ": see " << log;
    EXPECT_TRUE(read_whole_file(backing) == expected) << "the backing file changed";
  };
}

// A listening TCP socket on 127.0.0.1, on a port the kernel chose; its port in `port`.
inline int listen_on_loopback(std::uint16_t& port) {
  const int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof addr;
  if (fd < 0 || ::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0 || ::listen(fd, 64) != 0 ||
      ::getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len) != 0) {
    if (fd >= 0) ::close(fd);
    return -1;
  }
  port = ntohs(addr.sin_port);
  return fd;
}

// nbdkit serving `plugin_args` on a loopback port it never has to choose: the test binds the socket
// and hands it over by socket activation (LISTEN_FDS), so there is no race for the port and clients
// can connect at once. Returns the nbd:// URI.
inline std::string start_nbdkit(const std::string& plugin_args, const std::filesystem::path& log,
                                ServerProcess& server) {
  std::uint16_t port = 0;
  const int fd = listen_on_loopback(port);
  EXPECT_GE(fd, 0) << "cannot listen on loopback: " << std::strerror(errno);
  if (fd < 0) return {};
  // sh's $$ is nbdkit's pid once it execs: socket activation checks LISTEN_PID.
  server.start("LISTEN_PID=$$ LISTEN_FDS=1 exec nbdkit -f --exit-with-parent " + plugin_args, fd, log);
  ::close(fd);
  return "nbd://127.0.0.1:" + std::to_string(port) + "/";
}

inline void make_nbdkit_memory(const std::filesystem::path& dir, std::uint64_t bytes, TestDisk& disk) {
  disk.server = std::make_unique<ServerProcess>();
  disk.params = start_nbdkit("memory size=" + std::to_string(bytes), dir / "nbdkit.log", *disk.server);
  ASSERT_FALSE(disk.params.empty());
  disk.initial.assign(bytes, std::byte{0});
}

// The same server requiring TLS, authenticated by a pre-shared key (user "pvback"; nbdkit and
// libnbd read the same key file): nbds://pvback@127.0.0.1:PORT/?tls-psk-file=FILE.
// A pre-shared key file for user "pvback" (nbdkit's and libnbd's format), a random 256-bit key,
// mode 0600: 0 on success.
inline int write_psk_file(const std::filesystem::path& psk) {
  return run_command("printf 'pvback:%s\\n' \"$(od -An -tx1 -N32 /dev/urandom | tr -d ' \\n')\" > " + psk.string() +
                     " && chmod 600 " + psk.string());
}

inline void make_nbdkit_tls(const std::filesystem::path& dir, std::uint64_t bytes, TestDisk& disk) {
  const auto psk = dir / "nbd.psk";
  ASSERT_EQ(write_psk_file(psk), 0);
  disk.server = std::make_unique<ServerProcess>();
  const std::string uri = start_nbdkit("--tls=require --tls-psk=" + psk.string() + " memory size=" +
                                           std::to_string(bytes),
                                       dir / "nbdkit.log", *disk.server);
  ASSERT_TRUE(uri.starts_with("nbd://"));
  disk.params = "nbds://pvback@" + uri.substr(6) + "?tls-psk-file=" + psk.string();
  disk.initial.assign(bytes, std::byte{0});
}

#ifdef PVBACK_TEST_RBD_DISKS
// An image in the real Ceph cluster of the fixture "ceph", removed with the disk.
inline void make_rbd(std::uint64_t bytes, TestDisk& disk) {
  auto image = std::make_shared<RbdImage>(std::to_string(bytes) + "B");
  disk.params = "rbd:rbd/" + image->name + ":conf=" + CephCluster::conf();
  disk.initial.assign(bytes, std::byte{0});
  disk.owned = image;
}
#endif

// A disk of `kind` and `bytes` in `dir`.
inline void make_test_disk(DiskKind kind, const std::filesystem::path& dir, std::uint64_t bytes, TestDisk& disk) {
  disk.kind = kind;
  switch (kind) {
    case DiskKind::RawFile: return make_raw_file(dir, bytes, disk);
    case DiskKind::Qcow2: return make_qcow2(dir, bytes, disk);
    case DiskKind::Qcow2WithBacking: return make_qcow2_with_backing(dir, bytes, disk);
    case DiskKind::NbdkitMemory: return make_nbdkit_memory(dir, bytes, disk);
    case DiskKind::NbdkitTls: return make_nbdkit_tls(dir, bytes, disk);
    case DiskKind::Rbd:
#ifdef PVBACK_TEST_RBD_DISKS
      return make_rbd(bytes, disk);
#else
      break;
#endif
  }
  FAIL() << "no such disk kind";
}

}  // namespace pvback::test
