// One message with file descriptors over an AF_UNIX SOCK_SEQPACKET socket (SCM_RIGHTS).
#pragma once
#include <sys/socket.h>
#include <sys/un.h>

#include <cstddef>
#include <expected>
#include <span>
#include <string>
#include <sys/types.h>
#include <vector>

#include "base/unique_fd.hpp"

namespace pvback {

// pvback-net's data plane takes a TAP queue fd per queue (up to 64) with its other fds.
inline constexpr std::size_t kMaxPassedFds = 96;

// Sends `message` with up to kMaxPassedFds `fds` (duplicated into the receiver; the caller keeps
// its own). 0 or an errno value (EMSGSIZE: truncated by the socket's limits). `flags` add to
// MSG_NOSIGNAL (e.g. MSG_DONTWAIT).
[[nodiscard]] int send_message(int sock, std::span<const std::byte> message, std::span<const int> fds = {},
                               int flags = 0);

// Receives one message into `buffer`: its length (0: the peer closed the socket), or an errno
// value. Fds that came with it are appended to `fds` (closed if `fds` is null). A message or a
// set of fds that did not fit is EMSGSIZE (whatever fds arrived are closed).
// With `sender` given (and SO_PASSCRED set on `sock`), it receives the sender's pid, uid and gid
// as the kernel vouches for them (pid 0 if none came).
[[nodiscard]] std::expected<std::size_t, int> recv_message(int sock, std::span<std::byte> buffer,
                                                          std::vector<UniqueFd>* fds = nullptr, int flags = 0,
                                                          ucred* sender = nullptr);

// The address of the AF_UNIX socket at `path`; ENAMETOOLONG if it does not fit.
std::expected<sockaddr_un, int> unix_address(const std::string& path);

// A SOCK_SEQPACKET socket connected to the AF_UNIX socket at `path`, or an errno value
// (ENAMETOOLONG, ENOENT, ECONNREFUSED, ...).
[[nodiscard]] std::expected<UniqueFd, int> connect_seqpacket(const std::string& path);
// One listening at `path` (a file already there is replaced) with permissions `mode`.
[[nodiscard]] std::expected<UniqueFd, int> listen_seqpacket(const std::string& path, mode_t mode, int backlog);

}  // namespace pvback
