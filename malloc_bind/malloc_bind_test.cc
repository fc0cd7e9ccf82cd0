// Tests of malloc_bind::Api over the instrumented RecordingBackend: which
// backend member each function calls (optional members used when present,
// defaults otherwise), exact glibc 2.36 results, the fixes of the reference's
// QUIRKs (allocators-rs section 10), and both conformance suites over the
// prefixed C API and the operator functions, with fault injection.
#include "malloc_bind/malloc_bind.h"

#include <errno.h>
#include <unistd.h>

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <exception>
#include <initializer_list>
#include <iterator>
#include <limits>
#include <new>
#include <utility>

#include "gtest/gtest.h"
#include "malloc_bind/c_api_conformance.h"
#include "malloc_bind/cxx_api_conformance.h"
#include "malloc_bind/cxx_runtime.h"
#include "malloc_bind/test_backends.h"
#include "malloc_bind/version.h"

namespace malloc_bind {
namespace {

// A backend with sized deallocation but no Reallocate: realloc must then
// always move the block (see Api::ReallocByCopy).
struct SizedNoReallocBackend : backends::MinimalBackend {
  static inline std::size_t last_sized_free = 0;
  static void DeallocateSized(void* p, std::size_t n) noexcept {
    last_sized_free = n;
    Deallocate(p);
  }
};

}  // namespace
}  // namespace malloc_bind

// The C API over both fakes, prefixed so this binary still runs on glibc.
MALLOC_BIND_DEFINE_C_API(mb_full_, malloc_bind::backends::FullBackend)
MALLOC_BIND_DEFINE_C_API(mb_min_, malloc_bind::backends::MinimalBackend)

MALLOC_BIND_INSTANTIATE_C_API_CONFORMANCE(FullBackend,
                                          MALLOC_BIND_C_API_OF(mb_full_));
MALLOC_BIND_INSTANTIATE_C_API_CONFORMANCE(MinimalBackend,
                                          MALLOC_BIND_C_API_OF(mb_min_));
MALLOC_BIND_INSTANTIATE_CXX_API_CONFORMANCE(
    FullBackend, malloc_bind::CxxApiOf<malloc_bind::backends::FullBackend>(
                     "full", &malloc_bind::backends::FullBackend::FailNext));
MALLOC_BIND_INSTANTIATE_CXX_API_CONFORMANCE(
    MinimalBackend,
    malloc_bind::CxxApiOf<malloc_bind::backends::MinimalBackend>(
        "minimal", &malloc_bind::backends::MinimalBackend::FailNext));

