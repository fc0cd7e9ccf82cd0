// prodcons: producer-consumer, every block freed by a thread other than the
// one that allocated it (the pattern of rpmalloc-benchmark's
// producer-consumer mode and of any pipeline or message-passing server).
//
// --threads=N makes N producer/consumer pairs (2N threads). Each producer
// allocates batches of --batch blocks (random sizes in [min_size, max_size],
// uniform) and hands each full batch to its consumer through a bounded
// single-producer/single-consumer ring of --queue batches; the consumer
// checks and frees every block. The ring bounds the live set to
// N * queue * batch blocks, so peak RSS measures the allocator's
// remote-free handling, not a backlog.
//
// One iteration = one batch per producer.
// Reports ops = blocks freed by consumers (each allocated by a producer),
// ops_per_sec = cross-thread malloc/free pairs per second.
//
//   prodcons --threads=1 --min_size=16 --max_size=256 --batch=64 --queue=64

#include <atomic>
#include <cstdint>
#include <cstdlib>
#include <memory>
#include <string>
#include <vector>

#include "tools/workloads/workload_util.h"

namespace {

using workloads::Budget;
using workloads::Counter;

// A bounded SPSC ring of batches. `tail` is written only by the producer,
// `head` only by the consumer. Slot index s (taken mod capacity) is the
// producer's to fill when s == tail and tail - head < capacity, and the
// consumer's to drain when head == s < tail; no slot is ever both. The
// producer fills slot `tail`, then publishes it with a store of tail + 1;
// the consumer's load of tail makes the slot's contents (and the blocks'
// tags) visible. The consumer frees the blocks and hands the slot back with
// a store of head + 1, which the producer loads before refilling it. After
// its last publish the producer sets kFinished in `tail` (release), so a
// consumer that sees the bit and has drained up to the count below it is
// done for good.
//
// The hand-off blocks instead of spinning: a producer facing a full ring
// waits on `head` and a consumer facing an empty one waits on `tail`
// (std::atomic::wait, a futex on Linux after a short spin). With 2N threads
// on fewer CPUs a spinning side would burn the time slice its partner needs;
// blocking makes the rows measure the allocator rather than the scheduler.
// Wake-ups are batched so that the futex system calls stay off the
// per-block cost: the producer wakes its consumer when the ring has filled
// to `wake_fill` batches, the consumer wakes its producer when it has
// drained to `wake_drain` (half the ring each way). Each side stores its
// index and then loads the other's to compute the fill level, all seq_cst:
// as in Dekker's algorithm the two cannot both miss the other's store, so
// once a side has seen the ring full (or empty) and gone to sleep, every
// later computation of its partner sees the sleeper's final index and moves
// the level by exactly one per step, reaching the threshold and notifying.
// A side that registers its wait after the value moved returns at once
// (std::atomic::wait compares first). The last publish always notifies.
constexpr uint64_t kFinished = uint64_t{1} << 63;

struct Ring {
  Ring(size_t capacity_batches, size_t batch_blocks)
      : capacity(capacity_batches), batch(batch_blocks),
        wake_fill(capacity_batches / 2 > 0 ? capacity_batches / 2 : 1),
        wake_drain(capacity_batches - wake_fill),
        ptrs(capacity_batches * batch_blocks),
        sizes(capacity_batches * batch_blocks) {}

