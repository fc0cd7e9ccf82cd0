// object_alloc_test corruption tester: objects that know when they have been
// corrupted, copied, handed out unconstructed, or destroyed twice.
//
// A tester object of N >= 9 bytes is an 8-byte header followed by N - 8
// random bytes (the payload):
//
//     [ u32 state nonce | u32 hash | payload ... ]
//
// The nonce names the state (New, Valid or Dropped; the values are the
// reference design's, random so that they do not appear in memory by
// accident). The hash is a 32-bit digest of the payload, the nonce and the
// object's own address. Anything whose nonce is unknown or whose hash does not
// match is Invalid. Hence, with probability 1 - 2^-32:
//
//  * any write into the object (header or payload) makes it Invalid;
//  * copying a whole object to another address makes the copy Invalid;
//  * a destroyed object (Dropped) cannot pass for a constructed one;
//  * random memory (never constructed) is Invalid.
//
// Life cycle (who moves an object between states):
//
//     construction            (the allocator, via T())           -> New
//     first hand-out          (the harness, New -> Valid)         -> Valid
//     cached and handed out   (the allocator; harness checks)     stays Valid
//     destruction             (the allocator, via ~T())           -> Dropped
//     raw memory reuse        (anything else)                     -> Invalid
//
// The destructor checks that it runs on a New or Valid object; anything else
// (destroyed twice, never constructed) is reported as kBadDestroy through
// violation.h.
//
// Difference from the reference design (its QUIRK): there, objects built by
// `Default` were hashed with address 0 while New, because Rust constructs by
// value and moves; so a New object copied over another went unnoticed. C++
// constructs in place, so here every state, New included, is bound to the
// address (tested in corruption_tester_test.cc).
//
// The hash is a small xxHash64-style function written here (four lanes of
// multiply-rotate over 8-byte words, splitmix64 finalisation): fast enough to
// hash every object on every check, and it spreads any single-word change
// over all output bits. It is not cryptographic and needs not be.
#ifndef OBJECT_ALLOC_TEST_CORRUPTION_TESTER_H_
#define OBJECT_ALLOC_TEST_CORRUPTION_TESTER_H_

#include <cstddef>
#include <cstdint>
#include <string_view>

namespace object_alloc_test {

inline constexpr std::size_t kTesterHeaderSize = 8;
// Header plus at least one payload byte.
inline constexpr std::size_t kMinTesterSize = kTesterHeaderSize + 1;

inline constexpr std::uint32_t kNonceNew = 3254320468u;
inline constexpr std::uint32_t kNonceValid = 3033817838u;
inline constexpr std::uint32_t kNonceDropped = 2620515550u;

enum class TesterState { kNew, kValid, kDropped, kInvalid };

std::string_view StateName(TesterState state);

// splitmix64's finaliser: a bijective 64-bit mix with full avalanche.
constexpr std::uint64_t Mix64(std::uint64_t x) {
  x ^= x >> 30;
  x *= 0xbf58476d1ce4e5b9ULL;
  x ^= x >> 27;
  x *= 0x94d049bb133111ebULL;
  x ^= x >> 31;
  return x;
}

// Seeded 64-bit hash of n bytes (see the file comment).
std::uint64_t HashBytes(const void* data, std::size_t n, std::uint64_t seed);

// The runtime-sized tester operations on the object of `size` bytes at `p`.
// The harness uses these directly on raw memory handed out by untyped
// allocators; CorruptionTester<N, A> below wraps them for typed ones.
namespace tester {

// Writes a fresh object: random payload, header for `state` (kNew or kValid).
void Construct(void* p, std::size_t size,
               TesterState state = TesterState::kNew) noexcept;

// The object's state. When `payload_hash` is not null it receives the hash of
// the payload, which SetState needs; computing both in one pass keeps a
// verify-then-transition at one read of the object.
TesterState StateOf(const void* p, std::size_t size,
                    std::uint64_t* payload_hash = nullptr) noexcept;

// The state the object whose bytes were copied from `address` to `copy` had
// (its hash is bound to `address`, not to where the copy lies).
TesterState StateOfCopy(const void* copy, std::size_t size,
                        const void* address) noexcept;

// Rewrites the header for `state` (kNew, kValid or kDropped) given the
// payload hash from StateOf. Does not check the current state.
void SetState(void* p, TesterState state, std::uint64_t payload_hash) noexcept;

// New or Valid -> Dropped. Anything else is reported as kBadDestroy (and the
// memory is left alone). Out of line on purpose: the compiler must not drop
// these stores as dead because the object's lifetime ends right after.
void Destroy(void* p, std::size_t size) noexcept;

}  // namespace tester

// A typed tester of N bytes and alignment A (the allocation carrier of the
// typed suites; N and A are its only properties). sizeof == N, alignof == A.
//
// Its default constructor makes a New object bound to its address, its
// destructor checks and marks Dropped. Copying constructs a fresh New object
// at the new address (a copy is a new object; copying the bytes is what the
// tester detects). Assignment would overwrite a live object and is deleted.
template <std::size_t N, std::size_t A = 1>
class alignas(A) CorruptionTester {
  static_assert(N >= kMinTesterSize, "a tester needs a header and a byte");
  static_assert(A > 0 && (A & (A - 1)) == 0, "alignment: a power of two");
  static_assert(N % A == 0, "size must be a multiple of the alignment");

 public:
  static constexpr std::size_t kSize = N;
  static constexpr std::size_t kAlign = A;

  CorruptionTester() noexcept { tester::Construct(bytes_, N); }
  CorruptionTester(const CorruptionTester&) noexcept : CorruptionTester() {}
  CorruptionTester& operator=(const CorruptionTester&) = delete;
  ~CorruptionTester() { tester::Destroy(bytes_, N); }

  TesterState state() const noexcept { return tester::StateOf(bytes_, N); }

 private:
  unsigned char bytes_[N];
};

// Whether every page of [p, p + n) is mapped and readable. Asks the kernel
// (write() of one byte of each page to a private pipe; EFAULT means not
// readable) instead of touching the memory, so it never faults. Thread-safe.
bool IsMappedRange(const void* p, std::size_t n);

// Copies [p, p + n) to `out` through the kernel (process_vm_readv on this
// process, or a pipe where that system call is not allowed). Returns false,
// with `out` unspecified, when any of the range is unmapped or unreadable.
// The copy is made by the kernel, not by instrumented code, so it is how the
// harness looks at memory an allocator may already have released (to the
// C heap or the OS) without faulting and without AddressSanitizer or
// ThreadSanitizer reporting a use after free. Thread-safe.
bool CopyMemory(const void* p, std::size_t n, void* out);

namespace internal {
// CopyMemory's fallback, exposed for its test.
bool CopyThroughPipe(const void* p, std::size_t n, void* out);
}  // namespace internal

}  // namespace object_alloc_test

#endif  // OBJECT_ALLOC_TEST_CORRUPTION_TESTER_H_
