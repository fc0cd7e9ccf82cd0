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
//  * Background decay (ELFMALLOC_BACKGROUND_DECAY=1, off by default): our
//    constructor starts elfmalloc's decay thread
//    (elfmalloc/general_allocator.h, "Background decay"); a constructor is
//    where a program could start a thread itself, unlike malloc, which may
//    run inside libc's own pthread_create. Not restarted in fork children.
//  * Process exit: nothing is torn down (the heap is never destroyed), so
//    atexit handlers and static destructors can allocate and free.
//  * Options: the environment is read once, by the first malloc or by our
//    constructor, whichever comes first (elfmalloc/options.h); the
//    constructor prints the verbose listing.
//  * Statistics at exit: ELFMALLOC_PRINT_STATS=1 prints elfc_print_stats
//    from a destructor, to a duplicate of stderr taken by the constructor
//    (programs such as coreutils close fd 2 before exiting) or to
//    ELFMALLOC_STATS_FILE.
//
// glibc's introspection (mallinfo, mallinfo2, malloc_stats, malloc_info,
// mallopt) answers from elfmalloc's counters and options, and glibc's
// internal __libc_* allocation names are defined too: with every public
// symbol of libc.a's malloc.o defined here, a -static link never pulls it in.
#include "elfc/elfc.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <malloc.h>
#include <stdarg.h>
#include <sys/types.h>
#include <unistd.h>

#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstring>

#include "elfc/version.h"
#include "elfmalloc/general_allocator.h"
#include "elfmalloc/options.h"
#include "malloc_bind/malloc_bind.h"

namespace elfc {
namespace {

using ElfcBackend = elfmalloc::MallocBackend;
using elfmalloc::GetOption;
using elfmalloc::OptionId;

#if defined(ELFMALLOC_HARDENED)
constexpr char kBuildKind[] = "hardened";
#elif defined(ELFMALLOC_CHECKED)
constexpr char kBuildKind[] = "checked";
#else
constexpr char kBuildKind[] = "default";
#endif

static_assert(elfmalloc::kNumSizeClasses <= ELFC_MAX_CLASSES);

// Formats into a stack buffer and writes it to a file descriptor (or, for
// malloc_info, a FILE*) when full and at the end: no allocation on the fd
// path, so statistics can be printed from anywhere, at exit included.
class Writer {
 public:
  explicit Writer(int fd) noexcept : fd_(fd) {}
  explicit Writer(FILE* file) noexcept : file_(file) {}
  ~Writer() { Flush(); }
  Writer(const Writer&) = delete;
  Writer& operator=(const Writer&) = delete;

  __attribute__((format(printf, 2, 3))) void Printf(const char* fmt, ...) {
    for (int attempt = 0; attempt < 2; ++attempt) {
      va_list ap;
      va_start(ap, fmt);
      const int n = std::vsnprintf(buf_ + len_, sizeof(buf_) - len_, fmt, ap);
      va_end(ap);
      if (n < 0) return;
      if (len_ + static_cast<std::size_t>(n) < sizeof(buf_)) {
        len_ += static_cast<std::size_t>(n);
        return;
      }
      // Did not fit: flush what came before and try again in a whole
      // buffer; a single piece longer than the buffer is cut.
      if (attempt == 0 && len_ > 0) {
        Flush();
        continue;
      }
      len_ = sizeof(buf_) - 1;
      return;
    }
  }
  void Flush() noexcept {
    if (len_ == 0) return;
    if (file_ != nullptr) {
      std::fwrite(buf_, 1, len_, file_);
    } else {
      elfmalloc::WriteAll(fd_, buf_, len_);
    }
    len_ = 0;
  }

