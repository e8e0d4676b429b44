// Issue 26 item 8: one duration grammar for every program (common/duration.hpp).
#include <doctest/doctest.h>

#include "common/duration.hpp"

using seppo::parse_duration;
using std::chrono::milliseconds;

TEST_CASE("durations: seconds by default, ms, s, m, min, h, fractions") {
  CHECK(parse_duration("2") == milliseconds(2000));
  CHECK(parse_duration("1.5") == milliseconds(1500));
  CHECK(parse_duration(".5") == milliseconds(500));
  CHECK(parse_duration("3.") == milliseconds(3000));
  CHECK(parse_duration("500ms") == milliseconds(500));
  CHECK(parse_duration("30s") == milliseconds(30000));
  CHECK(parse_duration("2m") == milliseconds(120000));
  CHECK(parse_duration("5min") == milliseconds(300000));
  CHECK(parse_duration("1h") == milliseconds(3600000));
  CHECK(parse_duration("0.3") == milliseconds(300));  // exact: no binary rounding up to 301
  CHECK(parse_duration("0") == milliseconds(0));
  CHECK(parse_duration("0ms") == milliseconds(0));
}

TEST_CASE("durations: a positive one rounds up to whole milliseconds, never to 0") {
  CHECK(parse_duration("0.0004") == milliseconds(1));
  CHECK(parse_duration("0.0000001") == milliseconds(1));
  CHECK(parse_duration("0.1ms") == milliseconds(1));
  CHECK(parse_duration("1.0001") == milliseconds(1001));
  CHECK(parse_duration("0.000") == milliseconds(0));
}

TEST_CASE("durations: anything outside the grammar is refused") {
  for (const char* bad : {"", "0x10", "1e3", "-1", "+1", "inf", "nan", " 1", "1 ", "1s ", "s", ".",
                          "1sec", "2d", "1.5.2", "1,5", "10000000000000", "400000000h"}) {
    CAPTURE(bad);
    CHECK_FALSE(parse_duration(bad).has_value());
  }
}
