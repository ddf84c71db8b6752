// libFuzzer target: the simulated XenStore daemon's wire protocol (sim/xenstore/protocol.hpp, over
// the tree of store.hpp) on whatever byte streams its clients send, as Dom0 and as guests.
//
// The tree starts as a toolstack leaves it for guests 5 and 7 (homes they own, Dom0-owned nodes
// they may only read or may write, a backend directory they may read). Then the input is records,
// each for one of four connections (0, 1: Dom0; 2: guest 5; 3: guest 7):
//   byte 0: connection (bits 0-1) and kind (bits 2-3): 0, 1 a message, 2 a message whose header
//           claims another length, 3 raw bytes, or (bit 4 also set) the connection reopened
//   message: type, req_id, tx_id (one byte each), [claimed len: 4 bytes], payload length (2
//           bytes), payload
//   raw:     length (2 bytes), bytes
// A connection's bytes form one stream, so a lying length desynchronises what follows. The harness
// frames each stream itself and hands the protocol one whole message at a time, so that it can
// check each message's effects against the tree before and after it. Besides crashes:
//  - every output is whole xsd_sockmsg messages within XENSTORE_PAYLOAD_MAX;
//  - a message gets exactly one reply, first, of its type or XS_ERROR, with its req_id and tx_id;
//    other connections get only watch events, each for one of their watches;
//  - a request whose payload is not the strings its type takes is refused;
//  - a partial message is not consumed, an oversized length drops the connection without reading
//    on, and nothing else drops one but the release of its domain;
//  - the tree stays a tree; what a guest's request changed, created or removed, its permissions
//    allowed before (created nodes are its own, within its quota); what it read (outside a
//    transaction) it was allowed to read, and it hears events only for nodes it may read.
#include <algorithm>
#include <charconv>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "base/log.hpp"
#include "sim/xenstore/protocol.hpp"
#include "tests/fuzz/check.hpp"

namespace {

using namespace pvback;
using namespace pvback::sim::xs;

constexpr std::size_t kHeader = sizeof(xsd_sockmsg);
constexpr DomId kGuests[] = {5, 7};
constexpr DomId kUnintroducible = 13;  // its socket cannot be made: INTRODUCE fails with EIO

struct Message {
  xsd_sockmsg header{};
  std::string payload;
};

class Input {
 public:
  Input(const std::uint8_t* data, std::size_t size) : data_(data), size_(size) {}
  bool empty() const { return size_ == 0; }
  std::uint8_t byte() {
    const std::string_view b = take(1);
    return b.empty() ? 0 : static_cast<std::uint8_t>(b[0]);
  }
  std::uint32_t le(std::size_t n) {
    std::uint32_t v = 0;
    const std::string_view b = take(n);
    for (std::size_t i = 0; i < b.size(); ++i) v |= std::uint32_t{static_cast<std::uint8_t>(b[i])} << (8 * i);
    return v;
  }
  std::string_view take(std::size_t n) {
    n = std::min(n, size_);
    std::string_view out(reinterpret_cast<const char*>(data_), n);
    data_ += n;
    size_ -= n;
    return out;
  }

