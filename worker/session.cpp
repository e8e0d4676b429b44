#include "worker/session.hpp"

#include "common/endpoint_list.hpp"

#include <poll.h>
#include <signal.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <condition_variable>
#include <cstdio>
#include <exception>
#include <mutex>
#include <optional>
#include <string>
#include <system_error>
#include <utility>

#include <zmq.hpp>
#include <zmq_addon.hpp>

#include "common/curve.hpp"
#include "common/host.hpp"
#include "common/log.hpp"
#include "common/monitor.hpp"
#include "common/signals.hpp"
#include "common/version.hpp"
#include "protocol/bytes_zmq.hpp"
#include "protocol/wire.hpp"
#include "seppo/error.hpp"
#include "worker/executor.hpp"
#include "worker/session_core.hpp"
#include "worker/supervisor.hpp"

namespace seppo::worker {
namespace {

using Clock = std::chrono::steady_clock;

wire::Ready identity() {
  wire::Ready ready;
  ready.host = fqdn();
  ready.pid = ::getpid();
  ready.name = ready.host + ", process " + std::to_string(ready.pid);
  ready.version = build_version();  // shown in the broker's STATUS (§4.1)
  return ready;
}

std::vector<std::string> names(const std::vector<Function>& functions) {
  std::vector<std::string> list;
  for (const Function& f : functions) list.push_back(f.name);
  return list;
}

// Calls `call` again when a signal interrupted it (EINTR): the signal itself is seen through the
// signal pipe, so nothing else needs doing. Other errors are thrown as before.
template <typename Call>
auto retry_eintr(Call&& call) -> decltype(call()) {
  for (int attempt = 0;; ++attempt) {
    try {
      return call();
    } catch (const zmq::error_t& e) {
      if (e.num() != EINTR || attempt >= 100) throw;
    }
  }
}

// The socket loop around SessionCore: poll the broker's socket, the signals and the handshake
// monitor; feed what arrives to the core; carry out what it asks. The executor's thread may
// feed it a finished task itself, under the same lock, and send its result: the loop holds
// the lock except while it waits, so the socket is used by one thread at a time (ZeroMQ
// allows a socket to change threads across a full memory barrier, which the lock is).
// A lone task runs on the loop's own thread, the executor's thread standing in for the loop
// should it run long (run_inline, stand_in): the same lock hands the socket over.
class Session final : SessionCore::Effects {
 public:
  Session(const SessionOptions& options, const std::vector<Function>& functions)
      : options_(options),
        core_(options, identity(), names(functions), Clock::now(), log::write),
        executor_(
            functions, [this](Executor::Outcome&& outcome) { finished(std::move(outcome)); },
            [this] { stand_in(); }) {
    identity_ = random_routing_id('W');
    if (wake_.fd < 0 || kick_.fd < 0) {
      throw std::system_error(errno, std::generic_category(), "eventfd");
    }
    // Only a C++ module's function may run on this thread (Function::inline_ok): a --command's
    // task runs in a process of its own (its start takes milliseconds), and a --python
    // function stays on the executor's thread, always the same Python thread. --no-inline
    // keeps every task on the executor's thread.
    for (const Function& f : functions) inline_ok_.push_back(f.inline_ok && !options.no_inline);
  }

  ~Session() {
    {
      std::lock_guard<std::mutex> lock(mutex_);
      closed_ = true;  // the executor's thread, finishing a chunk, leaves the socket alone
    }
    // executor_, declared last, is destroyed first: its thread ends before what it uses.
  }

