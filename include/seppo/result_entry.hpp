// Result entries, one per item of a RESULT or DELIVER payload (docs/protocol.md §5.2):
// [0, value] for success, [1, message] for an item that failed. The one encoder and decoder of
// that shape: header-only because module.hpp, compiled into every module, writes entries too;
// protocol/result_entry.hpp builds on it for the programs.
#pragma once

#include <cstdint>
#include <string>

#include "seppo/msgpack.hpp"

namespace seppo::entry {

inline constexpr std::uint64_t kValue = 0;
inline constexpr std::uint64_t kError = 1;

// Starts a success entry; the caller packs (or writes the packed bytes of) exactly one value.
template <class Packer>
void begin_value(Packer& packer) {
  packer.pack_array(2).pack(kValue);
}

template <class Packer>
void pack_nil(Packer& packer) {
  begin_value(packer);
  packer.pack_nil();
}

template <class Packer>
void pack_error(Packer& packer, const std::string& message) {
  packer.pack_array(2).pack(kError).pack(message);
}

// One decoded entry: `value` points into the entry (its zone must outlive it), or `error` says
// why the item failed, including for an entry that does not have the shape of one.
struct Decoded {
  const msgpack::object* value = nullptr;
  std::string error;
};

inline Decoded decode(const msgpack::object& entry) {
  Decoded out;
  if (entry.type != msgpack::type::ARRAY || entry.via.array.size != 2 ||
      entry.via.array.ptr[0].type != msgpack::type::POSITIVE_INTEGER) {
    out.error = "malformed result entry";
  } else if (entry.via.array.ptr[0].via.u64 == kValue) {
    out.value = &entry.via.array.ptr[1];
  } else {
    const msgpack::object& m = entry.via.array.ptr[1];
    out.error = m.type == msgpack::type::STR ? std::string(m.via.str.ptr, m.via.str.size)
                                             : std::string("error without a message");
  }
  return out;
}

}  // namespace seppo::entry
