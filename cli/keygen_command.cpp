#include "cli/keygen_command.hpp"

#include <sys/stat.h>

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <stdexcept>
#include <vector>

#include "common/curve.hpp"

namespace seppo::cli {
namespace {

namespace fs = std::filesystem;

// Makes the folders of `path` that are missing, outermost first, each mode 0700 whatever the
// umask (a folder made here holds a secret key, and its parents are made for it). Returns them.
std::vector<std::string> make_private_folders(const fs::path& folder) {
  std::vector<fs::path> missing;
  std::error_code error;
  for (fs::path p = folder; !p.empty() && !fs::exists(fs::symlink_status(p, error));
       p = p.parent_path()) {
    missing.push_back(p);
    if (p == p.parent_path()) break;
  }
  std::vector<std::string> made;
  for (auto it = missing.rbegin(); it != missing.rend(); ++it) {
    if (::mkdir(it->c_str(), 0700) != 0 && errno != EEXIST) {
      throw std::runtime_error("cannot make folder " + it->string() + ": " + std::strerror(errno));
    }
    if (::chmod(it->c_str(), 0700) != 0) {
      throw std::runtime_error("cannot set mode 0700 on " + it->string() + ": " +
                               std::strerror(errno));
    }
    made.push_back(it->string());
  }
  return made;
}

}  // namespace

void run_keygen(const std::string& name, bool force, std::FILE* out) {
  const fs::path folder = fs::path(name).parent_path();
  std::vector<std::string> made;
  if (!folder.empty()) made = make_private_folders(folder);
  const curve::KeyPair keys = curve::generate();
  const auto paths = curve::write_key_files(name, keys, force);
  for (const std::string& f : made) std::fprintf(out, "made folder %s (mode 0700)\n", f.c_str());
  std::fprintf(out, "wrote %s (secret: keep it private) and %s (public: share it)\n",
               paths[0].c_str(), paths[1].c_str());
  std::fprintf(out, "public key %s, fingerprint %s\n", keys.public_key.c_str(),
               curve::fingerprint(keys.public_key).c_str());
}

}  // namespace seppo::cli
