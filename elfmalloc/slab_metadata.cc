// SlabMetadata::InitialWord (ComputeMetadata is constexpr, in the header).
#include "elfmalloc/slab_metadata.h"

#include <cstddef>
#include <cstdint>

namespace elfmalloc {

std::uint64_t SlabMetadata::InitialWord(std::size_t w) const noexcept {
  if (w >= bitset_words || n_objects == 0) return 0;
  const std::size_t word_start = w * kBitsPerWord;
  // The first object bit at or after word_start.
  const std::size_t first =
      (word_start + bits_per_object - 1) / bits_per_object * bits_per_object;
  const std::size_t last = (n_objects - 1) * bits_per_object;  // last object bit
  if (first >= word_start + kBitsPerWord || first > last) return 0;
  std::uint64_t mask = first_word_mask << (first - word_start);
  if (last < word_start + kBitsPerWord - 1) {
    // Keep bits 0 .. last - word_start.
    mask &= ~std::uint64_t{0} >> (kBitsPerWord - 1 - (last - word_start));
  }
  return mask;
}

}  // namespace elfmalloc
