// Basic Xen identifiers shared by the grant, event-channel and XenStore layers.
#pragma once
#include <cstddef>
#include <cstdint>

namespace pvback {

using DomId = std::uint16_t;
using GrantRef = std::uint32_t;
using EvtchnPort = std::uint32_t;

inline constexpr std::size_t kXenPageSize = 4096;
inline constexpr unsigned kXenPageShift = 12;

enum class Access : std::uint8_t { ReadOnly, ReadWrite };

}  // namespace pvback
