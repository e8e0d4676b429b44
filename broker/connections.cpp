#include "broker/connections.hpp"

#include <linux/tcp.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cstddef>
#include <cstdio>
#include <cstring>
#include <functional>
#include <utility>
#include <vector>

#include "common/log.hpp"

#include <zmq_addon.hpp>

namespace seppo::broker {

Connections::Connections(zmq::context_t& context, zmq::socket_t& router)
    : router_(router), pipe_(context, zmq::socket_type::pair) {
  static std::atomic<unsigned> counter{0};
  const std::string endpoint = "inproc://seppo-connections-" + std::to_string(++counter);
  if (zmq_socket_monitor(router_.handle(), endpoint.c_str(),
                         ZMQ_EVENT_ACCEPTED | ZMQ_EVENT_DISCONNECTED | ZMQ_EVENT_ACCEPT_FAILED |
                             ZMQ_EVENT_HANDSHAKE_FAILED_PROTOCOL |
                             ZMQ_EVENT_HANDSHAKE_FAILED_NO_DETAIL) != 0) {
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
      if (w != where_.end() && w->second.fd == fd) continue;
      moved_.emplace_back(peer, fd);
    }
  }
  unchecked_.clear();
  // A peer that moved is attributed right after its connection's ACCEPTED: the events after
  // it (its old connection closing, or its new one) come in their order. Each later ACCEPTED
  // of the same descriptor attributes it again: the kernel reuses the lowest free number, so
  // a connection that came and went just before may have held it first.
  std::vector<bool> attributed(moved_.size(), false);
  over_cap_.clear();
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
  // Over the cap: the connections accepted last go, once the events read say they are still
  // open (libzmq reports a DISCONNECTED before it closes the descriptor, so one not reported
  // closed is still that connection's).
  const auto now = std::chrono::steady_clock::now();
  for (const auto& [fd, connection] : over_cap_) {
    if (close_connection(fd, connection)) ++over_cap_closed_.count;
  }
  if (const std::uint64_t n = over_cap_closed_.take(now)) {
    log::warning("at the connection cap (--max-connections " + std::to_string(max_connections_) +
                 "): closed " + std::to_string(n) +
                 " new connections (logged at most once a minute); the peers already connected "
                 "are served");
  }
  // A peer without keys never reaches the ZAP handler, which logs unknown keys: ZeroMQ refuses
  // it in the handshake, and only the monitor hears of it.
  if (const std::uint64_t n = without_keys_.take(now)) {
    const bool keys = router_.get(zmq::sockopt::curve_server) != 0;
    log::warning(
        "refused " + std::to_string(n) + (n == 1 ? " connection" : " connections") +
        (keys ? " without CurveZMQ keys" : " with CurveZMQ keys, which this broker has not") +
        " (logged at most once a minute): a peer's keys and the broker's go together "
        "(docs/operating.md)");
  }
  // Which side reads the other's whole greeting first sees the mismatch first, and closes
  // before sending the rest of its own: when the peer does, the broker sees a connection
  // closed in the greeting, never its mechanism (and libzmq does not reconnect a socket after
  // its own protocol error, so a keyless DEALER may knock only once).
  if (const std::uint64_t n = closed_in_handshake_.take(now)) {
    const bool keys = router_.get(zmq::sockopt::curve_server) != 0;
    log::warning("refused " + std::to_string(n) + (n == 1 ? " connection" : " connections") +
                 " that closed during the ZeroMQ handshake (logged at most once a minute): " +
                 (keys ? "a peer without CurveZMQ keys" : "a peer with CurveZMQ keys") +
                 " does so when it reads the broker's greeting before the broker reads its "
                 "own; so does a port probe (docs/operating.md)");
  }
  if (const std::uint64_t n = broken_handshakes_.take(now)) {
    log::warning("refused " + std::to_string(n) + (n == 1 ? " connection" : " connections") +
                 " whose CurveZMQ handshake failed (logged at most once a minute): a peer "
                 "with another server key than this broker's, or not speaking ZMTP");
  }
  if (const std::uint64_t n = accept_failures_.take(now)) {
    log::error("could not accept " + std::to_string(n) +
               " connections (out of file descriptors or memory; logged at most once a "
               "minute): lower --max-connections or raise the descriptor limit (ulimit -n)");
  }
}

bool Connections::close_connection(int fd, std::uint64_t connection) {
  auto c = by_fd_.find(fd);
  if (c == by_fd_.end() || c->second != connection) return false;
  return ::shutdown(fd, SHUT_RDWR) == 0;
}

bool Connections::drop(int fd) {
  read_events();
  auto c = by_fd_.find(fd);
  return c != by_fd_.end() && close_connection(fd, c->second);
}

