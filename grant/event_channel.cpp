// Binding helpers shared by the backends.
#include "grant/event_channel.hpp"

#include <cerrno>
#include <thread>

#include "base/log.hpp"

namespace pvback::grant {

std::expected<EvtchnPort, int> bind_interdomain_patiently(EventChannels& channels, DomId remote, EvtchnPort remote_port,
                                                          std::chrono::milliseconds patience, const char* who) {
  const auto deadline = std::chrono::steady_clock::now() + patience;
  bool said = false;
  for (;;) {
    auto port = channels.bind_interdomain(remote, remote_port);
    if (port || port.error() != EINVAL || std::chrono::steady_clock::now() >= deadline) return port;
    if (!said) {
      PVBACK_LOG(Notice, "%s: event channel %u of domain %u is not bindable yet (a killed predecessor's binding not "
                 "released?): retrying for up to %lld ms", who, remote_port, remote,
                 static_cast<long long>(patience.count()));
      said = true;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
}

}  // namespace pvback::grant
