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
#pragma once

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
  // Reads the waiting events; returns the peers whose last connection closed.
  std::vector<std::string> take_lost();
  // Reads the waiting events; returns the descriptors of connections that closed since the
  // last call, oldest first (routing ids bound to users are released by descriptor, §14.6).
  std::vector<int> take_closed_fds();

 private:
  void read_events();
  void apply(std::uint16_t event, int fd);
  // The message of `peer` came on descriptor `fd`, whose connection is the latest ACCEPTED.
  void attribute(const std::string& peer, int fd);

  // Messages kept unchecked at most: more are checked at once (the socket loop reads the events
  // after every batch, so this is only a bound).
  static constexpr std::size_t kMaxUnchecked = 4096;

  zmq::socket_t& router_;
  zmq::socket_t pipe_;
  std::uint64_t next_connection_ = 1;
  std::unordered_map<int, std::uint64_t> by_fd_;  // open descriptor -> its connection
  std::unordered_map<std::uint64_t, std::unordered_set<std::string>> peers_;  // connection ->
  std::unordered_map<std::string, std::pair<int, std::uint64_t>> where_;      // peer -> fd, conn
  // Open connections no message has been attributed to yet: while there is one, any peer may
  // be moving to it, so every message is checked.
  std::unordered_set<std::uint64_t> unattributed_;
  // Messages taken as from their peer's known connection since the events were last read.
  std::vector<std::pair<std::string, zmq::message_t>> unchecked_;
  std::vector<std::pair<std::uint16_t, int>> events_;  // read, not yet applied (reused)
  std::vector<std::pair<std::string, int>> moved_;     // checked: (peer, descriptor) (reused)
  std::vector<std::string> lost_;
  std::vector<int> closed_fds_;
};

}  // namespace seppo::broker
