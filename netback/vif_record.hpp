// The record of a connected vif that outlives the process serving its rings: one journal per ring
// (ring_journal.hpp: every response exactly once across a SIGKILL) and what the guest set through
// the control ring and multicast extras (the frontend never sends it again). A file on tmpfs,
// <recovery dir>/vif-<domid>-<handle>, which the control part opens and the process serving the
// rings maps (the data plane, confined, receives it as an fd); without a recovery directory, a
// memfd the control part holds, which outlives a data plane but not the control part.
//
// The record is trusted only while it is live (written since the rings were connected) and
// belongs to this very connection: same frontend domain, queue count, ring references and event
// channels of every queue and of the control ring. Otherwise (a frontend that reconnected
// meanwhile, a stale file) it is reset and the rings are taken from their rsp_prod. As for
// pvback-blk's records, a frontend that reconnected with new rings on exactly the same grant
// references and event channels while no backend ran would be taken for the old connection.
// A data plane taken over by its guest can write the record as it likes: what it holds is
// checked again where it is used (VifShared::restore clamps the hash configuration; a journal
// only ever writes responses into that guest's own ring).
#pragma once
#include <cstdint>
#include <expected>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "base/unique_fd.hpp"
#include "grant/types.hpp"
#include "netback/ring_journal.hpp"
#include "netback/vif_shared.hpp"

namespace pvback::netback {

inline constexpr unsigned kRecordMaxQueues = 64;

struct VifRecordKey {
  struct Queue {
    GrantRef tx_ref = 0, rx_ref = 0;
    EvtchnPort tx_port = 0, rx_port = 0;
    bool operator==(const Queue&) const = default;
  };
  DomId frontend_domid = 0;
  std::vector<Queue> queues;
  bool ctrl = false;
  GrantRef ctrl_ref = 0;
  EvtchnPort ctrl_port = 0;
  bool operator==(const VifRecordKey&) const = default;
};

class VifRecord final : public GuestStateSink {
 public:
  // The size of a record for `queues` queues.
  static std::size_t bytes_for(unsigned queues);
  // Maps the record in `fd` (a dup is kept by the mapping, not the fd) for `queues` queues.
  // EINVAL if `queues` is 0 or above kRecordMaxQueues, or the file is smaller than bytes_for().
  static std::expected<std::unique_ptr<VifRecord>, int> map(int fd, unsigned queues);
  ~VifRecord();
  VifRecord(const VifRecord&) = delete;
  VifRecord& operator=(const VifRecord&) = delete;

  // With `resume`, keeps a live record of this very connection (true). Otherwise, or when it is
  // not one (`why` then says why), starts it afresh for `key`: journals idle, no guest state
  // (false).
  bool begin(const VifRecordKey& key, bool resume, std::string& why);

  JournalBlock* tx_journal(unsigned queue) const;
  JournalBlock* rx_journal(unsigned queue) const;
  JournalBlock* ctrl_journal() const;

  // The guest-set state last saved, if any.
  std::optional<GuestSetState> guest_state() const;
  void save(const GuestSetState& state) noexcept override;

  struct Header;  // vif_record.cpp

 private:
  VifRecord() = default;
  Header* header_ = nullptr;
  std::byte* base_ = nullptr;
  std::size_t bytes_ = 0;
  unsigned queues_ = 0;
};

// The control part's side: opens (creating it, mode 0600, never through a symlink) the record's
// file at `path` and sizes it for `queues` queues, keeping its contents when the size is right
// (a predecessor's record for the same connection). Without a path, a new memfd.
std::expected<UniqueFd, int> open_record(const std::string& path, unsigned queues);

}  // namespace pvback::netback
