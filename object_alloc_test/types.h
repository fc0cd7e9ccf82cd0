// object_alloc_test types: the object sizes and alignments every allocator is
// tested at, and the plain byte carriers for sizes too small for a tester.
//
// The 47 sizes are the reference design's: every power of two from 1 to 8192,
// the midpoints between them (x + x/2) and a prime between neighbouring even
// sizes, so that allocators see sizes that divide a page evenly, sizes that
// do not, and sizes that share no factor with anything.
//
// Valid alignments for a size (ForEachAlign): every power of two a with
// min_align <= a <= min(size, max_align) and size % a == 0 — the alignments
// at which objects of that size can be packed back to back.
#ifndef OBJECT_ALLOC_TEST_TYPES_H_
#define OBJECT_ALLOC_TEST_TYPES_H_

#include <array>
#include <cstddef>
#include <vector>

namespace object_alloc_test {

inline constexpr std::array<std::size_t, 47> kSizes = {
    1,    2,    3,    4,    5,    6,    7,    8,    11,   12,   13,   16,
    19,   24,   29,   32,   41,   48,   59,   64,   73,   96,   113,  128,
    157,  192,  229,  256,  317,  384,  457,  512,  617,  768,  1024, 1277,
    1536, 1777, 2048, 2557, 3072, 3539, 4096, 5119, 6144, 7151, 8192};

inline constexpr std::size_t kMaxSize = 8192;
// The largest alignment any size in kSizes can have (8192 = 2^13).
inline constexpr std::size_t kMaxAlignLog2 = 13;
// The suites' default upper bound on alignment: a page, as in the reference.
inline constexpr std::size_t kDefaultMaxAlign = 4096;

constexpr bool IsValidAlign(std::size_t size, std::size_t align,
                            std::size_t max_align) {
  return align > 0 && (align & (align - 1)) == 0 && align <= size &&
         align <= max_align && size % align == 0;
}

// Calls f(a) for each valid alignment a >= min_align of `size`, ascending.
template <class F>
void ForEachAlign(std::size_t size, std::size_t min_align,
                  std::size_t max_align, F&& f) {
  for (std::size_t a = 1; a <= size && a <= max_align; a *= 2) {
    if (a >= min_align && size % a == 0) f(a);
  }
}

inline std::vector<std::size_t> ValidAligns(std::size_t size,
                                            std::size_t min_align,
                                            std::size_t max_align) {
  std::vector<std::size_t> out;
  ForEachAlign(size, min_align, max_align,
               [&](std::size_t a) { out.push_back(a); });
  return out;
}

// N plain bytes at alignment A, value-initialised to zeros (the reference's
// ByteN, whose Default is all zeros). The typed suites use it for sizes below
// kMinTesterSize, where a CorruptionTester does not fit; that a freshly
// handed-out object reads as all zeros is then the test that it was
// constructed.
template <std::size_t N, std::size_t A = 1>
struct alignas(A) Bytes {
  static_assert(N > 0);
  static_assert(A > 0 && (A & (A - 1)) == 0 && N % A == 0);
  unsigned char bytes[N] = {};
};

}  // namespace object_alloc_test

#endif  // OBJECT_ALLOC_TEST_TYPES_H_
