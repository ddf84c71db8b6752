#include "sim/domains/domain_manager.hpp"

#include <fcntl.h>
#include <poll.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/un.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <optional>
#include <system_error>
#include <vector>

#include "base/fd_passing.hpp"
#include "base/log.hpp"
#include "grant/sim_layout.hpp"

namespace pvback::sim {

namespace proto = sim_protocol;

namespace {

constexpr DomId kMaxGuestDomId = 0x7FEF;  // DOMID_FIRST_RESERVED - 1
constexpr std::uint32_t kLeaseFrames = 512;
constexpr std::uint32_t kLeaseRefs = 128;

std::system_error sys_error(const std::string& what) { return std::system_error(errno, std::generic_category(), what); }

// Sealed against resizing so no client can shrink shared memory under another's mapping (SIGBUS).
UniqueFd make_memfd(const std::string& name, std::uint64_t size) {
  UniqueFd fd(::memfd_create(name.c_str(), MFD_CLOEXEC | MFD_ALLOW_SEALING));
  if (!fd) throw sys_error("memfd_create " + name);
  if (::ftruncate(fd.get(), static_cast<off_t>(size)) != 0) throw sys_error("ftruncate " + name);
  if (::fcntl(fd.get(), F_ADD_SEALS, F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_SEAL) != 0)
    throw sys_error("seal " + name);
  return fd;
}

std::shared_ptr<UniqueFd> make_eventfd() {
  auto fd = std::make_shared<UniqueFd>(::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK));
  if (!*fd) throw sys_error("eventfd");
  return fd;
}

void signal_eventfd(int fd) {
  std::uint64_t one = 1;
  // EAGAIN only if the counter is saturated, which still reads as pending.
  [[maybe_unused]] ssize_t n = ::write(fd, &one, sizeof(one));
}

}  // namespace

// One end of an event channel. The two eventfds belong to the channel, not to the binding:
// `local` is what this port's owner polls, `peer` what it writes to notify. Whoever binds to
// an unbound port receives them swapped, so the allocating side (which already holds them)
// keeps working across rebinding without passing through the manager.
struct DomainManager::Port {
  enum class State { Unbound, Interdomain };
  State state = State::Unbound;
  DomId remote = 0;
  EvtchnPort remote_port = 0;
  std::shared_ptr<UniqueFd> local;
  std::shared_ptr<UniqueFd> peer;
  int owner = 0;  // connection id
};

struct DomainManager::Domain {
  DomId id = 0;
  std::string name;
  std::uint64_t memory_bytes = 0;
  UniqueFd table;
  UniqueFd memory;
  UniqueFd status;
  proto::DomainStatus* status_header = nullptr;
  std::map<EvtchnPort, Port> ports;
  std::uint32_t next_frame = 0;
  std::uint32_t next_ref = proto::kFirstSharableRef;

  ~Domain() {
    if (status_header != nullptr) {
      __atomic_store_n(&status_header->alive, 0u, __ATOMIC_RELEASE);
      ::munmap(status_header, proto::kStatusHeaderBytes);
    }
  }
};

struct DomainManager::Connection {
  int id = 0;
  UniqueFd fd;
  bool hello = false;
  DomId domid = 0;
  // Set once by RestrictDomain: the only domain whose ports this connection may bind from then on
  // (Linux's IOCTL_EVTCHN_RESTRICT_DOMID, see EventChannels::restrict_to).
  std::optional<DomId> restricted_to;
  std::set<std::pair<DomId, EvtchnPort>> ports;
};

DomainManager::DomainManager(std::filesystem::path run_dir, DomainHooks hooks)
    : run_dir_(std::move(run_dir)), hooks_(std::move(hooks)) {
  std::error_code ec;
  std::filesystem::create_directories(run_dir_, ec);
  if (ec) throw std::system_error(ec, "cannot create run directory " + run_dir_.string());
  const std::string path = sim_layout::control_socket(run_dir_).string();
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  if (path.size() >= sizeof(addr.sun_path))
    throw std::system_error(ENAMETOOLONG, std::generic_category(), "control socket path " + path);
  std::memcpy(addr.sun_path, path.c_str(), path.size() + 1);
  ::unlink(path.c_str());
  listen_fd_.reset(::socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC | SOCK_NONBLOCK, 0));
  if (!listen_fd_) throw sys_error("socket");
  if (::bind(listen_fd_.get(), reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0)
    throw sys_error("bind " + path);
  if (::listen(listen_fd_.get(), 64) != 0) throw sys_error("listen " + path);
  stop_fd_.reset(::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK));
  if (!stop_fd_) throw sys_error("eventfd");
  // Dom0 is not "created" (no hook): it is where the toolstack and backends run.
  if (int err = create_domain(0, "Domain-0", 0); err != 0)
    throw std::system_error(err, std::generic_category(), "cannot create domain 0");
}

