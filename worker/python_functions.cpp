#include "worker/python_functions.hpp"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <pybind11/embed.h>

#include <chrono>
#include <map>
#include <memory>
#include <mutex>
#include <sstream>
#include <stdexcept>
#include <vector>

#include "seppo/msgpack.hpp"

#include "protocol/msgpack_reader.hpp"
#include "python/convert.hpp"
#include "seppo/convert.hpp"
#include "seppo/error.hpp"

namespace py = pybind11;

namespace seppo::worker {
namespace {

// Imports `module` with SEPPO_MODULE_PATH's folders first and the current folder last
// (as `python3 -m` would find it). Needs the GIL.
py::module_ import_module(const std::string& module) {
  py::list path = py::module_::import("sys").attr("path");
  const char* extra = std::getenv("SEPPO_MODULE_PATH");
  if (extra != nullptr) {
    std::stringstream folders(extra);
    std::string folder;
    int at = 0;
    while (std::getline(folders, folder, ':')) {
      if (!folder.empty()) path.attr("insert")(at++, folder);
    }
  }
  path.append(".");
  return py::module_::import(module.c_str());
}

// What `--python builtins` serves: functions of values only. Never exec, eval, compile, open,
// input, __import__, getattr and the like: a client may call what a worker serves, and those
// would run a client's code or reach the worker's files (docs/python.md, "Builtins").
constexpr const char* kServedBuiltins[] = {
    "abs",    "all",  "any",   "ascii",  "bin", "bool", "bytes", "chr", "divmod", "float",
    "format", "hash", "hex",   "int",    "len", "list", "max",   "min", "oct",    "ord",
    "pow",    "repr", "round", "sorted", "str", "sum",  "tuple", "dict"};

// Public functions defined in the module itself (not ones it imported), in source order.
std::vector<std::string> public_functions(const py::module_& module) {
  const py::object inspect = py::module_::import("inspect");
  const std::string name = module.attr("__name__").cast<std::string>();
  std::vector<std::string> out;
  if (name == "builtins") {
    for (const char* fn : kServedBuiltins) out.emplace_back(fn);
    return out;
  }
  for (auto item : module.attr("__dict__").cast<py::dict>()) {
    const std::string fn = item.first.cast<std::string>();
    if (fn.empty() || fn[0] == '_') continue;
    const py::handle value = item.second;
    if (!inspect.attr("isfunction")(value).cast<bool>() &&
        !inspect.attr("isbuiltin")(value).cast<bool>()) {
      continue;
    }
    if (!py::hasattr(value, "__module__") || !py::isinstance<py::str>(value.attr("__module__")) ||
        value.attr("__module__").cast<std::string>() != name) {
      continue;
    }
    out.push_back(fn);
  }
  return out;
}

std::string python_error_text(py::error_already_set& e) {
  // The whole traceback: the caller sees where in their Python the item failed.
  try {
    const py::module_ traceback = py::module_::import("traceback");
    const auto joined = [](const py::object& lines) {
      std::string text;
      for (auto line : lines) text += line.cast<std::string>();
      while (!text.empty() && text.back() == '\n') text.pop_back();
      return text;
    };
    // The exception itself first, whole ("Type: message", every line of a message that has
    // several): one-line displays (seppo map's error lines, logs) show what went wrong before
    // where, and the Python client rebuilds the exception from it (its type, its message).
    const std::string head = joined(traceback.attr("format_exception_only")(e.type(), e.value()));
    const std::string text =
        joined(traceback.attr("format_exception")(e.type(), e.value(), e.trace()));
    return text == head ? text : head + "\n" + text;
  } catch (const std::exception&) {
    return e.what();
  }
}

// How long a module may take to import in discover(): on SIGHUP the supervisor waits for it, and
// must not freeze (no restarts, no SIGTERM) on a module whose import hangs.
constexpr int kDiscoverSeconds = 30;

// Reads the function names in a child process: "name\n" lines, or "!message" on failure.
// Bounded: a child that has not finished within kDiscoverSeconds is killed and the module
// refused, as a broken one is (on SIGHUP the running processes are kept).
std::vector<std::string> discover(const std::string& module) {
  int fds[2];
  if (::pipe2(fds, O_CLOEXEC) != 0) throw std::runtime_error("--python " + module + ": no pipe");
  const pid_t pid = ::fork();
  if (pid < 0) {
    ::close(fds[0]);
    ::close(fds[1]);
    throw std::runtime_error("--python " + module + ": cannot fork");
  }
  if (pid == 0) {
    // The supervisor's handlers and mask are not the child's: SIGKILL/SIGTERM act plainly.
    struct sigaction plain {};
    plain.sa_handler = SIG_DFL;
    sigemptyset(&plain.sa_mask);
    for (int s = 1; s < NSIG; ++s) ::sigaction(s, &plain, nullptr);
    sigset_t none;
    sigemptyset(&none);
    ::sigprocmask(SIG_SETMASK, &none, nullptr);
    ::close(fds[0]);
    std::string out;
    int status = 0;
    {
      py::scoped_interpreter interpreter(false);
      try {
        for (const std::string& fn : public_functions(import_module(module))) out += fn + "\n";
      } catch (py::error_already_set& e) {
        out = "!cannot import Python module " + module + ":\n" + python_error_text(e);
        status = 1;
      }
    }
    const char* p = out.data();
    std::size_t left = out.size();
    while (left > 0) {
      const ssize_t n = ::write(fds[1], p, left);
      if (n <= 0) break;
      p += n;
      left -= static_cast<std::size_t>(n);
    }
    ::_exit(status);
  }
  ::close(fds[1]);
  std::string text;
  char buffer[4096];
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(kDiscoverSeconds);
  bool timed_out = false;
  while (true) {
    const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
        deadline - std::chrono::steady_clock::now());
    if (left.count() <= 0) {
      timed_out = true;
      break;
    }
    pollfd pfd{fds[0], POLLIN, 0};
    const int ready = ::poll(&pfd, 1, static_cast<int>(left.count()));
    if (ready < 0 && errno == EINTR) continue;
    if (ready < 0) break;
    if (ready == 0) continue;  // the deadline is checked above
    const ssize_t n = ::read(fds[0], buffer, sizeof buffer);
    if (n > 0) {
      text.append(buffer, static_cast<std::size_t>(n));
    } else if (n == 0 || errno != EINTR) {
      break;
    }
  }
  ::close(fds[0]);
  if (timed_out) ::kill(pid, SIGKILL);
  int status = 0;
  while (::waitpid(pid, &status, 0) < 0 && errno == EINTR) {
  }
  if (timed_out) {
    throw std::runtime_error("--python " + module + ": importing it took longer than " +
                             std::to_string(kDiscoverSeconds) + " s; killed, module refused");
  }
  if (!text.empty() && text[0] == '!') throw std::runtime_error(text.substr(1));
  if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
    throw std::runtime_error("--python " + module + ": the Python interpreter failed");
  }
  std::vector<std::string> names;
  std::stringstream lines(text);
  for (std::string line; std::getline(lines, line);) names.push_back(line);
  if (names.empty()) {
    throw std::runtime_error("Python module " + module + " has no public functions to serve");
  }
  return names;
}

