#include "localcluster/local_registry.hpp"

#include <algorithm>
#include <mutex>

#include "localcluster/module_path.hpp"
#include "seppo/local_cluster.hpp"

namespace seppo {
namespace local {
namespace {

struct Registry {
  std::mutex mutex;
  std::vector<RegisteredModule> modules;
};

// Built on first use: registrations run during static initialisation, in no fixed order.
Registry& registry() {
  static Registry r;
  return r;
}

}  // namespace

std::vector<RegisteredModule> registered_modules() {
  Registry& r = registry();
  std::lock_guard lock(r.mutex);
  return r.modules;
}

ModuleSource locate(std::string_view function, const std::string& module_path) {
  return locate_module(split_function(function).first, std::string(function), module_path);
}

ModuleSource locate_module(const std::string& module, const std::string& function,
                           const std::string& module_path) {
  ModuleSource source{function, module, false, "", false, "", false, ""};
  for (const RegisteredModule& m : registered_modules()) {
    if (m.name == module) {
      source.registered = true;
      return source;
    }
  }
  const std::vector<std::string> folders = module_folders(module_path, installed_module_folder());
  std::optional<std::string> file = find_module(module, folders);
  if (!file) {
    // A compiled module wins over a Python one of the same name, as a C++ worker's would.
    std::optional<PythonModule> python = find_python_module(module, folders);
    source.python = true;
    if (!python) {
      // Perhaps a module Python has without a file of its own (builtins, time, math): the
      // Python workers import it by name; if they cannot, this is the error.
      source.by_name = true;
      source.file = "imported by name";
      source.missing = module_not_found(function, module, folders).what();
      return source;
    }
    source.file = std::move(python->file);
    source.folder = std::move(python->folder);
    return source;
  }
  source.file = std::move(*file);
  return source;
}

void check_provides(const ModuleSource& source, const std::vector<std::string>& names) {
  if (std::find(names.begin(), names.end(), source.function) != names.end()) return;
  std::string list;
  for (const std::string& n : names) list += (list.empty() ? "" : ", ") + n;
  const std::string where = source.registered ? "registered in this program"
                            : source.python   ? "Python, " + source.file
                                              : "from " + source.file;
  throw UnknownFunctionError(source.function, source.function + ": module " + source.module + " (" +
                                                  where + ") has no such function; it has " + list);
}

}  // namespace local

bool detail::register_local_module(const char* module, const seppo_function_v1* functions,
                                   std::size_t count) noexcept {
  try {
    local::RegisteredModule m{module, {}};
    for (std::size_t i = 0; i < count; ++i) {
      m.functions.push_back(worker::Function{m.name + "." + functions[i].name,
                                             functions[i].signature ? functions[i].signature : "",
                                             functions[i].call_chunk});
      m.functions.back().inline_ok = true;  // a C++ module's: may run on the loop's thread
    }
    local::Registry& r = local::registry();
    std::lock_guard lock(r.mutex);
    // A second registration of a name replaces the first: as with Python's modules, one wins.
    std::erase_if(r.modules,
                  [&](const local::RegisteredModule& old) { return old.name == m.name; });
    r.modules.push_back(std::move(m));
    return true;
  } catch (...) {
    return false;  // out of memory before main(): the module is simply not there
  }
}

}  // namespace seppo
