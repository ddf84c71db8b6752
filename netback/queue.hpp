// One netif queue of a vif: its TX and RX rings, their event channel(s), and the thread that
// serves both between the rings and the queue's Port. The design is described at the top of queue.cpp.
#pragma once
#include <chrono>
#include <cstdint>
#include <expected>
#include <functional>
#include <memory>
#include <string>

#include "grant/platform.hpp"
#include "grant/types.hpp"
#include "netback/port.hpp"
#include "netback/ring_journal.hpp"
#include "netback/stats.hpp"
#include "netback/vif_shared.hpp"

namespace pvback::netback {

// The queues of one vif, so that a queue's thread can put a packet the guest's Toeplitz mapping
// steers to another queue straight into that queue's RX ring (see "RX steering" in queue.cpp).
// One per vif, given to every Queue of it through QueueConfig::group; it must outlive them.
class QueueGroup {
 public:
  explicit QueueGroup(unsigned num_queues);
  ~QueueGroup();
  QueueGroup(const QueueGroup&) = delete;
  QueueGroup& operator=(const QueueGroup&) = delete;
  unsigned size() const;

  struct State;  // queue.cpp
  State& state() const { return *state_; }

 private:
  std::unique_ptr<State> state_;
};

struct QueueConfig {
  std::string name;                 // for logs: "vif 5/0 q1"
  unsigned index = 0;
  DomId frontend_domid = 0;
  GrantRef tx_ring_ref = 0;         // netif rings are always one page
  GrantRef rx_ring_ref = 0;
  EvtchnPort tx_event_channel = 0;  // the frontend's ports; equal unless split event channels
  EvtchnPort rx_event_channel = 0;
  bool split_event_channels = false;
  GuestOffloads guest;              // what the frontend takes on RX (and sends on TX)
  ExitCapabilities exit;            // what the exit takes on TX (tx_csum: else checksums in software)
  bool multicast_control = false;   // request-multicast-control: filter RX multicast
  std::uint16_t xdp_headroom = 0;   // RX data starts this far into each guest page
  // Linux netback's limits: a packet of more than max_slots (18) slots is dropped, one of more than
  // fatal_slots is a protocol violation that disconnects the vif.
  unsigned max_slots = 18;
  unsigned fatal_slots = 20;
  std::chrono::milliseconds rx_stall_timeout{60'000};  // no RX buffers this long: carrier off, drop
                                                       // (0: never stall)
  // Multi-queue RX steering: the vif's group (nullptr: every packet a port delivers stays on
  // this queue). `index` is this queue's place in it.
  QueueGroup* group = nullptr;
  // How long a port still bound by a killed predecessor is waited for (0: not a successor).
  std::chrono::milliseconds bind_patience{0};
  // Each ring's journal in the vif's record (ring_journal.hpp; none: a successor may then read
  // back as requests the responses a killed predecessor wrote but never pushed). A committed
  // batch found there at create() is finished first.
  RingJournal tx_journal, rx_journal;
};

class Queue {
 public:
  // Called from the queue's thread when the frontend broke the protocol badly enough (ring
  // overflow, too many slots beyond the fatal limit) that the vif must be disconnected.
  using FatalHandler = std::function<void(int error, const std::string& reason)>;

  // Maps both rings, binds the event channel(s); reads nothing of them yet. errno value on failure
  // (nothing stays mapped).
  static std::expected<std::unique_ptr<Queue>, int> create(const grant::Platform& platform, QueueConfig config,
                                                           Port& port, VifShared& shared, QueueStats& stats,
                                                           FatalHandler on_fatal);
  ~Queue();

  // The first access to the guest's ring memory, before run() (and, in a data plane, after it
  // confined itself): finishes a batch a killed predecessor logged in the journals, takes each
  // ring where its responses stand and notifies the guest. Every queue of a group attaches
  // before any of them runs (one queue delivers into another's RX ring). 0 or an errno value.
  [[nodiscard]] int attach();

  // Serves both rings until stop() or a fatal error. Blocking; run it on its own thread.
  void run();
  // Thread-safe; makes run() return soon.
  void stop();

  // Packets taken from the port per RX batch: also the most a queue ever holds while the guest
  // has not posted buffers for them.
  static constexpr unsigned kRxBatch = 64;

 private:
  struct Impl;
  explicit Queue(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace pvback::netback
