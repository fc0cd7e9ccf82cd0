// elfc/exhaustion.cc: running out of memory (run under LD_PRELOAD=libelfc.so
// by //elfc:exhaustion_test; a plain C++ program, it runs on any malloc).
//
// A malloc that runs out of address space must say so: NULL with errno
// ENOMEM from the C functions, std::bad_alloc from operator new, nullptr
// from its nothrow forms. It must not crash, abort, hang or corrupt the
// blocks it already handed out, and once memory is freed it must be able to
// allocate again (nothing leaked or wedged on the failure paths).
//
// The program caps its own address space with RLIMIT_AS at what it uses
// after start-up plus --headroom_mb (default 192 MiB), so "out of memory"
// comes quickly and without touching the machine's real memory. Worker
// threads (started before the cap, so their stacks exist) then, in each of
// --rounds rounds (default 4):
//   1. allocate until the first failure, concurrently, each in its own
//      sequence of step sizes, every sequence ending in small steps:
//        large (1 .. 8 MiB malloc) -> medium (64 KiB .. 1 MiB) -> small;
//        aligned (posix_memalign, 4 KiB .. 2 MiB alignment) -> small;
//        medium (calloc) -> small;
//        small only (1 .. 256 B, malloc and operator new);
//      every failure must be NULL + ENOMEM (posix_memalign: ENOMEM
//      returned, *memptr untouched; operator new: std::bad_alloc). Blocks are
//      chained through their first word, so the bookkeeping needs no memory;
//   2. at exhaustion, call every entry point with a request bigger than the
//      headroom (malloc, calloc both ways, realloc of a live block, which
//      must stay intact, reallocarray, posix_memalign, aligned_alloc,
//      memalign, valloc, pvalloc, operator new / new[] / aligned new, their
//      nothrow forms, a growing std::vector): all must fail properly;
//   3. check every block's tag and free all of them, each thread freeing its
//      neighbour's chain (remote frees at exhaustion);
// and the main thread checks that memory freed after running out is usable
// again: every round obtains at least 1/8 of the headroom, and at the end
// (everything freed, malloc_trim) 4 MiB blocks can be allocated again.
//
// --strict_reuse asks for more: the workers take turns (one allocation
// each, round-robin, see Rotation), so every round asks in the same
// interleaving, and every round must obtain at least 3/4 of what round 1
// did; at the end half the headroom comes back as 4 MiB blocks. The
// posix_memalign steps then use alignments up to 256 KiB only: a large
// block aligned to 1 MiB or more costs its alignment in address space on
// elfc (its header takes a whole alignment unit, up to 2 MiB for a block
// of a few KiB), and one aligned to 512 KiB has only three places in a
// packed unit. What the strict criterion checks is that
// memory freed after running out is available again, to any thread: a
// thread's claimed slabs and cached blocks are given back when a mapping
// fails (the threads that hit the limit drain their own at once, the
// others at their next slow path), so nothing stays pinned by a thread
// that no longer needs it. glibc passes as well (it gets all 191 MiB of
// the headroom every round; elfc 115-130 MiB, its size classes, slab pages
// and alignment costing address space).
// A watchdog turns a hang into a failure.
//
// Usage: exhaustion [--headroom_mb=N] [--rounds=N] [--threads=N]
//                   [--strict_reuse]
#include <errno.h>
#include <malloc.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <new>
#include <vector>

#include "elfc/preload_test_util.h"

namespace {

using elfc::test::Log;
using elfc::test::Rng;
using elfc::test::VirtualBytes;

constexpr std::size_t kKiB = 1024;
constexpr std::size_t kMiB = 1024 * kKiB;
constexpr int kSentinel = 0x4558;  // no E* constant has this value
constexpr int kMaxThreads = 8;

std::size_t g_headroom = 192 * kMiB;
int g_rounds = 4;
int g_threads = 4;
bool g_strict_reuse = false;

// A block in a thread's chain: its first words link to the previous block
// and tag it (the tag is checked before the block is freed).
struct Link {
  Link* prev;
  std::uint64_t tag;
  std::uint8_t how;  // how to free it
};
constexpr std::size_t kMinBlock = sizeof(Link);

enum How : std::uint8_t { kFree, kDelete, kDeleteArray };

// realloc / reallocarray through pointers the compiler cannot see through:
// GCC's -Wuse-after-free cannot know that a FAILED realloc leaves its
// argument alive, which is exactly what this program checks.
void* (*volatile g_realloc)(void*, std::size_t) = &realloc;
void* (*volatile g_reallocarray)(void*, std::size_t, std::size_t) =
    &reallocarray;

// Where results of must-fail new-expressions go (see CheckEverythingFails).
void* volatile g_sink = nullptr;

std::uint64_t Tag(const void* p) {
  return reinterpret_cast<std::uintptr_t>(p) * 0x9e3779b97f4a7c15ULL ^ 0x7a67;
}

// ------------------------------------------------------ a reusable barrier

class Barrier {
 public:
  void Init(int n) { n_ = n; }
  void Wait() {
    const int gen = gen_.load(std::memory_order_acquire);
    if (arrived_.fetch_add(1, std::memory_order_acq_rel) + 1 == n_) {
      arrived_.store(0, std::memory_order_relaxed);
      gen_.fetch_add(1, std::memory_order_acq_rel);
      return;
    }
    while (gen_.load(std::memory_order_acquire) == gen) sched_yield();
  }

