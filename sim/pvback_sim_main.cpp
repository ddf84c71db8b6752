// pvback-sim: the simulated hypervisor daemon, in the foreground.
//
//   pvback-sim --run-dir DIR
//
// XenStore socket at DIR/socket (export XENSTORED_PATH=DIR/socket for libxenstore and the
// xenstore-* CLIs), control socket at DIR/control (pvback-sim-ctl creates and destroys domains).
// Stops cleanly on SIGINT/SIGTERM.
#include <getopt.h>
#include <signal.h>

#include <cstdio>
#include <cstdlib>
#include <exception>
#include <string>

#include "base/log.hpp"
#include "grant/sim_layout.hpp"
#include "sim/hypervisor.hpp"

namespace {

void usage(FILE* out) {
  std::fprintf(out,
               "usage: pvback-sim --run-dir DIR\n"
               "Runs the simulated Xen hypervisor (XenStore, grant tables, event channels) in the foreground.\n"
               "  --run-dir DIR   where the sockets live (DIR/socket is the XenStore socket)\n");
}

}  // namespace

int main(int argc, char** argv) {
  pvback::log::set_program("pvback-sim");
  std::string run_dir;
  static const option options[] = {{"run-dir", required_argument, nullptr, 'd'},
                                   {"help", no_argument, nullptr, 'h'},
                                   {nullptr, 0, nullptr, 0}};
  for (int c; (c = getopt_long(argc, argv, "d:h", options, nullptr)) != -1;) {
    switch (c) {
      case 'd': run_dir = optarg; break;
      case 'h': usage(stdout); return 0;
      default: usage(stderr); return 2;
    }
  }
  if (run_dir.empty() || optind != argc) {
    usage(stderr);
    return 2;
  }

  // Block the stop signals before any thread starts so only sigwait() below sees them.
  sigset_t stop_signals;
  sigemptyset(&stop_signals);
  sigaddset(&stop_signals, SIGINT);
  sigaddset(&stop_signals, SIGTERM);
  pthread_sigmask(SIG_BLOCK, &stop_signals, nullptr);
  signal(SIGPIPE, SIG_IGN);

  try {
    pvback::sim::SimHypervisor hypervisor(run_dir);
    PVBACK_LOG(Notice, "ready: XENSTORED_PATH=%s",
               pvback::sim_layout::xenstore_socket(hypervisor.run_dir()).c_str());
    int sig = 0;
    sigwait(&stop_signals, &sig);
    PVBACK_LOG(Notice, "stopping on signal %d", sig);
  } catch (const std::exception& e) {
    PVBACK_LOG(Error, "cannot run: %s", e.what());
    return 1;
  }
  return 0;
}
