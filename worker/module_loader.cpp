#include "worker/module_loader.hpp"

#include <dlfcn.h>

#include <stdexcept>

namespace seppo::worker {

std::string module_name(const std::string& path) {
  std::string base = path.substr(path.find_last_of('/') + 1);
  if (base.rfind("lib", 0) == 0) base.erase(0, 3);
  if (const auto so = base.find(".so"); so != std::string::npos) base.erase(so);
  return base;
}

std::vector<Function> load_module(const std::string& path) {
  // A path without a slash would make dlopen search the library path: the operator names files.
  const std::string file = path.find('/') == std::string::npos ? "./" + path : path;
  void* handle = ::dlopen(file.c_str(), RTLD_NOW | RTLD_LOCAL);
  if (handle == nullptr) {
    const char* why = ::dlerror();
    throw std::runtime_error("cannot load module " + path + ": " + (why ? why : "unknown error"));
  }
  auto entry = reinterpret_cast<seppo_module_entry>(::dlsym(handle, SEPPO_MODULE_ENTRY));
  if (entry == nullptr) {
    throw std::runtime_error(path + " is not a seppo module (it exports no " + SEPPO_MODULE_ENTRY +
                             "; see SEPPO_MODULE in seppo/module.hpp)");
  }
  const seppo_module_v1* module = entry();
  if (module == nullptr || module->abi_version != SEPPO_MODULE_ABI_VERSION) {
    throw std::runtime_error(path + " was built for another seppo module ABI (this worker loads " +
                             "ABI " + std::to_string(SEPPO_MODULE_ABI_VERSION) + ")");
  }
  if (module->function_count == 0) {
    throw std::runtime_error(path + " is a seppo module without functions");
  }
  const std::string prefix = module_name(path) + ".";
  std::vector<Function> functions;
  for (std::size_t i = 0; i < module->function_count; ++i) {
    const seppo_function_v1& f = module->functions[i];
    if (f.name == nullptr || f.call_chunk == nullptr || *f.name == '\0') {
      throw std::runtime_error(path + ": function " + std::to_string(i) + " has no name or code");
    }
    functions.push_back(Function{prefix + f.name, f.signature ? f.signature : "", f.call_chunk});
    functions.back().inline_ok = true;  // a C++ module's: may run on the socket loop's thread
  }
  // The handle is kept open for the life of the process: the functions point into it.
  return functions;
}

}  // namespace seppo::worker
