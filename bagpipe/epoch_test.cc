// Tests for epoch-based reclamation: nothing is freed while a thread that
// could hold it is pinned, everything is freed once threads move on, records
// are reused after threads exit, and exited threads' garbage is not stranded.
#include "bagpipe/epoch.h"

#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <cstdint>
#include <thread>
#include <vector>

#include "bsalloc/bsalloc.h"
#include "gtest/gtest.h"

namespace bagpipe {
namespace {

struct Garbage {
  epoch::RetireNode node;  // first member
  std::atomic<int>* freed_counter = nullptr;
};

void FreeGarbage(epoch::RetireNode* n) {
  Garbage* g = reinterpret_cast<Garbage*>(n);
  g->freed_counter->fetch_add(1);
}

TEST(EpochTest, NestedPinsAreCheap) {
  ASSERT_TRUE(epoch::Pin());
  ASSERT_TRUE(epoch::Pin());
  epoch::Unpin();
  epoch::Unpin();
}

TEST(EpochTest, NothingFreedWhileAnotherThreadStaysPinned) {
  std::atomic<int> freed{0};
  std::atomic<bool> pinned{false}, release{false};
  std::thread reader([&] {
    epoch::Guard g;
    pinned.store(true);
    while (!release.load()) std::this_thread::yield();
  });
  while (!pinned.load()) std::this_thread::yield();
  Garbage g;
  g.freed_counter = &freed;
  g.node.free_fn = &FreeGarbage;
  epoch::Retire(&g.node);
  for (int i = 0; i < 100; ++i) epoch::Collect();
  EXPECT_EQ(freed.load(), 0);  // the reader pinned before the retire
  release.store(true);
  reader.join();
  epoch::DrainForTesting();
  EXPECT_EQ(freed.load(), 1);
}

// A thread pinned at the moment of fork() does not exist in the child; the
// child's epoch must still advance and its garbage be freed (before
// AfterForkInChild, the dead thread's record blocked the epoch forever).
TEST(EpochTest, ForkedChildReclaimsDespiteAThreadPinnedAtTheFork) {
  std::atomic<bool> pinned{false}, release{false};
  std::thread reader([&] {
    epoch::Guard g;
    pinned.store(true);
    while (!release.load()) std::this_thread::yield();
  });
  while (!pinned.load()) std::this_thread::yield();
  const pid_t pid = fork();
  ASSERT_GE(pid, 0);
  if (pid == 0) {
    // Child: only this thread exists. Exit status 0 means garbage was freed.
    std::atomic<int> freed{0};
    Garbage g;
    g.freed_counter = &freed;
    g.node.free_fn = &FreeGarbage;
    epoch::Retire(&g.node);
    for (int i = 0; i < 100 && freed.load() == 0; ++i) epoch::Collect();
    _exit(freed.load() == 1 ? 0 : 1);
  }
  int status = 0;
  ASSERT_EQ(waitpid(pid, &status, 0), pid);
  release.store(true);
  reader.join();
  ASSERT_TRUE(WIFEXITED(status));
  EXPECT_EQ(WEXITSTATUS(status), 0) << "the child's epoch never advanced";
}

TEST(EpochTest, FreedOnlyAfterGracePeriod) {
  std::atomic<int> freed{0};
  Garbage g;
  g.freed_counter = &freed;
  g.node.free_fn = &FreeGarbage;
  {
    epoch::Guard guard;
    epoch::Retire(&g.node, 4);
    // We are pinned: the epoch can move at most one step past our pin.
    for (int i = 0; i < 10; ++i) epoch::Collect();
    EXPECT_EQ(freed.load(), 0);
  }
  epoch::DrainForTesting();
  EXPECT_EQ(freed.load(), 1);
}

TEST(EpochTest, ExitedThreadsGarbageIsCollectedAndRecordsReused) {
  std::atomic<int> freed{0};
  constexpr int kThreads = 8, kPerThread = 10;
  std::vector<Garbage> garbage(kThreads * kPerThread);
  for (auto& g : garbage) {
    g.freed_counter = &freed;
    g.node.free_fn = &FreeGarbage;
  }
  // Sequential short-lived threads: each retires and exits at once, leaving
  // its limbo list to the orphan list.
  for (int t = 0; t < kThreads; ++t) {
    std::thread([&, t] {
      epoch::Guard guard;
      for (int i = 0; i < kPerThread; ++i) {
        epoch::Retire(&garbage[t * kPerThread + i].node);
      }
    }).join();
  }
  const std::uint64_t records = epoch::GetStats().records;
  epoch::DrainForTesting();
  EXPECT_EQ(freed.load(), kThreads * kPerThread);
  // Another wave of threads reuses the released records.
  for (int t = 0; t < kThreads; ++t) {
    std::thread([] { epoch::Guard guard; }).join();
  }
  EXPECT_EQ(epoch::GetStats().records, records);
}

// Threads that are alive together get their records a page at a time: 64
// threads that pin at once map at most two pages of records between them
// (a mapping per record took a page per thread that found no free record).
TEST(EpochTest, RecordsOfConcurrentThreadsShareAPage) {
  constexpr int kThreads = 64;
  std::atomic<int> pinned{0};
  std::atomic<bool> release{false};
  const std::uint64_t maps_before = bsalloc::GetStats().map_calls;
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&] {
      epoch::Guard guard;
      pinned.fetch_add(1);
      while (!release.load()) std::this_thread::yield();
    });
  }
  while (pinned.load() < kThreads) std::this_thread::yield();
  const std::uint64_t maps = bsalloc::GetStats().map_calls - maps_before;
  release.store(true);
  for (std::thread& t : threads) t.join();
  EXPECT_LE(maps, 2u);
}

