#include "localcluster/module_path.hpp"

#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <system_error>

namespace seppo::local {

std::pair<std::string, std::string> split_function(std::string_view function) {
  const std::size_t dot = function.rfind('.');
  if (dot == std::string_view::npos || dot == 0 || dot + 1 == function.size()) {
    throw UnknownFunctionError(
        std::string(function),
        "'" + std::string(function) + "' is not a function name of the form module.function");
  }
  std::string module(function.substr(0, dot));
  if (module.find('/') != std::string::npos || module.find('\0') != std::string::npos ||
      module.front() == '.') {
    throw UnknownFunctionError(
        std::string(function),
        "'" + module + "' (in '" + std::string(function) + "') is not a module name");
  }
  return {std::move(module), std::string(function.substr(dot + 1))};
}

std::vector<std::string> module_folders(std::string_view module_path,
                                        const std::string& installed) {
  std::vector<std::string> folders;
  while (!module_path.empty()) {
    const std::size_t colon = module_path.find(':');
    const std::string_view entry = module_path.substr(0, colon);
    if (!entry.empty()) folders.emplace_back(entry);
    if (colon == std::string_view::npos) break;
    module_path.remove_prefix(colon + 1);
  }
  if (!installed.empty()) folders.push_back(installed);
  return folders;
}

std::optional<std::string> find_module(const std::string& module,
                                       const std::vector<std::string>& folders) {
  namespace fs = std::filesystem;
  const std::string file = "lib" + module + ".so";
  for (const std::string& folder : folders) {
    for (const fs::path& candidate : {fs::path(folder) / file, fs::path(folder) / module / file}) {
      std::error_code error;
      if (!fs::is_regular_file(candidate, error)) continue;
      const fs::path absolute = fs::absolute(candidate, error);
      return (error ? candidate : absolute).lexically_normal().string();
    }
  }
  return std::nullopt;
}

std::optional<PythonModule> find_python_module(const std::string& module,
                                               const std::vector<std::string>& folders) {
  namespace fs = std::filesystem;
  fs::path relative;
  std::string_view rest = module;
  while (true) {  // "a.b" -> a/b: a package's module, as Python imports it
    const std::size_t dot = rest.find('.');
    relative /= std::string(rest.substr(0, dot));
    if (dot == std::string_view::npos) break;
    rest.remove_prefix(dot + 1);
  }
  for (const std::string& folder : folders) {
    const fs::path base = fs::path(folder) / relative;
    for (const fs::path& candidate : {fs::path(base.string() + ".py"), base / "__init__.py"}) {
      std::error_code error;
      if (!fs::is_regular_file(candidate, error)) continue;
      const fs::path absolute = fs::absolute(candidate, error).lexically_normal();
      const fs::path root = fs::absolute(folder, error).lexically_normal();
      return PythonModule{absolute.string(), root.string()};
    }
  }
  return std::nullopt;
}

std::string worker_program() {
  namespace fs = std::filesystem;
  const char* chosen = std::getenv("SEPPO_WORKER");
  if (chosen != nullptr && *chosen != '\0') return chosen;
  std::error_code error;
  const fs::path self = fs::read_symlink("/proc/self/exe", error);
  const fs::path folder = error ? fs::path() : self.parent_path();
  // A program of a build tree (build/cli/seppo) uses that tree's worker, an installed one the
  // installed worker; a copy elsewhere, the worker beside it.
  const fs::path build_tree = folder.parent_path() / "worker" / "seppo-worker";
  if (!folder.empty() && ::access(build_tree.c_str(), X_OK) == 0) return build_tree.string();
  if (::access(SEPPO_INSTALLED_WORKER, X_OK) == 0) return SEPPO_INSTALLED_WORKER;
  const fs::path beside = folder / "seppo-worker";
  if (!folder.empty() && ::access(beside.c_str(), X_OK) == 0) return beside.string();
  return "seppo-worker";
}

UnknownFunctionError module_not_found(const std::string& function, const std::string& module,
                                      const std::vector<std::string>& folders) {
  std::string searched;
  for (const std::string& folder : folders) searched += (searched.empty() ? "" : ", ") + folder;
  if (searched.empty()) searched = "none (SEPPO_MODULE_PATH is empty)";
  // Named alone (LocalClusterOptions::modules), the module is its own context.
  const std::string context = function == module ? "" : function + ": ";
  return UnknownFunctionError(
      function, context + "no module " + module + ": it is not registered in this program " +
                    "(SEPPO_LOCAL_MODULE), and no folder holds lib" + module + ".so or " + module +
                    "/lib" + module + ".so, nor a Python " + module + ".py; searched " + searched +
                    " (SEPPO_MODULE_PATH adds folders)");
}

const char* installed_module_folder() {
  return SEPPO_INSTALLED_MODULE_DIR;
}

}  // namespace seppo::local
