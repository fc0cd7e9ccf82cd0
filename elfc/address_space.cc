// elfc/address_space.cc: address space that comes back (run under
// LD_PRELOAD=libelfc.so by //elfc:address_space_*_test; a plain C++
// program, it runs on any malloc).
//
// Memory freed must be usable again for requests of any other size: the
// address space a malloc carved for one kind of block must not stay
// reserved for that kind. Two modes:
//
//   --mode=recovery: the program caps its address space (RLIMIT_AS, soft
//     limit only) at what it uses after start-up plus --headroom_mb
//     (default 192 MiB), then, each check with --threads (default 4)
//     threads filling the limit together (so that every thread's cached
//     memory is in play) and the main thread freeing everything:
//       1. fill the limit with 64-byte blocks, free them all: a 100 MiB
//          block must then be obtainable (written, freed);
//       2. fill it with 1 MiB blocks, free them all: malloc(64) must
//          succeed, and then a 100 MiB block;
//       3. fill it with blocks of 16 .. 256 KiB, free them all: a 100 MiB
//          block must be obtainable.
//     Between the checks the worker threads stay alive and idle.
//   --mode=exited: the same cap; --threads threads, one after the other,
//     each allocate one block of every size 16 KiB, 20 KiB, .. 256 KiB (a
//     quarter more each time), free them and exit; then a block of the
//     headroom minus 32 MiB must be obtainable. A thread-caching malloc may
//     keep an exited thread's caches for the next thread, but not when the
//     address space is needed.
//   --mode=phases: --cycles (default 3) cycles of four phases, each
//     allocating --phase_mb (default 128) MiB of blocks of one size range
//     (16 .. 512 B, 640 B .. 14 KiB, 16 .. 256 KiB, 256 KiB .. 4 MiB),
//     writing them and freeing them all. The virtual size (/proc/self/statm)
//     after every phase of every cycle must stay below the start-up size
//     plus 6 x phase_mb: at most one phase's worth of address space per
//     kind of memory a malloc may keep for reuse (elfc's three slab page
//     sizes), two for large blocks (elfc's large-block heap gives a block
//     above 2 MiB whole 2 MiB units of reserved address space, and those
//     below share units page by page, so the 256 KiB .. 4 MiB phase may
//     reserve up to about twice its bytes), plus
//     one phase for slack (magazines, metadata, alignment). The bound must
//     not depend on the number of cycles: address space kept for one kind
//     is reused by that kind next cycle, never added to.
//
// A watchdog turns a hang into a failure.
//
// Usage: address_space --mode=recovery|exited [--headroom_mb=N] [--threads=N]
//        address_space --mode=phases [--phase_mb=N] [--cycles=N]
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

#include <atomic>
#include <cstddef>
#include <cstdint>

#include "elfc/preload_test_util.h"

