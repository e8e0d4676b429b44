#include "broker/stats.hpp"

#include "protocol/wire.hpp"

#include <algorithm>

namespace seppo::broker {

Stats::Function& Stats::of(std::string_view function) {
  if (auto f = functions_.find(function); f != functions_.end()) return f->second;
  if (functions_.size() >= kMaxFunctions) return functions_[std::string(kOther)];
  return functions_[std::string(function)];
}

void Stats::finished(std::string_view function, std::uint32_t count, std::uint64_t elapsed_us) {
  Function& f = of(function);
  f.finished += count;
  const double seconds = static_cast<double>(elapsed_us) / 1e6;
  f.seconds += seconds;
  ++f.tasks;
  const auto bucket = std::lower_bound(kBuckets.begin(), kBuckets.end(), seconds);
  ++f.buckets[static_cast<std::size_t>(bucket - kBuckets.begin())];
}

void Stats::failed(std::string_view function, std::string_view code, std::uint32_t count) {
  Function& f = of(function);
  auto c = f.failed.find(code);
  if (c == f.failed.end()) c = f.failed.emplace(std::string(code), 0).first;
  c->second += count;
}

void Stats::retried(std::string_view function, std::uint32_t count) {
  of(function).retried += count;
}

void Stats::timed_out(std::string_view function, std::uint32_t count) {
  of(function).timed_out += count;
}

void Stats::refused(std::string_view reason) {
  auto r = refused_.find(reason);
  if (r == refused_.end()) r = refused_.emplace(std::string(reason), 0).first;
  ++r->second;
}

void Stats::recent(Recent&& task) {
  if (!record_) return;
  while (!recent_.empty() &&
         (recent_.size() >= kRecentMax || task.ended - recent_.front().ended > kRecentAge)) {
    recent_.pop_front();
  }
  recent_.push_back(std::move(task));
}

void Stats::pack(msgpack::packer<msgpack::sbuffer>& p, TimePoint now, bool recent) const {
  p.pack("counters").pack_map(static_cast<std::uint32_t>(functions_.size()));
  for (const auto& [name, f] : functions_) {
    p.pack(name).pack_map(7);
    p.pack("finished").pack(f.finished);
    p.pack("failed").pack(f.failed);
    p.pack("retried").pack(f.retried);
    p.pack("timed_out").pack(f.timed_out);
    p.pack("tasks").pack(f.tasks);
    p.pack("seconds").pack(f.seconds);
    p.pack("buckets").pack_array(static_cast<std::uint32_t>(f.buckets.size()));
    for (std::size_t i = 0; i < f.buckets.size(); ++i) {
      p.pack_array(2);
      if (i < kBuckets.size()) {
        p.pack(kBuckets[i]);
      } else {
        p.pack("+Inf");
      }
      p.pack(f.buckets[i]);
    }
  }
  p.pack("refused").pack(refused_);
  std::uint32_t types = 0;
  for (std::uint64_t n : received_) types += n != 0 ? 1 : 0;
  p.pack("messages").pack_map(types);
  for (std::size_t t = 0; t < received_.size(); ++t) {
    if (received_[t] != 0) {
      p.pack(wire::type_name(static_cast<wire::Type>(t))).pack(received_[t]);
    }
  }
  if (!record_ || !recent) return;
  // Oldest first: [ended_ms_ago, elapsed_us, worker, function, client, job, first, count, ok].
  std::size_t skip = 0;
  while (skip < recent_.size() && now - recent_[skip].ended > kRecentAge) ++skip;
  p.pack("recent").pack_array(static_cast<std::uint32_t>(recent_.size() - skip));
  for (std::size_t i = skip; i < recent_.size(); ++i) {
    const Recent& r = recent_[i];
    p.pack_array(9);
    p.pack(static_cast<std::int64_t>(
        std::chrono::duration_cast<std::chrono::milliseconds>(now - r.ended).count()));
    p.pack(r.elapsed_us).pack(r.worker).pack(r.function).pack(r.client).pack(r.job);
    p.pack(r.first).pack(r.count).pack(r.ok);
  }
}

}  // namespace seppo::broker
