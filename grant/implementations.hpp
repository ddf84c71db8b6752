// The concrete grant-table and event-channel implementations behind grant/platform.hpp.
// Most code should go through Platform; these exist for tests and tools that need one directly.
// Every function opens a new handle and throws std::system_error with a message naming what
// could not be opened (e.g. no /dev/xen, or no simulated hypervisor listening).
#pragma once
#include <filesystem>
#include <memory>

#include "grant/event_channel.hpp"
#include "grant/grant_table.hpp"

namespace pvback::grant {

std::unique_ptr<GrantMapper> open_xen_mapper();
std::unique_ptr<GrantSharer> open_xen_sharer();
std::unique_ptr<EventChannels> open_xen_event_channels();

// `self` is the domain this process acts as in the simulation run in `run_dir`.
std::unique_ptr<GrantMapper> open_sim_mapper(const std::filesystem::path& run_dir, DomId self);
std::unique_ptr<GrantSharer> open_sim_sharer(const std::filesystem::path& run_dir, DomId self);
std::unique_ptr<EventChannels> open_sim_event_channels(const std::filesystem::path& run_dir, DomId self);

}  // namespace pvback::grant
