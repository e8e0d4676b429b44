// seppo keygen: a CurveZMQ key pair, in a folder made private when it has to be made.
#pragma once

#include <cstdio>
#include <string>

namespace seppo::cli {

// Writes NAME.key_secret and NAME.key, making NAME's missing folders first (mode 0700: they
// will hold a secret key), and says what it did on `out`. Throws std::exception on failure.
void run_keygen(const std::string& name, bool force, std::FILE* out);

}  // namespace seppo::cli
