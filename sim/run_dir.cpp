#include "sim/run_dir.hpp"

#include <system_error>

#include "grant/sim_layout.hpp"

namespace pvback::sim {

void prepare_run_dir(const std::filesystem::path& run_dir) {
  std::error_code ec;
  std::filesystem::create_directories(run_dir, ec);
  if (ec) throw std::system_error(ec, "cannot create run directory " + run_dir.string());
  std::filesystem::remove(sim_layout::xenstore_socket(run_dir), ec);
  std::filesystem::remove(sim_layout::control_socket(run_dir), ec);
  std::filesystem::remove_all(run_dir / "guest", ec);
}

}  // namespace pvback::sim
