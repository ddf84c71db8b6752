// Each backend's control-part <-> data-plane protocol by its identity (magic, version, notices),
// so that a third party (pvback-supervisor) can stop an orphaned data plane of either backend
// without linking it. The messages themselves: blkback/data_plane_protocol.hpp,
// netback/data_plane_protocol.hpp.
#pragma once
#include "plane/codec.hpp"

namespace pvback::plane {

extern const Protocol kBlkProtocol;  // "pvdp", version 6
extern const Protocol kNetProtocol;  // "pvnp", version 1

}  // namespace pvback::plane
