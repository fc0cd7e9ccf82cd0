// Tests for slab_metadata.h: every size class against the reference's table
// (allocators-rs-behaviour.md section 13), layout invariants for arbitrary
// sizes, the reference's metadata_basic cases, and the documented fixes.
#include "elfmalloc/slab_metadata.h"

#include <bit>
#include <cstddef>
#include <cstdint>

#include "elfmalloc/size_classes.h"
#include "gtest/gtest.h"

namespace elfmalloc {
namespace {

constexpr std::size_t K = 1024;

struct Row {
  std::size_t size, page, n, words, granule, offset, cutoff;
};

// Section 13 of the reference, verbatim (cutoff 0.6, usable = page).
constexpr Row kTable[] = {
    {8, 256 * K, 32256, 504, 8, 4096, 19353},
    {16, 256 * K, 16253, 254, 16, 2096, 9751},
    {32, 256 * K, 8158, 128, 32, 1088, 4894},
    {48, 256 * K, 5417, 254, 16, 2096, 3250},
    {64, 256 * K, 4087, 64, 64, 576, 2452},
    {80, 256 * K, 3250, 254, 16, 2096, 1950},
    {96, 256 * K, 2719, 128, 32, 1088, 1631},
    {112, 256 * K, 2321, 254, 16, 2096, 1392},
    {128, 256 * K, 2045, 32, 128, 384, 1227},
    {144, 256 * K, 1805, 254, 16, 2096, 1083},
    {160, 256 * K, 1631, 128, 32, 1088, 978},
    {176, 256 * K, 1477, 254, 16, 2096, 886},
    {192, 256 * K, 1362, 64, 64, 576, 817},
    {256, 256 * K, 1023, 16, 256, 256, 613},
    {512, 256 * K, 511, 8, 512, 512, 306},
    {1 * K, 256 * K, 255, 4, 1 * K, 1 * K, 153},
    {2 * K, 256 * K, 127, 2, 2 * K, 2 * K, 76},
    {4 * K, 256 * K, 63, 1, 4 * K, 4 * K, 37},
    {8 * K, 256 * K, 31, 1, 4 * K, 8 * K, 18},
    {16 * K, 256 * K, 15, 1, 4 * K, 16 * K, 9},
    {32 * K, 256 * K, 7, 1, 4 * K, 32 * K, 4},
    {64 * K, 2048 * K, 31, 1, 32 * K, 64 * K, 18},
    {128 * K, 2048 * K, 15, 1, 32 * K, 128 * K, 9},
    {256 * K, 2048 * K, 7, 1, 32 * K, 256 * K, 4},
    {512 * K, 2048 * K, 3, 1, 32 * K, 512 * K, 1},
    {1024 * K, 2048 * K, 1, 1, 16 * K, 1024 * K, 1},
};

// Checks the layout invariants every valid metadata must satisfy.
void CheckInvariants(const SlabMetadata& m, std::size_t requested) {
  SCOPED_TRACE(testing::Message() << "size " << requested << " page "
                                  << m.page_size << " usable " << m.usable_size);
  ASSERT_TRUE(m.valid());
  EXPECT_GE(m.object_size, requested);
  EXPECT_LT(m.object_size - requested, m.granule());
  EXPECT_EQ(m.object_size % m.granule(), 0u);
  EXPECT_EQ(m.bits_per_object, m.object_size >> m.granule_shift);
  EXPECT_GE(m.bits_per_object, 1u);
  EXPECT_LE(m.bits_per_object, 64u);
  EXPECT_EQ(m.bitset_words, (m.n_objects * m.bits_per_object + 63) / 64);
  // The bit-set sits between the header and the objects.
  EXPECT_GE(m.objects_offset, kSlabHeaderSize + 8 * m.bitset_words);
  // Objects inside the usable part of the page, aligned as promised.
  EXPECT_LE(m.objects_offset + m.n_objects * m.object_size, m.usable_size);
  EXPECT_LE(m.usable_size, m.page_size);
  EXPECT_EQ(m.objects_offset % m.object_alignment, 0u);
  EXPECT_EQ(m.object_size % m.object_alignment, 0u);
  if (std::has_single_bit(m.object_size)) {
    EXPECT_EQ(m.object_alignment, m.object_size);
  }
  // Maximal: one more object would not fit.
  const std::size_t words1 =
      ((m.n_objects + 1) * m.bits_per_object + 63) / 64;
  const std::size_t off1 =
      (kSlabHeaderSize + 8 * words1 + m.object_alignment - 1) &
      ~(m.object_alignment - 1);
  EXPECT_GT(off1 + (m.n_objects + 1) * m.object_size, m.usable_size);
  EXPECT_GE(m.cutoff_objects, 1u);
  EXPECT_LE(m.cutoff_objects, m.n_objects);
  // The initial bit-set has exactly one bit per object, at i * bpo.
  std::size_t total = 0;
  for (std::size_t w = 0; w < m.bitset_words; ++w) {
    const std::uint64_t word = m.InitialWord(w);
    total += static_cast<std::size_t>(std::popcount(word));
    for (std::size_t b = 0; b < 64; ++b) {
      const std::size_t bit = 64 * w + b;
      const bool expect_set = bit % m.bits_per_object == 0 &&
                              bit / m.bits_per_object < m.n_objects;
      if (((word >> b) & 1) != (expect_set ? 1u : 0u)) {
        ADD_FAILURE() << "word " << w << " bit " << b;
        return;
      }
    }
  }
  EXPECT_EQ(total, m.n_objects);
  EXPECT_EQ(m.InitialWord(m.bitset_words), 0u);
}

// The reference's appendix: its 26 classes (8; 16..192 by 16; powers of two
// 256 B..1 MiB) with its page sizes (256 KiB small pages, 64 KiB cutoff),
// checking the layout computation against the published table. Our classes
// differ (size_classes.h; ClassesHaveUsableLayouts below); ComputeMetadata
// is the same function either way.
TEST(SlabMetadataTest, AppendixTable) {
  for (const Row& r : kTable) {
    const SlabMetadata m = ComputeMetadata(r.size, r.page, 0.6, r.page);
    SCOPED_TRACE(r.size);
    const std::size_t align = r.size & (~r.size + 1);
    EXPECT_EQ(m.object_size, r.size);
    EXPECT_EQ(m.n_objects, r.n);
    EXPECT_EQ(m.bitset_words, r.words);
    EXPECT_EQ(m.granule(), r.granule);
    EXPECT_EQ(m.objects_offset, r.offset);
    EXPECT_EQ(m.cutoff_objects, r.cutoff);
    EXPECT_EQ(m.objects_offset % align, 0u);
    EXPECT_EQ(m.object_alignment, align);
    CheckInvariants(m, r.size);
  }
}

// Every class of ours on its own page size: a valid layout, objects aligned
// to ClassAlignment, at least 7 objects per slab, and no more than 1/8 of
// the page lost to the header, bit-set, alignment and the tail (the largest
// class loses its first 256 KiB slot to the header: exactly 1/8).
TEST(SlabMetadataTest, ClassesHaveUsableLayouts) {
  for (std::size_t i = 0; i < kNumSizeClasses; ++i) {
    const SizeClass c(static_cast<std::uint8_t>(i));
    const SlabMetadata m =
        ComputeMetadata(ClassSize(c), ClassPageSize(c), 0.3, ClassPageSize(c));
    SCOPED_TRACE(ClassSize(c));
    ASSERT_TRUE(m.valid());
    EXPECT_EQ(m.object_size, ClassSize(c));
    EXPECT_EQ(m.object_alignment, ClassAlignment(c));
    EXPECT_GE(m.n_objects, 7u);
    EXPECT_LE(ClassPageSize(c) - m.n_objects * m.object_size,
              ClassPageSize(c) / 8);
    CheckInvariants(m, ClassSize(c));
  }
}

TEST(SlabMetadataTest, FirstWordMask) {
  EXPECT_EQ(ComputeMetadata(8, 256 * K, 0.6, 256 * K).first_word_mask,
            ~std::uint64_t{0});
  // 48 bytes, 16-byte granule: a bit every 3 bits.
  const SlabMetadata m = ComputeMetadata(48, 256 * K, 0.6, 256 * K);
  EXPECT_EQ(m.first_word_mask, 0x9249249249249249u);
  // Word 1 starts at bit 64; the first object bit there is 66.
  EXPECT_EQ(m.InitialWord(1), m.first_word_mask << 2);
}

TEST(SlabMetadataTest, ArbitrarySizesInvariants) {
  for (std::size_t page : {4 * K, 64 * K, 256 * K, 2048 * K}) {
    for (std::size_t size = 1; size <= 2100; ++size) {
      const SlabMetadata m = ComputeMetadata(size, page, 0.6, page);
      CheckInvariants(m, size);
      if (HasFailure()) return;
    }
    for (std::size_t size = 2101; size < page / 2; size = size * 9 / 8 + 7) {
      const SlabMetadata m = ComputeMetadata(size, page, 0.6, page);
      CheckInvariants(m, size);
      if (HasFailure()) return;
    }
  }
}

// The reference's metadata_basic cases (which only checked for no panic),
// here with the full invariants where an object fits.
TEST(SlabMetadataTest, ReferenceMetadataBasic) {
  struct Case {
    std::size_t size, page, usable;
  };
  for (const Case& c : {Case{16, 4 * K, 1 * K}, Case{24, 4 * K, 1 * K},
                        Case{127, 4 * K, 1 * K}, Case{514, 4 * K, 1 * K},
                        Case{768, 4 * K, 1 * K}, Case{800, 2048 * K, 32 * K},
                        Case{513, 2048 * K, 1 * K}, Case{800, 4 * K, 32 * K},
                        Case{1025, 4 * K, 32 * K}}) {
    const SlabMetadata m = ComputeMetadata(c.size, c.page, 0.6, c.usable);
    CheckInvariants(m, c.size);
    EXPECT_EQ(m.usable_size, std::min(c.usable, c.page));
  }
  // (8, 4 KiB, usable 4): nothing fits. The reference claimed one object
  // anyway (overrunning the usable area); we report invalid metadata.
  const SlabMetadata tiny = ComputeMetadata(8, 4 * K, 0.6, 4);
  EXPECT_FALSE(tiny.valid());
  EXPECT_EQ(tiny.n_objects, 0u);
}

// The reference's search started at a 2-byte granule and gave size 1 all-zero
// metadata; ours handles it.
TEST(SlabMetadataTest, SizeOneIsValid) {
  const SlabMetadata m = ComputeMetadata(1, 4 * K, 0.6, 4 * K);
  CheckInvariants(m, 1);
  EXPECT_EQ(m.granule(), 1u);
}

TEST(SlabMetadataTest, InvalidInputs) {
  EXPECT_FALSE(ComputeMetadata(0, 4 * K, 0.6, 4 * K).valid());
  EXPECT_FALSE(ComputeMetadata(8, 3 * K, 0.6, 3 * K).valid());  // not pow2
  EXPECT_FALSE(ComputeMetadata(8, 4 * K, 0.0, 4 * K).valid());
  EXPECT_FALSE(ComputeMetadata(8, 4 * K, 1.5, 4 * K).valid());
  EXPECT_FALSE(ComputeMetadata(8 * K, 4 * K, 0.6, 4 * K).valid());
  EXPECT_FALSE(ComputeMetadata(4 * K, 4 * K, 0.6, 4 * K).valid());  // header
}

TEST(SlabMetadataTest, Cutoff) {
  EXPECT_EQ(ComputeMetadata(64, 256 * K, 1.0, 256 * K).cutoff_objects, 4087u);
  EXPECT_EQ(ComputeMetadata(512 * K, 2048 * K, 0.3, 2048 * K).cutoff_objects,
            1u);  // floor(0.9) -> max(1, 0)
}

}  // namespace
}  // namespace elfmalloc
