// larson: Larson & Krishnan's server benchmark ("Memory allocation for
// long-running server applications", ISMM 1998), our own code.
//
// Each of T thread lineages owns --slots blocks. A thread repeatedly picks a
// random slot, frees its block and puts a new block of random size (uniform
// in [min_size, max_size]) there. After --rounds x slots replacements the
// thread hands its slots (and its PRNG) to a new thread it creates, and
// exits: like a server whose worker threads come and go while the data they
// made lives on, so blocks are freed by threads other than the one that
// allocated them, and per-thread caches of exited threads must be recycled.
// As in the original, the main thread allocates every slot's first block
// before the timed section, so the first frees are remote too.
//
// One iteration = one replacement (free + malloc) in a lineage.
// Reports ops = replacements in all lineages, ops_per_sec = replacements/s;
// `generations` = threads that ran, in all lineages.
//
//   larson --threads=2 --min_size=8 --max_size=1000 --slots=5000 --seconds=1

#include <atomic>
#include <chrono>
#include <cstdint>
#include <cstdlib>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "tools/workloads/workload_util.h"

namespace {

using workloads::Budget;

struct Params {
  workloads::SizeRange sizes;
  uint64_t generation_ops;  // replacements per thread before handing over
  Budget* budget;
};

// One chain of threads sharing a set of slots. Ownership: exactly one thread
// of the lineage runs at a time; it alone touches slots, rng, ops and
// generations. It hands them to its successor through std::thread's
// creation (which happens-before the successor's start), and the successor
// joins its predecessor. `current` holds the running thread's handle (empty
// for the first thread, which the harness joins); it is written by a thread
// creating its successor and read by the main thread at the end, both under
// `mu`. `finished` (release) is set by the last thread after its last write;
// the main thread acquires it, then joins `current`.
struct Lineage {
  Lineage(uint64_t seed, uint64_t index) : rng(seed, index) {}

  std::vector<char*> ptrs;
  std::vector<uint32_t> sizes;
  workloads::Rng rng;
  uint64_t ops = 0;
  uint64_t generations = 0;
  std::mutex mu;
  std::thread current;  // guarded by mu
  std::atomic<bool> finished{false};
};

void Replace(Lineage& l, const workloads::SizeRange& range) {
  size_t victim = static_cast<size_t>(l.rng.Next() % l.ptrs.size());
  char* old = l.ptrs[victim];
  workloads::CheckTag(old, l.sizes[victim], workloads::TagFor(victim));
  std::free(old);
  size_t size = l.rng.Uniform(range.min, range.max);
  auto* p = static_cast<char*>(std::malloc(size));
  if (p == nullptr) workloads::Fail("malloc(%zu) failed", size);
  workloads::SetTag(p, size, workloads::TagFor(victim));
  l.ptrs[victim] = p;
  l.sizes[victim] = static_cast<uint32_t>(size);
}

void RunGeneration(Lineage* l, const Params* params, std::thread predecessor) {
  if (predecessor.joinable()) predecessor.join();
  const Budget& budget = *params->budget;
  bool over = false;
  for (uint64_t i = 0; i < params->generation_ops; ++i) {
    // As in the original, the stop flag is checked at every replacement.
    if (!budget.Continue(l->ops)) {
      over = true;
      break;
    }
    Replace(*l, params->sizes);
    ++l->ops;
  }
  ++l->generations;
  if (over || !budget.Continue(l->ops)) {
    l->finished.store(true, std::memory_order_release);
    return;
  }
  std::lock_guard<std::mutex> lock(l->mu);
  std::thread self = std::move(l->current);
  l->current = std::thread(RunGeneration, l, params, std::move(self));
}

}  // namespace

int main(int argc, char** argv) {
  workloads::Flags flags(
      argc, argv,
      "Larson & Krishnan server churn: threads replace random blocks in their "
      "slots and are periodically replaced by new threads.");
  const int threads =
      workloads::ReadThreads(flags, 1, "thread lineages (running at once)");
  const workloads::SizeRange sizes = workloads::ReadSizes(flags, 8, 1000);
  const int64_t slots = flags.Int("slots", 5000, "blocks per lineage");
  const int64_t rounds = flags.Int(
      "rounds", 20,
      "a thread does rounds x slots replacements, then hands over to a new "
      "thread");
  const uint64_t seed = workloads::ReadSeed(flags);
  Budget budget = workloads::ReadBudget(
      flags, 12000000, "replacements per lineage (free + malloc)");
  flags.Done();
  if (slots < 1 || rounds < 1) workloads::Usage("need --slots, --rounds >= 1");

  const Params params{sizes, static_cast<uint64_t>(rounds * slots), &budget};
  std::vector<std::unique_ptr<Lineage>> lineages;
  for (int t = 0; t < threads; ++t) {
    auto l = std::make_unique<Lineage>(seed, static_cast<uint64_t>(t));
    l->ptrs.resize(static_cast<size_t>(slots));
    l->sizes.resize(static_cast<size_t>(slots));
    for (size_t i = 0; i < l->ptrs.size(); ++i) {
      size_t size = l->rng.Uniform(sizes.min, sizes.max);
      auto* p = static_cast<char*>(std::malloc(size));
      if (p == nullptr) workloads::Fail("malloc(%zu) failed", size);
      workloads::SetTag(p, size, workloads::TagFor(i));
      l->ptrs[i] = p;
      l->sizes[i] = static_cast<uint32_t>(size);
    }
    lineages.push_back(std::move(l));
  }

  double seconds = workloads::RunThreads(
      threads, budget,
      [&](int t) { RunGeneration(lineages[t].get(), &params, std::thread()); },
      [&] {
        for (auto& l : lineages) {
          while (!l->finished.load(std::memory_order_acquire)) {
            std::this_thread::sleep_for(std::chrono::microseconds(100));
          }
          std::thread last;
          {
            std::lock_guard<std::mutex> lock(l->mu);
            last = std::move(l->current);
          }
          if (last.joinable()) last.join();
        }
      });

  uint64_t ops = 0, generations = 0;
  for (auto& l : lineages) {
    ops += l->ops;
    generations += l->generations;
    for (size_t i = 0; i < l->ptrs.size(); ++i) {
      workloads::CheckTag(l->ptrs[i], l->sizes[i], workloads::TagFor(i));
      std::free(l->ptrs[i]);
    }
  }
  workloads::PrintResult(
      "larson", threads, ops, seconds,
      "min_size=" + std::to_string(sizes.min) +
          " max_size=" + std::to_string(sizes.max) +
          " slots=" + std::to_string(slots) + " rounds=" +
          std::to_string(rounds) + " generations=" +
          std::to_string(generations));
  return 0;
}
