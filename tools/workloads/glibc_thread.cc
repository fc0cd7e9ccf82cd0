// glibc_thread: the pattern of glibc's own thread benchmark
// (benchtests/bench-malloc-thread.c), our own code.
//
// Every thread keeps a working set of --slots blocks and, over and over,
// picks a slot at random, frees its block and mallocs a new one there. Sizes
// come from a table of --table sizes in [min_size, max_size] drawn with an
// inverse-square density (p(s) ~ 1/s^2: most requests are a few dozen
// bytes, a few are KiBs), as glibc's benchmark does; the table is shared and
// indexed at random, so the size stream costs the same under every
// allocator. Blocks never cross threads: this measures the per-thread fast
// paths under mixed sizes and the contention threads cause each other.
//
// One iteration = one replacement (free + malloc) per thread.
// Reports ops = replacements, ops_per_sec = replacements/s.
//
//   glibc_thread --threads=2 --min_size=4 --max_size=32768 --slots=1024

#include <cstdint>
#include <cstdlib>
#include <string>
#include <vector>

#include "tools/workloads/workload_util.h"

namespace {

struct Block {
  char* p = nullptr;
  uint32_t size = 0;
};

// Inverse-square sizes in [lo, hi]: the inverse of the CDF of p(s) ~ 1/s^2.
std::vector<uint32_t> SizeTable(size_t n, size_t lo, size_t hi,
                                uint64_t seed) {
  workloads::Rng rng(seed, 1 << 20);
  std::vector<uint32_t> table(n);
  const double a = 1.0 / static_cast<double>(lo);
  const double b = 1.0 / (static_cast<double>(hi) + 1.0);
  for (auto& s : table) {
    double u = static_cast<double>(rng.Next() >> 11) * 0x1.0p-53;
    auto x = static_cast<size_t>(1.0 / (a - u * (a - b)));
    s = static_cast<uint32_t>(x < lo ? lo : (x > hi ? hi : x));
  }
  return table;
}

}  // namespace

int main(int argc, char** argv) {
  workloads::Flags flags(
      argc, argv,
      "glibc bench-malloc-thread pattern: per-thread working set, random "
      "slot replaced by a block of inverse-square-distributed size.");
  const int threads = workloads::ReadThreads(flags, 1, "worker threads");
  const workloads::SizeRange sizes = workloads::ReadSizes(flags, 4, 32768);
  const int64_t slots =
      flags.Int("slots", 1024, "working-set blocks per thread");
  const int64_t table_size =
      flags.Int("table", 8000, "precomputed sizes drawn from");
  const uint64_t seed = workloads::ReadSeed(flags);
  workloads::Budget budget =
      workloads::ReadBudget(flags, 10000000, "replacements per thread");
  flags.Done();
  if (slots < 1 || table_size < 1) {
    workloads::Usage("need --slots, --table >= 1");
  }

  const std::vector<uint32_t> table =
      SizeTable(static_cast<size_t>(table_size), sizes.min, sizes.max, seed);
  std::vector<std::vector<Block>> sets(static_cast<size_t>(threads));
  for (auto& s : sets) s.resize(static_cast<size_t>(slots));
  std::vector<workloads::Counter> done(static_cast<size_t>(threads));

  double seconds = workloads::RunThreads(threads, budget, [&](int t) {
    workloads::Rng rng(seed, static_cast<uint64_t>(t));
    Block* set = sets[t].data();
    const uint64_t n = sets[t].size();
    uint64_t ops = 0;
    for (; budget.Continue(ops); ++ops) {
      uint64_t r = rng.Next();
      Block& b = set[r % n];
      if (b.p != nullptr) {
        workloads::CheckTag(b.p, b.size, workloads::TagFor(b.size));
        std::free(b.p);
      }
      uint32_t size = table[(r >> 32) % table.size()];
      auto* p = static_cast<char*>(std::malloc(size));
      if (p == nullptr) workloads::Fail("malloc(%u) failed", size);
      workloads::SetTag(p, size, workloads::TagFor(size));
      b = {p, size};
    }
    for (uint64_t i = 0; i < n; ++i) {
      if (set[i].p == nullptr) continue;
      workloads::CheckTag(set[i].p, set[i].size,
                          workloads::TagFor(set[i].size));
      std::free(set[i].p);
    }
    done[t].value = ops;
  });

  workloads::PrintResult("glibc_thread", threads, workloads::Sum(done),
                         seconds,
                         "min_size=" + std::to_string(sizes.min) +
                             " max_size=" + std::to_string(sizes.max) +
                             " slots=" + std::to_string(slots));
  return 0;
}
