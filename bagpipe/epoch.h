// epoch: allocation-free epoch-based reclamation (EBR) for bagpipe's lock-free
// structures.
//
// Lock-free queues and stacks unlink a segment or node while other threads may
// still be reading it. EBR defers the free until no thread can still hold a
// pointer to it. Readers announce themselves by *pinning* (a Guard) around
// every operation that dereferences shared nodes; writers *retire* what they
// have unlinked; retired memory is freed once the global epoch has advanced far
// enough that every thread pinned at the time of the unlink has unpinned.
//
// Everything here is usable from inside a malloc implementation: no malloc, no
// exceptions, no static constructors (all globals are constinit), thread
// records come from bsalloc and are reused after their thread exits, and the
// thread-exit hook (a pthread key destructor) does not allocate. Garbage is
// intrusive (each retired object embeds a RetireNode), so retiring never
// allocates either.
//
// ## Protocol
//
// State: a global epoch counter G (only ever incremented, by CAS), and one
// Record per thread holding `state` = (epoch << 1) | active.
//
// * Pin (outermost Guard): e = G.load(seq_cst); state.exchange((e << 1) | 1,
//   seq_cst); then a seq_cst fence F_T (on x86 the locked exchange already is a
//   full barrier and the fence is omitted, as crossbeam-epoch does). Nested
//   guards only bump a thread-private counter.
// * Unpin (outermost Guard ends): state.store(e << 1, release).
// * Advance: e = G.load(seq_cst); seq_cst fence F_A; for every record, if it is
//   active with an epoch != e, give up; otherwise CAS G from e to e + 1.
//   So G can only move from e to e + 1 while every pinned thread is at e, and
//   while a thread stays pinned at p, G <= p + 1.
// * Retire(node): the caller has already made the object unreachable from the
//   structure's roots (the unlink U). Retire runs a seq_cst fence F_R, reads
//   t = G (seq_cst) and files the node in the calling thread's limbo list with
//   free_at = t + grace (grace >= 2).
// * Collect: frees the limbo entries whose free_at <= G.
//
// Why a retired object is unreachable for every pinned reader when it is freed
// (grace 2): freeing needs advances A1 (t -> t+1) and A2 (t+1 -> t+2). Take a
// thread T that is pinned when the object is freed, having pinned with global
// load g and fence F_T.
//   - If g >= t + 1, A1's CAS precedes T's load of G in the single total order
//     S, so U -> F_R -> (load of t) -> A1 -> (T's load) -> F_T in S.
//   - If g <= t, T stored an epoch != t + 1, so A2 did not see T's pin store;
//     by the fence rules F_A2 precedes F_T in S, and again U -> F_R precedes
//     F_T in S.
// Either way F_R precedes F_T in S, and U is sequenced before F_R, so every
// load T makes after pinning observes the unlink (or something later): T
// cannot find the object through the structure. Threads that pinned *before*
// the unlink block A2 (they are at an epoch <= t) until they unpin.
//
// A larger grace covers *secondary* paths that are removed only by threads
// which themselves are pinned at an epoch <= t + grace - 3 (for example the
// revocation handles of faa_queue.h, cleared by the popper or the winning
// revoker after the segment has been unlinked); see the users for their
// argument.
//
// ## Asymmetric fences
// Where the kernel offers membarrier(MEMBARRIER_CMD_PRIVATE_EXPEDITED) (Linux
// 4.14+), pins drop their fence (a plain release store plus a compiler
// barrier) and the advancer calls membarrier() in place of F_A. membarrier
// makes every running thread of the process execute a full barrier during the
// call (descheduled threads get one from the context switch), so for each
// pinned thread T there is a barrier F_T' in T's program order during the
// advancer's call: either T's pin store precedes F_T' and the advancer's scan
// (after the call) sees it, or T's later loads follow F_T', which follows the
// advancer's load of G and thus the unlink, exactly the two cases above. This
// is the asymmetric-barrier technique of liburcu's "memb" flavour and folly's
// asymmetric barriers. Advancing becomes expensive (a system call with IPIs),
// so advances are attempted only when a thread has garbage: when its limbo
// list reaches the threshold, or every kPinPeriodFactor * threshold pins while
// it holds any. TSan builds always use the symmetric protocol (TSan does not
// model membarrier).
//
// For ThreadSanitizer the happens-before edges are real acquire/release
// pairs: a thread's accesses are released by its unpin store (or by the next
// pin's exchange, a read-modify-write continuing the release sequence), read
// by the advancer's acquire scan, published by the CAS on G, and acquired by
// the collector's load of G before it frees.
//
// Garbage bounds: each thread attempts an advance + collection once per
// `threshold` retires, and every kPinPeriodFactor * threshold outermost pins
// while it holds garbage and has not retired anything during the previous such
// period (a thread that keeps retiring is served by the retire path; one that
// stops gets its garbage collected by the pin path within two periods). With
// grace g and no stalled thread, a limbo list therefore holds about
// (g + 1) * threshold entries at most. Entries left by exiting threads move to
// a global orphan list that every collection drains. Nothing can be freed while
// a thread stays pinned, so the bound holds only while threads keep moving.
#ifndef BAGPIPE_EPOCH_H_
#define BAGPIPE_EPOCH_H_