  int run() {
    SignalPipe signals({SIGINT, SIGTERM});
    std::unique_lock<std::mutex> lock(mutex_);
    signals_ = &signals;
    // However run() leaves (an exception from the socket, or from the executor's thread
    // standing in, rethrown here): the executor's thread stops standing in for this one, and
    // signals_ is cleared under the lock, before the signal pipe goes.
    struct Leave {
      Session& session;
      std::unique_lock<std::mutex>& lock;
      ~Leave() {
        if (!lock.owns_lock()) lock.lock();
        session.may_inline_ = false;
        session.inline_.reset();
        if (session.standing_in_) notify(session.kick_.fd);
        session.left_.wait(lock, [this] { return !session.standing_in_; });
        session.signals_ = nullptr;
      }
    } leave{*this, lock};
    connect();
    may_inline_ = true;
    while (turn(lock, false)) {
    }
    may_inline_ = false;
    // The executor's thread may still stand in for this one (a task run here ended as the
    // session did): it leaves at its next look, before the socket and the signals go.
    left_.wait(lock, [this] { return !standing_in_; });
    const bool forbidden = core_.ending() == SessionCore::Ending::Forbidden;
    socket_->set(zmq::sockopt::linger, forbidden ? 0 : 1000);  // let BYE through, never hang
    monitor_.reset();
    socket_.reset();
    closed_ = true;
    return forbidden ? kExitForbidden : 0;
  }

 private:
  // What the core decided, in its order (SessionCore::carry_out): a fresh connection, tasks
  // to start or skip, messages to send; or the end of this process.
  void carry_out() {
    core_.carry_out(*this, out_);
    if (core_.ending() == SessionCore::Ending::Abandoned) abandon_process();
    if (!out_.empty()) drained_ = false;  // see turn()
    for (const wire::Outgoing& out : out_) send(out);
    out_.clear();
  }

  // One turn of the socket loop, with `lock` held: on this process's main thread (run), or on
  // the executor's thread standing in for it while the main thread runs a task (stand_in).
  // False when the loop ends there: the session ended, or, standing in, the task ended.
  bool turn(std::unique_lock<std::mutex>& lock, bool standing_in) {
    take_handed();
    carry_out();
    // The sockets' ZMQ_FDs only say "something changed": they are polled raw below (a
    // zmq_poll costs a dozen syscalls for three sockets), and only once the last operation
    // on the broker's socket was a receive that found nothing, after which a new message
    // makes its fd readable again. A send may take that signal: read until nothing is left.
    if (!drained_ && core_.ending() == SessionCore::Ending::Running) receive();
    if (core_.ending() != SessionCore::Ending::Running) return false;
    if (inline_) {  // a lone task, with all that arrived read: it runs here (start())
      run_inline(lock);
      return true;
    }
    if (monitor_pending_) check_handshake();  // a new monitor: its fd may have fired
    pollfd fds[4] = {{socket_fd_, POLLIN, 0},
                     {standing_in ? kick_.fd : wake_.fd, POLLIN, 0},
                     {signals_->fd(), POLLIN, 0},
                     {monitor_fd_, POLLIN, 0}};
    const auto now = Clock::now();
    const auto deadline = std::min(core_.next_deadline(now), now + core_.heartbeat());
    const auto wait = std::max(std::chrono::ceil<std::chrono::milliseconds>(deadline - now),
                               std::chrono::milliseconds(0));
    bool handed_meanwhile = false;  // since take_handed() above: look, but do not wait
    {
      std::lock_guard<std::mutex> handoff(handoff_mutex_);
      handed_meanwhile = !handed_.empty();
      waiting_ = !handed_meanwhile;
    }
    polled_ = Polled{deadline, connections_};
    may_inline_ = false;
    lock.unlock();
    // Even then the signals and the monitor are polled: a steady stream of handed-over
    // results must not keep SIGTERM waiting.
    const int ready = ::poll(fds, 4, handed_meanwhile ? 0 : static_cast<int>(wait.count()));
    if (ready < 0) {
      for (pollfd& fd : fds) fd.revents = 0;  // EINTR: a signal, seen through its pipe
    }
    if (fds[1].revents & POLLIN) {
      std::uint64_t count;
      (void)!::read(fds[1].fd, &count, sizeof count);
    }
    lock.lock();
    // The main thread is back from its task (run_inline): the socket, and what the loop
    // shares with the executor's thread (polled_, waiting_), are its again.
    if (standing_in && !inline_running_) return false;
    may_inline_ = !standing_in;
    const std::optional<Polled> polled = std::exchange(polled_, std::nullopt);
    {
      std::lock_guard<std::mutex> handoff(handoff_mutex_);
      waiting_ = false;
    }
    // Before the timers: a task that finished is not one that runs long (its waiting ones
    // are not returned).
    take_handed();
    if (connections_ != polled->connections) return true;  // the executor's thread reconnected
    if (fds[3].revents & POLLIN) check_handshake();
    if (fds[2].revents & POLLIN) {
      signals_->take();
      core_.on_stop(Clock::now());
    }
    if (fds[0].revents & POLLIN) receive();
    // A stopping worker's supervisor may be gone (it was killed, and the kernel sent this
    // process SIGTERM): the core then gives the running task its grace, and leaves.
    if (core_.leaving() && !parent_gone_ && ::getppid() != parent_) {
      parent_gone_ = true;
      core_.on_parent_gone(Clock::now());
    }
    core_.on_tick(Clock::now());
    return true;
  }

