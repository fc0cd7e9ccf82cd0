// xthread_churn: random sizes freed by other threads, the pattern of
// rpmalloc-benchmark (random sizes up to ~16 KiB, a working set per thread,
// a share of the blocks handed to another thread, which frees them).
//
// Each of --threads threads keeps --slots blocks. One op mallocs a block of
// random size in [min_size, max_size] (log-uniform: small far more often
// than large) into a random slot; the block it displaces is, with
// probability --cross_percent/100, handed to the next thread (ring order),
// otherwise freed here. Handed blocks travel in batches of --batch through
// a bounded mailbox per thread (a mutex and a fixed array: no allocation);
// every thread empties its own mailbox between batches and frees what it
// finds. A thread whose target's mailbox is full empties its own while it
// waits, so the ring cannot deadlock. With one thread nothing crosses.
//
// One iteration = one malloc (and one free, here or elsewhere) per thread.
// Reports ops = blocks allocated, ops_per_sec = blocks/s, and
// crossed = blocks freed by a thread that did not allocate them.
//
//   xthread_churn --threads=2 --min_size=16 --max_size=16384 --slots=2000

#include <atomic>
#include <cstdint>
#include <cstdlib>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "tools/workloads/workload_util.h"

namespace {

struct Block {
  char* p = nullptr;
  uint32_t size = 0;
};

void FreeBlock(const Block& b) {
  workloads::CheckTag(b.p, b.size, workloads::TagFor(b.size));
  std::free(b.p);
}

// A thread's incoming blocks. Any thread may Put; only the owner Takes.
// `items` and `count` are guarded by `mu`.
class Mailbox {
 public:
  explicit Mailbox(size_t capacity) : items_(capacity) {}

  // Moves as many of blocks[0..n) as fit; returns how many.
  size_t Put(const Block* blocks, size_t n) {
    std::lock_guard<std::mutex> lock(mu_);
    size_t room = items_.size() - count_;
    size_t k = n < room ? n : room;
    for (size_t i = 0; i < k; ++i) items_[count_ + i] = blocks[i];
    count_ += k;
    return k;
  }
  // Frees everything in the box; returns how many blocks.
  uint64_t FreeAll(std::vector<Block>& scratch) {
    size_t n;
    {
      std::lock_guard<std::mutex> lock(mu_);
      n = count_;
      for (size_t i = 0; i < n; ++i) scratch[i] = items_[i];
      count_ = 0;
    }
    for (size_t i = 0; i < n; ++i) FreeBlock(scratch[i]);
    return n;
  }

 private:
  std::mutex mu_;
  std::vector<Block> items_;
  size_t count_ = 0;
};

}  // namespace

int main(int argc, char** argv) {
  workloads::Flags flags(
      argc, argv,
      "Random-size cross-thread churn (rpmalloc-benchmark pattern): random "
      "sizes, a working set per thread, a share of blocks freed by the next "
      "thread.");
  const int threads = workloads::ReadThreads(flags, 2, "worker threads");
  const workloads::SizeRange sizes = workloads::ReadSizes(flags, 16, 16384);
  const int64_t slots = flags.Int("slots", 2000, "blocks each thread keeps");
  const int64_t cross = flags.Int(
      "cross_percent", 50, "percent of displaced blocks handed to the next "
                           "thread");
  const int64_t batch =
      flags.Int("batch", 32, "blocks handed over at a time");
  const uint64_t seed = workloads::ReadSeed(flags);
  workloads::Budget budget =
      workloads::ReadBudget(flags, 1000000, "blocks allocated per thread");
  flags.Done();
  if (slots < 1 || batch < 1 || cross < 0 || cross > 100) {
    workloads::Usage("need --slots, --batch >= 1, 0 <= --cross_percent <= 100");
  }

  const size_t capacity = static_cast<size_t>(batch) * 16;
  std::vector<std::unique_ptr<Mailbox>> boxes;
  for (int i = 0; i < threads; ++i) {
    boxes.push_back(std::make_unique<Mailbox>(capacity));
  }
  std::vector<std::vector<Block>> sets(static_cast<size_t>(threads));
  for (auto& s : sets) s.resize(static_cast<size_t>(slots));
  std::vector<workloads::Counter> done(static_cast<size_t>(threads));
  std::vector<workloads::Counter> crossed(static_cast<size_t>(threads));
  // Threads still allocating; the last ones keep emptying their mailboxes
  // until every thread has stopped handing blocks over.
  std::atomic<int> running{threads};

  double seconds = workloads::RunThreads(threads, budget, [&](int t) {
    workloads::Rng rng(seed, static_cast<uint64_t>(t));
    std::vector<Block>& set = sets[t];
    std::vector<Block> out(static_cast<size_t>(batch));
    std::vector<Block> scratch(capacity);
    Mailbox& mine = *boxes[t];
    Mailbox& next = *boxes[(t + 1) % threads];
    const bool can_cross = threads > 1;
    size_t nout = 0;
    uint64_t ops = 0, received = 0;
    auto flush = [&] {
      size_t sent = 0;
      while (sent < nout) {
        sent += next.Put(out.data() + sent, nout - sent);
        if (sent < nout) {
          received += mine.FreeAll(scratch);
          std::this_thread::yield();
        }
      }
      nout = 0;
    };
    for (; budget.Continue(ops); ++ops) {
      size_t size = rng.LogUniform(sizes.min, sizes.max);
      auto* p = static_cast<char*>(std::malloc(size));
      if (p == nullptr) workloads::Fail("malloc(%zu) failed", size);
      workloads::SetTag(p, size, workloads::TagFor(size));
      Block& slot = set[static_cast<size_t>(rng.Next() % set.size())];
      if (slot.p != nullptr) {
        if (can_cross && static_cast<int64_t>(rng.Next() % 100) < cross) {
          out[nout++] = slot;
          if (nout == out.size()) {
            flush();
            received += mine.FreeAll(scratch);
          }
        } else {
          FreeBlock(slot);
        }
      }
      slot = {p, static_cast<uint32_t>(size)};
    }
    flush();
    for (Block& b : set) {
      if (b.p != nullptr) FreeBlock(b);
    }
    running.fetch_sub(1, std::memory_order_acq_rel);
    while (running.load(std::memory_order_acquire) > 0) {
      received += mine.FreeAll(scratch);
      std::this_thread::yield();
    }
    received += mine.FreeAll(scratch);
    done[t].value = ops;
    crossed[t].value = received;
  });

  workloads::PrintResult(
      "xthread_churn", threads, workloads::Sum(done), seconds,
      "min_size=" + std::to_string(sizes.min) +
          " max_size=" + std::to_string(sizes.max) +
          " slots=" + std::to_string(slots) +
          " cross_percent=" + std::to_string(cross) +
          " batch=" + std::to_string(batch) +
          " crossed=" + std::to_string(workloads::Sum(crossed)));
  return 0;
}
