#include "cli/job_records.hpp"

#include <cctype>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>

#include <seppo/error.hpp>

#include "worker/shell_command.hpp"

namespace seppo::cli {
namespace {

void write_file(const std::filesystem::path& path, const std::string& text) {
  std::ofstream file(path, std::ios::binary | std::ios::trunc);
  file << text;
  if (!file) throw Error("cannot write " + path.string() + ": " + std::strerror(errno));
}

}  // namespace

JobLog::JobLog(const std::string& path, bool append) {
  if (path.empty()) return;
  file_ = std::fopen(path.c_str(), append ? "a" : "w");
  if (file_ == nullptr) throw Error("cannot write " + path + ": " + std::strerror(errno));
  if (std::ftell(file_) == 0) {
    std::fputs("Seq\tHost\tStarttime\tJobRuntime\tSend\tReceive\tExitval\tSignal\tCommand\n",
               file_);
  }
  std::fflush(file_);
}

Resume::Resume(const std::string& joblog, Mode mode) : mode_(mode) {
  if (mode == Mode::Off) return;
  std::ifstream in(joblog);
  if (!in) {
    if (errno == ENOENT) return;
    throw Error("cannot read " + joblog + ": " + std::strerror(errno));
  }
  std::string line;
  std::getline(in, line);  // the header
  while (std::getline(in, line)) {
    // Seq Host Starttime JobRuntime Send Receive Exitval Signal Command
    std::vector<std::string> fields;
    std::size_t start = 0;
    for (int f = 0; f < 8; ++f) {
      const auto tab = line.find('\t', start);
      if (tab == std::string::npos) break;
      fields.push_back(line.substr(start, tab - start));
      start = tab + 1;
    }
    if (fields.size() < 8 || fields[0].empty() ||
        fields[0].find_first_not_of("0123456789") != std::string::npos || fields[0].size() > 18) {
      continue;
    }
    if (mode == Mode::Succeeded && !(fields[6] == "0" && fields[7] == "0")) continue;
    done_.insert(std::stoull(fields[0]));
  }
}

JobLog::~JobLog() {
  if (file_ != nullptr) std::fclose(file_);
}

void JobLog::write(const JobLogLine& l) {
  if (file_ == nullptr) return;
  std::fprintf(file_, "%llu\t%s\t%.3f\t%10.3f\t%llu\t%llu\t%d\t%d\t%s\n",
               static_cast<unsigned long long>(l.seq), l.host.c_str(), l.start_epoch, l.runtime_s,
               static_cast<unsigned long long>(l.sent), static_cast<unsigned long long>(l.received),
               l.exitval, l.signal, l.command.c_str());
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

namespace {

bool ends_with_ci(const std::string& text, const std::string& suffix) {
  if (text.size() < suffix.size()) return false;
  for (std::size_t i = 0; i < suffix.size(); ++i) {
    if (std::tolower(static_cast<unsigned char>(text[text.size() - suffix.size() + i])) !=
        suffix[i]) {
      return false;
    }
  }
  return true;
}

}  // namespace

std::string table_row(const std::vector<std::string>& fields, char separator) {
  std::string row;
  for (std::size_t i = 0; i < fields.size(); ++i) {
    if (i > 0) row += separator;
    const std::string& f = fields[i];
    // parallel: quoted when it holds a quote (doubled), white space, the separator or a NUL.
    const bool quoted =
        f.find_first_of(std::string("\" \t\n\r\f\v") + separator) != std::string::npos ||
        f.find('\0') != std::string::npos;
    if (!quoted) {
      row += f;
      continue;
    }
    row += '"';
    for (const char c : f) {
      if (c == '"') row += '"';
      row += c;
    }
    row += '"';
  }
  row += '\n';
  return row;
}

Results::Results(const std::string& path) : path_(path) {
  if (path.empty()) return;
  const bool csv = ends_with_ci(path, ".csv");
  if (!csv && !ends_with_ci(path, ".tsv")) return;
  separator_ = csv ? ',' : '\t';
  table_ = std::fopen(path.c_str(), "w");
  if (table_ == nullptr) throw Error("cannot write " + path + ": " + std::strerror(errno));
}

Results::~Results() {
  if (table_ != nullptr) std::fclose(table_);
}

void Results::write(const JobLogLine& l, const std::vector<std::string>& args,
                    const std::string& out, const std::string& err) {
  if (path_.empty()) return;
  if (table_ == nullptr) {
    write_results(path_, args, l.seq, out, err);
    return;
  }
  if (!header_written_) {
    std::vector<std::string> header = {"Seq",     "Host",    "Starttime", "JobRuntime", "Send",
                                       "Receive", "Exitval", "Signal",    "Command"};
    for (std::size_t i = 1; i <= args.size(); ++i) header.push_back("V" + std::to_string(i));
    header.emplace_back("Stdout");
    header.emplace_back("Stderr");
    std::fputs(table_row(header, separator_).c_str(), table_);
    header_written_ = true;
  }
  char start[32], runtime[32];
  std::snprintf(start, sizeof start, "%.3f", l.start_epoch);
  std::snprintf(runtime, sizeof runtime, "%.3f", l.runtime_s);
  std::vector<std::string> row = {std::to_string(l.seq),
                                  l.host,
                                  start,
                                  runtime,
                                  std::to_string(l.sent),
                                  std::to_string(l.received),
                                  std::to_string(l.exitval),
                                  std::to_string(l.signal),
                                  l.command};
  row.insert(row.end(), args.begin(), args.end());
  row.push_back(out);
  row.push_back(err);
  const std::string text = table_row(row, separator_);
  if (std::fwrite(text.data(), 1, text.size(), table_) != text.size() || std::fflush(table_) != 0) {
    throw Error("cannot write " + path_ + ": " + std::strerror(errno));
  }
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

std::string expand_tag(const std::string& tagstring, const std::vector<std::string>& args,
                       std::uint64_t seq, unsigned slot) {
  const auto transform = [](std::string_view suffix, const std::string& value) -> std::string {
    if (suffix == ".") return worker::without_extension(value);
    if (suffix == "/") return worker::base_name(value);
    if (suffix == "//") return worker::dir_name(value);
    if (suffix == "/.") return worker::without_extension(worker::base_name(value));
    return value;
  };
  std::string text;
  for (std::size_t i = 0; i < tagstring.size();) {
    const std::size_t close = tagstring[i] == '{' ? tagstring.find('}', i) : std::string::npos;
    if (close == std::string::npos) {
      text += tagstring[i++];
      continue;
    }
    const std::string_view inner = std::string_view(tagstring).substr(i + 1, close - i - 1);
    if (inner == "#" || inner == "%") {
      text += std::to_string(inner == "#" ? seq : slot);
      i = close + 1;
      continue;
    }
    const std::size_t digits = inner.find_first_not_of("0123456789");
    const std::string_view number = inner.substr(0, digits);
    const std::string_view suffix = digits == std::string_view::npos ? "" : inner.substr(digits);
    const bool known =
        suffix.empty() || suffix == "." || suffix == "/" || suffix == "//" || suffix == "/.";
    if (!known || number.size() > 9 || (!number.empty() && std::stoul(std::string(number)) == 0)) {
      text += tagstring[i++];  // not a replacement string: the brace is text
      continue;
    }
    if (number.empty()) {
      for (std::size_t a = 0; a < args.size(); ++a) {
        if (a > 0) text += ' ';
        text += transform(suffix, args[a]);
      }
    } else {
      const std::size_t n = std::stoul(std::string(number));
      if (n <= args.size()) text += transform(suffix, args[n - 1]);
    }
    i = close + 1;
  }
  return text;
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
