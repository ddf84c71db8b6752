// blkif wire types (xen/io/blkif.h) for the two x86 guest ABIs, and conversions to/from native.
//
// A 32-bit x86 guest aligns uint64_t to 4 bytes inside structs, so its requests have a different
// layout from a 64-bit guest's; the guest names its ABI in the frontend's "protocol" XenStore key.
// The backend copies each request once in the guest's ABI (BackRing::next_request) and converts the
// copy with to_native(); it answers with a native Response turned into the guest's ABI.
//
// Every struct spells out its padding as named members, so a value-initialised or designated-
// initialised object has no indeterminate bytes and nothing leaks into the guest (XSA-216).
// tests/ring/abi_*.cpp check every size and offset against the Xen headers.
#pragma once
#include <cstddef>
#include <cstdint>
#include <string_view>
#include <type_traits>

#include "grant/types.hpp"
#include "ring/ring.hpp"

namespace pvback::blkif {

// Operations (BLKIF_OP_*).
inline constexpr std::uint8_t kOpRead = 0;
inline constexpr std::uint8_t kOpWrite = 1;
inline constexpr std::uint8_t kOpWriteBarrier = 2;
inline constexpr std::uint8_t kOpFlushDiskcache = 3;
inline constexpr std::uint8_t kOpReserved1 = 4;
inline constexpr std::uint8_t kOpDiscard = 5;
inline constexpr std::uint8_t kOpIndirect = 6;

// Response status (BLKIF_RSP_*).
inline constexpr std::int16_t kRspEopnotsupp = -2;
inline constexpr std::int16_t kRspError = -1;
inline constexpr std::int16_t kRspOkay = 0;

inline constexpr std::uint8_t kMaxSegmentsPerRequest = 11;       // BLKIF_MAX_SEGMENTS_PER_REQUEST
inline constexpr std::uint8_t kMaxIndirectPagesPerRequest = 8;   // BLKIF_MAX_INDIRECT_PAGES_PER_REQUEST
inline constexpr std::uint8_t kDiscardSecure = 1u << 0;          // BLKIF_DISCARD_SECURE

// Sector numbers and first/last_sect are always in 512-byte units, whatever the disk's
// logical block size.
inline constexpr std::uint32_t kSectorSize = 512;
inline constexpr std::uint32_t kSectorShift = 9;
inline constexpr std::uint8_t kSectorsPerPage = kXenPageSize / kSectorSize;

// "info" key bits (VDISK_*).
inline constexpr std::uint32_t kVdiskCdrom = 0x1;
inline constexpr std::uint32_t kVdiskRemovable = 0x2;
inline constexpr std::uint32_t kVdiskReadonly = 0x4;

// Values of the frontend's "protocol" key (xen/io/protocols.h).
inline constexpr std::string_view kProtocolX86_32 = "x86_32-abi";
inline constexpr std::string_view kProtocolX86_64 = "x86_64-abi";

// One data segment, the same 8 bytes in every ABI; also the element of indirect pages.
struct Segment {
  GrantRef gref;
  std::uint8_t first_sect;  // inclusive, in sectors within the page
  std::uint8_t last_sect;   // inclusive
  std::uint16_t pad;
};
static_assert(sizeof(Segment) == 8);

inline constexpr std::uint32_t kSegmentsPerIndirectPage = kXenPageSize / sizeof(Segment);  // 512
inline constexpr std::uint32_t kMaxIndirectSegments = kMaxIndirectPagesPerRequest * kSegmentsPerIndirectPage;

// Every request variant starts with `operation`: a common initial sequence, so `other.operation`
// may be read whatever the variant is.
#define PVBACK_BLKIF_DEFINE_ABI(ABI_NS, PAD_AFTER_HANDLE, INDIRECT_TAIL_PAD, RESPONSE_TAIL_PAD) \
  namespace ABI_NS {                                                                           \
  struct RequestRw {                                                                           \
    std::uint8_t operation;                                                                    \
    std::uint8_t nr_segments;                                                                  \
    std::uint16_t handle;                                                                      \
    PAD_AFTER_HANDLE                                                                           \
    std::uint64_t id;                                                                          \
    std::uint64_t sector_number;                                                               \
    Segment seg[kMaxSegmentsPerRequest];                                                       \
  };                                                                                           \
  struct RequestDiscard {                                                                      \
    std::uint8_t operation;                                                                    \
    std::uint8_t flag;                                                                         \
    std::uint16_t handle;                                                                      \
    PAD_AFTER_HANDLE                                                                           \
    std::uint64_t id;                                                                          \
    std::uint64_t sector_number;                                                               \
    std::uint64_t nr_sectors;                                                                  \
  };                                                                                           \
  struct RequestIndirect {                                                                     \
    std::uint8_t operation;                                                                    \
    std::uint8_t indirect_op;                                                                  \
    std::uint16_t nr_segments;                                                                 \
    PAD_AFTER_HANDLE                                                                           \
    std::uint64_t id;                                                                          \
    std::uint64_t sector_number;                                                               \
    std::uint16_t handle;                                                                      \
    std::uint16_t pad2;                                                                        \
    GrantRef indirect_grefs[kMaxIndirectPagesPerRequest];                                      \
    INDIRECT_TAIL_PAD                                                                          \
  };                                                                                           \
  struct RequestOther {                                                                        \
    std::uint8_t operation;                                                                    \
    std::uint8_t pad0;                                                                         \
    std::uint16_t handle;                                                                      \
    PAD_AFTER_HANDLE                                                                           \
    std::uint64_t id;                                                                          \
  };                                                                                           \
  union Request {                                                                              \
    RequestRw rw;                                                                              \
    RequestDiscard discard;                                                                    \
    RequestIndirect indirect;                                                                  \
    RequestOther other;                                                                        \
    std::uint8_t operation() const { return other.operation; }                                \
    std::uint64_t id() const { return other.id; }                                              \
  };                                                                                           \
  struct Response {                                                                            \
    std::uint64_t id = 0;                                                                      \
    std::uint8_t operation = 0;                                                                \
    std::uint8_t pad0 = 0;                                                                     \
    std::int16_t status = 0;                                                                   \
    RESPONSE_TAIL_PAD                                                                          \
  };                                                                                           \
  using Ring = ring::RingTypes<Request, Response>;                                             \
  using BackRing = Ring::Back;                                                                 \
  using FrontRing = Ring::Front;                                                               \
  }

// i386 aligns uint64_t to 4 inside structs; pack(4) reproduces exactly that on any host.
#pragma pack(push, 4)
PVBACK_BLKIF_DEFINE_ABI(x86_32, /* no pad */, std::uint64_t pad3;, /* no pad */)
#pragma pack(pop)
PVBACK_BLKIF_DEFINE_ABI(x86_64, std::uint32_t pad1;, std::uint32_t pad3;, std::uint32_t pad1 = 0;)
#undef PVBACK_BLKIF_DEFINE_ABI

#if defined(__i386__)
namespace native = x86_32;
inline constexpr std::string_view kProtocolNative = kProtocolX86_32;
#elif defined(__x86_64__) || defined(__aarch64__)
// arm64 lays blkif out exactly as x86_64 (uint64_t aligned to 8).
namespace native = x86_64;
inline constexpr std::string_view kProtocolNative = kProtocolX86_64;
#else
#error "blkif: unsupported native ABI"
#endif

static_assert(sizeof(x86_32::Request) == 108 && sizeof(x86_32::Response) == 12);
static_assert(sizeof(x86_64::Request) == 112 && sizeof(x86_64::Response) == 16);
static_assert(sizeof(x86_32::RequestIndirect) == 64 && sizeof(x86_64::RequestIndirect) == 64);
static_assert(std::has_unique_object_representations_v<x86_32::Response>, "x86_32 response has padding");
static_assert(std::has_unique_object_representations_v<x86_64::Response>, "x86_64 response has padding");
static_assert(x86_32::Ring::size_for_order(0) == 32 && x86_64::Ring::size_for_order(0) == 32);

namespace detail {

template <class To, class From>
inline To convert_request(const From& in) noexcept {
  To out{};  // zero every byte, including the variants we do not fill
  switch (in.operation()) {
    case kOpRead:
    case kOpWrite:
    case kOpWriteBarrier:
    case kOpFlushDiskcache:
      out.rw.operation = in.rw.operation;
      out.rw.nr_segments = in.rw.nr_segments;
      out.rw.handle = in.rw.handle;
      out.rw.id = in.rw.id;
      out.rw.sector_number = in.rw.sector_number;
      // All slots, whatever nr_segments claims: bounded, and validation happens on the result.
      for (std::size_t i = 0; i < kMaxSegmentsPerRequest; ++i) out.rw.seg[i] = in.rw.seg[i];
      break;
    case kOpDiscard:
      out.discard.operation = in.discard.operation;
      out.discard.flag = in.discard.flag;
      out.discard.handle = in.discard.handle;
      out.discard.id = in.discard.id;
      out.discard.sector_number = in.discard.sector_number;
      out.discard.nr_sectors = in.discard.nr_sectors;
      break;
    case kOpIndirect:
      out.indirect.operation = in.indirect.operation;
      out.indirect.indirect_op = in.indirect.indirect_op;
      out.indirect.nr_segments = in.indirect.nr_segments;
      out.indirect.id = in.indirect.id;
      out.indirect.sector_number = in.indirect.sector_number;
      out.indirect.handle = in.indirect.handle;
      for (std::size_t i = 0; i < kMaxIndirectPagesPerRequest; ++i)
        out.indirect.indirect_grefs[i] = in.indirect.indirect_grefs[i];
      break;
    default:  // unknown operation: keep what is needed to answer it with an error
      out.other.operation = in.other.operation;
      out.other.handle = in.other.handle;
      out.other.id = in.other.id;
      break;
  }
  return out;
}

template <class To, class From>
inline To convert_response(const From& in) noexcept {
  // Designated initialisation: the padding members take their zero defaults.
  return To{.id = in.id, .operation = in.operation, .status = in.status};
}

}  // namespace detail

// A guest-ABI request copy -> native request. The result is fully initialised.
inline native::Request to_native(const x86_32::Request& in) noexcept {
  return detail::convert_request<native::Request>(in);
}
inline native::Request to_native(const x86_64::Request& in) noexcept {
  return detail::convert_request<native::Request>(in);
}

// A native response -> the guest ABI's response, padding zeroed.
inline x86_32::Response to_x86_32(const native::Response& in) noexcept {
  return detail::convert_response<x86_32::Response>(in);
}
inline x86_64::Response to_x86_64(const native::Response& in) noexcept {
  return detail::convert_response<x86_64::Response>(in);
}

// The response a backend sends for `request`: id and operation echoed, padding zeroed.
// An indirect request is answered with the operation it carries (indirect_op), not with
// BLKIF_OP_INDIRECT: Linux's xen-blkback does so, and Linux's xen-blkfront checks it and disables
// the disk on "response has wrong operation (6 instead of 1)".
inline native::Response make_response(const native::Request& request, std::int16_t status) noexcept {
  const std::uint8_t op =
      request.other.operation == kOpIndirect ? request.indirect.indirect_op : request.other.operation;
  return native::Response{.id = request.other.id, .operation = op, .status = status};
}

}  // namespace pvback::blkif