 private:
  int n_ = 0;
  std::atomic<int> arrived_{0};
  std::atomic<int> gen_{0};
};

Barrier g_barrier;

// With --strict_reuse the workers allocate in turns, one allocation each,
// round-robin among those still allocating: every round then asks for its
// blocks in the same interleaving, so what a round obtains depends on how
// much of the freed memory comes back, not on which thread won the race
// for the last of it (concurrently, a round that the aligned thread wins
// gets about half of one that the 1-8 MiB thread wins, on any allocator
// whose aligned blocks cost more address space than their size).
class Rotation {
 public:
  // Before a round (no worker is allocating): everyone takes part.
  void Reset(int n) {
    n_ = n;
    active_.store((1u << n) - 1, std::memory_order_relaxed);
    turn_.store(0, std::memory_order_release);
  }
  void Take(int id) {
    while (turn_.load(std::memory_order_acquire) != id) sched_yield();
  }
  // After Take: the turn goes to the next worker still taking part (leave:
  // this one no longer does).
  void Pass(int id, bool leave) {
    unsigned active = active_.load(std::memory_order_relaxed);
    if (leave) {
      active &= ~(1u << id);
      active_.store(active, std::memory_order_relaxed);
    }
    int next = -1;
    for (int k = 1; k <= n_; ++k) {
      const int j = (id + k) % n_;
      if ((active >> j) & 1) {
        next = j;
        break;
      }
    }
    turn_.store(next, std::memory_order_release);
  }

