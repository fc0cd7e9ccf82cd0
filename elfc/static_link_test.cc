// A fully static (-static) program that uses glibc's introspection API with
// //elfc:elfc_malloc linked in. That it links at all is the first check:
// every public symbol of libc.a's malloc.o that a program may reference
// (mallinfo, mallinfo2, malloc_stats, malloc_info, mallopt, malloc_trim,
// __libc_malloc, ...) is defined by elfc, so malloc.o is never pulled in
// and its malloc never clashes with ours. Then the answers must be elfc's.
#include <malloc.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "elfc/elfc.h"

extern "C" void* __libc_malloc(size_t n);
extern "C" void __libc_free(void* p);

namespace {

int g_failures = 0;

void Check(bool ok, const char* what) {
  if (!ok) {
    fprintf(stderr, "FAILED: %s\n", what);
    ++g_failures;
  }
}

}  // namespace

int main() {
  void* volatile big = malloc(8 << 20);
  Check(big != nullptr, "8 MiB malloc");
  memset(big, 1, 8 << 20);
  const struct mallinfo2 m = mallinfo2();
  elfc_stats s;
  Check(elfc_get_stats(&s) == sizeof(s), "elfc_get_stats");
  // glibc's own mallinfo2 would describe glibc's (empty) heap.
  Check(m.hblks == s.large_allocations && m.hblks >= 1, "mallinfo2 hblks");
  Check(m.hblkhd == s.large_bytes, "mallinfo2 hblkhd");
  Check(m.arena + m.hblkhd == s.mapped_bytes, "mallinfo2 arena");
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wdeprecated-declarations"
  Check(mallinfo().hblks == static_cast<int>(m.hblks), "mallinfo");
#pragma GCC diagnostic pop
  Check(mallopt(M_ARENA_MAX, 1) == 1, "mallopt known");
  Check(mallopt(12345, 1) == 0, "mallopt unknown");
  // __libc_malloc is elfc's: its block has elfc's usable size and frees
  // through free().
  void* p = __libc_malloc(100);
  Check(p != nullptr && malloc_usable_size(p) >= 100, "__libc_malloc");
  free(p);
  p = malloc(10);
  __libc_free(p);
  FILE* devnull = fopen("/dev/null", "w");
  Check(devnull != nullptr && malloc_info(0, devnull) == 0, "malloc_info");
  if (devnull != nullptr) fclose(devnull);
  free(big);
  malloc_trim(0);
  Check(strcmp(elfc_version(), "") != 0, "elfc_version");
  if (g_failures != 0) return 1;
  printf("static_link_test: PASS (elfc %s)\n", elfc_version());
  return 0;
}
