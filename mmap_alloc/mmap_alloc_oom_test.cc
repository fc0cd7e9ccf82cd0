// Out-of-memory tests for mmap_alloc: requests the kernel genuinely cannot
// satisfy, as opposed to sizes rejected by arithmetic alone.
//
// Each test runs in a forked child (a gtest death test that exits normally)
// that lowers RLIMIT_AS, so the limit never affects the test runner, and the
// child reports through its exit code. The checks: the failure is nullptr /
// false with errno ENOMEM, nothing crashes, and a failed Map or Remap leaves
// no partial mapping behind and the old block intact.
#include <errno.h>
#include <sys/resource.h>
#include <unistd.h>

#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <cstring>

#include "gtest/gtest.h"
#include "mmap_alloc/mmap_alloc.h"
#include "mmap_alloc/proc_maps.h"

namespace mmap_alloc {
namespace {

const std::size_t kPage = PageSize();
constexpr std::size_t kMiB = std::size_t{1} << 20;

// Caps the address space at its current size plus `headroom` bytes.
bool LimitAddressSpace(std::size_t headroom) {
  char buf[4096];
  const std::size_t n = test_util::ReadProcFile("/proc/self/statm", buf,
                                                sizeof(buf) - 1);
  if (n == 0) return false;
  buf[n] = '\0';
  const unsigned long long pages = std::strtoull(buf, nullptr, 10);
  rlimit lim;
  lim.rlim_cur = lim.rlim_max = pages * kPage + headroom;
  return setrlimit(RLIMIT_AS, &lim) == 0;
}

// Exit codes: 0 = pass; anything else names the failed step.
void MapBeyondLimit() {
  if (!LimitAddressSpace(64 * kMiB)) _exit(2);
  errno = 0;
  if (Map(256 * kMiB) != nullptr) _exit(3);
  if (errno != ENOMEM) _exit(4);
  // Over-alignment: the over-map itself is what exceeds the limit.
  MapOptions options;
  options.align = 128 * kMiB;
  errno = 0;
  if (Map(kPage, options) != nullptr) _exit(5);
  if (errno != ENOMEM) _exit(6);
  // Small requests still work: nothing was leaked by the failures.
  void* p = Map(16 * kMiB);
  if (p == nullptr) _exit(7);
  static_cast<char*>(p)[0] = 1;
  void* q = Map(16 * kMiB);
  if (q == nullptr) _exit(8);
  _exit(0);
}

void RemapBeyondLimit() {
  void* p = Map(4 * kPage);
  if (p == nullptr) _exit(2);
  std::memset(p, 0x77, 4 * kPage);
  if (!LimitAddressSpace(32 * kMiB)) _exit(3);
  errno = 0;
  if (Remap(p, 4 * kPage, 256 * kMiB) != nullptr) _exit(4);
  if (errno != ENOMEM) _exit(5);
  errno = 0;
  if (Remap(p, 4 * kPage, 256 * kMiB, 2 * kMiB) != nullptr) _exit(6);
  if (errno != ENOMEM) _exit(7);
  errno = 0;
  if (GrowInPlace(p, 4 * kPage, 256 * kMiB)) _exit(8);
  if (errno != ENOMEM) _exit(9);
  errno = 0;
  if (MapAlloc().Reallocate(p, 4 * kPage, 256 * kMiB) != nullptr) _exit(10);
  if (errno != ENOMEM) _exit(11);
  // The old block is untouched.
  for (std::size_t i = 0; i < 4 * kPage; ++i) {
    if (static_cast<unsigned char*>(p)[i] != 0x77) _exit(12);
  }
  _exit(0);
}

void PageObjectsUntilExhausted() {
  if (!LimitAddressSpace(8 * kMiB)) _exit(2);
  PageObjectAlloc alloc(kMiB);
  int got = 0;
  for (int i = 0; i < 64; ++i) {
    errno = 0;
    if (alloc.Allocate() == nullptr) {
      _exit(errno == ENOMEM && got > 0 ? 0 : 3);
    }
    ++got;
  }
  _exit(4);  // The limit never bit.
}

// These pass under ASan and TSan too: the sanitizers reserve their shadow
// before main, so the limit only constrains mappings made afterwards.
TEST(MmapAllocOomTest, MapBeyondAddressSpaceLimitIsEnomem) {
  EXPECT_EXIT(MapBeyondLimit(), ::testing::ExitedWithCode(0), "");
}

TEST(MmapAllocOomTest, ResizeBeyondAddressSpaceLimitKeepsOldBlock) {
  EXPECT_EXIT(RemapBeyondLimit(), ::testing::ExitedWithCode(0), "");
}

TEST(MmapAllocOomTest, PageObjectAllocReportsExhaustion) {
  EXPECT_EXIT(PageObjectsUntilExhausted(), ::testing::ExitedWithCode(0), "");
}

}  // namespace
}  // namespace mmap_alloc
