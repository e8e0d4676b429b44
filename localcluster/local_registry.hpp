// The modules compiled into this program (SEPPO_LOCAL_MODULE), and where "mod.fn" comes from
// for local clusters and map_parallel_serial: the program first, then module files.
#pragma once

#include <optional>
#include <string>
#include <vector>

#include "worker/module_loader.hpp"

// Internal to libseppo: not exported.
#pragma GCC visibility push(hidden)

namespace seppo::local {

struct RegisteredModule {
  std::string name;
  std::vector<worker::Function> functions;  // named "<module>.<function>"
};

// A copy, in registration order.
std::vector<RegisteredModule> registered_modules();

// The module that provides `function` ("mod.fn") for this process.
struct ModuleSource {
  std::string function;  // "mod.fn"
  std::string module;    // "mod"
  bool registered = false;
  std::string file;  // the module's file when not registered
  // A Python module (file is its .py), served by seppo-worker --python importing from folder.
  bool python = false;
  std::string folder;
  // A Python module found in no folder (builtins, the standard library: time, math...), which
  // seppo-worker --python imports by name; `missing` is the error if it cannot.
  bool by_name = false;
  std::string missing;
};

// Resolves `function`'s module: registered in this program, else found in the folders of
// `module_path` (a SEPPO_MODULE_PATH value), then the installed module folder; failing those,
// a Python module (<mod>.py) in the same folders, else a Python module imported by name
// (by_name), whose failure to load is the UnknownFunctionError naming the folders searched.
ModuleSource locate(std::string_view function, const std::string& module_path);
// The same for a module named without a function; `function` is only for messages.
ModuleSource locate_module(const std::string& module, const std::string& function,
                           const std::string& module_path);

// Throws UnknownFunctionError unless `names` (a module's "<module>.<function>"s) holds
// `source.function`.
void check_provides(const ModuleSource& source, const std::vector<std::string>& names);

}  // namespace seppo::local

#pragma GCC visibility pop
