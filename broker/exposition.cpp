// JSON and Prometheus text renderings of a STATUS snapshot, on the HTTP server's thread.
//
// The text format is written here rather than with prometheus-cpp: see docs/operating.md
// ("Why not prometheus-cpp"). The format (0.0.4): per family "# HELP", "# TYPE", then samples
// `name{label="value",...} number`, label values escaped (\\, \", \n); a histogram's buckets
// cumulative with le="+Inf" equal to _count.
#include <cmath>
#include <cstdio>
#include <map>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "seppo/msgpack.hpp"

#include "broker/http.hpp"
#include "seppo/error.hpp"

namespace seppo::broker {
namespace {

msgpack::object_handle decode(const std::string& status) {
  try {
    return msgpack::unpack(status.data(), status.size());
  } catch (const std::exception& e) {
    throw Error(std::string("cannot decode the status snapshot: ") + e.what());
  }
}

std::string_view str(const msgpack::object& o) {
  return o.type == msgpack::type::STR ? std::string_view(o.via.str.ptr, o.via.str.size)
                                      : std::string_view();
}

const msgpack::object* find(const msgpack::object& map, std::string_view key) {
  if (map.type != msgpack::type::MAP) return nullptr;
  for (std::uint32_t i = 0; i < map.via.map.size; ++i) {
    if (str(map.via.map.ptr[i].key) == key) return &map.via.map.ptr[i].val;
  }
  return nullptr;
}

double number(const msgpack::object* o) {
  if (o == nullptr) return 0;
  switch (o->type) {
    case msgpack::type::POSITIVE_INTEGER:
      return static_cast<double>(o->via.u64);
    case msgpack::type::NEGATIVE_INTEGER:
      return static_cast<double>(o->via.i64);
    case msgpack::type::FLOAT32:
    case msgpack::type::FLOAT64:
      return o->via.f64;
    case msgpack::type::BOOLEAN:
      return o->via.boolean ? 1 : 0;
    default:
      return 0;
  }
}

std::string text_of(const msgpack::object* o) {
  if (o == nullptr) return {};
  if (o->type == msgpack::type::STR) return std::string(str(*o));
  if (o->type == msgpack::type::POSITIVE_INTEGER) return std::to_string(o->via.u64);
  return {};
}

// Iterates an array (nothing for anything else).
template <typename F>
void each(const msgpack::object* o, F&& f) {
  if (o == nullptr || o->type != msgpack::type::ARRAY) return;
  for (std::uint32_t i = 0; i < o->via.array.size; ++i) f(o->via.array.ptr[i]);
}
template <typename F>
void each_entry(const msgpack::object* o, F&& f) {
  if (o == nullptr || o->type != msgpack::type::MAP) return;
  for (std::uint32_t i = 0; i < o->via.map.size; ++i) {
    f(str(o->via.map.ptr[i].key), o->via.map.ptr[i].val);
  }
}

// The length of the well-formed UTF-8 sequence at s[i], 0 if there is none: peers choose worker
// and function names, and a stray byte must not make the JSON or the metrics unreadable.
std::size_t utf8_length(std::string_view s, std::size_t i) {
  const auto c = static_cast<unsigned char>(s[i]);
  const std::size_t n = c < 0x80         ? 1
                        : (c >> 5) == 6  ? 2
                        : (c >> 4) == 14 ? 3
                        : (c >> 3) == 30 ? 4
                                         : 0;
  if (n == 0 || i + n > s.size() || (n == 2 && c < 0xc2) || c > 0xf4) return 0;
  // The second byte's range depends on the first (Unicode table 3-7): no overlong forms, no
  // surrogates, nothing above U+10FFFF.
  const auto second = static_cast<unsigned char>(s[i + 1 < s.size() ? i + 1 : i]);
  if ((c == 0xe0 && second < 0xa0) || (c == 0xed && second > 0x9f) ||
      (c == 0xf0 && second < 0x90) || (c == 0xf4 && second > 0x8f)) {
    return 0;
  }
  for (std::size_t k = 1; k < n; ++k) {
    if ((static_cast<unsigned char>(s[i + k]) & 0xc0) != 0x80) return 0;
  }
  return n;
}

// `s` with every byte that is not part of well-formed UTF-8 replaced by U+FFFD.
std::string valid_utf8(std::string_view s) {
  std::string out;
  for (std::size_t i = 0; i < s.size();) {
    const std::size_t n = utf8_length(s, i);
    if (n == 0) {
      out += "\xef\xbf\xbd";
      ++i;
    } else {
      out.append(s.substr(i, n));
      i += n;
    }
  }
  return out;
}

void json_string(std::string& out, std::string_view raw) {
  const std::string s = valid_utf8(raw);
  out += '"';
  for (const char c : s) {
    switch (c) {
      case '"':
        out += "\\\"";
        break;
      case '\\':
        out += "\\\\";
        break;
      case '\n':
        out += "\\n";
        break;
      case '\r':
        out += "\\r";
        break;
      case '\t':
        out += "\\t";
        break;
      default:
        if (static_cast<unsigned char>(c) < 0x20) {
          char escaped[8];
          std::snprintf(escaped, sizeof escaped, "\\u%04x", static_cast<unsigned char>(c));
          out += escaped;
        } else {
          out += c;
        }
    }
  }
  out += '"';
}

std::string format_number(double v) {
  if (std::isnan(v)) return "NaN";
  if (std::isinf(v)) return v > 0 ? "+Inf" : "-Inf";
  char text[32];
  std::snprintf(text, sizeof text, "%.17g", v);
  return text;
}

void json_value(std::string& out, const msgpack::object& o, int depth) {
  if (depth > 32) {
    out += "null";
    return;
  }
  switch (o.type) {
    case msgpack::type::NIL:
      out += "null";
      break;
    case msgpack::type::BOOLEAN:
      out += o.via.boolean ? "true" : "false";
      break;
    case msgpack::type::POSITIVE_INTEGER:
      out += std::to_string(o.via.u64);
      break;
    case msgpack::type::NEGATIVE_INTEGER:
      out += std::to_string(o.via.i64);
      break;
    case msgpack::type::FLOAT32:
    case msgpack::type::FLOAT64:
      out += std::isfinite(o.via.f64) ? format_number(o.via.f64) : "null";
      break;
    case msgpack::type::STR:
      json_string(out, str(o));
      break;
    case msgpack::type::ARRAY:
      out += '[';
      for (std::uint32_t i = 0; i < o.via.array.size; ++i) {
        if (i) out += ',';
        json_value(out, o.via.array.ptr[i], depth + 1);
      }
      out += ']';
      break;
    case msgpack::type::MAP:
      out += '{';
      for (std::uint32_t i = 0; i < o.via.map.size; ++i) {
        if (i) out += ',';
        const msgpack::object& key = o.via.map.ptr[i].key;
        if (key.type == msgpack::type::STR) {
          json_string(out, str(key));
        } else {
          std::string k;
          json_value(k, key, depth + 1);
          json_string(out, k);
        }
        out += ':';
        json_value(out, o.via.map.ptr[i].val, depth + 1);
      }
      out += '}';
      break;
    default:
      out += "null";
  }
}

std::string label_value(std::string_view raw) {
  const std::string v = valid_utf8(raw);
  std::string out;
  for (const char c : v) {
    if (c == '\\') {
      out += "\\\\";
    } else if (c == '"') {
      out += "\\\"";
    } else if (c == '\n') {
      out += "\\n";
    } else {
      out += c;
    }
  }
  return out;
}

using Labels = std::vector<std::pair<std::string, std::string>>;

class Exposition {
 public:
  void family(const char* name, const char* type, const char* help) {
    out_ += "# HELP ";
    out_ += name;
    out_ += ' ';
    out_ += help;
    out_ += "\n# TYPE ";
    out_ += name;
    out_ += ' ';
    out_ += type;
    out_ += '\n';
  }
  void sample(std::string_view name, const Labels& labels, double value) {
    out_ += name;
    if (!labels.empty()) {
      out_ += '{';
      bool first = true;
      for (const auto& [k, v] : labels) {
        if (!first) out_ += ',';
        first = false;
        out_ += k + "=\"" + label_value(v) + "\"";
      }
      out_ += '}';
    }
    out_ += ' ';
    out_ += format_number(value);
    out_ += '\n';
  }
  std::string take() { return std::move(out_); }

