// Keys, key lists, exposure rules and the ZAP handler, in one process (the handler over real
// loopback TCP, since CurveZMQ does not run over inproc).
#include <doctest/doctest.h>

#include <sys/stat.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>

#include <zmq.hpp>
#include <zmq_addon.hpp>

#include "broker/auth.hpp"
#include "common/curve.hpp"
#include "common/endpoint.hpp"
#include "common/log.hpp"
#include "common/monitor.hpp"

using namespace seppo;
namespace fs = std::filesystem;

namespace {

struct TempDir {
  fs::path path;
  TempDir() {
    std::string pattern = (fs::temp_directory_path() / "seppo-unit-XXXXXX").string();
    REQUIRE(::mkdtemp(pattern.data()) != nullptr);
    path = pattern;
  }
  ~TempDir() {
    std::error_code ignored;
    fs::remove_all(path, ignored);
  }
  std::string operator/(const std::string& name) const { return (path / name).string(); }
};

void write(const std::string& path, const std::string& text) {
  std::ofstream(path) << text;
}

mode_t mode_of(const std::string& path) {
  struct stat st {};
  REQUIRE(::stat(path.c_str(), &st) == 0);
  return st.st_mode & 07777;
}

std::string error_of(const std::function<void()>& f) {
  try {
    f();
  } catch (const std::exception& e) {
    return e.what();
  }
  return "";
}

}  // namespace

TEST_CASE("only loopback, ipc and inproc endpoints count as local") {
  for (const char* local : {"tcp://127.0.0.1:5555", "tcp://127.0.0.1:*", "tcp://127.1.2.3:80",
                            "tcp://localhost:5555", "tcp://[::1]:5555", "ipc:///run/seppo/broker",
                            "ipc://@abstract", "inproc://x", "tcp://10.0.0.1;127.0.0.1:5555"}) {
    CHECK_MESSAGE(is_local_endpoint(local), local);
  }
  for (const char* remote :
       {"tcp://0.0.0.0:5555", "tcp://*:5555", "tcp://10.0.0.1:5555", "tcp://head.example.org:5555",
        "tcp://127.example.org:5555", "tcp://127.0.0.1.nip.io:5555", "tcp://eth0:5555",
        "tcp://[::]:5555", "tcp://127.0.0.1;10.0.0.1:5555", "tcp://127.0.0.1", "udp://127.0.0.1:5",
        "pgm://127.0.0.1;239.192.1.1:5555", "ws://127.0.0.1:5555"}) {
    CHECK_MESSAGE(!is_local_endpoint(remote), remote);
  }
}

TEST_CASE("a wildcard bound endpoint is written with a host others can connect to") {
  CHECK(connectable_endpoint("tcp://0.0.0.0:41234", "node7") == "tcp://node7:41234");
  CHECK(connectable_endpoint("tcp://[::]:41234", "node7") == "tcp://node7:41234");
  CHECK(connectable_endpoint("tcp://10.1.2.3:5555", "node7") == "tcp://10.1.2.3:5555");
  CHECK(connectable_endpoint("ipc:///run/seppo/broker", "node7") == "ipc:///run/seppo/broker");
}

TEST_CASE("keygen writes a secret file only its owner may read, and a public one that reads back") {
  TempDir dir;
  const curve::KeyPair keys = curve::generate();
  CHECK(curve::is_key(keys.public_key));
  CHECK(curve::public_of(keys.secret_key) == keys.public_key);
  const auto paths = curve::write_key_files(dir / "alice", keys, false);
  REQUIRE(paths == std::vector<std::string>{dir / "alice.key_secret", dir / "alice.key"});
  CHECK(mode_of(paths[0]) == 0600);
  CHECK(mode_of(paths[1]) == 0644);
  const curve::KeyPair read = curve::read_secret_key_file(paths[0]);
  CHECK(read.secret_key == keys.secret_key);
  CHECK(read.public_key == keys.public_key);
  CHECK(curve::read_public_key_file(paths[1]) == keys.public_key);
  // The secret never appears in the public file.
  std::ifstream in(paths[1]);
  const std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  CHECK(text.find(keys.secret_key) == std::string::npos);

  SUBCASE("existing files are kept unless forced") {
    const curve::KeyPair other = curve::generate();
    CHECK(error_of([&] { curve::write_key_files(dir / "alice", other, false); }) ==
          dir / "alice.key_secret" + " exists (use --force to replace it)");
    CHECK(curve::read_public_key_file(paths[1]) == keys.public_key);
    ::chmod(paths[0].c_str(), 0644);
    curve::write_key_files(dir / "alice", other, true);
    CHECK(curve::read_public_key_file(paths[1]) == other.public_key);
    CHECK(mode_of(paths[0]) == 0600);
  }
  SUBCASE("a secret key file others may read is refused") {
    ::chmod(paths[0].c_str(), 0640);
    CHECK(error_of([&] { curve::read_secret_key_file(paths[0]); }) ==
          "secret key file " + paths[0] + " has mode 0640: others could read it; run chmod 600 " +
              paths[0]);
  }
}