 private:
  int fd_ = -1;
  FILE* file_ = nullptr;
  char buf_[2048];
  std::size_t len_ = 0;
};

void Snapshot(elfc_detailed_stats* d) {
  std::memset(d, 0, sizeof(*d));
  const elfmalloc::Stats s = elfmalloc::GetStats();
  elfc_stats& t = d->totals;
  t.allocated_bytes = s.allocated_bytes;
  t.active_bytes = s.active_bytes;
  t.mapped_bytes = s.mapped_bytes;
  t.dirty_bytes = s.dirty_bytes;
  t.returned_bytes = s.returned_bytes;
  t.large_bytes = s.large_bytes;
  t.large_allocations = s.large_allocations;
  t.thread_heaps = s.thread_heaps;
  d->metadata_bytes = s.metadata_bytes;
  d->resident_bytes = s.resident_bytes;
  d->peak_resident_bytes = s.peak_resident_bytes;
  d->pooled_thread_heaps = s.pooled_thread_heaps;
  d->num_classes = elfmalloc::kNumSizeClasses;
  for (std::size_t i = 0; i < elfmalloc::kNumSizeClasses; ++i) {
    const elfmalloc::SizeClass c(static_cast<std::uint8_t>(i));
    elfc_class_stats& k = d->classes[i];
    k.object_size = elfmalloc::ClassSize(c);
    k.page_size = elfmalloc::ClassPageSize(c);
    k.allocated_objects = s.class_allocated_objects[i];
    k.cached_objects = s.class_cached_objects[i];
    k.pages = s.class_pages_in_use[i];
    d->cached_bytes += k.cached_objects * k.object_size;
  }
}

// glibc's struct mallinfo2 from our counters. glibc's model is one heap
// ("arena", grown with brk) plus separate mmap'd chunks; ours is slab pages
// plus large mappings, so:
//   arena    = slab pages mapped (mapped_bytes - large_bytes)
//   ordblks  = free blocks cached in thread heaps
//   smblks   = 0 (no fastbins)
//   hblks    = live large allocations
//   hblkhd   = bytes mapped for them
//   usmblks  = 0 (glibc always reports 0)
//   fsmblks  = 0
//   uordblks = bytes of slab blocks held by the program
//   fordblks = arena - uordblks (cached, free in slabs, cached pages)
//   keepcost = dirty pages malloc_trim would return to the OS
// so that, as with glibc, arena + hblkhd is what is mapped and
// uordblks + hblkhd what the program holds.
struct mallinfo2 MallInfo2() {
  elfc_detailed_stats d;
  Snapshot(&d);
  const elfc_stats& t = d.totals;
  struct mallinfo2 m;
  std::memset(&m, 0, sizeof(m));
  const std::size_t slab_mapped =
      t.mapped_bytes > t.large_bytes ? t.mapped_bytes - t.large_bytes : 0;
  const std::size_t slab_held =
      t.allocated_bytes > t.large_bytes ? t.allocated_bytes - t.large_bytes : 0;
  std::size_t cached = 0;
  for (std::size_t i = 0; i < d.num_classes; ++i) {
    cached += d.classes[i].cached_objects;
  }
  m.arena = slab_mapped;
  m.ordblks = cached;
  m.hblks = t.large_allocations;
  m.hblkhd = t.large_bytes;
  m.uordblks = slab_held;
  m.fordblks = slab_mapped > slab_held ? slab_mapped - slab_held : 0;
  m.keepcost = t.dirty_bytes;
  return m;
}

int ClampInt(std::size_t v) {
  return v > static_cast<std::size_t>(INT_MAX) ? INT_MAX : static_cast<int>(v);
}

// The totals both printers show, named once (text and JSON keys alike).
struct NamedTotal {
  const char* name;
  std::size_t value;
};
constexpr std::size_t kNumTotals = 13;
void Totals(const elfc_detailed_stats& d, NamedTotal (&out)[kNumTotals]) {
  const elfc_stats& t = d.totals;
  const NamedTotal all[kNumTotals] = {
      {"allocated_bytes", t.allocated_bytes},
      {"active_bytes", t.active_bytes},
      {"mapped_bytes", t.mapped_bytes},
      {"dirty_bytes", t.dirty_bytes},
      {"returned_bytes", t.returned_bytes},
      {"large_bytes", t.large_bytes},
      {"large_allocations", t.large_allocations},
      {"thread_heaps", t.thread_heaps},
      {"pooled_thread_heaps", d.pooled_thread_heaps},
      {"cached_bytes", d.cached_bytes},
      {"metadata_bytes", d.metadata_bytes},
      {"resident_bytes", d.resident_bytes},
      {"peak_resident_bytes", d.peak_resident_bytes},
  };
  for (std::size_t i = 0; i < kNumTotals; ++i) out[i] = all[i];
}

void PrintText(Writer& w) {
  elfc_detailed_stats d;
  Snapshot(&d);
  w.Printf("elfc %s statistics:\n", elfc::kVersion);
  NamedTotal lines[kNumTotals];
  Totals(d, lines);
  for (const auto& l : lines) w.Printf("%-20s %zu\n", l.name, l.value);
  w.Printf("%10s %10s %12s %10s %8s\n", "class_size", "page_size",
           "allocated", "cached", "pages");
  for (std::size_t i = 0; i < d.num_classes; ++i) {
    const elfc_class_stats& k = d.classes[i];
    if (k.allocated_objects == 0 && k.cached_objects == 0 && k.pages == 0) {
      continue;  // the text form lists the classes in use only
    }
    w.Printf("%10zu %10zu %12zu %10zu %8zu\n", k.object_size, k.page_size,
             k.allocated_objects, k.cached_objects, k.pages);
  }
}

void PrintJson(Writer& w) {
  elfc_detailed_stats d;
  Snapshot(&d);
  w.Printf("{\"version\": \"%s\", \"build\": \"%s\"", elfc::kVersion,
           kBuildKind);
  NamedTotal fields[kNumTotals];
  Totals(d, fields);
  for (const auto& f : fields) w.Printf(", \"%s\": %zu", f.name, f.value);
  w.Printf(", \"classes\": [");
  for (std::size_t i = 0; i < d.num_classes; ++i) {
    const elfc_class_stats& k = d.classes[i];
    w.Printf(
        "%s{\"object_size\": %zu, \"page_size\": %zu, "
        "\"allocated_objects\": %zu, \"cached_objects\": %zu, "
        "\"pages\": %zu}",
        i == 0 ? "" : ", ", k.object_size, k.page_size, k.allocated_objects,
        k.cached_objects, k.pages);
  }
  w.Printf("]}\n");
}

// glibc's malloc_info XML (version 1), one "heap" for all of elfmalloc:
// <sizes> lists the free blocks cached per class (from = the previous
// class's size + 1, to = this class's size), "rest" totals them, "mmap" is
// the large allocations; "system" is what is mapped, "aspace" the same.
void PrintXml(Writer& w) {
  elfc_detailed_stats d;
  Snapshot(&d);
  const elfc_stats& t = d.totals;
  std::size_t free_count = 0;
  w.Printf("<malloc version=\"1\">\n<heap nr=\"0\">\n<sizes>\n");
  std::size_t from = 1;
  for (std::size_t i = 0; i < d.num_classes; ++i) {
    const elfc_class_stats& k = d.classes[i];
    if (k.cached_objects != 0) {
      w.Printf("<size from=\"%zu\" to=\"%zu\" total=\"%zu\" count=\"%zu\"/>\n",
               from, k.object_size, k.cached_objects * k.object_size,
               k.cached_objects);
      free_count += k.cached_objects;
    }
    from = k.object_size + 1;
  }
  const std::size_t slab_mapped =
      t.mapped_bytes > t.large_bytes ? t.mapped_bytes - t.large_bytes : 0;
  w.Printf("</sizes>\n");
  w.Printf("<total type=\"fast\" count=\"0\" size=\"0\"/>\n");
  w.Printf("<total type=\"rest\" count=\"%zu\" size=\"%zu\"/>\n", free_count,
           d.cached_bytes);
  w.Printf("<system type=\"current\" size=\"%zu\"/>\n", slab_mapped);
  w.Printf("<system type=\"max\" size=\"%zu\"/>\n", slab_mapped);
  w.Printf("<aspace type=\"total\" size=\"%zu\"/>\n", slab_mapped);
  w.Printf("<aspace type=\"mprotect\" size=\"%zu\"/>\n", slab_mapped);
  w.Printf("</heap>\n");
  w.Printf("<total type=\"fast\" count=\"0\" size=\"0\"/>\n");
  w.Printf("<total type=\"rest\" count=\"%zu\" size=\"%zu\"/>\n", free_count,
           d.cached_bytes);
  w.Printf("<total type=\"mmap\" count=\"%zu\" size=\"%zu\"/>\n",
           t.large_allocations, t.large_bytes);
  w.Printf("<system type=\"current\" size=\"%zu\"/>\n", t.mapped_bytes);
  w.Printf("<system type=\"max\" size=\"%zu\"/>\n", t.mapped_bytes);
  w.Printf("<aspace type=\"total\" size=\"%zu\"/>\n", t.mapped_bytes);
  w.Printf("<aspace type=\"mprotect\" size=\"%zu\"/>\n", t.mapped_bytes);
  w.Printf("</malloc>\n");
}

// ---- Start-up and exit ----

// A duplicate of the standard error the program started with, taken at
// start-up when statistics are to be printed at exit without a file:
// programs (coreutils among them) close fd 2 before exiting. Placed high
// (>= 100) so it does not take the small number a program's next open()
// may expect; close-on-exec, so exec'd programs do not inherit it.
int g_stats_fd = -1;

constexpr int kStatsFdFloor = 100;

void ExpandPid(const char* pattern, char* out, std::size_t cap) {
  std::size_t len = 0;
  for (const char* p = pattern; *p != '\0' && len + 1 < cap; ++p) {
    if (p[0] == '%' && p[1] == 'p') {
      const int n = std::snprintf(out + len, cap - len, "%ld",
                                  static_cast<long>(getpid()));
      if (n > 0) len += static_cast<std::size_t>(n);
      if (len >= cap) len = cap - 1;
      ++p;
    } else {
      out[len++] = *p;
    }
  }
  out[len] = '\0';
}

__attribute__((constructor)) void StartUp() {
  elfmalloc::LoadOptions();  // the warnings, if the first malloc has not yet
  if (GetOption(OptionId::kVerbose) != 0) {
    Writer w(STDERR_FILENO);
    w.Printf("elfc: version %s, %s build\n", elfc::kVersion, kBuildKind);
    w.Flush();
    elfmalloc::WriteOptions(STDERR_FILENO);
  }
  if (GetOption(OptionId::kPrintStats) != 0 &&
      elfmalloc::StatsFile()[0] == '\0') {
    g_stats_fd = fcntl(STDERR_FILENO, F_DUPFD_CLOEXEC, kStatsFdFloor);
    if (g_stats_fd < 0) g_stats_fd = fcntl(STDERR_FILENO, F_DUPFD_CLOEXEC, 3);
  }
  elfmalloc::StartBackgroundDecay();  // no-op unless background_decay is on
}

__attribute__((destructor)) void AtExit() {
  const char* file = elfmalloc::StatsFile();
  int fd = g_stats_fd;
  bool close_fd = false;
  if (file[0] != '\0') {
    char path[elfmalloc::kMaxPathLength + 64];
    ExpandPid(file, path, sizeof(path));
    fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0) {
      Writer w(STDERR_FILENO);
      w.Printf("elfc: ELFMALLOC_STATS_FILE: cannot open %s: %s\n", path,
               std::strerror(errno));
      return;
    }
    close_fd = true;
  }
  if (fd < 0) return;
  {
    Writer w(fd);
    if (GetOption(OptionId::kStatsJson) != 0) {
      PrintJson(w);
    } else {
      PrintText(w);
    }
  }
  if (close_fd) close(fd);
}

// mallopt's parameters that map onto elfc's options; 1 if known.
int Mallopt(int param, int value) {
  switch (param) {
    case M_TRIM_THRESHOLD: {
      // glibc: free memory kept before trimming. Ours: the dirty-page caps
      // (all page sizes), rounded up to whole MiB.
      if (value < 0) return 0;
      const std::uint64_t mib = (static_cast<std::uint64_t>(value) + (1 << 20) - 1) >> 20;
      return elfmalloc::SetOption(OptionId::kMaxDirtyMb, mib) ==
                     elfmalloc::SetResult::kOk
                 ? 1
                 : 0;
    }
    case ELFC_M_DECAY_MS:
    case ELFC_M_MAX_DIRTY_MB: {
      if (value < 0) return 0;
      const OptionId id = param == ELFC_M_DECAY_MS ? OptionId::kDecayMs
                                                   : OptionId::kMaxDirtyMb;
      return elfmalloc::SetOption(id, static_cast<std::uint64_t>(value)) ==
                     elfmalloc::SetResult::kOk
                 ? 1
                 : 0;
    }
    // glibc's other parameters tune parts elfc does not have (arenas, the
    // brk top, the mmap threshold: large blocks are always mapped above
    // 1 MiB, fastbins, perturbation, the check action). They are hints
    // that cannot change a program's correctness: accepted without effect,
    // as glibc accepts them.
    case M_TOP_PAD:
    case M_MMAP_THRESHOLD:
    case M_MMAP_MAX:
    case M_CHECK_ACTION:
    case M_PERTURB:
    case M_ARENA_TEST:
    case M_ARENA_MAX:
    case M_MXFAST:
      return 1;
    default:
      return 0;
  }
}

int ErrnoOf(elfmalloc::SetResult r) {
  switch (r) {
    case elfmalloc::SetResult::kOk:
      return 0;
    case elfmalloc::SetResult::kNotRuntime:
      return EPERM;
    case elfmalloc::SetResult::kOutOfRange:
      return ERANGE;
    default:
      return EINVAL;
  }
}

}  // namespace
}  // namespace elfc

