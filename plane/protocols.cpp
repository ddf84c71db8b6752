#include "plane/protocols.hpp"

namespace pvback::plane {
namespace {

// pvback-blk's notices besides the common ones: Resize (3), Resized (102) and LockOwner (104).
constexpr std::uint32_t kBlkNotices[] = {kStop, 3, kAdopt, kReady, kFatal, 102, 104};
constexpr std::uint32_t kNetNotices[] = {kStop, kAdopt, kReady, kFatal};

}  // namespace

// Version 3: Start names an NBD server or RBD image (nbd_uri, storage_ours, rbd_params); LockOwner.
const Protocol kBlkProtocol{0x70766470 /* "pvdp" */, 3, kBlkNotices};
const Protocol kNetProtocol{0x70766e70 /* "pvnp" */, 1, kNetNotices};

}  // namespace pvback::plane
