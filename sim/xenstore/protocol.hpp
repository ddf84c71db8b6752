// The XenStore wire protocol without any I/O: framing a connection's input into xsd_sockmsg
// messages, answering the requests over a Store, watches and their events. XenStoreServer
// (server.cpp) owns the sockets and feeds what it reads to consume(); the fuzz target
// tests/fuzz/xenstore_wire_fuzz.cpp drives the same code with no socket at all.
#pragma once
// errno.h first: xs_wire.h defines its xsd_errors table only when the errno names exist.
#include <errno.h>
#include <stdint.h>
#include <xen/io/xs_wire.h>

#include <cstddef>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <set>
#include <string>
#include <string_view>
#include <vector>

#include "sim/xenstore/store.hpp"

namespace pvback::sim::xs {

// Bounds that keep one misbehaving client from hurting the daemon or other clients.
inline constexpr std::size_t kMaxWatchesGuest = 128;
inline constexpr std::size_t kMaxWatchesDom0 = 4096;
// Too many open transactions get ENOSPC, as cxenstored's transaction quota does.
inline constexpr std::size_t kMaxTransactionsGuest = 10;
inline constexpr std::size_t kMaxTransactionsDom0 = 256;
// Replies wait while this much output is queued (the client is not reading); watch events are
// queued regardless, and a client whose queue grows past the hard limit is disconnected.
inline constexpr std::size_t kPauseInputAt = 64 * 1024;
inline constexpr std::size_t kMaxQueuedOutput = 1024 * 1024;
// Domain ids from here on are Xen's special ones (DOMID_FIRST_RESERVED): never a guest.
inline constexpr DomId kFirstReservedDomId = 0x7ff0;

struct Watch {
  std::string given_path;  // as registered: events report paths in the same (relative) form
  std::string abs_path;    // or the special "@..." name
  std::string token;
  bool relative = false;
};

// One client connection as the protocol sees it: who it is, its watches and transactions, and
// the bytes queued for it (replies and watch events, each a whole xsd_sockmsg).
struct Session {
  Caller caller;
  std::string out;
  std::size_t out_sent = 0;  // the owner of the connection advances it as it sends
  std::vector<Watch> watches;
  std::map<std::uint32_t, std::unique_ptr<Transaction>> transactions;
  // To be closed: an unframeable message, output past kMaxQueuedOutput, or its domain released.
  bool dead = false;

  std::size_t queued() const { return out.size() - out_sent; }
};

class Protocol {
 public:
  // What introducing and releasing a domain means outside the protocol (for the server: the
  // guest's socket). introduce returns 0 or an errno for the reply.
  struct DomainHooks {
    std::function<int(DomId)> introduce;
    std::function<void(DomId)> release;
  };

  explicit Protocol(DomainHooks hooks) : hooks_(std::move(hooks)) {}

  // An attached session hears watch events and is dropped by the release of its domain. It must
  // stay at its address until detach().
  void attach(Session& session) { sessions_.push_back(&session); }
  void detach(Session& session) { std::erase(sessions_, &session); }

  // Handles every complete message at the front of `input`, in order, while the session is alive
  // and has less than kPauseInputAt queued. Returns how many bytes it used; the rest (a partial
  // message, or what waits for the client to read) is for a later call. A header whose len
  // exceeds XENSTORE_PAYLOAD_MAX makes the session dead: nothing after it can be framed.
  [[nodiscard]] std::size_t consume(Session& session, std::string_view input);

  // One framed message. Appends exactly one reply (of the request's type or XS_ERROR, with its
  // req_id and tx_id) to the session's output unless the session is or becomes dead, and any
  // watch events it causes to the attached sessions' outputs.
  void handle_message(Session& session, const xsd_sockmsg& request, std::string_view payload);

  bool introduced(DomId domid) const { return introduced_.contains(domid); }
  const Store& store() const { return store_; }

 private:
  void handle_node_request(Session& conn, const xsd_sockmsg& request, std::string_view payload);
  void handle_watch(Session& conn, const xsd_sockmsg& request, std::string_view payload);
  void handle_unwatch(Session& conn, const xsd_sockmsg& request, std::string_view payload);
  void handle_transaction_start(Session& conn, const xsd_sockmsg& request);
  void handle_transaction_end(Session& conn, const xsd_sockmsg& request, std::string_view payload);
  void handle_domain_request(Session& conn, const xsd_sockmsg& request, std::string_view payload);
  int introduce(DomId domid);
  int release(DomId domid);

  void send_message(Session& conn, std::uint32_t type, std::uint32_t req_id, std::uint32_t tx_id,
                    std::string_view payload);
  void reply(Session& conn, const xsd_sockmsg& request, std::string_view payload);
  void reply_string(Session& conn, const xsd_sockmsg& request, std::string text);
  void reply_ok(Session& conn, const xsd_sockmsg& request) { reply_string(conn, request, "OK"); }
  void reply_error(Session& conn, const xsd_sockmsg& request, int err);
  void reply_status(Session& conn, const xsd_sockmsg& request, int err);
  void send_watch_event(Session& conn, const Watch& watch, std::string_view abs_path);
  void fire(const std::vector<Change>& changes);

  DomainHooks hooks_;
  std::vector<Session*> sessions_;  // in attach order, the order events are queued in
  std::uint32_t next_transaction_id_ = 1;
  std::set<unsigned> introduced_;
  Store store_;
};

}  // namespace pvback::sim::xs
