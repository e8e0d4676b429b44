// zmq-baseline: what raw ZeroMQ does on this machine, to set seppo's figures against.
//
// One program, three kinds of process, all on loopback TCP:
//
//   client (DEALER, this process) -> relay (ROUTER front, ROUTER back) -> N workers (DEALER)
//
// The relay is the least a broker can be: workers announce themselves with a credit (how many
// requests they may hold), the relay hands each request to the worker with the most free credit
// and passes each reply back to the client it came from. No task table, no re-runs, no
// heartbeats: whatever seppo's broker does beyond this is what the ratio measures.
//
// Modes:
//   latency  one request of --payload bytes at a time, echoed by a worker: p50/p99 and rate
//   window   single-item requests (a msgpack int64, squared by the worker), --window in flight
//   batched  msgpack arrays of --batch int64s, squared element by element, --window in flight
//
// Each measurement prints one line, "baseline mode=... key=value ...", to stdout; with
// --runs K > 1 a last line with run=median follows. Diagnostics go to stderr.
//
// Processes are forked before any ZeroMQ context exists in them. The relay binds to
// tcp://127.0.0.1:* and sends the chosen endpoints to the parent over a pipe; the parent then
// forks the workers, and only then creates its own context for the client. At the end the client
// asks the relay to stop, the relay tells every worker to stop, and the parent reaps them all,
// killing by pid whatever has not exited within the grace period.

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cinttypes>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <exception>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

#include <CLI/CLI.hpp>
#include <msgpack.hpp>
#include <zmq.hpp>

