// The glue between a pair's HaCore and broker::Core (broker/ha_gate.hpp, docs/protocol.md §15):
// a real Core and a real HaCore, a fake clock, no sockets.
#include <doctest/doctest.h>

#include "broker/ha_gate.hpp"
#include "protocol/wire.hpp"

using namespace seppo;
using namespace seppo::broker::ha;
using std::chrono::milliseconds;

namespace {

const TimePoint t0 = TimePoint() + std::chrono::hours(1);

HaCore make(Role role) {
  Config config;
  config.role = role;
  return HaCore(config, t0);
}

// A core whose first adoption window (§9.1) has closed.
std::unique_ptr<broker::Core> settled_core(TimePoint at) {
  auto core = std::make_unique<broker::Core>(broker::Config{}, 1);
  core->on_tick(t0);
  core->on_tick(at);
  REQUIRE(!core->adoption_open());
  return core;
}

}  // namespace

TEST_CASE("pair gate: a passive broker answers not_active; STATUS_REQUEST always passes") {
  HaCore backup = make(Role::Backup);
  backup.on_peer(State::Active, t0);
  auto core = settled_core(t0 + milliseconds(5000));
  const std::string heartbeat = wire::encode(wire::Heartbeat{});
  backup.on_peer(State::Active, t0 + milliseconds(5000));
  const auto refused =
      gate(backup, *core, heartbeat.data(), heartbeat.size(), t0 + milliseconds(5001));
  REQUIRE(refused);
  const wire::Message m = wire::decode(refused->data(), refused->size());
  const auto* error = std::get_if<wire::Error>(&m);
  REQUIRE(error != nullptr);
  CHECK(error->code == wire::Code::NotActive);
  CHECK(error->message.find("backup, passive") != std::string::npos);
  const std::string status = wire::encode(wire::StatusRequest{});
  CHECK(!gate(backup, *core, status.data(), status.size(), t0 + milliseconds(5002)));
}

TEST_CASE(
    "pair gate: taking over on a request opens the adoption window before the core reads it") {
  HaCore backup = make(Role::Backup);
  backup.on_peer(State::Active, t0);
  auto core = settled_core(t0 + milliseconds(5000));
  const std::string heartbeat = wire::encode(wire::Heartbeat{});
  // The active broker silent for longer than expiry: H14, fail-over on this message.
  CHECK(!gate(backup, *core, heartbeat.data(), heartbeat.size(), t0 + milliseconds(5000)));
  CHECK(backup.state() == State::Active);
  CHECK(core->adoption_open());
}

TEST_CASE("pair sync: a primary hearing its backup active (H11) opens an adoption window") {
  HaCore primary = make(Role::Primary);
  primary.on_peer(State::Backup, t0);
  auto core = settled_core(t0 + milliseconds(5000));
  sync(primary, *core, t0 + milliseconds(5000));  // took in its becoming active long ago
  // The window that opened then closes again.
  core->on_tick(t0 + milliseconds(10000));
  REQUIRE(!core->adoption_open());
  // A partition between the brokers heals: the backup took over meanwhile and says active.
  primary.on_peer(State::Active, t0 + milliseconds(10100));
  sync(primary, *core, t0 + milliseconds(10100));
  CHECK(core->adoption_open());
  CHECK(!primary.must_yield());
}
