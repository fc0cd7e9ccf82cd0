// pair_latency: the cost of one malloc + free pair on the fast path.
//
// A thread mallocs a block of a fixed size, writes its first and last byte,
// and frees it, over and over, for each size of --sizes in turn (the same
// block is typically handed back every time: this is the allocator's
// thread-cache round trip, the lower bound of every other workload). With
// --threads=N, N threads do the same independently (the default is the
// single-thread latency).
//
// One iteration = one malloc/free pair per thread, per size.
// Reports ops = pairs (all sizes), ops_per_sec = pairs/s, and ns_per_pair
// overall and per size (ns_16=..., wall time x threads / pairs).
//
//   pair_latency --sizes=16,64,256,1024,4096 --iterations=2000000

#include <cstdint>
#include <cstdlib>
#include <string>
#include <vector>

#include "tools/workloads/workload_util.h"

namespace {

using workloads::Budget;
using workloads::Counter;

// The stop flag is read once per kChunk pairs, keeping it off the measured
// path.
constexpr uint64_t kChunk = 1024;

uint64_t Pairs(size_t size, const Budget& budget) {
  uint64_t done = 0;
  const uint64_t limit = budget.iterations();
  while (budget.timed() ? budget.Continue(0) : done < limit) {
    uint64_t n = budget.timed() ? kChunk
                                : (limit - done < kChunk ? limit - done : kChunk);
    for (uint64_t i = 0; i < n; ++i) {
      auto* p = static_cast<char*>(std::malloc(size));
      if (p == nullptr) workloads::Fail("malloc(%zu) failed", size);
      p[0] = 1;
      p[size - 1] = 2;
      workloads::Escape(p);
      std::free(p);
    }
    done += n;
  }
  return done;
}

}  // namespace

int main(int argc, char** argv) {
  workloads::Flags flags(
      argc, argv,
      "malloc/free pair latency at a few sizes (single thread by default).");
  const int threads =
      workloads::ReadThreads(flags, 1, "threads doing pairs independently");
  const std::vector<size_t> sizes = flags.SizeList(
      "sizes", "16,64,256,1024,4096", "block sizes, bytes, measured in turn");
  const int64_t seed = flags.Int("seed", 4141, "unused (no randomness)");
  (void)seed;
  const int64_t iterations = flags.Int(
      "iterations", 10000000, "malloc/free pairs per thread, per size");
  const double seconds_flag = flags.Double(
      "seconds", 0,
      "if > 0, run for this long in total (split evenly among the sizes) and "
      "ignore --iterations");
  flags.Done();
  if (iterations < 1 || seconds_flag < 0) {
    workloads::Usage("need --iterations >= 1 and --seconds >= 0");
  }

  uint64_t total_ops = 0;
  double total_seconds = 0;
  std::string per_size;
  for (size_t size : sizes) {
    Budget budget(static_cast<uint64_t>(iterations),
                  seconds_flag / static_cast<double>(sizes.size()));
    std::vector<Counter> done(static_cast<size_t>(threads));
    double s = workloads::RunThreads(threads, budget, [&](int t) {
      done[t].value = Pairs(size, budget);
    });
    uint64_t ops = workloads::Sum(done);
    total_ops += ops;
    total_seconds += s;
    per_size += " " + workloads::Field(("ns_" + std::to_string(size)).c_str(),
                                       s * 1e9 * threads /
                                           static_cast<double>(ops));
  }
  workloads::PrintResult(
      "pair_latency", threads, total_ops, total_seconds,
      workloads::Field("ns_per_pair", total_seconds * 1e9 * threads /
                                          static_cast<double>(total_ops)) +
          per_size);
  return 0;
}
