// libFuzzer target: blkback/frontend_keys.hpp's read_frontend on any directory a guest could write.
// Input: 3 bytes of advertised limits (queues, ring order, persistent offered), then lines
// "key=value" ('\n'-separated; a value "\x01" makes that key's read fail with EIO).
// Checked besides crashes: an accepted request keeps within every advertised limit, has one ring
// per queue with exactly 1 << order references, and takes persistent grants only when offered and
// asked for with "1"; its values are the ones the directory holds; the reader is asked a bounded
// number of times; a refusal names its cause.
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include "blkback/frontend_keys.hpp"
#include "ring/blkif.hpp"
#include "tests/fuzz/check.hpp"
#include "tests/fuzz/key_directory.hpp"
#include "xenbus/xenstore.hpp"

using namespace pvback;
using namespace pvback::blkback;

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (size < 3) return 0;
  FrontendLimits limits;
  limits.max_queues = 1u + data[0] % 8;
  limits.max_ring_page_order = data[1] % 7;
  limits.persistent_offered = (data[2] & 1) != 0;
  fuzz::KeyDirectory d(std::string_view(reinterpret_cast<const char*>(data + 3), size - 3));
  auto& dir = d.keys;
  const FrontendKeyReader read = d.reader();
  auto r = read_frontend(read, limits);
  const unsigned most_pages = 1u << limits.max_ring_page_order;
  CHECK(d.reads <= 4 + limits.max_queues * (2 + most_pages));
  if (!r) {
    CHECK(r.error().error != 0);
    CHECK(!r.error().why.empty());
    return 0;
  }
  CHECK(r->queues >= 1 && r->queues <= limits.max_queues);
  CHECK(r->ring_page_order <= limits.max_ring_page_order);
  CHECK(r->rings.size() == r->queues);
  // Any spelling of 1 that a XenStore number may have ("01" too, as Linux's blkback reads it).
  CHECK(!r->persistent_grants || (limits.persistent_offered && dir.count("feature-persistent") != 0 &&
                                  xenbus::parse_uint(dir["feature-persistent"], 1) == 1u));
  if (auto p = dir.find("protocol"); p != dir.end())
    CHECK((r->abi == Abi::X86_32 && p->second == blkif::kProtocolX86_32) ||
          (r->abi == Abi::X86_64 && p->second == blkif::kProtocolX86_64));
  else
    CHECK(r->abi == Abi::Native);
  for (unsigned q = 0; q < r->queues; ++q) {
    const std::string prefix = r->queues > 1 ? "queue-" + std::to_string(q) + "/" : "";
    CHECK(r->rings[q].refs.size() == (1u << r->ring_page_order));
    CHECK(xenbus::parse_uint(dir[prefix + "event-channel"], UINT32_MAX) == r->rings[q].event_channel);
  }
  return 0;
}
