// bigblock: large-block churn, the pattern of programs that allocate and free
// buffers of a few MiB to tens of MiB (image and network buffers, Python
// bytearrays, Node Buffers, decompression windows).
//
// Each thread keeps a small working set of --slots blocks. One op frees the
// block in a random slot and mallocs a new one of random size in
// [min_size, max_size] (log-uniform), then writes one byte in every
// --stride bytes of it, as a program filling its buffer would: a fresh
// mapping costs a page fault per page written, a reused block none. An
// allocator that maps and unmaps every large block pays mmap, the faults and
// munmap on every op; one that keeps freed large blocks for reuse pays none
// in steady state.
//
// One iteration = one replacement (free + malloc + fill) per thread.
// Reports ops = replacements, ops_per_sec = replacements/s.
//
//   bigblock --threads=2 --min_size=1048576 --max_size=33554432 --slots=4

#include <cstdint>
#include <cstdlib>
#include <string>
#include <vector>

#include "tools/workloads/workload_util.h"

namespace {

struct Block {
  char* p = nullptr;
  size_t size = 0;
};

void Fill(char* p, size_t size, size_t stride, unsigned char tag) {
  if (stride > 0) {
    for (size_t i = 0; i < size; i += stride) p[i] = static_cast<char>(tag);
  }
  workloads::SetTag(p, size, tag);
}

}  // namespace

int main(int argc, char** argv) {
  workloads::Flags flags(
      argc, argv,
      "Large-block churn: each thread replaces random blocks of a small "
      "working set of multi-MiB blocks and writes every page of each.");
  const int threads = workloads::ReadThreads(flags, 1, "worker threads");
  const workloads::SizeRange sizes =
      workloads::ReadSizes(flags, 1 << 20, 32 << 20);
  const int64_t slots = flags.Int("slots", 4, "blocks each thread keeps");
  const int64_t stride = flags.Int(
      "stride", 4096,
      "write one byte every this many bytes of a new block (0: first and "
      "last byte only)");
  const uint64_t seed = workloads::ReadSeed(flags);
  workloads::Budget budget =
      workloads::ReadBudget(flags, 200, "replacements per thread");
  flags.Done();
  if (slots < 1 || stride < 0) {
    workloads::Usage("need --slots >= 1 and --stride >= 0");
  }

  std::vector<std::vector<Block>> sets(static_cast<size_t>(threads));
  for (auto& s : sets) s.resize(static_cast<size_t>(slots));
  std::vector<workloads::Counter> done(static_cast<size_t>(threads));

  double seconds = workloads::RunThreads(threads, budget, [&](int t) {
    workloads::Rng rng(seed, static_cast<uint64_t>(t));
    std::vector<Block>& set = sets[t];
    uint64_t ops = 0;
    for (; budget.Continue(ops); ++ops) {
      size_t victim = static_cast<size_t>(rng.Next() % set.size());
      Block& b = set[victim];
      if (b.p != nullptr) {
        workloads::CheckTag(b.p, b.size, workloads::TagFor(b.size));
        std::free(b.p);
      }
      size_t size = rng.LogUniform(sizes.min, sizes.max);
      auto* p = static_cast<char*>(std::malloc(size));
      if (p == nullptr) workloads::Fail("malloc(%zu) failed", size);
      Fill(p, size, static_cast<size_t>(stride), workloads::TagFor(size));
      b = {p, size};
    }
    for (Block& b : set) {
      if (b.p == nullptr) continue;
      workloads::CheckTag(b.p, b.size, workloads::TagFor(b.size));
      std::free(b.p);
    }
    done[t].value = ops;
  });

  workloads::PrintResult("bigblock", threads, workloads::Sum(done), seconds,
                         "min_size=" + std::to_string(sizes.min) +
                             " max_size=" + std::to_string(sizes.max) +
                             " slots=" + std::to_string(slots) +
                             " stride=" + std::to_string(stride));
  return 0;
}
