// An engine's channel driven by hand on its own Loop: submit, then run the loop until the
// completions asked for have come back (in the order they came).
#pragma once
#include <fcntl.h>
#include <sys/uio.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "storage/engine.hpp"
#include "storage/loop.hpp"
#include "tests/support/temp_file.hpp"

namespace pvback::test {

struct Done {
  std::uint32_t tag;
  int res;
};

struct Collector final : storage::CompletionSink {
  void completed(std::uint32_t tag, int res) override { done.push_back({tag, res}); }
  std::vector<Done> done;
};

struct Driven {
  storage::Loop loop;
  std::unique_ptr<storage::Channel> channel;
  Collector sink;

  explicit Driven(storage::Engine& engine) {
    if (loop.init(64) != 0) throw std::runtime_error("io_uring");
    auto c = engine.open_channel(loop);
    if (!c) throw std::runtime_error(std::string("open_channel: ") + std::strerror(c.error()));
    channel = std::move(*c);
  }
  ~Driven() {
    while (channel && channel->in_flight() != 0) run_once();
  }
  void run_once() {
    loop.submit_and_wait(1);
    loop.for_each_completion([&](std::uint64_t tag, int res) {
      if ((tag & storage::Loop::kEngineTag) != 0) channel->on_completion(tag, res, sink);
    });
  }
  // Runs until `n` completions in total have been reported, or 10 s passed.
  const std::vector<Done>& wait_for(std::size_t n) {
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
    while (sink.done.size() < n && std::chrono::steady_clock::now() < deadline) run_once();
    return sink.done;
  }
};

// Page-aligned memory (O_DIRECT).
struct Aligned {
  explicit Aligned(std::size_t n) : bytes(n), data(static_cast<std::byte*>(std::aligned_alloc(4096, n))) {}
  ~Aligned() { std::free(data); }
  std::size_t bytes;
  std::byte* data;
};

}  // namespace pvback::test
