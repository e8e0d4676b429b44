// The build's version, so that mixed versions in a cluster are visible: in every program's
// --version, the broker's STATUS and the first line of each log.
#pragma once

#include <string>

namespace seppo {

// `git describe` of the source tree when built from git (0.1.0-12-g1543c72, or 0.1.0+g1543c72
// before the first tag; "-dirty" with uncommitted changes), else meson's -Dbuild_version (the
// Debian package passes its version), else the project version.
const char* build_version();

// "PROGRAM VERSION (protocol N)": N is the wire protocol level (docs/protocol.md §13).
std::string version_line(const std::string& program, unsigned protocol);

}  // namespace seppo
