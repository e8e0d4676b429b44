// The client's rows of docs/protocol.md (C1.., §9) as data: each row's handler in
// client::JobCore and the unit-test file whose test case names it (protocol/rows.hpp).
// tests/unit/rows_table_test.cpp checks the table against docs/protocol.md, libclient/*.cpp and
// the tests; a new row needs its line here, its handler and its test.
#pragma once

#include "protocol/rows.hpp"

namespace seppo::client {

inline constexpr rows::Row kRows[] = {
    {"C1", "wanted", "client_core_test.cpp"},
    {"C2", "submit", "client_core_test.cpp"},
    {"C3", "add_chunk", "client_core_test.cpp"},
    {"C4", "on_decoded", "client_core_test.cpp"},
    {"C5", "on_deliver", "client_core_test.cpp"},
    {"C6", "accept", "client_core_test.cpp"},
    {"C7", "on_deliver", "client_core_test.cpp"},
    {"C8", "on_decoded", "client_core_test.cpp"},
    {"C9", "on_decoded", "client_core_test.cpp"},
    {"C10", "over_limit", "client_core_test.cpp"},
    {"C11", "over_limit", "client_core_test.cpp"},
    {"C12", "resend_refused", "client_core_test.cpp"},
    {"C13", "resubmit_all", "client_core_test.cpp"},
    {"C14", "on_decoded", "client_core_test.cpp"},
    {"C15", "on_decoded", "client_core_test.cpp"},
    {"C16", "on_decoded", "client_core_test.cpp"},
    {"C17", "on_tick", "client_core_test.cpp"},
    {"C18", "on_tick", "client_core_test.cpp"},
    {"C19", "close", "client_core_test.cpp"},
    {"C20", "on_decoded", "client_core_test.cpp"},
    {"C21", "send_deferred", "client_core_test.cpp"},
    {"C22", "fail_oversized", "client_core_test.cpp"},
    {"C23", "resubmit_all", "client_core_test.cpp"},
    {"C24", "on_decoded", "client_core_test.cpp"},
    {"C25", "flush_submits", "client_core_test.cpp"},
    {"C30", "fail_over", "client_core_test.cpp"},
    {"C31", "on_not_active", "client_core_test.cpp"},
};

}  // namespace seppo::client
