#include "netback/vif_service.hpp"

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <optional>
#include <sstream>
#include <thread>
#include <vector>

#include "base/log.hpp"
#include "base/queue_count.hpp"
#include "netback/data_plane.hpp"
#include "netback/metrics.hpp"
#include "netback/dpdk_exit.hpp"
#include "netback/stats_writer.hpp"
#include "netback/tap_exit.hpp"
#include "netback/tunables.hpp"
#include "netback/vif_driver.hpp"
#include "plane/options.hpp"
#include "xenbus/backend_device.hpp"

namespace pvback::netback {
namespace {

// --dpdk-eal-args is one shell word holding several EAL arguments.
std::vector<std::string> split_words(const std::string& text) {
  std::istringstream in(text);
  std::vector<std::string> words;
  for (std::string w; in >> w;) words.push_back(w);
  return words;
}

class VifService final : public xenbus::DeviceService {
 public:
  VifService(const grant::Platform& platform, xenbus::XenStore& xs, const std::string& backend_path,
             const xenbus::BackendPath& bp, const CommandLine& c, const VifOptions& options, std::string name,
             std::unique_ptr<Exit> exit)
      : xs_(xs),
        bp_(bp),
        exit_(std::move(exit)),
        stats_(c.stats_path.empty() ? xenbus::StatsFile::default_path(platform.config().stats_dir(), bp) : c.stats_path,
               name),
        driver_(platform, options, name, bp.frontend_domid, *exit_,
                [this](int error, const std::string& reason) { fatal_.post(error, reason); }),
        device_(xs, backend_path, driver_) {
    if (!c.prometheus_dir.empty())
      prometheus_.emplace(xenbus::StatsFile::prometheus_path(c.prometheus_dir, bp), name);
    hooks_.write_stats = [this] {
      stats_.write(stats_json());
      if (prometheus_) xenbus::write_metrics(*prometheus_, *this);
    };
    xenbus::set_driver_hooks(hooks_, driver_, device_);
    hooks_.after_xenstore_events = [this] { driver_.refresh_rate(xs_); };
    hooks_.on_timer = [this] {
      driver_.check_operations();
      driver_.refresh_link();
    };
  }

  VifDriver& driver() { return driver_; }
  xenbus::BackendDevice& device() override { return device_; }
  std::string stats_json() const override { return render_stats_json(device_, driver_); }
  void append_metrics(prometheus::Exposition& e) const override {
    append_vif_metrics(e, bp_.frontend_domid, bp_.devid, device_, driver_);
  }
  pid_t data_plane_pid() const override { return driver_.data_plane_pid(); }
  int begin_restart(xenbus::OperationDone done) override { return driver_.begin_restart(std::move(done)); }
  std::string target() const override { return exit_->name(); }
  std::vector<TunableValue> tunables() const override { return tunable_values(vif_tunables(), driver_.options()); }
  std::expected<TunableChange, std::string> set_tunable(std::string_view key, std::string_view value) override {
    return driver_.set_tunable(xs_, key, value);
  }
  const std::string& stats_path() const { return stats_.path(); }

  void finish() override {
    if (xenbus::finish_driver(driver_, device_, hooks_)) {
      if (auto* tap = dynamic_cast<TapExit*>(exit_.get())) tap->set_persist(false);  // gone with its last fd
      PVBACK_LOG(Info, "%s: device removed", device_.name().c_str());
    }
    // Not served by this process any more: its series go rather than stay frozen.
    if (prometheus_) prometheus_->remove();
  }

