#include "grant/sim_control.hpp"

#include <sys/socket.h>
#include <sys/un.h>

#include <cerrno>
#include <cstring>
#include <memory>

#include "base/fd_passing.hpp"
#include "grant/sim_layout.hpp"

namespace pvback::grant {

std::expected<SimControl, int> SimControl::connect(const std::filesystem::path& run_dir, DomId self) {
  const std::string path = sim_layout::control_socket(run_dir).string();
  auto fd = connect_seqpacket(path);
  if (!fd) return std::unexpected(fd.error());
  SimControl control(std::move(*fd), self);
  sim_protocol::Request hello;
  hello.op = sim_protocol::Op::Hello;
  hello.domid = self;
  auto reply = control.call(hello);
  if (!reply) return std::unexpected(reply.error());
  return control;
}

std::expected<sim_protocol::Reply, int> SimControl::call(sim_protocol::Request request, std::vector<UniqueFd>* fds) {
  std::lock_guard lock(mutex_);
  request.magic = sim_protocol::kMagic;
  request.version = sim_protocol::kVersion;
  ssize_t sent;
  do {
    sent = ::send(fd_.get(), &request, sizeof(request), MSG_NOSIGNAL);
  } while (sent < 0 && errno == EINTR);
  if (sent < 0) return std::unexpected(errno);
  if (static_cast<size_t>(sent) != sizeof(request)) return std::unexpected(EPROTO);

  auto reply = std::make_unique<sim_protocol::Reply>();
  alignas(cmsghdr) char control[CMSG_SPACE(sizeof(int) * sim_protocol::kMaxReplyFds)] = {};
  iovec iov{reply.get(), sizeof(*reply)};
  msghdr msg{};
  msg.msg_iov = &iov;
  msg.msg_iovlen = 1;
  msg.msg_control = control;
  msg.msg_controllen = sizeof(control);
  ssize_t got;
  do {
    got = ::recvmsg(fd_.get(), &msg, MSG_CMSG_CLOEXEC);
  } while (got < 0 && errno == EINTR);
  if (got < 0) return std::unexpected(errno);
  if (got == 0) return std::unexpected(ECONNRESET);

  std::vector<UniqueFd> received;
  for (cmsghdr* c = CMSG_FIRSTHDR(&msg); c != nullptr; c = CMSG_NXTHDR(&msg, c)) {
    if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS) continue;
    size_t n = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
    for (size_t i = 0; i < n; ++i) {
      int fd;
      std::memcpy(&fd, CMSG_DATA(c) + i * sizeof(int), sizeof(int));
      received.emplace_back(fd);
    }
  }
  if (static_cast<size_t>(got) != sizeof(*reply) || (msg.msg_flags & (MSG_TRUNC | MSG_CTRUNC)) != 0 ||
      reply->magic != sim_protocol::kMagic)
    return std::unexpected(EPROTO);
  if (reply->error != 0) return std::unexpected(reply->error);
  if (received.size() != reply->fd_count) return std::unexpected(EPROTO);
  if (fds != nullptr)
    for (auto& fd : received) fds->push_back(std::move(fd));
  return *reply;
}

}  // namespace pvback::grant
