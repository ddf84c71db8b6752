#include "blkback/vbd_service.hpp"

#include <unistd.h>

#include <cstring>
#include <optional>

#include "base/log.hpp"
#include "blkback/metrics.hpp"
#include "blkback/stats_writer.hpp"
#include "blkback/td3_stats.hpp"
#include "blkback/tunables.hpp"
#include "blkback/vbd_driver.hpp"
#include "plane/options.hpp"
#include "xenbus/backend_device.hpp"

namespace pvback::blkback {
namespace {

class VbdService final : public xenbus::DeviceService {
 public:
  VbdService(const grant::Platform& platform, xenbus::XenStore& xs, const std::string& backend_path,
             const xenbus::BackendPath& bp, const CommandLine& c, std::string name, std::string params)
      : xs_(xs),
        bp_(bp),
        params_(std::move(params)),
        stats_(c.stats_path.empty() ? xenbus::StatsFile::default_path(platform.config().stats_dir(), bp) : c.stats_path,
               name),
        driver_(platform, c.options, name, bp.frontend_domid,
                [this](int error, const std::string& reason) { fatal_.post(error, reason); }),
        device_(xs, backend_path, driver_) {
    if (!c.prometheus_dir.empty())
      prometheus_.emplace(xenbus::StatsFile::prometheus_path(c.prometheus_dir, bp), name);
    // A vbd3 disk (Xen 4.19+'s backendtype=tap) shows in xentop by tapdisk3's route.
    if (bp.type == "vbd3")
      if (const auto devid = xenbus::parse_uint(bp.devid, UINT32_MAX))
        td3_.emplace(xs, backend_path, bp.frontend_domid, static_cast<std::uint32_t>(*devid), ::getpid());
    hooks_.write_stats = [this] {
      stats_.write(stats_json());
      if (prometheus_) xenbus::write_metrics(*prometheus_, *this);
      if (td3_) {
        QueueStats kernel;
        add_queue_totals(kernel, driver_.past_totals(), driver_.queue_stats(), kKernelStatsFields);
        if (const int e = td3_->write(kernel); e != 0 && !td3_error_logged_) {
          PVBACK_LOG(Warning, "%s: cannot write %s for xentop: %s", device_.name().c_str(), td3_->path().c_str(),
                     std::strerror(e));
          td3_error_logged_ = true;
        }
      }
    };
    xenbus::set_driver_hooks(hooks_, driver_, device_);
    hooks_.on_timer = [this] {
      driver_.check_operations();
      driver_.check_resize(xs_);
    };
  }

  xenbus::BackendDevice& device() override { return device_; }
  std::string stats_json() const override { return render_stats_json(device_, driver_); }
  void append_metrics(prometheus::Exposition& e) const override {
    append_vbd_metrics(e, bp_.frontend_domid, bp_.devid, device_, driver_);
  }
  pid_t data_plane_pid() const override { return driver_.data_plane_pid(); }
  int begin_restart(xenbus::OperationDone done) override { return driver_.begin_restart(std::move(done)); }
  int begin_pause(std::chrono::milliseconds drain_timeout, xenbus::OperationDone done) override {
    return driver_.begin_pause(drain_timeout, std::move(done));
  }
  int begin_resume(xenbus::OperationDone done) override { return driver_.begin_resume(std::move(done)); }
  bool paused() const override { return driver_.paused(); }
  std::vector<TunableValue> tunables() const override { return tunable_values(vbd_tunables(), driver_.options()); }
  std::expected<TunableChange, std::string> set_tunable(std::string_view key, std::string_view value) override {
    return driver_.set_tunable(xs_, key, value);
  }
  std::string target() const override { return params_; }
  const std::string& stats_path() const { return stats_.path(); }

  void finish() override {
    if (xenbus::finish_driver(driver_, device_, hooks_)) {
      PVBACK_LOG(Info, "%s: device removed", device_.name().c_str());
    }
    // Not served by this process any more: its series go rather than stay frozen.
    if (prometheus_) prometheus_->remove();
    td3_.reset();
  }

 private:
  xenbus::XenStore& xs_;
  xenbus::BackendPath bp_;
  std::string params_;
  xenbus::StatsFile stats_;
  std::optional<xenbus::StatsFile> prometheus_;
  VbdDriver driver_;
  std::optional<Td3Stats> td3_;  // declared after driver_: its destructor runs first
  bool td3_error_logged_ = false;
  xenbus::BackendDevice device_;
};

}  // namespace

bool served_on_threads(const BackendOptions& options) {
  return !options.data_plane_process;
}

std::expected<std::unique_ptr<xenbus::DeviceService>, int> start_vbd(const grant::Platform& platform,
                                                                      xenbus::XenStore& xs,
                                                                      const std::string& backend_path,
                                                                      const CommandLine& command_line) {
  auto bp = xenbus::parse_backend_path(backend_path);
  if (!bp || (bp->type != "vbd" && bp->type != "vbd3")) return std::unexpected(EINVAL);
  const std::string name = "vbd " + std::to_string(bp->frontend_domid) + "/" + bp->devid;
  CommandLine c = command_line;
  if (c.recovery)
    c.options.recovery_dir = ::pvback::plane::prepare_recovery_dir(c.recovery_dir, platform.config().recovery_dir(), name,
                                                         "a crash of this process may lose or repeat answers");
  c.options.cgroup.prefix = platform.config().host_tag();
  auto service = std::make_unique<VbdService>(platform, xs, backend_path, *bp, c, name,
                                              xs.read(backend_path + "/params").value_or(""));
  if (int rc = service->device().start(); rc != 0) {
    PVBACK_LOG(Error, "%s: cannot start: %s", name.c_str(), std::strerror(rc));
    return std::unexpected(rc);
  }
  PVBACK_LOG(Info, "%s: serving %s, statistics in %s", name.c_str(), backend_path.c_str(),
             service->stats_path().c_str());
  return std::unique_ptr<xenbus::DeviceService>(std::move(service));
}

}  // namespace pvback::blkback
