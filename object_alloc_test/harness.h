// object_alloc_test harness: drives an allocator through operation sequences
// and checks every object it hands out. No gtest in here: results are values,
// so the harness's own tests can assert that broken allocators are caught
// with the right kind of violation, and the gtest suites
// (object_alloc_test.h) turn them into failures with seeds and replays.
//
// What a run checks, per object (layout size S, alignment A):
//
//   on Allocate()    non-null; aligned to A; not already live
//                    (kDoubleHandOut); [p, p+S) overlaps no live object
//                    (kOverlap); then by model:
//     typed, S >= 9  fresh address: state New (else kUnconstructed);
//                    reused address: New or Valid (a cached object);
//                    Dropped -> kUnconstructed, Invalid -> kInvalidReuse.
//                    New objects are moved to Valid.
//     typed, S < 9   (Bytes<S, A>) fresh address: all zero bytes (else
//                    kUnconstructed); reused: the bytes the test left in it,
//                    or zeros (destroyed and re-constructed), else
//                    kInvalidReuse. Then a fingerprint of S bytes is written.
//     untyped, S >= 9  reused address must not hold a constructed object
//                    (kInvalidReuse); a Valid tester is constructed in it.
//     untyped, S < 9 a fingerprint is written.
//   before Deallocate()  the object is exactly as the test left it: Valid
//                    tester, or intact fingerprint (else kCorrupted). Untyped
//                    testers are then destroyed by the harness (-> Dropped).
//   during the run   destructors the allocator runs report double or bogus
//                    destruction (kBadDestroy, via violation.h).
//   after the run    all objects are freed, the allocator is destroyed, and
//                    every address it ever handed out (S >= 9) is unmapped
//                    or unreadable, Invalid or Dropped — never still New or
//                    Valid (kNotDestroyed: cached objects must be destroyed
//                    with the allocator). The memory is read through the
//                    kernel (CopyMemory), so memory already returned to the
//                    C heap is checked too, without sanitizer reports.
//
// Small sizes (S < 9) cannot carry a tester: for them the checks are
// distinctness, alignment, overlap, construction (zeros) and a fingerprint
// that catches writes into live objects (with probability 1 - 2^-8S).
//
// After a violation the run stops at once. The allocator, its TestEnv and all
// live objects are then abandoned on purpose (kept reachable in a global list
// so LeakSanitizer stays quiet): freeing objects of an allocator that just
// misbehaved (say, one handed out twice) could crash the test binary instead
// of reporting.
#ifndef OBJECT_ALLOC_TEST_HARNESS_H_
#define OBJECT_ALLOC_TEST_HARNESS_H_

#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "object_alloc/interface.h"
#include "object_alloc/object_alloc.h"
#include "object_alloc_test/leaky_alloc.h"
#include "object_alloc_test/violation.h"

namespace object_alloc_test {

// Per-run environment handed to allocator factories. It outlives the
// allocator: it is destroyed only after the after-destruction checks, so an
// allocator may take its backing memory from leaky().
class TestEnv {
 public:
  LeakyAlloc& leaky() { return leaky_; }

 private:
  LeakyAlloc leaky_;
};

using AllocFactory =
    std::function<std::unique_ptr<object_alloc::UntypedObjectAllocInterface>(
        TestEnv&)>;

// One allocator configuration to test: a factory plus what it hands out.
struct AllocCase {
  // Unique within an instantiation, [A-Za-z0-9_] (a gtest parameter name).
  std::string name;
  // The layout every instance reports (checked at the start of each run).
  object_alloc::Layout layout;
  // Allocate() returns constructed carriers (CorruptionTester<S, A> when
  // S >= kMinTesterSize, else Bytes<S, A>); otherwise raw memory.
  bool typed = false;
  bool thread_safe = false;
  // The base case of its size (the smallest alignment) runs the full
  // iteration count; the other alignments of the sweep run a tenth of it.
  bool full_length = true;
  AllocFactory make;
};

// One step of a sequence. kFree frees live[pick % live.size()] (swap-remove;
// skipped when nothing is live).
struct Op {
  enum class Kind : std::uint8_t { kAlloc, kFree };
  Kind kind;
  std::uint32_t pick;
  friend bool operator==(const Op&, const Op&) = default;
};

// Deterministic pseudo-random source (splitmix64): the same seed gives the
// same sequence on every platform and standard library.
class SplitMix64 {
 public:
  explicit SplitMix64(std::uint64_t seed) : state_(seed) {}
  std::uint64_t Next();