namespace {

using Clock = std::chrono::steady_clock;
using namespace std::chrono_literals;

enum class Mode { latency, window, batched };

struct Options {
  Mode mode = Mode::latency;
  std::string mode_name = "latency";
  unsigned workers = 2;
  std::uint64_t items = 1000000;  // window, batched: items per measurement
  std::uint64_t samples = 10000;  // latency: round trips per measurement
  std::uint64_t warmup = 0;       // untimed round trips (latency) or items before the first run
  std::uint32_t window = 0;       // requests in flight (0: 1000 for window, 100 for batched)
  std::uint32_t batch = 1000;     // batched: items per request
  std::uint32_t credit = 1000;    // requests each worker may hold at once
  std::uint32_t payload = 64;     // latency: request size in bytes
  unsigned runs = 1;
  double timeout_s = 300;  // the whole program; children get a little more
  bool pids = false;       // print which process is which (for callgrind's files)
};

// Control frames. Data messages are one frame from the client's side ([payload]); control
// messages are two ([kControl][command]), so the relay tells them apart by the frame count.
constexpr std::string_view kControl = "C";
constexpr std::string_view kPing = "ping";  // client -> relay: answer once all workers are in
constexpr std::string_view kPong = "pong";
constexpr std::string_view kStop = "stop";  // client -> relay: stop the workers, then yourself
constexpr std::string_view kBye = "bye";
constexpr char kReady = 'R';                   // worker -> relay: "R<credit>"
constexpr std::string_view kWorkerStop = "S";  // relay -> worker

constexpr int kBurst = 256;        // messages read per socket before polling again
constexpr auto kPollTick = 100ms;  // every wait is at most this long between deadline checks
constexpr int kLingerMs = 1000;
constexpr auto kChildGrace = 10s;  // children outlive the parent's own timeout by this much
constexpr auto kReapGrace = 5s;    // after the client is done, children get this long to exit

std::string_view view(const zmq::message_t& m) {
  return {static_cast<const char*>(m.data()), m.size()};
}

zmq::message_t message(std::string_view s) {
  return zmq::message_t(s.data(), s.size());
}

void tune(zmq::socket_t& s) {
  // In-flight requests are bounded by the client's window and the workers' credit, so the
  // high-water marks never need to push back. 0 (no limit) also keeps a ROUTER from silently
  // dropping a message to a peer whose queue is full.
  s.set(zmq::sockopt::sndhwm, 0);
  s.set(zmq::sockopt::rcvhwm, 0);
  s.set(zmq::sockopt::linger, kLingerMs);
}

// Reads the rest of a multipart message after `first` into rest[0..max_rest); returns how many
// frames the message had. Frames beyond max_rest are read and dropped, so the socket stays in
// step whatever arrives.
int recv_rest(zmq::socket_t& s, zmq::message_t& first, zmq::message_t* rest, int max_rest) {
  int n = 1;
  bool more = first.more();
  for (int i = 0; more; ++i) {
    zmq::message_t scratch;
    zmq::message_t& target = i < max_rest ? rest[i] : scratch;
    if (!s.recv(target, zmq::recv_flags::none)) throw std::runtime_error("truncated multipart");
    more = target.more();
    ++n;
  }
  return n;
}

std::int64_t square(std::int64_t x) {
  return static_cast<std::int64_t>(static_cast<std::uint64_t>(x) * static_cast<std::uint64_t>(x));
}

// --------------------------------------------------------------------------------------------
// relay

struct RelayWorker {
  std::string id;
  std::uint32_t free = 0;  // credit not in use
};

int run_relay(const Options& o, int endpoint_fd, Clock::time_point deadline) {
  zmq::context_t context(1);
  zmq::socket_t front(context, zmq::socket_type::router);
  zmq::socket_t back(context, zmq::socket_type::router);
  for (zmq::socket_t* s : {&front, &back}) {
    tune(*s);
    s->set(zmq::sockopt::router_mandatory, 1);  // an unknown peer is an error, not a drop
    s->bind("tcp://127.0.0.1:*");
  }
  const std::string line =
      front.get(zmq::sockopt::last_endpoint) + " " + back.get(zmq::sockopt::last_endpoint) + "\n";
  if (::write(endpoint_fd, line.data(), line.size()) != static_cast<ssize_t>(line.size())) {
    std::perror("zmq-baseline relay: write endpoints");
    return 1;
  }
  ::close(endpoint_fd);

  std::vector<RelayWorker> workers;
  std::uint64_t total_free = 0;
  std::vector<zmq::message_t> waiting_pings;  // client ids waiting for all workers
  bool stopping = false;

  auto all_in = [&] { return workers.size() >= o.workers; };
  auto answer = [&](zmq::message_t& client, std::string_view what) {
    front.send(client, zmq::send_flags::sndmore);
    front.send(message(kControl), zmq::send_flags::sndmore);
    front.send(message(what), zmq::send_flags::none);
  };

  // The back end comes first so that with no free credit only it is polled: requests then wait
  // in the front end's queue rather than in the relay.
  zmq::pollitem_t items[] = {{back.handle(), 0, ZMQ_POLLIN, 0}, {front.handle(), 0, ZMQ_POLLIN, 0}};
  while (!stopping && Clock::now() < deadline) {
    const int n = total_free > 0 ? 2 : 1;
    items[1].revents = 0;
    zmq::poll(items, n, kPollTick);

    if (items[0].revents & ZMQ_POLLIN) {
      for (int k = 0; k < kBurst; ++k) {
        zmq::message_t id;
        if (!back.recv(id, zmq::recv_flags::dontwait)) break;
        zmq::message_t rest[2];
        const int frames = recv_rest(back, id, rest, 2);
        if (frames == 2 && rest[0].size() > 0 && view(rest[0])[0] == kReady) {
          // [worker]["R<credit>"]: a new worker.
          const std::string credit_text(view(rest[0]).substr(1));
          const auto credit = static_cast<std::uint32_t>(std::stoul(credit_text));
          const std::string_view wid = view(id);
          if (std::any_of(workers.begin(), workers.end(),
                          [&](const RelayWorker& x) { return x.id == wid; })) {
            continue;  // announced twice: keep the first
          }
          workers.push_back({std::string(wid), credit});
          total_free += credit;
          if (all_in()) {
            for (zmq::message_t& c : waiting_pings) answer(c, kPong);
            waiting_pings.clear();
          }
        } else if (frames == 3) {
          // [worker][client][reply]: credit back to the worker, the reply to the client.
          const std::string_view wid = view(id);
          auto w = std::find_if(workers.begin(), workers.end(),
                                [&](const RelayWorker& x) { return x.id == wid; });
          if (w == workers.end()) throw std::runtime_error("reply from an unknown worker");
          ++w->free;
          ++total_free;
          front.send(rest[0], zmq::send_flags::sndmore);
          front.send(rest[1], zmq::send_flags::none);
        } else {
          std::fprintf(stderr, "zmq-baseline relay: dropped a %d-frame message from a worker\n",
                       frames);
        }
      }
    }

    if (n == 2 && (items[1].revents & ZMQ_POLLIN)) {
      for (int k = 0; k < kBurst && total_free > 0 && !stopping; ++k) {
        zmq::message_t client;
        if (!front.recv(client, zmq::recv_flags::dontwait)) break;
        zmq::message_t rest[2];
        const int frames = recv_rest(front, client, rest, 2);
        if (frames == 2) {
          // [client][request]: to the worker with the most free credit.
          RelayWorker* best = &workers.front();
          for (RelayWorker& w : workers) {
            if (w.free > best->free) best = &w;
          }
          --best->free;
          --total_free;
          back.send(message(best->id), zmq::send_flags::sndmore);
          back.send(client, zmq::send_flags::sndmore);
          back.send(rest[0], zmq::send_flags::none);
        } else if (frames == 3 && view(rest[0]) == kControl && view(rest[1]) == kPing) {
          if (all_in()) {
            answer(client, kPong);
          } else {
            waiting_pings.push_back(std::move(client));
          }
        } else if (frames == 3 && view(rest[0]) == kControl && view(rest[1]) == kStop) {
          for (RelayWorker& w : workers) {
            try {
              back.send(message(w.id), zmq::send_flags::sndmore);
            } catch (const zmq::error_t& e) {
              if (e.num() != EHOSTUNREACH) throw;
              continue;  // that worker has gone already (router_mandatory: nothing was sent)
            }
            back.send(message(kWorkerStop), zmq::send_flags::none);
          }
          answer(client, kBye);
          stopping = true;
        } else {
          std::fprintf(stderr, "zmq-baseline relay: dropped a %d-frame message from a client\n",
                       frames);
        }
      }
    }
  }
  if (!stopping) {
    std::fprintf(stderr, "zmq-baseline relay: deadline passed, exiting\n");
    return 1;
  }
  return 0;  // the sockets linger long enough to deliver the stops
}

// --------------------------------------------------------------------------------------------
// worker

zmq::message_t work(Mode mode, zmq::message_t& request, msgpack::sbuffer& out) {
  switch (mode) {
    case Mode::latency:
      return std::move(request);  // echo
    case Mode::window: {
      const msgpack::object_handle h =
          msgpack::unpack(static_cast<const char*>(request.data()), request.size());
      out.clear();
      msgpack::pack(out, square(h.get().as<std::int64_t>()));
      return zmq::message_t(out.data(), out.size());
    }
    case Mode::batched: {
      const msgpack::object_handle h =
          msgpack::unpack(static_cast<const char*>(request.data()), request.size());
      const msgpack::object& a = h.get();
      if (a.type != msgpack::type::ARRAY) throw std::runtime_error("batch is not an array");
      out.clear();
      msgpack::packer<msgpack::sbuffer> pk(out);
      pk.pack_array(a.via.array.size);
      for (std::uint32_t i = 0; i < a.via.array.size; ++i) {
        pk.pack(square(a.via.array.ptr[i].as<std::int64_t>()));
      }
      return zmq::message_t(out.data(), out.size());
    }
  }
  throw std::logic_error("mode");
}

int run_worker(const Options& o, const std::string& endpoint, Clock::time_point deadline) {
  zmq::context_t context(1);
  zmq::socket_t s(context, zmq::socket_type::dealer);
  tune(s);
  s.connect(endpoint);
  s.send(message(std::string(1, kReady) + std::to_string(o.credit)), zmq::send_flags::none);

  msgpack::sbuffer out(64 * 1024);
  zmq::pollitem_t items[] = {{s.handle(), 0, ZMQ_POLLIN, 0}};
  while (Clock::now() < deadline) {
    zmq::poll(items, 1, kPollTick);
    if (!(items[0].revents & ZMQ_POLLIN)) continue;
    for (int k = 0; k < kBurst; ++k) {
      zmq::message_t client;
      if (!s.recv(client, zmq::recv_flags::dontwait)) break;
      zmq::message_t rest[1];
      const int frames = recv_rest(s, client, rest, 1);
      if (frames == 1 && view(client) == kWorkerStop) return 0;
      if (frames != 2) {
        std::fprintf(stderr, "zmq-baseline worker: dropped a %d-frame message\n", frames);
        continue;
      }
      zmq::message_t reply = work(o.mode, rest[0], out);
      s.send(client, zmq::send_flags::sndmore);
      s.send(reply, zmq::send_flags::none);
    }
  }
  std::fprintf(stderr, "zmq-baseline worker %d: deadline passed, exiting\n",
               static_cast<int>(::getpid()));
  return 1;
}

// --------------------------------------------------------------------------------------------
// client

struct Failure : std::runtime_error {
  using std::runtime_error::runtime_error;
};

// The forked processes, and how those that ended ended.
struct Children {
  pid_t relay = -1;
  std::vector<pid_t> running;
  std::vector<std::pair<pid_t, int>> ended;  // pid, wait status

