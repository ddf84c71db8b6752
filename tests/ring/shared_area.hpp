// Test helper: page-aligned memory standing in for a granted shared ring area.
#pragma once
#include <cstddef>
#include <cstdlib>
#include <cstring>
#include <memory>

#include "grant/types.hpp"

namespace pvback::ring::testing {

class SharedArea {
 public:
  // Filled with a marker so that tests notice bytes the ring code failed to initialise.
  explicit SharedArea(std::size_t pages, unsigned char fill = 0xAA)
      : pages_(pages), data_(static_cast<std::byte*>(std::aligned_alloc(kXenPageSize, pages * kXenPageSize))) {
    std::memset(data_.get(), fill, pages * kXenPageSize);
  }
  std::byte* data() const { return data_.get(); }
  std::size_t pages() const { return pages_; }
  std::size_t bytes() const { return pages_ * kXenPageSize; }

 private:
  struct Free {
    void operator()(std::byte* p) const { std::free(p); }
  };
  std::size_t pages_;
  std::unique_ptr<std::byte, Free> data_;
};

}  // namespace pvback::ring::testing
