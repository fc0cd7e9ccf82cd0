// Tests for size_classes.h: the exact class list, exhaustive lookup over every
// size 0 .. 1 MiB + 1, and the alignment of power-of-two classes.
#include "elfmalloc/size_classes.h"

#include <cstddef>
#include <cstdint>
#include <type_traits>
#include <vector>

#include "gtest/gtest.h"

namespace elfmalloc {
namespace {

TEST(SizeClassesTest, ExactClassList) {
  std::vector<std::size_t> expected = {8};
  for (std::size_t s = 16; s <= 192; s += 16) expected.push_back(s);
  for (std::size_t s = 256; s <= (1u << 20); s *= 2) expected.push_back(s);
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
  EXPECT_EQ(ClassPageSize(SizeToClass(8 * 1024)), kMidPageSize);
  EXPECT_EQ(ClassPageSize(SizeToClass(8 * 1024 + 1)), kMediumPageSize);
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
  EXPECT_EQ(ClassSize(SizeToClass(0)), 8u);
  EXPECT_EQ(ClassSize(SizeToClass(1)), 8u);
  EXPECT_EQ(ClassSize(SizeToClass(8)), 8u);
  EXPECT_EQ(ClassSize(SizeToClass(9)), 16u);
  EXPECT_EQ(ClassSize(SizeToClass(192)), 192u);
  EXPECT_EQ(ClassSize(SizeToClass(193)), 256u);
  EXPECT_EQ(ClassSize(SizeToClass(1024)), 1024u);
  EXPECT_EQ(ClassSize(SizeToClass(1025)), 2048u);
  EXPECT_EQ(ClassSize(SizeToClass(1u << 20)), 1u << 20);
  static_assert(SizeToClass(100) == SizeClass(7));  // usable in constant expressions
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

TEST(SizeClassesTest, StrongType) {
  static_assert(!std::is_convertible_v<std::size_t, SizeClass>);
  EXPECT_EQ(SizeClass(3), SizeClass(3));
  EXPECT_LT(SizeClass(3), SizeClass(4));
  EXPECT_EQ(SizeClass().index(), 0u);
}

}  // namespace
}  // namespace elfmalloc
