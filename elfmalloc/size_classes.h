// elfmalloc size classes: the table of object sizes elfmalloc serves from slabs,
// which page size each class's slabs live on, and an O(1) size -> class lookup.
//
// The classes follow the reference's TieredSizeClasses (allocators-rs
// elfmalloc, general.rs):
//   * one word class, 8 bytes;
//   * 12 classes at multiples of 16 up to 192;
//   * 13 powers of two from 256 bytes to 1 MiB (kMaxSlabObjectSize).
// Requests above 1 MiB are "large" and are mapped individually (a later layer).
// Classes up to 512 B live on 64 KiB "small" pages, 1 KiB .. 8 KiB on
// 256 KiB "mid" pages, 16 KiB and up on 2 MiB "medium" pages, so even the
// 1 MiB class gets a whole slab. (The reference used 256 KiB pages for
// everything below 64 KiB. A class in use touches about one to three of its
// slabs, so with 13 classes under 256 B a program moving blocks between
// threads kept 7-10 MiB of slabs resident where glibc needs 4; 64 KiB pages
// cut that by three quarters. Classes from 1 KiB keep 256 KiB pages: with
// 64 KiB ones a 2 KiB slab holds 31 objects, and two threads allocating and
// freeing 2 KiB blocks spent their time taking and returning pages, at
// less than half the speed.)
//
// The table is a literal constexpr array (tcmalloc size_classes.cc style) so
// that its contents are reviewable at a glance; static_asserts below check the
// properties the rest of elfmalloc relies on, and the lookup array is derived
// from the table at compile time, so the two can never disagree.
#ifndef ELFMALLOC_SIZE_CLASSES_H_
#define ELFMALLOC_SIZE_CLASSES_H_

#include <array>
#include <cstddef>
#include <cstdint>

#include "absl/numeric/bits.h"

namespace elfmalloc {

inline constexpr std::size_t kSmallPageSize = std::size_t{64} << 10;    // 64 KiB
inline constexpr std::size_t kMidPageSize = std::size_t{256} << 10;     // 256 KiB
inline constexpr std::size_t kMediumPageSize = std::size_t{2} << 20;    // 2 MiB
// Objects up to this size live on small pages.
inline constexpr std::size_t kSmallClassMax = 512;
// Objects smaller than this (and above kSmallClassMax) live on mid pages
// (mid page / 16); the rest on medium pages.
inline constexpr std::size_t kSmallClassCutoff = std::size_t{16} << 10;  // 16 KiB
// The largest object served from a slab; larger requests are large allocations.
inline constexpr std::size_t kMaxSlabObjectSize = std::size_t{1} << 20;  // 1 MiB

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
    /*  0 */ {        8,      kS},  // word class
    /*  1 */ {       16,      kS},  // multiples of 16 ...
    /*  2 */ {       32,      kS},
    /*  3 */ {       48,      kS},
    /*  4 */ {       64,      kS},
    /*  5 */ {       80,      kS},
    /*  6 */ {       96,      kS},
    /*  7 */ {      112,      kS},
    /*  8 */ {      128,      kS},
    /*  9 */ {      144,      kS},
    /* 10 */ {      160,      kS},
    /* 11 */ {      176,      kS},
    /* 12 */ {      192,      kS},  // ... up to 192
    /* 13 */ {      256,      kS},  // powers of two ...
    /* 14 */ {      512,      kS},
    /* 15 */ {     1024,      kD},  // first mid-page class (> 512 B)
    /* 16 */ {     2048,      kD},
    /* 17 */ {     4096,      kD},
    /* 18 */ {     8192,      kD},
    /* 19 */ {    16384,      kM},  // first medium-page class (>= 16 KiB)
    /* 20 */ {    32768,      kM},
    /* 21 */ {    65536,      kM},
    /* 22 */ {   131072,      kM},
    /* 23 */ {   262144,      kM},
    /* 24 */ {   524288,      kM},
    /* 25 */ {  1048576,      kM},  // ... up to 1 MiB
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

namespace internal {

// Sizes up to kLookupMaxSize are looked up in a byte array indexed by
// ceil(size / 8); above it every class is a power of two and the class follows
// from the bit width of size - 1.
inline constexpr std::size_t kLookupMaxSize = 1024;
inline constexpr std::size_t kLookupEntries = kLookupMaxSize / 8 + 1;
// The index of the 256-byte class, the first of the power-of-two run.
inline constexpr std::size_t kFirstPow2Class = 13;

constexpr std::array<std::uint8_t, kLookupEntries> MakeLookup() {
  std::array<std::uint8_t, kLookupEntries> lookup{};
  std::size_t c = 0;
  for (std::size_t i = 0; i < kLookupEntries; ++i) {
    const std::size_t size = i * 8;  // the largest size mapping to entry i
    while (kSizeClassTable[c].size < size) ++c;
    lookup[i] = static_cast<std::uint8_t>(c);
  }
  return lookup;
}
inline constexpr std::array<std::uint8_t, kLookupEntries> kLookup = MakeLookup();

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
    if (i >= kFirstPow2Class && !IsPow2(e.size)) return false;
    if (i >= 1 && e.size % 16 != 0) return false;  // 16-byte alignment from 16 up
  }
  return true;
}

}  // namespace internal

static_assert(kNumSizeClasses == 26);
static_assert(kNumSizeClasses <= 256, "SizeClass stores the index in a byte");
static_assert(internal::TableIsWellFormed());
static_assert(internal::kSizeClassTable[0].size == 8);
static_assert(internal::kSizeClassTable[12].size == 192);
static_assert(internal::kSizeClassTable[internal::kFirstPow2Class].size == 256);
static_assert(internal::kSizeClassTable[kNumSizeClasses - 1].size ==
              kMaxSlabObjectSize);
static_assert(internal::kSizeClassTable[15].size == internal::kLookupMaxSize);
// The bit-math branch: class of a power of two 2^k >= 2 KiB is k + 5.
static_assert(internal::kFirstPow2Class == 8 + 5);

// True iff a request of n bytes is served from a slab (n <= 1 MiB).
constexpr bool IsSlabSize(std::size_t n) noexcept {
  return n <= kMaxSlabObjectSize;
}

// The smallest class whose objects hold n bytes. Size 0 maps to the 8-byte
// class (malloc(0) returns a unique pointer). Precondition: IsSlabSize(n);
// the result for larger n is unspecified (but always a valid index).
constexpr SizeClass SizeToClass(std::size_t n) noexcept {
  if (n <= internal::kLookupMaxSize) {
    return SizeClass(internal::kLookup[(n + 7) >> 3]);
  }
  // n in (1 KiB, 1 MiB]: class of bit_ceil(n) = 2^k with k = bit_width(n - 1).
  std::size_t c = static_cast<std::size_t>(absl::bit_width(n - 1)) +
                  (internal::kFirstPow2Class - 8);
  if (c >= kNumSizeClasses) c = kNumSizeClasses - 1;  // precondition violated
  return SizeClass(static_cast<std::uint8_t>(c));
}

}  // namespace elfmalloc

#endif  // ELFMALLOC_SIZE_CLASSES_H_
