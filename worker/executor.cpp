#include "worker/executor.hpp"

#include <chrono>
#include <cstring>

#include <zmq_addon.hpp>

#include "common/host.hpp"

namespace seppo::worker {
namespace {

void append(void* context, const char* data, size_t size) {
  static_cast<std::string*>(context)->append(data, size);
}

// Hands a string's buffer to ZeroMQ without copying it.
zmq::message_t adopt(std::string&& text) {
  auto* owned = new std::string(std::move(text));
  return zmq::message_t(
      owned->data(), owned->size(), [](void*, void* hint) { delete static_cast<std::string*>(hint); },
      owned);
}

}  // namespace

Executor::Executor(zmq::context_t& context, const std::vector<Function>& functions)
    : functions_(functions), pipe_(context, zmq::socket_type::pair) {
  const std::string endpoint = "inproc://seppo-executor-" + std::to_string(random_u64());
  pipe_.set(zmq::sockopt::linger, 0);
  pipe_.bind(endpoint);
  thread_ = std::thread([this, &context, endpoint] { run(context, endpoint); });
  zmq::message_t ready;
  (void)pipe_.recv(ready);  // synchronous start: the thread is connected and listening
}

Executor::~Executor() {
  zmq::message_t stop;
  pipe_.send(stop, zmq::send_flags::none);
  thread_.join();
}

namespace {

// Frames between the threads carry small fixed headers, in host byte order.
struct TaskHeader {
  std::uint64_t sequence;
  std::uint32_t function_index;
};
struct OutcomeHeader {
  std::uint64_t sequence;
  std::uint64_t elapsed_us;
  Executor::Status status;
};

}  // namespace

void Executor::submit(std::uint64_t sequence, std::uint32_t function_index,
                      zmq::message_t&& payload) {
  const TaskHeader header{sequence, function_index};
  zmq::message_t head(&header, sizeof header);
  pipe_.send(head, zmq::send_flags::sndmore);
  pipe_.send(payload, zmq::send_flags::none);
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

std::optional<Executor::Outcome> Executor::try_finish() {
  std::vector<zmq::message_t> frames;
  if (!zmq::recv_multipart(pipe_, std::back_inserter(frames), zmq::recv_flags::dontwait)) {
    return std::nullopt;
  }
  OutcomeHeader header;
  std::memcpy(&header, frames[0].data(), sizeof header);
  return Outcome{header.sequence, header.status, header.elapsed_us, std::move(frames[1])};
}

void Executor::run(zmq::context_t& context, std::string endpoint) {
  zmq::socket_t pipe(context, zmq::socket_type::pair);
  pipe.set(zmq::sockopt::linger, 0);
  pipe.connect(endpoint);
  zmq::message_t ready;
  pipe.send(ready, zmq::send_flags::none);
  std::vector<zmq::message_t> frames;
  while (true) {
    frames.clear();
    if (!zmq::recv_multipart(pipe, std::back_inserter(frames)) || frames.size() != 2) break;
    TaskHeader task;
    std::memcpy(&task, frames[0].data(), sizeof task);
    OutcomeHeader outcome{task.sequence, 0, Status::Skipped};
    std::string output;
    bool skip = task.sequence <= skip_through_.load();
    {
      std::lock_guard<std::mutex> lock(mutex_);
      last_started_ = task.sequence;
      skip = cancelled_.erase(task.sequence) > 0 || skip;
      cancelled_.erase(cancelled_.begin(), cancelled_.lower_bound(task.sequence));
      if (!skip) {
        running_ = task.sequence;
        running_function_ = task.function_index;
        abandon_flag().store(false);
      }
    }
    if (!skip) {
      seppo_sink sink{&output, append};
      const auto started = std::chrono::steady_clock::now();
      const int status = functions_.at(task.function_index)
                             .invoke(frames[1].data<char>(), frames[1].size(), &sink);
      outcome.elapsed_us = static_cast<std::uint64_t>(
          std::chrono::duration_cast<std::chrono::microseconds>(
              std::chrono::steady_clock::now() - started)
              .count());
      outcome.status = status == 0 ? Status::Ok : Status::Failed;
      std::lock_guard<std::mutex> lock(mutex_);
      running_ = 0;
    }
    zmq::message_t head(&outcome, sizeof outcome);
    pipe.send(head, zmq::send_flags::sndmore);
    pipe.send(adopt(std::move(output)), zmq::send_flags::none);
  }
}

}  // namespace seppo::worker
