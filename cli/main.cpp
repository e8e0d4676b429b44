// seppo: the command line of seppo. Submit from shell scripts, ask the broker how it is.
#include <unistd.h>

#include <cstdio>
#include <iostream>

#include <CLI/CLI.hpp>
#include <seppo/seppo.hpp>

#include "cli/json.hpp"
#include "cli/map_command.hpp"
#include "cli/status_command.hpp"
#include "common/curve.hpp"
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
      "  seppo ping || systemctl start seppo-broker\n"
      "  seppo keygen alice        # alice.key_secret (keep it) and alice.key (give it away)\n\n"
      "Environment: SEPPO_BROKER is the default for --broker, SEPPO_CURVE_SECRET_KEY for\n"
      "--curve-secret-key, SEPPO_CURVE_SERVER_KEY for --curve-server-key.");
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
  seppo::ClientOptions options;  // the key files default to $SEPPO_CURVE_*
  app.add_option("--curve-secret-key", options.curve_secret_key_file,
                 "this user's secret key file: talk to the broker over CurveZMQ "
                 "(default $SEPPO_CURVE_SECRET_KEY)");
  app.add_option("--curve-server-key", options.curve_server_key_file,
                 "the broker's public key file (default $SEPPO_CURVE_SERVER_KEY)");
  app.add_flag("--insecure", options.insecure,
               "allow a broker on another host without CurveZMQ keys (plaintext)");

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

  std::string key_name;
  bool force = false;
  CLI::App* keygen_cmd = app.add_subcommand(
      "keygen", "make a CurveZMQ key pair: NAME.key_secret (mode 0600) and NAME.key");
  keygen_cmd->footer(
      "NAME.key_secret stays with its owner (a broker, a worker host, a user); NAME.key is the\n"
      "public half: workers' and clients' go into the broker's --authorized-workers and\n"
      "--authorized-clients lists, the broker's goes to every worker and client as\n"
      "--curve-server-key. Existing files are kept unless --force.");
  keygen_cmd->add_option("name", key_name, "path and name of the pair, e.g. keys/alice")
      ->required();
  keygen_cmd->add_flag("--force", force, "replace existing files");

  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    const int code = app.exit(e);
    return code == 0 ? 0 : kExitError;
  }

  if (*keygen_cmd) {
    try {
      const seppo::curve::KeyPair keys = seppo::curve::generate();
      const auto paths = seppo::curve::write_key_files(key_name, keys, force);
      std::printf("wrote %s (secret: keep it private) and %s (public: share it)\n",
                  paths[0].c_str(), paths[1].c_str());
      std::printf("public key %s, fingerprint %s\n", keys.public_key.c_str(),
                  seppo::curve::fingerprint(keys.public_key).c_str());
      return 0;
    } catch (const std::exception& e) {
      std::cerr << "seppo: " << e.what() << "\n";
      return kExitError;
    }
  }

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
