// seppo-worker --python MODULE: a Python module's public functions served like a C++ module's.
#pragma once

#include <string>
#include <vector>

#include "worker/module_loader.hpp"

namespace seppo::worker {

// The public module-level functions of Python module `module` (found in SEPPO_MODULE_PATH's
// folders, then PYTHONPATH and sys.path, then the current folder), named "module.fn".
//
// The names are read by a short-lived child process, so the supervisor itself never starts
// an interpreter (forking one is unsafe); each worker process starts its own
// (import_python_modules). Throws std::runtime_error naming the module when it cannot be imported
// or has no functions.
std::vector<Function> python_functions(const std::string& module);

// Imports `modules` in this worker process now, starting its interpreter, rather than on each
// one's first call: a process then serves the files as they were when it started (and as
// SIGHUP checked them), not as they are when its first item comes. An import error is kept and
// becomes each call's error, as on a first call.
void import_python_modules(const std::vector<std::string>& modules);

}  // namespace seppo::worker
