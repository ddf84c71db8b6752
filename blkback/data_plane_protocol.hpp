// What pvback-blk's control part and a vbd's data-plane process say to each other, over the
// AF_UNIX SOCK_SEQPACKET socket the data plane gets as fd 3 (one message per packet).
//
//   control -> data plane   Start   the rings to serve (DataPlaneSpec) with its fds: a file's
//                                   storage, already opened and locked (FileEngine::reopen_locked;
//                                   none for an NBD server or an RBD image, which the data plane
//                                   connects to itself before it confines itself), the queues' statistics
//                                   memory (SharedQueueStats), and the listening socket for adoption
//                           Resize  re-read the storage's size; answered with Resized
//                           Stop    finish the requests in flight, unmap everything, exit 0
//                           Pause   the operator's pause (pvbackctl pause): every queue stops taking
//                                   requests from its ring, finishes and answers those it took,
//                                   flushes the storage; answered with Paused
//                           Resume  take requests from the rings again; answered with Resumed
//   data plane -> control   Ready   every ring mapped, event channel bound, sandbox on (error 0),
//                                   or why not (errno); then it serves
//                           Fatal   a queue found the frontend breaking the protocol: the control
//                                   part disconnects the device (errno + reason)
//                           Resized
//                           LockOwner  an RBD image's exclusive lock is its: the owner's address
//                                   (reason), which the control part breaks once it died
//                           Paused  every queue drained and flushed: the requests drained, how long
//                                   the drain and the flush took, the flush's errno (PauseFigures).
//                                   Also said unasked by a data plane started paused (Start's
//                                   `paused`), once what it resumed from the records is drained
//                           Resumed the requests the frontends queued meanwhile (waiting in the rings)
// A data plane whose control part died keeps serving and waits on a listening socket it was given
// (<recovery dir>/vbd-<domid>-<devid>.dp) for the control part's successor:
//   successor -> data plane  Adopt
//   data plane -> successor  Adopted  the DataPlaneSpec it serves, with the statistics memfd
// The control part notices the data plane's death as the end of the socket (nothing else holds
// the other end). The encoding is pure (encode/decode below, tested on their own); a decode of
// anything malformed fails rather than guess.
#pragma once
#include <cstdint>
#include <expected>
#include <span>
#include <string>
#include <vector>

#include "blkback/queue.hpp"
#include "plane/codec.hpp"
#include "plane/protocols.hpp"

namespace pvback::blkback::plane {

// The common types of plane/codec.hpp (Start, Stop, Adopt, Ready, Fatal, Adopted) keep their numbers.
enum class Msg : std::uint32_t {
  Start = 1, Stop, Resize, Adopt, Pause, Resume, Tune,
  Ready = 100, Fatal, Resized, Adopted, LockOwner, Paused, Resumed
};
static_assert(static_cast<std::uint32_t>(Msg::Stop) == ::pvback::plane::kStop &&
              static_cast<std::uint32_t>(Msg::Adopt) == ::pvback::plane::kAdopt &&
              static_cast<std::uint32_t>(Msg::Ready) == ::pvback::plane::kReady &&
              static_cast<std::uint32_t>(Msg::Fatal) == ::pvback::plane::kFatal &&
              static_cast<std::uint32_t>(Msg::Adopted) == ::pvback::plane::kAdopted);
// plane/protocols.cpp lists Resize, Resized, LockOwner, Pause and Resume among the notices by these
// numbers (Paused and Resumed are messages of their own, with figures).
static_assert(static_cast<std::uint32_t>(Msg::Resize) == 3 && static_cast<std::uint32_t>(Msg::Resized) == 102 &&
              static_cast<std::uint32_t>(Msg::LockOwner) == 104 && static_cast<std::uint32_t>(Msg::Pause) == 5 &&
              static_cast<std::uint32_t>(Msg::Resume) == 6);

// pvback-blk's magic ("pvdp"), version and notices, for plane::Process and plane::serve_control.
inline const ::pvback::plane::Protocol& kProtocol = ::pvback::plane::kBlkProtocol;

// What a data plane needs besides its fds.
struct DataPlaneSpec {
  std::string name;          // the device's log name, "vbd 1/51712"
  std::string storage_path;  // names the storage in logs
  // Empty: the storage is the file that comes with Start. Otherwise the NBD server to connect to
  // (storage::NbdEngine), before the sandbox goes on; `storage_ours` says it is the control part's
  // own qemu-storage-daemon, whose death is not the guest's error: the data plane ends with status
  // 75 and the control part starts the daemon and a data plane again, which resumes the rings.
  std::string nbd_uri;
  bool storage_ours = false;
  // Or the RBD image "params" names (storage::parse_rbd_params): the data plane connects to the
  // cluster itself, before it confines itself, and keeps the host's network to reach it.
  std::string rbd_params;
  bool read_only = false;
  bool discard = true;
  std::uint64_t inject_latency_us = 0;  // testing: storage::FaultEngine's latency, 0: off
  // The sandbox (sandbox/sandbox.hpp): on, and the uid and gid to run as (0: keep).
  bool sandbox = true;
  std::uint32_t uid = 0;
  std::uint32_t gid = 0;
  // Without a control part, how long it keeps serving for one to adopt it; then it stops (0: at once).
  std::uint32_t orphan_timeout_ms = 0;
  // The operator paused the device (Pause): a data plane started so takes nothing from the rings
  // but what it resumes from the records, and says Paused once that is drained. An Adopted says
  // whether the data plane is paused now.
  bool paused = false;
  // One per ring, without on_storage_lost (the data plane sets its own).
  std::vector<QueueConfig> queues;
};

// The largest message: 256 queues of 64 ring references and their names fit.
inline constexpr std::size_t kMaxMessage = 256 * 1024;

// Start, or Adopted (the same contents).
std::vector<std::byte> encode_start(const DataPlaneSpec& spec, Msg type = Msg::Start);
std::expected<DataPlaneSpec, std::string> decode_start(std::span<const std::byte> message, Msg type = Msg::Start);

// Ready, Fatal, Resized, Stop, Resize, Adopt: a type, an errno value and a reason.
struct Notice {
  Msg type = Msg::Ready;
  std::int32_t error = 0;
  std::string reason;
};
std::vector<std::byte> encode_notice(const Notice& notice);
std::expected<Notice, std::string> decode_notice(std::span<const std::byte> message);

// Paused: what the pause drained, summed over the queues (times: the slowest queue's).
struct PauseFigures {
  std::uint64_t drained = 0;   // requests taken before the pause and answered during it
  std::uint64_t drain_us = 0;  // from the Pause to the last of them answered
  std::uint64_t flush_us = 0;  // the storage's flush after it
  std::int32_t error = 0;      // the flush's errno, 0 if it succeeded
};
std::vector<std::byte> encode_paused(const PauseFigures& figures);
std::expected<PauseFigures, std::string> decode_paused(std::span<const std::byte> message);
// Resumed: the requests the frontends put in the rings while paused, taken now.
std::vector<std::byte> encode_resumed(std::uint64_t waiting);
std::expected<std::uint64_t, std::string> decode_resumed(std::span<const std::byte> message);
// Tune: the operator's new limits that every queue takes at once (pvbackctl set); not answered
// (the control part keeps them in its options, so a data plane started later has them too).
std::vector<std::byte> encode_tune(const LiveTuning& tuning);
std::expected<LiveTuning, std::string> decode_tune(std::span<const std::byte> message);

// The type of any message (Start included), or nothing if it is too short.
std::expected<Msg, std::string> message_type(std::span<const std::byte> message);

}  // namespace pvback::blkback::plane
