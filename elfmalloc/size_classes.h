// elfmalloc size classes: the table of object sizes elfmalloc serves from slabs,
// which page size each class's slabs live on, and an O(1) size -> class lookup.
//
// The classes:
//   * 16 classes at multiples of 16 up to 256 (waste at most 15 bytes).
//     The smallest is 16 bytes, so every block is 16-byte aligned (what
//     glibc guarantees) and has a second word, where the general allocator
//     keeps a freed block's mark (general_allocator.cc, kMarkOffset). An
//     8-byte class saved 8 bytes per block of 1-8 bytes and cost 3
//     instructions per malloc (the mark's place depended on the class);
//     Debian's python3, perl and sqlite3 on the harness's inputs show no
//     peak RSS difference without it;
//   * 4 classes per doubling from 256 bytes to 256 KiB (kMaxSlabObjectSize):
//     256, 320, 384, 448, 512, 640, ... 229376, 262144. A request lands in a
//     class at most 25% above it (12.5% on average for uniform sizes), the
//     spacing of jemalloc, mimalloc and tcmalloc. Every power of two from 16
//     up is a class, which aligned allocation relies on;
//   * and a "buffer plus header" class just above each power of two from
//     1 KiB to 8 KiB: 1056, 2304, 4608, 9216 (a 1 KiB buffer plus up to
//     32 bytes, the others plus up to an eighth). Programs allocate a
//     power-of-two buffer with a small header in front far more often than
//     any other size just above a power of two (sqlite3's allocator adds 8
//     bytes to each block: at its peak it holds 35k blocks of 1032 bytes and
//     9k of 4368; in the 1280- and 5120-byte classes they wasted 10 MiB, and
//     its peak RSS was 98 MiB to glibc's 79). With 1152, 2304, 4608 and
//     9216 it was 90 MiB; random-size workloads pay for the extra partly
//     used slabs with 1-4% more (mstress 8 B-2 KiB 31.9 -> 33.1 MiB,
//     shbench 64 B-4 KiB 7.9 -> 8.0). The first of them is 1056 rather
//     than 1152 because the 1 KiB buffers' headers are small (1032 bytes
//     in sqlite3, 1035-1048 in git and g++): sqlite3's peak RSS is 3.7%
//     lower (the harness's database script: 87.4 -> 84.2 MiB, glibc 77.6)
//     and the random-size rows do not move (requests of 1057-1152 bytes
//     take 1280, at most 17% waste). 1056 = 33 x 32 is the smallest size
//     above 1032 that a slab lays out exactly (1040 = 65 x 16 needs more
//     than 64 bit-set bits per object, slab_metadata.h).
// The reference's TieredSizeClasses (allocators-rs elfmalloc, general.rs;
// https://github.com/ezrosent/allocators-rs) used powers of two above 192 B,
// so a 257-byte request took 512 bytes and mixed sizes above 256 B wasted
// about a quarter of every block (1.85x the requested bytes in RSS on
// 257-300 B and 1025-1200 B mixes, where peers needed at most 1.17x).
// Finer classes cost memory where sizes are mixed: 8 per doubling from
// 1 KiB to 8 KiB (1152, 1408, ... 7680 added) cut sqlite3's peak RSS by 9%
// (its 1032- and ~4360-byte blocks: 98 -> 90 MiB; glibc 79) but raised
// random-size workloads' by 9-25% (xthread_churn 16 B-16 KiB 27 -> 34 MiB,
// mstress 31 -> 34, shbench 64 B-4 KiB 7.9 -> 8.6), since every class in
// use keeps partly used slabs of its own.
// Requests above 256 KiB are "large" blocks (large_alloc.h), mapped and
// cached individually: above 256 KiB a 2 MiB slab holds at most 6 objects,
// and a thread's magazine of such a class would cache megabytes.
//
// Classes up to 512 B live on 64 KiB "small" pages, 640 B .. 14 KiB on
// 256 KiB "mid" pages, 16 KiB and up on 2 MiB "medium" pages (at least 7
// objects per slab: 2 MiB holds 7 of 256 KiB after its header's aligned
// slot). A class in use touches about one to three of its slabs, so the
// slab size sets the fixed cost of every class in use. Mid pages stay at
// 256 KiB: with 128 KiB ones, mixed sizes from 8 B to 2 KiB or 16 KiB
// handed between two threads peak 6-7% lower (mstress 28.4 -> 26.5 MiB,
// xthread_churn 23.5 -> 22.2) but shbench 64 B-4 KiB with two threads 5%
// higher (7.8 -> 8.1 MiB), and two threads allocating and freeing 2 KiB
// blocks take and return pages so often that they run 10% slower
// (threadtest 2 KiB: 75 -> 68 M ops/s); on 64 KiB pages (31 objects of
// 2 KiB) they ran at less than half the speed.
//
// The table is a literal constexpr array (tcmalloc size_classes.cc style) so
// that its contents are reviewable at a glance; static_asserts below check the
// properties the rest of elfmalloc relies on, and the lookup is derived from
// the table at compile time and checked against it at every class boundary,
// so the two can never disagree.
#ifndef ELFMALLOC_SIZE_CLASSES_H_
#define ELFMALLOC_SIZE_CLASSES_H_

