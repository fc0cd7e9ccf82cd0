// elfc: elfmalloc as the process's malloc. This header is only needed for
// elfc's own extensions; the allocation API itself is the standard one
// (<stdlib.h>, <malloc.h>, <new>), which libelfc.so (LD_PRELOAD or linked)
// or //elfc:elfc_malloc (Bazel's `malloc =` / `--custom_malloc`) replaces.
//
// The extensions are C functions so that C programs and programs that find
// them with dlsym(RTLD_DEFAULT, "elfc_get_stats") (when elfc is preloaded
// and the program was not linked against it) can use them.
#ifndef ELFC_ELFC_H_
#define ELFC_ELFC_H_

#include <stddef.h>

#ifdef __cplusplus
extern "C" {
#endif

// A snapshot of the allocator's counters (see elfmalloc::Stats). Filled
// without allocating; relaxed counters, so not a consistent snapshot while
// other threads allocate.
struct elfc_stats {
  size_t allocated_bytes;  // held by the program (class size / large map)
  size_t active_bytes;     // slab pages holding slabs + large mappings
  size_t mapped_bytes;     // slab pages ever carved + large mappings
  size_t dirty_bytes;      // free slab pages kept committed
  size_t returned_bytes;   // free slab pages with no memory behind them
  size_t large_bytes;      // mapped for live large allocations
  size_t large_allocations;
  size_t thread_heaps;     // live per-thread front ends
};

// Fills *out (if non-null). Returns sizeof(struct elfc_stats), so that a
// caller compiled against an older or newer header can tell.
size_t elfc_get_stats(struct elfc_stats* out);

// Writes a human-readable summary of the statistics to file descriptor fd
// (no allocation: formatted into a stack buffer and written with write(2)).
void elfc_print_stats(int fd);

// elfc's version, e.g. "0.1.0".
const char* elfc_version(void);

#ifdef __cplusplus
}  // extern "C"
#endif

#endif  // ELFC_ELFC_H_
