// Header parsing and software offloads. See headers.hpp for the contract.
//
// Every byte comes from a guest or from the network, so every length a header claims is checked
// against what the frame holds before it is used. Headers are read from a small local copy of
// the first bytes of the frame (or straight from the first chunk when it holds them all): a
// header split across chunks is then no special case, and nothing past the copy is ever read.
#include "netback/headers.hpp"

#include <algorithm>
#include <bit>
#include <cstring>

#include "ring/netif.hpp"

namespace pvback::netback {
namespace {

constexpr std::uint16_t kEthTypeIpv4 = 0x0800;
constexpr std::uint16_t kEthTypeIpv6 = 0x86dd;
constexpr std::uint16_t kEthTypeVlan = 0x8100;
constexpr std::uint16_t kEthTypeQinQ = 0x88a8;
constexpr unsigned kMaxVlanTags = 2;
constexpr std::uint32_t kEthHeaderLen = 14;

constexpr std::uint8_t kProtoHopByHop = 0;
constexpr std::uint8_t kProtoTcp = 6;
constexpr std::uint8_t kProtoUdp = 17;
constexpr std::uint8_t kProtoRouting = 43;
constexpr std::uint8_t kProtoFragment = 44;
constexpr std::uint8_t kProtoAh = 51;
constexpr std::uint8_t kProtoDestOpts = 60;

constexpr std::uint16_t kTcpCsumOffset = 16;
constexpr std::uint16_t kUdpCsumOffset = 6;

// Bytes of headers we look at: Ethernet with two tags (22), an IPv6 header with up to 216 bytes
// of extension headers (Linux netback pulls at most 256 for IPv6, MAX_IPV6_HDR_LEN) and a TCP
// header with options (60). A packet whose headers go beyond is not parsed.
constexpr std::uint32_t kHeaderBytes = 22 + 256 + 60;
// Extension headers are at least 8 bytes each, so kHeaderBytes bounds the chain already; this
// only keeps the loop obviously finite.
constexpr unsigned kMaxExtensionHeaders = 16;

std::uint16_t be16(const std::uint8_t* p) { return static_cast<std::uint16_t>(p[0] << 8 | p[1]); }

// The bytes of the frame the chunks really hold: `length` unless the chunks say less (a broken
// exit or queue must not make us read past its buffers).
std::uint32_t frame_bytes(const PacketBuffer& pkt) {
  std::uint64_t held = 0;
  const unsigned n = std::min(pkt.nr_chunks, kMaxChunks);
  for (unsigned i = 0; i < n; ++i) {
    if (pkt.chunks[i].len == 0) continue;
    if (pkt.chunks[i].data == nullptr) break;  // the bytes end at the first hole
    held += pkt.chunks[i].len;
  }
  return static_cast<std::uint32_t>(std::min<std::uint64_t>(held, pkt.length));
}

// Calls fn(pointer, bytes, offset_in_frame) for each piece of [offset, offset+len) of the frame.
// false if the frame holds fewer bytes.
template <class Fn>
bool for_each_piece(const PacketBuffer& pkt, std::uint32_t offset, std::uint32_t len, Fn&& fn) {
  const std::uint32_t frame = frame_bytes(pkt);
  if (offset > frame || len > frame - offset) return false;
  std::uint32_t pos = 0;  // frame offset of chunk i
  const unsigned n = std::min(pkt.nr_chunks, kMaxChunks);
  for (unsigned i = 0; i < n && len > 0; ++i) {
    const Chunk& c = pkt.chunks[i];
    const std::uint32_t end = pos + c.len;
    if (offset < end) {
      const std::uint32_t in = offset - pos;
      const std::uint32_t take = std::min(len, c.len - in);
      fn(c.data + in, take, offset);
      offset += take;
      len -= take;
    }
    pos = end;
  }
  return len == 0;
}

bool copy_out(const PacketBuffer& pkt, std::uint32_t offset, std::uint8_t* out, std::uint32_t len) {
  return for_each_piece(pkt, offset, len, [&](std::byte* p, std::uint32_t n, std::uint32_t at) {
    std::memcpy(out + (at - offset), p, n);
  });
}

bool copy_in(PacketBuffer& pkt, std::uint32_t offset, const std::uint8_t* in, std::uint32_t len) {
  return for_each_piece(pkt, offset, len, [&](std::byte* p, std::uint32_t n, std::uint32_t at) {
    std::memcpy(p, in + (at - offset), n);
  });
}

// The first bytes of a frame, contiguous.
class HeaderBytes {
 public:
  explicit HeaderBytes(const PacketBuffer& pkt) : frame_(frame_bytes(pkt)) {
    size_ = std::min(frame_, kHeaderBytes);
    if (pkt.nr_chunks > 0 && pkt.chunks[0].data != nullptr && pkt.chunks[0].len >= size_) {
      data_ = reinterpret_cast<const std::uint8_t*>(pkt.chunks[0].data);  // the common case
    } else if (copy_out(pkt, 0, buf_, size_)) {
      data_ = buf_;
    } else {
      size_ = 0;
    }
  }
  const std::uint8_t* data() const { return data_; }
  std::uint32_t size() const { return size_; }     // bytes readable at data()
  std::uint32_t frame() const { return frame_; }   // bytes of the whole frame
  // [offset, offset+len) readable?
  bool has(std::uint32_t offset, std::uint32_t len) const { return offset <= size_ && len <= size_ - offset; }