 private:
  const std::uint8_t* data_;
  std::size_t size_;
};

// The strings of a payload that must be NUL-terminated strings; nullopt unless it is exactly that.
std::optional<std::vector<std::string>> strings(std::string_view payload) {
  std::vector<std::string> out;
  if (payload.empty()) return out;
  if (payload.back() != '\0') return std::nullopt;
  std::size_t start = 0;
  while (start < payload.size()) {
    const std::size_t nul = payload.find('\0', start);
    out.emplace_back(payload.substr(start, nul - start));
    start = nul + 1;
  }
  return out;
}

std::string parent_of(const std::string& path) {
  const auto slash = path.rfind('/');
  return slash == 0 ? std::string("/") : path.substr(0, slash);
}

std::string child_path(const std::string& parent, const std::string& name) {
  return parent == "/" ? "/" + name : parent + "/" + name;
}

bool below_or_at(const std::string& path, const std::string& watched) {
  if (path == watched) return true;
  if (!path.starts_with('/')) return false;
  return watched == "/" ||
         (path.size() > watched.size() && path.starts_with(watched) && path[watched.size()] == '/');
}

std::size_t owned_by(const Tree& tree, DomId domid) {
  std::size_t n = 0;
  for (const auto& [path, node] : tree) n += node.perms.front().domid == domid;
  return n;
}

// Every node but "/" is listed once by its parent; every listed child exists.
void check_tree(const Tree& tree) {
  CHECK(tree.contains("/"));
  for (const auto& [path, node] : tree) {
    CHECK(!node.perms.empty());
    for (const auto& name : node.children) CHECK(tree.contains(child_path(path, name)));
    if (path == "/") continue;
    const auto parent = tree.find(parent_of(path));
    CHECK(parent != tree.end());
    const std::string name = path.substr(path.rfind('/') + 1);
    CHECK(std::count(parent->second.children.begin(), parent->second.children.end(), name) == 1);
  }
}

// How many strings a request's payload holds, for the types that take a fixed number.
std::optional<std::size_t> arity(std::uint32_t type) {
  switch (type) {
    case XS_READ: case XS_MKDIR: case XS_RM: case XS_DIRECTORY: case XS_GET_PERMS:
    case XS_TRANSACTION_END: case XS_GET_DOMAIN_PATH: case XS_IS_DOMAIN_INTRODUCED: case XS_RELEASE:
      return 1;
    case XS_DIRECTORY_PART: case XS_WATCH: case XS_UNWATCH:
      return 2;
    case XS_INTRODUCE:
      return 3;
    default:
      return std::nullopt;
  }
}

bool is_error_name(std::string_view payload) {
  for (const auto& entry : xsd_errors)
    if (payload == std::string(entry.errstring) + '\0') return true;
  return false;
}

std::optional<unsigned> number(std::string_view s) {
  unsigned v = 0;
  const auto [ptr, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
  if (s.empty() || ec != std::errc() || ptr != s.data() + s.size()) return std::nullopt;
  return v;
}

bool is_decimal(std::string_view s) {
  return !s.empty() && s.size() <= 10 && s.find_first_not_of("0123456789") == std::string_view::npos;
}

struct Client {
  Caller caller;
  std::unique_ptr<Session> session;  // null once closed
  std::string pending;               // sent, not yet consumed
};

class Harness {
 public:
  Harness() : protocol_({[](DomId domid) { return domid == kUnintroducible ? EIO : 0; }, [](DomId) {}}) {
    clients_[0].caller = clients_[1].caller = Caller{0, true};
    clients_[2].caller = Caller{kGuests[0], false};
    clients_[3].caller = Caller{kGuests[1], false};
    open(clients_[0]);
    open(clients_[1]);
    toolstack_setup();
    open(clients_[2]);
    open(clients_[3]);
  }

  void run(Input& in) {
    while (!in.empty()) {
      const std::uint8_t op = in.byte();
      Client& client = clients_[op & 3];
      const unsigned kind = (op >> 2) & 3;
      if (kind == 3 && (op & 0x10)) {
        close(client);
        open(client);
        continue;
      }
      std::string bytes;
      if (kind == 3) {
        bytes = in.take(in.le(2));
      } else {
        xsd_sockmsg header{};
        const std::uint8_t type = in.byte();
        header.type = type == 0xff ? 0xffffffffu : type >= 0xf0 ? 0x10000u * type : type % (XS_TYPE_COUNT + 2);
        header.req_id = in.byte() * 0x01010101u;
        header.tx_id = in.byte();
        const std::uint32_t claimed = kind == 2 ? in.le(4) : 0;
        const std::string_view payload = in.take(in.le(2));
        header.len = static_cast<std::uint32_t>(payload.size());
        // Mostly near the truth (a short or long frame), sometimes anything.
        if (kind == 2) header.len = (claimed & 0x80000000u) ? claimed : claimed % (payload.size() + 17);
        bytes.append(reinterpret_cast<const char*>(&header), kHeader);
        bytes.append(payload);
      }
      send(client, bytes);
    }
  }

 private:
  void open(Client& client) {
    if (!client.caller.privileged && !protocol_.introduced(client.caller.domid)) return;  // no socket
    client.session = std::make_unique<Session>();
    client.session->caller = client.caller;
    client.pending.clear();
    protocol_.attach(*client.session);
  }

  void close(Client& client) {
    if (!client.session) return;
    protocol_.detach(*client.session);
    client.session.reset();
  }

  // What xl does before a guest starts, through Dom0's first connection.
  void toolstack_setup() {
    auto request = [&](std::uint32_t type, std::vector<std::string> args, std::string tail = {}) {
      std::string payload;
      for (const auto& a : args) payload += a + '\0';
      payload += tail;
      const xsd_sockmsg header{type, 1, 0, static_cast<std::uint32_t>(payload.size())};
      protocol_.handle_message(*clients_[0].session, header, payload);
      const auto out = take_output(*clients_[0].session);
      CHECK(!out.empty() && out.front().header.type == type);
      clients_[1].session->out.clear();
    };
    for (const DomId g : kGuests) {
      const std::string id = std::to_string(g), home = domain_path(g), backend = "/local/domain/0/backend/vbd/" + id;
      request(XS_INTRODUCE, {id, "4660", "7"});
      request(XS_MKDIR, {home});
      request(XS_SET_PERMS, {home, "n" + id});
      request(XS_WRITE, {home + "/name"}, "guest-" + id);
      request(XS_SET_PERMS, {home + "/name", "n0", "r" + id});
      request(XS_WRITE, {home + "/control/shutdown"}, "");
      request(XS_SET_PERMS, {home + "/control/shutdown", "n0", "b" + id});
      request(XS_WRITE, {home + "/device/vbd/51712/backend"}, backend + "/51712");
      request(XS_MKDIR, {home + "/data"});
      request(XS_WRITE, {backend + "/51712/state"}, "4");
      request(XS_SET_PERMS, {backend, "n0", "r" + id});
      request(XS_SET_PERMS, {backend + "/51712", "n0", "r" + id});
      request(XS_SET_PERMS, {backend + "/51712/state", "n0", "r" + id});
    }
  }

  // Splits a session's output into whole messages within the payload limit, and empties it (the
  // client read everything).
  static std::vector<Message> take_output(Session& session) {
    std::vector<Message> out;
    std::string_view rest(session.out);
    rest.remove_prefix(session.out_sent);
    while (!rest.empty()) {
      CHECK(rest.size() >= kHeader);
      Message m;
      std::memcpy(&m.header, rest.data(), kHeader);
      CHECK(m.header.len <= XENSTORE_PAYLOAD_MAX);
      CHECK(rest.size() - kHeader >= m.header.len);
      m.payload = rest.substr(kHeader, m.header.len);
      rest.remove_prefix(kHeader + m.header.len);
      out.push_back(std::move(m));
    }
    session.out.clear();
    session.out_sent = 0;
    return out;
  }

  // Feeds a connection's new bytes to the protocol one whole message at a time.
  void send(Client& client, std::string_view bytes) {
    if (!client.session) return;  // closed: the bytes go nowhere
    client.pending.append(bytes);
    for (;;) {
      Session& session = *client.session;
      if (client.pending.size() < kHeader) {
        CHECK(protocol_.consume(session, client.pending) == 0);
        CHECK(session.out.empty() && !session.dead);
        return;
      }
      Message m;
      std::memcpy(&m.header, client.pending.data(), kHeader);
      if (m.header.len > XENSTORE_PAYLOAD_MAX) {
        // Nothing after an unframeable length can be read as a message: the connection goes.
        CHECK(protocol_.consume(session, client.pending) == 0);
        CHECK(session.dead && session.out.empty());
        close(client);
        return;
      }
      if (client.pending.size() < kHeader + m.header.len) {
        CHECK(protocol_.consume(session, client.pending) == 0);  // waits for the rest
        CHECK(session.out.empty() && !session.dead);
        return;
      }
      m.payload = client.pending.substr(kHeader, m.header.len);
      // The tree before the message, for what a guest's request did and for the events guests
      // hear. Copying it for every message of Dom0 too would slow the target down by half.
      const bool guests_listen = std::any_of(std::begin(clients_), std::end(clients_), [](const Client& c) {
        return c.session && !c.caller.privileged && !c.session->watches.empty();
      });
      std::optional<Tree> before;
      if (!client.caller.privileged || guests_listen) before = protocol_.store().tree();
      const std::string_view whole = std::string_view(client.pending).substr(0, kHeader + m.header.len);
      CHECK(protocol_.consume(session, whole) == whole.size());
      client.pending.erase(0, whole.size());
      check_effects(client, m, before);
      if (!client.session) return;
    }
  }

  void check_effects(Client& requester, const Message& request, const std::optional<Tree>& before) {
    const Tree& after = protocol_.store().tree();
    check_tree(after);
    const Caller& caller = requester.caller;
    const std::vector<Message> out = take_output(*requester.session);
    CHECK(!out.empty());  // nothing was queued before: there is room for the reply
    const Message& reply = out.front();
    CHECK(reply.header.req_id == request.header.req_id && reply.header.tx_id == request.header.tx_id);
    const bool ok = reply.header.type != XS_ERROR;
    check_reply(requester, request, reply);

    const auto args = strings(request.payload);
    const bool committed = ok && request.header.type == XS_TRANSACTION_END && args && args->at(0) == "T";
    const bool watch_added = ok && request.header.type == XS_WATCH;
    bool initial_event_seen = false;
    std::size_t queued[4] = {};  // bytes each connection got
    for (auto& client : clients_) {
      if (!client.session) continue;
      const std::vector<Message> events =
          &client == &requester ? std::vector<Message>(out.begin() + 1, out.end()) : take_output(*client.session);
      std::size_t& bytes = queued[&client - clients_];
      for (const Message& m : &client == &requester ? out : events) bytes += kHeader + m.payload.size();
      for (const Message& event : events) {
        CHECK(event.header.type == XS_WATCH_EVENT && event.header.req_id == 0 && event.header.tx_id == 0);
        const auto parts = strings(event.payload);
        CHECK(parts && parts->size() == 2);
        const std::string& path = parts->at(0);
        const std::string& token = parts->at(1);
        if (watch_added && &client == &requester && !initial_event_seen && path == args->at(0) &&
            token == args->at(1)) {
          initial_event_seen = true;  // a new watch fires once whatever the node's permissions
          continue;
        }
        const std::string abs = check_event_for_a_watch(*client.session, path, token);
        if (client.caller.privileged) continue;
        // A guest hears about a node only if it may read it (the special "@" events are Dom0's).
        CHECK(abs.starts_with('/'));
        if (committed) continue;  // a transaction's changes carry the permissions of their time
        const auto now = after.find(abs);
        if (now != after.end()) {
          CHECK(may_read(now->second.perms, client.caller));
        } else {
          CHECK(before.has_value());
          const auto was = before->find(abs);
          CHECK(was != before->end() && may_read(was->second.perms, client.caller));
        }
      }
    }
    if (watch_added) CHECK(initial_event_seen);

    // Only the release of its domain drops a connection, or output past kMaxQueuedOutput (what
    // was refused is at most one more message). The release drops every connection of the domain.
    const bool released = ok && request.header.type == XS_RELEASE;
    for (auto& client : clients_) {
      if (!client.session) continue;
      const bool of_released = released && !client.caller.privileged && number(args->at(0)) == client.caller.domid;
      const bool overflowed = queued[&client - clients_] + kHeader + XENSTORE_PAYLOAD_MAX > kMaxQueuedOutput;
      if (of_released) CHECK(client.session->dead);
      if (client.session->dead) {
        CHECK(of_released || overflowed);
        close(client);
      }
    }

    if (!caller.privileged) check_guest_effects(caller, request, reply, before.value(), after);
  }

  void check_reply(const Client& requester, const Message& request, const Message& reply) {
    const std::uint32_t type = request.header.type;
    if (reply.header.type == XS_ERROR) {
      CHECK(is_error_name(reply.payload));
      return;
    }
    CHECK(reply.header.type == type);
    // Accepted: the payload was what the type takes.
    const auto args = strings(request.payload);
    if (type == XS_WRITE) {
      CHECK(request.payload.find('\0') != std::string::npos);
    } else if (type == XS_SET_PERMS) {
      CHECK(args && args->size() >= 2);
    } else if (const auto n = arity(type)) {
      CHECK(args && args->size() == *n);
    } else {
      CHECK(type == XS_TRANSACTION_START || type == XS_RESET_WATCHES);  // they take no arguments
    }
    CHECK(requester.caller.privileged || (type != XS_INTRODUCE && type != XS_RELEASE));
    switch (type) {
      case XS_WRITE: case XS_MKDIR: case XS_RM: case XS_SET_PERMS: case XS_WATCH: case XS_UNWATCH:
      case XS_TRANSACTION_END: case XS_INTRODUCE: case XS_RELEASE: case XS_RESET_WATCHES:
        CHECK(reply.payload == std::string("OK", 3));
        break;
      case XS_TRANSACTION_START: {
        CHECK(request.header.tx_id == 0);
        const auto id = strings(reply.payload);
        CHECK(id && id->size() == 1 && is_decimal(id->at(0)));
        const auto value = std::stoull(id->at(0));
        CHECK(value != 0 && value <= UINT32_MAX);
        CHECK(requester.session->transactions.contains(static_cast<std::uint32_t>(value)));
        break;
      }
      case XS_GET_DOMAIN_PATH:
        CHECK(reply.payload.starts_with("/local/domain/") && reply.payload.back() == '\0');
        CHECK(is_decimal(std::string_view(reply.payload).substr(14, reply.payload.size() - 15)));
        break;
      case XS_IS_DOMAIN_INTRODUCED:
        CHECK(reply.payload == std::string("T", 2) || reply.payload == std::string("F", 2));
        break;
      case XS_DIRECTORY: case XS_GET_PERMS:
        CHECK(reply.payload.empty() || reply.payload.back() == '\0');
        break;
      case XS_DIRECTORY_PART:
        CHECK(!reply.payload.empty() && reply.payload.back() == '\0');
        break;
      default:
        break;
    }
  }

  // The absolute path of an event, which must be for one of the session's watches.
  static std::string check_event_for_a_watch(const Session& session, const std::string& path,
                                             const std::string& token) {
    for (const Watch& w : session.watches) {
      if (w.token != token) continue;
      const std::string abs = w.relative ? domain_path(session.caller.domid) + "/" + path : path;
      if (below_or_at(abs, w.abs_path)) return abs;
    }
    CHECK(false && "a watch event for no watch of the connection");
    return {};
  }

  void check_guest_effects(const Caller& guest, const Message& request, const Message& reply, const Tree& before,
                           const Tree& after) {
    const DomId g = guest.domid;
    const std::uint32_t type = request.header.type;
    // Changed and created nodes.
    for (const auto& [path, node] : after) {
      const auto was = before.find(path);
      if (was == before.end()) {
        CHECK(node.perms.front().domid == g);  // its own, charged to its quota
        std::string p = parent_of(path);
        while (!before.contains(p)) p = parent_of(p);
        CHECK(may_write(before.at(p).perms, guest));  // the nearest existing ancestor let it
        continue;
      }
      const Node& old = was->second;
      if (node.value == old.value && node.perms == old.perms) continue;
      CHECK(may_write(old.perms, guest));
      if (node.perms != old.perms) {
        // Changed by SET_PERMS, which only the owner may do and which keeps the owner; or, in a
        // transaction, removed and created again (then its own).
        CHECK(node.perms.front().domid == g);
        if (type == XS_SET_PERMS) CHECK(old.perms.front().domid == g);
      }
    }
    // Removed nodes: below (or at) a node it could write, removed with its subtree.
    for (const auto& [path, node] : before) {
      if (after.contains(path)) continue;
      std::string top = path;
      while (!after.contains(parent_of(top))) top = parent_of(top);
      CHECK(top != "/" && may_write(before.at(top).perms, guest));
    }
    const std::size_t owned = owned_by(after, g);
    if (owned > owned_by(before, g)) CHECK(owned <= kMaxNodesPerGuest);

    // What it read outside a transaction, it may read, and it is what the tree holds.
    if (reply.header.type == XS_ERROR || request.header.tx_id != 0) return;
    if (type != XS_READ && type != XS_DIRECTORY && type != XS_DIRECTORY_PART && type != XS_GET_PERMS) return;
    const auto args = strings(request.payload);
    const auto path = canonical_path(args->at(0), g);
    CHECK(path.has_value());
    const auto node = before.find(*path);
    CHECK(node != before.end() && may_read(node->second.perms, guest));
    if (type == XS_READ) CHECK(reply.payload == node->second.value);
    if (type == XS_GET_PERMS) {
      std::string text;
      for (const auto& perm : node->second.perms) text += format_perm(perm) + '\0';
      CHECK(reply.payload == text);
    }
    if (type == XS_DIRECTORY) {
      std::string names;
      for (const auto& name : node->second.children) names += name + '\0';
      CHECK(reply.payload == names);
    }
  }

  Protocol protocol_;
  Client clients_[4];
};

}  // namespace

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  pvback::log::set_min_level(pvback::log::Level::Error);  // disconnections are expected here
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  Harness harness;
  Input in(data, size);
  harness.run(in);
  return 0;
}
