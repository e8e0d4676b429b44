// The example module of the original seppo, in C++: build it as libexample_module.so and serve
// it with `seppo-worker --module path/to/libexample_module.so`. Its functions are then called as
// example_module.hello_world, example_module.square, and so on.
#include <netdb.h>
#include <sys/socket.h>
#include <unistd.h>

#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <sstream>
#include <stdexcept>
#include <string>
#include <thread>

#include <seppo/module.hpp>

namespace {

// What Python's socket.getfqdn() reports, so the output reads as the 2008 original's did.
std::string fully_qualified_hostname() {
  char name[256] = {};
  ::gethostname(name, sizeof name - 1);
  std::string result = name;
  addrinfo hints{};
  hints.ai_flags = AI_CANONNAME;
  addrinfo* info = nullptr;
  if (::getaddrinfo(name, nullptr, &hints, &info) == 0 && info != nullptr) {
    if (info->ai_canonname != nullptr && std::strchr(info->ai_canonname, '.') != nullptr) {
      result = info->ai_canonname;
    }
    ::freeaddrinfo(info);
  }
  return result;
}

}  // namespace

std::string hello_world(double value) {
  static const std::string host = fully_qualified_hostname();
  char text[512];
  std::snprintf(text, sizeof text,
                "hello world from %s, process %d (input=%f, value*value=%f)", host.c_str(),
                static_cast<int>(::getpid()), value, value * value);
  return text;
}

std::int64_t square(std::int64_t value) {
  std::int64_t result = 0;
  if (__builtin_mul_overflow(value, value, &result)) {
    throw std::overflow_error("square of " + std::to_string(value) + " overflows int64");
  }
  return result;
}

std::int64_t sleep_ms(std::int64_t milliseconds) {
  std::this_thread::sleep_for(std::chrono::milliseconds(milliseconds));
  return milliseconds;
}

// Always throws, to see how a remote exception reaches the caller.
msgpack::object fail(msgpack::object value) {
  std::ostringstream text;
  text << "fail was called with " << value;
  throw std::runtime_error(text.str());
}

// Kills its worker process, to see how seppo survives a dying worker.
msgpack::object crash(msgpack::object value) {
  std::abort();
  return value;
}

SEPPO_MODULE(SEPPO_FUNCTION(hello_world), SEPPO_FUNCTION(square), SEPPO_FUNCTION(sleep_ms),
             SEPPO_FUNCTION(fail), SEPPO_FUNCTION(crash))
