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

void Executor::start(std::uint32_t function_index, zmq::message_t&& payload) {
  zmq::message_t index(&function_index, sizeof function_index);
  pipe_.send(index, zmq::send_flags::sndmore);
  pipe_.send(payload, zmq::send_flags::none);
}

Executor::Outcome Executor::finish() {
  std::vector<zmq::message_t> frames;
  (void)zmq::recv_multipart(pipe_, std::back_inserter(frames));
  Outcome outcome;
  const auto* meta = frames[0].data<unsigned char>();
  outcome.ok = meta[0] == 0;
  std::memcpy(&outcome.elapsed_us, meta + 1, sizeof outcome.elapsed_us);
  outcome.output = std::move(frames[1]);
  return outcome;
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
    std::uint32_t index = 0;
    std::memcpy(&index, frames[0].data(), sizeof index);
    std::string output;
    seppo_sink sink{&output, append};
    const auto started = std::chrono::steady_clock::now();
    const int status = functions_.at(index).call_chunk(frames[1].data<char>(), frames[1].size(), &sink);
    const std::uint64_t elapsed = static_cast<std::uint64_t>(
        std::chrono::duration_cast<std::chrono::microseconds>(std::chrono::steady_clock::now() -
                                                              started)
            .count());
    unsigned char meta[9];
    meta[0] = status == 0 ? 0 : 1;
    std::memcpy(meta + 1, &elapsed, sizeof elapsed);
    zmq::message_t head(meta, sizeof meta);
    pipe.send(head, zmq::send_flags::sndmore);
    pipe.send(adopt(std::move(output)), zmq::send_flags::none);
  }
}

}  // namespace seppo::worker