  // A lone task runs on the socket loop's thread (issue 28): the TASK's wake-up of this thread
  // is then the task's only one, as in a worker with no executor, where a hand-off to the
  // executor's thread woke that thread and then this one again for its result. Should it run
  // longer than the executor's stand_in_after (5 ms), or past the loop's next deadline
  // should that come sooner, the executor's thread, idle meanwhile,
  // keeps the socket loop going (stand_in): heartbeats, CANCEL (a running module function is
  // abandoned as ever), more TASKs (queued for after it), signals.
  void run_inline(std::unique_lock<std::mutex>& lock) {
    SessionCore::Start start = std::move(*inline_);
    inline_.reset();
    inline_running_ = true;
    may_inline_ = false;
    // The stand-in starts no later than the next deadline (a heartbeat due sooner than
    // stand_in_after must not wait for it).
    const auto now = Clock::now();
    const auto deadline = core_.next_deadline(now);  // TimePoint::min() once ending: no sums
    stand_in_after_ =
        deadline <= now
            ? std::chrono::microseconds(0)
            : std::min(std::chrono::duration_cast<std::chrono::microseconds>(deadline - now),
                       executor_.stand_in_after());
    const std::chrono::microseconds after = stand_in_after_;
    std::optional<Executor::Outcome> outcome;
    {
      // However the task ends (Executor::execute turns a function's exception into a failed
      // outcome, but a guard costs nothing): the socket is this thread's again, and the
      // executor's thread, standing in, is told to leave it.
      struct Back {
        Session& session;
        std::unique_lock<std::mutex>& lock;
        ~Back() {
          if (!lock.owns_lock()) lock.lock();
          session.inline_running_ = false;
          session.may_inline_ = true;
          if (session.standing_in_) notify(session.kick_.fd);  // it leaves from its next look
        }
      } back{*this, lock};
      lock.unlock();  // the socket is the executor thread's to use should it stand in
      outcome =
          executor_.run_here(start.sequence, start.function_index, std::move(start.payload), after);
    }
    // The executor's thread, standing in, failed (a ZeroMQ error): this thread fails as it
    // would have had the error been its own.
    if (stand_in_error_) std::rethrow_exception(std::exchange(stand_in_error_, nullptr));
    if (outcome) on_finished(std::move(*outcome));
  }

  // On the executor's thread: the task run_inline started has run for stand_in_after. The
  // socket moves to this thread under mutex_ (a full memory barrier, as ZeroMQ requires) and
  // back when the main thread, its task done, takes mutex_ again (turn() then returns false).
  // An exception (from ZeroMQ) must not end the process here (std::terminate): it is kept for
  // the main thread, which throws it once its task ends.
  void stand_in() {
    std::unique_lock<std::mutex> lock(mutex_);
    if (!inline_running_ || closed_ || signals_ == nullptr) return;
    standing_in_ = true;
    log::debug("a task runs on the socket loop's thread past " +
               std::to_string(stand_in_after_.count()) +
               " us: the executor's thread keeps the connection until it ends");
    std::uint64_t count;
    (void)!::read(kick_.fd, &count, sizeof count);  // a kick for an earlier stand-in
    try {
      while (turn(lock, true)) {
      }
    } catch (...) {
      if (!lock.owns_lock()) lock.lock();
      stand_in_error_ = std::current_exception();
    }
    standing_in_ = false;
    lock.unlock();
    left_.notify_all();
  }

