// glibc's introspection API and elfc's options and statistics API through
// the real exported symbols, with libelfc.so preloaded (the program is not
// linked against elfc: its extensions are found with dlsym, as a program
// that only sometimes runs under elfc would).
//
//   introspection               every check below, then "introspection: PASS"
//   introspection --noop        nothing (for the verbose and warning checks
//                               of introspection_test.sh)
//   introspection --close-stderr  allocates, closes fd 2 and exits, as
//                               coreutils do (statistics at exit must still
//                               reach the original stderr or the file)
#include <dlfcn.h>
#include <errno.h>
#include <malloc.h>
#include <unistd.h>

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include "elfc/elfc.h"
#include "elfc/preload_test_util.h"

namespace {

#define CHECK(cond, ...)                                                  \
  do {                                                                    \
    if (!(cond)) elfc::test::Fail(__FILE__, __LINE__, #cond, __VA_ARGS__); \
  } while (0)

template <typename F>
F Lookup(const char* name) {
  void* f = dlsym(RTLD_DEFAULT, name);
  CHECK(f != nullptr, "%s not found with dlsym", name);
  return reinterpret_cast<F>(f);
}

// Runs fn with fd `fd` redirected to a pipe; returns what it wrote.
template <typename Fn>
std::string Capture(int fd, Fn fn) {
  std::fflush(nullptr);
  int p[2];
  CHECK(pipe(p) == 0, "pipe");
  const int saved = dup(fd);
  dup2(p[1], fd);
  close(p[1]);
  fn();
  dup2(saved, fd);
  close(saved);
  std::string out;
  char buf[4096];
  ssize_t n;
  while ((n = read(p[0], buf, sizeof(buf))) > 0) out.append(buf, n);
  close(p[0]);
  return out;
}

// A minimal XML well-formedness check for malloc_info's output: every tag
// is closed in order, attribute values are quoted, nothing but whitespace
// between tags. Returns "" or what is wrong.
std::string CheckXml(const std::string& s) {
  std::vector<std::string> open;
  std::size_t i = 0;
  bool root_seen = false;
  while (i < s.size()) {
    if (s[i] == ' ' || s[i] == '\n' || s[i] == '\t') {
      ++i;
      continue;
    }
    if (s[i] != '<') return "text outside tags at " + std::to_string(i);
    const std::size_t end = s.find('>', i);
    if (end == std::string::npos) return "unterminated tag";
    std::string tag = s.substr(i + 1, end - i - 1);
    i = end + 1;
    if (!tag.empty() && tag[0] == '/') {
      if (open.empty() || open.back() != tag.substr(1)) {
        return "mismatched </" + tag.substr(1) + ">";
      }
      open.pop_back();
      continue;
    }
    const bool self_closing = !tag.empty() && tag.back() == '/';
    if (self_closing) tag.pop_back();
    const std::size_t sp = tag.find(' ');
    const std::string name = tag.substr(0, sp);
    if (name.empty()) return "empty tag name";
    // Attributes: name="value" pairs.
    std::size_t j = sp == std::string::npos ? tag.size() : sp;
    while (j < tag.size()) {
      while (j < tag.size() && tag[j] == ' ') ++j;
      if (j >= tag.size()) break;
      const std::size_t eq = tag.find('=', j);
      if (eq == std::string::npos || eq + 1 >= tag.size() ||
          tag[eq + 1] != '"') {
        return "bad attribute in <" + tag + ">";
      }
      const std::size_t close_quote = tag.find('"', eq + 2);
      if (close_quote == std::string::npos) return "unquoted attribute";
      j = close_quote + 1;
    }
    if (open.empty()) {
      if (root_seen) return "second root element";
      root_seen = true;
    }
    if (!self_closing) open.push_back(name);
  }
  if (!open.empty()) return "unclosed <" + open.back() + ">";
  if (!root_seen) return "no root element";
  return "";
}

void CheckMallinfo() {
  const struct mallinfo2 before = mallinfo2();
  std::vector<void*> blocks;
  for (int i = 0; i < 20000; ++i) blocks.push_back(std::malloc(1000));
  void* volatile big = std::malloc(8 << 20);
  CHECK(big != nullptr, "8 MiB");
  std::memset(big, 1, 8 << 20);
  const struct mallinfo2 during = mallinfo2();
  // 20000 x 1 KiB blocks are ~20 MB more held bytes and mapped slab bytes;
  // the 8 MiB block is one more mmap'd block.
  CHECK(during.uordblks >= before.uordblks + 19000 * 1000,
        "uordblks %zu -> %zu", before.uordblks, during.uordblks);
  CHECK(during.arena >= during.uordblks, "arena %zu < uordblks %zu",
        during.arena, during.uordblks);
  CHECK(during.fordblks == during.arena - during.uordblks, "fordblks");
  CHECK(during.hblks == before.hblks + 1, "hblks %zu -> %zu", before.hblks,
        during.hblks);
  CHECK(during.hblkhd >= before.hblkhd + (8 << 20), "hblkhd %zu -> %zu",
        before.hblkhd, during.hblkhd);
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wdeprecated-declarations"
  const struct mallinfo old = mallinfo();  // glibc deprecates it; we serve it
#pragma GCC diagnostic pop
  CHECK(old.hblks == static_cast<int>(during.hblks), "mallinfo hblks");
  CHECK(old.uordblks > 0, "mallinfo uordblks");

  // elfc_get_stats agrees.
  auto get_stats = Lookup<size_t (*)(elfc_stats*)>("elfc_get_stats");
  elfc_stats s;
  CHECK(get_stats(&s) == sizeof(s), "elfc_get_stats size");
  CHECK(s.large_allocations == during.hblks, "large allocations");
  CHECK(s.mapped_bytes == during.arena + during.hblkhd, "mapped %zu vs %zu",
        s.mapped_bytes, during.arena + during.hblkhd);

  std::free(big);
  for (void* p : blocks) std::free(p);
  const struct mallinfo2 after = mallinfo2();
  CHECK(after.uordblks + 19000 * 1000 <= during.uordblks,
        "uordblks after free %zu (during %zu)", after.uordblks,
        during.uordblks);
  CHECK(after.hblks == before.hblks, "hblks after free");
  elfc::test::Log("introspection: mallinfo2 uordblks %zu -> %zu -> %zu",
                  before.uordblks, during.uordblks, after.uordblks);
}

void CheckMallocStatsAndInfo() {
  const std::string stats = Capture(2, [] { malloc_stats(); });
  for (const char* line : {"Arena 0:\n", "system bytes     = ",
                           "in use bytes     = ", "Total (incl. mmap):\n",
                           "max mmap regions = ", "max mmap bytes   = "}) {
    CHECK(stats.find(line) != std::string::npos, "malloc_stats lacks '%s':\n%s",
          line, stats.c_str());
  }
  void* keep[64];
  for (void*& p : keep) p = std::malloc(100);
  char* buf = nullptr;
  std::size_t len = 0;
  FILE* f = open_memstream(&buf, &len);
  CHECK(f != nullptr, "open_memstream");
  CHECK(malloc_info(0, f) == 0, "malloc_info");
  std::fclose(f);
  const std::string xml(buf, len);
  std::free(buf);
  const std::string problem = CheckXml(xml);
  CHECK(problem.empty(), "malloc_info XML: %s\n%s", problem.c_str(),
        xml.c_str());
  CHECK(xml.rfind("<malloc version=\"1\">", 0) == 0, "root");
  CHECK(xml.find("<heap nr=\"0\">") != std::string::npos, "heap");
  CHECK(xml.find("<total type=\"mmap\"") != std::string::npos, "mmap total");
  errno = 0;
  CHECK(malloc_info(1, stdout) == -1 && errno == EINVAL, "options != 0");
  for (void* p : keep) std::free(p);
}

void CheckMallopt() {
  auto get = Lookup<int (*)(const char*, uint64_t*)>("elfc_get_option");
  uint64_t v = 0;
  CHECK(mallopt(M_TRIM_THRESHOLD, 3 << 20) == 1, "M_TRIM_THRESHOLD");
  CHECK(get("max_dirty_small_mb", &v) == 0 && v == 3, "trim -> %llu",
        static_cast<unsigned long long>(v));
  CHECK(get("max_dirty_medium_mb", &v) == 0 && v == 3, "trim -> medium");
  CHECK(mallopt(M_TRIM_THRESHOLD, 1) == 1, "1 byte rounds up");
  CHECK(get("max_dirty_mid_mb", &v) == 0 && v == 1, "rounded to 1 MiB");
  CHECK(mallopt(M_TRIM_THRESHOLD, -1) == 0, "negative threshold");
  CHECK(mallopt(ELFC_M_DECAY_MS, 250) == 1, "ELFC_M_DECAY_MS");
  CHECK(get("decay_ms", &v) == 0 && v == 250, "decay 250");
  CHECK(mallopt(ELFC_M_MAX_DIRTY_MB, 5) == 1, "ELFC_M_MAX_DIRTY_MB");
  CHECK(get("max_dirty_mb", &v) == 0 && v == 5, "max dirty 5");
  for (int p : {M_MMAP_THRESHOLD, M_ARENA_MAX, M_ARENA_TEST, M_TOP_PAD,
                M_MMAP_MAX, M_PERTURB, M_CHECK_ACTION, M_MXFAST}) {
    CHECK(mallopt(p, 1) == 1, "glibc parameter %d", p);
  }
  CHECK(mallopt(12345, 1) == 0, "unknown parameter");
  CHECK(mallopt(-12345, 1) == 0, "unknown parameter");
}

void CheckOptionApi() {
  auto get = Lookup<int (*)(const char*, uint64_t*)>("elfc_get_option");
  auto set = Lookup<int (*)(const char*, uint64_t)>("elfc_set_option");
  uint64_t v = 0;
  CHECK(set("decay_ms", 40) == 0, "set decay");
  CHECK(get("decay_ms", &v) == 0 && v == 40, "get decay");
  CHECK(get("ELFMALLOC_DECAY_MS", &v) == 0 && v == 40, "by env name");
  CHECK(set("decay_ms", UINT64_MAX) == ERANGE, "decay out of range");
  CHECK(set("decay_ms", 86400001) == ERANGE, "decay out of range");
  CHECK(get("decay_ms", &v) == 0 && v == 40, "unchanged");
  CHECK(set("verbose", 1) == EPERM, "verbose is start-up only");
  CHECK(set("no_such_option", 1) == EINVAL, "unknown");
  CHECK(get("no_such_option", &v) == EINVAL, "unknown");
  CHECK(get("stats_file", &v) == EINVAL, "path");
  CHECK(set("max_dirty_mb", (uint64_t{1} << 20) + 1) == ERANGE, "dirty range");

  // The setters reach the live page allocators: with no dirty budget, the
  // pages of 40 MiB of freed 256 KiB blocks go back to the OS instead of
  // staying cached (the default keeps up to 16 MiB of them).
  auto get_stats = Lookup<size_t (*)(elfc_stats*)>("elfc_get_stats");
  CHECK(set("max_dirty_mb", 0) == 0, "dirty 0");
  CHECK(set("decay_ms", 0) == 0, "decay off");
  elfc_stats s;
  get_stats(&s);
  CHECK(s.dirty_bytes == 0, "dirty bytes %zu right after a cap of 0",
        s.dirty_bytes);
  std::vector<void*> blocks;
  for (int i = 0; i < 160; ++i) {
    void* p = std::malloc(256 << 10);
    CHECK(p != nullptr, "256 KiB");
    std::memset(p, 1, 256 << 10);
    blocks.push_back(p);
  }
  for (void* p : blocks) std::free(p);
  get_stats(&s);
  elfc::test::Log("introspection: dirty after 40 MiB freed with cap 0: %zu",
                  s.dirty_bytes);
  CHECK(s.dirty_bytes <= (8u << 20), "dirty bytes %zu with a cap of 0",
        s.dirty_bytes);
  CHECK(set("max_dirty_mb", 64) == 0, "dirty 64");
  CHECK(set("decay_ms", 1000) == 0, "decay back");
}

void CheckStatsApi() {
  auto detailed =
      Lookup<size_t (*)(elfc_detailed_stats*, size_t)>("elfc_get_detailed_stats");
  auto print = Lookup<void (*)(int)>("elfc_print_stats");
  auto print_json = Lookup<void (*)(int)>("elfc_print_stats_json");
  std::vector<void*> blocks;
  for (int i = 0; i < 1000; ++i) blocks.push_back(std::malloc(48));
  elfc_detailed_stats d;
  CHECK(detailed(&d, sizeof(d)) == sizeof(d), "size");
  CHECK(d.num_classes > 10 && d.num_classes <= ELFC_MAX_CLASSES, "classes %zu",
        d.num_classes);
  bool found = false;
  for (std::size_t i = 0; i < d.num_classes; ++i) {
    if (d.classes[i].object_size == 48) {
      found = true;
      CHECK(d.classes[i].allocated_objects >= 1000, "48-byte blocks %zu",
            d.classes[i].allocated_objects);
      CHECK(d.classes[i].pages >= 1, "pages");
    }
    if (i > 0) {
      CHECK(d.classes[i].object_size > d.classes[i - 1].object_size, "order");
    }
  }
  CHECK(found, "no 48-byte class");
  CHECK(d.metadata_bytes > 0, "metadata");
  CHECK(d.peak_resident_bytes > 0, "peak");
  CHECK(d.resident_bytes >= d.totals.active_bytes, "resident");
  // Versioned by size: an older caller's smaller struct is not overrun.
  unsigned char small[sizeof(elfc_stats) + 16];
  std::memset(small, 0xab, sizeof(small));
  CHECK(detailed(reinterpret_cast<elfc_detailed_stats*>(small),
                 sizeof(elfc_stats)) == sizeof(d),
        "size");
  for (std::size_t i = sizeof(elfc_stats); i < sizeof(small); ++i) {
    CHECK(small[i] == 0xab, "byte %zu written past the caller's size", i);
  }
  const std::string text = Capture(1, [&] { print(1); });
  CHECK(text.find("allocated_bytes") != std::string::npos, "%s", text.c_str());
  CHECK(text.find("metadata_bytes") != std::string::npos, "%s", text.c_str());
  CHECK(text.find("class_size") != std::string::npos, "%s", text.c_str());
  const std::string json = Capture(1, [&] { print_json(1); });
  CHECK(json.rfind("{\"version\": ", 0) == 0, "%s", json.c_str());
  CHECK(json.size() > 3 && json.compare(json.size() - 3, 3, "]}\n") == 0,
        "%s", json.c_str());
  CHECK(json.find("\"object_size\": 48") != std::string::npos, "%s",
        json.c_str());
  for (void* p : blocks) std::free(p);
}

}  // namespace

int main(int argc, char** argv) {
  elfc::test::CheckPreload("introspection");
  const std::string mode = argc > 1 ? argv[1] : "";
  if (mode == "--noop") return 0;
  if (mode == "--close-stderr") {
    void* volatile p = std::malloc(100);
    std::free(p);
    close(2);
    return 0;
  }
  CheckMallinfo();
  CheckMallocStatsAndInfo();
  CheckMallopt();
  CheckOptionApi();
  CheckStatsApi();
  elfc::test::Log("introspection: PASS");
  return 0;
}