DomainManager::~DomainManager() {
  connections_.clear();
  domains_.clear();
  ::unlink(sim_layout::control_socket(run_dir_).c_str());
}

void DomainManager::stop() { signal_eventfd(stop_fd_.get()); }

void DomainManager::run() {
  std::vector<pollfd> fds;
  std::vector<int> ids;
  for (;;) {
    fds.assign({{listen_fd_.get(), POLLIN, 0}, {stop_fd_.get(), POLLIN, 0}});
    ids.assign({0, 0});
    for (auto& [id, conn] : connections_) {
      fds.push_back({conn->fd.get(), POLLIN | POLLRDHUP, 0});
      ids.push_back(id);
    }
    if (::poll(fds.data(), fds.size(), -1) < 0) {
      if (errno == EINTR) continue;
      PVBACK_LOG(Error, "sim domains: poll: %s", std::strerror(errno));
      return;
    }
    if (fds[1].revents != 0) {
      std::uint64_t value;
      [[maybe_unused]] ssize_t n = ::read(stop_fd_.get(), &value, sizeof(value));
      return;
    }
    // Hang-ups first: a client that closed one connection and then asks something on another
    // must find the first one's ports already closed, as close() of /dev/xen/evtchn guarantees.
    for (size_t i = 2; i < fds.size(); ++i) {
      if ((fds[i].revents & (POLLHUP | POLLRDHUP | POLLERR)) == 0) continue;
      auto it = connections_.find(ids[i]);
      if (it == connections_.end()) continue;
      for (int n = 0; n < 64 && serve(*it->second); ++n) {
      }
      drop_connection(ids[i]);
    }
    for (size_t i = 2; i < fds.size(); ++i) {
      if (fds[i].revents == 0) continue;
      auto it = connections_.find(ids[i]);
      if (it == connections_.end()) continue;
      if (!serve(*it->second)) drop_connection(ids[i]);
    }
    if (fds[0].revents != 0) accept_connection();
  }
}

void DomainManager::accept_connection() {
  for (;;) {
    UniqueFd fd(::accept4(listen_fd_.get(), nullptr, nullptr, SOCK_CLOEXEC | SOCK_NONBLOCK));
    if (!fd) {
      if (errno != EAGAIN && errno != EINTR) PVBACK_LOG(Warning, "sim domains: accept: %s", std::strerror(errno));
      return;
    }
    auto conn = std::make_unique<Connection>();
    conn->id = next_connection_id_++;
    conn->fd = std::move(fd);
    connections_.emplace(conn->id, std::move(conn));
  }
}

void DomainManager::drop_connection(int id) {
  auto it = connections_.find(id);
  if (it == connections_.end()) return;
  // Like process exit on Xen: the connection's ports are closed.
  auto ports = it->second->ports;
  for (auto [domid, port] : ports)
    if (Domain* d = find(domid)) close_port(*d, port);
  connections_.erase(it);
}

bool DomainManager::serve(Connection& conn) {
  proto::Request req{};
  ssize_t n = ::recv(conn.fd.get(), &req, sizeof(req), MSG_DONTWAIT | MSG_TRUNC);
  if (n < 0) return errno == EAGAIN || errno == EINTR;
  if (n == 0) return false;
  if (static_cast<size_t>(n) != sizeof(req) || req.magic != proto::kMagic || req.version != proto::kVersion) {
    PVBACK_LOG_RATELIMITED(Warning, "sim domains: malformed request (%zd bytes), dropping connection", n);
    return false;
  }
  std::vector<int> fds;
  proto::Reply reply;
  try {
    reply = handle(conn, req, fds);
  } catch (const std::system_error& e) {
    PVBACK_LOG(Error, "sim domains: %s", e.what());
    reply = proto::Reply{};
    reply.error = e.code().value() != 0 ? e.code().value() : EIO;
    fds.clear();
  }
  reply.magic = proto::kMagic;
  if (reply.error != 0) fds.clear();
  reply.fd_count = static_cast<std::uint32_t>(fds.size());

  // A client that does not read its replies must not stall the hypervisor.
  return send_message(conn.fd.get(), std::as_bytes(std::span(&reply, 1)), fds, MSG_DONTWAIT) == 0;
}

DomainManager::Domain* DomainManager::find(std::uint32_t domid) {
  if (domid > 0xFFFF) return nullptr;
  auto it = domains_.find(static_cast<DomId>(domid));
  return it == domains_.end() ? nullptr : it->second.get();
}

