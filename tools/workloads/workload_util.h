// Shared plumbing for the allocator workload programs (threadtest, shbench,
// prodcons, larson, pair_latency): `--name=value` flags, a deterministic PRNG,
// the run budget (a fixed number of iterations or a wall-clock duration),
// starting worker threads together and timing them, block tagging to catch
// an allocator that hands out overlapping blocks, and the one machine-readable
// RESULT line that tools/harness.py parses.
//
// The programs are run under LD_PRELOAD with other mallocs (elfc, jemalloc,
// tcmalloc, mimalloc), so they use only the standard C/C++ allocation API and
// link no allocator. Everything here that allocates (flag parsing, the thread
// vector, std::function) does so before the timed section starts.

#ifndef TOOLS_WORKLOADS_WORKLOAD_UTIL_H_
#define TOOLS_WORKLOADS_WORKLOAD_UTIL_H_

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <map>
#include <string>
#include <string_view>
#include <vector>

namespace workloads {

// Prints "<program>: <message>" to stderr and exits with status 2 (bad usage)
// or aborts (a broken allocator: wrong contents, nullptr).
[[noreturn]] void Usage(const char* fmt, ...) __attribute__((format(printf, 1, 2)));
[[noreturn]] void Fail(const char* fmt, ...) __attribute__((format(printf, 1, 2)));

// `--name=value` command-line flags. Each getter declares a flag (with its
// default and help text, for --help); Done() then rejects any flag that no
// getter asked for, so a typo never silently runs the default workload.
class Flags {
 public:
  Flags(int argc, char** argv, std::string_view description);

  int64_t Int(const std::string& name, int64_t def, const std::string& help);
  double Double(const std::string& name, double def, const std::string& help);
  std::string String(const std::string& name, const std::string& def,
                     const std::string& help);
  // Comma-separated sizes, e.g. "16,64,1024".
  std::vector<size_t> SizeList(const std::string& name, const std::string& def,
                               const std::string& help);

  // Handles --help (prints the flags and exits 0) and unknown flags (exit 2).
  void Done();

 private:
  const std::string* Find(const std::string& name, const std::string& def,
                          const std::string& help);

  std::string program_;
  std::string description_;
  std::map<std::string, std::string> given_;
  std::map<std::string, bool> used_;
  std::string help_text_;
  bool want_help_ = false;
};

// xorshift64* seeded through splitmix64: fast, deterministic, and good
// enough to pick sizes and slots. Stream `stream` of seed `seed` is
// independent of the others (each thread takes its own stream).
class Rng {
 public:
  Rng(uint64_t seed, uint64_t stream);
  uint64_t Next() {
    state_ ^= state_ >> 12;
    state_ ^= state_ << 25;
    state_ ^= state_ >> 27;
    return state_ * 0x2545F4914F6CDD1DULL;
  }
  // Uniform in [lo, hi].
  size_t Uniform(size_t lo, size_t hi) {
    return lo + static_cast<size_t>(Next() % (hi - lo + 1));
  }
  // Log-uniform in [lo, hi]: every power-of-two range equally likely, so
  // small blocks are drawn far more often than large ones.
  size_t LogUniform(size_t lo, size_t hi);
  bool Coin() { return (Next() >> 63) != 0; }

 private:
  uint64_t state_;
};

// Keeps the compiler from proving a block unused (GCC may delete a
// malloc/free or new/delete pair whose block never escapes).
inline void Escape(const void* p) { asm volatile("" : : "g"(p) : "memory"); }

// Writes a tag into the first and last byte of a block (committing its first
// and last page); CheckTag() before the free aborts if another block
// overlapped it. Cheap enough not to hide the allocator's cost.
inline unsigned char TagFor(uint64_t x) {
  return static_cast<unsigned char>((x * 0x9E3779B97F4A7C15ULL) >> 56);
}
inline void SetTag(void* p, size_t n, unsigned char tag) {
  auto* c = static_cast<volatile unsigned char*>(p);
  c[0] = tag;
  c[n - 1] = tag;
}
void CheckTagFailed(const void* p, size_t n, unsigned char tag);
inline void CheckTag(const void* p, size_t n, unsigned char tag) {
  auto* c = static_cast<const volatile unsigned char*>(p);
  if (c[0] != tag || c[n - 1] != tag) CheckTagFailed(p, n, tag);
}

// How long a run lasts: `iterations` units of work (each program says what a
// unit is), or, when seconds > 0, until the main thread raises the stop flag
// after that many seconds (workers check it between units).
class Budget {
 public:
  Budget(uint64_t iterations, double seconds)
      : iterations_(iterations), seconds_(seconds) {}
  // True while unit number `done` (0-based) should still run.
  bool Continue(uint64_t done) const {
    return timed() ? !stop_.load(std::memory_order_relaxed) : done < iterations_;
  }
  bool timed() const { return seconds_ > 0; }
  double seconds() const { return seconds_; }
  uint64_t iterations() const { return iterations_; }
  void Stop() { stop_.store(true, std::memory_order_relaxed); }
  bool stopped() const { return stop_.load(std::memory_order_relaxed); }

 private:
  uint64_t iterations_;
  double seconds_;
  std::atomic<bool> stop_{false};
};

// Reads --iterations=N (default `default_iterations`; `unit` says what one
// iteration is, for --help) and --seconds=S (0: count iterations).
Budget ReadBudget(Flags& flags, uint64_t default_iterations,
                  const std::string& unit);

// Block sizes: --min_size=A and --max_size=B (bytes, 1 <= A <= B), or
// --size=S for both.
struct SizeRange {
  size_t min;
  size_t max;
};
SizeRange ReadSizes(Flags& flags, size_t default_min, size_t default_max);

// --threads=N (>= 1) and --seed=N.
int ReadThreads(Flags& flags, int default_threads, const std::string& help);
uint64_t ReadSeed(Flags& flags);

// Starts `n` threads running body(i), releases them together, and returns
// the wall time from the release until the last one has finished (and then
// `wait_more`, if given, has returned: for work the threads handed on to
// threads of their own). In timed mode the calling thread raises the
// budget's stop flag after its duration.
double RunThreads(int n, Budget& budget, const std::function<void(int)>& body,
                  const std::function<void()>& wait_more = nullptr);

// Runs body(i): every worker's timed work happens inside this call, and only
// there, so `valgrind --tool=callgrind --collect-atstart=no
// --toggle-collect=workloads::RunBody*` (tools/harness.py --instructions)
// counts the workload's instructions without thread start-up or the
// spinning release.
__attribute__((noinline)) void RunBody(const std::function<void(int)>& body,
                                       int i);

// A per-thread counter on its own cache line (no false sharing in the
// timed loops).
struct alignas(64) Counter {
  uint64_t value = 0;
};
uint64_t Sum(const std::vector<Counter>& counters);

// Prints the one result line:
//   RESULT workload=NAME threads=T ops=N seconds=S ops_per_sec=R [extra]
// `extra` is more key=value pairs (parameters, per-size figures).
void PrintResult(const char* workload, int threads, uint64_t ops,
                 double seconds, const std::string& extra);

// "key=value" with %g formatting, for PrintResult's extra fields.
std::string Field(const char* key, double value);

}  // namespace workloads

#endif  // TOOLS_WORKLOADS_WORKLOAD_UTIL_H_