#include <atomic>
#include <cstddef>
#include <cstdint>

#include "absl/base/attributes.h"
#include "absl/base/optimization.h"

namespace bagpipe {
namespace epoch {

// Intrusive header embedded in every retired object. `free_fn` receives the
// node and must release the enclosing object; it runs on whichever thread
// collects, possibly while that thread is pinned, and must not pin-wait.
struct RetireNode {
  RetireNode* next = nullptr;
  void (*free_fn)(RetireNode*) = nullptr;
  std::uint64_t free_at = 0;
};

inline constexpr std::uint64_t kDefaultGrace = 2;

namespace internal {

// The seq_cst fences of the protocol. GCC refuses atomic_thread_fence under
// -fsanitize=thread (TSan does not model fences), so TSan builds use a seq_cst
// read-modify-write of one shared word instead: all such "fences" are then
// totally ordered and synchronise with each other, which is at least as
// strong as the fences for what the protocol relies on.
#if defined(THREAD_SANITIZER)
ABSL_CONST_INIT inline std::atomic<std::uint64_t> tsan_fence_word{0};
inline void SeqCstFence() noexcept {
  tsan_fence_word.fetch_add(0, std::memory_order_seq_cst);
}
#else
inline void SeqCstFence() noexcept {
  std::atomic_thread_fence(std::memory_order_seq_cst);
}
#endif

// One per thread that ever pinned or retired; never freed, reused by later
// threads once its owner exits. Cache-line sized so that pins do not false
// share.
struct alignas(64) Record {
  // (epoch << 1) | active. Written by the owner, read by advancers.
  std::atomic<std::uint64_t> state{0};
  // Claimed by exchange(true); released at thread exit.
  std::atomic<bool> in_use{false};
  // Immutable once the record is published on the global list.
  Record* next_record = nullptr;
  // Immutable once published: the record's position in allocation order.
  // Live threads hold distinct records, so their indices are distinct, and
  // small (a record is reused before a new one is made): see ThreadIndex.
  std::uint32_t index = 0;
  // Owner-only fields.
  std::uint32_t nest = 0;
  std::uint32_t pins = 0;
  std::uint64_t pinned_epoch = 0;
  RetireNode* limbo_head = nullptr;
  RetireNode* limbo_tail = nullptr;
  std::size_t limbo_count = 0;
  // Retires since the last collection attempt: attempts are made once per
  // threshold retires, not on every retire while the limbo list is long (an
  // attempt that cannot free anything must not be repeated at once; in
  // asymmetric mode each one is a system call).
  std::size_t retires_since_collect = 0;
  // Set by every Retire, cleared by the next pin-period check. A thread that
  // retired during the last pin period is collecting through the retire path
  // (once per threshold retires), so the pin path leaves it alone: otherwise
  // a thread that both pins and retires a lot (a FAA queue under a push/pop
  // loop retires a segment every 256 pops) would pay an advance, i.e. a
  // membarrier() system call with IPIs to every running thread of the
  // process, every period as well.
  bool retired_in_period = false;
};

// The calling thread's record, or nullptr before its first pin. Initial-exec
// TLS so that reading it never calls __tls_get_addr's allocating slow path.
ABSL_CONST_INIT extern thread_local Record* tls_record
    __attribute__((tls_model("initial-exec")));

Record* AcquireRecord() noexcept;
void SlowPinWork(Record* r) noexcept;  // periodic advance + collect

// The globals every pin reads, on a cache line of their own: the linker would
// otherwise place them next to frequently written words (pool heads, the
// retire/free statistics) and every pin would miss on that line.
struct alignas(64) PinGlobals {
  // The global epoch G; only ever incremented, by CAS in the advancer.
  std::atomic<std::uint64_t> epoch{0};
  // Limbo threshold; tests lower it to force reclamation. Pins attempt a
  // collection every kPinPeriodFactor * threshold pins when there is garbage
  // (and no retire in the previous period; see Record::retired_in_period).
  // 16: a collection tries one epoch advance, and a revocable FAA segment
  // needs four, so a thread held up to ~4 x threshold retired segments;
  // with 64, two producer-consumer pairs churning slabs through elfmalloc's
  // available bags kept 456 KiB of FAA segments resident, with 16 80 KiB
  // (retires come once per 256 queue operations, so the extra collections
  // cost nothing measurable).
  std::atomic<std::uint32_t> collect_threshold{16};
  // True once membarrier(MEMBARRIER_CMD_PRIVATE_EXPEDITED) is registered:
  // pins then skip their fence and advancers issue the heavy barrier instead
  // (see "Asymmetric fences" above). Set once, before the first pin that
  // reads it (AcquireRecord initialises it), never cleared. Always false
  // under TSan.
  std::atomic<bool> asymmetric{false};
};
static_assert(sizeof(PinGlobals) == 64);
ABSL_CONST_INIT inline PinGlobals pin_globals;
// The pin period is kPinPeriodFactor * threshold outermost pins (1024 with
// the default threshold). With 16 (256 pins), two threads churning slabs
// through elfmalloc's available bags (threadtest with 2 KiB blocks) held a
// little garbage at nearly every period's end and made ~3200 membarrier()
// calls a second, each an inter-processor interrupt for the other CPU
// (costly on virtual machines, where it is a VM exit); with 64 they make
// ~290, and run 8% faster (producer-consumer pairs 2-4%), for ~65 KiB more
// of garbage held (prodcons, 2 pairs: peak RSS +2%).
inline constexpr std::uint32_t kPinPeriodFactor = 64;

}  // namespace internal

// Pins the calling thread; nestable. Returns false only if no thread record
// could be allocated (out of memory), in which case the thread is NOT pinned
// and must not touch shared nodes.
ABSL_ATTRIBUTE_ALWAYS_INLINE inline bool Pin() noexcept {
  internal::Record* r = internal::tls_record;
  if (ABSL_PREDICT_FALSE(r == nullptr)) {
    r = internal::AcquireRecord();
    if (r == nullptr) return false;
  }
  if (r->nest++ == 0) {
    const std::uint64_t e =
        internal::pin_globals.epoch.load(std::memory_order_seq_cst);
    r->pinned_epoch = e;
#if !defined(THREAD_SANITIZER)
    if (ABSL_PREDICT_TRUE(
            internal::pin_globals.asymmetric.load(std::memory_order_relaxed))) {
      // The advancer's membarrier() supplies F_T; only the compiler must not
      // move the caller's loads above this store.
      r->state.store((e << 1) | 1, std::memory_order_release);
      std::atomic_signal_fence(std::memory_order_seq_cst);
    } else
#endif
    {
      r->state.exchange((e << 1) | 1, std::memory_order_seq_cst);
#if !defined(__x86_64__) && !defined(__i386__)
      internal::SeqCstFence();
#endif
    }
    if (ABSL_PREDICT_FALSE(
            ++r->pins >= internal::kPinPeriodFactor *
                             internal::pin_globals.collect_threshold.load(
                                 std::memory_order_relaxed))) {
      internal::SlowPinWork(r);
    }
  }
  return true;
}

// Ends the innermost pin of the calling thread. REQUIRES: Pin() returned true.
ABSL_ATTRIBUTE_ALWAYS_INLINE inline void Unpin() noexcept {
  internal::Record* r = internal::tls_record;
  if (--r->nest == 0) {
    r->state.store(r->pinned_epoch << 1, std::memory_order_release);
  }
}

// RAII pin. Check ok() where out-of-memory must be handled.
class Guard {
 public:
  Guard() noexcept : ok_(Pin()) {}
  ~Guard() {
    if (ok_) Unpin();
  }
  Guard(const Guard&) = delete;
  Guard& operator=(const Guard&) = delete;
  bool ok() const noexcept { return ok_; }

