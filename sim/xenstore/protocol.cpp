#include "sim/xenstore/protocol.hpp"

#include <charconv>
#include <cstring>
#include <expected>
#include <optional>

#include "base/log.hpp"

namespace pvback::sim::xs {

namespace {

const char* error_name(int err) {
  for (const auto& entry : xsd_errors)
    if (entry.errnum == err) return entry.errstring;
  return "EINVAL";
}

std::optional<unsigned> parse_number(std::string_view text, unsigned max) {
  unsigned value = 0;
  const char* end = text.data() + text.size();
  auto [ptr, ec] = std::from_chars(text.data(), end, value);
  if (text.empty() || ec != std::errc() || ptr != end || value > max) return std::nullopt;
  return value;
}

// Splits a payload of NUL-terminated strings. Fails unless the payload is exactly that.
std::optional<std::vector<std::string_view>> split_strings(std::string_view payload) {
  std::vector<std::string_view> out;
  if (payload.empty()) return out;
  if (payload.back() != '\0') return std::nullopt;
  std::size_t start = 0;
  while (start < payload.size()) {
    const std::size_t nul = payload.find('\0', start);
    out.push_back(payload.substr(start, nul - start));
    start = nul + 1;
  }
  return out;
}

// The transaction a request names, or nullptr for tx_id 0. Unknown ids are ENOENT.
std::expected<Transaction*, int> transaction_of(Session& conn, std::uint32_t tx_id) {
  if (tx_id == 0) return nullptr;
  auto it = conn.transactions.find(tx_id);
  if (it == conn.transactions.end()) return std::unexpected(ENOENT);
  return it->second.get();
}

// "<generation>\0" then whole names from byte `offset` of the child list while they fit; an
// extra "\0" marks the end of the list.
std::string directory_part(const Store::ChildList& list, std::size_t offset) {
  std::string out = std::to_string(list.generation);
  out.push_back('\0');
  if (offset >= list.names.size()) {
    out.push_back('\0');
    return out;
  }
  const std::size_t room = XENSTORE_PAYLOAD_MAX - out.size() - 1;
  std::size_t end = offset;
  while (end < list.names.size()) {
    const std::size_t next = list.names.find('\0', end) + 1;
    if (next - offset > room) break;
    end = next;
  }
  out.append(list.names, offset, end - offset);
  if (end == list.names.size()) out.push_back('\0');
  return out;
}

bool watch_matches(const Watch& watch, const Change& change) {
  if (watch.abs_path == change.path) return true;
  if (change.exact_only || change.path.front() != '/') return false;
  if (watch.abs_path == "/") return true;
  return change.path.size() > watch.abs_path.size() && change.path.starts_with(watch.abs_path) &&
         change.path[watch.abs_path.size()] == '/';
}

}  // namespace

std::size_t Protocol::consume(Session& conn, std::string_view input) {
  constexpr std::size_t kHeader = sizeof(xsd_sockmsg);
  std::size_t consumed = 0;
  while (!conn.dead && conn.queued() < kPauseInputAt) {
    const std::size_t available = input.size() - consumed;
    if (available < kHeader) break;
    xsd_sockmsg header;
    std::memcpy(&header, input.data() + consumed, kHeader);
    if (header.len > XENSTORE_PAYLOAD_MAX) {
      PVBACK_LOG_RATELIMITED(Warning, "xenstore: dom%u sent a %u-byte payload, disconnecting",
                             conn.caller.domid, header.len);
      conn.dead = true;
      break;
    }
    if (available < kHeader + header.len) break;
    // A copy of exactly the payload: reading past it is then a sanitizer report (in the fuzz
    // target), not a silent read of the next message.
    const std::string payload(input.substr(consumed + kHeader, header.len));
    consumed += kHeader + header.len;
    handle_message(conn, header, payload);
  }
  return consumed;
}

void Protocol::handle_message(Session& conn, const xsd_sockmsg& request, std::string_view payload) {
  switch (request.type) {
    case XS_READ:
    case XS_WRITE:
    case XS_MKDIR:
    case XS_RM:
    case XS_DIRECTORY:
    case XS_DIRECTORY_PART:
    case XS_GET_PERMS:
    case XS_SET_PERMS:
      handle_node_request(conn, request, payload);
      return;
    case XS_WATCH:
      handle_watch(conn, request, payload);
      return;
    case XS_UNWATCH:
      handle_unwatch(conn, request, payload);
      return;
    case XS_TRANSACTION_START:
      handle_transaction_start(conn, request);
      return;
    case XS_TRANSACTION_END:
      handle_transaction_end(conn, request, payload);
      return;
    case XS_GET_DOMAIN_PATH:
    case XS_IS_DOMAIN_INTRODUCED:
    case XS_INTRODUCE:
    case XS_RELEASE:
      handle_domain_request(conn, request, payload);
      return;
    case XS_RESET_WATCHES:
      conn.watches.clear();
      conn.transactions.clear();
      reply_ok(conn, request);
      return;
    case XS_CONTROL:
    case XS_RESUME:
    case XS_SET_TARGET:
      reply_error(conn, request, ENOSYS);
      return;
    default:
      reply_error(conn, request, EINVAL);
      return;
  }
}

void Protocol::handle_node_request(Session& conn, const xsd_sockmsg& request, std::string_view payload) {
  auto tx = transaction_of(conn, request.tx_id);
  if (!tx) return reply_error(conn, request, tx.error());

  // WRITE carries the value after the path's NUL, unterminated; the others are string lists.
  std::vector<std::string_view> args;
  std::string_view value;
  if (request.type == XS_WRITE) {
    const std::size_t nul = payload.find('\0');
    if (nul == std::string::npos) return reply_error(conn, request, EINVAL);
    args.push_back(payload.substr(0, nul));
    value = payload.substr(nul + 1);
  } else {
    auto split = split_strings(payload);
    if (!split || split->empty()) return reply_error(conn, request, EINVAL);
    args = std::move(*split);
  }
  const std::size_t expected_args = request.type == XS_DIRECTORY_PART ? 2 : 1;
  if (request.type == XS_SET_PERMS ? args.size() < 2 : args.size() != expected_args)
    return reply_error(conn, request, EINVAL);

  auto path = canonical_path(args[0], conn.caller.domid);
  if (!path) return reply_error(conn, request, path.error());

  std::vector<Change> changes;
  switch (request.type) {
    case XS_READ: {
      auto result = store_.read(*tx, *path, conn.caller);
      if (!result) return reply_error(conn, request, result.error());
      return reply(conn, request, *result);
    }
    case XS_WRITE:
      reply_status(conn, request, store_.write(*tx, *path, value, conn.caller, changes));
      break;
    case XS_MKDIR:
      reply_status(conn, request, store_.mkdir(*tx, *path, conn.caller, changes));
      break;
    case XS_RM:
      reply_status(conn, request, store_.rm(*tx, *path, conn.caller, changes));
      break;
    case XS_DIRECTORY: {
      auto list = store_.children(*tx, *path, conn.caller);
      if (!list) return reply_error(conn, request, list.error());
      // libxenstore falls back to DIRECTORY_PART on E2BIG.
      if (list->names.size() > XENSTORE_PAYLOAD_MAX) return reply_error(conn, request, E2BIG);
      return reply(conn, request, list->names);
    }
    case XS_DIRECTORY_PART: {
      auto offset = parse_number(args[1], UINT32_MAX);
      if (!offset) return reply_error(conn, request, EINVAL);
      auto list = store_.children(*tx, *path, conn.caller);
      if (!list) return reply_error(conn, request, list.error());
      return reply(conn, request, directory_part(*list, *offset));
    }
    case XS_GET_PERMS: {
      auto perms = store_.get_perms(*tx, *path, conn.caller);
      if (!perms) return reply_error(conn, request, perms.error());
      std::string text;
      for (const auto& perm : *perms) {
        text += format_perm(perm);
        text.push_back('\0');
      }
      return reply(conn, request, text);
    }
    case XS_SET_PERMS: {
      PermList perms;
      for (std::size_t i = 1; i < args.size(); ++i) {
        auto perm = parse_perm(args[i]);
        if (!perm) return reply_error(conn, request, EINVAL);
        perms.push_back(*perm);
      }
      reply_status(conn, request, store_.set_perms(*tx, *path, perms, conn.caller, changes));
      break;
    }
  }
  fire(changes);
}

void Protocol::handle_watch(Session& conn, const xsd_sockmsg& request, std::string_view payload) {
  auto args = split_strings(payload);
  if (!args || args->size() != 2) return reply_error(conn, request, EINVAL);
  Watch watch;
  watch.given_path = (*args)[0];
  watch.token = (*args)[1];
  if (watch.given_path.starts_with('@')) {
    if (watch.given_path != "@introduceDomain" && watch.given_path != "@releaseDomain")
      return reply_error(conn, request, EINVAL);
    watch.abs_path = watch.given_path;
  } else {
    auto path = canonical_path(watch.given_path, conn.caller.domid);
    if (!path) return reply_error(conn, request, path.error());
    watch.abs_path = *path;
    watch.relative = !watch.given_path.starts_with('/');
  }
  for (const auto& existing : conn.watches)
    if (existing.abs_path == watch.abs_path && existing.token == watch.token)
      return reply_error(conn, request, EEXIST);
  const std::size_t limit = conn.caller.privileged ? kMaxWatchesDom0 : kMaxWatchesGuest;
  if (conn.watches.size() >= limit) return reply_error(conn, request, E2BIG);
  conn.watches.push_back(std::move(watch));
  reply_ok(conn, request);
  // Every new watch fires once, so the client can read the initial state.
  send_watch_event(conn, conn.watches.back(), conn.watches.back().abs_path);
}

void Protocol::handle_unwatch(Session& conn, const xsd_sockmsg& request, std::string_view payload) {
  auto args = split_strings(payload);
  if (!args || args->size() != 2) return reply_error(conn, request, EINVAL);
  std::string abs_path((*args)[0]);
  if (!abs_path.starts_with('@')) {
    auto path = canonical_path(abs_path, conn.caller.domid);
    if (!path) return reply_error(conn, request, path.error());
    abs_path = *path;
  }
  const auto removed = std::erase_if(conn.watches, [&](const Watch& watch) {
    return watch.abs_path == abs_path && watch.token == (*args)[1];
  });
  reply_status(conn, request, removed ? 0 : ENOENT);
}

void Protocol::handle_transaction_start(Session& conn, const xsd_sockmsg& request) {
  if (request.tx_id != 0) return reply_error(conn, request, EBUSY);
  const std::size_t limit = conn.caller.privileged ? kMaxTransactionsDom0 : kMaxTransactionsGuest;
  if (conn.transactions.size() >= limit) return reply_error(conn, request, ENOSPC);
  std::uint32_t id;
  do {
    id = next_transaction_id_++;
  } while (id == 0 || conn.transactions.contains(id));
  conn.transactions.emplace(id, store_.begin());
  reply_string(conn, request, std::to_string(id));
}

void Protocol::handle_transaction_end(Session& conn, const xsd_sockmsg& request, std::string_view payload) {
  auto args = split_strings(payload);
  if (!args || args->size() != 1 || ((*args)[0] != "T" && (*args)[0] != "F"))
    return reply_error(conn, request, EINVAL);
  auto it = conn.transactions.find(request.tx_id);
  if (request.tx_id == 0 || it == conn.transactions.end()) return reply_error(conn, request, ENOENT);
  std::unique_ptr<Transaction> tx = std::move(it->second);
  conn.transactions.erase(it);
  if ((*args)[0] == "F") return reply_ok(conn, request);
  std::vector<Change> changes;
  const int err = store_.commit(*tx, conn.caller, changes);
  reply_status(conn, request, err);
  fire(changes);
}

void Protocol::handle_domain_request(Session& conn, const xsd_sockmsg& request, std::string_view payload) {
  auto args = split_strings(payload);
  const std::size_t expected_args = request.type == XS_INTRODUCE ? 3 : 1;
  if (!args || args->size() != expected_args) return reply_error(conn, request, EINVAL);
  auto domid = parse_number((*args)[0], kFirstReservedDomId - 1);
  if (!domid) return reply_error(conn, request, EINVAL);
  switch (request.type) {
    case XS_GET_DOMAIN_PATH:
      return reply_string(conn, request, domain_path(static_cast<DomId>(*domid)));
    case XS_IS_DOMAIN_INTRODUCED:
      return reply_string(conn, request, *domid == 0 || introduced_.contains(*domid) ? "T" : "F");
    case XS_INTRODUCE: {
      if (!conn.caller.privileged) return reply_error(conn, request, EACCES);
      if (*domid == 0 || !parse_number((*args)[1], UINT32_MAX) || !parse_number((*args)[2], UINT32_MAX))
        return reply_error(conn, request, EINVAL);
      const bool was_introduced = introduced_.contains(*domid);
      const int err = introduce(static_cast<DomId>(*domid));
      reply_status(conn, request, err);
      if (err == 0 && !was_introduced) fire({Change{"@introduceDomain", true, PermList{{0, 'n'}}}});
      return;
    }
    case XS_RELEASE: {
      if (!conn.caller.privileged) return reply_error(conn, request, EACCES);
      if (*domid == 0) return reply_error(conn, request, EINVAL);
      const int err = release(static_cast<DomId>(*domid));
      reply_status(conn, request, err);
      if (err == 0) fire({Change{"@releaseDomain", true, PermList{{0, 'n'}}}});
      return;
    }
  }
}

int Protocol::introduce(DomId domid) {
  if (introduced_.contains(domid)) return 0;  // re-introduction after a restart of the toolstack
  if (const int err = hooks_.introduce ? hooks_.introduce(domid) : 0; err != 0) return err;
  introduced_.insert(domid);
  return 0;
}

int Protocol::release(DomId domid) {
  if (!introduced_.erase(domid)) return ENOENT;
  if (hooks_.release) hooks_.release(domid);
  for (Session* conn : sessions_)
    if (!conn->caller.privileged && conn->caller.domid == domid) conn->dead = true;
  return 0;
}

// ---- replies and events

void Protocol::send_message(Session& conn, std::uint32_t type, std::uint32_t req_id, std::uint32_t tx_id,
                            std::string_view payload) {
  if (conn.dead) return;
  if (conn.queued() + sizeof(xsd_sockmsg) + payload.size() > kMaxQueuedOutput) {
    PVBACK_LOG_RATELIMITED(Warning, "xenstore: dom%u does not read its connection, disconnecting",
                           conn.caller.domid);
    conn.dead = true;
    return;
  }
  xsd_sockmsg header{type, req_id, tx_id, static_cast<std::uint32_t>(payload.size())};
  conn.out.append(reinterpret_cast<const char*>(&header), sizeof(header));
  conn.out.append(payload);
}

void Protocol::reply(Session& conn, const xsd_sockmsg& request, std::string_view payload) {
  send_message(conn, request.type, request.req_id, request.tx_id, payload);
}

void Protocol::reply_string(Session& conn, const xsd_sockmsg& request, std::string text) {
  text.push_back('\0');
  reply(conn, request, text);
}

void Protocol::reply_error(Session& conn, const xsd_sockmsg& request, int err) {
  std::string text = error_name(err);
  text.push_back('\0');
  send_message(conn, XS_ERROR, request.req_id, request.tx_id, text);
}

void Protocol::reply_status(Session& conn, const xsd_sockmsg& request, int err) {
  if (err == 0)
    reply_ok(conn, request);
  else
    reply_error(conn, request, err);
}

void Protocol::send_watch_event(Session& conn, const Watch& watch, std::string_view abs_path) {
  std::string payload;
  if (watch.relative) {
    const std::string home = domain_path(conn.caller.domid) + "/";
    payload = abs_path.substr(home.size());
  } else {
    payload = abs_path;
  }
  payload.push_back('\0');
  payload += watch.token;
  payload.push_back('\0');
  // A long token on a watch of a deep path can make an event no client may accept (libxenstore
  // refuses more than XENSTORE_PAYLOAD_MAX and fails the connection). Dropped, as cxenstored does
  // ("tools/xenstore: drop watch event messages exceeding maximum size").
  if (payload.size() > XENSTORE_PAYLOAD_MAX) {
    PVBACK_LOG_RATELIMITED(Warning, "xenstore: dom%u: a %zu-byte watch event dropped", conn.caller.domid,
                           payload.size());
    return;
  }
  send_message(conn, XS_WATCH_EVENT, 0, 0, payload);
}

void Protocol::fire(const std::vector<Change>& changes) {
  for (const auto& change : changes) {
    for (Session* conn : sessions_) {
      if (conn->dead || !may_read(change.perms, conn->caller)) continue;
      for (const auto& watch : conn->watches) {
        if (!watch_matches(watch, change)) continue;
        send_watch_event(*conn, watch, change.path);
        if (conn->dead) break;
      }
    }
  }
}

}  // namespace pvback::sim::xs
