// How the simulated toolstack writes XenStore nodes: owned by one domain, readable (or writable)
// by another, as libxl sets them up.
#pragma once
#include <array>
#include <span>
#include <string>

#include "grant/types.hpp"
#include "xenbus/xenstore.hpp"

namespace pvback::sim {

// Writes `value` at `path`, owned by `owner`; `reader` (if another domain) may read it, or read
// and write it. 0 or an errno value.
inline int write_node(xenbus::XenStore& xs, const std::string& path, const std::string& value, DomId owner,
                      DomId reader, bool reader_may_write = false, xenbus::Txn txn = {}) {
  if (int e = xs.write(path, value, txn)) return e;
  const std::array perms = {
      xenbus::Permission{owner, xenbus::PermAccess::None},
      xenbus::Permission{reader, reader_may_write ? xenbus::PermAccess::ReadWrite : xenbus::PermAccess::Read}};
  return xs.set_permissions(path, std::span(perms.data(), owner == reader ? 1 : 2), txn);
}

}  // namespace pvback::sim
