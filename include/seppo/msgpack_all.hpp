// All of msgpack-cxx's adaptors, after seppo's float rules (seppo/msgpack.hpp): for inputs or
// results of the type <seppo/seppo.hpp> leaves out to compile faster (std::complex). Include it first, or at least
// before any other msgpack header.
#pragma once

#include "seppo/msgpack.hpp"  // first: its explicit specializations come before any use

#include <msgpack.hpp>
