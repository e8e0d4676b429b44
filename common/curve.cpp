#include "common/curve.hpp"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <ctime>
#include <filesystem>
#include <fstream>
#include <stdexcept>

#include <zmq.h>

namespace seppo::curve {
namespace {

namespace fs = std::filesystem;

constexpr std::string_view kZ85Alphabet =
    "0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ.-:+=^!/*?&<>()[]{}@%$#";

std::string_view trim(std::string_view s) {
  const auto first = s.find_first_not_of(" \t\r");
  if (first == std::string_view::npos) return {};
  const auto last = s.find_last_not_of(" \t\r");
  return s.substr(first, last - first + 1);
}

// One line of a key file: a key (with its label), nothing (blank or comment), or an error.
enum class LineKind { Key, Nothing, Bad };
LineKind parse_line(std::string_view raw, std::string& key, std::string& label) {
  const std::string_view line = trim(raw);
  if (line.empty() || line.front() == '#') return LineKind::Nothing;
  const auto space = line.find_first_of(" \t");
  const std::string_view word = line.substr(0, space);
  if (is_key(word)) {
    key = word;
    label = space == std::string_view::npos ? std::string() : std::string(trim(line.substr(space)));
    return LineKind::Key;
  }
  return LineKind::Bad;
}

std::string octal(mode_t mode) {
  char text[8];
  std::snprintf(text, sizeof text, "%04o", static_cast<unsigned>(mode & 07777));
  return text;
}

// Files owned by real root show as the overflow uid (nobody) inside a user namespace that
// does not map root, as under systemd's PrivateUsers=yes: they are root's, and trusted.
bool is_unmapped_root(uid_t owner) {
  std::ifstream overflow("/proc/sys/kernel/overflowuid");
  uid_t overflow_uid = 65534;
  overflow >> overflow_uid;
  if (owner != overflow_uid) return false;
  std::ifstream map("/proc/self/uid_map");
  unsigned long inside = 0, outside = 0, count = 0;
  while (map >> inside >> outside >> count) {
    if (outside == 0 && count > 0) return false;
  }
  return true;
}

bool trusted_owner(uid_t owner) {
  return owner == ::geteuid() || owner == 0 || is_unmapped_root(owner);
}

// Refuses a file (or folder) that someone other than this user and root could change: a key
// or list swapped by another user would let them in, or put their broker in the middle. The
// folder holding it counts too, unless sticky (as /tmp), where others cannot replace it.
void check_not_writable_by_others(const std::string& path, const std::string& what) {
  struct stat st {};
  if (::stat(path.c_str(), &st) != 0) {
    throw std::runtime_error("cannot read key file " + path + ": " + std::strerror(errno));
  }
  if (!trusted_owner(st.st_uid)) {
    throw std::runtime_error(what + " " + path + " belongs to uid " + std::to_string(st.st_uid) +
                             ", so that user could change it; only you or root may own it: run "
                             "chown " +
                             std::to_string(::geteuid()) + " " + path);
  }
  if ((st.st_mode & 022) != 0) {
    throw std::runtime_error(what + " " + path + " has mode " + octal(st.st_mode) +
                             ": others could change it; run chmod go-w " + path);
  }
  const std::string folder = fs::absolute(fs::path(path)).parent_path().string();
  struct stat dir {};
  if (::stat(folder.c_str(), &dir) != 0) return;
  const bool sticky = (dir.st_mode & S_ISVTX) != 0;
  if ((!trusted_owner(dir.st_uid) || (dir.st_mode & 022) != 0) && !sticky) {
    throw std::runtime_error("the folder " + folder + " of " + what + " " + path + " " +
                             (trusted_owner(dir.st_uid)
                                  ? "has mode " + octal(dir.st_mode)
                                  : "belongs to uid " + std::to_string(dir.st_uid)) +
                             ": others could replace the file; run chmod go-w " + folder +
                             (trusted_owner(dir.st_uid) ? "" : " and chown it to you or root"));
  }
}

std::string read_whole(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    throw std::runtime_error("cannot read key file " + path + ": " + std::strerror(errno));
  }
  std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  if (text.size() > (1u << 20)) throw std::runtime_error(path + ": too large for a key file");
  return text;
}

// The key lines of a file, each with its line number.
struct Found {
  std::string key, label;
  int line = 0;
};
std::vector<Found> key_lines(const std::string& path, const std::string& text) {
  std::vector<Found> out;
  std::size_t start = 0;
  int number = 0;
  while (start < text.size()) {
    std::size_t end = text.find('\n', start);
    if (end == std::string::npos) end = text.size();
    ++number;
    Found f;
    f.line = number;
    switch (parse_line(std::string_view(text).substr(start, end - start), f.key, f.label)) {
      case LineKind::Key:
        out.push_back(std::move(f));
        break;
      case LineKind::Nothing:
        break;
      case LineKind::Bad:
        throw std::runtime_error(path + ":" + std::to_string(number) +
                                 ": expected a 40-character Z85 key or a # comment");
    }
    start = end + 1;
  }
  return out;
}

std::string only_key(const std::string& path, const std::string& what) {
  const std::vector<Found> keys = key_lines(path, read_whole(path));
  if (keys.size() != 1) {
    throw std::runtime_error(path + ": expected one " + what + ", found " +
                             std::to_string(keys.size()));
  }
  return keys.front().key;
}

std::string today() {
  const std::time_t now = std::time(nullptr);
  std::tm tm{};
  ::gmtime_r(&now, &tm);
  char text[32];
  std::strftime(text, sizeof text, "%Y-%m-%d", &tm);
  return text;
}

void write_file(const std::string& path, const std::string& text, mode_t mode, bool force) {
  const int flags = O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | (force ? 0 : O_EXCL);
  const int fd = ::open(path.c_str(), flags, mode);
  if (fd < 0) {
    throw std::runtime_error(errno == EEXIST
                                 ? path + " exists (use --force to replace it)"
                                 : "cannot write " + path + ": " + std::strerror(errno));
  }
  // An existing file keeps its mode through O_TRUNC: set it, so a secret is never left open.
  bool ok = ::fchmod(fd, mode) == 0;
  std::size_t done = 0;
  while (ok && done < text.size()) {
    const ssize_t n = ::write(fd, text.data() + done, text.size() - done);
    if (n < 0 && errno == EINTR) continue;
    ok = n > 0;
    if (ok) done += static_cast<std::size_t>(n);
  }
  const int saved = errno;
  ok = ::close(fd) == 0 && ok;
  if (!ok) throw std::runtime_error("cannot write " + path + ": " + std::strerror(saved));
}

}  // namespace

