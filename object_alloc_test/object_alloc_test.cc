// The suites of object_alloc_test.h: test bodies, case naming, and the
// failure reports (kind, seed, failing operation, shrunk replay).
#include "object_alloc_test/object_alloc_test.h"

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "absl/strings/str_format.h"
#include "gtest/gtest.h"
#include "object_alloc_test/harness.h"
#include "object_alloc_test/types.h"

namespace object_alloc_test {

std::string LayoutName(object_alloc::Layout layout) {
  return absl::StrFormat("Size%dAlign%d", layout.size, layout.align);
}

std::string CaseName(const ::testing::TestParamInfo<AllocCase>& info) {
  return info.param.name;
}

void PrintTo(const AllocCase& c, std::ostream* os) {
  *os << absl::StrFormat("%s{%s, %s}", c.name, c.typed ? "typed" : "untyped",
                         c.thread_safe ? "thread-safe" : "single-threaded");
}

std::vector<AllocCase> ThreadedSubset(std::vector<AllocCase> cases) {
  if (cases.size() <= 1) return cases;
  std::vector<AllocCase> out;
  for (AllocCase& c : cases) {
    if (!c.full_length) continue;
    if (std::find(std::begin(kThreadedSizes), std::end(kThreadedSizes),
                  c.layout.size) == std::end(kThreadedSizes)) {
      continue;
    }
    out.push_back(std::move(c));
  }
  return out;
}

namespace internal {
namespace {

// A typed allocator behind the untyped interface (see TypedAllocOps).
class ErasedTyped final : public object_alloc::UntypedObjectAllocInterface {
 public:
  ErasedTyped(MadeTyped made, object_alloc::Layout layout, bool thread_safe)
      : made_(made), layout_(layout), thread_safe_(thread_safe) {}
  ErasedTyped(const ErasedTyped&) = delete;
  ErasedTyped& operator=(const ErasedTyped&) = delete;
  ~ErasedTyped() override { made_.ops->destroy(made_.alloc); }

  object_alloc::Layout layout() const noexcept override { return layout_; }
  void* Allocate() noexcept override {
    return made_.ops->allocate(made_.alloc);
  }
  void Deallocate(void* p) noexcept override {
    made_.ops->deallocate(made_.alloc, p);
  }
  bool thread_safe() const noexcept override { return thread_safe_; }