TEST_CASE(
    "an authorized list has keys with labels, comments and blank lines; errors name the line") {
  TempDir dir;
  const curve::KeyPair a = curve::generate(), b = curve::generate();
  // '#' is a Z85 digit, but too large to start a 5-character group: no key starts with it.
  CHECK(!curve::is_key("#" + a.public_key.substr(1)));
  write(dir / "list", "# workers of the physics group\n\n" + a.public_key + " node1\n  " +
                          b.public_key + "\t node2 (spare)  \n" + "#" + b.public_key +
                          " disabled\n");
  const auto keys = curve::read_authorized(dir / "list");
  REQUIRE(keys.size() == 2);
  CHECK(keys[0].key == a.public_key);
  CHECK(keys[0].label == "node1");
  CHECK(keys[0].origin == dir / "list" + ":3");
  CHECK(keys[1].key == b.public_key);
  CHECK(keys[1].label == "node2 (spare)");

  write(dir / "bad", a.public_key + "\nssh-ed25519 AAAA alice@host\n");
  CHECK(error_of([&] { curve::read_authorized(dir / "bad"); }) ==
        dir / "bad" + ":2: expected a 40-character Z85 key or a # comment");
  CHECK(error_of([&] {
          curve::read_authorized(dir / "missing");
        }).rfind("cannot read key file " + dir / "missing", 0) == 0);
}

TEST_CASE("an authorized folder is the *.key files in it, labelled by name") {
  TempDir dir;
  fs::create_directory(dir / "workers");
  const curve::KeyPair a = curve::generate(), b = curve::generate();
  curve::write_key_files(dir / "workers/node2", b, false);  // its .key_secret is ignored
  write(dir / "workers/node1.key", a.public_key + "\n");
  write(dir / "workers/README", "not a key\n");
  const auto keys = curve::read_authorized(dir / "workers");
  REQUIRE(keys.size() == 2);
  CHECK(keys[0].key == a.public_key);
  CHECK(keys[0].label == "node1");
  CHECK(keys[1].key == b.public_key);
  CHECK(keys[1].label == "node2");  // keygen's own label
}

TEST_CASE("key lists give each key its role; a key in both lists may do both") {
  using broker::Role;
  TempDir dir;
  const curve::KeyPair w = curve::generate(), c = curve::generate(), both = curve::generate();
  write(dir / "workers", w.public_key + " w\n" + both.public_key + " both\n");
  write(dir / "clients", c.public_key + " c\n" + both.public_key + " both\n");
  const auto lists = broker::KeyLists::load({dir / "workers", dir / "clients"});
  CHECK(lists->role_of(w.public_key) == Role::Worker);
  CHECK(lists->role_of(c.public_key) == Role::Client);
  CHECK(lists->role_of(both.public_key) == Role::Any);
  CHECK(lists->role_of(curve::generate().public_key) == std::nullopt);
  CHECK(lists->label_of(c.public_key) == "c");
  CHECK(lists->summary() == "2 worker keys, 2 client keys");
  REQUIRE(lists->warnings().size() == 1);
  CHECK(lists->warnings()[0].find("both as a worker and as a client") != std::string::npos);
}