  bool relay_ended() const {
    return std::any_of(ended.begin(), ended.end(), [&](const auto& e) { return e.first == relay; });
  }

  // Collects any child that has exited, without waiting; true if one has.
  bool any_ended() {
    bool found = false;
    for (auto it = running.begin(); it != running.end();) {
      int status = 0;
      const pid_t r = ::waitpid(*it, &status, WNOHANG);
      if (r == *it || (r < 0 && errno == ECHILD)) {
        ended.emplace_back(*it, r == *it ? status : 0);
        it = running.erase(it);
        found = true;
      } else {
        ++it;
      }
    }
    return found;
  }
};

class Client {
 public:
  Client(const Options& o, const std::string& endpoint, Clock::time_point deadline,
         Children& children)
      : o_(o),
        deadline_(deadline),
        children_(children),
        context_(1),
        s_(context_, zmq::socket_type::dealer) {
    tune(s_);
    s_.set(zmq::sockopt::rcvtimeo, static_cast<int>(kPollTick.count()));
    s_.connect(endpoint);
  }

  // Waits until the relay has all the workers.
  void handshake() {
    control(kPing);
    expect_control(kPong);
  }

  // Asks the relay to stop itself and the workers; false if it did not answer in time.
  bool stop(Clock::duration patience) {
    try {
      deadline_ = Clock::now() + patience;  // even when the run itself ran out of time
      watch_children_ = false;  // the workers may end as soon as the relay has told them to
      control(kStop);
      expect_control(kBye);
      return true;
    } catch (const std::exception& e) {
      std::fprintf(stderr, "zmq-baseline: stop: %s\n", e.what());
      return false;
    }
  }

