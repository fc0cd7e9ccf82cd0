// Operation-sequence fuzz test of Bagpipe and FaaQueue against simple
// models, single-threaded.
//
// One entry function, BagpipeFuzzOne, decodes bytes into one of four
// scenarios and a sequence of operations, and checks every result against a
// model:
//   0. Bagpipe<FaaQueue<uint64_t>, RecordingCleanup> against a multiset:
//      Push / TryPush / TryPop / Pop / BulkAdd through up to six handles
//      (created, copied and destroyed along the way), copies of the Bagpipe
//      itself, SizeGuess. Single-threaded, every promise is exact: TryPush
//      never fails, TryPop is kEmpty exactly when the model is empty and is
//      never kTransient, every popped item is one the model holds. SizeGuess
//      is within 3 per live handle of the true size (each handle holds back
//      at most 3 unflushed), and exact once no handle is alive. When the
//      last reference goes, Cleanup must see exactly the items the model
//      still holds.
//   1. FaaQueue<uint64_t> against a FIFO (std::deque): pops return the
//      oldest item; long runs cross many 256-cell segments.
//   2. Bagpipe<FaaQueue<Item*>> with revocable items against a set:
//      Revoke(item) succeeds exactly when the item is in the bag; pops
//      never return a revoked item; items are pushed again after a revoke
//      or a pop.
//   3. FaaQueue<Item*> (revocable) against a FIFO with revocation: pops
//      return the oldest item not revoked.
// Values cover the whole encodable range (0 and the largest values except
// the two reserved ones, bag.h) with many duplicates.
//
// Drivers: the tests below (seeded random inputs, every config, ASan/UBSan
// and TSan included), and libFuzzer (built with -DALLOCATORS_LIBFUZZER by
// elfc/build_fuzzers.sh, which then defines LLVMFuzzerTestOneInput instead
// of the tests).
#include <atomic>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <deque>
#include <map>
#include <memory>
#include <optional>
#include <utility>
#include <vector>

#include "bagpipe/bagpipe.h"
#include "bagpipe/faa_queue.h"

#ifndef ALLOCATORS_LIBFUZZER
#include "gtest/gtest.h"
#endif