  // SessionCore::Effects
  void reconnect() override { connect(); }
  void skip_through(std::uint64_t sequence) override {
    flush_inline();
    executor_.skip_through(sequence);
  }
  void start(SessionCore::Start start) override {
    flush_inline();  // queued first: the executor runs tasks in order
    // The only task held (none runs or waits in the executor), of a function that runs in
    // this process, and come to the main thread's own loop: it runs there once all that
    // arrived is read (turn()). Another task, a CANCEL or a skip before then queues it.
    if (may_inline_ && core_.held() == 1 && inline_ok_.at(start.function_index)) {
      inline_ = std::move(start);
      return;
    }
    executor_.submit(start.sequence, start.function_index, std::move(start.payload));
  }
  bool cancel(std::uint64_t sequence, bool abandon) override {
    flush_inline();
    return executor_.cancel(sequence, abandon);
  }

  void flush_inline() {
    if (!inline_) return;
    executor_.submit(inline_->sequence, inline_->function_index, std::move(inline_->payload));
    inline_.reset();
  }

  // Never waits: with no connection at all a DEALER's send would block until one comes up, and
  // a connection whose handshake the broker refused (a key not yet authorised) is given up by
  // ZeroMQ for good, so it would block for ever, deaf to SIGTERM and to the reconnect that the
  // core asks for once the broker has been silent for its expiry. What cannot go now is
  // dropped: it was for a connection that is gone, and the next one starts with READY.
  void send(const wire::Outgoing& out) {
    const auto more = out.payload ? zmq::send_flags::sndmore : zmq::send_flags::none;
    if (!retry_eintr([&] {
          return socket_->send(zmq::buffer(out.header.data(), out.header.size()), more | kNoWait);
        })) {
      if (!send_dropped_) log::debug("no connection to the broker: dropped what was to be sent");
      send_dropped_ = true;
      return;
    }
    send_dropped_ = false;
    // A multipart message's later frames go where its first went: they never wait.
    if (out.payload) retry_eintr([&] { return socket_->send(to_zmq(*out.payload), kNoWait); });
  }

  static constexpr zmq::send_flags kNoWait = zmq::send_flags::dontwait;

  // The core abandoned the running task: the broker cancelled it (its time limit, or its job
  // is gone) and a module function cannot be stopped inside this process, or this stopping
  // orphan's task ran past its grace (the core logged which). The process goes, and its
  // supervisor, if any, starts a fresh one. The broker sees the connection close and hands back
  // what this worker held (docs/protocol.md §4.15, W20).
  [[noreturn]] void abandon_process() {
    std::fflush(nullptr);
    // Not exit(): the executor's thread is still inside the function.
    exit_process(kExitAbandoned);
  }

  void connect() {
    monitor_.reset();  // it watches the old socket
    socket_.emplace(context_, zmq::socket_type::dealer);
    socket_->set(zmq::sockopt::routing_id, zmq::buffer(identity_));
    socket_->set(zmq::sockopt::linger, 0);
    socket_->set(zmq::sockopt::rcvhwm, 0);
    socket_->set(zmq::sockopt::sndhwm, 0);
    // No frame from a broker can exceed what it accepts (§4.9), plus a header: ZeroMQ drops the
    // connection of one that sends more. Until an ALIVE says, the default limit; a larger one
    // announced holds from the next connection (a new socket on each).
    std::uint64_t limit = core_.max_message_bytes();
    if (limit == 0) limit = wire::kDefaultMaxMessageBytes;
    socket_->set(zmq::sockopt::maxmsgsize,
                 static_cast<std::int64_t>(limit + wire::kFrameAllowance));
    if (!options_.curve_secret_key.empty()) {
      socket_->set(zmq::sockopt::curve_serverkey,
                   zmq::buffer(curve::decode(options_.curve_server_key)));
      socket_->set(zmq::sockopt::curve_publickey,
                   zmq::buffer(curve::decode(options_.curve_public_key)));
      socket_->set(zmq::sockopt::curve_secretkey,
                   zmq::buffer(curve::decode(options_.curve_secret_key)));
    }
    monitor_.emplace(context_, *socket_);
    // One endpoint of a pair's list at a time, the one the core names (§15.4, W40).
    const std::vector<std::string> endpoints = split_endpoints(options_.endpoint);
    socket_->connect(endpoints[core_.endpoint_index() % endpoints.size()]);
    socket_fd_ = socket_->get(zmq::sockopt::fd);
    monitor_fd_ =
        zmq::socket_ref(zmq::from_handle, monitor_->pollitem().socket).get(zmq::sockopt::fd);
    drained_ = false;
    monitor_pending_ = true;
    ++connections_;
  }

