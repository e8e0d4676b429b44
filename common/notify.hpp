// Tells systemd how a Type=notify service is doing (READY=1, STOPPING=1, STATUS=...). Does
// nothing outside systemd ($NOTIFY_SOCKET unset).
#pragma once

#include <string>

namespace seppo::notify {

// `state` is sd_notify's text, e.g. "READY=1\nSTATUS=listening on tcp://127.0.0.1:5555".
void send(const std::string& state);

}  // namespace seppo::notify