void Connections::apply(std::uint16_t event, int fd) {
  if (event == ZMQ_EVENT_ACCEPTED) {
    by_fd_[fd] = next_connection_;
    if (max_connections_ != 0 && by_fd_.size() > max_connections_) {
      over_cap_.emplace_back(fd, next_connection_);
    }
    unattributed_.insert(next_connection_++);
  } else if (event == ZMQ_EVENT_ACCEPT_FAILED) {
    ++accept_failures_.count;
  } else if (event == ZMQ_EVENT_HANDSHAKE_FAILED_PROTOCOL) {  // `fd` is the protocol error here
    if (fd == ZMQ_PROTOCOL_ERROR_ZMTP_MECHANISM_MISMATCH) {
      ++without_keys_.count;
    } else {
      ++broken_handshakes_.count;
    }
  } else if (event == ZMQ_EVENT_HANDSHAKE_FAILED_NO_DETAIL) {  // `fd` is errno here
    ++closed_in_handshake_.count;
  } else if (event == ZMQ_EVENT_DISCONNECTED) {
    closed_fds_.push_back(fd);
    auto c = by_fd_.find(fd);
    if (c == by_fd_.end()) return;
    unattributed_.erase(c->second);
    watched_.erase(c->second);
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
  std::uint64_t heard = 0;
  if (w != where_.end()) {
    heard = w->second.heard;
    auto p = peers_.find(w->second.connection);
    if (p != peers_.end()) {
      p->second.erase(peer);
      if (p->second.empty()) peers_.erase(p);
    }
  }
  where_[peer] = {fd, c->second, heard + 1};
  peers_[c->second].insert(peer);
  unattributed_.erase(c->second);
  // Its old connection may have closed in the events just read: it is not lost, it moved.
  lost_.erase(std::remove(lost_.begin(), lost_.end(), peer), lost_.end());
}

void Connections::heard(const std::string& peer, zmq::message_t& header) {
  if (unchecked_.size() >= kMaxUnchecked) read_events();  // checks those kept
  auto w = where_.find(peer);
  if (w != where_.end() && unattributed_.empty()) {
    ++w->second.heard;
    unchecked_.emplace_back(peer, std::move(header));
    return;
  }
  const int fd = zmq_msg_get(header.handle(), ZMQ_SRCFD);
  if (fd < 0) return;
  // The same peer on the same descriptor costs no system call. (A peer that reconnects and
  // gets its old descriptor number back is attributed to its old connection until the next
  // event is read; its closing then presumes it lost, and it announces itself again when the
  // broker answers its next message with not_ready.)
  if (w != where_.end() && w->second.fd == fd) {
    ++w->second.heard;
    return;
  }
  read_events();  // this message's ACCEPTED, and any DISCONNECTED before it
  attribute(peer, fd);
}

std::vector<std::string> Connections::take_lost(bool read) {
  if (read) read_events();
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

std::chrono::steady_clock::time_point Connections::guard(
    std::chrono::steady_clock::time_point now) {
  constexpr auto kCheck = std::chrono::milliseconds(20);
  if (max_unfinished_ == 0) return now + std::chrono::hours(1);
  // The resident size, in pages: a peer feeding an unfinished message makes it grow.
  std::uint64_t size = 0, resident = 0;
  if (FILE* statm = std::fopen("/proc/self/statm", "r")) {
    if (std::fscanf(statm, "%lu %lu", &size, &resident) != 2) resident = 0;
    std::fclose(statm);
  }
  const std::uint64_t grown_pages = (8u << 20) / static_cast<std::uint64_t>(::getpagesize());
  // An unreadable statm (descriptors exhausted) counts as no growth: the 1 s check still runs,
  // and a full pass on every turn would cost most when the loop can least afford it.
  if (now - last_full_check_ >= std::chrono::seconds(1) ||
      (resident != 0 && resident >= rss_at_check_ + grown_pages)) {
    last_full_check_ = now;
    rss_at_check_ = resident;
    check_unfinished();
  } else if (resident < rss_at_check_) {
    rss_at_check_ = resident;
  }
  // Without a TCP connection (none, or ipc:// only) nothing needs the frequent check: a new
  // connection's ACCEPTED wakes the socket loop, which calls again at once.
  const bool tcp = std::any_of(by_fd_.begin(), by_fd_.end(), [&](const auto& c) {
    auto w = watched_.find(c.second);
    return w == watched_.end() || w->second.tcp;
  });
  return now + (tcp ? kCheck : std::chrono::seconds(1));
}

void Connections::check_unfinished() {
  read_events();
  // Unfinished bytes per TCP connection: each is held to max_unfinished_, and all of them
  // together to four times that, so many connections cannot add up what one may not hold.
  std::vector<std::pair<std::uint64_t, int>> holding;  // (bytes, fd)
  std::uint64_t total = 0;
  for (const auto& [fd, connection] : by_fd_) {
    Watched& watched = watched_[connection];
    if (!watched.tcp) continue;
    tcp_info info{};
    socklen_t length = sizeof info;
    if (::getsockopt(fd, IPPROTO_TCP, TCP_INFO, &info, &length) != 0 ||
        length < offsetof(tcp_info, tcpi_bytes_received) + sizeof info.tcpi_bytes_received) {
      watched.tcp = false;  // ipc://: only the broker's own user (or group) connects there
      continue;
    }
    std::uint64_t heard = 0;
    if (auto p = peers_.find(connection); p != peers_.end()) {
      for (const std::string& peer : p->second) {
        if (auto w = where_.find(peer); w != where_.end()) heard += w->second.heard;
      }
    }
    const std::uint64_t received = info.tcpi_bytes_received;
    if (heard != watched.heard) {
      watched.heard = heard;
      watched.baseline = received;
      continue;
    }
    if (received < watched.baseline) {  // the number now names a new connection
      watched.baseline = received;
      continue;
    }
    holding.emplace_back(received - watched.baseline, fd);
    total += holding.back().first;
  }
  // The largest holders first: past either bound, they are the ones feeding memory.
  std::sort(holding.begin(), holding.end(), std::greater<>());
  for (const auto& [bytes, fd] : holding) {
    if (bytes <= max_unfinished_ && total <= 4 * max_unfinished_) break;
    total -= bytes;
    if (::shutdown(fd, SHUT_RDWR) != 0) continue;
    ++unfinished_closed_.count;
    if (const std::uint64_t n = unfinished_closed_.take(std::chrono::steady_clock::now())) {
      log::warning("closed " + std::to_string(n) + " connections that sent more than " +
                   std::to_string(max_unfinished_) +
                   " bytes without completing a message (--max-message-bytes plus the header "
                   "and buffers; logged at most once a minute)");
    }
  }
}

}  // namespace seppo::broker
