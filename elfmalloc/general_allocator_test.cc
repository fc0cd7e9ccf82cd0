// Tests for the general allocator: size sweep with content checks, class
// boundaries, alignment matrix, realloc grow/shrink/same (the never-shrinks
// QUIRK fix), cross-thread frees, thread churn with bounded memory, stats.
#include "elfmalloc/general_allocator.h"

#include <atomic>
#include <cerrno>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <cstdlib>
#include <thread>
#include <vector>

#include <unistd.h>

#include "elfmalloc/alloc_type.h"
#include "elfmalloc/size_classes.h"
#include "gtest/gtest.h"
#include "mmap_alloc/mmap_alloc.h"

namespace elfmalloc {
namespace {

constexpr std::size_t kMiB = std::size_t{1} << 20;

// Longer runs: ELFMALLOC_STRESS_SCALE=20.
std::size_t Scale() {
  const char* s = std::getenv("ELFMALLOC_STRESS_SCALE");
  const long v = s != nullptr ? std::atol(s) : 1;
  return v > 0 ? static_cast<std::size_t>(v) : 1;
}

unsigned char Byte(std::size_t i, unsigned seed) {
  return static_cast<unsigned char>((i * 131) ^ (i >> 8) ^ seed);
}
// Writes every byte of [p, p+n) (stride 1 for small n, sampled above 64 KiB
// plus the last byte, to keep the sweep fast).
void Fill(void* p, std::size_t n, unsigned seed) {
  auto* b = static_cast<unsigned char*>(p);
  const std::size_t step = n <= (std::size_t{64} << 10) ? 1 : 61;
  for (std::size_t i = 0; i < n; i += step) b[i] = Byte(i, seed);
  if (n > 0) b[n - 1] = Byte(n - 1, seed);
}
// Checks what Fill(p, filled, seed) wrote into the first n bytes (filled
// defaults to n; a larger filled checks a prefix of a bigger fill).
bool Check(const void* p, std::size_t n, unsigned seed,
           std::size_t filled = 0) {
  if (filled == 0) filled = n;
  auto* b = static_cast<const unsigned char*>(p);
  const std::size_t step = filled <= (std::size_t{64} << 10) ? 1 : 61;
  for (std::size_t i = 0; i < n; i += step) {
    if (b[i] != Byte(i, seed)) return false;
  }
  return n == 0 || n != filled || b[n - 1] == Byte(n - 1, seed);
}

std::vector<std::size_t> SweepSizes() {
  std::vector<std::size_t> v;
  for (std::size_t n = 0; n <= 2048; ++n) v.push_back(n);
  for (std::size_t n = 2048; n <= 2 * kMiB; n += n / 16 + 7) v.push_back(n);
  // Both sides of every class boundary, and of the large cutoff.
  for (std::size_t i = 0; i < kNumSizeClasses; ++i) {
    const std::size_t s = ClassSize(SizeClass(static_cast<std::uint8_t>(i)));
    v.push_back(s - 1);
    v.push_back(s);
    v.push_back(s + 1);
  }
  return v;
}

TEST(GeneralAllocatorTest, EverySizeHoldsItsUsableSize) {
  std::vector<void*> live;
  std::vector<std::size_t> sizes = SweepSizes();
  unsigned seed = 0;
  for (std::size_t n : sizes) {
    void* p = Allocate(n);
    ASSERT_NE(p, nullptr) << n;
    const std::size_t u = UsableSize(p);
    ASSERT_GE(u, n) << n;
    if (IsSlabSize(n)) {
      EXPECT_EQ(u, ClassSize(SizeToClass(n))) << n;
      EXPECT_NE(ReadAllocType(p), AllocType::kLarge) << n;
      EXPECT_EQ(reinterpret_cast<std::uintptr_t>(p) %
                    ClassAlignment(SizeToClass(n)), 0u) << n;
    } else {
      EXPECT_EQ(ReadAllocType(p), AllocType::kLarge) << n;
    }
    Fill(p, u, seed++);
    live.push_back(p);
  }
  seed = 0;
  for (std::size_t i = 0; i < live.size(); ++i) {
    EXPECT_TRUE(Check(live[i], UsableSize(live[i]), seed++)) << sizes[i];
    Deallocate(live[i]);
  }
}

TEST(GeneralAllocatorTest, ZeroSizeGivesUniquePointers) {
  void* a = Allocate(0);
  void* b = Allocate(0);
  ASSERT_NE(a, nullptr);
  ASSERT_NE(b, nullptr);
  EXPECT_NE(a, b);
  Deallocate(a);
  Deallocate(b);
  Deallocate(nullptr);  // no-op
  EXPECT_EQ(UsableSize(nullptr), 0u);
}

TEST(GeneralAllocatorTest, AlignmentMatrix) {
  const std::size_t sizes[] = {0, 1, 8, 16, 24, 100, 192, 200, 4000, 5000,
                               65536, 100000, kMiB - 1, kMiB, kMiB + 1,
                               3 * kMiB};
  for (std::size_t align = 1; align <= 4 * kMiB; align <<= 1) {
    for (std::size_t n : sizes) {
      void* p = Allocate(n, align);
      ASSERT_NE(p, nullptr) << n << " " << align;
      EXPECT_EQ(reinterpret_cast<std::uintptr_t>(p) % align, 0u)
          << n << " " << align;
      const std::size_t u = UsableSize(p);
      EXPECT_GE(u, n);
      Fill(p, u, 3);
      EXPECT_TRUE(Check(p, u, 3));
      Deallocate(p);
    }
  }
}

// QUIRK fixed: the reference rounded only the size, so (16, 64) got 16-byte
// alignment. Allocate many so that a 16-aligned-only result would show.
TEST(GeneralAllocatorTest, AlignmentLargerThanSizeIsHonoured) {
  std::vector<void*> v;
  for (int i = 0; i < 64; ++i) {
    void* p = Allocate(16, 64);
    ASSERT_NE(p, nullptr);
    EXPECT_EQ(reinterpret_cast<std::uintptr_t>(p) % 64, 0u);
    v.push_back(p);
  }
  for (void* p : v) Deallocate(p);
}

TEST(GeneralAllocatorTest, BadAlignmentIsEinval) {
  errno = 0;
  EXPECT_EQ(Allocate(16, 24), nullptr);
  EXPECT_EQ(errno, EINVAL);
}

TEST(GeneralAllocatorTest, HugeRequestFailsWithEnomem) {
  errno = 0;
  EXPECT_EQ(Allocate(~std::size_t{0} / 2), nullptr);
  EXPECT_EQ(errno, ENOMEM);
}

// AllocateOr (operator new's entry): Allocate's blocks, from the fast path
// and the slow ones; where Allocate fails, the handler's result (called
// with the same n), and an exception the handler throws reaches the caller.
TEST(GeneralAllocatorTest, AllocateOrCallsTheHandlerOnlyOnFailure) {
  static std::size_t handled;
  static char fallback[16];
  handled = 0;
  const AllocFailureHandler handler = [](std::size_t n) -> void* {
    handled = n;
    return fallback;
  };
  for (int round = 0; round < 3; ++round) {
    for (std::size_t n : {0ul, 1ul, 16ul, 100ul, 1000ul, 5000ul, 70000ul,
                          300000ul, 3000000ul}) {
      void* p = AllocateOr(n, handler);
      ASSERT_NE(p, nullptr);
      ASSERT_NE(p, static_cast<void*>(fallback));
      EXPECT_GE(UsableSize(p), n);
      std::memset(p, 0x5a, n);
      Deallocate(p);
    }
  }
  EXPECT_EQ(handled, 0u);
  const std::size_t huge = ~std::size_t{0} / 2;
  EXPECT_EQ(AllocateOr(huge, handler), static_cast<void*>(fallback));
  EXPECT_EQ(handled, huge);
  struct Refused {};
  EXPECT_THROW(AllocateOr(huge, [](std::size_t) -> void* { throw Refused(); }),
               Refused);
}

TEST(GeneralAllocatorTest, ReallocGrowsKeepingContents) {
  const std::size_t steps[] = {1, 8, 17, 200, 1000, 70000, kMiB, kMiB + 5,
                               3 * kMiB, 7 * kMiB};
  void* p = Allocate(0);
  std::size_t have = 0;
  for (std::size_t n : steps) {
    void* q = Reallocate(p, n);
    ASSERT_NE(q, nullptr) << n;
    EXPECT_TRUE(Check(q, have, 9, have)) << n;
    EXPECT_GE(UsableSize(q), n);
    Fill(q, n, 9);
    p = q;
    have = n;
  }
  Deallocate(p);
}

// A buffer grown an eighth at a time (CPython's bytearray and list growth)
// is copied a few times per doubling, not at every class it crosses: a
// grown block of 4 KiB or more takes the class of half again its request.
TEST(GeneralAllocatorTest, ReallocGrowthInSmallStepsCopiesRarely) {
  std::size_t n = 4096;
  char* p = static_cast<char*>(Allocate(n));
  ASSERT_NE(p, nullptr);
  std::memset(p, 0x5a, n);
  int moves = 0, steps = 0;
  while (n < 200 * 1024) {
    const std::size_t next = n + n / 8;
    char* q = static_cast<char*>(Reallocate(p, next));
    ASSERT_NE(q, nullptr);
    ASSERT_EQ(q[n - 1], 0x5a);
    std::memset(q + n, 0x5a, next - n);
    if (q != p) ++moves;
    p = q;
    n = next;
    ++steps;
  }
  // 34 steps over 5.6 doublings; the classes are 4 per doubling, so
  // without headroom 24 of them moved the block.
  EXPECT_EQ(steps, 34);
  EXPECT_LE(moves, 12);
  Deallocate(p);
}

// A buffer grown an eighth at a time becomes a large block when it moves
// at 128 KiB or more (kReallocLargeMin) and grows in place from there:
// before, it moved across the 2 MiB-page classes every few steps and once
// more past the slab limit.
TEST(GeneralAllocatorTest, ReallocGrowthFrom128KiBStaysInPlace) {
  constexpr std::size_t kLargeMin = std::size_t{128} << 10;
  std::size_t n = 96 << 10;
  char* p = static_cast<char*>(Allocate(n));
  ASSERT_NE(p, nullptr);
  std::memset(p, 0x3c, n);
  int moves_after_large = 0;
  bool large = false;
  while (n < (std::size_t{2} << 20)) {
    const std::size_t next = n + n / 8;
    char* q = static_cast<char*>(Reallocate(p, next));
    ASSERT_NE(q, nullptr);
    ASSERT_EQ(q[0], 0x3c);
    ASSERT_EQ(q[n - 1], 0x3c);
    std::memset(q + n, 0x3c, next - n);
    if (large && q != p) ++moves_after_large;
    if (q != p && next >= kLargeMin) {
      // Moved at 128 KiB or more: into a large block.
      EXPECT_EQ(ReadAllocType(q), AllocType::kLarge) << next;
      large = true;
    }
    p = q;
    n = next;
  }
  EXPECT_TRUE(large);
  EXPECT_LE(moves_after_large, 1);
  // Shrunk to 128 KiB or more it stays where it is.
  char* q = static_cast<char*>(Reallocate(p, 200 << 10));
  EXPECT_EQ(q, p);
  EXPECT_EQ(q[(200 << 10) - 1], 0x3c);
  Deallocate(q);
}

TEST(GeneralAllocatorTest, ReallocSameOrSlightlySmallerKeepsTheBlock) {
  void* p = Allocate(1000);  // 1 KiB class
  Fill(p, 1000, 4);
  EXPECT_EQ(Reallocate(p, 1000), p);
  EXPECT_EQ(Reallocate(p, 1024), p);
  EXPECT_EQ(Reallocate(p, 513), p);  // 512 B class would not save half
  EXPECT_TRUE(Check(p, 513, 4, 1000));
  Deallocate(p);
}

// QUIRK fixed: the reference's realloc never shrank.
TEST(GeneralAllocatorTest, ReallocShrinksWhenItSavesHalf) {
  void* p = Allocate(64 << 10);
  ASSERT_NE(p, nullptr);
  Fill(p, 100, 5);
  void* q = Reallocate(p, 100);
  ASSERT_NE(q, nullptr);
  EXPECT_NE(q, p);
  EXPECT_EQ(UsableSize(q), 112u);
  EXPECT_TRUE(Check(q, 100, 5, 100));
  Deallocate(q);

  // Large to slab, and large to smaller large.
  void* big = Allocate(8 * kMiB);
  ASSERT_NE(big, nullptr);
  Fill(big, 8 * kMiB, 6);
  void* mid = Reallocate(big, 3 * kMiB);
  ASSERT_NE(mid, nullptr);
  EXPECT_LT(UsableSize(mid), 3 * kMiB + kMiB);
  EXPECT_TRUE(Check(mid, 3 * kMiB, 6, 8 * kMiB));
  void* small = Reallocate(mid, 5000);
  ASSERT_NE(small, nullptr);
  EXPECT_NE(ReadAllocType(small), AllocType::kLarge);
  EXPECT_EQ(UsableSize(small), 5120u);
  EXPECT_TRUE(Check(small, 5000, 6, 8 * kMiB));
  Deallocate(small);
}

TEST(GeneralAllocatorTest, ReallocNullAllocates) {
  void* p = Reallocate(nullptr, 40);
  ASSERT_NE(p, nullptr);
  EXPECT_GE(UsableSize(p), 40u);
  Deallocate(p);
}

// Threads allocate, hand their blocks to the next thread, which checks and
// frees them (every free is remote).
TEST(GeneralAllocatorTest, CrossThreadFrees) {
  constexpr int kThreads = 4;
  const std::size_t per_thread = 3000 * Scale();
  std::vector<std::vector<void*>> blocks(kThreads);
  std::vector<std::vector<std::size_t>> sizes(kThreads);
  std::vector<std::thread> ts;
  for (int t = 0; t < kThreads; ++t) {
    ts.emplace_back([&, t] {
      std::uint64_t x = 88172645463325252ull + t;
      for (std::size_t i = 0; i < per_thread; ++i) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        const std::size_t n = (x % 8 == 0) ? x % (256 << 10) : x % 512;
        void* p = Allocate(n);
        ASSERT_NE(p, nullptr);
        Fill(p, n, static_cast<unsigned>(t));
        blocks[t].push_back(p);
        sizes[t].push_back(n);
      }
    });
  }
  for (auto& th : ts) th.join();
  ts.clear();
  for (int t = 0; t < kThreads; ++t) {
    ts.emplace_back([&, t] {
      const int from = (t + 1) % kThreads;
      for (std::size_t i = 0; i < blocks[from].size(); ++i) {
        EXPECT_TRUE(Check(blocks[from][i], sizes[from][i],
                          static_cast<unsigned>(from)));
        Deallocate(blocks[from][i]);
      }
    });
  }
  for (auto& th : ts) th.join();
}

// Producer/consumer pairs running concurrently (TSan checks the hand-off).
TEST(GeneralAllocatorTest, ConcurrentProducerConsumer) {
  constexpr std::size_t kSlots = 256;
  const std::size_t rounds = 20000 * Scale();
  struct Slot {
    std::atomic<void*> p{nullptr};
  };
  std::vector<Slot> slots(kSlots);
  std::atomic<bool> done{false};
  std::thread producer([&] {
    for (std::size_t i = 0; i < rounds; ++i) {
      Slot& s = slots[i % kSlots];
      const std::size_t n = 8 + (i * 37) % 3000;
      void* p = Allocate(n);
      ASSERT_NE(p, nullptr);
      Fill(p, 8, static_cast<unsigned>(n));
      *static_cast<std::size_t*>(p) = n;
      void* expected = nullptr;
      while (!s.p.compare_exchange_weak(expected, p,
                                        std::memory_order_release)) {
        expected = nullptr;
        std::this_thread::yield();
      }
    }
    done.store(true, std::memory_order_release);
  });
  std::thread consumer([&] {
    for (;;) {
      bool any = false;
      for (Slot& s : slots) {
        void* p = s.p.exchange(nullptr, std::memory_order_acquire);
        if (p == nullptr) continue;
        any = true;
        const std::size_t n = *static_cast<std::size_t*>(p);
        EXPECT_GE(UsableSize(p), n);
        Deallocate(p);
      }
      if (!any) {
        if (done.load(std::memory_order_acquire)) {
          bool empty = true;
          for (Slot& s : slots) empty &= s.p.load() == nullptr;
          if (empty) break;
        }
        std::this_thread::yield();
      }
    }
  });
  producer.join();
  consumer.join();
}

// 200 short threads: their front ends go away at exit and the memory they
// used is reused by the next ones, so the mapped and active footprints stay
// bounded instead of growing with the number of threads.
TEST(GeneralAllocatorTest, ThreadChurnStaysBounded) {
  auto work = [] {
    std::vector<void*> v;
    for (int i = 0; i < 300; ++i) {
      void* p = Allocate(static_cast<std::size_t>(16 + (i % 40) * 48));
      ASSERT_NE(p, nullptr);
      v.push_back(p);
    }
    for (void* p : v) Deallocate(p);
  };
  // Warm up (a few threads' worth of pages), then measure.
  for (int i = 0; i < 10; ++i) std::thread(work).join();
  const Stats before = GetStats();
  const std::size_t threads = 200 * Scale();
  for (std::size_t i = 0; i < threads; ++i) std::thread(work).join();
  const Stats after = GetStats();
  EXPECT_EQ(after.thread_heaps, before.thread_heaps);
  // Each exited thread returned its slabs: nothing accumulates per thread
  // (one thread's worth of slack for slabs left floating).
  EXPECT_LE(after.active_bytes, before.active_bytes + (std::size_t{4} << 20));
  EXPECT_LE(after.mapped_bytes, before.mapped_bytes + (std::size_t{4} << 20));
}

TEST(GeneralAllocatorTest, StatsCountLargeAndSlabMemory) {
  const Stats before = GetStats();
  void* big = Allocate(5 * kMiB);
  ASSERT_NE(big, nullptr);
  Stats s = GetStats();
  EXPECT_EQ(s.large_allocations, before.large_allocations + 1);
  EXPECT_GE(s.large_bytes, before.large_bytes + 5 * kMiB);
  EXPECT_GE(s.mapped_bytes, s.large_bytes);
  EXPECT_GE(s.active_bytes, s.large_bytes);
  Deallocate(big);
  s = GetStats();
  EXPECT_EQ(s.large_allocations, before.large_allocations);
  // A 512 KiB object takes a 2 MiB slab of its class.
  std::thread([&] {
    void* p = Allocate(512 << 10);
    ASSERT_NE(p, nullptr);
    EXPECT_GE(GetStats().class_pages_in_use[24], 1u);
    Deallocate(p);
  }).join();
}

// allocated_bytes counts every block the program holds at its class size,
// whichever thread allocates or frees it; per-class counts agree.
TEST(GeneralAllocatorTest, AllocatedBytesFollowsLiveBlocks) {
  // Exact checks use the count of 100-byte blocks' class: under
  // --config=elfc the test's own containers and threads allocate through
  // elfmalloc too (other classes), so allocated_bytes is only bounded.
  constexpr std::size_t kN = 1000;
  const SizeClass c = SizeToClass(100);
  std::vector<void*> v;
  v.reserve(kN);
  const Stats before = GetStats();
  auto objects = [&](const Stats& s) {
    return s.class_allocated_objects[c.index()] -
           before.class_allocated_objects[c.index()];
  };
  for (std::size_t i = 0; i < kN; ++i) v.push_back(Allocate(100));
  Stats s = GetStats();
  EXPECT_EQ(objects(s), kN);
  EXPECT_GE(s.allocated_bytes, before.allocated_bytes + kN * ClassSize(c));
  // Another thread frees half of them (its own counters go negative).
  std::thread([&] {
    for (std::size_t i = 0; i < kN / 2; ++i) Deallocate(v[i]);
  }).join();
  s = GetStats();
  EXPECT_EQ(objects(s), kN - kN / 2);
  void* big = Allocate(3 * kMiB);
  s = GetStats();
  EXPECT_GE(s.allocated_bytes,
            before.allocated_bytes + (kN - kN / 2) * ClassSize(c) + 3 * kMiB);
  Deallocate(big);
  for (std::size_t i = kN / 2; i < kN; ++i) Deallocate(v[i]);
  s = GetStats();
  EXPECT_EQ(objects(s), 0u);
  EXPECT_LE(s.allocated_bytes, before.allocated_bytes + 64 * 1024);
  EXPECT_LE(s.allocated_bytes, s.active_bytes);
  EXPECT_LE(s.dirty_bytes + s.returned_bytes, s.mapped_bytes);
}

// A pointer whose stamp is not elfmalloc's is refused loudly rather than
// freed into some slab.
// A pointer whose 2 MiB boundary is not mapped at all (a static array, a
// block forged in one): the read of its region header faults, and the
// SIGSEGV hook reports it (general_allocator.cc, ELFMALLOC_CLASSIFIES).
TEST(GeneralAllocatorDeathTest, PointerWhereNothingIsMappedAborts) {
#if defined(ADDRESS_SANITIZER) || defined(THREAD_SANITIZER)
  GTEST_SKIP() << "the sanitizer's own SIGSEGV handler reports faults";
#endif
  void* const heap_built = Allocate(8);  // the hook comes with the heap
  // A page just above a 2 MiB boundary whose own page is inaccessible
  // (PROT_NONE rather than unmapped, so that no other mapping, such as
  // one the allocator makes under --config=elfc, can land there; the
  // registry drops it either way).
  mmap_alloc::MapOptions o;
  o.align = kStampAlignment;
  char* region = static_cast<char*>(mmap_alloc::Map(kStampAlignment, o));
  ASSERT_NE(region, nullptr);
  const std::size_t page = mmap_alloc::PageSize();
  ASSERT_TRUE(mmap_alloc::Protect(region, page, mmap_alloc::Perm::kNone));
  ASSERT_FALSE(mmap_alloc::IsMappedBoundary(region));
  char* block = region + page + 64;
#if defined(ELFMALLOC_CHECKED)
  // The registry check before the read reports it instead.
  const char* const kReport = "was not allocated by elfmalloc";
#else
  const char* const kReport =
      "free, realloc or malloc_usable_size of a pointer in \\(0x[0-9a-f]+, "
      "0x[0-9a-f]+\\], where elfmalloc maps nothing";
#endif
  EXPECT_DEATH(Deallocate(block), kReport);
  EXPECT_DEATH((void)Reallocate(block, 100), kReport);
  EXPECT_DEATH((void)UsableSize(block), kReport);
  mmap_alloc::Unmap(region, kStampAlignment);
  Deallocate(heap_built);
}

TEST(GeneralAllocatorDeathTest, ForeignPointerAborts) {
  mmap_alloc::MapOptions o;
  o.align = kStampAlignment;
  char* region = static_cast<char*>(mmap_alloc::Map(2 * kStampAlignment, o));
  ASSERT_NE(region, nullptr);
  void* foreign = region + kStampAlignment + 64;  // stamp word reads 0
  EXPECT_DEATH(Deallocate(foreign), "not allocated by elfmalloc");
  mmap_alloc::Unmap(region, 2 * kStampAlignment);
}

TEST(GeneralAllocatorTest, MarkThreadIdleKeepsWorking) {
  std::thread([] {
    void* p = Allocate(100);
    ASSERT_NE(p, nullptr);
    Fill(p, 100, 1);
    MarkThreadIdle();
    EXPECT_TRUE(Check(p, 100, 1));
    Deallocate(p);  // builds a new front end
    MarkThreadIdle();
    void* q = Allocate(100);
    ASSERT_NE(q, nullptr);
    Deallocate(q);
  }).join();
}

// A large block freed twice while the first free left it in the large-block
// cache: reported as a double free in every build (before the cache, the
// second free faulted; with the cache and no stamp it would have cached the
// region twice and handed it to two owners).
TEST(GeneralAllocatorDeathTest, DoubleFreeOfACachedLargeBlockAborts) {
  EXPECT_DEATH(
      {
        void* p = Allocate(3 * kMiB);
        Deallocate(p);
        Deallocate(p);
      },
      "double free");
}

// The free mark lives in a block's second word in every class but the
// 8-byte one (general_allocator.cc, MarkOffset), so a double free is still
// caught after the program wrote the first word of the freed block (a
// use after free through a list link or a header, the common shape).
TEST(GeneralAllocatorDeathTest, DoubleFreeIsCaughtAfterAWriteToTheFirstWord) {
  for (std::size_t size : {16, 24, 64, 1000, 3000, 20000}) {
    EXPECT_DEATH(
        {
          auto* p = static_cast<std::uint64_t*>(Allocate(size));
          Deallocate(p);
          p[0] = 0x5a5a5a5a5a5a5a5aull;
          Deallocate(p);
        },
        "double free of 0x[0-9a-f]+ \\(size class")
        << size;
  }
  EXPECT_DEATH(
      {
        void* p = Allocate(8);
        Deallocate(p);
        Deallocate(p);
      },
      "double free of 0x[0-9a-f]+ \\(size class 0")
      << 8;
}

// The free's fast path compares the first half of the mark word only
// (general_allocator.cc, FreeSlabTag); a live block whose word matches the
// mark in that half only is freed normally, and freed for real: a second
// free is then caught.
TEST(GeneralAllocatorDeathTest, HalfAMarkIsNotADoubleFree) {
  // All in the child: where this allocator is the process's malloc (the
  // elfc test leg), the death test's own allocations would take the freed
  // block.
  EXPECT_DEATH(
      {
        auto* p = static_cast<unsigned char*>(Allocate(32));
        Deallocate(p);
        std::uint64_t mark;
        std::memcpy(&mark, p + 8, sizeof(mark));  // the freed block's mark
        if (Allocate(32) != p) std::abort();  // the magazine's last block
        std::memcpy(p + 8, &mark, 4);
        const std::uint32_t other =
            0x5a5a5a5au ^ static_cast<std::uint32_t>(mark >> 32);
        std::memcpy(p + 12, &other, 4);
        Deallocate(p);  // not a double free
        static const char kFreed[] = "freed with half a mark\n";
        if (write(2, kFreed, sizeof(kFreed) - 1) < 0) std::abort();
        Deallocate(p);  // now a double free
      },
      "freed with half a mark\n(.|\n)*double free of 0x[0-9a-f]+ \\(size class");
}

// Pointers that are not the start of a block, refused in every build
// where the check is free (general_allocator.cc, "Pointers that are not
// the start of a block"): misaligned frees, interior frees of small-slab
// blocks below their class's alignment, interior frees of 16 KiB+ slab
// blocks and of large blocks, interior reallocs of any block.
TEST(GeneralAllocatorDeathTest, MisalignedFreeAborts) {
  EXPECT_DEATH(
      {
        char* p = static_cast<char*>(Allocate(24));
        Deallocate(p + 1);
      },
      "free\\(0x[0-9a-f]+\\): not the start of a block \\(misaligned");
}

// Small-slab blocks: a pointer below its class's object alignment is no
// object start (p + 8 of a 24-byte block in the 32-byte class, p + 256 of
// a 3000-byte block in the 3072-byte class, aligned to 1024).
TEST(GeneralAllocatorDeathTest, UnalignedInteriorFreeOfASmallSlabBlockAborts) {
  const struct {
    std::size_t size, offset;
  } cases[] = {{24, 8}, {64, 32}, {100, 8}, {3000, 256}, {8192, 4096}};
  for (const auto& k : cases) {
    EXPECT_DEATH(
        {
          char* p = static_cast<char*>(Allocate(k.size));
          Deallocate(p + k.offset);
        },
        "free\\(0x[0-9a-f]+\\): not the start of a block \\(size class "
        "[0-9]+: [0-9]+-byte blocks, each aligned to [0-9]+ bytes; an "
        "interior pointer")
        << k.size << " + " << k.offset;
  }
}

TEST(GeneralAllocatorDeathTest, InteriorFreeOfABigSlabBlockAborts) {
  EXPECT_DEATH(
      {
        char* p = static_cast<char*>(Allocate(200 * 1024));
        Deallocate(p + 4096);
      },
      "free\\(0x[0-9a-f]+\\): not the start of a block \\(size class");
}

TEST(GeneralAllocatorDeathTest, InteriorFreeOfALargeBlockAborts) {
  EXPECT_DEATH(
      {
        char* p = static_cast<char*>(Allocate(2 * kMiB));
        Deallocate(p + 65536);
      },
      "not the start of a large block");
}

TEST(GeneralAllocatorDeathTest, InteriorReallocAborts) {
  EXPECT_DEATH(
      {
        char* p = static_cast<char*>(Allocate(24));
        (void)Reallocate(p + 8, 100);
      },
      "realloc\\(0x[0-9a-f]+\\): not the start of a block");
  EXPECT_DEATH(
      {
        char* p = static_cast<char*>(Allocate(3000));
        (void)Reallocate(p + 64, 6000);
      },
      "realloc\\(0x[0-9a-f]+\\): not the start of a block");
  EXPECT_DEATH(
      {
        char* p = static_cast<char*>(Allocate(3 * kMiB));
        (void)Reallocate(p + 4096, 4 * kMiB);
      },
      "realloc\\(0x[0-9a-f]+\\): not the start of a large block");
}

}  // namespace
}  // namespace elfmalloc
