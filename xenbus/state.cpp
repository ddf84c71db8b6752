#include "xenbus/state.hpp"

namespace pvback::xenbus {

std::string_view state_name(State state) {
  switch (state) {
    case XenbusStateUnknown: return "Unknown";
    case XenbusStateInitialising: return "Initialising";
    case XenbusStateInitWait: return "InitWait";
    case XenbusStateInitialised: return "Initialised";
    case XenbusStateConnected: return "Connected";
    case XenbusStateClosing: return "Closing";
    case XenbusStateClosed: return "Closed";
    case XenbusStateReconfiguring: return "Reconfiguring";
    case XenbusStateReconfigured: return "Reconfigured";
  }
  return "Invalid";
}

std::optional<State> parse_state(std::string_view value) {
  if (value.size() != 1 || value[0] < '0' || value[0] > '8') return std::nullopt;
  return static_cast<State>(value[0] - '0');
}

}  // namespace pvback::xenbus
