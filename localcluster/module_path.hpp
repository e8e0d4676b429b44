// Where a local cluster finds the module of "mod.fn", as Python finds an import: the folders of
// SEPPO_MODULE_PATH in order, then the folder modules are installed in.
#pragma once

#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "seppo/error.hpp"

// Internal to libseppo: not exported.
#pragma GCC visibility push(hidden)

namespace seppo::local {

inline constexpr const char* kModulePathVariable = "SEPPO_MODULE_PATH";

// "mod.fn" -> {"mod", "fn"}; "a.b.fn" -> {"a.b", "fn"} (function names have no dots). Throws
// UnknownFunctionError for a name without both parts or whose module is not a plain file name:
// the module part becomes part of a path.
std::pair<std::string, std::string> split_function(std::string_view function);

// The folders of a SEPPO_MODULE_PATH value (colon-separated; empty entries are skipped rather
// than read as the current folder, which would make running from another folder load other
// code), followed by `installed` when it is not empty.
std::vector<std::string> module_folders(std::string_view module_path, const std::string& installed);

// The first existing file among DIR/lib<module>.so and DIR/<module>/lib<module>.so (a module in
// its own folder, as meson builds it), for each DIR of `folders` in order; made absolute.
std::optional<std::string> find_module(const std::string& module,
                                       const std::vector<std::string>& folders);

// A Python module served by `seppo-worker --python`: the first DIR/<module>.py or
// DIR/<module>/__init__.py ("a.b" is DIR/a/b.py) for each DIR of `folders`; returns that file
// and DIR (the folder the worker must import from), both absolute.
struct PythonModule {
  std::string file;
  std::string folder;
};
std::optional<PythonModule> find_python_module(const std::string& module,
                                               const std::vector<std::string>& folders);

// The seppo-worker program that serves Python modules: $SEPPO_WORKER, else the build tree's
// when this program is in one (build/cli/seppo: build/worker/seppo-worker), else the installed
// one (PREFIX/BINDIR), else the one beside this program, else "seppo-worker" from PATH.
std::string worker_program();

// The error for a module found nowhere: names what was looked for and every folder searched.
UnknownFunctionError module_not_found(const std::string& function, const std::string& module,
                                      const std::vector<std::string>& folders);

// Where `meson install` puts modules: PREFIX/LIBDIR/seppo/modules.
const char* installed_module_folder();

}  // namespace seppo::local

#pragma GCC visibility pop
