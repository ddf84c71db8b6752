#include "storage/engine.hpp"

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

}  // namespace pvback::storage