  struct Result {
    double seconds = 0;
    double rate = 0;  // round trips/s (latency, window) or items/s (batched)
    double p50_us = 0, p99_us = 0, mean_us = 0, max_us = 0;  // latency only
  };

  Result latency(std::uint64_t samples) {
    const std::string payload(o_.payload, 'x');
    std::vector<std::int64_t> ns;
    ns.reserve(samples);
    zmq::message_t reply;
    const Clock::time_point start = Clock::now();
    for (std::uint64_t i = 0; i < samples; ++i) {
      const Clock::time_point t0 = Clock::now();
      check(t0);
      s_.send(message(payload), zmq::send_flags::none);
      if (recv(reply) != 1 || view(reply) != payload) throw Failure("latency: bad echo");
      ns.push_back(std::chrono::duration_cast<std::chrono::nanoseconds>(Clock::now() - t0).count());
    }
    Result r;
    r.seconds = std::chrono::duration<double>(Clock::now() - start).count();
    r.rate = static_cast<double>(samples) / r.seconds;
    if (!ns.empty()) {
      std::sort(ns.begin(), ns.end());
      auto rank = [&](double q) {  // nearest rank
        const auto k = static_cast<std::size_t>(std::ceil(q * static_cast<double>(ns.size())));
        return static_cast<double>(ns[std::clamp<std::size_t>(k, 1, ns.size()) - 1]) / 1e3;
      };
      r.p50_us = rank(0.50);
      r.p99_us = rank(0.99);
      r.max_us = static_cast<double>(ns.back()) / 1e3;
      double sum = 0;
      for (std::int64_t x : ns) sum += static_cast<double>(x);
      r.mean_us = sum / static_cast<double>(ns.size()) / 1e3;
    }
    return r;
  }