  // ZeroMQ gives up a connection whose handshake was refused, without a word: say why, once.
  // The core, hearing nothing from the broker, starts a fresh connection after its expiry and
  // again with a delay growing to max_reconnect_delay (4 s), so the worker joins within
  // seconds once the broker's operator authorises its key (and sends the broker SIGHUP).
  void check_handshake() {
    monitor_pending_ = false;  // take() below reads until nothing is left
    const bool curve = !options_.curve_secret_key.empty();
    while (std::optional<HandshakeMonitor::Event> event = monitor_->take()) {
      std::string trouble;
      switch (event->outcome) {
        case HandshakeMonitor::Outcome::Succeeded:
          if (!handshake_trouble_.empty()) log::info("the broker accepted the handshake now");
          handshake_trouble_.clear();
          continue;
        case HandshakeMonitor::Outcome::Refused:
          trouble = "the broker at " + options_.endpoint + " refused this worker's key " +
                    curve::fingerprint(options_.curve_public_key) +
                    ": its operator must list the public key in --authorized-workers (and "
                    "send the broker SIGHUP); retrying";
          break;
        case HandshakeMonitor::Outcome::MechanismMismatch:
          trouble = curve ? "the broker at " + options_.endpoint +
                                " does not use CurveZMQ, but this worker has keys; retrying"
                          : "the broker at " + options_.endpoint +
                                " requires CurveZMQ: give --curve-secret-key and "
                                "--curve-server-key; retrying";
          break;
        case HandshakeMonitor::Outcome::Failed:
          if (!curve) continue;  // a broker going away mid-handshake: nothing to report
          trouble = "the CurveZMQ handshake with " + options_.endpoint + " failed (" +
                    event->detail + "): is --curve-server-key the broker's public key? retrying";
          break;
      }
      if (trouble != handshake_trouble_) log::error(trouble);
      handshake_trouble_ = trouble;
    }
  }

  void receive() {
    std::vector<zmq::message_t> frames;
    while (core_.ending() == SessionCore::Ending::Running) {
      frames.clear();
      if (!retry_eintr([&] {
            frames.clear();
            return zmq::recv_multipart(*socket_, std::back_inserter(frames),
                                       zmq::recv_flags::dontwait);
          })) {
        drained_ = true;  // until the next send: the fd now signals the next message
        return;
      }
      std::optional<Bytes> payload;
      if (frames.size() == 2) payload = from_zmq(std::move(frames[1]));
      core_.on_message({}, frames[0].data(), frames[0].size(), payload ? &*payload : nullptr,
                       Clock::now());
      carry_out();  // a TASK starts at once, before the rest of the batch is read
    }
  }

  // On the executor's thread: a chunk finished. When it is the last one queued and the socket
  // loop is not busy, its result goes out from here and what arrived meanwhile is read (the
  // next task is then queued before this thread looks for one), and the loop is woken only if
  // what it waits for changed: a 10 ms task then costs one wake-up of the loop, not two.
  // Otherwise it is handed to the loop, which sends a burst of them at once: tiny tasks then
  // neither wait for the lock one by one nor cost a send and a receive each here.
  void finished(Executor::Outcome&& outcome) {
    if (!outcome.more_queued) {
      std::unique_lock<std::mutex> lock(mutex_, std::try_to_lock);
      if (lock.owns_lock()) {
        if (closed_) return;
        take_handed();  // earlier ones first: the core expects them in order
        on_finished(std::move(outcome));
        carry_out();
        if (!drained_ && core_.ending() == SessionCore::Ending::Running) receive();
        if (polled_ && (core_.ending() != SessionCore::Ending::Running || !drained_ ||
                        connections_ != polled_->connections ||
                        core_.next_deadline(Clock::now()) < polled_->until)) {
          wake();
        }
        return;
      }
    }
    std::lock_guard<std::mutex> handoff(handoff_mutex_);
    handed_.push_back(std::move(outcome));
    if (waiting_) {
      waiting_ = false;  // one wake-up for the whole burst
      wake();
    }
  }

