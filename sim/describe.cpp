#include "sim/describe.hpp"

#include <sstream>
#include <type_traits>

#include "protocol/codes.hpp"

namespace seppo::sim {
namespace {

// A FAILED or ERROR code as text, whether wire.hpp holds it as text, a Code or an optional one.
template <class C>
std::string code_text(const C& code) {
  if constexpr (std::is_same_v<C, std::string>) {
    return code;
  } else if constexpr (std::is_same_v<C, wire::Code>) {
    return std::string(wire::to_wire(code));
  } else {
    return code ? std::string(wire::to_wire(*code)) : std::string("unknown");
  }
}

std::string list(const std::vector<std::uint64_t>& v) {
  std::string out;
  for (std::size_t k = 0; k < v.size() && k < 8; ++k) out += (k ? "," : "") + std::to_string(v[k]);
  if (v.size() > 8) out += ",...";
  return "[" + out + "]";
}

}  // namespace

std::string describe(const wire::Message& message) {
  std::ostringstream o;
  o << wire::type_name(wire::type_of(message));
  std::visit(
      [&](const auto& m) {
        using T = std::decay_t<decltype(m)>;
        if constexpr (std::is_same_v<T, wire::Ready>) {
          o << " capacity=" << m.capacity;
        } else if constexpr (std::is_same_v<T, wire::Task>) {
          o << " task=" << m.task_id << " count=" << m.count;
        } else if constexpr (std::is_same_v<T, wire::Result>) {
          o << " task=" << m.task_id << " elapsed=" << m.elapsed_us << "us";
        } else if constexpr (std::is_same_v<T, wire::Submit>) {
          o << " job=" << m.job_id << " first=" << m.first << " count=" << m.count;
        } else if constexpr (std::is_same_v<T, wire::Submits>) {
          o << " job=" << m.job_id << " chunks=" << m.chunks.size() / wire::kSubmitFields;
        } else if constexpr (std::is_same_v<T, wire::Deliver>) {
          o << " job=" << m.job_id << " first=" << m.first << " count=" << m.count
            << " seq=" << m.seq;
        } else if constexpr (std::is_same_v<T, wire::Failed>) {
          o << " job=" << m.job_id << " first=" << m.first << " count=" << m.count
            << " code=" << code_text(m.code) << " seq=" << m.seq;
        } else if constexpr (std::is_same_v<T, wire::Done> || std::is_same_v<T, wire::Resync>) {
          o << " job=" << m.job_id;
        } else if constexpr (std::is_same_v<T, wire::Heartbeat>) {
          if (m.job_id) o << " job=" << m.job_id << " seen=" << m.seen << " open=" << list(m.open);
        } else if constexpr (std::is_same_v<T, wire::Alive>) {
          o << " instance=" << (m.instance % 100000);
        } else if constexpr (std::is_same_v<T, wire::Bye>) {
          o << " \"" << m.reason << "\"";
        } else if constexpr (std::is_same_v<T, wire::Error>) {
          o << " " << code_text(m.code) << " \"" << m.message << "\"";
        } else if constexpr (std::is_same_v<T, wire::Cancel> || std::is_same_v<T, wire::Return>) {
          o << " tasks=" << list(m.task_ids);
        } else if constexpr (std::is_same_v<T, wire::Tasks>) {
          std::vector<std::uint64_t> ids;
          for (std::size_t k = 0; k < m.tasks.size(); k += wire::kTaskFields)
            ids.push_back(m.tasks[k]);
          o << " tasks=" << list(ids);
        } else if constexpr (std::is_same_v<T, wire::Results>) {
          std::vector<std::uint64_t> ids;
          for (std::size_t k = 0; k < m.results.size(); k += wire::kResultFields)
            ids.push_back(m.results[k]);
          o << " tasks=" << list(ids);
        } else if constexpr (std::is_same_v<T, wire::Credit>) {
          o << " capacity=" << m.capacity;
        }
      },
      message);
  return o.str();
}

std::string describe_header(const std::string& header) {
  try {
    return describe(wire::decode(header.data(), header.size()));
  } catch (const std::exception& e) {
    return std::string("undecodable header: ") + e.what();
  }
}

std::string printable(const std::string& id) {
  return id;
}

namespace {
template <class C>
bool code_is(const C& code, wire::Code wanted) {
  if constexpr (std::is_same_v<C, std::string>) {
    return wire::is(code, wanted);
  } else {
    return code == wanted;
  }
}
}  // namespace

bool is_over_limit(const wire::Failed& failed) {
  return code_is(failed.code, wire::Code::OverLimit);
}

}  // namespace seppo::sim
