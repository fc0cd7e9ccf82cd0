// Tests for the page-level primitives of mmap_alloc (Map, Unmap, Commit,
// Uncommit, Protect, Guard, Unguard, Remap, GrowInPlace, ShrinkInPlace,
// AdviseHugePages, NameRegion) and their failure paths.
//
// Every claim is checked against the kernel's own view, never against
// mmap_alloc's return values alone: permissions and mapping extents come from
// /proc/self/maps, residency from mincore, "is it mapped" from msync, huge-page
// advice from the VmFlags in /proc/self/smaps (see proc_maps.h).
//
// The tests run in one process and the sanitizers' runtimes map memory too, so
// a check that "nothing else is mapped next to X" is only made between two raw
// snapshots of /proc/self/maps taken with no allocation in between.
#include "mmap_alloc/mmap_alloc.h"

#include <errno.h>
#include <sys/mman.h>
#include <unistd.h>

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <string>
#include <string_view>

#include "gtest/gtest.h"
#include "mmap_alloc/proc_maps.h"
#include "mmap_alloc/version.h"

namespace mmap_alloc {
namespace {

using test_util::AllZero;
using test_util::At;
using test_util::Check;
using test_util::ExpectedPerms;
using test_util::Fill;
using test_util::IsMapped;
using test_util::kAllPerms;
using test_util::PermsAt;
using test_util::ResidentPages;

const std::size_t kPage = PageSize();
constexpr Perm kRW = Perm::kRead | Perm::kWrite;

// Raw snapshots of /proc/self/maps, filled without malloc.
char g_maps_before[8 << 20];
char g_maps_after[8 << 20];

TEST(MmapAllocTest, VersionIsSet) { EXPECT_STREQ(kVersion, "0.1.0"); }

TEST(MmapAllocTest, PageSizeMatchesSysconf) {
  EXPECT_EQ(PageSize(), static_cast<std::size_t>(sysconf(_SC_PAGESIZE)));
  EXPECT_EQ(PageSize() & (PageSize() - 1), 0u);
  EXPECT_EQ(PageSize(), PageSize());
}

TEST(MmapAllocTest, RoundUpToPage) {
  std::size_t out = 12345;
  ASSERT_TRUE(RoundUpToPage(0, &out));
  EXPECT_EQ(out, 0u);
  ASSERT_TRUE(RoundUpToPage(1, &out));
  EXPECT_EQ(out, kPage);
  ASSERT_TRUE(RoundUpToPage(kPage, &out));
  EXPECT_EQ(out, kPage);
  ASSERT_TRUE(RoundUpToPage(kPage + 1, &out));
  EXPECT_EQ(out, 2 * kPage);
  ASSERT_TRUE(RoundUpToPage(SIZE_MAX - kPage + 1, &out));
  EXPECT_EQ(out, SIZE_MAX - kPage + 1);
  out = 7;
  EXPECT_FALSE(RoundUpToPage(SIZE_MAX - kPage + 2, &out));
  EXPECT_FALSE(RoundUpToPage(SIZE_MAX, &out));
  EXPECT_EQ(out, 7u);
}

TEST(MmapAllocTest, PermOperators) {
  constexpr Perm rwx = Perm::kRead | Perm::kWrite | Perm::kExec;
  static_assert(static_cast<unsigned>(rwx) == 7);
  static_assert((rwx & Perm::kWrite) == Perm::kWrite);
  static_assert(HasAll(rwx, kRW));
  static_assert(!HasAll(Perm::kRead, kRW));
  static_assert(HasAll(Perm::kNone, Perm::kNone));
  Perm p = Perm::kRead;
  p |= Perm::kExec;
  EXPECT_EQ(p, Perm::kRead | Perm::kExec);
  p &= Perm::kExec;
  EXPECT_EQ(p, Perm::kExec);
  EXPECT_EQ(ToProt(Perm::kNone), PROT_NONE);
  EXPECT_EQ(ToProt(rwx), PROT_READ | PROT_WRITE | PROT_EXEC);
  EXPECT_EQ(ToProt(Perm::kWrite), PROT_WRITE);
}

// Reference test_map: 1 and 16 pages, non-null, aligned, zero-filled,
// writable; a double unmap is not an error.
TEST(MmapAllocTest, MapIsAlignedZeroedAndWritable) {
  for (std::size_t pages : {1, 16}) {
    const std::size_t len = pages * kPage;
    void* p = Map(len);
    ASSERT_NE(p, nullptr);
    EXPECT_EQ(reinterpret_cast<std::uintptr_t>(p) % kPage, 0u);
    EXPECT_TRUE(AllZero(p, len));
    Fill(p, len, 1);
    EXPECT_TRUE(Check(p, len, 1));
    EXPECT_EQ(PermsAt(p), "rw-p");
    EXPECT_TRUE(Unmap(p, len));
    EXPECT_FALSE(IsMapped(p, len));
    EXPECT_TRUE(Unmap(p, len));  // Unmapping nothing is fine, as for munmap.
  }
}

TEST(MmapAllocTest, MapRoundsSizeUpToWholePages) {
  void* p = Map(kPage + 1);
  ASSERT_NE(p, nullptr);
  // The whole second page belongs to us.
  EXPECT_TRUE(IsMapped(p, 2 * kPage));
  At(p, 2 * kPage - 1)[0] = 42;
  EXPECT_EQ(At(p, 2 * kPage - 1)[0], 42);
  // Unmap rounds the same way.
  EXPECT_TRUE(Unmap(p, kPage + 1));
  EXPECT_FALSE(IsMapped(p, kPage));
  EXPECT_FALSE(IsMapped(At(p, kPage), kPage));
}

// Reference test_perms: every combination, as /proc/self/maps reports it,
// both at Map time and after Protect.
TEST(MmapAllocTest, PermissionsReadBackFromProcMaps) {
  for (Perm perm : kAllPerms) {
    SCOPED_TRACE(ExpectedPerms(perm));
    MapOptions options;
    options.perm = perm;
    void* p = Map(3 * kPage, options);
    ASSERT_NE(p, nullptr);
    EXPECT_EQ(PermsAt(p), ExpectedPerms(perm));
    EXPECT_EQ(PermsAt(At(p, 2 * kPage)), ExpectedPerms(perm));
    if (HasAll(perm, kRW)) {
      Fill(p, 3 * kPage, 3);
      EXPECT_TRUE(Check(p, 3 * kPage, 3));
    } else if (HasAll(perm, Perm::kRead)) {
      EXPECT_TRUE(AllZero(p, 3 * kPage));
    }
    for (Perm to : kAllPerms) {
      ASSERT_TRUE(Protect(At(p, kPage), kPage, to));
      EXPECT_EQ(PermsAt(At(p, kPage)), ExpectedPerms(to));
      // The neighbours keep theirs.
      EXPECT_EQ(PermsAt(p), ExpectedPerms(perm));
      EXPECT_EQ(PermsAt(At(p, 2 * kPage)), ExpectedPerms(perm));
    }
    EXPECT_TRUE(Unmap(p, 3 * kPage));
  }
}

TEST(MmapAllocTest, ProtectTakesEffect) {
  void* p = Map(kPage);
  ASSERT_NE(p, nullptr);
  Fill(p, kPage, 9);
  ASSERT_TRUE(Protect(p, kPage, Perm::kRead));
  EXPECT_TRUE(Check(p, kPage, 9));  // Still readable.
  EXPECT_DEATH(static_cast<volatile char*>(p)[0] = 1, "");
  ASSERT_TRUE(Protect(p, kPage, Perm::kNone));
  EXPECT_DEATH((void)static_cast<volatile char*>(p)[0], "");
  ASSERT_TRUE(Protect(p, kPage, kRW));
  EXPECT_TRUE(Check(p, kPage, 9));
  EXPECT_TRUE(Unmap(p, kPage));
}

// Whether the byte at p can be read / written, asked of the kernel through
// a pipe (EFAULT instead of a signal), so that one process can probe a
// guarded page many times.
bool CanRead(const void* p) {
  int fds[2];
  if (pipe(fds) != 0) return false;
  const bool ok = write(fds[1], p, 1) == 1;
  close(fds[0]);
  close(fds[1]);
  return ok;
}
bool CanWrite(void* p) {
  int fds[2];
  if (pipe(fds) != 0) return false;
  char c = 5;
  bool ok = write(fds[1], &c, 1) == 1 && read(fds[0], p, 1) == 1;
  close(fds[0]);
  close(fds[1]);
  return ok;
}

// Guard makes exactly its range inaccessible (with guard markers where the
// kernel has them, Linux 6.13, else with mprotect); Unguard makes it
// readable and writable again, and the neighbours keep their contents
// throughout. Run once per way, the fallback in a child (the choice is per
// process and sticky).
void CheckGuardAndUnguard(bool fallback) {
  if (fallback) internal::UseGuardFallbackForTesting();
  char* p = static_cast<char*>(Map(3 * kPage));
  ASSERT_NE(p, nullptr);
  Fill(p, kPage, 9);
  Fill(p + 2 * kPage, kPage, 10);
  ASSERT_TRUE(Guard(p + kPage, kPage));
  EXPECT_TRUE(CanRead(p + kPage - 1));
  EXPECT_FALSE(CanRead(p + kPage));
  EXPECT_FALSE(CanRead(p + 2 * kPage - 1));
  EXPECT_FALSE(CanWrite(p + kPage + 8));
  EXPECT_TRUE(CanRead(p + 2 * kPage));
  EXPECT_TRUE(Check(p, kPage, 9));
  EXPECT_TRUE(Check(p + 2 * kPage, kPage, 10));
  ASSERT_TRUE(Unguard(p + kPage, kPage));
  EXPECT_TRUE(CanRead(p + kPage));
  EXPECT_TRUE(CanWrite(p + 2 * kPage - 1));
  EXPECT_TRUE(Check(p, kPage, 9));
  EXPECT_TRUE(Check(p + 2 * kPage, kPage, 10));
  // Guarding again after Unguard works the same way.
  ASSERT_TRUE(Guard(p + kPage, kPage));
  EXPECT_FALSE(CanRead(p + kPage));
  ASSERT_TRUE(Unguard(p + kPage, kPage));
  EXPECT_TRUE(CanWrite(p + kPage));
  EXPECT_TRUE(Unmap(p, 3 * kPage));
}

TEST(MmapAllocTest, GuardTakesEffect) {
  CheckGuardAndUnguard(false);
  // An access to a guarded page is a SIGSEGV like any other.
  char* p = static_cast<char*>(Map(2 * kPage));
  ASSERT_NE(p, nullptr);
  ASSERT_TRUE(Guard(p + kPage, kPage));
  EXPECT_DEATH(static_cast<volatile char*>(p)[kPage] = 1, "");
  ASSERT_TRUE(Unguard(p + kPage, kPage));
  EXPECT_TRUE(Unmap(p, 2 * kPage));
}

TEST(MmapAllocTest, GuardFallbackTakesEffect) {
  EXPECT_EXIT(
      {
        CheckGuardAndUnguard(true);
        _exit(::testing::Test::HasFailure() ? 1 : 0);
      },
      ::testing::ExitedWithCode(0), "");
}

TEST(MmapAllocTest, GuardRejectsBadRanges) {
  errno = 0;
  EXPECT_FALSE(Guard(nullptr, kPage));
  EXPECT_EQ(errno, EINVAL);
  char* p = static_cast<char*>(Map(kPage));
  ASSERT_NE(p, nullptr);
  errno = 0;
  EXPECT_FALSE(Guard(p + 1, kPage));
  EXPECT_EQ(errno, EINVAL);
  errno = 0;
  EXPECT_FALSE(Unguard(p, 0));
  EXPECT_EQ(errno, EINVAL);
  EXPECT_TRUE(Unmap(p, kPage));
}

// Map with align = 2^k for every k from the page size to 1 GiB: aligned,
// zeroed, usable, and the over-mapped head and tail really were given back.
// The 1 GiB cases reserve up to 2 GiB of address space but touch only a few
// pages, so they are cheap.
TEST(MmapAllocTest, LargeAlignmentsUpTo1GiB) {
  // The first mapping that covers a 2 MiB boundary in a TiB of the address
  // space also maps the registry's leaf for it; make that happen before the
  // maps are compared (the aligned maps below land near this one).
  {
    MapOptions w;
    w.align = kRegistryGranule;
    void* q = Map(kRegistryGranule, w);
    ASSERT_NE(q, nullptr);
    ASSERT_TRUE(Unmap(q, kRegistryGranule));
  }
  const std::size_t len = 3 * kPage;
  for (std::size_t align = kPage; align <= (std::size_t{1} << 30);
       align <<= 1) {
    SCOPED_TRACE(align);
    MapOptions options;
    options.align = align;
    // No allocation between the two snapshots: Map itself never allocates.
    const std::size_t before = test_util::ReadProcFile(
        "/proc/self/maps", g_maps_before, sizeof(g_maps_before));
    void* p = Map(len, options);
    const std::size_t after = test_util::ReadProcFile(
        "/proc/self/maps", g_maps_after, sizeof(g_maps_after));
    ASSERT_NE(p, nullptr);
    ASSERT_NE(before, 0u);
    ASSERT_NE(after, 0u);
    const auto a = reinterpret_cast<std::uintptr_t>(p);
    EXPECT_EQ(a % align, 0u);
    // Within the window the over-map could have covered, exactly len more
    // bytes are mapped than before, and they are [p, p + len).
    const std::uintptr_t lo = a >= align ? a - align : 0;
    const std::uintptr_t hi = a + len + align;
    const std::string_view b(g_maps_before, before);
    const std::string_view c(g_maps_after, after);
    EXPECT_EQ(test_util::MappedBytesIn(b, a, a + len), 0u);
    EXPECT_EQ(test_util::MappedBytesIn(c, a, a + len), len);
    EXPECT_EQ(test_util::MappedBytesIn(c, lo, hi),
              test_util::MappedBytesIn(b, lo, hi) + len);
    EXPECT_TRUE(AllZero(p, len));
    Fill(p, len, 5);
    EXPECT_TRUE(Check(p, len, 5));
    EXPECT_TRUE(Unmap(p, len));
  }
}

// The region as large as its alignment, as the reference's large-align test
// (32 MiB at 32 MiB), and at 1 GiB without touching beyond two pages.
TEST(MmapAllocTest, LargeAlignmentWithSizeEqualToAlignment) {
  for (std::size_t size : {std::size_t{32} << 20, std::size_t{1} << 30}) {
    MapOptions options;
    options.align = size;
    options.populate = size <= (std::size_t{32} << 20);
    void* p = Map(size, options);
    ASSERT_NE(p, nullptr);
    EXPECT_EQ(reinterpret_cast<std::uintptr_t>(p) % size, 0u);
    EXPECT_TRUE(IsMapped(p, size));
    if (options.populate) {
      EXPECT_EQ(ResidentPages(p, size), size / kPage);
      EXPECT_TRUE(AllZero(p, size));
    }
    At(p, 0)[0] = 1;
    At(p, size - 1)[0] = 2;
    EXPECT_EQ(At(p, 0)[0], 1);
    EXPECT_EQ(At(p, size - 1)[0], 2);
    EXPECT_TRUE(Unmap(p, size));
  }
}

TEST(MmapAllocTest, PopulateCommitsEagerly) {
  const std::size_t len = 16 * kPage;
  MapOptions options;
  options.populate = true;
  void* p = Map(len, options);
  ASSERT_NE(p, nullptr);
  EXPECT_EQ(ResidentPages(p, len), len / kPage);
  EXPECT_TRUE(AllZero(p, len));
  EXPECT_TRUE(Unmap(p, len));

  void* q = Map(len);  // Lazy by default: nothing resident until touched.
  ASSERT_NE(q, nullptr);
  EXPECT_EQ(ResidentPages(q, len), 0u);
  EXPECT_TRUE(Unmap(q, len));
}

// Reference test_commit (commit/uncommit twice), with residency checked.
TEST(MmapAllocTest, CommitMakesResidentAndIsIdempotent) {
  const std::size_t len = 16 * kPage;
  void* p = Map(len);
  ASSERT_NE(p, nullptr);
  ASSERT_EQ(ResidentPages(p, len), 0u);
  EXPECT_TRUE(Commit(p, len));
  EXPECT_EQ(ResidentPages(p, len), len / kPage);
  EXPECT_TRUE(Commit(p, len));
  EXPECT_EQ(ResidentPages(p, len), len / kPage);
  EXPECT_TRUE(AllZero(p, len));
  EXPECT_TRUE(Uncommit(p, len));
  EXPECT_TRUE(Uncommit(p, len));
  EXPECT_EQ(ResidentPages(p, len), 0u);
  EXPECT_TRUE(Unmap(p, len));
}

// Commit does not know the region's permissions; it must still succeed on
// read-only, write-only, exec-only and inaccessible memory (falling back from
// MADV_POPULATE_WRITE), and leave errno alone while doing so.
TEST(MmapAllocTest, CommitWorksForEveryPermission) {
  for (Perm perm : kAllPerms) {
    SCOPED_TRACE(ExpectedPerms(perm));
    MapOptions options;
    options.perm = perm;
    void* p = Map(4 * kPage, options);
    ASSERT_NE(p, nullptr);
    errno = EDOM;
    EXPECT_TRUE(Commit(p, 4 * kPage));
    EXPECT_EQ(errno, EDOM);
    EXPECT_EQ(PermsAt(p), ExpectedPerms(perm));
    EXPECT_TRUE(Unmap(p, 4 * kPage));
  }
}

TEST(MmapAllocTest, UncommitDontNeedDropsResidencyAndZeroes) {
  const std::size_t len = 16 * kPage;
  void* p = Map(len);
  ASSERT_NE(p, nullptr);
  Fill(p, len, 11);
  ASSERT_EQ(ResidentPages(p, len), len / kPage);
  // Drop the middle half only.
  ASSERT_TRUE(Uncommit(At(p, 4 * kPage), 8 * kPage, UncommitMode::kDontNeed));
  EXPECT_EQ(ResidentPages(At(p, 4 * kPage), 8 * kPage), 0u);
  EXPECT_EQ(ResidentPages(p, 4 * kPage), 4u);
  EXPECT_EQ(ResidentPages(At(p, 12 * kPage), 4 * kPage), 4u);
  EXPECT_TRUE(AllZero(At(p, 4 * kPage), 8 * kPage));
  EXPECT_TRUE(Check(p, 4 * kPage, 11));
  // Still mapped, writable, with its permissions.
  EXPECT_EQ(PermsAt(At(p, 4 * kPage)), "rw-p");
  Fill(p, len, 12);
  EXPECT_TRUE(Check(p, len, 12));
  EXPECT_TRUE(Unmap(p, len));
}

// MADV_FREE: the contents are unspecified until the next write, but the
// memory stays mapped, writable and keeps what is written afterwards.
TEST(MmapAllocTest, UncommitFreeKeepsMemoryUsable) {
  const std::size_t len = 8 * kPage;
  void* p = Map(len);
  ASSERT_NE(p, nullptr);
  Fill(p, len, 13);
  errno = EDOM;
  ASSERT_TRUE(Uncommit(p, len, UncommitMode::kFree));
  EXPECT_EQ(errno, EDOM);
  EXPECT_TRUE(IsMapped(p, len));
  EXPECT_EQ(PermsAt(p), "rw-p");
  Fill(p, len, 14);
  EXPECT_TRUE(Check(p, len, 14));
  EXPECT_TRUE(Uncommit(p, len, UncommitMode::kFree));  // Idempotent.
  EXPECT_TRUE(Unmap(p, len));
}

// Reference test_map_non_windows: unmapping pieces of a 5-page region leaves
// the others mapped and intact.
TEST(MmapAllocTest, PartialUnmapsLeaveNeighboursIntact) {
  const std::size_t len = 5 * kPage;
  void* p = Map(len);
  ASSERT_NE(p, nullptr);
  Fill(p, len, 17);
  const auto page = [&](int i) { return At(p, static_cast<std::size_t>(i) * kPage); };

  ASSERT_TRUE(Unmap(page(0), kPage));
  EXPECT_FALSE(IsMapped(page(0), kPage));
  EXPECT_TRUE(Check(page(1), 4 * kPage, static_cast<unsigned char>(17 + 7)));

  ASSERT_TRUE(Unmap(page(4), kPage));
  EXPECT_FALSE(IsMapped(page(4), kPage));
  EXPECT_TRUE(Check(page(1), 3 * kPage, static_cast<unsigned char>(17 + 7)));

  ASSERT_TRUE(Unmap(page(2), kPage));
  EXPECT_FALSE(IsMapped(page(2), kPage));
  EXPECT_TRUE(IsMapped(page(1), kPage));
  EXPECT_TRUE(IsMapped(page(3), kPage));
  EXPECT_TRUE(Check(page(1), kPage, static_cast<unsigned char>(17 + 7)));
  EXPECT_TRUE(Check(page(3), kPage, static_cast<unsigned char>(17 + 21)));
  EXPECT_EQ(PermsAt(page(3)), "rw-p");

  EXPECT_TRUE(Unmap(p, len));  // The rest, holes and all.
  EXPECT_FALSE(IsMapped(page(1), kPage));
  EXPECT_FALSE(IsMapped(page(3), kPage));
}

TEST(MmapAllocTest, ShrinkThenGrowInPlace) {
  void* p = Map(8 * kPage);
  ASSERT_NE(p, nullptr);
  Fill(p, 8 * kPage, 19);
  ASSERT_TRUE(ShrinkInPlace(p, 8 * kPage, 3 * kPage + 1));
  EXPECT_TRUE(IsMapped(p, 4 * kPage));
  EXPECT_FALSE(IsMapped(At(p, 4 * kPage), kPage));
  EXPECT_FALSE(IsMapped(At(p, 7 * kPage), kPage));
  EXPECT_TRUE(Check(p, 4 * kPage, 19));
  // The tail we just released is free again (nothing ran in between that
  // could map there), so growing back succeeds where we are.
  ASSERT_TRUE(GrowInPlace(p, 4 * kPage, 8 * kPage));
  EXPECT_TRUE(IsMapped(p, 8 * kPage));
  EXPECT_TRUE(Check(p, 4 * kPage, 19));
  EXPECT_TRUE(AllZero(At(p, 4 * kPage), 4 * kPage));
  // Same rounded size: trivially true, both ways.
  EXPECT_TRUE(GrowInPlace(p, 8 * kPage, 8 * kPage - 1));
  EXPECT_TRUE(ShrinkInPlace(p, 8 * kPage, 8 * kPage - 1));
  EXPECT_TRUE(Unmap(p, 8 * kPage));
}

TEST(MmapAllocTest, ShrinkAndGrowRejectWrongDirection) {
  void* p = Map(4 * kPage);
  ASSERT_NE(p, nullptr);
  errno = 0;
  EXPECT_FALSE(GrowInPlace(p, 4 * kPage, 2 * kPage));
  EXPECT_EQ(errno, EINVAL);
  errno = 0;
  EXPECT_FALSE(ShrinkInPlace(p, 2 * kPage, 4 * kPage));
  EXPECT_EQ(errno, EINVAL);
  errno = 0;
  EXPECT_FALSE(ShrinkInPlace(p, 4 * kPage, 0));
  EXPECT_EQ(errno, EINVAL);
  errno = 0;
  EXPECT_FALSE(GrowInPlace(At(p, 1), kPage, 2 * kPage));
  EXPECT_EQ(errno, EINVAL);
  EXPECT_TRUE(IsMapped(p, 4 * kPage));
  EXPECT_TRUE(Unmap(p, 4 * kPage));
}

// Maps `len` bytes and a one-page "blocker" mapping right after them, so that
// the region cannot grow in place. The layout is made, not hoped for: map one
// page more than needed, unmap that page and immediately (nothing else runs in
// between) claim it with MAP_FIXED_NOREPLACE.
struct Blocked {
  void* p = nullptr;
  void* blocker = nullptr;
};

Blocked MapBlocked(std::size_t len, Perm perm, std::size_t align = 0) {
  MapOptions options;
  options.perm = kRW;
  options.align = align;
  Blocked b;
  void* p = Map(len + kPage, options);
  if (p == nullptr) return b;
  void* want = At(p, len);
  if (!Unmap(want, kPage)) return b;
  void* got = mmap(want, kPage, PROT_READ | PROT_WRITE,
                   MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED_NOREPLACE, -1, 0);
  if (got != want) {
    if (got != MAP_FAILED) munmap(got, kPage);  // Pre-4.17: only a hint.
    Unmap(p, len);
    return b;
  }
  std::memset(got, 0x5a, kPage);
  Fill(p, len, 23);
  if (perm != kRW && !Protect(p, len, perm)) {
    Unmap(p, len);
    munmap(got, kPage);
    return b;
  }
  b.p = p;
  b.blocker = got;
  return b;
}

bool BlockerIntact(const Blocked& b) {
  const auto* c = static_cast<const unsigned char*>(b.blocker);
  for (std::size_t i = 0; i < kPage; ++i) {
    if (c[i] != 0x5a) return false;
  }
  return PermsAt(b.blocker) == "rw-p";
}

// Reference test_realloc_{small,large}: for all permission combinations,
// grow in place fails cleanly when blocked; Remap grows by moving (the kernel
// moves the pages, the contents and permissions come along) and shrinks in
// place; the neighbouring data survives.
TEST(MmapAllocTest, RemapKeepsContentsAndPermissions) {
  for (Perm perm : kAllPerms) {
    SCOPED_TRACE(ExpectedPerms(perm));
    const std::size_t len = 4 * kPage;
    Blocked b = MapBlocked(len, perm);
    ASSERT_NE(b.p, nullptr);

    errno = 0;
    EXPECT_FALSE(GrowInPlace(b.p, len, 2 * len));
    EXPECT_EQ(errno, ENOMEM);
    EXPECT_EQ(PermsAt(b.p), ExpectedPerms(perm));
    EXPECT_TRUE(IsMapped(b.p, len));

    void* q = Remap(b.p, len, 2 * len);
    ASSERT_NE(q, nullptr);
    EXPECT_NE(q, b.p);  // Forced to move.
    EXPECT_FALSE(IsMapped(b.p, kPage));
    EXPECT_EQ(PermsAt(q), ExpectedPerms(perm));
    EXPECT_EQ(PermsAt(At(q, len)), ExpectedPerms(perm));
    EXPECT_TRUE(BlockerIntact(b));
    ASSERT_TRUE(Protect(q, 2 * len, kRW));
    EXPECT_TRUE(Check(q, len, 23));
    EXPECT_TRUE(AllZero(At(q, len), len));
    ASSERT_TRUE(Protect(q, 2 * len, perm));

    void* r = Remap(q, 2 * len, kPage + 1);  // Shrinks where it is.
    ASSERT_EQ(r, q);
    EXPECT_FALSE(IsMapped(At(r, 2 * kPage), kPage));
    EXPECT_EQ(PermsAt(r), ExpectedPerms(perm));
    ASSERT_TRUE(Protect(r, 2 * kPage, kRW));
    EXPECT_TRUE(Check(r, 2 * kPage, 23));

    EXPECT_EQ(Remap(r, 2 * kPage, 2 * kPage - 5), r);  // Same size.
    EXPECT_TRUE(Unmap(r, 2 * kPage));
    munmap(b.blocker, kPage);
  }
}

// Remap with an alignment above a page keeps the alignment even when the
// block must move (plain mremap would only guarantee a page).
// MoveTo gathers two separate regions into one reservation, keeping their
// contents and their committed pages; the sources are gone.
TEST(MmapAllocTest, MoveToGathersRegionsIntoAReservation) {
  const std::size_t page = PageSize();
  char* a = static_cast<char*>(Map(4 * page));
  char* b = static_cast<char*>(Map(2 * page));
  ASSERT_NE(a, nullptr);
  ASSERT_NE(b, nullptr);
  std::memset(a, 0x11, 4 * page);
  std::memset(b, 0x22, 2 * page);
  MapOptions reserve;
  reserve.perm = Perm::kNone;
  char* t = static_cast<char*>(Map(6 * page, reserve));
  ASSERT_NE(t, nullptr);
  ASSERT_TRUE(MoveTo(a, 4 * page, t));
  ASSERT_TRUE(MoveTo(b, 2 * page, t + 4 * page));
  EXPECT_EQ(t[0], 0x11);
  EXPECT_EQ(t[4 * page - 1], 0x11);
  EXPECT_EQ(t[4 * page], 0x22);
  EXPECT_EQ(t[6 * page - 1], 0x22);
  t[0] = 1;  // writable: the moved pages keep their protection
  unsigned char vec[6] = {};
  ASSERT_EQ(mincore(t, 6 * page, vec), 0);
  for (unsigned char v : vec) EXPECT_EQ(v & 1, 1);  // still resident
  // The sources are unmapped.
  EXPECT_NE(mincore(a, page, vec), 0);
  EXPECT_NE(mincore(b, page, vec), 0);
  EXPECT_FALSE(MoveTo(t + 1, page, t));  // unaligned
  EXPECT_TRUE(Unmap(t, 6 * page));
}

// With keep_source, the pages move out of a larger mapping and the source
// range stays mapped, empty and writable: no hole in the reservation.
TEST(MmapAllocTest, MoveToCanKeepTheSourceMapped) {
  const std::size_t page = PageSize();
  char* r = static_cast<char*>(Map(8 * page));
  ASSERT_NE(r, nullptr);
  std::memset(r, 0x33, 8 * page);
  MapOptions reserve;
  reserve.perm = Perm::kNone;
  char* t = static_cast<char*>(Map(3 * page, reserve));
  ASSERT_NE(t, nullptr);
  ASSERT_TRUE(MoveTo(r + 2 * page, 3 * page, t, /*keep_source=*/true));
  EXPECT_EQ(t[0], 0x33);
  EXPECT_EQ(t[3 * page - 1], 0x33);
  unsigned char vec[8] = {};
  ASSERT_EQ(mincore(r, 8 * page, vec), 0);  // all of it still mapped
  EXPECT_EQ(vec[1] & 1, 1);
  EXPECT_EQ(vec[2] & 1, 0);  // moved away: nothing resident
  EXPECT_EQ(vec[4] & 1, 0);
  EXPECT_EQ(vec[5] & 1, 1);
  EXPECT_EQ(r[2 * page], 0);  // reads as zero, and is writable
  r[2 * page] = 5;
  EXPECT_EQ(r[2 * page + 1], 0);
  EXPECT_TRUE(Unmap(t, 3 * page));
  EXPECT_TRUE(Unmap(r, 8 * page));
}

TEST(MmapAllocTest, RemapKeepsLargeAlignment) {
  const std::size_t align = std::size_t{2} << 20;
  const std::size_t len = align;
  Blocked b = MapBlocked(len, kRW, align);
  ASSERT_NE(b.p, nullptr);
  ASSERT_EQ(reinterpret_cast<std::uintptr_t>(b.p) % align, 0u);
  void* q = Remap(b.p, len, 3 * len, align);
  ASSERT_NE(q, nullptr);
  EXPECT_EQ(reinterpret_cast<std::uintptr_t>(q) % align, 0u);
  EXPECT_NE(q, b.p);
  EXPECT_TRUE(Check(q, len, 23));
  EXPECT_TRUE(AllZero(At(q, len), 2 * len));
  EXPECT_EQ(PermsAt(At(q, 2 * len)), "rw-p");
  EXPECT_TRUE(BlockerIntact(b));
  EXPECT_FALSE(IsMapped(b.p, len));

  // A misaligned block is moved to an aligned place even at the same size.
  void* m = Map(2 * kPage);
  ASSERT_NE(m, nullptr);
  Fill(m, 2 * kPage, 29);
  void* n = Remap(m, 2 * kPage, 2 * kPage, align);
  ASSERT_NE(n, nullptr);
  EXPECT_EQ(reinterpret_cast<std::uintptr_t>(n) % align, 0u);
  EXPECT_TRUE(Check(n, 2 * kPage, 29));

  EXPECT_TRUE(Unmap(q, 3 * len));
  EXPECT_TRUE(Unmap(n, 2 * kPage));
  munmap(b.blocker, kPage);
}

// --------------------------------------------------------------------------
// Failure paths: a value with errno, never a crash, never a changed errno on
// success.

// The mapping registry follows every call that maps, unmaps, moves or
// protects: the 2 MiB boundaries a readable mapping covers are marked, and
// nothing else is (a static array, the stack, memory another mmap made).
TEST(MmapAllocRegistryTest, FollowsMapUnmapProtectGuardRemapAndMove) {
  constexpr std::size_t G = kRegistryGranule;
  static char static_array[64];
  int on_stack = 0;
  auto boundary_below = [](const void* p) {
    return reinterpret_cast<const void*>(
        reinterpret_cast<std::uintptr_t>(p) & ~(kRegistryGranule - 1));
  };
  EXPECT_FALSE(IsMappedBoundary(boundary_below(static_array)));
  EXPECT_FALSE(IsMappedBoundary(boundary_below(&on_stack)));
  EXPECT_FALSE(IsMappedBoundary(nullptr));
  EXPECT_FALSE(IsMappedBoundary(reinterpret_cast<void*>(~std::uintptr_t{0} &
                                                        ~(G - 1))));

  MapOptions o;
  o.align = G;
  char* a = static_cast<char*>(Map(2 * G, o));
  ASSERT_NE(a, nullptr);
  EXPECT_TRUE(IsMappedBoundary(a));
  EXPECT_TRUE(IsMappedBoundary(a + G));
  // (Not a + 2 G: whatever follows the mapping may be another mapping of
  // this library's, e.g. the preloaded malloc's slab regions when the test
  // runs under libelfc.so, which shares the registry.)
  // PROT_NONE takes a boundary out; readable again puts it back.
  ASSERT_TRUE(Protect(a + G, PageSize(), Perm::kNone));
  EXPECT_FALSE(IsMappedBoundary(a + G));
  ASSERT_TRUE(Protect(a + G, PageSize(), Perm::kRead | Perm::kWrite));
  EXPECT_TRUE(IsMappedBoundary(a + G));
  // So does a guard page, until Unguard.
  ASSERT_TRUE(Guard(a + G, PageSize()));
  EXPECT_FALSE(IsMappedBoundary(a + G));
  EXPECT_TRUE(IsMappedBoundary(a));
  ASSERT_TRUE(Unguard(a + G, PageSize()));
  EXPECT_TRUE(IsMappedBoundary(a + G));
  // Shrinking gives the tail's boundary back.
  ASSERT_TRUE(ShrinkInPlace(a, 2 * G, G));
  EXPECT_TRUE(IsMappedBoundary(a));
  EXPECT_FALSE(IsMappedBoundary(a + G));
  // An aligned remap to a larger size covers (and marks) the new boundaries
  // wherever it lands, and unmarks the old ones if it moved.
  char* b = static_cast<char*>(Remap(a, G, 3 * G, G));
  ASSERT_NE(b, nullptr);
  for (int i = 0; i < 3; ++i) EXPECT_TRUE(IsMappedBoundary(b + i * G)) << i;
  if (b != a) {
    EXPECT_FALSE(IsMappedBoundary(a));
  }
  // A move to a reservation marks the target and unmarks the source.
  MapOptions reserve;
  reserve.perm = Perm::kNone;
  reserve.align = G;
  char* t = static_cast<char*>(Map(3 * G, reserve));
  ASSERT_NE(t, nullptr);
  EXPECT_FALSE(IsMappedBoundary(t));
  ASSERT_TRUE(MoveTo(b, 3 * G, t));
  for (int i = 0; i < 3; ++i) {
    EXPECT_TRUE(IsMappedBoundary(t + i * G)) << i;
    EXPECT_FALSE(IsMappedBoundary(b + i * G)) << i;
  }
  ASSERT_TRUE(Unmap(t, 3 * G));
  for (int i = 0; i < 3; ++i) EXPECT_FALSE(IsMappedBoundary(t + i * G)) << i;
}

// The epoch moves on whenever a boundary's bit may be cleared (and before
// it is), and only then: a caller that remembers a boundary as mapped for
// an epoch never keeps it past an unmap of it.
TEST(MmapAllocRegistryTest, EpochAdvancesOnEveryCallThatTakesABoundaryAway) {
  constexpr std::size_t G = kRegistryGranule;
  MapOptions o;
  o.align = G;
  std::uint64_t e = RegistryEpoch();
  char* a = static_cast<char*>(Map(3 * G, o));
  ASSERT_NE(a, nullptr);
  EXPECT_EQ(RegistryEpoch(), e) << "mapping takes nothing away";
  // Within one 2 MiB granule past its boundary: no boundary, no new epoch.
  ASSERT_TRUE(Protect(a + PageSize(), PageSize(), Perm::kNone));
  EXPECT_EQ(RegistryEpoch(), e);
  ASSERT_TRUE(Protect(a + PageSize(), PageSize(), Perm::kRead | Perm::kWrite));
  ASSERT_TRUE(Protect(a + G, PageSize(), Perm::kNone));
  EXPECT_GT(RegistryEpoch(), e);
  e = RegistryEpoch();
  ASSERT_TRUE(Protect(a + G, PageSize(), Perm::kRead | Perm::kWrite));
  EXPECT_EQ(RegistryEpoch(), e);
  ASSERT_TRUE(Guard(a + G, PageSize()));
  EXPECT_GT(RegistryEpoch(), e);
  ASSERT_TRUE(Unguard(a + G, PageSize()));
  e = RegistryEpoch();
  ASSERT_TRUE(ShrinkInPlace(a, 3 * G, 2 * G));
  EXPECT_GT(RegistryEpoch(), e);
  e = RegistryEpoch();
  ASSERT_TRUE(Unmap(a, 2 * G));
  EXPECT_GT(RegistryEpoch(), e);
}

TEST(MmapAllocFailureTest, MapZeroIsEinval) {
  errno = 0;
  EXPECT_EQ(Map(0), nullptr);
  EXPECT_EQ(errno, EINVAL);
}

TEST(MmapAllocFailureTest, AbsurdSizesAreEnomem) {
  for (std::size_t size :
       {SIZE_MAX, SIZE_MAX - kPage + 2, SIZE_MAX / 2 + 1, std::size_t{1} << 62,
        std::size_t{1} << 60}) {
    SCOPED_TRACE(size);
    errno = 0;
    EXPECT_EQ(Map(size), nullptr);
    EXPECT_EQ(errno, ENOMEM);
  }
  // A size that fits on its own but overflows once the alignment slack is
  // added.
  MapOptions options;
  options.align = std::size_t{1} << 62;
  errno = 0;
  EXPECT_EQ(Map(std::size_t{1} << 62, options), nullptr);
  EXPECT_EQ(errno, ENOMEM);
  options.align = std::size_t{1} << 63;
  errno = 0;
  EXPECT_EQ(Map(kPage, options), nullptr);
  EXPECT_EQ(errno, ENOMEM);
}

TEST(MmapAllocFailureTest, BadAlignmentIsEinval) {
  for (std::size_t align : {std::size_t{3}, std::size_t{6} * 4096,
                            std::size_t{4096} + 1, SIZE_MAX}) {
    SCOPED_TRACE(align);
    MapOptions options;
    options.align = align;
    errno = 0;
    EXPECT_EQ(Map(kPage, options), nullptr);
    EXPECT_EQ(errno, EINVAL);
  }
  // Powers of two below a page are fine: every mapping is page-aligned.
  MapOptions options;
  options.align = 64;
  void* p = Map(kPage, options);
  ASSERT_NE(p, nullptr);
  EXPECT_TRUE(Unmap(p, kPage));
}

TEST(MmapAllocFailureTest, RangeOperationsRejectBadArguments) {
  void* p = Map(2 * kPage);
  ASSERT_NE(p, nullptr);
  void* unaligned = At(p, 1);
  const auto expect_einval = [](bool ok) {
    EXPECT_FALSE(ok);
    EXPECT_EQ(errno, EINVAL);
    errno = 0;
  };
  errno = 0;
  expect_einval(Unmap(unaligned, kPage));
  expect_einval(Unmap(p, 0));
  expect_einval(Unmap(nullptr, kPage));
  expect_einval(Unmap(p, SIZE_MAX));
  expect_einval(Commit(unaligned, kPage));
  expect_einval(Commit(p, 0));
  expect_einval(Uncommit(unaligned, kPage));
  expect_einval(Uncommit(p, 0, UncommitMode::kFree));
  expect_einval(Protect(unaligned, kPage, kRW));
  expect_einval(AdviseHugePages(unaligned, kPage));
  expect_einval(NameRegion(unaligned, kPage, "x"));
  expect_einval(Remap(unaligned, kPage, 2 * kPage) != nullptr);
  expect_einval(Remap(p, kPage, 0) != nullptr);
  expect_einval(Remap(p, kPage, 2 * kPage, 3 * kPage) != nullptr);
  // Nothing was unmapped or changed by any of that.
  EXPECT_TRUE(IsMapped(p, 2 * kPage));
  EXPECT_EQ(PermsAt(p), "rw-p");
  EXPECT_TRUE(Unmap(p, 2 * kPage));
}

TEST(MmapAllocFailureTest, OperationsOnUnmappedMemoryFailWithKernelErrno) {
  void* p = Map(4 * kPage);
  ASSERT_NE(p, nullptr);
  ASSERT_TRUE(Unmap(p, 4 * kPage));
  errno = 0;
  EXPECT_FALSE(Commit(p, 4 * kPage));
  EXPECT_EQ(errno, ENOMEM);
  errno = 0;
  EXPECT_FALSE(Uncommit(p, 4 * kPage));
  EXPECT_EQ(errno, ENOMEM);
  errno = 0;
  EXPECT_FALSE(Uncommit(p, 4 * kPage, UncommitMode::kFree));
  EXPECT_EQ(errno, ENOMEM);
  errno = 0;
  EXPECT_FALSE(Protect(p, 4 * kPage, Perm::kRead));
  EXPECT_EQ(errno, ENOMEM);
  errno = 0;
  EXPECT_FALSE(GrowInPlace(p, 4 * kPage, 8 * kPage));
  EXPECT_EQ(errno, EFAULT);
  EXPECT_FALSE(IsMapped(p, kPage));
}

// The over-aligned Remap reserves a target before moving; when the move
// fails, the reservation is released and the caller sees the move's errno,
// not that of the cleanup.
TEST(MmapAllocFailureTest, FailedAlignedRemapReleasesItsReservation) {
  const std::size_t align = std::size_t{1} << 30;
  void* p = Map(kPage);
  ASSERT_NE(p, nullptr);
  ASSERT_TRUE(Unmap(p, kPage));  // p is now a dangling, misaligned range.
  ASSERT_NE(reinterpret_cast<std::uintptr_t>(p) % align, 0u);
  const std::size_t before = test_util::ReadProcFile(
      "/proc/self/maps", g_maps_before, sizeof(g_maps_before));
  errno = 0;
  void* q = Remap(p, kPage, align, align);
  const int err = errno;
  const std::size_t after = test_util::ReadProcFile(
      "/proc/self/maps", g_maps_after, sizeof(g_maps_after));
  EXPECT_EQ(q, nullptr);
  EXPECT_EQ(err, EFAULT);
  ASSERT_NE(before, 0u);
  ASSERT_NE(after, 0u);
  // Not one byte more is mapped anywhere.
  EXPECT_EQ(test_util::MappedBytesIn({g_maps_after, after}, 0, UINTPTR_MAX),
            test_util::MappedBytesIn({g_maps_before, before}, 0, UINTPTR_MAX));
}

TEST(MmapAllocFailureTest, SuccessLeavesErrnoAlone) {
  errno = EDOM;
  void* p = Map(3 * kPage);
  ASSERT_NE(p, nullptr);
  EXPECT_EQ(errno, EDOM);
  MapOptions aligned;
  aligned.align = std::size_t{1} << 21;
  aligned.populate = true;
  aligned.huge_pages = true;
  aligned.name = "mmap_alloc_test";  // Unsupported on some kernels: ignored.
  void* a = Map(kPage, aligned);
  ASSERT_NE(a, nullptr);
  EXPECT_EQ(errno, EDOM);
  EXPECT_TRUE(Commit(p, 3 * kPage));
  EXPECT_TRUE(Uncommit(p, kPage));
  EXPECT_TRUE(Uncommit(p, kPage, UncommitMode::kFree));
  EXPECT_TRUE(ShrinkInPlace(p, 3 * kPage, 2 * kPage));
  EXPECT_TRUE(GrowInPlace(p, 2 * kPage, 3 * kPage));
  EXPECT_TRUE(Protect(p, 3 * kPage, Perm::kRead));
  void* q = Remap(p, 3 * kPage, 64 * kPage);
  ASSERT_NE(q, nullptr);
  EXPECT_EQ(errno, EDOM);
  EXPECT_TRUE(Unmap(q, 64 * kPage));
  EXPECT_TRUE(Unmap(a, kPage));
  EXPECT_EQ(errno, EDOM);
}

// --------------------------------------------------------------------------
// Hints.

bool ThpAvailable() {
  return access("/sys/kernel/mm/transparent_hugepage/enabled", R_OK) == 0;
}

TEST(MmapAllocHintTest, HugePageHintOnAlignedRegion) {
  if (!ThpAvailable()) GTEST_SKIP() << "no transparent huge page support";
  const std::size_t huge = std::size_t{2} << 20;
  MapOptions options;
  options.align = huge;
  void* p = Map(2 * huge, options);
  ASSERT_NE(p, nullptr);
  EXPECT_EQ(test_util::VmFlagsAt(p).find(" hg"), std::string::npos);
  ASSERT_TRUE(AdviseHugePages(p, 2 * huge)) << errno;
  // "hg" in VmFlags: the kernel recorded MADV_HUGEPAGE for the mapping.
  EXPECT_NE((" " + test_util::VmFlagsAt(p) + " ").find(" hg "),
            std::string::npos)
      << test_util::VmFlagsAt(p);
  Fill(p, 2 * huge, 31);
  EXPECT_TRUE(Check(p, 2 * huge, 31));
  EXPECT_TRUE(Unmap(p, 2 * huge));

  // The MapOptions flag does the same, populated or not.
  for (bool populate : {false, true}) {
    options.huge_pages = true;
    options.populate = populate;
    void* q = Map(huge, options);
    ASSERT_NE(q, nullptr);
    EXPECT_NE((" " + test_util::VmFlagsAt(q) + " ").find(" hg "),
              std::string::npos);
    if (populate) {
      EXPECT_EQ(ResidentPages(q, huge), huge / kPage);
    }
    EXPECT_TRUE(AllZero(q, huge));
    EXPECT_TRUE(Unmap(q, huge));
  }
}

TEST(MmapAllocHintTest, NameRegionShowsInProcMaps) {
  void* p = Map(2 * kPage);
  ASSERT_NE(p, nullptr);
  if (!NameRegion(p, 2 * kPage, "mmap_alloc_test")) {
    EXPECT_EQ(errno, EINVAL);  // Kernel without CONFIG_ANON_VMA_NAME.
    EXPECT_TRUE(Unmap(p, 2 * kPage));
    GTEST_SKIP() << "PR_SET_VMA_ANON_NAME unsupported";
  }
  auto m = test_util::FindMapping(p);
  ASSERT_TRUE(m.has_value());
  EXPECT_EQ(m->name, "[anon:mmap_alloc_test]");
  EXPECT_TRUE(Unmap(p, 2 * kPage));
}

}  // namespace
}  // namespace mmap_alloc
