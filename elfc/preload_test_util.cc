// elfc/preload_test_util.cc: see preload_test_util.h. Everything here is
// written against libc only (no elfc headers): these programs must behave
// the same on glibc, on a peer allocator and on libelfc.so.
#include "elfc/preload_test_util.h"

#include <dlfcn.h>
#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cstdint>
#include <cstring>

namespace elfc::test {
namespace {

// Formats into a stack buffer and writes it with one write(2): usable from
// threads, forked children and signal handlers (vsnprintf of %s/%d/%zu does
// not allocate in glibc), and it never leaves half a line in a stdio buffer
// that a fork would duplicate.
__attribute__((format(printf, 2, 0))) void VWriteLine(const char* prefix,
                                                      const char* fmt,
                                                      va_list ap) {
  char buf[1024];
  int n = 0;
  if (prefix != nullptr) n = snprintf(buf, sizeof(buf), "%s", prefix);
  if (n < 0) n = 0;
  int m = vsnprintf(buf + n, sizeof(buf) - static_cast<size_t>(n), fmt, ap);
  if (m < 0) m = 0;
  size_t len = static_cast<size_t>(n) + static_cast<size_t>(m);
  if (len > sizeof(buf) - 2) len = sizeof(buf) - 2;
  buf[len++] = '\n';
  const char* p = buf;
  while (len > 0) {
    ssize_t w = write(STDERR_FILENO, p, len);
    if (w <= 0) break;
    p += w;
    len -= static_cast<size_t>(w);
  }
}

struct Symbol {
  const char* name;
  bool core;  // Must come from the preload even in non-strict mode.
};

// The allocation entry points a program (or libc/libstdc++ on its behalf)
// can call. Mangled names are the Itanium ABI operator new/delete forms.
constexpr Symbol kSymbols[] = {
    {"malloc", true},
    {"free", true},
    {"calloc", true},
    {"realloc", true},
    {"posix_memalign", true},
    {"aligned_alloc", true},
    {"malloc_usable_size", true},
    {"memalign", false},
    {"valloc", false},
    {"pvalloc", false},
    {"reallocarray", false},
    {"_Znwm", false},                        // operator new(size_t)
    {"_Znam", false},                        // operator new[](size_t)
    {"_ZnwmRKSt9nothrow_t", false},          // operator new(size_t, nothrow)
    {"_ZnwmSt11align_val_t", false},         // operator new(size_t, align)
    {"_ZdlPv", false},                       // operator delete(void*)
    {"_ZdaPv", false},                       // operator delete[](void*)
    {"_ZdlPvm", false},                      // operator delete(void*, size_t)
    {"_ZdlPvSt11align_val_t", false},        // operator delete(void*, align)
    {"_ZdlPvmSt11align_val_t", false},       // sized + aligned delete
};

// Where `name` resolves in the global scope; "" if nowhere.
void WhereIs(const char* name, char* out, size_t out_size) {
  out[0] = '\0';
  void* sym = dlsym(RTLD_DEFAULT, name);
  if (sym == nullptr) return;
  Dl_info info;
  if (dladdr(sym, &info) == 0 || info.dli_fname == nullptr) {
    snprintf(out, out_size, "?");
    return;
  }
  char resolved[PATH_MAX];
  if (realpath(info.dli_fname, resolved) != nullptr) {
    snprintf(out, out_size, "%s", resolved);
  } else {
    snprintf(out, out_size, "%s", info.dli_fname);
  }
}

bool IsGlibc(const char* path) {
  const char* base = strrchr(path, '/');
  base = base == nullptr ? path : base + 1;
  return strncmp(base, "libc.so", 7) == 0 || strncmp(base, "libc-", 5) == 0;
}

[[noreturn]] void SignalSafeExit(const char* msg, int status) {
  ssize_t ignored = write(STDERR_FILENO, msg, strlen(msg));
  (void)ignored;
  _exit(status);
}

char g_watchdog_message[512];

void OnAlarm(int) { SignalSafeExit(g_watchdog_message, 124); }

}  // namespace

void Log(const char* fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  VWriteLine(nullptr, fmt, ap);
  va_end(ap);
}

void Fail(const char* file, int line, const char* cond, const char* fmt, ...) {
  char prefix[512];
  snprintf(prefix, sizeof(prefix), "FAILED: %s:%d: CHECK(%s) failed: ", file,
           line, cond);
  va_list ap;
  va_start(ap, fmt);
  VWriteLine(prefix, fmt, ap);
  va_end(ap);
  abort();
}

void CheckPreload(const char* program) {
  const char* expect = getenv("ELFC_PRELOAD_EXPECT");
  const char* strict_env = getenv("ELFC_PRELOAD_STRICT");
  const bool strict = strict_env != nullptr && strcmp(strict_env, "1") == 0;
  char malloc_at[PATH_MAX + 16];
  WhereIs("malloc", malloc_at, sizeof(malloc_at));
  if (expect == nullptr || expect[0] == '\0') {
    Log("elfc-preload-check: OK (%s: nothing expected; malloc from %s)",
        program, malloc_at);
    return;
  }
  if (strcmp(expect, "none") == 0) {
    if (!IsGlibc(malloc_at)) {
      Log("FAILED: %s: malloc should be glibc's here but resolves to %s",
          program, malloc_at);
      exit(1);
    }
    Log("elfc-preload-check: OK (%s: no preload; malloc from %s)", program,
        malloc_at);
    return;
  }
  char want[PATH_MAX];
  if (realpath(expect, want) == nullptr) {
    Log("FAILED: %s: ELFC_PRELOAD_EXPECT=%s does not exist", program, expect);
    exit(1);
  }
  int bad = 0;
  for (const Symbol& s : kSymbols) {
    char at[PATH_MAX + 16];
    WhereIs(s.name, at, sizeof(at));
    if (strcmp(at, want) == 0) continue;
    // A symbol nobody defines cannot be called, so it cannot mix heaps.
    if (at[0] == '\0' && !s.core) continue;
    if (s.core || strict) {
      Log("FAILED: %s: %s resolves to %s, not to the preload %s", program,
          s.name, at[0] != '\0' ? at : "(undefined)", want);
      ++bad;
    }
  }
  if (bad != 0) {
    Log("FAILED: %s: the preload is not in effect for %d allocation "
        "function(s) (LD_PRELOAD=%s)",
        program, bad, getenv("LD_PRELOAD") ? getenv("LD_PRELOAD") : "");
    exit(1);
  }
  Log("elfc-preload-check: OK (%s: %s allocation API from %s)", program,
      strict ? "whole" : "core", want);
}

int StressScale() {
  const char* s = getenv("ELFC_STRESS_SCALE");
  if (s == nullptr || s[0] == '\0') return 1;
  long v = strtol(s, nullptr, 10);
  if (v < 1) v = 1;
  if (v > 1000) v = 1000;
  return static_cast<int>(v);
}

void StartWatchdog(unsigned seconds, const char* what) {
  snprintf(g_watchdog_message, sizeof(g_watchdog_message),
           "WATCHDOG: %s did not finish within %u s (hang or deadlock; "
           "failing instead of hanging)\n",
           what, seconds);
  struct sigaction sa;
  memset(&sa, 0, sizeof(sa));
  sa.sa_handler = OnAlarm;
  sigemptyset(&sa.sa_mask);
  sigaction(SIGALRM, &sa, nullptr);
  alarm(seconds);
}

namespace {

// /proc/self/statm's first two fields, in bytes: the virtual size and the
// resident set size. open/read rather than stdio: no FILE buffer of our own
// in the numbers.
void ReadStatm(size_t* virtual_bytes, size_t* resident_bytes) {
  int fd = open("/proc/self/statm", O_RDONLY | O_CLOEXEC);
  ELFC_CHECK(fd >= 0, "open /proc/self/statm");
  char buf[256];
  ssize_t n = read(fd, buf, sizeof(buf) - 1);
  close(fd);
  ELFC_CHECK(n > 0, "read /proc/self/statm");
  buf[n] = '\0';
  unsigned long size_pages = 0, resident_pages = 0;
  ELFC_CHECK(sscanf(buf, "%lu %lu", &size_pages, &resident_pages) == 2,
             "parse /proc/self/statm: %s", buf);
  const size_t page = static_cast<size_t>(sysconf(_SC_PAGESIZE));
  *virtual_bytes = size_pages * page;
  *resident_bytes = resident_pages * page;
}

}  // namespace

size_t ResidentBytes() {
  size_t v, r;
  ReadStatm(&v, &r);
  return r;
}

size_t VirtualBytes() {
  size_t v, r;
  ReadStatm(&v, &r);
  return v;
}

size_t Rng::LogUniform(size_t lo, size_t hi) {
  // Pick a bit width uniformly, then a value of that width within [lo, hi].
  const int lo_bits = 64 - __builtin_clzll(lo);
  const int hi_bits = 64 - __builtin_clzll(hi);
  const int bits = lo_bits + static_cast<int>(Below(
                                  static_cast<uint64_t>(hi_bits - lo_bits + 1)));
  size_t min = bits == 1 ? 1 : size_t{1} << (bits - 1);
  size_t max = bits >= 64 ? SIZE_MAX : (size_t{1} << bits) - 1;
  if (min < lo) min = lo;
  if (max > hi) max = hi;
  return min + static_cast<size_t>(Below(max - min + 1));
}

size_t MixedSize(Rng& rng, size_t max_large) {
  constexpr size_t kSmall = 1024;
  constexpr size_t kMedium = 64 * 1024;
  const uint64_t r = rng.Below(100);
  if (r < 75 || max_large <= kSmall) {
    return rng.LogUniform(1, max_large < kSmall ? max_large : kSmall);
  }
  if (r < 96 || max_large <= kMedium) {
    return rng.LogUniform(kSmall + 1, max_large < kMedium ? max_large : kMedium);
  }
  return rng.LogUniform(kMedium + 1, max_large);
}

uint64_t PatternKey(const void* p, uint64_t seed) {
  Rng r(reinterpret_cast<uintptr_t>(p) * 0x2545f4914f6cdd1dULL ^ seed);
  return r.Next();
}

namespace {
inline uint64_t PatternWord(uint64_t key, size_t i) {
  uint64_t h = (key ^ (i * 0x9e3779b97f4a7c15ULL)) * 0xd6e8feb86659fd93ULL;
  return h ^ (h >> 32);
}
}  // namespace

void FillPattern(void* p, size_t n, uint64_t key) {
  unsigned char* b = static_cast<unsigned char*>(p);
  size_t words = n / 8;
  for (size_t i = 0; i < words; ++i) {
    const uint64_t w = PatternWord(key, i);
    std::memcpy(b + 8 * i, &w, 8);
  }
  if (n % 8 != 0) {
    const uint64_t w = PatternWord(key, words);
    std::memcpy(b + 8 * words, &w, n % 8);
  }
}

size_t CheckPattern(const void* p, size_t n, uint64_t key) {
  const unsigned char* b = static_cast<const unsigned char*>(p);
  size_t words = n / 8;
  for (size_t i = 0; i < words; ++i) {
    const uint64_t want = PatternWord(key, i);
    uint64_t got;
    std::memcpy(&got, b + 8 * i, 8);
    if (got != want) {
      for (size_t j = 0; j < 8; ++j) {
        if (b[8 * i + j] != reinterpret_cast<const unsigned char*>(&want)[j]) {
          return 8 * i + j;
        }
      }
    }
  }
  if (n % 8 != 0) {
    const uint64_t want = PatternWord(key, words);
    const unsigned char* w = reinterpret_cast<const unsigned char*>(&want);
    for (size_t j = 0; j < n % 8; ++j) {
      if (b[8 * words + j] != w[j]) return 8 * words + j;
    }
  }
  return SIZE_MAX;
}

}  // namespace elfc::test
