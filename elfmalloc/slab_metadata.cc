// ComputeMetadata: the granule search described in slab_metadata.h.
#include "elfmalloc/slab_metadata.h"

#include <cstddef>
#include <cstdint>

#include "absl/numeric/bits.h"

namespace elfmalloc {
namespace {

struct Candidate {
  std::size_t shift;
  std::size_t size;       // padded object size
  std::size_t bpo;        // bits per object
  std::size_t alignment;  // object alignment
  std::size_t n;
  std::size_t words;
  std::size_t offset;
};

std::size_t RoundUp(std::size_t x, std::size_t align) {
  return (x + align - 1) & ~(align - 1);
}

std::size_t WordsFor(std::size_t n, std::size_t bpo) {
  return (n * bpo + kBitsPerWord - 1) / kBitsPerWord;
}

std::size_t OffsetFor(std::size_t words, std::size_t alignment) {
  return RoundUp(kSlabHeaderSize + words * sizeof(std::uint64_t), alignment);
}

// The end offset of n objects of candidate c; monotone in n.
std::size_t EndFor(const Candidate& c, std::size_t n) {
  return OffsetFor(WordsFor(n, c.bpo), c.alignment) + n * c.size;
}

// Fills c.n (0 if not even one object fits), c.words and c.offset.
void Fit(Candidate& c, std::size_t limit) {
  // Binary search for the largest n with EndFor(n) <= limit.
  std::size_t lo = 0;  // EndFor(lo) <= limit (or lo == 0)
  std::size_t hi = limit / c.size + 1;  // EndFor(hi) > limit
  while (hi - lo > 1) {
    const std::size_t mid = lo + (hi - lo) / 2;
    if (EndFor(c, mid) <= limit) {
      lo = mid;
    } else {
      hi = mid;
    }
  }
  c.n = lo;
  c.words = WordsFor(lo, c.bpo);
  c.offset = OffsetFor(c.words, c.alignment);
}

}  // namespace

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

SlabMetadata ComputeMetadata(std::size_t object_size, std::size_t page_size,
                             double cutoff_factor,
                             std::size_t usable_size) noexcept {
  SlabMetadata m;
  if (object_size == 0 || page_size < kSlabHeaderSize + 8 ||
      (page_size & (page_size - 1)) != 0 || !(cutoff_factor > 0.0) ||
      cutoff_factor > 1.0 || object_size > page_size) {
    return m;
  }
  const std::size_t limit = usable_size < page_size ? usable_size : page_size;
  const std::size_t max_shift =
      static_cast<std::size_t>(absl::countr_zero(absl::bit_ceil(object_size)));

  bool have_best = false;
  Candidate best{};
  double best_score = 0;
  for (std::size_t shift = 0; shift <= max_shift; ++shift) {
    Candidate c{};
    c.shift = shift;
    c.size = RoundUp(object_size, std::size_t{1} << shift);
    c.bpo = c.size >> shift;
    if (c.bpo > kBitsPerWord) continue;
    c.alignment = c.size & (~c.size + 1);
    Fit(c, limit);
    if (c.n == 0) continue;
    const double score = static_cast<double>(c.n) *
                         static_cast<double>(object_size) /
                         static_cast<double>(limit);
    constexpr double kEpsilon = 1e-5;
    bool better;
    if (!have_best || score > best_score + kEpsilon) {
      better = true;
    } else if (score < best_score - kEpsilon) {
      better = false;
    } else {
      better = c.words < best.words;  // tie: fewer words; else keep smaller shift
    }
    if (better) {
      best = c;
      best_score = score;
      have_best = true;
    }
  }
  if (!have_best) return m;

  m.object_size = best.size;
  m.page_size = page_size;
  m.usable_size = limit;
  m.n_objects = best.n;
  std::size_t cutoff =
      static_cast<std::size_t>(static_cast<double>(best.n) * cutoff_factor);
  if (cutoff < 1) cutoff = 1;
  if (cutoff > best.n) cutoff = best.n;
  m.cutoff_objects = cutoff;
  m.bitset_words = best.words;
  m.granule_shift = best.shift;
  m.bits_per_object = best.bpo;
  m.objects_offset = best.offset;
  m.object_alignment = best.alignment;
  std::uint64_t mask = 0;
  for (std::size_t b = 0; b < kBitsPerWord; b += best.bpo) {
    mask |= std::uint64_t{1} << b;
  }
  m.first_word_mask = mask;
  return m;
}

}  // namespace elfmalloc
