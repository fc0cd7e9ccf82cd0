// testutil/malloc_counter.cc: the counting malloc replacement declared in
// malloc_counter.h.
//
// Each entry point bumps the calling thread's counter (and the global one),
// traps if a trapping NoMallocScope is active on the thread, and forwards to
// glibc's implementation through the __libc_* aliases glibc exports for
// exactly this purpose. Nothing here may allocate, directly or through the
// runtime:
//  * Per-thread state is a `thread_local` of trivial type, constant-
//    initialised, with the initial-exec TLS model: it lives in the static TLS
//    block set up with the thread, so touching it never calls
//    __tls_get_addr's lazy allocation or registers a destructor.
//  * Messages go straight to write(2); there is no stdio or iostream.
//  * malloc_usable_size has no __libc_ alias, so glibc's is found once with
//    dlsym(RTLD_NEXT) (at load time by a constructor, so the allocations dlsym
//    may make are never attributed to a test's scope).
// The code is glibc-specific, as are the __libc_* symbols it relies on.
#include "testutil/malloc_counter.h"

#include <dlfcn.h>
#include <errno.h>
#include <malloc.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <new>
#include <type_traits>

// glibc's real allocator, exported (GLIBC_2.2.5) for malloc replacements.
extern "C" {
void* __libc_malloc(std::size_t size) noexcept;
void __libc_free(void* p) noexcept;
void* __libc_calloc(std::size_t n, std::size_t size) noexcept;
void* __libc_realloc(void* p, std::size_t size) noexcept;
void* __libc_memalign(std::size_t align, std::size_t size) noexcept;
void* __libc_valloc(std::size_t size) noexcept;
void* __libc_pvalloc(std::size_t size) noexcept;
}

namespace testutil {
namespace {

struct ThreadState {
  std::uint64_t calls;       // allocation API calls made by this thread
  std::uint32_t trap_depth;  // trapping NoMallocScopes alive on this thread
};
static_assert(std::is_trivial_v<ThreadState>);
static_assert(std::is_trivially_destructible_v<ThreadState>);

constinit thread_local ThreadState t_state
    __attribute__((tls_model("initial-exec"))) = {0, 0};

constinit std::atomic<std::uint64_t> g_total_calls{0};

void WriteAll(const char* s) {
  std::size_t n = strlen(s);
  while (n > 0) {
    const ssize_t w = write(STDERR_FILENO, s, n);
    if (w <= 0) {
      if (w < 0 && errno == EINTR) continue;
      return;
    }
    s += w;
    n -= static_cast<std::size_t>(w);
  }
}

[[noreturn]] __attribute__((noinline, cold)) void Trap(const char* fn) {
  // Disarm first, so that whatever abort() and a debugger do may allocate.
  t_state.trap_depth = 0;
  WriteAll("testutil::NoMallocScope(kTrap): ");
  WriteAll(fn);
  WriteAll(
      " was called on a thread where allocation is forbidden; aborting so "
      "that the stack shows the caller\n");
  abort();
}

inline void Count(const char* fn) {
  ThreadState& s = t_state;
  ++s.calls;
  g_total_calls.fetch_add(1, std::memory_order_relaxed);
  if (__builtin_expect(s.trap_depth != 0, 0)) Trap(fn);
}

using UsableSizeFn = std::size_t (*)(void*);
constinit std::atomic<UsableSizeFn> g_libc_usable_size{nullptr};

UsableSizeFn ResolveUsableSize() {
  UsableSizeFn fn = g_libc_usable_size.load(std::memory_order_acquire);
  if (fn == nullptr) {
    // Racing resolvers find the same symbol; the last store wins harmlessly.
    fn = reinterpret_cast<UsableSizeFn>(dlsym(RTLD_NEXT, "malloc_usable_size"));
    if (fn == nullptr) {
      WriteAll(
          "testutil::malloc_counter: cannot find glibc's malloc_usable_size\n");
      abort();
    }
    g_libc_usable_size.store(fn, std::memory_order_release);
  }
  return fn;
}

__attribute__((constructor)) void ResolveAtLoad() { ResolveUsableSize(); }

bool IsPowerOfTwo(std::size_t x) { return x != 0 && (x & (x - 1)) == 0; }

// operator new: the standard loop. Calls the counting malloc / memalign, so
// each attempt counts once.
void* NewImpl(std::size_t size) {
  if (size == 0) size = 1;
  for (;;) {
    if (void* p = malloc(size)) return p;
    std::new_handler handler = std::get_new_handler();
    if (handler == nullptr) throw std::bad_alloc();
    handler();
  }
}

void* NewAlignedImpl(std::size_t size, std::align_val_t align) {
  if (size == 0) size = 1;
  for (;;) {
    if (void* p = memalign(static_cast<std::size_t>(align), size)) return p;
    std::new_handler handler = std::get_new_handler();
    if (handler == nullptr) throw std::bad_alloc();
    handler();
  }
}

void* NewNothrowImpl(std::size_t size) noexcept {
  try {
    return NewImpl(size);
  } catch (...) {
    return nullptr;
  }
}

void* NewAlignedNothrowImpl(std::size_t size, std::align_val_t align) noexcept {
  try {
    return NewAlignedImpl(size, align);
  } catch (...) {
    return nullptr;
  }
}

}  // namespace

std::uint64_t MallocCallsOnThisThread() noexcept { return t_state.calls; }

std::uint64_t TotalMallocCalls() noexcept {
  return g_total_calls.load(std::memory_order_relaxed);
}

bool MallocCounterInstalled() noexcept {
  const std::uint64_t before = t_state.calls;
  // strdup allocates inside libc.so: only an interposed malloc sees it.
  char* volatile copy = strdup("malloc_counter");
  const bool seen = t_state.calls > before;
  free(copy);
  return seen;
}

NoMallocScope::NoMallocScope(Mode mode) noexcept
    : start_(t_state.calls), mode_(mode) {
  if (mode_ == Mode::kTrap) ++t_state.trap_depth;
}

NoMallocScope::~NoMallocScope() {
  // Trap() zeroes the depth before aborting; never wrap below zero.
  if (mode_ == Mode::kTrap && t_state.trap_depth > 0) --t_state.trap_depth;
}

std::uint64_t NoMallocScope::calls() const noexcept {
  return t_state.calls - start_;
}

}  // namespace testutil