 private:
  std::string out_;
};

}  // namespace

std::string status_json(const std::string& status) {
  const msgpack::object_handle handle = decode(status);
  std::string out;
  json_value(out, handle.get(), 0);
  out += '\n';
  return out;
}

std::string status_metrics(const std::string& status) {
  const msgpack::object_handle handle = decode(status);
  const msgpack::object& s = handle.get();
  Exposition e;

  e.family("seppo_build_info", "gauge", "The broker's version and protocol level; always 1.");
  e.sample("seppo_build_info",
           {{"version", text_of(find(s, "version"))}, {"protocol", text_of(find(s, "protocol"))}},
           1);
  if (const msgpack::object* ha = find(s, "ha")) {  // one broker of a pair (§15.3)
    e.family("seppo_ha_state", "gauge",
             "This broker of a pair: its role and state, and its peer's last state; always 1.");
    e.sample("seppo_ha_state",
             {{"role", text_of(find(*ha, "role"))},
              {"state", text_of(find(*ha, "state"))},
              {"peer", text_of(find(*ha, "peer"))}},
             1);
  }
  e.family("seppo_uptime_seconds", "gauge", "Seconds since the broker started.");
  e.sample("seppo_uptime_seconds", {}, number(find(s, "uptime_ms")) / 1000);

  // Workers by function and host; slots by host.
  std::map<std::pair<std::string, std::string>, double> workers;
  std::map<std::string, std::pair<double, double>> slots;  // host -> busy, free
  std::map<std::string, double> held;                      // host -> tasks sent, unanswered
  std::map<std::string, double> versions;                  // build version -> workers
  each(find(s, "workers"), [&](const msgpack::object& w) {
    const std::string host = text_of(find(w, "host"));
    const std::string version = text_of(find(w, "version"));
    versions[version.empty() ? "unknown" : version] += 1;
    each(find(w, "functions"), [&](const msgpack::object& f) {
      workers[{std::string(str(f)), host}] += 1;
    });
    // A worker process runs one task at a time (its credit lets more wait there): one slot.
    const bool busy = number(find(w, "busy")) > 0;
    slots[host].first += busy ? 1 : 0;
    slots[host].second += busy ? 0 : 1;
    held[host] += number(find(w, "busy"));
  });
  e.family("seppo_workers", "gauge",
           "Worker processes connected, by function they provide and host.");
  for (const auto& [key, n] : workers) {
    e.sample("seppo_workers", {{"function", key.first}, {"host", key.second}}, n);
  }
  e.family("seppo_worker_versions", "gauge",
           "Worker processes connected, by build version (\"unknown\": a worker predating it).");
  for (const auto& [version, n] : versions) {
    e.sample("seppo_worker_versions", {{"version", version}}, n);
  }
  e.family("seppo_slots", "gauge",
           "Worker processes (one task at a time each) running a task or free, by host.");
  for (const auto& [host, n] : slots) {
    e.sample("seppo_slots", {{"host", host}, {"state", "busy"}}, n.first);
    e.sample("seppo_slots", {{"host", host}, {"state", "free"}}, n.second);
  }
  e.family("seppo_worker_held_tasks", "gauge",
           "Tasks sent to workers and not yet answered (running or waiting there), by host.");
  for (const auto& [host, n] : held) e.sample("seppo_worker_held_tasks", {{"host", host}}, n);
  e.family("seppo_queued_tasks", "gauge", "Tasks waiting for a worker, by function.");
  each_entry(find(s, "functions"), [&](std::string_view name, const msgpack::object& f) {
    e.sample("seppo_queued_tasks", {{"function", std::string(name)}}, number(find(f, "queued")));
  });
  double jobs = 0;
  each(find(s, "jobs"), [&](const msgpack::object&) { ++jobs; });
  e.family("seppo_jobs", "gauge", "Jobs the broker holds.");
  e.sample("seppo_jobs", {}, jobs);
  e.family("seppo_clients", "gauge", "Clients with jobs or heard from lately.");
  e.sample("seppo_clients", {}, number(find(s, "clients")));
  e.family("seppo_held_bytes", "gauge",
           "Bytes of clients' tasks and results the broker holds (as --max-client-bytes counts).");
  e.sample("seppo_held_bytes", {}, number(find(s, "bytes_held")));

  const msgpack::object* counters = find(s, "counters");
  e.family("seppo_items_finished_total", "counter",
           "Items whose results a worker returned, by function.");
  each_entry(counters, [&](std::string_view name, const msgpack::object& f) {
    e.sample("seppo_items_finished_total", {{"function", std::string(name)}},
             number(find(f, "finished")));
  });
  e.family("seppo_items_failed_total", "counter",
           "Items failed, by function and reason: error (the function failed them) or the "
           "broker's (worker_lost, timeout, bad_request).");
  each_entry(counters, [&](std::string_view name, const msgpack::object& f) {
    each_entry(find(f, "failed"), [&](std::string_view reason, const msgpack::object& n) {
      e.sample("seppo_items_failed_total",
               {{"function", std::string(name)}, {"reason", std::string(reason)}}, number(&n));
    });
  });
  e.family("seppo_items_retried_total", "counter",
           "Items queued again after their worker was lost, by function.");
  each_entry(counters, [&](std::string_view name, const msgpack::object& f) {
    e.sample("seppo_items_retried_total", {{"function", std::string(name)}},
             number(find(f, "retried")));
  });
  e.family("seppo_items_timed_out_total", "counter",
           "Items of tasks that ran past their time limit, by function.");
  each_entry(counters, [&](std::string_view name, const msgpack::object& f) {
    e.sample("seppo_items_timed_out_total", {{"function", std::string(name)}},
             number(find(f, "timed_out")));
  });
  e.family("seppo_task_run_seconds", "histogram",
           "Time workers spent running a task (a chunk of items), by function.");
  each_entry(counters, [&](std::string_view name, const msgpack::object& f) {
    double cumulative = 0;
    each(find(f, "buckets"), [&](const msgpack::object& b) {
      if (b.type != msgpack::type::ARRAY || b.via.array.size != 2) return;
      const msgpack::object& le = b.via.array.ptr[0];
      cumulative += number(&b.via.array.ptr[1]);
      char bound[32];
      if (le.type == msgpack::type::STR) {
        std::snprintf(bound, sizeof bound, "+Inf");
      } else {
        std::snprintf(bound, sizeof bound, "%g", number(&le));
      }
      e.sample("seppo_task_run_seconds_bucket", {{"function", std::string(name)}, {"le", bound}},
               cumulative);
    });
    e.sample("seppo_task_run_seconds_sum", {{"function", std::string(name)}},
             number(find(f, "seconds")));
    e.sample("seppo_task_run_seconds_count", {{"function", std::string(name)}},
             number(find(f, "tasks")));
  });
  e.family("seppo_messages_refused_total", "counter",
           "Messages the broker refused (ERROR, or a chunk refused as over_limit, too_large or "
           "bad_request), by reason.");
  each_entry(find(s, "refused"), [&](std::string_view reason, const msgpack::object& n) {
    e.sample("seppo_messages_refused_total", {{"reason", std::string(reason)}}, number(&n));
  });
  return e.take();
}

}  // namespace seppo::broker
