// shbench: in the style of MicroQuill's SmartHeap benchmark (sh6bench), our
// own code.
//
// Each thread owns an array of --slots block pointers. It fills the empty
// slots with blocks of random sizes in [min_size, max_size], drawn
// log-uniformly so that small blocks are far more common than large ones (as
// sh6bench allocates small sizes more often); then it sweeps the array,
// freeing each block with probability 1/2 and compacting the survivors to the
// front; and repeats. A block thus survives k sweeps with probability 2^-k:
// lifetimes vary from one sweep to many, and long-lived blocks sit between
// short-lived ones, which is what stresses fragmentation and size-class
// reuse. Allocation and freeing interleave at the scale of the array, unlike
// threadtest's all-then-all batches. Blocks never cross threads.
//
// One iteration = one fill + one sweep of the thread's array.
// Reports ops = blocks allocated (every one is freed), ops_per_sec = pairs/s.
//
//   shbench --threads=2 --min_size=8 --max_size=64 --slots=1000
//   shbench --threads=2 --min_size=64 --max_size=4096 --seconds=1

#include <cstdint>
#include <cstdlib>
#include <string>
#include <vector>

#include "tools/workloads/workload_util.h"

namespace {

using workloads::Budget;
using workloads::Counter;

struct Block {
  char* p;
  uint32_t size;
};

void FreeBlock(const Block& b) {
  workloads::CheckTag(b.p, b.size, workloads::TagFor(b.size));
  std::free(b.p);
}

}  // namespace

int main(int argc, char** argv) {
  workloads::Flags flags(
      argc, argv,
      "SmartHeap-style benchmark: random sizes, random lifetimes in a "
      "per-thread array, interleaved malloc/free.");
  const int threads = workloads::ReadThreads(flags, 1, "worker threads");
  const workloads::SizeRange sizes = workloads::ReadSizes(flags, 8, 64);
  const int64_t slots =
      flags.Int("slots", 1000, "blocks each thread keeps in its array");
  const uint64_t seed = workloads::ReadSeed(flags);
  Budget budget = workloads::ReadBudget(
      flags, 20000, "fill-and-sweep passes over each thread's array");
  flags.Done();
  if (slots < 1) workloads::Usage("--slots must be >= 1");

  std::vector<std::vector<Block>> arrays(static_cast<size_t>(threads));
  for (auto& a : arrays) a.resize(static_cast<size_t>(slots));
  std::vector<Counter> done(static_cast<size_t>(threads));

  double seconds = workloads::RunThreads(threads, budget, [&](int t) {
    workloads::Rng rng(seed, static_cast<uint64_t>(t));
    Block* a = arrays[t].data();
    const size_t n = arrays[t].size();
    size_t live = 0;
    uint64_t allocated = 0;
    for (uint64_t pass = 0; budget.Continue(pass); ++pass) {
      for (size_t i = live; i < n; ++i) {
        size_t size = rng.LogUniform(sizes.min, sizes.max);
        auto* p = static_cast<char*>(std::malloc(size));
        if (p == nullptr) workloads::Fail("malloc(%zu) failed", size);
        workloads::SetTag(p, size, workloads::TagFor(size));
        workloads::Escape(p);
        a[i] = {p, static_cast<uint32_t>(size)};
      }
      allocated += n - live;
      live = 0;
      for (size_t i = 0; i < n; ++i) {
        if (rng.Coin()) {
          FreeBlock(a[i]);
        } else {
          a[live++] = a[i];
        }
      }
    }
    for (size_t i = 0; i < live; ++i) FreeBlock(a[i]);
    done[t].value = allocated;
  });

  workloads::PrintResult("shbench", threads, workloads::Sum(done), seconds,
                         "min_size=" + std::to_string(sizes.min) +
                             " max_size=" + std::to_string(sizes.max) +
                             " slots=" + std::to_string(slots));
  return 0;
}
