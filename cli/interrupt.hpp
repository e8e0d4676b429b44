// Ctrl-C (SIGINT) and SIGTERM for `seppo map`: the first one asks the job to end at once (the
// broker is told, DONE, so its workers stop at once; --local commands are killed), then the
// command dies of that signal as any program would. A second one kills at once.
#pragma once

namespace seppo::detail {
class Engine;
}

namespace seppo::cli {

// Thrown once the job was cancelled because of a signal; main() then dies of it.
struct Interrupted {
  int signal = 0;
};

namespace interrupt {

// Installs the handlers (SIGINT, SIGTERM, SIGHUP). Idempotent.
void install();
// Readable once a signal arrived: for a poll(2) that must end then.
int fd();
// engine.step(), woken when a signal arrives: call check() once it returns.
bool step(detail::Engine& engine);
// The signal that arrived, or 0.
int pending();
// Throws Interrupted when a signal arrived.
void check();
// Restores the default action of `signal` and raises it: the exit status says what killed us.
[[noreturn]] void die(int signal);

}  // namespace interrupt
}  // namespace seppo::cli
