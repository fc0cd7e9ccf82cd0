// Tests for memory_source.h: alignment, zero fill, page-size rounding and
// failure values of MmapSource.
#include "elfmalloc/memory_source.h"

#include <cerrno>
#include <cstddef>
#include <cstdint>
#include <limits>

#include "gtest/gtest.h"
#include "mmap_alloc/mmap_alloc.h"

namespace elfmalloc {
namespace {

TEST(MmapSourceTest, PageSizeRounding) {
  EXPECT_EQ(MmapSource(1).page_size(), mmap_alloc::PageSize());
  EXPECT_EQ(MmapSource(300 * 1024).page_size(), 512u * 1024);
  EXPECT_EQ(MmapSource(2u << 20).page_size(), 2u << 20);
}

TEST(MmapSourceTest, CarveIsAlignedAndZero) {
  for (std::size_t page : {std::size_t{4096}, std::size_t{256} << 10,
                           std::size_t{2} << 20}) {
    MmapSource s(page);
    for (std::size_t n : {1, 3}) {
      char* p = static_cast<char*>(s.Carve(n));
      ASSERT_NE(p, nullptr);
      EXPECT_EQ(reinterpret_cast<std::uintptr_t>(p) % s.page_size(), 0u);
      for (std::size_t i = 0; i < n * s.page_size(); i += 512) {
        ASSERT_EQ(p[i], 0) << i;
      }
      p[n * s.page_size() - 1] = 1;  // writable to the end
      EXPECT_TRUE(mmap_alloc::Unmap(p, n * s.page_size()));
    }
  }
}

TEST(MmapSourceTest, Failures) {
  MmapSource s(2u << 20);
  errno = 0;
  EXPECT_EQ(s.Carve(0), nullptr);
  EXPECT_EQ(errno, EINVAL);
  errno = 0;
  EXPECT_EQ(s.Carve(std::numeric_limits<std::size_t>::max() / 4), nullptr);
  EXPECT_EQ(errno, ENOMEM);
}

}  // namespace
}  // namespace elfmalloc
