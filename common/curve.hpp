// CurveZMQ keys on disk: making them, reading them, and the lists of keys a broker admits.
//
// Formats (docs/programs.md, "Key files"): a key is its 40-character Z85 text. Every file is
// lines: blank lines and lines starting with '#' are skipped; any other line starts with a key,
// and the rest of the line is a label.
//   NAME.key         public key: one key line, "KEY NAME". Safe to share.
//   NAME.key_secret  secret key: one key line; mode 0600, refused when others may read it.
//   authorized list  any number of key lines: a file, or a folder whose *.key files are read.
// '#' is a Z85 digit, but no key starts with it: the first digit of each 5-digit group is at
// most '%', or the group would overflow its 32 bits. So "#KEY" is a key commented out.
#pragma once

#include <cstddef>
#include <string>
#include <string_view>
#include <vector>

namespace seppo::curve {

inline constexpr std::size_t kKeyBytes = 32;
inline constexpr std::size_t kZ85Chars = 40;
inline constexpr const char* kSecretKeyVariable = "SEPPO_CURVE_SECRET_KEY";
inline constexpr const char* kServerKeyVariable = "SEPPO_CURVE_SERVER_KEY";
// The ZAP domain the broker sets on its socket (RFC 27); its handler answers no other.
inline constexpr const char* kZapDomain = "seppo";

// Whether this libzmq was built with CURVE (Debian's is, with libsodium).
bool available();

struct KeyPair {
  std::string public_key;  // Z85, 40 characters
  std::string secret_key;  // Z85, 40 characters
};

// A fresh key pair. Throws std::runtime_error when CURVE is not available.
KeyPair generate();

// True when `text` is exactly 40 Z85 characters that decode to a 32-byte key.
bool is_key(std::string_view text);
// The 32 bytes of a Z85 key (is_key must hold), and the Z85 text of 32 bytes.
std::string decode(std::string_view z85);
std::string encode(std::string_view bytes);
// The public key of a secret key, both Z85.
std::string public_of(const std::string& secret_key);

// What logs show of a key: its first 8 characters. They are also the start of the key's line
// in a list, so `grep ^FINGERPRINT` finds it.
std::string fingerprint(std::string_view z85);

// Reads NAME.key_secret: the pair, with the public key derived from the secret one. Throws
// std::runtime_error naming the file when it is missing, unreadable, malformed, or readable
// by group or others.
KeyPair read_secret_key_file(const std::string& path);
// Reads NAME.key: the public key. Throws std::runtime_error as above, and when someone other
// than this user or root could change the file or its folder (group- or world-writable, or
// another owner): the same holds for secret keys and authorised lists.
std::string read_public_key_file(const std::string& path);

// Writes NAME.key_secret (mode 0600) and NAME.key for `base` = "dir/NAME". Refuses (throws)
// when either exists, unless `force`. Returns the two paths written.
std::vector<std::string> write_key_files(const std::string& base, const KeyPair& keys, bool force);

struct AuthorizedKey {
  std::string key;     // Z85
  std::string label;   // the rest of its line, or the file name for a folder's key file
  std::string origin;  // "path:line", for messages
};
// Reads an authorized list: a file of key lines, or a folder whose *.key files are read (in
// name order; other files are ignored). Throws std::runtime_error with "path:line: ..." on a
// line that is neither a key nor a comment, or when the path cannot be read.
std::vector<AuthorizedKey> read_authorized(const std::string& file_or_folder);

}  // namespace seppo::curve
