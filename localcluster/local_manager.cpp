// The program's handle on its local cluster's worker manager (localcluster/local_manager.hpp):
// forks it, sends it requests and waits for the replies, stops it.
#include "localcluster/local_manager.hpp"

#include <poll.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <tuple>

#include "localcluster/local_keeper.hpp"
#include "seppo/convert.hpp"
#include "seppo/error.hpp"

namespace seppo::local {
namespace {

using Clock = std::chrono::steady_clock;
using Packer = msgpack::packer<msgpack::sbuffer>;

}  // namespace

Manager::Manager(const ManagerOptions& options)
    : owner_(::getpid()), stop_grace_(options.stop_grace) {
  int fds[2];
  if (::socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, fds) != 0) {
    throw Error(std::string("cannot start a local cluster: socketpair: ") + std::strerror(errno));
  }
  // What the program wrote but did not flush would otherwise be written again by a worker.
  std::fflush(nullptr);
  const pid_t pid = ::fork();
  if (pid < 0) {
    const int error = errno;
    ::close(fds[0]);
    ::close(fds[1]);
    throw Error(std::string("cannot start a local cluster: fork: ") + std::strerror(error));
  }
  if (pid == 0) {
    ::close(fds[0]);
    become_manager(fds[1], options, owner_);
  }
  ::close(fds[1]);
  pid_ = pid;
  fd_ = fds[0];
}

Manager::~Manager() {
  stop();
}

namespace {

template <class T>
T reply_value(const msgpack::object_handle& reply) {
  try {
    return reply.get().via.array.ptr[1].as<T>();
  } catch (const msgpack::type_error&) {
    throw ProtocolError("the local cluster's worker manager answered a value of another type");
  }
}

}  // namespace

msgpack::object_handle Manager::request(const std::string& command, const std::string& argument,
                                        std::uint64_t number, std::chrono::milliseconds timeout) {
  const std::string gone =
      "the local cluster's worker manager (process " + std::to_string(pid_) + ") ";
  if (fd_ < 0) throw ConnectionError(gone + "was stopped");
  msgpack::sbuffer buffer;
  Packer(buffer).pack(std::make_tuple(command, argument, number));
  if (!send_message(fd_, buffer)) {
    throw ConnectionError(gone + "is gone: " + std::strerror(errno));
  }
  pollfd fd{fd_, POLLIN, 0};
  const auto deadline = Clock::now() + timeout;
  while (true) {
    const auto left =
        std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now()).count();
    if (left <= 0) {
      // Its late answer would be taken for the next request's: this manager is done. Closing
      // our end also makes it stop its workers.
      ::close(fd_);
      fd_ = -1;
      throw ConnectionError(gone + "did not answer '" + command + "'");
    }
    if (::poll(&fd, 1, static_cast<int>(left)) > 0) break;
  }
  std::vector<char> reply(kMaxMessage);
  const ssize_t n = ::recv(fd_, reply.data(), reply.size(), 0);
  if (n <= 0) throw ConnectionError(gone + "is gone");
  msgpack::object_handle handle = unpack_untrusted(reply.data(), static_cast<std::size_t>(n));
  // Every answer is ["ok", value] or ["error", message].
  const msgpack::object& o = handle.get();
  if (o.type != msgpack::type::ARRAY || o.via.array.size != 2 ||
      o.via.array.ptr[0].type != msgpack::type::STR) {
    throw ProtocolError(gone + "answered '" + command + "' with something else than a reply");
  }
  if (o.via.array.ptr[0].as<std::string>() != "ok") {
    const msgpack::object& why = o.via.array.ptr[1];
    throw Error(why.type == msgpack::type::STR ? why.as<std::string>() : command + " failed");
  }
  return handle;
}

std::vector<std::string> Manager::load(const std::string& path) {
  // dlopen runs the module's static initialisers: give them time.
  msgpack::object_handle reply = request("load", path, 0, std::chrono::seconds(60));
  return reply_value<std::vector<std::string>>(reply);
}

std::vector<std::string> Manager::load_python(const std::string& module,
                                              const std::string& folder) {
  // The module is imported by seppo-worker to list its functions: give the import time.
  msgpack::object_handle reply =
      request("python", module + std::string(1, '\0') + folder, 0, std::chrono::seconds(60));
  return reply_value<std::vector<std::string>>(reply);
}

std::vector<pid_t> Manager::start(unsigned processes) {
  msgpack::object_handle reply = request("start", "", processes, std::chrono::seconds(30));
  const auto pids = reply_value<std::vector<std::int64_t>>(reply);
  return std::vector<pid_t>(pids.begin(), pids.end());
}

std::vector<pid_t> Manager::pids() {
  msgpack::object_handle reply = request("pids", "", 0, std::chrono::seconds(10));
  const auto pids = reply_value<std::vector<std::int64_t>>(reply);
  return std::vector<pid_t>(pids.begin(), pids.end());
}

void Manager::stop() noexcept {
  if (fd_ < 0) return;
  if (::getpid() != owner_) {  // a fork of the program: the cluster is not its to stop
    ::close(fd_);
    fd_ = -1;
    return;
  }
  try {
    request("stop", "", 0, stop_grace_ + std::chrono::seconds(5));
  } catch (...) {
    // It does not answer: the process group below ends it and its workers alike.
  }
  ::close(fd_);
  fd_ = -1;
  const auto deadline = Clock::now() + std::chrono::seconds(2);
  while (true) {
    int status = 0;
    const pid_t done = ::waitpid(pid_, &status, WNOHANG);
    if (done == pid_ || (done < 0 && errno != EINTR)) return;  // ECHILD: reaped by a handler
    if (Clock::now() >= deadline) break;
    ::usleep(5000);
  }
  ::kill(-pid_, SIGKILL);
  ::kill(pid_, SIGKILL);
  while (::waitpid(pid_, nullptr, 0) < 0 && errno == EINTR) {
  }
}

}  // namespace seppo::local
