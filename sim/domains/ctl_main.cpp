// pvback-sim-ctl: the simulated hypervisor's toolstack commands (what `xl create/destroy/list`
// are on Xen), over the control socket as domain 0.
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include "grant/sim_control.hpp"
#include "grant/sim_layout.hpp"
#include "sim/toolstack/vbd.hpp"
#include "sim/toolstack/vif.hpp"
#include "xenbus/xenstore.hpp"

namespace {

int usage() {
  std::fprintf(stderr,
               "usage: pvback-sim-ctl --run-dir DIR create-domain DOMID [--name NAME] [--memory-mib MIB]\n"
               "       pvback-sim-ctl --run-dir DIR destroy-domain DOMID\n"
               "       pvback-sim-ctl --run-dir DIR list\n"
               "       pvback-sim-ctl --run-dir DIR add-vbd DOMID DEVID --params PATH [--mode r|w]\n"
               "                      [--device-type disk|cdrom] [--discard-enable 0|1] [--backend-domid N]\n"
               "       pvback-sim-ctl --run-dir DIR remove-vbd DOMID DEVID [--backend-domid N]\n"
               "       pvback-sim-ctl --run-dir DIR add-vif DOMID HANDLE [--mac MAC] [--bridge BR]\n"
               "                      [--rate BYTES,USEC] [--mtu N] [--script PATH] [--backend-domid N]\n"
               "       pvback-sim-ctl --run-dir DIR remove-vif DOMID HANDLE [--backend-domid N]\n");
  return 2;
}

bool parse_number(const std::string& text, unsigned long max, unsigned long* out) {
  if (text.empty()) return false;
  char* end = nullptr;
  errno = 0;
  unsigned long v = std::strtoul(text.c_str(), &end, 10);
  if (errno != 0 || *end != '\0' || v > max) return false;
  *out = v;
  return true;
}

// add-vbd / remove-vbd: the XenStore side of `xl block-attach` / `xl block-detach`.
int vbd_command(const std::string& run_dir, const std::vector<std::string>& rest) {
  using namespace pvback;
  unsigned long domid = 0, devid = 0, backend = 0;
  if (rest.size() < 3 || !parse_number(rest[1], 0x7FEF, &domid) || !parse_number(rest[2], 0xFFFFFFFFul, &devid))
    return usage();
  sim::VbdSpec spec;
  spec.frontend_domid = static_cast<DomId>(domid);
  spec.devid = static_cast<std::uint32_t>(devid);
  const bool add = rest[0] == "add-vbd";
  for (size_t i = 3; i < rest.size(); ++i) {
    const bool has_value = i + 1 < rest.size();
    if (rest[i] == "--backend-domid" && has_value && parse_number(rest[i + 1], 0x7FEF, &backend)) {
      spec.backend_domid = static_cast<DomId>(backend);
    } else if (add && rest[i] == "--params" && has_value) {
      spec.params = rest[i + 1];
    } else if (add && rest[i] == "--mode" && has_value) {
      spec.mode = rest[i + 1];
    } else if (add && rest[i] == "--device-type" && has_value) {
      spec.device_type = rest[i + 1];
    } else if (add && rest[i] == "--discard-enable" && has_value && (rest[i + 1] == "0" || rest[i + 1] == "1")) {
      spec.discard_enable = rest[i + 1] == "1";
    } else {
      return usage();
    }
    ++i;
  }
  auto xs = xenbus::XenStore::open(sim_layout::xenstore_socket(run_dir).string());
  if (!xs) {
    std::fprintf(stderr, "pvback-sim-ctl: cannot connect to XenStore in %s: %s\n", run_dir.c_str(),
                 std::strerror(xs.error()));
    return 1;
  }
  const int err = add ? sim::add_vbd(*xs, spec)
                      : sim::remove_vbd(*xs, spec.backend_domid, spec.frontend_domid, spec.devid);
  if (err != 0) {
    std::fprintf(stderr, "pvback-sim-ctl: %s %lu %lu: %s\n", rest[0].c_str(), domid, devid, std::strerror(err));
    return 1;
  }
  if (add) std::printf("%s\n", sim::vbd_backend_path(spec.backend_domid, spec.frontend_domid, spec.devid).c_str());
  return 0;
}

// add-vif / remove-vif: the XenStore side of `xl network-attach` / `xl network-detach`.
int vif_command(const std::string& run_dir, const std::vector<std::string>& rest) {
  using namespace pvback;
  unsigned long domid = 0, handle = 0, number = 0;
  if (rest.size() < 3 || !parse_number(rest[1], 0x7FEF, &domid) || !parse_number(rest[2], 0xFFFF, &handle))
    return usage();
  sim::VifSpec spec;
  spec.frontend_domid = static_cast<DomId>(domid);
  spec.handle = static_cast<std::uint32_t>(handle);
  const bool add = rest[0] == "add-vif";
  for (size_t i = 3; i < rest.size(); ++i) {
    const bool has_value = i + 1 < rest.size();
    const std::string value = has_value ? rest[i + 1] : std::string();
    if (rest[i] == "--backend-domid" && has_value && parse_number(value, 0x7FEF, &number)) {
      spec.backend_domid = static_cast<DomId>(number);
    } else if (add && rest[i] == "--mac" && has_value) {
      spec.mac = value;
    } else if (add && rest[i] == "--bridge" && has_value) {
      spec.bridge = value;
    } else if (add && rest[i] == "--rate" && has_value) {
      spec.rate = value;
    } else if (add && rest[i] == "--script" && has_value) {
      spec.script = value;
    } else if (add && rest[i] == "--mtu" && has_value && parse_number(value, 65535, &number)) {
      spec.mtu = static_cast<std::uint32_t>(number);
    } else {
      return usage();
    }
    ++i;
  }
  auto xs = xenbus::XenStore::open(sim_layout::xenstore_socket(run_dir).string());
  if (!xs) {
    std::fprintf(stderr, "pvback-sim-ctl: cannot connect to XenStore in %s: %s\n", run_dir.c_str(),
                 std::strerror(xs.error()));
    return 1;
  }
  const int err = add ? sim::add_vif(*xs, spec)
                      : sim::remove_vif(*xs, spec.backend_domid, spec.frontend_domid, spec.handle);
  if (err != 0) {
    std::fprintf(stderr, "pvback-sim-ctl: %s %lu %lu: %s\n", rest[0].c_str(), domid, handle, std::strerror(err));
    return 1;
  }
  if (add) std::printf("%s\n", sim::vif_backend_path(spec.backend_domid, spec.frontend_domid, spec.handle).c_str());
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  using namespace pvback;
  std::vector<std::string> args(argv + 1, argv + argc);
  std::string run_dir;
  std::vector<std::string> rest;
  for (size_t i = 0; i < args.size(); ++i) {
    if (args[i] == "--run-dir" && i + 1 < args.size()) {
      run_dir = args[++i];
    } else if (args[i] == "-h" || args[i] == "--help") {
      usage();
      return 0;
    } else {
      rest.push_back(args[i]);
    }
  }
  if (run_dir.empty() || rest.empty()) return usage();

  if (rest[0] == "add-vbd" || rest[0] == "remove-vbd") return vbd_command(run_dir, rest);
  if (rest[0] == "add-vif" || rest[0] == "remove-vif") return vif_command(run_dir, rest);

  auto control = grant::SimControl::connect(run_dir, 0);
  if (!control) {
    std::fprintf(stderr, "pvback-sim-ctl: cannot connect to the simulated hypervisor in %s: %s\n", run_dir.c_str(),
                 std::strerror(control.error()));
    return 1;
  }
  sim_protocol::Request req;
  const std::string& command = rest[0];
  if (command == "create-domain" || command == "destroy-domain") {
    unsigned long domid = 0;
    if (rest.size() < 2 || !parse_number(rest[1], 0x7FEF, &domid)) return usage();
    req.domid = static_cast<std::uint32_t>(domid);
    req.op = command == "create-domain" ? sim_protocol::Op::CreateDomain : sim_protocol::Op::DestroyDomain;
    for (size_t i = 2; i < rest.size(); ++i) {
      unsigned long mib = 0;
      if (command == "create-domain" && rest[i] == "--name" && i + 1 < rest.size()) {
        const std::string& name = rest[++i];
        if (name.size() >= sizeof(req.name)) {
          std::fprintf(stderr, "pvback-sim-ctl: name too long (max %zu)\n", sizeof(req.name) - 1);
          return 2;
        }
        std::memcpy(req.name, name.c_str(), name.size() + 1);
      } else if (command == "create-domain" && rest[i] == "--memory-mib" && i + 1 < rest.size() &&
                 parse_number(rest[i + 1], sim_protocol::kMaxMemoryBytes >> 20, &mib)) {
        req.memory_bytes = static_cast<std::uint64_t>(mib) << 20;
        ++i;
      } else {
        return usage();
      }
    }
    auto reply = control->call(req);
    if (!reply) {
      std::fprintf(stderr, "pvback-sim-ctl: %s %lu: %s\n", command.c_str(), domid, std::strerror(reply.error()));
      return 1;
    }
    return 0;
  }
  if (command == "list" && rest.size() == 1) {
    std::printf("%-6s %-10s %s\n", "DomID", "Mem(MiB)", "Name");
    req.op = sim_protocol::Op::ListDomains;
    for (;;) {
      auto reply = control->call(req);
      if (!reply) {
        std::fprintf(stderr, "pvback-sim-ctl: list: %s\n", std::strerror(reply.error()));
        return 1;
      }
      for (std::uint32_t i = 0; i < reply->count && i < sim_protocol::kListBatch; ++i) {
        const auto& d = reply->domains[i];
        std::printf("%-6u %-10llu %.*s\n", d.domid, static_cast<unsigned long long>(d.memory_bytes >> 20),
                    static_cast<int>(sizeof(d.name)), d.name);
      }
      if (reply->more == 0) break;
      req.start += reply->count;
    }
    return 0;
  }
  return usage();
}
