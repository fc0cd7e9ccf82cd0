// The global general allocator: lazily built shared heap, routing by size and
// by stamp, realloc policy, fallback path. See general_allocator.h.
#include "elfmalloc/general_allocator.h"

#include <pthread.h>
#include <sys/auxv.h>
#include <sys/resource.h>

#include <array>
#include <bit>
#include <atomic>
#include <cerrno>
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <limits>
#include <new>
#include <utility>

#include "absl/base/attributes.h"
#include "absl/base/internal/raw_logging.h"
#include "absl/base/optimization.h"
#include "absl/numeric/bits.h"
#include "bsalloc/bsalloc.h"
#include "elfmalloc/alloc_type.h"
#include "elfmalloc/large_alloc.h"
#include "elfmalloc/magazine_cache.h"
#include "elfmalloc/options.h"
#include "elfmalloc/page_alloc.h"
#include "elfmalloc/platform.h"
#include "elfmalloc/slab.h"
#include "elfmalloc/slab_allocator.h"
#include "elfmalloc/spin_lock.h"
#include "elfmalloc/thread_cache.h"
#include "mmap_alloc/mmap_alloc.h"

// The bounds of the section elfmalloc_classify (see ELFMALLOC_CLASSIFIES),
// provided by the linker.
extern "C" {
extern const char __start_elfmalloc_classify[]
    __attribute__((visibility("hidden")));
extern const char __stop_elfmalloc_classify[]
    __attribute__((visibility("hidden")));
}

namespace elfmalloc {
namespace {


// The reference's general allocator parameters (general.rs): cutoff 0.6,
// whole page usable. We use cutoff 0.3: a floating slab is listed for reuse
// once 30% of it is free, so threads refill from partly used slabs before
// touching fresh pages (with 0.6 a slab whose objects sat in another
// thread's magazine or in flight stayed unlisted, and each class in a
// producer-consumer program kept three or four slabs resident; a claim
// still yields at least 30% of a slab, 19 KiB of 64 KiB). Its fixed 16 available queues per class cost a bagpipe
// segment each (26 x 16 x 4 KiB, ~1.7 MiB resident from the first malloc,
// the biggest part of elfc's fixed overhead over glibc); we use 2 per CPU,
// between 2 and 16 (its own TODO: "should depend on num_cpus"). Its eager uncommit of 2 MiB slabs
// and its 1 MiB dirty budget are replaced by the page allocators' decay rule
// (page_alloc.h): eager uncommit made every slab turnover of the 256 KiB..
// 1 MiB classes an madvise plus hundreds of page faults (ring and producer-
// consumer workloads ran at a quarter of glibc's speed), and 1 MiB held not
// even one 2 MiB page.
constexpr double kCutoff = 0.3;

// Growth headroom for realloc (see Reallocate). Programs grow buffers in
// small steps: CPython grows bytearrays and lists by an eighth, so with
// four classes per doubling every other step crossed into the next class
// and copied the block (Debian's python3 running the harness's script
// executed 16% more instructions under elfc than under glibc, all of them
// in memcpy called by realloc; glibc grows its chunks in place). A grown
// block of 4 KiB or more now takes the class of half again its request:
// that script then runs 8% fewer instructions with either of Python's
// allocators, realloc_growth runs 12-23% faster with 8% less peak RSS, and
// perl's peak RSS is unchanged (its strings grow below 4 KiB, where a copy
// is cheap and headroom would cost memory: 3.7% more with no threshold).
// tcmalloc grows a reallocated block by at least a quarter for the same
// reason.
constexpr std::size_t kReallocHeadroomMin = 4096;

// From this size up, realloc grows a slab block into a large block placed
// to grow in place (LargeKind::kGrowth), and a large block that realloc
// resizes to this size or more stays large (LargeRealloc: in place, or
// mremap). Up to the slab limit a buffer grown an eighth at a time moved
// across the 2 MiB-page classes every third step or so, and once more
// past the limit: CPython running the harness's script copied 328 MB in
// realloc under elfc, 66 MB under glibc (whose chunks grow in place).
// From 128 KiB it copies 131 MB and executes 5% fewer instructions with
// either of its allocators, and realloc_growth takes 2080 instructions
// per operation instead of 3678 (callgrind), with a quarter less peak RSS.
// From 64 KiB: 79 MB, 6% and 1128, but sqlite3's peak RSS rose 2% (87.3
// -> 89.3 MiB): the 64-128 KiB buffers it grows and frees 800 times took
// fresh pages of the large heap each time where a slab reused its slots.
constexpr std::size_t kReallocLargeMin = std::size_t{128} << 10;
static_assert(kReallocLargeMin < kMaxSlabObjectSize - sizeof(std::uint64_t),
              "every size from kReallocLargeMin up may be a large block");

// What realloc asks for when a slab block grows to n bytes (see
// kReallocHeadroomMin): half again n, at most `max` (the largest request
// a slab serves); n itself below the threshold or from `max` up.
std::size_t RoomToGrow(std::size_t n, std::size_t max) {
  if (n < kReallocHeadroomMin || n >= max) return n;
  return n + n / 2 < max ? n + n / 2 : max;
}

std::size_t AvailableQueues() {
  const std::size_t cpus = AvailableCpus();
  std::size_t q = absl::bit_ceil(2 * cpus);
  return q < 2 ? 2 : (q > 16 ? 16 : q);
}

// Configuration from the options table (options.h: every tunable's
// default, range and environment variable, and why the dirty-page
// thresholds per page size are what they are), read once when the heap is
// built; decay and thresholds may change later (ApplyRuntimeOptions).
PageAlloc::Options Configure(PageAlloc::Options o, OptionId max_dirty_mib) {
  o.decay_ms = GetOption(OptionId::kDecayMs);
  // <= kMaxDirtyMiB (2^20): the shift cannot overflow.
  o.max_dirty_bytes = static_cast<std::size_t>(GetOption(max_dirty_mib)) << 20;
  return o;
}

// The heap's three page allocators' bags, side by side in one block
// (never freed: neither is the heap). Each bag in a bsalloc block of its
// own took a page: six pages, all touched when the heap was built, for
// 7 KiB of bags. Handed out in the order the heap builds its page
// allocators; without the block (out of memory) each bag takes its own.
class PageBagBlock {
 public:
  PageBagBlock() noexcept {
    const std::size_t bytes = PageAlloc::BagStorageBytes(PageAlloc::SmallPages()) +
                              PageAlloc::BagStorageBytes(PageAlloc::MidPages()) +
                              PageAlloc::BagStorageBytes(PageAlloc::MediumPages());
    next_ = static_cast<unsigned char*>(bsalloc::Allocate(bytes));
  }
  PageAlloc::Options Place(PageAlloc::Options o) noexcept {
    if (next_ != nullptr) {
      o.bag_storage = next_;
      next_ += PageAlloc::BagStorageBytes(o);
    }
    return o;
  }

 private:
  unsigned char* next_;
};

// The large-block heap's cap on resident free units and its decay period
// (large_alloc.h, "Memory return"): the same decay period as the slab
// pages.
void ConfigureLargeCache() {
  // <= kMaxDirtyMiB (2^20): the shift cannot overflow.
  SetLargeCacheLimits(
      static_cast<std::size_t>(GetOption(OptionId::kLargeCacheMb)) << 20,
      GetOption(OptionId::kDecayMs));
}

// Double free of a slab block, in every build (same thread or another, at
// once or after any number of other frees, as long as the two frees do not
// race each other): free writes the block's free mark, FreeMark(p) = a
// per-process secret key (from the kernel's AT_RANDOM bytes) xor p, into
// its second word (kMarkOffset; the hardened build: its first), and a free
// that finds the mark already there aborts with one line naming the
// pointer and its size class. Every allocation of a
// slab block clears the word (Handout). The block is ours from free to the
// next allocation (the magazines keep their pointers in stacks of their
// own, not in the blocks), so the mark survives the magazine, the flush to
// the slab and any later magazine until the block is handed out again.
// A live block carries its mark only if the program stored that value at
// that address: the key is secret and the mark bound to the address, so
// that takes reading the block's own mark word while it was free and
// writing it back after it was reallocated. Before aborting, the slow path
// (FreeMarked) confirms that p is an object start of its class: the
// mark at a position no block starts at is not ours. Cost: a load, a
// compare and a store on the block's first cache line per free, a store
// per allocation (the program is about to write that line anyway): 6
// instructions of the 61 of a malloc/free pair (callgrind, pair_latency).
// With the alignment test below, the checks every build makes cost 4.9%
// of the instructions of the single-thread harness rows and 2-3% of the
// throughput over all of them (against //elfc:libelfc_unchecked.so;
// info/reliability.md, "The cost of the checks and of the hardened
// build"): on allocation-bound loops every instruction shows, and the
// unchecked free touches nothing but the magazine.
// glibc's tcache key is the same idea (in the second word; its free lists
// live in the blocks).
//
// Pointers that are not the start of a block, in every build, where the
// check costs nothing measurable:
//   * free of a small-slab pointer (the classes up to 14 KiB) that is not
//     aligned as its class's objects are: every object of class c starts
//     at a multiple of ClassAlignment(c) (slab layouts align objects to
//     it, slab_metadata.h), so the fast path tests p against the mask kept
//     in the entry of the thread's fast-path array that the slab tag
//     selects anyway (TagAlignMask; thread_cache.h, HotSlot). That catches
//     every misaligned pointer, every interior pointer of the power-of-two
//     classes and most of the others' (p + 8 of a 24-byte block, p + 256
//     of a 3000-byte one); the multiples of the alignment inside a block
//     pass (p + 16 of a 48-byte block, p + 1024 of a 3072-byte one), and
//     the checked build's exact test catches those. It replaces the
//     8-byte test that every free made before (free of a misaligned
//     pointer other than a small-slab one: one test and branch);
//   * free of an interior pointer of a block of 16 KiB or more (the
//     2 MiB-page slab classes and large blocks): these frees leave the fast
//     path on their stamp (the small-slab stamp is the one compared
//     anyway), and the out-of-line path checks p against its class
//     (IsObjectStart), or LargeFree checks it against its large block's
//     header or packed unit's page map (in every build);
//   * realloc of an interior pointer of any block (realloc copies or keeps
//     the block; the check is a multiply and a few compares).
// Measured (callgrind, tools/harness.py --instructions): +1 instruction
// per malloc/free pair (70), +6 per operation of the database-like
// workload (355, many 16 KiB+ blocks), +31 per realloc_growth operation
// (5106).
//
// The checked build (ELFMALLOC_CHECKED, `//elfc:libelfc_checked.so`) adds
// to that:
//   * Interior pointers of the small-slab classes (up to 14 KiB): p must be
//     an object start of its slab (exact divisibility by the class size:
//     one multiply by a precomputed inverse and one rotate, no division;
//     ObjectStartTest). It replaces the alignment test; the table entry,
//     indexed by the slab tag free reads anyway, also rejects tags that
//     name no class.
//   * Foreign pointers: a stamp that is not elfmalloc's already aborts in
//     every build, and so does a slab tag that is not one of our classes.
//     Before it reads the stamp, free asks whether the region header is
//     mapped at all (CheckRegionMapped; the thread's memo of the regions
//     it found mapped, else mmap_alloc's registry), so that a pointer
//     nobody mapped is named in the report even where the program has a
//     SIGSEGV handler of its own.
// It reads nothing but the class's table entry, the thread's memo and
// the block's first word (checking the tag against the slab header's
// metadata as well would read a second cache line per free). A malloc/free
// pair costs 84 instructions against the default build's 61 (pair_latency,
// callgrind; 102 with the registry asked on every free and the
// class-indexed test, which took a range check, the alignment test and a
// divisibility test in three steps).
// Not detected: a double free of a large block once its units were reused
// or purged (while they are free and resident, every build reports it:
// AllocType::kFreedLarge), and two frees of one block racing each other
// on different threads.
#if defined(ELFMALLOC_CHECKED) || defined(ELFMALLOC_HARDENED)
constexpr bool kChecked = true;
#else
constexpr bool kChecked = false;
#endif
#if defined(ELFMALLOC_HARDENED)
constexpr bool kHardened = true;  // see "The hardened build"
#else
constexpr bool kHardened = false;
#endif

// The unchecked build (ELFMALLOC_UNCHECKED, `//elfc:libelfc_unchecked.so`):
// the default build without the checks every build makes (the free mark,
// the misaligned, big-block interior and realloc checks above). Not
// installed and not for use: it exists so that the harness can measure
// what those checks cost (`./run.sh --extra=unchecked=...`).
#if defined(ELFMALLOC_UNCHECKED)
static_assert(!kChecked, "ELFMALLOC_UNCHECKED excludes the checked builds");
constexpr bool kDefaultChecks = false;
#else
constexpr bool kDefaultChecks = true;
#endif

// The free key; set once by InitFreeKey before the heap is published (no
// slab block exists before then). Its top bit is set, so no user-space
// address xor the key is 0, the word Handout leaves in live blocks.
ABSL_CONST_INIT std::uint64_t g_free_key = 0;

void InitFreeKey() {
  std::uint64_t k = 0x9E3779B97F4A7C15ull;
  if (const auto* r =
          reinterpret_cast<const unsigned char*>(getauxval(AT_RANDOM))) {
    std::memcpy(&k, r + 8, sizeof(k));  // glibc uses bytes 0..7 (canary)
  }
  k ^= reinterpret_cast<std::uintptr_t>(&g_free_key) * 0xBF58476D1CE4E5B9ull;
  g_free_key = k | (std::uint64_t{1} << 63);
}

#if defined(ELFMALLOC_HARDENED)
// The hardened build's secrets and its thread-heap release hook (see "The
// hardened build" below), set up when the heap is built.
void InitHardening();
void DrainQuarantine(ThreadHeap* th) noexcept;
void ReportGuardPageFault(void* addr);
#endif

// Free, realloc and malloc_usable_size of a pointer elfmalloc never mapped
// anything at (a static array, a block forged in one), in every build and
// at no cost per call: the first thing these functions do is read the
// region header at p's 2 MiB boundary (ReadAllocType), which faults when
// nothing is mapped there. A SIGSEGV hook (InstallFaultHandler, platform.h,
// installed when the heap is built unless the program has a handler of
// its own) reports such a fault when the faulting instruction lies in one
// of the three functions (placed in the section elfmalloc_classify, whose
// bounds the linker provides) and the faulting address is the first page
// of a 2 MiB boundary that mmap_alloc's registry does not map: one line
// naming the 2 MiB region the pointer lies in (the pointer itself is not
// recoverable from the fault), then abort. Every other fault goes on to
// the default action as if there were no hook. The checked and hardened
// builds ask the registry before the read instead (CheckRegionMapped),
// which also names the pointer.
#define ELFMALLOC_CLASSIFIES __attribute__((section("elfmalloc_classify")))

// malloc's and free's fast paths begin on a cache line of their own. Where
// they began moved with every change elsewhere in the library, and so did
// the malloc/free pair's speed: builds with the same instructions per pair
// (callgrind) ran pair_latency 7-10% apart (medians of 9 interleaved
// runs); aligned, the build that was 10% slower runs as fast as the
// fastest. (abseil has no macro for a function's alignment.)
#define ELFMALLOC_HOT_ENTRY __attribute__((aligned(64)))

// A function the optimiser must not analyse across calls (GCC's noipa): for
// failure paths that never return but must be reached by a jump, not a
// call (see FreeNotOurs).
#if defined(__GNUC__) && !defined(__clang__)
#define ELFMALLOC_OPAQUE __attribute__((noipa))
#else
#define ELFMALLOC_OPAQUE
#endif
void HandleFault(void* addr, const void* pc);

ABSL_ATTRIBUTE_ALWAYS_INLINE inline std::uint64_t FreeMark(const void* p) {
  return g_free_key ^ reinterpret_cast<std::uintptr_t>(p);
}

// Where a block keeps its free mark: the second word (every class is 16
// bytes or more). Programs store to a block's first bytes more than to any
// others (a header, a list link, a string's first character), often right
// before freeing it, and a free that loads the 8-byte word the program
// just wrote part of cannot take it from the store buffer: it waits for
// the stores to reach the cache (pair_latency, which writes a block's
// first and last byte between malloc and free: 6.6 ns per pair with the
// mark in the first word, 3.5 with it in the second, at sizes from 64 B).
// A use after free that writes the first word (a list link) also leaves a
// second free detectable. glibc keeps its tcache key in the second word
// too. The hardened build keeps the mark in the first word, where its
// quarantine checks it with the freed pattern that follows.
inline constexpr std::size_t kMarkOffset =
    kHardened ? 0 : sizeof(std::uint64_t);
static_assert(ClassSize(SizeClass(0)) >= kMarkOffset + sizeof(std::uint64_t));
ABSL_ATTRIBUTE_ALWAYS_INLINE inline std::uint64_t* MarkWord(void* p) {
  return reinterpret_cast<std::uint64_t*>(static_cast<char*>(p) +
                                          kMarkOffset);
}
ABSL_ATTRIBUTE_ALWAYS_INLINE inline std::uint64_t ReadMarkWord(const void* p) {
  return *reinterpret_cast<const std::uint64_t*>(
      static_cast<const char*>(p) + kMarkOffset);
}

// The layout of every class's slabs, computed at compile time by the
// function, and with the options, that Heap::Init's SlabClasses compute it
// with at run time (ComputeMetadata; Heap::Init checks that they agree),
// so that the object-start test reads one constant table entry instead of
// the heap pointer and the class's metadata through it (the checked
// build's malloc/free pair: 130 -> 108 instructions, callgrind).
constexpr std::array<SlabMetadata, kNumSizeClasses> kClassLayouts = [] {
  std::array<SlabMetadata, kNumSizeClasses> m{};
  for (std::size_t i = 0; i < kNumSizeClasses; ++i) {
    const SizeClass c(static_cast<std::uint8_t>(i));
    m[i] = ComputeMetadata(ClassSize(c), ClassPageSize(c), kCutoff,
                           ClassPageSize(c),
                           kHardened ? sizeof(std::uint64_t) : 0);  // guards
  }
  return m;
}();

// The object-start test of class c: p's offset in its slab, less the
// offset of object 0, is x = j * d for some object index j < n, where d is
// the class size and n its objects per slab. One multiply decides it: with
// d = 2^k * m (m odd) and inverse = m^-1 mod 2^64, q = rotr(x * inverse, k)
// is j when x = j * d (x * inverse = j * 2^k exactly, since j * d < 2^64,
// and its low k bits are zero), and q < n holds only then: q < n <
// 2^(64-k) needs the low k bits of x * inverse zero (the rotation puts
// them on top), so q = (x * inverse) >> k and x = q * d mod 2^64, which is
// x itself because q * d < n * d < 2^64 (Granlund and Montgomery's exact
// division, with the range check folded into the compare). An offset
// below object 0 wraps x to 2^64 - something, never j * d with j < n.
// The entries are indexed by slab tag (class + 1), 256 of them, so that
// the checked build's free indexes the tag it read with no range check:
// a tag that names no class finds count 0, which no q is below. Computed
// at compile time (a runtime division per free costs more than the test).
// 40 bytes each (10 KiB): with 32, the count would share a word with k and
// take two more instructions per free to separate.
struct ObjectStartTest {
  std::uintptr_t offset_mask = 0;  // page size - 1
  std::uintptr_t first = 0;        // offset of object 0
  std::uint64_t inverse = 0;       // m^-1 mod 2^64
  std::uint64_t count = 0;         // n (0: no class)
  std::uint64_t shift = 0;         // k