namespace bagpipe {
namespace {

#define BAGPIPE_FUZZ_CHECK(cond, ...)                                     \
  do {                                                                    \
    if (!(cond)) {                                                        \
      std::fprintf(stderr, "bagpipe_fuzz: FAILED %s:%d: CHECK(%s): ",     \
                   __FILE__, __LINE__, #cond);                            \
      std::fprintf(stderr, __VA_ARGS__);                                  \
      std::fprintf(stderr, "\n");                                         \
      std::abort();                                                       \
    }                                                                     \
  } while (0)

class Reader {
 public:
  Reader(const std::uint8_t* d, std::size_t n) : d_(d), n_(n) {}
  bool done() const { return i_ >= n_; }
  std::uint8_t Byte() { return i_ < n_ ? d_[i_++] : 0; }
  std::uint64_t U64() {
    std::uint64_t v = 0;
    for (int i = 0; i < 8; ++i) v |= std::uint64_t{Byte()} << (8 * i);
    return v;
  }

 private:
  const std::uint8_t* d_;
  std::size_t n_;
  std::size_t i_ = 0;
};

// A value: small (many duplicates), at the top of the encodable range, or
// any; never one of the two reserved encodings.
std::uint64_t Value(Reader& r) {
  const std::uint8_t b = r.Byte();
  std::uint64_t v;
  switch (b & 3) {
    case 0:
      v = b >> 2;  // 0 .. 63
      break;
    case 1:
      v = ~std::uint64_t{0} - 2 - (b >> 2);  // the largest encodable values
      break;
    default:
      v = r.U64();
      break;
  }
  if (v >= ~std::uint64_t{0} - 1) v -= 2;
  return v;
}

constexpr int kMaxOps = 3000;

// What the inputs did, per scenario (the seeded test checks that each
// scenario really ran and hit its interesting cases).
struct Counts {
  std::uint64_t ops[4] = {};
  std::uint64_t pops = 0;        // items popped and matched to the model
  std::uint64_t empties = 0;     // kEmpty / false pops, model empty
  std::uint64_t revokes = 0;     // successful revokes
  std::uint64_t cleaned = 0;     // items handed to Cleanup
  std::uint64_t max_size = 0;    // largest model size seen
};
Counts g_counts;

// ------------------------------------------------------------ scenario 0

struct RecordingCleanup {
  std::map<std::uint64_t, int>* seen;
  void operator()(std::uint64_t v) noexcept { ++(*seen)[v]; }
};
using CountingBag = Bagpipe<FaaQueue<std::uint64_t>, RecordingCleanup>;

void FuzzBagpipeMultiset(Reader& r) {
  std::map<std::uint64_t, int> cleaned;
  std::map<std::uint64_t, int> model;
  std::int64_t size = 0;
  const std::size_t queues = std::size_t{1} << (r.Byte() % 5);  // 1 .. 16
  auto bag = std::make_unique<CountingBag>(queues, RecordingCleanup{&cleaned});
  BAGPIPE_FUZZ_CHECK(bag->valid(), "construction failed");
  std::vector<std::optional<CountingBag>> copies(3);
  std::vector<std::optional<CountingBag::Handle>> handles(6);
  handles[0].emplace(bag->NewHandle());
  auto live_handles = [&] {
    int n = 0;
    for (auto& h : handles) n += h.has_value() ? 1 : 0;
    return n;
  };
  // A live handle (creating one if none is).
  auto handle = [&]() -> CountingBag::Handle& {
    const std::size_t start = r.Byte() % handles.size();
    for (std::size_t k = 0; k < handles.size(); ++k) {
      auto& h = handles[(start + k) % handles.size()];
      if (h.has_value()) return *h;
    }
    handles[start].emplace(bag->NewHandle());
    return *handles[start];
  };
  auto take = [&](std::uint64_t v, const char* what) {
    auto it = model.find(v);
    BAGPIPE_FUZZ_CHECK(it != model.end(), "%s returned %llu, which is not in "
                       "the bag", what, static_cast<unsigned long long>(v));
    if (--it->second == 0) model.erase(it);
    --size;
    ++g_counts.pops;
  };
  for (int op = 0; op < kMaxOps && !r.done(); ++op) {
    ++g_counts.ops[0];
    if (static_cast<std::uint64_t>(size) > g_counts.max_size) {
      g_counts.max_size = static_cast<std::uint64_t>(size);
    }
    switch (r.Byte() % 11) {
      case 0:
      case 1: {
        const std::uint64_t v = Value(r);
        BAGPIPE_FUZZ_CHECK(handle().Push(v), "Push failed");
        ++model[v];
        ++size;
        break;
      }
      case 2: {
        const std::uint64_t v = Value(r);
        BAGPIPE_FUZZ_CHECK(handle().TryPush(v),
                           "TryPush failed single-threaded");
        ++model[v];
        ++size;
        break;
      }
      case 3:
      case 4: {
        std::uint64_t v = 0;
        const PopStatus st = handle().TryPop(&v);
        BAGPIPE_FUZZ_CHECK(st != PopStatus::kTransient,
                           "TryPop transient single-threaded");
        if (st == PopStatus::kEmpty) {
          BAGPIPE_FUZZ_CHECK(size == 0, "TryPop: kEmpty with %lld items in "
                             "the bag", static_cast<long long>(size));
          ++g_counts.empties;
        } else {
          take(v, "TryPop");
        }
        break;
      }
      case 5: {
        std::uint64_t v = 0;
        if (handle().Pop(&v)) {
          take(v, "Pop");
        } else {
          BAGPIPE_FUZZ_CHECK(size == 0, "Pop: empty with %lld items in the "
                             "bag", static_cast<long long>(size));
        }
        break;
      }
      case 6: {
        const std::size_t n = 1 + r.Byte() % 300;
        std::vector<std::uint64_t> items((r.Byte() & 1) != 0 ? 2 * n : n);
        const std::uint64_t base = Value(r);
        for (std::size_t i = 0; i < items.size(); ++i) {
          items[i] = i % 3 == 0 ? base : (base ^ i) % (~std::uint64_t{0} - 1);
        }
        BAGPIPE_FUZZ_CHECK(handle().BulkAdd(items.data(), items.size()),
                           "BulkAdd failed");
        for (std::uint64_t v : items) ++model[v];
        size += static_cast<std::int64_t>(items.size());
        break;
      }
      case 7: {
        // Create, copy or destroy a handle.
        const std::uint8_t b = r.Byte();
        auto& h = handles[b % handles.size()];
        if ((b & 0x40) != 0) {
          h.reset();
        } else if ((b & 0x80) != 0) {
          // A copy is a new handle with a fresh seed. (Made before the slot
          // is reassigned: the source may live in that very slot.)
          CountingBag::Handle copy(handle());
          h.emplace(std::move(copy));
        } else {
          h.emplace(bag->NewHandle());
        }
        break;
      }
      case 8: {
        // Copies of the Bagpipe share the bag; dropping one keeps it alive.
        const std::uint8_t b = r.Byte();
        auto& c = copies[b % copies.size()];
        if ((b & 0x80) != 0) {
          c.reset();
        } else {
          c.emplace(*bag);
          BAGPIPE_FUZZ_CHECK(c->num_queues() == bag->num_queues(), "copy");
        }
        break;
      }
      case 9: {
        const std::int64_t guess = static_cast<std::int64_t>(bag->SizeGuess());
        const std::int64_t slack = 3 * live_handles();
        BAGPIPE_FUZZ_CHECK(guess <= size + slack &&
                               guess >= (size > slack ? size - slack : 0),
                           "SizeGuess %lld, size %lld, %d live handles",
                           static_cast<long long>(guess),
                           static_cast<long long>(size), live_handles());
        break;
      }
      case 10: {
        // Drain up to 600 items (segments turn over).
        const int n = 1 + r.Byte() % 200 * 3;
        CountingBag::Handle& h = handle();
        for (int i = 0; i < n; ++i) {
          std::uint64_t v = 0;
          if (!h.Pop(&v)) {
            BAGPIPE_FUZZ_CHECK(size == 0, "Pop: empty with %lld items",
                               static_cast<long long>(size));
            break;
          }
          take(v, "Pop (drain)");
        }
        break;
      }
    }
  }
  for (auto& h : handles) h.reset();
  BAGPIPE_FUZZ_CHECK(static_cast<std::int64_t>(bag->SizeGuess()) == size,
                     "SizeGuess %zu with no handle alive, size %lld",
                     bag->SizeGuess(), static_cast<long long>(size));
  // The last reference runs the cleanup on what is left: exactly the model.
  bag.reset();
  const bool copies_alive = copies[0] || copies[1] || copies[2];
  BAGPIPE_FUZZ_CHECK(!copies_alive || cleaned.empty(),
                     "cleanup ran while copies of the bag were alive");
  for (auto& c : copies) c.reset();
  BAGPIPE_FUZZ_CHECK(cleaned == model,
                     "cleanup saw %zu distinct items, the model has %zu",
                     cleaned.size(), model.size());
  g_counts.cleaned += static_cast<std::uint64_t>(size);
}

// ------------------------------------------------------------ scenario 1

void FuzzFaaQueueFifo(Reader& r) {
  FaaQueue<std::uint64_t> q;
  BAGPIPE_FUZZ_CHECK(q.valid(), "construction failed");
  std::deque<std::uint64_t> model;
  auto pop_check = [&](bool got, std::uint64_t v, const char* what) {
    if (model.empty()) {
      BAGPIPE_FUZZ_CHECK(!got, "%s returned %llu from an empty queue", what,
                         static_cast<unsigned long long>(v));
      ++g_counts.empties;
      return;
    }
    ++g_counts.pops;
    BAGPIPE_FUZZ_CHECK(got, "%s found the queue empty with %zu items", what,
                       model.size());
    BAGPIPE_FUZZ_CHECK(v == model.front(),
                       "%s returned %llu, the oldest item is %llu", what,
                       static_cast<unsigned long long>(v),
                       static_cast<unsigned long long>(model.front()));
    model.pop_front();
  };
  for (int op = 0; op < kMaxOps && !r.done(); ++op) {
    ++g_counts.ops[1];
    if (model.size() > g_counts.max_size) g_counts.max_size = model.size();
    const std::uint8_t b = r.Byte();
    switch (b % 6) {
      case 0: {
        const std::uint64_t v = Value(r);
        BAGPIPE_FUZZ_CHECK(q.Push(v), "Push failed");
        model.push_back(v);
        break;
      }
      case 1: {
        const std::uint64_t v = Value(r);
        BAGPIPE_FUZZ_CHECK(q.TryPush(v), "TryPush failed single-threaded");
        model.push_back(v);
        break;
      }
      case 2: {
        std::uint64_t v = 0;
        const PopStatus st = q.TryPop(&v);
        BAGPIPE_FUZZ_CHECK(st != PopStatus::kTransient, "TryPop transient");
        pop_check(st == PopStatus::kOk, v, "TryPop");
        break;
      }
      case 3: {
        std::uint64_t v = 0;
        const bool got = q.Pop(&v);
        pop_check(got, v, "Pop");
        break;
      }
      case 4: {
        const int n = 1 + r.Byte() % 128 * 5;  // up to 636: segments fill
        const std::uint64_t base = Value(r);
        for (int i = 0; i < n; ++i) {
          std::uint64_t v = base + static_cast<std::uint64_t>(i);
          if (v >= ~std::uint64_t{0} - 1) v = static_cast<std::uint64_t>(i);
          BAGPIPE_FUZZ_CHECK(q.Push(v), "Push failed");
          model.push_back(v);
        }
        break;
      }
      case 5: {
        const int n = 1 + r.Byte() % 128 * 5;
        for (int i = 0; i < n; ++i) {
          std::uint64_t v = 0;
          const bool got = q.Pop(&v);
          pop_check(got, v, "Pop (drain)");
          if (!got) break;
        }
        break;
      }
    }
  }
}

// ---------------------------------------------------------- scenarios 2, 3

struct Item {
  std::atomic<std::uintptr_t> h{0};
  int id = 0;
  std::atomic<std::uintptr_t>& handle() noexcept { return h; }
};
static_assert(Revocable<Item>);

constexpr int kItems = 48;

void FuzzRevocableBag(Reader& r) {
  using Bag = Bagpipe<FaaQueue<Item*>>;
  const std::size_t queues = std::size_t{1} << (r.Byte() % 4);
  std::unique_ptr<Item[]> items(new Item[kItems]);
  bool in_bag[kItems] = {};
  int size = 0;
  {
    Bag bag(queues);
    BAGPIPE_FUZZ_CHECK(bag.valid(), "construction failed");
    auto h = bag.NewHandle();
    for (int i = 0; i < kItems; ++i) items[i].id = i;
    for (int op = 0; op < kMaxOps && !r.done(); ++op) {
      ++g_counts.ops[2];
      const std::uint8_t b = r.Byte();
      const int i = r.Byte() % kItems;
      switch (b % 4) {
        case 0:
          if (!in_bag[i]) {
            BAGPIPE_FUZZ_CHECK(h.Push(&items[i]), "Push failed");
            in_bag[i] = true;
            ++size;
          }
          break;
        case 1: {
          const bool got = Bag::Revoke(&items[i]);
          BAGPIPE_FUZZ_CHECK(got == in_bag[i], "Revoke(item %d) = %d, in the "
                             "bag: %d", i, got, in_bag[i]);
          if (got) {
            in_bag[i] = false;
            --size;
            ++g_counts.revokes;
          }
          BAGPIPE_FUZZ_CHECK(items[i].h.load() == 0,
                             "item %d out of the bag keeps a handle", i);
          break;
        }
        case 2: {
          Item* p = nullptr;
          const PopStatus st = h.TryPop(&p);
          BAGPIPE_FUZZ_CHECK(st != PopStatus::kTransient, "TryPop transient");
          if (st == PopStatus::kEmpty) {
            BAGPIPE_FUZZ_CHECK(size == 0, "kEmpty with %d items", size);
          } else {
            BAGPIPE_FUZZ_CHECK(p >= &items[0] && p < &items[kItems] &&
                                   in_bag[p->id],
                               "TryPop returned an item that is not in the "
                               "bag (revoked or never pushed)");
            BAGPIPE_FUZZ_CHECK(p->h.load() == 0, "popped item keeps a handle");
            in_bag[p->id] = false;
            --size;
          }
          break;
        }
        case 3: {
          // Push everything that is out, revoke every third.
          for (int k = 0; k < kItems; ++k) {
            if (!in_bag[k]) {
              BAGPIPE_FUZZ_CHECK(h.Push(&items[k]), "Push failed");
              in_bag[k] = true;
              ++size;
            }
          }
          for (int k = i % 3; k < kItems; k += 3) {
            BAGPIPE_FUZZ_CHECK(Bag::Revoke(&items[k]), "Revoke(item %d) of a "
                               "queued item failed", k);
            in_bag[k] = false;
            --size;
          }
          break;
        }
      }
    }
    // Drain: exactly the items the model holds, once each.
    Item* p = nullptr;
    while (h.Pop(&p)) {
      BAGPIPE_FUZZ_CHECK(in_bag[p->id], "drained item %d twice or revoked",
                         p->id);
      in_bag[p->id] = false;
      --size;
    }
    BAGPIPE_FUZZ_CHECK(size == 0, "%d items lost", size);
  }
}

void FuzzRevocableFifo(Reader& r) {
  std::unique_ptr<Item[]> items(new Item[kItems]);
  for (int i = 0; i < kItems; ++i) items[i].id = i;
  std::deque<int> model;  // ids in queue order
  bool in_queue[kItems] = {};
  {
    FaaQueue<Item*> q;
    BAGPIPE_FUZZ_CHECK(q.valid(), "construction failed");
    for (int op = 0; op < kMaxOps && !r.done(); ++op) {
      ++g_counts.ops[3];
      const std::uint8_t b = r.Byte();
      const int i = r.Byte() % kItems;
      switch (b % 3) {
        case 0:
          if (!in_queue[i]) {
            BAGPIPE_FUZZ_CHECK(q.Push(&items[i]), "Push failed");
            in_queue[i] = true;
            model.push_back(i);
          }
          break;
        case 1: {
          const bool got = FaaQueue<Item*>::Revoke(&items[i]);
          BAGPIPE_FUZZ_CHECK(got == in_queue[i], "Revoke(item %d) = %d, "
                             "queued: %d", i, got, in_queue[i]);
          if (got) {
            in_queue[i] = false;
            ++g_counts.revokes;
            for (auto it = model.begin(); it != model.end(); ++it) {
              if (*it == i) {
                model.erase(it);
                break;
              }
            }
          }
          break;
        }
        case 2: {
          Item* p = nullptr;
          const PopStatus st = q.TryPop(&p);
          BAGPIPE_FUZZ_CHECK(st != PopStatus::kTransient, "TryPop transient");
          if (model.empty()) {
            BAGPIPE_FUZZ_CHECK(st == PopStatus::kEmpty,
                               "TryPop returned an item from an empty queue");
          } else {
            BAGPIPE_FUZZ_CHECK(st == PopStatus::kOk && p->id == model.front(),
                               "TryPop returned %d, the oldest queued item is "
                               "%d", st == PopStatus::kOk ? p->id : -1,
                               model.front());
            in_queue[p->id] = false;
            model.pop_front();
          }
          break;
        }
      }
    }
  }  // the destructor drops what is left and clears their handles
  for (int i = 0; i < kItems; ++i) {
    BAGPIPE_FUZZ_CHECK(items[i].h.load() == 0,
                       "item %d keeps a handle after the queue is gone", i);
  }
}

void BagpipeFuzzOne(const std::uint8_t* data, std::size_t size) {
  Reader r(data, size);
  switch (r.Byte() % 4) {
    case 0:
      FuzzBagpipeMultiset(r);
      break;
    case 1:
      FuzzFaaQueueFifo(r);
      break;
    case 2:
      FuzzRevocableBag(r);
      break;
    case 3:
      FuzzRevocableFifo(r);
      break;
  }
}

}  // namespace
}  // namespace bagpipe

#ifdef ALLOCATORS_LIBFUZZER

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data,
                                      std::size_t size) {
  bagpipe::BagpipeFuzzOne(data, size);
  return 0;
}

