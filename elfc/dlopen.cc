// elfc/dlopen.cc: libelfc.so loaded with dlopen() into a running program
// whose malloc stays glibc's (run by //elfc:dlopen_test and
// //elfc:dlopen_dlclose_test; no LD_PRELOAD).
//
// Some programs (language runtimes, plugins, benchmark harnesses like
// info/'s) load an allocator after start-up and call it through dlsym. Then
// the allocator initialises late (threads already exist, dynamic TLS instead
// of the static TLS block an LD_PRELOADed library gets: a library built
// with initial-exec TLS can fail to load here with "cannot allocate memory
// in static TLS block"), and two heaps live side by side: blocks from one
// must be freed by the same one, and neither may disturb the other.
//
// The program, with the library path as its argument:
//   * allocates glibc blocks and starts a thread before loading;
//   * dlopen(RTLD_NOW | RTLD_LOCAL) and resolves the allocation API with
//     dlsym(handle, ...); each symbol must come from that file, and the
//     process's malloc must still be glibc's (RTLD_LOCAL);
//   * allocates through the library's functions (all sizes, calloc,
//     realloc grow/shrink, posix_memalign, aligned_alloc,
//     malloc_usable_size, operator new/delete), interleaved with glibc
//     allocations, checking patterns; frees each block with its own heap;
//   * uses the library from several threads, including the one started
//     before dlopen, with blocks freed by other threads, and lets the
//     threads exit (the library's thread-exit path in dynamic TLS).
// With --dlclose it then frees everything, dlclose()s the library while a
// thread that used it is still alive, and lets that thread exit afterwards,
// then starts and ends another thread and exits the process normally. If
// the library registered a thread-exit hook (a pthread key destructor) and
// let itself be unmapped, that thread's exit jumps into unmapped memory.
// (A library that must survive dlclose links with -z nodelete; the program
// reports whether the library stayed mapped.)
//
// Usage: dlopen LIBRARY [--dlclose] [--no_operator_new]
//   --no_operator_new skips the library's operator new/delete: for peers
//   whose operator delete calls `free` through the PLT, which under
//   RTLD_LOCAL binds to glibc's free (jemalloc 5.3 does; elfc must not).
#include <dlfcn.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <atomic>
#include <condition_variable>
#include <cstddef>
#include <cstdint>
#include <mutex>

#include "elfc/preload_test_util.h"

