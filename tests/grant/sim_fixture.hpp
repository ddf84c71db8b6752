// A simulated hypervisor (DomainManager on its own thread, temp run dir) for the grant and
// event-channel tests, with domains 1 and 2 created, plus a spy on a domain's grant table.
#pragma once
#include <poll.h>
#include <sys/mman.h>

#include <cstdlib>
#include <filesystem>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include <gtest/gtest.h>

#include "grant/implementations.hpp"
#include "grant/platform.hpp"
#include "grant/sim_control.hpp"
#include "grant/sim_protocol.hpp"
#include "sim/domains/domain_manager.hpp"

namespace pvback::test {

class SimHypervisorTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char dir[] = "/tmp/pvback-grant-XXXXXX";
    ASSERT_NE(::mkdtemp(dir), nullptr);
    run_dir_ = dir;
    sim::DomainHooks hooks;
    hooks.created = [this](DomId domid, const std::string& name) {
      std::lock_guard lock(hook_mutex_);
      created_.emplace_back(domid, name);
    };
    hooks.destroyed = [this](DomId domid) {
      std::lock_guard lock(hook_mutex_);
      destroyed_.push_back(domid);
    };
    manager_ = std::make_unique<sim::DomainManager>(run_dir_, std::move(hooks));
    thread_ = std::thread([this] { manager_->run(); });
    ASSERT_EQ(create_domain(1), 0);
    ASSERT_EQ(create_domain(2), 0);
  }

  void TearDown() override {
    if (manager_) {
      manager_->stop();
      thread_.join();
      manager_.reset();
    }
    std::error_code ec;
    std::filesystem::remove_all(run_dir_, ec);
  }

  // 0 or an errno value, as domain 0 (the toolstack).
  int control_call(sim_protocol::Request req, DomId as = 0) {
    auto control = grant::SimControl::connect(run_dir_, as);
    if (!control) return control.error();
    auto reply = control->call(req);
    return reply ? 0 : reply.error();
  }
  int create_domain(DomId domid, DomId as = 0) {
    sim_protocol::Request req;
    req.op = sim_protocol::Op::CreateDomain;
    req.domid = domid;
    return control_call(req, as);
  }
  int destroy_domain(DomId domid) {
    sim_protocol::Request req;
    req.op = sim_protocol::Op::DestroyDomain;
    req.domid = domid;
    return control_call(req);
  }

  grant::Platform platform(DomId self) const {
    grant::PlatformConfig config;
    config.kind = grant::PlatformConfig::Kind::Sim;
    config.sim_dir = run_dir_.string();
    config.self = self;
    return grant::Platform(config);
  }

  std::vector<DomId> destroyed() {
    std::lock_guard lock(hook_mutex_);
    return destroyed_;
  }
  std::vector<std::pair<DomId, std::string>> created() {
    std::lock_guard lock(hook_mutex_);
    return created_;
  }

  std::filesystem::path run_dir_;
  std::unique_ptr<sim::DomainManager> manager_;
  std::thread thread_;
  std::mutex hook_mutex_;
  std::vector<std::pair<DomId, std::string>> created_;
  std::vector<DomId> destroyed_;
};

// Direct view of a domain's grant table and pin words: what Xen (or a malicious guest) sees.
class GrantTableSpy {
 public:
  GrantTableSpy(const std::filesystem::path& run_dir, DomId domid) {
    auto control = grant::SimControl::connect(run_dir, 0);
    if (!control) throw std::runtime_error("spy cannot connect");
    sim_protocol::Request req;
    req.op = sim_protocol::Op::OpenDomain;
    req.domid = domid;
    std::vector<UniqueFd> fds;
    auto reply = control->call(req, &fds);
    if (!reply || fds.size() != 3) throw std::runtime_error("spy cannot open domain");
    table_ = static_cast<grant_entry_v1_t*>(::mmap(nullptr, kTableBytes, PROT_READ | PROT_WRITE, MAP_SHARED,
                                                   fds[0].get(), 0));
    status_ = static_cast<std::byte*>(::mmap(nullptr, sim_protocol::kStatusBytes, PROT_READ | PROT_WRITE, MAP_SHARED,
                                             fds[2].get(), 0));
    if (table_ == MAP_FAILED || status_ == MAP_FAILED) throw std::runtime_error("spy cannot mmap");
  }
  ~GrantTableSpy() {
    ::munmap(table_, kTableBytes);
    ::munmap(status_, sim_protocol::kStatusBytes);
  }
  GrantTableSpy(const GrantTableSpy&) = delete;
  GrantTableSpy& operator=(const GrantTableSpy&) = delete;

  std::uint16_t flags(GrantRef ref) const { return __atomic_load_n(&table_[ref].flags, __ATOMIC_ACQUIRE); }
  std::uint16_t domid(GrantRef ref) const { return __atomic_load_n(&table_[ref].domid, __ATOMIC_ACQUIRE); }
  std::uint32_t frame(GrantRef ref) const { return __atomic_load_n(&table_[ref].frame, __ATOMIC_ACQUIRE); }
  std::uint32_t* lock_words() const {
    return reinterpret_cast<std::uint32_t*>(status_ + sim_protocol::kStatusHeaderBytes + sim_protocol::kPinWordsBytes);
  }
  std::uint32_t pins(GrantRef ref) const {
    auto* words = reinterpret_cast<std::uint32_t*>(status_ + sim_protocol::kStatusHeaderBytes);
    return __atomic_load_n(&words[ref], __ATOMIC_ACQUIRE);
  }
  // Acting as a mapping process that took the entry's pin lock (see sim_protocol::pin) and was
  // then stopped or killed: `pid` in the entry's lock word.
  void hold_pin_lock(GrantRef ref, std::uint32_t pid) { __atomic_store_n(&lock_words()[ref], pid, __ATOMIC_RELEASE); }
  void release_pin_lock(GrantRef ref) { __atomic_store_n(&lock_words()[ref], 0u, __ATOMIC_RELEASE); }
  std::uint32_t pin_lock_holder(GrantRef ref) const { return __atomic_load_n(&lock_words()[ref], __ATOMIC_ACQUIRE); }
  // Acting as the guest: writes an entry directly.
  void write_entry(GrantRef ref, std::uint16_t flags, DomId domid, std::uint32_t frame) {
    __atomic_store_n(&table_[ref].frame, frame, __ATOMIC_RELAXED);
    __atomic_store_n(&table_[ref].domid, domid, __ATOMIC_RELAXED);
    __atomic_store_n(&table_[ref].flags, flags, __ATOMIC_RELEASE);
  }

 private:
  static constexpr std::size_t kTableBytes = sim_protocol::kGrantEntries * sizeof(grant_entry_v1_t);
  grant_entry_v1_t* table_ = nullptr;
  std::byte* status_ = nullptr;
};

// A failure guard, not a timing assertion: events here arrive within microseconds.
inline bool wait_readable(int fd, int timeout_ms = 10000) {
  pollfd p{fd, POLLIN, 0};
  return ::poll(&p, 1, timeout_ms) == 1;
}

}  // namespace pvback::test