TEST_CASE("a connection keeps only the rights it was admitted with and the lists still grant") {
  using broker::Role;
  const std::string key(40, 'k');
  const std::string user = broker::user_id(Role::Worker, key);
  CHECK(user == "worker:" + key);
  const auto parsed = broker::parse_user_id(user);
  REQUIRE(parsed);
  CHECK(parsed->role == Role::Worker);
  CHECK(parsed->key == key);
  CHECK(!broker::parse_user_id("worker"));
  CHECK(!broker::parse_user_id("root:" + key));
  CHECK(!broker::parse_user_id("worker:short"));
  CHECK(broker::still_permitted(Role::Worker, Role::Worker) == Role::Worker);
  CHECK(broker::still_permitted(Role::Worker, Role::Any) == Role::Worker);
  CHECK(broker::still_permitted(Role::Any, Role::Client) == Role::Client);
  CHECK(broker::still_permitted(Role::Worker, Role::Client) == std::nullopt);
  CHECK(broker::still_permitted(Role::Client, std::nullopt) == std::nullopt);
}

namespace {

// A CURVE ROUTER guarded by an Authenticator, and DEALERs that knock on it.
struct ZapRig {
  TempDir dir;
  curve::KeyPair server = curve::generate();
  curve::KeyPair worker = curve::generate(), client = curve::generate();
  zmq::context_t context;
  std::unique_ptr<broker::Authenticator> auth;
  zmq::socket_t router{context, zmq::socket_type::router};
  std::string endpoint;
  std::vector<std::string> logged;
  std::mutex log_mutex;

  ZapRig() {
    write(dir / "workers", worker.public_key + " w\n");
    write(dir / "clients", client.public_key + " c\n");
    const broker::AuthConfig config{dir / "workers", dir / "clients"};
    auth =
        std::make_unique<broker::Authenticator>(context, config, broker::KeyLists::load(config),
                                                [this](log::Level, const std::string& text) {
                                                  std::lock_guard<std::mutex> lock(log_mutex);
                                                  logged.push_back(text);
                                                });
    router.set(zmq::sockopt::curve_server, 1);
    router.set(zmq::sockopt::curve_secretkey, zmq::buffer(curve::decode(server.secret_key)));
    router.set(zmq::sockopt::zap_domain, curve::kZapDomain);
    router.set(zmq::sockopt::linger, 0);
    router.bind("tcp://127.0.0.1:*");
    endpoint = router.get(zmq::sockopt::last_endpoint);
  }
  ~ZapRig() {
    router.close();
    auth.reset();
  }

  // Connects with `keys`, sends one frame, and says what happened: the User-Id the router saw,
  // or "refused" when the handshake was refused.
  std::string knock(const curve::KeyPair& keys) {
    zmq::socket_t dealer(context, zmq::socket_type::dealer);
    dealer.set(zmq::sockopt::linger, 0);
    dealer.set(zmq::sockopt::curve_serverkey, zmq::buffer(curve::decode(server.public_key)));
    dealer.set(zmq::sockopt::curve_publickey, zmq::buffer(curve::decode(keys.public_key)));
    dealer.set(zmq::sockopt::curve_secretkey, zmq::buffer(curve::decode(keys.secret_key)));
    std::string outcome = "timeout";
    {
      HandshakeMonitor monitor(context, dealer);
      dealer.connect(endpoint);
      dealer.send(zmq::str_buffer("hello"), zmq::send_flags::dontwait);
      const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
      while (outcome == "timeout" && std::chrono::steady_clock::now() < deadline) {
        std::vector<zmq::pollitem_t> items = {{router.handle(), 0, ZMQ_POLLIN, 0},
                                              monitor.pollitem()};
        zmq::poll(items, std::chrono::milliseconds(100));
        while (auto event = monitor.take()) {
          if (event->outcome == HandshakeMonitor::Outcome::Refused) outcome = "refused";
        }
        std::vector<zmq::message_t> frames;
        if (zmq::recv_multipart(router, std::back_inserter(frames), zmq::recv_flags::dontwait)) {
          outcome = frames.at(1).gets("User-Id");
        }
      }
    }
    return outcome;
  }

  bool logged_containing(const std::string& text) {
    std::lock_guard<std::mutex> lock(log_mutex);
    return std::any_of(logged.begin(), logged.end(),
                       [&](const std::string& l) { return l.find(text) != std::string::npos; });
  }
};

}  // namespace

TEST_CASE("the ZAP handler admits listed keys with their role and refuses others, logging why") {
  ZapRig rig;
  CHECK(rig.knock(rig.worker) == "worker:" + rig.worker.public_key);
  CHECK(rig.knock(rig.client) == "client:" + rig.client.public_key);
  const curve::KeyPair stranger = curve::generate();
  CHECK(rig.knock(stranger) == "refused");
  CHECK(rig.logged_containing("admitted worker key " + curve::fingerprint(rig.worker.public_key) +
                              " (w) from 127.0.0.1"));
  CHECK(rig.logged_containing("refused a connection from 127.0.0.1: key " +
                              curve::fingerprint(stranger.public_key) + " is not authorised"));
}