#else  // !ALLOCATORS_LIBFUZZER

namespace bagpipe {
namespace {

std::vector<std::uint8_t> RandomInput(std::uint64_t s, std::size_t n) {
  std::vector<std::uint8_t> v(n);
  std::uint64_t x = s * 0x2545f4914f6cdd1dULL;
  for (std::size_t i = 0; i < n; ++i) {
    x += 0x9e3779b97f4a7c15ULL;
    std::uint64_t z = x;
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    v[i] = static_cast<std::uint8_t>(z ^ (z >> 31));
  }
  return v;
}

std::uint64_t Inputs() {
  const char* e = std::getenv("BAGPIPE_FUZZ_INPUTS");
  if (e != nullptr && e[0] != '\0') return std::strtoull(e, nullptr, 10);
#if defined(THREAD_SANITIZER)
  return 600;
#else
  return 3000;
#endif
}

// Each scenario gets its share of seeded inputs (the first byte picks it).
TEST(BagpipeFuzzTest, SeededRandomInputs) {
  const std::uint64_t n = Inputs();
  for (std::uint64_t s = 1; s <= n; ++s) {
    std::vector<std::uint8_t> in =
        RandomInput(s, 32 + (s * 0x9e3779b97f4a7c15ULL >> 53));
    in[0] = static_cast<std::uint8_t>(s % 4);
    BagpipeFuzzOne(in.data(), in.size());
  }
  const Counts& c = g_counts;
  std::printf("operations per scenario %llu %llu %llu %llu; %llu pops "
              "matched, %llu empty pops, %llu revokes, %llu items cleaned up, "
              "largest bag %llu\n",
              static_cast<unsigned long long>(c.ops[0]),
              static_cast<unsigned long long>(c.ops[1]),
              static_cast<unsigned long long>(c.ops[2]),
              static_cast<unsigned long long>(c.ops[3]),
              static_cast<unsigned long long>(c.pops),
              static_cast<unsigned long long>(c.empties),
              static_cast<unsigned long long>(c.revokes),
              static_cast<unsigned long long>(c.cleaned),
              static_cast<unsigned long long>(c.max_size));
  for (std::uint64_t ops : c.ops) EXPECT_GT(ops, 10 * n / 4);
  EXPECT_GT(c.pops, n);
  EXPECT_GT(c.empties, n / 8);
  EXPECT_GT(c.revokes, n / 8);
  EXPECT_GT(c.cleaned, 0u);
  EXPECT_GT(c.max_size, 2 * FaaQueue<std::uint64_t>::kSegmentSize);
}

// Forced epoch collection: segments retired by the FIFO scenarios are
// recycled at once, so reuse of a recycled segment is exercised too.
TEST(BagpipeFuzzTest, SeededRandomInputsWithEagerReclamation) {
  epoch::SetCollectThresholdForTesting(1);
  const std::uint64_t n = Inputs() / 4;
  for (std::uint64_t s = 1; s <= n; ++s) {
    std::vector<std::uint8_t> in = RandomInput(s + 1000000, 4096);
    in[0] = static_cast<std::uint8_t>(s % 4);
    BagpipeFuzzOne(in.data(), in.size());
  }
}

}  // namespace
}  // namespace bagpipe

#endif  // ALLOCATORS_LIBFUZZER
