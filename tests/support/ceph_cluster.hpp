// The Ceph cluster a test binary's RBD tests use: the one ctest started for the fixture "ceph"
// (PVBACK_CEPH_CONF names its ceph.conf), or, when the binary runs by hand, one of its own started
// by scripts/lib/ceph-cluster.sh for the whole run. Needs PVBACK_SOURCE_DIR defined.
#pragma once
#include <stdlib.h>

#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <stdexcept>
#include <string>

#include <gtest/gtest.h>

namespace pvback::test {

class CephCluster : public ::testing::Environment {
 public:
  // The cluster's ceph.conf.
  static const std::string& conf() { return conf_; }

  void SetUp() override {
    if (const char* conf = std::getenv("PVBACK_CEPH_CONF"); conf != nullptr && *conf != '\0') {
      conf_ = conf;
      return;
    }
    char dir[] = "/tmp/pvback-ceph-XXXXXX";
    ASSERT_NE(::mkdtemp(dir), nullptr);
    dir_ = dir;
    const std::string cmd = std::string(PVBACK_SOURCE_DIR "/scripts/lib/ceph-cluster.sh start ") + dir_ + " >/dev/null";
    ASSERT_EQ(std::system(cmd.c_str()), 0) << "could not start a Ceph cluster; its logs are in " << dir_;
    conf_ = dir_ + "/ceph.conf";
  }
  void TearDown() override {
    if (dir_.empty()) return;
    [[maybe_unused]] const int rc =
        std::system((std::string(PVBACK_SOURCE_DIR "/scripts/lib/ceph-cluster.sh stop ") + dir_).c_str());
    std::error_code ec;
    std::filesystem::remove_all(dir_, ec);
  }

 private:
  static inline std::string conf_;
  std::string dir_;
};

// Runs a Ceph CLI ("rbd ...", "rados ...") against the cluster; its standard output. Throws if it
// fails.
inline std::string ceph_cli(const std::string& command) {
  const auto space = command.find(' ');
  const std::string cmd = command.substr(0, space) + " -c " + CephCluster::conf() + command.substr(space);
  std::string out;
  FILE* p = ::popen(cmd.c_str(), "r");
  if (p == nullptr) throw std::runtime_error("cannot run: " + cmd);
  char buf[4096];
  std::size_t n;
  while ((n = std::fread(buf, 1, sizeof buf, p)) > 0) out.append(buf, n);
  if (::pclose(p) != 0) throw std::runtime_error("failed: " + cmd);
  return out;
}

// An RBD image in pool "rbd" named after the running test, removed (with its snapshots) at the end.
struct RbdImage {
  explicit RbdImage(const std::string& size) {
    name = ::testing::UnitTest::GetInstance()->current_test_info()->name();
    for (char& c : name)
      if (c == '/') c = '_';
    ceph_cli("rbd rm rbd/" + name + " >/dev/null 2>&1 || true");
    ceph_cli("rbd create --size " + size + " rbd/" + name);
  }
  ~RbdImage() {
    try {
      ceph_cli("rbd snap purge rbd/" + name + " >/dev/null 2>&1");
      ceph_cli("rbd rm rbd/" + name + " >/dev/null 2>&1");
    } catch (...) {
    }
  }
  // RADOS objects holding the image's data (4 MiB each).
  std::size_t data_objects() const {
    const std::string info = ceph_cli("rbd info rbd/" + name + " | sed -n 's/.*block_name_prefix: //p'");
    const std::string prefix = info.substr(0, info.find('\n'));
    const std::string list = ceph_cli("rados -p rbd ls");
    std::size_t n = 0;
    for (std::size_t at = list.find(prefix); at != std::string::npos; at = list.find(prefix, at + 1)) ++n;
    return n;
  }
  std::string name;
};

}  // namespace pvback::test
