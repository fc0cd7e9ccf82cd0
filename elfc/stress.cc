// elfc/stress.cc: a multi-threaded, checksummed producer/consumer stress
// of the process's malloc (run under LD_PRELOAD=libelfc.so by
// //elfc:stress_test; a plain C++ program, it runs on any malloc).
//
// Producers allocate blocks of many sizes (1 B .. 1 MiB + 64 KiB, mostly
// small, see MixedSize) through every allocation entry point (malloc, calloc,
// realloc-grown, posix_memalign, aligned_alloc, memalign, operator new,
// operator new[]), check what the API promises (calloc zeroes, alignment,
// malloc_usable_size >= request, realloc keeps the prefix), fill each block
// with a pattern keyed by its address and a seed, and hand it to a consumer
// through a bounded queue. Consumers check the pattern (any overlap with
// another live block, double hand-out, or write after free by the allocator
// shows up as a mismatch), sometimes realloc the block (grow or shrink; the
// common prefix must survive, then the block is refilled for its new
// address), and either free it or send it back to a producer to be checked
// and freed there. So almost every block is freed by a thread other than the
// one that allocated it, which is the path a thread-caching allocator gets
// wrong. Every block is accounted for: produced == consumed == freed.
//
// Usage: stress [--producers=N] [--consumers=N] [--objects=N]
//   --objects is per producer (default 40000), multiplied by
//   ELFC_STRESS_SCALE (e.g. --test_env=ELFC_STRESS_SCALE=10 for a soak).
#include <errno.h>
#include <malloc.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <atomic>
#include <condition_variable>
#include <cstddef>
#include <cstdint>
#include <mutex>
#include <new>

#include "elfc/preload_test_util.h"

namespace {

using elfc::test::CheckPattern;
using elfc::test::FillPattern;
using elfc::test::PatternKey;
using elfc::test::Rng;

constexpr std::size_t kMaxLarge = (std::size_t{1} << 20) + 64 * 1024;

enum class Kind : std::uint32_t {
  kMalloc,
  kCalloc,
  kRealloc,  // malloc'd small, then realloc'd up to the size
  kPosixMemalign,
  kAlignedAlloc,
  kMemalign,
  kNew,       // ::operator new(size), freed with sized ::operator delete
  kNewArray,  // new unsigned char[size], freed with delete[]
  kCount,
};

struct Item {
  void* p;
  std::size_t size;
  std::uint64_t key;  // PatternKey at fill time
  Kind kind;
  std::uint32_t producer;
};

// A bounded blocking MPMC queue. Its ring is a fixed array, so the queue
// itself never allocates while the test runs.
class Queue {
 public:
  static constexpr int kCapacity = 64;

  void Push(const Item& item) {
    std::unique_lock<std::mutex> lock(mu_);
    not_full_.wait(lock, [&] { return count_ < kCapacity; });
    PushLocked(item);
    lock.unlock();
    not_empty_.notify_one();
  }
  bool TryPush(const Item& item) {
    std::unique_lock<std::mutex> lock(mu_);
    if (count_ == kCapacity) return false;
    PushLocked(item);
    lock.unlock();
    not_empty_.notify_one();
    return true;
  }
  // Blocks until an item arrives or the queue is closed and empty.
  bool Pop(Item* out) {
    std::unique_lock<std::mutex> lock(mu_);
    not_empty_.wait(lock, [&] { return count_ > 0 || closed_; });
    if (count_ == 0) return false;
    PopLocked(out);
    lock.unlock();
    not_full_.notify_one();
    return true;
  }
  bool TryPop(Item* out) {
    std::unique_lock<std::mutex> lock(mu_);
    if (count_ == 0) return false;
    PopLocked(out);
    lock.unlock();
    not_full_.notify_one();
    return true;
  }
  void Close() {
    std::lock_guard<std::mutex> lock(mu_);
    closed_ = true;
    not_empty_.notify_all();
  }