namespace {

using elfc::test::Log;
using elfc::test::Rng;

constexpr std::size_t kKiB = 1024;
constexpr std::size_t kMiB = 1024 * kKiB;
constexpr int kMaxThreads = 16;

const char* g_mode = "";
std::size_t g_headroom = 192 * kMiB;
int g_threads = 4;
std::size_t g_phase = 128 * kMiB;
int g_cycles = 3;

using elfc::test::VirtualBytes;

// Caps the address space (RLIMIT_AS) at its current size plus the headroom;
// returns the limit it replaced, for the caller to restore. base: the size
// the cap was computed from.
struct rlimit CapAddressSpace(std::size_t* base) {
  *base = VirtualBytes();
  struct rlimit old;
  ELFC_CHECK(getrlimit(RLIMIT_AS, &old) == 0, "getrlimit");
  struct rlimit rl = old;
  rl.rlim_cur = *base + g_headroom;
  ELFC_CHECK(setrlimit(RLIMIT_AS, &rl) == 0, "setrlimit(RLIMIT_AS)");
  return old;
}

// A block in a chain: its first word links to the previous block.
struct Link {
  Link* prev;
};

void FreeChain(Link* l) {
  while (l != nullptr) {
    Link* prev = l->prev;
    free(l);
    l = prev;
  }
}

// A block of n bytes with every page written, or nullptr.
void* AllocateTouched(std::size_t n) {
  auto* p = static_cast<unsigned char*>(malloc(n));
  if (p == nullptr) return nullptr;
  for (std::size_t i = 0; i < n; i += 4096) p[i] = 1;
  p[n - 1] = 1;
  return p;
}

// ------------------------------------------------------------- recovery

// What the threads fill the limit with in the current check.
std::atomic<std::size_t> g_lo{0}, g_hi{0};
std::atomic<int> g_generation{0};
std::atomic<int> g_filled{0};
Link* g_chains[kMaxThreads];
std::size_t g_bytes[kMaxThreads];

// Fills until malloc fails (a few failures in a row: other threads' frees
// never happen here, but a retry may find what a failure released).
Link* Fill(Rng& rng, std::size_t lo, std::size_t hi, std::size_t* bytes) {
  Link* chain = nullptr;
  *bytes = 0;
  for (int failures = 0; failures < 3;) {
    const std::size_t n = lo == hi ? lo : rng.LogUniform(lo, hi);
    Link* l = static_cast<Link*>(malloc(n));
    if (l == nullptr) {
      ++failures;
      continue;
    }
    l->prev = chain;
    chain = l;
    *bytes += n;
  }
  return chain;
}

void* RecoveryWorker(void* arg) {
  const int id = static_cast<int>(reinterpret_cast<std::intptr_t>(arg));
  free(malloc(64));  // this thread's allocator state exists before the cap
  int seen = 0;
  for (;;) {
    int g;
    while ((g = g_generation.load()) == seen) usleep(1000);
    if (g < 0) return nullptr;
    seen = g;
    Rng rng(0xadd5 + static_cast<std::uint64_t>(id) * 31 +
            static_cast<std::uint64_t>(g));
    g_chains[id] = Fill(rng, g_lo.load(), g_hi.load(), &g_bytes[id]);
    g_filled.fetch_add(1);
  }
}

// Every thread fills the limit with blocks of [lo, hi] bytes; the main
// thread then frees all of them. Returns the bytes that were obtained.
std::size_t FillAndFree(std::size_t lo, std::size_t hi) {
  g_lo.store(lo);
  g_hi.store(hi);
  g_filled.store(0);
  g_generation.fetch_add(1);
  while (g_filled.load() < g_threads) usleep(1000);
  std::size_t total = 0;
  for (int i = 0; i < g_threads; ++i) {
    total += g_bytes[i];
    FreeChain(g_chains[i]);
    g_chains[i] = nullptr;
  }
  return total;
}

void ExpectBig(const char* after) {
  void* p = AllocateTouched(100 * kMiB);
  ELFC_CHECK(p != nullptr, "a 100 MiB block could not be allocated after %s "
             "(address space %zu MiB)", after, VirtualBytes() / kMiB);
  free(p);
}

int RunRecovery() {
  ELFC_CHECK(g_threads >= 1 && g_threads <= kMaxThreads &&
                 g_headroom >= 128 * kMiB,
             "bad arguments");
  pthread_t tids[kMaxThreads];
  for (int i = 0; i < g_threads; ++i) {
    ELFC_CHECK(pthread_create(&tids[i], nullptr, RecoveryWorker,
                              reinterpret_cast<void*>(std::intptr_t{i})) == 0,
               "pthread_create");
  }
  usleep(50 * 1000);  // the workers' first malloc (not required, just usual)
  std::size_t base;
  const struct rlimit old = CapAddressSpace(&base);
  Log("address_space: recovery: address space %zu MiB, capped at %zu MiB, "
      "%d threads",
      base / kMiB, (base + g_headroom) / kMiB, g_threads);

  std::size_t got = FillAndFree(64, 64);
  Log("address_space: %zu MiB of 64-byte blocks, freed", got / kMiB);
  ExpectBig("filling the limit with 64-byte blocks and freeing them");

  got = FillAndFree(kMiB, kMiB);
  Log("address_space: %zu MiB of 1 MiB blocks, freed", got / kMiB);
  void* small = malloc(64);
  ELFC_CHECK(small != nullptr, "malloc(64) failed after filling the limit "
             "with 1 MiB blocks and freeing them");
  ExpectBig("filling the limit with 1 MiB blocks and freeing them");
  free(small);

  got = FillAndFree(16 * kKiB, 256 * kKiB);
  Log("address_space: %zu MiB of 16 .. 256 KiB blocks, freed", got / kMiB);
  ExpectBig("filling the limit with 16 .. 256 KiB blocks and freeing them");

  g_generation.store(-1);
  for (int i = 0; i < g_threads; ++i) pthread_join(tids[i], nullptr);
  ELFC_CHECK(setrlimit(RLIMIT_AS, &old) == 0, "restore RLIMIT_AS");
  printf("address_space: PASS recovery (%d threads, %zu MiB headroom)\n",
         g_threads, g_headroom / kMiB);
  return 0;
}

// --------------------------------------------------------------- exited

void* ExitingWorker(void*) {
  void* blocks[32];
  int n = 0;
  for (std::size_t size = 16 * kKiB; size <= 256 * kKiB; size += size / 4) {
    blocks[n] = AllocateTouched(size);
    ELFC_CHECK(blocks[n] != nullptr, "malloc(%zu) failed", size);
    ++n;
  }
  for (int i = 0; i < n; ++i) free(blocks[i]);
  return nullptr;
}

int RunExited() {
  ELFC_CHECK(g_threads >= 1 && g_headroom >= 64 * kMiB, "bad arguments");
  free(malloc(64));
  std::size_t base;
  const struct rlimit old = CapAddressSpace(&base);
  for (int i = 0; i < g_threads; ++i) {
    pthread_t t;
    ELFC_CHECK(pthread_create(&t, nullptr, ExitingWorker, nullptr) == 0,
               "pthread_create");
    ELFC_CHECK(pthread_join(t, nullptr) == 0, "pthread_join");
  }
  const std::size_t after = VirtualBytes();
  const std::size_t want = g_headroom - 32 * kMiB;
  void* p = AllocateTouched(want);
  Log("address_space: exited: address space %zu MiB at start, %zu MiB after "
      "%d threads came and went; %zu MiB block %s",
      base / kMiB, after / kMiB, g_threads, want / kMiB,
      p != nullptr ? "obtained" : "FAILED");
  ELFC_CHECK(p != nullptr, "a %zu MiB block could not be allocated under a "
             "cap of %zu MiB after %d threads allocated, freed and exited",
             want / kMiB, (base + g_headroom) / kMiB, g_threads);
  free(p);
  ELFC_CHECK(setrlimit(RLIMIT_AS, &old) == 0, "restore RLIMIT_AS");
  printf("address_space: PASS exited (%d threads, %zu MiB headroom)\n",
         g_threads, g_headroom / kMiB);
  return 0;
}

// --------------------------------------------------------------- phases

int RunPhases() {
  struct Range {
    const char* name;
    std::size_t lo, hi;
  };
  static const Range kRanges[] = {
      {"16 .. 512 B", 16, 512},
      {"640 B .. 14 KiB", 640, 14 * kKiB},
      {"16 .. 256 KiB", 16 * kKiB, 256 * kKiB},
      {"256 KiB .. 4 MiB", 256 * kKiB + 1, 4 * kMiB},
  };
  const std::size_t base = VirtualBytes();
  const std::size_t bound = base + 6 * g_phase;
  std::size_t worst = 0;
  Rng rng(0x9a5e);
  for (int cycle = 0; cycle < g_cycles; ++cycle) {
    for (const Range& r : kRanges) {
      Link* chain = nullptr;
      for (std::size_t got = 0; got < g_phase;) {
        const std::size_t n = rng.LogUniform(r.lo, r.hi);
        Link* l = static_cast<Link*>(AllocateTouched(n));
        ELFC_CHECK(l != nullptr, "malloc(%zu) failed", n);
        l->prev = chain;
        chain = l;
        got += n;
      }
      FreeChain(chain);
      const std::size_t v = VirtualBytes();
      if (v > worst) worst = v;
      Log("address_space: cycle %d, %s: virtual size %zu MiB", cycle + 1,
          r.name, v / kMiB);
      ELFC_CHECK(v <= bound, "virtual size %zu MiB after cycle %d's %s "
                 "phase, above the bound of %zu MiB (start-up %zu MiB + 6 x "
                 "%zu MiB)",
                 v / kMiB, cycle + 1, r.name, bound / kMiB, base / kMiB,
                 g_phase / kMiB);
    }
  }
  printf("address_space: PASS phases (%d cycles of 4 x %zu MiB; largest "
         "virtual size %zu MiB, bound %zu MiB)\n",
         g_cycles, g_phase / kMiB, worst / kMiB, bound / kMiB);
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  elfc::test::CheckPreload("address_space");
  for (int i = 1; i < argc; ++i) {
    if (strncmp(argv[i], "--mode=", 7) == 0) {
      g_mode = argv[i] + 7;
    } else if (strncmp(argv[i], "--headroom_mb=", 14) == 0) {
      g_headroom = strtoull(argv[i] + 14, nullptr, 10) * kMiB;
    } else if (strncmp(argv[i], "--threads=", 10) == 0) {
      g_threads = atoi(argv[i] + 10);
    } else if (strncmp(argv[i], "--phase_mb=", 11) == 0) {
      g_phase = strtoull(argv[i] + 11, nullptr, 10) * kMiB;
    } else if (strncmp(argv[i], "--cycles=", 9) == 0) {
      g_cycles = atoi(argv[i] + 9);
    } else {
      ELFC_CHECK(false, "unknown argument %s", argv[i]);
    }
  }
  elfc::test::StartWatchdog(120, "address_space");
  if (strcmp(g_mode, "recovery") == 0) return RunRecovery();
  if (strcmp(g_mode, "phases") == 0) return RunPhases();
  if (strcmp(g_mode, "exited") == 0) return RunExited();
  ELFC_CHECK(false, "--mode=recovery, exited or phases");
  return 1;
}
