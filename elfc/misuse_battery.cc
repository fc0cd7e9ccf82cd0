// elfc/misuse_battery.cc: one heap misuse per run, for the misuse battery
// (elfc/misuse_battery.py runs every scenario in its own process under
// LD_PRELOAD of any allocator and classifies what the allocator did).
//
// Each scenario commits one misuse a program can make with the C API:
// double frees of small, mid, large and huge blocks (at once, after other
// frees, after the magazine or tcache was flushed, from another thread),
// frees and reallocs of pointers that are not the start of a live block
// (interior, misaligned, stack, static, mmap'd, a fake chunk, an already
// freed block, the old pointer of a moved realloc), writes past the usable
// size, past the requested size or before the start of a block, writes
// into freed blocks (found at once or when the block is reused) and a
// forged free-list pointer in a freed block. Then
// it goes on like a program that did not notice: it allocates and frees
// blocks of the same size and checks that no two live blocks overlap, and
// prints "MISUSE-SURVIVED" (plus "MISUSE-CORRUPTION: ..." if it saw the heap
// hand out overlapping blocks) on stdout. An allocator that detects the
// misuse stops the process before that, normally with a message on stderr.
// The program itself writes nothing to stderr, so everything there is the
// allocator's.
//
// Sizes: small 24 B, mid 3000 B, large 200 KiB (a slab class in elfc, an
// mmap'd chunk in glibc), huge 2 MiB (a large block everywhere).
//
// Usage: misuse_battery --list | --check | SCENARIO
//   --list   prints the scenario names with a one-line description each
//   --check  verifies the preload (preload_test_util.h) and exits
#include <malloc.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include <cstddef>
#include <cstdint>

#include "elfc/preload_test_util.h"

