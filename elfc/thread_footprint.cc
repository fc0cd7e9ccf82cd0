// elfc/thread_footprint.cc: what a thread costs the allocator when it holds
// only a few small blocks (run under LD_PRELOAD=libelfc.so by
// //elfc:thread_footprint_test; a plain C++ program, it runs on any malloc).
//
// Servers keep pools of hundreds of threads, most of which hold a handful
// of blocks at a time. Whatever a thread-caching allocator builds per thread
// (its caches' state, their stacks, a slab or span claimed per size class)
// is then multiplied by the thread count. This program starts --threads
// (default 200) threads and, while they all wait, reads the resident size
// (/proc/self/statm); then each thread allocates one block of each of
// --classes (default 8) sizes (16 B, then x1.5 + 16 B: 16, 40, 76, ...,
// 787 B for 8), writes its first bytes, and waits again; the resident size
// is read once more. The difference divided by the thread count is the
// memory one thread's handful of blocks costs; it must be at most
// --bound_kib (default 32) KiB.
//
// Measured here (200 threads, 8 classes): glibc ~4 KiB per thread,
// tcmalloc ~7, jemalloc ~66, mimalloc ~104; elfc ~25 (its heap's first
// page, with the fast-path entries of every class, the page of the slots
// of the classes it used, its magazines' nurseries, and 512 B of each
// class's objects from the slabs shared by all threads), ~28 when the
// heap wrote its whole fast-path array (8 KiB, 6 of it for tags that name
// no class), ~42 when a nursery's one shared refill took up to 2 KiB of
// objects and the classes of 640 B and more claimed a slab of their own
// (its first page touched), ~52 without shared refills, ~50 when
// each class's slot sat at the class's
// index (the 8 slots on 5 pages instead of 1), ~98 when every heap
// constructed all 61 of its caches, every cache started in a stack of its
// own and claimed a slab of its own at its first refill, and every
// thread's epoch record (bagpipe) took a page.
//
// Usage: thread_footprint [--threads=N] [--classes=N] [--bound_kib=N]
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cstddef>
#include <vector>

#include "elfc/preload_test_util.h"

namespace {

int g_threads = 200;
int g_classes = 8;
std::size_t g_bound_kib = 32;

pthread_barrier_t g_idle, g_holding, g_done;

void* Worker(void*) {
  pthread_barrier_wait(&g_idle);
  void* blocks[64];
  std::size_t size = 16;
  for (int i = 0; i < g_classes; ++i) {
    blocks[i] = malloc(size);
    ELFC_CHECK(blocks[i] != nullptr, "malloc(%zu)", size);
    memset(blocks[i], 0x5a, 8);
    size = size * 3 / 2 + 16;
  }
  pthread_barrier_wait(&g_holding);
  pthread_barrier_wait(&g_done);
  for (int i = 0; i < g_classes; ++i) free(blocks[i]);
  return nullptr;
}

}  // namespace

int main(int argc, char** argv) {
  elfc::test::CheckPreload("thread_footprint");
  for (int i = 1; i < argc; ++i) {
    if (strncmp(argv[i], "--threads=", 10) == 0) {
      g_threads = atoi(argv[i] + 10);
    } else if (strncmp(argv[i], "--classes=", 10) == 0) {
      g_classes = atoi(argv[i] + 10);
    } else if (strncmp(argv[i], "--bound_kib=", 12) == 0) {
      g_bound_kib = strtoull(argv[i] + 12, nullptr, 10);
    } else {
      ELFC_CHECK(false, "unknown argument %s", argv[i]);
    }
  }
  ELFC_CHECK(g_threads >= 1 && g_threads <= 4096, "bad --threads");
  ELFC_CHECK(g_classes >= 1 && g_classes <= 20, "bad --classes");
  elfc::test::StartWatchdog(120, "thread_footprint");
  pthread_barrier_init(&g_idle, nullptr, g_threads + 1);
  pthread_barrier_init(&g_holding, nullptr, g_threads + 1);
  pthread_barrier_init(&g_done, nullptr, g_threads + 1);
  std::vector<pthread_t> threads(g_threads);
  pthread_attr_t attr;
  pthread_attr_init(&attr);
  // Small stacks: their pages are not what is measured, and 200 default
  // stacks are 1.6 GiB of address space.
  pthread_attr_setstacksize(&attr, 256 << 10);
  for (pthread_t& t : threads) {
    ELFC_CHECK(pthread_create(&t, &attr, Worker, nullptr) == 0,
               "pthread_create");
  }
  pthread_attr_destroy(&attr);
  const std::size_t idle = elfc::test::ResidentBytes();
  pthread_barrier_wait(&g_idle);
  pthread_barrier_wait(&g_holding);
  const std::size_t holding = elfc::test::ResidentBytes();
  pthread_barrier_wait(&g_done);
  for (pthread_t& t : threads) pthread_join(t, nullptr);
  const std::size_t per_thread =
      holding > idle ? (holding - idle) / static_cast<std::size_t>(g_threads)
                     : 0;
  printf("thread_footprint: %d threads x %d classes: resident %zu KiB idle, "
         "%zu KiB holding: %zu KiB per thread (bound %zu)\n",
         g_threads, g_classes, idle >> 10, holding >> 10, per_thread >> 10,
         g_bound_kib);
  ELFC_CHECK(per_thread <= (g_bound_kib << 10),
             "%zu KiB per thread > bound %zu KiB", per_thread >> 10,
             g_bound_kib);
  printf("thread_footprint: PASS\n");
  return 0;
}
