// map_parallel_serial's engine: the module's own call_chunk, one item at a time, in this process.
#include <unistd.h>

#include <map>
#include <mutex>

#include "common/host.hpp"
#include "localcluster/local_registry.hpp"
#include "localcluster/module_path.hpp"
#include "seppo/local_cluster.hpp"
#include "seppo/result_entry.hpp"

namespace seppo {
namespace {

// Each module file is opened once per process; its functions stay valid for the process' life.
std::vector<worker::Function> functions_of(const local::ModuleSource& source) {
  if (source.registered) {
    for (local::RegisteredModule& m : local::registered_modules()) {
      if (m.name == source.module) return std::move(m.functions);
    }
    return {};
  }
  if (source.by_name) throw UnknownFunctionError(source.function, source.missing);
  if (source.python) {
    throw UnknownFunctionError(source.function, source.function + ": " + source.module +
                                                    " is a Python module (" + source.file +
                                                    "); serial mapping runs only C++ modules");
  }
  static std::mutex mutex;
  static std::map<std::string, std::vector<worker::Function>> loaded;
  std::lock_guard lock(mutex);
  auto it = loaded.find(source.file);
  if (it == loaded.end()) {
    try {
      it = loaded.emplace(source.file, worker::load_module(source.file)).first;
    } catch (const std::runtime_error& e) {
      throw UnknownFunctionError(source.function, source.function + ": " + e.what());
    }
  }
  return it->second;
}

void append(void* context, const char* data, std::size_t size) {
  static_cast<std::string*>(context)->append(data, size);
}

}  // namespace

void run_serial(const std::string& function, const std::function<bool(Client::Packer&)>& next,
                const std::function<bool(const Client::Item&)>& sink) {
  const local::ModuleSource source =
      local::locate(function, environment(local::kModulePathVariable));
  const std::vector<worker::Function> functions = functions_of(source);
  std::vector<std::string> names;
  for (const worker::Function& f : functions) names.push_back(f.name);
  local::check_provides(source, names);
  const worker::Function* call = nullptr;
  for (const worker::Function& f : functions) {
    if (f.name == function) call = &f;
  }
  // Errors name the process that ran the item, as remote ones name their worker.
  static const std::string self = fqdn() + ", process " + std::to_string(::getpid());
  msgpack::sbuffer input;
  std::string output;
  seppo_sink out{&output, &append};
  for (std::uint64_t index = 0;; ++index) {
    input.clear();
    Client::Packer packer(input);
    packer.pack_array(1);  // a chunk of one: exactly what a worker would be given
    if (!next(packer)) return;
    output.clear();
    const int status = call->invoke(input.data(), input.size(), &out);
    Client::Item item;
    item.index = index;
    item.worker = &self;
    item.last_in_message = true;
    std::string error;
    msgpack::object_handle handle;
    if (status != 0) {
      error = output;
    } else {
      try {
        handle = unpack_untrusted(output.data(), output.size());
        const msgpack::object& results = handle.get();
        const msgpack::object* entry =
            results.type == msgpack::type::ARRAY && results.via.array.size == 1
                ? &results.via.array.ptr[0]
                : nullptr;
        if (entry == nullptr) {
          error = "malformed result entry";
        } else {
          entry::Decoded decoded = entry::decode(*entry);
          item.value = decoded.value;
          error = std::move(decoded.error);
        }
      } catch (const ProtocolError& e) {
        error = std::string("unreadable result: ") + e.what();
      }
    }
    if (item.value == nullptr) item.error = &error;
    if (!sink(item)) return;
  }
}

}  // namespace seppo
