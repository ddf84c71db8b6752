#include "plane/protocols.hpp"

namespace pvback::plane {
namespace {

// pvback-blk's notices besides the common ones: Resize (3) and Resized (102).
constexpr std::uint32_t kBlkNotices[] = {kStop, 3, kAdopt, kReady, kFatal, 102};
constexpr std::uint32_t kNetNotices[] = {kStop, kAdopt, kReady, kFatal};

}  // namespace

const Protocol kBlkProtocol{0x70766470 /* "pvdp" */, 2, kBlkNotices};
const Protocol kNetProtocol{0x70766e70 /* "pvnp" */, 1, kNetNotices};

}  // namespace pvback::plane
