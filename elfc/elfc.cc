// elfc: elfmalloc's general allocator bound to the whole C and C++
// allocation API by malloc_bind, plus elfc's C extensions (elfc.h).
//
// This one translation unit defines malloc, free, calloc, realloc, ... and
// every operator new/delete. It is linked into libelfc.so (LD_PRELOAD /
// dlopen / -lelfc; a version script exports only the allocation API and the
// elfc_* functions) and into //elfc:elfc_malloc, an alwayslink library for
// Bazel's `malloc =` attribute and `--custom_malloc`.
//
// Process lifecycle (why each is safe without recursion):
//  * Start-up: the first malloc (often from the dynamic loader's or libc's
//    initialisation, before main and before our own constructors) builds
//    elfmalloc's heap in mmap_alloc memory under a constinit spin lock;
//    nothing there calls malloc, dlsym or getenv-with-allocation. The
//    thread's front end is created with its state set to Initializing
//    first, so the calloc that glibc's pthread_setspecific may make for a
//    high key number takes the fallback path instead of recursing.
//  * TLS: elfmalloc and bagpipe use constinit initial-exec thread_locals, so
//    no access ever goes through __tls_get_addr's allocating slow path.
//    (dlopen of libelfc.so relies on glibc's static TLS surplus, which
//    holds our few dozen bytes.)
//  * Thread exit: a pthread key destructor returns the thread's caches;
//    allocations by later destructors (other keys', thread_local objects')
//    use the locked fallback path and never build a new front end.
//  * fork: elfmalloc registers pthread_atfork handlers when its heap is built
//    (general_allocator.cc), bagpipe resets dead threads' epoch records.
//  * Process exit: nothing is torn down (the heap is never destroyed), so
//    atexit handlers and static destructors can allocate and free.
//  * Statistics at exit: ELFMALLOC_PRINT_STATS=1 prints elfc_print_stats to
//    stderr from a destructor.
#include "elfc/elfc.h"

#include <unistd.h>

#include <cstddef>
#include <cstdio>
#include <cstdlib>
#include <cstring>

#include "elfc/version.h"
#include "elfmalloc/general_allocator.h"
#include "malloc_bind/malloc_bind.h"

namespace elfc {
namespace {

using ElfcBackend = elfmalloc::MallocBackend;

// Appends "name value\n" to buf at *len (bounded); no allocation.
void Append(char* buf, std::size_t cap, std::size_t* len, const char* name,
            std::size_t value) {
  if (*len >= cap) return;
  const int n = std::snprintf(buf + *len, cap - *len, "%-20s %zu\n", name,
                              value);
  if (n > 0) *len += static_cast<std::size_t>(n);
}

bool PrintStatsAtExit() {
  const char* v = std::getenv("ELFMALLOC_PRINT_STATS");
  return v != nullptr && v[0] != '\0' && v[0] != '0';
}

__attribute__((destructor)) void MaybePrintStatsAtExit() {
  if (PrintStatsAtExit()) elfc_print_stats(2);
}

}  // namespace
}  // namespace elfc

MALLOC_BIND_DEFINE_C_API(, ::elfc::ElfcBackend)
MALLOC_BIND_DEFINE_CXX_OPERATORS(::elfc::ElfcBackend)

extern "C" {

MALLOC_BIND_EXPORT size_t elfc_get_stats(struct elfc_stats* out) {
  if (out != nullptr) {
    const elfmalloc::Stats s = elfmalloc::GetStats();
    out->allocated_bytes = s.allocated_bytes;
    out->active_bytes = s.active_bytes;
    out->mapped_bytes = s.mapped_bytes;
    out->dirty_bytes = s.dirty_bytes;
    out->returned_bytes = s.returned_bytes;
    out->large_bytes = s.large_bytes;
    out->large_allocations = s.large_allocations;
    out->thread_heaps = s.thread_heaps;
  }
  return sizeof(struct elfc_stats);
}

MALLOC_BIND_EXPORT void elfc_print_stats(int fd) {
  elfc_stats s;
  elfc_get_stats(&s);
  char buf[1024];
  std::size_t len = 0;
  const int n = std::snprintf(buf, sizeof(buf), "elfc %s statistics:\n",
                              elfc_version());
  if (n > 0) len = static_cast<std::size_t>(n);
  elfc::Append(buf, sizeof(buf), &len, "allocated_bytes", s.allocated_bytes);
  elfc::Append(buf, sizeof(buf), &len, "active_bytes", s.active_bytes);
  elfc::Append(buf, sizeof(buf), &len, "mapped_bytes", s.mapped_bytes);
  elfc::Append(buf, sizeof(buf), &len, "dirty_bytes", s.dirty_bytes);
  elfc::Append(buf, sizeof(buf), &len, "returned_bytes", s.returned_bytes);
  elfc::Append(buf, sizeof(buf), &len, "large_bytes", s.large_bytes);
  elfc::Append(buf, sizeof(buf), &len, "large_allocations",
               s.large_allocations);
  elfc::Append(buf, sizeof(buf), &len, "thread_heaps", s.thread_heaps);
  if (len > sizeof(buf)) len = sizeof(buf);
  const char* p = buf;
  while (len > 0) {
    const ssize_t w = write(fd, p, len);
    if (w <= 0) break;
    p += w;
    len -= static_cast<std::size_t>(w);
  }
}

MALLOC_BIND_EXPORT const char* elfc_version(void) {
  return elfc::kVersion;
}

}  // extern "C"
