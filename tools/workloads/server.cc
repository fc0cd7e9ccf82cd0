// server: a long-running server's heap, mixed sizes with random lifetimes.
//
// Each thread, at every op, allocates one block and gives it a lifetime
// drawn from an exponential distribution with mean --mean_life ops (capped
// at 8x the mean); a block is freed when its thread's op clock passes its
// expiry. So about --mean_life blocks per thread are live at any time,
// most die young and a few live long, interleaved, which is what makes a
// heap fragment over hours in a real server. Sizes: nine in ten log-uniform
// in [min_size, --small_max], one in ten log-uniform in [--small_max,
// max_size] (requests, strings and small objects, with buffers among them).
// Expiries sit in a timing wheel whose nodes live in a preallocated pool, so
// the workload itself allocates nothing while it runs.
//
// One iteration = one block allocated (and the frees that fall due) per
// thread. Reports ops = blocks allocated, ops_per_sec = blocks/s.
//
//   server --threads=1 --min_size=8 --max_size=65536 --mean_life=20000

#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <string>
#include <vector>

#include "tools/workloads/workload_util.h"

namespace {

constexpr uint32_t kNone = UINT32_MAX;

struct Node {
  char* p;
  uint32_t size;
  uint32_t next;  // next node in the same wheel bucket, or kNone
};

// Bucket b of the wheel holds the blocks expiring at an op count = b mod the
// wheel size; lifetimes are shorter than the wheel, so every node in the
// bucket due now expires now.
class Heap {
 public:
  Heap(size_t wheel, size_t capacity)
      : wheel_(wheel, kNone), nodes_(capacity) {
    for (size_t i = 0; i < capacity; ++i) {
      nodes_[i].next = i + 1 < capacity ? static_cast<uint32_t>(i + 1) : kNone;
    }
    free_ = capacity > 0 ? 0 : kNone;
  }

  void Add(uint64_t expiry, char* p, uint32_t size) {
    if (free_ == kNone) workloads::Fail("timing wheel node pool exhausted");
    uint32_t n = free_;
    free_ = nodes_[n].next;
    uint32_t& head = wheel_[expiry % wheel_.size()];
    nodes_[n] = {p, size, head};
    head = n;
  }

  // Frees every block of bucket `now`.
  void Expire(uint64_t now) {
    uint32_t& head = wheel_[now % wheel_.size()];
    while (head != kNone) {
      Node& node = nodes_[head];
      workloads::CheckTag(node.p, node.size, workloads::TagFor(node.size));
      std::free(node.p);
      uint32_t next = node.next;
      node.next = free_;
      free_ = head;
      head = next;
    }
  }

  void ExpireAll() {
    for (uint64_t b = 0; b < wheel_.size(); ++b) Expire(b);
  }

 private:
  std::vector<uint32_t> wheel_;
  std::vector<Node> nodes_;
  uint32_t free_;
};

}  // namespace

int main(int argc, char** argv) {
  workloads::Flags flags(
      argc, argv,
      "Long-running server: mixed sizes with exponentially distributed "
      "lifetimes.");
  const int threads = workloads::ReadThreads(flags, 1, "worker threads");
  const workloads::SizeRange sizes = workloads::ReadSizes(flags, 8, 65536);
  const int64_t small_max = flags.Int(
      "small_max", 1024, "nine blocks in ten are at most this size");
  const int64_t mean_life =
      flags.Int("mean_life", 20000, "mean lifetime of a block, in ops");
  const uint64_t seed = workloads::ReadSeed(flags);
  workloads::Budget budget =
      workloads::ReadBudget(flags, 500000, "blocks allocated per thread");
  flags.Done();
  if (mean_life < 1 || mean_life > 10000000 ||
      small_max < static_cast<int64_t>(sizes.min) ||
      small_max > static_cast<int64_t>(sizes.max)) {
    workloads::Usage("need 1 <= --mean_life <= 1e7 and --min_size <= "
                     "--small_max <= --max_size");
  }
  const uint64_t cap = 8 * static_cast<uint64_t>(mean_life);
  std::vector<workloads::Counter> done(static_cast<size_t>(threads));

  double seconds = workloads::RunThreads(threads, budget, [&](int t) {
    workloads::Rng rng(seed, static_cast<uint64_t>(t));
    // A block lives at most `cap` ops, so at most cap + 1 are live.
    Heap heap(static_cast<size_t>(cap + 1), static_cast<size_t>(cap + 1));
    uint64_t now = 0;
    for (; budget.Continue(now); ++now) {
      heap.Expire(now);
      uint64_t r = rng.Next();
      size_t size = r % 10 < 9
                        ? rng.LogUniform(sizes.min, static_cast<size_t>(small_max))
                        : rng.LogUniform(static_cast<size_t>(small_max), sizes.max);
      auto* p = static_cast<char*>(std::malloc(size));
      if (p == nullptr) workloads::Fail("malloc(%zu) failed", size);
      workloads::SetTag(p, size, workloads::TagFor(size));
      double u = static_cast<double>(rng.Next() >> 11) * 0x1.0p-53;
      auto life = static_cast<uint64_t>(
          -std::log1p(-u) * static_cast<double>(mean_life)) + 1;
      if (life > cap) life = cap;
      heap.Add(now + life, p, static_cast<uint32_t>(size));
    }
    heap.ExpireAll();
    done[t].value = now;
  });

  workloads::PrintResult("server", threads, workloads::Sum(done), seconds,
                         "min_size=" + std::to_string(sizes.min) +
                             " max_size=" + std::to_string(sizes.max) +
                             " small_max=" + std::to_string(small_max) +
                             " mean_life=" + std::to_string(mean_life));
  return 0;
}
