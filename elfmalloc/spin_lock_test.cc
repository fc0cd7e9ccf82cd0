// Tests for spin_lock.h: mutual exclusion under contention (a non-atomic
// counter and an "inside" flag), waiters sleeping in the futex are woken,
// and errno is preserved by the slow path.
#include "elfmalloc/spin_lock.h"

#include <atomic>
#include <cerrno>
#include <chrono>
#include <thread>
#include <vector>

#include "gtest/gtest.h"

namespace elfmalloc {
namespace {

ABSL_CONST_INIT SpinLock g_lock;  // constinit-constructible

TEST(SpinLockTest, MutualExclusion) {
  std::uint64_t counter = 0;  // plain: a race would lose updates (and TSan
                              // would report it)
  std::atomic<int> inside{0};
  std::atomic<int> overlaps{0};
  constexpr int kThreads = 4;
  constexpr int kIters = 20000;
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&] {
      for (int i = 0; i < kIters; ++i) {
        SpinLockHolder h(&g_lock);
        if (inside.fetch_add(1) != 0) overlaps.fetch_add(1);
        ++counter;
        inside.fetch_sub(1);
      }
    });
  }
  for (std::thread& t : threads) t.join();
  EXPECT_EQ(counter, std::uint64_t{kThreads} * kIters);
  EXPECT_EQ(overlaps.load(), 0);
  EXPECT_FALSE(g_lock.IsHeld());
}

// A holder that sleeps forces the others past the spin into the futex; they
// must all be woken and get the lock in turn.
TEST(SpinLockTest, SleepingWaitersAreWoken) {
  SpinLock lock;
  int order = 0;
  lock.Lock();
  std::vector<std::thread> waiters;
  for (int t = 0; t < 3; ++t) {
    waiters.emplace_back([&] {
      SpinLockHolder h(&lock);
      ++order;
    });
  }
  std::this_thread::sleep_for(std::chrono::milliseconds(50));
  errno = 1234;
  lock.Unlock();
  for (std::thread& t : waiters) t.join();
  EXPECT_EQ(order, 3);
  EXPECT_EQ(errno, 1234);
}

}  // namespace
}  // namespace elfmalloc