  // window: one int per request; batched: up to `batch` ints per request. Items 1..n.
  Result stream(std::uint64_t n, std::uint32_t batch) {
    std::uint64_t expected = 0;
    for (std::uint64_t i = 1; i <= n; ++i) expected += static_cast<std::uint64_t>(square(i));
    const std::uint64_t requests = (n + batch - 1) / batch;
    const bool single = o_.mode == Mode::window;

    msgpack::sbuffer out(64 * 1024);
    std::uint64_t next_item = 1, sent = 0, answered = 0, items_back = 0, sum = 0;
    zmq::message_t reply;
    const Clock::time_point start = Clock::now();
    while (answered < requests) {
      check(Clock::now());
      while (sent < requests && sent - answered < o_.window) {
        out.clear();
        if (single) {
          msgpack::pack(out, static_cast<std::int64_t>(next_item++));
        } else {
          const std::uint64_t k = std::min<std::uint64_t>(batch, n - next_item + 1);
          msgpack::packer<msgpack::sbuffer> pk(out);
          pk.pack_array(static_cast<std::uint32_t>(k));
          for (std::uint64_t j = 0; j < k; ++j) pk.pack(static_cast<std::int64_t>(next_item++));
        }
        s_.send(zmq::message_t(out.data(), out.size()), zmq::send_flags::none);
        ++sent;
      }
      // One blocking receive (bounded by the deadline), then whatever else is already there.
      std::uint64_t burst = 0;
      for (bool wait = true; answered < requests && burst < kBurst; wait = false, ++burst) {
        if (wait) {
          if (recv(reply) != 1) throw Failure("stream: unexpected control message");
        } else if (!s_.recv(reply, zmq::recv_flags::dontwait)) {
          break;
        }
        const msgpack::object_handle h =
            msgpack::unpack(static_cast<const char*>(reply.data()), reply.size());
        const msgpack::object& v = h.get();
        if (single) {
          sum += static_cast<std::uint64_t>(v.as<std::int64_t>());
          ++items_back;
        } else {
          if (v.type != msgpack::type::ARRAY) throw Failure("stream: reply is not an array");
          for (std::uint32_t j = 0; j < v.via.array.size; ++j) {
            sum += static_cast<std::uint64_t>(v.via.array.ptr[j].as<std::int64_t>());
          }
          items_back += v.via.array.size;
        }
        ++answered;
      }
    }
    Result r;
    r.seconds = std::chrono::duration<double>(Clock::now() - start).count();
    if (items_back != n || sum != expected) {
      throw Failure("stream: wrong results (" + std::to_string(items_back) + " items of " +
                    std::to_string(n) + ")");
    }
    r.rate = static_cast<double>(single ? requests : n) / r.seconds;
    return r;
  }

 private:
  void control(std::string_view what) {
    s_.send(message(kControl), zmq::send_flags::sndmore);
    s_.send(message(what), zmq::send_flags::none);
  }

  // Between messages: out of time, or a process gone (which would leave requests unanswered
  // or, worse, leave a figure that is not what it claims)? Looks at the children every tick.
  void check(Clock::time_point now) {
    if (now >= deadline_) throw Failure("out of time");
    if (now >= next_check_) {
      next_check_ = now + kPollTick;
      if (watch_children_ && children_.any_ended()) {
        throw Failure("a relay or worker process ended");
      }
    }
  }

  // Waits for a control reply, dropping replies to requests of a run that was cut short.
  void expect_control(std::string_view what) {
    zmq::message_t first;
    for (std::uint64_t dropped = 0; dropped < (std::uint64_t{1} << 32); ++dropped) {
      if (recv(first) == 1) continue;
      if (view(first) != kControl || view(second_) != what) break;
      return;
    }
    throw Failure("expected control reply '" + std::string(what) + "'");
  }