bool available() {
  return zmq_has("curve") != 0;
}

KeyPair generate() {
  if (!available()) throw std::runtime_error("this libzmq was built without CURVE support");
  char public_key[kZ85Chars + 1];
  char secret_key[kZ85Chars + 1];
  if (zmq_curve_keypair(public_key, secret_key) != 0) {
    throw std::runtime_error(std::string("zmq_curve_keypair: ") + zmq_strerror(zmq_errno()));
  }
  return KeyPair{public_key, secret_key};
}

bool is_key(std::string_view text) {
  if (text.size() != kZ85Chars) return false;
  if (!std::all_of(text.begin(), text.end(),
                   [](char c) { return kZ85Alphabet.find(c) != std::string_view::npos; })) {
    return false;
  }
  char z85[kZ85Chars + 1];
  std::memcpy(z85, text.data(), kZ85Chars);
  z85[kZ85Chars] = '\0';
  std::uint8_t bytes[kKeyBytes];
  return zmq_z85_decode(bytes, z85) != nullptr;
}

std::string decode(std::string_view z85) {
  if (!is_key(z85)) throw std::invalid_argument("not a Z85 key");
  char text[kZ85Chars + 1];
  std::memcpy(text, z85.data(), kZ85Chars);
  text[kZ85Chars] = '\0';
  std::uint8_t bytes[kKeyBytes];
  zmq_z85_decode(bytes, text);
  return std::string(reinterpret_cast<const char*>(bytes), kKeyBytes);
}

std::string encode(std::string_view bytes) {
  if (bytes.size() != kKeyBytes) throw std::invalid_argument("a key has 32 bytes");
  char text[kZ85Chars + 1];
  zmq_z85_encode(text, reinterpret_cast<const std::uint8_t*>(bytes.data()), kKeyBytes);
  return text;
}

