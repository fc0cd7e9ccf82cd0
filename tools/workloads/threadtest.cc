// threadtest: Hoard's threadtest (Berger et al., ASPLOS 2000), our own code.
//
// Each of T threads repeatedly allocates a batch of objects with new[] and
// then deletes the whole batch; the total batch (--objects) is divided among
// the threads, as in the original, so the work per round is the same at
// every thread count and perfect scaling shows as throughput growing with T.
// No object crosses threads: this measures the allocator's thread-local fast
// path and how well it avoids contention and false sharing, at small (the
// default, 64 B) and medium (--size=2048) sizes.
//
// One iteration = one round (allocate the batch, free the batch) per thread.
// Reports ops = objects allocated and freed (pairs), ops_per_sec = pairs/s.
//
//   threadtest --threads=2 --size=64 --objects=10000 --iterations=1000
//   threadtest --threads=2 --size=2048 --seconds=1

#include <cstdint>
#include <string>
#include <vector>

#include "tools/workloads/workload_util.h"

namespace {

using workloads::Budget;
using workloads::Counter;

}  // namespace

int main(int argc, char** argv) {
  workloads::Flags flags(
      argc, argv,
      "Hoard threadtest: each thread allocates a batch of objects, then frees "
      "it, repeatedly.");
  const int threads = workloads::ReadThreads(flags, 1, "worker threads");
  const workloads::SizeRange sizes = workloads::ReadSizes(flags, 64, 64);
  const int64_t objects = flags.Int(
      "objects", 10000,
      "objects per round, divided among the threads (Hoard's nobjects)");
  const uint64_t seed = workloads::ReadSeed(flags);
  Budget budget = workloads::ReadBudget(
      flags, 3000, "rounds per thread (allocate a batch, free it)");
  flags.Done();
  if (objects < threads) workloads::Usage("need --objects >= --threads");

  const size_t per_thread = static_cast<size_t>(objects / threads);
  // Bookkeeping is allocated up front, outside the timed section.
  std::vector<std::vector<char*>> blocks(static_cast<size_t>(threads));
  std::vector<std::vector<uint32_t>> lengths(static_cast<size_t>(threads));
  for (int t = 0; t < threads; ++t) {
    blocks[t].resize(per_thread);
    lengths[t].resize(per_thread);
  }
  std::vector<Counter> done(static_cast<size_t>(threads));

  double seconds = workloads::RunThreads(threads, budget, [&](int t) {
    workloads::Rng rng(seed, static_cast<uint64_t>(t));
    char** a = blocks[t].data();
    uint32_t* len = lengths[t].data();
    uint64_t rounds = 0;
    for (; budget.Continue(rounds); ++rounds) {
      for (size_t j = 0; j < per_thread; ++j) {
        size_t n = sizes.min == sizes.max ? sizes.min
                                          : rng.Uniform(sizes.min, sizes.max);
        char* p = new char[n];
        workloads::SetTag(p, n, workloads::TagFor(j));
        workloads::Escape(p);
        a[j] = p;
        len[j] = static_cast<uint32_t>(n);
      }
      for (size_t j = 0; j < per_thread; ++j) {
        workloads::CheckTag(a[j], len[j], workloads::TagFor(j));
        delete[] a[j];
      }
    }
    done[t].value = rounds * per_thread;
  });

  workloads::PrintResult(
      "threadtest", threads, workloads::Sum(done), seconds,
      "min_size=" + std::to_string(sizes.min) +
          " max_size=" + std::to_string(sizes.max) +
          " objects=" + std::to_string(per_thread * threads));
  return 0;
}
