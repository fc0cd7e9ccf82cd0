// Tests for TreiberStack: LIFO order, empty reporting, exact-once delivery
// under MPMC contention, and ABA/reclamation safety with collection forced on
// every pin (nodes are recycled as soon as the epoch rules allow).
#include "bagpipe/treiber_stack.h"

#include <cstdint>
#include <thread>

#include "bagpipe/epoch.h"
#include "bagpipe/queue_test_util.h"
#include "gtest/gtest.h"

namespace bagpipe {
namespace {

using Stack = TreiberStack<std::uint64_t>;

TEST(TreiberStackTest, EmptyStackReportsEmpty) {
  Stack s;
  std::uint64_t v = 0;
  EXPECT_EQ(s.TryPop(&v), PopStatus::kEmpty);
  EXPECT_FALSE(s.Pop(&v));
}

TEST(TreiberStackTest, SingleThreadLifo) {
  Stack s;
  for (std::uint64_t i = 0; i < 5000; ++i) ASSERT_TRUE(s.Push(i));
  for (std::uint64_t i = 5000; i-- > 0;) {
    std::uint64_t v = 0;
    ASSERT_EQ(s.TryPop(&v), PopStatus::kOk);
    ASSERT_EQ(v, i);
  }
  std::uint64_t v = 0;
  EXPECT_EQ(s.TryPop(&v), PopStatus::kEmpty);
}

TEST(TreiberStackTest, PointersRoundTrip) {
  TreiberStack<int*> s;
  int x = 0, y = 0;
  ASSERT_TRUE(s.Push(&x));
  ASSERT_TRUE(s.Push(&y));
  int* p = nullptr;
  ASSERT_TRUE(s.Pop(&p));
  EXPECT_EQ(p, &y);
  ASSERT_TRUE(s.Pop(&p));
  EXPECT_EQ(p, &x);
}

// SPSC through a stack: not FIFO, but each value exactly once.
TEST(TreiberStackTest, SpscExactOnce) {
  Stack s;
  testing::RunExactOnce(
      1, 1, 100'000, [&](int) { return testing::SharedQueueOps<Stack>{&s}; },
      /*check_fifo_per_producer=*/false);
}

TEST(TreiberStackTest, MpmcExactOnce4x25000) {
  Stack s;
  testing::RunExactOnce(
      4, 4, 25'000, [&](int) { return testing::SharedQueueOps<Stack>{&s}; },
      /*check_fifo_per_producer=*/false);
}

TEST(TreiberStackTest, MpmcExactOnceLarge) {
  Stack s;
  testing::RunExactOnce(
      2, 2, testing::LargeRunItems(),
      [&](int) { return testing::SharedQueueOps<Stack>{&s}; },
      /*check_fifo_per_producer=*/false);
}

// Pop/push churn on a nearly empty stack is the classic ABA setting: the same
// node addresses come back quickly. With forced collection they come back as
// soon as EBR allows; an ABA bug would lose or duplicate values.
TEST(TreiberStackTest, AbaChurnForcedCollection) {
  epoch::SetCollectThresholdForTesting(1);
  {
    Stack s;
    testing::RunExactOnce(
        3, 3, 30'000, [&](int) { return testing::SharedQueueOps<Stack>{&s}; },
        /*check_fifo_per_producer=*/false);
  }
  epoch::SetCollectThresholdForTesting(64);
  epoch::DrainForTesting();
  const epoch::Stats after = epoch::GetStats();
  EXPECT_EQ(after.retired, after.freed + after.leaked);
  EXPECT_EQ(after.leaked, 0u);
}

}  // namespace
}  // namespace bagpipe
