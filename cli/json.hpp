// Lines on the shell side are JSON; values on the wire are msgpack. These convert between them.
#pragma once

#include <string>
#include <string_view>

#include <nlohmann/json.hpp>
#include "seppo/msgpack.hpp"

namespace seppo::cli {

// The JSON form of a decoded msgpack value (binary as an array of bytes, extensions as null).
nlohmann::json to_json(const msgpack::object& value);

// Packs a JSON value as msgpack.
void pack_json(msgpack::packer<msgpack::sbuffer>& packer, const nlohmann::json& value);

// How an input line becomes a value: JSON when the line parses as JSON, a string otherwise.
nlohmann::json parse_line(const std::string& line);
// The same, packed straight into a chunk (with a fast path for integers).
void pack_line(msgpack::packer<msgpack::sbuffer>& packer, std::string_view line);

// How a result becomes an output line: strings raw, anything else as compact JSON.
std::string format_result(const msgpack::object& value);

}  // namespace seppo::cli
