// xenstore_test_server RUN_DIR: serves XenStore (Dom0 socket RUN_DIR/socket) until SIGTERM or
// SIGINT. For test scripts that need a server process rather than an in-process one.
#include <signal.h>
#include <stdio.h>

#include <exception>
#include <thread>

#include "sim/xenstore/server.hpp"

int main(int argc, char** argv) {
  if (argc != 2) {
    fprintf(stderr, "usage: %s RUN_DIR\n", argv[0]);
    return 2;
  }
  // Block the signals before starting threads so only sigwait() below sees them.
  sigset_t signals;
  sigemptyset(&signals);
  sigaddset(&signals, SIGTERM);
  sigaddset(&signals, SIGINT);
  pthread_sigmask(SIG_BLOCK, &signals, nullptr);
  try {
    pvback::sim::XenStoreServer server(argv[1]);
    std::thread serving([&server] { server.run(); });
    int received = 0;
    sigwait(&signals, &received);
    server.stop();
    serving.join();
  } catch (const std::exception& e) {
    fprintf(stderr, "xenstore_test_server: %s\n", e.what());
    return 1;
  }
  return 0;
}