TEST(EpochTest, LimboIsBoundedByThreshold) {
  epoch::SetCollectThresholdForTesting(8);
  std::atomic<int> freed{0};
  std::vector<Garbage> garbage(1000);
  for (auto& g : garbage) {
    g.freed_counter = &freed;
    g.node.free_fn = &FreeGarbage;
    epoch::Guard guard;
    epoch::Retire(&g.node);
  }
  // With no other thread pinned, collection keeps pace: at most a few
  // thresholds' worth (grace 2) can be pending.
  EXPECT_GE(freed.load(), 1000 - 4 * 8);
  epoch::SetCollectThresholdForTesting(64);
  epoch::DrainForTesting();
  EXPECT_EQ(freed.load(), 1000);
}

// Performance fix (0.1.1): the pin path used to attempt an advance (in
// asymmetric mode a membarrier() system call with IPIs) every
// kPinPeriodFactor * threshold pins whenever the thread held garbage, even
// while the thread kept retiring and so was already collecting once per
// threshold retires. A FAA queue under a push/pop loop retires a segment every
// 256 pops, so this fired every ~1000 pins and dominated Bagpipe's pairs
// benchmark. Now a thread that retired during the last pin period is left to
// the retire path.
TEST(EpochTest, PinPathLeavesThreadsThatKeepRetiringToTheRetirePath) {
  constexpr std::uint32_t kThreshold = 4;  // pin period: 4 * kPinPeriodFactor
  constexpr int kRetires = 64;
  constexpr int kPinsPerRetire = 40;  // every pin period sees a retire
  epoch::SetCollectThresholdForTesting(kThreshold);
  std::atomic<int> freed{0};
  std::vector<Garbage> garbage(kRetires);
  const std::uint64_t before = epoch::GetStats().collections;
  for (auto& g : garbage) {
    g.freed_counter = &freed;
    g.node.free_fn = &FreeGarbage;
    for (int i = 0; i < kPinsPerRetire; ++i) epoch::Guard guard;
    epoch::Guard guard;
    epoch::Retire(&g.node);
  }
  const std::uint64_t attempts = epoch::GetStats().collections - before;
  // The retire path: one attempt per kThreshold retires; at most a couple
  // more from state left by earlier tests (a partial first period). Before the
  // fix the pin path added about one attempt per period (~40 here).
  EXPECT_LE(attempts, kRetires / kThreshold + 2);
  EXPECT_GE(attempts, kRetires / kThreshold - 1);
  epoch::SetCollectThresholdForTesting(64);
  epoch::DrainForTesting();
  EXPECT_EQ(freed.load(), kRetires);
}

// The other half of the bound: a thread that holds garbage but stopped
// retiring still gets it collected by pinning alone.
TEST(EpochTest, PinPathCollectsGarbageOfThreadThatStoppedRetiring) {
  epoch::SetCollectThresholdForTesting(8);  // pin period: 8 * kPinPeriodFactor
  epoch::DrainForTesting();  // start from an empty limbo list
  std::atomic<int> freed{0};
  constexpr int kN = 3;  // below the threshold: no retire-path collection
  std::vector<Garbage> garbage(kN);
  const std::uint64_t before = epoch::GetStats().collections;
  for (auto& g : garbage) {
    g.freed_counter = &freed;
    g.node.free_fn = &FreeGarbage;
    epoch::Guard guard;
    epoch::Retire(&g.node);
  }
  constexpr int kPeriod =
      8 * static_cast<int>(epoch::internal::kPinPeriodFactor);
  for (int i = 0; i < 20 * kPeriod && freed.load() < kN; ++i) {
    epoch::Guard guard;
  }
  EXPECT_EQ(freed.load(), kN);
  EXPECT_GT(epoch::GetStats().collections, before);
  epoch::SetCollectThresholdForTesting(64);
}

}  // namespace
}  // namespace bagpipe
