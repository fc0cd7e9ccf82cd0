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
#include <stdint.h>

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

// ---- Detailed statistics ----

// Statistics of one size class.
struct elfc_class_stats {
  size_t object_size;        // bytes per block
  size_t page_size;          // bytes per slab page of this class
  size_t allocated_objects;  // blocks held by the program
  size_t cached_objects;     // free blocks cached in thread heaps
  size_t pages;              // slab pages holding this class's slabs
};

#define ELFC_MAX_CLASSES 64

// Everything elfc_stats has, plus the allocator's own memory and a line per
// size class. Versioned by size: a caller passes sizeof its struct, elfc
// writes at most that many bytes (fields are only ever appended), and
// returns its own sizeof, so callers built against an older or newer header
// both work.
struct elfc_detailed_stats {
  struct elfc_stats totals;
  size_t metadata_bytes;       // heap structure, thread heaps, bag segments
  size_t resident_bytes;       // estimate: active + dirty + metadata
  size_t peak_resident_bytes;  // the process's peak RSS (getrusage)
  size_t pooled_thread_heaps;  // retired thread heaps kept for reuse
  size_t cached_bytes;         // sum of cached_objects x object_size
  size_t num_classes;          // entries of classes[] in use
  struct elfc_class_stats classes[ELFC_MAX_CLASSES];
};
size_t elfc_get_detailed_stats(struct elfc_detailed_stats* out, size_t size);

// The detailed statistics as one JSON object (keys as the field names
// above, "classes" an array of objects) followed by a newline, written to
// fd without allocating. elfc_print_stats writes the same as text.
void elfc_print_stats_json(int fd);

// ---- Options (see elfc/OPTIONS.md) ----

// Reads option `name` ("decay_ms", or its environment variable name
// "ELFMALLOC_DECAY_MS") into *value: numbers in the option's unit, booleans
// as 0/1. Returns 0, or EINVAL for an unknown name or a non-numeric option
// (stats_file).
int elfc_get_option(const char* name, uint64_t* value);

// Changes a run-time option (decay_ms, max_dirty_small_mb,
// max_dirty_mid_mb, max_dirty_medium_mb, max_dirty_mb) for the whole
// process, with the same ranges as the environment. Returns 0, EINVAL for
// an unknown name, EPERM for an option fixed at start-up, or ERANGE for a
// value outside the option's range (nothing is changed then; unlike the
// environment, the call does not saturate).
int elfc_set_option(const char* name, uint64_t value);

// mallopt parameters of elfc's own (glibc's M_* are small numbers); the
// value is in the option's unit.
#define ELFC_M_DECAY_MS (-1001)
#define ELFC_M_MAX_DIRTY_MB (-1002)

#ifdef __cplusplus
}  // extern "C"
#endif

#endif  // ELFC_ELFC_H_