 private:
  int n_ = 0;
  std::atomic<unsigned> active_{0};  // written only by the turn's holder
  std::atomic<int> turn_{-1};
};

Rotation g_rotation;

struct Worker {
  int id = 0;
  pthread_t tid{};
  Link* chain = nullptr;       // blocks this thread allocated this round
  std::size_t bytes = 0;       // requested bytes this round
  std::size_t blocks = 0;
  std::size_t failures = 0;    // failures seen (all proper)
};
Worker g_workers[kMaxThreads];
std::atomic<std::size_t> g_round_bytes{0};

// Records a successful allocation of n bytes at p.
void Keep(Worker& w, void* p, std::size_t n, How how) {
  Link* l = static_cast<Link*>(p);
  l->prev = w.chain;
  l->tag = Tag(p);
  l->how = how;
  w.chain = l;
  w.bytes += n;
  ++w.blocks;
}

// ---------------------------------------------------------- the step kinds

enum class Step { kLarge, kMedium, kSmall, kAligned, kCalloc, kTiny };

const char* StepName(Step s) {
  switch (s) {
    case Step::kLarge:
      return "large malloc";
    case Step::kMedium:
      return "medium malloc";
    case Step::kSmall:
      return "small malloc";
    case Step::kAligned:
      return "posix_memalign";
    case Step::kCalloc:
      return "calloc";
    case Step::kTiny:
      return "tiny malloc / operator new";
  }
  return "?";
}

// One allocation of kind s; false when it failed (after checking that the
// failure was a proper one).
bool AllocateOne(Worker& w, Step s, Rng& rng) {
  errno = kSentinel;
  switch (s) {
    case Step::kLarge:
    case Step::kMedium:
    case Step::kSmall: {
      std::size_t n = s == Step::kLarge    ? rng.LogUniform(kMiB, 8 * kMiB)
                      : s == Step::kMedium ? rng.LogUniform(64 * kKiB, kMiB)
                                           : rng.LogUniform(kMinBlock, 2 * kKiB);
      void* p = malloc(n);
      const int e = errno;
      if (p == nullptr) {
        ELFC_CHECK(e == ENOMEM, "thread %d: %s(%zu) failed with errno %d, not "
                   "ENOMEM", w.id, StepName(s), n, e);
        return false;
      }
      Keep(w, p, n, kFree);
      return true;
    }
    case Step::kAligned: {
      // .. 2 MiB; .. 256 KiB with --strict_reuse (see there).
      const std::size_t align =
          std::size_t{4096} << rng.Below(g_strict_reuse ? 7 : 10);
      const std::size_t n = rng.LogUniform(kMinBlock, 2 * kMiB);
      void* p = reinterpret_cast<void*>(std::uintptr_t{0x5a5a5a50});
      const int rc = posix_memalign(&p, align, n);
      if (rc != 0) {
        ELFC_CHECK(rc == ENOMEM, "posix_memalign(%zu, %zu) = %d, not ENOMEM",
                   align, n, rc);
        ELFC_CHECK(p == reinterpret_cast<void*>(std::uintptr_t{0x5a5a5a50}),
                   "failed posix_memalign wrote *memptr = %p", p);
        return false;
      }
      ELFC_CHECK(reinterpret_cast<std::uintptr_t>(p) % align == 0,
                 "posix_memalign(%zu) = %p misaligned", align, p);
      Keep(w, p, n, kFree);
      return true;
    }
    case Step::kCalloc: {
      const std::size_t m = rng.LogUniform(16 * kKiB, 512 * kKiB);
      const std::size_t k = 1 + rng.Below(4);
      void* p = calloc(k, m);
      const int e = errno;
      if (p == nullptr) {
        ELFC_CHECK(e == ENOMEM, "calloc(%zu, %zu) failed with errno %d", k, m,
                   e);
        return false;
      }
      const unsigned char* c = static_cast<const unsigned char*>(p);
      ELFC_CHECK(c[0] == 0 && c[k * m - 1] == 0, "calloc memory not zero");
      Keep(w, p, k * m, kFree);
      return true;
    }
    case Step::kTiny: {
      const std::size_t n = rng.LogUniform(kMinBlock, 256);
      if (rng.Below(2) == 0) {
        void* p = malloc(n);
        const int e = errno;
        if (p == nullptr) {
          ELFC_CHECK(e == ENOMEM, "malloc(%zu) failed with errno %d", n, e);
          return false;
        }
        Keep(w, p, n, kFree);
        return true;
      }
      const bool array = rng.Below(2) == 0;
      void* p;
      try {
        p = array ? static_cast<void*>(new unsigned char[n])
                  : ::operator new(n);
      } catch (const std::bad_alloc&) {
        return false;  // the proper failure of operator new
      }
      Keep(w, p, n, array ? kDeleteArray : kDelete);
      return true;
    }
  }
  return false;
}

// Requests bigger than all the memory left must all fail, properly, from
// every entry point; a live block given to realloc must survive.
void CheckEverythingFails(Worker& w) {
  const std::size_t big = g_headroom + 64 * kMiB;
  auto expect_null = [&](void* p, const char* what) {
    const int e = errno;
    ELFC_CHECK(p == nullptr, "thread %d: %s(%zu) succeeded at exhaustion",
               w.id, what, big);
    ELFC_CHECK(e == ENOMEM, "thread %d: %s(%zu) failed with errno %d, not "
               "ENOMEM", w.id, what, big, e);
    ++w.failures;
  };
  errno = kSentinel;
  expect_null(malloc(big), "malloc");
  errno = kSentinel;
  expect_null(calloc(big / 16, 16), "calloc(n, 16)");
  errno = kSentinel;
  expect_null(calloc(16, big / 16), "calloc(16, n)");
  errno = kSentinel;
  expect_null(aligned_alloc(4096, big), "aligned_alloc");
  errno = kSentinel;
  expect_null(memalign(64, big), "memalign");
  errno = kSentinel;
  expect_null(valloc(big), "valloc");
  errno = kSentinel;
  expect_null(pvalloc(big), "pvalloc");
  void* p = reinterpret_cast<void*>(std::uintptr_t{0x5a5a5a50});
  ELFC_CHECK(posix_memalign(&p, 64, big) == ENOMEM,
             "posix_memalign at exhaustion did not return ENOMEM");
  ELFC_CHECK(p == reinterpret_cast<void*>(std::uintptr_t{0x5a5a5a50}),
             "failed posix_memalign wrote *memptr");
  if (w.chain != nullptr) {
    Link* l = w.chain;
    if (l->how == kFree) {
      errno = kSentinel;
      expect_null(g_realloc(l, big), "realloc");
      ELFC_CHECK(l->tag == Tag(l), "a failed realloc damaged its block");
      errno = kSentinel;
      expect_null(g_reallocarray(l, big / 8, 8), "reallocarray");
      ELFC_CHECK(l->tag == Tag(l), "a failed reallocarray damaged its block");
    }
  }
  const auto expect_throw = [&](auto&& f, const char* what) {
    bool threw = false;
    try {
      f();
    } catch (const std::bad_alloc&) {
      threw = true;
    }
    ELFC_CHECK(threw, "thread %d: %s at exhaustion did not throw bad_alloc",
               w.id, what);
    ++w.failures;
  };
  // Results go to a volatile sink: the compiler may elide a new-expression
  // whose result is unused (and then nothing would throw).
  expect_throw([&] { g_sink = ::operator new(big); }, "operator new");
  expect_throw([&] { g_sink = new unsigned char[big]; }, "new[]");
  expect_throw([&] { g_sink = ::operator new(big, std::align_val_t{4096}); },
               "aligned operator new");
  expect_throw(
      [&] {
        std::vector<unsigned char> v;
        v.reserve(big);
        g_sink = v.data();
      },
      "std::vector::reserve");
  ELFC_CHECK(::operator new(big, std::nothrow) == nullptr,
             "operator new(nothrow) succeeded at exhaustion");
  ELFC_CHECK(::operator new(big, std::align_val_t{64}, std::nothrow) == nullptr,
             "aligned operator new(nothrow) succeeded at exhaustion");
  w.failures += 2;
}

void FreeChain(Link* l, int owner) {
  while (l != nullptr) {
    Link* prev = l->prev;
    ELFC_CHECK(l->tag == Tag(l), "block %p of thread %d's chain was damaged "
               "(tag %llx)", static_cast<void*>(l), owner,
               static_cast<unsigned long long>(l->tag));
    switch (l->how) {
      case kFree:
        free(l);
        break;
      case kDelete:
        ::operator delete(l);
        break;
      case kDeleteArray:
        delete[] reinterpret_cast<unsigned char*>(l);
        break;
    }
    l = prev;
  }
}

void* WorkerMain(void* arg) {
  Worker& w = *static_cast<Worker*>(arg);
  // The thread's allocator state exists before the cap.
  free(malloc(64));
  g_barrier.Wait();  // start-up done; main sets the cap
  g_barrier.Wait();  // cap set
  static const Step kSequences[][3] = {
      {Step::kLarge, Step::kMedium, Step::kSmall},
      {Step::kAligned, Step::kSmall, Step::kSmall},
      {Step::kCalloc, Step::kSmall, Step::kSmall},
      {Step::kTiny, Step::kTiny, Step::kTiny},
  };
  const Step* seq = kSequences[w.id % 4];
  for (int round = 0; round < g_rounds; ++round) {
    Rng rng(0xe4a0000ULL + static_cast<std::uint64_t>(w.id) * 131 +
            static_cast<std::uint64_t>(round));
    w.chain = nullptr;
    w.bytes = 0;
    w.blocks = 0;
    for (int i = 0; i < 3; ++i) {
      // Until the first failure, then a few more tries (others may have
      // freed nothing, but caches of this thread may still serve some).
      int failures = 0;
      while (failures < 3) {
        if (g_strict_reuse) g_rotation.Take(w.id);
        const bool ok = AllocateOne(w, seq[i], rng);
        if (!ok) {
          ++failures;
          ++w.failures;
        }
        if (g_strict_reuse) g_rotation.Pass(w.id, i == 2 && failures == 3);
      }
    }
    CheckEverythingFails(w);
    g_round_bytes.fetch_add(w.bytes);
    g_barrier.Wait();  // everyone is exhausted
    g_barrier.Wait();  // main has looked at the totals
    // Free the neighbour's chain (remote frees at exhaustion).
    const int victim = (w.id + 1) % g_threads;
    FreeChain(g_workers[victim].chain, victim);
    g_barrier.Wait();  // everything is freed
    g_barrier.Wait();  // main is ready for the next round
  }
  return nullptr;
}

}  // namespace