namespace malloc_bind {
namespace {

using backends::FullBackend;
using backends::MinimalBackend;
using Full = Api<FullBackend>;
using Min = Api<MinimalBackend>;

constexpr int kSentinel = 0x4d42;
constexpr std::size_t kSizeMax = std::numeric_limits<std::size_t>::max();

std::size_t PageSize() { return static_cast<std::size_t>(sysconf(_SC_PAGESIZE)); }

bool IsAligned(const void* p, std::size_t a) {
  return reinterpret_cast<std::uintptr_t>(p) % a == 0;
}

// Resets both fakes' counters and injected failures around each test.
class ApiTest : public ::testing::Test {
 protected:
  void SetUp() override { Reset(); }
  void TearDown() override {
    EXPECT_EQ(full().live.load(), 0) << "FullBackend blocks leaked";
    EXPECT_EQ(min().live.load(), 0) << "MinimalBackend blocks leaked";
    Reset();
  }
  static void Reset() {
    full().Reset();
    min().Reset();
    FullBackend::FailNext(0);
    MinimalBackend::FailNext(0);
  }
  static backends::Counters& full() { return FullBackend::counters(); }
  static backends::Counters& min() { return MinimalBackend::counters(); }
};

// ---------------------------------------------------------------- concept

struct NoUsableSize {
  [[maybe_unused]] static constexpr std::size_t kDefaultAlignment = 16;
  static void* Allocate(std::size_t) noexcept { return nullptr; }
  static void* AllocateAligned(std::size_t, std::size_t) noexcept {
    return nullptr;
  }
  static void Deallocate(void*) noexcept {}
};
struct ThrowingAllocate : NoUsableSize {
  static void* Allocate(std::size_t) { return nullptr; }  // not noexcept
  static std::size_t UsableSize(const void*) noexcept { return 0; }
};
template <std::size_t kAlign>
struct WithAlignment : NoUsableSize {
  static constexpr std::size_t kDefaultAlignment = kAlign;
  static std::size_t UsableSize(const void*) noexcept { return 0; }
};

TEST(BackendConceptTest, RequiresTheCoreMembersNoexceptAndASaneAlignment) {
  static_assert(!Backend<NoUsableSize>);
  static_assert(!Backend<ThrowingAllocate>);
  static_assert(Backend<WithAlignment<8>>);
  static_assert(Backend<WithAlignment<16>>);
  static_assert(!Backend<WithAlignment<12>>);  // not a power of two
  static_assert(!Backend<WithAlignment<4>>);   // below sizeof(void*)
  static_assert(!HasReallocate<SizedNoReallocBackend>);
  static_assert(HasDeallocateSized<SizedNoReallocBackend>);
  EXPECT_STREQ(kVersion, "0.1.0");
}

// ------------------------------------------------------------- fast paths

TEST_F(ApiTest, MallocAndFreeCallOnlyAllocateAndDeallocate) {
  void* p = Full::Malloc(100);
  ASSERT_NE(p, nullptr);
  Full::Free(p);
  EXPECT_EQ(full().allocate.load(), 1);
  EXPECT_EQ(full().deallocate.load(), 1);
  EXPECT_EQ(full().allocate_aligned.load(), 0);
  EXPECT_EQ(full().deallocate_sized.load(), 0);
  Full::Free(nullptr);
  EXPECT_EQ(full().deallocate.load(), 1) << "free(NULL) reached the backend";
}

TEST_F(ApiTest, SizesAbovePtrdiffMaxNeverReachTheBackend) {
  for (std::size_t n : {kMaxSize + 1, kSizeMax}) {
    errno = kSentinel;
    EXPECT_EQ(Full::Malloc(n), nullptr);
    EXPECT_EQ(errno, ENOMEM);
    errno = kSentinel;
    EXPECT_EQ(Full::Memalign(64, n), nullptr);
    EXPECT_EQ(errno, ENOMEM);
    errno = kSentinel;
    EXPECT_EQ(Full::Pvalloc(n), nullptr);
    EXPECT_EQ(errno, ENOMEM);
  }
  // n + align > PTRDIFF_MAX: the promise AllocateAligned relies on.
  errno = kSentinel;
  EXPECT_EQ(Full::Memalign(std::size_t{1} << 62, std::size_t{1} << 62),
            nullptr);
  EXPECT_EQ(errno, ENOMEM);
  // pvalloc rounding past PTRDIFF_MAX.
  errno = kSentinel;
  EXPECT_EQ(Full::Pvalloc(kMaxSize - 10), nullptr);
  EXPECT_EQ(errno, ENOMEM);
  EXPECT_EQ(full().allocate.load() + full().allocate_aligned.load(), 0);
}

// A backend that takes free(NULL) and oversized requests itself: the
// binding calls it without its own tests.
struct TrustingBackend : backends::MinimalBackend {
  static constexpr bool kDeallocatesNull = true;
  static constexpr bool kAllocatesAnySize = true;
  static inline int null_frees = 0;
  static inline std::size_t last_request = 0;
  static void* Allocate(std::size_t n) noexcept {
    last_request = n;
    if (n > kMaxSize) {
      errno = ENOMEM;
      return nullptr;
    }
    return MinimalBackend::Allocate(n);
  }
  static void Deallocate(void* p) noexcept {
    if (p == nullptr) {
      ++null_frees;
      return;
    }
    MinimalBackend::Deallocate(p);
  }
};

TEST_F(ApiTest, TrustingBackendsGetFreeOfNullAndEverySize) {
  using Trusting = Api<TrustingBackend>;
  static_assert(DeallocatesNull<TrustingBackend>);
  static_assert(AllocatesAnySize<TrustingBackend>);
  static_assert(!DeallocatesNull<FullBackend>);
  static_assert(!AllocatesAnySize<FullBackend>);
  Trusting::Free(nullptr);
  EXPECT_EQ(TrustingBackend::null_frees, 1);
  errno = kSentinel;
  EXPECT_EQ(Trusting::Malloc(kSizeMax), nullptr);
  EXPECT_EQ(TrustingBackend::last_request, kSizeMax);
  EXPECT_EQ(errno, ENOMEM);
  void* p = Trusting::Malloc(100);
  ASSERT_NE(p, nullptr);
  Trusting::Free(p);
  // operator delete, plain and sized, goes straight to Deallocate too.
  Trusting::OperatorDelete(nullptr);
  Trusting::OperatorDeleteSized(nullptr, 24);
  EXPECT_EQ(TrustingBackend::null_frees, 3);
  // What lets a shared object alias malloc, free and operator delete to
  // the backend's functions at link time.
  static_assert(Trusting::kMallocIsAllocate && Trusting::kFreeIsDeallocate &&
                Trusting::kOperatorDeleteIsDeallocate);
  static_assert(!Full::kMallocIsAllocate && !Full::kFreeIsDeallocate &&
                !Full::kOperatorDeleteIsDeallocate);
}

TEST_F(ApiTest, BackendFailureIsEnomemAndNull) {
  FullBackend::FailNext(1);
  errno = kSentinel;
  EXPECT_EQ(Full::Malloc(10), nullptr);
  EXPECT_EQ(errno, ENOMEM);
  MinimalBackend::FailNext(1);
  errno = kSentinel;
  EXPECT_EQ(Min::Calloc(10, 10), nullptr);
  EXPECT_EQ(errno, ENOMEM);
}

// ------------------------------------------------------- optional members

TEST_F(ApiTest, CallocUsesAllocateZeroedOrMemsetsDirtyMemory) {
  void* p = Full::Calloc(10, 10);
  ASSERT_NE(p, nullptr);
  EXPECT_EQ(full().allocate_zeroed.load(), 1);
  EXPECT_EQ(full().allocate.load(), 0);
  Full::Free(p);
  // MinimalBackend hands out 0xA5-filled memory: calloc must clear it.
  auto* q = static_cast<unsigned char*>(Min::Calloc(10, 10));
  ASSERT_NE(q, nullptr);
  EXPECT_EQ(min().allocate.load(), 1);
  for (int i = 0; i < 100; ++i) ASSERT_EQ(q[i], 0) << i;
  Min::Free(q);
}

TEST_F(ApiTest, ReallocUsesBackendReallocateWhenPresent) {
  void* p = Full::Malloc(100);
  std::memset(p, 7, 100);
  void* q = Full::Realloc(p, 200);
  ASSERT_NE(q, nullptr);
  EXPECT_EQ(full().reallocate.load(), 1);
  EXPECT_EQ(static_cast<unsigned char*>(q)[99], 7);
  Full::Free(q);
}

// Without Reallocate: the block is kept when the new size fits its usable
// size and uses at least half of it (MinimalBackend: usable = n rounded up
// to 16), and moved otherwise.
TEST_F(ApiTest, DefaultReallocKeepsFittingBlocksAndMovesTheRest) {
  void* p = Min::Malloc(100);  // usable 112
  ASSERT_EQ(Min::MallocUsableSize(p), 112u);
  EXPECT_EQ(Min::Realloc(p, 112), p);
  EXPECT_EQ(Min::Realloc(p, 56), p);
  EXPECT_EQ(min().allocate.load(), 1);
  std::memset(p, 3, 56);
  void* q = Min::Realloc(p, 55);  // below half: moves, freeing p
  ASSERT_NE(q, nullptr);
  EXPECT_NE(q, p);
  EXPECT_EQ(min().deallocate.load(), 1);
  EXPECT_EQ(static_cast<unsigned char*>(q)[54], 3);
  void* r = Min::Realloc(q, 113);  // grows past usable: moves
  EXPECT_NE(r, q);
  EXPECT_EQ(static_cast<unsigned char*>(r)[54], 3);
  EXPECT_EQ(min().live.load(), 1);
  Min::Free(r);
}

// With sized frees and no Reallocate, keeping a block would later hand
// DeallocateSized a size the block was not allocated with: always move.
TEST_F(ApiTest, DefaultReallocAlwaysMovesForSizedBackends) {
  using Sized = Api<SizedNoReallocBackend>;
  void* p = Sized::Malloc(100);
  void* q = Sized::Realloc(p, 110);  // fits p's usable 112, still moves
  ASSERT_NE(q, nullptr);
  EXPECT_NE(q, p);
  Sized::FreeSized(q, 110);
  EXPECT_EQ(SizedNoReallocBackend::last_sized_free, 110u);
}

TEST_F(ApiTest, SizedFreesUseDeallocateSizedWithTheRequestedSize) {
  void* p = Full::Malloc(100);
  Full::FreeSized(p, 100);
  EXPECT_EQ(full().deallocate_sized.load(), 1);
  EXPECT_EQ(full().last_sized_free.load(), 100u);
  // calloc's size is the product.
  p = Full::Calloc(7, 9);
  Full::FreeSized(p, 63);
  EXPECT_EQ(full().last_sized_free.load(), 63u);
  // Operators.
  p = Full::OperatorNew(24);
  Full::OperatorDeleteSized(p, 24);
  EXPECT_EQ(full().deallocate_sized.load(), 3);
  EXPECT_EQ(full().deallocate.load(), 0);
  // The minimal backend frees unsized.
  p = Min::Malloc(100);
  Min::FreeSized(p, 100);
  p = Min::OperatorNew(24);
  Min::OperatorDeleteSized(p, 24);
  EXPECT_EQ(min().deallocate.load(), 2);
  // (RecordingBackend aborts on a size mismatch, so reaching here means
  // every size above was exact.)
}

TEST_F(ApiTest, AlignedSizedFreesMatchHowTheBlockWasAllocated) {
  // Alignment above the default: AllocateAligned, DeallocateAlignedSized.
  void* p = Full::AlignedAlloc(64, 100);
  EXPECT_EQ(full().allocate_aligned.load(), 1);
  Full::FreeAlignedSized(p, 64, 100);
  EXPECT_EQ(full().deallocate_aligned_sized.load(), 1);
  EXPECT_EQ(full().last_aligned_free.load(), 64u);
  // At or below the default: Allocate, DeallocateSized.
  p = Full::AlignedAlloc(8, 100);
  EXPECT_EQ(full().allocate.load(), 1);
  Full::FreeAlignedSized(p, 8, 100);
  EXPECT_EQ(full().deallocate_sized.load(), 1);
  // A non-power-of-two alignment is rounded the same way on both sides.
  p = Full::AlignedAlloc(48, 100);
  Full::FreeAlignedSized(p, 48, 100);
  EXPECT_EQ(full().last_aligned_free.load(), 64u);
  // Operators.
  p = Full::OperatorNewAligned(100, std::align_val_t{256});
  Full::OperatorDeleteAlignedSized(p, 100, std::align_val_t{256});
  EXPECT_EQ(full().last_aligned_free.load(), 256u);
  p = Full::OperatorNewAligned(100, std::align_val_t{16});
  EXPECT_EQ(full().allocate.load(), 2) << "align 16 is the default: Allocate";
  Full::OperatorDeleteAlignedSized(p, 100, std::align_val_t{16});
  EXPECT_EQ(full().deallocate_sized.load(), 2);
}

TEST_F(ApiTest, MallocTrimReportsWhetherTheBackendReleasedMemory) {
  Full::Free(Full::Malloc(10));
  EXPECT_EQ(Full::MallocTrim(0), 1);
  EXPECT_EQ(Full::MallocTrim(0), 0) << "nothing freed since";
  EXPECT_EQ(full().release.load(), 2);
  EXPECT_EQ(Min::MallocTrim(0), 0) << "no ReleaseFreeMemory: nothing to do";
}

TEST_F(ApiTest, MalloptIsAcceptedAndIgnored) {
  errno = kSentinel;
  EXPECT_EQ(Full::Mallopt(-8 /* M_ARENA_MAX */, 2), 1);
  EXPECT_EQ(Full::Mallopt(12345, 0), 1);
  EXPECT_EQ(errno, kSentinel);
}

// ---------------------------------------------- glibc 2.36 exact behaviour

// aligned_alloc as in glibc 2.38 (C17 DR 460): an alignment that is not a
// power of two, 0 included, fails with EINVAL before the backend is asked
// (glibc's tst-aligned-alloc: aligned_alloc(65, 64)); any size is fine.
TEST_F(ApiTest, AlignedAllocRejectsNonPowerOfTwoAlignments) {
  for (std::size_t align : {std::size_t{0}, std::size_t{3}, std::size_t{24},
                            std::size_t{65}, kSizeMax / 2 + 2, kSizeMax}) {
    errno = kSentinel;
    EXPECT_EQ(Full::AlignedAlloc(align, 64), nullptr) << align;
    EXPECT_EQ(errno, EINVAL) << align;
  }
  EXPECT_EQ(full().allocate.load(), 0);
  EXPECT_EQ(full().allocate_aligned.load(), 0);
  errno = kSentinel;
  void* p = Full::AlignedAlloc(4096, 10);  // size not a multiple: fine
  ASSERT_NE(p, nullptr);
  EXPECT_TRUE(IsAligned(p, 4096));
  Full::Free(p);
  p = Full::AlignedAlloc(1, 10);  // 1 is a power of two: malloc
  ASSERT_NE(p, nullptr);
  Full::Free(p);
  EXPECT_EQ(errno, kSentinel);
}

TEST_F(ApiTest, PvallocRoundsToPagesAndZeroIsOnePage) {
  const std::size_t page = PageSize();
  void* p = Full::Pvalloc(0);
  ASSERT_NE(p, nullptr);
  EXPECT_TRUE(IsAligned(p, page));
  EXPECT_EQ(Full::MallocUsableSize(p), page);
  Full::Free(p);
  p = Full::Pvalloc(page + 1);
  EXPECT_EQ(Full::MallocUsableSize(p), 2 * page);
  Full::Free(p);
  p = Full::Pvalloc(page);  // glibc 2.36 asks for page + 1 here
  EXPECT_EQ(Full::MallocUsableSize(p), page);
  Full::Free(p);
}

// ---------------------------------------------------------- the QUIRKs

// QUIRK (allocators-rs 052eed5): the reference's realloc allocated a new
// block without copying into it or freeing the old one. Ours copies
// min(old usable, new) bytes and frees the old block.
TEST_F(ApiTest, QuirkReallocCopiesAndFreesTheOldBlock) {
  auto* p = static_cast<unsigned char*>(Min::Malloc(100));
  for (int i = 0; i < 100; ++i) p[i] = static_cast<unsigned char>(i);
  auto* q = static_cast<unsigned char*>(Min::Realloc(p, 5000));
  ASSERT_NE(q, nullptr);
  ASSERT_NE(q, p);
  for (int i = 0; i < 100; ++i) ASSERT_EQ(q[i], i);
  EXPECT_EQ(min().deallocate.load(), 1) << "the old block was not freed";
  EXPECT_EQ(min().live.load(), 1);
  Min::Free(q);
  // Same through the backend's own Reallocate.
  p = static_cast<unsigned char*>(Full::Malloc(100));
  for (int i = 0; i < 100; ++i) p[i] = static_cast<unsigned char>(i);
  q = static_cast<unsigned char*>(Full::Realloc(p, 5000));
  for (int i = 0; i < 100; ++i) ASSERT_EQ(q[i], i);
  EXPECT_EQ(full().live.load(), 1);
  Full::Free(q);
}

// QUIRK: the reference rejected alignment == sizeof(void*) (it tested
// `align <= WORD_SIZE`). POSIX allows any power-of-two multiple of it.
TEST_F(ApiTest, QuirkPosixMemalignAcceptsAlignmentOfAPointer) {
  void* p = nullptr;
  ASSERT_EQ(Full::PosixMemalign(&p, sizeof(void*), 10), 0);
  ASSERT_NE(p, nullptr);
  EXPECT_TRUE(IsAligned(p, sizeof(void*)));
  Full::Free(p);
  void* q = &p;
  EXPECT_EQ(Full::PosixMemalign(&q, sizeof(void*) / 2, 10), EINVAL);
  EXPECT_EQ(q, &p);
}

// QUIRK: the reference's calloc multiplied without an overflow check, so
// calloc(2^63, 2) asked for 0 bytes and "succeeded". Ours fails with ENOMEM
// without asking the backend, in both argument orders.
TEST_F(ApiTest, QuirkCallocChecksOverflow) {
  const std::size_t half = kSizeMax / 2 + 1;
  for (auto [n, m] : {std::pair{half, std::size_t{2}},
                      std::pair{std::size_t{2}, half},
                      std::pair{std::size_t{1} << 32, std::size_t{1} << 32}}) {
    errno = kSentinel;
    EXPECT_EQ(Full::Calloc(n, m), nullptr);
    EXPECT_EQ(errno, ENOMEM);
    EXPECT_EQ(Min::Calloc(n, m), nullptr);
  }
  EXPECT_EQ(full().allocate_zeroed.load(), 0);
  EXPECT_EQ(min().allocate.load(), 0);
}

// QUIRK: the reference returned NULL for malloc(0) and calloc with a zero
// count on Linux (and for memalign/valloc/pvalloc of 0, and posix_memalign
// set *memptr = NULL for size 0). NULL from malloc means failure to most
// programs; glibc returns unique blocks, and so do we.
TEST_F(ApiTest, QuirkZeroSizesReturnUniqueBlocksNotNull) {
  void* blocks[] = {Full::Malloc(0),       Full::Malloc(0),
                    Full::Calloc(0, 8),    Full::Calloc(8, 0),
                    Full::Memalign(64, 0), Full::Memalign(64, 0),
                    Full::Valloc(0),       Full::Pvalloc(0),
                    Full::AlignedAlloc(32, 0), Full::Realloc(nullptr, 0)};
  void* pm = nullptr;
  ASSERT_EQ(Full::PosixMemalign(&pm, 64, 0), 0);
  for (void* p : blocks) EXPECT_NE(p, nullptr);
  EXPECT_NE(pm, nullptr);
  for (std::size_t i = 0; i < std::size(blocks); ++i) {
    for (std::size_t j = i + 1; j < std::size(blocks); ++j) {
      EXPECT_NE(blocks[i], blocks[j]) << i << " " << j;
    }
    EXPECT_NE(blocks[i], pm);
  }
  for (void* p : blocks) Full::Free(p);
  Full::Free(pm);
}

// Not a QUIRK but a reference difference: its posix_memalign returned ENOMEM
// without setting errno; glibc (and we) set errno = ENOMEM as well. *memptr
// stays untouched.
TEST_F(ApiTest, PosixMemalignFailureSetsErrnoLikeGlibc) {
  FullBackend::FailNext(1);
  void* p = &p;
  errno = kSentinel;
  EXPECT_EQ(Full::PosixMemalign(&p, 64, 10), ENOMEM);
  EXPECT_EQ(errno, ENOMEM);
  EXPECT_EQ(p, &p);
}

// Reference difference: its memalign/aligned_alloc failed with EINVAL for a
// non-power-of-two alignment, and aligned_alloc also unless size % align
// == 0; memalign rounds the alignment up and takes any size (every glibc),
// aligned_alloc fails only for the alignment (glibc 2.38).
TEST_F(ApiTest, MemalignRoundsNonPowerOfTwoAlignmentUp) {
  void* p = Full::Memalign(48, 10);
  ASSERT_NE(p, nullptr);
  EXPECT_TRUE(IsAligned(p, 64));
  EXPECT_EQ(full().allocate_aligned.load(), 1);
  Full::FreeAlignedSized(p, 48, 10);
  EXPECT_EQ(full().last_aligned_free.load(), 64u);
}

// reallocf (the reference's QUIRK freed the shadowed NULL instead of p) is a
// macOS/BSD function: glibc has none, so malloc_bind defines none, and the
// QUIRK has nothing to fix on Linux. Documented in README.md.

// realloc(p, 0) frees p (glibc), errno untouched.
TEST_F(ApiTest, ReallocToZeroFrees) {
  void* p = Min::Malloc(10);
  errno = kSentinel;
  EXPECT_EQ(Min::Realloc(p, 0), nullptr);
  EXPECT_EQ(errno, kSentinel);
  EXPECT_EQ(min().deallocate.load(), 1);
  EXPECT_EQ(min().live.load(), 0);
}

TEST_F(ApiTest, FailedReallocKeepsTheBlock) {
  for (bool full_backend : {true, false}) {
    auto realloc_fn = full_backend ? &Full::Realloc : &Min::Realloc;
    auto malloc_fn = full_backend ? &Full::Malloc : &Min::Malloc;
    auto free_fn = full_backend ? &Full::Free : &Min::Free;
    auto reallocarray_fn =
        full_backend ? &Full::ReallocArray : &Min::ReallocArray;
    auto* p = static_cast<unsigned char*>(malloc_fn(100));
    std::memset(p, 9, 100);
    if (full_backend) {
      FullBackend::FailNext(1);
    } else {
      MinimalBackend::FailNext(1);
    }
    errno = kSentinel;
    EXPECT_EQ(realloc_fn(p, 5000), nullptr);
    EXPECT_EQ(errno, ENOMEM);
    EXPECT_EQ(p[99], 9);
    errno = kSentinel;
    EXPECT_EQ(reallocarray_fn(p, kSizeMax, 2), nullptr);
    EXPECT_EQ(errno, ENOMEM);
    EXPECT_EQ(p[0], 9);
    free_fn(p);
  }
}

// ---------------------------------------------------- operator new / delete

TEST_F(ApiTest, OperatorNewZeroAsksTheBackendForZeroBytes) {
  void* p = Full::OperatorNew(0);
  ASSERT_NE(p, nullptr);
  EXPECT_EQ(full().allocate.load(), 1);
  Full::OperatorDelete(p);
  EXPECT_EQ(full().deallocate.load(), 1);
}

// With AllocateOr, operator new is that call and nothing else; its
// failure handler is the new-handler loop (see the retry test below, which
// runs through it).
TEST_F(ApiTest, OperatorNewGoesThroughAllocateOrWhenTheBackendHasIt) {
  static_assert(HasAllocateOr<FullBackend> && !HasAllocateOr<MinimalBackend>);
  void* p = Full::OperatorNew(24);
  void* q = Min::OperatorNew(24);
  EXPECT_EQ(full().allocate_or.load(), 1);
  EXPECT_EQ(full().allocate.load(), 1);
  EXPECT_EQ(min().allocate_or.load(), 0);
  EXPECT_EQ(min().allocate.load(), 1);
  void* r = Full::OperatorNewNothrow(24);  // noexcept: not through it
  EXPECT_EQ(full().allocate_or.load(), 1);
  Full::OperatorDelete(p);
  Full::OperatorDelete(r);
  Min::OperatorDelete(q);
}

TEST_F(ApiTest, OperatorNewAlignedPicksAllocateOrAllocateAligned) {
  void* p = Full::OperatorNewAligned(10, std::align_val_t{8});
  void* q = Full::OperatorNewAligned(10, std::align_val_t{32});
  EXPECT_EQ(full().allocate.load(), 1);
  EXPECT_EQ(full().allocate_aligned.load(), 1);
  EXPECT_TRUE(IsAligned(q, 32));
  Full::OperatorDeleteAligned(p, std::align_val_t{8});
  Full::OperatorDeleteAligned(q, std::align_val_t{32});
  EXPECT_EQ(full().deallocate.load(), 2);
}

// One injected failure per handler call; the handler stops after three:
// four backend attempts in all, then bad_alloc.
TEST_F(ApiTest, OperatorNewRetriesOncePerHandlerCall) {
  static int calls;
  calls = 0;
  FullBackend::FailNext(100);
  std::new_handler previous = std::set_new_handler([] {
    if (++calls == 3) std::set_new_handler(nullptr);
  });
  EXPECT_THROW(Full::OperatorNew(10), std::bad_alloc);
  std::set_new_handler(previous);
  EXPECT_EQ(calls, 3);
  EXPECT_EQ(full().allocate.load(), 4);
  EXPECT_EQ(full().allocate_or.load(), 1);  // the first attempt

  // The same without AllocateOr.
  calls = 0;
  MinimalBackend::FailNext(100);
  previous = std::set_new_handler([] {
    if (++calls == 3) std::set_new_handler(nullptr);
  });
  EXPECT_THROW(Min::OperatorNew(10), std::bad_alloc);
  std::set_new_handler(previous);
  EXPECT_EQ(calls, 3);
  EXPECT_EQ(min().allocate.load(), 4);
}

// The weak references of cxx_runtime.cc bind to this program's libstdc++:
// the handler std::set_new_handler installs is the one operator new sees,
// and the hand-built std::bad_alloc is caught as itself and as
// std::exception, with libstdc++'s what().
TEST(CxxRuntimeTest, WeakReferencesReachTheProgramsRuntime) {
  ASSERT_TRUE(internal::CanThrowBadAlloc());
  const std::new_handler handler = [] {};
  const std::new_handler previous = std::set_new_handler(handler);
  EXPECT_EQ(internal::GetNewHandler(), handler);
  std::set_new_handler(nullptr);
  EXPECT_EQ(internal::GetNewHandler(), nullptr);
  std::set_new_handler(previous);

  const char* what = nullptr;
  try {
    internal::ThrowBadAlloc();
  } catch (const std::bad_alloc& e) {
    what = e.what();
  }
  EXPECT_STREQ(what, std::bad_alloc().what());
  EXPECT_THROW(internal::ThrowBadAlloc(), std::exception);
}

TEST(CxxRuntimeTest, NothrowHandlerCallReportsWhetherItThrew) {
  static int calls;
  calls = 0;
  EXPECT_TRUE(internal::CallNewHandlerNothrow([] { ++calls; }));
  EXPECT_FALSE(internal::CallNewHandlerNothrow([] {
    ++calls;
    throw 42;
  }));
  EXPECT_FALSE(internal::CallNewHandlerNothrow([] {
    ++calls;
    throw std::bad_alloc();
  }));
  EXPECT_EQ(calls, 3);
}

}  // namespace
}  // namespace malloc_bind
