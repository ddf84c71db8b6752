// Compile-time checks: our x86_32 blkif types against the Xen header laid out as an i386 guest
// sees it. i386 aligns uint64_t to 4 inside structs; #pragma pack(4) around the Xen headers
// reproduces that on this 64-bit host.
//
// This TU holds static_asserts only: the Xen struct names here have a different layout from the
// ones in abi_native.cpp, so nothing from them may be odr-used or exported.
#include <cstddef>
#include <cstdint>

#pragma pack(push, 4)
#include <xen/io/blkif.h>
#pragma pack(pop)

#include "ring/blkif.hpp"
#include "tests/ring/abi_check.hpp"

namespace {

using namespace pvback;

// Sanity: the packing really took effect (an unpacked blkif_request is 112 bytes on amd64).
static_assert(sizeof(blkif_request) == 108);
static_assert(offsetof(blkif_request, id) == 4);

using Req32 = blkif::x86_32::Request;
PVBACK_ABI_SIZE(Req32, blkif_request);
PVBACK_ABI_SIZE(blkif::x86_32::RequestRw, blkif_request);
PVBACK_ABI_FIELD(Req32, rw.operation, blkif_request, operation);
PVBACK_ABI_FIELD(Req32, rw.nr_segments, blkif_request, nr_segments);
PVBACK_ABI_FIELD(Req32, rw.handle, blkif_request, handle);
PVBACK_ABI_FIELD(Req32, rw.id, blkif_request, id);
PVBACK_ABI_FIELD(Req32, rw.sector_number, blkif_request, sector_number);
PVBACK_ABI_FIELD(Req32, rw.seg, blkif_request, seg);
PVBACK_ABI_SIZE(blkif::Segment, blkif_request_segment);

PVBACK_ABI_SIZE(blkif::x86_32::RequestDiscard, blkif_request_discard);
PVBACK_ABI_FIELD(Req32, discard.operation, blkif_request_discard, operation);
PVBACK_ABI_FIELD(Req32, discard.flag, blkif_request_discard, flag);
PVBACK_ABI_FIELD(Req32, discard.handle, blkif_request_discard, handle);
PVBACK_ABI_FIELD(Req32, discard.id, blkif_request_discard, id);
PVBACK_ABI_FIELD(Req32, discard.sector_number, blkif_request_discard, sector_number);
PVBACK_ABI_FIELD(Req32, discard.nr_sectors, blkif_request_discard, nr_sectors);

PVBACK_ABI_FIELD(Req32, indirect.operation, blkif_request_indirect, operation);
PVBACK_ABI_FIELD(Req32, indirect.indirect_op, blkif_request_indirect, indirect_op);
PVBACK_ABI_FIELD(Req32, indirect.nr_segments, blkif_request_indirect, nr_segments);
PVBACK_ABI_FIELD(Req32, indirect.id, blkif_request_indirect, id);
PVBACK_ABI_FIELD(Req32, indirect.sector_number, blkif_request_indirect, sector_number);
PVBACK_ABI_FIELD(Req32, indirect.handle, blkif_request_indirect, handle);
PVBACK_ABI_FIELD(Req32, indirect.indirect_grefs, blkif_request_indirect, indirect_grefs);
// On i386 the header appends `uint64_t pad` under #ifdef __i386__ (not defined on this host):
// ours carries it explicitly, starting where the host-compiled struct ends, making 64 bytes.
static_assert(offsetof(blkif::x86_32::RequestIndirect, pad3) == sizeof(blkif_request_indirect));
static_assert(sizeof(blkif::x86_32::RequestIndirect) == sizeof(blkif_request_indirect) + 8);

PVBACK_ABI_FIELD(Req32, other.operation, blkif_request, operation);
PVBACK_ABI_FIELD(Req32, other.handle, blkif_request, handle);
PVBACK_ABI_FIELD(Req32, other.id, blkif_request, id);

PVBACK_ABI_SIZE(blkif::x86_32::Response, blkif_response);
PVBACK_ABI_FIELD(blkif::x86_32::Response, id, blkif_response, id);
PVBACK_ABI_FIELD(blkif::x86_32::Response, operation, blkif_response, operation);
PVBACK_ABI_FIELD(blkif::x86_32::Response, status, blkif_response, status);

static_assert(blkif::x86_32::Ring::kEntryBytes == sizeof(blkif_sring_entry));
static_assert(blkif::x86_32::Ring::size_for_order(0) == __CONST_RING_SIZE(blkif, 4096));
static_assert(offsetof(blkif_sring, ring) == ring::kSharedRingHeaderSize);
static_assert(blkif::x86_32::Ring::size_for_order(0) == 32);
static_assert(blkif::x86_32::Ring::size_for_order(2) == 128);  // (16384 - 64) / 108 = 151 -> 128
static_assert(blkif::x86_32::Ring::size_for_order(4) == 512);  // (65536 - 64) / 108 = 606 -> 512

}  // namespace