using testutil::Count;

// The C API. Declarations come from <stdlib.h> / <malloc.h>.
extern "C" {

void* malloc(std::size_t size) noexcept {
  Count("malloc");
  return __libc_malloc(size);
}

void free(void* p) noexcept {
  Count("free");
  __libc_free(p);
}

void* calloc(std::size_t n, std::size_t size) noexcept {
  Count("calloc");
  return __libc_calloc(n, size);
}

void* realloc(void* p, std::size_t size) noexcept {
  Count("realloc");
  return __libc_realloc(p, size);
}

void* reallocarray(void* p, std::size_t n, std::size_t size) noexcept {
  Count("reallocarray");
  std::size_t bytes;
  if (__builtin_mul_overflow(n, size, &bytes)) {
    errno = ENOMEM;
    return nullptr;
  }
  return __libc_realloc(p, bytes);
}

void* memalign(std::size_t align, std::size_t size) noexcept {
  Count("memalign");
  return __libc_memalign(align, size);
}

int posix_memalign(void** out, std::size_t align, std::size_t size) noexcept {
  Count("posix_memalign");
  if (!testutil::IsPowerOfTwo(align) || align % sizeof(void*) != 0) {
    return EINVAL;
  }
  const int saved_errno = errno;
  void* p = __libc_memalign(align, size);
  if (p == nullptr) {
    errno = saved_errno;  // posix_memalign reports through its result only
    return ENOMEM;
  }
  *out = p;
  return 0;
}

void* aligned_alloc(std::size_t align, std::size_t size) noexcept {
  Count("aligned_alloc");
  // As glibc 2.38+: a non-power-of-two alignment is EINVAL.
  if (!testutil::IsPowerOfTwo(align)) {
    errno = EINVAL;
    return nullptr;
  }
  return __libc_memalign(align, size);
}

void* valloc(std::size_t size) noexcept {
  Count("valloc");
  return __libc_valloc(size);
}

void* pvalloc(std::size_t size) noexcept {
  Count("pvalloc");
  return __libc_pvalloc(size);
}

std::size_t malloc_usable_size(void* p) noexcept {
  Count("malloc_usable_size");
  return testutil::ResolveUsableSize()(p);
}

}  // extern "C"

// The C++ allocation functions (all replaceable forms), via the counting C
// functions above.
void* operator new(std::size_t size) { return testutil::NewImpl(size); }
void* operator new[](std::size_t size) { return testutil::NewImpl(size); }
void* operator new(std::size_t size, const std::nothrow_t&) noexcept {
  return testutil::NewNothrowImpl(size);
}
void* operator new[](std::size_t size, const std::nothrow_t&) noexcept {
  return testutil::NewNothrowImpl(size);
}
void* operator new(std::size_t size, std::align_val_t align) {
  return testutil::NewAlignedImpl(size, align);
}
void* operator new[](std::size_t size, std::align_val_t align) {
  return testutil::NewAlignedImpl(size, align);
}
void* operator new(std::size_t size, std::align_val_t align,
                   const std::nothrow_t&) noexcept {
  return testutil::NewAlignedNothrowImpl(size, align);
}
void* operator new[](std::size_t size, std::align_val_t align,
                     const std::nothrow_t&) noexcept {
  return testutil::NewAlignedNothrowImpl(size, align);
}

void operator delete(void* p) noexcept { free(p); }
void operator delete[](void* p) noexcept { free(p); }
void operator delete(void* p, const std::nothrow_t&) noexcept { free(p); }
void operator delete[](void* p, const std::nothrow_t&) noexcept { free(p); }
void operator delete(void* p, std::size_t) noexcept { free(p); }
void operator delete[](void* p, std::size_t) noexcept { free(p); }
void operator delete(void* p, std::align_val_t) noexcept { free(p); }
void operator delete[](void* p, std::align_val_t) noexcept { free(p); }
void operator delete(void* p, std::align_val_t,
                     const std::nothrow_t&) noexcept {
  free(p);
}
void operator delete[](void* p, std::align_val_t,
                       const std::nothrow_t&) noexcept {
  free(p);
}
void operator delete(void* p, std::size_t, std::align_val_t) noexcept {
  free(p);
}
void operator delete[](void* p, std::size_t, std::align_val_t) noexcept {
  free(p);
}
