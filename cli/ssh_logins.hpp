// `seppo map -S host1,host2` and `--slf FILE` (GNU parallel's --sshlogin, --sshloginfile): the job
// starts its own broker on a private ipc:// socket of this host and seppo-worker on each host over
// ssh (seppo-ssh-workers run), each worker reaching the broker through a reverse tunnel of its
// ssh session, and stops them all when the job ends.
#pragma once

#include <sys/types.h>

#include <string>
#include <vector>

namespace seppo::cli {

// The logins of -S values (comma-separated, repeatable; ".." reads ~/.parallel/sshloginfile, or
// $XDG_CONFIG_HOME/parallel/sshloginfile) and --slf files (one a line, # comments; ".." as for
// -S, "." /etc/parallel/sshloginfile, a missing FILE is looked for in ~/.parallel as parallel
// does), as seppo-ssh-workers' host file lines: "host",
// "user@host", "N/host", ":" (this host, no ssh). With `jobs` > 0 (seppo map -j N) a login
// without N/ gets N/. Throws seppo::Error for a login parallel's forms seppo does not take
// ("ssh -p 2222 host", "@group/host").
std::string ssh_login_lines(const std::vector<std::string>& sshlogins,
                            const std::vector<std::string>& files, unsigned jobs);

struct SshWorkersOptions {
  std::string ssh;  // --ssh / $PARALLEL_SSH: the ssh program and options, or empty
  std::vector<std::string> worker_args;  // seppo-worker's options (--command NAME=TEMPLATE...)
  std::string local_shell;               // --shell for the worker on this host (":") only, or empty
};

// The broker and the workers of one seppo map -S. Starting returns once every worker process
// has registered, or throws seppo::Error (seppo-ssh-workers names the failing hosts on stderr).
// The destructor stops the workers (their sessions end), then the broker, and removes the
// private folder.
class SshWorkers {
 public:
  SshWorkers(const std::string& login_lines, const SshWorkersOptions& options);
  ~SshWorkers();
  SshWorkers(const SshWorkers&) = delete;
  SshWorkers& operator=(const SshWorkers&) = delete;

  const std::string& endpoint() const { return endpoint_; }

 private:
  void stop();
  std::string folder_;
  std::string endpoint_;
  pid_t broker_ = -1;
  pid_t runner_ = -1;
  int runner_stdin_ = -1;
};

}  // namespace seppo::cli
