// An in-memory Port for queue tests: TX packets are recorded with their metadata, RX packets are
// injected by the test. Buffers are split in chunks of `chunk_size` bytes so that both grant-copy
// directions cross chunk boundaries. Thread-safe between the queue's thread and the test.
#pragma once
#include <sys/eventfd.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <deque>
#include <mutex>
#include <vector>

#include "netback/port.hpp"

namespace pvback::test {

using Bytes = std::vector<std::uint8_t>;

struct TxRecord {
  Bytes bytes;
  netback::PacketMeta meta;
};

class MemoryPort : public netback::Port {
 public:
  explicit MemoryPort(bool poll_mode = false, std::uint32_t chunk_size = 1000)
      : poll_mode_(poll_mode), chunk_size_(chunk_size), efd_(::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK)) {}
  ~MemoryPort() override { ::close(efd_); }

  int alloc_tx(std::span<netback::PacketBuffer> bufs) override {
    std::lock_guard lock(mutex_);
    if (fail_alloc) return ENOBUFS;
    for (auto& b : bufs) attach(b, b.length);
    tx_outstanding_ += bufs.size();
    return 0;
  }

  unsigned transmit(std::span<netback::PacketBuffer> bufs) override {
    std::lock_guard lock(mutex_);
    unsigned sent = 0;
    for (auto& b : bufs) {
      auto* store = static_cast<Bytes*>(b.handle);
      if (b.length != 0) {
        TxRecord r;
        for (unsigned c = 0; c < b.nr_chunks; ++c)
          r.bytes.insert(r.bytes.end(), reinterpret_cast<std::uint8_t*>(b.chunks[c].data),
                         reinterpret_cast<std::uint8_t*>(b.chunks[c].data) + b.chunks[c].len);
        r.bytes.resize(b.length);
        r.meta = b.meta;
        tx_bytes_ += b.length;
        tx_.push_back(std::move(r));
        ++sent;
      } else {
        ++tx_zero_length_;
      }
      delete store;
      b.handle = nullptr;
      --tx_outstanding_;
    }
    return sent;
  }

  unsigned receive(std::span<netback::PacketBuffer> bufs) override {
    std::lock_guard lock(mutex_);
    ++receive_calls_;
    unsigned n = 0;
    while (n < bufs.size() && !rx_.empty()) {
      auto& b = bufs[n++];
      TxRecord pkt = std::move(rx_.front());
      rx_.pop_front();
      b.length = static_cast<std::uint32_t>(pkt.bytes.size());
      b.meta = pkt.meta;
      attach(b, b.length);
      std::memcpy(static_cast<Bytes*>(b.handle)->data(), pkt.bytes.data(), pkt.bytes.size());
      ++rx_outstanding_;
      ++rx_received_;
    }
    max_rx_outstanding_ = std::max(max_rx_outstanding_, rx_outstanding_);
    if (rx_.empty()) {
      std::uint64_t v;
      [[maybe_unused]] ssize_t r = ::read(efd_, &v, sizeof(v));
    }
    return n;
  }

  void release(std::span<netback::PacketBuffer> bufs) override {
    std::lock_guard lock(mutex_);
    for (auto& b : bufs) {
      delete static_cast<Bytes*>(b.handle);
      b.handle = nullptr;
      --rx_outstanding_;
      ++rx_released_;
    }
  }

  int rx_fd() const override { return poll_mode_ ? -1 : efd_; }

  void inject(Bytes bytes, netback::PacketMeta meta = {}) {
    std::lock_guard lock(mutex_);
    rx_.push_back(TxRecord{std::move(bytes), meta});
    const std::uint64_t one = 1;
    [[maybe_unused]] ssize_t r = ::write(efd_, &one, sizeof(one));
  }

  std::vector<TxRecord> transmitted() {
    std::lock_guard lock(mutex_);
    return tx_;
  }
  std::size_t transmitted_count() {
    std::lock_guard lock(mutex_);
    return tx_.size();
  }
  std::uint64_t transmitted_bytes() {
    std::lock_guard lock(mutex_);
    return tx_bytes_;
  }
  std::size_t tx_zero_length() {
    std::lock_guard lock(mutex_);
    return tx_zero_length_;
  }
  std::size_t tx_outstanding() {
    std::lock_guard lock(mutex_);
    return tx_outstanding_;
  }
  std::size_t pending_rx() {
    std::lock_guard lock(mutex_);
    return rx_.size();
  }
  std::size_t rx_outstanding() {
    std::lock_guard lock(mutex_);
    return rx_outstanding_;
  }
  std::size_t max_rx_outstanding() {
    std::lock_guard lock(mutex_);
    return max_rx_outstanding_;
  }
  std::size_t rx_received() {
    std::lock_guard lock(mutex_);
    return rx_received_;
  }
  std::size_t rx_released() {
    std::lock_guard lock(mutex_);
    return rx_released_;
  }
  std::size_t receive_calls() {
    std::lock_guard lock(mutex_);
    return receive_calls_;
  }

  bool fail_alloc = false;  // set before the queue runs

 private:
  void attach(netback::PacketBuffer& b, std::uint32_t length) {
    auto* store = new Bytes(std::max<std::uint32_t>(length, 1));
    b.handle = store;
    b.nr_chunks = 0;
    std::uint32_t off = 0;
    while (off < length && b.nr_chunks < netback::kMaxChunks) {
      const std::uint32_t n = b.nr_chunks + 1 == netback::kMaxChunks ? length - off : std::min(chunk_size_, length - off);
      b.chunks[b.nr_chunks++] = netback::Chunk{reinterpret_cast<std::byte*>(store->data() + off), n};
      off += n;
    }
  }

  bool poll_mode_;
  std::uint32_t chunk_size_;
  int efd_;
  std::mutex mutex_;
  std::vector<TxRecord> tx_;
  std::uint64_t tx_bytes_ = 0;
  std::size_t tx_zero_length_ = 0, tx_outstanding_ = 0;
  std::deque<TxRecord> rx_;
  std::size_t rx_outstanding_ = 0, max_rx_outstanding_ = 0, rx_received_ = 0, rx_released_ = 0, receive_calls_ = 0;
};

}  // namespace pvback::test
