// elfc/shared_refill.cc: which slabs a thread's first blocks of a small class
// come from (run under LD_PRELOAD=libelfc.so by //elfc:shared_refill_test).
//
// A thread heap's cache starts in a small nursery whose refills come from
// the class's fallback slab, shared by every thread, until it has taken
// 2 KiB of objects; then it claims a slab of its own (elfmalloc/
// magazine_cache.h, "Shared refills"). That keeps threads that hold a
// handful of blocks from claiming a slab each, but a program of a few
// threads has little to share, and in a single-threaded one each class
// would keep two slabs (the fallback's and the thread's own) and touch
// both. So the refills are shared only while 8 or more threads have heaps
// (general_allocator.cc, kSharedRefillMinHeaps).
//
// This program counts the slab pages of a class (elfc_get_detailed_stats,
// looked up with dlsym) after its main thread allocated 4 KiB of 16-byte
// blocks alone (one page: its own slab), and as much of 32-byte blocks
// with one more thread that allocates (one page); then, while 8 threads that
// allocate are running, after the main thread allocated 4 KiB of 48-byte
// blocks (two pages: the fallback's, for the nursery's first 2 KiB, and
// its own), and then that one of the threads, allocating one 176-byte and
// one 1536-byte block, adds no page to those classes (they come from the
// fallback's slabs, which the main thread's blocks of those sizes use).

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

constexpr int kThreads = 8;
// Holds n blocks of `size` bytes on the calling thread and checks that their
// class then has `want` slab pages (`what` says who allocated and why).
std::vector<void*> HoldAndExpectPages(const char* what, std::size_t size,
                                      std::size_t n, std::size_t want,
                                      const char* why) {
  std::vector<void*> v = Hold(size, n);
  const std::size_t pages = PagesOf(size);
  std::printf("%s, %zu %zu-byte blocks: %zu page(s)\n", what, n, size, pages);
  ELFC_CHECK(pages == want, "%zu-byte class: %zu pages, want %zu (%s)", size,
             pages, want, why);
  return v;
}

pthread_mutex_t g_mu = PTHREAD_MUTEX_INITIALIZER;
pthread_cond_t g_cv = PTHREAD_COND_INITIALIZER;
int g_ready = 0;         // threads that have a heap
bool g_go = false;       // main is done: thread 0 checks
bool g_checked = false;  // thread 0 is done: all exit (until then every
                         // thread keeps its heap, so that 9 are live)

void* Worker(void* arg) {
  const bool checker = arg != nullptr;
  std::vector<void*> mine = Hold(200, 1);  // builds this thread's heap
  pthread_mutex_lock(&g_mu);
  ++g_ready;
  pthread_cond_broadcast(&g_cv);
  while (!g_go) pthread_cond_wait(&g_cv, &g_mu);
  pthread_mutex_unlock(&g_mu);
  if (checker) {
    // A thread that holds one block of a class claims no slab of its own
    // (its block comes from the shared one), for a small and a mid class.
    for (std::size_t size : {std::size_t{176}, std::size_t{1536}}) {
      const std::size_t before = PagesOf(size);
      std::vector<void*> few = Hold(size, 1);
      const std::size_t after = PagesOf(size);
      std::printf("a thread of 9, one %zu-byte block: %zu -> %zu page(s)\n",
                  size, before, after);
      ELFC_CHECK(after == before,
                 "%zu-byte class: %zu -> %zu pages, want no new one", size,
                 before, after);
      for (void* p : few) std::free(p);
    }
    pthread_mutex_lock(&g_mu);
    g_checked = true;
    pthread_cond_broadcast(&g_cv);
    pthread_mutex_unlock(&g_mu);
  } else {
    pthread_mutex_lock(&g_mu);
    while (!g_checked) pthread_cond_wait(&g_cv, &g_mu);
    pthread_mutex_unlock(&g_mu);
  }
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
  std::vector<void*> alone =
      HoldAndExpectPages("one thread", 16, 256, 1,
                         "no shared slab for a single-threaded program");

  pthread_t t[kThreads];
  auto start = [&](int i) {
    ELFC_CHECK(pthread_create(&t[i], nullptr, &Worker,
                              i == 0 ? &g_ready : nullptr) == 0,
               "pthread_create failed");
    pthread_mutex_lock(&g_mu);
    while (g_ready != i + 1) pthread_cond_wait(&g_cv, &g_mu);
    pthread_mutex_unlock(&g_mu);
  };
  // Two threads with heaps: still no sharing.
  start(0);
  std::vector<void*> two = HoldAndExpectPages("2 threads", 32, 128, 1,
                                              "no shared slab with 2 threads");
  for (int i = 1; i < kThreads; ++i) start(i);
  // Nine threads with heaps: the first 2 KiB come from the shared slab,
  // then the thread claims its own.
  std::vector<void*> shared = HoldAndExpectPages(
      "9 threads", 48, 86, 2, "the shared one, then the thread's own");
  // The classes the checking thread uses are in use (the shared slab's
  // objects go to whoever refills first).
  std::vector<void*> main_few = Hold(176, 1);
  for (void* p : Hold(1536, 1)) main_few.push_back(p);
  pthread_mutex_lock(&g_mu);
  g_go = true;
  pthread_cond_broadcast(&g_cv);
  pthread_mutex_unlock(&g_mu);
  for (int i = 0; i < kThreads; ++i) {
    ELFC_CHECK(pthread_join(t[i], nullptr) == 0, "pthread_join failed");
  }
  for (void* p : alone) std::free(p);
  for (void* p : two) std::free(p);
  for (void* p : main_few) std::free(p);
  for (void* p : shared) std::free(p);
  std::printf("shared_refill: PASS\n");
  return 0;
}
