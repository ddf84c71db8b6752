// Helpers for the compile-time ABI checks against the Xen headers.
#pragma once
#include <cstddef>
#include <utility>

// Our field `ours` of `Ours` sits where Xen's `theirs` of `Theirs` does and has the same size.
#define PVBACK_ABI_FIELD(Ours, ours, Theirs, theirs)                                    \
  static_assert(offsetof(Ours, ours) == offsetof(Theirs, theirs), #Ours "." #ours " offset"); \
  static_assert(sizeof(std::declval<Ours&>().ours) == sizeof(std::declval<Theirs&>().theirs), #Ours "." #ours " size")

#define PVBACK_ABI_SIZE(Ours, Theirs) static_assert(sizeof(Ours) == sizeof(Theirs), #Ours " size")
