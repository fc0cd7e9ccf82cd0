// realloc_growth: buffers grown by realloc, the pattern of string builders,
// growing vectors and read-until-EOF loops.
//
// Each thread keeps --buffers buffers growing side by side (so the block
// after one buffer is often another's, as in a program building several
// strings at once). One op appends to a random buffer: its size grows by a
// random step, usually small (1 to --max_step bytes) and one time in eight
// by half its size (a vector's doubling), through realloc. The appended
// bytes are marked at their last byte; a buffer that has reached --max_size
// is checked and freed, and the next starts at --min_size. An allocator that
// grows in place (free space after the block, mremap for large blocks) and
// does not copy when the new size fits the old block does little work; one
// that copies on every call copies O(size) bytes per op.
//
// One iteration = one realloc per thread.
// Reports ops = reallocs (plus the mallocs and frees around them),
// ops_per_sec = reallocs/s; `buffers_completed` = buffers that reached
// --max_size.
//
//   realloc_growth --threads=1 --min_size=16 --max_size=4194304 --buffers=4

#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include "tools/workloads/workload_util.h"

namespace {

struct Buffer {
  char* p = nullptr;
  size_t size = 0;
};

// The first byte of every buffer holds its number's tag; the last byte of
// every append holds the tag of the size after it, so a realloc that lost or
// moved bytes wrongly fails CheckContents.
void CheckContents(const Buffer& b, unsigned char first) {
  if (static_cast<unsigned char>(b.p[0]) != first ||
      static_cast<unsigned char>(b.p[b.size - 1]) !=
          workloads::TagFor(b.size)) {
    workloads::Fail("buffer %p of %zu bytes lost its contents in realloc",
                    static_cast<void*>(b.p), b.size);
  }
}

}  // namespace

int main(int argc, char** argv) {
  workloads::Flags flags(
      argc, argv,
      "realloc growth: buffers grown by small and doubling steps through "
      "realloc, freed at a maximum size, repeated.");
  const int threads = workloads::ReadThreads(flags, 1, "worker threads");
  const workloads::SizeRange sizes =
      workloads::ReadSizes(flags, 16, 4 << 20);
  const int64_t nbuffers =
      flags.Int("buffers", 4, "buffers each thread grows side by side");
  const int64_t max_step =
      flags.Int("max_step", 256, "largest small append, bytes");
  const uint64_t seed = workloads::ReadSeed(flags);
  workloads::Budget budget =
      workloads::ReadBudget(flags, 20000, "reallocs per thread");
  flags.Done();
  if (nbuffers < 1 || max_step < 1 || sizes.min < 2) {
    workloads::Usage("need --buffers >= 1, --max_step >= 1, --min_size >= 2");
  }

  std::vector<std::vector<Buffer>> sets(static_cast<size_t>(threads));
  for (auto& s : sets) s.resize(static_cast<size_t>(nbuffers));
  std::vector<workloads::Counter> done(static_cast<size_t>(threads));
  std::vector<workloads::Counter> completed(static_cast<size_t>(threads));

  double seconds = workloads::RunThreads(threads, budget, [&](int t) {
    workloads::Rng rng(seed, static_cast<uint64_t>(t));
    std::vector<Buffer>& set = sets[t];
    uint64_t ops = 0, finished = 0;
    for (; budget.Continue(ops); ++ops) {
      size_t i = static_cast<size_t>(rng.Next() % set.size());
      Buffer& b = set[i];
      const unsigned char first = workloads::TagFor(i + 1);
      if (b.p == nullptr) {
        b.size = sizes.min;
        b.p = static_cast<char*>(std::malloc(b.size));
        if (b.p == nullptr) workloads::Fail("malloc(%zu) failed", b.size);
        b.p[b.size - 1] = static_cast<char>(workloads::TagFor(b.size));
        b.p[0] = static_cast<char>(first);
      }
      size_t step = (rng.Next() & 7) == 0
                        ? b.size / 2 + 1
                        : rng.Uniform(1, static_cast<size_t>(max_step));
      size_t size = b.size + step > sizes.max ? sizes.max : b.size + step;
      auto* p = static_cast<char*>(std::realloc(b.p, size));
      if (p == nullptr) workloads::Fail("realloc(%zu) failed", size);
      b.p = p;
      size_t old = b.size;
      b.size = size;
      if (size > old) {
        p[size - 1] = static_cast<char>(workloads::TagFor(size));
      }
      CheckContents(b, first);
      if (b.size >= sizes.max) {
        std::free(b.p);
        b = Buffer();
        ++finished;
      }
    }
    for (size_t i = 0; i < set.size(); ++i) {
      if (set[i].p == nullptr) continue;
      CheckContents(set[i], workloads::TagFor(i + 1));
      std::free(set[i].p);
    }
    done[t].value = ops;
    completed[t].value = finished;
  });

  workloads::PrintResult(
      "realloc_growth", threads, workloads::Sum(done), seconds,
      "min_size=" + std::to_string(sizes.min) +
          " max_size=" + std::to_string(sizes.max) +
          " buffers=" + std::to_string(nbuffers) +
          " max_step=" + std::to_string(max_step) +
          " buffers_completed=" + std::to_string(workloads::Sum(completed)));
  return 0;
}
