#include "broker/admission.hpp"

#include <algorithm>

#include "common/curve.hpp"

namespace seppo::broker {
namespace {

std::string describe(const std::string& fingerprint, const std::string& label) {
  return label.empty() ? fingerprint : fingerprint + " (" + label + ")";
}

}  // namespace

std::shared_ptr<const KeyLists> KeyLists::load(const AuthConfig& config) {
  auto lists = std::make_shared<KeyLists>();
  for (const auto& [path, role] :
       {std::pair{config.workers, Role::Worker}, std::pair{config.clients, Role::Client}}) {
    if (path.empty()) continue;
    for (curve::AuthorizedKey& k : curve::read_authorized(path)) {
      auto [entry, added] = lists->keys_.try_emplace(k.key, Entry{role, k.label});
      if (!added && entry->second.role != role && entry->second.role != Role::Any) {
        entry->second.role = Role::Any;
        lists->warnings_.push_back("key " + describe(curve::fingerprint(k.key), k.label) +
                                   " is authorised both as a worker and as a client (" + k.origin +
                                   "): it may do both");
      }
    }
  }
  for (const auto& [key, entry] : lists->keys_) {
    if (entry.role != Role::Client) ++lists->workers_;
    if (entry.role != Role::Worker) ++lists->clients_;
  }
  return lists;
}

std::optional<Role> KeyLists::role_of(std::string_view key) const {
  auto it = keys_.find(key);
  if (it == keys_.end()) return std::nullopt;
  return it->second.role;
}

const std::string& KeyLists::label_of(std::string_view key) const {
  static const std::string none;
  auto it = keys_.find(key);
  return it == keys_.end() ? none : it->second.label;
}

std::string KeyLists::summary() const {
  return std::to_string(workers_) + " worker key" + (workers_ == 1 ? "" : "s") + ", " +
         std::to_string(clients_) + " client key" + (clients_ == 1 ? "" : "s");
}

std::string user_id(Role role, std::string_view key) {
  return std::string(role_name(role)) + ":" + std::string(key);
}

std::optional<Admitted> parse_user_id(std::string_view text) {
  const auto colon = text.find(':');
  if (colon == std::string_view::npos) return std::nullopt;
  const std::string_view role = text.substr(0, colon);
  const std::string_view key = text.substr(colon + 1);
  if (key.size() != curve::kZ85Chars) return std::nullopt;
  for (Role r : {Role::Worker, Role::Client, Role::Any}) {
    if (role == role_name(r)) return Admitted{r, key};
  }
  return std::nullopt;
}

std::optional<Role> still_permitted(Role admitted, std::optional<Role> current) {
  if (!current) return std::nullopt;
  if (admitted == Role::Any) return current;
  if (*current == Role::Any || *current == admitted) return admitted;
  return std::nullopt;
}
std::shared_ptr<const KeyLists> KeyLists::of(
    const std::vector<std::pair<std::string, Role>>& keys) {
  auto lists = std::make_shared<KeyLists>();
  for (const auto& [key, role] : keys) {
    lists->keys_[key] = Entry{role, ""};
    if (role != Role::Client) ++lists->workers_;
    if (role != Role::Worker) ++lists->clients_;
  }
  return lists;
}

bool RoutingBindings::on_message(std::string_view peer, std::string_view user, int fd,
                                 std::chrono::steady_clock::time_point now) {
  auto [it, added] = by_peer_.try_emplace(std::string(peer));
  Binding& b = it->second;
  if (added) b.user = std::string(user);
  if (b.user != user) {
    b.refused = true;
    return false;
  }
  if (b.fd != fd) {
    if (b.fd >= 0) {
      if (auto old = by_fd_.find(b.fd); old != by_fd_.end() && old->second == peer)
        by_fd_.erase(old);
    }
    // A descriptor serves one connection, hence one id: a stale entry is an id whose close
    // came after the next connection reused the number (not seen, but harmless to drop).
    if (fd >= 0) {
      auto [entry, fresh] = by_fd_.try_emplace(fd, std::string(peer));
      if (!fresh && entry->second != peer) {
        if (auto other = by_peer_.find(entry->second); other != by_peer_.end())
          other->second.fd = -1;
        entry->second = std::string(peer);
      }
    }
    b.fd = fd;
  }
  b.refused = false;
  b.heard = now;
  return true;
}

void RoutingBindings::on_closed(int fd) {
  auto it = by_fd_.find(fd);
  if (it == by_fd_.end()) return;
  if (auto b = by_peer_.find(it->second); b != by_peer_.end()) b->second.fd = -1;
  by_fd_.erase(it);
}

bool RoutingBindings::may_send(std::string_view peer) const {
  auto it = by_peer_.find(std::string(peer));
  // An id never heard under authentication (the broker's own sends before any message) is
  // not anyone's yet.
  if (it == by_peer_.end()) return true;
  return it->second.fd >= 0 && !it->second.refused;
}

std::string RoutingBindings::owner(std::string_view peer) const {
  auto it = by_peer_.find(std::string(peer));
  return it == by_peer_.end() ? std::string() : it->second.user;
}

void RoutingBindings::expire(std::chrono::steady_clock::time_point now) {
  for (auto it = by_peer_.begin(); it != by_peer_.end();) {
    if (now - it->second.heard > forget_after_) {
      if (auto f = by_fd_.find(it->second.fd); f != by_fd_.end() && f->second == it->first) {
        by_fd_.erase(f);
      }
      it = by_peer_.erase(it);
    } else {
      ++it;
    }
  }
}

Admission::Admission(Options options, LogSink log)
    : lists_(std::move(options.lists)), log_(std::move(log)) {
  if (options.bind_for.count() > 0) bindings_.emplace(options.bind_for);
}

std::vector<Admission::Revoked> Admission::reloaded(std::shared_ptr<const KeyLists> lists) {
  lists_ = std::move(lists);
  warned_.clear();
  answered_.clear();
  revoked_.clear();
  std::vector<Revoked> revoked;
  if (!bindings_ || !lists_) return revoked;
  bindings_->for_each([&](const std::string& peer, const std::string& user, int fd) {
    const std::optional<Admitted> admitted = parse_user_id(user);
    if (!admitted) return;  // "uid:1000": no key to revoke
    const std::optional<Role> role =
        still_permitted(admitted->role, lists_->role_of(admitted->key));
    const bool was_worker = admitted->role != Role::Client;
    const bool worker = was_worker && (!role || *role == Role::Client);
    if (!worker && role) return;
    revoked.push_back(Revoked{peer, user, fd, worker, !role});
    if (!role) revoked_.insert(peer);
  });
  return revoked;
}

std::vector<Admission::Revoked> reload(Admission& admission, Core* core,
                                       std::shared_ptr<const KeyLists> lists, TimePoint now) {
  std::vector<Admission::Revoked> closing;
  for (Admission::Revoked& r : admission.reloaded(std::move(lists))) {
    if (!r.worker || core == nullptr) continue;
    if (!core->on_revoked(r.peer, now) && !r.all) continue;
    closing.push_back(std::move(r));
  }
  return closing;
}

void Admission::warn_once(const std::string& key, const std::string& text) {
  // Once per key and reload: a dropped peer keeps sending.
  if (warned_.insert(key).second && log_) log_(log::Level::Warning, text);
}

Admission::Verdict Admission::on_message(const PeerId& peer, const char* user, int connection,
                                         TimePoint now) {
  Verdict v;
  if (lists_) {
    // The role and key its connection was admitted with, narrowed to what the current lists
    // still allow. A client's refusal is answered (at most once a second per routing id) so that it
    // fails at once rather than after its timeout (§14.5); a worker stops for good on ERROR
    // forbidden, and its key may be authorised again, so it is left to reconnect and be refused.
    const std::optional<Admitted> admitted = user ? parse_user_id(user) : std::nullopt;
    if (!admitted) {
      warn_once("?", "dropped a message that carries no authenticated key");
      v.reason = "unauthorised_key";
      return v;
    }
    const std::optional<Role> role =
        still_permitted(admitted->role, lists_->role_of(admitted->key));
    if (!role) {
      warn_once(std::string(admitted->key),
                "dropped messages from key " + curve::fingerprint(admitted->key) +
                    ", admitted as " + role_name(admitted->role) +
                    " but no longer authorised so since the lists were reloaded");
      v.reason = "unauthorised_key";
      // The answer goes back on the connection this message came by (no handover where keys
      // are on: the id is that connection's), even when the id's bound connection closed and
      // this is the client's next one; the binding only keeps it from another key's id. Again
      // after kAnswerAgain: an ERROR on a connection that closes is lost without a word.
      if (admitted->role != Role::Worker &&
          (!bindings_ || bindings_->owner(peer).empty() || bindings_->owner(peer) == user)) {
        auto answered = answered_.find(peer);
        if (answered == answered_.end()) {
          // Full: start again (some ids may be answered a second early) rather than never
          // answering a new one.
          if (answered_.size() >= kMaxAnswered) answered_.clear();
          answered = answered_.emplace(peer, now - kAnswerAgain).first;
        }
        if (now - answered->second >= kAnswerAgain) {
          answered->second = now;
          v.refusal = "this client's key " + curve::fingerprint(admitted->key) +
                      " is no longer authorised (the broker's lists were reloaded)";
        }
      }
      return v;
    }
    v.role = *role;
    v.key = admitted->key.substr(0, 8);
  }
  if (bindings_ && !bindings_->on_message(peer, user ? user : "", connection, now)) {
    v.reason = "routing_id_taken";
    if (refusals_logged_.size() > kMaxLogged) refusals_logged_.clear();
    auto [logged, first] = refusals_logged_.try_emplace(peer, now);
    if ((first || now - logged->second >= std::chrono::minutes(1)) && log_) {
      logged->second = now;
      log_(log::Level::Warning, "refused a message with routing id " + printable_id(peer) +
                                    " from " + describe_user(user ? user : "") +
                                    ": the id belongs to " + describe_user(bindings_->owner(peer)) +
                                    " (nothing goes to the id until its owner speaks again)");
    }
    return v;
  }
  // The id is taken under a key the lists grant (perhaps again, or by another after its
  // binding expired): it may be sent to.
  if (!revoked_.empty()) revoked_.erase(peer);
  v.accepted = true;
  return v;
}

void Admission::on_closed(int connection) {
  if (bindings_) bindings_->on_closed(connection);
}

bool Admission::may_send(const PeerId& peer) const {
  if (!revoked_.empty() && revoked_.count(peer) != 0) return false;
  return !bindings_ || bindings_->may_send(peer);
}

void Admission::expire(TimePoint now) {
  if (!bindings_) return;
  bindings_->expire(now);
  for (auto it = revoked_.begin(); it != revoked_.end();) {
    it = bindings_->owner(*it).empty() ? revoked_.erase(it) : std::next(it);
  }
}

std::string describe_user(std::string_view user) {
  if (const auto admitted = parse_user_id(user)) return "key " + curve::fingerprint(admitted->key);
  if (user.rfind("uid:", 0) == 0) return "uid " + std::string(user.substr(4));
  return user.empty() ? std::string("no user") : std::string(user);
}

}  // namespace seppo::broker
