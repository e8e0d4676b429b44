// One row of docs/protocol.md's state tables as data (issue 27 §3, after zeromq/malamute, whose
// state machines are data): the row, the member of its party's core that carries it out, and the
// unit-test file whose test case names it. Each party keeps its table next to its core:
// broker/rows.hpp (B rows, broker::Core), worker/rows.hpp (W rows, worker::SessionCore),
// libclient/rows.hpp (C rows, client::JobCore); tests/unit/rows_table_test.cpp checks each
// against docs/protocol.md, the core's sources and the tests. A new row needs a line in its
// table (the tables are plain arrays: no count to update), its handler and its test.
#pragma once

namespace seppo::rows {

struct Row {
  const char* id;       // "B1", "W1", "C1"
  const char* handler;  // the core's member that carries the row out
  // tests/unit/<file>, holding a TEST_CASE whose name starts with the row ("B1: ...",
  // "W1 start: ...") or lists it first among others ("W21, W22 ...").
  const char* test;
};

}  // namespace seppo::rows