  static constexpr ObjectStartTest Of(const SlabMetadata& m) {
    ObjectStartTest t;
    t.offset_mask = m.page_size - 1;
    t.first = m.objects_offset;
    std::uint64_t d = m.object_size;
    std::uint64_t shift = 0;
    while ((d & 1) == 0) {
      d >>= 1;
      ++shift;
    }
    std::uint64_t inv = d;  // Newton's iteration: 5 steps give 64 bits
    for (int i = 0; i < 5; ++i) inv *= 2 - d * inv;
    t.inverse = inv;
    t.count = m.n_objects;
    t.shift = shift;
    return t;
  }
  ABSL_ATTRIBUTE_ALWAYS_INLINE bool Holds(const void* p) const {
    const std::uintptr_t x =
        (reinterpret_cast<std::uintptr_t>(p) & offset_mask) - first;
    return std::rotr(x * inverse, static_cast<int>(shift)) < count;
  }
};

inline constexpr std::size_t kNumTags = 256;
alignas(64) constexpr std::array<ObjectStartTest, kNumTags>
    kObjectStartTests = [] {
      std::array<ObjectStartTest, kNumTags> t{};
      for (std::size_t i = 0; i < kNumSizeClasses; ++i) {
        t[i + 1] = ObjectStartTest::Of(kClassLayouts[i]);
      }
      return t;
    }();

static_assert([] {
  for (std::size_t i = 0; i < kNumSizeClasses; ++i) {
    const SizeClass c(static_cast<std::uint8_t>(i));
    // Every class's objects are laid out at their exact size, each at a
    // multiple of the class's alignment (free's alignment test,
    // TagAlignMask, relies on it).
    if (!kClassLayouts[i].valid() ||
        kClassLayouts[i].object_size != ClassSize(c) ||
        kClassLayouts[i].objects_offset % ClassAlignment(c) != 0 ||
        kObjectStartTests[i + 1].shift >= 64) {
      return false;
    }
  }
  return true;
}());

// The exact test against plain arithmetic on the table itself, at the
// first and last 32 object starts of every class and every 13th between,
// at bytes inside those objects, in the 4 KiB and the 64 bytes before
// object 0 and in the 64 bytes after the last: true
// at object starts, nowhere else. (Sampled: clang's compile-time
// evaluation stops at a million steps.)
constexpr bool HoldsAt(const ObjectStartTest& t, std::uintptr_t off) {
  const std::uintptr_t x = (off & t.offset_mask) - t.first;
  return std::rotr(x * t.inverse, static_cast<int>(t.shift)) < t.count;
}
static_assert([] {
  for (std::size_t i = 0; i < kNumSizeClasses; ++i) {
    const SlabMetadata& m = kClassLayouts[i];
    const ObjectStartTest& t = kObjectStartTests[i + 1];
    for (std::uintptr_t off = 0; off < m.objects_offset && off < 4096;
         off += 8) {
      if (HoldsAt(t, off)) return false;
    }
    for (std::uintptr_t off = m.objects_offset > 64 ? m.objects_offset - 64 : 0;
         off < m.objects_offset; ++off) {
      if (HoldsAt(t, off)) return false;
    }
    for (std::size_t j = 0; j < m.n_objects; ++j) {
      if (j >= 32 && j + 32 < m.n_objects && j % 13 != 0) continue;
      const std::uintptr_t start = m.objects_offset + j * m.object_size;
      if (!HoldsAt(t, start)) return false;
      const std::size_t size = m.object_size;
      for (std::size_t delta : {std::size_t{1}, std::size_t{8},
                                std::size_t{16}, size / 2, size - 16,
                                size - 1}) {
        if (delta != 0 && delta < size && HoldsAt(t, start + delta)) {
          return false;
        }
      }
    }
    const std::uintptr_t end = m.objects_offset + m.n_objects * m.object_size;
    for (std::uintptr_t off = end; off < m.page_size && off < end + 64;
         ++off) {
      if (HoldsAt(t, off)) return false;
    }
    if (HoldsAt(t, m.page_size - 1)) return false;
  }
  for (std::size_t tag = kNumSizeClasses + 1; tag < kNumTags; ++tag) {
    if (kObjectStartTests[tag].count != 0) return false;
  }
  return kObjectStartTests[0].count == 0;
}());

// Whether p is an object start of a slab of class c. Everything comes from
// the class (no read of the slab's header, which would be a second cache
// line per free).
ABSL_ATTRIBUTE_ALWAYS_INLINE inline bool IsObjectStart(const void* p,
                                                       SizeClass c) {
  return kObjectStartTests[c.index() + 1].Holds(p);
}
// The same for the class that slab tag `tag` names; false for a tag that
// names no class.
ABSL_ATTRIBUTE_ALWAYS_INLINE inline bool IsObjectStartOfTag(const void* p,
                                                            unsigned tag) {
  return kObjectStartTests[tag & (kNumTags - 1)].Holds(p);
}

// The checked build's report of slab pointer p of class c (from its tag)
// that is no object start of that class; `op` names the call ("free",
// "realloc"). Out of line and [[noreturn]], so that the callers' fast paths
// keep no registers across it (inlined, the report made the checked
// build's free save and restore five registers).
[[noreturn]] ABSL_ATTRIBUTE_NOINLINE ABSL_ATTRIBUTE_COLD void
DieNotObjectStart(const void* p, SizeClass c, const char* op) {
  ABSL_RAW_LOG(FATAL,
               "elfmalloc: %s(%p): not the start of a block (size class "
               "%u: %zu-byte blocks; an interior pointer, or not from "
               "this allocator)",
               op, p, static_cast<unsigned>(c.index()), ClassSize(c));
  std::abort();  // not reached: FATAL aborts
}

void CheckedFreeLarge(void* p, const char* op = "free") {
  const LargeBlockState state = LargeStateOf(p);
  if (ABSL_PREDICT_FALSE(state != LargeBlockState::kLive)) {
    DieBadLargeBlock(p, op, state);
  }
}

// One spin-locked slab allocator per class, for threads without a heap.
struct Fallback {
  SpinLock lock;
  SlabClass* cls = nullptr;  // set when the heap is built
  // The slab allocator, built in `storage` (the heap's, untouched until
  // then) and bound to cls on first use (Slabs(), under the lock). Binding
  // builds the class's available bag, so binding all of them with the heap
  // built every class's bag in every process (SlabClass, "The bag"); and
  // 61 slab allocators of 304 bytes built with the heap wrote 18 KiB, most
  // of it for classes whose fallback no thread ever uses (a C program
  // making five mallocs binds five to ten).
  void* storage = nullptr;  // sizeof(SlabAllocator) bytes, set with cls
  bool bound = false;       // written under the lock
  // Allocations minus frees through this path (written under the lock, read
  // by statistics without it).
  std::atomic<std::int64_t> net{0};

  SlabAllocator& Slabs() noexcept {
    if (ABSL_PREDICT_FALSE(!bound)) {
      ::new (storage) SlabAllocator(cls);
      bound = true;
    }
    return *std::launder(static_cast<SlabAllocator*>(storage));
  }
};

// The shared heap. Built once in mmap_alloc memory and never destroyed:
// objects may be freed by any thread until the process ends.
class Heap {
 public:
  Heap() noexcept
      : small_(page_bags_.Place(
            Configure(PageAlloc::SmallPages(), OptionId::kMaxDirtySmallMb))),
        mid_(page_bags_.Place(
            Configure(PageAlloc::MidPages(), OptionId::kMaxDirtyMidMb))),
        medium_(page_bags_.Place(Configure(PageAlloc::MediumPages(),
                                           OptionId::kMaxDirtyMediumMb))) {}

  bool Init() noexcept {
    if (!small_.valid() || !mid_.valid() || !medium_.valid()) return false;
    const std::size_t queues = AvailableQueues();
    // The classes' available bags side by side in one block (never freed:
    // neither is the heap). A bag of 4 queues needs under 1 KiB, and a
    // bsalloc block of its own per class took 57 whole pages, all touched
    // when the heap was built: 228 KiB resident in every process. Each bag
    // is built on its class's first use (SlabClass, "The bag") in the
    // arena's next block, so the bags in use share pages (BagArena).
    const std::size_t bag_bytes = SlabClass::BagStorageBytes(queues);
    // Twice the classes: a spare block per class (BagArena).
    auto* bags = static_cast<unsigned char*>(
        bsalloc::Allocate(2 * kNumSizeClasses * bag_bytes));
    if (bags == nullptr) return false;
    bag_arena_.Init(bags, bag_bytes, 2 * kNumSizeClasses);
    for (std::size_t i = 0; i < kNumSizeClasses; ++i) {
      const SizeClass c(static_cast<std::uint8_t>(i));
      SlabClass::Options o;
      o.object_size = ClassSize(c);
      o.cutoff = kCutoff;
      o.available_queues = queues;
      // Slab::TagOf gives class + 1 (0, what untagged fresh memory reads,
      // is no class).
      o.tag = static_cast<std::uint8_t>(i + 1);
      o.bag_arena = &bag_arena_;
      // The hardened build's neighbour checks (see "Canaries").
      o.zero_object_tails = kHardened;
      // Not for the classes of 256 KiB pages (slab_allocator.h, "The
      // previous slab").
      o.keep_previous_slab = ClassPageSize(c) != kMidPageSize;
      PageAlloc* pa = ClassPageSize(c) == kSmallPageSize ? &small_
                      : ClassPageSize(c) == kMidPageSize ? &mid_
                                                         : &medium_;
      SlabClass* cls = ::new (&classes_[i]) SlabClass(pa, o);
      if (!cls->valid()) return false;  // leaked: the heap is unusable anyway
      // The object-start test's compile-time copy of the layout
      // (kClassLayouts) is this one.
      const SlabMetadata& m = cls->metadata();
      const SlabMetadata& k = kClassLayouts[i];
      ABSL_RAW_CHECK(m.page_size == k.page_size &&
                         m.objects_offset == k.objects_offset &&
                         m.n_objects == k.n_objects &&
                         m.object_size == k.object_size,
                     "slab layout differs from kClassLayouts");
      ::new (&fallback_[i]) Fallback();
      fallback(c).cls = cls;
      fallback(c).storage = &fallback_slabs_[i];
    }
    return true;
  }

  SlabClass* classes() noexcept {
    return std::launder(reinterpret_cast<SlabClass*>(&classes_[0]));
  }
  SlabClass& cls(SizeClass c) noexcept { return classes()[c.index()]; }
  Fallback& fallback(SizeClass c) noexcept {
    return *std::launder(reinterpret_cast<Fallback*>(&fallback_[c.index()]));
  }

  PageAlloc& small() noexcept { return small_; }
  PageAlloc& mid() noexcept { return mid_; }
  PageAlloc& medium() noexcept { return medium_; }

  // pthread_atfork handlers: every lock of the heap is taken before fork()
  // and released after it in both processes, so that the child never
  // inherits a lock held by a thread that does not exist there. Order:
  // the init lock, the thread-heap registry, then the fallback locks in
  // class order (no path holds two of them at once except this one). A
  // lock the forking thread itself holds (fork from a signal handler that
  // interrupted its section) is left to that section (spin_lock.h).
  // Lets every fallback allocator's claimed slab go (a wholly free one
  // back to its page allocator): when memory runs short and at
  // malloc_trim. A lock that is busy (or held by this thread, in the code
  // the pressure hook runs inside) is skipped.
  void ReleaseFallbackSlabs() noexcept {
    for (std::size_t i = 0; i < kNumSizeClasses; ++i) {
      Fallback& f = fallback(SizeClass(static_cast<std::uint8_t>(i)));
      if (!f.lock.TryLock()) continue;
      if (f.bound) f.Slabs().Release();
      f.lock.Unlock();
    }
  }

  void LockAll() noexcept {
    for (std::size_t i = 0; i < kNumSizeClasses; ++i) {
      fallback(SizeClass(static_cast<std::uint8_t>(i))).lock.LockForFork();
    }
  }
  // A class's available bag that a thread of the parent was building is
  // built again on its next use (SlabClass, "The bag").
  void ResetBagsInForkChild() noexcept {
    for (std::size_t i = 0; i < kNumSizeClasses; ++i) {
      cls(SizeClass(static_cast<std::uint8_t>(i))).ResetBagInForkChild();
    }
  }
  void UnlockAll() noexcept {
    for (std::size_t i = kNumSizeClasses; i-- > 0;) {
      fallback(SizeClass(static_cast<std::uint8_t>(i))).lock.UnlockAfterFork();
    }
  }

