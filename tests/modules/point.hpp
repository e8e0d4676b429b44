// The struct test_module.mirror takes and returns, shared by the module and the tests that
// call it so that both sides agree on its msgpack form.
#pragma once

#include <string>

#include "seppo/msgpack.hpp"

struct Point {
  double x = 0;
  double y = 0;
  std::string label;
  MSGPACK_DEFINE_MAP(x, y, label);
};
