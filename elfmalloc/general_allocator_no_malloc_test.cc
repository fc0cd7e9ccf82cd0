// Proves the general allocator never calls malloc: the whole life of a thread
// heap (global initialisation, thread heap creation, every size range,
// aligned and large allocations, realloc, frees, remote frees, the
// thread-exit path via MarkThreadIdle, the fallback path) runs under a
// trapping NoMallocScope, which aborts at the first malloc-family call.
#include <cstddef>
#include <cstdint>
#include <thread>
#include <vector>

#include "elfmalloc/general_allocator.h"
#include "gtest/gtest.h"
#include "testutil/malloc_counter.h"

namespace elfmalloc {
namespace {

constexpr std::size_t kMiB = std::size_t{1} << 20;

void Workload(void** handoff, std::size_t handoff_n) {
  void* ptrs[64];
  std::size_t k = 0;
  for (std::size_t n = 0; n <= 3 * kMiB; n = n * 2 + 1) {
    ptrs[k++] = Allocate(n);
  }
  ptrs[k++] = Allocate(16, 64);
  ptrs[k++] = Allocate(100, 8192);
  ptrs[k++] = Allocate(100, 4 * kMiB);
  for (std::size_t i = 0; i < k; ++i) {
    ASSERT_NE(ptrs[i], nullptr) << i;
    static_cast<char*>(ptrs[i])[0] = 1;
    ASSERT_GE(UsableSize(ptrs[i]), 1u);
  }
  // Grow and shrink through every path.
  ptrs[0] = Reallocate(ptrs[0], 5000);
  ptrs[0] = Reallocate(ptrs[0], 3 * kMiB);
  ptrs[0] = Reallocate(ptrs[0], 9 * kMiB);
  ptrs[0] = Reallocate(ptrs[0], 100);
  ASSERT_NE(ptrs[0], nullptr);
  for (std::size_t i = 0; i < k; ++i) Deallocate(ptrs[i]);
  // Remote frees of another thread's blocks.
  for (std::size_t i = 0; i < handoff_n; ++i) Deallocate(handoff[i]);
  // Enough traffic to overflow magazines and refresh slabs.
  void* many[2000];
  for (int round = 0; round < 3; ++round) {
    for (void*& p : many) p = Allocate(48);
    for (void* p : many) Deallocate(p);
  }
}

TEST(GeneralAllocatorNoMallocTest, NeverCallsMalloc) {
  ASSERT_TRUE(testutil::MallocCounterInstalled());
  constexpr std::size_t kHandoff = 500;
  void* handoff[kHandoff];
  std::thread producer([&] {
    testutil::NoMallocScope scope(testutil::NoMallocScope::Mode::kTrap);
    for (std::size_t i = 0; i < kHandoff; ++i) {
      handoff[i] = Allocate(i * 7);
    }
    MarkThreadIdle();  // the thread-exit path, inside the scope
    EXPECT_EQ(scope.calls(), 0u);
  });
  producer.join();
  std::thread consumer([&] {
    testutil::NoMallocScope scope(testutil::NoMallocScope::Mode::kTrap);
    Workload(handoff, kHandoff);
    MarkThreadIdle();
    Workload(nullptr, 0);  // a second heap on the same thread
    MarkThreadIdle();
    EXPECT_EQ(scope.calls(), 0u);
  });
  consumer.join();
  // The real thread-exit path (the key destructor) runs after the scope, so
  // count the whole process instead: a thread that used elfmalloc must cost
  // exactly as many malloc calls (std::thread's own bookkeeping) as one that
  // did nothing.
  std::thread([] {}).join();  // warm-up (glibc caches the stack)
  std::uint64_t before = testutil::TotalMallocCalls();
  std::thread([] {}).join();
  const std::uint64_t empty_thread = testutil::TotalMallocCalls() - before;
  before = testutil::TotalMallocCalls();
  std::thread([] {
    testutil::NoMallocScope scope(testutil::NoMallocScope::Mode::kTrap);
    Workload(nullptr, 0);
  }).join();
  EXPECT_EQ(testutil::TotalMallocCalls() - before, empty_thread);
}

}  // namespace
}  // namespace elfmalloc
