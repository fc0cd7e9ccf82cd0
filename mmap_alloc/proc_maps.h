// proc_maps: test-only helpers that observe what the kernel really did.
//
// mmap_alloc's tests must not trust mmap_alloc's own return values to decide
// whether memory is mapped, with which permissions, or resident. These helpers
// ask the kernel independently: /proc/self/maps for mappings and permissions,
// /proc/self/smaps for VmFlags, mincore(2) for residency and msync(2) for "is
// every page of this range mapped".
//
// ReadProcFile fills a caller-provided buffer with raw open/read calls, so a
// test can snapshot the address space before and after an operation without
// malloc (which may itself mmap) running in between. Everything else may
// allocate; it is test code.
#ifndef MMAP_ALLOC_PROC_MAPS_H_
#define MMAP_ALLOC_PROC_MAPS_H_

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "mmap_alloc/mmap_alloc.h"

namespace mmap_alloc {
namespace test_util {

// One line of /proc/<pid>/maps.
struct Mapping {
  std::uintptr_t start = 0;
  std::uintptr_t end = 0;
  std::string perms;  // e.g. "rw-p"
  std::string name;   // pathname, "[heap]", "[anon:foo]" or empty
};

// Parses the text of a /proc/<pid>/maps file. Malformed lines are skipped.
std::vector<Mapping> ParseMaps(std::string_view text);

// Reads a whole /proc file into buf[0, cap) with open/read/close only (no
// malloc). Returns the number of bytes read, or 0 on error or if the file
// does not fit (cap too small).
std::size_t ReadProcFile(const char* path, char* buf, std::size_t cap);

// The current mapping containing addr, if any.
std::optional<Mapping> FindMapping(const void* addr);

// The permission string ("rwxp" style) of the mapping containing p, or "" if
// p is not mapped.
std::string PermsAt(const void* p);

// The number of bytes inside [lo, hi) that `maps_text` lists as mapped.
std::size_t MappedBytesIn(std::string_view maps_text, std::uintptr_t lo,
                          std::uintptr_t hi);

// True if every page of [p, p + len) is mapped (msync(MS_ASYNC) fails with
// ENOMEM on any unmapped page and has no other effect on anonymous memory).
bool IsMapped(const void* p, std::size_t len);

// The number of pages of [p, p + len) that are resident (mincore), or
// SIZE_MAX if mincore failed (e.g. part of the range is unmapped).
std::size_t ResidentPages(const void* p, std::size_t len);

// The VmFlags line of /proc/self/smaps for the mapping containing p (e.g.
// "rd wr mr mw me ac hg"), or "" if not found.
std::string VmFlagsAt(const void* p);

// Every one of the 8 permission combinations.
inline constexpr Perm kAllPerms[] = {
    Perm::kNone,
    Perm::kRead,
    Perm::kWrite,
    Perm::kExec,
    Perm::kRead | Perm::kWrite,
    Perm::kRead | Perm::kExec,
    Perm::kWrite | Perm::kExec,
    Perm::kRead | Perm::kWrite | Perm::kExec,
};

// The /proc/<pid>/maps permission string for a private mapping with `perm`.
std::string ExpectedPerms(Perm perm);

inline char* At(void* p, std::size_t offset) {
  return static_cast<char*>(p) + offset;
}

// Writes a page-index-dependent pattern so that moved or swapped pages show;
// Check verifies it.
void Fill(void* p, std::size_t len, unsigned char seed);
bool Check(const void* p, std::size_t len, unsigned char seed);
bool AllZero(const void* p, std::size_t len);

}  // namespace test_util
}  // namespace mmap_alloc

#endif  // MMAP_ALLOC_PROC_MAPS_H_
