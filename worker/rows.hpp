// The worker's rows of docs/protocol.md (W1.., §8) as data: each row's handler in
// worker::SessionCore and the unit-test file whose test case names it (protocol/rows.hpp).
// tests/unit/rows_table_test.cpp checks the table against docs/protocol.md, worker/*.cpp and the
// tests; a new row needs its line here, its handler and its test.
#pragma once

#include "protocol/rows.hpp"

namespace seppo::worker {

inline constexpr rows::Row kRows[] = {
    {"W1", "connect", "worker_core_test.cpp"},
    {"W2", "on_task", "worker_core_test.cpp"},
    {"W3", "on_task", "worker_core_test.cpp"},
    {"W4", "on_task", "worker_core_test.cpp"},
    {"W5", "on_finished", "worker_core_test.cpp"},
    {"W6", "on_finished", "worker_core_test.cpp"},
    {"W7", "step", "worker_core_test.cpp"},
    {"W8", "on_message", "worker_core_test.cpp"},
    {"W9", "on_message", "worker_core_test.cpp"},
    {"W10", "on_error", "worker_core_test.cpp"},
    {"W11", "on_error", "worker_core_test.cpp"},
    {"W12", "on_error", "worker_core_test.cpp"},
    {"W13", "on_message", "worker_core_test.cpp"},
    {"W14", "step", "worker_core_test.cpp"},
    {"W15", "on_stop", "worker_core_test.cpp"},
    {"W16", "step", "worker_core_test.cpp"},
    {"W17", "step", "worker_core_test.cpp"},
    {"W18", "on_message", "worker_core_test.cpp"},
    {"W19", "on_cancel", "worker_core_test.cpp"},
    {"W20", "on_cancel", "worker_core_test.cpp"},
    {"W21", "return_waiting", "worker_core_test.cpp"},
    {"W22", "on_cancel", "worker_core_test.cpp"},
    {"W23", "on_cancel", "worker_core_test.cpp"},
    {"W24", "step", "worker_core_test.cpp"},
    {"W25", "on_parent_gone", "worker_core_test.cpp"},
    {"W26", "forget_tasks", "worker_core_test.cpp"},
    {"W27", "on_finished", "worker_core_test.cpp"},
    {"W28", "drop_detached", "worker_core_test.cpp"},
    {"W29", "on_cancel", "worker_core_test.cpp"},
    {"W30", "on_tasks", "batch_test.cpp"},
    {"W31", "coalesce_results", "batch_test.cpp"},
    {"W32", "on_message", "batch_test.cpp"},
    {"W40", "fail_over", "worker_core_test.cpp"},
    {"W41", "on_not_active", "worker_core_test.cpp"},
};

}  // namespace seppo::worker
