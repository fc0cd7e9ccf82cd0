// Slab ("slag") layout computation: how many objects of a given size fit on a
// slab page, how the availability bit-set is laid out, and where objects start.
//
// A slab occupies one page (64 KiB or 2 MiB in elfmalloc) laid out as
//
//   [ header: kSlabHeaderSize = 64 bytes ][ bit-set words ][ padding ][ objects ]
//
// The bit-set marks available objects. To keep it small, one bit stands for a
// *granule* of 2^granule_shift bytes; an object spans bits_per_object =
// object_size >> granule_shift bits and only its first bit is ever used, so
// object i is bit i * bits_per_object (word = bit / 64, bit % 64). The granule
// is chosen per size by ComputeMetadata (below), following the reference's
// compute_metadata (allocators-rs elfmalloc slag.rs):
//
//   for every granule 2^s, s = 0 .. log2(bit_ceil(object_size)):
//     pad the object to a multiple of the granule; skip granules giving more
//     than 64 bits per object;
//     n = the largest count with header + bit-set + padding + n * size <= usable
//     score = n * object_size / usable;
//   pick the best score; ties (within 1e-5) go to fewer bit-set words, then to
//   the smaller granule.
//
// Objects start at a multiple of the largest power of two dividing the (padded)
// object size, measured from the page-aligned slab, so power-of-two objects are
// aligned to their size and every multiple-of-16 class to 16 or more.
//
// Differences from the reference, each covered by slab_metadata_test:
//  * The granule search starts at 1 byte (the reference started at 2), so odd
//    sizes and size 1 get valid metadata (the reference returned all zeroes
//    for size 1). No size class is affected (ties go to fewer words).
//  * Granules giving more than 64 bits per object are skipped (the reference
//    allowed up to 128 through its "slush" test); such a granule always needs
//    more words than a coarser one with the same count, so no class changes.
//  * If not even one object fits in min(usable_size, page_size), the result
//    is invalid (n_objects == 0) instead of claiming one object that overruns
//    the usable area.
//  * Objects are aligned to the largest power of two dividing their size, not
//    only power-of-two sizes (a no-op for every class; stronger in general).
#ifndef ELFMALLOC_SLAB_METADATA_H_
#define ELFMALLOC_SLAB_METADATA_H_

#include <bit>
#include <cstddef>
#include <cstdint>

namespace elfmalloc {

// Bytes reserved for the slab header at the start of every slab page; the
// bit-set starts right after it.
inline constexpr std::size_t kSlabHeaderSize = 64;
// Bits per bit-set word.
inline constexpr std::size_t kBitsPerWord = 64;

// The layout of one class's slabs. Shared read-only by every slab of the class.
struct SlabMetadata {
  std::size_t object_size = 0;       // padded to a multiple of the granule
  std::size_t page_size = 0;         // slab size (and alignment)
  std::size_t usable_size = 0;       // objects end at or before this offset
  std::size_t n_objects = 0;         // 0: invalid input or nothing fits
  std::size_t cutoff_objects = 0;    // max(1, floor(n * cutoff_factor))
  std::size_t bitset_words = 0;      // ceil(n * bits_per_object / 64)
  std::size_t granule_shift = 0;     // one bit per 2^granule_shift bytes
  std::size_t bits_per_object = 0;   // object_size >> granule_shift, 1..64
  std::size_t objects_offset = 0;    // offset of object 0 from the slab start
  std::size_t object_alignment = 0;  // every object is aligned to this
  // Bit-set word 0's initial pattern: a bit every bits_per_object bits from
  // bit 0 (before masking off objects beyond n). Word w's initial pattern is
  // this shifted left by the offset of the first object bit in w.
  std::uint64_t first_word_mask = 0;

