// elfc/preload_test_util.h: the small helper every elfc LD_PRELOAD test program
// links.
//
// The test programs in this package (stress_test, thread_churn_test, ...) are
// plain C++ programs that use only the standard C/C++ allocation API: they
// know nothing about elfc. They are run by preload_test.sh with
// LD_PRELOAD=libelfc.so, and a test that silently ran on glibc's malloc
// because the preload did not take would prove nothing. So every program
// starts with CheckPreload(), which asks the dynamic linker where the
// allocation functions of this process resolve to (dlsym(RTLD_DEFAULT, ...)
// finds the definition every PLT call in the process was bound to, dladdr()
// names the object that holds it) and compares that with the library the
// runner expected (environment variable ELFC_PRELOAD_EXPECT, set by
// preload_test.sh):
//
//   ELFC_PRELOAD_EXPECT   meaning
//   -------------------   -------------------------------------------------
//   unset                 hand run: report where malloc lives, check nothing
//   none                  malloc must still be glibc's (the dlopen test)
//   /path/to/lib.so       the core API (malloc, free, calloc, realloc,
//                         posix_memalign, aligned_alloc, malloc_usable_size)
//                         must resolve into that file
//
// With ELFC_PRELOAD_STRICT=1 (what the Bazel tests set for libelfc.so) every
// other allocation entry point the process can see (memalign, valloc,
// pvalloc, reallocarray, the C++ operator new/delete forms) must come from
// the preload as well: one left to glibc would hand glibc blocks to the
// preload's free (or the other way round). Peers such as jemalloc do not
// export all of them, which is why hand runs against peers leave it off.
//
// On success the check writes "elfc-preload-check: OK ..." to stderr; the
// runner fails a test whose output lacks that line, so a program that forgot
// to call the check cannot pass either.
//
// The rest are the small pieces the programs share: a CHECK that reports and
// aborts, the stress scale (ELFC_STRESS_SCALE), a watchdog that turns a hang
// into a clean failure, resident-set size from /proc/self/statm, a PRNG and
// an address-bound fill pattern for blocks.
#ifndef ELFC_PRELOAD_TEST_UTIL_H_
#define ELFC_PRELOAD_TEST_UTIL_H_

#include <cstddef>
#include <cstdint>

namespace elfc::test {

// Verifies the allocator of this process as described above; prints
// "elfc-preload-check: OK ..." or reports and exits with status 1.
// `program` names the caller in messages.
void CheckPreload(const char* program);

// Reports "FAILED: file:line: CHECK(cond) failed: <message>" on stderr
// (with write(2), so it works in forked children and with a broken heap as
// far as formatting allows) and aborts.
[[noreturn]] void Fail(const char* file, int line, const char* cond,
                       const char* fmt, ...)
    __attribute__((format(printf, 4, 5)));

// Writes a formatted line to stderr with one write(2) (no stdio buffering:
// lines from threads and forked children do not interleave or repeat).
void Log(const char* fmt, ...) __attribute__((format(printf, 1, 2)));

// ELFC_STRESS_SCALE from the environment (default 1, clamped to [1, 1000]).
// Every program multiplies its amount of work by it, so the default run of
// the whole battery stays well under a minute while
// `--test_env=ELFC_STRESS_SCALE=10` gives a long soak.
int StressScale();

// Arms alarm(seconds); if it fires, writes "WATCHDOG: <what> ..." and exits
// with status 124 (like timeout(1)). A hang in the allocator (a deadlock
// after fork, a lock never released at thread exit) then fails the test with
// a message instead of hanging CI. alarm() is per process: forked children
// start without it and arm their own.
void StartWatchdog(unsigned seconds, const char* what);

// Resident set size of this process in bytes (/proc/self/statm, field 2).
std::size_t ResidentBytes();
// Virtual size of this process in bytes (/proc/self/statm, field 1): the
// address space RLIMIT_AS counts.
std::size_t VirtualBytes();

// SplitMix64: a tiny deterministic PRNG (no allocation, one word of state).
class Rng {
 public:
  explicit Rng(std::uint64_t seed) : state_(seed) {}
  std::uint64_t Next() {
    std::uint64_t z = (state_ += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
  }
  // Uniform in [0, n), n > 0.
  std::uint64_t Below(std::uint64_t n) { return Next() % n; }
  // Log-uniform in [lo, hi], 1 <= lo <= hi: every power-of-two range between
  // lo and hi is equally likely, so small sizes are common and big ones occur.
  std::size_t LogUniform(std::size_t lo, std::size_t hi);

 private:
  std::uint64_t state_;
};

// A size for a "typical program" mix: mostly small (1 B .. 1 KiB), some
// medium (1 KiB .. 64 KiB), a few large (64 KiB .. `max_large`); never more
// than `max_large` (>= 1).
std::size_t MixedSize(Rng& rng, std::size_t max_large);

// The key of a block's fill pattern: a hash of the address the block had
// when it was filled and a per-block seed. Two live blocks that overlap (or
// one block handed out twice) cannot both keep their patterns.
std::uint64_t PatternKey(const void* p, std::uint64_t seed);

// Fills [p, p + n) with the pattern of `key`.
void FillPattern(void* p, std::size_t n, std::uint64_t key);

// Returns the offset of the first byte of [p, p + n) that differs from the
// pattern of `key`, or SIZE_MAX if all match.
std::size_t CheckPattern(const void* p, std::size_t n, std::uint64_t key);

}  // namespace elfc::test

// CHECK(cond, "printf-style message", args...) — the message is mandatory
// (use "" for none): failures in these programs are read in CI logs, where
// the values matter.
#define ELFC_CHECK(cond, ...)                                        \
  do {                                                               \
    if (!(cond)) {                                                   \
      ::elfc::test::Fail(__FILE__, __LINE__, #cond, __VA_ARGS__);    \
    }                                                                \
  } while (0)

#endif  // ELFC_PRELOAD_TEST_UTIL_H_
