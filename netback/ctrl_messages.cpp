// Control-ring messages. See ctrl_messages.hpp. Where netif.h leaves a choice, Linux netback's
// answer (drivers/net/xen-netback/hash.c) is the one taken, so frontends written against it work.
#include "netback/ctrl_messages.hpp"

#include <cstdarg>
#include <cstdio>
#include <cstring>

namespace pvback::netback {
namespace {

CtrlOutcome answer(std::uint32_t status, std::uint32_t data = 0) {
  CtrlOutcome o;
  o.status = status;
  o.data = data;
  return o;
}

CtrlOutcome store(const HashConfig& next) {
  CtrlOutcome o = answer(netif::kCtrlStatusSuccess);
  o.next = next;
  return o;
}

[[gnu::format(printf, 2, 3)]] CtrlOutcome refuse(std::uint32_t status, const char* format, ...) {
  CtrlOutcome o = answer(status);
  va_list args;
  va_start(args, format);
  std::vsnprintf(o.why.data(), o.why.size(), format, args);
  va_end(args);
  return o;
}

CtrlOutcome set_hash_algorithm(HashConfig h, std::uint32_t algorithm) {
  if (algorithm != netif::kHashAlgorithmNone && algorithm != netif::kHashAlgorithmToeplitz)
    return refuse(netif::kCtrlStatusInvalidParameter, "refused hash algorithm %u", algorithm);
  h.algorithm = algorithm;
  return store(h);
}

CtrlOutcome set_hash_flags(HashConfig h, std::uint32_t flags) {
  if ((flags & ~netif::kHashTypeAll) != 0)
    return refuse(netif::kCtrlStatusInvalidParameter, "refused hash flags %#x (unknown types)", flags);
  if (h.algorithm == netif::kHashAlgorithmNone)
    return refuse(netif::kCtrlStatusInvalidParameter, "refused hash flags %#x before a hash algorithm", flags);
  h.flags = flags;
  return store(h);
}

CtrlOutcome set_hash_key(HashConfig h, GrantRef gref, std::uint32_t len, const GuestPageReader& read_guest) {
  // Linux answers a key longer than it supports with INVALID_PARAMETER (netif.h would allow
  // BUFFER_OVERFLOW); frontends treat both as failure.
  if (len > netif::kMaxHashKeySize)
    return refuse(netif::kCtrlStatusInvalidParameter, "refused hash key of %u bytes (max %u)", len,
                  netif::kMaxHashKeySize);
  // Octets not given are zero (netif.h), so a zero-length key clears it. The Toeplitz hash pads
  // a short key with zeros too, so key_len only records what the frontend sent.
  h.key.fill(0);
  if (len != 0 && !read_guest(gref, h.key.data(), len))
    return refuse(netif::kCtrlStatusInvalidParameter, "cannot copy the hash key from grant %u", gref);
  h.key_len = len;
  return store(h);
}

CtrlOutcome set_hash_mapping_size(HashConfig h, std::uint32_t size) {
  if (size > netif::kMaxHashMappingSize)
    return refuse(netif::kCtrlStatusInvalidParameter, "refused hash mapping size %u (max %u)", size,
                  netif::kMaxHashMappingSize);
  // "Any previous table is invalidated ... any new table is assumed to be zero filled."
  h.mapping.fill(0);
  h.mapping_size = size;
  return store(h);
}

CtrlOutcome set_hash_mapping(HashConfig h, GrantRef gref, std::uint32_t len, std::uint32_t offset, unsigned queues,
                             const GuestPageReader& read_guest) {
  // Written so that no sum can wrap: offset 0xffffffff with any len is out of range (XSA-270).
  if (offset > h.mapping_size || len > h.mapping_size - offset)
    return refuse(netif::kCtrlStatusInvalidParameter, "refused hash mapping [%u, +%u) beyond the table size %u",
                  offset, len, h.mapping_size);
  if (len == 0) return answer(netif::kCtrlStatusSuccess);
  std::uint32_t entries[netif::kMaxHashMappingSize];
  static_assert(sizeof(entries) <= kXenPageSize);  // one grant holds a whole sub-table
  if (!read_guest(gref, entries, len * static_cast<std::uint32_t>(sizeof(std::uint32_t))))
    return refuse(netif::kCtrlStatusInvalidParameter, "cannot copy the hash mapping from grant %u", gref);
  // Every entry is checked on our copy before any is applied: a queue index past the vif's queues
  // would send packets to a queue that does not exist.
  for (std::uint32_t i = 0; i < len; ++i)
    if (entries[i] >= queues)
      return refuse(netif::kCtrlStatusInvalidParameter, "refused hash mapping: entry %u is queue %u of %u", offset + i,
                    entries[i], queues);
  std::memcpy(h.mapping.data() + offset, entries, len * sizeof(std::uint32_t));
  return store(h);
}

}  // namespace

CtrlOutcome handle_ctrl_request(const netif::CtrlRequest& req, const HashConfig& current, unsigned queues,
                                const GuestPageReader& read_guest) {
  switch (req.type) {
    case netif::kCtrlTypeSetHashAlgorithm:
      return set_hash_algorithm(current, req.data[0]);
    case netif::kCtrlTypeGetHashFlags:
      // netif.h: "A valid hash algorithm must be selected before this operation can succeed."
      if (current.algorithm == netif::kHashAlgorithmNone) return answer(netif::kCtrlStatusNotSupported);
      return answer(netif::kCtrlStatusSuccess, netif::kHashTypeAll);
    case netif::kCtrlTypeSetHashFlags:
      return set_hash_flags(current, req.data[0]);
    case netif::kCtrlTypeSetHashKey:
      return set_hash_key(current, req.data[0], req.data[1], read_guest);
    case netif::kCtrlTypeGetHashMappingSize:
      return answer(netif::kCtrlStatusSuccess, netif::kMaxHashMappingSize);
    case netif::kCtrlTypeSetHashMappingSize:
      return set_hash_mapping_size(current, req.data[0]);
    case netif::kCtrlTypeSetHashMapping:
      // netif.h: data[1] = size of the sub-table in entries, data[2] = its offset in entries.
      return set_hash_mapping(current, req.data[0], req.data[1], req.data[2], queues, read_guest);
    default:
      // The gref-mapping messages (staging grant mapping) and anything unknown.
      return refuse(netif::kCtrlStatusNotSupported, "control request type %u not supported", req.type);
  }
}

}  // namespace pvback::netback
