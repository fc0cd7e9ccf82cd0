// Tests for size_classes.h: the exact class list, exhaustive lookup over every
// size 0 .. 256 KiB + 1, the alignment of power-of-two classes, and the
// internal waste per size range (printed and bounded).
#include "elfmalloc/size_classes.h"

#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <type_traits>
#include <vector>

#include "gtest/gtest.h"

namespace elfmalloc {
namespace {

TEST(SizeClassesTest, ExactClassList) {
  std::vector<std::size_t> expected;
  for (std::size_t s = 16; s <= 256; s += 16) expected.push_back(s);
  for (std::size_t s = 256; s < (256u << 10); s *= 2) {
    // A buffer plus a header: 1 KiB + 32 B, 2 KiB + 256 B ... 8 KiB + 1 KiB.
    if (s == 1024) expected.push_back(1056);
    if (s >= 2048 && s <= 8192) expected.push_back(s + s / 8);
    for (std::size_t q = 5; q <= 8; ++q) expected.push_back(s / 4 * q);
  }
  ASSERT_EQ(expected.size(), kNumSizeClasses);
  for (std::size_t i = 0; i < kNumSizeClasses; ++i) {
    EXPECT_EQ(ClassSize(SizeClass(static_cast<std::uint8_t>(i))), expected[i])
        << i;
  }
}

TEST(SizeClassesTest, PageSizes) {
  for (std::size_t i = 0; i < kNumSizeClasses; ++i) {
    const SizeClass c(static_cast<std::uint8_t>(i));
    if (ClassSize(c) <= 512) {
      EXPECT_EQ(ClassPageSize(c), 64u * 1024) << ClassSize(c);
    } else if (ClassSize(c) < 16 * 1024) {
      EXPECT_EQ(ClassPageSize(c), 256u * 1024) << ClassSize(c);
    } else {
      EXPECT_EQ(ClassPageSize(c), 2u * 1024 * 1024) << ClassSize(c);
    }
  }
  EXPECT_EQ(ClassPageSize(SizeToClass(512)), kSmallPageSize);
  EXPECT_EQ(ClassPageSize(SizeToClass(513)), kMidPageSize);
  EXPECT_EQ(ClassPageSize(SizeToClass(14 * 1024)), kMidPageSize);
  EXPECT_EQ(ClassPageSize(SizeToClass(14 * 1024 + 1)), kMediumPageSize);
}

// Every size maps to the smallest class that holds it, computed by a linear
// scan independent of the lookup array and the bit math.
TEST(SizeClassesTest, ExhaustiveLookupIsSmallestFit) {
  std::size_t expected = 0;
  for (std::size_t n = 0; n <= kMaxSlabObjectSize; ++n) {
    while (ClassSize(SizeClass(static_cast<std::uint8_t>(expected))) < n) {
      ++expected;
    }
    const SizeClass c = SizeToClass(n);
    if (c.index() != expected) {
      FAIL() << "size " << n << " -> class " << c.index() << ", want "
             << expected;
    }
    ASSERT_TRUE(IsSlabSize(n));
  }
  EXPECT_FALSE(IsSlabSize(kMaxSlabObjectSize + 1));
}

TEST(SizeClassesTest, Boundaries) {
  EXPECT_EQ(ClassSize(SizeToClass(0)), 16u);
  EXPECT_EQ(ClassSize(SizeToClass(1)), 16u);
  EXPECT_EQ(ClassSize(SizeToClass(8)), 16u);
  EXPECT_EQ(ClassSize(SizeToClass(16)), 16u);
  EXPECT_EQ(ClassSize(SizeToClass(17)), 32u);
  EXPECT_EQ(ClassSize(SizeToClass(192)), 192u);
  EXPECT_EQ(ClassSize(SizeToClass(193)), 208u);
  EXPECT_EQ(ClassSize(SizeToClass(257)), 320u);
  EXPECT_EQ(ClassSize(SizeToClass(1024)), 1024u);
  // A 1 KiB buffer + a small header (sqlite3's 1032-byte blocks).
  EXPECT_EQ(ClassSize(SizeToClass(1025)), 1056u);
  EXPECT_EQ(ClassSize(SizeToClass(1032)), 1056u);
  EXPECT_EQ(ClassSize(SizeToClass(1056)), 1056u);
  EXPECT_EQ(ClassSize(SizeToClass(1057)), 1280u);
  EXPECT_EQ(ClassSize(SizeToClass(1152)), 1280u);
  EXPECT_EQ(ClassSize(SizeToClass(1153)), 1280u);
  EXPECT_EQ(ClassSize(SizeToClass(1281)), 1536u);
  EXPECT_EQ(ClassSize(SizeToClass(2049)), 2304u);
  EXPECT_EQ(ClassSize(SizeToClass(2305)), 2560u);
  // Page caches' blocks: a 4 KiB or 8 KiB page + a header.
  EXPECT_EQ(ClassSize(SizeToClass(4097)), 4608u);
  EXPECT_EQ(ClassSize(SizeToClass(4104)), 4608u);
  EXPECT_EQ(ClassSize(SizeToClass(4368)), 4608u);
  EXPECT_EQ(ClassSize(SizeToClass(4609)), 5120u);
  EXPECT_EQ(ClassSize(SizeToClass(8193)), 9216u);
  EXPECT_EQ(ClassSize(SizeToClass(8544)), 9216u);
  EXPECT_EQ(ClassSize(SizeToClass(9217)), 10240u);
  EXPECT_EQ(ClassSize(SizeToClass(16385)), 20480u);
  EXPECT_EQ(ClassSize(SizeToClass(256u << 10)), 256u << 10);
  static_assert(SizeToClass(100) == SizeClass(6));  // usable in constant expressions
}

TEST(SizeClassesTest, Alignment) {
  for (std::size_t i = 0; i < kNumSizeClasses; ++i) {
    const SizeClass c(static_cast<std::uint8_t>(i));
    const std::size_t s = ClassSize(c);
    const std::size_t a = ClassAlignment(c);
    EXPECT_EQ(s % a, 0u);
    EXPECT_EQ(a & (a - 1), 0u);
    EXPECT_EQ((s / a) % 2, 1u) << "largest power of two dividing " << s;
    if ((s & (s - 1)) == 0) {
      EXPECT_EQ(a, s);  // power-of-two classes
    }
    if (s >= 16) {
      EXPECT_GE(a, 16u);
    }
  }
  // A request of a power of two n lands in a class aligned to at least n.
  for (std::size_t n = 1; n <= kMaxSlabObjectSize; n *= 2) {
    EXPECT_GE(ClassAlignment(SizeToClass(n)), n) << n;
  }
}

// Free's alignment test (TagAlignMask, by slab tag = class + 1): the
// classes below the 2 MiB pages test their own alignment, so a pointer that
// passes is a multiple of it; tag 0 and the 2 MiB pages' classes test the
// 8-byte alignment every pointer elfmalloc hands out has; a tag that names
// no class tests nothing (its free is reported by the slow path).
TEST(SizeClassesTest, TagAlignMasks) {
  EXPECT_EQ(TagAlignMask(0), 7u);
  for (std::size_t i = 0; i < kNumSizeClasses; ++i) {
    const SizeClass c(static_cast<std::uint8_t>(i));
    const std::uint64_t mask = TagAlignMask(i + 1);
    if (ClassPageSize(c) == kMediumPageSize) {
      EXPECT_EQ(mask, 7u) << ClassSize(c);
    } else {
      EXPECT_EQ(mask + 1, ClassAlignment(c)) << ClassSize(c);
    }
  }
  for (std::size_t t = kNumSizeClasses + 1; t < 256; ++t) {
    EXPECT_EQ(TagAlignMask(t), 0u) << t;
  }
}

// Internal waste (class size - request) / class size per range of request
// sizes: the worst case and the average over every size in the range. The
// table is printed so that a change of classes shows its cost in the log.
TEST(SizeClassesTest, InternalWastePerRange) {
  struct Range {
    std::size_t lo, hi;  // requests in [lo, hi]
    double max_worst;    // bound on the worst case
    double max_average;  // bound on the average
  };
  // Below 256 B the spacing is 16 bytes, so the relative worst case is
  // large for the smallest sizes (1 B in a 16-byte block, the smallest;
  // glibc's smallest chunk is 32 bytes) but small in absolute terms; from
  // 256 B, 4 classes per doubling bound it by 20% (a request one byte
  // above a class of 4q takes 5q).
  const Range ranges[] = {
      {1, 64, 0.9375, 0.30},          {65, 256, 0.20, 0.06},
      {257, 1024, 0.20, 0.11},       {1025, 4096, 0.20, 0.11},
      {4097, 16384, 0.20, 0.11},     {16385, 65536, 0.20, 0.11},
      {65537, 262144, 0.20, 0.11},
  };
  std::printf("%-18s %10s %10s\n", "request bytes", "worst", "average");
  for (const Range& r : ranges) {
    double worst = 0, sum = 0;
    for (std::size_t n = r.lo; n <= r.hi; ++n) {
      const double s = static_cast<double>(ClassSize(SizeToClass(n)));
      const double w = (s - static_cast<double>(n)) / s;
      sum += w;
      if (w > worst) worst = w;
    }
    const double avg = sum / static_cast<double>(r.hi - r.lo + 1);
    std::printf("%7zu..%-9zu %9.1f%% %9.1f%%\n", r.lo, r.hi, 100 * worst,
                100 * avg);
    EXPECT_LE(worst, r.max_worst) << r.lo << ".." << r.hi;
    EXPECT_LE(avg, r.max_average) << r.lo << ".." << r.hi;
  }
}

TEST(SizeClassesTest, StrongType) {
  static_assert(!std::is_convertible_v<std::size_t, SizeClass>);
  EXPECT_EQ(SizeClass(3), SizeClass(3));
  EXPECT_LT(SizeClass(3), SizeClass(4));
  EXPECT_EQ(SizeClass().index(), 0u);
}

}  // namespace
}  // namespace elfmalloc
