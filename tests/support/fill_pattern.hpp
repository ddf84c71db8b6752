// Deterministic test data for block devices: what `seed` writes at `first_sector` onwards.
#pragma once
#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <span>

namespace pvback::test {

// Byte i of the buffer that starts at sector `first_sector` under `seed`.
inline void fill_pattern(std::span<std::byte> out, std::uint64_t first_sector, std::uint64_t seed) {
  for (std::size_t i = 0; i < out.size(); i += 8) {
    std::uint64_t x = (first_sector * 512 + i) ^ (seed * 0x9E3779B97F4A7C15ull);
    x ^= x >> 31;
    x *= 0xBF58476D1CE4E5B9ull;
    x ^= x >> 29;
    std::memcpy(out.data() + i, &x, std::min<std::size_t>(8, out.size() - i));
  }
}

}  // namespace pvback::test