  // Blocks for one message, up to the deadline; returns its frame count (the second frame, if
  // any, lands in second_).
  int recv(zmq::message_t& first) {
    while (true) {
      if (s_.recv(first, zmq::recv_flags::none)) break;  // rcvtimeo: at most kPollTick
      if (Clock::now() >= deadline_) throw Failure("timed out waiting for a reply");
      if (watch_children_ && children_.any_ended())
        throw Failure("a relay or worker process ended");
      next_check_ = Clock::now() + kPollTick;
    }
    zmq::message_t* rest = &second_;
    return recv_rest(s_, first, rest, 1);
  }

  const Options& o_;
  Clock::time_point deadline_;
  Children& children_;
  bool watch_children_ = true;
  Clock::time_point next_check_ = Clock::now();
  zmq::context_t context_;
  zmq::socket_t s_;
  zmq::message_t second_;
};

// --------------------------------------------------------------------------------------------
// processes

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  const std::size_t n = v.size();
  return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

std::string describe(const Options& o) {
  char buf[256];
  if (o.mode == Mode::latency) {
    std::snprintf(buf, sizeof buf, "baseline mode=latency workers=%u payload=%u samples=%" PRIu64,
                  o.workers, o.payload, o.samples);
  } else if (o.mode == Mode::window) {
    std::snprintf(buf, sizeof buf,
                  "baseline mode=window workers=%u window=%u credit=%u items=%" PRIu64, o.workers,
                  o.window, o.credit, o.items);
  } else {
    std::snprintf(buf, sizeof buf,
                  "baseline mode=batched workers=%u batch=%u window=%u credit=%u items=%" PRIu64,
                  o.workers, o.batch, o.window, o.credit, o.items);
  }
  return buf;
}

void print(const Options& o, const std::string& run, const Client::Result& r) {
  if (o.mode == Mode::latency) {
    std::printf(
        "%s run=%s p50_us=%.1f p99_us=%.1f mean_us=%.1f max_us=%.1f seconds=%.3f rate=%.0f\n",
        describe(o).c_str(), run.c_str(), r.p50_us, r.p99_us, r.mean_us, r.max_us, r.seconds,
        r.rate);
  } else {
    std::printf("%s run=%s seconds=%.3f rate=%.0f\n", describe(o).c_str(), run.c_str(), r.seconds,
                r.rate);
  }
  std::fflush(stdout);
}

int run_client(const Options& o, const std::string& endpoint, Clock::time_point deadline,
               Children& children) {
  Client client(o, endpoint, deadline, children);
  int rc = 0;
  try {
    client.handshake();
    if (o.warmup > 0) {
      if (o.mode == Mode::latency) {
        (void)client.latency(o.warmup);
      } else {
        (void)client.stream(o.warmup, o.mode == Mode::batched ? o.batch : 1);
      }
    }
    std::vector<Client::Result> results;
    for (unsigned run = 1; run <= o.runs; ++run) {
      results.push_back(o.mode == Mode::latency
                            ? client.latency(o.samples)
                            : client.stream(o.items, o.mode == Mode::batched ? o.batch : 1));
      print(o, std::to_string(run), results.back());
    }
    if (results.size() > 1) {
      auto med = [&](double Client::Result::*field) {
        std::vector<double> v;
        for (const Client::Result& r : results) v.push_back(r.*field);
        return median(v);
      };
      Client::Result m;
      m.seconds = med(&Client::Result::seconds);
      m.rate = med(&Client::Result::rate);
      m.p50_us = med(&Client::Result::p50_us);
      m.p99_us = med(&Client::Result::p99_us);
      m.mean_us = med(&Client::Result::mean_us);
      m.max_us = med(&Client::Result::max_us);
      print(o, "median", m);
    }
  } catch (const std::exception& e) {
    std::fprintf(stderr, "zmq-baseline: %s\n", e.what());
    rc = 1;
  }
  // Without the relay nobody can tell the workers to stop: the parent kills them by pid.
  if (children.relay_ended() || !client.stop(kReapGrace)) rc = 1;
  return rc;
}

// In a child: die with the parent, so nothing outlives a crashed benchmark.
void child_setup(pid_t parent) {
  ::prctl(PR_SET_PDEATHSIG, SIGKILL);
  if (::getppid() != parent) ::_exit(1);
}

template <typename F>
pid_t spawn(pid_t parent, F&& body) {
  std::fflush(stdout);
  std::fflush(stderr);
  const pid_t pid = ::fork();
  if (pid < 0) {
    std::perror("zmq-baseline: fork");
    return -1;
  }
  if (pid > 0) return pid;
  child_setup(parent);
  int rc = 1;
  try {
    rc = body();
  } catch (const std::exception& e) {
    std::fprintf(stderr, "zmq-baseline child %d: %s\n", static_cast<int>(::getpid()), e.what());
  }
  std::fflush(stderr);
  ::_exit(rc);  // not exit(): the parent's stdio buffers and atexit handlers are not ours
}

// Reads "front back\n" from the relay, giving up at the deadline.
std::optional<std::pair<std::string, std::string>> read_endpoints(int fd,
                                                                  Clock::time_point deadline) {
  std::string text;
  while (text.find('\n') == std::string::npos && text.size() < 4096) {
    const auto left =
        std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now()).count();
    if (left <= 0) return std::nullopt;
    pollfd p{fd, POLLIN, 0};
    const int ready = ::poll(&p, 1, static_cast<int>(std::min<long long>(left, 100)));
    if (ready < 0 && errno != EINTR) return std::nullopt;
    if (ready <= 0) continue;
    char buf[512];
    const ssize_t got = ::read(fd, buf, sizeof buf);
    if (got <= 0) return std::nullopt;  // the relay died before binding
    text.append(buf, static_cast<std::size_t>(got));
  }
  const std::size_t space = text.find(' ');
  const std::size_t end = text.find('\n');
  if (space == std::string::npos || end == std::string::npos || space > end) return std::nullopt;
  return std::make_pair(text.substr(0, space), text.substr(space + 1, end - space - 1));
}