 private:
  void PushLocked(const Item& item) {
    ring_[(head_ + count_) % kCapacity] = item;
    ++count_;
  }
  void PopLocked(Item* out) {
    *out = ring_[head_];
    head_ = (head_ + 1) % kCapacity;
    --count_;
  }

  std::mutex mu_;
  std::condition_variable not_empty_;
  std::condition_variable not_full_;
  Item ring_[kCapacity];
  int head_ = 0;
  int count_ = 0;
  bool closed_ = false;
};

Queue g_to_consumers;
Queue g_back_to_producers;
std::atomic<std::uint64_t> g_produced{0};
std::atomic<std::uint64_t> g_consumed{0};
std::atomic<std::uint64_t> g_freed{0};
std::atomic<std::uint64_t> g_reallocs{0};
std::atomic<std::uint64_t> g_bytes_checked{0};

void CheckItem(const Item& it, const char* where) {
  const std::size_t bad = CheckPattern(it.p, it.size, it.key);
  ELFC_CHECK(bad == SIZE_MAX,
             "%s: block %p of %zu bytes (kind %u, producer %u) corrupted at "
             "offset %zu",
             where, it.p, it.size, static_cast<unsigned>(it.kind), it.producer,
             bad);
  g_bytes_checked.fetch_add(it.size, std::memory_order_relaxed);
}

void FreeItem(const Item& it) {
  switch (it.kind) {
    case Kind::kNew:
      ::operator delete(it.p, it.size);
      break;
    case Kind::kNewArray:
      delete[] static_cast<unsigned char*>(it.p);
      break;
    default:
      free(it.p);
      break;
  }
  g_freed.fetch_add(1, std::memory_order_relaxed);
}

std::size_t RandomAlignment(Rng& rng) {
  return std::size_t{16} << rng.Below(9);  // 16 .. 4096
}

void CheckAligned(const void* p, std::size_t align, const char* what) {
  ELFC_CHECK(reinterpret_cast<std::uintptr_t>(p) % align == 0,
             "%s returned %p, not aligned to %zu", what, p, align);
}

Item Produce(Rng& rng, std::uint32_t producer) {
  Item it;
  it.size = elfc::test::MixedSize(rng, kMaxLarge);
  it.kind = static_cast<Kind>(rng.Below(static_cast<std::uint64_t>(Kind::kCount)));
  it.producer = producer;
  switch (it.kind) {
    case Kind::kMalloc:
      it.p = malloc(it.size);
      break;
    case Kind::kCalloc: {
      // Split the size into n * m to exercise the multiplication.
      const std::size_t m = (it.size % 4 == 0) ? 4 : 1;
      it.p = calloc(it.size / m, m);
      ELFC_CHECK(it.p != nullptr, "calloc(%zu, %zu)", it.size / m, m);
      const unsigned char* b = static_cast<const unsigned char*>(it.p);
      for (std::size_t i = 0; i < it.size; ++i) {
        ELFC_CHECK(b[i] == 0, "calloc(%zu) block %p byte %zu is %u", it.size,
                   it.p, i, b[i]);
      }
      break;
    }
    case Kind::kRealloc: {
      // Start small, fill, grow in steps: every step must keep the prefix.
      std::size_t have = 1 + rng.Below(64);
      void* p = malloc(have);
      ELFC_CHECK(p != nullptr, "malloc(%zu)", have);
      std::uint64_t key = PatternKey(p, rng.Next());
      FillPattern(p, have, key);
      while (have < it.size) {
        std::size_t next = have * (2 + rng.Below(8));
        if (next > it.size) next = it.size;
        const std::uintptr_t old = reinterpret_cast<std::uintptr_t>(p);
        void* q = realloc(p, next);
        ELFC_CHECK(q != nullptr, "realloc(%#zx, %zu)", old, next);
        const std::size_t bad = CheckPattern(q, have, key);
        ELFC_CHECK(bad == SIZE_MAX,
                   "realloc %zu -> %zu lost the prefix at offset %zu", have,
                   next, bad);
        key = PatternKey(q, rng.Next());
        FillPattern(q, next, key);
        p = q;
        have = next;
        g_reallocs.fetch_add(1, std::memory_order_relaxed);
      }
      it.p = p;
      break;
    }
    case Kind::kPosixMemalign: {
      const std::size_t align = RandomAlignment(rng);
      void* p = nullptr;
      const int rc = posix_memalign(&p, align, it.size);
      ELFC_CHECK(rc == 0, "posix_memalign(%zu, %zu) = %d", align, it.size, rc);
      CheckAligned(p, align, "posix_memalign");
      it.p = p;
      break;
    }
    case Kind::kAlignedAlloc: {
      const std::size_t align = RandomAlignment(rng);
      it.size = (it.size + align - 1) / align * align;  // C11: a multiple
      it.p = aligned_alloc(align, it.size);
      ELFC_CHECK(it.p != nullptr, "aligned_alloc(%zu, %zu)", align, it.size);
      CheckAligned(it.p, align, "aligned_alloc");
      break;
    }
    case Kind::kMemalign: {
      const std::size_t align = RandomAlignment(rng);
      it.p = memalign(align, it.size);
      ELFC_CHECK(it.p != nullptr, "memalign(%zu, %zu)", align, it.size);
      CheckAligned(it.p, align, "memalign");
      break;
    }
    case Kind::kNew:
      it.p = ::operator new(it.size);
      break;
    case Kind::kNewArray:
      it.p = new unsigned char[it.size];
      break;
    case Kind::kCount:
      abort();
  }
  ELFC_CHECK(it.p != nullptr, "allocation of %zu bytes (kind %u) failed",
             it.size, static_cast<unsigned>(it.kind));
  // Every block from malloc & co. is aligned for any fundamental type.
  CheckAligned(it.p, it.size >= 16 ? 16 : 8, "allocation");
  if (it.kind != Kind::kNew && it.kind != Kind::kNewArray) {
    const std::size_t usable = malloc_usable_size(it.p);
    ELFC_CHECK(usable >= it.size,
               "malloc_usable_size(%p) = %zu < requested %zu (kind %u)", it.p,
               usable, it.size, static_cast<unsigned>(it.kind));
  }
  it.key = PatternKey(it.p, rng.Next());
  FillPattern(it.p, it.size, it.key);
  g_produced.fetch_add(1, std::memory_order_relaxed);
  return it;
}

struct ProducerArgs {
  std::uint32_t id;
  std::uint64_t objects;
};

void DrainReturns() {
  Item it;
  while (g_back_to_producers.TryPop(&it)) {
    CheckItem(it, "producer (returned block)");
    FreeItem(it);
  }
}

void* ProducerMain(void* arg) {
  const ProducerArgs* a = static_cast<const ProducerArgs*>(arg);
  Rng rng(0x5eed0000ULL + a->id);
  for (std::uint64_t i = 0; i < a->objects; ++i) {
    g_to_consumers.Push(Produce(rng, a->id));
    if (i % 8 == 0) DrainReturns();
  }
  DrainReturns();
  return nullptr;
}

void* ConsumerMain(void* arg) {
  Rng rng(0xc0c0ULL + reinterpret_cast<std::uintptr_t>(arg));
  Item it;
  while (g_to_consumers.Pop(&it)) {
    g_consumed.fetch_add(1, std::memory_order_relaxed);
    CheckItem(it, "consumer");
    const bool reallocable = it.kind != Kind::kNew && it.kind != Kind::kNewArray;
    if (reallocable && rng.Below(3) == 0) {
      // Grow or shrink (to as little as 1 byte, or up to 4x).
      std::size_t next = rng.Below(2) == 0
                             ? 1 + rng.Below(it.size)
                             : it.size + 1 + rng.Below(3 * it.size + 1);
      if (next > kMaxLarge) next = kMaxLarge;
      const std::uintptr_t old = reinterpret_cast<std::uintptr_t>(it.p);
      void* q = realloc(it.p, next);
      ELFC_CHECK(q != nullptr, "realloc(%#zx, %zu)", old, next);
      const std::size_t keep = next < it.size ? next : it.size;
      const std::size_t bad = CheckPattern(q, keep, it.key);
      ELFC_CHECK(bad == SIZE_MAX,
                 "consumer realloc %zu -> %zu (%#zx -> %p) lost byte %zu",
                 it.size, next, old, q, bad);
      ELFC_CHECK(malloc_usable_size(q) >= next, "usable %zu < %zu after realloc",
                 malloc_usable_size(q), next);
      it.p = q;
      it.size = next;
      it.kind = Kind::kMalloc;  // now an ordinary malloc block
      it.key = PatternKey(q, rng.Next());
      FillPattern(q, next, it.key);
      g_reallocs.fetch_add(1, std::memory_order_relaxed);
    }
    if (rng.Below(2) == 0 && g_back_to_producers.TryPush(it)) continue;
    FreeItem(it);
  }
  return nullptr;
}

std::uint64_t ParseFlag(int argc, char** argv, const char* name,
                        std::uint64_t def) {
  const std::size_t len = strlen(name);
  for (int i = 1; i < argc; ++i) {
    if (strncmp(argv[i], name, len) == 0 && argv[i][len] == '=') {
      return strtoull(argv[i] + len + 1, nullptr, 10);
    }
  }
  return def;
}

}  // namespace