TEST_CASE(
    "reloading the lists refuses a removed key's new connections; a bad list changes nothing") {
  ZapRig rig;
  CHECK(rig.knock(rig.client) == "client:" + rig.client.public_key);
  write(rig.dir / "clients", "# nobody\n");
  broker::Authenticator::Reload reload = rig.auth->reload();
  CHECK(reload.ok);
  CHECK(reload.message == "1 worker key, 0 client keys");
  CHECK(rig.knock(rig.client) == "refused");

  write(rig.dir / "clients", rig.client.public_key + "\nnot a key\n");
  reload = rig.auth->reload();
  CHECK(!reload.ok);
  CHECK(reload.message ==
        rig.dir / "clients" + ":2: expected a 40-character Z85 key or a # comment");
  CHECK(rig.auth->lists()->summary() == "1 worker key, 0 client keys");
  CHECK(rig.knock(rig.client) == "refused");
}

TEST_CASE("log lines escape what a peer could use to forge a line or its priority") {
  // A function name sent as "\n<3>forged": one line, no newline, the prefix harmless mid-line.
  CHECK(log::escape("job for f\n<3>forged") == "job for f\\n<3>forged");
  CHECK(log::escape("a\r\tb") == "a\\r\\tb");
  CHECK(log::escape(std::string("nul\0x", 5)) == "nul\\x00x");
  CHECK(log::escape("esc\x1b[31mred\x7f") == "esc\\x1b[31mred\\x7f");
  CHECK(log::escape("back\\slash") == "back\\\\slash");
  // C1 controls (NEL) and the Unicode line separators end lines for some readers.
  CHECK(log::escape("a\xc2\x85"
                    "b") == "a\\u{0085}b");
  CHECK(log::escape("a\xe2\x80\xa8"
                    "b\xe2\x80\xa9") == "a\\u{2028}b\\u{2029}");
  // Bytes that are not UTF-8 (journald would store the line as a blob), overlong forms included.
  CHECK(log::escape("bad\xff\xc0\x8a") == "bad\\xff\\xc0\\x8a");
  CHECK(log::escape("cut\xe2\x82") == "cut\\xe2\\x82");
  // Valid text passes as it is.
  CHECK(log::escape("Jyväskylä 東京 🙂 <6> ok") == "Jyväskylä 東京 🙂 <6> ok");
  CHECK(log::escape("") == "");
}

TEST_CASE("key files and authorised lists that others could change are refused, naming the fix") {
  TempDir dir;
  const curve::KeyPair a = curve::generate();
  write(dir / "list", a.public_key + " alice\n");
  fs::permissions(dir / "list", fs::perms(0664));
  CHECK(error_of([&] { curve::read_authorized(dir / "list"); }) ==
        "authorised key list " + dir / "list" + " has mode 0664: others could change it; run " +
            "chmod go-w " + dir / "list");
  fs::permissions(dir / "list", fs::perms(0644));
  CHECK(curve::read_authorized(dir / "list").size() == 1);

  // A folder of keys: the folder, and each file in it.
  fs::create_directory(dir / "workers");
  curve::write_key_files(dir / "workers/node1", a, false);
  fs::permissions(dir / "workers/node1.key", fs::perms(0646));
  CHECK(error_of([&] {
          curve::read_authorized(dir / "workers");
        }).find("authorised key file " + dir / "workers/node1.key" + " has mode 0646") == 0);
  fs::permissions(dir / "workers/node1.key", fs::perms(0644));
  fs::permissions(dir / "workers", fs::perms(0777));
  CHECK(error_of([&] {
          curve::read_authorized(dir / "workers");
        }).find("has mode 0777: others could change it; run chmod go-w " + dir / "workers") !=
        std::string::npos);
  fs::permissions(dir / "workers", fs::perms(0755));
  CHECK(curve::read_authorized(dir / "workers").size() == 1);

  // The broker's public key, as a client reads it: whoever swaps it sits in the middle. The
  // folder counts too: others could replace the file in it.
  curve::write_key_files(dir / "broker", a, false);
  fs::permissions(dir.path, fs::perms(0777));
  CHECK(error_of([&] { curve::read_public_key_file(dir / "broker.key"); }) ==
        "the folder " + dir.path.string() + " of public key file " + dir / "broker.key" +
            " has mode 0777: others could replace the file; run chmod go-w " + dir.path.string());
  fs::permissions(dir.path, fs::perms(01777));  // sticky, as /tmp: others cannot replace it
  CHECK(curve::read_public_key_file(dir / "broker.key") == a.public_key);
  fs::permissions(dir.path, fs::perms(0700));

  if (::geteuid() != 0) {
    MESSAGE("skipping the owner checks: they need root to give a file to another user");
    return;
  }
  // Owned by another user (daemon, uid 1): that user could change it.
  REQUIRE(::chown((dir / "broker.key_secret").c_str(), 1, 1) == 0);
  CHECK(error_of([&] { curve::read_secret_key_file(dir / "broker.key_secret"); }) ==
        "secret key file " + dir / "broker.key_secret" + " belongs to uid 1, so that user could " +
            "change it; only you or root may own it: run chown 0 " + dir / "broker.key_secret");
}