 private:
  xenbus::XenStore& xs_;
  xenbus::BackendPath bp_;
  std::unique_ptr<Exit> exit_;
  xenbus::StatsFile stats_;
  std::optional<xenbus::StatsFile> prometheus_;
  VifDriver driver_;
  xenbus::BackendDevice device_;
};

}  // namespace

bool served_on_threads(const CommandLine& command_line) {
  return command_line.exit_kind == "dpdk" || !command_line.options.data_plane_process;
}

std::expected<std::unique_ptr<xenbus::DeviceService>, int> start_vif(const grant::Platform& platform,
                                                                      xenbus::XenStore& xs,
                                                                      const std::string& backend_path,
                                                                      const CommandLine& command_line) {
  auto bp = xenbus::parse_backend_path(backend_path);
  if (!bp || bp->type != "vif") return std::unexpected(EINVAL);
  const std::string name = "vif " + std::to_string(bp->frontend_domid) + "/" + bp->devid;
  const CommandLine& c = command_line;
  VifOptions options = c.options;
  const std::string& exit_kind = c.exit_kind;
  const unsigned max_queues = [&] {
    unsigned n = options.max_queues != 0 ? options.max_queues : default_queue_count();
    return std::min(n, 64u);
  }();
  // The backend's mtu key (libxl writes it) sizes the exit; 1500 when absent.
  const auto mtu = static_cast<std::uint32_t>(xs.read_uint(backend_path + "/mtu", 65535).value_or(1500));

  options.cgroup.prefix = platform.config().host_tag();
  if (c.recovery)
    options.recovery_dir = plane::prepare_recovery_dir(c.recovery_dir, platform.config().recovery_dir(), name,
                                                       "a successor of this process takes the rings from rsp_prod");
  if (exit_kind == "dpdk" && options.data_plane_process) {
    // DPDK's EAL (hugepages, PCI or vhost-user devices, its own threads) lives in this process.
    PVBACK_LOG(Info, "%s: the DPDK exit's rings are served on threads of pvback-net", name.c_str());
    options.data_plane_process = false;
  }

  // A data plane a dead predecessor left serving holds the vif's TAP queues: it is adopted first,
  // and the exit is made of its queue fds (a new TUNSETIFF would add queues nobody reads, or fail
  // on a single-queue device). connect() then checks it serves the frontend's current rings.
  // One this process will not adopt (it serves the rings on threads) is stopped before anything
  // else takes the rings or the TAP.
  std::optional<AdoptedDataPlane> adopted;
  if (!options.recovery_dir.empty()) {
    const std::string path = vif_recovery_prefix(options.recovery_dir, bp->frontend_domid, bp->devid) + ".dp";
    if (exit_kind == "tap" && options.data_plane_process) {
      auto a = adopt_data_plane(path, name);
      if (a) adopted = std::move(*a);
      else if (a.error() != ENOENT && a.error() != ECONNREFUSED)
        PVBACK_LOG(Warning, "%s: no data plane adopted from %s: %s", name.c_str(), path.c_str(), std::strerror(a.error()));
    } else if (int e = stop_orphan_data_plane(path)) {
      PVBACK_LOG(Warning, "%s: cannot stop the data plane left serving at %s: %s", name.c_str(), path.c_str(),
                 std::strerror(e));
    }
  }

  std::unique_ptr<Exit> exit;
  if (exit_kind == "tap") {
    TapConfig tap;
    tap.name = c.tap_name.empty() ? "vif" + std::to_string(bp->frontend_domid) + "." + bp->devid : c.tap_name;
    tap.max_queues = max_queues;
    tap.mtu = mtu;
    tap.bring_up = c.tap_up;
    // The vif outlives a crash or restart of this process (addresses, bridge port, the host's
    // connections through it); it goes with the device.
    tap.persist = true;
    tap.reattach = true;
    if (adopted) {
      auto taken = TapExit::adopt(tap.name, std::move(adopted->taps));
      if (taken) {
        exit = std::move(*taken);
      } else {
        PVBACK_LOG(Warning, "%s: the adopted data plane's TAP queues: %s: stopping it", name.c_str(),
                   std::strerror(taken.error()));
        adopted->process.stop();
        adopted.reset();
      }
    }
    if (!exit) {
      auto created = TapExit::create(tap);
      if (!created) {
        PVBACK_LOG(Error, "%s: cannot create TAP device %s: %s", name.c_str(), tap.name.c_str(),
                   std::strerror(created.error()));
        return std::unexpected(created.error());
      }
      exit = std::move(*created);
    }
  } else {
    DpdkConfig dpdk;
    dpdk.devargs = c.dpdk_devargs;
    dpdk.eal_args = split_words(c.dpdk_eal_args);
    dpdk.max_queues = max_queues;
    dpdk.mtu = mtu;
    dpdk.tso = c.dpdk_tso;
    dpdk.soft_gso = c.dpdk_soft_gso;
    auto created = DpdkExit::create(dpdk);
    if (!created) {
      PVBACK_LOG(Error, "%s: cannot open DPDK port %s: %s", name.c_str(), c.dpdk_devargs.c_str(),
                 std::strerror(created.error()));
      return std::unexpected(created.error());
    }
    exit = std::move(*created);
  }

  auto service = std::make_unique<VifService>(platform, xs, backend_path, *bp, c, options, name, std::move(exit));
  if (adopted) service->driver().offer_adopted(std::move(*adopted));
  if (int rc = service->device().start(); rc != 0) {
    PVBACK_LOG(Error, "%s: cannot start: %s", name.c_str(), std::strerror(rc));
    return std::unexpected(rc);
  }
  service->driver().settle_after_start();  // not connected: no adopted data plane, no carrier
  PVBACK_LOG(Info, "%s: serving %s through %s, statistics in %s", name.c_str(), backend_path.c_str(),
             service->target().c_str(), service->stats_path().c_str());
  return std::unique_ptr<xenbus::DeviceService>(std::move(service));
}

}  // namespace pvback::netback