namespace {

using elfc::test::CheckPattern;
using elfc::test::FillPattern;
using elfc::test::Log;
using elfc::test::PatternKey;
using elfc::test::Rng;

using MallocFn = void* (*)(std::size_t);
using FreeFn = void (*)(void*);
using CallocFn = void* (*)(std::size_t, std::size_t);
using ReallocFn = void* (*)(void*, std::size_t);
using PosixMemalignFn = int (*)(void**, std::size_t, std::size_t);
using AlignedAllocFn = void* (*)(std::size_t, std::size_t);
using UsableSizeFn = std::size_t (*)(void*);
using NewFn = void* (*)(std::size_t);
using DeleteFn = void (*)(void*);

// The library's allocation API (null where it does not export a function).
struct LibApi {
  MallocFn malloc_fn;
  FreeFn free_fn;
  CallocFn calloc_fn;
  ReallocFn realloc_fn;
  PosixMemalignFn posix_memalign_fn;
  AlignedAllocFn aligned_alloc_fn;
  UsableSizeFn usable_size_fn;
  NewFn new_fn;
  DeleteFn delete_fn;
};
LibApi g_lib;
char g_lib_path[4096];

void* Resolve(void* handle, const char* name, bool required) {
  dlerror();
  void* sym = dlsym(handle, name);
  if (sym == nullptr) {
    ELFC_CHECK(!required, "dlsym(%s) failed: %s", name, dlerror());
    Log("dlopen: library does not export %s", name);
    return nullptr;
  }
  Dl_info info;
  ELFC_CHECK(dladdr(sym, &info) != 0 && info.dli_fname != nullptr,
             "dladdr(%s)", name);
  char real[4096];
  ELFC_CHECK(realpath(info.dli_fname, real) != nullptr, "realpath(%s)",
             info.dli_fname);
  ELFC_CHECK(strcmp(real, g_lib_path) == 0,
             "dlsym(handle, %s) resolved to %s, not to the library %s", name,
             real, g_lib_path);
  ELFC_CHECK(sym != dlsym(RTLD_DEFAULT, name),
             "%s from the library is the process's own", name);
  return sym;
}

struct Block {
  void* p = nullptr;
  std::size_t size = 0;
  std::uint64_t key = 0;
  bool from_lib = false;
  bool from_new = false;
};

void Check(const Block& b, const char* where) {
  const std::size_t bad = CheckPattern(b.p, b.size, b.key);
  ELFC_CHECK(bad == SIZE_MAX, "%s: %s block %p of %zu bytes corrupted at %zu",
             where, b.from_lib ? "library" : "glibc", b.p, b.size, bad);
}

Block LibAllocate(Rng& rng) {
  Block b;
  b.from_lib = true;
  b.size = elfc::test::MixedSize(rng, 600 * 1024);
  switch (rng.Below(5)) {
    case 0:
      b.p = g_lib.calloc_fn(1, b.size);
      ELFC_CHECK(b.p != nullptr, "library calloc(%zu)", b.size);
      for (std::size_t i = 0; i < b.size; ++i) {
        ELFC_CHECK(static_cast<unsigned char*>(b.p)[i] == 0,
                   "library calloc(%zu) byte %zu not zero", b.size, i);
      }
      break;
    case 1:
      if (g_lib.posix_memalign_fn != nullptr) {
        const std::size_t align = std::size_t{16} << rng.Below(8);
        ELFC_CHECK(g_lib.posix_memalign_fn(&b.p, align, b.size) == 0,
                   "library posix_memalign(%zu, %zu)", align, b.size);
        ELFC_CHECK(reinterpret_cast<std::uintptr_t>(b.p) % align == 0,
                   "library posix_memalign alignment");
        break;
      }
      [[fallthrough]];
    case 2:
      if (g_lib.new_fn != nullptr && g_lib.delete_fn != nullptr) {
        b.p = g_lib.new_fn(b.size);
        b.from_new = true;
        break;
      }
      [[fallthrough]];
    default:
      b.p = g_lib.malloc_fn(b.size);
      break;
  }
  ELFC_CHECK(b.p != nullptr, "library allocation of %zu bytes", b.size);
  if (!b.from_new && g_lib.usable_size_fn != nullptr) {
    ELFC_CHECK(g_lib.usable_size_fn(b.p) >= b.size,
               "library malloc_usable_size %zu < %zu", g_lib.usable_size_fn(b.p),
               b.size);
  }
  b.key = PatternKey(b.p, rng.Next());
  FillPattern(b.p, b.size, b.key);
  return b;
}

Block GlibcAllocate(Rng& rng) {
  Block b;
  b.size = elfc::test::MixedSize(rng, 600 * 1024);
  b.p = malloc(b.size);
  ELFC_CHECK(b.p != nullptr, "glibc malloc(%zu)", b.size);
  b.key = PatternKey(b.p, rng.Next());
  FillPattern(b.p, b.size, b.key);
  return b;
}

// Library blocks get a realloc (grow or shrink) now and then.
void MaybeRealloc(Rng& rng, Block& b) {
  if (!b.from_lib || b.from_new || rng.Below(4) != 0) return;
  const std::size_t next =
      rng.Below(2) == 0 ? 1 + rng.Below(b.size) : b.size * 2 + rng.Below(5000);
  void* q = g_lib.realloc_fn(b.p, next);
  ELFC_CHECK(q != nullptr, "library realloc to %zu", next);
  const std::size_t keep = next < b.size ? next : b.size;
  ELFC_CHECK(CheckPattern(q, keep, b.key) == SIZE_MAX,
             "library realloc %zu -> %zu lost contents", b.size, next);
  b.p = q;
  b.size = next;
  b.key = PatternKey(q, rng.Next());
  FillPattern(q, next, b.key);
}

void Release(Block& b, const char* where) {
  if (b.p == nullptr) return;
  Check(b, where);
  if (!b.from_lib) {
    free(b.p);
  } else if (b.from_new) {
    g_lib.delete_fn(b.p);
  } else {
    g_lib.free_fn(b.p);
  }
  b.p = nullptr;
}

// Blocks passed between threads, so the library frees blocks on threads
// other than the allocating one.
constexpr int kShared = 256;
std::mutex g_shared_mu;
Block g_shared[kShared];

void SwapShared(Rng& rng, Block& mine) {
  std::lock_guard<std::mutex> lock(g_shared_mu);
  Block& slot = g_shared[rng.Below(kShared)];
  Block t = slot;
  slot = mine;
  mine = t;
}

void Workout(std::uint64_t seed, int ops) {
  Rng rng(seed);
  Block local[32];
  for (int i = 0; i < ops; ++i) {
    Block& b = local[rng.Below(32)];
    Release(b, "workout");
    b = rng.Below(3) == 0 ? GlibcAllocate(rng) : LibAllocate(rng);
    MaybeRealloc(rng, b);
    if (rng.Below(4) == 0) SwapShared(rng, b);
  }
  for (Block& b : local) Release(b, "workout end");
}

void* WorkoutThread(void* arg) {
  Workout(reinterpret_cast<std::uintptr_t>(arg), 4000);
  return nullptr;
}

// A thread that exists before dlopen, then uses the library when told, then
// waits until told to exit.
std::mutex g_gate_mu;
std::condition_variable g_gate_cv;
int g_gate = 0;  // 1: use the library; 2: exit
std::atomic<bool> g_early_used{false};

void WaitGate(int at_least) {
  std::unique_lock<std::mutex> lock(g_gate_mu);
  g_gate_cv.wait(lock, [&] { return g_gate >= at_least; });
}
void OpenGate(int value) {
  std::lock_guard<std::mutex> lock(g_gate_mu);
  g_gate = value;
  g_gate_cv.notify_all();
}

void* EarlyThread(void*) {
  WaitGate(1);
  Workout(0xea41, 2000);
  g_early_used.store(true);
  WaitGate(2);
  return nullptr;  // with --dlclose: after the library was closed
}

}  // namespace