// This worker process' interpreter: started on first use (after the fork), then kept, with
// every module this process serves imported at start (import_python_modules) or on its first call.
// The GIL is released between chunks, so any thread may call.
struct Runtime {
  std::unique_ptr<py::scoped_interpreter> interpreter;
  PyThreadState* saved = nullptr;
  std::map<std::string, py::object> modules;    // guarded by the GIL
  std::map<std::string, std::string> failures;  // import errors, guarded by the GIL
};

Runtime& runtime() {
  // Leaked on purpose: a destructor at exit would finalise Python without the GIL.
  static Runtime& r = *new Runtime;
  static std::once_flag once;
  std::call_once(once, [&] {
    // No Python signal handlers: SIGINT and SIGTERM stay the worker's.
    r.interpreter = std::make_unique<py::scoped_interpreter>(false);
    r.saved = PyEval_SaveThread();
    // Never finalised: the process exits, and finalising from an atexit handler while another
    // thread may hold the GIL would hang.
  });
  return r;
}

// The imported module, or nullptr with `failure` set. Call with the GIL held.
const py::object* imported(Runtime& r, const std::string& module, std::string& failure) {
  if (auto m = r.modules.find(module); m != r.modules.end()) return &m->second;
  if (auto f = r.failures.find(module); f != r.failures.end()) {
    failure = f->second;
    return nullptr;
  }
  try {
    return &r.modules.emplace(module, import_module(module)).first->second;
  } catch (py::error_already_set& e) {
    failure = r.failures[module] =
        "cannot import Python module " + module + ":\n" + python_error_text(e);
    return nullptr;
  }
}

