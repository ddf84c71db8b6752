// netif wire types (xen/io/netif.h): tx/rx rings, extra-info slots and the control ring.
//
// netif has one layout for every ABI (no uint64_t fields). Extra-info segments travel in tx
// request slots and rx response slots: read them with copy_request<ExtraInfo>() and write them
// with put_response<ExtraInfo>(). Value-initialise every response (`RxResponse r{}`), so the
// whole slot is defined before it reaches the guest (XSA-216).
// tests/ring/abi_native.cpp checks sizes, offsets and constants against the Xen header.
#pragma once
#include <cstddef>
#include <cstdint>
#include <type_traits>

#include "grant/types.hpp"
#include "ring/ring.hpp"

namespace pvback::netif {

// Slots a packet may span that every backend must accept (XEN_NETIF_NR_SLOTS_MIN); Linux netback
// calls its limit XEN_NETBK_LEGACY_SLOTS_MAX, equal to this.
inline constexpr std::uint32_t kNrSlotsMin = 18;
inline constexpr std::uint32_t kLegacySlotsMax = kNrSlotsMin;
inline constexpr std::uint32_t kMaxTxSize = 0xFFFF;  // XEN_NETIF_MAX_TX_SIZE

// Tx request flags (NETTXF_*).
inline constexpr std::uint16_t kTxfCsumBlank = 1u << 0;
inline constexpr std::uint16_t kTxfDataValidated = 1u << 1;
inline constexpr std::uint16_t kTxfMoreData = 1u << 2;
inline constexpr std::uint16_t kTxfExtraInfo = 1u << 3;

// Rx response flags (NETRXF_*).
inline constexpr std::uint16_t kRxfDataValidated = 1u << 0;
inline constexpr std::uint16_t kRxfCsumBlank = 1u << 1;
inline constexpr std::uint16_t kRxfMoreData = 1u << 2;
inline constexpr std::uint16_t kRxfExtraInfo = 1u << 3;
inline constexpr std::uint16_t kRxfGsoPrefix = 1u << 4;

// Response status (NETIF_RSP_*).
inline constexpr std::int16_t kRspDropped = -2;
inline constexpr std::int16_t kRspError = -1;
inline constexpr std::int16_t kRspOkay = 0;
inline constexpr std::int16_t kRspNull = 1;  // a slot that carried an extra-info segment

// Extra-info types (XEN_NETIF_EXTRA_TYPE_*). XDP is newer than Xen 4.17's header (Linux has it).
inline constexpr std::uint8_t kExtraTypeNone = 0;
inline constexpr std::uint8_t kExtraTypeGso = 1;
inline constexpr std::uint8_t kExtraTypeMcastAdd = 2;
inline constexpr std::uint8_t kExtraTypeMcastDel = 3;
inline constexpr std::uint8_t kExtraTypeHash = 4;
inline constexpr std::uint8_t kExtraTypeXdp = 5;
inline constexpr std::uint8_t kExtraTypeMax = 6;  // one past the last type we know
inline constexpr std::uint8_t kExtraFlagMore = 1u << 0;  // XEN_NETIF_EXTRA_FLAG_MORE

// GSO types (XEN_NETIF_GSO_TYPE_*).
inline constexpr std::uint8_t kGsoTypeNone = 0;
inline constexpr std::uint8_t kGsoTypeTcpv4 = 1;
inline constexpr std::uint8_t kGsoTypeTcpv6 = 2;

// Control ring request types (XEN_NETIF_CTRL_TYPE_*).
inline constexpr std::uint16_t kCtrlTypeInvalid = 0;
inline constexpr std::uint16_t kCtrlTypeGetHashFlags = 1;
inline constexpr std::uint16_t kCtrlTypeSetHashFlags = 2;
inline constexpr std::uint16_t kCtrlTypeSetHashKey = 3;
inline constexpr std::uint16_t kCtrlTypeGetHashMappingSize = 4;
inline constexpr std::uint16_t kCtrlTypeSetHashMappingSize = 5;
inline constexpr std::uint16_t kCtrlTypeSetHashMapping = 6;
inline constexpr std::uint16_t kCtrlTypeSetHashAlgorithm = 7;
inline constexpr std::uint16_t kCtrlTypeGetGrefMappingSize = 8;
inline constexpr std::uint16_t kCtrlTypeAddGrefMapping = 9;
inline constexpr std::uint16_t kCtrlTypeDelGrefMapping = 10;

// Control ring status (XEN_NETIF_CTRL_STATUS_*).
inline constexpr std::uint32_t kCtrlStatusSuccess = 0;
inline constexpr std::uint32_t kCtrlStatusNotSupported = 1;
inline constexpr std::uint32_t kCtrlStatusInvalidParameter = 2;
inline constexpr std::uint32_t kCtrlStatusBufferOverflow = 3;

// Hash algorithms (XEN_NETIF_CTRL_HASH_ALGORITHM_*).
inline constexpr std::uint32_t kHashAlgorithmNone = 0;
inline constexpr std::uint32_t kHashAlgorithmToeplitz = 1;

// Hash types: bit numbers (_XEN_NETIF_CTRL_HASH_TYPE_*, used in ExtraInfo::hash.type) and the
// masks built from them (XEN_NETIF_CTRL_HASH_TYPE_*, used in hash flags).
inline constexpr std::uint8_t kHashTypeBitIpv4 = 0;
inline constexpr std::uint8_t kHashTypeBitIpv4Tcp = 1;
inline constexpr std::uint8_t kHashTypeBitIpv6 = 2;
inline constexpr std::uint8_t kHashTypeBitIpv6Tcp = 3;
inline constexpr std::uint32_t kHashTypeIpv4 = 1u << kHashTypeBitIpv4;
inline constexpr std::uint32_t kHashTypeIpv4Tcp = 1u << kHashTypeBitIpv4Tcp;
inline constexpr std::uint32_t kHashTypeIpv6 = 1u << kHashTypeBitIpv6;
inline constexpr std::uint32_t kHashTypeIpv6Tcp = 1u << kHashTypeBitIpv6Tcp;
inline constexpr std::uint32_t kHashTypeAll = kHashTypeIpv4 | kHashTypeIpv4Tcp | kHashTypeIpv6 | kHashTypeIpv6Tcp;

// Backend limits for the control ring, as Linux netback chose them (the protocol leaves them to us).
inline constexpr std::uint32_t kMaxHashKeySize = 40;
inline constexpr std::uint32_t kMaxHashMappingSize = 128;

inline constexpr std::uint16_t kCtrlGrefReadonly = 1u << 0;  // XEN_NETIF_CTRLF_GREF_readonly

struct TxRequest {
  GrantRef gref;
  std::uint16_t offset;
  std::uint16_t flags;  // kTxf*
  std::uint16_t id;
  std::uint16_t size;   // first slot: whole packet size; later slots: this slot's bytes
};

struct TxResponse {
  std::uint16_t id = 0;
  std::int16_t status = 0;
};

struct RxRequest {
  std::uint16_t id;
  std::uint16_t pad;
  GrantRef gref;
};

struct RxResponse {
  std::uint16_t id = 0;
  std::uint16_t offset = 0;
  std::uint16_t flags = 0;  // kRxf*
  std::int16_t status = 0;  // > 0: bytes received; < 0: kRsp*
};

struct ExtraGso {
  std::uint16_t size;  // MSS
  std::uint8_t type;   // kGsoType*
  std::uint8_t pad;
  std::uint16_t features;
};
struct ExtraMcast {
  std::uint8_t addr[6];
};
struct ExtraHash {
  std::uint8_t type;       // kHashTypeBit*
  std::uint8_t algorithm;  // kHashAlgorithm*
  std::uint8_t value[4];   // little-endian hash value
};
struct ExtraXdp {
  std::uint16_t headroom;
  std::uint16_t pad[2];
};

struct ExtraInfo {
  std::uint8_t type;   // kExtraType*
  std::uint8_t flags;  // kExtraFlagMore
  union {
    ExtraGso gso;
    ExtraMcast mcast;
    ExtraHash hash;
    ExtraXdp xdp;
    std::uint16_t pad[3];
  } u;
};

struct CtrlRequest {
  std::uint16_t id;
  std::uint16_t type;  // kCtrlType*
  std::uint32_t data[3];
};

struct CtrlResponse {
  std::uint16_t id = 0;
  std::uint16_t type = 0;
  std::uint32_t status = 0;  // kCtrlStatus*
  std::uint32_t data = 0;
};

// An entry of the gref table a frontend shares with ADD/DEL_GREF_MAPPING (xen_netif_gref).
struct GrefEntry {
  GrantRef ref;
  std::uint16_t flags;   // kCtrlGrefReadonly
  std::uint16_t status;  // written by the backend
};

static_assert(sizeof(TxRequest) == 12 && sizeof(TxResponse) == 4);
static_assert(sizeof(RxRequest) == 8 && sizeof(RxResponse) == 8);
static_assert(sizeof(ExtraInfo) == 8);
static_assert(sizeof(CtrlRequest) == 16 && sizeof(CtrlResponse) == 12);
static_assert(std::has_unique_object_representations_v<TxResponse>);
static_assert(std::has_unique_object_representations_v<RxResponse>);
static_assert(std::has_unique_object_representations_v<CtrlResponse>);

using TxRing = ring::RingTypes<TxRequest, TxResponse>;
using RxRing = ring::RingTypes<RxRequest, RxResponse>;
using CtrlRing = ring::RingTypes<CtrlRequest, CtrlResponse>;

// Single-page ring sizes (Linux's XEN_NETIF_TX_RING_SIZE / RX / CTRL).
inline constexpr ring::RingIdx kTxRingSize = TxRing::size_for_order(0);
inline constexpr ring::RingIdx kRxRingSize = RxRing::size_for_order(0);
inline constexpr ring::RingIdx kCtrlRingSize = CtrlRing::size_for_order(0);
static_assert(kTxRingSize == 256 && kRxRingSize == 256 && kCtrlRingSize == 128);

}  // namespace pvback::netif