  alignas(64) std::atomic<uint64_t> tail{0};
  alignas(64) std::atomic<uint64_t> head{0};
  alignas(64) const size_t capacity;
  const size_t batch;
  const size_t wake_fill;   // batches in the ring when a consumer is woken
  const size_t wake_drain;  // batches in the ring when a producer is woken
  std::vector<char*> ptrs;
  std::vector<uint32_t> sizes;
};

// Waits until slot `tail` is free; false if the run was stopped meanwhile
// (the consumer keeps draining, so a blocked producer always wakes).
bool WaitForRoom(const Ring& ring, uint64_t tail, const Budget& budget) {
  for (;;) {
    uint64_t head = ring.head.load(std::memory_order_seq_cst);
    if (tail - head < ring.capacity) return true;
    if (budget.timed() && budget.stopped()) return false;
    ring.head.wait(head, std::memory_order_acquire);
  }
}

void Produce(Ring& ring, const Budget& budget, workloads::Rng& rng,
             workloads::SizeRange range) {
  uint64_t tail = ring.tail.load(std::memory_order_relaxed);
  for (uint64_t batches = 0; budget.Continue(batches); ++batches) {
    if (!WaitForRoom(ring, tail, budget)) break;
    size_t base = (tail % ring.capacity) * ring.batch;
    for (size_t i = 0; i < ring.batch; ++i) {
      size_t size = rng.Uniform(range.min, range.max);
      auto* p = static_cast<char*>(std::malloc(size));
      if (p == nullptr) workloads::Fail("malloc(%zu) failed", size);
      workloads::SetTag(p, size, workloads::TagFor(size));
      ring.ptrs[base + i] = p;
      ring.sizes[base + i] = static_cast<uint32_t>(size);
    }
    ring.tail.store(++tail, std::memory_order_seq_cst);
    if (tail - ring.head.load(std::memory_order_seq_cst) == ring.wake_fill) {
      ring.tail.notify_one();
    }
  }
  ring.tail.store(tail | kFinished, std::memory_order_release);
  ring.tail.notify_one();
}

uint64_t Consume(Ring& ring) {
  uint64_t head = ring.head.load(std::memory_order_relaxed);
  uint64_t freed = 0;
  for (;;) {
    uint64_t tail = ring.tail.load(std::memory_order_seq_cst);
    if (head == (tail & ~kFinished)) {
      if (tail & kFinished) return freed;
      ring.tail.wait(tail, std::memory_order_acquire);
      continue;
    }
    size_t base = (head % ring.capacity) * ring.batch;
    for (size_t i = 0; i < ring.batch; ++i) {
      char* p = ring.ptrs[base + i];
      workloads::CheckTag(p, ring.sizes[base + i],
                          workloads::TagFor(ring.sizes[base + i]));
      std::free(p);
    }
    freed += ring.batch;
    ring.head.store(++head, std::memory_order_seq_cst);
    tail = ring.tail.load(std::memory_order_seq_cst) & ~kFinished;
    if (tail - head == ring.wake_drain) ring.head.notify_one();
  }
}

}  // namespace

int main(int argc, char** argv) {
  workloads::Flags flags(
      argc, argv,
      "Producer-consumer: producers allocate batches, consumers free them.");
  const int pairs = workloads::ReadThreads(
      flags, 1, "producer/consumer pairs (2 threads each)");
  const workloads::SizeRange sizes = workloads::ReadSizes(flags, 16, 256);
  const int64_t batch = flags.Int("batch", 64, "blocks per batch");
  const int64_t queue =
      flags.Int("queue", 64, "batches in flight per pair (ring capacity)");
  const uint64_t seed = workloads::ReadSeed(flags);
  Budget budget =
      workloads::ReadBudget(flags, 150000, "batches per producer");
  flags.Done();
  if (batch < 1 || queue < 1) workloads::Usage("need --batch, --queue >= 1");

  std::vector<std::unique_ptr<Ring>> rings;
  for (int i = 0; i < pairs; ++i) {
    rings.push_back(std::make_unique<Ring>(static_cast<size_t>(queue),
                                           static_cast<size_t>(batch)));
  }
  std::vector<Counter> freed(static_cast<size_t>(pairs));

  double seconds = workloads::RunThreads(2 * pairs, budget, [&](int t) {
    if (t < pairs) {
      workloads::Rng rng(seed, static_cast<uint64_t>(t));
      Produce(*rings[t], budget, rng, sizes);
    } else {
      freed[t - pairs].value = Consume(*rings[t - pairs]);
    }
  });

  workloads::PrintResult(
      "prodcons", pairs, workloads::Sum(freed), seconds,
      "min_size=" + std::to_string(sizes.min) +
          " max_size=" + std::to_string(sizes.max) +
          " batch=" + std::to_string(batch) + " queue=" + std::to_string(queue));
  return 0;
}
