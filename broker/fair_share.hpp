// Fair sharing of workers between clients (docs/protocol.md §7.1): start-time fair queuing with
// one unit of work per task. Each client carries a tag, the virtual time at which its next task
// would finish; a worker with free credit takes the next task of the client with the smallest
// tag among those it can serve, whatever the function names. A client that was idle starts at
// the current virtual time, so it neither inherits a debt nor saves up credit while away.
#pragma once

#include <cstdint>

namespace seppo::broker {

struct ShareTag {
  std::uint64_t finish = 0;  // virtual time after this client's tasks sent so far
  std::uint64_t last = 0;    // order of its last task sent: ties go to the longest waiting
};

class FairShare {
 public:
  // True when a client tagged `a` should be served before one tagged `b`.
  bool before(const ShareTag& a, const ShareTag& b) const {
    const std::uint64_t ka = start(a), kb = start(b);
    return ka != kb ? ka < kb : a.last < b.last;
  }
  // A task of this client was sent: its tag moves on by one unit of work. `floor` is the least
  // start tag of the other clients with tasks queued: the virtual time never passes it, so a
  // task sent out of fair order (new work placed at once, a worker that serves one client's
  // function only) wipes neither the debt of the client served nor the credit of those waiting.
  void charge(ShareTag& tag, std::uint64_t floor = ~std::uint64_t{0}) {
    const std::uint64_t s = start(tag);
    const std::uint64_t v = s < floor ? s : floor;
    if (v > virtual_) virtual_ = v;
    tag.finish = s + 1;
    tag.last = ++sent_;
  }
  // Where this client's next task would start in virtual time.
  std::uint64_t start(const ShareTag& tag) const {
    return tag.finish > virtual_ ? tag.finish : virtual_;
  }
  std::uint64_t virtual_time() const { return virtual_; }

 private:
  std::uint64_t virtual_ = 0;  // start tag of the task sent last, unless clients waiting hold it
  std::uint64_t sent_ = 0;
};

}  // namespace seppo::broker
