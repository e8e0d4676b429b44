// Loading modules: shared objects whose functions a worker's operator chose to expose.
#pragma once

#include <string>
#include <vector>

#include "seppo/module_abi.h"

namespace seppo::worker {

struct Function {
  std::string name;  // "<module>.<function>"
  std::string signature;
  seppo_call_chunk call_chunk = nullptr;
};

// "path/to/libexample_module.so" -> "example_module".
std::string module_name(const std::string& path);

// Loads a module and returns its functions. Throws std::runtime_error with a one-line message
// naming the file when it cannot be opened, is not a seppo module, or exports no functions.
std::vector<Function> load_module(const std::string& path);

}  // namespace seppo::worker
