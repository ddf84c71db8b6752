// The simulated hypervisor's run directory (see grant/sim_layout.hpp for what lives in it).
#pragma once
#include <filesystem>

namespace pvback::sim {

// Creates `run_dir` (and parents) if needed and removes sockets a previous run left behind.
// Throws std::system_error if it cannot be used.
void prepare_run_dir(const std::filesystem::path& run_dir);

}  // namespace pvback::sim