 private:
  const MadeTyped made_;
  const object_alloc::Layout layout_;
  const bool thread_safe_;
};

}  // namespace

void AddTypedCase(std::vector<AllocCase>& out, std::size_t size,
                  std::size_t align, bool thread_safe, MakeTypedFn make) {
  AllocCase c;
  c.layout = object_alloc::Layout{size, align};
  c.name = LayoutName(c.layout);
  c.typed = true;
  c.thread_safe = thread_safe;
  c.full_length = (align == 1);  // Every size's smallest valid alignment.
  c.make = [make, layout = c.layout, thread_safe](TestEnv& env)
      -> std::unique_ptr<object_alloc::UntypedObjectAllocInterface> {
    const MadeTyped made = make(env);
    if (made.alloc == nullptr) return nullptr;
    return std::make_unique<ErasedTyped>(made, layout, thread_safe);
  };
  out.push_back(std::move(c));
}

}  // namespace internal

namespace {

std::string CurrentTestName() {
  const ::testing::TestInfo* info =
      ::testing::UnitTest::GetInstance()->current_test_info();
  return info == nullptr
             ? std::string("?")
             : absl::StrFormat("%s.%s", info->test_suite_name(), info->name());
}

std::string SeedLine(const SuiteOptions& o, std::uint64_t seed,
                     bool threaded = false) {
  return absl::StrFormat(
      "  seed: %#x, derived from base seed %d; rerun with "
      "OBJECT_ALLOC_TEST_SEED=%d %s=%d%s --gtest_filter='%s'\n",
      seed, o.seed, o.seed,
      threaded ? "OBJECT_ALLOC_TEST_THREADED_ITERS" : "OBJECT_ALLOC_TEST_ITERS",
      threaded ? o.threaded_iters : o.iters,
      threaded ? absl::StrFormat(" OBJECT_ALLOC_TEST_THREADS=%d", o.threads)
               : std::string(),
      CurrentTestName());
}

std::string ViolationLine(const AllocCase& c, const RunResult& r) {
  return absl::StrFormat("%s violation in %s, while %s: %s\n",
                         KindName(r.violation->kind), c.name,
                         PhaseName(r.phase), r.violation->message);
}

// The report for a failed sequential run: where it failed, the operations
// just before, and the shortest failing sequence the shrinker finds (which
// is replayed once more to confirm it reproduces).
std::string SequenceReport(const AllocCase& c, const SuiteOptions& o,
                           std::uint64_t seed, std::span<const Op> ops,
                           const RunResult& r) {
  std::string out = ViolationLine(c, r);
  const std::size_t failing =
      r.phase == RunResult::Phase::kOps ? r.op_index + 1 : ops.size();
  absl::StrAppendFormat(&out, "  at operation %d of %d%s\n", failing,
                        ops.size(),
                        r.phase == RunResult::Phase::kOps
                            ? ""
                            : " (all operations had run)");
  out += SeedLine(o, seed);
  const std::span<const Op> prefix = ops.subspan(0, failing);
  absl::StrAppendFormat(&out,
                        "  last operations up to the failure (a = allocate, "
                        "fI = free live[I]): %s\n",
                        FormatOpsTail(prefix, 16));
  const std::vector<Op> shrunk =
      ShrinkFailingOps(c, prefix, r.violation->kind, 200, 500000);
  const RunResult again = RunOps(c, shrunk);
  if (again.violation && again.violation->kind == r.violation->kind) {
    absl::StrAppendFormat(&out,
                          "  shrunk failing sequence (%d operations; "
                          "replays the same kind of violation): %s\n",
                          shrunk.size(), FormatOps(shrunk, 200));
  } else {
    out += "  (the failure did not reproduce when replayed: the allocator "
           "is not deterministic)\n";
  }
  return out;
}

// Every operation reads or writes a whole object, so for objects much larger
// than the 47 sizes (multi-page layouts of page allocators) the operation
// counts are capped by a budget of object bytes, keeping a case within
// seconds: min(n, max(1000, budget / size)). No effect up to 8192 bytes.
constexpr std::size_t kRandomOpsByteBudget = std::size_t{2} << 30;
constexpr std::size_t kThreadedByteBudget = std::size_t{512} << 20;

std::size_t BoundByBytes(std::size_t n, std::size_t size, std::size_t budget) {
  return std::min(n, std::max<std::size_t>(1000, budget / size));
}

std::optional<SuiteOptions> Options() {
  std::string error;
  std::optional<SuiteOptions> o = OptionsFromEnv(&error);
  if (!o) ADD_FAILURE() << error;
  return o;
}

}  // namespace

RunResult CheckSequence(const AllocCase& c, const SuiteOptions& options,
                        std::string_view test, std::span<const Op> ops,
                        std::uint64_t seed) {
  ::testing::Test::RecordProperty("seed", absl::StrFormat("%#x", seed));
  const RunResult r = RunOps(c, ops);
  if (!r.setup_error.empty()) {
    ADD_FAILURE() << c.name << ": " << r.setup_error;
  } else if (r.violation) {
    ADD_FAILURE() << test << ": " << SequenceReport(c, options, seed, ops, r);
  }
  return r;
}

RunResult CheckThreaded(const AllocCase& c, const SuiteOptions& options,
                        const ThreadedOptions& t) {
  if (!c.thread_safe) {
    ADD_FAILURE() << c.name << ": the threaded suite is for allocators that "
                  << "declare kThreadSafe = true; this one does not";
    return RunResult{};
  }
  ::testing::Test::RecordProperty("seed", absl::StrFormat("%#x", t.seed));
  const RunResult r = RunThreaded(c, t);
  if (!r.setup_error.empty()) {
    ADD_FAILURE() << c.name << ": " << r.setup_error;
  } else if (r.violation) {
    ADD_FAILURE() << ViolationLine(c, r)
                  << absl::StrFormat(
                         "  found by %s at its operation %d of %d "
                         "(%d threads)\n",
                         r.thread < 0 ? std::string("the main thread")
                                      : absl::StrFormat("thread %d", r.thread),
                         r.op_index, t.ops_per_thread, t.threads)
                  << SeedLine(options, t.seed, /*threaded=*/true)
                  << "  (thread interleavings differ between runs: the seed "
                     "fixes each thread's choices, not the schedule)\n";
  }
  return r;
}

TEST_P(ObjectAllocTest, RandomOps) {
  const AllocCase& c = GetParam();
  const std::optional<SuiteOptions> o = Options();
  ASSERT_TRUE(o.has_value());
  // The base alignment of each size runs the full count; the rest of the
  // alignment sweep a tenth (at least 1000, or the full count if smaller).
  const std::size_t n = BoundByBytes(
      c.full_length
          ? o->iters
          : std::max(o->iters / 10, std::min<std::size_t>(o->iters, 1000)),
      c.layout.size, kRandomOpsByteBudget);
  const std::uint64_t seed = DeriveSeed(o->seed, "RandomOps", c.name);
  CheckSequence(c, *o, "RandomOps", GenerateOps(seed, n), seed);
}

TEST_P(ObjectAllocTest, FillAndDrain) {
  const AllocCase& c = GetParam();
  const std::optional<SuiteOptions> o = Options();
  ASSERT_TRUE(o.has_value());
  // Up to 512 objects live at once, bounded by 256 KiB of objects.
  const std::size_t batch =
      std::clamp<std::size_t>((256 << 10) / c.layout.size, 16, 512);
  const std::uint64_t seed = DeriveSeed(o->seed, "FillAndDrain", c.name);
  CheckSequence(c, *o, "FillAndDrain", GenerateFillDrainOps(seed, batch, 4),
                seed);
}

TEST_P(ThreadedObjectAllocTest, RandomOpsAcrossThreads) {
  const AllocCase& c = GetParam();
  const std::optional<SuiteOptions> o = Options();
  ASSERT_TRUE(o.has_value());
  ThreadedOptions t;
  t.threads = o->threads;
  t.ops_per_thread =
      BoundByBytes(o->threaded_iters, c.layout.size, kThreadedByteBudget);
  t.seed = DeriveSeed(o->seed, "RandomOpsAcrossThreads", c.name);
  CheckThreaded(c, *o, t);
}

// Packages instantiate the suites they need; not instantiating one is fine.
GTEST_ALLOW_UNINSTANTIATED_PARAMETERIZED_TEST(ObjectAllocTest);
GTEST_ALLOW_UNINSTANTIATED_PARAMETERIZED_TEST(ThreadedObjectAllocTest);

}  // namespace object_alloc_test