TEST_CASE("an ipc peer's uid is read from its ZAP address; a TCP peer has none") {
  CHECK(broker::peer_uid("localhost:1000:100:4242") == 1000u);
  CHECK(broker::peer_uid("localhost:0:0:1") == 0u);
  CHECK_FALSE(broker::peer_uid("127.0.0.1"));
  CHECK_FALSE(broker::peer_uid("::1"));
  CHECK_FALSE(broker::peer_uid("2001:db8::1000:1000:5"));  // an IPv6 address is no uid
  CHECK_FALSE(broker::peer_uid("localhost:1000:100"));
  CHECK_FALSE(broker::peer_uid("localhost:1000:100:5:6"));
  CHECK_FALSE(broker::peer_uid("localhost:x:100:5"));
  CHECK_FALSE(broker::peer_uid("localhost:99999999999:0:5"));
  CHECK(broker::in_group(0, 0, 0));
  CHECK_FALSE(broker::in_group(65534, 65534, 0));
}

TEST_CASE("a routing id belongs to the user that first used it, until it is forgotten") {
  using namespace std::chrono_literals;
  const auto t0 = std::chrono::steady_clock::now();
  broker::RoutingBindings ids(10s);
  CHECK(ids.may_send("W1"));  // never heard: nobody's yet
  CHECK(ids.on_message("W1", "worker:AAAA", 7, t0));
  CHECK(ids.owner("W1") == "worker:AAAA");
  CHECK(ids.may_send("W1"));

  SUBCASE(
      "another user presenting the id is refused, and the id gets nothing until its owner "
      "speaks again") {
    CHECK_FALSE(ids.on_message("W1", "client:BBBB", 9, t0 + 1s));
    CHECK_FALSE(ids.may_send("W1"));
    CHECK(ids.owner("W1") == "worker:AAAA");
    CHECK(ids.on_message("W1", "worker:AAAA", 11, t0 + 2s));
    CHECK(ids.may_send("W1"));
  }
  SUBCASE("once the owner's connection closes, nothing goes to the id until the owner is back") {
    ids.on_closed(7);
    CHECK_FALSE(ids.may_send("W1"));
    ids.on_closed(7);  // twice, or a descriptor never seen: nothing happens
    ids.on_closed(99);
    CHECK(ids.on_message("W1", "worker:AAAA", 12, t0 + 1s));
    CHECK(ids.may_send("W1"));
    // The old descriptor, reused by another peer's connection, does not speak for W1.
    CHECK(ids.on_message("C2", "client:BBBB", 7, t0 + 1s));
    ids.on_closed(7);
    CHECK(ids.may_send("W1"));
    CHECK_FALSE(ids.may_send("C2"));
  }
  SUBCASE("an id not heard from for the whole period is forgotten: memory follows the peers") {
    CHECK(ids.on_message("C2", "client:BBBB", 8, t0 + 5s));
    ids.expire(t0 + 11s);
    CHECK(ids.size() == 1);
    CHECK(ids.owner("W1").empty());
    CHECK(ids.owner("C2") == "client:BBBB");
    // Free again: the next user to present it owns it.
    CHECK(ids.on_message("W1", "client:BBBB", 9, t0 + 12s));
    ids.expire(t0 + 30s);
    CHECK(ids.size() == 0);
  }
}
