#include "worker/executor.hpp"

#include <chrono>
#include <string>
#include <utility>

namespace seppo::worker {
namespace {

void append(void* context, const char* data, size_t size) {
  static_cast<std::string*>(context)->append(data, size);
}

}  // namespace

Executor::Executor(const std::vector<Function>& functions, Finished finished)
    : functions_(functions), finished_(std::move(finished)) {
  thread_ = std::thread([this] { run(); });
}

Executor::~Executor() {
  {
    std::lock_guard<std::mutex> lock(mutex_);
    stop_ = true;
  }
  wake_.notify_one();
  thread_.join();
}

void Executor::submit(std::uint64_t sequence, std::uint32_t function_index, Bytes payload) {
  bool idle;
  {
    std::lock_guard<std::mutex> lock(mutex_);
    idle = queued_.empty() && running_ == 0;
    queued_.push_back(Queued{sequence, function_index, std::move(payload)});
  }
  // A thread busy with a chunk takes the next from the queue itself: no wake-up needed.
  if (idle) wake_.notify_one();
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

void Executor::run() {
  std::unique_lock<std::mutex> lock(mutex_);
  while (true) {
    wake_.wait(lock, [this] { return stop_ || !queued_.empty(); });
    if (stop_) return;
    Queued task = std::move(queued_.front());
    queued_.pop_front();
    Outcome outcome{task.sequence, Status::Skipped, 0, Bytes()};
    bool skip = task.sequence <= skip_through_.load();
    last_started_ = task.sequence;
    skip = cancelled_.erase(task.sequence) > 0 || skip;
    cancelled_.erase(cancelled_.begin(), cancelled_.lower_bound(task.sequence));
    if (!skip) {
      running_ = task.sequence;
      running_function_ = task.function_index;
      abandon_flag().store(false);
      lock.unlock();
      std::string output;
      seppo_sink sink{&output, append};
      const auto started = std::chrono::steady_clock::now();
      const int status = functions_.at(task.function_index)
                             .invoke(task.payload.data(), task.payload.size(), &sink);
      outcome.elapsed_us =
          static_cast<std::uint64_t>(std::chrono::duration_cast<std::chrono::microseconds>(
                                         std::chrono::steady_clock::now() - started)
                                         .count());
      outcome.status = status == 0 ? Status::Ok : Status::Failed;
      outcome.output = Bytes(std::move(output));
      task.payload = Bytes();  // released here, not under the lock
      lock.lock();
      running_ = 0;
    }
    outcome.more_queued = !queued_.empty();
    lock.unlock();
    finished_(std::move(outcome));
    lock.lock();
  }
}

}  // namespace seppo::worker
