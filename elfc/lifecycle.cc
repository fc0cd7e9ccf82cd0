// elfc/lifecycle.cc: allocation at the edges of a thread's and the process's
// life (run under LD_PRELOAD=libelfc.so by //elfc:lifecycle_test and
// //elfc:lifecycle_pthread_exit_test).
//
// A thread-caching malloc sets up per-thread state on a thread's first call
// and tears it down when the thread exits, usually from a pthread-key
// destructor or a C++ thread_local destructor of its own. Programs allocate
// in exactly those places too, in an order the allocator does not control:
//   * pthread-key destructors run in key-index order, so a user key with a
//     lower index than the allocator's runs while the thread's cache is
//     alive, and one with a higher index runs after it is gone; a
//     destructor that sets a new value makes glibc run another round (up to
//     PTHREAD_DESTRUCTOR_ITERATIONS). We create keys before main (in a
//     priority-101 constructor, the earliest point in the executable), then
//     delete every other one, and create more in main: those fill the holes
//     first, then go above. So an allocator that creates its key lazily
//     (after our constructor) has user keys on both sides of its own. One
//     that creates its keys before any program code runs (libelfc.so and
//     jemalloc do: the program prints its key indexes, and they start above
//     the allocator's) can only have user keys after its own, which is the
//     hard case: they run after the thread's cache is gone.
//   * thread_local destructors (which glibc runs before any key
//     destructor) that allocate: one object touched as the very first thing
//     a thread does (registered before the thread's first malloc, as far as
//     glibc's own registration allows), one touched after the thread
//     allocated.
//   * threads whose only allocator calls happen during their teardown (the
//     first malloc of the thread is inside a key destructor, after all
//     thread_local destructors ran): 1000 of them, with a resident-memory
//     bound, because state created that late is easy to leak.
//   * threads that only free blocks allocated by others (their first call is
//     free), and that exit via pthread_exit.
//   * blocks allocated during thread teardown handed to the main thread and
//     freed there after the allocating thread is gone.
//   * at process exit: atexit handlers (registered before main, in main and
//     from a thread), static destructors and a destructor-attribute function
//     that allocate and free, and free blocks allocated by exited threads,
//     while detached threads keep allocating (nothing may be torn down under
//     them). The main thread's own thread_local destructors run at exit()
//     before the atexit handlers, so those run on a main thread whose cache
//     may be gone.
// With --main_exit=pthread_exit the main thread leaves by pthread_exit()
// instead of returning: its key and thread_local destructors run while other
// threads still allocate, and the process exits (running every exit handler)
// when the last of those threads returns.
//
// The test checks the exact number of destructor calls, the patterns of all
// blocks that crossed a thread's death, and that the exit handlers all ran
// (the last one prints "lifecycle: PASS exit handlers done"); the runner
// checks the exit status, so a crash at exit fails it.
#include <malloc.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <map>
#include <mutex>
#include <string>
#include <vector>

#include "elfc/preload_test_util.h"

