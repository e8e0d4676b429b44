#include "common/signals.hpp"

#include <fcntl.h>
#include <signal.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <stdexcept>
#include <string>

namespace seppo {
namespace {

int write_fd = -1;

void on_signal(int number) {
  const int saved = errno;
  const unsigned char byte = static_cast<unsigned char>(number);
  [[maybe_unused]] ssize_t n = ::write(write_fd, &byte, 1);
  errno = saved;
}

}  // namespace

SignalPipe::SignalPipe(std::initializer_list<int> signals) {
  int fds[2];
  if (::pipe2(fds, O_CLOEXEC | O_NONBLOCK) != 0) {
    throw std::runtime_error(std::string("pipe: ") + std::strerror(errno));
  }
  read_fd_ = fds[0];
  write_fd = fds[1];
  struct sigaction action {};
  action.sa_handler = on_signal;
  sigemptyset(&action.sa_mask);
  action.sa_flags = SA_RESTART;
  for (int s : signals) ::sigaction(s, &action, nullptr);
}

SignalPipe::~SignalPipe() {
  ::close(read_fd_);
  ::close(write_fd);
  write_fd = -1;
}

int SignalPipe::take() {
  unsigned char byte = 0;
  return ::read(read_fd_, &byte, 1) == 1 ? byte : 0;
}

}  // namespace seppo
