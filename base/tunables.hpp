// The operator's tunables of a device type, by the names of the kernel backends' module parameters
// where they have one (xen-blkback's max_persistent_grants, xen-netback's max_queues, ...): a table
// per backend (blkback/tunables.hpp, netback/tunables.hpp) over its options struct, read by the
// config file (base/config_file.hpp), the backends' `--set NAME=VALUE` and `pvbackctl set`.
//
// Each tunable says when a change reaches a connected device: at once (the data plane is told),
// or at the frontend's next connection, because the frontend negotiates it from what the backend
// advertised when it connected (queues, ring size, indirect segments, persistent grants).
#pragma once
#include <algorithm>
#include <cstdint>
#include <expected>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace pvback {

enum class TakesEffect {
  Now,          // on the running device as well
  NextConnect,  // advertised at once; the frontend reads it when it next connects
  Never,        // accepted for the kernel's name, but nothing in pvback to apply it to (`help` says why)
};

// "now", "at the frontend's next connection", "never".
std::string_view describe(TakesEffect when);
// "now", "next-connect", "never": for JSON.
std::string_view keyword(TakesEffect when);

template <class Options>
struct Tunable {
  std::string_view name;   // the kernel's module parameter name where there is one
  std::string_view alias;  // another accepted name, or ""
  TakesEffect when = TakesEffect::NextConnect;
  bool boolean = false;    // 0/1, also written y/n, yes/no, true/false, on/off
  std::uint64_t min = 0;
  std::uint64_t max = 0;
  std::uint64_t (*get)(const Options&) = nullptr;
  void (*set)(Options&, std::uint64_t) = nullptr;
  std::string_view help;   // what it is; for Never, why pvback has nothing to apply it to
};

struct TunableValue {
  std::string name;
  std::uint64_t value = 0;
  TakesEffect when = TakesEffect::NextConnect;
};

struct TunableChange {
  std::string name;  // the table's name (an alias given is reported by its name)
  std::uint64_t old_value = 0;
  std::uint64_t value = 0;
  TakesEffect when = TakesEffect::NextConnect;
};

// Whether `key` names `name`, '-' standing for '_' (max-queues is max_queues).
bool same_tunable_name(std::string_view key, std::string_view name);

// `text` as a tunable's value: a decimal number within [min, max], or for a boolean one of
// 0/1/y/n/yes/no/true/false/on/off. The error names the tunable and says what is accepted.
std::expected<std::uint64_t, std::string> parse_tunable_value(std::string_view name, std::string_view text,
                                                              bool boolean, std::uint64_t min, std::uint64_t max);

// "a, b, c": the names of a table, for an error about an unknown one.
std::string tunable_names(std::span<const std::string_view> names);

template <class Options>
const Tunable<Options>* find_tunable(std::span<const Tunable<Options>> table, std::string_view key) {
  for (const auto& t : table)
    if (same_tunable_name(key, t.name) || (!t.alias.empty() && same_tunable_name(key, t.alias))) return &t;
  return nullptr;
}

// Sets `key` to `value` in `options`: the change, or the error for the operator (an unknown name
// with the known ones, a value out of range, a kernel name pvback has nothing to apply to).
// `kind` names the device type in errors ("vbd").
template <class Options>
[[nodiscard]] std::expected<TunableChange, std::string> set_tunable(std::span<const Tunable<Options>> table,
                                                                    std::string_view kind, Options& options,
                                                                    std::string_view key, std::string_view value) {
  const Tunable<Options>* t = find_tunable(table, key);
  if (t == nullptr) {
    std::vector<std::string_view> names;
    for (const auto& each : table)
      if (each.when != TakesEffect::Never) names.push_back(each.name);
    return std::unexpected("a " + std::string(kind) + " has no tunable '" + std::string(key) +
                           "' (it has " + tunable_names(names) + ")");
  }
  if (t->when == TakesEffect::Never)
    return std::unexpected(std::string(t->name) + " does not apply to pvback: " + std::string(t->help));
  auto parsed = parse_tunable_value(t->name, value, t->boolean, t->min, t->max);
  if (!parsed) return std::unexpected(parsed.error());
  TunableChange change{std::string(t->name), t->get(options), *parsed, t->when};
  t->set(options, *parsed);
  return change;
}

// A backend's `--set NAME=VALUE`: "" once set, or the error for the command line.
template <class Options>
std::string set_tunable_option(std::span<const Tunable<Options>> table, std::string_view kind, Options& options,
                               std::string_view pair) {
  const auto eq = pair.find('=');
  if (eq == std::string_view::npos) return "--set takes NAME=VALUE, not '" + std::string(pair) + "'";
  auto set = set_tunable(table, kind, options, pair.substr(0, eq), pair.substr(eq + 1));
  return set ? std::string() : "--set: " + set.error();
}

// Every applicable tunable's value in `options`, in the table's order.
template <class Options>
std::vector<TunableValue> tunable_values(std::span<const Tunable<Options>> table, const Options& options) {
  std::vector<TunableValue> out;
  for (const auto& t : table)
    if (t.when != TakesEffect::Never) out.push_back({std::string(t.name), t.get(options), t.when});
  return out;
}

}  // namespace pvback
