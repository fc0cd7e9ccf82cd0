// Proves that bsalloc never calls malloc (or any other C/C++ allocation
// function): this binary's malloc is //testutil:malloc_counter, and each test
// runs bsalloc work on threads that have armed a testutil::NoMallocScope, most
// of them in trap mode, which aborts at the first allocation call with a
// message naming it. Covered: Allocate / Deallocate / Reallocate in both size
// classes and direct mappings, cache hits, misses, overflow and draining,
// failure paths, statistics, New / Delete, and the STL adaptor in std::vector,
// std::map and std::unordered_map; single-threaded and on several threads at
// once (each worker arms its scope after it has started, because creating a
// thread allocates its stack and control block on the creating thread).
//
// A control test shows the scope does see allocations in this binary, so a
// zero count is not vacuous.
#include <atomic>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <map>
#include <thread>
#include <unordered_map>
#include <utility>
#include <vector>

#include "bsalloc/bsalloc.h"
#include "gtest/gtest.h"
#include "testutil/malloc_counter.h"

namespace bsalloc {
namespace {

using testutil::NoMallocScope;

constexpr std::size_t kKiB = 1024;
constexpr std::size_t kMiB = 1024 * kKiB;

// Exercises every bsalloc path. Uses only the stack: no std containers with
// the default allocator. Returns the number of content mismatches.
int ExerciseEverything(unsigned seed) {
  int bad = 0;
  constexpr std::size_t kSizes[] = {0,
                                    1,
                                    64,
                                    kSmallMaxSize,
                                    kSmallMaxSize + 1,
                                    20 * kKiB,
                                    kMediumMaxSize,
                                    kMediumMaxSize + 1,
                                    300 * kKiB,
                                    3 * kMiB};
  constexpr std::size_t kCount = sizeof(kSizes) / sizeof(kSizes[0]);
  // More blocks than the caches hold, so frees overflow them into munmap.
  // Fewer direct ones: Reallocate copies them, faulting in every page.
  constexpr int kCopies = 40;
  constexpr int kDirectCopies = 4;
  void* blocks[kCount][kCopies];
  for (std::size_t i = 0; i < kCount; ++i) {
    for (int c = 0; c < kCopies; ++c) {
      blocks[i][c] = nullptr;
      if (kSizes[i] > kMediumMaxSize && c >= kDirectCopies) continue;
      blocks[i][c] = Allocate(kSizes[i]);
      if (blocks[i][c] == nullptr) {
        ++bad;
        continue;
      }
      if (kSizes[i] > 0) {
        static_cast<unsigned char*>(blocks[i][c])[0] =
            static_cast<unsigned char>(seed + c);
      }
    }
  }
  for (std::size_t i = 0; i < kCount; ++i) {
    for (int c = 0; c < kCopies; ++c) {
      if (blocks[i][c] == nullptr) continue;
      if (kSizes[i] > 0 && static_cast<unsigned char*>(blocks[i][c])[0] !=
                               static_cast<unsigned char>(seed + c)) {
        ++bad;
      }
      // Grow, then shrink back, through Reallocate (copies and in-place).
      const std::size_t bigger = kSizes[i] * 2 + 8 * kKiB;
      void* q = Reallocate(blocks[i][c], kSizes[i], bigger);
      if (q == nullptr) {
        ++bad;
        Deallocate(blocks[i][c], kSizes[i]);
        continue;
      }
      if (kSizes[i] > 0 && static_cast<unsigned char*>(q)[0] !=
                               static_cast<unsigned char>(seed + c)) {
        ++bad;
      }
      void* r = Reallocate(q, bigger, kSizes[i]);
      if (r == nullptr) {
        ++bad;
        Deallocate(q, bigger);
        continue;
      }
      Deallocate(r, kSizes[i]);
    }
  }
  // Failure paths.
  if (Allocate(SIZE_MAX) != nullptr) ++bad;
  if (Allocate(std::size_t{1} << 62) != nullptr) ++bad;
  void* p = Allocate(100);
  if (Reallocate(p, 100, std::size_t{1} << 62) != nullptr) ++bad;
  Deallocate(p, 100);
  // Typed helpers.
  struct Node {
    std::uint64_t key;
    Node* next;
  };
  Node* n = New<Node>(Node{seed, nullptr});
  if (n == nullptr || n->key != seed) ++bad;
  Delete(n);
  {
    UniquePtr<Node> u(New<Node>(Node{1, nullptr}));
    if (u == nullptr) ++bad;
  }
  const Stats stats = GetStats();
  if (stats.map_calls == 0) ++bad;
  return bad;
}

TEST(BsallocNoMallocTest, TheCounterIsLiveInThisBinary) {
  ASSERT_TRUE(testutil::MallocCounterInstalled());
  NoMallocScope scope;
  std::vector<int> v(100);  // std::allocator: must be seen
  v[5] = 1;
  EXPECT_GE(scope.calls(), 1u);
}

TEST(BsallocNoMallocTest, SingleThreadedMakesNoMallocCalls) {
  ASSERT_TRUE(testutil::MallocCounterInstalled());
  int bad;
  std::uint64_t calls;
  {
    NoMallocScope scope(NoMallocScope::Mode::kTrap);
    bad = ExerciseEverything(7);
    bad += ExerciseEverything(8);  // now with warm caches
    ReleaseCachedMemory();
    calls = scope.calls();
  }
  EXPECT_EQ(bad, 0);
  EXPECT_EQ(calls, 0u);
}

// Frees a block whose size was stored in its first word (blocks handed
// between threads carry their size so the receiver can route the free).
int CheckAndFreeHandedOff(void* p, unsigned char expected_tag) {
  std::size_t size;
  std::memcpy(&size, p, sizeof(size));
  const int bad = static_cast<unsigned char*>(p)[size - 1] != expected_tag;
  Deallocate(p, size);
  return bad;
}

TEST(BsallocNoMallocTest, MultiThreadedMakesNoMallocCalls) {
  ASSERT_TRUE(testutil::MallocCounterInstalled());
  constexpr int kThreads = 4;
  constexpr std::size_t kHandOffSizes[] = {1000, 7000, 40 * kKiB, 200 * kKiB,
                                           3000};
  constexpr unsigned char kTag = 0xC3;
  std::atomic<int> armed{0};
  std::atomic<bool> go{false};
  std::uint64_t calls[kThreads] = {};
  int bad[kThreads] = {};
  // mailbox[t] holds at most one block allocated by thread t, to be freed by
  // thread t + 1 (or by t itself if it is still there on t's next round).
  std::atomic<void*> mailbox[kThreads] = {};
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      // Armed only now: creating this thread allocated on the parent.
      NoMallocScope scope(NoMallocScope::Mode::kTrap);
      armed.fetch_add(1);
      while (!go.load(std::memory_order_acquire)) {
      }
      for (int round = 0; round < 5; ++round) {
        bad[t] += ExerciseEverything(static_cast<unsigned>(t * 10 + round));
        for (std::size_t size : kHandOffSizes) {
          void* mine = Allocate(size);
          if (mine == nullptr) {
            ++bad[t];
            continue;
          }
          std::memcpy(mine, &size, sizeof(size));
          static_cast<unsigned char*>(mine)[size - 1] = kTag;
          if (void* stale =
                  mailbox[t].exchange(mine, std::memory_order_acq_rel)) {
            bad[t] += CheckAndFreeHandedOff(stale, kTag);
          }
          if (void* theirs = mailbox[(t + 1) % kThreads].exchange(
                  nullptr, std::memory_order_acq_rel)) {
            bad[t] += CheckAndFreeHandedOff(theirs, kTag);
          }
        }
      }
      calls[t] = scope.calls();
    });
  }
  while (armed.load() != kThreads) {
  }
  go.store(true, std::memory_order_release);
  for (std::thread& th : threads) th.join();
  int leftover_bad = 0;
  for (auto& box : mailbox) {
    if (void* p = box.exchange(nullptr))
      leftover_bad += CheckAndFreeHandedOff(p, kTag);
  }
  for (int t = 0; t < kThreads; ++t) {
    EXPECT_EQ(bad[t], 0) << t;
    EXPECT_EQ(calls[t], 0u) << t;
  }
  EXPECT_EQ(leftover_bad, 0);
}

