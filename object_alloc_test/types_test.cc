// Tests for types.h: the 47 sizes, the valid-alignment rule, Bytes<N, A>.
#include "object_alloc_test/types.h"

#include <algorithm>
#include <cstddef>
#include <iterator>
#include <new>
#include <vector>

#include "gtest/gtest.h"

namespace object_alloc_test {
namespace {

TEST(TypesTest, TheReferenceSizes) {
  const std::vector<std::size_t> expected = {
      1,    2,    3,    4,    5,    6,    7,    8,    11,   12,   13,   16,
      19,   24,   29,   32,   41,   48,   59,   64,   73,   96,   113,  128,
      157,  192,  229,  256,  317,  384,  457,  512,  617,  768,  1024, 1277,
      1536, 1777, 2048, 2557, 3072, 3539, 4096, 5119, 6144, 7151, 8192};
  EXPECT_EQ(std::vector<std::size_t>(kSizes.begin(), kSizes.end()), expected);
  EXPECT_TRUE(std::is_sorted(kSizes.begin(), kSizes.end()));
  EXPECT_EQ(kSizes.back(), kMaxSize);
  EXPECT_EQ(std::size_t{1} << kMaxAlignLog2, kMaxSize);
}

TEST(TypesTest, ValidAlignments) {
  using V = std::vector<std::size_t>;
  EXPECT_EQ(ValidAligns(1, 1, 4096), V({1}));
  EXPECT_EQ(ValidAligns(24, 1, 4096), V({1, 2, 4, 8}));
  EXPECT_EQ(ValidAligns(7151, 1, 4096), V({1})) << "odd: byte alignment only";
  EXPECT_EQ(ValidAligns(6144, 1, 4096),
            V({1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 2048}));
  EXPECT_EQ(ValidAligns(8192, 1, 4096).size(), 13u) << "capped at max_align";
  EXPECT_EQ(ValidAligns(8192, 1, 8192).size(), 14u);
  EXPECT_EQ(ValidAligns(24, 4, 4096), V({4, 8})) << "min_align";
  EXPECT_TRUE(IsValidAlign(64, 64, 4096));
  EXPECT_FALSE(IsValidAlign(64, 128, 4096)) << "larger than the size";
  EXPECT_FALSE(IsValidAlign(24, 16, 4096)) << "does not divide the size";
  EXPECT_FALSE(IsValidAlign(24, 3, 4096)) << "not a power of two";
}

TEST(TypesTest, NumberOfCases) {
  // The sweep the typed and untyped suites run.
  std::size_t all = 0, up_to_page = 0;
  for (std::size_t size : kSizes) {
    all += ValidAligns(size, 1, kMaxSize).size();
    up_to_page += ValidAligns(size, 1, kDefaultMaxAlign).size();
  }
  EXPECT_EQ(all, 204u);
  EXPECT_EQ(up_to_page, 203u);
}

TEST(TypesTest, BytesLayoutAndZeroInitialisation) {
  static_assert(sizeof(Bytes<1>) == 1 && alignof(Bytes<1>) == 1);
  static_assert(sizeof(Bytes<8, 8>) == 8 && alignof(Bytes<8, 8>) == 8);
  static_assert(sizeof(Bytes<6, 2>) == 6 && alignof(Bytes<6, 2>) == 2);
  static_assert(sizeof(Bytes<8192, 4096>) == 8192);
  alignas(8) unsigned char storage[8];
  std::fill(std::begin(storage), std::end(storage), 0xff);
  auto* b = ::new (storage) Bytes<8, 8>();
  for (unsigned char c : b->bytes) EXPECT_EQ(c, 0);
}

}  // namespace
}  // namespace object_alloc_test
