// The XenStore tree: nodes, permissions, path rules and transactions, without any I/O.
// The wire protocol and watches (protocol.cpp) sit on top of it, the sockets (server.cpp) on those.
#pragma once
#include <cstdint>
#include <expected>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "grant/types.hpp"

namespace pvback::sim::xs {

// One entry of a node's permission list ("n0", "r5", "w7", "b3"). The first entry names the
// owner and the access everyone not listed later gets.
struct Perm {
  DomId domid = 0;
  char kind = 'n';  // n(one), r(ead), w(rite), b(oth)
  bool operator==(const Perm&) const = default;
};
using PermList = std::vector<Perm>;

std::optional<Perm> parse_perm(std::string_view text);
std::string format_perm(const Perm& perm);

// Who performs an operation. Dom0 connections are privileged and bypass permission checks.
struct Caller {
  DomId domid = 0;
  bool privileged = true;
};

bool may_read(const PermList& perms, const Caller& caller);
bool may_write(const PermList& perms, const Caller& caller);

std::string domain_path(DomId domid);  // "/local/domain/<domid>"

// Turns a path as a client sent it into an absolute one: relative paths are relative to the
// caller's /local/domain/<domid>. Checks characters, "//", trailing '/', and the
// XENSTORE_{ABS,REL}_PATH_MAX limits. Returns an errno (EINVAL) on violation.
std::expected<std::string, int> canonical_path(std::string_view given, DomId domid);

// Something that changed, for watches: `path` and, unless exact_only, its ancestors' watches fire.
// `perms` decides which unprivileged connections may see the event.
struct Change {
  std::string path;
  bool exact_only = false;
  PermList perms;
};

struct Node {
  std::string value;
  PermList perms;
  std::vector<std::string> children;  // names, in creation order (as cxenstored lists them)
  std::uint64_t generation = 0;        // changes whenever the node or its child list changes
};
using Tree = std::unordered_map<std::string, Node>;

// A transaction works on its own copy of the tree. It remembers the generation of every node it
// looked at (absent = nullopt) when it first looked; commit fails with EAGAIN if any of those
// differ in the live tree by then.
class Transaction {
 private:
  friend class Store;
  Tree tree_;
  std::map<std::string, std::optional<std::uint64_t>> base_generation_;
  std::set<std::string> modified_;
  std::vector<Change> changes_;
};

// How many nodes one unprivileged domain may own; creating more fails with ENOSPC (a guest must
// not be able to grow Dom0's XenStore without bound).
inline constexpr std::size_t kMaxNodesPerGuest = 1000;
// How many distinct nodes (present or not) one unprivileged transaction may look at; further
// operations in it fail with ENOSPC, as with cxenstored's transaction-nodes quota. Without it a
// guest could grow a transaction's bookkeeping without bound by reading made-up paths.
inline constexpr std::size_t kMaxTransactionNodesGuest = 1024;

class Store {
 public:
  Store();  // "/", "/local", "/local/domain", "/tool", "/local/domain/0", all owned by Dom0 ("n0")

  std::unique_ptr<Transaction> begin() const;
  // On success the transaction's changes are applied and appended to `changes`. EAGAIN on conflict;
  // ENOSPC if an unprivileged caller would own more than kMaxNodesPerGuest after it (each
  // transaction checks the quota against its own copy, so concurrent ones could add up past it).
  [[nodiscard]] int commit(Transaction& tx, const Caller& caller, std::vector<Change>& changes);

  // Operations take absolute paths (canonical_path) and a transaction or nullptr. Changes made
  // outside a transaction are appended to `changes`; inside one they wait for commit.
  std::expected<std::string, int> read(Transaction* tx, const std::string& path, const Caller& caller);
  int write(Transaction* tx, const std::string& path, std::string_view value, const Caller& caller,
            std::vector<Change>& changes);
  int mkdir(Transaction* tx, const std::string& path, const Caller& caller, std::vector<Change>& changes);
  int rm(Transaction* tx, const std::string& path, const Caller& caller, std::vector<Change>& changes);
  // The child names, each followed by a NUL, and the node's generation.
  struct ChildList {
    std::uint64_t generation = 0;
    std::string names;
  };
  std::expected<ChildList, int> children(Transaction* tx, const std::string& path, const Caller& caller);
  std::expected<PermList, int> get_perms(Transaction* tx, const std::string& path, const Caller& caller);
  int set_perms(Transaction* tx, const std::string& path, const PermList& perms, const Caller& caller,
                std::vector<Change>& changes);

  std::size_t node_count() const { return tree_.size(); }
  // The live tree, read only: for checks from outside (the fuzz target compares it before and
  // after each request against what the caller's permissions allowed).
  const Tree& tree() const { return tree_; }

 private:
  class View;
  std::uint64_t next_generation() { return ++generation_counter_; }

  Tree tree_;
  std::uint64_t generation_counter_ = 0;
};

}  // namespace pvback::sim::xs
