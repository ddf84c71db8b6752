// A sparse temp file of `bytes` in /tmp (or `dir`), removed at the end of the test, with helpers
// to look at and change what is on it behind the backend's back.
#pragma once
#include <fcntl.h>
#include <unistd.h>

#include <cstdint>
#include <stdexcept>
#include <string>
#include <vector>

#include <gtest/gtest.h>

namespace pvback::test {

struct TempFile {
  explicit TempFile(std::uint64_t bytes, const std::string& dir = "/tmp") {
    std::string name = dir + "/pvback-disk-XXXXXX";
    int fd = ::mkstemp(name.data());
    if (fd < 0 || ::ftruncate(fd, static_cast<off_t>(bytes)) != 0) throw std::runtime_error("temp file");
    ::close(fd);
    path = name;
  }
  ~TempFile() { ::unlink(path.c_str()); }
  TempFile(const TempFile&) = delete;
  TempFile& operator=(const TempFile&) = delete;

  std::vector<std::byte> read(std::uint64_t offset, std::size_t len) const {
    std::vector<std::byte> out(len);
    int fd = ::open(path.c_str(), O_RDONLY);
    EXPECT_EQ(::pread(fd, out.data(), len, static_cast<off_t>(offset)), static_cast<ssize_t>(len));
    ::close(fd);
    return out;
  }
  void fill(std::uint64_t offset, std::byte value, std::size_t len) const {
    std::vector<std::byte> buf(len, value);
    int fd = ::open(path.c_str(), O_WRONLY);
    EXPECT_EQ(::pwrite(fd, buf.data(), len, static_cast<off_t>(offset)), static_cast<ssize_t>(len));
    ::close(fd);
  }
  std::string path;
};

}  // namespace pvback::test
