// The options table's parser, warnings, process-wide values and the verbose
// listing. See options.h.
#include "elfmalloc/options.h"

#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstring>

#include "absl/base/attributes.h"
#include "elfmalloc/spin_lock.h"

extern char** environ;

namespace elfmalloc {
namespace {

constexpr char kPrefix[] = "ELFMALLOC_";
constexpr std::size_t kPrefixLen = sizeof(kPrefix) - 1;

// ELFMALLOC_ names read by the test suite, not by the allocator: not
// options, but not mistakes either.
constexpr const char* kNotOptions[] = {"ELFMALLOC_STRESS_SCALE"};

char Lower(char c) { return (c >= 'A' && c <= 'Z') ? c - 'A' + 'a' : c; }

bool EqualsIgnoreCase(const char* a, const char* b) {
  for (; *a != '\0' && *b != '\0'; ++a, ++b) {
    if (Lower(*a) != Lower(*b)) return false;
  }
  return *a == *b;
}

// Length of the variable name in "NAME=value".
std::size_t NameLength(const char* entry) {
  const char* eq = std::strchr(entry, '=');
  return eq == nullptr ? std::strlen(entry) : static_cast<std::size_t>(eq - entry);
}

bool NameIs(const char* entry, std::size_t len, const char* name) {
  return std::strlen(name) == len && std::strncmp(entry, name, len) == 0;
}

const char* UnitOf(OptionType t) {
  switch (t) {
    case OptionType::kMilliseconds:
      return " ms";
    case OptionType::kMebibytes:
      return " MiB";
    default:
      return "";
  }
}

// "1000 ms", "true": a value as the warnings and the listing show it.
void FormatValue(const OptionSpec& s, std::uint64_t v, char* buf,
                 std::size_t cap) {
  if (s.type == OptionType::kBool) {
    std::snprintf(buf, cap, "%s", v != 0 ? "true" : "false");
  } else {
    std::snprintf(buf, cap, "%llu%s", static_cast<unsigned long long>(v),
                  UnitOf(s.type));
  }
}

// "elfc: NAME=VALUE: PROBLEM; INSTEAD\n", the value cut to 200 bytes.
void Warn(int fd, const char* entry, const char* problem, const char* instead) {
  if (fd < 0) return;
  char buf[512];
  const std::size_t len = std::strlen(entry);
  const int n = std::snprintf(buf, sizeof(buf), "elfc: %.200s%s: %s; %s\n",
                              entry, len > 200 ? "..." : "", problem, instead);
  if (n > 0) {
    WriteAll(fd, buf,
             static_cast<std::size_t>(n) < sizeof(buf)
                 ? static_cast<std::size_t>(n)
                 : sizeof(buf) - 1);
  }
}

// Edit distance between a[0, n) and b (Levenshtein, one row on the
// stack); names longer than 63 bytes count as far from everything.
std::size_t Distance(const char* a, std::size_t n, const char* b) {
  const std::size_t m = std::strlen(b);
  if (n > 63 || m > 63) return SIZE_MAX;
  std::size_t row[64];
  for (std::size_t j = 0; j <= m; ++j) row[j] = j;
  for (std::size_t i = 1; i <= n; ++i) {
    std::size_t diag = row[0];
    row[0] = i;
    for (std::size_t j = 1; j <= m; ++j) {
      const std::size_t up = row[j];
      const std::size_t sub = diag + (Lower(a[i - 1]) == Lower(b[j - 1]) ? 0 : 1);
      std::size_t best = up + 1 < row[j - 1] + 1 ? up + 1 : row[j - 1] + 1;
      if (sub < best) best = sub;
      row[j] = best;
      diag = up;
    }
  }
  return row[m];
}

// The option variable nearest to a misspelled name, if it is close.
const char* Suggest(const char* name, std::size_t len) {
  const char* best = nullptr;
  std::size_t best_distance = 4;  // at most 3 edits away
  for (const OptionSpec& s : kOptionSpecs) {
    const std::size_t d = Distance(name, len, s.env);
    if (d < best_distance) {
      best = s.env;
      best_distance = d;
    }
  }
  return best;
}

void SetDefaults(OptionValues* out) {
  for (std::size_t i = 0; i < kNumOptions; ++i) {
    out->value[i] = kOptionSpecs[i].default_value;
    out->source[i] = OptionSource::kDefault;
  }
  out->path[0] = '\0';
}

// Parses one known option's value into *out; returns whether it warned.
bool ParseOne(const OptionSpec& s, const char* entry, const char* value,
              int warn_fd, OptionValues* out) {
  const std::size_t i = static_cast<std::size_t>(s.id);
  char dflt[64];
  char instead[128];
  FormatValue(s, s.default_value, dflt, sizeof(dflt));
  if (s.alias) {
    std::snprintf(instead, sizeof(instead), "ignored");
  } else {
    std::snprintf(instead, sizeof(instead), "using the default %s", dflt);
  }
  if (s.type == OptionType::kPath) {
    const std::size_t len = std::strlen(value);
    if (len == 0) {
      Warn(warn_fd, entry, "empty file name", "not used");
      return true;
    }
    if (len > kMaxPathLength) {
      Warn(warn_fd, entry, "file name longer than 1023 bytes", "not used");
      return true;
    }
    std::memcpy(out->path, value, len + 1);
    out->source[i] = OptionSource::kEnvironment;
    return false;
  }
  if (s.type == OptionType::kBool) {
    bool b = false;
    const ParseResult r = ParseBool(value, &b);
    if (r != ParseResult::kOk) {
      Warn(warn_fd, entry,
           r == ParseResult::kEmpty
               ? "empty value"
               : "not a boolean (1/0, true/false, yes/no, on/off)",
           instead);
      return true;
    }
    out->value[i] = b ? 1 : 0;
    out->source[i] = OptionSource::kEnvironment;
    return false;
  }
  std::uint64_t v = 0;
  const ParseResult r = ParseUnsigned(value, &v);
  if (r == ParseResult::kEmpty || r == ParseResult::kInvalid) {
    Warn(warn_fd, entry,
         r == ParseResult::kEmpty ? "empty value"
                                  : "not an unsigned decimal number",
         instead);
    return true;
  }
  bool warned = false;
  if (r == ParseResult::kOverflow || v > s.max_value || v < s.min_value) {
    const bool high = r == ParseResult::kOverflow || v > s.max_value;
    v = high ? s.max_value : s.min_value;
    char bound[64];
    char problem[96];
    char using_bound[96];
    FormatValue(s, v, bound, sizeof(bound));
    std::snprintf(problem, sizeof(problem), "%s the %s %s",
                  high ? "above" : "below", high ? "maximum" : "minimum",
                  bound);
    std::snprintf(using_bound, sizeof(using_bound), "using %s", bound);
    Warn(warn_fd, entry, problem, using_bound);
    warned = true;
  }
  out->value[i] = v;
  out->source[i] = OptionSource::kEnvironment;
  return warned;
}

// The process's values (constinit; filled by LoadOptions).
struct Global {
  std::atomic<std::uint64_t> value[kNumOptions];
  std::atomic<std::uint8_t> source[kNumOptions];
  char path[kMaxPathLength + 1];
};
ABSL_CONST_INIT Global g_options = {};
ABSL_CONST_INIT SpinLock g_load_lock;
ABSL_CONST_INIT std::atomic<bool> g_loaded{false};
ABSL_CONST_INIT std::atomic<void (*)()> g_apply_hook{nullptr};

constexpr OptionId kDirtyTargets[] = {OptionId::kMaxDirtySmallMb,
                                      OptionId::kMaxDirtyMidMb,
                                      OptionId::kMaxDirtyMediumMb};

}  // namespace

ParseResult ParseUnsigned(const char* s, std::uint64_t* out) noexcept {
  if (*s == '\0') return ParseResult::kEmpty;
  std::uint64_t v = 0;
  bool overflow = false;
  for (const char* p = s; *p != '\0'; ++p) {
    if (*p < '0' || *p > '9') return ParseResult::kInvalid;
    const std::uint64_t d = static_cast<std::uint64_t>(*p - '0');
    if (v > (UINT64_MAX - d) / 10) overflow = true;
    if (!overflow) v = v * 10 + d;
  }
  *out = overflow ? UINT64_MAX : v;
  return overflow ? ParseResult::kOverflow : ParseResult::kOk;
}

ParseResult ParseBool(const char* s, bool* out) noexcept {
  if (*s == '\0') return ParseResult::kEmpty;
  static constexpr const char* kTrue[] = {"1", "true", "yes", "on"};
  static constexpr const char* kFalse[] = {"0", "false", "no", "off"};
  for (const char* t : kTrue) {
    if (EqualsIgnoreCase(s, t)) {
      *out = true;
      return ParseResult::kOk;
    }
  }
  for (const char* f : kFalse) {
    if (EqualsIgnoreCase(s, f)) {
      *out = false;
      return ParseResult::kOk;
    }
  }
  return ParseResult::kInvalid;
}

const OptionSpec* FindOption(const char* name) noexcept {
  if (name == nullptr) return nullptr;
  for (const OptionSpec& s : kOptionSpecs) {
    if (std::strcmp(name, s.name) == 0 || std::strcmp(name, s.env) == 0) {
      return &s;
    }
  }
  return nullptr;
}

int ParseEnvironment(const char* const* envp, int warn_fd,
                     OptionValues* out) noexcept {
  SetDefaults(out);
  int warnings = 0;
  bool seen[kNumOptions] = {};
  for (const char* const* e = envp; e != nullptr && *e != nullptr; ++e) {
    const char* entry = *e;
    if (std::strncmp(entry, kPrefix, kPrefixLen) != 0) continue;
    const std::size_t len = NameLength(entry);
    const char* value = entry[len] == '=' ? entry + len + 1 : entry + len;
    const OptionSpec* spec = nullptr;
    for (const OptionSpec& s : kOptionSpecs) {
      if (NameIs(entry, len, s.env)) spec = &s;
    }
    if (spec == nullptr) {
      bool not_option = false;
      for (const char* n : kNotOptions) not_option |= NameIs(entry, len, n);
      // A later duplicate of an unknown name warns again: it is a separate
      // mistake only in a malformed environment, and stays one line each.
      if (!not_option) {
        char instead[128];
        if (const char* near = Suggest(entry, len)) {
          std::snprintf(instead, sizeof(instead), "ignored (did you mean %s?)",
                        near);
        } else {
          std::snprintf(instead, sizeof(instead),
                        "ignored (ELFMALLOC_VERBOSE=1 lists the options)");
        }
        Warn(warn_fd, entry, "unknown option", instead);
        ++warnings;
      }
      continue;
    }
    const std::size_t i = static_cast<std::size_t>(spec->id);
    if (seen[i]) continue;  // getenv sees the first one only
    seen[i] = true;
    if (ParseOne(*spec, entry, value, warn_fd, out)) ++warnings;
  }
  // The alias fills the targets the environment did not set itself.
  const std::size_t alias = static_cast<std::size_t>(OptionId::kMaxDirtyMb);
  if (out->source[alias] == OptionSource::kEnvironment) {
    for (OptionId t : kDirtyTargets) {
      const std::size_t j = static_cast<std::size_t>(t);
      if (out->source[j] == OptionSource::kDefault) {
        out->value[j] = out->value[alias];
        out->source[j] = OptionSource::kEnvironment;
      }
    }
  }
  return warnings;
}

void LoadOptions() noexcept {
  if (g_loaded.load(std::memory_order_acquire)) return;
  SpinLockHolder l(&g_load_lock);
  if (g_loaded.load(std::memory_order_relaxed)) return;
  // Static: 1 KiB of path is too much for the stack of whatever thread
  // makes the first malloc; the lock serialises its use.
  static OptionValues values;
  ParseEnvironment(environ, STDERR_FILENO, &values);
  for (std::size_t i = 0; i < kNumOptions; ++i) {
    g_options.value[i].store(values.value[i], std::memory_order_relaxed);
    g_options.source[i].store(static_cast<std::uint8_t>(values.source[i]),
                              std::memory_order_relaxed);
  }
  std::memcpy(g_options.path, values.path, sizeof(g_options.path));
  g_loaded.store(true, std::memory_order_release);
}

std::uint64_t GetOption(OptionId id) noexcept {
  LoadOptions();
  return g_options.value[static_cast<std::size_t>(id)].load(
      std::memory_order_relaxed);
}

OptionSource GetOptionSource(OptionId id) noexcept {
  LoadOptions();
  return static_cast<OptionSource>(
      g_options.source[static_cast<std::size_t>(id)].load(
          std::memory_order_relaxed));
}

const char* StatsFile() noexcept {
  LoadOptions();
  return g_options.path;
}

SetResult SetOption(OptionId id, std::uint64_t value) noexcept {
  if (static_cast<std::size_t>(id) >= kNumOptions) return SetResult::kUnknown;
  const OptionSpec& s = Spec(id);
  if (s.type == OptionType::kPath) return SetResult::kUnknown;
  if (!s.runtime) return SetResult::kNotRuntime;
  if (value < s.min_value || value > s.max_value) {
    return SetResult::kOutOfRange;
  }
  LoadOptions();
  auto store = [](OptionId i, std::uint64_t v) {
    const std::size_t k = static_cast<std::size_t>(i);
    g_options.value[k].store(v, std::memory_order_relaxed);
    g_options.source[k].store(static_cast<std::uint8_t>(OptionSource::kRuntime),
                              std::memory_order_relaxed);
  };
  store(id, value);
  if (s.alias) {
    for (OptionId t : kDirtyTargets) store(t, value);
  }
  if (void (*hook)() = g_apply_hook.load(std::memory_order_acquire)) hook();
  return SetResult::kOk;
}

bool GetOptionByName(const char* name, std::uint64_t* value) noexcept {
  const OptionSpec* s = FindOption(name);
  if (s == nullptr || s->type == OptionType::kPath) return false;
  std::uint64_t v = 0;
  if (s->alias) {
    for (OptionId t : kDirtyTargets) {
      const std::uint64_t x = GetOption(t);
      if (x > v) v = x;
    }
  } else {
    v = GetOption(s->id);
  }
  if (value != nullptr) *value = v;
  return true;
}

SetResult SetOptionByName(const char* name, std::uint64_t value) noexcept {
  const OptionSpec* s = FindOption(name);
  if (s == nullptr) return SetResult::kUnknown;
  return SetOption(s->id, value);
}

void SetOptionsApplyHook(void (*hook)()) noexcept {
  g_apply_hook.store(hook, std::memory_order_release);
}

void WriteOptions(int fd) noexcept {
  for (const OptionSpec& s : kOptionSpecs) {
    char value[160];
    if (s.type == OptionType::kPath) {
      const char* p = StatsFile();
      std::snprintf(value, sizeof(value), "%s%.120s%s", *p ? "\"" : "",
                    *p ? p : "(unset)", *p ? "\"" : "");
    } else if (s.alias) {
      std::uint64_t v = 0;
      GetOptionByName(s.name, &v);
      char max[48];
      FormatValue(s, v, max, sizeof(max));
      std::snprintf(value, sizeof(value), "(sets the three above; max %s)",
                    max);
    } else {
      FormatValue(s, GetOption(s.id), value, sizeof(value));
    }
    const OptionSource src = GetOptionSource(s.id);
    char line[320];
    const int n = std::snprintf(
        line, sizeof(line), "elfc: option %-20s = %s (%s; %s)\n", s.name,
        value,
        src == OptionSource::kDefault       ? "default"
        : src == OptionSource::kEnvironment ? "environment"
                                            : "set at run time",
        s.env);
    if (n > 0) {
      WriteAll(fd, line,
               static_cast<std::size_t>(n) < sizeof(line)
                   ? static_cast<std::size_t>(n)
                   : sizeof(line) - 1);
    }
  }
}

void WriteAll(int fd, const char* buf, std::size_t len) noexcept {
  const int saved = errno;
  while (len > 0) {
    const ssize_t w = write(fd, buf, len);
    if (w < 0 && errno == EINTR) continue;
    if (w <= 0) break;
    buf += w;
    len -= static_cast<std::size_t>(w);
  }
  errno = saved;
}

}  // namespace elfmalloc
