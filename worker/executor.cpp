#include "worker/executor.hpp"

#include <poll.h>
#include <sys/eventfd.h>
#include <sys/timerfd.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <exception>
#include <string>
#include <system_error>
#include <utility>

namespace seppo::worker {
namespace {

void append(void* context, const char* data, size_t size) {
  static_cast<std::string*>(context)->append(data, size);
}

// Sets a one-shot timer, or disarms it (a zero delay), and forgets any expiry not yet read.
void set_timer(int fd, std::chrono::microseconds delay) {
  itimerspec spec{};
  spec.it_value.tv_sec = static_cast<time_t>(delay.count() / 1000000);
  spec.it_value.tv_nsec = static_cast<long>(delay.count() % 1000000) * 1000;
  (void)::timerfd_settime(fd, 0, &spec, nullptr);
}

}  // namespace

Executor::Executor(const std::vector<Function>& functions, Finished finished, StandIn stand_in,
                   std::chrono::microseconds stand_in_after)
    : functions_(functions),
      finished_(std::move(finished)),
      stand_in_(std::move(stand_in)),
      stand_in_after_(stand_in_after) {
  wake_fd_ = ::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
  timer_fd_ = ::timerfd_create(CLOCK_MONOTONIC, TFD_CLOEXEC | TFD_NONBLOCK);
  if (wake_fd_ < 0 || timer_fd_ < 0) {
    const int error = errno;
    if (wake_fd_ >= 0) ::close(wake_fd_);
    if (timer_fd_ >= 0) ::close(timer_fd_);
    throw std::system_error(error, std::generic_category(), "executor: eventfd or timerfd");
  }
  thread_ = std::thread([this] { run(); });
}

Executor::~Executor() {
  {
    std::lock_guard<std::mutex> lock(mutex_);
    stop_ = true;
  }
  wake(wake_fd_);
  thread_.join();
  ::close(wake_fd_);
  ::close(timer_fd_);
}

void Executor::wake(int fd) {
  const std::uint64_t one = 1;
  (void)!::write(fd, &one, sizeof one);
}

void Executor::submit(std::uint64_t sequence, std::uint32_t function_index, Bytes payload) {
  bool sleeping;
  {
    std::lock_guard<std::mutex> lock(mutex_);
    queued_.push_back(Queued{sequence, function_index, std::move(payload)});
    // A thread busy with a chunk takes the next from the queue itself: no wake-up needed; nor
    // while run_here runs one, after which run_here wakes it.
    sleeping = sleeping_ && !here_;
    if (sleeping) sleeping_ = false;  // one wake-up for a burst
  }
  if (sleeping) wake(wake_fd_);
}

std::optional<Executor::Outcome> Executor::run_here(
    std::uint64_t sequence, std::uint32_t function_index, Bytes payload,
    std::optional<std::chrono::microseconds> after) {
  std::unique_lock<std::mutex> lock(mutex_);
  if (!queued_.empty() || running_ != 0 || busy_ || here_) {
    lock.unlock();
    submit(sequence, function_index, std::move(payload));
    return std::nullopt;
  }
  here_ = true;
  // However run_here leaves (execute does not throw, but a guard costs nothing): the timer
  // disarmed, here_ cleared under the lock, and the executor's thread woken for what was
  // queued meanwhile (by the executor's thread standing in for the caller): its turn now.
  struct Leave {
    Executor& executor;
    std::unique_lock<std::mutex>& lock;
    ~Leave() {
      if (executor.stand_in_) set_timer(executor.timer_fd_, std::chrono::microseconds(0));
      if (!lock.owns_lock()) lock.lock();
      executor.here_ = false;
      const bool sleeping = executor.sleeping_ && !executor.queued_.empty();
      if (sleeping) executor.sleeping_ = false;
      lock.unlock();
      if (sleeping) executor.wake(executor.wake_fd_);
    }
  } leave{*this, lock};
  Queued task{sequence, function_index, std::move(payload)};
  // A zero delay would disarm the timer: a deadline already due calls stand_in at once.
  if (stand_in_) {
    set_timer(timer_fd_, std::max(after.value_or(stand_in_after_), std::chrono::microseconds(1)));
  }
  return execute(task, lock);
}

std::atomic<bool>& Executor::abandon_flag() {
  static std::atomic<bool> flag{false};
  return flag;
}

bool Executor::cancel(std::uint64_t sequence, bool abandon) {
  std::lock_guard<std::mutex> lock(mutex_);
  if (sequence > last_started_) {
    cancelled_.insert(sequence);
    return false;
  }
  if (!abandon || sequence != running_) return false;  // finished already
  if (!functions_.at(running_function_).interruptible) return true;
  abandon_flag().store(true);
  return false;
}

Executor::Outcome Executor::execute(Queued& task, std::unique_lock<std::mutex>& lock) {
  Outcome outcome{task.sequence, Status::Skipped, 0, Bytes()};
  bool skip = task.sequence <= skip_through_.load();
  last_started_ = task.sequence;
  skip = cancelled_.erase(task.sequence) > 0 || skip;
  cancelled_.erase(cancelled_.begin(), cancelled_.lower_bound(task.sequence));
  if (skip) return outcome;
  running_ = task.sequence;
  running_function_ = task.function_index;
  abandon_flag().store(false);
  lock.unlock();
  std::string output;
  seppo_sink sink{&output, append};
  const auto started = std::chrono::steady_clock::now();
  int status = 1;
  // A function that throws fails its chunk, as one that returns non-zero does, with the
  // exception's message: it must not unwind through the executor's thread (std::terminate) nor
  // through the socket loop's, which runs a lone chunk (run_here) with the executor's state set.
  try {
    status =
        functions_.at(task.function_index).invoke(task.payload.data(), task.payload.size(), &sink);
  } catch (const std::exception& e) {
    output = std::string("the function threw an exception: ") + e.what();
  } catch (...) {
    output = "the function threw an exception that is not a std::exception";
  }
  outcome.elapsed_us =
      static_cast<std::uint64_t>(std::chrono::duration_cast<std::chrono::microseconds>(
                                     std::chrono::steady_clock::now() - started)
                                     .count());
  outcome.status = status == 0 ? Status::Ok : Status::Failed;
  outcome.output = Bytes(std::move(output));
  task.payload = Bytes();  // released here, not under the lock
  lock.lock();
  running_ = 0;
  return outcome;
}

void Executor::run() {
  std::unique_lock<std::mutex> lock(mutex_);
  while (!stop_) {
    if (!queued_.empty() && !here_) {
      busy_ = true;
      Queued task = std::move(queued_.front());
      queued_.pop_front();
      Outcome outcome = execute(task, lock);
      outcome.more_queued = !queued_.empty();
      lock.unlock();
      finished_(std::move(outcome));
      lock.lock();
      busy_ = false;
      continue;
    }
    sleeping_ = true;
    lock.unlock();
    pollfd fds[2] = {{wake_fd_, POLLIN, 0}, {timer_fd_, POLLIN, 0}};
    if (::poll(fds, 2, -1) < 0) fds[0].revents = fds[1].revents = 0;  // EINTR: look again
    std::uint64_t count = 0;
    if (fds[0].revents & POLLIN) (void)!::read(wake_fd_, &count, sizeof count);
    const bool due = (fds[1].revents & POLLIN) &&
                     ::read(timer_fd_, &count, sizeof count) == static_cast<ssize_t>(sizeof count);
    lock.lock();
    sleeping_ = false;
    // The chunk run_here started still runs: the caller's other duties fall to this thread
    // until it ends (worker/session.cpp). Rechecked under the lock: it may have just ended.
    if (due && here_ && !stop_) {
      lock.unlock();
      stand_in_();
      lock.lock();
    }
  }
}

}  // namespace seppo::worker
