// Where a local cluster looks for the module of "mod.fn": SEPPO_MODULE_PATH in order, module
// folders, then the installed folder, and errors that say where it looked.
#include <doctest/doctest.h>

#include <unistd.h>

#include <filesystem>
#include <fstream>

#include "localcluster/module_path.hpp"

namespace fs = std::filesystem;
using namespace seppo;
using namespace seppo::local;

namespace {

// A temporary folder of empty files standing in for modules: resolution only looks at names.
class Tree {
 public:
  Tree() {
    std::string pattern = (fs::temp_directory_path() / "seppo-module-path-XXXXXX").string();
    REQUIRE(::mkdtemp(pattern.data()) != nullptr);
    root_ = pattern;
  }
  ~Tree() {
    std::error_code ignored;
    fs::remove_all(root_, ignored);
  }
  std::string add(const std::string& relative) {
    const fs::path path = root_ / relative;
    fs::create_directories(path.parent_path());
    std::ofstream(path) << "";
    return path.string();
  }
  std::string folder(const std::string& relative) const {
    fs::create_directories(root_ / relative);
    return (root_ / relative).string();
  }

 private:
  fs::path root_;
};

}  // namespace

TEST_CASE("a function name splits into its module and function at the last dot") {
  CHECK(split_function("example_module.square") ==
        std::pair<std::string, std::string>{"example_module", "square"});
  CHECK(split_function("a.b.fn") == std::pair<std::string, std::string>{"a.b", "fn"});
}

TEST_CASE("a name that is not module.function, or whose module is a path, is an unknown function") {
  for (const char* bad :
       {"square", ".square", "mod.", "", "../evil.fn", "dir/mod.fn", ".hidden.fn"}) {
    CAPTURE(bad);
    CHECK_THROWS_AS(split_function(bad), UnknownFunctionError);
  }
}

TEST_CASE(
    "SEPPO_MODULE_PATH's folders come in order, empty entries skipped, installed folder last") {
  CHECK(module_folders("/a:/b::/c:", "/installed") ==
        std::vector<std::string>{"/a", "/b", "/c", "/installed"});
  CHECK(module_folders("", "/installed") == std::vector<std::string>{"/installed"});
  CHECK(module_folders(":", "").empty());
}

TEST_CASE("the first folder holding the module wins, as with PYTHONPATH") {
  Tree tree;
  const std::string first = tree.add("one/libmod.so");
  tree.add("two/libmod.so");
  CHECK(find_module("mod", {tree.folder("empty"), tree.folder("one"), tree.folder("two")}) ==
        first);
  CHECK(find_module("mod", {tree.folder("two"), tree.folder("one")}) != first);
}

TEST_CASE("a module in a folder of its own name is found, as meson builds one") {
  Tree tree;
  const std::string nested = tree.add("build/mod/libmod.so");
  CHECK(find_module("mod", {tree.folder("build")}) == nested);
  // Directly in the folder comes before the folder's subfolder.
  const std::string flat = tree.add("build/libmod.so");
  CHECK(find_module("mod", {tree.folder("build")}) == flat);
}

TEST_CASE("a relative folder resolves to an absolute module path") {
  Tree tree;
  tree.add("rel/libmod.so");
  const fs::path before = fs::current_path();
  fs::current_path(tree.folder(""));
  const std::optional<std::string> found = find_module("mod", {"rel"});
  fs::current_path(before);
  REQUIRE(found);
  CHECK(fs::path(*found).is_absolute());
  CHECK(fs::exists(*found));
}

TEST_CASE("a folder, or a file of another name, is not a module") {
  Tree tree;
  tree.folder("dir/libmod.so");  // a folder with the module's file name
  tree.add("dir/libmodule.so");
  CHECK_FALSE(find_module("mod", {tree.folder("dir")}));
}

TEST_CASE("a module found nowhere is an unknown function naming every folder searched") {
  const UnknownFunctionError e = module_not_found("mod.fn", "mod", {"/x", "/y"});
  CHECK(e.function() == "mod.fn");
  const std::string text = e.what();
  CHECK(text.find("libmod.so") != std::string::npos);
  CHECK(text.find("/x, /y") != std::string::npos);
  CHECK(text.find("SEPPO_MODULE_PATH") != std::string::npos);
}

TEST_CASE("the installed module folder is the one meson installs modules in") {
  const std::string folder = installed_module_folder();
  CHECK(fs::path(folder).is_absolute());
  CHECK(folder.ends_with("/seppo/modules"));
}