TEST(BsallocNoMallocTest, StlAdaptorMakesNoMallocCalls) {
  ASSERT_TRUE(testutil::MallocCounterInstalled());
  std::uint64_t calls;
  std::uint64_t checksum = 0;
  {
    NoMallocScope scope(NoMallocScope::Mode::kTrap);
    {
      std::vector<std::uint64_t, Allocator<std::uint64_t>> v;
      for (std::uint64_t i = 0; i < 50000; ++i) v.push_back(i);
      v.shrink_to_fit();
      checksum += v[49999];

      using Pair = std::pair<const int, int>;
      std::map<int, int, std::less<int>, Allocator<Pair>> m;
      std::unordered_map<int, int, std::hash<int>, std::equal_to<int>,
                         Allocator<Pair>>
          u;
      for (int i = 0; i < 300; ++i) {
        m.emplace(i, 2 * i);
        u.emplace(i, 3 * i);
      }
      for (int i = 0; i < 300; i += 3) {
        m.erase(i);
        u.erase(i);
      }
      checksum += static_cast<std::uint64_t>(m.at(299) + u.at(298));
    }
    ReleaseCachedMemory();
    calls = scope.calls();
  }
  EXPECT_EQ(calls, 0u);
  EXPECT_EQ(checksum, 49999u + 598u + 894u);
}

}  // namespace
}  // namespace bsalloc
