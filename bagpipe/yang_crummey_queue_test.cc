// Tests for YangCrummeyQueue: FIFO order, empty vs transient reporting,
// exact-once delivery under MPMC contention (default and tiny segments), and
// reclamation with collection forced on every pin.
#include "bagpipe/yang_crummey_queue.h"

#include <cstdint>
#include <random>
#include <thread>

#include "bagpipe/epoch.h"
#include "bagpipe/queue_test_util.h"
#include "gtest/gtest.h"

namespace bagpipe {
namespace {

using BigQueue = YangCrummeyQueue<std::uint64_t>;
// 16-cell segments: segment turnover (and retirement) on every 16 operations.
using TinyQueue = YangCrummeyQueue<std::uint64_t, 4>;

template <class Q>
class YangCrummeyQueueTest : public ::testing::Test {};
using Types = ::testing::Types<BigQueue, TinyQueue>;
TYPED_TEST_SUITE(YangCrummeyQueueTest, Types);

TYPED_TEST(YangCrummeyQueueTest, EmptyQueueReportsEmpty) {
  TypeParam q;
  ASSERT_TRUE(q.valid());
  std::uint64_t v = 0;
  EXPECT_EQ(q.TryPop(&v), PopStatus::kEmpty);
  EXPECT_FALSE(q.Pop(&v));
}

TYPED_TEST(YangCrummeyQueueTest, SingleThreadFifo) {
  for (std::uint64_t n : {std::uint64_t{64}, std::uint64_t{5000}}) {
    TypeParam q;
    for (std::uint64_t i = 0; i < n; ++i) ASSERT_TRUE(q.TryPush(i));
    for (std::uint64_t i = 0; i < n; ++i) {
      std::uint64_t v = 0;
      ASSERT_EQ(q.TryPop(&v), PopStatus::kOk);
      ASSERT_EQ(v, i);
    }
    std::uint64_t v = 0;
    EXPECT_EQ(q.TryPop(&v), PopStatus::kEmpty);
  }
}

TYPED_TEST(YangCrummeyQueueTest, InterleavedPushPopSingleThread) {
  TypeParam q;
  std::uint64_t next_in = 0, next_out = 0;
  std::mt19937 rng(2);
  for (int step = 0; step < 20000; ++step) {
    if (rng() % 3 != 0) {
      ASSERT_TRUE(q.TryPush(next_in++));
    } else {
      std::uint64_t v = 0;
      const PopStatus s = q.TryPop(&v);
      if (next_out == next_in) {
        ASSERT_EQ(s, PopStatus::kEmpty);
      } else {
        ASSERT_EQ(s, PopStatus::kOk);
        ASSERT_EQ(v, next_out++);
      }
    }
  }
}

TYPED_TEST(YangCrummeyQueueTest, SpscFifoOrder) {
  TypeParam q;
  constexpr std::uint64_t kN = 100'000;
  std::thread producer([&] {
    for (std::uint64_t i = 0; i < kN; ++i) ASSERT_TRUE(q.Push(i));
  });
  std::uint64_t expect = 0;
  while (expect < kN) {
    std::uint64_t v = 0;
    if (q.TryPop(&v) == PopStatus::kOk) {
      ASSERT_EQ(v, expect);
      ++expect;
    }
  }
  producer.join();
}

TYPED_TEST(YangCrummeyQueueTest, MpmcExactOnce4x25000) {
  TypeParam q;
  testing::RunExactOnce(
      4, 4, 25'000,
      [&](int) { return testing::SharedQueueOps<TypeParam>{&q}; },
      /*check_fifo_per_producer=*/true);
}

TYPED_TEST(YangCrummeyQueueTest, MpmcExactOnceLarge) {
  TypeParam q;
  testing::RunExactOnce(
      2, 2, testing::LargeRunItems(),
      [&](int) { return testing::SharedQueueOps<TypeParam>{&q}; },
      /*check_fifo_per_producer=*/true);
}

TEST(YangCrummeyReclamationTest, TinySegmentsForcedCollection) {
  epoch::SetCollectThresholdForTesting(1);
  const epoch::Stats before = epoch::GetStats();
  {
    TinyQueue q;
    testing::RunExactOnce(
        3, 3, 20'000,
        [&](int) { return testing::SharedQueueOps<TinyQueue>{&q}; },
        /*check_fifo_per_producer=*/true);
  }
  epoch::SetCollectThresholdForTesting(64);
  // 60k pushes over 16-cell segments: thousands of segments were retired.
  EXPECT_GT(epoch::GetStats().retired - before.retired, 1000u);
  epoch::DrainForTesting();
  const epoch::Stats after = epoch::GetStats();
  EXPECT_EQ(after.retired, after.freed + after.leaked);
  EXPECT_EQ(after.leaked, 0u);
}

}  // namespace
}  // namespace bagpipe
