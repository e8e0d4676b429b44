#include "cli/interrupt.hpp"

#include <fcntl.h>
#include <signal.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <initializer_list>

#include "seppo/stream.hpp"

namespace seppo::cli::interrupt {
namespace {

volatile sig_atomic_t arrived = 0;
int pipe_fds[2] = {-1, -1};
detail::Waker* engine_waker = nullptr;  // made by install(), never destroyed: the handler uses it

void on_signal(int number) {
  if (arrived != 0) {  // the second one: no more waiting
    ::signal(number, SIG_DFL);
    ::raise(number);
    return;
  }
  arrived = number;
  const int saved = errno;
  const char byte = 1;
  [[maybe_unused]] const ssize_t n = ::write(pipe_fds[1], &byte, 1);
  errno = saved;
  if (engine_waker != nullptr) engine_waker->wake();
}

}  // namespace

void install() {
  if (pipe_fds[0] >= 0) return;
  if (::pipe2(pipe_fds, O_CLOEXEC | O_NONBLOCK) != 0) return;  // then only the flag
  try {
    engine_waker = new detail::Waker;
  } catch (const Error&) {  // then a step notices the signal after up to half a heartbeat
  }
  struct sigaction action {};
  action.sa_handler = on_signal;
  sigemptyset(&action.sa_mask);
  action.sa_flags = SA_RESTART;
  for (const int s : {SIGINT, SIGTERM, SIGHUP}) {
    // A signal ignored when we started (nohup, a background job of a script) stays ignored.
    struct sigaction old {};
    if (::sigaction(s, nullptr, &old) == 0 && old.sa_handler == SIG_IGN) continue;
    ::sigaction(s, &action, nullptr);
  }
}

int fd() {
  return pipe_fds[0];
}

bool step(detail::Engine& engine) {
  return engine_waker != nullptr ? engine.step(*engine_waker) : engine.step();
}

int pending() {
  return arrived;
}

void check() {
  if (arrived != 0) throw Interrupted{arrived};
}

void die(int signal) {
  ::signal(signal, SIG_DFL);
  ::raise(signal);
  std::_Exit(128 + signal);
}

}  // namespace seppo::cli::interrupt
