#include "storage/engine.hpp"

#include <cerrno>

namespace pvback::storage {

const char* op_name(Op op) {
  switch (op) {
    case Op::Read: return "read";
    case Op::Write: return "write";
    case Op::Flush: return "flush";
    case Op::Discard: return "discard";
    case Op::SecureDiscard: return "secure discard";
    case Op::WriteZeroes: return "write zeroes";
  }
  return "?";
}

int refusal(const Capabilities& caps, Op op) {
  if (caps.read_only && op != Op::Read && op != Op::Flush) return EROFS;
  if ((op == Op::Discard && !caps.discard) || (op == Op::SecureDiscard && !caps.secure_discard) ||
      (op == Op::WriteZeroes && !caps.write_zeroes))
    return EOPNOTSUPP;
  return 0;
}

}  // namespace pvback::storage