#include <array>
#include <cstddef>
#include <cstdint>

#include "absl/numeric/bits.h"

namespace elfmalloc {

inline constexpr std::size_t kSmallPageSize = std::size_t{64} << 10;    // 64 KiB
inline constexpr std::size_t kMidPageSize = std::size_t{256} << 10;    // 256 KiB
inline constexpr std::size_t kMediumPageSize = std::size_t{2} << 20;    // 2 MiB
// Objects up to this size live on small pages.
inline constexpr std::size_t kSmallClassMax = 512;
// Objects smaller than this (and above kSmallClassMax) live on mid pages
// (mid page / 16); the rest on medium pages.
inline constexpr std::size_t kSmallClassCutoff = std::size_t{16} << 10;  // 16 KiB
// The largest object served from a slab; larger requests are large allocations.
inline constexpr std::size_t kMaxSlabObjectSize = std::size_t{256} << 10;  // 256 KiB

// A strong type for a size-class index, so that an index cannot be confused
// with a size or a count. Valid indices are 0 .. kNumSizeClasses - 1.
class SizeClass {
 public:
  constexpr SizeClass() noexcept = default;
  constexpr explicit SizeClass(std::uint8_t index) noexcept : index_(index) {}
  constexpr std::size_t index() const noexcept { return index_; }
  friend constexpr bool operator==(SizeClass, SizeClass) noexcept = default;
  friend constexpr auto operator<=>(SizeClass, SizeClass) noexcept = default;

