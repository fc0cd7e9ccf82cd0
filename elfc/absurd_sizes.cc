// elfc/absurd_sizes.cc: requests no allocator can satisfy, through every
// entry point, at every power-of-two alignment (run under
// LD_PRELOAD=libelfc.so by //elfc:absurd_sizes_test; a plain C++ program:
// without a preload it checks glibc, the control).
//
// malloc_bind's conformance suite (//elfc:c_api_conformance_test runs it
// through libelfc.so) already checks ten sizes near SIZE_MAX / PTRDIFF_MAX
// for malloc, calloc(1, n), realloc of three blocks, valloc, pvalloc and
// posix_memalign(32, n), a handful of (alignment, size) pairs for the
// memalign family, some calloc / reallocarray overflows, and aligned
// operator new at 64 and 4096. This program adds the cross product it
// leaves out:
//   * ~40 sizes: SIZE_MAX - k and PTRDIFF_MAX +/- k for small k and around
//     page / 2 MiB / 4 MiB rounding, plus 2^62 .. 2^63 + k;
//   * x every power-of-two alignment 1 .. 2^63 for posix_memalign,
//     aligned_alloc, memalign and aligned operator new (throwing and
//     nothrow); and small sizes at alignments 2^58 .. 2^63 (no address
//     space has such an address other than 0);
//   * calloc and reallocarray with every overflowing or > PTRDIFF_MAX
//     product of a small factor k = 2 .. 4096 (and some big ones) and
//     SIZE_MAX / k + 1 .. , in BOTH argument orders; calloc(n, 1) and
//     calloc(1, n) for every size;
//   * realloc / reallocarray of NULL and of live blocks of every kind
//     (small, medium, large, calloc'd, aligned, valloc'd, realloc'd) to every
//     size: NULL + ENOMEM, and the block still holds its contents and its
//     usable size;
//   * valloc, pvalloc (whose page rounding itself would overflow), malloc,
//     operator new / new[] (throwing and nothrow) for every size.
// Every failure must be NULL with errno ENOMEM (posix_memalign: returns
// ENOMEM, also in errno, or EINVAL for alignments 1, 2, 4; *memptr
// untouched), bad_alloc from the throwing C++ forms, nullptr from the
// nothrow ones; and no call may succeed. The program counts every call and
// prints "absurd_sizes: PASS <n> calls".
//
// On glibc, libstdc++'s aligned operator new rounds the size up to the
// alignment without an overflow check (malloc_bind's
// aligned_new_checks_overflow), so sizes that wrap are not sent to aligned
// new there.
#include <dlfcn.h>
#include <errno.h>
#include <malloc.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cstddef>
#include <cstdint>
#include <limits>
#include <new>
#include <vector>

#include "elfc/preload_test_util.h"

