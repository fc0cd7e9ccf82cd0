// elfc/shared_refill.cc: which slabs a thread's first blocks of a small class
// come from (run under LD_PRELOAD=libelfc.so by //elfc:shared_refill_test).
//
// A thread heap's cache starts in a small nursery whose refills come from
// the class's fallback slab, shared by every thread, until it has taken
// 2 KiB of objects; then it claims a slab of its own (elfmalloc/
// magazine_cache.h, "Shared refills"). That keeps threads that hold a
// handful of blocks from claiming a slab each, but in a single-threaded
// program there is no one to share with: the one thread would take its
// first objects from the fallback's slab and then claim its own, two slabs
// (and two touched pages) for every class it uses. So the shared refills
// start only once two threads have allocated side by side.
//
// This program counts the slab pages of a class (elfc_get_detailed_stats,
// looked up with dlsym) after its main thread allocated 4 KiB of 16-byte
// blocks alone (one page: its own slab), then after a second thread that
// allocates is running, 4 KiB of 48-byte blocks on the main thread (two
// pages: the fallback's, for the nursery's first 2 KiB, and its own), and
// on the second thread 100 bytes of 80-byte blocks (one page: the
// fallback's only).

#include <dlfcn.h>
#include <pthread.h>

#include <cstddef>
#include <cstdio>
#include <cstdlib>
#include <vector>

#include "elfc/elfc.h"
#include "elfc/preload_test_util.h"

namespace {

using GetDetailedStats = size_t (*)(elfc_detailed_stats*, size_t);
GetDetailedStats g_get_stats = nullptr;

// The slab pages of the class whose blocks are `size` bytes.
std::size_t PagesOf(std::size_t size) {
  static elfc_detailed_stats s;
  g_get_stats(&s, sizeof(s));
  for (std::size_t i = 0; i < s.num_classes; ++i) {
    if (s.classes[i].object_size == size) return s.classes[i].pages;
  }
  ELFC_CHECK(false, "no class of %zu bytes", size);
  return 0;
}

// Keeps `n` blocks of `size` bytes (so that no refill is undone by a free).
std::vector<void*> Hold(std::size_t size, std::size_t n) {
  std::vector<void*> v;
  v.reserve(n);
  for (std::size_t i = 0; i < n; ++i) {
    v.push_back(std::malloc(size));
    ELFC_CHECK(v.back() != nullptr, "malloc(%zu) failed", size);
  }
  return v;
}

pthread_mutex_t g_mu = PTHREAD_MUTEX_INITIALIZER;
pthread_cond_t g_cv = PTHREAD_COND_INITIALIZER;
int g_step = 0;  // 1: the second thread has a heap; 2: main is done

void* Second(void*) {
  std::vector<void*> mine = Hold(24, 1);  // builds this thread's heap
  pthread_mutex_lock(&g_mu);
  g_step = 1;
  pthread_cond_broadcast(&g_cv);
  while (g_step != 2) pthread_cond_wait(&g_cv, &g_mu);
  pthread_mutex_unlock(&g_mu);
  // A thread that holds a few blocks of a class: the shared slab only.
  std::vector<void*> few = Hold(80, 1);
  const std::size_t pages = PagesOf(80);
  std::printf("second thread, one 80-byte block: %zu page(s)\n", pages);
  ELFC_CHECK(pages == 1, "80-byte class: %zu pages, want 1 (the shared one)",
             pages);
  for (void* p : few) std::free(p);
  for (void* p : mine) std::free(p);
  return nullptr;
}

}  // namespace

int main() {
  elfc::test::CheckPreload("shared_refill");
  g_get_stats = reinterpret_cast<GetDetailedStats>(
      dlsym(RTLD_DEFAULT, "elfc_get_detailed_stats"));
  if (g_get_stats == nullptr) {
    std::printf("shared_refill: SKIP (elfc_get_detailed_stats not found)\n");
    return 0;
  }
  // Alone: 4 KiB of 16-byte blocks from one slab, the thread's own.
  std::vector<void*> alone = Hold(16, 256);
  const std::size_t alone_pages = PagesOf(16);
  std::printf("one thread, 256 16-byte blocks: %zu page(s)\n", alone_pages);
  ELFC_CHECK(alone_pages == 1,
             "16-byte class: %zu pages, want 1 (no shared slab for a "
             "single-threaded program)",
             alone_pages);

  pthread_t t;
  ELFC_CHECK(pthread_create(&t, nullptr, &Second, nullptr) == 0,
             "pthread_create failed");
  pthread_mutex_lock(&g_mu);
  while (g_step != 1) pthread_cond_wait(&g_cv, &g_mu);
  pthread_mutex_unlock(&g_mu);
  // Two threads: the first 2 KiB come from the shared slab, then the
  // thread claims its own.
  std::vector<void*> shared = Hold(48, 86);
  const std::size_t shared_pages = PagesOf(48);
  std::printf("two threads, 86 48-byte blocks: %zu page(s)\n", shared_pages);
  ELFC_CHECK(shared_pages == 2,
             "48-byte class: %zu pages, want 2 (the shared one, then the "
             "thread's own)",
             shared_pages);
  pthread_mutex_lock(&g_mu);
  g_step = 2;
  pthread_cond_broadcast(&g_cv);
  pthread_mutex_unlock(&g_mu);
  ELFC_CHECK(pthread_join(t, nullptr) == 0, "pthread_join failed");
  for (void* p : alone) std::free(p);
  for (void* p : shared) std::free(p);
  std::printf("shared_refill: PASS\n");
  return 0;
}
