// epoch.cc: thread records, advancing, limbo lists and the orphan list of the
// epoch-based reclamation scheme described in epoch.h.
#include "bagpipe/epoch.h"

#include <linux/membarrier.h>
#include <pthread.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <atomic>
#include <cstdint>
#include <new>

#include "absl/base/attributes.h"
#include "absl/base/internal/raw_logging.h"
#include "bsalloc/bsalloc.h"

namespace bagpipe {
namespace epoch {
namespace internal {

ABSL_CONST_INIT thread_local Record* tls_record
    __attribute__((tls_model("initial-exec"))) = nullptr;

namespace {

// Push-only list of every record ever allocated. Records are never freed, so
// advancers can walk it without protection.
ABSL_CONST_INIT std::atomic<Record*> g_records{nullptr};

// Garbage left behind by exited threads: a lock-free stack of RetireNodes
// linked through `next`. Drained with exchange(nullptr), so there is no ABA:
// a pusher's CAS only ever links its own private chain in front of the head.
ABSL_CONST_INIT std::atomic<RetireNode*> g_orphans{nullptr};

ABSL_CONST_INIT std::atomic<std::uint64_t> g_retired{0};
ABSL_CONST_INIT std::atomic<std::uint64_t> g_freed{0};
ABSL_CONST_INIT std::atomic<std::uint64_t> g_leaked{0};
ABSL_CONST_INIT std::atomic<std::uint64_t> g_record_count{0};
ABSL_CONST_INIT std::atomic<std::uint64_t> g_collections{0};

// pthread key whose destructor releases the record at thread exit. Created
// once; key 0 is a valid key, so creation state lives in its own word
// (0 = not created, 1 = creating, 2 = ready, 3 = failed).
ABSL_CONST_INIT std::atomic<int> g_key_state{0};
ABSL_CONST_INIT pthread_key_t g_key = 0;

void PushOrphans(RetireNode* head, RetireNode* tail) {
  RetireNode* old = g_orphans.load(std::memory_order_relaxed);
  do {
    tail->next = old;
  } while (!g_orphans.compare_exchange_weak(old, head,
                                            std::memory_order_release,
                                            std::memory_order_relaxed));
}

// Frees the limbo entries of `r` that are ready, oldest first. free_at values
// are nondecreasing along the list except where graces differ, so stopping at
// the first unready entry is conservative, never unsafe.
void CollectLimbo(Record* r, std::uint64_t now) {
  std::size_t freed = 0;
  while (r->limbo_head != nullptr && r->limbo_head->free_at <= now) {
    RetireNode* n = r->limbo_head;
    r->limbo_head = n->next;
    --r->limbo_count;
    n->free_fn(n);
    ++freed;
  }
  if (r->limbo_head == nullptr) r->limbo_tail = nullptr;
  if (freed != 0) g_freed.fetch_add(freed, std::memory_order_relaxed);
}

void CollectOrphans(std::uint64_t now) {
  if (g_orphans.load(std::memory_order_relaxed) == nullptr) return;
  RetireNode* list = g_orphans.exchange(nullptr, std::memory_order_acquire);
  RetireNode* keep_head = nullptr;
  RetireNode* keep_tail = nullptr;
  std::size_t freed = 0;
  while (list != nullptr) {
    RetireNode* n = list;
    list = n->next;
    if (n->free_at <= now) {
      n->free_fn(n);
      ++freed;
    } else {
      n->next = keep_head;
      keep_head = n;
      if (keep_tail == nullptr) keep_tail = n;
    }
  }
  if (freed != 0) g_freed.fetch_add(freed, std::memory_order_relaxed);
  if (keep_head != nullptr) PushOrphans(keep_head, keep_tail);
}

bool EnsureKey();

long Membarrier(int cmd) {
  return syscall(__NR_membarrier, cmd, 0, 0);
}

// Decides once whether pins may skip their fence (epoch.h, "Asymmetric
// fences"). Called while creating the pthread key, i.e. before any record
// exists, so no thread can have pinned under a different decision.
void InitAsymmetric() {
#if !defined(THREAD_SANITIZER)
  const long cmds = Membarrier(MEMBARRIER_CMD_QUERY);
  if (cmds >= 0 && (cmds & MEMBARRIER_CMD_PRIVATE_EXPEDITED) != 0 &&
      (cmds & MEMBARRIER_CMD_REGISTER_PRIVATE_EXPEDITED) != 0 &&
      Membarrier(MEMBARRIER_CMD_REGISTER_PRIVATE_EXPEDITED) == 0) {
    pin_globals.asymmetric.store(true, std::memory_order_release);
  }
#endif
}

// F_A of the protocol. false: the heavy barrier failed, so advancing is not
// safe (never expected once registration succeeded).
bool AdvancerFence() {
  if (pin_globals.asymmetric.load(std::memory_order_acquire)) {
    if (Membarrier(MEMBARRIER_CMD_PRIVATE_EXPEDITED) != 0) {
      ABSL_RAW_LOG(ERROR, "bagpipe::epoch: membarrier failed; not advancing");
      return false;
    }
  }
  SeqCstFence();
  return true;
}

// One attempt to move the global epoch from e to e + 1 (see epoch.h).
void TryAdvance() {
  // The asymmetric decision must be final before we rely on it.
  if (!EnsureKey()) return;
  std::uint64_t e = pin_globals.epoch.load(std::memory_order_seq_cst);
  if (!AdvancerFence()) return;
  for (Record* r = g_records.load(std::memory_order_acquire); r != nullptr;
       r = r->next_record) {
    const std::uint64_t s = r->state.load(std::memory_order_acquire);
    if ((s & 1) != 0 && (s >> 1) != e) return;
  }
  pin_globals.epoch.compare_exchange_strong(e, e + 1,
                                            std::memory_order_seq_cst,
                                            std::memory_order_relaxed);
}

void CollectWith(Record* r) {
  g_collections.fetch_add(1, std::memory_order_relaxed);
  TryAdvance();
  const std::uint64_t now = pin_globals.epoch.load(std::memory_order_acquire);
  if (r != nullptr) CollectLimbo(r, now);
  CollectOrphans(now);
}

// Thread-exit hook: hands the remaining garbage to the orphan list and frees
// the record for reuse. Allocation-free. If the thread pins again after this
// (another key's destructor), it acquires a record and re-registers the key,
// and glibc runs this destructor again.
void ReleaseRecord(void* arg) {
  Record* r = static_cast<Record*>(arg);
  if (r->nest != 0) {
    // Exiting while pinned is a caller bug; keep the record claimed (and the
    // epoch blocked) rather than let a later thread inherit a pinned state.
    ABSL_RAW_LOG(ERROR, "bagpipe::epoch: thread exited while pinned");
    return;
  }
  CollectWith(r);
  if (r->limbo_head != nullptr) {
    PushOrphans(r->limbo_head, r->limbo_tail);
    r->limbo_head = r->limbo_tail = nullptr;
    r->limbo_count = 0;
  }
  r->pins = 0;
  r->retired_in_period = false;
  tls_record = nullptr;
  r->in_use.store(false, std::memory_order_release);
}

void ChildAfterFork() { AfterForkInChild(); }

bool EnsureKey() {
  int s = g_key_state.load(std::memory_order_acquire);
  if (ABSL_PREDICT_TRUE(s == 2)) return true;
  if (s == 0 && g_key_state.compare_exchange_strong(
                    s, 1, std::memory_order_acq_rel)) {
    InitAsymmetric();
    const bool ok = pthread_key_create(&g_key, &ReleaseRecord) == 0;
    g_key_state.store(ok ? 2 : 3, std::memory_order_release);
    // After publishing the key: glibc's pthread_atfork keeps its first 48
    // handlers in static storage (no malloc), and even if it allocated, a
    // malloc built on bagpipe would find the key ready. Failure (ENOMEM)
    // only loses the fork clean-up (see AfterForkInChild).
    if (ok) pthread_atfork(nullptr, nullptr, &ChildAfterFork);
    return ok;
  }
  while ((s = g_key_state.load(std::memory_order_acquire)) == 1) {
  }
  return s == 2;
}

}  // namespace

// Records made at once: a page's worth (bsalloc's smallest block).
constexpr std::size_t kRecordsPerChunk = 4096 / sizeof(Record);
static_assert(kRecordsPerChunk >= 1);

Record* AcquireRecord() noexcept {
  if (!EnsureKey()) return nullptr;
  Record* r = nullptr;
  for (Record* c = g_records.load(std::memory_order_acquire); c != nullptr;
       c = c->next_record) {
    if (!c->in_use.load(std::memory_order_relaxed) &&
        !c->in_use.exchange(true, std::memory_order_acquire)) {
      r = c;
      break;
    }
  }
  if (r == nullptr) {
    // A page of records at a time (kRecordsPerChunk), the first for this
    // thread and the rest free for the next threads: bsalloc hands out
    // whole pages, so a record alone took 4 KiB of every thread's memory.
    void* mem = bsalloc::Allocate(kRecordsPerChunk * sizeof(Record));
    if (mem == nullptr) return nullptr;
    Record* chunk = static_cast<Record*>(mem);
    const auto base = static_cast<std::uint32_t>(
        g_record_count.fetch_add(kRecordsPerChunk, std::memory_order_relaxed));
    for (std::size_t i = 0; i < kRecordsPerChunk; ++i) {
      Record* c = new (&chunk[i]) Record();
      c->index = base + static_cast<std::uint32_t>(i);
      if (i + 1 < kRecordsPerChunk) c->next_record = &chunk[i + 1];
    }
    r = &chunk[0];
    r->in_use.store(true, std::memory_order_relaxed);
    Record* last = &chunk[kRecordsPerChunk - 1];
    Record* head = g_records.load(std::memory_order_relaxed);
    do {
      last->next_record = head;
    } while (!g_records.compare_exchange_weak(head, r,
                                              std::memory_order_release,
                                              std::memory_order_relaxed));
  }
  // Keys below PTHREAD_KEY_2NDLEVEL_SIZE (32) make this allocation-free in
  // glibc; this key is created at the first pin, normally among the first.
  if (pthread_setspecific(g_key, r) != 0) {
    r->in_use.store(false, std::memory_order_release);
    return nullptr;
  }
  tls_record = r;
  return r;
}

void SlowPinWork(Record* r) noexcept {
  r->pins = 0;
  // Still retiring: the retire path collects once per threshold retires.
  if (r->retired_in_period) {
    r->retired_in_period = false;
    return;
  }
  // Advancing costs a membarrier() in asymmetric mode: only bother when this
  // thread or an exited one left garbage.
  if (r->limbo_head != nullptr ||
      g_orphans.load(std::memory_order_relaxed) != nullptr) {
    CollectWith(r);
  }
}

}  // namespace internal

void AfterForkInChild() noexcept {
  using internal::Record;
  Record* self = internal::tls_record;
  for (Record* r = internal::g_records.load(std::memory_order_acquire);
       r != nullptr; r = r->next_record) {
    if (r == self || !r->in_use.load(std::memory_order_relaxed)) continue;
    // Its owner does not exist in this process: nobody else touches it.
    r->nest = 0;
    r->pins = 0;
    r->limbo_head = r->limbo_tail = nullptr;
    r->limbo_count = 0;
    r->retires_since_collect = 0;
    r->retired_in_period = false;
    r->state.store(0, std::memory_order_relaxed);
    r->in_use.store(false, std::memory_order_release);
  }
}

void Retire(RetireNode* node, std::uint64_t grace) noexcept {
  using internal::Record;
  Record* r = internal::tls_record;
  if (r == nullptr) r = internal::AcquireRecord();
  internal::g_retired.fetch_add(1, std::memory_order_relaxed);
  if (r == nullptr) {
    internal::g_leaked.fetch_add(1, std::memory_order_relaxed);
    return;
  }
  if (grace < kDefaultGrace) grace = kDefaultGrace;
  // F_R of the protocol: orders the caller's unlink before the epoch read.
  internal::SeqCstFence();
  node->free_at =
      internal::pin_globals.epoch.load(std::memory_order_seq_cst) + grace;
  node->next = nullptr;
  if (r->limbo_tail == nullptr) {
    r->limbo_head = node;
  } else {
    r->limbo_tail->next = node;
  }
  r->limbo_tail = node;
  ++r->limbo_count;
  r->retired_in_period = true;
  if (++r->retires_since_collect >=
      internal::pin_globals.collect_threshold.load(std::memory_order_relaxed)) {
    r->retires_since_collect = 0;
    internal::CollectWith(r);
  }
}

void Collect() noexcept { internal::CollectWith(internal::tls_record); }

std::uint32_t ThreadIndex() noexcept {
  internal::Record* r = internal::tls_record;
  if (r == nullptr) r = internal::AcquireRecord();
  return r == nullptr ? ~std::uint32_t{0} : r->index;
}

std::uint64_t CurrentEpoch() noexcept {
  return internal::pin_globals.epoch.load(std::memory_order_acquire);
}

Stats GetStats() noexcept {
  Stats s;
  s.retired = internal::g_retired.load(std::memory_order_relaxed);
  s.freed = internal::g_freed.load(std::memory_order_relaxed);
  s.leaked = internal::g_leaked.load(std::memory_order_relaxed);
  s.records = internal::g_record_count.load(std::memory_order_relaxed);
  s.collections = internal::g_collections.load(std::memory_order_relaxed);
  return s;
}

void SetCollectThresholdForTesting(std::uint32_t n) noexcept {
  internal::pin_globals.collect_threshold.store(n == 0 ? 1 : n,
                                               std::memory_order_relaxed);
}

void DrainForTesting() noexcept {
  // Enough advances for the largest grace in use (4) plus slack.
  for (int i = 0; i < 16; ++i) internal::CollectWith(internal::tls_record);
}

}  // namespace epoch
}  // namespace bagpipe
