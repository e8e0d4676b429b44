#include "worker/module_probe.hpp"

#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <set>
#include <stdexcept>

#include "common/exit_status.hpp"
#include "worker/module_loader.hpp"

namespace seppo::worker {
namespace {

void write_all(int fd, const std::string& text) {
  std::size_t done = 0;
  while (done < text.size()) {
    const ssize_t n = ::write(fd, text.data() + done, text.size() - done);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return;
    done += static_cast<std::size_t>(n);
  }
}

}  // namespace

ProbeResult probe_modules(const std::vector<std::string>& paths) {
  ProbeResult result;
  int fds[2];
  if (::pipe(fds) != 0) {
    result.error = std::string("pipe: ") + std::strerror(errno);
    return result;
  }
  const pid_t pid = ::fork();
  if (pid < 0) {
    ::close(fds[0]);
    ::close(fds[1]);
    result.error = std::string("fork: ") + std::strerror(errno);
    return result;
  }
  if (pid == 0) {
    // Line 1: "ok" or "error MESSAGE"; then one function name per line.
    ::close(fds[0]);
    std::string out;
    try {
      std::set<std::string> names;
      std::string list;
      for (const std::string& path : paths) {
        for (const Function& f : load_module(path)) {
          if (!names.insert(f.name).second) {
            throw std::runtime_error("function " + f.name + " is provided by two modules");
          }
          list += f.name + "\n";
        }
      }
      out = "ok\n" + list;
    } catch (const std::exception& e) {
      std::string message = e.what();
      std::replace(message.begin(), message.end(), '\n', ' ');
      out = "error " + message + "\n";
    }
    write_all(fds[1], out);
    ::_exit(0);
  }
  ::close(fds[1]);
  std::string text;
  char buffer[4096];
  while (true) {
    const ssize_t n = ::read(fds[0], buffer, sizeof buffer);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;
    text.append(buffer, static_cast<std::size_t>(n));
  }
  ::close(fds[0]);
  int status = 0;
  while (::waitpid(pid, &status, 0) < 0 && errno == EINTR) {
  }
  if (text.rfind("ok\n", 0) == 0) {
    std::size_t at = 3;
    while (at < text.size()) {
      const std::size_t end = text.find('\n', at);
      result.functions.push_back(text.substr(at, end - at));
      at = end == std::string::npos ? text.size() : end + 1;
    }
  } else if (text.rfind("error ", 0) == 0) {
    result.error = text.substr(6, text.size() - 7);
  } else {
    result.error = "loading the modules " + describe_exit(status);
  }
  return result;
}

std::string describe_change(const std::vector<std::string>& before,
                            const std::vector<std::string>& after) {
  const std::set<std::string> old_names(before.begin(), before.end());
  const std::set<std::string> new_names(after.begin(), after.end());
  std::string added, removed;
  for (const std::string& name : new_names) {
    if (!old_names.count(name)) added += (added.empty() ? "" : ", ") + name;
  }
  for (const std::string& name : old_names) {
    if (!new_names.count(name)) removed += (removed.empty() ? "" : ", ") + name;
  }
  std::string text;
  if (!added.empty()) text = "added " + added;
  if (!removed.empty()) text += (text.empty() ? "" : "; ") + std::string("removed ") + removed;
  return text;
}

}  // namespace seppo::worker