namespace {

constexpr std::size_t kSizeMax = std::numeric_limits<std::size_t>::max();
constexpr std::size_t kPtrdiffMax =
    static_cast<std::size_t>(std::numeric_limits<std::ptrdiff_t>::max());
constexpr std::size_t kMiB = std::size_t{1} << 20;
constexpr int kSentinel = 0x4153;  // no E* constant has this value
void* const kUntouched = reinterpret_cast<void*>(std::uintptr_t{0x5a5a5a50});

// realloc / reallocarray of live blocks through pointers the compiler
// cannot see through: GCC's -Wuse-after-free cannot know that a FAILED
// realloc leaves its argument alive, which is what this program checks.
void* (*volatile g_realloc)(void*, std::size_t) = &realloc;
void* (*volatile g_reallocarray)(void*, std::size_t, std::size_t) =
    &reallocarray;

std::uint64_t g_calls = 0;
bool g_glibc = false;

std::vector<std::size_t> Sizes() {
  std::vector<std::size_t> v;
  for (std::size_t k : {std::size_t{0}, std::size_t{1}, std::size_t{7},
                        std::size_t{8}, std::size_t{15}, std::size_t{16},
                        std::size_t{4095}, std::size_t{4096},
                        std::size_t{4097}, 2 * kMiB - 1, 2 * kMiB,
                        4 * kMiB}) {
    v.push_back(kSizeMax - k);
    v.push_back(kPtrdiffMax - k);
    v.push_back(kPtrdiffMax + 1 + k);
  }
  for (int shift = 62; shift <= 63; ++shift) {
    v.push_back(std::size_t{1} << shift);
    v.push_back((std::size_t{1} << shift) + 1);
    v.push_back((std::size_t{1} << shift) - 4096);
  }
  v.push_back(kSizeMax / 2 + 4096);
  v.push_back(kSizeMax / 3 * 2);
  return v;
}

// True if rounding n up to `align` would wrap (libstdc++'s aligned new does
// not check that on glibc).
bool RoundingWraps(std::size_t n, std::size_t align) {
  return n > kSizeMax - (align - 1);
}

void ExpectNull(void* p, int e, const char* what, std::size_t a,
                std::size_t b) {
  ++g_calls;
  ELFC_CHECK(p == nullptr, "%s(%zu, %zu) returned %p", what, a, b, p);
  ELFC_CHECK(e == ENOMEM, "%s(%zu, %zu) failed with errno %d, not ENOMEM",
             what, a, b, e);
}

template <class F>
void ExpectBadAlloc(F&& f, const char* what, std::size_t n, std::size_t a) {
  ++g_calls;
  bool threw = false;
  void* p = nullptr;
  try {
    p = f();
  } catch (const std::bad_alloc&) {
    threw = true;
  }
  ELFC_CHECK(threw, "%s(%zu, align %zu) returned %p instead of throwing "
             "std::bad_alloc", what, n, a, p);
}

void AlignedEntryPoints(std::size_t n) {
  for (int shift = 0; shift < 64; ++shift) {
    const std::size_t a = std::size_t{1} << shift;
    void* p = kUntouched;
    errno = kSentinel;
    const int rc = posix_memalign(&p, a, n);
    const int e = errno;
    ++g_calls;
    if (a < sizeof(void*)) {
      ELFC_CHECK(rc == EINVAL && e == kSentinel,
                 "posix_memalign(%zu, %zu) = %d (errno %d), want EINVAL", a, n,
                 rc, e);
    } else {
      ELFC_CHECK(rc == ENOMEM && e == ENOMEM,
                 "posix_memalign(%zu, %zu) = %d (errno %d), want ENOMEM", a,
                 n, rc, e);
    }
    ELFC_CHECK(p == kUntouched, "posix_memalign(%zu, %zu) wrote *memptr = %p",
               a, n, p);
    errno = kSentinel;
    void* q = aligned_alloc(a, n);
    ExpectNull(q, errno, "aligned_alloc", a, n);
    errno = kSentinel;
    q = memalign(a, n);
    ExpectNull(q, errno, "memalign", a, n);
    if (g_glibc && RoundingWraps(n, a)) continue;
    const std::align_val_t al{a};
    ExpectBadAlloc([&] { return ::operator new(n, al); }, "operator new", n, a);
    ExpectBadAlloc([&] { return ::operator new[](n, al); }, "operator new[]", n,
                   a);
    ++g_calls;
    void* r = ::operator new(n, al, std::nothrow);
    ELFC_CHECK(r == nullptr, "operator new(%zu, align %zu, nothrow) = %p", n,
               a, r);
  }
}

// Small sizes at alignments no address other than 0 can have.
void ImpossibleAlignments() {
  for (int shift = 58; shift < 64; ++shift) {
    const std::size_t a = std::size_t{1} << shift;
    for (std::size_t n : {std::size_t{0}, std::size_t{1}, std::size_t{4096}}) {
      void* p = kUntouched;
      errno = kSentinel;
      const int rc = posix_memalign(&p, a, n);
      ++g_calls;
      ELFC_CHECK(rc == ENOMEM && errno == ENOMEM && p == kUntouched,
                 "posix_memalign(2^%d, %zu) = %d, *memptr %p", shift, n, rc,
                 p);
      errno = kSentinel;
      void* q = aligned_alloc(a, n);
      ExpectNull(q, errno, "aligned_alloc", a, n);
      errno = kSentinel;
      q = memalign(a, n);
      ExpectNull(q, errno, "memalign", a, n);
      const std::align_val_t al{a};
      ExpectBadAlloc([&] { return ::operator new(n, al); }, "operator new", n,
                     a);
      ++g_calls;
      ELFC_CHECK(::operator new(n, al, std::nothrow) == nullptr,
                 "operator new(%zu, 2^%d, nothrow) succeeded", n, shift);
    }
  }
}

// Factor pairs whose product overflows or exceeds PTRDIFF_MAX.
std::vector<std::pair<std::size_t, std::size_t>> OverflowingPairs() {
  std::vector<std::pair<std::size_t, std::size_t>> v;
  for (std::size_t k = 2; k <= 4096; k = k < 16 ? k + 1 : k * 2 - 1) {
    v.push_back({k, kSizeMax / k + 1});       // wraps
    v.push_back({k, kPtrdiffMax / k + 1});    // > PTRDIFF_MAX
    v.push_back({k, kSizeMax / k});           // fits size_t, > PTRDIFF_MAX
  }
  v.push_back({std::size_t{1} << 32, std::size_t{1} << 32});
  v.push_back({std::size_t{1} << 31, std::size_t{1} << 33});
  v.push_back({kSizeMax, kSizeMax});
  v.push_back({kPtrdiffMax, 2});
  v.push_back({kPtrdiffMax / 2 + 1, 2});
  return v;
}

struct Live {
  const char* kind;
  void* p;
  std::size_t n;
  std::uint64_t key;
  std::size_t usable;
};

std::vector<Live> LiveBlocks() {
  std::vector<Live> v;
  auto add = [&](const char* kind, void* p, std::size_t n) {
    ELFC_CHECK(p != nullptr, "allocating a %s block of %zu bytes", kind, n);
    const std::uint64_t key = elfc::test::PatternKey(p, n);
    elfc::test::FillPattern(p, n, key);
    v.push_back({kind, p, n, key, malloc_usable_size(p)});
  };
  add("small malloc", malloc(24), 24);
  add("medium malloc", malloc(70000), 70000);
  add("large malloc", malloc(3 * kMiB), 3 * kMiB);
  add("calloc", calloc(10, 100), 1000);
  void* a = nullptr;
  ELFC_CHECK(posix_memalign(&a, 4096, 5000) == 0, "posix_memalign");
  add("posix_memalign", a, 5000);
  add("memalign 2 MiB", memalign(2 * kMiB, 100), 100);
  add("aligned_alloc", aligned_alloc(256, 512), 512);
  add("valloc", valloc(10000), 10000);
  add("realloc'd", realloc(malloc(10), 3000), 3000);
  return v;
}

void CheckLive(const Live& b, const char* after) {
  ELFC_CHECK(elfc::test::CheckPattern(b.p, b.n, b.key) == SIZE_MAX,
             "the %s block %p was changed by a failed %s", b.kind, b.p, after);
  ELFC_CHECK(malloc_usable_size(b.p) == b.usable,
             "the %s block %p changed its usable size after a failed %s",
             b.kind, b.p, after);
}

}  // namespace

