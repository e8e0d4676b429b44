// The broker's rows of docs/protocol.md (B1..B60, §7.2-§7.4, §10, §10.1) as data: each row's
// handler in broker::Core and the unit-test file whose test case "Bn: ..." checks it (after
// zeromq/malamute, whose state machines are data). tests/unit/rows_table_test.cpp checks that the
// table and docs/protocol.md list the same rows, that each handler is a Core member defined in
// broker/, and that each test exists; a new row needs its line here, its handler and its test
// (protocol/rows.hpp).
#pragma once

#include "protocol/rows.hpp"

namespace seppo::broker {

using rows::Row;

inline constexpr Row kRows[] = {
    {"B1", "on_ready", "broker_rows_test.cpp"},
    {"B2", "handle", "broker_core_test.cpp"},
    {"B3", "handle", "broker_rows_test.cpp"},
    {"B4", "on_ready", "broker_rows_test.cpp"},
    {"B5", "on_heartbeat", "broker_core_test.cpp"},
    {"B6", "on_result", "broker_rows_test.cpp"},
    {"B7", "handle", "broker_rows_test.cpp"},
    {"B8", "on_ready", "broker_rows_test.cpp"},
    {"B9", "permitted", "broker_rows_test.cpp"},
    {"B10", "handle", "broker_core_test.cpp"},
    {"B11", "on_return", "broker_rows_test.cpp"},
    {"B12", "check_timeouts", "broker_rows_test.cpp"},
    {"B13", "remove_worker", "broker_rows_test.cpp"},
    {"B14", "shutdown", "broker_core_test.cpp"},
    {"B15", "on_submit", "broker_rows_test.cpp"},
    {"B16", "dispatch", "broker_core_test.cpp"},
    {"B17", "dispatch_worker", "broker_core_test.cpp"},
    {"B18", "delivery_backlogged", "broker_core_test.cpp"},
    {"B19", "on_result", "broker_core_test.cpp"},
    {"B20", "on_result", "broker_core_test.cpp"},
    {"B21", "on_ready", "broker_rows_test.cpp"},
    {"B22", "on_return", "task_timer_test.cpp"},
    {"B23", "remove_job", "task_timer_test.cpp"},
    {"B24", "on_submit", "broker_rows_test.cpp"},
    {"B25", "on_submit", "broker_rows_test.cpp"},
    {"B26", "on_submit", "broker_core_test.cpp"},
    {"B27", "on_submit", "broker_core_test.cpp"},
    {"B28", "on_submit", "broker_core_test.cpp"},
    {"B29", "on_submit", "broker_rows_test.cpp"},
    {"B30", "on_heartbeat", "broker_rows_test.cpp"},
    {"B31", "on_heartbeat", "broker_core_test.cpp"},
    {"B32", "on_heartbeat", "broker_core_test.cpp"},
    {"B33", "on_send_failed", "broker_core_test.cpp"},
    {"B34", "on_done", "broker_core_test.cpp"},
    {"B35", "remove_client", "broker_core_test.cpp"},
    {"B36", "on_tick", "broker_core_test.cpp"},
    {"B37", "received_running", "broker_core_test.cpp"},
    {"B38", "remove_worker", "task_timer_test.cpp"},
    {"B39", "requeue", "broker_core_test.cpp"},
    {"B40", "requeue", "broker_core_test.cpp"},
    {"B41", "split", "broker_rows_test.cpp"},
    {"B42", "requeue", "broker_rows_test.cpp"},
    {"B43", "dispatch_worker", "broker_core_test.cpp"},
    {"B44", "remove_worker", "broker_core_test.cpp"},
    {"B45", "remove_worker", "task_timer_test.cpp"},
    {"B46", "time_limit", "task_timer_test.cpp"},
    {"B47", "check_timeouts", "task_timer_test.cpp"},
    {"B48", "time_out", "task_timer_test.cpp"},
    {"B49", "time_out", "task_timer_test.cpp"},
    {"B50", "reserve", "broker_rows_test.cpp"},
    {"B51", "take_listing", "broker_rows_test.cpp"},
    {"B52", "adopt_chunk", "broker_rows_test.cpp"},
    {"B53", "stash_result", "broker_rows_test.cpp"},
    {"B54", "close_window", "broker_rows_test.cpp"},
    {"B55", "dispatch", "broker_rows_test.cpp"},
    {"B56", "on_results", "batch_test.cpp"},
    {"B57", "on_results", "batch_test.cpp"},
    {"B58", "coalesce_tasks", "batch_test.cpp"},
    {"B59", "coalesce_delivers", "batch_test.cpp"},
    {"B60", "on_submits", "batch_test.cpp"},
};

}  // namespace seppo::broker