 private:
  bool ok_;
};

// Files `node` for freeing once no pinned thread can reach it (see the
// protocol). REQUIRES: the object is already unreachable from the structure's
// shared roots; free_fn is set. `grace` >= 2. Never allocates; if the thread
// has no record and none can be allocated, the node is leaked (counted in
// Stats::leaked) rather than freed unsafely.
void Retire(RetireNode* node, std::uint64_t grace = kDefaultGrace) noexcept;

// Tries to advance the global epoch once and frees whatever became safe in the
// calling thread's limbo list and in the orphan list.
void Collect() noexcept;

// fork(): only the forking thread survives in the child, but the records of
// the others stay on the list, and one of them may have been pinned at the
// moment of the fork: the epoch could then never advance in the child, and
// its garbage would grow without bound (a long-lived forked server would
// leak). So the child resets every record except its own thread's to
// unpinned and free, and abandons their limbo lists (a dead thread may have
// been in the middle of appending to one, so they are leaked, not walked:
// the loss is bounded by what was in limbo at the fork). The calling thread
// must not be pinned (fork is never called from inside a bagpipe
// operation). This runs automatically in the child: the first thread to use
// the scheme registers it with pthread_atfork. Exposed for callers that fork
// with the raw clone system call, which runs no atfork handlers.
void AfterForkInChild() noexcept;

// A small integer that no other live thread has: the index of the calling
// thread's record (made now if it has none). Threads that exit free theirs,
// and a new thread takes a free record before it makes more (a page of
// them at a time), so indices stay below the largest number of threads
// ever alive at once, rounded up to a page of records. Bagpipe gives
// each thread its own home queue with it. ~0u if no record could be
// allocated (out of memory).
std::uint32_t ThreadIndex() noexcept;

// Current global epoch (for tests and diagnostics).
std::uint64_t CurrentEpoch() noexcept;

struct Stats {
  std::uint64_t retired = 0;  // Retire calls
  std::uint64_t freed = 0;    // free_fn calls
  std::uint64_t leaked = 0;   // Retire calls without a record (OOM)
  std::uint64_t records = 0;  // thread records ever made (a page at a time)
  // Advance + collect attempts (each one a membarrier() system call in
  // asymmetric mode), from retires, pins, Collect() and thread exit.
  std::uint64_t collections = 0;
};
Stats GetStats() noexcept;

// Test hooks.
// Sets the limbo threshold and collection period (default 64); 1 collects on
// every pin and every retire.
void SetCollectThresholdForTesting(std::uint32_t n) noexcept;
// Advances and collects repeatedly (calling thread must not be pinned) until
// nothing more can be freed by it: intended for quiescent checks in tests.
void DrainForTesting() noexcept;

}  // namespace epoch
}  // namespace bagpipe

#endif  // BAGPIPE_EPOCH_H_
