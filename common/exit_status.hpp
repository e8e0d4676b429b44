// How a child process ended, in words for logs: "exited with status 3", "was killed by signal 9
// (Killed)".
#pragma once

#include <sys/wait.h>

#include <cstring>
#include <string>

namespace seppo {

inline std::string describe_exit(int status) {
  if (WIFEXITED(status)) return "exited with status " + std::to_string(WEXITSTATUS(status));
  if (WIFSIGNALED(status)) {
    return "was killed by signal " + std::to_string(WTERMSIG(status)) + " (" +
           ::strsignal(WTERMSIG(status)) + ")";
  }
  return "stopped";
}

}  // namespace seppo
