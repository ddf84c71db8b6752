// The control ring of a vif (feature-ctrl-ring): the frontend configures the receive-side hash
// (algorithm, flags, key, mapping table) that picks the RX queue for each packet. Values from the
// frontend are checked before use: a key or mapping out of range is refused with
// kCtrlStatusInvalidParameter (XSA-270), never applied in part. Runs on its own thread.
#pragma once
#include <expected>
#include <functional>
#include <memory>
#include <string>

#include "grant/platform.hpp"
#include "grant/types.hpp"
#include "netback/ring_journal.hpp"
#include "netback/vif_shared.hpp"

namespace pvback::netback {

struct ControlRingConfig {
  std::string name;  // "vif 5/0 ctrl"
  DomId frontend_domid = 0;
  GrantRef ring_ref = 0;
  EvtchnPort event_channel = 0;
  std::chrono::milliseconds bind_patience{0};  // as QueueConfig::bind_patience
  RingJournal journal;                         // as QueueConfig::tx_journal
};

class ControlRing {
 public:
  using FatalHandler = std::function<void(int error, const std::string& reason)>;
  static std::expected<std::unique_ptr<ControlRing>, int> create(const grant::Platform& platform,
                                                                 ControlRingConfig config, VifShared& shared,
                                                                 FatalHandler on_fatal);
  ~ControlRing();
  // The first access to the guest's ring, before run() (as Queue::attach): finishes a batch the
  // journal holds and takes the ring where its responses stand; kErrProducerOverflow if req_prod
  // is already more than a ring ahead of them. 0 or an errno value.
  [[nodiscard]] int attach();
  void run();   // blocking, its own thread
  void stop();  // thread-safe

 private:
  struct Impl;
  explicit ControlRing(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace pvback::netback
