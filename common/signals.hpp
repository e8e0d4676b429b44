// Signals as readable events: handlers write the signal number to a pipe that the socket loop
// polls next to its sockets, so no flag is ever checked too late and no syscall is interrupted.
#pragma once

#include <initializer_list>

namespace seppo {

class SignalPipe {
 public:
  explicit SignalPipe(std::initializer_list<int> signals);
  ~SignalPipe();
  SignalPipe(const SignalPipe&) = delete;
  SignalPipe& operator=(const SignalPipe&) = delete;

  int fd() const { return read_fd_; }
  // The next pending signal number, or 0 if none.
  int take();

 private:
  int read_fd_ = -1;
};

}  // namespace seppo
