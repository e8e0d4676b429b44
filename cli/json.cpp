#include "cli/json.hpp"

#include <charconv>

#include "seppo/convert.hpp"

namespace seppo::cli {

nlohmann::json to_json(const msgpack::object& o) {
  switch (o.type) {
    case msgpack::type::NIL:
      return nullptr;
    case msgpack::type::BOOLEAN:
      return o.via.boolean;
    case msgpack::type::POSITIVE_INTEGER:
      return o.via.u64;
    case msgpack::type::NEGATIVE_INTEGER:
      return o.via.i64;
    case msgpack::type::FLOAT32:
    case msgpack::type::FLOAT64:
      return o.via.f64;
    case msgpack::type::STR:
      return std::string(o.via.str.ptr, o.via.str.size);
    case msgpack::type::BIN: {
      nlohmann::json bytes = nlohmann::json::array();
      for (std::uint32_t i = 0; i < o.via.bin.size; ++i) {
        bytes.push_back(static_cast<unsigned char>(o.via.bin.ptr[i]));
      }
      return bytes;
    }
    case msgpack::type::ARRAY: {
      nlohmann::json array = nlohmann::json::array();
      for (std::uint32_t i = 0; i < o.via.array.size; ++i)
        array.push_back(to_json(o.via.array.ptr[i]));
      return array;
    }
    case msgpack::type::MAP: {
      nlohmann::json map = nlohmann::json::object();
      for (std::uint32_t i = 0; i < o.via.map.size; ++i) {
        const msgpack::object_kv& kv = o.via.map.ptr[i];
        const std::string key = kv.key.type == msgpack::type::STR
                                    ? std::string(kv.key.via.str.ptr, kv.key.via.str.size)
                                    : to_json(kv.key).dump();
        map[key] = to_json(kv.val);
      }
      return map;
    }
    case msgpack::type::EXT:
      // A Python tuple (ext 2) prints as its array, an ndarray (ext 3) as nested arrays; other
      // extensions as null. One that cannot be shown (a complex or float16 array, a malformed
      // one) is an error, never a silent null: as_plain's ProtocolError says which and why.
      if (o.via.ext.type() == kTupleExt || o.via.ext.type() == kNdarrayExt ||
          o.via.ext.type() == kNamedTupleExt) {
        msgpack::zone zone;
        return to_json(as_plain(o, zone));
      }
      return nullptr;
  }
  return nullptr;
}

void pack_json(msgpack::packer<msgpack::sbuffer>& p, const nlohmann::json& v) {
  switch (v.type()) {
    case nlohmann::json::value_t::null:
      p.pack_nil();
      break;
    case nlohmann::json::value_t::boolean:
      p.pack(v.get<bool>());
      break;
    case nlohmann::json::value_t::number_integer:
      p.pack(v.get<std::int64_t>());
      break;
    case nlohmann::json::value_t::number_unsigned:
      p.pack(v.get<std::uint64_t>());
      break;
    case nlohmann::json::value_t::number_float:
      p.pack(v.get<double>());
      break;
    case nlohmann::json::value_t::string:
      p.pack(v.get_ref<const std::string&>());
      break;
    case nlohmann::json::value_t::array:
      p.pack_array(static_cast<std::uint32_t>(v.size()));
      for (const auto& e : v) pack_json(p, e);
      break;
    case nlohmann::json::value_t::object:
      p.pack_map(static_cast<std::uint32_t>(v.size()));
      for (const auto& [key, value] : v.items()) {
        p.pack(key);
        pack_json(p, value);
      }
      break;
    default:
      p.pack_nil();
      break;
  }
}

void pack_line(msgpack::packer<msgpack::sbuffer>& packer, std::string_view line) {
  // Most shell inputs are plain integers: they skip the JSON parser. Up to 18 digits cannot
  // overflow, so they are read without from_chars' checks; longer ones take its path.
  if (const std::size_t sign = !line.empty() && line[0] == '-' ? 1 : 0;
      line.size() > sign && line.size() - sign <= 18) {
    std::int64_t digits = 0;
    std::size_t i = sign;
    for (; i < line.size(); ++i) {
      const unsigned d = static_cast<unsigned char>(line[i]) - static_cast<unsigned>('0');
      if (d > 9) break;
      digits = digits * 10 + static_cast<std::int64_t>(d);
    }
    if (i == line.size()) {
      packer.pack(sign != 0 ? -digits : digits);
      return;
    }
  }
  std::int64_t number = 0;
  const char* end = line.data() + line.size();
  const auto [ptr, ec] = std::from_chars(line.data(), end, number);
  if (ec == std::errc() && ptr == end && !line.empty()) {
    packer.pack(number);
    return;
  }
  pack_json(packer, parse_line(std::string(line)));
}

nlohmann::json parse_line(const std::string& line) {
  nlohmann::json value = nlohmann::json::parse(line, nullptr, false);
  if (value.is_discarded()) return line;
  return value;
}

std::string format_result(const msgpack::object& value) {
  switch (value.type) {
    case msgpack::type::STR:
      return std::string(value.via.str.ptr, value.via.str.size);
    case msgpack::type::POSITIVE_INTEGER:
      return std::to_string(value.via.u64);
    case msgpack::type::NEGATIVE_INTEGER:
      return std::to_string(value.via.i64);
    default:
      return to_json(value).dump();
  }
}

}  // namespace seppo::cli
