// Runs the simulated XenStore server in a thread for one test and connects to it through the
// real libxenstore.
#pragma once
#include <gtest/gtest.h>
#include <poll.h>
#include <stdlib.h>

#include <chrono>
#include <filesystem>
#include <functional>
#include <memory>
#include <string>
#include <thread>

#include "grant/sim_layout.hpp"
#include "sim/run_dir.hpp"
#include "sim/xenstore/server.hpp"
#include "xenbus/xenstore.hpp"

namespace pvback::xenbus::testing {

class SimXenStoreTest : public ::testing::Test {
 public:
  // Waits for `fd` to become readable, runs `handle`, until `done` holds. The deadline only turns
  // a hang into a failure; nothing asserts on how long it took.
  static bool pump_until(int fd, const std::function<void()>& handle, const std::function<bool()>& done) {
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
    while (!done()) {
      if (std::chrono::steady_clock::now() > deadline) return false;
      pollfd pfd{fd, POLLIN, 0};
      ::poll(&pfd, 1, 50);
      handle();
    }
    return true;
  }

 protected:
  void SetUp() override {
    char templ[] = "/tmp/pvback-xenbus-XXXXXX";
    ASSERT_NE(mkdtemp(templ), nullptr);
    run_dir_ = templ;
    sim::prepare_run_dir(run_dir_);
    server_ = std::make_unique<sim::XenStoreServer>(run_dir_);
    server_thread_ = std::thread([this] { server_->run(); });
    socket_ = sim_layout::xenstore_socket(run_dir_).string();
  }

  void TearDown() override {
    if (server_) server_->stop();
    if (server_thread_.joinable()) server_thread_.join();
    server_.reset();
    std::error_code ignored;
    std::filesystem::remove_all(run_dir_, ignored);
  }

  XenStore connect() {
    auto xs = XenStore::open(socket_);
    EXPECT_TRUE(xs.has_value()) << "cannot connect to " << socket_;
    return xs ? std::move(*xs) : XenStore();
  }

  std::filesystem::path run_dir_;
  std::string socket_;
  std::unique_ptr<sim::XenStoreServer> server_;
  std::thread server_thread_;
};

}  // namespace pvback::xenbus::testing
