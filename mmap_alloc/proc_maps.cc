// proc_maps: parsing /proc/self/maps and /proc/self/smaps for mmap_alloc's
// tests, plus mincore/msync probes. See proc_maps.h.
#include "mmap_alloc/proc_maps.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <unistd.h>

#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace mmap_alloc {
namespace test_util {
namespace {

std::string ReadWholeFile(const char* path) {
  // /proc files report size 0, so grow until a read comes up short.
  std::string out(1 << 16, '\0');
  for (;;) {
    const std::size_t n = ReadProcFile(path, out.data(), out.size());
    if (n != 0) {
      out.resize(n);
      return out;
    }
    if (out.size() > (std::size_t{1} << 28)) return "";
    out.resize(out.size() * 2);
  }
}

bool ParseHex(std::string_view s, std::uintptr_t* out) {
  if (s.empty() || s.size() > 16) return false;
  std::uintptr_t v = 0;
  for (char c : s) {
    int d;
    if (c >= '0' && c <= '9') {
      d = c - '0';
    } else if (c >= 'a' && c <= 'f') {
      d = c - 'a' + 10;
    } else {
      return false;
    }
    v = v * 16 + static_cast<std::uintptr_t>(d);
  }
  *out = v;
  return true;
}

// Splits off the next space-separated field of *line.
std::string_view NextField(std::string_view* line) {
  std::size_t i = line->find_first_not_of(' ');
  if (i == std::string_view::npos) {
    *line = {};
    return {};
  }
  line->remove_prefix(i);
  std::size_t j = line->find(' ');
  std::string_view field = line->substr(0, j);
  line->remove_prefix(j == std::string_view::npos ? line->size() : j);
  return field;
}

std::optional<Mapping> ParseLine(std::string_view line) {
  Mapping m;
  std::string_view range = NextField(&line);
  std::size_t dash = range.find('-');
  if (dash == std::string_view::npos ||
      !ParseHex(range.substr(0, dash), &m.start) ||
      !ParseHex(range.substr(dash + 1), &m.end) || m.end <= m.start) {
    return std::nullopt;
  }
  std::string_view perms = NextField(&line);
  if (perms.size() != 4) return std::nullopt;
  m.perms = std::string(perms);
  NextField(&line);  // offset
  NextField(&line);  // device
  NextField(&line);  // inode
  std::size_t i = line.find_first_not_of(' ');
  if (i != std::string_view::npos) m.name = std::string(line.substr(i));
  return m;
}

}  // namespace

std::vector<Mapping> ParseMaps(std::string_view text) {
  std::vector<Mapping> out;
  while (!text.empty()) {
    std::size_t nl = text.find('\n');
    std::string_view line = text.substr(0, nl);
    text.remove_prefix(nl == std::string_view::npos ? text.size() : nl + 1);
    if (auto m = ParseLine(line)) out.push_back(*std::move(m));
  }
  return out;
}

std::size_t ReadProcFile(const char* path, char* buf, std::size_t cap) {
  const int fd = open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0) return 0;
  std::size_t n = 0;
  for (;;) {
    if (n == cap) {  // Did not fit.
      close(fd);
      return 0;
    }
    const ssize_t r = read(fd, buf + n, cap - n);
    if (r < 0) {
      close(fd);
      return 0;
    }
    if (r == 0) break;
    n += static_cast<std::size_t>(r);
  }
  close(fd);
  return n;
}

std::optional<Mapping> FindMapping(const void* addr) {
  const auto a = reinterpret_cast<std::uintptr_t>(addr);
  for (Mapping& m : ParseMaps(ReadWholeFile("/proc/self/maps"))) {
    if (m.start <= a && a < m.end) return std::move(m);
  }
  return std::nullopt;
}

std::string PermsAt(const void* p) {
  auto m = FindMapping(p);
  return m ? m->perms : std::string();
}

std::size_t MappedBytesIn(std::string_view maps_text, std::uintptr_t lo,
                          std::uintptr_t hi) {
  std::size_t total = 0;
  for (const Mapping& m : ParseMaps(maps_text)) {
    const std::uintptr_t s = m.start > lo ? m.start : lo;
    const std::uintptr_t e = m.end < hi ? m.end : hi;
    if (s < e) total += e - s;
  }
  return total;
}

bool IsMapped(const void* p, std::size_t len) {
  return msync(const_cast<void*>(p), len, MS_ASYNC) == 0;
}

std::size_t ResidentPages(const void* p, std::size_t len) {
  const std::size_t page = static_cast<std::size_t>(sysconf(_SC_PAGESIZE));
  std::vector<unsigned char> vec((len + page - 1) / page);
  if (mincore(const_cast<void*>(p), len, vec.data()) != 0) return SIZE_MAX;
  std::size_t n = 0;
  for (unsigned char c : vec) n += c & 1;
  return n;
}

std::string VmFlagsAt(const void* p) {
  const auto a = reinterpret_cast<std::uintptr_t>(p);
  const std::string smaps = ReadWholeFile("/proc/self/smaps");
  std::string_view text = smaps;
  bool in_mapping = false;
  while (!text.empty()) {
    std::size_t nl = text.find('\n');
    std::string_view line = text.substr(0, nl);
    text.remove_prefix(nl == std::string_view::npos ? text.size() : nl + 1);
    if (auto m = ParseLine(line)) {
      in_mapping = m->start <= a && a < m->end;
    } else if (in_mapping && line.substr(0, 8) == "VmFlags:") {
      line.remove_prefix(8);
      std::size_t i = line.find_first_not_of(' ');
      return i == std::string_view::npos ? "" : std::string(line.substr(i));
    }
  }
  return "";
}

std::string ExpectedPerms(Perm perm) {
  std::string s = "---p";
  if (HasAll(perm, Perm::kRead)) s[0] = 'r';
  if (HasAll(perm, Perm::kWrite)) s[1] = 'w';
  if (HasAll(perm, Perm::kExec)) s[2] = 'x';
  return s;
}

static unsigned char PatternByte(std::size_t i, unsigned char seed) {
  const std::size_t page = PageSize();
  return static_cast<unsigned char>(seed + i / page * 7 + i % page % 251);
}

void Fill(void* p, std::size_t len, unsigned char seed) {
  auto* b = static_cast<unsigned char*>(p);
  for (std::size_t i = 0; i < len; ++i) b[i] = PatternByte(i, seed);
}

bool Check(const void* p, std::size_t len, unsigned char seed) {
  const auto* b = static_cast<const unsigned char*>(p);
  for (std::size_t i = 0; i < len; ++i) {
    if (b[i] != PatternByte(i, seed)) return false;
  }
  return true;
}

bool AllZero(const void* p, std::size_t len) {
  const auto* b = static_cast<const unsigned char*>(p);
  for (std::size_t i = 0; i < len; ++i) {
    if (b[i] != 0) return false;
  }
  return true;
}

}  // namespace test_util
}  // namespace mmap_alloc
