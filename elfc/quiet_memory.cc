// elfc/quiet_memory.cc: memory comes back when a program goes quiet (run
// under LD_PRELOAD=libelfc.so by //elfc:quiet_memory_*_test; a plain C++
// program, it runs on any malloc).
//
// A malloc that caches freed memory for reuse must still give it back once
// the program stops needing it, without waiting for a burst of new
// allocations to notice. Two shapes of "quiet":
//
//   --mode=process: one thread allocates --mib MiB (default 400) of small
//     objects (16 .. 512 B, every page written), frees them all, then only
//     makes a few calls: every --tick_ms (default 50) ms it allocates and
//     frees two small blocks (and --burst 64-byte blocks, default none),
//     for --quiet_ms (default 3000) ms. Resident memory (/proc/self/statm)
//     must then be at most --bound_mib (default 32) MiB above what it was
//     before the burst: what a malloc may keep is its threads' caches of
//     small blocks and the partly used pages they pin, a few MiB, not a
//     share of the 400 MiB.
//   --mode=threads: --threads (default 64) threads each allocate --mib
//     (default 8) MiB of blocks of 8 KiB .. 1 MiB (every page written) and
//     free them, then sleep: a sleeping thread makes no call at all. The
//     main thread reads the resident size when all have freed, waits
//     --quiet_ms, and reads it again. It must have fallen by at least
//     --fall_mib (default 8) MiB: memory the threads freed into shared
//     caches (free pages, cached large blocks) comes back while they
//     sleep. And it must be at most 2 MiB per thread above the size before
//     the threads started: what a sleeping thread may keep is its own
//     cache of freed blocks (on elfc, its magazines: at most 256 KiB per
//     class above 8 KiB, about 1.3 MiB for this mix) and the touched free
//     pages of the slabs it claimed.
//
// Each mode prints the resident sizes it saw, so runs on other mallocs can
// be compared (glibc fails both: it keeps 432 MiB in process mode and
// 107 MiB, falling by nothing, in threads mode). --stats prints elfc's
// statistics at the end (when the malloc is elfc's). A watchdog turns a
// hang into a failure.
//
// Usage: quiet_memory --mode=process|threads [--mib=N] [--threads=N]
//                     [--quiet_ms=N] [--tick_ms=N] [--burst=N]
//                     [--bound_mib=N] [--fall_mib=N] [--stats]
#include <dlfcn.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <atomic>
#include <cstddef>
#include <cstdint>

#include "elfc/preload_test_util.h"

