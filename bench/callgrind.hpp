// Instructions per task under valgrind's callgrind: a figure that, unlike a timing, does not
// move with the load of a shared machine. Each figure is the difference between two passes of
// N and 2N tasks, divided by N, so that start-up, connection and shutdown cancel out.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "bench/common.hpp"

namespace seppo::bench {

struct CallgrindOptions {
  std::uint64_t tasks = 5000;  // N (well above the client's window of 256): N and 2N tasks
  std::uint64_t in_flight_tasks = 2000;  // N of (o): one task in flight, no burst to reach
  std::string keep;                      // a folder to copy every callgrind file to, for profiles
};

// (m): broker against the zmq-baseline relay, seppo's worker processes against the baseline's,
// seppo's client against the baseline's client; single-item `square` tasks, 2 workers, every
// process under callgrind.
std::vector<Row> callgrind_rows(const CallgrindOptions& options);

// (o): the same with one task in flight (the client's window 1 chunk of 1 item) against
// zmq-baseline's latency mode (one request at a time, echoed).
std::vector<Row> in_flight_rows(const CallgrindOptions& options);

// The broker's instructions per single-item `sleep_ms(ms)` task with `workers` worker
// connections, the broker alone under callgrind.
double broker_instructions_per_task(unsigned workers, std::uint64_t tasks, int ms,
                                    const std::string& keep = "");

}  // namespace seppo::bench
