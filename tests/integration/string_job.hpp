// Jobs of strings through a named command, as the broker tests run them, and the lines the
// command wrote to a file (which item started when).
#pragma once

#include <doctest/doctest.h>

#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include <seppo/seppo.hpp>

namespace seppo::test {

inline std::vector<std::string> lines_of(const std::filesystem::path& path) {
  std::ifstream in(path);
  std::vector<std::string> lines;
  for (std::string line; std::getline(in, line);) lines.push_back(line);
  return lines;
}

// Every input in one chunk of its own (the caller's options), each result required to be a
// success, the outputs in input order.

inline std::vector<std::string> run_string_job(Client& client, const std::string& function,
                                               const std::vector<std::string>& inputs) {
  std::vector<std::string> out(inputs.size());
  auto it = inputs.begin();
  client.run(
      function,
      [&](Client::Packer& p) {
        if (it == inputs.end()) return false;
        p.pack(*it++);
        return true;
      },
      [&](const Client::Item& item) {
        REQUIRE_MESSAGE(!item.error, *item.error);
        out[item.index] = item.value->as<std::string>();
        return true;
      });
  return out;
}

}  // namespace seppo::test