namespace {

constexpr std::size_t kSmall = 24;
constexpr std::size_t kMid = 3000;
constexpr std::size_t kLarge = 200 * 1024;
constexpr std::size_t kHuge = 2 * 1024 * 1024;

// Through a volatile: the compiler may neither warn about nor optimise away
// what it can prove is a misuse (free of a stack object, use after free).
void* Launder(void* p) {
  void* volatile v = p;
  return v;
}
void Free(void* p) { free(Launder(p)); }
void* Malloc(std::size_t n) {
  void* p = malloc(n);
  if (p == nullptr) {
    printf("MISUSE-SETUP-FAILED: malloc(%zu)\n", n);
    fflush(stdout);
    _exit(3);
  }
  memset(p, 0x11, n < 64 ? n : 64);
  return Launder(p);
}

void* FreeInThread(void* p) {
  Free(p);
  return nullptr;
}
void FreeOnAnotherThread(void* p) {
  pthread_t t;
  if (pthread_create(&t, nullptr, &FreeInThread, p) != 0) _exit(3);
  pthread_join(t, nullptr);
}

// --- The scenarios. Each returns the size to continue with. -------------

std::size_t DoubleFree(std::size_t n) {
  void* p = Malloc(n);
  Free(p);
  Free(p);
  return n;
}
// Other frees between the two: glibc's fastbin check only compares with the
// most recently freed block.
std::size_t DoubleFreeLater(std::size_t n) {
  void* p = Malloc(n);
  void* others[8];
  for (void*& q : others) q = Malloc(n);
  Free(p);
  for (void* q : others) Free(q);
  Free(p);
  return n;
}
std::size_t DoubleFreeThread(std::size_t n) {
  void* p = Malloc(n);
  Free(p);
  FreeOnAnotherThread(p);
  return n;
}
// The first free's block has left the thread cache (500 more frees of the
// class flush any magazine or tcache bin) before the second free.
std::size_t DoubleFreeFlushed(std::size_t n) {
  void* p = Malloc(n);
  static void* others[500];
  for (void*& q : others) q = Malloc(n);
  Free(p);
  for (void* q : others) Free(q);
  Free(p);
  return n;
}

std::size_t FreeInterior(std::size_t n, std::size_t off) {
  char* p = static_cast<char*>(Malloc(n));
  Free(p + off);
  return n;
}

std::size_t FreeStack() {
  alignas(16) char buf[256];
  memset(buf, 0, sizeof(buf));
  Free(buf + 16);
  return kSmall;
}

alignas(4096) char g_static[8192];
std::size_t FreeStatic() {
  Free(g_static + 64);
  return kSmall;
}

std::size_t FreeMmap() {
  void* m = mmap(nullptr, 1 << 16, PROT_READ | PROT_WRITE,
                 MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (m == MAP_FAILED) _exit(3);
  Free(static_cast<char*>(m) + 4096);
  return kSmall;
}

// A fake chunk (glibc's "house of spirit"): plausible size words around a
// pointer into a static buffer, then freed and allocated again.
alignas(64) std::uint64_t g_fake[64];
std::size_t FreeFakeChunk() {
  g_fake[1] = 0x31;   // this chunk's size (48, previous in use)
  g_fake[7] = 0x21;   // the next chunk's size
  Free(&g_fake[2]);
  void* p = Malloc(32);
  if (p == &g_fake[2]) {
    printf("MISUSE-CORRUPTION: malloc returned the fake chunk %p\n", p);
  }
  return 32;
}

std::size_t ReallocFreedTo(std::size_t n, std::size_t to) {
  void* p = Malloc(n);
  Free(p);
  void* q = realloc(Launder(p), to);
  (void)q;
  return n;
}

std::size_t ReallocFreed(std::size_t n) { return ReallocFreedTo(n, n * 2); }

// realloc moved the block; the program frees the old pointer.
std::size_t FreeAfterRealloc() {
  void* p = Malloc(kSmall);
  const std::uintptr_t old = reinterpret_cast<std::uintptr_t>(p);
  void* q = realloc(Launder(p), 5000);
  if (q == nullptr) _exit(3);
  if (reinterpret_cast<std::uintptr_t>(q) == old) return kSmall;  // not moved
  Free(reinterpret_cast<void*>(old));
  return kSmall;
}

std::size_t ReallocInterior() {
  char* p = static_cast<char*>(Malloc(kMid));
  void* q = realloc(Launder(p + 64), kMid * 2);
  (void)q;
  return kMid;
}

std::size_t ReallocStack() {
  alignas(16) char buf[256];
  memset(buf, 0, sizeof(buf));
  void* q = realloc(Launder(buf + 16), 100);
  (void)q;
  return kSmall;
}

// Writes `len` bytes of 0x41 starting `past` bytes after the usable end
// of a block (the block and a neighbour are then freed).
std::size_t Overflow(std::size_t n, std::size_t past, std::size_t len) {
  char* p = static_cast<char*>(Malloc(n));
  char* neighbour = static_cast<char*>(Malloc(n));
  const std::size_t usable = malloc_usable_size(p);
  memset(Launder(p + usable + past), 0x41, len);
  Free(p);
  Free(neighbour);
  return n;
}

std::size_t Underflow(std::size_t n) {
  char* p = static_cast<char*>(Malloc(n));
  memset(Launder(p - 16), 0x41, 16);
  Free(p);
  return n;
}

// Writes the first 16 bytes of a freed block (where free lists keep their
// links), then goes on allocating.
std::size_t WriteAfterFree(std::size_t n) {
  char* p = static_cast<char*>(Malloc(n));
  Free(p);
  memset(Launder(p), 0x41, 16);
  return n;
}

// Writes one byte (a string terminator) just past the `n` requested bytes:
// inside the usable size of most allocators (glibc's and elfc's default
// builds round up), past it where the requested size is kept.
std::size_t OverflowRequested(std::size_t n) {
  char* p = static_cast<char*>(Malloc(n));
  static_cast<char*>(Launder(p))[n] = '\0';
  Free(p);
  return n;
}

// Changes one byte in the middle of a freed block (to its complement, so
// that the write changes memory whatever a free pattern put there: a
// constant would match a random freed pattern's byte one time in 255),
// then frees and allocates 2000 blocks of the same size (enough to push
// the block out of a quarantine and to reuse it).
std::size_t WriteAfterFreeReuse(std::size_t n) {
  char* p = static_cast<char*>(Malloc(n));
  Free(p);
  char* q = static_cast<char*>(Launder(p));
  q[n / 2 + 4] = static_cast<char>(~q[n / 2 + 4]);
  for (int i = 0; i < 2000; ++i) Free(Malloc(n));
  return n;
}

// A forged free-list pointer (tcache poisoning): two blocks are freed and
// the first two words of the second (the head of a free list) are
// overwritten with the address of a static buffer; then blocks of the same
// size are allocated (and freed) 2000 times. An allocator that follows the
// forged pointer hands out the buffer.
alignas(64) char g_target[4096];
std::size_t ForgedFreePointer(std::size_t n) {
  void* first = Malloc(n);
  void* p = Malloc(n);
  Free(first);
  Free(p);
  void* target = g_target + 64;
  memcpy(Launder(p), &target, sizeof(target));
  memcpy(static_cast<char*>(Launder(p)) + sizeof(target), &target,
         sizeof(target));
  for (int i = 0; i < 2000; ++i) {
    char* q = static_cast<char*>(Malloc(n));
    if (q >= g_target && q < g_target + sizeof(g_target)) {
      printf("MISUSE-CORRUPTION: malloc returned the forged pointer %p\n",
             static_cast<void*>(q));
      continue;  // not ours to free
    }
    Free(q);
  }
  return n;
}

struct Scenario {
  const char* name;
  const char* what;
  std::size_t (*run)();
};

#define SIZES(name, fn)                                                    \
  {name "_small", "24 B", [] { return fn(kSmall); }},                      \
      {name "_mid", "3000 B", [] { return fn(kMid); }},                    \
      {name "_large", "200 KiB", [] { return fn(kLarge); }},               \
      {name "_huge", "2 MiB", [] { return fn(kHuge); }}

const Scenario kScenarios[] = {
    SIZES("double_free", DoubleFree),
    SIZES("double_free_later", DoubleFreeLater),
    SIZES("double_free_thread", DoubleFreeThread),
    {"double_free_flushed_small", "24 B, 500 frees in between",
     [] { return DoubleFreeFlushed(kSmall); }},
    {"double_free_flushed_mid", "3000 B, 500 frees in between",
     [] { return DoubleFreeFlushed(kMid); }},
    {"free_after_realloc_moved", "old pointer of a moved realloc",
     &FreeAfterRealloc},
    {"free_interior_small", "p + 8 of 24 B",
     [] { return FreeInterior(kSmall, 8); }},
    {"free_interior_mid", "p + 256 of 3000 B",
     [] { return FreeInterior(kMid, 256); }},
    {"free_interior_large", "p + 4096 of 200 KiB",
     [] { return FreeInterior(kLarge, 4096); }},
    {"free_interior_huge", "p + 64 KiB of 2 MiB",
     [] { return FreeInterior(kHuge, 65536); }},
    {"free_misaligned", "p + 1 of 24 B",
     [] { return FreeInterior(kSmall, 1); }},
    {"free_stack", "a stack buffer", &FreeStack},
    {"free_static", "a static array", &FreeStatic},
    {"free_mmap", "a page of an mmap'd region", &FreeMmap},
    {"free_fake_chunk", "a forged chunk in a static buffer", &FreeFakeChunk},
    {"realloc_freed_small", "24 B", [] { return ReallocFreed(kSmall); }},
    {"realloc_freed_huge", "2 MiB", [] { return ReallocFreed(kHuge); }},
    {"realloc_freed_same_size", "24 B, to 20 B: kept in place",
     [] { return ReallocFreedTo(kSmall, 20); }},
    {"realloc_interior", "p + 64 of 3000 B", &ReallocInterior},
    {"realloc_stack", "a stack buffer", &ReallocStack},
    {"overflow_small", "8 B past the usable end of 24 B",
     [] { return Overflow(kSmall, 0, 8); }},
    {"overflow_small_far", "32 B, 8 B past the usable end of 24 B",
     [] { return Overflow(kSmall, 8, 32); }},
    {"overflow_mid", "8 B past the usable end of 3000 B",
     [] { return Overflow(kMid, 0, 8); }},
    {"overflow_large", "8 B past the usable end of 200 KiB",
     [] { return Overflow(kLarge, 0, 8); }},
    {"overflow_huge", "8 B past the usable end of 2 MiB",
     [] { return Overflow(kHuge, 0, 8); }},
    {"overflow_requested_small", "1 B past the requested 20 B",
     [] { return OverflowRequested(20); }},
    {"overflow_requested_huge", "1 B past the requested 2 MiB + 100 B",
     [] { return OverflowRequested(kHuge + 100); }},
    {"underflow_small", "16 B before 24 B", [] { return Underflow(kSmall); }},
    {"write_after_free_small", "16 B into a freed 24 B block",
     [] { return WriteAfterFree(kSmall); }},
    {"write_after_free_mid", "16 B into a freed 3000 B block",
     [] { return WriteAfterFree(kMid); }},
    {"write_after_free_large", "16 B into a freed 200 KiB block",
     [] { return WriteAfterFree(kLarge); }},
    {"write_after_free_reuse_small",
     "1 B into a freed 24 B block, then 2000 frees",
     [] { return WriteAfterFreeReuse(kSmall); }},
    {"write_after_free_reuse_mid",
     "1 B into a freed 3000 B block, then 2000 frees",
     [] { return WriteAfterFreeReuse(kMid); }},
    {"forged_free_pointer_small",
     "the last of two freed 24 B blocks points to a static buffer",
     [] { return ForgedFreePointer(kSmall); }},
};

// Goes on like a program that noticed nothing: 64 blocks of size n
// allocated and written, checked pairwise for overlap, freed.
void Continue(std::size_t n) {
  constexpr int kBlocks = 64;
  static char* blocks[kBlocks];
  for (char*& b : blocks) {
    b = static_cast<char*>(Malloc(n));
    memset(b, 0x22, n < 4096 ? n : 4096);
  }
  for (int i = 0; i < kBlocks; ++i) {
    for (int j = i + 1; j < kBlocks; ++j) {
      if (blocks[i] < blocks[j] + n && blocks[j] < blocks[i] + n) {
        printf("MISUSE-CORRUPTION: live blocks %p and %p of %zu bytes "
               "overlap\n",
               static_cast<void*>(blocks[i]), static_cast<void*>(blocks[j]),
               n);
        i = kBlocks;
        break;
      }
    }
  }
  for (char* b : blocks) Free(b);
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 2) {
    fprintf(stderr, "usage: %s --list | --check | SCENARIO\n", argv[0]);
    return 2;
  }
  if (strcmp(argv[1], "--check") == 0) {
    elfc::test::CheckPreload("misuse_battery");
    return 0;
  }
  const bool list = strcmp(argv[1], "--list") == 0;
  for (const Scenario& s : kScenarios) {
    if (list) {
      printf("%s\t%s\n", s.name, s.what);
    } else if (strcmp(argv[1], s.name) == 0) {
      printf("MISUSE-START %s\n", s.name);
      fflush(stdout);
      const std::size_t n = s.run();
      Continue(n);
      printf("MISUSE-SURVIVED\n");
      fflush(stdout);
      return 0;
    }
  }
  if (list) return 0;
  fprintf(stderr, "misuse_battery: unknown scenario %s\n", argv[1]);
  return 2;
}
