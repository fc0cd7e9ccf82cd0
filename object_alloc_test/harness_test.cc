// The tester tested. Every deliberately broken allocator of broken_alloc.h is
// caught with the right kind of violation (and, through the suites' check
// functions, fails a gtest with a report naming the kind, the seed, the
// failing operation and a shrunk replay); the correct allocators pass; the
// limits documented for small objects hold; sequences are reproducible from
// their seed; shrinking finds short sequences; the environment variables are
// parsed strictly.
#include "object_alloc_test/harness.h"

#include <sys/mman.h>
#include <unistd.h>

#include <cstdint>
#include <cstdlib>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "gtest/gtest-spi.h"
#include "gtest/gtest.h"
#include "object_alloc/adaptors.h"
#include "object_alloc/heap_alloc.h"
#include "object_alloc/interface.h"
#include "object_alloc/object_alloc.h"
#include "object_alloc_test/broken_alloc.h"
#include "object_alloc_test/corruption_tester.h"
#include "object_alloc_test/object_alloc_test.h"
#include "object_alloc_test/types.h"
#include "object_alloc_test/violation.h"

namespace object_alloc_test {
namespace {

using object_alloc::Layout;
using object_alloc::UntypedObjectAllocInterface;

constexpr std::uint64_t kSeed = 0x5eed;

// A typed case over BrokenObjectAlloc<T> (through the object_alloc adaptors,
// which is also how a typed allocator is used untyped elsewhere).
template <class T>
AllocCase BrokenTypedCase(Defect defect, int period = 5) {
  AllocCase c;
  c.layout = object_alloc::LayoutOf<T>();
  c.name = LayoutName(c.layout) + std::string(DefectName(defect));
  c.typed = true;
  c.thread_safe = true;
  c.make = [defect, period](TestEnv& env)
      -> std::unique_ptr<UntypedObjectAllocInterface> {
    return std::make_unique<object_alloc::UntypedObjectAllocWrapper<
        object_alloc::TypedAsUntyped<BrokenObjectAlloc<T>>>>(
        std::in_place, std::in_place, env.leaky(), defect, period);
  };
  return c;
}

AllocCase BrokenUntypedCase(Layout layout, Defect defect, int period = 5) {
  AllocCase c;
  c.layout = layout;
  c.name = LayoutName(layout) + std::string(DefectName(defect));
  c.typed = false;
  c.thread_safe = true;
  c.make = [layout, defect, period](TestEnv& env)
      -> std::unique_ptr<UntypedObjectAllocInterface> {
    return std::make_unique<
        object_alloc::UntypedObjectAllocWrapper<BrokenUntypedAlloc>>(
        std::in_place, env.leaky(), layout, defect, period);
  };
  return c;
}

SuiteOptions TestOptions() {
  return SuiteOptions{2000, kDefaultSeed, 4, 1000};
}

// --- Broken allocators are caught with the right kind. ---------------------

struct Expectation {
  Defect defect;
  // nullopt: the run must pass (a correct allocator, or a defect that is
  // documented as undetectable for this kind of object).
  std::optional<ViolationKind> kind;
  std::optional<RunResult::Phase> phase = std::nullopt;
};

void PrintTo(const Expectation& e, std::ostream* os) {
  *os << DefectName(e.defect) << " -> "
      << (e.kind ? KindName(*e.kind) : std::string_view("pass"));
}

// Runs the case through RunOps (the kind must match) and through
// CheckSequence (it must fail the current test exactly when a violation is
// expected, with a report that names the kind, the seed and a replay).
void ExpectCaught(const AllocCase& c, const Expectation& e) {
  const std::vector<Op> ops = GenerateOps(kSeed, 2000);
  const RunResult r = RunOps(c, ops);
  ASSERT_TRUE(r.setup_error.empty()) << r.setup_error;
  if (!e.kind) {
    EXPECT_FALSE(r.violation.has_value())
        << KindName(r.violation->kind) << ": " << r.violation->message;
    return;
  }
  ASSERT_TRUE(r.violation.has_value())
      << "defect " << DefectName(e.defect) << " was not caught";
  EXPECT_EQ(KindName(r.violation->kind), KindName(*e.kind))
      << r.violation->message;
  if (e.phase) {
    EXPECT_EQ(PhaseName(r.phase), PhaseName(*e.phase));
  }

  ::testing::TestPartResultArray failures;
  {
    ::testing::ScopedFakeTestPartResultReporter reporter(
        ::testing::ScopedFakeTestPartResultReporter::INTERCEPT_ONLY_CURRENT_THREAD,
        &failures);
    CheckSequence(c, TestOptions(), "RandomOps", ops, kSeed);
  }
  ASSERT_EQ(failures.size(), 1);
  const std::string report = failures.GetTestPartResult(0).message();
  EXPECT_TRUE(failures.GetTestPartResult(0).nonfatally_failed());
  for (const std::string& needle :
       {std::string(KindName(*e.kind)) + " violation", std::string("seed: 0x"),
        std::string("OBJECT_ALLOC_TEST_SEED=20261124"),
        std::string("at operation"), std::string("last operations"),
        std::string("shrunk failing sequence")}) {
    EXPECT_NE(report.find(needle), std::string::npos)
        << "missing \"" << needle << "\" in:\n"
        << report;
  }
}

std::string DefectTestName(const ::testing::TestParamInfo<Expectation>& p) {
  return std::string(DefectName(p.param.defect));
}

class BrokenTypedTest : public ::testing::TestWithParam<Expectation> {};

TEST_P(BrokenTypedTest, TesterObjects) {
  ExpectCaught(BrokenTypedCase<CorruptionTester<64, 8>>(GetParam().defect),
               GetParam());
}

INSTANTIATE_TEST_SUITE_P(
    Defects, BrokenTypedTest,
    ::testing::Values(
        Expectation{Defect::kNone, std::nullopt},
        Expectation{Defect::kDoubleHandOut, ViolationKind::kDoubleHandOut},
        Expectation{Defect::kOverlap, ViolationKind::kOverlap},
        Expectation{Defect::kCorruptLive, ViolationKind::kCorrupted},
        Expectation{Defect::kSkipConstruction, ViolationKind::kUnconstructed},
        Expectation{Defect::kHandOutDestroyed, ViolationKind::kUnconstructed},
        Expectation{Defect::kCorruptCached, ViolationKind::kInvalidReuse},
        Expectation{Defect::kNeverDestroyCached, ViolationKind::kNotDestroyed,
                    RunResult::Phase::kAfterDestroy},
        Expectation{Defect::kDoubleDestroy, ViolationKind::kBadDestroy,
                    RunResult::Phase::kDestroy},
        Expectation{Defect::kMisalign, ViolationKind::kMisaligned},
        Expectation{Defect::kReturnNull, ViolationKind::kNullAllocation}),
    DefectTestName);

// Objects below 9 bytes carry no tester, only a fingerprint: these are the
// documented limits (destruction is not observable for them).
class BrokenSmallTypedTest : public ::testing::TestWithParam<Expectation> {};

TEST_P(BrokenSmallTypedTest, ByteObjects) {
  ExpectCaught(BrokenTypedCase<Bytes<4, 2>>(GetParam().defect), GetParam());
}

INSTANTIATE_TEST_SUITE_P(
    Defects, BrokenSmallTypedTest,
    ::testing::Values(
        Expectation{Defect::kNone, std::nullopt},
        Expectation{Defect::kDoubleHandOut, ViolationKind::kDoubleHandOut},
        Expectation{Defect::kOverlap, ViolationKind::kOverlap},
        Expectation{Defect::kCorruptLive, ViolationKind::kCorrupted},
        Expectation{Defect::kSkipConstruction, ViolationKind::kUnconstructed},
        Expectation{Defect::kCorruptCached, ViolationKind::kInvalidReuse},
        Expectation{Defect::kMisalign, ViolationKind::kMisaligned},
        Expectation{Defect::kReturnNull, ViolationKind::kNullAllocation},
        // Not observable without a destructor that checks:
        Expectation{Defect::kHandOutDestroyed, std::nullopt},
        Expectation{Defect::kNeverDestroyCached, std::nullopt},
        Expectation{Defect::kDoubleDestroy, std::nullopt}),
    DefectTestName);

class BrokenUntypedTest : public ::testing::TestWithParam<Expectation> {};

TEST_P(BrokenUntypedTest, TesterObjects) {
  ExpectCaught(BrokenUntypedCase(Layout{64, 8}, GetParam().defect),
               GetParam());
}

TEST_P(BrokenUntypedTest, ByteObjects) {
  ExpectCaught(BrokenUntypedCase(Layout{4, 2}, GetParam().defect),
               GetParam());
}

INSTANTIATE_TEST_SUITE_P(
    Defects, BrokenUntypedTest,
    ::testing::Values(
        Expectation{Defect::kNone, std::nullopt},
        Expectation{Defect::kDoubleHandOut, ViolationKind::kDoubleHandOut},
        Expectation{Defect::kOverlap, ViolationKind::kOverlap},
        Expectation{Defect::kCorruptLive, ViolationKind::kCorrupted},
        Expectation{Defect::kMisalign, ViolationKind::kMisaligned},
        Expectation{Defect::kReturnNull, ViolationKind::kNullAllocation}),
    DefectTestName);

TEST(BrokenAllocTest, OverlapAtEveryAlignmentOfASize) {
  // The overlapping slot is half an object in, rounded to the alignment.
  for (std::size_t align : ValidAligns(96, 1, 4096)) {
    const RunResult r = RunOps(BrokenUntypedCase(Layout{96, align},
                                                 Defect::kOverlap),
                               GenerateOps(kSeed, 200));
    ASSERT_TRUE(r.violation.has_value()) << "align " << align;
    EXPECT_EQ(r.violation->kind, ViolationKind::kOverlap) << "align " << align;
  }
}

// --- Reproducibility and shrinking. -----------------------------------------

TEST(SequenceTest, SameSeedSameSequence) {
  EXPECT_EQ(GenerateOps(42, 10000), GenerateOps(42, 10000));
  EXPECT_NE(GenerateOps(42, 10000), GenerateOps(43, 10000));
  EXPECT_EQ(GenerateFillDrainOps(42, 32, 3), GenerateFillDrainOps(42, 32, 3));
}

TEST(SequenceTest, RandomSequencesFreeOnlyWhatIsLive) {
  const std::vector<Op> ops = GenerateOps(7, 100000);
  std::size_t live = 0, frees = 0;
  for (const Op& op : ops) {
    if (op.kind == Op::Kind::kAlloc) {
      ++live;
    } else {
      ASSERT_GT(live, 0u);
      --live;
      ++frees;
    }
  }
  // Half of the operations free when something is live: about 45% overall.
  EXPECT_GT(frees, 40000u);
  EXPECT_LT(frees, 50000u);
  EXPECT_EQ(CanonicalOps(ops).size(), ops.size()) << "no no-op frees";
}

TEST(SequenceTest, FillDrainShape) {
  const std::vector<Op> ops = GenerateFillDrainOps(1, 10, 3);
  ASSERT_EQ(ops.size(), 60u);
  for (std::size_t i = 0; i < ops.size(); ++i) {
    EXPECT_EQ(ops[i].kind,
              (i % 20) < 10 ? Op::Kind::kAlloc : Op::Kind::kFree);
  }
}

TEST(SequenceTest, CanonicalFormResolvesPicksAndDropsNoOps) {
  const std::vector<Op> ops = {
      {Op::Kind::kFree, 3},  // Nothing live: dropped.
      {Op::Kind::kAlloc, 0}, {Op::Kind::kAlloc, 0}, {Op::Kind::kAlloc, 0},
      {Op::Kind::kFree, 7},  // 7 % 3 = 1.
      {Op::Kind::kFree, 9},  // 9 % 2 = 1.
      {Op::Kind::kFree, 5},  // 5 % 1 = 0.
      {Op::Kind::kFree, 5},  // Nothing live: dropped.
  };
  EXPECT_EQ(FormatOps(ops), "a a a f1 f1 f0");
  EXPECT_EQ(FormatOps(ops, 2), "a a ... (4 more)");
  EXPECT_EQ(FormatOpsTail(ops, 2), "... f1 f0");
  EXPECT_EQ(FormatOps(CanonicalOps(ops)), FormatOps(ops));
}

TEST(SequenceTest, DerivedSeedsDependOnEverything) {
  EXPECT_EQ(DeriveSeed(1, "RandomOps", "Size8Align8"),
            DeriveSeed(1, "RandomOps", "Size8Align8"));
  EXPECT_NE(DeriveSeed(1, "RandomOps", "Size8Align8"),
            DeriveSeed(2, "RandomOps", "Size8Align8"));
  EXPECT_NE(DeriveSeed(1, "RandomOps", "Size8Align8"),
            DeriveSeed(1, "FillAndDrain", "Size8Align8"));
  EXPECT_NE(DeriveSeed(1, "RandomOps", "Size8Align8"),
            DeriveSeed(1, "RandomOps", "Size8Align4"));
}

TEST(SequenceTest, FailuresReproduceFromTheSeed) {
  const AllocCase c =
      BrokenTypedCase<CorruptionTester<64, 8>>(Defect::kCorruptLive, 17);
  const std::vector<Op> ops = GenerateOps(kSeed, 5000);
  const RunResult a = RunOps(c, ops);
  const RunResult b = RunOps(c, ops);
  ASSERT_TRUE(a.violation.has_value());
  ASSERT_TRUE(b.violation.has_value());
  EXPECT_EQ(a.violation->kind, b.violation->kind);
  EXPECT_EQ(a.op_index, b.op_index);
}

TEST(ShrinkTest, FindsAShortFailingSequence) {
  struct {
    AllocCase c;
    std::size_t max_len;
  } cases[] = {
      // Five allocations: the fifth hands out the fourth again.
      {BrokenTypedCase<CorruptionTester<64, 8>>(Defect::kDoubleHandOut), 5},
      // Five allocations (the fifth corrupts the first), then free it.
      {BrokenTypedCase<CorruptionTester<64, 8>>(Defect::kCorruptLive), 6},
      {BrokenUntypedCase(Layout{24, 8}, Defect::kOverlap), 5},
  };
  for (const auto& [c, max_len] : cases) {
    const std::vector<Op> ops = GenerateOps(kSeed, 3000);
    const RunResult r = RunOps(c, ops);
    ASSERT_TRUE(r.violation.has_value()) << c.name;
    const std::vector<Op> shrunk = ShrinkFailingOps(
        c, std::span<const Op>(ops).subspan(0, r.op_index + 1),
        r.violation->kind);
    EXPECT_LE(shrunk.size(), max_len) << c.name << ": " << FormatOps(shrunk);
    const RunResult again = RunOps(c, shrunk);
    ASSERT_TRUE(again.violation.has_value()) << c.name;
    EXPECT_EQ(again.violation->kind, r.violation->kind) << c.name;
  }
}

TEST(ShrinkTest, RespectsItsBudget) {
  const AllocCase c =
      BrokenTypedCase<CorruptionTester<64, 8>>(Defect::kDoubleHandOut);
  const std::vector<Op> ops = GenerateOps(kSeed, 5);
  // No replay allowed: the input comes back (canonicalised).
  EXPECT_EQ(ShrinkFailingOps(c, ops, ViolationKind::kDoubleHandOut, 0),
            CanonicalOps(ops));
}

// --- Setup errors. ----------------------------------------------------------

TEST(SetupTest, NullFactoryResultAndWrongLayoutAreReported) {
  AllocCase null_factory;
  null_factory.name = "Null";
  null_factory.layout = Layout{8, 8};
  null_factory.make = [](TestEnv&) {
    return std::unique_ptr<UntypedObjectAllocInterface>();
  };
  EXPECT_NE(RunOps(null_factory, GenerateOps(1, 10)).setup_error, "");

  AllocCase wrong = BrokenUntypedCase(Layout{64, 8}, Defect::kNone);
  wrong.layout = Layout{64, 16};
  const RunResult r = RunOps(wrong, GenerateOps(1, 10));
  EXPECT_NE(r.setup_error.find("layout"), std::string::npos) << r.setup_error;
  EXPECT_NONFATAL_FAILURE(
      CheckSequence(wrong, TestOptions(), "RandomOps", GenerateOps(1, 10), 1),
      "expects {size 64, align 16}");
}

// --- After destruction: unmapped memory is skipped, not read. ---------------

// One private mapping per object, unmapped on Deallocate (the shape of
// mmap_alloc::PageObjectAlloc).
class MmapPerObject {
 public:
  static constexpr bool kThreadSafe = true;
  explicit MmapPerObject(Layout layout) : layout_(layout) {}
  Layout layout() const noexcept { return layout_; }
  void* Allocate() noexcept {
    void* p = ::mmap(nullptr, layout_.size, PROT_READ | PROT_WRITE,
                     MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    return p == MAP_FAILED ? nullptr : p;
  }
  void Deallocate(void* p) noexcept { ::munmap(p, layout_.size); }

 private:
  Layout layout_;
};

TEST(AfterDestroyTest, UnmappedObjectsAreSkipped) {
  const std::vector<AllocCase> cases = FixedLayoutCase(
      [] { return MmapPerObject(Layout{4096, 4096}); });
  ASSERT_EQ(cases.size(), 1u);
  const RunResult r = RunOps(cases[0], GenerateOps(kSeed, 2000));
  EXPECT_TRUE(r.ok()) << r.setup_error
                      << (r.violation ? r.violation->message : "");
}

// --- Threads. ---------------------------------------------------------------

TEST(ThreadedTest, CorrectAllocatorsPass) {
  for (const AllocCase& c :
       {BrokenTypedCase<CorruptionTester<64, 8>>(Defect::kNone),
        BrokenTypedCase<Bytes<8, 8>>(Defect::kNone),
        BrokenUntypedCase(Layout{48, 16}, Defect::kNone)}) {
    const RunResult r = RunThreaded(c, ThreadedOptions{4, 3000, kSeed});
    EXPECT_TRUE(r.ok()) << c.name << ": " << r.setup_error
                        << (r.violation ? r.violation->message : "");
  }
}

TEST(ThreadedTest, NullAllocationIsCaught) {
  const RunResult r = RunThreaded(
      BrokenTypedCase<CorruptionTester<64, 8>>(Defect::kReturnNull),
      ThreadedOptions{4, 3000, kSeed});
  ASSERT_TRUE(r.violation.has_value());
  EXPECT_EQ(r.violation->kind, ViolationKind::kNullAllocation);
  EXPECT_GE(r.thread, 0);
}

TEST(ThreadedTest, NonThreadSafeCaseFails) {
  AllocCase c = BrokenTypedCase<CorruptionTester<64, 8>>(Defect::kNone);
  c.thread_safe = false;
  EXPECT_NONFATAL_FAILURE(
      CheckThreaded(c, TestOptions(), ThreadedOptions{2, 10, 1}),
      "kThreadSafe");
}

// --- Options. ---------------------------------------------------------------

class EnvTest : public ::testing::Test {
 protected:
  void TearDown() override {
    ::unsetenv("OBJECT_ALLOC_TEST_ITERS");
    ::unsetenv("OBJECT_ALLOC_TEST_SEED");
    ::unsetenv("OBJECT_ALLOC_TEST_THREADS");
    ::unsetenv("OBJECT_ALLOC_TEST_THREADED_ITERS");
  }
};

TEST_F(EnvTest, Defaults) {
  ::unsetenv("OBJECT_ALLOC_TEST_ITERS");
  ::unsetenv("OBJECT_ALLOC_TEST_SEED");
  ::unsetenv("OBJECT_ALLOC_TEST_THREADS");
  ::unsetenv("OBJECT_ALLOC_TEST_THREADED_ITERS");
  std::string error;
  const std::optional<SuiteOptions> o = OptionsFromEnv(&error);
  ASSERT_TRUE(o.has_value()) << error;
  EXPECT_EQ(o->iters, DefaultIters());
#if defined(THREAD_SANITIZER) || defined(__SANITIZE_THREAD__)
  EXPECT_EQ(o->iters, 10000u);
#else
  EXPECT_EQ(o->iters, UnderSanitizer() ? 20000u : 100000u);
#endif
  EXPECT_EQ(o->seed, kDefaultSeed);
  EXPECT_EQ(o->threads, 4);
  EXPECT_EQ(o->threaded_iters, 25000u);
}

TEST_F(EnvTest, ParsesValues) {
  ::setenv("OBJECT_ALLOC_TEST_ITERS", "1234", 1);
  ::setenv("OBJECT_ALLOC_TEST_SEED", "0xff", 1);
  ::setenv("OBJECT_ALLOC_TEST_THREADS", "8", 1);
  ::setenv("OBJECT_ALLOC_TEST_THREADED_ITERS", "77", 1);
  std::string error;
  const std::optional<SuiteOptions> o = OptionsFromEnv(&error);
  ASSERT_TRUE(o.has_value()) << error;
  EXPECT_EQ(o->iters, 1234u);
  EXPECT_EQ(o->threaded_iters, 77u);
  EXPECT_EQ(o->seed, 255u);
  EXPECT_EQ(o->threads, 8);
}

TEST_F(EnvTest, RejectsMalformedValues) {
  for (const char* bad : {"", "abc", "12x", "-5", "0", "99999999999"}) {
    ::setenv("OBJECT_ALLOC_TEST_ITERS", bad, 1);
    std::string error;
    EXPECT_FALSE(OptionsFromEnv(&error).has_value()) << bad;
    EXPECT_NE(error.find("OBJECT_ALLOC_TEST_ITERS"), std::string::npos);
  }
  ::unsetenv("OBJECT_ALLOC_TEST_ITERS");
  ::setenv("OBJECT_ALLOC_TEST_THREADS", "1", 1);
  std::string error;
  EXPECT_FALSE(OptionsFromEnv(&error).has_value());
  ::setenv("OBJECT_ALLOC_TEST_THREADS", "2", 1);
  ::setenv("OBJECT_ALLOC_TEST_SEED", "seed", 1);
  EXPECT_FALSE(OptionsFromEnv(&error).has_value());
  EXPECT_NE(error.find("OBJECT_ALLOC_TEST_SEED"), std::string::npos);
  ::unsetenv("OBJECT_ALLOC_TEST_SEED");
  ::setenv("OBJECT_ALLOC_TEST_THREADED_ITERS", "0", 1);
  EXPECT_FALSE(OptionsFromEnv(&error).has_value());
  EXPECT_NE(error.find("OBJECT_ALLOC_TEST_THREADED_ITERS"), std::string::npos);
}

}  // namespace
}  // namespace object_alloc_test
