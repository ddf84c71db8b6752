#include "sim/xenstore/store.hpp"

#include <errno.h>
#include <stdint.h>
#include <xen/io/xs_wire.h>

#include <algorithm>
#include <charconv>

namespace pvback::sim::xs {

std::optional<Perm> parse_perm(std::string_view text) {
  if (text.size() < 2) return std::nullopt;
  const char kind = text[0];
  if (kind != 'n' && kind != 'r' && kind != 'w' && kind != 'b') return std::nullopt;
  unsigned value = 0;
  const char* end = text.data() + text.size();
  auto [ptr, ec] = std::from_chars(text.data() + 1, end, value);
  if (ec != std::errc() || ptr != end || value > 0xffff) return std::nullopt;
  return Perm{static_cast<DomId>(value), kind};
}

std::string format_perm(const Perm& perm) { return perm.kind + std::to_string(perm.domid); }

namespace {

char access_of(const PermList& perms, DomId domid) {
  if (perms.empty()) return 'n';
  if (perms.front().domid == domid) return 'b';  // the owner may do anything
  for (std::size_t i = 1; i < perms.size(); ++i)
    if (perms[i].domid == domid) return perms[i].kind;
  return perms.front().kind;
}

bool valid_path_char(char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-' ||
         c == '/' || c == '_' || c == '@';
}

std::string parent_of(const std::string& path) {
  const auto slash = path.rfind('/');
  return slash == 0 ? std::string("/") : path.substr(0, slash);
}

std::string name_of(const std::string& path) { return path.substr(path.rfind('/') + 1); }

std::string child_path(const std::string& parent, const std::string& name) {
  return parent == "/" ? "/" + name : parent + "/" + name;
}

bool owned_by(Tree::const_iterator it, const Tree& tree, DomId domid) {
  return it != tree.end() && it->second.perms.front().domid == domid;
}

// A linear scan: guests create nodes rarely, and the simulator's trees are small.
std::size_t count_owned_by(const Tree& tree, DomId domid) {
  return static_cast<std::size_t>(std::count_if(tree.begin(), tree.end(), [domid](const auto& entry) {
    return entry.second.perms.front().domid == domid;
  }));
}

}  // namespace

bool may_read(const PermList& perms, const Caller& caller) {
  if (caller.privileged) return true;
  const char access = access_of(perms, caller.domid);
  return access == 'r' || access == 'b';
}

bool may_write(const PermList& perms, const Caller& caller) {
  if (caller.privileged) return true;
  const char access = access_of(perms, caller.domid);
  return access == 'w' || access == 'b';
}

std::string domain_path(DomId domid) { return "/local/domain/" + std::to_string(domid); }

std::expected<std::string, int> canonical_path(std::string_view given, DomId domid) {
  if (given.empty()) return std::unexpected(EINVAL);
  std::string path;
  if (given.front() == '/') {
    path = given;
  } else {
    if (given.size() > XENSTORE_REL_PATH_MAX) return std::unexpected(EINVAL);
    path = domain_path(domid) + "/" + std::string(given);
  }
  if (path.size() > XENSTORE_ABS_PATH_MAX) return std::unexpected(EINVAL);
  if (!std::all_of(path.begin(), path.end(), valid_path_char)) return std::unexpected(EINVAL);
  if (path.find("//") != std::string::npos) return std::unexpected(EINVAL);
  if (path.size() > 1 && path.back() == '/') return std::unexpected(EINVAL);
  return path;
}

// Access to the tree an operation works on (live or a transaction's copy), recording what a
// transaction looked at and changed.
class Store::View {
 public:
  View(Store& store, Transaction* tx) : store_(store), tx_(tx), tree_(tx ? tx->tree_ : store.tree_) {}

  Node* find(const std::string& path) {
    auto it = tree_.find(path);
    Node* node = it == tree_.end() ? nullptr : &it->second;
    if (tx_ && !tx_->base_generation_.contains(path))
      tx_->base_generation_.emplace(path, node ? std::optional(node->generation) : std::nullopt);
    return node;
  }

  // Call before changing or erasing `path`'s node.
  void touch(const std::string& path) {
    find(path);  // a node changed by the transaction is also a node it depends on
    if (tx_) tx_->modified_.insert(path);
  }

  void bump(const std::string& path, Node& node) {
    touch(path);
    node.generation = store_.next_generation();
  }

