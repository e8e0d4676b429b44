// Writing a seppo module: ordinary typed C++ functions become remotely callable.
//
//   #include <seppo/module.hpp>
//   std::int64_t square(std::int64_t x) { return x * x; }
//   std::string greet(const std::string& name) { return "hello " + name; }
//   SEPPO_MODULE(SEPPO_FUNCTION(square), SEPPO_FUNCTION(greet))
//
// Build it as a shared object named lib<module>.so; seppo-worker --module path/to/lib<module>.so
// announces its functions as <module>.square and <module>.greet. Each function takes one argument
// and returns one value, both of any msgpack-convertible type (use a struct or std::tuple for
// several). Arguments are converted by the library: a mismatch is an error for that item
// ("argument: expected integer, got string"), and an exception thrown by the function is an
// error for that item carrying the exception's message. Neither stops the worker.
#pragma once

#include <exception>
#include <string>
#include <type_traits>

#include "seppo/msgpack.hpp"

#include "seppo/convert.hpp"
#include "seppo/module_abi.h"
#include "seppo/result_entry.hpp"

namespace seppo::detail {

template <class F>
struct function_traits {
  // Anything but a plain function of one argument: one error that says what to do, instead
  // of screens of failed substitutions.
  static_assert(sizeof(F) == 0,
                "SEPPO_FUNCTION(f): f must be a plain function of exactly one argument; for "
                "several values take one std::tuple<A, B, ...> (or a struct with "
                "MSGPACK_DEFINE) and pass each input as such a tuple");
  static constexpr bool valid = false;
  using result = void;
  using argument = int;
};
template <class R, class A>
struct function_traits<R (*)(A)> {
  static constexpr bool valid = true;
  using result = R;
  using argument = std::remove_cv_t<std::remove_reference_t<A>>;
};
template <class R, class A>
struct function_traits<R (*)(A) noexcept> : function_traits<R (*)(A)> {};

template <class T>
const char* signature_part() {
  if constexpr (std::is_same_v<T, msgpack::object>)
    return "any";
  else
    return expected_name<T>();
}

// The frame of every seppo_call_chunk: decodes the chunk, packs one entry per item into a buffer,
// then hands it to the sink. `pack_item(packer, buffer, scratch, argument)` packs [0, result]
// for one item, or throws: the exception becomes that item's [1, message], and the others go on.
// `scratch` is an empty buffer for packing the value apart (so a throwing pack cannot leave half
// an entry), one for the whole chunk: a fresh msgpack::sbuffer per item would allocate (8 KB)
// and free it again per item, most of a trivial function's cost.
template <class PackItem>
int call_each_item(const char* input, size_t size, seppo_sink* output,
                   const PackItem& pack_item) noexcept {
  try {
    msgpack::object_handle handle = unpack_untrusted(input, size);
    const msgpack::object& items = handle.get();
    if (items.type != msgpack::type::ARRAY) {
      throw ProtocolError(std::string("chunk is not an array but ") + type_name(items.type));
    }
    msgpack::sbuffer buffer;
    msgpack::packer<msgpack::sbuffer> packer(buffer);
    packer.pack_array(items.via.array.size);
    msgpack::sbuffer scratch;
    for (uint32_t i = 0; i < items.via.array.size; ++i) {
      try {
        scratch.clear();
        pack_item(packer, buffer, scratch, items.via.array.ptr[i]);
      } catch (const std::exception& e) {
        entry::pack_error(packer, e.what());
      } catch (...) {
        entry::pack_error(packer, "unknown exception");
      }
    }
    output->write(output->context, buffer.data(), buffer.size());
    return 0;
  } catch (const std::exception& e) {
    const std::string message = e.what();
    output->write(output->context, message.data(), message.size());
  } catch (...) {
    static const char message[] = "unknown exception while decoding the chunk";
    output->write(output->context, message, sizeof message - 1);
  }
  return 1;
}

template <auto Function>
int call_chunk(const char* input, size_t size, seppo_sink* output) noexcept {
  using traits = function_traits<decltype(Function)>;
  const auto pack_item = [](msgpack::packer<msgpack::sbuffer>& packer, msgpack::sbuffer& buffer,
                            msgpack::sbuffer& scratch, const msgpack::object& item) {
    auto argument = convert<typename traits::argument>(item, "argument");
    if constexpr (std::is_void_v<typename traits::result>) {
      Function(std::move(argument));
      entry::pack_nil(packer);
    } else {
      auto result = Function(std::move(argument));
      msgpack::pack(scratch, result);  // apart: a throwing pack leaves no half entry
      entry::begin_value(packer);
      buffer.write(scratch.data(), scratch.size());
    }
  };
  return call_each_item(input, size, output, pack_item);
}

template <auto Function>
seppo_function_v1 make_function(const char* name) {
  using traits = function_traits<decltype(Function)>;
  if constexpr (!traits::valid) {
    return seppo_function_v1{name, "", nullptr};  // never built: the static_assert stopped it
  } else {
    static const std::string signature =
        std::string("(") + signature_part<typename traits::argument>() + ") -> " +
        (std::is_void_v<typename traits::result> ? "nil"
                                                 : signature_part<typename traits::result>());
    return seppo_function_v1{name, signature.c_str(), &call_chunk<Function>};
  }
}

}  // namespace seppo::detail

// One exported function: SEPPO_FUNCTION(square) exports square under its own name.
#define SEPPO_FUNCTION(function) ::seppo::detail::make_function<&function>(#function)

// The module's table; use exactly once per shared object.
#define SEPPO_MODULE(...)                                                                      \
  extern "C" __attribute__((visibility("default"))) const seppo_module_v1*                     \
  seppo_module_v1_entry() {                                                                    \
    static const seppo_function_v1 functions[] = {__VA_ARGS__};                                \
    static const seppo_module_v1 module = {SEPPO_MODULE_ABI_VERSION,                           \
                                           sizeof functions / sizeof functions[0], functions}; \
    return &module;                                                                            \
  }