 private:
  // Before the page allocators, whose bags it places.
  PageBagBlock page_bags_;
  // The classes' available bags, in order of first use (Init).
  BagArena bag_arena_;
  PageAlloc small_;
  PageAlloc mid_;
  PageAlloc medium_;
  alignas(SlabClass) unsigned char classes_[kNumSizeClasses][sizeof(SlabClass)];
  alignas(Fallback) unsigned char fallback_[kNumSizeClasses][sizeof(Fallback)];
  // The fallbacks' slab allocators, each built on its first use (Fallback).
  alignas(SlabAllocator) unsigned char
      fallback_slabs_[kNumSizeClasses][sizeof(SlabAllocator)];
};

ABSL_CONST_INIT SpinLock g_init_lock;
// Whether StartBackgroundDecay started the decay thread in this process.
ABSL_CONST_INIT std::atomic<bool> g_decay_thread_started{false};
// Published with release after the heap is fully built.
ABSL_CONST_INIT std::atomic<Heap*> g_heap{nullptr};
ABSL_CONST_INIT bool g_init_failed = false;  // guarded by g_init_lock

// The options hook (SetOption, e.g. elfc_set_option): pushes the run-time
// settable options into the live page allocators.
void ApplyRuntimeOptions() {
  Heap* h = g_heap.load(std::memory_order_acquire);
  if (h == nullptr) return;  // the heap reads them when it is built
  const struct {
    PageAlloc* pa;
    OptionId max_dirty_mib;
  } targets[] = {{&h->small(), OptionId::kMaxDirtySmallMb},
                 {&h->mid(), OptionId::kMaxDirtyMidMb},
                 {&h->medium(), OptionId::kMaxDirtyMediumMb}};
  for (const auto& t : targets) {
    const PageAlloc::Options o = Configure(PageAlloc::Options(), t.max_dirty_mib);
    t.pa->set_max_dirty_bytes(o.max_dirty_bytes);
    if (t.pa->decay_ms() != o.decay_ms) t.pa->set_decay_ms(o.decay_ms);
    // A lowered cap applies now, not only to the next free: cached dirty
    // pages above it go back to the OS.
    const std::size_t cap = o.max_dirty_bytes / t.pa->page_size();
    const std::size_t dirty = t.pa->GetStats().dirty_pages;
    if (dirty > cap) {
      PageAlloc::Handle handle = t.pa->NewHandle();
      if (handle.valid()) handle.ReleaseDirty(dirty - cap);
    }
  }
  ConfigureLargeCache();
}

// A page refill could not map memory (PageAlloc::SetPressureHook): return
// what every cache holds, so that the refill's second try can use it.
// Every thread heap is asked to drain (thread_cache.h, "Draining": their
// claimed slabs and cached objects go back at their next slow path, the
// failing thread's own at once, by ThreadHeap::AllocAfterFailure), so
// that a later pressure call finds their pages free. The current heap is
// not drained here: the hook runs inside one of its slab allocators'
// refills. Pooled thread heaps are left alone here (the hook runs inside a
// refill, possibly under a fallback lock); the failing allocation releases
// them (ThreadHeap::AllocAfterFailure, AllocLarge).
void OnMemoryPressure() {
  RequestDrain();
  LargeCacheRelease();
  Heap* heap = g_heap.load(std::memory_order_acquire);
  if (heap == nullptr) return;
  heap->ReleaseFallbackSlabs();
  for (PageAlloc* pa : {&heap->small(), &heap->mid(), &heap->medium()}) {
    PageAlloc::Handle h = pa->NewHandle();
    if (h.valid()) {
      h.ReleaseDirty(SIZE_MAX);
      h.UnmapFreeRegions();
    }
  }
}

// The live thread heaps from which the nurseries' refills are shared
// (SharedNurseryRefill).
constexpr std::size_t kSharedRefillMinHeaps = 8;

// A refill of a thread heap's cache in its nursery (magazine_cache.h,
// "Shared refills"): up to n objects from class cls's fallback allocator,
// so that threads holding a few objects of a class share its slab. The
// fallback path counts its own allocations in Fallback::net; these are the
// cache's (it counts what its refills took). It waits for other threads
// (a batch under the lock is short; with TryLock, 200 threads starting
// together mostly found it busy and claimed slabs of their own), never for
// its own: a signal handler that interrupted the holder on this thread
// takes its objects from its own slab.
//
// Only while kSharedRefillMinHeaps or more threads have heaps. Sharing a
// class costs the fallback's slab of it (a page or two touched, its
// address space) and saves each thread that uses the class lightly a slab
// of its own; in a program of a few threads that use their classes
// heavily, the harness's rows, every thread graduates at once and the
// fallback slabs are all cost: with sharing from the second thread on,
// their peak RSS was 2-5% higher (glibc_thread 4.2 -> 4.0 MiB without it,
// shbench 8-64 B 3.8 -> 3.7), and in a single-threaded program every class
// kept two slabs, the fallback's and its own. 200 threads each holding one
// block of each of 8 classes cost ~25 KiB per thread with sharing, ~52
// without (elfc/thread_footprint.cc).
// Not the classes of 2 MiB slabs: a fallback allocator keeps its slab
// claimed until memory runs short (Heap::ReleaseFallbackSlabs), and a
// claimed slab of the 16..256 KiB classes pins a whole 2 MiB region, which
// a program under RLIMIT_AS needs back (//elfc:address_space_*).
std::size_t SharedNurseryRefill(SlabClass* cls, void** out,
                              std::size_t n) noexcept {
  if (LiveThreadHeaps() < kSharedRefillMinHeaps) return 0;
  Heap* heap = g_heap.load(std::memory_order_acquire);
  if (heap == nullptr) return 0;
  const std::size_t c = static_cast<std::size_t>(cls - heap->classes());
  if (c >= kNumSizeClasses) return 0;
  const SizeClass sc(static_cast<std::uint8_t>(c));
  if (ClassPageSize(sc) == kMediumPageSize) return 0;
  Fallback& f = heap->fallback(sc);
  if (f.lock.HeldByCurrentThread()) return 0;
  f.lock.Lock();
  const std::size_t got = f.Slabs().AllocBatch(out, n);
  f.lock.Unlock();
  return got;
}

// An object of f's class, with f's lock held.
void* FallbackAllocLocked(Fallback& f) {
  void* p = f.Slabs().Alloc();
  if (p != nullptr) {
    f.net.store(f.net.load(std::memory_order_relaxed) + 1,
                std::memory_order_relaxed);
  }
  return p;
}

// A signal handler's malloc inside a slow path of its thread that the
// thread's handler stash cannot serve (thread_cache.h, "Signal handlers";
// the hardened build's HardenedSection): an object of the class's fallback
// allocator if its lock is free (the interrupted code may hold it), else
// nullptr.
void* NestedFallbackAlloc(SizeClass c) noexcept {
  Heap* heap = g_heap.load(std::memory_order_acquire);
  if (heap == nullptr) return nullptr;
  Fallback& f = heap->fallback(c);
  if (!f.lock.TryLock()) return nullptr;
  if (!f.bound) {
    // Binding may wait for the class's bag, which the interrupted code
    // may be building (SlabClass, "The bag").
    f.lock.Unlock();
    return nullptr;
  }
  void* p = FallbackAllocLocked(f);
  f.lock.Unlock();
  return p;
}

ABSL_ATTRIBUTE_NOINLINE Heap* InitHeapSlow() {
  SpinLockHolder l(&g_init_lock);
  Heap* h = g_heap.load(std::memory_order_acquire);
  if (h != nullptr || g_init_failed) return h;
  void* mem = mmap_alloc::Map(sizeof(Heap));
  if (mem != nullptr) {
    h = ::new (mem) Heap();
    if (!h->Init()) {
      h = nullptr;  // its memory is leaked; the process is out of memory
    }
  }
  if (h == nullptr) {
    g_init_failed = true;  // do not retry on every call
    errno = ENOMEM;
    return nullptr;
  }
  ConfigureLargeCache();
  PageAlloc::SetPressureHook(&OnMemoryPressure);
  InitFreeKey();
#if defined(ELFMALLOC_HARDENED)
  InitHardening();
  SetThreadHeapReleaseHook(&DrainQuarantine);
#endif
  InstallFaultHandler(&HandleFault);
  g_heap.store(h, std::memory_order_release);
  SetSharedRefill(&SharedNurseryRefill);
  SetNestedAllocSource(&NestedFallbackAlloc);
  SetOptionsApplyHook(&ApplyRuntimeOptions);
  return h;
}

// The handlers may run in a signal handler that interrupted this thread
// inside any of the sections these locks guard: each lock is taken only if
// this thread does not hold it, and released only by the fork that took it
// (SpinLock::LockForFork). A section left locked that way is the
// interrupted code's, in both processes: it finishes and unlocks if the
// signal handler returns.
void PreFork() {
  EnterForkHandlers();
  g_init_lock.LockForFork();
  ThreadCachePreFork();
  if (Heap* h = g_heap.load(std::memory_order_acquire)) h->LockAll();
  LargeCachePreFork();
}

void PostForkParent() {
  LargeCachePostFork();
  if (Heap* h = g_heap.load(std::memory_order_acquire)) h->UnlockAll();
  ThreadCachePostForkParent();
  g_init_lock.UnlockAfterFork();
  LeaveForkHandlers();
}

// Lock-free structures need no repair in the child: an operation cut short
// by the fork (a dead thread's push, pop or slab transition) at worst leaks
// the item it was moving. Thread-owned state (other threads' heaps, their
// claimed slabs, their epoch records) is released as far as it is safe in
// ThreadCachePostForkChild and bagpipe::epoch::AfterForkInChild.
#if defined(ELFMALLOC_HARDENED)
void LeaveInterruptedHardenedSectionInForkChild();
#endif

void PostForkChild() {
  // The background decay thread was not copied (general_allocator.h,
  // "Background decay"): StartBackgroundDecay may start one again.
  g_decay_thread_started.store(false, std::memory_order_relaxed);
  LargeCachePostFork();
  if (Heap* h = g_heap.load(std::memory_order_acquire)) {
    h->UnlockAll();
    h->ResetBagsInForkChild();
  }
#if defined(ELFMALLOC_HARDENED)
  LeaveInterruptedHardenedSectionInForkChild();
#endif
  LeaveInterruptedSlowPathInForkChild();
  ThreadCachePostForkChild();
  g_init_lock.UnlockAfterFork();
  LeaveForkHandlers();
}

// Registered once, by the thread that built the heap, after publishing it
// and outside g_init_lock: glibc's pthread_atfork keeps its first 48
// handlers in static storage, and if it ever allocates, the nested malloc
// finds the heap ready instead of deadlocking on the init lock.
ABSL_CONST_INIT std::atomic<bool> g_atfork_registered{false};
void RegisterForkHandlers() {
  if (!g_atfork_registered.exchange(true, std::memory_order_acq_rel)) {
    if (pthread_atfork(&PreFork, &PostForkParent, &PostForkChild) != 0) {
      ABSL_RAW_LOG(ERROR, "elfmalloc: pthread_atfork failed; fork() while "
                          "other threads allocate may deadlock the child");
    }
  }
}

ABSL_ATTRIBUTE_NOINLINE Heap* InitHeapAndForkHandlers() {
  Heap* h = InitHeapSlow();
  if (h != nullptr) RegisterForkHandlers();
  return h;
}

ABSL_ATTRIBUTE_ALWAYS_INLINE inline Heap* GetHeap() {
  Heap* h = g_heap.load(std::memory_order_acquire);
  return ABSL_PREDICT_TRUE(h != nullptr) ? h : InitHeapAndForkHandlers();
}

void* FallbackAlloc(Heap* heap, SizeClass c) {
  Fallback& f = heap->fallback(c);
  SpinLockHolder l(&f.lock);
  return FallbackAllocLocked(f);
}

// A live block never carries its free mark (see FreeMark, kMarkOffset).
// The fast path knows p is not null.
ABSL_ATTRIBUTE_ALWAYS_INLINE inline void* HandoutNonNull(void* p) {
  if (kDefaultChecks) *MarkWord(p) = 0;
  return p;
}
ABSL_ATTRIBUTE_ALWAYS_INLINE inline void* Handout(void* p) {
  return p == nullptr ? p : HandoutNonNull(p);
}

// No heap for this thread yet (or none possible).
ABSL_ATTRIBUTE_NOINLINE void* AllocClassSlow(SizeClass c) {
  Heap* heap = GetHeap();
  if (heap == nullptr) {
    // Every call after a failed heap build fails the same way (only the
    // build itself used to set errno).
    errno = ENOMEM;
    return nullptr;
  }
  void* p;
  if (ThreadHeap* th = InitThreadHeap(heap->classes())) {
    p = th->Alloc(c);
    if (p == nullptr) p = th->AllocAfterFailure(c);
  } else {
    p = FallbackAlloc(heap, c);
  }
  if (p == nullptr) errno = ENOMEM;
  return Handout(p);
}

// The magazine of class c is empty.
ABSL_ATTRIBUTE_NOINLINE void* AllocClassRefill(ThreadHeap* th, SizeClass c) {
  // Free large units unused for a whole period go back even when the
  // program now allocates only small ones (large_alloc.h, "Memory return").
  LargeCacheDecay();
  void* p = th->AllocSlow(c);
  if (ABSL_PREDICT_FALSE(p == nullptr)) {
    // The refill's pressure hook may have asked for a drain: this thread's
    // own claimed slabs go back first (thread_cache.h, "Draining").
    p = th->AllocAfterFailure(c);
    if (p == nullptr) errno = ENOMEM;
  }
  return Handout(p);
}

// The pop of class c from this thread's fast-path states (indexed by tag,
// class + 1, which folds into the address's displacement; all empty while
// the thread has no heap, so there is no heap test). Written as slot c's
// successor: written (states + 1)[c], GCC 12 adds the 1 to c before the
// shift, one instruction more per malloc (callgrind pair_latency).
ABSL_ATTRIBUTE_ALWAYS_INLINE inline bool TryAllocClass(SizeClass c, void** p) {
  HotSlot* const slot = CurrentHotStates() + c.index();
  return slot[1].hot.TryAlloc(p);
}

// The pop of class c failed: no thread heap yet, or an empty or not yet
// created magazine.
ABSL_ATTRIBUTE_NOINLINE void* AllocClassMiss(SizeClass c) {
  ThreadHeap* th = CurrentThreadHeap();
  if (th == nullptr) return AllocClassSlow(c);
  return AllocClassRefill(th, c);
}

// The fast path is the pop; the slow path is a tail call, so it needs no
// stack frame of its own.
ABSL_ATTRIBUTE_ALWAYS_INLINE inline void* AllocClass(SizeClass c) {
  void* p;
  if (ABSL_PREDICT_FALSE(!TryAllocClass(c, &p))) return AllocClassMiss(c);
  return HandoutNonNull(p);
}

[[noreturn]] ABSL_ATTRIBUTE_NOINLINE ABSL_ATTRIBUTE_COLD void DieNotOurs(
    const void* p) {
  if (RegionIsMapped(p) && ReadAllocType(p) == AllocType::kFreedLarge) {
    DieBadLargeBlock(p, "free", LargeBlockState::kFreed);
  }
  ABSL_RAW_LOG(FATAL, "elfmalloc: %p was not allocated by elfmalloc", p);
  std::abort();  // not reached: FATAL aborts
}

ABSL_ATTRIBUTE_ALWAYS_INLINE inline bool IsSlabType(AllocType t) {
  static_assert(static_cast<int>(AllocType::kSmallSlab) == 1 &&
                static_cast<int>(AllocType::kMediumSlab) == 2);
  return static_cast<std::uint64_t>(t) - 1 < 2;
}

// The checked build's per-thread memo of the regions the registry found
// mapped (mmap_alloc::IsMappedBoundary), so that a free skips the registry's
// two-level lookup (two dependent loads, 16 instructions per free) for the
// regions its thread frees into most: a direct-mapped table of region
// addresses, slot (region / 2 MiB) % 32, valid for the registry epoch it
// records (mmap_alloc::RegistryEpoch: nothing was unmapped since the
// entries were confirmed). A hit costs a compare with the slot and one with
// the epoch. An empty slot holds 1, which no region address equals.
// 32 slots: the small-slab regions of a heap up to 64 MiB have a slot each
// (regions are carved next to each other), and with one slot per thread
// the frees of Larson's benchmark (9 MiB, 5 regions) missed 3 times in 4 and
// ran 18% slower than with the registry alone.
// Signal handlers: a handler's free may run the slow path inside another
// one's. An entry is written after its region was confirmed at epoch e,
// into a table that records e, and withdrawn if the table no longer does
// once it is written (a handler in between reset it for a newer epoch):
// an entry never outlives the epoch it was confirmed in.
inline constexpr std::size_t kRegionMemoSlots = 32;
inline constexpr std::uintptr_t kNoRegion = 1;
struct MappedRegionMemo {
  std::uint64_t epoch;
  std::uintptr_t regions[kRegionMemoSlots];
};
constexpr MappedRegionMemo EmptyRegionMemo() {
  MappedRegionMemo m{};
  m.epoch = ~std::uint64_t{0};  // no epoch: the registry starts at 0
  for (std::uintptr_t& r : m.regions) r = kNoRegion;
  return m;
}
ABSL_CONST_INIT thread_local MappedRegionMemo tls_mapped_regions
    __attribute__((tls_model("initial-exec"))) = EmptyRegionMemo();

ABSL_ATTRIBUTE_ALWAYS_INLINE inline std::size_t RegionMemoSlot(
    std::uintptr_t region) noexcept {
  return (region / kStampAlignment) % kRegionMemoSlots;
}

ABSL_ATTRIBUTE_NOINLINE bool RegionIsMappedSlow(const void* p) noexcept {
  const std::uint64_t e = mmap_alloc::RegistryEpoch();
  if (!RegionIsMapped(p)) return false;
  MappedRegionMemo& m = tls_mapped_regions;
  if (m.epoch != e) {
    m.epoch = ~std::uint64_t{0};
    std::atomic_signal_fence(std::memory_order_seq_cst);
    for (std::uintptr_t& r : m.regions) r = kNoRegion;
    std::atomic_signal_fence(std::memory_order_seq_cst);
    m.epoch = e;
  }
  const std::uintptr_t region = internal::RegionOf(p);
  std::atomic_signal_fence(std::memory_order_seq_cst);
  m.regions[RegionMemoSlot(region)] = region;
  std::atomic_signal_fence(std::memory_order_seq_cst);
  if (m.epoch != e) m.regions[RegionMemoSlot(region)] = kNoRegion;
  return true;
}
ABSL_ATTRIBUTE_ALWAYS_INLINE inline bool RegionIsMappedByMemo(
    const void* p) noexcept {
  const std::uintptr_t region = internal::RegionOf(p);
  const MappedRegionMemo& m = tls_mapped_regions;
  return m.regions[RegionMemoSlot(region)] == region &&
         m.epoch == mmap_alloc::RegistryEpoch();
}
ABSL_ATTRIBUTE_ALWAYS_INLINE inline bool RegionIsMappedCached(
    const void* p) noexcept {
  if (ABSL_PREDICT_TRUE(RegionIsMappedByMemo(p))) return true;
  return RegionIsMappedSlow(p);
}

// The checked and hardened builds: a pointer whose region header is not
// mapped (a static array, a forged chunk, memory another mapping made) is
// reported here, before ReadAllocType would fault on it. The registry
// (mmap_alloc::IsMappedBoundary, two dependent loads and a bit test, 16
// instructions) is asked only when the thread's memo above has no answer.
ABSL_ATTRIBUTE_ALWAYS_INLINE inline void CheckRegionMapped(const void* p) {
  if (ABSL_PREDICT_FALSE(!RegionIsMappedCached(p))) DieNotOurs(p);
}

// The SIGSEGV hook (see ELFMALLOC_CLASSIFIES): signal context, so nothing
// here locks or allocates (raw logging writes with one system call).
void HandleFault(void* addr, const void* pc) {
#if defined(ELFMALLOC_HARDENED)
  ReportGuardPageFault(addr);
#endif
  const char* code = static_cast<const char*>(pc);
  if (code < __start_elfmalloc_classify || code >= __stop_elfmalloc_classify) {
    return;
  }
  const std::uintptr_t a = reinterpret_cast<std::uintptr_t>(addr);
  const std::uintptr_t region = a & ~(std::uintptr_t{kStampAlignment} - 1);
  if (region == 0 || a - region >= mmap_alloc::PageSize() ||
      mmap_alloc::IsMappedBoundary(reinterpret_cast<const void*>(region))) {
    return;
  }
  ABSL_RAW_LOG(FATAL,
               "elfmalloc: free, realloc or malloc_usable_size of a pointer "
               "in (%p, %p], where elfmalloc maps nothing: it was not "
               "allocated by elfmalloc",
               reinterpret_cast<void*>(region),
               reinterpret_cast<void*>(region + kStampAlignment));
}

// The class of a slab pointer, from its slab's tag (Slab::TagOf: the same
// cache line as the stamp; the tag is class + 1). A tag that is not a class
// (0: an untagged slab of some other allocator) aborts.
ABSL_ATTRIBUTE_ALWAYS_INLINE inline SizeClass TagClass(const void* p) {
  const unsigned c = static_cast<unsigned>(Slab::TagOf(p)) - 1u;
  if (ABSL_PREDICT_FALSE(c >= kNumSizeClasses)) DieNotOurs(p);
  return SizeClass(static_cast<std::uint8_t>(c));
}

inline void CheckedFreeSlabOfClass(void* p, SizeClass c,
                                   const char* op = "free") {
  if (ABSL_PREDICT_FALSE(!IsObjectStart(p, c))) {
    DieNotObjectStart(p, c, op);
  }
}

// Deallocate's slow paths are noexcept, like Deallocate: the fast path
// then reaches them by a jump and needs no stack frame (a noexcept caller
// must call a function that may throw, to catch the exception and
// terminate: 2 instructions per free).
ABSL_ATTRIBUTE_NOINLINE void FreeSlow(SizeClass c, void* p) noexcept {
  Heap* heap = g_heap.load(std::memory_order_acquire);
  if (heap == nullptr) DieNotOurs(p);  // a tag, but no heap: not ours
  if (ThreadHeap* th = InitThreadHeap(heap->classes())) {
    th->Free(c, p);
    return;
  }
  Fallback& f = heap->fallback(c);
  SpinLockHolder l(&f.lock);
  f.net.store(f.net.load(std::memory_order_relaxed) - 1,
              std::memory_order_relaxed);
  f.Slabs().Free(p);
}

// The rest of a slab free after the mark check: the magazine push, else
// its slow paths.
ABSL_ATTRIBUTE_ALWAYS_INLINE inline void PushFreed(SizeClass c,
                                                   void* p) noexcept {
  ThreadHeap* th = CurrentThreadHeap();
  if (ABSL_PREDICT_FALSE(th == nullptr)) return FreeSlow(c, p);
  if (ABSL_PREDICT_FALSE(!th->TryFree(c, p))) return th->FreeSlow(c, p);
}

// The first word of p is p's free mark: aborts with "elfmalloc: <what>
// <p> (size class ...)" if p is an object start of class c (the mark is
// ours: the block is free), else returns.
ABSL_ATTRIBUTE_NOINLINE void DieIfMarkIsOurs(const char* what, SizeClass c,
                                             const void* p) noexcept {
  Heap* heap = g_heap.load(std::memory_order_acquire);
  if (heap == nullptr || IsObjectStart(p, c)) {
    ABSL_RAW_LOG(FATAL,
                 "elfmalloc: %s %p (size class %u: %zu-byte blocks); the "
                 "block was freed before and not allocated since",
                 what, p, static_cast<unsigned>(c.index()), ClassSize(c));
  }
}

// A free found the first half of p's free mark in its mark word (see
// FreeSlabTag). Aborts (naming the error, the pointer and the size class)
// if the whole word is the mark and p is an object start of its class;
// otherwise the word is not a mark of ours and the free goes on. Not
// [[noreturn]], so that the fast path reaches it by a jump and keeps no
// registers across it.
ABSL_ATTRIBUTE_NOINLINE void FreeMarked(SizeClass c, void* p) noexcept {
  const std::uint64_t mark = FreeMark(p);
  if (ReadMarkWord(p) == mark) DieIfMarkIsOurs("double free of", c, p);
  *MarkWord(p) = mark;
  PushFreed(c, p);
}

// DieNotOurs reached by a jump from the fast path (see FreeMarked). GCC
// would infer that it never returns and reach it by a call, which makes
// its callers set up a stack frame; noipa keeps it opaque.
ELFMALLOC_OPAQUE ABSL_ATTRIBUTE_NOINLINE void FreeNotOurs(
    const void* p) noexcept {
  DieNotOurs(p);
}

// The slab free of p (its slab tag any byte) found its free mark:
// FreeMarked once the tag is known to name a class. The slow paths that
// the fast path jumps to read the tag again rather than take it as an
// argument: the fast path then keeps no copy of it for them (one
// instruction per free).
ABSL_ATTRIBUTE_NOINLINE void FreeMarkedTag(void* p) noexcept {
  const unsigned ci = Slab::TagOf(p) - 1u;
  if (ABSL_PREDICT_FALSE(ci >= kNumSizeClasses)) return FreeNotOurs(p);
  FreeMarked(SizeClass(static_cast<std::uint8_t>(ci)), p);
}

// The slab free of p could not push it on the magazine its slab tag
// indexes in the thread's fast-path states: the magazine is full or not
// created, the thread has no heap, or the tag names no class (its state is
// always empty), which is where a tag that is not ours is reported.
ABSL_ATTRIBUTE_NOINLINE void FreeTagSlow(void* p) noexcept {
  const unsigned ci = Slab::TagOf(p) - 1u;
  if (ABSL_PREDICT_FALSE(ci >= kNumSizeClasses)) return FreeNotOurs(p);
  const SizeClass c(static_cast<std::uint8_t>(ci));
  ThreadHeap* th = CurrentThreadHeap();
  if (th == nullptr) return FreeSlow(c, p);
  return th->FreeSlow(c, p);
}

bool IsPow2(std::size_t x) { return x != 0 && (x & (x - 1)) == 0; }

// What a large block is for: calloc's (zeroed), realloc's move from a slab
// (a block being grown: placed with room to grow, large_alloc.h), or
// anything else.
enum class LargeKind { kPlain, kZeroed, kGrowth };

void* LargeAllocOfKind(std::size_t n, std::size_t align, LargeKind kind) {
  switch (kind) {
    case LargeKind::kZeroed:
      return LargeAllocZeroed(n);
    case LargeKind::kGrowth:
      return LargeAllocForGrowth(n);
    case LargeKind::kPlain:
      break;
  }
  return LargeAlloc(n, align);
}

// Large blocks. The heap is built first, as for every other allocation, so
// that the options (the large heap's limits among them) are in force.
ABSL_ATTRIBUTE_NOINLINE void* AllocLarge(std::size_t n, std::size_t align,
                                         LargeKind kind) {
  if (ABSL_PREDICT_FALSE(GetHeap() == nullptr)) {
    errno = ENOMEM;
    return nullptr;
  }
  void* p = LargeAllocOfKind(n, align, kind);
  if (ABSL_PREDICT_FALSE(p == nullptr) && errno == ENOMEM) {
    // Free slab regions may be exactly the address space that is missing;
    // this thread's claimed slabs and retired threads' pooled heaps go back
    // first, so that the regions they pinned can be unmapped now.
    DrainThreadHeap();
    TryReleasePooledThreadHeaps();
    OnMemoryPressure();
    p = LargeAllocOfKind(n, align, kind);
  }
  return p;
}

// ---------------------------------------------------------------------------
// The hardened build (ELFMALLOC_HARDENED: //elfc:libelfc_hardened.so,
// //elfmalloc:general_allocator_hardened). It implies the checked build's
// checks (kChecked) and adds the five defences below. All of it is compiled
// only under the define: the default and checked builds' code is what it
// was without it.
//
// Canaries (writes past the requested size). A request of n bytes takes the
// class of its footprint max(n, 8) + 8: the block's last word is the
// trailer, T = trailer key xor T's address xor n, and the 16 bytes from n
// on (kCanaryWindow), cut to the slack [n, class size - 8), hold the
// canary pattern (byte a % 8 of a per-process word at address a; no byte
// of the word is 0, so an off-by-one string terminator is caught). Every
// class up to 256 bytes is 16 bytes from the next, so there the window is
// the whole slack; in the bigger classes the slack bytes more than 16 past
// the request are not checked, and a write that skips the window is found
// only when it reaches the trailer or the next slot (see "Neighbours").
// The window is one store at malloc and one compare under a mask at free,
// with no branch on n: filling and comparing the whole slack (up to
// 4 KiB) mispredicted a branch or two per malloc and per free wherever
// sizes vary (callgrind's branch simulation, larson 8-1000 B: 3.0
// mispredicted branches per operation, 1.55 with the window), and the
// window runs larson at 1.41x, glibc_thread at 1.29x, shbench 64 B-4 KiB
// at 1.34x and mstress at 1.12x the speed of the whole-slack canary (one
// thread; mstress two; 3 interleaved runs, medians), python3 with every
// object through malloc 1% faster. The requested size costs no metadata:
// it lives in the trailer. Free, realloc and UsableSize decode n from T; a
// decoded n beyond the class means that T itself was overwritten (a forged
// T passes only if it names n' <= the class size, and then the window from
// n' must still match the pattern). UsableSize is n: everything past it is
// the canary's. Large blocks need no trailer: the large allocator keeps
// the requested size (LargeRequestedSize), the pattern fills up to
// kMaxPatternBytes of [n, the page boundary), and the guard page below
// catches what lands further. A difference aborts with one line naming the
// pointer, its size class and the first bad offset.
//
// Neighbours (writes before a block, or past a block's end into the next
// one). Every slab slot's last word is 0 (never handed out since its page
// was laid out: fresh and uncommitted pages are zero, and a page that
// another class's layout left data in has its slots' last words zeroed,
// SlabClass::Options::zero_object_tails) or the trailer its block was
// last given: a freed block keeps its trailer (the quarantine's pattern
// stops before it) until the slot is handed out again and gets a new one.
// So free and realloc also decode the trailers of the slots on either side
// of the block (the one ending just before it and the next one's): a value
// that is neither 0 nor a trailer naming a size that fits aborts ("heap
// corruption", naming both blocks). This catches a write of a few bytes
// before a block (an underflow lands in the previous slot's trailer) and
// an overflow that skips the canary into the next slot, at the free of
// the block next to the damage rather than of the damaged one. Trailers
// are written and read as whole words (relaxed atomics), since a
// neighbour may be handed out by another thread meanwhile: the check sees
// the old trailer or the new one, never a mix. The first and the last
// slot of a slab have neighbours too: the hardened layout keeps a guard
// word before object 0, past the slab's bit-set, and one after the last
// object (ComputeMetadata's guard_bytes), always 0 (no slot's trailer).
// Not covered: writes that restore the trailer they cross.
//
// Randomised allocation order. A refill of a thread's magazine (a quarter
// of its capacity from the claimed slab, in address order) is shuffled
// with the thread's PRNG (wyrand, seeded from the per-process secret and the
// thread's TLS address) in windows of kShuffleWindow (16) objects: the
// order within each window is random, the windows follow each other in
// address order. Which block the next malloc returns cannot be predicted
// from the previous one beyond its window (1 of up to 16; a block lands
// right after a given one about one time in 16), and blocks allocated one
// after the other lie within two windows of each other (without the
// shuffle they would be neighbours). Shuffling the whole refill (up to 256
// objects of 64 B, 16 KiB) scattered the blocks a program allocates
// together over as many lines and pages: Debian's python3 with every
// object through malloc (the harness's script) took 1.14 s of CPU
// (medians of 7) against 1.03 s without any shuffle, 1.08 s with windows
// of 16 and 1.03 s with windows of 8; threadtest with 64-byte blocks runs
// 10% faster with windows of 16, the other single-thread rows within the
// noise. mimalloc's secure mode likewise randomises only within each
// extension of a page's free list, at most 4 KiB of objects.
//
// No pointers in freed blocks. No allocator structure keeps a pointer
// inside a freed block, in any build: magazines are stacks of their own,
// slabs bit-sets, and the quarantine below a ring in a mapping of its
// thread's. A write after free therefore cannot redirect a later
// allocation (the attack that glibc's safe-linking and mimalloc's encoded
// free lists make harder): all it can change is bytes the quarantine
// checks. The ring's entries are encoded too, (block | class << 48) xor a
// per-process key, so that a stray write into the ring decodes to a class
// beyond the table (and aborts, "corrupted quarantine entry") with
// probability 1 - 2^-10, rather than to an address of the writer's choice.
//
// Quarantine (delayed reuse). A freed slab block does not go to the
// magazine at once: it enters the thread's FIFO (at most quarantine_blocks
// blocks and quarantine_bytes bytes, options.h), its first word the free
// mark (double frees are still caught while it waits), the rest up to its
// trailer (and at most kMaxPatternBytes) the freed pattern. When the FIFO
// would go over either bound, its oldest blocks leave first: mark and
// pattern are checked (a difference: "write after free", with the offset)
// and they go to the magazine. Each quarantined free also checks the mark
// of the block freed just before it, so that a write through a pointer
// that has just dangled is found at the next free. Blocks bigger than
// quarantine_bytes skip it. The FIFO is a ring of
// bit_ceil(quarantine_blocks) encoded entries, mapped (mmap_alloc) at the
// thread's first quarantined free: intrusive links through the blocks'
// second words, encoded and checked, took 6% more instructions per
// malloc/free pair (469 against 441 for blocks of 32 bytes, callgrind).
// Threads without a heap (initialising, exiting) and signal handlers
// inside the thread's own malloc or free (HardenedSection) skip it; at
// thread exit and in MarkThreadIdle the thread's quarantine is emptied
// into its heap through SetThreadHeapReleaseHook and its ring unmapped,
// and ReleaseFreeMemory empties the caller's. A write after free is
// therefore caught when the block leaves the quarantine, not when it
// happens, and only while it stays there.
//
// Guard pages (large blocks, above 256 KiB). A request of n bytes maps
// n + one page through the large allocator; the page after
// round_up(n, page) is made inaccessible (mmap_alloc::Guard: the kernel's
// guard markers, which neither split the mapping nor take its lock for
// writing; mprotect on kernels before 6.13) and accessible again before
// the block goes back to LargeFree or LargeRealloc (a cached region must
// be whole, and mremap refuses ranges of mixed protections). An access
// that crosses it faults at once, and the fault is reported like every
// other misuse: InitHardening installs a SIGSEGV handler
// (InstallFaultHandler, platform.h; not when the program has one of its
// own) that finds the large block around the faulting address
// (LargeBlockContaining) and, if the address is in that block's guard
// page, aborts with one line naming the address, the block and its
// requested size. Any other fault goes on to the previous disposition.
//
// Not hardened: the large allocator's header (before the block) and the
// fallback allocator's frees (no quarantine); the secrets are as good as
// the kernel's random bytes (AT_RANDOM and the heap's address if
// getrandom fails); a program that reads a freed block can learn the free
// key of the double-free mark, which protects nothing else here.
#if defined(ELFMALLOC_HARDENED)

constexpr std::size_t kWord = sizeof(std::uint64_t);
// The most canary pattern written after the requested size of a large
// block, and of freed pattern in a quarantined block: overflows and writes
// after free start at a block's edges, and patterning a whole 256 KiB
// block would cost 256 KiB of writes and compares per allocation and per
// free.
constexpr std::size_t kMaxPatternBytes = 4096;
// Links hold user-space addresses below 2^48 (x86-64 and AArch64 with
// 48-bit virtual addresses; Linux hands out higher ones only on request).
constexpr unsigned kAddressBits = 48;
constexpr std::uint64_t kAddressMask = (std::uint64_t{1} << kAddressBits) - 1;

// The per-process secrets; set once by InitHardening before the heap is
// published (no block exists before then), read-only afterwards.
struct HardeningKeys {
  std::uint64_t trailer;   // xor'ed into canary trailers
  std::uint64_t ring;      // xor'ed into quarantine entries
  std::uint64_t rng;       // seeds the per-thread PRNGs
};
ABSL_CONST_INIT HardeningKeys g_hkeys = {};
// The canary pattern and the quarantine's freed pattern, each a keyed
// 64-bit word with no zero byte (so that an off-by-one string terminator
// is caught) repeated: byte a % 8 of the word belongs at address a, so the
// bytes for [a, a + len) are pattern[(a % 8) .. (a % 8) + len) and filling
// or checking them is one memcpy or memcmp (glibc's vector loops: the
// pattern costs a few instructions per 32 bytes, not per byte). Written
// once by InitHardening.
constexpr std::size_t kPatternBufferBytes = kMaxPatternBytes + kWord;
alignas(64) ABSL_CONST_INIT char g_canary_pattern[kPatternBufferBytes] = {};
alignas(64) ABSL_CONST_INIT char g_freed_pattern[kPatternBufferBytes] = {};
// The quarantine's bounds (options.h), read once with the keys.
ABSL_CONST_INIT std::size_t g_quarantine_max_bytes = 0;
ABSL_CONST_INIT std::size_t g_quarantine_max_blocks = 0;
// The quarantine ring's entries minus one (its size is a power of two, at
// least g_quarantine_max_blocks).
ABSL_CONST_INIT std::size_t g_quarantine_ring_mask = 0;

std::uint64_t SplitMix64(std::uint64_t* s) {
  std::uint64_t z = (*s += 0x9E3779B97F4A7C15ull);
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}

std::uint64_t NoZeroByte(std::uint64_t x) {
  for (unsigned i = 0; i < 64; i += 8) {
    if (((x >> i) & 0xff) == 0) x |= std::uint64_t{0xA5} << i;
  }
  return x;
}

void InitHardening() {
  std::uint64_t seed[2] = {};
  if (!RandomBytes(seed, sizeof(seed))) {
    // No getrandom: the free key (AT_RANDOM) and the clock.
    seed[0] = g_free_key ^ reinterpret_cast<std::uintptr_t>(&seed);
    seed[1] = CoarseMonotonicMs() ^ reinterpret_cast<std::uintptr_t>(&g_hkeys);
  }
  std::uint64_t s = seed[0];
  g_hkeys.trailer = SplitMix64(&s);
  const std::uint64_t canary = NoZeroByte(SplitMix64(&s));
  const std::uint64_t freed = NoZeroByte(SplitMix64(&s));
  for (std::size_t i = 0; i < kPatternBufferBytes; i += kWord) {
    std::memcpy(g_canary_pattern + i, &canary, kWord);
    std::memcpy(g_freed_pattern + i, &freed, kWord);
  }
  g_hkeys.ring = SplitMix64(&s);
  g_hkeys.rng = seed[1];
  g_quarantine_max_bytes =
      static_cast<std::size_t>(GetOption(OptionId::kQuarantineBytes));
  g_quarantine_max_blocks =
      static_cast<std::size_t>(GetOption(OptionId::kQuarantineBlocks));
  g_quarantine_ring_mask =
      absl::bit_ceil(g_quarantine_max_blocks > 0 ? g_quarantine_max_blocks
                                                 : std::size_t{1}) -
      1;
}

// ---- Patterns (see g_canary_pattern) ----

// Ranges up to kInlinePatternBytes are filled and compared inline, in
// 16-byte chunks (overlapping at the end: the pattern is periodic, so the
// bytes for any address start at pattern + (address % 8)), below 16 bytes
// in words, halves or bytes; longer ones go to glibc's vectorised memcpy /
// memcmp. Most canaries (the slack after a request, a few to a few dozen
// bytes) and the freed pattern of small blocks are short, and there the
// call, its dispatch and its length checks cost more than the bytes:
// inline words cut the hardened build's instructions per operation by 6%
// in glibc_thread (598 -> 560) and 4% in shbench 8-64 B (840 -> 806), by
// 1-2% in the rows of bigger blocks; chunks instead of words cut them by
// another 8% for 64-byte blocks (threadtest: 524 -> 484) and 2-3% in
// shbench 8-64 B, the malloc/free pair and glibc_thread (callgrind,
// tools/harness.py --instructions), with no throughput change beyond the
// noise (7 rows, medians of 5: -3% .. +4%). Inline chunks up to 256 bytes
// cost more than glibc's calls (threadtest 2 KiB 1326 -> 1443).
constexpr std::size_t kInlinePatternBytes = 64;

template <typename T>
inline T LoadUnaligned(const char* p) {
  T v;
  std::memcpy(&v, p, sizeof(T));
  return v;
}
template <typename T>
inline void StoreUnaligned(char* p, T v) {
  std::memcpy(p, &v, sizeof(T));
}

// 16 bytes, the lanes of the inline loops below: SSE2's width, which every
// x86-64 CPU has (GCC's and Clang's vector extensions lower it to pairs of
// words where it is missing). With words, the loops were most of the
// hardened build's instructions on small blocks; see kInlinePatternBytes.
using Chunk = std::uint64_t __attribute__((vector_size(16)));
constexpr std::size_t kChunk = sizeof(Chunk);

// Copies [src, src + len) to dst for len <= kInlinePatternBytes, in
// overlapping chunks, words, halves, quarters or one byte.
ABSL_ATTRIBUTE_ALWAYS_INLINE inline void CopyShort(char* dst, const char* src,
                                                   std::size_t len) {
  if (len >= kChunk) {
    for (std::size_t i = 0; i + kChunk < len; i += kChunk) {
      StoreUnaligned(dst + i, LoadUnaligned<Chunk>(src + i));
    }
    StoreUnaligned(dst + len - kChunk, LoadUnaligned<Chunk>(src + len - kChunk));
  } else if (len >= kWord) {
    StoreUnaligned(dst, LoadUnaligned<std::uint64_t>(src));
    StoreUnaligned(dst + len - kWord,
                   LoadUnaligned<std::uint64_t>(src + len - kWord));
  } else if (len >= 4) {
    StoreUnaligned(dst, LoadUnaligned<std::uint32_t>(src));
    StoreUnaligned(dst + len - 4, LoadUnaligned<std::uint32_t>(src + len - 4));
  } else if (len >= 2) {
    StoreUnaligned(dst, LoadUnaligned<std::uint16_t>(src));
    StoreUnaligned(dst + len - 2, LoadUnaligned<std::uint16_t>(src + len - 2));
  } else if (len == 1) {
    *dst = *src;
  }
}

// Whether [a, a + len) and [b, b + len) differ, for len <=
// kInlinePatternBytes (the differences of all chunks or'ed, one branch).
ABSL_ATTRIBUTE_ALWAYS_INLINE inline bool DiffersShort(const char* a,
                                                      const char* b,
                                                      std::size_t len) {
  if (len >= kChunk) {
    Chunk d = {0, 0};
    for (std::size_t i = 0; i + kChunk < len; i += kChunk) {
      d |= LoadUnaligned<Chunk>(a + i) ^ LoadUnaligned<Chunk>(b + i);
    }
    d |= LoadUnaligned<Chunk>(a + len - kChunk) ^
         LoadUnaligned<Chunk>(b + len - kChunk);
    return (d[0] | d[1]) != 0;
  }
  std::uint64_t d = 0;
  if (len >= kWord) {
    d = (LoadUnaligned<std::uint64_t>(a) ^ LoadUnaligned<std::uint64_t>(b)) |
        (LoadUnaligned<std::uint64_t>(a + len - kWord) ^
         LoadUnaligned<std::uint64_t>(b + len - kWord));
  } else if (len >= 4) {
    d = (LoadUnaligned<std::uint32_t>(a) ^ LoadUnaligned<std::uint32_t>(b)) |
        (LoadUnaligned<std::uint32_t>(a + len - 4) ^
         LoadUnaligned<std::uint32_t>(b + len - 4));
  } else if (len >= 2) {
    d = static_cast<std::uint16_t>(LoadUnaligned<std::uint16_t>(a) ^
                                   LoadUnaligned<std::uint16_t>(b)) |
        static_cast<std::uint16_t>(LoadUnaligned<std::uint16_t>(a + len - 2) ^
                                   LoadUnaligned<std::uint16_t>(b + len - 2));
  } else if (len == 1) {
    d = static_cast<unsigned char>(*a ^ *b);
  }
  return d != 0;
}

// The C library's memcpy, called by its symbol: std::memcpy of a length
// GCC cannot see is expanded inline here as `rep movsq`, whose start-up
// costs more than glibc's vector copy for the freed pattern of a block of
// a few hundred bytes (A/B of 5 interleaved runs, the hardened build:
// larson 8-1000 B 10% faster with the call, glibc_thread and the
// malloc/free pair 4%, threadtest 2 KiB 2%, threadtest 64 B unchanged).
extern "C" void* LibcMemcpy(void* dst, const void* src,
                            std::size_t n) __asm__("memcpy");

// The bytes of `pattern` (a pattern buffer, see g_canary_pattern) that
// belong at address a and after it.
inline const char* PatternAt(const char* pattern, const void* a) {
  return pattern + (reinterpret_cast<std::uintptr_t>(a) & 7);
}

// Writes `pattern` over [from, to), at most kMaxPatternBytes.
ABSL_ATTRIBUTE_ALWAYS_INLINE inline void FillPattern(char* from, char* to,
                                                     const char* pattern) {
  const char* src = PatternAt(pattern, from);
  const std::size_t len = static_cast<std::size_t>(to - from);
  if (ABSL_PREDICT_TRUE(len <= kInlinePatternBytes)) {
    CopyShort(from, src, len);
  } else {
    LibcMemcpy(from, src, len);
  }
}

// The first byte of [from, to) that differs from expected (they differ).
ABSL_ATTRIBUTE_NOINLINE const char* FirstMismatch(const char* from,
                                                  const char* expected) {
  for (std::size_t i = 0;; ++i) {
    if (from[i] != expected[i]) return from + i;
  }
}

// Whether [from, to) (at most kMaxPatternBytes) differs from `pattern`.
ABSL_ATTRIBUTE_ALWAYS_INLINE inline bool PatternDiffers(const char* from,
                                                        const char* to,
                                                        const char* pattern) {
  const char* expected = PatternAt(pattern, from);
  const std::size_t len = static_cast<std::size_t>(to - from);
  return ABSL_PREDICT_TRUE(len <= kInlinePatternBytes)
             ? DiffersShort(from, expected, len)
             : std::memcmp(from, expected, len) != 0;
}

// The first byte of [from, to) (at most kMaxPatternBytes) that is not
// `pattern`, or nullptr.
ABSL_ATTRIBUTE_ALWAYS_INLINE inline const char* FindPatternMismatch(
    const char* from, const char* to, const char* pattern) {
  if (ABSL_PREDICT_TRUE(!PatternDiffers(from, to, pattern))) return nullptr;
  return FirstMismatch(from, PatternAt(pattern, from));
}

// ---- Canaries ----

// A request of n bytes fits a slab block with its trailer.
inline bool IsHardenedSlabSize(std::size_t n) {
  return n <= kMaxSlabObjectSize - kWord;
}
inline std::size_t Footprint(std::size_t n) {
  return (n < kWord ? kWord : n) + kWord;
}
inline std::uint64_t* TrailerOf(const void* p, std::size_t class_size) {
  return reinterpret_cast<std::uint64_t*>(
      const_cast<char*>(static_cast<const char*>(p)) + class_size - kWord);
}
inline std::uint64_t TrailerValue(const std::uint64_t* t, std::size_t n) {
  return g_hkeys.trailer ^ reinterpret_cast<std::uintptr_t>(t) ^ n;
}
// The end of the canary pattern of a block whose requested size ends at
// `user_end` and whose pattern may reach `limit`.
inline char* PatternEnd(char* user_end, char* limit) {
  return limit - user_end > static_cast<std::ptrdiff_t>(kMaxPatternBytes)
             ? user_end + kMaxPatternBytes
             : limit;
}

// Trailers are whole-word relaxed atomics (see "Neighbours").
inline std::uint64_t LoadTrailer(const std::uint64_t* t) {
  return std::atomic_ref<const std::uint64_t>(*t).load(
      std::memory_order_relaxed);
}
inline void StoreTrailer(std::uint64_t* t, std::uint64_t v) {
  std::atomic_ref<std::uint64_t>(*t).store(v, std::memory_order_relaxed);
}

// ---- The canary window of slab blocks (see "Canaries") ----

// The canary of a slab block is the window of kCanaryWindow bytes from its
// requested size on, cut to its slack [n, class size - 8). Every class up
// to 256 bytes is 16 bytes from the next, so there the window is the whole
// slack.
constexpr std::size_t kCanaryWindow = 16;
static_assert(kCanaryWindow == kChunk, "the window is one chunk");
// The smallest class whose window fits between the block's start and its
// trailer; only the 16-byte class is smaller (its slack lies in its first
// word).
constexpr std::size_t kMinWindowClass = kCanaryWindow + kWord;

// The masks that cut a window to the slack: entry k has bytes k..15 set
// (k <= 16). Little-endian: byte k of a chunk is bits 8k..8k+7 of its
// words.
static_assert(std::endian::native == std::endian::little,
              "the canary masks assume little-endian byte order");
struct alignas(16) ByteMask {
  std::uint64_t lo;
  std::uint64_t hi;
};
constexpr ByteMask MaskFromByte(std::size_t k) {
  constexpr std::uint64_t kAll = ~std::uint64_t{0};
  return {k >= 8 ? 0 : kAll << (8 * k),
          k >= 16 ? 0 : (k <= 8 ? kAll : kAll << (8 * (k - 8)))};
}
constexpr std::array<ByteMask, kCanaryWindow + 1> kMaskFromByte = [] {
  std::array<ByteMask, kCanaryWindow + 1> masks{};
  for (std::size_t k = 0; k <= kCanaryWindow; ++k) masks[k] = MaskFromByte(k);
  return masks;
}();
static_assert(kMaskFromByte[0].lo == ~std::uint64_t{0} &&
              kMaskFromByte[9].lo == 0 &&
              kMaskFromByte[9].hi == ~std::uint64_t{0} << 8 &&
              kMaskFromByte[16].hi == 0);
inline Chunk MaskFrom(std::size_t k) {
  return LoadUnaligned<Chunk>(
      reinterpret_cast<const char*>(&kMaskFromByte[k]));
}
// The canary pattern's bytes for the chunk or word at w.
inline Chunk CanaryChunk(const char* w) {
  return LoadUnaligned<Chunk>(PatternAt(g_canary_pattern, w));
}
inline std::uint64_t CanaryWord(const char* w) {
  return LoadUnaligned<std::uint64_t>(PatternAt(g_canary_pattern, w));
}
// Where the window of a block of requested size n starts in a class of
// `size` >= kMinWindowClass bytes: at n, or, when the slack is shorter
// than the window, where a window ending at the trailer starts (the bytes
// below n in it are the program's; the masks leave them out).
inline std::size_t CanaryWindowAt(std::size_t n, std::size_t size) {
  const std::size_t last = size - kWord - kCanaryWindow;
  return n < last ? n : last;
}
// The end (offset) of the canary of a block of requested size n in a
// class of `size` bytes.
inline std::size_t CanaryEnd(std::size_t n, std::size_t size) {
  return size >= kMinWindowClass ? CanaryWindowAt(n, size) + kCanaryWindow
                                 : kWord;
}

// Writes the canary and the trailer of slab block p of class c, handed out
// for n bytes: one store of a whole pattern chunk (or word), which may
// cover bytes below n as well, since none of them is the program's yet
// (calloc clears [0, n) after it); no branch on n (see "Canaries").
ABSL_ATTRIBUTE_ALWAYS_INLINE inline void SetSlabCanary(void* p, SizeClass c,
                                                       std::size_t n) {
  const std::size_t size = ClassSize(c);
  char* b = static_cast<char*>(p);
  if (ABSL_PREDICT_TRUE(size >= kMinWindowClass)) {
    char* w = b + CanaryWindowAt(n, size);
    StoreUnaligned(w, CanaryChunk(w));
  } else {
    StoreUnaligned(b, CanaryWord(b));
  }
  std::uint64_t* t = TrailerOf(p, size);
  StoreTrailer(t, TrailerValue(t, n));
}

// SetSlabCanary for a live block that realloc resizes in place: the
// program's bytes below n are kept (the pattern is blended in under the
// mask).
void ResetSlabCanary(void* p, SizeClass c, std::size_t n) {
  const std::size_t size = ClassSize(c);
  char* b = static_cast<char*>(p);
  if (size >= kMinWindowClass) {
    const std::size_t at = CanaryWindowAt(n, size);
    char* w = b + at;
    const Chunk m = MaskFrom(n - at);
    StoreUnaligned(w, (LoadUnaligned<Chunk>(w) & ~m) | (CanaryChunk(w) & m));
  } else {
    const std::uint64_t m = kMaskFromByte[n].lo;
    StoreUnaligned(
        b, (LoadUnaligned<std::uint64_t>(b) & ~m) | (CanaryWord(b) & m));
  }
  std::uint64_t* t = TrailerOf(p, size);
  StoreTrailer(t, TrailerValue(t, n));
}

[[noreturn]] ABSL_ATTRIBUTE_NOINLINE ABSL_ATTRIBUTE_COLD void
DieNeighbourOverwritten(const void* p, SizeClass c, const void* neighbour,
                        bool before) {
  if (neighbour == nullptr) {  // the slab's guard word (see "Neighbours")
    ABSL_RAW_LOG(FATAL,
                 "elfmalloc: heap corruption: the guard word %s %p, the %s "
                 "block of its slab (size class %u: %zu-byte blocks), was "
                 "overwritten: a write %s",
                 before ? "before" : "after", p, before ? "first" : "last",
                 static_cast<unsigned>(c.index()), ClassSize(c),
                 before ? "before the start of the block"
                        : "past the end of the block, skipping its canary");
  }
  ABSL_RAW_LOG(FATAL,
               "elfmalloc: heap corruption: the canary at the end of %p, the "
               "block %s %p (size class %u: %zu-byte blocks), was "
               "overwritten: a write %s",
               neighbour, before ? "before" : "after", p,
               static_cast<unsigned>(c.index()), ClassSize(c),
               before ? "before the start of the later block, or past the "
                        "end of the earlier one"
                      : "past the end of the earlier block into the later "
                        "one, or into the later one's end");
  std::abort();
}

[[noreturn]] ABSL_ATTRIBUTE_NOINLINE ABSL_ATTRIBUTE_COLD void DieOverflow(
    const void* p, SizeClass c, std::size_t n, const char* bad) {
  ABSL_RAW_LOG(FATAL,
               "elfmalloc: heap overflow: %p (size class %u: %zu-byte "
               "blocks) was written past its %zu requested bytes, at offset "
               "%zu",
               p, static_cast<unsigned>(c.index()), ClassSize(c), n,
               static_cast<std::size_t>(bad - static_cast<const char*>(p)));
  std::abort();  // not reached: FATAL aborts
}

[[noreturn]] ABSL_ATTRIBUTE_NOINLINE ABSL_ATTRIBUTE_COLD void
DieTrailerOverwritten(const void* p, SizeClass c) {
  ABSL_RAW_LOG(FATAL,
               "elfmalloc: heap overflow: the canary at the end of %p (size "
               "class %u: %zu-byte blocks) was overwritten",
               p, static_cast<unsigned>(c.index()), ClassSize(c));
  std::abort();
}

// Slab block p of class c, whose requested size is n, has a canary that
// differs from the pattern: aborts naming the first bad offset (found
// here, out of line, so that the check keeps no frame for it).
[[noreturn]] ABSL_ATTRIBUTE_NOINLINE ABSL_ATTRIBUTE_COLD void DieCanaryDiffers(
    const void* p, SizeClass c, std::size_t n) {
  char* b = const_cast<char*>(static_cast<const char*>(p));
  char* user_end = b + n;
  const char* bad = FindPatternMismatch(
      user_end, b + CanaryEnd(n, ClassSize(c)), g_canary_pattern);
  DieOverflow(p, c, n, bad == nullptr ? user_end : bad);
}

// The requested size of live slab block p of class c, after checking its
// canary (aborts if it was overwritten). Inlined with the other checks of
// a free: as calls, each saved and restored five registers for its failure
// paths.
ABSL_ATTRIBUTE_ALWAYS_INLINE inline std::size_t CheckSlabCanary(
    const void* p, SizeClass c) {
  const std::size_t size = ClassSize(c);
  const std::uint64_t* t = TrailerOf(p, size);
  const std::uint64_t n = LoadTrailer(t) ^ TrailerValue(t, 0);
  if (ABSL_PREDICT_FALSE(n > size - kWord)) DieTrailerOverwritten(p, c);
  const char* b = static_cast<const char*>(p);
  bool differs;
  if (ABSL_PREDICT_TRUE(size >= kMinWindowClass)) {
    const std::size_t at = CanaryWindowAt(n, size);
    const char* w = b + at;
    const Chunk d =
        (LoadUnaligned<Chunk>(w) ^ CanaryChunk(w)) & MaskFrom(n - at);
    differs = (d[0] | d[1]) != 0;
  } else {
    differs = ((LoadUnaligned<std::uint64_t>(b) ^ CanaryWord(b)) &
               kMaskFromByte[n].lo) != 0;
  }
  if (ABSL_PREDICT_FALSE(differs)) DieCanaryDiffers(p, c, n);
  return n;
}

// ---- Guard pages and canaries of large blocks ----

// The requested size of large block p (mapped for n + one page).
inline std::size_t LargeRequest(const void* p) {
  return LargeRequestedSize(p) - mmap_alloc::PageSize();
}
inline char* GuardPageOf(void* p, std::size_t n) {
  const std::size_t page = mmap_alloc::PageSize();
  return static_cast<char*>(p) + ((n + page - 1) & ~(page - 1));
}

// Fills large block p's canary (to the page boundary after its n bytes) and
// makes the page after that inaccessible.
void GuardLarge(void* p, std::size_t n) {
  char* guard = GuardPageOf(p, n);
  char* user_end = static_cast<char*>(p) + n;
  FillPattern(user_end, PatternEnd(user_end, guard), g_canary_pattern);
  // A failure (the kernel's limit on mappings, with the mprotect fallback)
  // leaves the block unguarded, as an allocation that cannot get a guard
  // page is better than none.
  mmap_alloc::Guard(guard, mmap_alloc::PageSize());
}

// Checks large block p's canary and makes its guard page accessible again;
// returns its requested size.
std::size_t UnguardLarge(void* p) {
  const std::size_t n = LargeRequest(p);
  char* guard = GuardPageOf(p, n);
  char* user_end = static_cast<char*>(p) + n;
  if (const char* bad = FindPatternMismatch(
          user_end, PatternEnd(user_end, guard), g_canary_pattern)) {
    ABSL_RAW_LOG(FATAL,
                 "elfmalloc: heap overflow: %p (a large block) was written "
                 "past its %zu requested bytes, at offset %zu",
                 p, n, static_cast<std::size_t>(bad - static_cast<char*>(p)));
  }
  if (!mmap_alloc::Unguard(guard, mmap_alloc::PageSize())) {
    ABSL_RAW_LOG(FATAL,
                 "elfmalloc: cannot unprotect the guard page of %p; the "
                 "region cannot be reused",
                 p);
  }
  return n;
}

// The SIGSEGV hook (see "Guard pages"): signal context, so nothing here
// locks or allocates (raw logging writes with one system call).
void ReportGuardPageFault(void* addr) {
  void* p = LargeBlockContaining(addr);
  if (p == nullptr) return;
  const std::size_t n = LargeRequest(p);
  const char* guard = GuardPageOf(p, n);
  const char* a = static_cast<const char*>(addr);
  if (a < guard || a >= guard + mmap_alloc::PageSize()) return;
  ABSL_RAW_LOG(FATAL,
               "elfmalloc: heap overflow: an access at %p went past the end "
               "of %p (a large block of %zu requested bytes) into its guard "
               "page, %zu bytes past the requested size",
               addr, p, n,
               static_cast<std::size_t>(a - static_cast<const char*>(p)) - n);
}

void* HardenedAllocLarge(std::size_t n, std::size_t align, LargeKind kind) {
  // The guard page's room; beyond half the address space nothing fits.
  if (n > (std::numeric_limits<std::size_t>::max)() / 2) {
    errno = ENOMEM;
    return nullptr;
  }
  void* p = AllocLarge(n + mmap_alloc::PageSize(), align, kind);
  if (p != nullptr) GuardLarge(p, n);
  return p;
}

void* HardenedLargeRealloc(void* p, std::size_t n) {
  if (n > (std::numeric_limits<std::size_t>::max)() / 2) {
    errno = ENOMEM;
    return nullptr;
  }
  const std::size_t old = UnguardLarge(p);
  void* q = LargeRealloc(p, n + mmap_alloc::PageSize());
  if (q == nullptr) {
    GuardLarge(p, old);  // p is still the caller's
    return nullptr;
  }
  GuardLarge(q, n);
  return q;
}

// ---- The per-thread state: quarantine and PRNG ----

// The thread's quarantine (see "Quarantine"): a ring of encoded entries,
// the oldest at `head`, and its PRNG. Owned by its thread; trivially
// destructible (the release hook empties the ring and unmaps it).
struct HardenedThreadState {
  std::uint64_t* ring;  // g_quarantine_ring_mask + 1 entries, or nullptr
  std::size_t head;     // index of the oldest entry
  // The block of the newest entry, while blocks > 0. Derivable from the
  // ring, but decoding it there took 7 more instructions per malloc/free
  // pair than keeping it (callgrind).
  void* newest;
  bool busy;            // inside a HardenedSection (see there)
  // A handler's free went to the thread heap's stash since the outermost
  // section last drained it (see HardenedSection): a hint on the line the
  // section reads anyway (testing the heap's own flag, a load of the heap
  // and of the flag at each section's end, cost 6 more instructions per
  // malloc/free pair, callgrind).
  bool stashed;
  std::size_t blocks;   // entries held
  std::size_t bytes;    // the class sizes of the blocks held
  std::uint64_t rng;    // wyrand state; 0 until the first use
};
ABSL_CONST_INIT thread_local HardenedThreadState tls_hardened
    __attribute__((tls_model("initial-exec"))) = {};

std::uint64_t NextRandom(std::uint64_t* s) {
  if (ABSL_PREDICT_FALSE(*s == 0)) {
    std::uint64_t seed = g_hkeys.rng ^ reinterpret_cast<std::uintptr_t>(s);
    *s = SplitMix64(&seed) | 1;
  }
  *s += 0xA0761D6478BD642Full;
  const unsigned __int128 m =
      static_cast<unsigned __int128>(*s) * (*s ^ 0xE7037ED1A0B428DBull);
  return static_cast<std::uint64_t>(m >> 64) ^ static_cast<std::uint64_t>(m);
}
// Uniform in [0, n) (Lemire's multiply-shift; the bias is below 2^-50 for
// magazine sizes).
std::size_t RandomBelow(std::uint64_t* s, std::size_t n) {
  return static_cast<std::size_t>(
      (static_cast<unsigned __int128>(NextRandom(s)) * n) >> 64);
}

// The objects a refill's shuffle permutes among themselves (see "Randomised
// allocation order").
constexpr std::size_t kShuffleWindow = 16;

// Fisher-Yates over objs[0, n).
void Shuffle(void** objs, std::size_t n, std::uint64_t* rng) {
  for (std::size_t i = n; i > 1; --i) {
    std::swap(objs[i - 1], objs[RandomBelow(rng, i)]);
  }
}

// *p was just taken from a magazine that a refill filled: shuffles the
// refill window by window, from the top of the stack (the next pops) down;
// *p belongs to the top window and may be swapped with one of its objects.
void ShuffleRefill(ThreadHeap* th, SizeClass c, void** p) {
  MagazineCache& m = th->Cache(c);
  const std::size_t n = m.cached();
  void** objs = m.cached_objects();
  std::uint64_t* rng = &tls_hardened.rng;
  constexpr std::size_t w = kShuffleWindow;
  std::size_t lo = n > w - 1 ? n - (w - 1) : 0;
  const std::size_t j = RandomBelow(rng, n - lo + 1);
  if (j < n - lo) std::swap(*p, objs[lo + j]);
  Shuffle(objs + lo, n - lo, rng);
  while (lo > 0) {
    const std::size_t hi = lo;
    lo = hi > w ? hi - w : 0;
    Shuffle(objs + lo, hi - lo, rng);
  }
}

// The trailers of the slots next to slab block p of class c (see
// "Neighbours"); m is the class's layout.
ABSL_ATTRIBUTE_ALWAYS_INLINE inline void CheckNeighbourTrailers(
    const void* p, SizeClass c, const SlabMetadata& m) {
  const std::size_t size = m.object_size;
  const std::uintptr_t a = reinterpret_cast<std::uintptr_t>(p);
  const std::uintptr_t first =
      (a & ~(std::uintptr_t{m.page_size} - 1)) + m.objects_offset;
  const std::uintptr_t last = first + (m.n_objects - 1) * size;
  auto valid = [size](const std::uint64_t* t) {
    const std::uint64_t v = LoadTrailer(t);
    return v == 0 || (v ^ TrailerValue(t, 0)) <= size - kWord;
  };
  // The first object's previous trailer is the guard word the layout
  // keeps before it, the last object's next one the guard word after it
  // (ComputeMetadata's guard_bytes), both always 0.
  const auto* before = reinterpret_cast<const std::uint64_t*>(a - kWord);
  if (ABSL_PREDICT_FALSE(!valid(before))) {
    DieNeighbourOverwritten(
        p, c, a > first ? reinterpret_cast<const void*>(a - size) : nullptr,
        true);
  }
  const auto* after = reinterpret_cast<const std::uint64_t*>(
      a < last ? a + 2 * size - kWord : a + size);
  if (ABSL_PREDICT_FALSE(!valid(after))) {
    DieNeighbourOverwritten(
        p, c, a < last ? reinterpret_cast<const void*>(a + size) : nullptr,
        false);
  }
}

// The hardened build's checks of slab block p of class c at free and
// realloc (`op`): an object start of its class (the checked build's
// test), its canary and its neighbours' trailers, from one lookup of the
// class's layout. Returns its requested size.
ABSL_ATTRIBUTE_ALWAYS_INLINE inline std::size_t CheckHardenedSlabBlock(
    const void* p, SizeClass c, const char* op) {
  if (ABSL_PREDICT_FALSE(!IsObjectStart(p, c))) DieNotObjectStart(p, c, op);
  const std::size_t n = CheckSlabCanary(p, c);
  CheckNeighbourTrailers(p, c, kClassLayouts[c.index()]);
  return n;
}

// ---- The quarantine ----

// The part of a hardened malloc or free that works on the thread's
// magazines and quarantine. A signal handler that interrupts it finds its
// ring, its magazines and its slab allocators mid-update (a refill half
// written, a shuffle half done, a flush half sent), so a handler's malloc
// and free inside a section (nested()) touch none of them: they go through
// the thread heap's handler stash (thread_cache.h, "Signal handlers": a
// handler that frees and then allocates gets its own blocks back; else the
// class's fallback allocator if its lock is free; else ENOMEM), which the
// outermost section hands to the magazines when it ends. Through the
// magazines, a handler freeing and reallocating 8 blocks every 20 us
// corrupted a refill once in 20-40 runs of 20,000 interruptions (a block
// handed out twice, reported as a double free); through the quarantine,
// within a few thousand. Signal fences keep the flag's stores on their
// side of the work (the handler runs on this thread).
class HardenedSection {
 public:
  HardenedSection() noexcept : outer_(tls_hardened.busy) {
    tls_hardened.busy = true;
    std::atomic_signal_fence(std::memory_order_seq_cst);
  }
  ~HardenedSection() {
    std::atomic_signal_fence(std::memory_order_seq_cst);
    if (!outer_ && ABSL_PREDICT_FALSE(tls_hardened.stashed)) {
      tls_hardened.stashed = false;
      std::atomic_signal_fence(std::memory_order_seq_cst);
      if (ThreadHeap* th = CurrentThreadHeap()) th->DrainHandlerStash();
    }
    tls_hardened.busy = outer_;
  }
  HardenedSection(const HardenedSection&) = delete;
  HardenedSection& operator=(const HardenedSection&) = delete;
  // Whether this section interrupted another one (a signal handler's).
  bool nested() const noexcept { return outer_; }

