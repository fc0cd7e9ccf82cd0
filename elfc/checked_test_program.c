/* Run by checked_test.sh with a libelfc build preloaded (the program itself
 * links no allocator).
 *
 *   checked_test_program version      prints "version: <elfc_version()>"
 *   checked_test_program double_free  frees a block twice; the checked build
 *                                     aborts, so reaching the end prints
 *                                     "double_free: not detected" and exits 1
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int main(int argc, char** argv) {
  if (argc != 2) {
    fprintf(stderr, "usage: %s version|double_free\n", argv[0]);
    return 2;
  }
  if (strcmp(argv[1], "version") == 0) {
    const char* (*version)(void) =
        (const char* (*)(void))dlsym(RTLD_DEFAULT, "elfc_version");
    if (version == NULL) {
      printf("version: elfc not loaded\n");
      return 1;
    }
    printf("version: %s\n", version());
    return 0;
  }
  if (strcmp(argv[1], "double_free") == 0) {
    /* Through a volatile pointer so the compiler sees no double free. */
    char* volatile p = malloc(48);
    if (p == NULL) return 1;
    p[0] = 1;
    free(p);
    free(p);
    printf("double_free: not detected\n");
    return 1;
  }
  fprintf(stderr, "unknown mode %s\n", argv[1]);
  return 2;
}
