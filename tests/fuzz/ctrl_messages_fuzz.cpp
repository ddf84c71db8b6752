// libFuzzer target: netback's control-ring messages (netback/ctrl_messages.hpp) in arbitrary
// sequences, against a guest whose granted pages hold arbitrary bytes.
//
// Input: byte 0 picks the vif's queue count (1..8) and which grants can be read; then requests of
// 16 bytes each (netif's CtrlRequest) until fewer than 16 bytes are left; what the requests do not
// use is the content of every readable grant. After every message the configuration must be one
// the data path can use safely: mapping entries below the queue count, sizes within netif's
// limits, and a refused request changes nothing.
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <vector>

#include "netback/ctrl_messages.hpp"
#include "tests/fuzz/check.hpp"

namespace {

using namespace pvback;
using namespace pvback::netback;

void check_config(const HashConfig& h, unsigned queues) {
  CHECK(h.algorithm == netif::kHashAlgorithmNone || h.algorithm == netif::kHashAlgorithmToeplitz);
  CHECK((h.flags & ~netif::kHashTypeAll) == 0);
  CHECK(h.key_len <= netif::kMaxHashKeySize);
  CHECK(h.mapping_size <= netif::kMaxHashMappingSize);
  for (std::uint32_t e : h.mapping) CHECK(e < queues);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (size < 1) return 0;
  const unsigned queues = 1 + data[0] % 8;
  const bool odd_grants_readable = (data[0] & 0x80) != 0;
  const std::size_t nreq = (size - 1) / sizeof(netif::CtrlRequest);
  const std::uint8_t* page = data + 1 + nreq * sizeof(netif::CtrlRequest);
  const std::size_t page_len = size - 1 - nreq * sizeof(netif::CtrlRequest);
  // A grant reads as the input's tail, zero-padded to a page; even refs only, unless byte 0 says.
  auto read_guest = [&](GrantRef gref, void* dest, std::uint32_t len) {
    CHECK(len <= kXenPageSize);  // a request can never make the backend read past one grant
    if ((gref & 1) != 0 && !odd_grants_readable) return false;
    std::memset(dest, 0, len);
    std::memcpy(dest, page, std::min<std::size_t>(len, page_len));
    return true;
  };

  HashConfig h;
  for (std::size_t i = 0; i < nreq; ++i) {
    netif::CtrlRequest req;
    std::memcpy(&req, data + 1 + i * sizeof req, sizeof req);
    const CtrlOutcome out = handle_ctrl_request(req, h, queues, read_guest);
    CHECK(out.status == netif::kCtrlStatusSuccess || out.status == netif::kCtrlStatusNotSupported ||
          out.status == netif::kCtrlStatusInvalidParameter);
    if (out.status != netif::kCtrlStatusSuccess) {
      CHECK(!out.next.has_value());  // refused: nothing changes (XSA-270)
      CHECK(std::memchr(out.why.data(), '\0', out.why.size()) != nullptr);
    }
    if (out.next) {
      check_config(*out.next, queues);
      h = *out.next;
    }
  }
  return 0;
}