proto::Reply DomainManager::handle(Connection& conn, const proto::Request& req, std::vector<int>& fds) {
  proto::Reply reply;
  auto fail = [&](int err) {
    reply.error = err;
    return reply;
  };
  if (req.op == proto::Op::Hello) {
    if (conn.hello || req.domid > kMaxGuestDomId) return fail(EINVAL);
    conn.hello = true;
    conn.domid = static_cast<DomId>(req.domid);
    return reply;
  }
  if (!conn.hello) return fail(EPROTO);
  // Operations on behalf of a domain act as the connection's own domain only.
  const bool acts_as_self = req.domid == conn.domid;

  switch (req.op) {
    case proto::Op::CreateDomain: {
      if (conn.domid != 0) return fail(EPERM);
      if (req.domid == 0 || req.domid > kMaxGuestDomId) return fail(EINVAL);
      std::string name(req.name, strnlen(req.name, sizeof(req.name)));
      if (name.empty()) name = "domain-" + std::to_string(req.domid);
      int err = create_domain(static_cast<DomId>(req.domid), name, req.memory_bytes);
      if (err != 0) return fail(err);
      if (hooks_.created) hooks_.created(static_cast<DomId>(req.domid), name);
      return reply;
    }
    case proto::Op::DestroyDomain: {
      if (conn.domid != 0) return fail(EPERM);
      if (req.domid == 0) return fail(EPERM);
      if (req.domid > kMaxGuestDomId) return fail(ESRCH);  // no truncation to a 16-bit domid
      int err = destroy_domain(static_cast<DomId>(req.domid));
      if (err != 0) return fail(err);
      if (hooks_.destroyed) hooks_.destroyed(static_cast<DomId>(req.domid));
      return reply;
    }
    case proto::Op::ListDomains: {
      std::uint32_t index = 0;
      for (auto& [id, d] : domains_) {
        if (index++ < req.start) continue;
        if (reply.count == proto::kListBatch) {
          reply.more = 1;
          break;
        }
        auto& info = reply.domains[reply.count++];
        info.domid = id;
        info.memory_bytes = d->memory_bytes;
        std::snprintf(info.name, sizeof(info.name), "%s", d->name.c_str());
      }
      return reply;
    }
    case proto::Op::OpenDomain: {
      Domain* d = find(req.domid);
      if (d == nullptr) return fail(ESRCH);
      reply.memory_bytes = d->memory_bytes;
      reply.grant_entries = proto::kGrantEntries;
      fds = {d->table.get(), d->memory.get()};
      // Pin counts are the hypervisor's bookkeeping: mappers share it, the guest does not.
      if (!acts_as_self) fds.push_back(d->status.get());
      return reply;
    }
    case proto::Op::LeaseShareRange: {
      if (!acts_as_self) return fail(EPERM);
      Domain* d = find(req.domid);
      if (d == nullptr) return fail(ESRCH);
      const std::uint64_t total_frames = d->memory_bytes / kXenPageSize;
      const std::uint64_t frames_left = total_frames - d->next_frame;
      const std::uint64_t refs_left = proto::kGrantEntries - d->next_ref;
      if (req.frames > frames_left || req.refs > refs_left) return fail(ENOMEM);
      auto frames = static_cast<std::uint32_t>(std::min<std::uint64_t>(std::max(req.frames, kLeaseFrames), frames_left));
      auto refs = static_cast<std::uint32_t>(std::min<std::uint64_t>(std::max(req.refs, kLeaseRefs), refs_left));
      reply.base_frame = d->next_frame;
      reply.frames = frames;
      reply.base_ref = d->next_ref;
      reply.refs = refs;
      d->next_frame += frames;
      d->next_ref += refs;
      return reply;
    }
    case proto::Op::RestrictDomain: {
      if (!acts_as_self) return fail(EPERM);
      // Linux's order: once only (even to the same domain), then a guest's domid.
      if (conn.restricted_to) return fail(EACCES);
      if (req.remote == 0 || req.remote > kMaxGuestDomId) return fail(EINVAL);
      conn.restricted_to = static_cast<DomId>(req.remote);
      return reply;
    }
    case proto::Op::AllocUnbound:
    case proto::Op::BindInterdomain: {
      if (!acts_as_self) return fail(EPERM);
      // A restricted connection allocates nothing and binds only its domain's ports, refused
      // before the domains are even looked up, as Linux refuses before the hypercall.
      if (conn.restricted_to &&
          (req.op == proto::Op::AllocUnbound || req.remote != std::uint32_t{*conn.restricted_to}))
        return fail(EACCES);
      Domain* self = find(req.domid);
      Domain* remote = find(req.remote);
      if (self == nullptr || remote == nullptr) return fail(ESRCH);
      Port* remote_port = nullptr;
      if (req.op == proto::Op::BindInterdomain) {
        auto it = remote->ports.find(req.port);
        // Xen: only an unbound port that names this domain as its remote may be bound.
        if (it == remote->ports.end() || it->second.state != Port::State::Unbound || it->second.remote != self->id)
          return fail(EINVAL);
        remote_port = &it->second;
      }
      EvtchnPort port = 1;
      while (self->ports.contains(port)) ++port;
      if (port >= proto::kMaxPortsPerDomain) return fail(ENOSPC);
      Port p;
      p.remote = remote->id;
      p.owner = conn.id;
      if (remote_port == nullptr) {
        p.state = Port::State::Unbound;
        p.local = make_eventfd();
        p.peer = make_eventfd();
      } else {
        p.state = Port::State::Interdomain;
        p.remote_port = req.port;
        p.local = remote_port->peer;
        p.peer = remote_port->local;
        remote_port->state = Port::State::Interdomain;
        remote_port->remote_port = port;
        // Xen marks the binding side's new port pending, so it looks at the ring once.
        signal_eventfd(p.local->get());
      }
      fds = {p.local->get(), p.peer->get()};
      self->ports.emplace(port, std::move(p));
      conn.ports.emplace(self->id, port);
      reply.port = port;
      return reply;
    }
    case proto::Op::Close: {
      if (!acts_as_self) return fail(EPERM);
      Domain* d = find(req.domid);
      if (d == nullptr) return fail(ESRCH);
      auto it = d->ports.find(req.port);
      if (it == d->ports.end() || it->second.owner != conn.id) return fail(EINVAL);
      close_port(*d, req.port);
      return reply;
    }
    case proto::Op::Hello:
      break;
  }
  return fail(ENOSYS);
}