// Waits for every child until the deadline, then kills the rest by pid. False if any child
// failed or had to be killed.
bool reap(Children& children, Clock::time_point deadline) {
  for (int i = 0; i < 1000000 && !children.running.empty() && Clock::now() < deadline; ++i) {
    if (!children.any_ended()) ::usleep(10000);
  }
  bool ok = true;
  for (pid_t pid : children.running) {
    std::fprintf(stderr, "zmq-baseline: child %d did not exit in time, killing it\n",
                 static_cast<int>(pid));
    ::kill(pid, SIGKILL);
    int status = 0;
    while (::waitpid(pid, &status, 0) < 0 && errno == EINTR) {
    }
    ok = false;
  }
  children.running.clear();
  for (const auto& [pid, status] : children.ended) {
    if (WIFEXITED(status) && WEXITSTATUS(status) == 0) continue;
    ok = false;
    if (WIFEXITED(status)) {
      std::fprintf(stderr, "zmq-baseline: child %d exited with %d\n", static_cast<int>(pid),
                   WEXITSTATUS(status));
    } else if (WIFSIGNALED(status)) {
      std::fprintf(stderr, "zmq-baseline: child %d killed by signal %d\n", static_cast<int>(pid),
                   WTERMSIG(status));
    }
  }
  return ok;
}

}  // namespace

