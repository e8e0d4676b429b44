#include "broker/auth.hpp"

#include <grp.h>
#include <pwd.h>
#include <sys/types.h>

#include <algorithm>
#include <atomic>
#include <cstdlib>
#include <stdexcept>

#include <zmq_addon.hpp>

#include "common/curve.hpp"

namespace seppo::broker {
namespace {

constexpr auto kRefusalLogInterval = std::chrono::seconds(60);
constexpr std::size_t kMaxRefusalsRemembered = 4096;

std::string describe(const std::string& fingerprint, const std::string& label) {
  return label.empty() ? fingerprint : fingerprint + " (" + label + ")";
}

}  // namespace

std::optional<unsigned> peer_uid(std::string_view address) {
  // libzmq 4.3 on Linux gives an ipc peer as "localhost:UID:GID:PID", a TCP peer as its
  // numeric address: "localhost" keeps an IPv6 address ending in three decimal groups out.
  constexpr std::string_view kHead = "localhost:";
  if (address.substr(0, kHead.size()) != kHead) return std::nullopt;
  std::string_view rest = address.substr(kHead.size());
  unsigned long fields[3] = {0, 0, 0};
  for (unsigned long& field : fields) {
    const auto colon = rest.find(':');
    const std::string_view digits = rest.substr(0, colon);
    if (digits.empty() || digits.size() > 10 ||
        digits.find_first_not_of("0123456789") != std::string_view::npos) {
      return std::nullopt;
    }
    field = std::stoul(std::string(digits));
    rest = colon == std::string_view::npos ? std::string_view() : rest.substr(colon + 1);
    if (&field != &fields[2] && colon == std::string_view::npos) return std::nullopt;
  }
  if (!rest.empty() || fields[0] > 0xffffffffu) return std::nullopt;
  return static_cast<unsigned>(fields[0]);
}

bool in_group(unsigned uid, unsigned gid, unsigned group) {
  if (gid == group) return true;
  std::vector<char> buffer(16384);
  passwd entry{};
  passwd* found = nullptr;
  if (::getpwuid_r(uid, &entry, buffer.data(), buffer.size(), &found) != 0 || found == nullptr) {
    return false;
  }
  std::vector<gid_t> groups(64);
  int count = static_cast<int>(groups.size());
  if (::getgrouplist(entry.pw_name, gid, groups.data(), &count) < 0) {
    groups.resize(static_cast<std::size_t>(count));
    if (::getgrouplist(entry.pw_name, gid, groups.data(), &count) < 0) return false;
  }
  groups.resize(static_cast<std::size_t>(count));
  return std::find(groups.begin(), groups.end(), static_cast<gid_t>(group)) != groups.end();
}

Authenticator::Authenticator(zmq::context_t& context, AuthConfig config,
                             std::shared_ptr<const KeyLists> lists, LogSink log)
    : config_(std::move(config)),
      log_(std::move(log)),
      lists_(std::move(lists)),
      pipe_(context, zmq::socket_type::pair) {
  start(context);
}

Authenticator::Authenticator(zmq::context_t& context, LocalPolicy policy, LogSink log)
    : policy_(std::move(policy)),
      log_(std::move(log)),
      lists_(std::make_shared<KeyLists>()),
      pipe_(context, zmq::socket_type::pair) {
  start(context);
}

void Authenticator::start(zmq::context_t& context) {
  static std::atomic<unsigned> instances{0};
  const std::string pipe_endpoint = "inproc://seppo-zap-pipe-" + std::to_string(++instances);
  pipe_.bind(pipe_endpoint);
  zmq::socket_t child(context, zmq::socket_type::pair);
  child.connect(pipe_endpoint);
  // Bound here, before the thread starts, so the handler is in place when this returns and a
  // second one in the same context fails loudly (EADDRINUSE) instead of quietly.
  zmq::socket_t zap(context, zmq::socket_type::rep);
  zap.set(zmq::sockopt::linger, 0);
  zap.bind("inproc://zeromq.zap.01");
  thread_ = std::thread([this, child = std::move(child), zap = std::move(zap)]() mutable {
    try {
      run(child, zap);
    } catch (const std::exception& e) {
      // Without a handler libzmq would admit every key: never carry on without one.
      this->log(log::Level::Error, std::string("authentication handler failed: ") + e.what() +
                                       "; stopping the broker");
      std::_Exit(1);
    }
  });
}

void Authenticator::run(zmq::socket_t& pipe, zmq::socket_t& zap) {
  std::vector<zmq::pollitem_t> items = {{pipe.handle(), 0, ZMQ_POLLIN, 0},
                                        {zap.handle(), 0, ZMQ_POLLIN, 0}};
  while (true) {
    try {
      zmq::poll(items, std::chrono::milliseconds(-1));
    } catch (const zmq::error_t& e) {
      if (e.num() == EINTR) continue;
      throw;
    }
    if (items[0].revents & ZMQ_POLLIN) {
      zmq::message_t command;
      (void)pipe.recv(command);
      if (command.to_string_view() == "TERM") return;
      Reload result;
      try {
        std::shared_ptr<const KeyLists> fresh = KeyLists::load(config_);
        for (const std::string& w : fresh->warnings()) log(log::Level::Warning, w);
        result = Reload{true, fresh->summary()};
        std::lock_guard<std::mutex> lock(mutex_);
        lists_ = std::move(fresh);
      } catch (const std::exception& e) {
        result = Reload{false, e.what()};
      }
      pipe.send(zmq::buffer(std::string(result.ok ? "OK " : "ERROR ") + result.message));
    }
    if (items[1].revents & ZMQ_POLLIN) answer(zap);
  }
}

Authenticator::~Authenticator() {
  try {
    pipe_.send(zmq::str_buffer("TERM"), zmq::send_flags::none);
  } catch (const zmq::error_t&) {
  }
  thread_.join();
}

Authenticator::Reload Authenticator::reload() {
  pipe_.send(zmq::str_buffer("RELOAD"), zmq::send_flags::none);
  zmq::message_t reply;
  (void)pipe_.recv(reply);
  const std::string text = reply.to_string();
  if (text.rfind("OK ", 0) == 0) return Reload{true, text.substr(3)};
  return Reload{false, text.substr(text.find(' ') + 1)};
}

std::shared_ptr<const KeyLists> Authenticator::lists() const {
  std::lock_guard<std::mutex> lock(mutex_);
  return lists_;
}

bool Authenticator::should_log_refusal(const std::string& who, unsigned& since) {
  const auto now = std::chrono::steady_clock::now();
  if (refused_.size() > kMaxRefusalsRemembered) refused_.clear();
  auto [entry, first] = refused_.try_emplace(who, now, 0u);
  if (first || now - entry->second.first >= kRefusalLogInterval) {
    since = entry->second.second;
    entry->second = {now, 0u};
    return true;
  }
  ++entry->second.second;
  return false;
}

void Authenticator::judge_local(const std::string& address, std::string& status, std::string& text,
                                std::string& user) {
  const std::optional<unsigned> uid = peer_uid(address);
  if (!uid) {  // tcp://: no credentials to judge by
    status = "200";
    text = "OK";
    return;
  }
  unsigned gid = 0;
  {
    const auto tail = address.rfind(':');
    const auto mid = address.rfind(':', tail - 1);
    gid = static_cast<unsigned>(std::stoul(address.substr(mid + 1, tail - mid - 1)));
  }
  if (*uid == policy_->uid || (policy_->group && in_group(*uid, gid, *policy_->group))) {
    status = "200";
    text = "OK";
    user = "uid:" + std::to_string(*uid);
    return;
  }
  text = "user not admitted";
  std::string name = "uid " + std::to_string(*uid);
  std::vector<char> buffer(16384);
  passwd entry{};
  passwd* found = nullptr;
  if (::getpwuid_r(*uid, &entry, buffer.data(), buffer.size(), &found) == 0 && found) {
    name += " (" + std::string(entry.pw_name) + ")";
  }
  unsigned since = 0;
  if (should_log_refusal("uid:" + std::to_string(*uid), since)) {
    const std::string pid = address.substr(address.rfind(':') + 1);
    log(log::Level::Warning,
        "refused a connection from " + name + ", process " + pid + ": without keys only uid " +
            std::to_string(policy_->uid) +
            (policy_->group ? " and group " + policy_->group_name : std::string()) +
            " may connect (give users keys, or --allow-group)" +
            (since ? " (and " + std::to_string(since) + " more attempts in the last minute)"
                   : std::string()));
  }
}

void Authenticator::log(log::Level level, const std::string& text) const {
  if (log_) log_(level, text);
}

// One ZAP request (RFC 27): version, request id, domain, address, routing id, mechanism, then
// the mechanism's credentials, for CURVE the client's 32-byte public key. Every request gets a
// reply, or the REP socket would stop answering.
void Authenticator::answer(zmq::socket_t& zap) {
  std::vector<zmq::message_t> request;
  if (!zmq::recv_multipart(zap, std::back_inserter(request), zmq::recv_flags::dontwait)) return;
  auto frame = [&](std::size_t i) {
    return i < request.size() ? request[i].to_string_view() : std::string_view();
  };
  const std::string address(frame(3));
  std::string status = "400";
  std::string text;
  std::string user;
  if (request.size() < 6 || frame(0) != "1.0") {
    text = "malformed ZAP request";
  } else if (frame(2) != curve::kZapDomain) {
    text = "unknown ZAP domain";
  } else if (policy_) {
    if (frame(5) == "NULL") {
      judge_local(address, status, text, user);
    } else {
      text = "this broker has no keys";
    }
  } else if (frame(5) != "CURVE" || request.size() != 7 || request[6].size() != curve::kKeyBytes) {
    text = "CurveZMQ required";
  } else {
    const std::string key = curve::encode(request[6].to_string_view());
    const std::shared_ptr<const KeyLists> lists = this->lists();
    const std::optional<Role> role = lists->role_of(key);
    const std::string who = describe(curve::fingerprint(key), lists->label_of(key));
    if (role) {
      status = "200";
      text = "OK";
      user = user_id(*role, key);
      // A worker's admission is news; a client's comes with every seppo status and map.
      log(*role == Role::Client ? log::Level::Debug : log::Level::Info,
          std::string("admitted ") + role_name(*role) + " key " + who + " from " + address);
    } else {
      text = "key not authorised";
      unsigned since = 0;
      if (should_log_refusal(key, since)) {
        log(log::Level::Warning,
            "refused a connection from " + address + ": key " + who + " is not authorised" +
                (since ? " (and " + std::to_string(since) + " more attempts in the last minute)"
                       : std::string()));
      }
    }
  }
  std::vector<zmq::message_t> reply;
  reply.emplace_back(std::string_view("1.0"));
  reply.emplace_back(frame(1));
  reply.emplace_back(std::string_view(status));
  reply.emplace_back(std::string_view(text));
  reply.emplace_back(std::string_view(user));
  reply.emplace_back();  // no metadata
  zmq::send_multipart(zap, reply);
}

}  // namespace seppo::broker
