// All of msgpack-cxx's adaptors, after seppo's float rules (seppo/msgpack.hpp): for inputs or
// results of the types <seppo/seppo.hpp> leaves out to compile faster (std::complex, std::list,
// std::forward_list, std::set, std::unordered_set, std::span). Include it first, or at least
// before any other msgpack header.
#pragma once

#include "seppo/msgpack.hpp"  // first: its explicit specializations come before any use

#include <msgpack.hpp>