int main(int argc, char** argv) {
  elfc::test::CheckPreload("dlopen");
  elfc::test::StartWatchdog(
      120u * static_cast<unsigned>(elfc::test::StressScale()), "dlopen");
  ELFC_CHECK(argc >= 2, "usage: dlopen LIBRARY [--dlclose] [--no_operator_new]");
  bool do_dlclose = false;
  bool operator_new = true;
  for (int i = 2; i < argc; ++i) {
    if (strcmp(argv[i], "--dlclose") == 0) {
      do_dlclose = true;
    } else if (strcmp(argv[i], "--no_operator_new") == 0) {
      operator_new = false;
    } else {
      ELFC_CHECK(false, "unknown argument %s", argv[i]);
    }
  }
  ELFC_CHECK(realpath(argv[1], g_lib_path) != nullptr, "realpath(%s)", argv[1]);

  Rng rng(0xd10be);
  Block before[64];
  for (Block& b : before) b = GlibcAllocate(rng);
  pthread_t early;
  ELFC_CHECK(pthread_create(&early, nullptr, EarlyThread, nullptr) == 0,
             "pthread_create");

  void* handle = dlopen(g_lib_path, RTLD_NOW | RTLD_LOCAL);
  ELFC_CHECK(handle != nullptr, "dlopen(%s, RTLD_NOW | RTLD_LOCAL): %s",
             g_lib_path, dlerror());
  g_lib.malloc_fn = reinterpret_cast<MallocFn>(Resolve(handle, "malloc", true));
  g_lib.free_fn = reinterpret_cast<FreeFn>(Resolve(handle, "free", true));
  g_lib.calloc_fn = reinterpret_cast<CallocFn>(Resolve(handle, "calloc", true));
  g_lib.realloc_fn =
      reinterpret_cast<ReallocFn>(Resolve(handle, "realloc", true));
  g_lib.posix_memalign_fn = reinterpret_cast<PosixMemalignFn>(
      Resolve(handle, "posix_memalign", false));
  g_lib.aligned_alloc_fn = reinterpret_cast<AlignedAllocFn>(
      Resolve(handle, "aligned_alloc", false));
  g_lib.usable_size_fn = reinterpret_cast<UsableSizeFn>(
      Resolve(handle, "malloc_usable_size", false));
  if (operator_new) {
    g_lib.new_fn = reinterpret_cast<NewFn>(Resolve(handle, "_Znwm", false));
    g_lib.delete_fn =
        reinterpret_cast<DeleteFn>(Resolve(handle, "_ZdlPv", false));
  }
  // RTLD_LOCAL: the process keeps glibc's malloc.
  elfc::test::CheckPreload("dlopen (after dlopen)");

  if (g_lib.aligned_alloc_fn != nullptr) {
    void* p = g_lib.aligned_alloc_fn(4096, 3 * 4096);
    ELFC_CHECK(p != nullptr && reinterpret_cast<std::uintptr_t>(p) % 4096 == 0,
               "library aligned_alloc(4096, 12288) = %p", p);
    g_lib.free_fn(p);
  }
  // Single-threaded, then with threads (one of them older than the library).
  Workout(0x5151, 3000);
  OpenGate(1);
  constexpr int kThreads = 4;
  pthread_t tids[kThreads];
  for (int i = 0; i < kThreads; ++i) {
    ELFC_CHECK(pthread_create(&tids[i], nullptr, WorkoutThread,
                              reinterpret_cast<void*>(
                                  static_cast<std::uintptr_t>(0x7000 + i))) == 0,
               "pthread_create");
  }
  for (int i = 0; i < kThreads; ++i) pthread_join(tids[i], nullptr);
  while (!g_early_used.load()) sched_yield();
  for (Block& b : g_shared) Release(b, "shared at the end");
  for (Block& b : before) Release(b, "glibc block from before dlopen");

  if (do_dlclose) {
    ELFC_CHECK(dlclose(handle) == 0, "dlclose: %s", dlerror());
    g_lib = LibApi{};
    void* again = dlopen(g_lib_path, RTLD_NOW | RTLD_NOLOAD);
    Log("dlopen: after dlclose the library is %s",
        again != nullptr ? "still loaded (NODELETE or still referenced)"
                         : "unloaded");
    if (again != nullptr) dlclose(again);
    // A thread that used the library exits only now, and another one
    // starts and ends: neither may call into an unmapped library.
    OpenGate(2);
    pthread_join(early, nullptr);
    pthread_t late;
    ELFC_CHECK(pthread_create(&late, nullptr,
                              [](void*) -> void* {
                                void* p = malloc(100);
                                free(p);
                                return nullptr;
                              },
                              nullptr) == 0,
               "pthread_create");
    pthread_join(late, nullptr);
  } else {
    OpenGate(2);
    pthread_join(early, nullptr);
  }
  printf("dlopen: PASS (%s)\n", do_dlclose ? "with dlclose" : "kept open");
  return 0;
}
