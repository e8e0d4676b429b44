// The protocol's rows kept as tables in code (issue 27 §3): broker/rows.hpp (B rows),
// worker/rows.hpp (W rows) and libclient/rows.hpp (C rows) against docs/protocol.md, each party's
// sources and the unit tests. Every row the document lists must be in its party's table, each
// with a handler its core defines and a test case that names the row.
#include <doctest/doctest.h>

#include <filesystem>
#include <fstream>
#include <regex>
#include <set>
#include <span>
#include <sstream>
#include <string>

#include "broker/ha_rows.hpp"
#include "broker/rows.hpp"
#include "libclient/rows.hpp"
#include "worker/rows.hpp"

namespace {

std::string read(const std::filesystem::path& path) {
  std::ifstream in(path);
  REQUIRE_MESSAGE(in, "cannot read " << path.string());
  std::stringstream text;
  text << in.rdbuf();
  return text.str();
}

const std::filesystem::path kRoot = SEPPO_SOURCE_ROOT;

// One party: the letter of its rows, its table, and where its core's members are defined.
struct Party {
  const char* letter;     // "B"
  const char* table;      // "broker/rows.hpp", for messages
  const char* core;       // "Core": handlers are defined as Core::handler(
  const char* directory;  // "broker": its *.cpp define the core
  std::span<const seppo::rows::Row> rows;
};

const Party kParties[] = {
    {"B", "broker/rows.hpp", "Core", "broker", seppo::broker::kRows},
    {"W", "worker/rows.hpp", "SessionCore", "worker", seppo::worker::kRows},
    {"C", "libclient/rows.hpp", "JobCore", "libclient", seppo::client::kRows},
    {"H", "broker/ha_rows.hpp", "HaCore", "broker", seppo::broker::ha::kRows},
};

// A test case for `id`: its name starts with the row ("B1: ...", "W1 start ...") or with a list
// of rows that holds it ("W21, W22 ...").
bool names_row(const std::string& tests, const std::string& id) {
  const std::regex test_case("TEST_CASE\\(\\s*\"(?:[BWC][0-9]+, )*" + id + "[:, ]");
  return std::regex_search(tests, test_case);
}

}  // namespace

TEST_CASE("each party's rows in code are docs/protocol.md's, each with its handler and its test") {
  const std::string protocol = read(kRoot / "docs" / "protocol.md");
  for (const Party& party : kParties) {
    CAPTURE(party.table);
    // The rows docs/protocol.md's tables list: lines "| Bn | ...".
    std::set<std::string> documented;
    const std::regex row_line("\\n\\| (" + std::string(party.letter) + "[0-9]+) \\|");
    for (std::sregex_iterator it(protocol.begin(), protocol.end(), row_line), end; it != end;
         ++it) {
      CHECK_MESSAGE(documented.insert((*it)[1]).second, (*it)[1] << " twice in docs/protocol.md");
    }
    CHECK_MESSAGE(!documented.empty(), "no " << party.letter << " rows in docs/protocol.md");
    std::string sources;
    for (const auto& entry : std::filesystem::directory_iterator(kRoot / party.directory)) {
      if (entry.path().extension() == ".cpp") sources += read(entry.path());
    }
    std::set<std::string> in_code;
    for (const seppo::rows::Row& r : party.rows) {
      const std::string id = r.id, handler = r.handler, test = r.test;
      CAPTURE(id);
      CHECK_MESSAGE(in_code.insert(id).second, id << " twice in " << party.table);
      CHECK_MESSAGE(documented.count(id) == 1, id << " is not in docs/protocol.md");
      CHECK_MESSAGE(
          sources.find(std::string(party.core) + "::" + handler + "(") != std::string::npos,
          "no " << party.core << "::" << handler << " in " << party.directory << "/*.cpp");
      const std::string tests = read(kRoot / "tests" / "unit" / test);
      CHECK_MESSAGE(names_row(tests, id),
                    "no TEST_CASE(\"" << id << ": ...\") in tests/unit/" << test);
    }
    for (const std::string& id : documented) {
      CHECK_MESSAGE(in_code.count(id) == 1, id << " of docs/protocol.md is not in " << party.table);
    }
    for (const std::string& id : in_code) {
      CHECK_MESSAGE(documented.count(id) == 1, id << " of " << party.table << " is not documented");
    }
  }
}