 private:
  const bool outer_;
};

// A fork child of a signal handler that interrupted a section (see
// PostForkChild) leaves it: its mallocs and frees are its own, not a
// handler's (whose stash and fallback may be exactly what the interrupted
// code holds), as the thread heap's slow path does
// (LeaveInterruptedSlowPathInForkChild). The quarantine the section may
// have been changing (a ring being unmapped, an entry half moved) is
// given up, and the child, single-threaded, quarantines nothing more: its
// blocks are leaked, never reused while another entry names them. A child
// that returns from the handler into the interrupted malloc or free is not
// covered (a child that allocates in a handler normally exits or execs).
void LeaveInterruptedHardenedSectionInForkChild() {
  HardenedThreadState& q = tls_hardened;
  if (!q.busy) return;
  q.busy = false;
  g_quarantine_max_blocks = 0;
  q.ring = nullptr;
  q.blocks = 0;
  q.bytes = 0;
}

// How much of a quarantined block of `size` bytes carries the freed pattern:
// [1 word, QuarantineFillEnd). The block's trailer (its last word) is left
// as it is (see "Neighbours"); the smallest class (16 bytes) has no room
// for any pattern.
inline std::size_t QuarantineFillEnd(std::size_t size) {
  const std::size_t end = size - kWord;
  return end < kWord + kMaxPatternBytes ? end : kWord + kMaxPatternBytes;
}

[[noreturn]] ABSL_ATTRIBUTE_NOINLINE ABSL_ATTRIBUTE_COLD void
DieWriteAfterFree(const void* p, SizeClass c, std::size_t offset) {
  ABSL_RAW_LOG(FATAL,
               "elfmalloc: write after free: %p (size class %u: %zu-byte "
               "blocks) was modified at offset %zu while it was free (found "
               "by the quarantine)",
               p, static_cast<unsigned>(c.index()), ClassSize(c), offset);
  std::abort();
}

[[noreturn]] ABSL_ATTRIBUTE_NOINLINE ABSL_ATTRIBUTE_COLD void
DieCorruptedRing(const void* entry) {
  ABSL_RAW_LOG(FATAL,
               "elfmalloc: corrupted quarantine entry at %p (a stray write "
               "into the allocator's own memory)",
               entry);
  std::abort();
}

inline std::uint64_t EncodeEntry(const void* p, SizeClass c) {
  return (reinterpret_cast<std::uintptr_t>(p) |
          (std::uint64_t{c.index()} << kAddressBits)) ^
         g_hkeys.ring;
}
// The block of a decoded entry.
inline void* EntryBlock(std::uint64_t v) {
  return reinterpret_cast<void*>(static_cast<std::uintptr_t>(v & kAddressMask));
}

// A signal handler's malloc of class c inside a section (see
// HardenedSection). Not null only with a block whose free mark is cleared.
ABSL_ATTRIBUTE_NOINLINE void* NestedAllocClass(SizeClass c) noexcept {
  ThreadHeap* th = CurrentThreadHeap();
  void* p = th != nullptr ? th->HandlerAlloc(c) : NestedFallbackAlloc(c);
  if (p == nullptr) errno = ENOMEM;
  return Handout(p);
}

// The quarantine's bytes for ring entries (see "Quarantine").
inline std::size_t RingBytes() {
  return (g_quarantine_ring_mask + 1) * sizeof(std::uint64_t);
}

// Quarantined block b of class c has a freed pattern that differs: aborts
// naming the first modified offset. Out of line and finding that offset
// itself, so that the pop passes it two values and keeps no frame for it.
[[noreturn]] ABSL_ATTRIBUTE_NOINLINE ABSL_ATTRIBUTE_COLD void
DieFreedPatternDiffers(void* b, SizeClass c) {
  char* cb = static_cast<char*>(b);
  const char* bad = FindPatternMismatch(
      cb + kWord, cb + QuarantineFillEnd(ClassSize(c)), g_freed_pattern);
  DieWriteAfterFree(b, c,
                    bad == nullptr ? 0 : static_cast<std::size_t>(bad - cb));
}

// Takes the oldest block out of the calling thread's quarantine (which must
// not be empty), checking that nothing wrote to it while it was there.
// Inlined into its two callers: as a call it saved and restored six
// registers for the sake of its failure paths (14 instructions a pop).
ABSL_ATTRIBUTE_ALWAYS_INLINE inline void* PopQuarantine(SizeClass* class_out) {
  HardenedThreadState& q = tls_hardened;
  const std::uint64_t* entry = &q.ring[q.head];
  const std::uint64_t v = *entry ^ g_hkeys.ring;
  const std::uint64_t ci = v >> kAddressBits;
  if (ABSL_PREDICT_FALSE(ci >= kNumSizeClasses)) DieCorruptedRing(entry);
  const SizeClass c(static_cast<std::uint8_t>(ci));
  void* b = EntryBlock(v);
  const std::size_t size = ClassSize(c);
  if (ABSL_PREDICT_FALSE(*static_cast<std::uint64_t*>(b) != FreeMark(b))) {
    DieWriteAfterFree(b, c, 0);
  }
  char* cb = static_cast<char*>(b);
  if (ABSL_PREDICT_FALSE(PatternDiffers(
          cb + kWord, cb + QuarantineFillEnd(size), g_freed_pattern))) {
    DieFreedPatternDiffers(b, c);
  }
  q.head = (q.head + 1) & g_quarantine_ring_mask;
  q.bytes -= size;
  --q.blocks;
  *class_out = c;
  return b;
}

// Slab block p of class c was freed by a thread with a heap (its free mark
// is written): into the quarantine; the blocks it pushes out go on to the
// magazine.
void QuarantineFree(SizeClass c, void* p) noexcept {
  const std::size_t size = ClassSize(c);
  if (size > g_quarantine_max_bytes || g_quarantine_max_blocks == 0) {
    return PushFreed(c, p);
  }
  HardenedThreadState& q = tls_hardened;
  if (ABSL_PREDICT_FALSE(q.ring == nullptr)) {
    q.ring = static_cast<std::uint64_t*>(mmap_alloc::Map(RingBytes()));
    // No ring (out of memory): no delay for this block.
    if (q.ring == nullptr) return PushFreed(c, p);
    q.head = 0;
  }
  // The block freed before this one (the newest) still carries its mark:
  // a dangling pointer is most often written through soon after the free,
  // and this finds such a write at the next free rather than when the
  // block leaves.
  if (q.blocks != 0 &&
      ABSL_PREDICT_FALSE(*static_cast<std::uint64_t*>(q.newest) !=
                         FreeMark(q.newest))) {
    DieWriteAfterFree(q.newest, TagClass(q.newest), 0);
  }
  char* b = static_cast<char*>(p);
  FillPattern(b + kWord, b + QuarantineFillEnd(size), g_freed_pattern);
  while (q.blocks >= g_quarantine_max_blocks ||
         q.bytes + size > g_quarantine_max_bytes) {
    SizeClass oc;
    void* o = PopQuarantine(&oc);
    PushFreed(oc, o);
  }
  q.ring[(q.head + q.blocks) & g_quarantine_ring_mask] = EncodeEntry(p, c);
  q.newest = p;
  q.bytes += size;
  ++q.blocks;
}

// The release hook (SetThreadHeapReleaseHook): the calling thread's
// quarantine into its heap th, checked block by block, and its ring
// unmapped.
void DrainQuarantine(ThreadHeap* th) noexcept {
  HardenedThreadState& q = tls_hardened;
  const HardenedSection section;
  if (section.nested()) return;  // a signal handler's, inside a free
  while (q.blocks != 0) {
    SizeClass c;
    void* b = PopQuarantine(&c);
    th->Free(c, b);
  }
  if (q.ring != nullptr) {
    mmap_alloc::Unmap(q.ring, RingBytes());
    q.ring = nullptr;
  }
}

// ---- The hardened entry points ----

// An object of class c: the magazine pop, and a shuffled refill when the
// magazine was empty.
ABSL_ATTRIBUTE_ALWAYS_INLINE inline void* HardenedAllocClass(SizeClass c) {
  const HardenedSection section;
  if (ABSL_PREDICT_FALSE(section.nested())) return NestedAllocClass(c);
  ThreadHeap* th = CurrentThreadHeap();
  void* p;
  if (ABSL_PREDICT_TRUE(th != nullptr) && th->TryAlloc(c, &p)) {
    return HandoutNonNull(p);
  }
  if (th == nullptr) {
    p = AllocClassSlow(c);  // builds the heap (refilling its magazine)
    th = CurrentThreadHeap();
  } else {
    LargeCacheDecay();  // as AllocClassRefill
    p = th->AllocSlow(c);
    if (ABSL_PREDICT_FALSE(p == nullptr)) errno = ENOMEM;
  }
  if (p == nullptr) return nullptr;
  if (th != nullptr) ShuffleRefill(th, c, &p);
  return HandoutNonNull(p);
}

void* HardenedAllocate(std::size_t n, std::size_t align, bool zero) noexcept {
  if (IsHardenedSlabSize(n)) {
    const std::size_t fp = Footprint(n);
    SizeClass c = SizeToClass(fp);
    bool slab = true;
    if (align > 8 && ClassAlignment(c) < align) {
      // As Allocate(n, align): the power-of-two class that is aligned.
      const std::size_t m = absl::bit_ceil(fp > align ? fp : align);
      slab = IsSlabSize(m);
      if (slab) c = SizeToClass(m);
    }
    if (slab) {
      void* p = HardenedAllocClass(c);
      if (p == nullptr) return nullptr;
      SetSlabCanary(p, c, n);  // before the zeros: it may cover bytes below n
      if (zero) std::memset(p, 0, n);
      return p;
    }
  }
  return HardenedAllocLarge(n, align,
                            zero ? LargeKind::kZeroed : LargeKind::kPlain);
}

// A block of n bytes for realloc to grow a slab block into: with room
// for half again n where Reallocate would give it (kReallocHeadroomMin),
// its canary still at n, so that later steps stay in place.
void* HardenedAllocateForGrowth(std::size_t n) {
  if (n >= kReallocLargeMin) {
    return HardenedAllocLarge(n, 0, LargeKind::kGrowth);
  }
  const std::size_t room = RoomToGrow(n, kMaxSlabObjectSize - kWord);
  // HardenedAllocClass is inlined here and in HardenedAllocate: with a
  // second caller GCC made it a call, 17 more instructions per malloc.
  const SizeClass c = SizeToClass(Footprint(room));
  void* p = HardenedAllocClass(c);
  if (p == nullptr) return nullptr;
  SetSlabCanary(p, c, n);
  return p;
}

void HardenedDeallocate(void* p) noexcept {
  if (p == nullptr) return;
  CheckRegionMapped(p);
  const AllocType t = ReadAllocType(p);
  if (ABSL_PREDICT_TRUE(IsSlabType(t))) {
    const SizeClass c = TagClass(p);
    std::uint64_t* word = static_cast<std::uint64_t*>(p);
    const std::uint64_t mark = FreeMark(p);
    if (ABSL_PREDICT_FALSE(*word == mark)) {
      DieIfMarkIsOurs("double free of", c, p);
    }
    CheckHardenedSlabBlock(p, c, "free");
    *word = mark;
    const HardenedSection section;
    ThreadHeap* th = CurrentThreadHeap();
    if (th == nullptr) {
      PushFreed(c, p);
    } else if (ABSL_PREDICT_FALSE(section.nested())) {
      th->HandlerFree(c, p);
      std::atomic_signal_fence(std::memory_order_seq_cst);
      tls_hardened.stashed = true;
    } else {
      QuarantineFree(c, p);
    }
    return;
  }
  if (t != AllocType::kLarge) return FreeNotOurs(p);
  CheckedFreeLarge(p);
  UnguardLarge(p);
  LargeFree(p);
}

std::size_t HardenedUsableSize(const void* p) noexcept {
  if (p == nullptr) return 0;
  CheckRegionMapped(p);
  const AllocType t = ReadAllocType(p);
  if (IsSlabType(t)) return CheckSlabCanary(p, TagClass(p));
  if (t != AllocType::kLarge) DieNotOurs(p);
  return LargeRequest(p);
}

void* HardenedReallocate(void* p, std::size_t n) noexcept {
  if (p == nullptr) return HardenedAllocate(n, 0, false);
  CheckRegionMapped(p);
  const AllocType t = ReadAllocType(p);
  std::size_t old_n;
  if (IsSlabType(t)) {
    const SizeClass c = TagClass(p);
    if (ABSL_PREDICT_FALSE(*static_cast<const std::uint64_t*>(p) ==
                           FreeMark(p))) {
      DieIfMarkIsOurs("realloc of freed block", c, p);
    }
    old_n = CheckHardenedSlabBlock(p, c, "realloc");
    if (IsHardenedSlabSize(n)) {
      // In place, as Reallocate: the footprint fits and the block would
      // not shrink to half or less.
      const std::size_t old = ClassSize(c);
      const std::size_t fp = Footprint(n);
      if (fp <= old && ClassSize(SizeToClass(fp)) > old / 2) {
        ResetSlabCanary(p, c, n);
        return p;
      }
    }
  } else {
    if (t != AllocType::kLarge) DieNotOurs(p);
    CheckedFreeLarge(p, "realloc");
    if (n >= kReallocLargeMin) return HardenedLargeRealloc(p, n);
    old_n = LargeRequest(p);
  }
  // As Reallocate: a growing block is likely to grow again, so it gets
  // room to (a slab block of 4 KiB or more half again its size, a block
  // grown to kReallocLargeMin or more a large block placed to grow in
  // place).
  void* q = n > old_n && IsSlabType(t)
                ? HardenedAllocateForGrowth(n)
                : (IsHardenedSlabSize(n)
                       ? HardenedAllocate(n, 0, false)
                       : HardenedAllocLarge(n, 0, LargeKind::kGrowth));
  if (q == nullptr) return nullptr;
  std::memcpy(q, p, old_n < n ? old_n : n);
  HardenedDeallocate(p);
  return q;
}

#endif  // ELFMALLOC_HARDENED

// Every way malloc(n) leaves its fast path: a large block, no thread heap
// yet, an empty magazine. One function, so that the fast path ends in a
// single tail call and needs no stack frame (with a call per slow path, GCC
// kept a frame for those it would not turn into tail calls: 4 instructions
// per malloc).
ABSL_ATTRIBUTE_NOINLINE void* AllocateSlow(std::size_t n) {
  if (!IsSlabSize(n)) return AllocLarge(n, 0, LargeKind::kPlain);
  return AllocClassMiss(SizeToClass(n));
}

// AllocateOr's way out of its fast path: AllocateSlow, then the caller's
// failure handler, reached by a tail call (so its exception, if it throws
// one, passes no frame of ours).
ABSL_ATTRIBUTE_NOINLINE void* AllocateSlowOr(std::size_t n,
                                             AllocFailureHandler on_failure) {
  void* p = AllocateSlow(n);
  if (ABSL_PREDICT_TRUE(p != nullptr)) return p;
  return on_failure(n);
}

// The fast path of Allocate and AllocateOr: a cached block of n's class
// into *p, not yet handed out. The sizes of the first lookup table (up to
// 1152 bytes, most requests) are tested first: their class then costs one
// compare and a load, where IsSlabSize followed by SizeToClass compares
// twice (2-3 instructions per malloc more in glibc_thread and
// pair_latency, callgrind).
ABSL_ATTRIBUTE_ALWAYS_INLINE inline bool TryAllocateCached(std::size_t n,
                                                           void** p) {
  if (ABSL_PREDICT_TRUE(n <= internal::kLookupMaxSize)) {
    return ABSL_PREDICT_TRUE(TryAllocClass(SmallSizeToClass(n), p));
  }
  return IsSlabSize(n) && TryAllocClass(SizeToClass(n), p);
}

}  // namespace

ELFMALLOC_HOT_ENTRY void* Allocate(std::size_t n) noexcept {
#if defined(ELFMALLOC_HARDENED)
  return HardenedAllocate(n, 0, false);
#endif
  void* p;
  if (ABSL_PREDICT_TRUE(TryAllocateCached(n, &p))) return HandoutNonNull(p);
  return AllocateSlow(n);
}

ELFMALLOC_HOT_ENTRY void* AllocateOr(std::size_t n,
                                     AllocFailureHandler on_failure) {
#if defined(ELFMALLOC_HARDENED)
  void* const q = HardenedAllocate(n, 0, false);
  return q != nullptr ? q : on_failure(n);
#endif
  void* p;
  if (ABSL_PREDICT_TRUE(TryAllocateCached(n, &p))) return HandoutNonNull(p);
  return AllocateSlowOr(n, on_failure);
}

void* AllocateZeroed(std::size_t n) noexcept {
#if defined(ELFMALLOC_HARDENED)
  return HardenedAllocate(n, 0, true);
#endif
  if (IsSlabSize(n)) {
    void* p = AllocClass(SizeToClass(n));
    if (ABSL_PREDICT_TRUE(p != nullptr)) std::memset(p, 0, n);
    return p;
  }
  // Fresh large mappings are not written: sparse calloc arrays cost only
  // the pages the program touches.
  return AllocLarge(n, 0, LargeKind::kZeroed);
}

void* Allocate(std::size_t n, std::size_t align) noexcept {
  if (align <= 8) return Allocate(n);
  if (!IsPow2(align)) {
    errno = EINVAL;
    return nullptr;
  }
#if defined(ELFMALLOC_HARDENED)
  return HardenedAllocate(n, align, false);
#endif
  if (IsSlabSize(n)) {
    const SizeClass c = SizeToClass(n);
    if (ClassAlignment(c) >= align) return AllocClass(c);
    const std::size_t m = absl::bit_ceil(n > align ? n : align);
    // Every power of two from 16 to 256 KiB is a class aligned to its size.
    if (IsSlabSize(m)) return AllocClass(SizeToClass(m));
  }
  return AllocLarge(n, align, LargeKind::kPlain);
}

namespace {

[[noreturn]] ABSL_ATTRIBUTE_NOINLINE ABSL_ATTRIBUTE_COLD void DieMisaligned(
    const void* p);


// The checked build's exact test (IsObjectStartOfTag) failed for p;
// reached by a jump from the fast path (see Deallocate), which does not
// keep the tag for it (one register copy per free).
ELFMALLOC_OPAQUE ABSL_ATTRIBUTE_NOINLINE void FreeNotObjectStartOfTag(
    const void* p) noexcept {
  const unsigned ci = Slab::TagOf(p) - 1u;
  if (ci >= kNumSizeClasses) return FreeNotOurs(p);
  if ((reinterpret_cast<std::uintptr_t>(p) & 7) != 0) DieMisaligned(p);
  DieNotObjectStart(p, SizeClass(static_cast<std::uint8_t>(ci)), "free");
}

// A small-slab free of p failed the alignment test of its tag.
ABSL_ATTRIBUTE_NOINLINE void FreeNotObjectStart(const void* p) noexcept {
  const unsigned ci = Slab::TagOf(p) - 1u;
  if ((reinterpret_cast<std::uintptr_t>(p) & 7) != 0 ||
      ci >= kNumSizeClasses) {
    DieMisaligned(p);
  }
  const SizeClass c(static_cast<std::uint8_t>(ci));
  ABSL_RAW_LOG(FATAL,
               "elfmalloc: free(%p): not the start of a block (size class "
               "%u: %zu-byte blocks, each aligned to %zu bytes; an interior "
               "pointer)",
               p, static_cast<unsigned>(c.index()), ClassSize(c),
               ClassAlignment(c));
}

// Whether p has any bit of `mask` set. On x86-64 this is one `test` of a
// register with the mask in memory and the branch: GCC 12 compiles
// `(p & mask) != 0` with the mask in memory to a copy of p and an `and`,
// one instruction more on every free (of the 8 the checks every build
// makes cost per malloc/free pair, callgrind pair_latency). A jump out of
// the asm (asm goto) keeps the branch the compiler's to lay out.
ABSL_ATTRIBUTE_ALWAYS_INLINE inline bool AnyBitsSet(
    const void* p, const std::uint64_t& mask) noexcept {
#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
  asm goto("test %0, %1\n\tjne %l2"
           :
           : "r"(reinterpret_cast<std::uintptr_t>(p)), "m"(mask)
           : "cc"
           : set);
  return false;
set:
  return true;
#else
  return (reinterpret_cast<std::uintptr_t>(p) & mask) != 0;
#endif
}

// The slab free of p (stamp checked, tag read): the free mark (see
// FreeMark), then the magazine push. Every slow path is a tail call: the
// fast path needs no stack frame.
ABSL_ATTRIBUTE_ALWAYS_INLINE inline void FreeSlabTag(void* p,
                                                     HotSlot& slot) noexcept {
  if (kDefaultChecks) {
    // The fast path compares the mark word's first 4 bytes only, and
    // FreeMarked the whole word when they match (a live block matches
    // with probability 2^-32, a freed one always). A load of bytes that
    // the program stored to just before the free cannot be forwarded from
    // the store buffer and waits for the stores to reach the cache; with
    // 8 bytes, a 16-byte block whose last byte was just written (a string's
    // terminator, a flag) paid that wait on every free (pair_latency at
    // 16 B: 7.2 -> 3.3 ns per malloc/free pair).
    std::uint64_t* const word = MarkWord(p);
    const std::uint64_t mark = FreeMark(p);
    std::uint32_t head, mark_head;
    std::memcpy(&head, word, sizeof(head));
    std::memcpy(&mark_head, &mark, sizeof(mark_head));
    if (ABSL_PREDICT_FALSE(head == mark_head)) return FreeMarkedTag(p);
    *word = mark;
  }
  if (ABSL_PREDICT_FALSE(!slot.hot.TryFree(p))) return FreeTagSlow(p);
}

// Frees of everything but small-slab blocks (AllocType::kSmallSlab: the
// classes up to 14 KiB), out of line, where every build checks that p is
// the start of a block: blocks of 16 KiB and more are few and costly next
// to a function call and a multiply, and an interior pointer freed into a
// magazine would be handed out again, overlapping a live block.
ABSL_ATTRIBUTE_NOINLINE void FreeNotSmall(void* p, AllocType t) noexcept {
  if (kDefaultChecks &&
      ABSL_PREDICT_FALSE((reinterpret_cast<std::uintptr_t>(p) & 7) != 0)) {
    DieMisaligned(p);
  }
  if (t == AllocType::kMediumSlab) {
    const unsigned tag = Slab::TagOf(p);
    const unsigned ci = tag - 1u;
    if (ABSL_PREDICT_FALSE(ci >= kNumSizeClasses)) return FreeNotOurs(p);
    if (kDefaultChecks) {
      CheckedFreeSlabOfClass(p, SizeClass(static_cast<std::uint8_t>(ci)));
    }
    return FreeSlabTag(p, CurrentHotStates()[tag]);
  }
  if (t != AllocType::kLarge) return FreeNotOurs(p);
  LargeFree(p);  // checks p itself, in every build
}

[[noreturn]] ABSL_ATTRIBUTE_NOINLINE ABSL_ATTRIBUTE_COLD void DieMisaligned(
    const void* p) {
  ABSL_RAW_LOG(FATAL,
               "elfmalloc: free(%p): not the start of a block (misaligned: "
               "every block is 8-byte aligned)",
               p);
  std::abort();
}

}  // namespace

namespace {

// Deallocate once p's region is known to be mapped (the checked build) or
// taken to be (the others).
ABSL_ATTRIBUTE_ALWAYS_INLINE inline void FreeInMappedRegion(void* p) noexcept {
  // One cache line classifies p: the stamp and the tag table of its 2 MiB
  // region (alloc_type.h, slab.h "Tags").
  const AllocType t = ReadAllocType(p);
  if (ABSL_PREDICT_TRUE(t == AllocType::kSmallSlab)) {
    // The tag indexes the thread's fast-path states directly: a tag that
    // names no class finds an empty state and is reported by the slow path
    // (ThreadHeap::hot()), so the fast path neither range-checks it nor
    // tests for a thread heap (CurrentHotStates).
    const unsigned tag = Slab::TagOf(p);
    HotSlot& slot = CurrentHotStates()[tag];
    if (kChecked) {
      // The exact test, which also fails for a tag that names no class
      // (ObjectStartTest) and for every pointer the alignment test below
      // would catch.
      if (ABSL_PREDICT_FALSE(!IsObjectStartOfTag(p, tag))) {
        return FreeNotObjectStartOfTag(p);
      }
    } else if (kDefaultChecks &&
               ABSL_PREDICT_FALSE(AnyBitsSet(p, slot.align_mask))) {
      // Misaligned and (most) interior pointers: one test and branch (see
      // "Pointers that are not the start of a block").
      return FreeNotObjectStart(p);
    }
    return FreeSlabTag(p, slot);
  }
  return FreeNotSmall(p, t);
}

// The checked build's free of a pointer outside the region its thread
// last found mapped (see RegionIsMappedCached).
ELFMALLOC_CLASSIFIES ABSL_ATTRIBUTE_NOINLINE void FreeCheckingRegion(
    void* p) noexcept {
  if (ABSL_PREDICT_FALSE(!RegionIsMappedSlow(p))) return FreeNotOurs(p);
  return FreeInMappedRegion(p);
}

}  // namespace

ELFMALLOC_CLASSIFIES ELFMALLOC_HOT_ENTRY void Deallocate(void* p) noexcept {
#if defined(ELFMALLOC_HARDENED)
  return HardenedDeallocate(p);
#endif
  if (p == nullptr) return;
  // The checked build's failures are reached by jumps to functions that
  // are not [[noreturn]] (FreeNotOurs, FreeNotObjectStartOfTag), like
  // the default build's, so that its free too needs no stack frame.
  if (kChecked && ABSL_PREDICT_FALSE(!RegionIsMappedByMemo(p))) {
    return FreeCheckingRegion(p);
  }
  return FreeInMappedRegion(p);
}

ELFMALLOC_CLASSIFIES std::size_t UsableSize(const void* p) noexcept {
#if defined(ELFMALLOC_HARDENED)
  return HardenedUsableSize(p);
#endif
  if (p == nullptr) return 0;
  if (kChecked) CheckRegionMapped(p);
  const AllocType t = ReadAllocType(p);
  if (IsSlabType(t)) return ClassSize(TagClass(p));
  if (t != AllocType::kLarge) DieNotOurs(p);
  return LargeUsableSize(p);
}

ELFMALLOC_CLASSIFIES void* Reallocate(void* p, std::size_t n) noexcept {
#if defined(ELFMALLOC_HARDENED)
  return HardenedReallocate(p, n);
#endif
  if (p == nullptr) return Allocate(n);
  if (kChecked) CheckRegionMapped(p);
  const AllocType t = ReadAllocType(p);
  // A block that grows is likely to grow again: a slab block moves to a
  // class with room (RoomToGrow), and one grown to kReallocLargeMin or
  // more is a large block placed to grow in place (LargeKind::kGrowth).
  std::size_t want = n;
  if (IsSlabType(t)) {
    const SizeClass c = TagClass(p);
    // p must be the start of a block in every build: realloc copies and
    // frees, so an interior pointer would free (and hand out again) part
    // of a live block. A multiply and a few compares (IsObjectStart) next
    // to a copy or a kept block.
    if (kDefaultChecks) {
      CheckedFreeSlabOfClass(p, c, "realloc");
      // A freed block (its free mark, see FreeMark): the same report as a
      // double free, also when the block would be kept in place.
      if (ABSL_PREDICT_FALSE(ReadMarkWord(p) == FreeMark(p))) {
        DieIfMarkIsOurs("realloc of freed block", c, p);
      }
    }
    const std::size_t old = ClassSize(c);
    if (n <= old) {
      // Shrink only when it saves at least half the block.
      const std::size_t now = ClassSize(SizeToClass(n));
      if (now > old / 2) return p;
    } else {
      want = RoomToGrow(n, kMaxSlabObjectSize);
    }
  } else {
    if (t != AllocType::kLarge) DieNotOurs(p);
    // Large: a size below kReallocLargeMin moves to a slab (a large block
    // that small wastes most of its last page); otherwise mremap, which
    // grows or shrinks (LargeRealloc checks p itself, in every build; the
    // move to a slab reads p's size before LargeFree would, so it checks p
    // first).
    if (n >= kReallocLargeMin) return LargeRealloc(p, n);
    if (kDefaultChecks) CheckedFreeLarge(p, "realloc");
  }
  void* q = n < kReallocLargeMin ? Allocate(want)
                                 : AllocLarge(n, 0, LargeKind::kGrowth);
  if (q == nullptr) return nullptr;
  const std::size_t old_usable = UsableSize(p);
  std::memcpy(q, p, old_usable < n ? old_usable : n);
  Deallocate(p);
  return q;
}

void MarkThreadIdle() noexcept { ReleaseThreadHeap(); }

namespace {

// The background decay thread (general_allocator.h, "Background decay").
void* DecayThreadMain(void*) {
  Heap* heap = GetHeap();
  if (heap == nullptr) return nullptr;
  PageAlloc::Handle handles[] = {heap->small().NewHandle(),
                                 heap->mid().NewHandle(),
                                 heap->medium().NewHandle()};
  for (;;) {
    // Never keep the process alive: glibc ends it when its last thread
    // exits, and this thread counts. Once main has left by pthread_exit,
    // the program's own threads decide when the process ends, so stop.
    if (MainThreadExited()) return nullptr;
    const std::uint64_t decay_ms = GetOption(OptionId::kDecayMs);
    std::uint64_t sleep_ms = decay_ms / 4;
    if (decay_ms == 0 || sleep_ms > 1000) sleep_ms = 1000;
    if (sleep_ms < 10) sleep_ms = 10;
    SleepMs(sleep_ms);
    if (decay_ms == 0) continue;  // disabled (it may be enabled later)
    for (PageAlloc::Handle& h : handles) {
      if (h.valid()) h.Tick();
    }
    LargeCacheDecay();
  }
}

}  // namespace

bool StartBackgroundDecay() noexcept {
  if (GetOption(OptionId::kBackgroundDecay) == 0) return false;
  if (g_decay_thread_started.exchange(true, std::memory_order_acq_rel)) {
    return true;
  }
  // The heap first, on this thread: the new thread then only looks it up.
  if (GetHeap() == nullptr || !StartDetachedThread(&DecayThreadMain, nullptr)) {
    g_decay_thread_started.store(false, std::memory_order_release);
    return false;
  }
  return true;
}

std::size_t ReleaseFreeMemory() noexcept {
#if defined(ELFMALLOC_HARDENED)
  // The caller's quarantined blocks may be what keeps pages from being free.
  if (ThreadHeap* th = CurrentThreadHeap()) DrainQuarantine(th);
#endif
  std::size_t bytes = LargeCacheRelease();
  Heap* heap = g_heap.load(std::memory_order_acquire);
  if (heap == nullptr) return bytes;
  // Retired threads' heaps first, and this thread's claimed slabs and
  // cached objects: they may be what keeps pages from being free. Other
  // threads drain theirs at their next slow path (thread_cache.h,
  // "Draining").
  ReleasePooledThreadHeaps();
  RequestDrain();
  DrainThreadHeap();
  heap->ReleaseFallbackSlabs();
  for (PageAlloc* pa : {&heap->small(), &heap->mid(), &heap->medium()}) {
    // A temporary handle (bagpipe handles are cheap, bsalloc-backed).
    PageAlloc::Handle h = pa->NewHandle();
    if (h.valid()) {
      bytes += h.ReleaseDirty(SIZE_MAX) * pa->page_size();
      h.UnmapFreeRegions();
    }
  }
  return bytes;
}

Stats GetStats() noexcept {
  Stats s;
  const LargeStats large = GetLargeStats();
  s.large_bytes = large.mapped_bytes;
  s.large_allocations = large.allocations;
  s.thread_heaps = LiveThreadHeaps();
  s.mapped_bytes = large.mapped_bytes + large.cached_bytes;
  s.large_cached_bytes = large.cached_bytes;
  s.active_bytes = large.mapped_bytes;
  s.allocated_bytes = large.mapped_bytes;
  Heap* heap = g_heap.load(std::memory_order_acquire);
  if (heap == nullptr) return s;
  for (const PageAlloc* pa : {&heap->small(), &heap->mid(), &heap->medium()}) {
    const PageAlloc::Stats ps = pa->GetStats();
    s.mapped_bytes += ps.mapped_bytes;
    s.dirty_bytes += ps.dirty_pages * pa->page_size();
    s.returned_bytes += ps.clean_pages * pa->page_size();
  }
  std::int64_t net[kNumSizeClasses] = {};
  AddNetAllocations(net);
  AddCachedObjects(s.class_cached_objects);
  s.pooled_thread_heaps = PooledThreadHeaps();
  s.metadata_bytes = bsalloc::GetStats().mapped_bytes + sizeof(Heap);
  for (std::size_t i = 0; i < kNumSizeClasses; ++i) {
    const SizeClass c(static_cast<std::uint8_t>(i));
    const std::size_t pages = heap->cls(c).pages_in_use();
    s.class_pages_in_use[i] = pages;
    s.active_bytes += pages * ClassPageSize(c);
    const std::int64_t n =
        net[i] + heap->fallback(c).net.load(std::memory_order_relaxed);
    // Transiently negative while another thread's free is counted before
    // its allocation is (relaxed counters): report 0.
    s.class_allocated_objects[i] = n > 0 ? static_cast<std::size_t>(n) : 0;
    s.allocated_bytes += s.class_allocated_objects[i] * ClassSize(c);
  }
  s.resident_bytes = s.active_bytes + s.dirty_bytes + s.metadata_bytes;
  struct rusage ru;
  if (getrusage(RUSAGE_SELF, &ru) == 0 && ru.ru_maxrss > 0) {
    s.peak_resident_bytes = static_cast<std::size_t>(ru.ru_maxrss) * 1024;
  }
  return s;
}

}  // namespace elfmalloc