  constexpr bool valid() const noexcept { return n_objects != 0; }
  constexpr std::size_t granule() const noexcept {
    return std::size_t{1} << granule_shift;
  }
  // Offset of the bit-set from the slab start (always kSlabHeaderSize).
  static constexpr std::size_t bitset_offset() noexcept {
    return kSlabHeaderSize;
  }
  // The initial (all objects available) value of bit-set word w.
  std::uint64_t InitialWord(std::size_t w) const noexcept;
};

namespace internal {
// ComputeMetadata's search (below).
struct SlabCandidate {
  std::size_t shift;
  std::size_t size;       // padded object size
  std::size_t bpo;        // bits per object
  std::size_t alignment;  // object alignment
  std::size_t guard;      // bytes kept before object 0 and after the last
  std::size_t n;
  std::size_t words;
  std::size_t offset;
};

constexpr std::size_t RoundUp(std::size_t x, std::size_t align) {
  return (x + align - 1) & ~(align - 1);
}

constexpr std::size_t WordsFor(std::size_t n, std::size_t bpo) {
  return (n * bpo + kBitsPerWord - 1) / kBitsPerWord;
}

constexpr std::size_t OffsetFor(std::size_t words, std::size_t alignment,
                                std::size_t guard) {
  return RoundUp(kSlabHeaderSize + words * sizeof(std::uint64_t) + guard,
                 alignment);
}

// The end offset of n objects of candidate c; monotone in n.
constexpr std::size_t EndFor(const SlabCandidate& c, std::size_t n) {
  return OffsetFor(WordsFor(n, c.bpo), c.alignment, c.guard) + n * c.size +
         c.guard;
}

// Fills c.n (0 if not even one object fits), c.words and c.offset.
constexpr void Fit(SlabCandidate& c, std::size_t limit) {
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
  c.offset = OffsetFor(c.words, c.alignment, c.guard);
}
}  // namespace internal

// Computes the layout of slabs of page_size bytes holding objects of at least
// object_size bytes, using only the first min(usable_size, page_size) bytes.
// cutoff_factor in (0, 1] sets cutoff_objects, the number of available objects
// at which a floating slab is handed out again. Returns an invalid metadata
// (n_objects == 0) if object_size is 0, page_size is not a power of two at
// least kSlabHeaderSize + 8, cutoff_factor is outside (0, 1], or no object fits.
// guard_bytes (at most a few words) are kept free between the bit-set and
// object 0 and again after the last object, never part of the bit-set or
// an object: the hardened general allocator keeps a zero word in each,
// so that the first and the last object have a neighbouring word to
// check, like every other object.
// Constexpr, so that a layout can also be computed at compile time (the
// general allocator's table for its checked free path).
constexpr SlabMetadata ComputeMetadata(std::size_t object_size,
                                       std::size_t page_size,
                                       double cutoff_factor,
                                       std::size_t usable_size,
                                       std::size_t guard_bytes = 0) noexcept {
  SlabMetadata m;
  if (object_size == 0 || page_size < kSlabHeaderSize + 8 ||
      (page_size & (page_size - 1)) != 0 || !(cutoff_factor > 0.0) ||
      cutoff_factor > 1.0 || object_size > page_size) {
    return m;
  }
  const std::size_t limit = usable_size < page_size ? usable_size : page_size;
  const std::size_t max_shift =
      static_cast<std::size_t>(std::countr_zero(std::bit_ceil(object_size)));

  bool have_best = false;
  internal::SlabCandidate best{};
  double best_score = 0;
  for (std::size_t shift = 0; shift <= max_shift; ++shift) {
    internal::SlabCandidate c{};
    c.shift = shift;
    c.guard = guard_bytes;
    c.size = internal::RoundUp(object_size, std::size_t{1} << shift);
    c.bpo = c.size >> shift;
    if (c.bpo > kBitsPerWord) continue;
    c.alignment = c.size & (~c.size + 1);
    internal::Fit(c, limit);
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

#endif  // ELFMALLOC_SLAB_METADATA_H_
