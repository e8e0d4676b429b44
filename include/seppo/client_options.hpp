// What a Client is configured with. Its own header so that the job's rules (libclient/job_core.hpp)
// read the same struct the caller set: one home per option.
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <string>

#include "seppo/export.hpp"

namespace seppo {

struct ClientOptions {
  // A call fails with ConnectionError when the broker has been silent this long.
  std::chrono::milliseconds timeout{30000};
  // How long the broker waits for a worker providing the function before failing the call
  // with UnknownFunctionError. 0: fail at once if no worker serves it, unless workers that
  // did are only briefly away (the broker's --worker-grace).
  std::chrono::milliseconds worker_wait{0};
  // Items per chunk; 0 adapts it to the function's measured cost (see docs/design.md).
  std::size_t chunk_size = 0;
  // Chunks in flight at once; bounds the memory of client and broker whatever the input size.
  std::size_t window = 256;
  // Bytes of submitted chunks not yet answered; the other bound on memory.
  std::size_t max_inflight_bytes = 8u << 20;
  // Chunks are aimed at this much compute each when chunk_size is 0.
  std::chrono::microseconds target_chunk_time{10000};
  // Until the broker announces its own.
  std::chrono::milliseconds heartbeat{1000};
  // CurveZMQ (README.md, "Running on a network"): paths of this client's secret key file and
  // of the broker's public key file, as `seppo keygen` writes them. Both or neither; with them
  // all traffic is encrypted and the broker admits the client by its key. Empty by default;
  // from_env() sets them from SEPPO_CURVE_SECRET_KEY and SEPPO_CURVE_SERVER_KEY.
  std::string curve_secret_key_file;
  std::string curve_server_key_file;
  // Without keys, the client connects only to a broker on this machine (loopback or ipc://)
  // and throws seppo::Error otherwise; true allows any broker, in plaintext, unauthenticated.
  bool insecure = false;
  // Time limit per item; 0: none (the broker's --task-timeout, if any, applies, and caps this).
  // An item running longer ends as an item error with code "timeout", and the worker process
  // running it is replaced (docs/protocol.md §10.1).
  std::chrono::milliseconds item_timeout{0};
  // The largest message this client accepts from the broker (docs/client.md, "Limits"): a
  // broker that sends a larger frame is disconnected, and the call fails with ConnectionError.
  // 0: no limit of its own (the broker it was given is trusted, and bounds what it sends by its
  // --max-message-bytes).
  std::uint64_t max_message_bytes = 0;
  // Name the protocol feature "batch" (docs/protocol.md §4.19): the broker may then send the
  // answers of several chunks in one message. false: one message per answer, as before
  // issue 28 (to compare the two, bench/README.md).
  bool batch = true;
  // With batch: send the chunks one turn submits as one SUBMITS message once the broker names
  // the feature "submits" (docs/protocol.md §4.20). false: one SUBMIT per chunk, as before
  // SUBMITS (issue 28; to compare the two, bench/README.md). batch false sends no SUBMITS either.
  bool submits = true;

  // The defaults, with what the environment sets: the key files from SEPPO_CURVE_SECRET_KEY and
  // SEPPO_CURVE_SERVER_KEY. What a Client constructed without options uses.
  SEPPO_API static ClientOptions from_env();
};

}  // namespace seppo