  Node& create(const std::string& path, Node node) {
    touch(path);
    node.generation = store_.next_generation();
    return tree_.insert_or_assign(path, std::move(node)).first->second;
  }

  void erase(const std::string& path) {
    touch(path);
    tree_.erase(path);
  }

  std::vector<Change>& changes(std::vector<Change>& direct) { return tx_ ? tx_->changes_ : direct; }

  // An unprivileged transaction that looked at too many nodes already (kMaxTransactionNodesGuest).
  // Checked before each operation, so one operation may go past the limit by the nodes it touches.
  bool transaction_full(const Caller& caller) const {
    return tx_ && !caller.privileged && tx_->base_generation_.size() >= kMaxTransactionNodesGuest;
  }

  std::size_t nodes_owned_by(DomId domid) const { return count_owned_by(tree_, domid); }

 private:
  Store& store_;
  Transaction* tx_;
  Tree& tree_;
};

Store::Store() {
  const PermList dom0_only{{0, 'n'}};
  for (const char* path : {"/", "/local", "/local/domain", "/tool", "/local/domain/0"})
    tree_[path] = Node{.value = {}, .perms = dom0_only, .children = {}, .generation = next_generation()};
  tree_["/"].children = {"local", "tool"};
  tree_["/local"].children = {"domain"};
  tree_["/local/domain"].children = {"0"};
}

std::unique_ptr<Transaction> Store::begin() const {
  auto tx = std::make_unique<Transaction>();
  tx->tree_ = tree_;
  return tx;
}

int Store::commit(Transaction& tx, const Caller& caller, std::vector<Change>& changes) {
  for (const auto& [path, generation] : tx.base_generation_) {
    auto it = tree_.find(path);
    const std::optional<std::uint64_t> live = it == tree_.end() ? std::nullopt : std::optional(it->second.generation);
    if (live != generation) return EAGAIN;
  }
  if (!caller.privileged) {
    // How many nodes the caller gains, against the live tree as it is now.
    std::ptrdiff_t gained = 0;
    for (const auto& path : tx.modified_)
      gained += owned_by(tx.tree_.find(path), tx.tree_, caller.domid) - owned_by(tree_.find(path), tree_, caller.domid);
    if (gained > 0 && count_owned_by(tree_, caller.domid) + static_cast<std::size_t>(gained) > kMaxNodesPerGuest)
      return ENOSPC;
  }
  for (const auto& path : tx.modified_) {
    auto it = tx.tree_.find(path);
    if (it == tx.tree_.end()) {
      tree_.erase(path);
    } else {
      Node& node = tree_[path] = std::move(it->second);
      node.generation = next_generation();
    }
  }
  changes.insert(changes.end(), std::make_move_iterator(tx.changes_.begin()),
                 std::make_move_iterator(tx.changes_.end()));
  tx.changes_.clear();
  return 0;
}

std::expected<std::string, int> Store::read(Transaction* tx, const std::string& path, const Caller& caller) {
  View view(*this, tx);
  if (view.transaction_full(caller)) return std::unexpected(ENOSPC);
  Node* node = view.find(path);
  if (!node) return std::unexpected(ENOENT);
  if (!may_read(node->perms, caller)) return std::unexpected(EACCES);
  return node->value;
}

namespace {

// Finds `path`, creating it and missing ancestors. New nodes inherit their parent's permissions;
// an unprivileged creator becomes the owner. Creation needs write access to the nearest existing
// ancestor.
template <typename ViewT>
std::expected<std::pair<Node*, bool>, int> find_or_create(ViewT& view, const std::string& path, const Caller& caller) {
  if (Node* node = view.find(path)) return std::pair{node, false};
  std::vector<std::string> missing{path};
  Node* ancestor = nullptr;
  for (std::string p = parent_of(path);; p = parent_of(p)) {
    ancestor = view.find(p);
    if (ancestor) break;
    missing.push_back(p);
  }
  if (!may_write(ancestor->perms, caller)) return std::unexpected(EACCES);
  if (!caller.privileged && view.nodes_owned_by(caller.domid) + missing.size() > kMaxNodesPerGuest)
    return std::unexpected(ENOSPC);
  Node* node = nullptr;
  for (auto it = missing.rbegin(); it != missing.rend(); ++it) {
    const std::string parent_path = parent_of(*it);
    Node* parent = view.find(parent_path);
    PermList perms = parent->perms;
    if (!caller.privileged) perms.front().domid = caller.domid;
    parent->children.push_back(name_of(*it));
    view.bump(parent_path, *parent);
    node = &view.create(*it, Node{.value = {}, .perms = std::move(perms), .children = {}, .generation = 0});
  }
  return std::pair{node, true};
}

}  // namespace

int Store::write(Transaction* tx, const std::string& path, std::string_view value, const Caller& caller,
                 std::vector<Change>& changes) {
  View view(*this, tx);
  if (view.transaction_full(caller)) return ENOSPC;
  Node* existing = view.find(path);
  if (existing && !may_write(existing->perms, caller)) return EACCES;
  auto found = find_or_create(view, path, caller);
  if (!found) return found.error();
  Node& node = *found->first;
  node.value = value;
  view.bump(path, node);
  view.changes(changes).push_back(Change{path, false, node.perms});
  return 0;
}

int Store::mkdir(Transaction* tx, const std::string& path, const Caller& caller, std::vector<Change>& changes) {
  View view(*this, tx);
  if (view.transaction_full(caller)) return ENOSPC;
  if (Node* existing = view.find(path)) return may_write(existing->perms, caller) ? 0 : EACCES;
  auto found = find_or_create(view, path, caller);
  if (!found) return found.error();
  view.changes(changes).push_back(Change{path, false, found->first->perms});
  return 0;
}

int Store::rm(Transaction* tx, const std::string& path, const Caller& caller, std::vector<Change>& changes) {
  View view(*this, tx);
  if (view.transaction_full(caller)) return ENOSPC;
  Node* node = view.find(path);
  if (!node) {
    // Removing what is already gone is fine as long as the parent exists (as in cxenstored).
    if (path == "/") return EINVAL;
    return view.find(parent_of(path)) ? 0 : ENOENT;
  }
  if (path == "/") return EINVAL;
  if (!may_write(node->perms, caller)) return EACCES;

  auto& sink = view.changes(changes);
  sink.push_back(Change{path, false, node->perms});
  // Collect the subtree before erasing anything: watches on removed descendants hear about
  // exactly their own node.
  std::vector<std::string> subtree{path};
  for (std::size_t i = 0; i < subtree.size(); ++i) {
    Node* current = view.find(subtree[i]);
    if (!current) continue;
    if (i > 0) sink.push_back(Change{subtree[i], true, current->perms});
    for (const auto& name : current->children) subtree.push_back(child_path(subtree[i], name));
  }
  for (const auto& p : subtree) view.erase(p);

  const std::string parent_path = parent_of(path);
  Node* parent = view.find(parent_path);
  const std::string name = name_of(path);
  std::erase(parent->children, name);
  view.bump(parent_path, *parent);
  return 0;
}

std::expected<Store::ChildList, int> Store::children(Transaction* tx, const std::string& path, const Caller& caller) {
  View view(*this, tx);
  if (view.transaction_full(caller)) return std::unexpected(ENOSPC);
  Node* node = view.find(path);
  if (!node) return std::unexpected(ENOENT);
  if (!may_read(node->perms, caller)) return std::unexpected(EACCES);
  ChildList list{node->generation, {}};
  for (const auto& name : node->children) {
    list.names += name;
    list.names.push_back('\0');
  }
  return list;
}

std::expected<PermList, int> Store::get_perms(Transaction* tx, const std::string& path, const Caller& caller) {
  View view(*this, tx);
  if (view.transaction_full(caller)) return std::unexpected(ENOSPC);
  Node* node = view.find(path);
  if (!node) return std::unexpected(ENOENT);
  if (!may_read(node->perms, caller)) return std::unexpected(EACCES);
  return node->perms;
}

int Store::set_perms(Transaction* tx, const std::string& path, const PermList& perms, const Caller& caller,
                     std::vector<Change>& changes) {
  if (perms.empty()) return EINVAL;
  View view(*this, tx);
  if (view.transaction_full(caller)) return ENOSPC;
  Node* node = view.find(path);
  if (!node) return ENOENT;
  if (!caller.privileged && node->perms.front().domid != caller.domid) return EACCES;
  // Unprivileged domains may not change the owner (as cxenstored): giving nodes away would
  // escape the per-guest node quota and charge other domains for them.
  if (!caller.privileged && perms.front().domid != node->perms.front().domid) return EPERM;
  node->perms = perms;
  view.bump(path, *node);
  view.changes(changes).push_back(Change{path, false, node->perms});
  return 0;
}

}  // namespace pvback::sim::xs
