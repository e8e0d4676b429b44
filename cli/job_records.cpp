#include "cli/job_records.hpp"

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>

#include <seppo/error.hpp>

namespace seppo::cli {
namespace {

void write_file(const std::filesystem::path& path, const std::string& text) {
  std::ofstream file(path, std::ios::binary | std::ios::trunc);
  file << text;
  if (!file) throw Error("cannot write " + path.string() + ": " + std::strerror(errno));
}

}  // namespace

JobLog::JobLog(const std::string& path) {
  if (path.empty()) return;
  file_ = std::fopen(path.c_str(), "w");
  if (file_ == nullptr) throw Error("cannot write " + path + ": " + std::strerror(errno));
  std::fputs("Seq\tHost\tStarttime\tJobRuntime\tSend\tReceive\tExitval\tSignal\tCommand\n", file_);
  std::fflush(file_);
}

JobLog::~JobLog() {
  if (file_ != nullptr) std::fclose(file_);
}

void JobLog::write(const JobLogLine& l) {
  if (file_ == nullptr) return;
  std::fprintf(file_, "%llu\t%s\t%.3f\t%10.3f\t0\t%llu\t%d\t%d\t%s\n",
               static_cast<unsigned long long>(l.seq), l.host.c_str(), l.start_epoch, l.runtime_s,
               static_cast<unsigned long long>(l.received), l.exitval, l.signal, l.command.c_str());
  std::fflush(file_);
}

std::string results_folder(const std::string& dir, const std::vector<std::string>& args) {
  std::filesystem::path path = dir;
  for (std::size_t i = 0; i < args.size(); ++i) {
    std::string name;
    for (const char c : args[i]) {
      if (c == '\\') {
        name += "\\\\";
      } else if (c == '/') {
        name += "\\_";
      } else {
        name += c;
      }
    }
    path /= std::to_string(i + 1);
    path /= name.empty() ? std::string("\\_") : name;
  }
  return path.string();
}

void write_results(const std::string& dir, const std::vector<std::string>& args, std::uint64_t seq,
                   const std::string& out, const std::string& err) {
  const std::filesystem::path folder = results_folder(dir, args);
  std::error_code error;
  std::filesystem::create_directories(folder, error);
  if (error) throw Error("cannot create " + folder.string() + ": " + error.message());
  write_file(folder / "seq", std::to_string(seq));
  write_file(folder / "stdout", out);
  write_file(folder / "stderr", err);
}

std::string tag_lines(const std::string& out, const std::string& tag) {
  std::string tagged;
  std::size_t start = 0;
  while (start < out.size()) {
    const auto end = out.find('\n', start);
    const std::size_t stop = end == std::string::npos ? out.size() : end + 1;
    tagged += tag;
    tagged += '\t';
    tagged.append(out, start, stop - start);
    start = stop;
  }
  return tagged;
}

std::string joined(const std::vector<std::string>& args) {
  std::string text;
  for (std::size_t i = 0; i < args.size(); ++i) {
    if (i > 0) text += ' ';
    text += args[i];
  }
  return text;
}

}  // namespace seppo::cli