namespace {

using elfc::test::CheckPattern;
using elfc::test::FillPattern;
using elfc::test::Log;
using elfc::test::PatternKey;
using elfc::test::Rng;

// ---- Blocks handed from a dying thread (or exit handler) to someone else ----

struct Block {
  void* p;
  std::size_t size;
  std::uint64_t key;
};

// A fixed array under a mutex: handing a block over never allocates.
constexpr int kHandoffCapacity = 1 << 15;
std::mutex g_handoff_mu;
Block g_handoff[kHandoffCapacity];
int g_handoff_count = 0;
std::atomic<std::uint64_t> g_handoff_dropped{0};

void HandOff(const Block& b) {
  std::lock_guard<std::mutex> lock(g_handoff_mu);
  if (g_handoff_count == kHandoffCapacity) {
    free(b.p);
    g_handoff_dropped.fetch_add(1, std::memory_order_relaxed);
    return;
  }
  g_handoff[g_handoff_count++] = b;
}

bool TakeHandOff(Block* b) {
  std::lock_guard<std::mutex> lock(g_handoff_mu);
  if (g_handoff_count == 0) return false;
  *b = g_handoff[--g_handoff_count];
  return true;
}

std::atomic<std::uint64_t> g_handoff_freed{0};

int HandOffCount() {
  std::lock_guard<std::mutex> lock(g_handoff_mu);
  return g_handoff_count;
}

void CheckAndFree(const Block& b, const char* where) {
  const std::size_t bad = CheckPattern(b.p, b.size, b.key);
  ELFC_CHECK(bad == SIZE_MAX, "%s: block %p of %zu bytes corrupted at %zu",
             where, b.p, b.size, bad);
  free(b.p);
}

// Frees everything handed off so far.
void DrainHandOffs(const char* where) {
  Block b;
  while (TakeHandOff(&b)) {
    CheckAndFree(b, where);
    g_handoff_freed.fetch_add(1, std::memory_order_relaxed);
  }
}

// ---- What every teardown hook does ----

// Allocates and frees in several size classes and through several entry
// points, checks the contents, and hands one block to another thread.
// `seed` varies it per call site.
void AllocatorWorkout(std::uint64_t seed, const char* where) {
  Rng rng(seed);
  void* held[12];
  std::size_t sizes[12];
  std::uint64_t keys[12];
  for (int i = 0; i < 12; ++i) {
    // Block 10 is large; block 11 (small, so the test's own live memory
    // stays small) is handed to another thread.
    sizes[i] = i == 10 ? rng.LogUniform(4097, 300 * 1024)
                       : rng.LogUniform(1, i == 11 ? 1024 : 4096);
    held[i] = (i % 3 == 0) ? calloc(1, sizes[i]) : malloc(sizes[i]);
    ELFC_CHECK(held[i] != nullptr, "%s: malloc(%zu)", where, sizes[i]);
    keys[i] = PatternKey(held[i], rng.Next());
    FillPattern(held[i], sizes[i], keys[i]);
  }
  // Grow one, shrink one.
  for (int i = 0; i < 2; ++i) {
    const std::size_t next = i == 0 ? sizes[i] * 3 + 100 : sizes[i] / 2 + 1;
    void* q = realloc(held[i], next);
    ELFC_CHECK(q != nullptr, "%s: realloc to %zu", where, next);
    const std::size_t keep = next < sizes[i] ? next : sizes[i];
    ELFC_CHECK(CheckPattern(q, keep, keys[i]) == SIZE_MAX,
               "%s: realloc lost contents", where);
    held[i] = q;
    sizes[i] = next;
    keys[i] = PatternKey(q, rng.Next());
    FillPattern(q, next, keys[i]);
  }
  void* aligned = nullptr;
  ELFC_CHECK(posix_memalign(&aligned, 256, 1000) == 0, "%s: posix_memalign",
             where);
  // C++ containers and strings: operator new/delete with sizes.
  std::string s(where);
  for (int i = 0; i < 20; ++i) s += "-teardown-allocation";
  std::vector<std::uint64_t> v;
  for (std::uint64_t i = 0; i < 500; ++i) v.push_back(i * seed);
  std::map<int, std::string> m;
  for (int i = 0; i < 30; ++i) m[i] = s.substr(0, static_cast<std::size_t>(i));
  ELFC_CHECK(v[499] == 499 * seed && m[29].size() == 29, "%s: containers",
             where);
  for (int i = 0; i < 12; ++i) {
    ELFC_CHECK(CheckPattern(held[i], sizes[i], keys[i]) == SIZE_MAX,
               "%s: block %d corrupted", where, i);
    if (i == 11) {
      HandOff({held[i], sizes[i], keys[i]});  // freed later, elsewhere
    } else {
      free(held[i]);
    }
  }
  free(aligned);
}

// ---- pthread keys ----

constexpr int kEarlyKeys = 32;  // created before main; odd ones deleted again
constexpr int kMainKeys = 24;   // created in main: fill the holes, then above
pthread_key_t g_early_keys[kEarlyKeys];
pthread_key_t g_main_keys[kMainKeys];
std::vector<pthread_key_t>* g_live_keys;  // every key with a destructor, live

std::atomic<std::uint64_t> g_key_dtor_calls{0};
std::atomic<std::uint64_t> g_key_dtor_resets{0};

constexpr std::uint64_t kKeyValueMagic = 0x6b657976616c7565ULL;
struct KeyValue {
  std::uint64_t magic;
  pthread_key_t key;
  int resets_left;  // set a fresh value from the destructor this many times
};

void KeyDestructor(void* value) {
  KeyValue* kv = static_cast<KeyValue*>(value);
  ELFC_CHECK(kv->magic == kKeyValueMagic, "key destructor got a bad value %p",
             value);
  g_key_dtor_calls.fetch_add(1, std::memory_order_relaxed);
  AllocatorWorkout(0xde57 + kv->key * 31 + static_cast<unsigned>(kv->resets_left),
                   "key destructor");
  if (kv->resets_left > 0) {
    // A fresh value, allocated inside the destructor: glibc runs another
    // destructor round for it.
    KeyValue* again = static_cast<KeyValue*>(malloc(sizeof(KeyValue)));
    ELFC_CHECK(again != nullptr, "malloc in key destructor");
    *again = {kKeyValueMagic, kv->key, kv->resets_left - 1};
    ELFC_CHECK(pthread_setspecific(kv->key, again) == 0, "pthread_setspecific");
    g_key_dtor_resets.fetch_add(1, std::memory_order_relaxed);
  }
  kv->magic = 0;
  free(kv);
}

// Gives the calling thread a malloc'd value for every live key; every other
// key re-arms itself once from its destructor. Returns the number of
// destructor calls this will cause.
std::uint64_t SetAllKeys() {
  std::uint64_t calls = 0;
  int i = 0;
  for (pthread_key_t k : *g_live_keys) {
    KeyValue* kv = static_cast<KeyValue*>(malloc(sizeof(KeyValue)));
    ELFC_CHECK(kv != nullptr, "malloc");
    *kv = {kKeyValueMagic, k, i % 2};
    ELFC_CHECK(pthread_setspecific(k, kv) == 0, "pthread_setspecific");
    calls += 1 + static_cast<std::uint64_t>(i % 2);
    ++i;
  }
  return calls;
}

// ---- thread_local objects that allocate in their destructors ----

std::atomic<std::uint64_t> g_tls_dtor_calls{0};

struct TeardownProbe {
  std::uint64_t seed = 0;  // 0: never armed on this thread
  ~TeardownProbe() {
    if (seed == 0) return;
    g_tls_dtor_calls.fetch_add(1, std::memory_order_relaxed);
    AllocatorWorkout(seed, "thread_local destructor");
  }
};
thread_local TeardownProbe t_first_probe;  // touched before the first malloc
thread_local TeardownProbe t_later_probe;  // touched after allocating
// A thread_local container: its storage is freed by its destructor.
thread_local std::vector<std::string> t_strings;

// ---- Thread kinds ----

std::atomic<std::uint64_t> g_expected_key_dtor_calls{0};
std::atomic<std::uint64_t> g_expected_tls_dtor_calls{0};

void* FullThread(void* arg) {
  const std::uint64_t id = reinterpret_cast<std::uintptr_t>(arg);
  t_first_probe.seed = 0x1000 + id;  // first thing: before any malloc here
  g_expected_tls_dtor_calls.fetch_add(2, std::memory_order_relaxed);
  AllocatorWorkout(0x2000 + id, "thread body");
  g_expected_key_dtor_calls.fetch_add(SetAllKeys(), std::memory_order_relaxed);
  for (int i = 0; i < 10; ++i) t_strings.push_back(std::string(100, 'x'));
  t_later_probe.seed = 0x3000 + id;
  if (id % 2 == 0) pthread_exit(nullptr);  // unwinds; destructors run the same
  return nullptr;
}

// The thread's first allocator call happens in a key destructor, after its
// thread_local destructors already ran.
int g_sentinel_values[kEarlyKeys + kMainKeys];
std::atomic<std::uint64_t> g_late_dtor_calls{0};
pthread_key_t g_late_key;

void LateKeyDestructor(void*) {
  g_late_dtor_calls.fetch_add(1, std::memory_order_relaxed);
  AllocatorWorkout(0x4000 + g_late_dtor_calls.load(std::memory_order_relaxed),
                   "first-allocation-in-key-destructor");
}

void* TeardownOnlyThread(void*) {
  // No malloc here: a static, non-heap value.
  ELFC_CHECK(pthread_setspecific(g_late_key, &g_sentinel_values[0]) == 0,
             "pthread_setspecific");
  return nullptr;
}

// Frees blocks it did not allocate and allocates nothing itself.
void* FreeOnlyThread(void*) {
  for (int i = 0; i < 8; ++i) {
    Block b;
    if (!TakeHandOff(&b)) break;
    CheckAndFree(b, "free-only thread");
    g_handoff_freed.fetch_add(1, std::memory_order_relaxed);
  }
  pthread_exit(nullptr);
}

// ---- Process exit ----

std::atomic<bool> g_exit_started{false};
std::atomic<int> g_exit_handlers_run{0};
constexpr int kExitHandlers = 4;  // atexit x3 + static destructor

void ExitHandlerLast() {  // registered first (before main): runs last
  g_exit_started.store(true);
  AllocatorWorkout(0x5001, "last atexit handler");
  DrainHandOffs("last atexit handler");
  const int ran = g_exit_handlers_run.load() + 1;
  ELFC_CHECK(ran == kExitHandlers, "only %d of %d exit handlers ran", ran,
             kExitHandlers);
  // write(2), not stdio: stdout may already be flushed and closed for good.
  static const char kDone[] = "lifecycle: PASS exit handlers done\n";
  ssize_t ignored = write(STDOUT_FILENO, kDone, sizeof(kDone) - 1);
  (void)ignored;
}

void ExitHandlerFromMain() {
  g_exit_started.store(true);
  g_exit_handlers_run.fetch_add(1);
  AllocatorWorkout(0x5002, "atexit handler from main");
  DrainHandOffs("atexit handler from main");
}

void ExitHandlerFromThread() {
  g_exit_started.store(true);
  g_exit_handlers_run.fetch_add(1);
  AllocatorWorkout(0x5003, "atexit handler from a thread");
}

void* RegisterAtexitThread(void*) {
  ELFC_CHECK(atexit(ExitHandlerFromThread) == 0, "atexit");
  return nullptr;
}

// A static object whose destructor allocates (runs among the exit handlers,
// in reverse order of construction).
struct StaticWithDestructor {
  std::string* text = nullptr;
  StaticWithDestructor() { text = new std::string(64, 's'); }
  ~StaticWithDestructor() {
    g_exit_handlers_run.fetch_add(1);
    AllocatorWorkout(0x5004, "static destructor");
    text->append(4096, 't');
    delete text;
  }
} g_static_with_destructor;

__attribute__((destructor)) void DestructorAttribute() {
  AllocatorWorkout(0x5005, "destructor attribute");
  static const char kDone[] = "lifecycle: destructor attribute ran\n";
  ssize_t ignored = write(STDOUT_FILENO, kDone, sizeof(kDone) - 1);
  (void)ignored;
}

// Detached threads that keep allocating while the process exits. They stop
// after `iterations` rounds (the pthread_exit mode relies on that to end).
std::atomic<int> g_busy_started{0};

void* BusyAllocator(void* arg) {
  const std::uintptr_t iterations = reinterpret_cast<std::uintptr_t>(arg);
  Rng rng(0xb05e + iterations);
  g_busy_started.fetch_add(1);
  void* ring[64] = {};
  for (std::uintptr_t i = 0; i < iterations; ++i) {
    const std::size_t slot = rng.Below(64);
    free(ring[slot]);
    const std::size_t size = elfc::test::MixedSize(rng, 200 * 1024);
    ring[slot] = malloc(size);
    ELFC_CHECK(ring[slot] != nullptr, "busy malloc(%zu)", size);
    static_cast<char*>(ring[slot])[0] = 1;
    static_cast<char*>(ring[slot])[size - 1] = 2;
  }
  for (void* p : ring) free(p);
  return nullptr;
}

void StartDetached(void* (*fn)(void*), void* arg) {
  pthread_attr_t attr;
  pthread_attr_init(&attr);
  pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
  pthread_t tid;
  ELFC_CHECK(pthread_create(&tid, &attr, fn, arg) == 0, "pthread_create");
  pthread_attr_destroy(&attr);
}

void RunAndJoin(void* (*fn)(void*), int count, std::uint64_t first_id) {
  constexpr int kBatch = 16;
  pthread_t tids[kBatch];
  for (int done = 0; done < count; done += kBatch) {
    const int n = count - done < kBatch ? count - done : kBatch;
    for (int i = 0; i < n; ++i) {
      void* arg = reinterpret_cast<void*>(
          static_cast<std::uintptr_t>(first_id + static_cast<std::uint64_t>(done + i)));
      ELFC_CHECK(pthread_create(&tids[i], nullptr, fn, arg) == 0,
                 "pthread_create");
    }
    for (int i = 0; i < n; ++i) pthread_join(tids[i], nullptr);
    // Keep room for the next batch (ELFC_STRESS_SCALE runs hand off more).
    if (HandOffCount() > kHandoffCapacity / 2) DrainHandOffs("main");
  }
}

__attribute__((constructor(101))) void EarlyInit() {
  // Earliest point in this executable: the last exit handler, and keys
  // created before the program has started any thread.
  atexit(ExitHandlerLast);
  for (int i = 0; i < kEarlyKeys; ++i) {
    ELFC_CHECK(pthread_key_create(&g_early_keys[i], KeyDestructor) == 0,
               "pthread_key_create");
  }
  // Leave holes: keys created later take these low indexes back.
  for (int i = 1; i < kEarlyKeys; i += 2) pthread_key_delete(g_early_keys[i]);
}

}  // namespace

