// elfc/thread_churn.cc: thousands of short-lived threads against the
// process's malloc, with a bound on resident memory (run under
// LD_PRELOAD=libelfc.so by //elfc:thread_churn_test).
//
// A thread-caching allocator keeps per-thread state (caches, magazines,
// metadata) that must be handed back when the thread exits; if it is not,
// every thread leaks a little and a server that spawns threads per request
// grows without bound. This program runs `rounds` rounds of `threads`
// concurrent threads each (default 40 x 50 = 2000 threads):
//   * worker threads (about 70%) allocate ~200 blocks across many size
//     classes (1 B .. 128 KiB), touch every byte, free most of them (so they
//     sit in the thread's cache when it exits), and leave a few small blocks
//     in a shared pool;
//   * free-only threads (the rest) never allocate: they take blocks from the
//     pool, which were allocated by threads that may have exited already,
//     check their pattern and free them. Their first (and only) call into the
//     allocator is free().
// Resident memory (/proc/self/statm) is read after every round; the test
// fails if the smallest reading of the last rounds exceeds 2 x the largest of
// the warm-up rounds (the first eighth) + 8 MiB.
// A leak of 16 KiB per worker thread (--simulate_leak_kib=16) already fails
// it on glibc and on jemalloc; a lost thread cache (~200 freed blocks) is
// far bigger.
// The pool holds at most kPoolCapacity blocks of at most 4 KiB, so the test's
// own live memory is bounded and small.
//
// Usage: thread_churn [--rounds=N] [--threads=N] [--simulate_leak_kib=N]
//   rounds is multiplied by ELFC_STRESS_SCALE. --simulate_leak_kib makes
//   every worker thread leak N KiB (touched) on purpose: it shows the bound
//   catches a per-thread leak (16 fails it, on any malloc); never use it in
//   a test target.
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <mutex>

#include "elfc/preload_test_util.h"

namespace {

using elfc::test::CheckPattern;
using elfc::test::FillPattern;
using elfc::test::PatternKey;
using elfc::test::Rng;

struct Block {
  void* p;
  std::size_t size;
  std::uint64_t key;
};

// The pool of blocks handed from worker threads to free-only threads: a fixed
// array under a mutex, so the pool itself never allocates.
constexpr int kPoolCapacity = 2048;
std::mutex g_pool_mu;
Block g_pool[kPoolCapacity];
int g_pool_count = 0;

std::atomic<std::uint64_t> g_allocs{0};
std::atomic<std::uint64_t> g_frees_by_free_only{0};

bool PoolPut(const Block& b) {
  std::lock_guard<std::mutex> lock(g_pool_mu);
  if (g_pool_count == kPoolCapacity) return false;
  g_pool[g_pool_count++] = b;
  return true;
}

bool PoolTake(Block* b) {
  std::lock_guard<std::mutex> lock(g_pool_mu);
  if (g_pool_count == 0) return false;
  *b = g_pool[--g_pool_count];
  return true;
}

void CheckAndFree(const Block& b) {
  const std::size_t bad = CheckPattern(b.p, b.size, b.key);
  ELFC_CHECK(bad == SIZE_MAX, "pooled block %p (%zu bytes) corrupted at %zu",
             b.p, b.size, bad);
  free(b.p);
}

struct ThreadArgs {
  std::uint64_t seed;
  bool free_only;
  std::size_t leak_bytes;  // --simulate_leak_kib
};

void* WorkerMain(void* arg) {
  const ThreadArgs* a = static_cast<const ThreadArgs*>(arg);
  if (a->free_only) {
    // No allocation on this thread, only frees of other threads' blocks.
    Block b;
    for (int i = 0; i < 96 && PoolTake(&b); ++i) {
      CheckAndFree(b);
      g_frees_by_free_only.fetch_add(1, std::memory_order_relaxed);
    }
    return nullptr;
  }
  Rng rng(a->seed);
  constexpr int kBlocks = 200;
  Block blocks[kBlocks];
  for (int i = 0; i < kBlocks; ++i) {
    // Cover small classes densely and some larger ones: what a thread cache
    // would hold on to.
    const std::size_t size = rng.Below(8) == 0 ? rng.LogUniform(1025, 128 * 1024)
                                               : rng.LogUniform(1, 1024);
    void* p = malloc(size);
    ELFC_CHECK(p != nullptr, "malloc(%zu)", size);
    blocks[i] = {p, size, PatternKey(p, rng.Next())};
    FillPattern(p, size, blocks[i].key);  // touches every byte
  }
  g_allocs.fetch_add(kBlocks, std::memory_order_relaxed);
  if (a->leak_bytes != 0) {
    void* leak = malloc(a->leak_bytes);
    ELFC_CHECK(leak != nullptr, "malloc(%zu)", a->leak_bytes);
    memset(leak, 1, a->leak_bytes);  // deliberately never freed
  }
  // Free in a scrambled order; hand a few small ones to the pool.
  for (int i = kBlocks - 1; i > 0; --i) {
    const int j = static_cast<int>(rng.Below(static_cast<std::uint64_t>(i + 1)));
    const Block t = blocks[i];
    blocks[i] = blocks[j];
    blocks[j] = t;
  }
  int handed = 0;
  for (int i = 0; i < kBlocks; ++i) {
    if (handed < 10 && blocks[i].size <= 4096 && PoolPut(blocks[i])) {
      ++handed;
      continue;
    }
    CheckAndFree(blocks[i]);
  }
  return nullptr;
}

std::uint64_t ParseFlag(int argc, char** argv, const char* name,
                        std::uint64_t def) {
  const std::size_t len = strlen(name);
  for (int i = 1; i < argc; ++i) {
    if (strncmp(argv[i], name, len) == 0 && argv[i][len] == '=') {
      return strtoull(argv[i] + len + 1, nullptr, 10);
    }
  }
  return def;
}

}  // namespace

