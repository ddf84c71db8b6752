// Waiting on the other end's XenbusState, as the userspace frontends (blkfront, netfront) do
// during attach and detach.
#pragma once
#include <poll.h>

#include <chrono>
#include <initializer_list>
#include <string>

#include "xenbus/state.hpp"
#include "xenbus/xenstore.hpp"

namespace pvback::xenbus {

// poll() that gives up at `deadline` (waiting at most a second per call, so a caller's loop also
// re-checks what it waits for). 0 (ready or timed out) or an errno value.
int poll_until(pollfd* fds, nfds_t n, std::chrono::steady_clock::time_point deadline);

// Waits until the state node at `state_path` holds one of `wanted` (0). ENODEV as soon as it holds
// one of `failing`; a vanished node counts as Closed when Closed is wanted; ETIMEDOUT after
// `timeout`. Pending watch events on `xs` are consumed (the caller watches the node). Every state
// read is stored in `*last`.
int wait_for_state(XenStore& xs, const std::string& state_path, std::initializer_list<State> wanted,
                   std::initializer_list<State> failing, std::chrono::milliseconds timeout, State* last);

}  // namespace pvback::xenbus