int main(int argc, char** argv) {
  elfc::test::CheckPreload("lifecycle");
  const int scale = elfc::test::StressScale();
  elfc::test::StartWatchdog(120u * static_cast<unsigned>(scale), "lifecycle");
  bool main_pthread_exit = false;
  for (int i = 1; i < argc; ++i) {
    if (strcmp(argv[i], "--main_exit=pthread_exit") == 0) {
      main_pthread_exit = true;
    } else if (strcmp(argv[i], "--main_exit=return") != 0) {
      Log("lifecycle: unknown argument %s", argv[i]);
      return 2;
    }
  }
  // The main thread's own thread_local destructors run at exit() (before
  // the atexit handlers) or at pthread_exit.
  t_first_probe.seed = 0x6001;

  g_live_keys = new std::vector<pthread_key_t>;
  for (int i = 0; i < kEarlyKeys; i += 2) g_live_keys->push_back(g_early_keys[i]);
  for (int i = 0; i < kMainKeys; ++i) {
    ELFC_CHECK(pthread_key_create(&g_main_keys[i], KeyDestructor) == 0,
               "pthread_key_create");
    g_live_keys->push_back(g_main_keys[i]);
  }
  ELFC_CHECK(pthread_key_create(&g_late_key, LateKeyDestructor) == 0,
             "pthread_key_create");
  {
    std::string indexes;
    for (pthread_key_t k : *g_live_keys) indexes += std::to_string(k) + " ";
    Log("lifecycle: user key indexes %s(late key %u)", indexes.c_str(),
        static_cast<unsigned>(g_late_key));
  }
  ELFC_CHECK(atexit(ExitHandlerFromMain) == 0, "atexit");
  RunAndJoin(RegisterAtexitThread, 1, 0);

  // 1. Threads that allocate in key and thread_local destructors.
  const int full_threads = 200 * scale;
  RunAndJoin(FullThread, full_threads, 0);
  ELFC_CHECK(g_key_dtor_calls.load() == g_expected_key_dtor_calls.load(),
             "key destructors ran %llu times, expected %llu",
             static_cast<unsigned long long>(g_key_dtor_calls.load()),
             static_cast<unsigned long long>(g_expected_key_dtor_calls.load()));
  ELFC_CHECK(g_tls_dtor_calls.load() == g_expected_tls_dtor_calls.load(),
             "thread_local destructors ran %llu times, expected %llu",
             static_cast<unsigned long long>(g_tls_dtor_calls.load()),
             static_cast<unsigned long long>(g_expected_tls_dtor_calls.load()));
  Log("lifecycle: %d threads: %llu key destructor calls (%llu re-armed), "
      "%llu thread_local destructor calls, %d blocks handed off",
      full_threads, static_cast<unsigned long long>(g_key_dtor_calls.load()),
      static_cast<unsigned long long>(g_key_dtor_resets.load()),
      static_cast<unsigned long long>(g_tls_dtor_calls.load()),
      HandOffCount());

  // 2. Threads that only free what the dead threads left behind.
  RunAndJoin(FreeOnlyThread, 64, 0);
  DrainHandOffs("main");

  // 3. Threads whose first allocation is in a key destructor at teardown,
  // many of them, with a bound on resident memory.
  const int late_threads = 1000 * scale;
  RunAndJoin(TeardownOnlyThread, late_threads / 10, 0);
  DrainHandOffs("main");
  const std::size_t rss_warm = elfc::test::ResidentBytes();
  RunAndJoin(TeardownOnlyThread, late_threads - late_threads / 10, 0);
  DrainHandOffs("main");
  const std::size_t rss_after = elfc::test::ResidentBytes();
  ELFC_CHECK(g_late_dtor_calls.load() == static_cast<std::uint64_t>(late_threads),
             "late key destructor ran %llu times for %d threads",
             static_cast<unsigned long long>(g_late_dtor_calls.load()),
             late_threads);
  const std::size_t bound = 2 * rss_warm + (std::size_t{8} << 20);
  ELFC_CHECK(rss_after <= bound,
             "%d threads that allocate only in a key destructor grew resident "
             "memory from %zu KiB (after %d) to %zu KiB (bound %zu KiB): "
             "state created during thread teardown is leaked?",
             late_threads, rss_warm >> 10, late_threads / 10, rss_after >> 10,
             bound >> 10);
  Log("lifecycle: %d teardown-only threads, rss %zu KiB -> %zu KiB",
      late_threads, rss_warm >> 10, rss_after >> 10);
  ELFC_CHECK(g_handoff_dropped.load() == 0, "handoff overflowed");

  // 4. Exit while other threads allocate.
  for (int i = 0; i < 2; ++i) {
    StartDetached(BusyAllocator,
                  reinterpret_cast<void*>(static_cast<std::uintptr_t>(
                      main_pthread_exit ? 20000 * scale : 1000000000)));
  }
  // Blocks that the exit handlers free, allocated by a thread that is gone.
  RunAndJoin(
      [](void*) -> void* {
        AllocatorWorkout(0x7001, "pre-exit thread");
        return nullptr;
      },
      4, 0);
  while (g_busy_started.load() < 2) sched_yield();
  printf("lifecycle: main done (%s)\n",
         main_pthread_exit ? "pthread_exit" : "return");
  fflush(stdout);
  if (main_pthread_exit) pthread_exit(nullptr);
  return 0;
}
