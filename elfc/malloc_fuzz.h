// elfc/malloc_fuzz.h: an operation-sequence fuzzer over the whole malloc
// API. One entry function, RunMallocOps, interprets a byte string as a
// sequence of allocation operations against a table of allocation functions
// (a MallocApi) and aborts with a message on the first broken promise. Three
// drivers feed it:
//   * //elfc:malloc_fuzz_test (plain `bazel test`, every config): N seeded
//     random inputs and the committed corpus in elfc/testdata/;
//   * elfc/build_fuzzers.sh: the same function under libFuzzer (clang,
//     coverage-guided, with ASan/UBSan), built outside Bazel;
//   * //elfc:malloc_fuzzer: replays files (a libFuzzer crash, a corpus)
//     with the Bazel-built allocator; with --process it runs them against
//     the process's own malloc (under LD_PRELOAD=libelfc.so:
//     //elfc:malloc_fuzz_preload_test).
//
// What an input decodes to (every byte string is a valid program; bytes
// past the end read as zero): a sequence of operations on 32 slots, each
// slot empty or holding one live block, and one helper thread:
//   allocate into a slot through any entry point (malloc, calloc, realloc
//   and reallocarray of NULL, posix_memalign, aligned_alloc, memalign,
//   valloc, pvalloc, operator new, aligned operator new, their nothrow
//   forms) with sizes from 0 to 4 MiB biased towards class boundaries, and
//   every power-of-two alignment from 1 to 4 MiB; free (free, free_sized,
//   free_aligned_sized, sized and aligned-sized operator delete, each only
//   where it is valid for the block); realloc / reallocarray to a new size
//   (including 0); re-check a block; have the helper thread allocate a
//   block for us or free one of ours (remote frees); bursts of up to 64
//   same-sized blocks freed in a shuffled order (whole slabs turning over);
//   malloc_trim; and requests that must fail (sizes near SIZE_MAX and
//   PTRDIFF_MAX, overflowing calloc / reallocarray products, alignments up
//   to 2^63).
//
// What is checked, on every operation:
//   * success: non-null, aligned as the entry point promises (malloc and
//     realloc: min(16, bit_floor(n)); the aligned forms: their alignment;
//     valloc / pvalloc: a page), malloc_usable_size >= the request (pvalloc:
//     the request rounded up to pages), errno unchanged, calloc memory
//     zero, no overlap with any other live block (over the usable sizes),
//     and the usable size stable for the block's life;
//   * every block is then written up to its usable size with a pattern
//     keyed by its address (blocks over 64 KiB: the first and last 4 KiB and
//     one word per 64 KiB in between), and the pattern is checked
//     before every free, realloc and on explicit checks, so an allocator that
//     hands out overlapping memory, or writes into a live block, is caught;
//   * realloc keeps min(old usable size, new size) bytes (malloc_bind's
//     documented promise, stronger than C's min(old size, new size)); a
//     realloc to 0 frees and returns NULL (glibc); a failed realloc or
//     reallocarray returns NULL with ENOMEM and leaves the block as it was;
//   * impossible requests return NULL with ENOMEM (posix_memalign: returns
//     ENOMEM, or EINVAL for an alignment below sizeof(void*) or not a power
//     of two, *memptr untouched); operator new throws std::bad_alloc, its
//     nothrow forms return nullptr.
// At the end of an input every live block is checked and freed, so inputs
// are independent (the allocator's state is not: caches and slabs carry
// over, which is the point).
//
// Deterministic for a given input and allocator state; single-threaded
// apart from the helper thread, which only runs while the caller waits for
// it (so the sequence of allocator calls is fixed by the input).
#ifndef ELFC_MALLOC_FUZZ_H_
#define ELFC_MALLOC_FUZZ_H_

#include <cstddef>
#include <cstdint>

namespace elfc::fuzz {

// The functions under test. The C++ operator forms take the alignment as a
// size_t (the binding converts it to std::align_val_t). Optional members
// (null: their operations are skipped): free_sized, free_aligned_sized,
// malloc_trim, and all the C++ ones.
struct MallocApi {
  const char* name = "";
  void* (*malloc)(std::size_t) = nullptr;
  void (*free)(void*) = nullptr;
  void* (*calloc)(std::size_t, std::size_t) = nullptr;
  void* (*realloc)(void*, std::size_t) = nullptr;
  void* (*reallocarray)(void*, std::size_t, std::size_t) = nullptr;
  int (*posix_memalign)(void**, std::size_t, std::size_t) = nullptr;
  void* (*aligned_alloc)(std::size_t, std::size_t) = nullptr;
  void* (*memalign)(std::size_t, std::size_t) = nullptr;
  void* (*valloc)(std::size_t) = nullptr;
  void* (*pvalloc)(std::size_t) = nullptr;
  std::size_t (*malloc_usable_size)(void*) = nullptr;

  void (*free_sized)(void*, std::size_t) = nullptr;
  void (*free_aligned_sized)(void*, std::size_t, std::size_t) = nullptr;
  int (*malloc_trim)(std::size_t) = nullptr;

  void* (*op_new)(std::size_t) = nullptr;  // throws std::bad_alloc
  void* (*op_new_nothrow)(std::size_t) = nullptr;
  void* (*op_new_aligned)(std::size_t, std::size_t) = nullptr;  // throws
  void* (*op_new_aligned_nothrow)(std::size_t, std::size_t) = nullptr;
  void (*op_delete)(void*) = nullptr;
  void (*op_delete_sized)(void*, std::size_t) = nullptr;
  void (*op_delete_aligned_sized)(void*, std::size_t, std::size_t) = nullptr;

  // Where allocators may legitimately differ (true: malloc_bind's
  // behaviour, which the fuzzer holds elfc to; the replay tool clears them
  // for glibc or a peer in --process mode):
  // pvalloc(0) gives a whole page (glibc 2.36 gives less).
  bool pvalloc_zero_is_page = true;
  // memalign rounds a non-power-of-two alignment up (glibc); false also
  // accepts NULL with EINVAL (jemalloc). aligned_alloc may always fail
  // there with EINVAL (glibc >= 2.38, malloc_bind: C17 DR 460).
  bool nonpow2_alignment_rounds_up = true;
  // Aligned operator new of an impossible size throws (libstdc++'s own
  // rounds the size up to the alignment without an overflow check and may
  // return a small block; false skips those requests).
  bool aligned_new_checks_overflow = true;
};

// Counts of what RunMallocOps did (summed over calls by the drivers).
struct Stats {
  std::uint64_t inputs = 0;
  std::uint64_t operations = 0;
  std::uint64_t allocations = 0;  // successful, every entry point
  std::uint64_t frees = 0;
  std::uint64_t reallocs = 0;
  std::uint64_t remote_ops = 0;     // helper-thread allocations and frees
  std::uint64_t expected_failures = 0;  // impossible requests that failed
  std::uint64_t bytes_checked = 0;

  void Add(const Stats& o);
};

// Runs the operations encoded in data[0, size) against `api` (see the file
// comment). Returns what it did; on a violated promise it prints the
// operation, the input offset and what was wrong to stderr and aborts (a
// crash for libFuzzer, a failure for the tests).
Stats RunMallocOps(const MallocApi& api, const std::uint8_t* data,
                   std::size_t size);

// A random input of `size` bytes from `seed` (for the seeded drivers).
void RandomInput(std::uint64_t seed, std::uint8_t* out, std::size_t size);

}  // namespace elfc::fuzz

#endif  // ELFC_MALLOC_FUZZ_H_
