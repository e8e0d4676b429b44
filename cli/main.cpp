// seppo: the command line of seppo. Submit from shell scripts, ask the broker how it is.
#include <unistd.h>

#include <cstdio>
#include <iostream>

#include <CLI/CLI.hpp>
#include <seppo/seppo.hpp>

#include "cli/json.hpp"
#include "cli/map_command.hpp"
#include "cli/status_command.hpp"
#include "common/endpoint.hpp"

namespace {

// Any failure that is not an item's own: unreachable broker, unknown function, bad usage.
constexpr int kExitError = 255;

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"seppo: simple embarrassingly parallel. Map a function over inputs on a cluster\n"
               "of seppo workers, or ask the broker about its workers and jobs."};
  app.footer(
      "Examples:\n"
      "  seq 1 5 | seppo map example_module.hello_world\n"
      "  seppo map example_module.square < numbers.txt > squares.txt\n"
      "  seppo status --json | jq '.workers | length'\n"
      "  seppo ping || systemctl start seppo-broker\n\n"
      "Environment: SEPPO_BROKER is the default for --broker.");
  app.set_version_flag("--version", std::string("seppo ") + seppo::version);
  app.require_subcommand(1);

  std::string endpoint = seppo::default_endpoint();
  double timeout_s = 30;
  app.add_option("-b,--broker", endpoint, "broker endpoint (default $SEPPO_BROKER or " +
                                              std::string(seppo::kDefaultEndpoint) + ")");
  app.add_option("--timeout", timeout_s,
                 "seconds of broker silence after which the command fails")
      ->capture_default_str()
      ->check(CLI::PositiveNumber);

  seppo::cli::MapOptions map;
  double wait_s = 10;
  std::size_t chunk_size = 0;
  CLI::App* map_cmd = app.add_subcommand(
      "map", "read one input per line from stdin, print one result per line in input order");
  map_cmd->footer(
      "A line that is valid JSON is that value (42, 2.5, \"text\", [1,2], {\"a\":1}); any other\n"
      "line is a string. Results print raw when they are strings, as JSON otherwise. A failed\n"
      "item is reported on stderr with its line number; the other items still run.\n"
      "Exit status: 0 all succeeded; 1-100 that many items failed; 101 more than 100 failed;\n"
      "255 the command could not run (broker unreachable, unknown function, bad usage).");
  map_cmd->add_option("function", map.function, "MODULE.FUNCTION to call on every line")
      ->required();
  map_cmd->add_flag("--fail-fast", map.fail_fast, "stop at the first failed item");
  map_cmd->add_option("--worker-wait", wait_s,
                      "seconds to wait for a worker providing the function")
      ->capture_default_str()
      ->check(CLI::NonNegativeNumber);
  map_cmd->add_option("--chunk-size", chunk_size, "items per task (default: adaptive)")
      ->check(CLI::Range(std::size_t{1}, std::size_t{65536}));

  bool json = false;
  CLI::App* status_cmd = app.add_subcommand("status", "show the broker's workers, functions and jobs");
  status_cmd->add_flag("--json", json, "print the status as one JSON object");
  CLI::App* ping_cmd = app.add_subcommand(
      "ping", "check that the broker answers (exit status 0 if it does, 1 if not)");

  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    const int code = app.exit(e);
    return code == 0 ? 0 : kExitError;
  }

  seppo::ClientOptions options;
  options.timeout = std::chrono::milliseconds(static_cast<long>(timeout_s * 1000));
  options.worker_wait = std::chrono::milliseconds(static_cast<long>(wait_s * 1000));
  options.chunk_size = chunk_size;
  try {
    seppo::Client client(endpoint, options);
    if (*map_cmd) {
      std::ios::sync_with_stdio(false);
      return seppo::cli::run_map(client, map, std::cin, stdout);
    }
    if (*status_cmd) return seppo::cli::run_status(client, options.timeout, json, stdout);
    if (*ping_cmd) {
      const auto ping_timeout = std::min(options.timeout, std::chrono::milliseconds(5000));
      try {
        return seppo::cli::run_ping(client, ping_timeout, stdout);
      } catch (const seppo::ConnectionError& e) {
        std::cerr << "seppo: " << e.what() << "\n";
        return 1;
      }
    }
  } catch (const seppo::Error& e) {
    std::cerr << "seppo: " << e.what() << "\n";
    return kExitError;
  }
  return 0;
}
