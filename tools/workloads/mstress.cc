// mstress: mixed sizes handed between threads through a shared pool, in the
// spirit of the mstress test in Microsoft's mimalloc-bench (our own code).
//
// All threads share one pool of --slots slots. One op mallocs a block of
// mixed size (log-uniform in [min_size, max_size], and one time in
// --large_every up to --large_size), swaps it into a random slot with an
// atomic exchange, and frees the block it took out, which another thread
// most likely allocated. Every thread allocates, frees its own blocks and
// frees the others', at random and at all sizes: remote frees, slab
// turnover and the classes' refill and flush paths all run at once.
//
// One iteration = one exchange (malloc + free) per thread.
// Reports ops = exchanges, ops_per_sec = exchanges/s.
//
//   mstress --threads=2 --min_size=8 --max_size=2048 --slots=20000

#include <atomic>
#include <cstdint>
#include <cstdlib>
#include <string>
#include <vector>

#include "tools/workloads/workload_util.h"

namespace {

// A block's size is stored in its bytes 1..4 (blocks are at least 8
// bytes), and its tag is a function of that size, so whichever thread
// takes it out can check it.
void FreeBlock(char* p) {
  if (p == nullptr) return;
  uint32_t size;
  __builtin_memcpy(&size, p + 1, sizeof(size));
  workloads::CheckTag(p, size, workloads::TagFor(size));
  std::free(p);
}

}  // namespace

int main(int argc, char** argv) {
  workloads::Flags flags(
      argc, argv,
      "Mixed-size stress: threads swap blocks of mixed sizes into a shared "
      "pool and free the blocks they take out (mostly other threads').");
  const int threads = workloads::ReadThreads(flags, 2, "worker threads");
  const workloads::SizeRange sizes = workloads::ReadSizes(flags, 8, 2048);
  const int64_t slots = flags.Int("slots", 20000, "slots in the shared pool");
  const int64_t large_every = flags.Int(
      "large_every", 64, "one block in this many is large (0: never)");
  const int64_t large_size =
      flags.Int("large_size", 65536, "largest of the large blocks, bytes");
  const uint64_t seed = workloads::ReadSeed(flags);
  workloads::Budget budget =
      workloads::ReadBudget(flags, 1000000, "exchanges per thread");
  flags.Done();
  if (slots < 1 || large_every < 0 || sizes.min < 8 ||
      large_size < static_cast<int64_t>(sizes.max)) {
    workloads::Usage("need --slots >= 1, --min_size >= 8, --large_every >= 0, "
                     "--large_size >= --max_size");
  }

  std::vector<std::atomic<char*>> pool(static_cast<size_t>(slots));
  for (auto& s : pool) s.store(nullptr, std::memory_order_relaxed);
  std::vector<workloads::Counter> done(static_cast<size_t>(threads));

  double seconds = workloads::RunThreads(threads, budget, [&](int t) {
    workloads::Rng rng(seed, static_cast<uint64_t>(t));
    uint64_t ops = 0;
    for (; budget.Continue(ops); ++ops) {
      uint64_t r = rng.Next();
      size_t size = (large_every > 0 &&
                     (r >> 40) % static_cast<uint64_t>(large_every) == 0)
                        ? rng.LogUniform(sizes.max,
                                         static_cast<size_t>(large_size))
                        : rng.LogUniform(sizes.min, sizes.max);
      auto* p = static_cast<char*>(std::malloc(size));
      if (p == nullptr) workloads::Fail("malloc(%zu) failed", size);
      auto size32 = static_cast<uint32_t>(size);
      __builtin_memcpy(p + 1, &size32, sizeof(size32));
      workloads::SetTag(p, size, workloads::TagFor(size));
      // acq_rel: the taker sees the size and tags written before the swap.
      char* old = pool[r % pool.size()].exchange(p, std::memory_order_acq_rel);
      FreeBlock(old);
    }
    done[t].value = ops;
  });
  for (auto& s : pool) FreeBlock(s.load(std::memory_order_acquire));

  workloads::PrintResult("mstress", threads, workloads::Sum(done), seconds,
                         "min_size=" + std::to_string(sizes.min) +
                             " max_size=" + std::to_string(sizes.max) +
                             " slots=" + std::to_string(slots) +
                             " large_every=" + std::to_string(large_every) +
                             " large_size=" + std::to_string(large_size));
  return 0;
}
