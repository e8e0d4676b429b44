#include "common/notify.hpp"

#ifdef SEPPO_HAVE_SYSTEMD
#include <systemd/sd-daemon.h>
#endif

namespace seppo::notify {

void send(const std::string& state) {
#ifdef SEPPO_HAVE_SYSTEMD
  // unset_environment=0: the worker's children are not services, but the supervisor may
  // notify again (STOPPING=1) later.
  sd_notify(0, state.c_str());
#else
  (void)state;
#endif
}

}  // namespace seppo::notify
