#define DOCTEST_CONFIG_IMPLEMENT
#include <doctest/doctest.h>

#include <cstdlib>

int main(int argc, char** argv) {
  // The tests choose their brokers and keys themselves: a developer's own settings must not
  // leak into them, nor into the programs they start.
  for (const char* name : {"SEPPO_BROKER", "SEPPO_CURVE_SECRET_KEY", "SEPPO_CURVE_SERVER_KEY"}) {
    ::unsetenv(name);
  }
  return doctest::Context(argc, argv).run();
}