 private:
  std::uint32_t frame_;
  std::uint32_t size_ = 0;
  const std::uint8_t* data_ = buf_;
  std::uint8_t buf_[kHeaderBytes];
};

// TCP or UDP header at `off`, which must end by `ip_end` (the end of the IP datagram).
bool parse_l4(const HeaderBytes& h, std::uint32_t off, std::uint32_t ip_end, std::uint8_t proto, ParsedHeaders& out) {
  out.l4_proto = proto;
  std::uint32_t len = 0;
  if (proto == kProtoTcp) {
    if (!h.has(off, 20)) return false;
    len = (h.data()[off + 12] >> 4) * 4u;
    if (len < 20) return false;
  } else if (proto == kProtoUdp) {
    len = 8;
  } else {
    return true;  // another protocol: addresses only
  }
  if (!h.has(off, len) || off + len > ip_end) return false;
  std::memcpy(&out.src_port, h.data() + off, 2);
  std::memcpy(&out.dst_port, h.data() + off + 2, 2);
  out.l4_len = static_cast<std::uint16_t>(len);
  return true;
}

bool parse_ipv4(const HeaderBytes& h, std::uint32_t off, ParsedHeaders& out) {
  if (!h.has(off, 20)) return false;
  const std::uint8_t* ip = h.data() + off;
  if ((ip[0] >> 4) != 4) return false;
  const std::uint32_t ihl = (ip[0] & 0x0fu) * 4u;
  if (ihl < 20 || !h.has(off, ihl)) return false;
  const std::uint32_t total = be16(ip + 2);
  // Ethernet may pad the frame beyond the datagram, never cut it short.
  if (total < ihl || total > h.frame() - off) return false;
  out.ipv4 = true;
  out.l3_len = static_cast<std::uint16_t>(ihl);
  out.l4_total = total - ihl;
  std::memcpy(out.src_addr, ip + 12, 4);
  std::memcpy(out.dst_addr, ip + 16, 4);
  // More-fragments or a fragment offset: the L4 header is absent or incomplete here.
  if ((be16(ip + 6) & 0x3fffu) != 0) {
    out.fragment = true;
    return true;
  }
  return parse_l4(h, off + ihl, off + total, ip[9], out);
}

bool parse_ipv6(const HeaderBytes& h, std::uint32_t off, ParsedHeaders& out) {
  if (!h.has(off, 40)) return false;
  const std::uint8_t* ip = h.data() + off;
  if ((ip[0] >> 4) != 6) return false;
  const std::uint32_t payload = be16(ip + 4);
  std::uint32_t ip_end = off + 40 + payload;
  // A payload length of 0 is a jumbogram (or a BIG TCP super-packet from the host stack): the
  // real length is in a hop-by-hop option; the frame's length is the only bound we need.
  if (payload == 0) ip_end = h.frame();
  if (ip_end > h.frame()) return false;
  std::memcpy(out.src_addr, ip + 8, 16);
  std::memcpy(out.dst_addr, ip + 24, 16);
  out.ipv6 = true;

  std::uint8_t next = ip[6];
  std::uint32_t cur = off + 40;
  for (unsigned n = 0;; ++n) {
    if (next != kProtoHopByHop && next != kProtoRouting && next != kProtoDestOpts && next != kProtoAh &&
        next != kProtoFragment)
      break;
    if (n == kMaxExtensionHeaders || !h.has(cur, 8) || cur + 8 > ip_end) return false;
    const std::uint8_t* ext = h.data() + cur;
    std::uint32_t len;
    if (next == kProtoFragment) {
      len = 8;
      // Offset or more-fragments set. An "atomic" fragment (both clear) is a whole datagram.
      if ((be16(ext + 2) & 0xfff9u) != 0) out.fragment = true;
    } else if (next == kProtoAh) {
      len = (ext[1] + 2u) * 4u;
    } else {
      len = (ext[1] + 1u) * 8u;
    }
    next = ext[0];
    cur += len;
    if (cur > ip_end) return false;
  }
  if (cur - off > 0xffff) return false;
  out.l3_len = static_cast<std::uint16_t>(cur - off);
  out.l4_total = ip_end - cur;
  if (out.fragment) return true;
  return parse_l4(h, cur, ip_end, next, out);
}

// Ones-complement sum of `n` bytes as big-endian 16-bit words (a trailing odd byte is the high
// half of a word), folded to 16 bits. Summed in native 32-bit words and converted at the end:
// the ones-complement sum is byte-order independent up to one final swap (RFC 1071).
std::uint16_t sum16_be(const std::uint8_t* p, std::size_t n) {
  std::uint64_t acc = 0;
  for (; n >= 4; p += 4, n -= 4) {
    std::uint32_t w;
    std::memcpy(&w, p, 4);
    acc += w;
  }
  if (n >= 2) {
    std::uint16_t w;
    std::memcpy(&w, p, 2);
    acc += w;
    p += 2;
    n -= 2;
  }
  if (n == 1) {
    // The high (first) byte of a big-endian word: at the low address of a native word.
    std::uint8_t pair[2] = {*p, 0};
    std::uint16_t w;
    std::memcpy(&w, pair, 2);
    acc += w;
  }
  while (acc >> 16) acc = (acc & 0xffff) + (acc >> 16);
  auto sum = static_cast<std::uint16_t>(acc);
  if constexpr (std::endian::native == std::endian::little) sum = std::byteswap(sum);
  return sum;
}

std::uint32_t fold_add(std::uint32_t a, std::uint32_t b) {
  std::uint32_t s = a + b;
  return (s & 0xffff) + (s >> 16);
}

// Sum of the pseudo-header (RFC 793 / RFC 8200 8.1), folded, not complemented: what a sender
// leaves in the checksum field of a partial-checksum packet.
std::uint16_t pseudo_header_sum(const ParsedHeaders& h, std::uint32_t l4_bytes) {
  std::uint8_t buf[40]{};
  std::size_t n;
  if (h.ipv4) {
    std::memcpy(buf, h.src_addr, 4);
    std::memcpy(buf + 4, h.dst_addr, 4);
    buf[9] = h.l4_proto;
    buf[10] = static_cast<std::uint8_t>(l4_bytes >> 8);
    buf[11] = static_cast<std::uint8_t>(l4_bytes);
    n = 12;
  } else {
    std::memcpy(buf, h.src_addr, 16);
    std::memcpy(buf + 16, h.dst_addr, 16);
    buf[32] = static_cast<std::uint8_t>(l4_bytes >> 24);
    buf[33] = static_cast<std::uint8_t>(l4_bytes >> 16);
    buf[34] = static_cast<std::uint8_t>(l4_bytes >> 8);
    buf[35] = static_cast<std::uint8_t>(l4_bytes);
    buf[39] = h.l4_proto;
    n = 40;
  }
  return sum16_be(buf, n);
}

}  // namespace

std::optional<ParsedHeaders> parse_headers(const PacketBuffer& pkt) {
  const HeaderBytes h(pkt);
  if (!h.has(0, kEthHeaderLen)) return std::nullopt;
  ParsedHeaders out;
  std::uint32_t off = kEthHeaderLen;
  std::uint16_t type = be16(h.data() + 12);
  for (unsigned tags = 0; tags < kMaxVlanTags && (type == kEthTypeVlan || type == kEthTypeQinQ); ++tags) {
    if (!h.has(off, 4)) return std::nullopt;
    type = be16(h.data() + off + 2);
    off += 4;
  }
  out.l2_len = static_cast<std::uint16_t>(off);
  out.ethertype = type;
  bool ok = true;
  if (type == kEthTypeIpv4) ok = parse_ipv4(h, off, out);
  else if (type == kEthTypeIpv6) ok = parse_ipv6(h, off, out);
  if (!ok) return std::nullopt;
  if (out.fragment) out.l4_proto = 0;  // as documented: no L4 for a fragment
  return out;
}

bool setup_partial_checksum(PacketBuffer& pkt) { return setup_partial_checksum(pkt, false); }

bool setup_partial_checksum(PacketBuffer& pkt, bool write_pseudo_header) {
  auto h = parse_headers(pkt);
  if (!h || (!h->ipv4 && !h->ipv6) || h->fragment) return false;
  std::uint16_t csum_offset;
  if (h->l4_proto == kProtoTcp) csum_offset = kTcpCsumOffset;
  else if (h->l4_proto == kProtoUdp) csum_offset = kUdpCsumOffset;
  else return false;
  const std::uint32_t start = std::uint32_t{h->l2_len} + h->l3_len;
  if (write_pseudo_header) {
    // A peer that sent a GSO frame without "checksum blank" (Linux netback's
    // rx_gso_checksum_fixup): the field holds nothing useful, so put the pseudo-header sum there.
    const std::uint16_t sum = pseudo_header_sum(*h, h->l4_total);
    const std::uint8_t be[2] = {static_cast<std::uint8_t>(sum >> 8), static_cast<std::uint8_t>(sum)};
    if (!copy_in(pkt, start + csum_offset, be, 2)) return false;
  }
  pkt.meta.csum_partial = true;
  pkt.meta.csum_start = static_cast<std::uint16_t>(start);
  pkt.meta.csum_offset = csum_offset;
  pkt.meta.l2_len = h->l2_len;
  pkt.meta.l3_len = h->l3_len;
  pkt.meta.l4_len = h->l4_len;
  return true;
}

bool complete_checksum(PacketBuffer& pkt) {
  if (!pkt.meta.csum_partial) return false;
  const std::uint32_t start = pkt.meta.csum_start;
  const std::uint32_t field = start + pkt.meta.csum_offset;
  const std::uint32_t frame = frame_bytes(pkt);
  if (start >= frame || field > frame || frame - field < 2) return false;

  std::uint32_t sum = 0;
  for_each_piece(pkt, start, frame - start, [&](std::byte* p, std::uint32_t n, std::uint32_t at) {
    std::uint16_t s = sum16_be(reinterpret_cast<const std::uint8_t*>(p), n);
    // A piece starting at an odd distance from csum_start pairs its bytes the other way round.
    if (((at - start) & 1u) != 0) s = std::byteswap(s);
    sum = fold_add(sum, s);
  });
  sum = fold_add(sum, 0);
  std::uint16_t csum = static_cast<std::uint16_t>(~sum);
  // 0 means "no checksum" to UDP; 0xffff is the same value in ones-complement (skb_checksum_help
  // does this for every protocol).
  if (csum == 0) csum = 0xffff;
  const std::uint8_t be[2] = {static_cast<std::uint8_t>(csum >> 8), static_cast<std::uint8_t>(csum)};
  if (!copy_in(pkt, field, be, 2)) return false;
  pkt.meta.csum_partial = false;
  pkt.meta.csum_validated = true;
  return true;
}

std::uint32_t toeplitz_hash(std::span<const std::uint8_t> key, std::span<const std::uint8_t> input) {
  // A 64-bit window over the key, its top 32 bits being the key bits starting at the input bit
  // being looked at; the key is zero-padded past its end (as Xen's xen_netif_toeplitz_hash).
  auto key_byte = [&](std::size_t i) -> std::uint64_t { return i < key.size() ? key[i] : 0; };
  std::uint64_t window = 0;
  for (std::size_t i = 0; i < 8; ++i) window = (window << 8) | key_byte(i);
  std::uint32_t hash = 0;
  for (std::size_t i = 0; i < input.size(); ++i) {
    const std::uint8_t byte = input[i];
    for (unsigned bit = 0x80; bit != 0; bit >>= 1) {
      if ((byte & bit) != 0) hash ^= static_cast<std::uint32_t>(window >> 32);
      window <<= 1;
    }
    window |= key_byte(i + 8);
  }
  return hash;
}

std::optional<FlowHash> flow_hash(const ParsedHeaders& headers, std::span<const std::uint8_t> key,
                                  std::uint32_t flags) {
  std::uint8_t input[36];
  std::size_t addr_len;
  std::uint8_t tcp_bit, addr_bit;
  if (headers.ipv4) {
    addr_len = 4;
    tcp_bit = netif::kHashTypeBitIpv4Tcp;
    addr_bit = netif::kHashTypeBitIpv4;
  } else if (headers.ipv6) {
    addr_len = 16;
    tcp_bit = netif::kHashTypeBitIpv6Tcp;
    addr_bit = netif::kHashTypeBitIpv6;
  } else {
    return std::nullopt;
  }
  std::memcpy(input, headers.src_addr, addr_len);
  std::memcpy(input + addr_len, headers.dst_addr, addr_len);
  std::size_t n = 2 * addr_len;
  std::uint8_t type;
  // Ports only of a whole TCP segment whose header we parsed (l4_len != 0).
  if ((flags & (1u << tcp_bit)) != 0 && headers.l4_proto == kProtoTcp && !headers.fragment && headers.l4_len != 0) {
    std::memcpy(input + n, &headers.src_port, 2);
    std::memcpy(input + n + 2, &headers.dst_port, 2);
    n += 4;
    type = tcp_bit;
  } else if ((flags & (1u << addr_bit)) != 0) {
    type = addr_bit;
  } else {
    return std::nullopt;
  }
  return FlowHash{toeplitz_hash(key, std::span<const std::uint8_t>(input, n)), type};
}

}  // namespace pvback::netback
