// The C API conformance suite declared in c_api_conformance.h.
//
// Conventions in every test:
//  * errno is set to kSentinel right before each call and read right after
//    it (before any gtest macro, which may itself change errno): a success
//    must leave kSentinel, a failure must leave exactly ENOMEM or EINVAL.
//  * Pointers the caller passes in (posix_memalign's *memptr, realloc's old
//    block) are checked to be untouched on failure: *memptr keeps a
//    sentinel value, an old block keeps its contents and usable size.
//  * Every block that is returned is written over its whole
//    malloc_usable_size, so a too-small or overlapping block shows up under
//    ASan, or as corrupted patterns.
#include "malloc_bind/c_api_conformance.h"

#include <dlfcn.h>
#include <errno.h>
#include <malloc.h>
#include <stdlib.h>
#include <unistd.h>

#include <algorithm>
#include <bit>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <limits>
#include <mutex>
#include <thread>
#include <utility>
#include <vector>

#include "gtest/gtest.h"

namespace malloc_bind {

void PrintTo(const CApi& api, std::ostream* os) {
  *os << "CApi(" << (api.name[0] != '\0' ? api.name : "<unprefixed>") << ")";
}

CApi ProcessCApi() {
  CApi api;
  api.name = "process";
  api.malloc = &::malloc;
  api.free = &::free;
  api.calloc = &::calloc;
  api.realloc = &::realloc;
  api.reallocarray = &::reallocarray;
  api.posix_memalign = &::posix_memalign;
  api.aligned_alloc = &::aligned_alloc;
  api.memalign = &::memalign;
  api.valloc = &::valloc;
  api.pvalloc = &::pvalloc;
  api.malloc_usable_size = &::malloc_usable_size;
  api.malloc_trim = &::malloc_trim;
  // Not declared by glibc 2.36's headers (cfree is a compat-only symbol
  // there; free_sized / free_aligned_sized are C23): found if the process
  // has them, e.g. from a preloaded malloc replacement.
  api.cfree = reinterpret_cast<void (*)(void*)>(dlsym(RTLD_DEFAULT, "cfree"));
  api.free_sized = reinterpret_cast<void (*)(void*, std::size_t)>(
      dlsym(RTLD_DEFAULT, "free_sized"));
  api.free_aligned_sized =
      reinterpret_cast<void (*)(void*, std::size_t, std::size_t)>(
          dlsym(RTLD_DEFAULT, "free_aligned_sized"));
  return api;
}

namespace {

constexpr int kSentinel = 0x4d42;  // no E* constant has this value
constexpr std::size_t kSizeMax = std::numeric_limits<std::size_t>::max();
constexpr std::size_t kPtrdiffMax =
    static_cast<std::size_t>(std::numeric_limits<std::ptrdiff_t>::max());
constexpr std::size_t kMiB = std::size_t{1} << 20;

// A value *memptr must still hold after a failed posix_memalign.
void* const kUntouched = reinterpret_cast<void*>(std::uintptr_t{0x5a5a5a50});

// Sizes no allocator can satisfy on a 64-bit machine: above PTRDIFF_MAX
// (must fail without asking for memory) and just below it (more than any
// address space).
constexpr std::size_t kHugeSizes[] = {
    kPtrdiffMax + 1,      kSizeMax,
    kSizeMax - 1,         kSizeMax - 4095,
    kSizeMax - 2 * kMiB,  kSizeMax / 2 + 4096,
    kPtrdiffMax,          kPtrdiffMax - 4095,
    kPtrdiffMax - 2 * kMiB + 1, std::size_t{1} << 62,
};

// Every power of two from 8 B to 4 MiB.
std::vector<std::size_t> Alignments() {
  std::vector<std::size_t> v;
  for (std::size_t a = 8; a <= 4 * kMiB; a *= 2) v.push_back(a);
  return v;
}

std::size_t PageSize() { return static_cast<std::size_t>(sysconf(_SC_PAGESIZE)); }

bool IsAligned(const void* p, std::size_t a) {
  return reinterpret_cast<std::uintptr_t>(p) % a == 0;
}

// The alignment malloc(n) must have: the fundamental alignment, or less for
// blocks too small to hold an object that needs it (C23 7.24.3).
std::size_t MallocAlignment(std::size_t n) {
  if (n == 0) return 1;
  return std::min<std::size_t>(alignof(std::max_align_t), std::bit_floor(n));
}

struct Result {
  void* p;
  int err;  // errno right after the call
};

// Runs f with errno = kSentinel and captures errno right after it.
template <class F>
Result Call(F&& f) {
  errno = kSentinel;
  void* p = f();
  const int e = errno;
  return {p, e};
}

unsigned char PatternByte(std::size_t i, unsigned seed) {
  return static_cast<unsigned char>((i * 131u + (i >> 9) + seed * 7u) & 0xff);
}

// Fills [p, p + n) with a position- and seed-dependent pattern.
void Fill(void* p, std::size_t n, unsigned seed) {
  auto* c = static_cast<unsigned char*>(p);
  for (std::size_t i = 0; i < n; ++i) c[i] = PatternByte(i, seed);
}

// Index of the first byte of [p, p + n) that differs from Fill's pattern,
// or n.
std::size_t FirstMismatch(const void* p, std::size_t n, unsigned seed) {
  const auto* c = static_cast<const unsigned char*>(p);
  for (std::size_t i = 0; i < n; ++i) {
    if (c[i] != PatternByte(i, seed)) return i;
  }
  return n;
}

bool AllZero(const void* p, std::size_t n) {
  // memcmp against a zero page: sanitizers check it as one range.
  static const unsigned char kZeros[4096] = {};
  const auto* c = static_cast<const unsigned char*>(p);
  for (std::size_t i = 0; i < n; i += sizeof(kZeros)) {
    const std::size_t len = std::min(sizeof(kZeros), n - i);
    if (std::memcmp(c + i, kZeros, len) != 0) return false;
  }
  return true;
}

// Checks that p is a usable block of at least n bytes aligned to `align`,
// and writes all of it.
void ExpectUsableBlock(const CApi& api, void* p, std::size_t n,
                       std::size_t align, const char* what) {
  ASSERT_NE(p, nullptr) << what << " n=" << n << " align=" << align;
  EXPECT_TRUE(IsAligned(p, align))
      << what << " returned " << p << " for n=" << n << " align=" << align;
  errno = kSentinel;
  const std::size_t usable = api.malloc_usable_size(p);
  const int e = errno;
  EXPECT_EQ(e, kSentinel) << "malloc_usable_size changed errno";
  EXPECT_GE(usable, n) << what << " n=" << n << " align=" << align;
  std::memset(p, 0xEE, usable);  // the whole usable block is writable
}

// ------------------------------------------------------------------ malloc

TEST_P(CApiConformanceTest, MallocReturnsAlignedWritableBlocks) {
  const CApi& api = GetParam();
  const std::size_t sizes[] = {0,     1,     2,      7,       8,      9,
                               15,    16,    17,     24,      31,     32,
                               48,    63,    64,     100,     127,    128,
                               200,   255,   256,    500,     1000,   1024,
                               2000,  4095,  4096,   4097,    8192,   10000,
                               32768, 65536, 100000, 262144,  kMiB,   kMiB + 1,
                               3 * kMiB, 8 * kMiB};
  for (std::size_t n : sizes) {
    auto [p, e] = Call([&] { return api.malloc(n); });
    EXPECT_EQ(e, kSentinel) << "malloc(" << n << ") changed errno";
    ExpectUsableBlock(api, p, n, MallocAlignment(n), "malloc");
    errno = kSentinel;
    api.free(p);
    EXPECT_EQ(errno, kSentinel) << "free of a " << n << "-byte block";
  }
}

TEST_P(CApiConformanceTest, MallocZeroReturnsUniqueBlocks) {
  const CApi& api = GetParam();
  std::vector<void*> blocks;
  for (int i = 0; i < 64; ++i) {
    auto [p, e] = Call([&] { return api.malloc(0); });
    ASSERT_NE(p, nullptr);
    EXPECT_EQ(e, kSentinel);
    blocks.push_back(p);
  }
  std::vector<void*> sorted = blocks;
  std::sort(sorted.begin(), sorted.end());
  EXPECT_EQ(std::adjacent_find(sorted.begin(), sorted.end()), sorted.end())
      << "malloc(0) returned the same pointer twice";
  for (void* p : blocks) api.free(p);
}

TEST_P(CApiConformanceTest, MallocHugeFailsWithEnomem) {
  const CApi& api = GetParam();
  for (std::size_t n : kHugeSizes) {
    auto [p, e] = Call([&] { return api.malloc(n); });
    EXPECT_EQ(p, nullptr) << "malloc(" << n << ")";
    EXPECT_EQ(e, ENOMEM) << "malloc(" << n << ")";
    if (p != nullptr) api.free(p);
  }
}

TEST_P(CApiConformanceTest, FreeNullAndFreeKeepErrno) {
  const CApi& api = GetParam();
  errno = kSentinel;
  api.free(nullptr);
  EXPECT_EQ(errno, kSentinel);
  for (std::size_t n : {std::size_t{1}, std::size_t{5000}, 4 * kMiB}) {
    void* p = api.malloc(n);
    ASSERT_NE(p, nullptr);
    errno = kSentinel;
    api.free(p);
    EXPECT_EQ(errno, kSentinel) << "free of a " << n << "-byte block";
  }
}

TEST_P(CApiConformanceTest, UsableSizeOfNullIsZero) {
  const CApi& api = GetParam();
  errno = kSentinel;
  EXPECT_EQ(api.malloc_usable_size(nullptr), 0u);
  EXPECT_EQ(errno, kSentinel);
}

// Many live blocks of mixed sizes and alignments: all distinct, none
// overlapping (over their whole usable size), none corrupted by the others.
TEST_P(CApiConformanceTest, ManyBlocksAreDistinctAndDoNotOverlap) {
  const CApi& api = GetParam();
  struct Block {
    unsigned char* p;
    std::size_t usable;
    unsigned seed;
  };
  std::vector<Block> blocks;
  std::uint64_t rng = 0x9E3779B97F4A7C15u;
  for (unsigned i = 0; i < 1500; ++i) {
    rng = rng * 6364136223846793005u + 1442695040888963407u;
    std::size_t n = (rng >> 33) % 3000;
    if (i % 50 == 0) n = 70000 + i;
    if (i % 97 == 0) n = 0;
    void* p;
    if (i % 7 == 0) {
      p = api.memalign(std::size_t{64} << ((i / 7) % 7), n);
    } else if (i % 11 == 0) {
      p = api.calloc(1, n);
    } else {
      p = api.malloc(n);
    }
    ASSERT_NE(p, nullptr) << "block " << i << " of " << n << " bytes";
    const std::size_t usable = api.malloc_usable_size(p);
    ASSERT_GE(usable, n);
    Fill(p, usable, i);
    blocks.push_back({static_cast<unsigned char*>(p), usable, i});
  }
  std::vector<Block> by_address = blocks;
  std::sort(by_address.begin(), by_address.end(),
            [](const Block& a, const Block& b) { return a.p < b.p; });
  for (std::size_t i = 1; i < by_address.size(); ++i) {
    const Block& a = by_address[i - 1];
    const Block& b = by_address[i];
    ASSERT_LE(a.p + std::max<std::size_t>(a.usable, 1), b.p)
        << "blocks " << static_cast<void*>(a.p) << "+" << a.usable << " and "
        << static_cast<void*>(b.p) << " overlap";
  }
  for (const Block& b : blocks) {
    EXPECT_EQ(FirstMismatch(b.p, b.usable, b.seed), b.usable)
        << "block " << b.seed << " was overwritten";
  }
  // Free in an order unrelated to allocation order.
  for (std::size_t i = 0; i < blocks.size(); ++i) {
    std::swap(blocks[i], blocks[(i * 7919) % blocks.size()]);
  }
  for (const Block& b : blocks) api.free(b.p);
}

// ------------------------------------------------------------------ calloc

TEST_P(CApiConformanceTest, CallocReturnsZeroedBlocks) {
  const CApi& api = GetParam();
  const std::pair<std::size_t, std::size_t> cases[] = {
      {1, 1},    {1, 100},   {100, 1},     {3, 17},    {16, 16},
      {1000, 4}, {4, 1000},  {4096, 1},    {1, 70000}, {1000, 1000},
      {3, kMiB}, {kMiB, 5}};
  for (const auto& c : cases) {
    // Plain variables: lambdas cannot capture structured bindings before
    // C++20 (and clang 14).
    const std::size_t n = c.first, m = c.second;
    auto [p, e] = Call([&] { return api.calloc(n, m); });
    EXPECT_EQ(e, kSentinel) << "calloc(" << n << ", " << m << ")";
    ASSERT_NE(p, nullptr);
    EXPECT_TRUE(AllZero(p, n * m)) << "calloc(" << n << ", " << m << ")";
    ExpectUsableBlock(api, p, n * m, MallocAlignment(n * m), "calloc");
    api.free(p);
  }
}

// calloc must zero memory that an earlier block dirtied: allocate, dirty and
// free blocks of a size, then calloc the same size (likely the same memory).
TEST_P(CApiConformanceTest, CallocZeroesReusedMemory) {
  const CApi& api = GetParam();
  const std::size_t sizes[] = {1,    8,     16,    24,   100,      1000,
                               4096, 5000,  32768, 70000, kMiB, 3 * kMiB};
  for (std::size_t n : sizes) {
    for (int round = 0; round < 3; ++round) {
      void* dirty[4];
      for (void*& d : dirty) {
        d = api.malloc(n);
        ASSERT_NE(d, nullptr);
        std::memset(d, 0xCD, api.malloc_usable_size(d));
      }
      for (void* d : dirty) api.free(d);
      void* zeroed[4];
      for (int i = 0; i < 4; ++i) {
        // Both argument orders, and a split into elements.
        zeroed[i] = i == 0   ? api.calloc(1, n)
                    : i == 1 ? api.calloc(n, 1)
                    : (n % 8 == 0) ? api.calloc(n / 8, 8)
                                   : api.calloc(1, n);
        ASSERT_NE(zeroed[i], nullptr);
        EXPECT_TRUE(AllZero(zeroed[i], n))
            << "calloc of " << n << " bytes returned dirty memory";
      }
      for (void* z : zeroed) api.free(z);
    }
  }
}

TEST_P(CApiConformanceTest, CallocOverflowFailsWithEnomem) {
  const CApi& api = GetParam();
  const std::pair<std::size_t, std::size_t> cases[] = {
      {kSizeMax, 2},
      {2, kSizeMax},
      {std::size_t{1} << 32, std::size_t{1} << 32},
      {std::size_t{1} << 33, std::size_t{1} << 31},
      {kSizeMax / 2 + 1, 2},
      {2, kSizeMax / 2 + 1},
      {3, kSizeMax / 3 + 1},
      {kSizeMax / 3 + 1, 3},
      // The product fits a size_t but exceeds PTRDIFF_MAX.
      {kPtrdiffMax / 2 + 1, 2},
      {2, kPtrdiffMax / 2 + 1},
      {1, kPtrdiffMax + 1},
      {kPtrdiffMax + 1, 1},
      {kSizeMax, 1},
      {1, kSizeMax},
      {kSizeMax, kSizeMax},
  };
  for (const auto& c : cases) {
    const std::size_t n = c.first, m = c.second;
    auto [p, e] = Call([&] { return api.calloc(n, m); });
    EXPECT_EQ(p, nullptr) << "calloc(" << n << ", " << m << ")";
    EXPECT_EQ(e, ENOMEM) << "calloc(" << n << ", " << m << ")";
    if (p != nullptr) api.free(p);
  }
  for (std::size_t n : kHugeSizes) {
    auto [p, e] = Call([&] { return api.calloc(1, n); });
    EXPECT_EQ(p, nullptr) << "calloc(1, " << n << ")";
    EXPECT_EQ(e, ENOMEM) << "calloc(1, " << n << ")";
  }
}

// ------------------------------------------------------------ realloc family

TEST_P(CApiConformanceTest, ReallocOfNullIsMalloc) {
  const CApi& api = GetParam();
  for (std::size_t n : {std::size_t{0}, std::size_t{1}, std::size_t{100},
                        std::size_t{70000}}) {
    auto [p, e] = Call([&] { return api.realloc(nullptr, n); });
    EXPECT_EQ(e, kSentinel);
    ExpectUsableBlock(api, p, n, MallocAlignment(n), "realloc(NULL, n)");
    api.free(p);
  }
}

// glibc: realloc(p, 0) frees p and returns NULL, errno untouched.
TEST_P(CApiConformanceTest, ReallocToZeroFreesAndReturnsNull) {
  const CApi& api = GetParam();
  for (std::size_t n : {std::size_t{1}, std::size_t{100}, 4 * kMiB}) {
    void* p = api.malloc(n);
    ASSERT_NE(p, nullptr);
    auto [q, e] = Call([&] { return api.realloc(p, 0); });
    EXPECT_EQ(q, nullptr);
    EXPECT_EQ(e, kSentinel);
    if (q != nullptr) api.free(q);
  }
}

TEST_P(CApiConformanceTest, ReallocKeepsContentsWhenGrowingAndShrinking) {
  const CApi& api = GetParam();
  const std::size_t sizes[] = {1,    16,       17,    100,     4000,
                               5000, 70000,    kMiB,  3 * kMiB, 100,
                               8,    2 * kMiB, 33,    12345,   64,
                               1,    4096,     4095,  300000,  24};
  unsigned seed = 1;
  void* p = api.malloc(sizes[0]);
  ASSERT_NE(p, nullptr);
  Fill(p, sizes[0], seed);
  std::size_t n = sizes[0];
  for (std::size_t m : sizes) {
    auto [q, e] = Call([&] { return api.realloc(p, m); });
    ASSERT_NE(q, nullptr) << "realloc(" << n << " -> " << m << ")";
    EXPECT_EQ(e, kSentinel) << "realloc(" << n << " -> " << m << ")";
    EXPECT_TRUE(IsAligned(q, MallocAlignment(m)));
    const std::size_t kept = std::min(n, m);
    EXPECT_EQ(FirstMismatch(q, kept, seed), kept)
        << "realloc(" << n << " -> " << m << ") lost contents";
    const std::size_t usable = api.malloc_usable_size(q);
    EXPECT_GE(usable, m);
    ++seed;
    Fill(q, m, seed);
    std::memset(static_cast<char*>(q) + m, 0x11, usable - m);
    p = q;
    n = m;
  }
  api.free(p);
}

// realloc of a block from memalign keeps its contents too (the result only
// has malloc's alignment guarantee).
TEST_P(CApiConformanceTest, ReallocOfAlignedBlockKeepsContents) {
  const CApi& api = GetParam();
  for (std::size_t align : {std::size_t{64}, std::size_t{4096}, 2 * kMiB}) {
    void* p = api.memalign(align, 1000);
    ASSERT_NE(p, nullptr);
    Fill(p, 1000, 7);
    void* q = api.realloc(p, 50000);
    ASSERT_NE(q, nullptr);
    EXPECT_EQ(FirstMismatch(q, 1000, 7), 1000u);
    void* r = api.realloc(q, 10);
    ASSERT_NE(r, nullptr);
    EXPECT_EQ(FirstMismatch(r, 10, 7), 10u);
    api.free(r);
  }
}

TEST_P(CApiConformanceTest, ReallocFailureKeepsTheOldBlock) {
  const CApi& api = GetParam();
  for (std::size_t n : {std::size_t{100}, std::size_t{70000}, 3 * kMiB}) {
    void* p = api.malloc(n);
    ASSERT_NE(p, nullptr);
    Fill(p, n, 3);
    const std::size_t usable = api.malloc_usable_size(p);
    for (std::size_t m : kHugeSizes) {
      auto [q, e] = Call([&] { return api.realloc(p, m); });
      EXPECT_EQ(q, nullptr) << "realloc(p, " << m << ")";
      EXPECT_EQ(e, ENOMEM) << "realloc(p, " << m << ")";
      if (q != nullptr) {  // keep going without double frees
        p = q;
        continue;
      }
      EXPECT_EQ(api.malloc_usable_size(p), usable);
      EXPECT_EQ(FirstMismatch(p, n, 3), n) << "failed realloc touched p";
    }
    api.free(p);
  }
}

TEST_P(CApiConformanceTest, ReallocarrayResizesAndChecksOverflow) {
  const CApi& api = GetParam();
  // NULL: like malloc(n * m).
  const Result r1 = Call([&] { return api.reallocarray(nullptr, 3, 5); });
  void* p = r1.p;
  EXPECT_EQ(r1.err, kSentinel);
  ExpectUsableBlock(api, p, 15, MallocAlignment(15), "reallocarray(NULL)");
  Fill(p, 15, 9);
  // Grow, keeping contents.
  const Result r2 = Call([&] { return api.reallocarray(p, 100, 40); });
  void* q = r2.p;
  ASSERT_NE(q, nullptr);
  EXPECT_EQ(r2.err, kSentinel);
  EXPECT_EQ(FirstMismatch(q, 15, 9), 15u);
  EXPECT_GE(api.malloc_usable_size(q), 4000u);
  Fill(q, 4000, 10);
  // Overflow (either order), or a product above PTRDIFF_MAX: NULL, ENOMEM,
  // the block untouched.
  const std::pair<std::size_t, std::size_t> bad[] = {
      {kSizeMax, 2},          {2, kSizeMax},
      {std::size_t{1} << 32, std::size_t{1} << 32},
      {kPtrdiffMax / 2 + 1, 2}, {1, kPtrdiffMax + 1},
      {kSizeMax, kSizeMax},
  };
  for (const auto& c : bad) {
    const std::size_t n = c.first, m = c.second;
    auto [r, e3] = Call([&] { return api.reallocarray(q, n, m); });
    EXPECT_EQ(r, nullptr) << "reallocarray(q, " << n << ", " << m << ")";
    EXPECT_EQ(e3, ENOMEM) << "reallocarray(q, " << n << ", " << m << ")";
    if (r != nullptr) {
      q = r;
      continue;
    }
    EXPECT_EQ(FirstMismatch(q, 4000, 10), 4000u);
  }
  // A zero product is realloc(q, 0): frees q, returns NULL (glibc).
  auto [z, e4] = Call([&] { return api.reallocarray(q, 0, 5); });
  EXPECT_EQ(z, nullptr);
  EXPECT_EQ(e4, kSentinel);
}

// --------------------------------------------------------- aligned entry points

TEST_P(CApiConformanceTest, PosixMemalignAlignsAllPowersOfTwo) {
  const CApi& api = GetParam();
  for (std::size_t align : Alignments()) {
    for (std::size_t n : {std::size_t{1}, align + 1}) {
      void* p = kUntouched;
      errno = kSentinel;
      const int r = api.posix_memalign(&p, align, n);
      const int e = errno;
      ASSERT_EQ(r, 0) << "posix_memalign(" << align << ", " << n << ")";
      EXPECT_EQ(e, kSentinel) << "posix_memalign(" << align << ", " << n << ")";
      ExpectUsableBlock(api, p, n, align, "posix_memalign");
      api.free(p);
    }
  }
}

TEST_P(CApiConformanceTest, PosixMemalignSizeZeroGivesUniqueBlocks) {
  const CApi& api = GetParam();
  void* a = kUntouched;
  void* b = kUntouched;
  errno = kSentinel;
  ASSERT_EQ(api.posix_memalign(&a, 64, 0), 0);
  ASSERT_EQ(api.posix_memalign(&b, 64, 0), 0);
  EXPECT_EQ(errno, kSentinel);
  ASSERT_NE(a, nullptr);
  ASSERT_NE(b, nullptr);
  EXPECT_NE(a, b);
  EXPECT_TRUE(IsAligned(a, 64));
  EXPECT_TRUE(IsAligned(b, 64));
  api.free(a);
  api.free(b);
}

// EINVAL unless the alignment is a power-of-two multiple of sizeof(void*);
// neither errno nor *memptr changes.
TEST_P(CApiConformanceTest, PosixMemalignRejectsBadAlignmentsWithEinval) {
  const CApi& api = GetParam();
  const std::size_t bad[] = {0,  1,  2,  3,  4,  5,  12,  24, 40,
                             48, 96, 4097, 3 * 4096,
                             sizeof(void*) / 2,
                             kSizeMax, kPtrdiffMax, kPtrdiffMax + 1 + 8};
  for (std::size_t align : bad) {
    void* p = kUntouched;
    errno = kSentinel;
    const int r = api.posix_memalign(&p, align, 16);
    const int e = errno;
    EXPECT_EQ(r, EINVAL) << "posix_memalign(align=" << align << ")";
    EXPECT_EQ(e, kSentinel) << "posix_memalign(align=" << align << ")";
    EXPECT_EQ(p, kUntouched) << "posix_memalign(align=" << align << ")";
    if (r == 0) api.free(p);
  }
}

// ENOMEM is returned (errno = ENOMEM too, as glibc) and *memptr untouched.
TEST_P(CApiConformanceTest, PosixMemalignFailsWithEnomem) {
  const CApi& api = GetParam();
  const std::pair<std::size_t, std::size_t> cases[] = {
      {64, kSizeMax},
      {64, kPtrdiffMax + 1},
      {64, kPtrdiffMax},
      {4096, kPtrdiffMax - 4095},
      {4 * kMiB, kPtrdiffMax - 2 * kMiB},
      {kPtrdiffMax + 1, 1},  // 2^63: a valid alignment no block can have
      {std::size_t{1} << 62, std::size_t{1} << 62},
      {std::size_t{1} << 62, 1},
  };
  for (auto [align, n] : cases) {
    void* p = kUntouched;
    errno = kSentinel;
    const int r = api.posix_memalign(&p, align, n);
    const int e = errno;
    EXPECT_EQ(r, ENOMEM) << "posix_memalign(" << align << ", " << n << ")";
    EXPECT_EQ(e, ENOMEM) << "posix_memalign(" << align << ", " << n << ")";
    EXPECT_EQ(p, kUntouched) << "posix_memalign(" << align << ", " << n << ")";
    if (r == 0) api.free(p);
  }
  for (std::size_t n : kHugeSizes) {
    void* p = kUntouched;
    EXPECT_EQ(api.posix_memalign(&p, 32, n), ENOMEM) << n;
    EXPECT_EQ(p, kUntouched);
  }
}

TEST_P(CApiConformanceTest, AlignedAllocAlignsAllPowersOfTwo) {
  const CApi& api = GetParam();
  for (std::size_t align : Alignments()) {
    // A multiple of the alignment (C11's requirement) and not (C17 allows
    // any size; glibc always has).
    for (std::size_t n : {align, std::size_t{1}, 3 * align + 5}) {
      auto [p, e] = Call([&] { return api.aligned_alloc(align, n); });
      EXPECT_EQ(e, kSentinel) << "aligned_alloc(" << align << ", " << n << ")";
      ExpectUsableBlock(api, p, n, align, "aligned_alloc");
      api.free(p);
    }
  }
}

// An alignment that is not a power of two fails with EINVAL (C17 DR 460,
// glibc >= 2.38: aligned_alloc(65, 64) is NULL). glibc <= 2.37 rounds it up
// like memalign; with aligned_alloc_rejects_non_power_of_two cleared, that
// is accepted too.
TEST_P(CApiConformanceTest, AlignedAllocRejectsNonPowerOfTwoAlignments) {
  const CApi& api = GetParam();
  for (std::size_t align : {std::size_t{3}, std::size_t{24}, std::size_t{48},
                            std::size_t{65}, std::size_t{100},
                            std::size_t{5000}, kMiB + 1}) {
    for (std::size_t n : {std::size_t{10}, std::size_t{64}}) {
      auto [p, e] = Call([&] { return api.aligned_alloc(align, n); });
      if (api.aligned_alloc_rejects_non_power_of_two) {
        EXPECT_EQ(p, nullptr) << "aligned_alloc(" << align << ", " << n << ")";
      }
      if (p == nullptr) {
        EXPECT_EQ(e, EINVAL) << "aligned_alloc(" << align << ", " << n << ")";
      } else {
        EXPECT_EQ(e, kSentinel);
        ExpectUsableBlock(api, p, n, std::bit_ceil(align), "aligned_alloc");
        api.free(p);
      }
    }
  }
  // Zero: glibc <= 2.37 treats it as "no requirement", 2.38 as EINVAL.
  auto [p, e] = Call([&] { return api.aligned_alloc(0, 10); });
  if (api.aligned_alloc_rejects_non_power_of_two) {
    EXPECT_EQ(p, nullptr) << "aligned_alloc(0, 10)";
  }
  if (p == nullptr) {
    EXPECT_EQ(e, EINVAL);
  } else {
    EXPECT_EQ(e, kSentinel);
    ExpectUsableBlock(api, p, 10, MallocAlignment(10), "aligned_alloc(0)");
    api.free(p);
  }
}

// Alignments above SIZE_MAX / 2 + 1 cannot be powers of two nor be rounded
// up to one: EINVAL (all glibc versions).
TEST_P(CApiConformanceTest, AlignedAllocAndMemalignRejectHugeAlignments) {
  const CApi& api = GetParam();
  for (std::size_t align : {kSizeMax / 2 + 2, kSizeMax - 1, kSizeMax}) {
    auto [p, e] = Call([&] { return api.aligned_alloc(align, 10); });
    EXPECT_EQ(p, nullptr) << "aligned_alloc(" << align << ")";
    EXPECT_EQ(e, EINVAL) << "aligned_alloc(" << align << ")";
    auto [q, e2] = Call([&] { return api.memalign(align, 10); });
    EXPECT_EQ(q, nullptr) << "memalign(" << align << ")";
    EXPECT_EQ(e2, EINVAL) << "memalign(" << align << ")";
  }
}

TEST_P(CApiConformanceTest, AlignedAllocAndMemalignFailWithEnomem) {
  const CApi& api = GetParam();
  const std::pair<std::size_t, std::size_t> cases[] = {
      {64, kSizeMax},
      {64, kPtrdiffMax + 1},
      {64, kPtrdiffMax},
      {4096, kPtrdiffMax - 4095},
      {4 * kMiB, kPtrdiffMax - 2 * kMiB},
      {kPtrdiffMax + 1, 1},
      {std::size_t{1} << 62, std::size_t{1} << 62},
      {std::size_t{1} << 62, 1},
  };
  for (const auto& c : cases) {
    const std::size_t align = c.first, n = c.second;
    auto [p, e] = Call([&] { return api.aligned_alloc(align, n); });
    EXPECT_EQ(p, nullptr) << "aligned_alloc(" << align << ", " << n << ")";
    EXPECT_EQ(e, ENOMEM) << "aligned_alloc(" << align << ", " << n << ")";
    auto [q, e2] = Call([&] { return api.memalign(align, n); });
    EXPECT_EQ(q, nullptr) << "memalign(" << align << ", " << n << ")";
    EXPECT_EQ(e2, ENOMEM) << "memalign(" << align << ", " << n << ")";
  }
}

TEST_P(CApiConformanceTest, AlignedEntryPointsAcceptSizeZero) {
  const CApi& api = GetParam();
  std::vector<void*> blocks;
  for (std::size_t align : {std::size_t{8}, std::size_t{64}, std::size_t{4096},
                            kMiB}) {
    auto [p, e] = Call([&] { return api.aligned_alloc(align, 0); });
    ASSERT_NE(p, nullptr);
    EXPECT_EQ(e, kSentinel);
    EXPECT_TRUE(IsAligned(p, align));
    blocks.push_back(p);
    auto [q, e2] = Call([&] { return api.memalign(align, 0); });
    ASSERT_NE(q, nullptr);
    EXPECT_EQ(e2, kSentinel);
    EXPECT_TRUE(IsAligned(q, align));
    blocks.push_back(q);
  }
  std::vector<void*> sorted = blocks;
  std::sort(sorted.begin(), sorted.end());
  EXPECT_EQ(std::adjacent_find(sorted.begin(), sorted.end()), sorted.end());
  for (void* p : blocks) api.free(p);
}

TEST_P(CApiConformanceTest, MemalignAlignsAllPowersOfTwo) {
  const CApi& api = GetParam();
  for (std::size_t align : Alignments()) {
    for (std::size_t n : {std::size_t{1}, align + 1}) {
      auto [p, e] = Call([&] { return api.memalign(align, n); });
      EXPECT_EQ(e, kSentinel) << "memalign(" << align << ", " << n << ")";
      ExpectUsableBlock(api, p, n, align, "memalign");
      api.free(p);
    }
  }
  // Alignments below the default are plain malloc.
  for (std::size_t align : {std::size_t{0}, std::size_t{1}, std::size_t{2},
                            std::size_t{4}}) {
    auto [p, e] = Call([&] { return api.memalign(align, 100); });
    EXPECT_EQ(e, kSentinel);
    ExpectUsableBlock(api, p, 100, MallocAlignment(100), "memalign(small)");
    api.free(p);
  }
}

// memalign rounds a non-power-of-two alignment up to the next power of two.
TEST_P(CApiConformanceTest, MemalignRoundsNonPowerOfTwoAlignmentUp) {
  const CApi& api = GetParam();
  for (std::size_t align : {std::size_t{3}, std::size_t{12}, std::size_t{24},
                            std::size_t{48}, std::size_t{100},
                            std::size_t{3000}, std::size_t{5000},
                            kMiB + 1}) {
    auto [p, e] = Call([&] { return api.memalign(align, 10); });
    EXPECT_EQ(e, kSentinel) << "memalign(" << align << ")";
    ExpectUsableBlock(api, p, 10, std::bit_ceil(align), "memalign");
    api.free(p);
  }
}

TEST_P(CApiConformanceTest, VallocIsPageAligned) {
  const CApi& api = GetParam();
  const std::size_t page = PageSize();
  for (std::size_t n : {std::size_t{0}, std::size_t{1}, page - 1, page,
                        page + 1, 3 * page + 5, kMiB}) {
    auto [p, e] = Call([&] { return api.valloc(n); });
    EXPECT_EQ(e, kSentinel) << "valloc(" << n << ")";
    ExpectUsableBlock(api, p, n, page, "valloc");
    api.free(p);
  }
  for (std::size_t n : kHugeSizes) {
    auto [p, e] = Call([&] { return api.valloc(n); });
    EXPECT_EQ(p, nullptr) << "valloc(" << n << ")";
    EXPECT_EQ(e, ENOMEM) << "valloc(" << n << ")";
  }
}

TEST_P(CApiConformanceTest, PvallocRoundsUpToWholePages) {
  const CApi& api = GetParam();
  const std::size_t page = PageSize();
  for (std::size_t n : {std::size_t{1}, page - 1, page, page + 1,
                        3 * page + 5, kMiB + 1}) {
    auto [p, e] = Call([&] { return api.pvalloc(n); });
    EXPECT_EQ(e, kSentinel) << "pvalloc(" << n << ")";
    ExpectUsableBlock(api, p, (n + page - 1) / page * page, page, "pvalloc");
    api.free(p);
  }
  auto [p, e] = Call([&] { return api.pvalloc(0); });
  EXPECT_EQ(e, kSentinel);
  ExpectUsableBlock(api, p, api.pvalloc_zero_is_page ? page : 0, page,
                    "pvalloc(0)");
  api.free(p);
  // Rounding up would overflow, or exceed PTRDIFF_MAX.
  for (std::size_t n : kHugeSizes) {
    auto [q, e2] = Call([&] { return api.pvalloc(n); });
    EXPECT_EQ(q, nullptr) << "pvalloc(" << n << ")";
    EXPECT_EQ(e2, ENOMEM) << "pvalloc(" << n << ")";
  }
}

// Every entry point gives a distinct, non-null block for size 0.
TEST_P(CApiConformanceTest, ZeroSizesGiveDistinctBlocks) {
  const CApi& api = GetParam();
  std::vector<void*> blocks;
  auto add = [&](const char* what, Result r) {
    EXPECT_NE(r.p, nullptr) << what;
    EXPECT_EQ(r.err, kSentinel) << what;
    if (r.p != nullptr) blocks.push_back(r.p);
  };
  add("malloc(0)", Call([&] { return api.malloc(0); }));
  add("calloc(0, 0)", Call([&] { return api.calloc(0, 0); }));
  add("calloc(0, 7)", Call([&] { return api.calloc(0, 7); }));
  add("calloc(7, 0)", Call([&] { return api.calloc(7, 0); }));
  add("calloc(0, SIZE_MAX)", Call([&] { return api.calloc(0, kSizeMax); }));
  add("realloc(NULL, 0)", Call([&] { return api.realloc(nullptr, 0); }));
  add("reallocarray(NULL, 0, 0)",
      Call([&] { return api.reallocarray(nullptr, 0, 0); }));
  add("memalign(64, 0)", Call([&] { return api.memalign(64, 0); }));
  add("aligned_alloc(64, 0)", Call([&] { return api.aligned_alloc(64, 0); }));
  add("valloc(0)", Call([&] { return api.valloc(0); }));
  add("pvalloc(0)", Call([&] { return api.pvalloc(0); }));
  add("posix_memalign(.., 64, 0)", Call([&] {
        void* p = nullptr;
        return api.posix_memalign(&p, 64, 0) == 0 ? p : nullptr;
      }));
  std::vector<void*> sorted = blocks;
  std::sort(sorted.begin(), sorted.end());
  EXPECT_EQ(std::adjacent_find(sorted.begin(), sorted.end()), sorted.end())
      << "two zero-size allocations returned the same block";
  for (void* p : blocks) api.free(p);
}

// ------------------------------------------------------- optional functions

TEST_P(CApiConformanceTest, CfreeFrees) {
  const CApi& api = GetParam();
  if (api.cfree == nullptr) GTEST_SKIP() << "no cfree";
  errno = kSentinel;
  api.cfree(nullptr);
  api.cfree(api.malloc(100));
  api.cfree(api.calloc(10, 10));
  EXPECT_EQ(errno, kSentinel);
}

TEST_P(CApiConformanceTest, FreeSizedFrees) {
  const CApi& api = GetParam();
  if (api.free_sized == nullptr) GTEST_SKIP() << "no free_sized";
  errno = kSentinel;
  api.free_sized(nullptr, 10);
  for (std::size_t n : {std::size_t{0}, std::size_t{1}, std::size_t{24},
                        std::size_t{5000}, 3 * kMiB}) {
    void* p = api.malloc(n);
    ASSERT_NE(p, nullptr);
    api.free_sized(p, n);
    p = api.calloc(1, n);
    ASSERT_NE(p, nullptr);
    api.free_sized(p, n);
    // After realloc the size to give is the realloc size.
    p = api.realloc(api.malloc(n + 10), n + 1);
    ASSERT_NE(p, nullptr);
    api.free_sized(p, n + 1);
  }
  EXPECT_EQ(errno, kSentinel);
}

TEST_P(CApiConformanceTest, FreeAlignedSizedFrees) {
  const CApi& api = GetParam();
  if (api.free_aligned_sized == nullptr) {
    GTEST_SKIP() << "no free_aligned_sized";
  }
  errno = kSentinel;
  api.free_aligned_sized(nullptr, 64, 10);
  for (std::size_t align : Alignments()) {
    for (std::size_t n : {std::size_t{0}, align}) {
      void* p = api.aligned_alloc(align, n);
      ASSERT_NE(p, nullptr);
      ASSERT_TRUE(IsAligned(p, align));
      std::memset(p, 0x77, n);
      api.free_aligned_sized(p, align, n);
    }
  }
  EXPECT_EQ(errno, kSentinel);
}

TEST_P(CApiConformanceTest, MallocTrimReturnsZeroOrOne) {
  const CApi& api = GetParam();
  if (api.malloc_trim == nullptr) GTEST_SKIP() << "no malloc_trim";
  void* p = api.malloc(4 * kMiB);
  api.free(p);
  errno = kSentinel;
  const int r = api.malloc_trim(0);
  EXPECT_EQ(errno, kSentinel);
  EXPECT_TRUE(r == 0 || r == 1) << r;
}

// ------------------------------------------------------------------ threads

// Two threads allocate, resize and free through every allocating entry
// point, handing half of their blocks to the other thread to free. Checks
// that blocks stay intact while shared (a tag pattern at both ends).
TEST_P(CApiConformanceTest, ThreadsAllocateAndFreeAcrossThreads) {
  const CApi& api = GetParam();
  struct Block {
    unsigned char* p;
    std::size_t n;
    unsigned tag;
  };
  std::mutex mu;
  std::vector<Block> shared;  // blocks handed to the other thread
  std::vector<int> errors(2, 0);
  // The tag's low byte goes first in the block, its next byte last (blocks
  // of one byte hold only the first).
  auto tag_ok = [](const Block& b) {
    return (b.n == 0 || b.p[0] == (b.tag & 0xff)) &&
           (b.n < 2 || b.p[b.n - 1] == ((b.tag >> 8) & 0xff));
  };
  auto body = [&](int t) {
    std::uint64_t rng = 12345 + t;
    std::vector<Block> mine;
    for (unsigned i = 0; i < 4000; ++i) {
      rng = rng * 6364136223846793005u + 1442695040888963407u;
      const unsigned r = static_cast<unsigned>(rng >> 33);
      std::size_t n = r % 512;
      if (r % 64 == 0) n = 20000 + r % 50000;
      void* p = nullptr;
      switch (r % 5) {
        case 0: p = api.malloc(n); break;
        case 1: p = api.calloc(1, n); break;
        case 2: p = api.memalign(64, n); break;
        case 3: p = api.realloc(nullptr, n); break;
        default:
          if (api.posix_memalign(&p, 32, n) != 0) p = nullptr;
          break;
      }
      if (p == nullptr) {
        ++errors[t];
        continue;
      }
      Block b{static_cast<unsigned char*>(p), n, (t + 1) * 1000003u + i};
      if (n > 0) b.p[0] = b.tag & 0xff;
      if (n > 1) b.p[n - 1] = (b.tag >> 8) & 0xff;
      mine.push_back(b);
      if (mine.size() > 32) {
        Block old = mine[r % mine.size()];
        mine[r % mine.size()] = mine.back();
        mine.pop_back();
        if (!tag_ok(old)) ++errors[t];
        if (r % 2 == 0) {
          std::lock_guard<std::mutex> l(mu);
          shared.push_back(old);
        } else if (r % 3 == 0 && old.n > 0) {
          // Resize, then free here.
          void* q = api.realloc(old.p, old.n * 2);
          if (q == nullptr ||
              static_cast<unsigned char*>(q)[0] != (old.tag & 0xff)) {
            ++errors[t];
          }
          api.free(q);
        } else {
          api.free(old.p);
        }
      }
      if (i % 16 == 0) {
        std::vector<Block> take;
        {
          std::lock_guard<std::mutex> l(mu);
          take.swap(shared);
        }
        for (const Block& b2 : take) {
          if (!tag_ok(b2)) ++errors[t];
          api.free(b2.p);
        }
      }
    }
    for (const Block& b : mine) {
      if (!tag_ok(b)) ++errors[t];
      api.free(b.p);
    }
  };
  std::thread a(body, 0);
  std::thread b(body, 1);
  a.join();
  b.join();
  for (const Block& blk : shared) {
    EXPECT_TRUE(tag_ok(blk));
    api.free(blk.p);
  }
  EXPECT_EQ(errors[0], 0);
  EXPECT_EQ(errors[1], 0);
}

}  // namespace
}  // namespace malloc_bind
