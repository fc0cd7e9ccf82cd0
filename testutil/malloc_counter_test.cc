// Tests for testutil/malloc_counter: the counting malloc must see every kind
// of allocation call (C API, from inside libc, C++ new/delete), attribute it to
// the calling thread only, count zero when nothing allocates, and in trap mode
// abort at the first call with a message naming the function.
//
// This binary is linked with `malloc = "//testutil:malloc_counter"`.
#include "testutil/malloc_counter.h"

#include <malloc.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <new>
#include <string>
#include <thread>
#include <vector>

#include "gtest/gtest.h"
#include "testutil/version.h"

namespace testutil {
namespace {

// Keeps the compiler from eliding allocation/free pairs it can see (GCC
// removes unused malloc/free and new/delete pairs at -O2).
template <class T>
void Escape(T* p) {
  asm volatile("" : : "g"(p) : "memory");
}

TEST(MallocCounterTest, VersionIsSet) { EXPECT_STREQ(kVersion, "0.1.0"); }

TEST(MallocCounterTest, IsInstalled) { EXPECT_TRUE(MallocCounterInstalled()); }

TEST(MallocCounterTest, CountsZeroWhenNothingAllocates) {
  NoMallocScope scope;
  volatile std::uint64_t sum = 0;
  for (int i = 0; i < 1000; ++i) sum = sum + static_cast<std::uint64_t>(i);
  char buf[64];
  std::memset(buf, 'x', sizeof(buf));
  Escape(buf);
  const std::uint64_t calls = scope.calls();
  EXPECT_EQ(calls, 0u);
  EXPECT_EQ(sum, 499500u);
}

TEST(MallocCounterTest, CountsMallocAndFree) {
  NoMallocScope scope;
  void* p = malloc(100);
  Escape(p);
  const std::uint64_t after_malloc = scope.calls();
  free(p);
  const std::uint64_t after_free = scope.calls();
  EXPECT_NE(p, nullptr);
  EXPECT_EQ(after_malloc, 1u);
  EXPECT_EQ(after_free, 2u);
}

TEST(MallocCounterTest, CountsEveryCEntryPointAndForwardsCorrectly) {
  const std::uint64_t thread_before = MallocCallsOnThisThread();
  const std::uint64_t total_before = TotalMallocCalls();
  std::uint64_t expected = 0;
  {
    NoMallocScope scope;

    auto* c = static_cast<unsigned char*>(calloc(16, 8));
    ++expected;
    ASSERT_NE(c, nullptr);
    for (int i = 0; i < 128; ++i) ASSERT_EQ(c[i], 0) << i;
    std::memset(c, 0xAB, 128);
    c = static_cast<unsigned char*>(realloc(c, 4096));
    ++expected;
    ASSERT_NE(c, nullptr);
    for (int i = 0; i < 128; ++i) ASSERT_EQ(c[i], 0xAB) << i;
    c = static_cast<unsigned char*>(reallocarray(c, 2, 4096));
    ++expected;
    ASSERT_NE(c, nullptr);
    EXPECT_EQ(c[127], 0xAB);
    EXPECT_GE(malloc_usable_size(c), 8192u);
    ++expected;
    free(c);
    ++expected;

    void* m = memalign(256, 10);
    ++expected;
    ASSERT_NE(m, nullptr);
    EXPECT_EQ(reinterpret_cast<std::uintptr_t>(m) % 256, 0u);
    free(m);
    ++expected;

    void* pm = nullptr;
    EXPECT_EQ(posix_memalign(&pm, 1024, 10), 0);
    ++expected;
    ASSERT_NE(pm, nullptr);
    EXPECT_EQ(reinterpret_cast<std::uintptr_t>(pm) % 1024, 0u);
    free(pm);
    ++expected;
    void* untouched = &pm;
    EXPECT_EQ(posix_memalign(&untouched, 24, 10), EINVAL);
    ++expected;
    EXPECT_EQ(untouched, &pm);

    void* a = aligned_alloc(64, 128);
    ++expected;
    ASSERT_NE(a, nullptr);
    EXPECT_EQ(reinterpret_cast<std::uintptr_t>(a) % 64, 0u);
    free(a);
    ++expected;

    void* v = valloc(10);
    ++expected;
    void* pv = pvalloc(10);
    ++expected;
    ASSERT_NE(v, nullptr);
    ASSERT_NE(pv, nullptr);
    const auto page = static_cast<std::uintptr_t>(sysconf(_SC_PAGESIZE));
    EXPECT_EQ(reinterpret_cast<std::uintptr_t>(v) % page, 0u);
    EXPECT_EQ(reinterpret_cast<std::uintptr_t>(pv) % page, 0u);
    free(v);
    free(pv);
    expected += 2;

    // Failures count too, and keep glibc's errno.
    // volatile: GCC rejects constant sizes above PTRDIFF_MAX at compile time.
    volatile std::size_t half_max = SIZE_MAX / 2;
    errno = 0;
    void* huge = calloc(half_max, 4);  // overflows
    ++expected;
    EXPECT_EQ(huge, nullptr);
    EXPECT_EQ(errno, ENOMEM);
    errno = 0;
    void* huge2 = reallocarray(nullptr, half_max, 4);
    ++expected;
    EXPECT_EQ(huge2, nullptr);
    EXPECT_EQ(errno, ENOMEM);

    void* volatile null = nullptr;  // GCC deletes a literal free(nullptr)
    free(null);
    ++expected;

    EXPECT_EQ(scope.calls(), expected);
  }
  EXPECT_EQ(MallocCallsOnThisThread() - thread_before, expected);
  // Other threads (none here, but the total is global) can only add.
  EXPECT_GE(TotalMallocCalls() - total_before, expected);
}

TEST(MallocCounterTest, SeesAllocationsInsideLibc) {
  NoMallocScope scope;
  char* s = strdup("hello");  // libc calls malloc internally
  const std::uint64_t calls = scope.calls();
  free(s);
  EXPECT_EQ(calls, 1u);
}

struct Big {
  char bytes[1000];
};
struct alignas(256) OverAligned {
  char bytes[8];
};

TEST(MallocCounterTest, CountsOperatorNewAndDeleteForms) {
  NoMallocScope scope;
  int* i = new int(42);
  Escape(i);
  EXPECT_EQ(scope.calls(), 1u);
  delete i;
  EXPECT_EQ(scope.calls(), 2u);

  Big* arr = new Big[3];
  Escape(arr);
  delete[] arr;
  EXPECT_EQ(scope.calls(), 4u);

  Big* nothrow = new (std::nothrow) Big;
  Escape(nothrow);
  ASSERT_NE(nothrow, nullptr);
  delete nothrow;
  EXPECT_EQ(scope.calls(), 6u);

  auto* aligned = new OverAligned;
  Escape(aligned);
  EXPECT_EQ(reinterpret_cast<std::uintptr_t>(aligned) % 256, 0u);
  delete aligned;
  EXPECT_EQ(scope.calls(), 8u);

  auto* aligned_arr = new (std::nothrow) OverAligned[4];
  Escape(aligned_arr);
  ASSERT_NE(aligned_arr, nullptr);
  EXPECT_EQ(reinterpret_cast<std::uintptr_t>(aligned_arr) % 256, 0u);
  delete[] aligned_arr;
  EXPECT_EQ(scope.calls(), 10u);

  // Direct calls of the replaceable functions (sized delete included).
  void* raw = ::operator new(64);
  ::operator delete(raw, 64);
  EXPECT_EQ(scope.calls(), 12u);
}

TEST(MallocCounterTest, OperatorNewFailureThrowsAndNothrowReturnsNull) {
  volatile std::size_t huge = SIZE_MAX - 4096;
  NoMallocScope scope;
  EXPECT_THROW(
      {
        void* p = ::operator new(huge);
        Escape(p);
      },
      std::bad_alloc);
  void* q = ::operator new(huge, std::nothrow);
  EXPECT_EQ(q, nullptr);
  // At least the two failed mallocs; the exception machinery may allocate.
  EXPECT_GE(scope.calls(), 2u);
}

TEST(MallocCounterTest, StandardContainersAreSeen) {
  NoMallocScope scope;
  std::vector<int> v;
  for (int i = 0; i < 100; ++i) v.push_back(i);
  std::string s(1000, 'x');
  const std::uint64_t calls = scope.calls();
  EXPECT_GT(calls, 1u);
  EXPECT_EQ(v[99] + s.size(), 1099u);
}

TEST(MallocCounterTest, ScopesNest) {
  NoMallocScope outer;
  void* a = malloc(8);
  Escape(a);
  {
    NoMallocScope inner;
    free(a);
    EXPECT_EQ(inner.calls(), 1u);
  }
  EXPECT_EQ(outer.calls(), 2u);
}

TEST(MallocCounterTest, CountsArePerThread) {
  std::atomic<int> phase{0};
  std::uint64_t worker_calls = 0;
  // The thread is created (which allocates on this thread) before the scope.
  std::thread worker([&] {
    while (phase.load(std::memory_order_acquire) != 1) {
    }
    NoMallocScope scope;
    void* p = malloc(32);
    Escape(p);
    free(p);
    worker_calls = scope.calls();
    phase.store(2, std::memory_order_release);
  });
  const std::uint64_t total_before = TotalMallocCalls();
  std::uint64_t main_calls = 0;
  {
    NoMallocScope scope;
    phase.store(1, std::memory_order_release);
    while (phase.load(std::memory_order_acquire) != 2) {
    }
    main_calls = scope.calls();
  }
  worker.join();
  EXPECT_EQ(main_calls, 0u);
  EXPECT_EQ(worker_calls, 2u);
  EXPECT_GE(TotalMallocCalls() - total_before, 2u);
}

TEST(MallocCounterDeathTest, TrapModeAbortsAtFirstCall) {
  EXPECT_DEATH(
      {
        NoMallocScope scope(NoMallocScope::Mode::kTrap);
        void* p = malloc(24);
        Escape(p);
      },
      "NoMallocScope\\(kTrap\\): malloc was called");
  EXPECT_DEATH(
      {
        NoMallocScope scope(NoMallocScope::Mode::kTrap);
        std::vector<int> v(10);
        Escape(v.data());
      },
      "NoMallocScope\\(kTrap\\): malloc was called");
}

TEST(MallocCounterTest, TrapModeDoesNothingWithoutCalls) {
  std::uint64_t calls;
  {
    NoMallocScope scope(NoMallocScope::Mode::kTrap);
    char buf[32];
    std::memset(buf, 1, sizeof(buf));
    Escape(buf);
    calls = scope.calls();
  }
  EXPECT_EQ(calls, 0u);
  // Disarmed after the scope: allocating is fine again.
  void* p = malloc(1);
  Escape(p);
  free(p);
}

}  // namespace
}  // namespace testutil
