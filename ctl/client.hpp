// pvbackctl's side of the host daemon's control socket (supervisor/control.hpp): one connection,
// one request per message, each answer parsed and checked. Every way it can go wrong is an Error
// with its own message and exit status, so that an operator (or a script) can tell a daemon that
// is not running from one that refused the request.
#pragma once
#include <chrono>
#include <expected>
#include <string>

#include "base/unique_fd.hpp"
#include "ctl/json.hpp"

namespace pvback::ctl {

// pvbackctl's exit statuses.
enum Status : int {
  kOk = 0,
  kRefused = 1,      // the daemon answered "ok": false (unknown device, a refused restart, ...)
  kUsage = 2,        // a bad command line
  kNotRunning = 3,   // no control socket, or nothing answers on it
  kPermission = 4,   // the socket is root's (mode 0600)
  kBadAnswer = 5,    // no answer, a malformed one, another protocol version
};

struct Error {
  Status status = kRefused;
  std::string message;
};

// The message and status for connecting to `path` failing with `error` (an errno value).
Error connect_error(const std::string& path, int error);
// The request's answer, checked: a JSON object with "ok": true, or the Error to report (the
// daemon's own "error" for "ok": false).
[[nodiscard]] std::expected<Json, Error> check_answer(const std::string& answer);

class Client {
 public:
  [[nodiscard]] static std::expected<Client, Error> connect(const std::string& path);
  // Sends "1 <request>" and waits up to `timeout` for the answer, which is checked (check_answer).
  // `raw` receives the answer's text as it came.
  [[nodiscard]] std::expected<Json, Error> request(const std::string& request, std::chrono::milliseconds timeout,
                                                   std::string* raw = nullptr);

 private:
  UniqueFd sock_;
  std::string path_;
};

}  // namespace pvback::ctl
