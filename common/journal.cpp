#include "common/journal.hpp"

#include <sys/uio.h>

#include <string>
#include <vector>

#ifdef SEPPO_HAVE_SYSTEMD
// The line's place in this file says nothing about its event: no CODE_FILE= and friends.
#define SD_JOURNAL_SUPPRESS_LOCATION
#include <systemd/sd-journal.h>
#endif

#include "common/log.hpp"

namespace seppo::journal {
namespace {

#ifdef SEPPO_HAVE_SYSTEMD
bool send(int priority, const std::string& program, const std::string& message,
          const log::Fields& fields) {
  std::vector<std::string> entries;
  entries.reserve(fields.size() + 3);
  entries.push_back("MESSAGE=" + message);
  entries.push_back("PRIORITY=" + std::to_string(priority));
  entries.push_back("SYSLOG_IDENTIFIER=" + program);
  for (const log::Field& f : fields) {
    if (!f.value.empty()) entries.push_back(f.name + "=" + f.value);
  }
  std::vector<iovec> iov;
  iov.reserve(entries.size());
  for (std::string& e : entries) iov.push_back(iovec{e.data(), e.size()});
  return sd_journal_sendv(iov.data(), static_cast<int>(iov.size())) == 0;
}
#endif

}  // namespace

void install() {
#ifdef SEPPO_HAVE_SYSTEMD
  log::set_journal_sink(&send);
#endif
}

}  // namespace seppo::journal
