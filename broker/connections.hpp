// Which peer is on which connection, so that a connection that closes (a worker process that
// died) is news about that peer at once, not after heartbeat x liveness (docs/protocol.md §8).
//
// A ROUTER does not say whose connection closed: its monitor reports ACCEPTED and DISCONNECTED
// with the connection's file descriptor, and each message says which descriptor it came from
// (ZMQ_SRCFD). Descriptor numbers are reused, so each ACCEPTED starts a new connection number,
// and events are read before a message is attributed: the ACCEPTED of a message's connection
// always precedes the message (libzmq reports it when accept() returns), and the DISCONNECTED
// of an earlier connection on the same descriptor precedes that ACCEPTED (libzmq reports it
// before closing the descriptor).
//
// Asking a message for its descriptor costs libzmq a lookup in the connection's metadata (a
// map of strings) and a strtol: about 900 instructions, 5 % of the broker's cost per task
// (issue 16). A peer can only change connection to one accepted after its connection, so
// while every known connection has been attributed to its peers, a message from a known peer
// is taken as coming from that peer's connection and kept unchecked; the next reading of the
// events checks the kept messages only if it finds a connection accepted meanwhile, before
// applying the events, in the order heard() would have.
//
// The same events let the broker bound what connections can cost it (issue 26): a cap on the
// number open (--max-connections: each costs a descriptor, and libzmq spins on accept() once
// they run out), and a bound on the bytes a TCP connection may send without completing a
// message (libzmq's ZMQ_MAXMSGSIZE limits each frame, not the message: a peer sending frames
// marked MORE and never the last held the broker's memory without bound).
#pragma once

#include <chrono>
#include <cstdint>
#include <string>
#include <unordered_map>
#include <unordered_set>
#include <utility>
#include <vector>

#include <zmq.hpp>

namespace seppo::broker {

class Connections {
 public:
  // Monitors `router`, which must outlive this object.
  Connections(zmq::context_t& context, zmq::socket_t& router);
  ~Connections();
  Connections(const Connections&) = delete;
  Connections& operator=(const Connections&) = delete;

  // For a poll set: readable when an event is waiting.
  zmq::pollitem_t pollitem() { return {pipe_.handle(), 0, ZMQ_POLLIN, 0}; }
  // A message from `peer` arrived on `header` (a received frame, which knows its descriptor).
  // May take the frame (leaving `header` empty) to check it later: call it once the frame's
  // bytes are no longer needed.
  void heard(const std::string& peer, zmq::message_t& header);
  // Reads the waiting events (unless `read` is false: the caller read them just now); returns
  // the peers whose last connection closed.
  std::vector<std::string> take_lost(bool read = true);
  // Reads the waiting events; returns the descriptors of connections that closed since the
  // last call, oldest first (routing ids bound to users are released by descriptor, §14.6).
  std::vector<int> take_closed_fds();

  // Closes the open connection on descriptor `fd` (shutdown(2): libzmq then closes it as for
  // a peer that left); false if no open connection has it. Reads the waiting events first.
  bool drop(int fd);
  // Connections accepted beyond `max_connections` open are closed at once (shutdown(2) of
  // their descriptor: libzmq then closes it as for a peer that left), logged at most once a
  // minute. 0: no cap.
  void set_max_connections(std::size_t max_connections) { max_connections_ = max_connections; }
  // A TCP connection that has received more than `bytes` since a message of it was last read
  // (or since it opened) is closed: `bytes` must exceed the largest message plus what the
  // kernel buffers. 0: no bound.
  void set_max_unfinished_bytes(std::uint64_t bytes) { max_unfinished_ = bytes; }
  // Checks the bound above: cheap (one read of /proc/self/statm) unless the process grew by
  // 8 MiB since the last full check or a second has passed, when every TCP connection is asked
  // for its received byte count (TCP_INFO). Returns when to call it again: in 20 ms while a TCP
  // connection is open, else in a second (call it at once when the monitor's events come).
  std::chrono::steady_clock::time_point guard(std::chrono::steady_clock::time_point now);

 private:
  void read_events();
  void apply(std::uint16_t event, int fd);
  // The message of `peer` came on descriptor `fd`, whose connection is the latest ACCEPTED.
  void attribute(const std::string& peer, int fd);
  // Closes the connection on `fd` if it is still `connection`; false if it is not.
  bool close_connection(int fd, std::uint64_t connection);
  void check_unfinished();

  struct Where {
    int fd = -1;
    std::uint64_t connection = 0;
    std::uint64_t heard = 0;  // messages attributed to it (the guard's sign of progress)
  };
  struct Watched {
    bool tcp = true;             // TCP_INFO answered (ipc:// peers are the broker's own users)
    std::uint64_t baseline = 0;  // bytes received when a message of it was last seen
    std::uint64_t heard = 0;     // the sum of its peers' `heard` then
  };

  // Messages kept unchecked at most: more are checked at once (the socket loop reads the events
  // after every batch, so this is only a bound).
  static constexpr std::size_t kMaxUnchecked = 4096;

  zmq::socket_t& router_;
  zmq::socket_t pipe_;
  std::uint64_t next_connection_ = 1;
  std::unordered_map<int, std::uint64_t> by_fd_;  // open descriptor -> its connection
  std::unordered_map<std::uint64_t, std::unordered_set<std::string>> peers_;  // connection ->
  std::unordered_map<std::string, Where> where_;                              // peer ->
  // Open connections no message has been attributed to yet: while there is one, any peer may
  // be moving to it, so every message is checked.
  std::unordered_set<std::uint64_t> unattributed_;
  // Messages taken as from their peer's known connection since the events were last read.
  std::vector<std::pair<std::string, zmq::message_t>> unchecked_;
  std::vector<std::pair<std::uint16_t, int>> events_;  // read, not yet applied (reused)
  std::vector<std::pair<std::string, int>> moved_;     // checked: (peer, descriptor) (reused)
  std::vector<std::string> lost_;
  std::vector<int> closed_fds_;

  std::size_t max_connections_ = 0;
  std::uint64_t max_unfinished_ = 0;
  std::vector<std::pair<int, std::uint64_t>> over_cap_;  // accepted beyond the cap (reused)
  // Events counted since they were last logged, at most once a minute each.
  struct Tally {
    std::uint64_t count = 0;
    std::chrono::steady_clock::time_point logged{};
    // The count to log now (and start again from 0), or 0.
    std::uint64_t take(std::chrono::steady_clock::time_point now) {
      if (count == 0 || now - logged < std::chrono::minutes(1)) return 0;
      logged = now;
      return std::exchange(count, 0);
    }
  };
  Tally over_cap_closed_, accept_failures_, unfinished_closed_;
  // Handshakes ZeroMQ refused: a peer without keys at a broker with keys (mechanism mismatch),
  // and others (a wrong server key, garbage).
  Tally without_keys_, broken_handshakes_;
  // Connections that closed during the handshake (HANDSHAKE_FAILED_NO_DETAIL): a peer whose
  // mechanism is not the broker's that saw the mismatch first, or a probe that said nothing.
  Tally closed_in_handshake_;
  std::unordered_map<std::uint64_t, Watched> watched_;  // connection ->
  std::chrono::steady_clock::time_point last_full_check_{};
  std::uint64_t rss_at_check_ = 0;  // pages
};

}  // namespace seppo::broker
