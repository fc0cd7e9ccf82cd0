// The checked build (ELFMALLOC_CHECKED; `--config=checked` for everything):
// misuse of the general allocator aborts with a clear message. Each misuse
// runs in a forked child (gtest death tests). Built against
// :general_allocator_checked, the same sources compiled with the define.
#include <signal.h>
#include <sys/mman.h>
#include <unistd.h>

#include <cstddef>
#include <cstdint>
#include <thread>

#include "elfmalloc/alloc_type.h"
#include "elfmalloc/general_allocator.h"
#include "gtest/gtest.h"

namespace elfmalloc {
namespace {

TEST(CheckedBuildDeathTest, DoubleFreeAborts) {
  for (std::size_t n : {8, 24, 100, 4096, 100000}) {
    void* p = Allocate(n);
    ASSERT_NE(p, nullptr);
    EXPECT_DEATH(
        {
          Deallocate(p);
          Deallocate(p);
        },
        "double free") << n;
    Deallocate(p);  // in the parent it was never freed
  }
}

TEST(CheckedBuildDeathTest, CrossThreadDoubleFreeAborts) {
  void* p = Allocate(48);
  ASSERT_NE(p, nullptr);
  EXPECT_DEATH(
      {
        std::thread([p] { Deallocate(p); }).join();
        Deallocate(p);
      },
      "double free");
  Deallocate(p);
}

TEST(CheckedBuildDeathTest, InteriorPointerAborts) {
  for (std::size_t n : {16, 48, 96, 1024, 30000}) {
    char* p = static_cast<char*>(Allocate(n));
    ASSERT_NE(p, nullptr);
    EXPECT_DEATH(Deallocate(p + 8), "not the start of a block") << n;
    Deallocate(p);
  }
  char* big = static_cast<char*>(Allocate(3 << 20));
  ASSERT_NE(big, nullptr);
  EXPECT_DEATH(Deallocate(big + 4096), "not the start of a large block");
  Deallocate(big);
}

TEST(CheckedBuildDeathTest, ForeignPointerAborts) {
  void* region = mmap(nullptr, 2 * kStampAlignment, PROT_READ | PROT_WRITE,
                      MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  ASSERT_NE(region, MAP_FAILED);
  // Somewhere past a 2 MiB boundary inside the mapping: its stamp word is 0.
  const std::uintptr_t b =
      (reinterpret_cast<std::uintptr_t>(region) + kStampAlignment - 1) &
      ~(kStampAlignment - 1);
  EXPECT_DEATH(Deallocate(reinterpret_cast<void*>(b + 64)),
               "not allocated by elfmalloc");
  munmap(region, 2 * kStampAlignment);
}

// A pointer whose 2 MiB boundary nobody mapped (a static array in the
// executable; a block forged in one) is reported from the mapping registry
// instead of faulting on the region header's read.
char g_static_buffer[256];
TEST(CheckedBuildDeathTest, StaticPointerAbortsWithAMessage) {
  EXPECT_DEATH(Deallocate(g_static_buffer + 64), "not allocated by elfmalloc");
  EXPECT_DEATH(Reallocate(g_static_buffer + 64, 100),
               "not allocated by elfmalloc");
  EXPECT_DEATH(UsableSize(g_static_buffer + 64), "not allocated by elfmalloc");
}

// Each thread remembers the regions the registry found mapped (its memo,
// general_allocator.cc), for the registry epoch it found them in. A free
// into a region remembered so, and unmapped since, is still reported from
// the registry: it is not taken as mapped, which would read the unmapped
// region header and fault. The program here has a SIGSEGV handler of its
// own (so elfmalloc installs no hook of its own that would turn the fault
// into a message too).
void ReportRawFault(int) {
  static const char kMessage[] = "raw SIGSEGV\n";
  (void)!write(2, kMessage, sizeof(kMessage) - 1);
  _exit(3);
}
TEST(CheckedBuildDeathTest, FreeIntoARegionUnmappedSinceIsReported) {
  EXPECT_DEATH(
      {
        struct sigaction sa = {};
        sa.sa_handler = ReportRawFault;
        sigaction(SIGSEGV, &sa, nullptr);
        void* p = Allocate(std::size_t{64} << 20);
        if (p == nullptr) _exit(4);
        Deallocate(p);  // remembered: its region was mapped
        ReleaseFreeMemory();
        if (RegionIsMapped(p)) {
          static const char kMessage[] = "the region is still mapped\n";
          (void)!write(2, kMessage, sizeof(kMessage) - 1);
          _exit(5);
        }
        Deallocate(p);
      },
      "not allocated by elfmalloc");
}

// Correct use never trips the checks: blocks reused after free (the marker
// is cleared on allocation), data that happens to be zero, cross-thread
// frees.
TEST(CheckedBuildTest, CorrectUseIsQuiet) {
  for (int round = 0; round < 3; ++round) {
    void* ps[256];
    for (int i = 0; i < 256; ++i) {
      ps[i] = Allocate(static_cast<std::size_t>(8 + i * 24));
      ASSERT_NE(ps[i], nullptr);
    }
    std::thread([&] {
      for (int i = 0; i < 128; ++i) Deallocate(ps[i]);
    }).join();
    for (int i = 128; i < 256; ++i) Deallocate(ps[i]);
  }
}

}  // namespace
}  // namespace elfmalloc
