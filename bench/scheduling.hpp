// How well seppo schedules: makespans of sleep_ms jobs (which cost the 2 cores nothing) against
// the ideal or the best possible schedule.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "bench/common.hpp"

namespace seppo::bench {

// The client's window (chunks in flight) for (j), (k) and (l); 0 keeps ClientOptions' default.
void set_client_window(std::size_t chunks);
// (j), (k), (l): the workers' --prefetch; 0: adapted (the default).
void set_worker_prefetch(std::uint32_t tasks);

// The makespan of the Longest-Processing-Time-first schedule of `ms` on `workers` machines:
// within 4/3 of the optimum, and usually equal to it for many small items and few large ones.
double lpt_makespan_ms(std::vector<int> ms, unsigned workers);

// (j) `items` sleep_ms(ms) items on `workers` worker connections: makespan against
// items × ms / workers. With callgrind_tasks > 0, also the broker's instructions per task at
// that size (bench/callgrind.hpp).
Row scale(unsigned workers, int items, int ms, std::uint64_t callgrind_tasks,
          const std::string& keep);

// (k) a job of `tiny` sleep_ms(0) items, then on the same client and workers a job of `slow`
// items of `slow_ms`: does credit earned on the fast items make a worker hoard slow ones?
Row tiny_then_slow(unsigned workers, int tiny, int slow, int slow_ms);

// (l) `items` items of 1 ms, 1 % of them 200 ms at fixed pseudo-random places.
Row heavy_tail(unsigned workers, int items);

}  // namespace seppo::bench
