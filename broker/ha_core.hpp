// A pair of brokers, one active and one standing by (docs/protocol.md §15, issue 25 §2): the
// rules that decide which of the two serves, with no socket, thread or clock of its own (after
// the ZeroMQ guide's Binary Star, with its gaps closed). broker/ha_link.cpp is the socket side:
// it publishes this broker's state to the peer broker, feeds the peer's state in, and asks
// on_request() before a client's or worker's message reaches broker::Core.
//
// Rows H1..H19 (broker/ha_rows.hpp), tested with a fake clock in tests/unit/ha_core_test.cpp.
// The one rule that prevents two active brokers: a backup (or a passive primary) becomes active
// only when it has heard nothing from its peer broker for `expiry` AND a client or worker turned
// to it. A partition between the two brokers alone leaves every peer with the active one, so
// none turns to the passive one, which stays passive.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "common/log.hpp"

namespace seppo::broker::ha {

using Clock = std::chrono::steady_clock;
using TimePoint = Clock::time_point;
using Duration = Clock::duration;

// What the operator said this broker is (--ha-role).
enum class Role : std::uint8_t { Primary, Backup };

// The state each broker publishes (numbered as on the HA link, §15.2): Primary and Backup are
// the states a broker starts in, before it knows what its peer is.
enum class State : std::uint8_t { Primary = 1, Backup = 2, Active = 3, Passive = 4 };

const char* name(Role role);
const char* name(State state);
std::optional<Role> parse_role(std::string_view text);

// The state message on the HA link: the msgpack array [1, state] (version 1; later fields are
// ignored). decode_state() gives nothing for anything else.
std::string encode_state(State state);
std::optional<State> decode_state(const void* data, std::size_t size);

struct Config {
  Role role = Role::Primary;
  // How often a broker publishes its state, and the silence after which its peer is presumed
  // gone. seppo-broker: --heartbeat-ms / 4 and --heartbeat-ms (250 ms and 1 s by default).
  Duration interval = std::chrono::milliseconds(250);
  Duration expiry = std::chrono::milliseconds(1000);
};

class HaCore {
 public:
  using LogSink = std::function<void(log::Level, const std::string&)>;

  // H1, H2: start in the state of the role, the peer not heard yet (its silence counts from now).
  HaCore(Config config, TimePoint now, LogSink log = {});

  // The peer broker's state message as received (H17: ignored unless it decodes).
  void on_peer_state(const void* data, std::size_t size, TimePoint now);
  // The peer broker's state (H4, H5, H9, H11, H12, H13, H18, H19).
  void on_peer(State peer, TimePoint now);
  // A client or worker sent this broker a message: true to serve it, false to answer it
  // `ERROR not_active` (H6, H7, H8, H10, H14, H15).
  bool on_request(TimePoint now);
  // Time passed (H3: publish, H16: take over for a peer that turned here). Call by next_deadline().
  void on_tick(TimePoint now);
  TimePoint next_deadline() const;

  // State messages to publish to the peer, in order.
  std::vector<std::string> take_outbox();
  // True once after this broker became active, or (H11, a primary) once it heard its backup
  // active too, whose peers come here next: the server opens a new adoption window (§9.1).
  bool take_activated();
  // H11: two active brokers, and this is the backup: it must stop serving (the server shuts its
  // broker down and exits; started again, it finds its peer active and becomes passive).
  bool must_yield() const { return yield_; }

  State state() const { return state_; }
  Role role() const { return config_.role; }
  const Config& config() const { return config_; }
  // The peer's last state, if it was heard within `expiry`.
  std::optional<State> peer(TimePoint now) const;
  bool serving() const { return state_ == State::Active; }

 private:
  bool peer_silent(TimePoint now) const { return now - peer_heard_ >= config_.expiry; }
  void become(State next, const std::string& why);
  void publish(TimePoint now);

  Config config_;
  LogSink log_;
  State state_;
  std::optional<State> peer_;
  TimePoint peer_heard_;             // the peer's last state, or the start
  TimePoint next_publish_;           // H3
  std::optional<TimePoint> turned_;  // the last request refused while passive (H15, H16)
  bool activated_ = false;
  bool yield_ = false;
  bool warned_same_role_ = false;
  std::vector<std::string> outbox_;
};

}  // namespace seppo::broker::ha
