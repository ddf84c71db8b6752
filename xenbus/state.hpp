// XenbusState (xen/io/xenbus.h) with names for logs.
#pragma once
#include <optional>
#include <string_view>

#include <xen/io/xenbus.h>

namespace pvback::xenbus {

using State = enum xenbus_state;

std::string_view state_name(State state);
// Parses a "state" node's value; nullopt for anything that is not a decimal 0..8.
std::optional<State> parse_state(std::string_view value);

}  // namespace pvback::xenbus
