// What pvback-net's control part and a vif's data-plane process say to each other, over the
// AF_UNIX SOCK_SEQPACKET socket the data plane gets as fd 3 (one message per packet; framing,
// adoption and the common notices: plane/codec.hpp, plane/process.hpp).
//
//   control -> data plane   Start     the rings to serve (PlaneSpec) with its fds: the queues'
//                                     statistics memory, the vif's record (vif_record.hpp), every
//                                     TAP queue fd of the vif, and a listening socket for adoption
//                           SetRate   the backend's `rate` key changed (RateLimit)
//                           SetXdpHeadroom  the frontend reconfigured its XDP headroom
//                           Stop      finish, unmap everything, exit 0
//   data plane -> control   Ready     every ring mapped, channel bound, sandbox on (error 0), or
//                                     why not (errno); then it serves
//                           Fatal     the frontend broke the protocol: the control part
//                                     disconnects the vif (errno + reason)
//   successor -> data plane Adopt     on the listening socket, when its control part died
//   data plane -> successor Adopted   the PlaneSpec it serves (rate and headroom as last set),
//                                     with the statistics memory, the record and the TAP queue fds
// What stays in the control part: XenStore, the XenbusState machine, creating and configuring the
// TAP (its queues, offloads, MTU, carrier: privileged ioctls), the `rate` watch, the statistics
// file. What the data plane does: the rings (TX, RX, control ring) between the guest's grants and
// the TAP queue fds. The encoding is pure; anything malformed is refused, not guessed.
#pragma once
#include <cstdint>
#include <expected>
#include <span>
#include <string>
#include <vector>

#include "netback/vif_rings.hpp"
#include "plane/codec.hpp"
#include "plane/protocols.hpp"

namespace pvback::netback {

// The common types of plane/codec.hpp keep their numbers.
enum class PlaneMsg : std::uint32_t {
  Start = 1, Stop = 2, Adopt = 4, SetRate = 5, SetXdpHeadroom = 6, Ready = 100, Fatal = 101, Adopted = 103,
};

// pvback-net's magic ("pvnp"), version and notices.
inline const plane::Protocol& kPlaneProtocol = plane::kNetProtocol;

struct PlaneSpec {
  VifRingsSpec rings;  // group and journal pointers are not sent
  std::string tap_name;
  std::uint32_t tap_fds = 0;  // TAP queue fds after the statistics and the record
  // The sandbox (sandbox/sandbox.hpp): on, and the uid and gid to run as (0: keep).
  bool sandbox = true;
  std::uint32_t uid = 0;
  std::uint32_t gid = 0;
  // Without a control part, how long it keeps serving for one to adopt it (0: it stops at once).
  std::uint32_t orphan_timeout_ms = 0;
};

// The largest message: 64 queues and their names fit.
inline constexpr std::size_t kMaxPlaneMessage = 64 * 1024;
inline constexpr std::uint32_t kMaxTapFds = 64;

// Start, or Adopted (the same contents).
std::vector<std::byte> encode_plane_spec(const PlaneSpec& spec, PlaneMsg type = PlaneMsg::Start);
std::expected<PlaneSpec, std::string> decode_plane_spec(std::span<const std::byte> message,
                                                        PlaneMsg type = PlaneMsg::Start);

std::vector<std::byte> encode_set_rate(const RateLimit& rate);
std::expected<RateLimit, std::string> decode_set_rate(std::span<const std::byte> message);
std::vector<std::byte> encode_set_xdp_headroom(std::uint16_t headroom);
std::expected<std::uint16_t, std::string> decode_set_xdp_headroom(std::span<const std::byte> message);

}  // namespace pvback::netback