int main(int argc, char** argv) {
  Options o;
  CLI::App app{"zmq-baseline: raw ZeroMQ client -> ROUTER relay -> workers, on loopback TCP"};
  app.add_option("--mode", o.mode_name, "latency, window or batched")
      ->capture_default_str()
      ->check(CLI::IsMember({"latency", "window", "batched"}));
  app.add_option("-w,--workers", o.workers, "worker processes")
      ->capture_default_str()
      ->check(CLI::Range(1u, 256u));
  app.add_option("--items", o.items, "window, batched: items per run")
      ->capture_default_str()
      ->check(CLI::Range(std::uint64_t{1}, std::uint64_t{1} << 40));
  app.add_option("--samples", o.samples, "latency: round trips per run")
      ->capture_default_str()
      ->check(CLI::Range(std::uint64_t{1}, std::uint64_t{100000000}));
  app.add_option("--window", o.window,
                 "requests in flight (default 1000 for window, 100 for batched)")
      ->check(CLI::Range(1u, 10000000u));
  app.add_option("--batch", o.batch, "batched: items per request")
      ->capture_default_str()
      ->check(CLI::Range(1u, 10000000u));
  app.add_option("--credit", o.credit, "requests each worker may hold at once")
      ->capture_default_str()
      ->check(CLI::Range(1u, 10000000u));
  app.add_option("--payload", o.payload, "latency: request size in bytes")
      ->capture_default_str()
      ->check(CLI::Range(1u, 64u << 20));
  app.add_option("--warmup", o.warmup,
                 "untimed round trips (latency) or items before the first run "
                 "(default 1000 round trips, or 100000 items)");
  app.add_option("--runs", o.runs, "measurements against the same processes")
      ->capture_default_str()
      ->check(CLI::Range(1u, 1000u));
  app.add_option("--timeout", o.timeout_s, "seconds before everything is stopped")
      ->capture_default_str()
      ->check(CLI::Range(1.0, 86400.0));
  app.add_flag("--pids", o.pids,
               "print \"pids client=P relay=P workers=P,P\" once all are forked (under "
               "valgrind, callgrind writes one file per process, named by pid)");
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e) == 0 ? 0 : 2;
  }
  o.mode = o.mode_name == "latency"  ? Mode::latency
           : o.mode_name == "window" ? Mode::window
                                     : Mode::batched;
  if (app.count("--window") == 0) o.window = o.mode == Mode::batched ? 100 : 1000;
  if (app.count("--warmup") == 0) o.warmup = o.mode == Mode::latency ? 1000 : 100000;

  const Clock::time_point start = Clock::now();
  const auto timeout =
      std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(o.timeout_s));
  const Clock::time_point deadline = start + timeout;
  const Clock::time_point child_deadline = deadline + kChildGrace;
  const pid_t self = ::getpid();
  Children children;

  // No ZeroMQ context exists in this process until every child is forked.
  int fds[2];
  if (::pipe2(fds, O_CLOEXEC) != 0) {
    std::perror("zmq-baseline: pipe");
    return 1;
  }
  const pid_t relay = spawn(self, [&] {
    ::close(fds[0]);
    return run_relay(o, fds[1], child_deadline);
  });
  ::close(fds[1]);
  if (relay < 0) {
    ::close(fds[0]);
    return 1;
  }
  children.relay = relay;
  children.running.push_back(relay);
  const auto endpoints = read_endpoints(fds[0], std::min(deadline, Clock::now() + 10s));
  ::close(fds[0]);
  if (!endpoints) {
    std::fprintf(stderr, "zmq-baseline: the relay did not report its endpoints\n");
    reap(children, Clock::now());
    return 1;
  }
  // Plain references: clang before 16 cannot capture structured bindings in lambdas.
  const std::string& front = endpoints->first;
  const std::string& back = endpoints->second;

  for (unsigned i = 0; i < o.workers; ++i) {
    const pid_t w = spawn(self, [&] { return run_worker(o, back, child_deadline); });
    if (w < 0) {
      reap(children, Clock::now());
      return 1;
    }
    children.running.push_back(w);
  }

  if (o.pids) {
    std::string workers;
    for (std::size_t i = 1; i < children.running.size(); ++i) {
      workers += (i > 1 ? "," : "") + std::to_string(children.running[i]);
    }
    std::printf("pids client=%d relay=%d workers=%s\n", static_cast<int>(self),
                static_cast<int>(relay), workers.c_str());
    std::fflush(stdout);
  }

  int rc = 1;
  try {
    rc = run_client(o, front, deadline, children);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "zmq-baseline: %s\n", e.what());
  }
  const auto grace = children.relay_ended() ? Clock::duration::zero() : kReapGrace;
  if (!reap(children, Clock::now() + grace)) rc = 1;
  return rc;
}