  // With mutex_ held: the outcomes the executor's thread handed over, to the core.
  void take_handed() {
    std::vector<Executor::Outcome> taken;
    {
      std::lock_guard<std::mutex> handoff(handoff_mutex_);
      taken.swap(handed_);
    }
    for (Executor::Outcome& outcome : taken) on_finished(std::move(outcome));
  }

  void on_finished(Executor::Outcome&& finished) {
    const auto outcome = finished.status == Executor::Status::Ok ? SessionCore::Outcome::Ok
                         : finished.status == Executor::Status::Failed
                             ? SessionCore::Outcome::Failed
                             : SessionCore::Outcome::Skipped;
    core_.on_finished(finished.sequence, outcome, finished.elapsed_us, std::move(finished.output),
                      Clock::now());
  }

  void wake() { notify(wake_.fd); }
  static void notify(int eventfd) {
    const std::uint64_t one = 1;
    (void)!::write(eventfd, &one, sizeof one);
  }

  // What the socket loop waits for, while it does.
  struct Polled {
    Clock::time_point until;
    std::uint64_t connections;  // connect() calls so far: a new socket, new fds
  };

  const SessionOptions& options_;
  std::string identity_;
  zmq::context_t context_{1};
  std::mutex mutex_;  // everything below, between the socket loop and the executor's thread
  SessionCore core_;
  std::optional<zmq::socket_t> socket_;
  std::optional<HandshakeMonitor> monitor_;  // of socket_, replaced with it
  std::string handshake_trouble_;            // the last handshake failure reported
  int socket_fd_ = -1, monitor_fd_ = -1;     // their ZMQ_FDs
  bool drained_ = false;          // the last operation on socket_ was a receive that found none
  bool monitor_pending_ = false;  // events may wait that its fd will not announce again
  bool send_dropped_ = false;     // the last send found no connection (logged once)
  std::uint64_t connections_ = 0;
  struct WakeFd {  // closed as a member, after executor_'s thread is joined
    int fd = ::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    ~WakeFd() {
      if (fd >= 0) ::close(fd);
    }
  };
  WakeFd wake_;  // the executor's thread changed what the loop awaits
  WakeFd kick_;  // the main thread is back from its task: the one standing in leaves
  SignalPipe* signals_ = nullptr;  // run()'s, while it runs
  // A task start() kept for the main thread, which runs it (run_inline) once it read all
  // that arrived; true while it runs it; true while the executor's thread stands in for it.
  std::optional<SessionCore::Start> inline_;
  bool inline_running_ = false;
  bool standing_in_ = false;
  std::chrono::microseconds stand_in_after_{0};  // for the task run_inline runs
  std::exception_ptr stand_in_error_;            // what ended a stand-in, for the main thread
  std::condition_variable left_;                 // standing_in_ became false
  // mutex_ is held by the main thread in its own loop (run()): start() may keep a task for it.
  bool may_inline_ = false;
  std::vector<bool> inline_ok_;      // by function index: may run on the main thread
  std::vector<wire::Outgoing> out_;  // carry_out's, kept for its capacity
  const pid_t parent_ = ::getppid();
  bool parent_gone_ = false;               // told the core
  std::optional<Polled> polled_;           // set while the loop waits in poll, without the lock
  std::mutex handoff_mutex_;               // guards the two below, and is never held for long:
  std::vector<Executor::Outcome> handed_;  // finished, for the loop to take
  bool waiting_ = false;                   // the loop waits in poll: wake it for handed_
  bool closed_ = false;                    // the loop ended: the socket is gone or going
  Executor executor_;  // last: destroyed first, its thread joined before the rest
};

}  // namespace

int run_session(const SessionOptions& options, const std::vector<Function>& functions) {
  // Under journald each line of this process carries its name, as the broker's lines do.
  log::set_process_fields({{"SEPPO_WORKER", identity().name}});
  Session session(options, functions);
  return session.run();
}

}  // namespace seppo::worker
