// The client program of the 2008 original, in C++. Start a broker and workers first (see
// examples/README.md), then run: hello_world [BROKER_ENDPOINT]
#include <iostream>
#include <string>
#include <vector>

#include <seppo/seppo.hpp>

int main(int argc, char** argv) {
  try {
    seppo::Client client{argc > 1 ? argv[1] : seppo::default_endpoint()};
    const std::vector<std::string> results = client.map_parallel<std::string>(
        "example_module.hello_world", std::vector<double>{1, 2, 3, 4, 5});
    for (const std::string& result : results) std::cout << result << "\n";
  } catch (const seppo::Error& e) {
    std::cerr << "hello_world: " << e.what() << "\n";
    return 1;
  }
}