void DomainManager::close_port(Domain& domain, EvtchnPort port) {
  auto it = domain.ports.find(port);
  if (it == domain.ports.end()) return;
  Port& p = it->second;
  if (p.state == Port::State::Interdomain) {
    // The other end goes back to unbound, still naming this domain, so it may be bound again.
    if (Domain* remote = find(p.remote)) {
      auto rit = remote->ports.find(p.remote_port);
      if (rit != remote->ports.end()) {
        rit->second.state = Port::State::Unbound;
        rit->second.remote = domain.id;
        rit->second.remote_port = 0;
      }
    }
  }
  if (auto cit = connections_.find(p.owner); cit != connections_.end()) cit->second->ports.erase({domain.id, port});
  domain.ports.erase(it);
}

int DomainManager::create_domain(DomId domid, std::string name, std::uint64_t memory_bytes) {
  if (domains_.contains(domid)) return EEXIST;
  if (memory_bytes == 0) memory_bytes = proto::kDefaultMemoryBytes;
  if (memory_bytes % kXenPageSize != 0 || memory_bytes > proto::kMaxMemoryBytes) return EINVAL;
  auto d = std::make_unique<Domain>();
  d->id = domid;
  d->name = std::move(name);
  d->memory_bytes = memory_bytes;
  const std::string prefix = "pvback-dom" + std::to_string(domid);
  d->table = make_memfd(prefix + "-grant-table", proto::kGrantEntries * sizeof(grant_entry_v1_t));
  d->memory = make_memfd(prefix + "-memory", memory_bytes);
  d->status = make_memfd(prefix + "-status", proto::kStatusBytes);
  void* header = ::mmap(nullptr, proto::kStatusHeaderBytes, PROT_READ | PROT_WRITE, MAP_SHARED, d->status.get(), 0);
  if (header == MAP_FAILED) throw sys_error("mmap status of domain " + std::to_string(domid));
  d->status_header = static_cast<proto::DomainStatus*>(header);
  d->status_header->domid = domid;
  __atomic_store_n(&d->status_header->alive, 1u, __ATOMIC_RELEASE);
  PVBACK_LOG(Info, "sim domains: created domain %u (%s, %llu MiB)", domid, d->name.c_str(),
             static_cast<unsigned long long>(memory_bytes >> 20));
  domains_.emplace(domid, std::move(d));
  return 0;
}

int DomainManager::destroy_domain(DomId domid) {
  auto it = domains_.find(domid);
  if (it == domains_.end()) return ESRCH;
  Domain& d = *it->second;
  std::vector<EvtchnPort> ports;
  for (auto& [port, p] : d.ports) ports.push_back(port);
  for (EvtchnPort port : ports) close_port(d, port);
  // Peers' unbound ports naming this domain can never be bound again; they stay until closed,
  // as on Xen. Mappings other processes hold stay valid (zombie domain): they own their fds.
  PVBACK_LOG(Info, "sim domains: destroyed domain %u (%s)", domid, d.name.c_str());
  domains_.erase(it);
  return 0;
}

}  // namespace pvback::sim
