#include "protocol/command_record.hpp"

#include <stdexcept>
#include <string_view>

namespace seppo::wire {
namespace {

std::string_view key_of(const msgpack::object& key) {
  if (key.type == msgpack::type::STR) return {key.via.str.ptr, key.via.str.size};
  return {};
}

std::string text_of(const msgpack::object& value) {
  if (value.type == msgpack::type::STR) return {value.via.str.ptr, value.via.str.size};
  if (value.type == msgpack::type::BIN) return {value.via.bin.ptr, value.via.bin.size};
  return {};
}

std::optional<std::int64_t> integer_of(const msgpack::object& value) {
  if (value.type == msgpack::type::POSITIVE_INTEGER && value.via.u64 <= INT64_MAX) {
    return static_cast<std::int64_t>(value.via.u64);
  }
  if (value.type == msgpack::type::NEGATIVE_INTEGER) return value.via.i64;
  return std::nullopt;
}

}  // namespace

void pack_command_request(msgpack::packer<msgpack::sbuffer>& packer,
                          const std::vector<std::string>& args, std::uint64_t seq, bool record,
                          bool dry_run, const std::string& cwd, const std::string* stdin_data,
                          bool context_replace,
                          const std::vector<std::pair<std::string, std::string>>& env) {
  packer.pack_map(2 + (record ? 1 : 0) + (dry_run ? 1 : 0) + (cwd.empty() ? 0 : 1) +
                  (stdin_data != nullptr ? 1 : 0) + (context_replace ? 1 : 0) +
                  (env.empty() ? 0 : 1));
  packer.pack("args");
  packer.pack_array(static_cast<std::uint32_t>(args.size()));
  for (const std::string& arg : args) packer.pack(arg);
  packer.pack("seq").pack(seq);
  if (record) packer.pack("record").pack(true);
  if (dry_run) packer.pack("dry_run").pack(true);
  if (!cwd.empty()) packer.pack("cwd").pack(cwd);
  if (context_replace) packer.pack("context_replace").pack(true);
  if (!env.empty()) {
    packer.pack("env");
    packer.pack_map(static_cast<std::uint32_t>(env.size()));
    for (const auto& [name, value] : env) packer.pack(name).pack(value);
  }
  if (stdin_data != nullptr) {
    packer.pack("stdin");
    packer.pack_bin(static_cast<std::uint32_t>(stdin_data->size()));
    packer.pack_bin_body(stdin_data->data(), static_cast<std::uint32_t>(stdin_data->size()));
  }
}

std::optional<CommandRequest> decode_command_request(const msgpack::object& item) {
  if (item.type != msgpack::type::MAP) return std::nullopt;
  CommandRequest request;
  for (std::uint32_t i = 0; i < item.via.map.size; ++i) {
    const std::string_view key = key_of(item.via.map.ptr[i].key);
    const msgpack::object& value = item.via.map.ptr[i].val;
    if (key == "args") {
      request.args = &value;
    } else if (key == "seq") {
      if (value.type != msgpack::type::POSITIVE_INTEGER) {
        throw std::invalid_argument("request: \"seq\" must be an unsigned integer");
      }
      request.seq = value.via.u64;
    } else if (key == "record" || key == "dry_run" || key == "context_replace") {
      if (value.type != msgpack::type::BOOLEAN) {
        throw std::invalid_argument("request: \"" + std::string(key) + "\" must be true or false");
      }
      (key == "record"    ? request.record
       : key == "dry_run" ? request.dry_run
                          : request.context_replace) = value.via.boolean;
    } else if (key == "cwd") {
      if (value.type != msgpack::type::STR) {
        throw std::invalid_argument("request: \"cwd\" must be a string");
      }
      request.cwd.assign(value.via.str.ptr, value.via.str.size);
    } else if (key == "stdin") {
      if (value.type != msgpack::type::BIN && value.type != msgpack::type::STR) {
        throw std::invalid_argument("request: \"stdin\" must be bytes (bin or str)");
      }
      request.stdin_data = text_of(value);
    } else if (key == "env") {
      if (value.type != msgpack::type::MAP) {
        throw std::invalid_argument("request: \"env\" must be a map of strings");
      }
      for (std::uint32_t k = 0; k < value.via.map.size; ++k) {
        const msgpack::object& name = value.via.map.ptr[k].key;
        const msgpack::object& text = value.via.map.ptr[k].val;
        if (name.type != msgpack::type::STR || text.type != msgpack::type::STR) {
          throw std::invalid_argument("request: \"env\" must be a map of strings");
        }
        request.env.emplace_back(text_of(name), text_of(text));
      }
    } else {
      // An answer that ignored what a later client asked for (its stdin, say) would be wrong
      // with no error: refuse what this worker cannot honour.
      throw std::invalid_argument("request: unknown key \"" + std::string(key) +
                                  "\" (this worker predates it)");
    }
  }
  if (request.args == nullptr) {
    throw std::invalid_argument("request: a map item needs \"args\" (the item's arguments)");
  }
  return request;
}

void pack_command_record(msgpack::packer<msgpack::sbuffer>& packer, const CommandRecord& record) {
  packer.pack_map(record.message.empty() ? 8 : 9);
  packer.pack("stdout").pack(record.out);
  packer.pack("stderr").pack(record.err);
  packer.pack("exit").pack(record.exit);
  packer.pack("signal").pack(record.signal);
  packer.pack("start_us").pack(record.start_us);
  packer.pack("runtime_us").pack(record.runtime_us);
  packer.pack("host").pack(record.host);
  packer.pack("command").pack(record.command);
  if (!record.message.empty()) packer.pack("message").pack(record.message);
}

std::optional<CommandRecord> decode_command_record(const msgpack::object& value) {
  if (value.type != msgpack::type::MAP) return std::nullopt;
  CommandRecord record;
  bool has_exit = false, has_stdout = false;
  for (std::uint32_t i = 0; i < value.via.map.size; ++i) {
    const std::string_view key = key_of(value.via.map.ptr[i].key);
    const msgpack::object& v = value.via.map.ptr[i].val;
    const std::optional<std::int64_t> number = integer_of(v);
    if (key == "stdout") {
      record.out = text_of(v);
      has_stdout = true;
    } else if (key == "stderr") {
      record.err = text_of(v);
    } else if (key == "exit" && number) {
      record.exit = static_cast<int>(*number);
      has_exit = true;
    } else if (key == "signal" && number) {
      record.signal = static_cast<int>(*number);
    } else if (key == "start_us" && number && *number >= 0) {
      record.start_us = static_cast<std::uint64_t>(*number);
    } else if (key == "runtime_us" && number && *number >= 0) {
      record.runtime_us = static_cast<std::uint64_t>(*number);
    } else if (key == "host") {
      record.host = text_of(v);
    } else if (key == "command") {
      record.command = text_of(v);
    } else if (key == "message") {
      record.message = text_of(v);
    }
  }
  if (!has_exit || !has_stdout) return std::nullopt;
  return record;
}

}  // namespace seppo::wire