 private:
  std::uint8_t index_ = 0;
};

namespace internal {

struct SizeClassInfo {
  std::size_t size;       // object size in bytes
  std::size_t page_size;  // size of the slab pages this class lives on
};

inline constexpr std::size_t kS = kSmallPageSize;
inline constexpr std::size_t kD = kMidPageSize;
inline constexpr std::size_t kM = kMediumPageSize;

// clang-format off
inline constexpr SizeClassInfo kSizeClassTable[] = {
    // index   object bytes   page   note
    /*  0 */ {       16,      kS},  // multiples of 16 ...
    /*  1 */ {       32,      kS},
    /*  2 */ {       48,      kS},
    /*  3 */ {       64,      kS},
    /*  4 */ {       80,      kS},
    /*  5 */ {       96,      kS},
    /*  6 */ {      112,      kS},
    /*  7 */ {      128,      kS},
    /*  8 */ {      144,      kS},
    /*  9 */ {      160,      kS},
    /* 10 */ {      176,      kS},
    /* 11 */ {      192,      kS},
    /* 12 */ {      208,      kS},
    /* 13 */ {      224,      kS},
    /* 14 */ {      240,      kS},
    /* 15 */ {      256,      kS},  // ... up to 256; then 4 per doubling
    /* 16 */ {      320,      kS},
    /* 17 */ {      384,      kS},
    /* 18 */ {      448,      kS},
    /* 19 */ {      512,      kS},
    /* 20 */ {      640,      kD},  // first mid-page class (> 512 B)
    /* 21 */ {      768,      kD},
    /* 22 */ {      896,      kD},
    /* 23 */ {     1024,      kD},
    /* 24 */ {     1056,      kD},  // a 1 KiB buffer + up to 32 B of header
    /* 25 */ {     1280,      kD},
    /* 26 */ {     1536,      kD},
    /* 27 */ {     1792,      kD},
    /* 28 */ {     2048,      kD},
    /* 29 */ {     2304,      kD},  // a 2 KiB buffer + up to 256 B of header
    /* 30 */ {     2560,      kD},
    /* 31 */ {     3072,      kD},
    /* 32 */ {     3584,      kD},
    /* 33 */ {     4096,      kD},
    /* 34 */ {     4608,      kD},  // a 4 KiB page + up to 512 B of header
    /* 35 */ {     5120,      kD},
    /* 36 */ {     6144,      kD},
    /* 37 */ {     7168,      kD},
    /* 38 */ {     8192,      kD},
    /* 39 */ {     9216,      kD},  // an 8 KiB page + up to 1 KiB of header
    /* 40 */ {    10240,      kD},
    /* 41 */ {    12288,      kD},
    /* 42 */ {    14336,      kD},
    /* 43 */ {    16384,      kM},  // first medium-page class (>= 16 KiB)
    /* 44 */ {    20480,      kM},
    /* 45 */ {    24576,      kM},
    /* 46 */ {    28672,      kM},
    /* 47 */ {    32768,      kM},
    /* 48 */ {    40960,      kM},
    /* 49 */ {    49152,      kM},
    /* 50 */ {    57344,      kM},
    /* 51 */ {    65536,      kM},
    /* 52 */ {    81920,      kM},
    /* 53 */ {    98304,      kM},
    /* 54 */ {   114688,      kM},
    /* 55 */ {   131072,      kM},
    /* 56 */ {   163840,      kM},
    /* 57 */ {   196608,      kM},
    /* 58 */ {   229376,      kM},
    /* 59 */ {   262144,      kM},  // kMaxSlabObjectSize
};
// clang-format on

}  // namespace internal

inline constexpr std::size_t kNumSizeClasses =
    sizeof(internal::kSizeClassTable) / sizeof(internal::kSizeClassTable[0]);

// The object size of class c.
constexpr std::size_t ClassSize(SizeClass c) noexcept {
  return internal::kSizeClassTable[c.index()].size;
}
// The slab page size of class c (kSmallPageSize, kMidPageSize or
// kMediumPageSize).
constexpr std::size_t ClassPageSize(SizeClass c) noexcept {
  return internal::kSizeClassTable[c.index()].page_size;
}
// The alignment every object of class c has: the largest power of two that
// divides its size (so a power-of-two class is aligned to its size, and every
// class from 16 up is at least 16-byte aligned). Slab layouts guarantee it
// (see slab_metadata.h).
constexpr std::size_t ClassAlignment(SizeClass c) noexcept {
  const std::size_t s = ClassSize(c);
  return s & (~s + 1);
}

// The mask free's alignment test applies to a pointer whose slab tag
// (class index + 1, slab.h "Tags") is `tag`: ClassAlignment - 1 for the
// classes below the 2 MiB pages (whose frees take the fast path), 7 for
// tag 0 and the classes of 2 MiB pages (those frees check their pointer
// elsewhere), and 0 for the tags that name no class (no slab writes one,
// so only a corrupted tag table has them: their frees fail the empty
// magazine state and the slow path reports them, and a thread heap's
// fast-path array need not write its entries for them, thread_cache.h).
// A pointer with any of these bits set is no object start of the class.
constexpr std::uint64_t TagAlignMask(std::size_t tag) noexcept {
  if (tag > kNumSizeClasses) return 0;
  if (tag >= 1) {
    const SizeClass c(static_cast<std::uint8_t>(tag - 1));
    if (ClassPageSize(c) != kMediumPageSize) return ClassAlignment(c) - 1;
  }
  return 7;
}

namespace internal {

// Sizes up to kLookupMaxSize are looked up in a byte array indexed by
// ceil(size / 8), sizes up to kMidLookupMaxSize in one indexed by
// ceil(size / 128) (every class in between is a multiple of 128; the
// 1056-byte class is not, so the first table reaches 1152, the class after
// it being 1280). Above it
// the classes are 4 per doubling: for s = n - 1 with k = floor(log2(s))
// (so 2^k < n <= 2^(k+1)), the two bits of s below its leading bit say
// which quarter of (2^k, 2^(k+1)] n falls in, and the class is
// kMidLookupMaxClass + 4 * (k - 14) + quarter + 1. No loop: a load, or a
// bit_width and two shifts.
inline constexpr std::size_t kLookupMaxSize = 1152;
inline constexpr std::size_t kLookupEntries = kLookupMaxSize / 8 + 1;
inline constexpr std::size_t kMidLookupMaxSize = std::size_t{16} << 10;
inline constexpr std::size_t kMidLookupEntries = kMidLookupMaxSize / 128 + 1;
// The index of the 16 KiB class, after which the classes are exactly 4 per
// doubling up to kMaxSlabObjectSize.
inline constexpr std::size_t kMidLookupMaxClass = 43;
// The index of the 256-byte class, where 4 per doubling starts.
inline constexpr std::size_t kFirstQuarterClass = 15;
// Classes besides the 4 per doubling: a power-of-two buffer plus a header
// (see the top of this file).
inline constexpr std::size_t kPagePlusHeaderClasses[] = {1056, 2304, 4608, 9216};

// A byte table: entry i is the class of the sizes in
// ((i - 1) * granule, i * granule].
template <std::size_t kEntries, std::size_t kGranule>
constexpr std::array<std::uint8_t, kEntries> MakeLookup() {
  std::array<std::uint8_t, kEntries> lookup{};
  std::size_t c = 0;
  for (std::size_t i = 0; i < kEntries; ++i) {
    const std::size_t size = i * kGranule;  // the largest size mapping to i
    while (kSizeClassTable[c].size < size) ++c;
    lookup[i] = static_cast<std::uint8_t>(c);
  }
  return lookup;
}
inline constexpr std::array<std::uint8_t, kLookupEntries> kLookup =
    MakeLookup<kLookupEntries, 8>();
inline constexpr std::array<std::uint8_t, kMidLookupEntries> kMidLookup =
    MakeLookup<kMidLookupEntries, 128>();

constexpr bool IsPagePlusHeaderClass(std::size_t size) {
  for (std::size_t s : kPagePlusHeaderClasses) {
    if (s == size) return true;
  }
  return false;
}

constexpr bool IsPow2(std::size_t x) { return x != 0 && (x & (x - 1)) == 0; }

constexpr bool TableIsWellFormed() {
  for (std::size_t i = 0; i < kNumSizeClasses; ++i) {
    const SizeClassInfo& e = kSizeClassTable[i];
    if (e.size % 8 != 0) return false;
    if (i > 0 && e.size <= kSizeClassTable[i - 1].size) return false;
    if (e.page_size != (e.size <= kSmallClassMax      ? kS
                        : e.size < kSmallClassCutoff ? kD
                                                     : kM)) {
      return false;
    }
    if (e.size % 16 != 0) return false;  // every class 16-byte aligned
    if (i <= kFirstQuarterClass && e.size != 16 * (i + 1)) return false;
    if (e.size > kLookupMaxSize && e.size <= kMidLookupMaxSize &&
        e.size % 128 != 0) {
      return false;
    }
  }
  // From 256 B: 4 per doubling, 2^k * {5, 6, 7, 8} / 4, besides the
  // page-plus-header classes (each a page and at most an eighth of it).
  std::size_t q = 0;  // the index among the 4-per-doubling classes
  for (std::size_t i = kFirstQuarterClass + 1; i < kNumSizeClasses; ++i) {
    const std::size_t size = kSizeClassTable[i].size;
    if (IsPagePlusHeaderClass(size)) {
      const std::size_t page = kSizeClassTable[i - 1].size;
      if (!IsPow2(page) || size <= page || size > page + page / 8) {
        return false;
      }
      continue;
    }
    const std::size_t base = std::size_t{256} << (q / 4);
    if (size != base / 4 * (5 + q % 4)) return false;
    ++q;
  }
  return true;
}

}  // namespace internal

static_assert(kNumSizeClasses == 60);
static_assert(kNumSizeClasses < 255, "a class + 1 is a slab tag byte");
static_assert(internal::TableIsWellFormed());
static_assert(internal::kSizeClassTable[0].size == 16);
static_assert(internal::kSizeClassTable[internal::kFirstQuarterClass].size ==
              256);
static_assert(internal::kSizeClassTable[internal::kMidLookupMaxClass].size ==
              internal::kMidLookupMaxSize);
static_assert(internal::kSizeClassTable[kNumSizeClasses - 1].size ==
              kMaxSlabObjectSize);
static_assert(internal::IsPow2(kMaxSlabObjectSize));

// True iff a request of n bytes is served from a slab (n <= 256 KiB).
constexpr bool IsSlabSize(std::size_t n) noexcept {
  return n <= kMaxSlabObjectSize;
}

// The class of a size up to kLookupMaxSize (1152): one load. SizeToClass's
// first branch, and the allocation fast path's test for most requests.
constexpr SizeClass SmallSizeToClass(std::size_t n) noexcept {
  return SizeClass(internal::kLookup[(n + 7) >> 3]);
}

// The smallest class whose objects hold n bytes. Size 0 maps to the 16-byte
// class (malloc(0) returns a unique pointer). Precondition: IsSlabSize(n);
// the result for larger n is unspecified (but always a valid index).
constexpr SizeClass SizeToClass(std::size_t n) noexcept {
  if (n <= internal::kLookupMaxSize) return SmallSizeToClass(n);
  if (n <= internal::kMidLookupMaxSize) {
    return SizeClass(internal::kMidLookup[(n + 127) >> 7]);
  }
  const std::size_t s = n - 1;
  const std::size_t k = static_cast<std::size_t>(absl::bit_width(s)) - 1;
  const std::size_t quarter = (s >> (k - 2)) & 3;
  std::size_t c = internal::kMidLookupMaxClass + 4 * (k - 14) + quarter + 1;
  if (c >= kNumSizeClasses) c = kNumSizeClasses - 1;  // precondition violated
  return SizeClass(static_cast<std::uint8_t>(c));
}

namespace internal {
// The lookup agrees with the table at every class boundary: the class's own
// size maps to it and one byte more maps to the next. With the lookup
// monotonic (both branches are), that makes it the smallest fit for every
// size; size_classes_test checks every size exhaustively as well.
constexpr bool LookupMatchesTable() {
  for (std::size_t i = 0; i < kNumSizeClasses; ++i) {
    const std::size_t s = kSizeClassTable[i].size;
    if (SizeToClass(s).index() != i) return false;
    if (i + 1 < kNumSizeClasses && SizeToClass(s + 1).index() != i + 1) {
      return false;
    }
  }
  return SizeToClass(0).index() == 0;
}
static_assert(LookupMatchesTable());
}  // namespace internal

}  // namespace elfmalloc

#endif  // ELFMALLOC_SIZE_CLASSES_H_
