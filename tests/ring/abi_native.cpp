// Compile-time checks: our native/x86_64 blkif types, netif types and ring geometry against the
// Xen headers as the host compiler lays them out. A wrong offset fails the build.
#include <cstddef>
#include <cstdint>

#include <xen/io/blkif.h>
#include <xen/io/netif.h>
#include <xen/io/protocols.h>

#include "ring/blkif.hpp"
#include "ring/netif.hpp"
#include "ring/ring.hpp"
#include "tests/ring/abi_check.hpp"

namespace {

using namespace pvback;

#if !defined(__x86_64__)
#error "abi_native.cpp checks the x86_64 layout against the host headers; build on amd64"
#endif

// --- shared ring header ---
PVBACK_ABI_FIELD(ring::SharedRingHeader, req_prod, blkif_sring, req_prod);
PVBACK_ABI_FIELD(ring::SharedRingHeader, req_event, blkif_sring, req_event);
PVBACK_ABI_FIELD(ring::SharedRingHeader, rsp_prod, blkif_sring, rsp_prod);
PVBACK_ABI_FIELD(ring::SharedRingHeader, rsp_event, blkif_sring, rsp_event);
PVBACK_ABI_FIELD(ring::SharedRingHeader, pvt, blkif_sring, pvt);
PVBACK_ABI_FIELD(ring::SharedRingHeader, pad, blkif_sring, __pad);
static_assert(ring::kSharedRingHeaderSize == offsetof(blkif_sring, ring));
static_assert(ring::kSharedRingHeaderSize == offsetof(netif_tx_sring, ring));
static_assert(ring::kSharedRingHeaderSize == offsetof(xen_netif_ctrl_sring, ring));

// --- blkif constants ---
static_assert(blkif::kOpRead == BLKIF_OP_READ && blkif::kOpWrite == BLKIF_OP_WRITE);
static_assert(blkif::kOpWriteBarrier == BLKIF_OP_WRITE_BARRIER);
static_assert(blkif::kOpFlushDiskcache == BLKIF_OP_FLUSH_DISKCACHE);
static_assert(blkif::kOpReserved1 == BLKIF_OP_RESERVED_1);
static_assert(blkif::kOpDiscard == BLKIF_OP_DISCARD && blkif::kOpIndirect == BLKIF_OP_INDIRECT);
static_assert(blkif::kRspEopnotsupp == BLKIF_RSP_EOPNOTSUPP && blkif::kRspError == BLKIF_RSP_ERROR);
static_assert(blkif::kRspOkay == BLKIF_RSP_OKAY);
static_assert(blkif::kMaxSegmentsPerRequest == BLKIF_MAX_SEGMENTS_PER_REQUEST);
static_assert(blkif::kMaxIndirectPagesPerRequest == BLKIF_MAX_INDIRECT_PAGES_PER_REQUEST);
static_assert(blkif::kSegmentsPerIndirectPage == 4096 / sizeof(blkif_request_segment));
static_assert(blkif::kSegmentsPerIndirectPage == 512);
static_assert(blkif::kDiscardSecure == BLKIF_DISCARD_SECURE);
static_assert(blkif::kVdiskCdrom == VDISK_CDROM && blkif::kVdiskRemovable == VDISK_REMOVABLE);
static_assert(blkif::kVdiskReadonly == VDISK_READONLY);
static_assert(blkif::kProtocolX86_32 == XEN_IO_PROTO_ABI_X86_32);
static_assert(blkif::kProtocolX86_64 == XEN_IO_PROTO_ABI_X86_64);
static_assert(blkif::kProtocolNative == XEN_IO_PROTO_ABI_NATIVE);

// --- blkif structures: native is x86_64 on this host ---
static_assert(std::is_same_v<blkif::native::Request, blkif::x86_64::Request>);

PVBACK_ABI_SIZE(blkif::Segment, blkif_request_segment);
PVBACK_ABI_FIELD(blkif::Segment, gref, blkif_request_segment, gref);
PVBACK_ABI_FIELD(blkif::Segment, first_sect, blkif_request_segment, first_sect);
PVBACK_ABI_FIELD(blkif::Segment, last_sect, blkif_request_segment, last_sect);

using Req64 = blkif::x86_64::Request;
PVBACK_ABI_SIZE(Req64, blkif_request);
PVBACK_ABI_SIZE(blkif::x86_64::RequestRw, blkif_request);
PVBACK_ABI_FIELD(Req64, rw.operation, blkif_request, operation);
PVBACK_ABI_FIELD(Req64, rw.nr_segments, blkif_request, nr_segments);
PVBACK_ABI_FIELD(Req64, rw.handle, blkif_request, handle);
PVBACK_ABI_FIELD(Req64, rw.id, blkif_request, id);
PVBACK_ABI_FIELD(Req64, rw.sector_number, blkif_request, sector_number);
PVBACK_ABI_FIELD(Req64, rw.seg, blkif_request, seg);

PVBACK_ABI_SIZE(blkif::x86_64::RequestDiscard, blkif_request_discard);
PVBACK_ABI_FIELD(Req64, discard.operation, blkif_request_discard, operation);
PVBACK_ABI_FIELD(Req64, discard.flag, blkif_request_discard, flag);
PVBACK_ABI_FIELD(Req64, discard.handle, blkif_request_discard, handle);
PVBACK_ABI_FIELD(Req64, discard.id, blkif_request_discard, id);
PVBACK_ABI_FIELD(Req64, discard.sector_number, blkif_request_discard, sector_number);
PVBACK_ABI_FIELD(Req64, discard.nr_sectors, blkif_request_discard, nr_sectors);

PVBACK_ABI_SIZE(blkif::x86_64::RequestIndirect, blkif_request_indirect);
PVBACK_ABI_FIELD(Req64, indirect.operation, blkif_request_indirect, operation);
PVBACK_ABI_FIELD(Req64, indirect.indirect_op, blkif_request_indirect, indirect_op);
PVBACK_ABI_FIELD(Req64, indirect.nr_segments, blkif_request_indirect, nr_segments);
PVBACK_ABI_FIELD(Req64, indirect.id, blkif_request_indirect, id);
PVBACK_ABI_FIELD(Req64, indirect.sector_number, blkif_request_indirect, sector_number);
PVBACK_ABI_FIELD(Req64, indirect.handle, blkif_request_indirect, handle);
PVBACK_ABI_FIELD(Req64, indirect.indirect_grefs, blkif_request_indirect, indirect_grefs);

// "other" requests (unknown operations) are answered using operation and id only.
PVBACK_ABI_FIELD(Req64, other.operation, blkif_request, operation);
PVBACK_ABI_FIELD(Req64, other.handle, blkif_request, handle);
PVBACK_ABI_FIELD(Req64, other.id, blkif_request, id);

PVBACK_ABI_SIZE(blkif::x86_64::Response, blkif_response);
PVBACK_ABI_FIELD(blkif::x86_64::Response, id, blkif_response, id);
PVBACK_ABI_FIELD(blkif::x86_64::Response, operation, blkif_response, operation);
PVBACK_ABI_FIELD(blkif::x86_64::Response, status, blkif_response, status);

static_assert(blkif::x86_64::Ring::kEntryBytes == sizeof(blkif_sring_entry));
static_assert(blkif::x86_64::Ring::size_for_order(0) == __CONST_RING_SIZE(blkif, 4096));

// --- netif constants ---
static_assert(netif::kNrSlotsMin == XEN_NETIF_NR_SLOTS_MIN);
static_assert(netif::kMaxTxSize == XEN_NETIF_MAX_TX_SIZE);
static_assert(netif::kTxfCsumBlank == NETTXF_csum_blank && netif::kTxfDataValidated == NETTXF_data_validated);
static_assert(netif::kTxfMoreData == NETTXF_more_data && netif::kTxfExtraInfo == NETTXF_extra_info);
static_assert(netif::kRxfDataValidated == NETRXF_data_validated && netif::kRxfCsumBlank == NETRXF_csum_blank);
static_assert(netif::kRxfMoreData == NETRXF_more_data && netif::kRxfExtraInfo == NETRXF_extra_info);
static_assert(netif::kRxfGsoPrefix == NETRXF_gso_prefix);
static_assert(netif::kRspDropped == NETIF_RSP_DROPPED && netif::kRspError == NETIF_RSP_ERROR);
static_assert(netif::kRspOkay == NETIF_RSP_OKAY && netif::kRspNull == NETIF_RSP_NULL);
static_assert(netif::kExtraTypeNone == XEN_NETIF_EXTRA_TYPE_NONE && netif::kExtraTypeGso == XEN_NETIF_EXTRA_TYPE_GSO);
static_assert(netif::kExtraTypeMcastAdd == XEN_NETIF_EXTRA_TYPE_MCAST_ADD);
static_assert(netif::kExtraTypeMcastDel == XEN_NETIF_EXTRA_TYPE_MCAST_DEL);
static_assert(netif::kExtraTypeHash == XEN_NETIF_EXTRA_TYPE_HASH);
// Xen 4.17 predates XDP: its MAX is our XDP (Linux: XDP = 5, MAX = 6).
static_assert(netif::kExtraTypeXdp == XEN_NETIF_EXTRA_TYPE_MAX);
static_assert(netif::kExtraFlagMore == XEN_NETIF_EXTRA_FLAG_MORE);
static_assert(netif::kGsoTypeNone == XEN_NETIF_GSO_TYPE_NONE && netif::kGsoTypeTcpv4 == XEN_NETIF_GSO_TYPE_TCPV4);
static_assert(netif::kGsoTypeTcpv6 == XEN_NETIF_GSO_TYPE_TCPV6);
static_assert(netif::kCtrlTypeInvalid == XEN_NETIF_CTRL_TYPE_INVALID);
static_assert(netif::kCtrlTypeGetHashFlags == XEN_NETIF_CTRL_TYPE_GET_HASH_FLAGS);
static_assert(netif::kCtrlTypeSetHashFlags == XEN_NETIF_CTRL_TYPE_SET_HASH_FLAGS);
static_assert(netif::kCtrlTypeSetHashKey == XEN_NETIF_CTRL_TYPE_SET_HASH_KEY);
static_assert(netif::kCtrlTypeGetHashMappingSize == XEN_NETIF_CTRL_TYPE_GET_HASH_MAPPING_SIZE);
static_assert(netif::kCtrlTypeSetHashMappingSize == XEN_NETIF_CTRL_TYPE_SET_HASH_MAPPING_SIZE);
static_assert(netif::kCtrlTypeSetHashMapping == XEN_NETIF_CTRL_TYPE_SET_HASH_MAPPING);
static_assert(netif::kCtrlTypeSetHashAlgorithm == XEN_NETIF_CTRL_TYPE_SET_HASH_ALGORITHM);
static_assert(netif::kCtrlTypeGetGrefMappingSize == XEN_NETIF_CTRL_TYPE_GET_GREF_MAPPING_SIZE);
static_assert(netif::kCtrlTypeAddGrefMapping == XEN_NETIF_CTRL_TYPE_ADD_GREF_MAPPING);
static_assert(netif::kCtrlTypeDelGrefMapping == XEN_NETIF_CTRL_TYPE_DEL_GREF_MAPPING);
static_assert(netif::kCtrlStatusSuccess == XEN_NETIF_CTRL_STATUS_SUCCESS);
static_assert(netif::kCtrlStatusNotSupported == XEN_NETIF_CTRL_STATUS_NOT_SUPPORTED);
static_assert(netif::kCtrlStatusInvalidParameter == XEN_NETIF_CTRL_STATUS_INVALID_PARAMETER);
static_assert(netif::kCtrlStatusBufferOverflow == XEN_NETIF_CTRL_STATUS_BUFFER_OVERFLOW);
static_assert(netif::kHashAlgorithmNone == XEN_NETIF_CTRL_HASH_ALGORITHM_NONE);
static_assert(netif::kHashAlgorithmToeplitz == XEN_NETIF_CTRL_HASH_ALGORITHM_TOEPLITZ);
static_assert(netif::kHashTypeBitIpv4 == _XEN_NETIF_CTRL_HASH_TYPE_IPV4);
static_assert(netif::kHashTypeBitIpv4Tcp == _XEN_NETIF_CTRL_HASH_TYPE_IPV4_TCP);
static_assert(netif::kHashTypeBitIpv6 == _XEN_NETIF_CTRL_HASH_TYPE_IPV6);
static_assert(netif::kHashTypeBitIpv6Tcp == _XEN_NETIF_CTRL_HASH_TYPE_IPV6_TCP);
static_assert(netif::kHashTypeIpv4 == XEN_NETIF_CTRL_HASH_TYPE_IPV4);
static_assert(netif::kHashTypeIpv4Tcp == XEN_NETIF_CTRL_HASH_TYPE_IPV4_TCP);
static_assert(netif::kHashTypeIpv6 == XEN_NETIF_CTRL_HASH_TYPE_IPV6);
static_assert(netif::kHashTypeIpv6Tcp == XEN_NETIF_CTRL_HASH_TYPE_IPV6_TCP);
static_assert(netif::kCtrlGrefReadonly == XEN_NETIF_CTRLF_GREF_readonly);

// --- netif structures ---
PVBACK_ABI_SIZE(netif::TxRequest, netif_tx_request);
PVBACK_ABI_FIELD(netif::TxRequest, gref, netif_tx_request, gref);
PVBACK_ABI_FIELD(netif::TxRequest, offset, netif_tx_request, offset);
PVBACK_ABI_FIELD(netif::TxRequest, flags, netif_tx_request, flags);
PVBACK_ABI_FIELD(netif::TxRequest, id, netif_tx_request, id);
PVBACK_ABI_FIELD(netif::TxRequest, size, netif_tx_request, size);

PVBACK_ABI_SIZE(netif::TxResponse, netif_tx_response);
PVBACK_ABI_FIELD(netif::TxResponse, id, netif_tx_response, id);
PVBACK_ABI_FIELD(netif::TxResponse, status, netif_tx_response, status);

PVBACK_ABI_SIZE(netif::RxRequest, netif_rx_request);
PVBACK_ABI_FIELD(netif::RxRequest, id, netif_rx_request, id);
PVBACK_ABI_FIELD(netif::RxRequest, pad, netif_rx_request, pad);
PVBACK_ABI_FIELD(netif::RxRequest, gref, netif_rx_request, gref);

PVBACK_ABI_SIZE(netif::RxResponse, netif_rx_response);
PVBACK_ABI_FIELD(netif::RxResponse, id, netif_rx_response, id);
PVBACK_ABI_FIELD(netif::RxResponse, offset, netif_rx_response, offset);
PVBACK_ABI_FIELD(netif::RxResponse, flags, netif_rx_response, flags);
PVBACK_ABI_FIELD(netif::RxResponse, status, netif_rx_response, status);

PVBACK_ABI_SIZE(netif::ExtraInfo, netif_extra_info);
PVBACK_ABI_FIELD(netif::ExtraInfo, type, netif_extra_info, type);
PVBACK_ABI_FIELD(netif::ExtraInfo, flags, netif_extra_info, flags);
PVBACK_ABI_FIELD(netif::ExtraInfo, u, netif_extra_info, u);
PVBACK_ABI_FIELD(netif::ExtraInfo, u.gso.size, netif_extra_info, u.gso.size);
PVBACK_ABI_FIELD(netif::ExtraInfo, u.gso.type, netif_extra_info, u.gso.type);
PVBACK_ABI_FIELD(netif::ExtraInfo, u.gso.pad, netif_extra_info, u.gso.pad);
PVBACK_ABI_FIELD(netif::ExtraInfo, u.gso.features, netif_extra_info, u.gso.features);
PVBACK_ABI_FIELD(netif::ExtraInfo, u.mcast.addr, netif_extra_info, u.mcast.addr);
PVBACK_ABI_FIELD(netif::ExtraInfo, u.hash.type, netif_extra_info, u.hash.type);
PVBACK_ABI_FIELD(netif::ExtraInfo, u.hash.algorithm, netif_extra_info, u.hash.algorithm);
PVBACK_ABI_FIELD(netif::ExtraInfo, u.hash.value, netif_extra_info, u.hash.value);
PVBACK_ABI_FIELD(netif::ExtraInfo, u.pad, netif_extra_info, u.pad);
// XDP (not in Xen 4.17's header): headroom shares the first u16 of the union.
PVBACK_ABI_FIELD(netif::ExtraInfo, u.xdp.headroom, netif_extra_info, u.pad[0]);
static_assert(sizeof(netif::ExtraXdp) == sizeof(netif_extra_info::u));

PVBACK_ABI_SIZE(netif::CtrlRequest, xen_netif_ctrl_request);
PVBACK_ABI_FIELD(netif::CtrlRequest, id, xen_netif_ctrl_request, id);
PVBACK_ABI_FIELD(netif::CtrlRequest, type, xen_netif_ctrl_request, type);
PVBACK_ABI_FIELD(netif::CtrlRequest, data, xen_netif_ctrl_request, data);

PVBACK_ABI_SIZE(netif::CtrlResponse, xen_netif_ctrl_response);
PVBACK_ABI_FIELD(netif::CtrlResponse, id, xen_netif_ctrl_response, id);
PVBACK_ABI_FIELD(netif::CtrlResponse, type, xen_netif_ctrl_response, type);
PVBACK_ABI_FIELD(netif::CtrlResponse, status, xen_netif_ctrl_response, status);
PVBACK_ABI_FIELD(netif::CtrlResponse, data, xen_netif_ctrl_response, data);

PVBACK_ABI_SIZE(netif::GrefEntry, xen_netif_gref);
PVBACK_ABI_FIELD(netif::GrefEntry, ref, xen_netif_gref, ref);
PVBACK_ABI_FIELD(netif::GrefEntry, flags, xen_netif_gref, flags);
PVBACK_ABI_FIELD(netif::GrefEntry, status, xen_netif_gref, status);

// Extra-info segments must fit the slots that carry them.
static_assert(sizeof(netif::ExtraInfo) <= netif::TxRing::kEntryBytes);
static_assert(sizeof(netif::ExtraInfo) <= netif::RxRing::kEntryBytes);

// --- ring geometry ---
static_assert(netif::TxRing::kEntryBytes == sizeof(netif_tx_sring_entry));
static_assert(netif::RxRing::kEntryBytes == sizeof(netif_rx_sring_entry));
static_assert(netif::CtrlRing::kEntryBytes == sizeof(xen_netif_ctrl_sring_entry));
static_assert(netif::TxRing::size_for_order(0) == __CONST_RING_SIZE(netif_tx, 4096));
static_assert(netif::RxRing::size_for_order(0) == __CONST_RING_SIZE(netif_rx, 4096));
static_assert(netif::CtrlRing::size_for_order(0) == __CONST_RING_SIZE(xen_netif_ctrl, 4096));

// Multi-page rings, orders 0..4, against the Xen formula applied to the larger area.
template <class Ring, std::size_t kXenEntry, std::size_t kXenHeader>
constexpr bool same_sizes_for_orders() {
  for (unsigned order = 0; order <= 4; ++order) {
    std::size_t bytes = std::size_t{4096} << order;
    std::size_t entries = (bytes - kXenHeader) / kXenEntry;
    std::size_t pow2 = 1;
    while (pow2 * 2 <= entries) pow2 *= 2;
    if (Ring::size_for_order(order) != pow2) return false;
  }
  return true;
}
static_assert(same_sizes_for_orders<blkif::x86_64::Ring, sizeof(blkif_sring_entry), offsetof(blkif_sring, ring)>());
static_assert(same_sizes_for_orders<netif::TxRing, sizeof(netif_tx_sring_entry), offsetof(netif_tx_sring, ring)>());
static_assert(same_sizes_for_orders<netif::RxRing, sizeof(netif_rx_sring_entry), offsetof(netif_rx_sring, ring)>());
static_assert(same_sizes_for_orders<netif::CtrlRing, sizeof(xen_netif_ctrl_sring_entry),
                                    offsetof(xen_netif_ctrl_sring, ring)>());
// Known values: blkif 32 entries per page, doubling with each order.
static_assert(blkif::x86_64::Ring::size_for_order(0) == 32 && blkif::x86_64::Ring::size_for_order(1) == 64);
static_assert(blkif::x86_64::Ring::size_for_order(4) == 512);
static_assert(netif::TxRing::size_for_order(4) == 4096 && netif::RxRing::size_for_order(4) == 4096);

}  // namespace
