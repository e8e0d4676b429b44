// The two ends of a local cluster's worker manager (local_manager.hpp) and what they share:
// the forked process (local_keeper.cpp) and the program's handle on it (local_manager.cpp).
// Internal to libseppo.
#pragma once

#include <sys/socket.h>
#include <sys/types.h>

#include <cstddef>

#include "seppo/msgpack.hpp"

#include "localcluster/local_manager.hpp"

#pragma GCC visibility push(hidden)

namespace seppo::local {

// One msgpack message per SOCK_SEQPACKET datagram, in each direction: a request
// [command, argument, number], a reply ["ok", value] or ["error", message].
inline constexpr std::size_t kMaxMessage = 1 << 16;

inline bool send_message(int fd, const msgpack::sbuffer& buffer) {
  return ::send(fd, buffer.data(), buffer.size(), MSG_NOSIGNAL) ==
         static_cast<ssize_t>(buffer.size());
}

// The fresh manager process, forked by Manager's constructor with `fd` its end of the socket
// pair: it drops what it inherited from the program (`parent`) that it must not use, runs the
// keeper of the workers until the program or its socket is gone, and ends in _exit.
[[noreturn]] void become_manager(int fd, const ManagerOptions& options, pid_t parent);

}  // namespace seppo::local

#pragma GCC visibility pop
