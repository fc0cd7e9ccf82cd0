// A program built in another workspace against @allocators: elfc is its
// malloc (the cc_binary's `malloc` attribute) and it uses slab_alloc
// directly. Prints "consumer: PASS" when both are in effect.
#include <malloc.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>

#include "elfc/elfc.h"
#include "slab_alloc/slab_alloc.h"

namespace {

struct Counter {
  int value = 7;  // Constructed once per slot, cached across Deallocate.
};

}  // namespace

int main() {
  // elfc's malloc is in use: its statistics count this block.
  void* p = std::malloc(100);
  elfc_stats before;
  elfc_get_stats(&before);
  if (p == nullptr || before.allocated_bytes < 100 ||
      malloc_usable_size(p) < 100) {
    std::fprintf(stderr, "consumer: elfc's malloc is not in use\n");
    return 1;
  }
  std::free(p);

  auto counters = slab_alloc::SlabAllocBuilder<Counter>::Default().Build();
  Counter* c = counters.Allocate();
  if (c == nullptr || c->value != 7) {
    std::fprintf(stderr, "consumer: slab_alloc returned a bad object\n");
    return 1;
  }
  counters.Deallocate(c);
  std::printf("consumer: PASS (elfc %s)\n", elfc_version());
  return 0;
}