// A chunk's arguments into `out` when every one is a scalar (nil, bool, int, float, str, bin:
// strings point into the input); false for anything else, malformed input included.
bool read_scalars(const char* input, std::size_t size, std::vector<msgpack::object>& out) {
  wire::MsgpackReader in(input, size);
  std::uint32_t n = 0;
  // Each argument takes a byte at least: a count the bytes cannot hold allocates nothing.
  if (!in.array_header(n) || !in.has(n)) return false;
  out.resize(n);
  for (msgpack::object& o : out) {
    unsigned char first = 0;
    if (!in.byte(first) || !in.scalar(first, o)) return false;
  }
  return in.at_end();
}

int call_chunk(const std::string& module, const std::string& fn, const char* input,
               std::size_t size, seppo_sink* output) {
  Runtime& r = runtime();
  auto fail = [&](const std::string& message) {
    output->write(output->context, message.data(), message.size());
    return 1;
  };
  // The usual chunk, all scalars, read without msgpack-c's zone and object tree (which cost as
  // much per item as the call); anything else unpacked whole.
  thread_local std::vector<msgpack::object> scalars;
  // Kept from chunk to chunk, but not at the size of the largest chunk ever read: one chunk of
  // many tiny items would otherwise hold 24 bytes per item for the thread's life.
  struct Trim {
    std::vector<msgpack::object>& v;
    ~Trim() {
      if (v.capacity() > 65536) {
        v.clear();
        v.shrink_to_fit();
      }
    }
  } trim{scalars};
  msgpack::object_handle args;
  msgpack::object_array items{};
  if (read_scalars(input, size, scalars)) {
    items.size = static_cast<std::uint32_t>(scalars.size());
    items.ptr = scalars.data();
  } else {
    try {
      args = unpack_untrusted(input, size);
    } catch (const std::exception& e) {
      return fail(std::string("input is not valid msgpack: ") + e.what());
    }
    if (args.get().type != msgpack::type::ARRAY) return fail("input is not an array of arguments");
    items = args.get().via.array;
  }

  py::gil_scoped_acquire gil;
  // This thread keeps its Python thread state from one chunk to the next: pybind11 otherwise
  // makes and deletes one per acquire, and with it CPython's frame stack, whose fresh pages were
  // most of a trivial function's cost.
  // (So threading.local, contextvars and the decimal context also last from chunk to chunk on
  // it, as in any long-lived Python thread.)
#ifndef PYBIND11_SIMPLE_GIL_MANAGEMENT
  thread_local bool kept = false;
  if (!kept) {
    gil.inc_ref();
    kept = true;
  }
#endif
  std::string failure;
  const py::object* python_module = imported(r, module, failure);
  if (!python_module) return fail(failure);
  msgpack::sbuffer buffer;
  msgpack::packer<msgpack::sbuffer> packer(buffer);
  packer.pack_array(items.size);
  py::object function;
  try {
    function = python_module->attr(fn.c_str());
    if (module == "builtins") function = python::served_builtin(fn, function);
  } catch (py::error_already_set& e) {
    return fail(python_error_text(e));
  }
  // One zone for the chunk's converted results: they are packed into `buffer` anyway, and a
  // zone per item would cost an allocation per item.
  msgpack::zone zone;
  for (std::uint32_t i = 0; i < items.size; ++i) {
    std::size_t bytes = 0;
    try {
      const py::object result = python::call_with(function, items.ptr[i]);
      if (python::pack_scalar_entry(buffer, result.ptr())) continue;  // an int or a float
      const msgpack::object packed = python::to_msgpack(
          result, zone, [] { return std::string("result"); }, bytes);
      packer.pack_array(2);
      packer.pack(0);
      python::pack_converted(packer, packed);
    } catch (py::error_already_set& e) {
      packer.pack_array(2);
      packer.pack(1);
      packer.pack(python_error_text(e));
    } catch (const std::exception& e) {
      packer.pack_array(2);
      packer.pack(1);
      packer.pack(std::string(e.what()));
    }
  }
  output->write(output->context, buffer.data(), buffer.size());
  return 0;
}

}  // namespace

void import_python_modules(const std::vector<std::string>& modules) {
  if (modules.empty()) return;
  Runtime& r = runtime();
  py::gil_scoped_acquire gil;
  for (const std::string& module : modules) {
    std::string failure;
    imported(r, module, failure);
  }
}

std::vector<Function> python_functions(const std::string& module) {
  std::vector<Function> out;
  for (const std::string& fn : discover(module)) {
    Function f;
    f.name = module + "." + fn;
    f.signature = "(Python)";
    f.call = [module, fn](const char* input, std::size_t size, seppo_sink* output) {
      return call_chunk(module, fn, input, size, output);
    };
    out.push_back(std::move(f));
  }
  return out;
}

}  // namespace seppo::worker