std::string public_of(const std::string& secret_key) {
  if (!is_key(secret_key)) throw std::invalid_argument("not a Z85 key");
  char public_key[kZ85Chars + 1];
  if (zmq_curve_public(public_key, secret_key.c_str()) != 0) {
    throw std::runtime_error(std::string("zmq_curve_public: ") + zmq_strerror(zmq_errno()));
  }
  return public_key;
}

std::string fingerprint(std::string_view z85) {
  return std::string(z85.substr(0, 8));
}

KeyPair read_secret_key_file(const std::string& path) {
  struct stat st {};
  if (::stat(path.c_str(), &st) != 0) {
    throw std::runtime_error("cannot read secret key file " + path + ": " + std::strerror(errno));
  }
  if ((st.st_mode & 077) != 0) {
    throw std::runtime_error("secret key file " + path + " has mode " + octal(st.st_mode) +
                             ": others could read it; run chmod 600 " + path);
  }
  check_not_writable_by_others(path, "secret key file");
  KeyPair keys;
  keys.secret_key = only_key(path, "secret key");
  keys.public_key = public_of(keys.secret_key);
  return keys;
}

std::string read_public_key_file(const std::string& path) {
  // The broker's public key, for a client or worker: whoever swaps it can sit in the middle.
  check_not_writable_by_others(path, "public key file");
  return only_key(path, "public key");
}

std::vector<std::string> write_key_files(const std::string& base, const KeyPair& keys, bool force) {
  const std::string secret_path = base + ".key_secret";
  const std::string public_path = base + ".key";
  const std::string name = fs::path(base).filename().string();
  if (!force) {
    for (const std::string& p : {secret_path, public_path}) {
      if (fs::exists(fs::symlink_status(p))) {
        throw std::runtime_error(p + " exists (use --force to replace it)");
      }
    }
  }
  const std::string made = "made by seppo keygen on " + today();
  write_file(secret_path,
             "# seppo CurveZMQ SECRET key of " + name + ", " + made +
                 ".\n"
                 "# Keep it private (mode 0600): whoever holds it is " +
                 name +
                 " to the broker.\n"
                 "# Its public key, in " +
                 name + ".key: " + keys.public_key + "\n" + keys.secret_key + "\n",
             0600, force);
  write_file(
      public_path,
      "# seppo CurveZMQ public key of " + name + ", " + made +
          ".\n"
          "# Safe to share: the broker's operator lists it in --authorized-workers or\n"
          "# --authorized-clients; a broker's public key goes to its workers and clients.\n" +
          keys.public_key + " " + name + "\n",
      0644, force);
  return {secret_path, public_path};
}

std::vector<AuthorizedKey> read_authorized(const std::string& file_or_folder) {
  std::vector<std::string> files;
  std::error_code error;
  // Whoever can add a line or a file here is let in: the list, its folder and every key file
  // must be changeable by this user or root alone.
  check_not_writable_by_others(file_or_folder, "authorised key list");
  if (fs::is_directory(file_or_folder, error)) {
    for (const fs::directory_entry& entry : fs::directory_iterator(file_or_folder, error)) {
      if (entry.path().extension() == ".key" && entry.is_regular_file(error)) {
        files.push_back(entry.path().string());
      }
    }
    if (error) {
      throw std::runtime_error("cannot read folder " + file_or_folder + ": " + error.message());
    }
    std::sort(files.begin(), files.end());
  } else {
    files.push_back(file_or_folder);
  }
  const bool folder = files.empty() || files.front() != file_or_folder;
  std::vector<AuthorizedKey> out;
  for (const std::string& path : files) {
    if (folder) check_not_writable_by_others(path, "authorised key file");
    for (Found& f : key_lines(path, read_whole(path))) {
      AuthorizedKey k;
      k.key = std::move(f.key);
      k.label = !f.label.empty() ? std::move(f.label)
                : folder         ? fs::path(path).stem().string()
                                 : std::string();
      k.origin = path + ":" + std::to_string(f.line);
      out.push_back(std::move(k));
    }
  }
  return out;
}

}  // namespace seppo::curve
