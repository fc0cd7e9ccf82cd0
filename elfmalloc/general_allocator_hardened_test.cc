// The hardened build (ELFMALLOC_HARDENED; general_allocator.cc, "The
// hardened build"): writes past the requested size, writes after free
// (pointers forged into freed blocks among them) and writes across a large
// block's guard page stop the process; correct use never does, and the
// usable size is the requested size. Each misuse runs in a forked child
// (gtest death tests). The test's
// environment (BUILD) shrinks the quarantine to 64 blocks / 64 KiB, so that
// a few frees push a block out of it.
#include <errno.h>
#include <sys/mman.h>
#include <time.h>

#include <algorithm>
#include <csignal>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "elfmalloc/general_allocator.h"
#include "elfmalloc/size_classes.h"
#include "gtest/gtest.h"

namespace elfmalloc {
namespace {

constexpr std::size_t kSizes[] = {0, 1, 7, 8, 20, 24, 100, 3000, 5000, 200000};

// Frees and allocates `n` blocks of `size` bytes, which pushes every block
// freed before out of the calling thread's quarantine.
void Churn(std::size_t size, int n = 200) {
  for (int i = 0; i < n; ++i) Deallocate(Allocate(size));
}

TEST(HardenedBuildTest, CorrectUseIsQuiet) {
  for (int round = 0; round < 3; ++round) {
    std::vector<char*> blocks;
    for (std::size_t n : kSizes) {
      for (int k = 0; k < 20; ++k) {
        char* p = static_cast<char*>(Allocate(n));
        ASSERT_NE(p, nullptr);
        EXPECT_EQ(UsableSize(p), n);
        std::memset(p, 0x5a, n);
        blocks.push_back(p);
      }
    }
    char* z = static_cast<char*>(AllocateZeroed(777));
    ASSERT_NE(z, nullptr);
    for (int i = 0; i < 777; ++i) ASSERT_EQ(z[i], 0);
    blocks.push_back(z);
    for (std::size_t align : {16, 64, 4096, 65536}) {
      char* a = static_cast<char*>(Allocate(100, align));
      ASSERT_NE(a, nullptr);
      EXPECT_EQ(reinterpret_cast<std::uintptr_t>(a) % align, 0u);
      std::memset(a, 0x5a, 100);
      blocks.push_back(a);
    }
    // Half freed by another thread, half by this one.
    const std::size_t half = blocks.size() / 2;
    std::thread([&] {
      for (std::size_t i = 0; i < half; ++i) Deallocate(blocks[i]);
    }).join();
    for (std::size_t i = half; i < blocks.size(); ++i) Deallocate(blocks[i]);
    Churn(24);
  }
}

// AllocateOr (operator new's entry) in the hardened build: its blocks
// carry the canary like Allocate's (UsableSize is the request), and a
// failure reaches the handler.
TEST(HardenedBuildTest, AllocateOrHandsOutCheckedBlocks) {
  static std::size_t handled;
  handled = 0;
  const AllocFailureHandler handler = [](std::size_t n) -> void* {
    handled = n;
    return nullptr;
  };
  for (std::size_t n : kSizes) {
    char* p = static_cast<char*>(AllocateOr(n, handler));
    ASSERT_NE(p, nullptr);
    EXPECT_EQ(UsableSize(p), n);
    std::memset(p, 0x5a, n);
    Deallocate(p);
  }
  EXPECT_EQ(handled, 0u);
  EXPECT_EQ(AllocateOr(~std::size_t{0} / 2, handler), nullptr);
  EXPECT_EQ(handled, ~std::size_t{0} / 2);
}

// Phases of one size after another, each filling and freeing 8 MiB: slab
// pages go from class to class with the old class's bytes in them, and the
// neighbour checks must see zeroed slot ends there, not stale data
// (without SlabClass::Options::zero_object_tails this aborts within the
// first round).
TEST(HardenedBuildTest, PagesChangingClassRaiseNoFalseAlarm) {
  std::vector<void*> blocks;
  for (int round = 0; round < 2; ++round) {
    for (std::size_t size = 8; size <= 12000; size = size * 5 / 4 + 8) {
      const std::size_t n = (std::size_t{8} << 20) / size;
      blocks.clear();
      for (std::size_t i = 0; i < n; ++i) {
        void* p = Allocate(size);
        ASSERT_NE(p, nullptr);
        std::memset(p, static_cast<int>(i), size);
        blocks.push_back(p);
      }
      for (std::size_t i = 0; i < n; i += 2) Deallocate(blocks[i]);
      for (std::size_t i = 1; i < n; i += 2) Deallocate(blocks[i]);
    }
  }
}

// A slab block that realloc grows past the slab limit goes to a large
// block placed with room to grow (as in the default build), so the steps
// that follow grow it in place instead of moving it. The large-block heap
// is first left with resident one-unit holes between live blocks, where a
// plain large allocation would go (resident units first) and could not
// grow past its unit.
TEST(HardenedBuildTest, ReallocGrowthPastTheSlabLimitStaysInPlace) {
  constexpr std::size_t kUnitBlock = (std::size_t{2} << 20) - 64 * 1024;
  std::vector<char*> blocks;
  for (int i = 0; i < 8; ++i) {
    char* b = static_cast<char*>(Allocate(kUnitBlock));
    ASSERT_NE(b, nullptr);
    std::memset(b, 1, kUnitBlock);
    blocks.push_back(b);
  }
  for (int i = 0; i < 8; i += 2) Deallocate(blocks[i]);
  std::size_t n = 200 * 1024;
  char* p = static_cast<char*>(Allocate(n));
  ASSERT_NE(p, nullptr);
  std::memset(p, 7, n);
  n = 300 * 1024;
  p = static_cast<char*>(Reallocate(p, n));  // slab -> large
  ASSERT_NE(p, nullptr);
  int moves = 0;
  while (n < (std::size_t{5} << 20)) {
    n += 256 * 1024;
    char* q = static_cast<char*>(Reallocate(p, n));
    ASSERT_NE(q, nullptr);
    moves += q != p;
    p = q;
  }
  EXPECT_EQ(moves, 0);
  for (std::size_t i = 0; i < 200 * 1024; i += 4096) ASSERT_EQ(p[i], 7);
  Deallocate(p);
  for (int i = 1; i < 8; i += 2) Deallocate(blocks[i]);
}

// As in the default build, a buffer grown an eighth at a time is copied
// a few times per doubling (a grown block of 4 KiB or more gets room for
// half again its size), and its canary stays at the requested size.
TEST(HardenedBuildTest, ReallocGrowthInSmallStepsCopiesRarely) {
  std::size_t n = 4096;
  char* p = static_cast<char*>(Allocate(n));
  ASSERT_NE(p, nullptr);
  std::memset(p, 0x5a, n);
  int moves = 0;
  while (n < 200 * 1024) {
    const std::size_t next = n + n / 8;
    char* q = static_cast<char*>(Reallocate(p, next));
    ASSERT_NE(q, nullptr);
    ASSERT_EQ(q[n - 1], 0x5a);
    EXPECT_EQ(UsableSize(q), next);
    std::memset(q + n, 0x5a, next - n);
    if (q != p) ++moves;
    p = q;
    n = next;
  }
  // 34 steps; without the room, 24 of them moved the block.
  EXPECT_LE(moves, 12);
  Deallocate(p);
}

TEST(HardenedBuildTest, ReallocKeepsContentsAndCanaries) {
  std::size_t n = 10;
  char* p = static_cast<char*>(Allocate(n));
  ASSERT_NE(p, nullptr);
  std::memset(p, 1, n);
  // Through slab classes, in place and moved, to large blocks and back.
  for (std::size_t to :
       {12, 24, 40, 700, 699, 5000, 300000, 5 << 20, 4 << 20, 100000, 30, 9}) {
    p = static_cast<char*>(Reallocate(p, to));
    ASSERT_NE(p, nullptr) << to;
    EXPECT_EQ(UsableSize(p), to);
    const std::size_t kept = n < to ? n : to;
    for (std::size_t i = 0; i < kept; ++i) ASSERT_EQ(p[i], 1) << to << " " << i;
    std::memset(p, 1, to);
    n = to;
  }
  Deallocate(p);
}

TEST(HardenedBuildTest, LargeBlocksAreWholeAfterReuse) {
  // A freed large block's guard page is accessible again when its region is
  // reused: every byte of the new blocks may be written.
  for (int round = 0; round < 4; ++round) {
    for (std::size_t n : {std::size_t{300000}, std::size_t{1} << 20,
                          (std::size_t{3} << 20) + 5}) {
      char* p = static_cast<char*>(Allocate(n + round * 4096));
      ASSERT_NE(p, nullptr);
      std::memset(p, 0x33, n + round * 4096);
      Deallocate(p);
    }
  }
}

// A block forged in a static buffer (glibc's "house of spirit"): the
// mapping registry reports it before any header is read.
alignas(16) std::uint64_t g_fake_chunk[16];
TEST(HardenedBuildDeathTest, ForgedStaticChunkAbortsWithAMessage) {
  g_fake_chunk[1] = 0x31;
  EXPECT_DEATH(Deallocate(&g_fake_chunk[2]), "not allocated by elfmalloc");
  EXPECT_DEATH(Reallocate(&g_fake_chunk[2], 10), "not allocated by elfmalloc");
}

TEST(HardenedBuildDeathTest, WritePastRequestedSizeAborts) {
  for (std::size_t n : kSizes) {
    char* p = static_cast<char*>(Allocate(n));
    ASSERT_NE(p, nullptr);
    EXPECT_DEATH(
        {
          p[n] = static_cast<char>(~p[n]);  // a change, whatever was there
          Deallocate(p);
        },
        // At the trailer when n fills the block (8, 24), else in the
        // pattern.
        "heap overflow: ")
        << n;
    EXPECT_DEATH(
        {
          p[n] = static_cast<char>(~p[n]);  // a change, whatever was there
          p = static_cast<char*>(Reallocate(p, n + 1000));
        },
        "heap overflow")
        << n;
    Deallocate(p);
  }
}

// The canary is the window of 16 bytes after the request, cut to the
// slack (general_allocator.cc, kCanaryWindow), compared under a mask: a
// change at its first, a middle and its last byte is found for every slack
// from 1 to 16 bytes, wherever the window lies (at n, or ending at the
// trailer when the slack is shorter), and in the windows of classes above
// 256 bytes, whose slack is longer. The freed pattern's short ranges are
// compared in overlapping 16-byte chunks and words (kInlinePatternBytes):
// a change at the first, a middle and the last byte of every length from 1
// to beyond the inline limit is found in a freed block.
TEST(HardenedBuildDeathTest, EveryByteOfShortPatternsIsChecked) {
  constexpr std::size_t kWordBytes = 8;
  constexpr std::size_t kWindow = 16;
  for (std::size_t n = 1; n <= 1100; n += n < 160 ? 7 : 97) {
    const std::size_t size = ClassSize(SizeToClass(
        (n < kWordBytes ? kWordBytes : n) + kWordBytes));
    const std::size_t slack_end = size - kWordBytes;  // the trailer's start
    if (slack_end == n) continue;                     // no slack
    const std::size_t window_end =
        slack_end - n < kWindow ? slack_end : n + kWindow;
    for (std::size_t at : {n, n + (window_end - n) / 2, window_end - 1}) {
      char* p = static_cast<char*>(Allocate(n));
      ASSERT_NE(p, nullptr);
      EXPECT_DEATH(
          {
            p[at] = static_cast<char>(~p[at]);
            Deallocate(p);
          },
          "heap overflow: .* at offset " + std::to_string(at))
          << n << " " << at;
      Deallocate(p);
    }
    // The freed pattern covers [2 words, size - 1 word).
    if (slack_end <= 2 * kWordBytes || n > 160) continue;
    for (std::size_t at :
         {2 * kWordBytes, kWordBytes + slack_end / 2, slack_end - 1}) {
      char* p = static_cast<char*>(Allocate(n));
      ASSERT_NE(p, nullptr);
      Deallocate(p);
      EXPECT_DEATH(
          {
            p[at] = static_cast<char>(~p[at]);
            Churn(n);
          },
          "write after free: .* was modified at offset")
          << n << " " << at;
      Churn(n);
    }
  }
}

TEST(HardenedBuildDeathTest, OverwrittenTrailerAborts) {
  // 24 bytes fill their 32-byte block but for the trailer.
  char* p = static_cast<char*>(Allocate(24));
  ASSERT_NE(p, nullptr);
  EXPECT_DEATH(
      {
        std::memset(p + 24, 0x41, 8);
        Deallocate(p);
      },
      "heap overflow: the canary at the end of");
  Deallocate(p);
}

TEST(HardenedBuildDeathTest, LargeBlockCanaryAndGuardPage) {
  const std::size_t n = (std::size_t{1} << 20) + 100;
  char* p = static_cast<char*>(Allocate(n));
  ASSERT_NE(p, nullptr);
  EXPECT_DEATH(
      {
        p[n] = static_cast<char>(~p[n]);  // a change, whatever was there
        Deallocate(p);
      },
      "heap overflow: .* \\(a large block\\) was written past");
  // The page after the page-rounded end is inaccessible: a fault.
  char* q = static_cast<char*>(Allocate(std::size_t{1} << 20));
  ASSERT_NE(q, nullptr);
  EXPECT_DEATH({ static_cast<volatile char*>(q)[std::size_t{1} << 20] = 0; },
               "");
  Deallocate(p);
  Deallocate(q);
}

// The fault at a guard page is reported with a message (the SIGSEGV hook);
// other faults still end the process with SIGSEGV.
TEST(HardenedBuildDeathTest, GuardPageFaultsAreReported) {
#if defined(ADDRESS_SANITIZER) || defined(THREAD_SANITIZER)
  GTEST_SKIP() << "the sanitizer's own SIGSEGV handler reports faults";
#endif
  const std::size_t one = std::size_t{1} << 20;
  char* q = static_cast<char*>(Allocate(one));
  ASSERT_NE(q, nullptr);
  EXPECT_DEATH({ static_cast<volatile char*>(q)[one] = 0; },
               "heap overflow: an access at .* went past the end of .* \\(a "
               "large block of 1048576 requested bytes\\) into its guard "
               "page, 0 bytes past");
  // A block of several 2 MiB units: the report finds its header units below.
  const std::size_t big = (std::size_t{5} << 20) + 4096 * 3 + 5;
  char* r = static_cast<char*>(Allocate(big));
  ASSERT_NE(r, nullptr);
  EXPECT_DEATH({ static_cast<volatile char*>(r)[big + 4091] = 0; },
               "into its guard page, 4091 bytes past the requested size");
  // A fault anywhere else is not reported as an overflow.
  void* page = mmap(nullptr, 4096, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS, -1,
                    0);
  ASSERT_NE(page, MAP_FAILED);
  EXPECT_EXIT({ *static_cast<volatile char*>(page) = 0; },
              ::testing::KilledBySignal(SIGSEGV), "");
  munmap(page, 4096);
  Deallocate(q);
  Deallocate(r);
}

// Two live blocks of `size` bytes in adjacent slots, the lower first (the
// refill order is random, so a few hundred blocks hold such a pair).
std::pair<char*, char*> AdjacentPair(std::size_t size,
                                     std::vector<void*>* keep) {
  const std::size_t slot = ClassSize(SizeToClass(size + 8));
  for (int i = 0; i < 512; ++i) keep->push_back(Allocate(size));
  std::sort(keep->begin(), keep->end());
  for (std::size_t i = 1; i < keep->size(); ++i) {
    char* lo = static_cast<char*>((*keep)[i - 1]);
    char* hi = static_cast<char*>((*keep)[i]);
    if (hi - lo == static_cast<std::ptrdiff_t>(slot)) return {lo, hi};
  }
  return {nullptr, nullptr};
}

// Neighbours: a write just before a block lands in the previous slot's
// trailer; one that skips a block's canary lands in the next slot. The
// free of the block next to the damage reports it, whether the damaged
// neighbour is live or freed.
TEST(HardenedBuildDeathTest, WritesIntoANeighbourSlotAbort) {
  for (std::size_t n : {24, 100, 3000}) {
    std::vector<void*> keep;
    auto [lo, hi] = AdjacentPair(n, &keep);
    ASSERT_NE(lo, nullptr) << n;
    EXPECT_DEATH(
        {
          std::memset(hi - 16, 0x41, 16);
          Deallocate(hi);
        },
        "heap corruption: the canary at the end of .*, the block before ");
    EXPECT_DEATH(
        {
          Deallocate(lo);  // a freed neighbour keeps its trailer
          std::memset(hi - 16, 0x41, 16);
          Deallocate(hi);
        },
        "heap corruption: the canary at the end of .*, the block before ");
    const std::size_t slot = ClassSize(SizeToClass(n + 8));
    EXPECT_DEATH(
        {
          std::memset(lo + slot, 0x41, slot);  // all of hi, trailer included
          Deallocate(lo);
        },
        "heap corruption: the canary at the end of .*, the block after ");
    for (void* p : keep) Deallocate(p);
  }
}

// The first and the last slot of a slab have neighbours too: the guard
// words the hardened layout keeps before object 0 and after the last
// object (a write there would otherwise land in the slab's bit-set or its
// padding, unseen).
TEST(HardenedBuildDeathTest, WritesPastTheEndSlotsOfASlabAbort) {
  for (std::size_t n : {24, 100, 3000}) {
    const SizeClass c = SizeToClass(n + 8);
    const std::size_t slot = ClassSize(c);
    const std::uintptr_t page_mask = ClassPageSize(c) - 1;
    auto offset = [page_mask](const char* p) {
      return reinterpret_cast<std::uintptr_t>(p) & page_mask;
    };
    // Enough blocks to fill at least one slab: the lowest and highest
    // offsets among them are its first and last slots'.
    std::vector<void*> keep;
    char* first = nullptr;
    char* last = nullptr;
    for (std::size_t i = 0; i < 3 * (page_mask + 1) / slot; ++i) {
      char* p = static_cast<char*>(Allocate(n));
      keep.push_back(p);
      if (first == nullptr || offset(p) < offset(first)) first = p;
      if (last == nullptr || offset(p) > offset(last)) last = p;
    }
    EXPECT_DEATH(
        {
          std::memset(first - 16, 0x41, 16);
          Deallocate(first);
        },
        "heap corruption: the guard word before .*, the first block of its "
        "slab");
    EXPECT_DEATH(
        {
          std::memset(last + slot, 0x41, 8);  // past the canary and trailer
          Deallocate(last);
        },
        "heap corruption: the guard word after .*, the last block of its "
        "slab");
    for (void* p : keep) Deallocate(p);
  }
}

TEST(HardenedBuildDeathTest, WriteAfterFreeAbortsWhenItLeavesTheQuarantine) {
  for (std::size_t n : {24, 100, 3000}) {
    char* p = static_cast<char*>(Allocate(n));
    ASSERT_NE(p, nullptr);
    Deallocate(p);
    EXPECT_DEATH(
        {
          p[n / 2 + 4] = static_cast<char>(~p[n / 2 + 4]);  // a change
          Churn(n);
        },
        "write after free: .* was modified at offset")
        << n;
    // The first word (the free mark) too.
    EXPECT_DEATH(
        {
          std::memset(p, 0, 8);
          Churn(n);
        },
        "write after free: .* at offset 0")
        << n;
    Churn(n);
  }
}

// No allocator structure keeps a pointer in a freed block: one forged
// there (a free-list poisoning attempt) is a write after free like any
// other, found when the block leaves the quarantine.
TEST(HardenedBuildDeathTest, PointerForgedIntoAFreedBlockAborts) {
  static char target[256];
  char* p = static_cast<char*>(Allocate(48));
  ASSERT_NE(p, nullptr);
  char* q = static_cast<char*>(Allocate(48));
  ASSERT_NE(q, nullptr);
  Deallocate(p);
  Deallocate(q);
  EXPECT_DEATH(
      {
        void* forged = target;
        std::memcpy(p + 8, &forged, sizeof(forged));
        Churn(48);
      },
      "write after free: .* was modified at offset 8");
  Churn(48);
}

// Each thread's quarantine is its own: blocks freed by two threads at
// once are all checked and all come back (TSan: no shared state).
TEST(HardenedBuildTest, ThreadsQuarantineConcurrently) {
  auto work = [] {
    for (int round = 0; round < 50; ++round) {
      void* ps[100];
      for (int i = 0; i < 100; ++i) {
        ps[i] = Allocate(static_cast<std::size_t>(16 + (i * 37) % 3000));
        ASSERT_NE(ps[i], nullptr);
      }
      for (void* p : ps) Deallocate(p);
    }
  };
  std::thread a(work);
  std::thread b(work);
  a.join();
  b.join();
}

// A signal handler that frees and allocates as many blocks as it takes,
// interrupting the hardened malloc and free (HardenedSection): its frees
// skip the quarantine, so its allocations pop what its frees pushed and
// the interrupted operation finds the magazine as it left it. Through the
// quarantine (which feeds the magazine only what leaves the ring) the
// handler's allocations popped the block the interrupted malloc was
// taking, and one block went to two callers (reported as a double free).
// A 20 us timer interrupts a malloc/free loop thousands of times; every
// block handed out carries a tag that must still be there when it is
// freed.
void* g_handler_blocks[8];
volatile int g_handler_runs = 0;
void FreeingHandler(int) {
  const int saved = errno;
  g_handler_runs = g_handler_runs + 1;
  for (void*& b : g_handler_blocks) {
    Deallocate(b);
    b = Allocate(40);
  }
  errno = saved;
}

TEST(HardenedBuildTest, SignalHandlerFreesDuringQuarantinedFrees) {
  for (void*& b : g_handler_blocks) b = Allocate(40);
  struct sigaction sa = {};
  sa.sa_handler = &FreeingHandler;
  sigemptyset(&sa.sa_mask);
  sa.sa_flags = SA_RESTART;
  struct sigaction old_sa;
  ASSERT_EQ(sigaction(SIGALRM, &sa, &old_sa), 0);
  sigevent ev = {};
  ev.sigev_notify = SIGEV_SIGNAL;
  ev.sigev_signo = SIGALRM;
  timer_t timer;
  ASSERT_EQ(timer_create(CLOCK_MONOTONIC, &ev, &timer), 0);
  itimerspec every = {};
  every.it_interval.tv_nsec = 20000;
  every.it_value.tv_nsec = 20000;
  ASSERT_EQ(timer_settime(timer, 0, &every, nullptr), 0);
  constexpr int kLive = 32;
  std::uint64_t* live[kLive] = {};
  for (long i = 0; i < 50000000 && g_handler_runs < 5000; ++i) {
    const int k = static_cast<int>(i % kLive);
    if (live[k] != nullptr) {
      ASSERT_EQ(live[k][0], reinterpret_cast<std::uintptr_t>(live[k]) ^ 0x5a)
          << "a block handed out twice";
      Deallocate(live[k]);
    }
    live[k] = static_cast<std::uint64_t*>(Allocate(40));
    ASSERT_NE(live[k], nullptr);
    live[k][0] = reinterpret_cast<std::uintptr_t>(live[k]) ^ 0x5a;
  }
  ASSERT_EQ(timer_delete(timer), 0);
  ASSERT_EQ(sigaction(SIGALRM, &old_sa, nullptr), 0);
  EXPECT_GE(g_handler_runs, 5000);
  for (std::uint64_t* p : live) Deallocate(p);
  for (void* b : g_handler_blocks) Deallocate(b);
}

TEST(HardenedBuildDeathTest, DoubleFreeInTheQuarantineAborts) {
  void* p = Allocate(64);
  ASSERT_NE(p, nullptr);
  Deallocate(p);
  EXPECT_DEATH(Deallocate(p), "double free");
  Churn(64);
}

TEST(HardenedBuildTest, RefillsAreShuffled) {
  // Without the shuffle a fresh thread's blocks of a class come out of its
  // first refill in descending address order.
  std::vector<std::uintptr_t> got;
  std::thread([&] {
    for (int i = 0; i < 64; ++i) {
      void* p = Allocate(1000);
      got.push_back(reinterpret_cast<std::uintptr_t>(p));
    }
    for (std::uintptr_t p : got) Deallocate(reinterpret_cast<void*>(p));
  }).join();
  int up = 0;
  int down = 0;
  for (std::size_t i = 1; i < got.size(); ++i) {
    (got[i] > got[i - 1] ? up : down)++;
  }
  // 63 steps of a random order: each direction about half of them; all in
  // one direction has probability 2 / 63!.
  EXPECT_GT(up, 10);
  EXPECT_GT(down, 10);
}

// The shuffle permutes each refill in windows of 16 slots
// (general_allocator.cc, "Randomised allocation order"), so blocks
// allocated one after the other stay within two windows of each other in
// address order; a shuffle of the whole refill (256 blocks of the 64-byte
// class) scattered them over all of it, which cost Python 10% of its time.
TEST(HardenedBuildTest, ShuffledBlocksStayNearEachOther) {
  std::vector<std::uintptr_t> got;
  std::thread([&] {
    for (int i = 0; i < 512; ++i) {
      void* p = Allocate(48);  // with its trailer, the 64-byte class
      got.push_back(reinterpret_cast<std::uintptr_t>(p));
    }
    for (std::uintptr_t p : got) Deallocate(reinterpret_cast<void*>(p));
  }).join();
  // Ranks in address order, so that slots other tests left in use between
  // them do not count as distance.
  std::vector<std::uintptr_t> sorted = got;
  std::sort(sorted.begin(), sorted.end());
  auto rank = [&](std::uintptr_t p) {
    return static_cast<long>(std::lower_bound(sorted.begin(), sorted.end(), p) -
                             sorted.begin());
  };
  int near = 0;
  int up = 0;
  int down = 0;
  for (std::size_t i = 1; i < got.size(); ++i) {
    const long d = rank(got[i]) - rank(got[i - 1]);
    if (d > -32 && d < 32) ++near;
    (d > 0 ? up : down)++;
  }
  // Within two windows: every step but the few from one refill to the
  // next slab's; a whole-refill shuffle kept about a quarter of them.
  EXPECT_GE(near, 460) << up << " up, " << down << " down";
  // And still shuffled: each direction about half the steps.
  EXPECT_GT(up, 150);
  EXPECT_GT(down, 150);
}

TEST(HardenedBuildTest, ThreadExitEmptiesTheQuarantine) {
  // An unusual class, so that nothing else in the process uses it.
  const std::size_t n = 2500;  // 10 blocks fit the test's 64 KiB
  const SizeClass c = SizeToClass(n + 8);
  const std::size_t before = GetStats().class_allocated_objects[c.index()];
  std::thread([&] {
    void* ps[10];
    for (void*& p : ps) p = Allocate(n);
    for (void* p : ps) Deallocate(p);
    // Quarantined: not yet back in a cache.
    EXPECT_EQ(GetStats().class_allocated_objects[c.index()], before + 10);
  }).join();
  EXPECT_EQ(GetStats().class_allocated_objects[c.index()], before);
}

TEST(HardenedBuildTest, MarkThreadIdleAndReleaseFreeMemoryEmptyTheQuarantine) {
  const std::size_t n = 2600;  // another class of its own
  const SizeClass c = SizeToClass(n + 8);
  const std::size_t before = GetStats().class_allocated_objects[c.index()];
  for (void (*release)() : {+[] { MarkThreadIdle(); },
                            +[] { ReleaseFreeMemory(); }}) {
    void* ps[10];
    for (void*& p : ps) p = Allocate(n);
    for (void* p : ps) Deallocate(p);
    EXPECT_EQ(GetStats().class_allocated_objects[c.index()], before + 10);
    release();
    EXPECT_EQ(GetStats().class_allocated_objects[c.index()], before);
  }
}

}  // namespace
}  // namespace elfmalloc