// The C API of malloc_bind, except mallopt, which maps glibc's parameters
// onto elfc's options (below): the macro's definition is renamed out of the
// way (a name made by ## is macro-expanded again).
#define mallopt elfc_bind_unused_mallopt
MALLOC_BIND_DEFINE_C_API(, ::elfc::ElfcBackend)
#undef mallopt
MALLOC_BIND_DEFINE_CXX_OPERATORS(::elfc::ElfcBackend)

extern "C" {

MALLOC_BIND_EXPORT int mallopt(int param, int value) noexcept {
  return elfc::Mallopt(param, value);
}

MALLOC_BIND_EXPORT struct mallinfo2 mallinfo2(void) noexcept {
  return elfc::MallInfo2();
}

MALLOC_BIND_EXPORT struct mallinfo mallinfo(void) noexcept {
  const struct mallinfo2 m2 = elfc::MallInfo2();
  struct mallinfo m;
  m.arena = elfc::ClampInt(m2.arena);
  m.ordblks = elfc::ClampInt(m2.ordblks);
  m.smblks = elfc::ClampInt(m2.smblks);
  m.hblks = elfc::ClampInt(m2.hblks);
  m.hblkhd = elfc::ClampInt(m2.hblkhd);
  m.usmblks = elfc::ClampInt(m2.usmblks);
  m.fsmblks = elfc::ClampInt(m2.fsmblks);
  m.uordblks = elfc::ClampInt(m2.uordblks);
  m.fordblks = elfc::ClampInt(m2.fordblks);
  m.keepcost = elfc::ClampInt(m2.keepcost);
  return m;
}

// glibc's shape (per arena, then the total including mmap'd blocks), one
// arena; "max mmap" are the current large allocations (no maximum is kept).
MALLOC_BIND_EXPORT void malloc_stats(void) noexcept {
  const struct mallinfo2 m = elfc::MallInfo2();
  elfc::Writer w(STDERR_FILENO);
  w.Printf("Arena 0:\n");
  w.Printf("system bytes     = %10zu\n", m.arena);
  w.Printf("in use bytes     = %10zu\n", m.uordblks);
  w.Printf("Total (incl. mmap):\n");
  w.Printf("system bytes     = %10zu\n", m.arena + m.hblkhd);
  w.Printf("in use bytes     = %10zu\n", m.uordblks + m.hblkhd);
  w.Printf("max mmap regions = %10zu\n", m.hblks);
  w.Printf("max mmap bytes   = %10lu\n", static_cast<unsigned long>(m.hblkhd));
}

MALLOC_BIND_EXPORT int malloc_info(int options, FILE* stream) noexcept {
  if (options != 0 || stream == nullptr) {
    errno = EINVAL;
    return -1;
  }
  elfc::Writer w(stream);
  elfc::PrintXml(w);
  return 0;
}

// glibc's internal names for the allocation functions (libc.a's malloc.o
// defines them; a program or library that calls one directly would
// otherwise reach glibc's heap, or, linked -static, pull in malloc.o and
// clash with our definitions).
void* __libc_malloc(size_t n) noexcept;
void __libc_free(void* p) noexcept;
void* __libc_calloc(size_t n, size_t m) noexcept;
void* __libc_realloc(void* p, size_t n) noexcept;
void* __libc_memalign(size_t a, size_t n) noexcept;
void* __libc_valloc(size_t n) noexcept;
void* __libc_pvalloc(size_t n) noexcept;
// They call the binding directly, not malloc and friends through the PLT:
// glibc's always reach glibc's own heap, so ours reach elfc's even when
// another malloc is interposed ahead of this library.
using ElfcApi = ::malloc_bind::Api<::elfc::ElfcBackend>;
// The shared objects' malloc, free and operator delete (plain and sized,
// single and array) are elfmalloc::Allocate and elfmalloc::Deallocate
// themselves (elfc/BUILD, _SHARED_OBJECT_LINKOPTS): right only while the
// bound functions do nothing else.
static_assert(ElfcApi::kMallocIsAllocate && ElfcApi::kFreeIsDeallocate &&
                  ElfcApi::kOperatorDeleteIsDeallocate,
              "elfc/BUILD links malloc, free and operator delete as "
              "elfmalloc::Allocate and elfmalloc::Deallocate; drop those "
              "--defsym options first");
MALLOC_BIND_EXPORT void* __libc_malloc(size_t n) noexcept {
  return ElfcApi::Malloc(n);
}
MALLOC_BIND_EXPORT void __libc_free(void* p) noexcept { ElfcApi::Free(p); }
MALLOC_BIND_EXPORT void* __libc_calloc(size_t n, size_t m) noexcept {
  return ElfcApi::Calloc(n, m);
}
MALLOC_BIND_EXPORT void* __libc_realloc(void* p, size_t n) noexcept {
  return ElfcApi::Realloc(p, n);
}
MALLOC_BIND_EXPORT void* __libc_memalign(size_t a, size_t n) noexcept {
  return ElfcApi::Memalign(a, n);
}
MALLOC_BIND_EXPORT void* __libc_valloc(size_t n) noexcept {
  return ElfcApi::Valloc(n);
}
MALLOC_BIND_EXPORT void* __libc_pvalloc(size_t n) noexcept {
  return ElfcApi::Pvalloc(n);
}

MALLOC_BIND_EXPORT size_t elfc_get_stats(struct elfc_stats* out) {
  if (out != nullptr) {
    elfc_detailed_stats d;
    elfc::Snapshot(&d);
    *out = d.totals;
  }
  return sizeof(struct elfc_stats);
}

MALLOC_BIND_EXPORT size_t elfc_get_detailed_stats(
    struct elfc_detailed_stats* out, size_t size) {
  if (out != nullptr && size != 0) {
    elfc_detailed_stats d;
    elfc::Snapshot(&d);
    std::memcpy(out, &d, size < sizeof(d) ? size : sizeof(d));
  }
  return sizeof(struct elfc_detailed_stats);
}

MALLOC_BIND_EXPORT void elfc_print_stats(int fd) {
  elfc::Writer w(fd);
  elfc::PrintText(w);
}

MALLOC_BIND_EXPORT void elfc_print_stats_json(int fd) {
  elfc::Writer w(fd);
  elfc::PrintJson(w);
}

MALLOC_BIND_EXPORT const char* elfc_version(void) {
  return elfc::kVersion;
}

MALLOC_BIND_EXPORT int elfc_get_option(const char* name, uint64_t* value) {
  return elfmalloc::GetOptionByName(name, value) ? 0 : EINVAL;
}

MALLOC_BIND_EXPORT int elfc_set_option(const char* name, uint64_t value) {
  return elfc::ErrnoOf(elfmalloc::SetOptionByName(name, value));
}

}  // extern "C"