 private:
  std::uint64_t state_;
};

// n operations: a free with probability 1/2 while something is live (as in
// the reference), else an allocation.
std::vector<Op> GenerateOps(std::uint64_t seed, std::size_t n);
// `rounds` times: `batch` allocations, then `batch` frees in random order.
std::vector<Op> GenerateFillDrainOps(std::uint64_t seed, std::size_t batch,
                                     std::size_t rounds);
// Rewrites every pick to the index it resolves to, so printed sequences read
// as "a a f1 ..." and replay identically.
std::vector<Op> CanonicalOps(std::span<const Op> ops);
// "a a f1 a f0" ("a" = allocate, "fI" = free live[I]); at most max_ops ops,
// then "... (N more)".
std::string FormatOps(std::span<const Op> ops, std::size_t max_ops = 100);
// The last `n` operations of `ops` in the same notation (indices resolved
// over the whole sequence), preceded by "... " when some are left out.
std::string FormatOpsTail(std::span<const Op> ops, std::size_t n);

struct RunResult {
  // Set when the configuration cannot be run at all (factory returned null,
  // layout differs from the case's, invalid layout).
  std::string setup_error;
  std::optional<Violation> violation;
  // Where the violation was found.
  enum class Phase { kOps, kTeardownFree, kDestroy, kAfterDestroy };
  Phase phase = Phase::kOps;
  // Index of the failing op (Phase::kOps), else the number of ops run.
  std::size_t op_index = 0;
  // For threaded runs: the thread that found it (-1: the main thread).
  int thread = -1;

  bool ok() const { return setup_error.empty() && !violation.has_value(); }
};

std::string_view PhaseName(RunResult::Phase phase);

// Runs `ops` on a fresh allocator from c.make, then frees what is live,
// destroys the allocator and checks what it left behind.
RunResult RunOps(const AllocCase& c, std::span<const Op> ops);

inline constexpr std::uint64_t kDefaultSeed = 20261124;
inline constexpr std::size_t kDefaultThreadedIters = 25000;

struct ThreadedOptions {
  int threads = 4;
  std::size_t ops_per_thread = 25000;
  std::uint64_t seed = 1;
};

// `threads` threads run random operations on one allocator at once. Each
// thread also passes some of its live objects to the others through a shared
// mailbox, so objects are freed on threads that did not allocate them. The
// main thread frees whatever is left (also cross-thread), destroys the
// allocator and checks as RunOps does. Interleavings vary between runs, so a
// threaded failure is reproducible only statistically (the seed fixes each
// thread's choices, not the schedule).
RunResult RunThreaded(const AllocCase& c, const ThreadedOptions& options);

// Shrinks a failing sequence (delta debugging: drop chunks while the same
// kind of violation still occurs) within a budget of replays and replayed
// operations. Returns the shortest failing sequence found, canonicalised.
std::vector<Op> ShrinkFailingOps(const AllocCase& c, std::span<const Op> ops,
                                 ViolationKind kind,
                                 std::size_t max_replays = 200,
                                 std::size_t max_replayed_ops = 2000000);

// Settings read from the environment by the suites:
//   OBJECT_ALLOC_TEST_ITERS    operations per random run (default
//                              DefaultIters()).
//   OBJECT_ALLOC_TEST_THREADED_ITERS
//                              operations per thread in threaded runs
//                              (default 25000).
//   OBJECT_ALLOC_TEST_SEED     base seed (default kDefaultSeed), decimal or
//                              0x-hex. Each test derives its own seed from it
//                              and its name; failures print both.
//   OBJECT_ALLOC_TEST_THREADS  threads in threaded runs (default 4, 2..64).
struct SuiteOptions {
  std::size_t iters;
  std::uint64_t seed;
  int threads;
  std::size_t threaded_iters = kDefaultThreadedIters;
};

// 100000, as in the reference; 20000 under AddressSanitizer and 10000 under
// ThreadSanitizer, whose instrumentation makes every check several times
// slower (the single-threaded runs find nothing more under TSan; the
// threaded runs, which do, keep their count).
std::size_t DefaultIters();
bool UnderSanitizer();

// Parses the variables above; on a malformed value returns nullopt and sets
// *error.
std::optional<SuiteOptions> OptionsFromEnv(std::string* error);

// The seed a test uses: mixes the base seed with the test and case names.
std::uint64_t DeriveSeed(std::uint64_t base, std::string_view test,
                         std::string_view case_name);

}  // namespace object_alloc_test

#endif  // OBJECT_ALLOC_TEST_HARNESS_H_
