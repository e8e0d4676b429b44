// The rules of a broker pair (docs/protocol.md §15): rows H1..H19, each marked where it is
// carried out. broker/ha_rows.hpp lists them; tests/unit/ha_core_test.cpp tests each.
#include "broker/ha_core.hpp"

#include <algorithm>
#include <utility>

namespace seppo::broker::ha {

const char* name(Role role) {
  return role == Role::Primary ? "primary" : "backup";
}

const char* name(State state) {
  switch (state) {
    case State::Primary:
      return "primary";
    case State::Backup:
      return "backup";
    case State::Active:
      return "active";
    case State::Passive:
      return "passive";
  }
  return "?";
}

std::optional<Role> parse_role(std::string_view text) {
  if (text == "primary") return Role::Primary;
  if (text == "backup") return Role::Backup;
  return std::nullopt;
}

std::string encode_state(State state) {
  // [1, state]: a fixarray of two positive fixints.
  return std::string{'\x92', '\x01', static_cast<char>(state)};
}

std::optional<State> decode_state(const void* data, std::size_t size) {
  const auto* b = static_cast<const unsigned char*>(data);
  // A fixarray of at least two elements whose first two are fixints: version 1, a known state.
  // Later versions of this message may add elements; they are not read.
  if (size < 3 || (b[0] & 0xf0) != 0x90 || (b[0] & 0x0f) < 2 || b[1] != 1) return std::nullopt;
  if (b[2] < 1 || b[2] > 4) return std::nullopt;
  return static_cast<State>(b[2]);
}

// H1, H2.
HaCore::HaCore(Config config, TimePoint now, LogSink log)
    : config_(config),
      log_(std::move(log)),
      state_(config.role == Role::Primary ? State::Primary : State::Backup),
      peer_heard_(now),
      next_publish_(now) {
  publish(now);
}

void HaCore::become(State next, const std::string& why) {
  if (next == state_) return;
  if (log_) {
    log_(log::Level::Info, std::string("broker pair: ") + name(state_) + " -> " + name(next) +
                               " (" + name(config_.role) + "): " + why);
  }
  state_ = next;
  if (next == State::Active) activated_ = true;
  // A change is told at once, not at the next interval: the peer decides on it.
  next_publish_ = TimePoint::min();
}

void HaCore::publish(TimePoint now) {
  outbox_.push_back(encode_state(state_));
  next_publish_ = now + config_.interval;
}

// H17.
void HaCore::on_peer_state(const void* data, std::size_t size, TimePoint now) {
  const std::optional<State> peer = decode_state(data, size);
  if (!peer) {
    if (log_)
      log_(log::Level::Warning, "broker pair: ignored a state message that does not decode");
    return;
  }
  on_peer(*peer, now);
}

void HaCore::on_peer(State peer, TimePoint now) {
  // Whether the peer was already heard active (within expiry): H11's primary side acts once.
  const bool was_active = peer_ == State::Active && !peer_silent(now);
  peer_ = peer;
  peer_heard_ = now;
  switch (state_) {
    case State::Primary:
      if (peer == State::Backup) {
        become(State::Active, "the backup is there");  // H4
      } else if (peer == State::Active) {
        become(State::Passive, "the peer is active");  // H5: a returning primary stands by
      } else if (peer == State::Primary && !warned_same_role_) {
        warned_same_role_ = true;  // H18
        if (log_) log_(log::Level::Error, "broker pair: both brokers are --ha-role primary");
      }
      break;  // H19: a passive peer makes a starting primary wait for it to become active
    case State::Backup:
      if (peer == State::Active) {
        become(State::Passive, "the peer is active");  // H5
      } else if (peer == State::Backup && !warned_same_role_) {
        warned_same_role_ = true;  // H18
        if (log_) log_(log::Level::Error, "broker pair: both brokers are --ha-role backup");
      }
      break;  // H19: a primary peer becomes active on our state
    case State::Active:
      if (peer == State::Active) {
        // H11: both active (a partition between the brokers healed after peers turned to
        // each). The primary stays; the backup stops serving.
        if (config_.role == Role::Primary && !was_active) {
          // The backup's workers and clients come here next, the workers with the tasks they
          // kept: a new adoption window, so that their work is adopted, not run again (§9.1).
          activated_ = true;
          if (log_) {
            log_(log::Level::Warning,
                 "broker pair: the backup is active too (a partition healed); it stops serving, "
                 "its peers come here");
          }
        }
        if (config_.role == Role::Backup && !yield_) {
          yield_ = true;
          // Its state goes out now, before the server stops: a primary that heard no word from
          // it since the partition healed learns that it was active, and opens the adoption
          // window its peers (and their workers' kept tasks) need (seppo-sim --pair seed 16708).
          publish(now);
          if (log_) {
            log_(log::Level::Error,
                 "broker pair: the primary is active too: this backup stops serving");
          }
        }
      }
      break;  // H19
    case State::Passive:
      if (peer == State::Primary || peer == State::Backup) {
        become(State::Active, "the peer restarted");  // H12
      } else if (peer == State::Passive && config_.role == Role::Primary) {
        become(State::Active, "both brokers were passive");  // H13
      }
      break;
  }
}

bool HaCore::on_request(TimePoint now) {
  switch (state_) {
    case State::Active:
      return true;  // H10
    case State::Primary:
      if (peer_silent(now)) {
        become(State::Active, "a peer turned here and no backup is heard");  // H6
        return true;
      }
      return false;  // H7
    case State::Backup:
      return false;  // H8: a backup that never heard its primary does not take over
    case State::Passive:
      if (peer_silent(now)) {
        become(State::Active, "a peer turned here and the active broker is not heard");  // H14
        return true;
      }
      turned_ = now;  // H15
      return false;
  }
  return false;
}

void HaCore::on_tick(TimePoint now) {
  // H16: a client or worker turned here recently, and now the peer has been silent for expiry.
  if (state_ == State::Passive && turned_ && now - *turned_ < config_.expiry && peer_silent(now)) {
    become(State::Active, "a peer turned here and the active broker is not heard");
  }
  if (turned_ && now - *turned_ >= config_.expiry) turned_.reset();
  if (now >= next_publish_) publish(now);  // H3
}

TimePoint HaCore::next_deadline() const {
  TimePoint deadline = next_publish_;
  if (state_ == State::Passive && turned_) {
    deadline = std::min(deadline, std::max(peer_heard_ + config_.expiry, *turned_));
  }
  return deadline;
}

std::vector<std::string> HaCore::take_outbox() {
  return std::exchange(outbox_, {});
}

bool HaCore::take_activated() {
  return std::exchange(activated_, false);
}

std::optional<State> HaCore::peer(TimePoint now) const {
  if (!peer_ || peer_silent(now)) return std::nullopt;
  return peer_;
}

}  // namespace seppo::broker::ha
