// The client program of the 2008 original, in C++: map example_module.hello_world over 1..5.
//
//   SEPPO_MODULE_PATH=build/examples build/examples/hello_world           # on this machine
//   SEPPO_BROKER=tcp://head:5555 build/examples/hello_world               # on a cluster
//
// With no broker configured it starts worker processes of its own, as multiprocessing.Pool
// would; with SEPPO_BROKER set, the same program runs on that broker's workers.
#include <iostream>
#include <string>
#include <vector>

#include <seppo/seppo.hpp>

int main() {
  try {
    const std::vector<double> inputs{1, 2, 3, 4, 5};
    for (const std::string& line :
         seppo::map_parallel<std::string>("example_module.hello_world", inputs)) {
      std::cout << line << "\n";
    }
  } catch (const seppo::Error& e) {
    std::cerr << "hello_world: " << e.what() << "\n";
    return 1;
  }
}
