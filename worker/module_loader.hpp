// Loading modules: shared objects whose functions a worker's operator chose to expose.
#pragma once

#include <cstddef>
#include <functional>
#include <string>
#include <vector>

#include "seppo/module_abi.h"

namespace seppo::worker {

struct Function {
  std::string name;  // "<module>.<function>", or a --command's name as the operator gave it
  std::string signature;
  seppo_call_chunk call_chunk = nullptr;
  // Set instead of call_chunk by functions that are not a module's and carry state (a worker's
  // --command); same contract as seppo_call_chunk.
  std::function<int(const char*, std::size_t, seppo_sink*)> call = {};
  // True when the function stops soon after Executor::abandon_flag() is set (a --command: its
  // process group is killed); a module function cannot be stopped inside its process.
  bool interruptible = false;
  // True only for a C++ module's function: it may run on the socket loop's thread as well as on
  // the executor's (a lone task, worker/session.cpp). A --command runs in a process of its own
  // and goes to the executor's thread; a --python function stays on the executor's thread, so
  // that it always runs on the same Python thread whatever the load.
  bool inline_ok = false;

  int invoke(const char* input, std::size_t size, seppo_sink* output) const {
    return call ? call(input, size, output) : call_chunk(input, size, output);
  }
};

// "path/to/libexample_module.so" -> "example_module".
std::string module_name(const std::string& path);

// Loads a module and returns its functions. Throws std::runtime_error with a one-line message
// naming the file when it cannot be opened, is not a seppo module, or exports no functions.
std::vector<Function> load_module(const std::string& path);

}  // namespace seppo::worker
