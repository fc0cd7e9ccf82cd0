/* A C program built against an installed elfc (//elfc:install_test builds it
 * with pkg-config and with CMake, shared and static). Passes when malloc is
 * elfc's: a large block shows up in elfc's own statistics. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "elfc/elfc.h"

int main(void) {
  struct elfc_stats before;
  struct elfc_stats during;
  const size_t size = (size_t)32 << 20;
  elfc_get_stats(&before);
  char* p = malloc(size);
  elfc_get_stats(&during);
  if (p == NULL || during.large_allocations != before.large_allocations + 1 ||
      during.large_bytes < before.large_bytes + size) {
    fprintf(stderr, "install_prog: malloc is not elfc's\n");
    return 1;
  }
  memset(p, 1, size);
  free(p);
  printf("install_prog: PASS (elfc %s)\n", elfc_version());
  return 0;
}
