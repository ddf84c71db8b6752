// pvbackctl's readable output, from the daemon's answers (pure: the unit tests feed it documents).
#pragma once
#include <expected>
#include <optional>
#include <string>

#include "ctl/json.hpp"

namespace pvback::ctl {

// "1h02m", "3m05s", "42s"; "-" for a negative or missing uptime.
std::string format_uptime(std::optional<std::int64_t> seconds);

// `list`'s answer as a table: a header, then one line per device (device, kind, domain, devid,
// XenbusState by name, who serves it, its pid, uptime, storage or exit). "no devices" for none.
std::string format_list(const Json& answer);

// `info`'s answer: the device, what the backend advertised, what the frontend wrote and what was
// negotiated.
std::string format_info(const Json& answer);

// set's answer: one line per device, what changed and when it takes effect.
std::string format_set(const Json& answer);
// The answer of restart, pause or resume, one line: "vbd-5-768: paused: 12 request(s) in flight
// drained in 340 ms, the storage flushed in 2 ms".
std::string format_operation(const std::string& command, const std::string& device, const Json& answer);

// A statistics document (`stats`'s "stats") as a table: one row per counter, a column for the
// total and one per queue, or only queue `queue` if given (an error if it has no such queue);
// without `queue`, a vbd's "kernel" counters (xen-blkback's names) follow in a table of their own.
[[nodiscard]] std::expected<std::string, std::string> format_stats(const Json& stats, std::optional<unsigned> queue);

// The counters --watch follows: the total's, or queue `queue`'s, as an object; an error if the
// queue does not exist.
[[nodiscard]] std::expected<Json, std::string> select_counters(const Json& stats, std::optional<unsigned> queue);

// One --watch report: each counter of `now` with its change per second since `before` (the
// previous report's counters, `seconds` ago); without `before`, the values alone.
std::string format_rates(const Json& now, const Json* before, double seconds);

}  // namespace pvback::ctl