namespace {

using elfc::test::Log;
using elfc::test::Rng;

constexpr std::size_t kKiB = 1024;
constexpr std::size_t kMiB = 1024 * kKiB;
constexpr int kMaxThreads = 256;

const char* g_mode = "";
std::size_t g_mib = 0;  // 0: the mode's default
int g_threads = 64;
unsigned g_quiet_ms = 3000;
unsigned g_tick_ms = 50;
int g_burst = 0;
std::size_t g_bound_mib = 32;
std::size_t g_fall_mib = 8;
bool g_stats = false;

// --stats: elfc's statistics (elfc_print_stats, when the malloc is elfc's)
// to stderr, to see what holds the memory.
void PrintStats() {
  if (!g_stats) return;
  using PrintFn = void (*)(int);
  if (auto f = reinterpret_cast<PrintFn>(
          dlsym(RTLD_DEFAULT, "elfc_print_stats"))) {
    f(2);
  }
}

void SleepMs(unsigned ms) {
  struct timespec ts;
  ts.tv_sec = ms / 1000;
  ts.tv_nsec = static_cast<long>(ms % 1000) * 1000000L;
  while (nanosleep(&ts, &ts) != 0) {
  }
}

std::size_t MiB(std::size_t bytes) { return bytes / kMiB; }

// A block in a chain: its first word links to the previous block.
struct Link {
  Link* prev;
};

// Allocates blocks of [lo, hi] bytes (log-uniform) until `total` bytes,
// writing every page of each, chained through their first word.
Link* AllocateChain(Rng& rng, std::size_t lo, std::size_t hi,
                    std::size_t total) {
  Link* chain = nullptr;
  for (std::size_t got = 0; got < total;) {
    const std::size_t n = rng.LogUniform(lo, hi);
    auto* p = static_cast<unsigned char*>(malloc(n));
    ELFC_CHECK(p != nullptr, "malloc(%zu) failed", n);
    for (std::size_t i = 0; i < n; i += 4096) p[i] = static_cast<unsigned char>(i);
    p[n - 1] = 1;
    Link* l = reinterpret_cast<Link*>(p);
    l->prev = chain;
    chain = l;
    got += n;
  }
  return chain;
}

void FreeChain(Link* l) {
  while (l != nullptr) {
    Link* prev = l->prev;
    free(l);
    l = prev;
  }
}

int RunProcess() {
  const std::size_t total = (g_mib != 0 ? g_mib : 400) * kMiB;
  const std::size_t before = elfc::test::ResidentBytes();
  Rng rng(0x9e11e);
  Link* chain = AllocateChain(rng, 16, 512, total);
  const std::size_t peak = elfc::test::ResidentBytes();
  FreeChain(chain);
  const std::size_t freed = elfc::test::ResidentBytes();
  // Quiet: a few calls per tick, never more than a magazine's worth.
  for (unsigned t = 0; t < g_quiet_ms; t += g_tick_ms) {
    SleepMs(g_tick_ms);
    void* a = malloc(64);
    void* b = malloc(200);
    free(a);
    free(b);
    // --burst: also allocate and free that many 64-byte blocks.
    static void* blocks[4096];
    for (int i = 0; i < g_burst; ++i) blocks[i] = malloc(64);
    for (int i = 0; i < g_burst; ++i) free(blocks[i]);
  }
  const std::size_t after = elfc::test::ResidentBytes();
  PrintStats();
  Log("quiet_memory: process: resident %zu MiB before, %zu MiB with %zu MiB "
      "of small blocks live, %zu MiB at once after freeing them, %zu MiB "
      "after %u ms of a few calls every %u ms",
      MiB(before), MiB(peak), MiB(total), MiB(freed), MiB(after), g_quiet_ms,
      g_tick_ms);
  ELFC_CHECK(after <= before + g_bound_mib * kMiB,
             "resident %zu MiB after the quiet period, more than %zu MiB "
             "above the %zu MiB before the burst",
             MiB(after), g_bound_mib, MiB(before));
  printf("quiet_memory: PASS process (%zu MiB after the quiet period, bound "
         "%zu MiB above %zu MiB)\n",
         MiB(after), g_bound_mib, MiB(before));
  return 0;
}

std::atomic<int> g_done_freeing{0};
std::atomic<bool> g_release{false};

void* ThreadMain(void* arg) {
  const int id = static_cast<int>(reinterpret_cast<std::intptr_t>(arg));
  Rng rng(0x7411 + static_cast<std::uint64_t>(id) * 977);
  const std::size_t total = (g_mib != 0 ? g_mib : 8) * kMiB;
  FreeChain(AllocateChain(rng, 8 * kKiB, kMiB, total));
  g_done_freeing.fetch_add(1);
  // Asleep: no allocator call until the main thread is done.
  while (!g_release.load()) SleepMs(20);
  return nullptr;
}

int RunThreads() {
  ELFC_CHECK(g_threads >= 1 && g_threads <= kMaxThreads, "bad --threads");
  const std::size_t before = elfc::test::ResidentBytes();
  pthread_t tids[kMaxThreads];
  pthread_attr_t attr;
  pthread_attr_init(&attr);
  pthread_attr_setstacksize(&attr, 256 * kKiB);
  for (int i = 0; i < g_threads; ++i) {
    ELFC_CHECK(pthread_create(&tids[i], &attr, ThreadMain,
                              reinterpret_cast<void*>(std::intptr_t{i})) == 0,
               "pthread_create");
  }
  pthread_attr_destroy(&attr);
  while (g_done_freeing.load() < g_threads) SleepMs(5);
  const std::size_t freed = elfc::test::ResidentBytes();
  SleepMs(g_quiet_ms);
  const std::size_t after = elfc::test::ResidentBytes();
  PrintStats();
  g_release.store(true);
  for (int i = 0; i < g_threads; ++i) pthread_join(tids[i], nullptr);
  Log("quiet_memory: threads: resident %zu MiB before, %zu MiB when %d "
      "threads had freed their %zu MiB each of 8 KiB .. 1 MiB blocks, %zu "
      "MiB after %u ms of sleep",
      MiB(before), MiB(freed), g_threads, g_mib != 0 ? g_mib : 8,
      MiB(after), g_quiet_ms);
  ELFC_CHECK(after + g_fall_mib * kMiB <= freed,
             "resident %zu MiB after %u ms of sleep, down by less than %zu "
             "MiB from the %zu MiB when the threads had freed their blocks",
             MiB(after), g_quiet_ms, g_fall_mib, MiB(freed));
  const std::size_t bound = before + static_cast<std::size_t>(g_threads) * 2 * kMiB;
  ELFC_CHECK(after <= bound,
             "resident %zu MiB while the threads sleep, more than 2 MiB per "
             "thread (%zu MiB) above the %zu MiB before they started",
             MiB(after), MiB(bound), MiB(before));
  printf("quiet_memory: PASS threads (%zu MiB when freed, %zu MiB while %d "
         "threads sleep, bound %zu MiB)\n",
         MiB(freed), MiB(after), g_threads, MiB(bound));
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  elfc::test::CheckPreload("quiet_memory");
  for (int i = 1; i < argc; ++i) {
    if (strncmp(argv[i], "--mode=", 7) == 0) {
      g_mode = argv[i] + 7;
    } else if (strncmp(argv[i], "--mib=", 6) == 0) {
      g_mib = strtoull(argv[i] + 6, nullptr, 10);
    } else if (strncmp(argv[i], "--threads=", 10) == 0) {
      g_threads = atoi(argv[i] + 10);
    } else if (strncmp(argv[i], "--quiet_ms=", 11) == 0) {
      g_quiet_ms = static_cast<unsigned>(atoi(argv[i] + 11));
    } else if (strncmp(argv[i], "--tick_ms=", 10) == 0) {
      g_tick_ms = static_cast<unsigned>(atoi(argv[i] + 10));
    } else if (strncmp(argv[i], "--bound_mib=", 12) == 0) {
      g_bound_mib = strtoull(argv[i] + 12, nullptr, 10);
    } else if (strncmp(argv[i], "--fall_mib=", 11) == 0) {
      g_fall_mib = strtoull(argv[i] + 11, nullptr, 10);
    } else if (strncmp(argv[i], "--burst=", 8) == 0) {
      g_burst = atoi(argv[i] + 8);
    } else if (strcmp(argv[i], "--stats") == 0) {
      g_stats = true;
    } else {
      ELFC_CHECK(false, "unknown argument %s", argv[i]);
    }
  }
  ELFC_CHECK(g_tick_ms >= 1 && g_burst >= 0 && g_burst <= 4096,
             "bad --tick_ms or --burst");
  elfc::test::StartWatchdog(120, "quiet_memory");
  if (strcmp(g_mode, "process") == 0) return RunProcess();
  if (strcmp(g_mode, "threads") == 0) return RunThreads();
  ELFC_CHECK(false, "--mode=process or --mode=threads");
  return 1;
}