int main() {
  elfc::test::CheckPreload("absurd_sizes");
  {
    Dl_info info;
    void* sym = dlsym(RTLD_DEFAULT, "malloc");
    g_glibc = sym != nullptr && dladdr(sym, &info) != 0 &&
              info.dli_fname != nullptr &&
              strstr(info.dli_fname, "libc.so") != nullptr;
  }
  const std::vector<std::size_t> sizes = Sizes();
  const std::vector<Live> live = LiveBlocks();
  for (std::size_t n : sizes) {
    errno = kSentinel;
    void* p = malloc(n);
    ExpectNull(p, errno, "malloc", n, 0);
    errno = kSentinel;
    p = calloc(n, 1);
    ExpectNull(p, errno, "calloc", n, 1);
    errno = kSentinel;
    p = calloc(1, n);
    ExpectNull(p, errno, "calloc", 1, n);
    errno = kSentinel;
    p = valloc(n);
    ExpectNull(p, errno, "valloc", n, 0);
    errno = kSentinel;
    p = pvalloc(n);
    ExpectNull(p, errno, "pvalloc", n, 0);
    errno = kSentinel;
    p = realloc(nullptr, n);
    ExpectNull(p, errno, "realloc(NULL)", n, 0);
    errno = kSentinel;
    p = reallocarray(nullptr, n, 1);
    ExpectNull(p, errno, "reallocarray(NULL)", n, 1);
    errno = kSentinel;
    p = reallocarray(nullptr, 1, n);
    ExpectNull(p, errno, "reallocarray(NULL)", 1, n);
    for (const Live& b : live) {
      errno = kSentinel;
      p = g_realloc(b.p, n);
      ExpectNull(p, errno, "realloc", reinterpret_cast<std::uintptr_t>(b.p),
                 n);
      CheckLive(b, "realloc");
      errno = kSentinel;
      p = g_reallocarray(b.p, n, 1);
      ExpectNull(p, errno, "reallocarray", reinterpret_cast<std::uintptr_t>(b.p),
                 n);
      CheckLive(b, "reallocarray");
    }
    ExpectBadAlloc([&] { return ::operator new(n); }, "operator new", n, 0);
    ExpectBadAlloc([&] { return ::operator new[](n); }, "operator new[]", n, 0);
    ++g_calls;
    ELFC_CHECK(::operator new(n, std::nothrow) == nullptr,
               "operator new(%zu, nothrow) succeeded", n);
    ++g_calls;
    ELFC_CHECK(::operator new[](n, std::nothrow) == nullptr,
               "operator new[](%zu, nothrow) succeeded", n);
    AlignedEntryPoints(n);
  }
  ImpossibleAlignments();
  for (const auto& [a, b] : OverflowingPairs()) {
    for (const auto& [n, m] : {std::pair{a, b}, std::pair{b, a}}) {
      errno = kSentinel;
      void* p = calloc(n, m);
      ExpectNull(p, errno, "calloc", n, m);
      errno = kSentinel;
      p = reallocarray(nullptr, n, m);
      ExpectNull(p, errno, "reallocarray(NULL)", n, m);
      for (const Live& b2 : live) {
        errno = kSentinel;
        p = g_reallocarray(b2.p, n, m);
        ExpectNull(p, errno, "reallocarray", n, m);
        CheckLive(b2, "reallocarray");
      }
    }
  }
  for (const Live& b : live) free(b.p);
  printf("absurd_sizes: PASS %llu calls (%zu sizes x every entry point, "
         "alignments 1 .. 2^63, %zu overflowing products in both orders, "
         "realloc of %zu live blocks) failed properly%s\n",
         static_cast<unsigned long long>(g_calls), sizes.size(),
         OverflowingPairs().size(), live.size(),
         g_glibc ? " (glibc: wrapping sizes skipped for aligned new)" : "");
  return 0;
}