int main(int argc, char** argv) {
  elfc::test::CheckPreload("stress");
  const int scale = elfc::test::StressScale();
  elfc::test::StartWatchdog(120u * static_cast<unsigned>(scale), "stress");
  const std::uint64_t producers = ParseFlag(argc, argv, "--producers", 2);
  const std::uint64_t consumers = ParseFlag(argc, argv, "--consumers", 2);
  const std::uint64_t objects =
      ParseFlag(argc, argv, "--objects", 40000) * static_cast<std::uint64_t>(scale);
  ELFC_CHECK(producers >= 1 && producers <= 64 && consumers >= 1 &&
                 consumers <= 64,
             "bad thread counts %llu/%llu",
             static_cast<unsigned long long>(producers),
             static_cast<unsigned long long>(consumers));

  pthread_t ptids[64];
  pthread_t ctids[64];
  ProducerArgs pargs[64];
  for (std::uint64_t i = 0; i < consumers; ++i) {
    ELFC_CHECK(pthread_create(&ctids[i], nullptr, ConsumerMain,
                              reinterpret_cast<void*>(i)) == 0,
               "pthread_create");
  }
  for (std::uint64_t i = 0; i < producers; ++i) {
    pargs[i] = {static_cast<std::uint32_t>(i), objects};
    ELFC_CHECK(pthread_create(&ptids[i], nullptr, ProducerMain, &pargs[i]) == 0,
               "pthread_create");
  }
  for (std::uint64_t i = 0; i < producers; ++i) pthread_join(ptids[i], nullptr);
  g_to_consumers.Close();
  for (std::uint64_t i = 0; i < consumers; ++i) pthread_join(ctids[i], nullptr);
  DrainReturns();  // what consumers sent back after the producers finished

  const std::uint64_t want = producers * objects;
  ELFC_CHECK(g_produced.load() == want, "produced %llu of %llu",
             static_cast<unsigned long long>(g_produced.load()),
             static_cast<unsigned long long>(want));
  ELFC_CHECK(g_consumed.load() == want, "consumed %llu of %llu",
             static_cast<unsigned long long>(g_consumed.load()),
             static_cast<unsigned long long>(want));
  ELFC_CHECK(g_freed.load() == want, "freed %llu of %llu",
             static_cast<unsigned long long>(g_freed.load()),
             static_cast<unsigned long long>(want));
  printf("stress: PASS %llu producers x %llu objects, %llu consumers, "
         "%llu reallocs, %llu MiB checked, rss %zu MiB\n",
         static_cast<unsigned long long>(producers),
         static_cast<unsigned long long>(objects),
         static_cast<unsigned long long>(consumers),
         static_cast<unsigned long long>(g_reallocs.load()),
         static_cast<unsigned long long>(g_bytes_checked.load() >> 20),
         elfc::test::ResidentBytes() >> 20);
  return 0;
}
