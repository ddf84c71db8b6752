#include "plane/protocols.hpp"

namespace pvback::plane {
namespace {

// pvback-blk's notices besides the common ones: Resize (3), Pause (5), Resume (6), Resized (102) and
// LockOwner (104). Paused (105) and Resumed (106) carry figures: messages of their own.
constexpr std::uint32_t kBlkNotices[] = {kStop, 3, kAdopt, 5, 6, kReady, kFatal, 102, 104};
constexpr std::uint32_t kNetNotices[] = {kStop, kAdopt, kReady, kFatal};

}  // namespace

// Version 3: Start names an NBD server or RBD image (nbd_uri, storage_ours, rbd_params); LockOwner.
// Version 4: the operator's pause: Pause, Paused, Resume, Resumed, and Start's (and Adopted's)
// `paused`. A version 3 data plane left serving is not adopted (its Adopted lacks `paused`): it is
// killed and a new one resumes its rings from the records.
// Version 5: Tune, the operator's persistent-grant limits for the running queues.
// Version 6: each queue's (and Tune's) polling window and submission batch.
const Protocol kBlkProtocol{0x70766470 /* "pvdp" */, 6, kBlkNotices};
const Protocol kNetProtocol{0x70766e70 /* "pvnp" */, 1, kNetNotices};

}  // namespace pvback::plane
