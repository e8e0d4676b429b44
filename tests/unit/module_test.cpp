// A module function called through the C ABI, as seppo-worker calls it.
#include <doctest/doctest.h>

#include <stdexcept>

#include "libclient/chunk_sizer.hpp"
#include "seppo/module.hpp"

using namespace seppo;

namespace {

std::int64_t twice(std::int64_t x) { return 2 * x; }
std::string shout(const std::string& s) {
  if (s.empty()) throw std::invalid_argument("nothing to shout");
  return s + "!";
}

std::string call(seppo_call_chunk function, const std::string& input, int* status) {
  std::string output;
  seppo_sink sink{&output, [](void* c, const char* d, size_t n) {
                    static_cast<std::string*>(c)->append(d, n);
                  }};
  *status = function(input.data(), input.size(), &sink);
  return output;
}

template <class... T>
std::string chunk(const T&... values) {
  msgpack::sbuffer buffer;
  msgpack::packer<msgpack::sbuffer> p(buffer);
  p.pack_array(sizeof...(values));
  (p.pack(values), ...);
  return std::string(buffer.data(), buffer.size());
}

}  // namespace

TEST_CASE("a module function converts each argument and packs each result") {
  int status = -1;
  const std::string out = call(&detail::call_chunk<&twice>, chunk(1, 2, 3), &status);
  REQUIRE(status == 0);
  const auto handle = unpack_untrusted(out.data(), out.size());
  const auto& array = handle.get().via.array;
  REQUIRE(array.size == 3);
  CHECK(array.ptr[2].via.array.ptr[0].as<int>() == 0);
  CHECK(array.ptr[2].via.array.ptr[1].as<std::int64_t>() == 6);
}

TEST_CASE("a wrong argument type is an error for that item only") {
  int status = -1;
  const std::string out = call(&detail::call_chunk<&twice>, chunk(1, std::string("x"), 3), &status);
  REQUIRE(status == 0);
  const auto handle = unpack_untrusted(out.data(), out.size());
  const auto& array = handle.get().via.array;
  CHECK(array.ptr[0].via.array.ptr[0].as<int>() == 0);
  CHECK(array.ptr[1].via.array.ptr[0].as<int>() == 1);
  CHECK(array.ptr[1].via.array.ptr[1].as<std::string>() == "argument: expected integer, got string");
  CHECK(array.ptr[2].via.array.ptr[1].as<std::int64_t>() == 6);
}

TEST_CASE("an exception thrown by the function becomes that item's error message") {
  int status = -1;
  const std::string out = call(&detail::call_chunk<&shout>, chunk(std::string("a"), std::string()), &status);
  REQUIRE(status == 0);
  const auto handle = unpack_untrusted(out.data(), out.size());
  const auto& array = handle.get().via.array;
  CHECK(array.ptr[0].via.array.ptr[1].as<std::string>() == "a!");
  CHECK(array.ptr[1].via.array.ptr[1].as<std::string>() == "nothing to shout");
}

TEST_CASE("a chunk that is not an array fails as a whole with a message") {
  int status = 0;
  const std::string out = call(&detail::call_chunk<&twice>, std::string("\x01", 1), &status);
  CHECK(status != 0);
  CHECK(out.find("not an array") != std::string::npos);
  const std::string hostile("\xdd\xff\x00\x00\x00", 5);
  call(&detail::call_chunk<&twice>, hostile, &status);
  CHECK(status != 0);
}

TEST_CASE("the module table names each function with its signature") {
  const seppo_function_v1 f = SEPPO_FUNCTION(twice);
  CHECK(std::string(f.name) == "twice");
  CHECK(std::string(f.signature) == "(integer) -> integer");
}

TEST_CASE("chunks start with single items and grow as the measured cost is small") {
  ChunkSizer sizer(0, std::chrono::microseconds(10000));
  CHECK(sizer.next_size() == 1);
  sizer.observe(1, 1);
  CHECK(sizer.next_size() > 1000);
  ChunkSizer slow(0, std::chrono::microseconds(10000));
  slow.observe(1, 50000);
  CHECK(slow.next_size() == 1);
  ChunkSizer fixed(7, std::chrono::microseconds(10000));
  fixed.observe(1, 1);
  CHECK(fixed.next_size() == 7);
}

TEST_CASE("the unanswered chunks of a job's start double every millisecond up to the window") {
  using namespace std::chrono_literals;
  const auto start = std::chrono::steady_clock::time_point{} + 1h;
  ChunkSizer sizer(0, 10ms, 100, start);
  CHECK(sizer.chunk_limit() == ChunkSizer::kBlindChunks);
  CHECK(sizer.limit_grows_at() == start + 1ms);
  sizer.tick(start + 999us);
  CHECK(sizer.chunk_limit() == 8);
  sizer.tick(start + 3ms);
  CHECK(sizer.chunk_limit() == 64);
  sizer.tick(start + 4ms);
  CHECK(sizer.chunk_limit() == 100);  // the window, not 128
  CHECK(sizer.limit_grows_at() == std::chrono::steady_clock::time_point::max());
  ChunkSizer fixed(7, 10ms, 100, start);
  CHECK(fixed.chunk_limit() == ChunkSizer::kUnlimited);
  CHECK(fixed.limit_grows_at() == std::chrono::steady_clock::time_point::max());
  ChunkSizer slow(0, 10ms, 100, start);
  slow.observe(1, 50000);  // a single item over the target: chunks of one, measured
  CHECK(slow.chunk_limit() == ChunkSizer::kUnlimited);
  ChunkSizer cheap(0, 10ms, 100, start);
  cheap.observe(1, 1);  // asks for 10,000 items: measured on one, the limit stays
  CHECK(cheap.next_size() == 10000);
  CHECK(cheap.chunk_limit() == 8);
  cheap.cut(3000);  // but chunks of these items close at 3,000 (their bytes)
  cheap.observe(3000, 300);
  CHECK(cheap.chunk_limit() == ChunkSizer::kUnlimited);
  // No window to stop at: the limit still stops doubling, at the largest size there is.
  ChunkSizer endless(0, 10ms, ChunkSizer::kUnlimited, start);
  endless.tick(start + 24h * 365 * 100);
  CHECK(endless.chunk_limit() == ChunkSizer::kUnlimited);
  CHECK(endless.limit_grows_at() == std::chrono::steady_clock::time_point::max());
}
