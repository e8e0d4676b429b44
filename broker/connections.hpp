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
#pragma once

#include <cstdint>
#include <string>
#include <unordered_map>
#include <unordered_set>
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
  void heard(const std::string& peer, zmq::message_t& header);
  // Reads the waiting events; returns the peers whose last connection closed.
  std::vector<std::string> take_lost();
  // Reads the waiting events; returns the descriptors of connections that closed since the
  // last call, oldest first (routing ids bound to users are released by descriptor, §14.6).
  std::vector<int> take_closed_fds();

 private:
  void read_events();

  zmq::socket_t& router_;
  zmq::socket_t pipe_;
  std::uint64_t next_connection_ = 1;
  std::unordered_map<int, std::uint64_t> by_fd_;  // open descriptor -> its connection
  std::unordered_map<std::uint64_t, std::unordered_set<std::string>> peers_;  // connection ->
  std::unordered_map<std::string, std::pair<int, std::uint64_t>> where_;      // peer -> fd, conn
  std::vector<std::string> lost_;
  std::vector<int> closed_fds_;
};

}  // namespace seppo::broker
