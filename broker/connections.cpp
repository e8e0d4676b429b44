#include "broker/connections.hpp"

#include <algorithm>
#include <atomic>
#include <cstring>

#include <zmq_addon.hpp>

namespace seppo::broker {

Connections::Connections(zmq::context_t& context, zmq::socket_t& router)
    : router_(router), pipe_(context, zmq::socket_type::pair) {
  static std::atomic<unsigned> counter{0};
  const std::string endpoint = "inproc://seppo-connections-" + std::to_string(++counter);
  if (zmq_socket_monitor(router_.handle(), endpoint.c_str(),
                         ZMQ_EVENT_ACCEPTED | ZMQ_EVENT_DISCONNECTED) != 0) {
    throw zmq::error_t();
  }
  pipe_.set(zmq::sockopt::linger, 0);
  pipe_.connect(endpoint);
}

Connections::~Connections() {
  zmq_socket_monitor(router_.handle(), nullptr, 0);
  pipe_.close();
}

void Connections::read_events() {
  std::vector<zmq::message_t> frames;
  while (true) {
    frames.clear();
    if (!zmq::recv_multipart(pipe_, std::back_inserter(frames), zmq::recv_flags::dontwait)) {
      return;
    }
    if (frames.size() != 2 || frames[0].size() != 6) continue;
    std::uint16_t event = 0;
    std::uint32_t value = 0;
    std::memcpy(&event, frames[0].data(), sizeof event);
    std::memcpy(&value, frames[0].data<char>() + sizeof event, sizeof value);
    const int fd = static_cast<int>(value);
    if (event == ZMQ_EVENT_ACCEPTED) {
      by_fd_[fd] = next_connection_++;
    } else if (event == ZMQ_EVENT_DISCONNECTED) {
      closed_fds_.push_back(fd);
      auto c = by_fd_.find(fd);
      if (c == by_fd_.end()) continue;
      auto p = peers_.find(c->second);
      if (p != peers_.end()) {
        for (const std::string& peer : p->second) {
          where_.erase(peer);
          lost_.push_back(peer);
        }
        peers_.erase(p);
      }
      by_fd_.erase(c);
    }
  }
}

void Connections::heard(const std::string& peer, zmq::message_t& header) {
  const int fd = zmq_msg_get(header.handle(), ZMQ_SRCFD);
  if (fd < 0) return;
  auto w = where_.find(peer);
  // The common case costs no system call: the same peer on the same descriptor. (A peer that
  // reconnects and gets its old descriptor number back is attributed to its old connection
  // until the next event is read; its closing then presumes it lost, and it announces itself
  // again when the broker answers its next message with not_ready.)
  if (w != where_.end() && w->second.first == fd) return;
  read_events();  // this message's ACCEPTED, and any DISCONNECTED before it
  auto c = by_fd_.find(fd);
  if (c == by_fd_.end()) return;
  w = where_.find(peer);
  if (w != where_.end()) {
    auto p = peers_.find(w->second.second);
    if (p != peers_.end()) {
      p->second.erase(peer);
      if (p->second.empty()) peers_.erase(p);
    }
  }
  where_[peer] = {fd, c->second};
  peers_[c->second].insert(peer);
  // Its old connection may have closed in the events just read: it is not lost, it moved.
  lost_.erase(std::remove(lost_.begin(), lost_.end(), peer), lost_.end());
}

std::vector<std::string> Connections::take_lost() {
  read_events();
  std::vector<std::string> lost;
  lost.swap(lost_);
  return lost;
}

std::vector<int> Connections::take_closed_fds() {
  read_events();
  std::vector<int> closed;
  closed.swap(closed_fds_);
  return closed;
}

}  // namespace seppo::broker
