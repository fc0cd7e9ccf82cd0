// Tests for object_alloc_test.h itself: the case lists the suites are
// instantiated with (how many, which names, which flags), the policies, and
// the factory forms the documentation promises.
#include "object_alloc_test/object_alloc_test.h"

#include <cstddef>
#include <memory>
#include <set>
#include <string>
#include <vector>

#include "gtest/gtest.h"
#include "object_alloc/heap_alloc.h"
#include "object_alloc/interface.h"
#include "object_alloc/object_alloc.h"
#include "object_alloc_test/leaky_alloc.h"
#include "object_alloc_test/types.h"

namespace object_alloc_test {
namespace {

using object_alloc::Layout;

static_assert(std::is_same_v<Carrier<8, 8>, Bytes<8, 8>>);
static_assert(std::is_same_v<Carrier<9, 1>, CorruptionTester<9, 1>>);
static_assert(std::is_same_v<Carrier<4096, 64>, CorruptionTester<4096, 64>>);

// A non-thread-safe typed allocator template.
template <class T>
struct SingleThreaded : object_alloc::HeapObjectAlloc<T> {
  static constexpr bool kThreadSafe = false;
};

TEST(TypedCasesTest, AllSizesAndAlignments) {
  const std::vector<AllocCase> cases =
      TypedCases<DefaultConstructed<object_alloc::HeapObjectAlloc, 8192>>();
  EXPECT_EQ(cases.size(), 204u);
  std::set<std::string> names;
  std::size_t base = 0;
  for (const AllocCase& c : cases) {
    EXPECT_TRUE(names.insert(c.name).second) << "duplicate " << c.name;
    EXPECT_TRUE(c.layout.IsValid()) << c.name;
    EXPECT_TRUE(c.typed);
    EXPECT_TRUE(c.thread_safe);
    EXPECT_EQ(c.full_length, c.layout.align == 1) << c.name;
    base += c.full_length;
  }
  EXPECT_EQ(base, kSizes.size());
  EXPECT_TRUE(names.count("Size8192Align8192"));
  EXPECT_TRUE(names.count("Size7151Align1"));
}

TEST(TypedCasesTest, PolicyLimits) {
  // Default policy limits: alignment up to a page.
  EXPECT_EQ(TypedCases<DefaultConstructed<object_alloc::HeapObjectAlloc>>()
                .size(),
            203u);
  const std::vector<AllocCase> small =
      TypedCases<DefaultConstructed<SingleThreaded, 64, 64>>();
  for (const AllocCase& c : small) {
    EXPECT_LE(c.layout.size, 64u);
    EXPECT_LE(c.layout.align, 64u);
    EXPECT_FALSE(c.thread_safe) << "from the allocator's kThreadSafe";
  }
  EXPECT_EQ(small.front().name, "Size1Align1");
  EXPECT_EQ(small.back().name, "Size64Align64");
}

TEST(TypedCasesTest, CasesBuildWorkingAllocators) {
  const std::vector<AllocCase> cases =
      TypedCases<LeakyConstructed<LeakyObjectAlloc, 4096, 16>>();
  ASSERT_FALSE(cases.empty());
  for (const AllocCase& c : cases) {
    TestEnv env;
    auto alloc = c.make(env);
    ASSERT_NE(alloc, nullptr);
    EXPECT_EQ(alloc->layout(), c.layout);
    void* p = alloc->Allocate();
    ASSERT_NE(p, nullptr);
    alloc->Deallocate(p);
    EXPECT_EQ(env.leaky().blocks(), 1u) << "built on the run's LeakyAlloc";
  }
}

TEST(UntypedCasesTest, FactoryForms) {
  // factory(Layout) returning a unique_ptr.
  const auto by_layout = UntypedCases([](Layout l) {
    return std::make_unique<object_alloc::HeapUntypedObjectAlloc>(l);
  });
  EXPECT_EQ(by_layout.size(), 203u);
  EXPECT_TRUE(by_layout.front().thread_safe);
  EXPECT_FALSE(by_layout.front().typed);
  // factory(Layout, TestEnv&) returning a value, sizes capped.
  const auto leaky = UntypedCases(
      [](Layout l, TestEnv& env) { return LeakyUntypedObjectAlloc(env.leaky(), l); },
      /*max_align=*/16, /*max_size=*/32);
  for (const AllocCase& c : leaky) {
    EXPECT_LE(c.layout.size, 32u);
    EXPECT_LE(c.layout.align, 16u);
  }
  // Sizes 1..32 of kSizes at alignments up to 16: 1+2+1+3+1+2+1+4 (1..8),
  // 1+3+1+5 (11, 12, 13, 16), 1+4+1+5 (19, 24, 29, 32).
  EXPECT_EQ(leaky.size(), 36u);
  // factory returning the dynamic interface: thread safety read at run time.
  const auto iface = UntypedCases([](Layout l) {
    return std::unique_ptr<object_alloc::UntypedObjectAllocInterface>(
        new object_alloc::UntypedObjectAllocWrapper<
            object_alloc::HeapUntypedObjectAlloc>(std::in_place, l));
  });
  EXPECT_TRUE(iface.front().thread_safe);
  for (const AllocCase& c : {by_layout[40], leaky[5], iface[100]}) {
    TestEnv env;
    auto alloc = c.make(env);
    ASSERT_NE(alloc, nullptr);
    EXPECT_EQ(alloc->layout(), c.layout) << c.name;
  }
}

TEST(FixedLayoutCaseTest, ProbesTheLayout) {
  const auto cases = FixedLayoutCase([](TestEnv& env) {
    return std::make_unique<LeakyUntypedObjectAlloc>(env.leaky(),
                                                     Layout{8192, 4096});
  });
  ASSERT_EQ(cases.size(), 1u);
  EXPECT_EQ(cases[0].name, "Size8192Align4096");
  EXPECT_EQ(cases[0].layout, (Layout{8192, 4096}));
  EXPECT_TRUE(cases[0].thread_safe);
  EXPECT_TRUE(cases[0].full_length);
}

TEST(ThreadedSubsetTest, PicksTheThreadedSizesAtBaseAlignment) {
  const auto all = ThreadedSubset(
      TypedCases<DefaultConstructed<object_alloc::HeapObjectAlloc>>());
  std::vector<std::string> names;
  for (const AllocCase& c : all) names.push_back(c.name);
  EXPECT_EQ(names,
            (std::vector<std::string>{"Size1Align1", "Size16Align1",
                                      "Size64Align1", "Size157Align1",
                                      "Size1024Align1", "Size4096Align1"}));
  // The same cases, instantiating only those carrier types.
  std::vector<std::string> direct;
  for (const AllocCase& c : ThreadedTypedCases<
           DefaultConstructed<object_alloc::HeapObjectAlloc>>()) {
    direct.push_back(c.name);
    EXPECT_TRUE(c.full_length);
    EXPECT_TRUE(c.typed);
  }
  EXPECT_EQ(direct, names);
  // A single (fixed-layout) case is kept whatever its size.
  const auto fixed = FixedLayoutCase([] {
    return object_alloc::HeapUntypedObjectAlloc(Layout{24, 8});
  });
  EXPECT_EQ(ThreadedSubset(fixed).size(), 1u);
}

}  // namespace
}  // namespace object_alloc_test
