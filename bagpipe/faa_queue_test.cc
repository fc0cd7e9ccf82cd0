// Tests for FaaQueue: FIFO order, exact-once delivery under MPMC contention,
// reclamation under forced collection, and revocation (single-threaded
// semantics and races of Revoke against pops and pushes).
#include "bagpipe/faa_queue.h"

#include <algorithm>
#include <atomic>
#include <cstdint>
#include <memory>
#include <random>
#include <thread>
#include <vector>

#include "bagpipe/epoch.h"
#include "bagpipe/queue_test_util.h"
#include "gtest/gtest.h"

namespace bagpipe {
namespace {

using Queue = FaaQueue<std::uint64_t>;

TEST(FaaQueueTest, EmptyQueueReportsEmpty) {
  Queue q;
  ASSERT_TRUE(q.valid());
  std::uint64_t v = 7;
  EXPECT_EQ(q.TryPop(&v), PopStatus::kEmpty);
  EXPECT_FALSE(q.Pop(&v));
}

// A new queue allocates no segment (both roots are the shared sentinel)
// until its first push; threads racing to make the first push into many
// fresh queues, while others pop them, lose and duplicate nothing. Fresh
// queues that were never pushed to are destroyed cleanly too.
TEST(FaaQueueTest, FirstPushesRaceToInstallTheFirstSegment) {
  constexpr int kQueues = 200, kPushers = 3, kPerPusher = 50;
  for (int round = 0; round < 3; ++round) {
    std::vector<std::unique_ptr<FaaQueue<std::uint64_t>>> qs;
    for (int i = 0; i < kQueues; ++i) {
      qs.push_back(std::make_unique<FaaQueue<std::uint64_t>>());
    }
    std::atomic<bool> go{false};
    std::atomic<int> popped{0};
    std::atomic<std::uint64_t> sum{0};
    std::vector<std::thread> ts;
    for (int t = 0; t < kPushers; ++t) {
      ts.emplace_back([&, t] {
        while (!go.load()) std::this_thread::yield();
        for (int q = 0; q < kQueues; ++q) {
          for (int i = 0; i < kPerPusher; ++i) {
            qs[q]->Push(static_cast<std::uint64_t>(t * kPerPusher + i + 1));
          }
        }
      });
    }
    ts.emplace_back([&] {  // a popper chasing the pushers
      while (!go.load()) std::this_thread::yield();
      std::uint64_t v = 0;
      for (int pass = 0; pass < 50; ++pass) {
        for (int q = 0; q < kQueues; ++q) {
          if (qs[q]->TryPop(&v) == PopStatus::kOk) {
            popped.fetch_add(1);
            sum.fetch_add(v);
          }
        }
      }
    });
    go.store(true);
    for (auto& t : ts) t.join();
    std::uint64_t v = 0;
    for (int q = 0; q < kQueues; ++q) {
      while (qs[q]->Pop(&v)) {
        popped.fetch_add(1);
        sum.fetch_add(v);
      }
    }
    constexpr int kItems = kPushers * kPerPusher;  // values 1..kItems
    EXPECT_EQ(popped.load(), kQueues * kItems);
    EXPECT_EQ(sum.load(), static_cast<std::uint64_t>(kQueues) * kItems *
                              (kItems + 1) / 2);
  }
  // Never pushed to: pops are empty and destruction releases nothing.
  FaaQueue<std::uint64_t> idle;
  std::uint64_t v = 0;
  EXPECT_EQ(idle.TryPop(&v), PopStatus::kEmpty);
  EXPECT_TRUE(idle.valid());
}

TEST(FaaQueueTest, SingleThreadFifoAcrossSegments) {
  for (std::uint64_t n : {std::uint64_t{64}, Queue::kSegmentSize * 8 + 3}) {
    Queue q;
    for (std::uint64_t i = 0; i < n; ++i) ASSERT_TRUE(q.Push(i));
    for (std::uint64_t i = 0; i < n; ++i) {
      std::uint64_t v = 0;
      ASSERT_EQ(q.TryPop(&v), PopStatus::kOk);
      ASSERT_EQ(v, i);
    }
    std::uint64_t v = 0;
    EXPECT_EQ(q.TryPop(&v), PopStatus::kEmpty);
  }
}

TEST(FaaQueueTest, ZeroIsAValidItem) {
  Queue q;
  ASSERT_TRUE(q.TryPush(0));
  std::uint64_t v = 9;
  ASSERT_EQ(q.TryPop(&v), PopStatus::kOk);
  EXPECT_EQ(v, 0u);
}

TEST(FaaQueueTest, InterleavedPushPopSingleThread) {
  Queue q;
  std::uint64_t next_in = 0, next_out = 0;
  std::mt19937 rng(1);
  for (int step = 0; step < 20000; ++step) {
    if (rng() % 3 != 0) {
      ASSERT_TRUE(q.Push(next_in++));
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

TEST(FaaQueueTest, SpscFifoOrder) {
  Queue q;
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

TEST(FaaQueueTest, MpmcExactOnce4x25000) {
  Queue q;
  testing::RunExactOnce(4, 4, 25'000,
                        [&](int) { return testing::SharedQueueOps<Queue>{&q}; },
                        /*check_fifo_per_producer=*/true);
}

TEST(FaaQueueTest, MpmcExactOnceLarge) {
  Queue q;
  testing::RunExactOnce(2, 2, testing::LargeRunItems(),
                        [&](int) { return testing::SharedQueueOps<Queue>{&q}; },
                        /*check_fifo_per_producer=*/true);
}

// With collection forced on every pin and retire, segments are recycled as
// fast as possible while other threads are still inside them; ASan poisons
// recycled blocks, so a premature reuse shows up as a report, and the
// exact-once check catches corrupted cells.
TEST(FaaQueueTest, ReclamationStress) {
  epoch::SetCollectThresholdForTesting(1);
  {
    Queue q;
    testing::RunExactOnce(
        3, 3, 20'000, [&](int) { return testing::SharedQueueOps<Queue>{&q}; },
        /*check_fifo_per_producer=*/true);
  }
  epoch::SetCollectThresholdForTesting(64);
  const epoch::Stats before = epoch::GetStats();
  EXPECT_GT(before.retired, 6u * 20'000 / Queue::kSegmentSize / 2);
  epoch::DrainForTesting();
  const epoch::Stats after = epoch::GetStats();
  // Every thread that retired has exited or drained: nothing stays in limbo.
  EXPECT_EQ(after.retired, after.freed + after.leaked);
  EXPECT_EQ(after.leaked, 0u);
}

// ---- Revocation ----

struct Slab {
  std::atomic<std::uintptr_t> h{0};
  std::uint64_t id = 0;
  std::atomic<std::uintptr_t>& handle() noexcept { return h; }
};
static_assert(Revocable<Slab>);
using RevQueue = FaaQueue<Slab*>;
static_assert(RevQueue::kRevocable);
static_assert(!Queue::kRevocable);

TEST(FaaQueueRevokeTest, RevokeRemovesFromTheMiddle) {
  RevQueue q;
  Slab s[5];
  for (int i = 0; i < 5; ++i) {
    s[i].id = i;
    ASSERT_TRUE(q.Push(&s[i]));
    EXPECT_NE(s[i].h.load(), 0u);
  }
  EXPECT_TRUE(RevQueue::Revoke(&s[2]));
  EXPECT_EQ(s[2].h.load(), 0u);
  EXPECT_FALSE(RevQueue::Revoke(&s[2]));
  EXPECT_TRUE(RevQueue::Revoke(&s[0]));
  Slab* out = nullptr;
  ASSERT_EQ(q.TryPop(&out), PopStatus::kOk);
  EXPECT_EQ(out, &s[1]);
  EXPECT_EQ(s[1].h.load(), 0u);
  EXPECT_FALSE(RevQueue::Revoke(&s[1]));  // already popped
  ASSERT_EQ(q.TryPop(&out), PopStatus::kOk);
  EXPECT_EQ(out, &s[3]);
  ASSERT_EQ(q.TryPop(&out), PopStatus::kOk);
  EXPECT_EQ(out, &s[4]);
  EXPECT_EQ(q.TryPop(&out), PopStatus::kEmpty);
}

TEST(FaaQueueRevokeTest, RevokedItemCanBePushedAgain) {
  RevQueue q;
  Slab s;
  for (int round = 0; round < 1000; ++round) {
    ASSERT_TRUE(q.Push(&s));
    ASSERT_TRUE(RevQueue::Revoke(&s));
  }
  ASSERT_TRUE(q.Push(&s));
  Slab* out = nullptr;
  ASSERT_EQ(q.TryPop(&out), PopStatus::kOk);
  EXPECT_EQ(out, &s);
  EXPECT_EQ(q.TryPop(&out), PopStatus::kEmpty);
}

TEST(FaaQueueRevokeTest, DestructorClearsHandles) {
  Slab s[3];
  {
    RevQueue q;
    for (auto& x : s) ASSERT_TRUE(q.Push(&x));
  }
  for (auto& x : s) EXPECT_EQ(x.h.load(), 0u);
}

// A prefilled queue is attacked from both ends: each worker alternates
// between revoking the next item of its own share from the back and popping
// from the front, so revokes and pops meet (and race for the same cells) in
// the middle. Meanwhile a producer keeps pushing fresh slabs (segment
// allocation and retirement under forced collection). Every slab must be
// taken by exactly one of pop and revoke, and end with a cleared handle.
TEST(FaaQueueRevokeTest, RevokeVersusPopRace) {
  epoch::SetCollectThresholdForTesting(1);
#if defined(THREAD_SANITIZER) || defined(ADDRESS_SANITIZER)
  constexpr int kPrefill = 20'000;
#else
  constexpr int kPrefill = 100'000;
#endif
  constexpr int kExtra = 20'000;
  constexpr int kN = kPrefill + kExtra;
  constexpr int kWorkers = 3;
  RevQueue q;
  std::unique_ptr<Slab[]> slabs(new Slab[kN]);
  std::unique_ptr<std::atomic<int>[]> taken(new std::atomic<int>[kN]);
  for (int i = 0; i < kN; ++i) {
    slabs[i].id = i;
    taken[i].store(0);
  }
  for (int i = 0; i < kPrefill; ++i) ASSERT_TRUE(q.Push(&slabs[i]));
  std::atomic<int> popped{0}, revoked{0};
  std::atomic<bool> go{false};
  std::vector<std::thread> threads;
  threads.emplace_back([&] {
    while (!go.load()) {
    }
    for (int i = kPrefill; i < kN; ++i) ASSERT_TRUE(q.Push(&slabs[i]));
  });
  for (int w = 0; w < kWorkers; ++w) {
    threads.emplace_back([&, w] {
      while (!go.load()) {
      }
      for (int i = kPrefill - 1 - w; i >= 0; i -= kWorkers) {
        if (RevQueue::Revoke(&slabs[i])) {
          taken[i].fetch_add(1);
          revoked.fetch_add(1);
        }
        Slab* s = nullptr;
        if (q.TryPop(&s) == PopStatus::kOk) {
          taken[s->id].fetch_add(1);
          popped.fetch_add(1);
        }
      }
    });
  }
  go.store(true);
  for (auto& t : threads) t.join();
  // Whatever is left is popped now.
  Slab* s = nullptr;
  for (PopStatus st; (st = q.TryPop(&s)) != PopStatus::kEmpty;) {
    if (st == PopStatus::kOk) {
      taken[s->id].fetch_add(1);
      popped.fetch_add(1);
    }
  }
  epoch::SetCollectThresholdForTesting(64);
  EXPECT_EQ(popped.load() + revoked.load(), kN);
  EXPECT_GT(revoked.load(), 0);
  EXPECT_GT(popped.load(), 0);
  int bad = 0;
  for (int i = 0; i < kN; ++i) {
    if (taken[i].load() != 1) ++bad;
    if (slabs[i].h.load() != 0) ++bad;
  }
  EXPECT_EQ(bad, 0);
}

// Revokes racing with the pushes of the same items: a revoke may lose to an
// in-flight push (returns false, item stays queued), but afterwards every
// item is popped or revoked exactly once.
TEST(FaaQueueRevokeTest, RevokeVersusPushRace) {
  constexpr int kN = 20'000;
  RevQueue q;
  std::unique_ptr<Slab[]> slabs(new Slab[kN]);
  std::unique_ptr<std::atomic<int>[]> taken(new std::atomic<int>[kN]);
  for (int i = 0; i < kN; ++i) {
    slabs[i].id = i;
    taken[i].store(0);
  }
  std::thread producer([&] {
    for (int i = 0; i < kN; ++i) ASSERT_TRUE(q.Push(&slabs[i]));
  });
  std::thread revoker([&] {
    for (int i = 0; i < kN; ++i) {
      if (RevQueue::Revoke(&slabs[i])) taken[i].fetch_add(1);
    }
  });
  producer.join();
  revoker.join();
  Slab* s = nullptr;
  for (PopStatus st; (st = q.TryPop(&s)) != PopStatus::kEmpty;) {
    if (st == PopStatus::kOk) taken[s->id].fetch_add(1);
  }
  int bad = 0;
  for (int i = 0; i < kN; ++i) {
    if (taken[i].load() != 1) ++bad;
    if (slabs[i].h.load() != 0) ++bad;
  }
  EXPECT_EQ(bad, 0);
}

}  // namespace
}  // namespace bagpipe
