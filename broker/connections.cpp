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
  events_.clear();
  std::vector<zmq::message_t> frames;
  while (true) {
    frames.clear();
    if (!zmq::recv_multipart(pipe_, std::back_inserter(frames), zmq::recv_flags::dontwait)) {
      break;
    }
    if (frames.size() != 2 || frames[0].size() != 6) continue;
    std::uint16_t event = 0;
    std::uint32_t value = 0;
    std::memcpy(&event, frames[0].data(), sizeof event);
    std::memcpy(&value, frames[0].data<char>() + sizeof event, sizeof value);
    events_.emplace_back(event, static_cast<int>(value));
  }
  // Without a new connection, every message kept unchecked came on its peer's connection.
  moved_.clear();
  const bool accepted = std::any_of(events_.begin(), events_.end(),
                                    [](const auto& e) { return e.first == ZMQ_EVENT_ACCEPTED; });
  if (accepted) {
    for (auto& [peer, frame] : unchecked_) {
      const int fd = zmq_msg_get(frame.handle(), ZMQ_SRCFD);
      if (fd < 0) continue;
      auto w = where_.find(peer);
      if (w != where_.end() && w->second.first == fd) continue;
      moved_.emplace_back(peer, fd);
    }
  }
  unchecked_.clear();
  // A peer that moved is attributed right after its connection's ACCEPTED: the events after
  // it (its old connection closing, or its new one) come in their order. Each later ACCEPTED
  // of the same descriptor attributes it again: the kernel reuses the lowest free number, so
  // a connection that came and went just before may have held it first.
  std::vector<bool> attributed(moved_.size(), false);
  for (const auto& [event, fd] : events_) {
    apply(event, fd);
    if (event != ZMQ_EVENT_ACCEPTED) continue;
    for (std::size_t i = 0; i < moved_.size(); ++i) {
      if (moved_[i].second != fd) continue;
      attribute(moved_[i].first, fd);
      attributed[i] = true;
    }
  }
  for (std::size_t i = 0; i < moved_.size(); ++i) {
    if (!attributed[i]) attribute(moved_[i].first, moved_[i].second);
  }
}

void Connections::apply(std::uint16_t event, int fd) {
  if (event == ZMQ_EVENT_ACCEPTED) {
    by_fd_[fd] = next_connection_;
    unattributed_.insert(next_connection_++);
  } else if (event == ZMQ_EVENT_DISCONNECTED) {
    closed_fds_.push_back(fd);
    auto c = by_fd_.find(fd);
    if (c == by_fd_.end()) return;
    unattributed_.erase(c->second);
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

void Connections::attribute(const std::string& peer, int fd) {
  auto c = by_fd_.find(fd);
  if (c == by_fd_.end()) return;
  auto w = where_.find(peer);
  if (w != where_.end()) {
    auto p = peers_.find(w->second.second);
    if (p != peers_.end()) {
      p->second.erase(peer);
      if (p->second.empty()) peers_.erase(p);
    }
  }
  where_[peer] = {fd, c->second};
  peers_[c->second].insert(peer);
  unattributed_.erase(c->second);
  // Its old connection may have closed in the events just read: it is not lost, it moved.
  lost_.erase(std::remove(lost_.begin(), lost_.end(), peer), lost_.end());
}

void Connections::heard(const std::string& peer, zmq::message_t& header) {
  if (unchecked_.size() >= kMaxUnchecked) read_events();  // checks those kept
  auto w = where_.find(peer);
  if (w != where_.end() && unattributed_.empty()) {
    unchecked_.emplace_back(peer, std::move(header));
    return;
  }
  const int fd = zmq_msg_get(header.handle(), ZMQ_SRCFD);
  if (fd < 0) return;
  // The same peer on the same descriptor costs no system call. (A peer that reconnects and
  // gets its old descriptor number back is attributed to its old connection until the next
  // event is read; its closing then presumes it lost, and it announces itself again when the
  // broker answers its next message with not_ready.)
  if (w != where_.end() && w->second.first == fd) return;
  read_events();  // this message's ACCEPTED, and any DISCONNECTED before it
  attribute(peer, fd);
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