int main(int argc, char** argv) {
  elfc::test::CheckPreload("thread_churn");
  const int scale = elfc::test::StressScale();
  elfc::test::StartWatchdog(120u * static_cast<unsigned>(scale), "thread_churn");
  const std::uint64_t rounds =
      ParseFlag(argc, argv, "--rounds", 40) * static_cast<std::uint64_t>(scale);
  const std::uint64_t threads = ParseFlag(argc, argv, "--threads", 50);
  const std::size_t leak_bytes = ParseFlag(argc, argv, "--simulate_leak_kib", 0) << 10;
  ELFC_CHECK(rounds >= 8 && threads >= 2 && threads <= 256,
             "need --rounds >= 8 and 2 <= --threads <= 256");
  const std::uint64_t warmup = rounds / 8;

  Rng rng(0x7c4u);
  pthread_t tids[256];
  ThreadArgs args[256];
  // Resident memory jitters with what the 50 running threads hold at the
  // moment of reading, so compare ranges, not points: the largest reading of
  // the warm-up rounds against the smallest of the same number of final
  // rounds. A per-thread leak only grows, so it raises the minimum too.
  std::size_t rss_warm = 0;
  std::size_t rss_last = SIZE_MAX;
  std::size_t rss_peak = 0;
  std::uint64_t started = 0;
  for (std::uint64_t r = 0; r < rounds; ++r) {
    for (std::uint64_t t = 0; t < threads; ++t) {
      args[t] = {rng.Next(), rng.Below(10) < 3, leak_bytes};
      const int rc = pthread_create(&tids[t], nullptr, WorkerMain, &args[t]);
      ELFC_CHECK(rc == 0, "pthread_create: %d (thread %llu)", rc,
                 static_cast<unsigned long long>(started));
      ++started;
    }
    for (std::uint64_t t = 0; t < threads; ++t) pthread_join(tids[t], nullptr);
    const std::size_t rss = elfc::test::ResidentBytes();
    if (rss > rss_peak) rss_peak = rss;
    if (r < warmup && rss > rss_warm) rss_warm = rss;
    if (r >= rounds - warmup && rss < rss_last) rss_last = rss;
    if ((r + 1) % (rounds / 4) == 0 || r + 1 == warmup) {
      elfc::test::Log("thread_churn: round %llu/%llu, %llu threads so far, "
                      "rss %zu KiB, pool %d",
                      static_cast<unsigned long long>(r + 1),
                      static_cast<unsigned long long>(rounds),
                      static_cast<unsigned long long>(started), rss >> 10,
                      g_pool_count);
    }
  }
  const std::size_t bound = 2 * rss_warm + (std::size_t{8} << 20);
  ELFC_CHECK(rss_last <= bound,
             "resident memory grew with thread churn: at least %zu KiB in the "
             "last %llu rounds (after %llu threads) vs at most %zu KiB in the "
             "first %llu (bound %zu KiB): per-thread state is not returned at "
             "thread exit?",
             rss_last >> 10, static_cast<unsigned long long>(warmup),
             static_cast<unsigned long long>(started), rss_warm >> 10,
             static_cast<unsigned long long>(warmup), bound >> 10);
  ELFC_CHECK(g_frees_by_free_only.load() > 0,
             "no free-only thread found anything to free");
  // Leave nothing behind.
  Block b;
  while (PoolTake(&b)) CheckAndFree(b);
  printf("thread_churn: PASS %llu threads (%llu rounds x %llu), %llu "
         "allocations, %llu frees by free-only threads, rss warm-up max %zu KiB, "
         "last min %zu KiB, peak %zu KiB\n",
         static_cast<unsigned long long>(started),
         static_cast<unsigned long long>(rounds),
         static_cast<unsigned long long>(threads),
         static_cast<unsigned long long>(g_allocs.load()),
         static_cast<unsigned long long>(g_frees_by_free_only.load()),
         rss_warm >> 10, rss_last >> 10, rss_peak >> 10);
  return 0;
}
