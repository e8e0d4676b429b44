// The broker pair's rows of docs/protocol.md (H1.., §15) as data: each row's handler in
// broker::ha::HaCore and the unit-test file whose test case names it (protocol/rows.hpp).
// tests/unit/rows_table_test.cpp checks the table against docs/protocol.md, broker/*.cpp and
// the tests; a new row needs its line here, its handler and its test.
#pragma once

#include "protocol/rows.hpp"

namespace seppo::broker::ha {

inline constexpr rows::Row kRows[] = {
    {"H1", "HaCore", "ha_core_test.cpp"},         {"H2", "HaCore", "ha_core_test.cpp"},
    {"H3", "on_tick", "ha_core_test.cpp"},        {"H4", "on_peer", "ha_core_test.cpp"},
    {"H5", "on_peer", "ha_core_test.cpp"},        {"H6", "on_request", "ha_core_test.cpp"},
    {"H7", "on_request", "ha_core_test.cpp"},     {"H8", "on_request", "ha_core_test.cpp"},
    {"H9", "on_tick", "ha_core_test.cpp"},        {"H10", "on_request", "ha_core_test.cpp"},
    {"H11", "on_peer", "ha_core_test.cpp"},       {"H12", "on_peer", "ha_core_test.cpp"},
    {"H13", "on_peer", "ha_core_test.cpp"},       {"H14", "on_request", "ha_core_test.cpp"},
    {"H15", "on_request", "ha_core_test.cpp"},    {"H16", "on_tick", "ha_core_test.cpp"},
    {"H17", "on_peer_state", "ha_core_test.cpp"}, {"H18", "on_peer", "ha_core_test.cpp"},
    {"H19", "on_peer", "ha_core_test.cpp"},
};

}  // namespace seppo::broker::ha
