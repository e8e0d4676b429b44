// seppo-worker -j N: N worker processes from one command, each announced separately, restarted
// when they die so a host keeps serving (a poison item may kill a worker; the host stays up).
#pragma once

#include <chrono>
#include <functional>

namespace seppo::worker {

// A worker process's own reasons to exit reach its supervisor over a pipe, told just before it
// exits: an exit status alone could be a function's (Python's os._exit(78), a module's exit(0)),
// and a function's exit is a crash, restarted like any other.
struct SupervisorOptions {
  unsigned processes = 1;
  // Restarts within this window count towards the crash-loop backoff.
  std::chrono::milliseconds restart_window{10000};
  std::chrono::milliseconds stop_grace{30000};  // after SIGTERM, before children are killed
  // A child that told this status and exits with it can never serve (the broker refuses its key as
  // a worker's): it is not restarted, and the supervisor then exits with status 1.
  int no_restart_status = -1;
  // A child that told this status and exits with it is done (seppo-worker --exit-when-idle): it is
  // not restarted, and the supervisor exits 0 once all children are done. -1: restart every child.
  int done_status = -1;
  // A child that told this status and exits with it asked to be replaced (it abandoned a task the
  // broker cancelled): restarted at once, without counting towards the crash-loop backoff.
  int replace_status = -1;
  // SIGHUP: called to check the new configuration (say, module files replaced) and log what
  // changed; when it returns true, the children are replaced one at a time: each is sent SIGTERM
  // (it finishes its running task and returns the rest) and a new one started once it exited.
  // Without it, SIGHUP is logged and ignored.
  std::function<bool()> reload;
};

// Forks the children (each runs `child` and exits with its status), restarts the ones that die,
// forwards SIGINT/SIGTERM and waits for them, replaces them on SIGHUP (see `reload`). Call before
// any ZeroMQ context exists: contexts must not cross fork(). Returns the exit status.
int supervise(const SupervisorOptions& options, const std::function<int()>& child);

// In a supervised child: tells the supervisor `status` is this process's own decision, then
// exits with it (_exit: no destructors, another thread may be inside a function). Outside a
// supervised child it only exits.
[[noreturn]] void exit_process(int status);

// The same channel for a keeper that forks worker processes itself (the local cluster's): a
// pipe per child, made before the fork. In the child: tell_status_on(its write end), after
// closing the read end; in the keeper: close the write end and, once the child was reaped,
// told_status(the read end), which closes it. Returns -1 when the child told nothing (a
// function ended the process, whatever status it chose).
bool open_status_pipe(int fds[2]);
void tell_status_on(int fd);
int told_status(int fd);

}  // namespace seppo::worker
