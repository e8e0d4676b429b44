// broker/rows.hpp against docs/protocol.md, the broker's sources and the unit tests (issue 27
// §3): the protocol's broker rows are kept as a table in code, each row mapped to its handler
// and its test.
#include <doctest/doctest.h>

#include <filesystem>
#include <fstream>
#include <regex>
#include <set>
#include <sstream>
#include <string>

#include "broker/rows.hpp"

namespace {

std::string read(const std::filesystem::path& path) {
  std::ifstream in(path);
  REQUIRE_MESSAGE(in, "cannot read " << path.string());
  std::stringstream text;
  text << in.rdbuf();
  return text.str();
}

const std::filesystem::path kRoot = SEPPO_SOURCE_ROOT;

}  // namespace

TEST_CASE("the broker's rows in code are docs/protocol.md's, each with its handler and its test") {
  // The rows docs/protocol.md's tables list: lines "| Bn | ...".
  std::set<std::string> documented;
  const std::string protocol = read(kRoot / "docs" / "protocol.md");
  const std::regex row_line(R"(\n\| (B[0-9]+) \|)");
  for (std::sregex_iterator it(protocol.begin(), protocol.end(), row_line), end; it != end; ++it) {
    CHECK_MESSAGE(documented.insert((*it)[1]).second, (*it)[1] << " twice in docs/protocol.md");
  }
  std::set<std::string> in_code;
  std::string sources;
  for (const auto& entry : std::filesystem::directory_iterator(kRoot / "broker")) {
    if (entry.path().extension() == ".cpp") sources += read(entry.path());
  }
  for (const seppo::broker::Row& r : seppo::broker::kRows) {
    const std::string id = r.id, handler = r.handler, test = r.test;
    CAPTURE(id);
    CHECK_MESSAGE(in_code.insert(id).second, id << " twice in broker/rows.hpp");
    CHECK_MESSAGE(documented.count(id) == 1, id << " is not in docs/protocol.md");
    CHECK_MESSAGE(sources.find("Core::" + handler + "(") != std::string::npos,
                  "no Core::" << handler << " in broker/*.cpp");
    const std::string tests = read(kRoot / "tests" / "unit" / test);
    const std::regex test_case("TEST_CASE\\(\\s*\"" + id + ":");
    CHECK_MESSAGE(std::regex_search(tests, test_case),
                  "no TEST_CASE(\"" << id << ": ...\") in tests/unit/" << test);
  }
  CHECK(in_code == documented);
}
