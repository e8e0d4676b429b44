// A worker given a pair of brokers (docs/protocol.md §15.4, rows W40 and W41): it talks to one
// endpoint of the list at a time and moves to the next when its broker falls silent for
// `failover_after` or answers `ERROR not_active`. What it holds is handled as on any change of
// broker (W14, W26: kept tasks are listed to the next broker, which adopts them, §9.1).
#include <algorithm>

#include "worker/session_core.hpp"

namespace seppo::worker {

namespace {
std::string ms(std::chrono::steady_clock::duration d) {
  return std::to_string(std::chrono::duration_cast<std::chrono::milliseconds>(d).count());
}
}  // namespace

// With one endpoint, W14's heartbeat × liveness; with several, failover_after: heartbeat × 3/2,
// at least heartbeat + 250 ms (the broker answers every HEARTBEAT, sent each heartbeat, so a
// longer silence means it is gone; the 250 ms keep a short heartbeat on a loaded host from
// turning peers to the passive broker for a hiccup, §15.1).
std::chrono::steady_clock::duration SessionCore::silence_limit() const {
  if (endpoints_.size() < 2) return expiry();
  const std::chrono::milliseconds after =
      std::max(heartbeat_ * 3 / 2, heartbeat_ + std::chrono::milliseconds(250));
  return std::min<std::chrono::steady_clock::duration>(after, expiry());
}

// W40: the broker fell silent (or refused, W41): start over at the next endpoint, as W14 does on
// one. Each endpoint gets `probe` (heartbeat / 2) to answer; after each round through the list
// the delay doubles, up to max_reconnect_delay; any message heard resets it (W8).
void SessionCore::fail_over(TimePoint now) {
  const std::string from = endpoints_[endpoint_];
  endpoint_ = (endpoint_ + 1) % endpoints_.size();
  log_(log::Level::Warning, "no word from broker " + from + " for " + ms(now - last_heard_) +
                                " ms; trying " + endpoints_[endpoint_]);
  forget_tasks();
  connect(now);
  const std::chrono::milliseconds probe = std::max(heartbeat_ / 2, std::chrono::milliseconds(1));
  if (endpoint_ == 0) {
    reconnect_delay_ =
        std::min(std::max(reconnect_delay_ * 2, probe), options_.max_reconnect_delay);
  }
  const auto delay = std::max(reconnect_delay_, probe);
  next_reconnect_ = now + delay;
  last_heard_ = now - silence_limit() + delay;
}

// W41: a broker of a pair that is not the active one. The next endpoint is tried `probe` from
// now (not at once: two brokers that both refuse are not asked in a tight loop); with one
// endpoint, W14 tries the same one again.
void SessionCore::on_not_active(TimePoint now) {
  log_(log::Level::Info, "the broker at " + endpoints_[endpoint_] +
                             " is not the active one of its pair" +
                             (endpoints_.size() > 1 ? "; trying the next endpoint"
                                                    : ": give seppo-worker both endpoints"));
  const std::chrono::milliseconds probe = std::max(heartbeat_ / 2, std::chrono::milliseconds(1));
  last_heard_ = now - silence_limit() + probe;
}

}  // namespace seppo::worker