int main(int argc, char** argv) {
  elfc::test::CheckPreload("exhaustion");
  for (int i = 1; i < argc; ++i) {
    if (strncmp(argv[i], "--headroom_mb=", 14) == 0) {
      g_headroom = strtoull(argv[i] + 14, nullptr, 10) * kMiB;
    } else if (strncmp(argv[i], "--rounds=", 9) == 0) {
      g_rounds = atoi(argv[i] + 9);
    } else if (strncmp(argv[i], "--threads=", 10) == 0) {
      g_threads = atoi(argv[i] + 10);
    } else if (strcmp(argv[i], "--strict_reuse") == 0) {
      g_strict_reuse = true;
    }
  }
  ELFC_CHECK(g_threads >= 1 && g_threads <= kMaxThreads && g_rounds >= 1 &&
                 g_headroom >= 32 * kMiB,
             "bad arguments");
  elfc::test::StartWatchdog(120, "exhaustion");
  g_barrier.Init(g_threads + 1);
  for (int i = 0; i < g_threads; ++i) {
    g_workers[i].id = i;
    ELFC_CHECK(pthread_create(&g_workers[i].tid, nullptr, WorkerMain,
                              &g_workers[i]) == 0,
               "pthread_create");
  }
  g_barrier.Wait();  // every worker has allocated once
  const std::size_t base = VirtualBytes();
  struct rlimit rl;
  rl.rlim_cur = rl.rlim_max = base + g_headroom;
  ELFC_CHECK(setrlimit(RLIMIT_AS, &rl) == 0, "setrlimit(RLIMIT_AS)");
  Log("exhaustion: address space %zu MiB, capped at %zu MiB (headroom %zu "
      "MiB), %d threads, %d rounds",
      base / kMiB, (base + g_headroom) / kMiB, g_headroom / kMiB, g_threads,
      g_rounds);
  g_rotation.Reset(g_threads);
  g_barrier.Wait();  // go
  std::size_t first = 0;
  for (int round = 0; round < g_rounds; ++round) {
    g_barrier.Wait();  // all exhausted
    const std::size_t got = g_round_bytes.exchange(0);
    std::size_t blocks = 0, failures = 0;
    for (int i = 0; i < g_threads; ++i) {
      blocks += g_workers[i].blocks;
      failures += g_workers[i].failures;
    }
    Log("exhaustion: round %d: %zu MiB in %zu blocks before running out; "
        "%zu proper failures so far; address space %zu MiB",
        round + 1, got / kMiB, blocks, failures, VirtualBytes() / kMiB);
    if (round == 0) first = got;
    ELFC_CHECK(!g_strict_reuse || got >= first / 4 * 3,
               "round %d obtained %zu bytes, less than 3/4 of round 1's %zu: "
               "memory freed after running out is not fully usable again",
               round + 1, got, first);
    ELFC_CHECK(got >= g_headroom / 8,
               "round %d obtained only %zu of %zu bytes of headroom: memory "
               "freed after running out is not usable again",
               round + 1, got, g_headroom);
    g_barrier.Wait();
    g_barrier.Wait();  // all freed
    g_rotation.Reset(g_threads);
    g_barrier.Wait();
  }
  for (int i = 0; i < g_threads; ++i) pthread_join(g_workers[i].tid, nullptr);
  // Half the headroom in 4 MiB blocks, after everything was freed and
  // malloc_trim. (Not in one block: glibc keeps its per-thread arenas'
  // 64 MiB reservations, so the address space left is not contiguous
  // enough for that under the cap, and the program must pass on glibc.)
  malloc_trim(0);
  Link* chain = nullptr;
  const std::size_t want = g_strict_reuse ? g_headroom / 2 : g_headroom / 8;
  std::size_t got = 0;
  for (;; got += 4 * kMiB) {
    Link* l = static_cast<Link*>(malloc(4 * kMiB));
    if (l == nullptr) break;
    l->prev = chain;
    chain = l;
  }
  Log("exhaustion: after freeing everything and malloc_trim: %zu MiB in "
      "4 MiB blocks", got / kMiB);
  ELFC_CHECK(got >= want, "after freeing everything only %zu MiB could be "
             "allocated again in 4 MiB blocks (want %zu MiB)", got / kMiB,
             want / kMiB);
  while (chain != nullptr) {
    Link* prev = chain->prev;
    free(chain);
    chain = prev;
  }
  printf("exhaustion: PASS %d rounds of %d threads running out of memory; "
         "every failure was proper, memory was reusable every time%s\n",
         g_rounds, g_threads, g_strict_reuse ? " (strict reuse)" : "");
  return 0;
}
