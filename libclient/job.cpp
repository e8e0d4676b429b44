// The thread under seppo::Job: runs one engine on a Client of its own until the job ends or
// is cancelled. A Waker wakes it from its wait for the broker, so cancel() takes effect at once
// rather than after the next heartbeat.
#include <unistd.h>

#include <atomic>
#include <condition_variable>
#include <mutex>
#include <optional>
#include <thread>
#include <vector>

#include "seppo/job.hpp"

#include "libclient/client_access.hpp"

namespace seppo::detail {

struct JobThread::Impl {
  const pid_t owner = ::getpid();
  std::optional<Client> client;
  std::string function;
  Engine::Next next;
  Engine::Sink sink;
  std::optional<Waker> waker;
  std::atomic<bool> cancel_requested{false};

  std::mutex mutex;
  std::condition_variable ended_signal;
  bool ended = false;
  bool cancelled = false;
  std::exception_ptr failure;

  std::thread thread;

  void run() {
    bool complete = false;
    std::exception_ptr error;
    try {
      Engine engine(*client, function, next, sink, false);
      while (!cancel_requested.load()) {
        if (!engine.step(*waker)) {
          complete = true;
          break;
        }
      }
    } catch (...) {
      error = std::current_exception();
    }
    // Here rather than in the caller's thread: closing waits briefly for DONE to leave.
    client.reset();
    {
      std::lock_guard lock(mutex);
      ended = true;
      failure = error;
      cancelled = !complete && !error;
    }
    ended_signal.notify_all();
  }
};

JobThread::JobThread(Client&& client, std::string function, Engine::Next next, Engine::Sink sink)
    : impl_(std::make_unique<Impl>()) {
  impl_->client.emplace(std::move(client));
  impl_->function = std::move(function);
  impl_->next = std::move(next);
  impl_->sink = std::move(sink);
  try {
    impl_->waker.emplace();
  } catch (const Error&) {
    throw Error("cannot start a seppo::Job: no pipe for its thread");
  }
  // The Client's sockets move to the new thread; starting it is the memory barrier ZeroMQ
  // asks for when a socket changes threads.
  impl_->thread = std::thread([impl = impl_.get()] { impl->run(); });
}

JobThread::~JobThread() {
  if (impl_->owner != ::getpid()) {
    // A fork() child: the thread (and the ZeroMQ context it used) exist only in the parent;
    // joining would wait for ever. Leaked on purpose, as Client does.
    static auto* kept = new std::vector<Impl*>;  // reachable: no leak checker reports it
    try {
      kept->push_back(impl_.get());
    } catch (...) {
    }
    [[maybe_unused]] Impl* leaked = impl_.release();
    return;
  }
  cancel();
  if (impl_->thread.joinable()) impl_->thread.join();
}

void JobThread::cancel() {
  if (impl_->cancel_requested.exchange(true)) return;
  impl_->waker->wake();
}

bool JobThread::wait_for(std::chrono::milliseconds timeout) {
  std::unique_lock lock(impl_->mutex);
  return impl_->ended_signal.wait_for(lock, timeout, [&] { return impl_->ended; });
}

void JobThread::wait() {
  std::unique_lock lock(impl_->mutex);
  impl_->ended_signal.wait(lock, [&] { return impl_->ended; });
}

void JobThread::rethrow_failure() const {
  std::lock_guard lock(impl_->mutex);
  if (impl_->failure) std::rethrow_exception(impl_->failure);
  if (impl_->cancelled) {
    throw CancelledError("the seppo::Job of " + impl_->function + " was cancelled");
  }
}

}  // namespace seppo::detail
