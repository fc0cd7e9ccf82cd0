// slab_alloc: Bonwick-style slab allocators that cache constructed objects.
//
// A slab allocator serves objects of one type (or one fixed layout) from
// *slabs*: blocks of memory carved into equal-sized objects. Objects that are
// freed stay constructed in their slab and are handed out again without
// running the constructor (Bonwick, "The Slab Allocator: An Object-Caching
// Kernel Memory Allocator", USENIX 1994). Allocation and free are a handful of
// instructions: pop/push on the front slab's free stack and, for small slabs,
// a mask of the pointer to find its slab.
//
// Quick start (see README.md for the full API table):
//
//   auto alloc = slab_alloc::SlabAllocBuilder<Widget>::Default().Build();
//   Widget* w = alloc.Allocate();   // constructed Widget (or nullptr on OOM)
//   alloc.Deallocate(w);            // cached, still constructed
//
// Builders: SlabAllocBuilder<T>::Default()        T() on first use
//                               ::Func(f)         T(f()) on first use
//                               ::InPlace(f)      f(void* raw) constructs a T
//                               ::NoInitialize()  raw memory (no ctor/dtor)
//           UntypedSlabAllocBuilder(layout) / ::WithInit(layout, f)
// then optional .Align(a) .Colouring(bool) .Kind(SlabKind) .ReclaimPeriod(d)
// .Clock(fn) .ReclaimCheckInterval(n) .OnLeak(policy), then
// .Build() (heap) / .BuildMmap() / .BuildWithBacking(b) and the
// .BuildUntyped*() variants.
//
// Slab layout (both kinds):
//
//   [SlabHeader 32 B][free stack: capacity x uint32][pad to align][colour]
//   [object 0][object 1]...[object capacity-1][unused]
//
// Init tracking: the free stack holds only objects that were handed out and
// returned, i.e. constructed objects. Objects never handed out yet are taken
// from the slab's "fresh" region in address order, and only those are
// constructed. So "constructed or not" needs no per-object bit, a new slab
// needs no O(capacity) setup, and the constructor runs once per object slot
// for the slab's lifetime; destructors run when a slab is released (on the
// cached objects it holds) or when the allocator is destroyed.
//
// Slab kinds, and the rule choosing between them (kAuto):
//  * Small slabs have a power-of-two size (one page up to kMaxSmallSlabBytes,
//    32 KiB with 4 KiB pages) and are aligned to their size, so the slab of an
//    object is `ptr & ~(slab_size - 1)`: no lookup at all. An object size uses
//    small slabs iff some such slab holds at least kMinObjectsPerSlab (8)
//    objects; the smallest such slab is used. With 4 KiB pages that is every
//    object up to ~4 KiB minus overhead: 3539-byte objects use 32 KiB slabs
//    of 9, 4096-byte objects do not fit 8 to a 32 KiB slab.
//  * Large slabs are any whole number of pages, page-aligned, chosen to
//    minimise the unused bytes per object (searching up to the first size
//    that holds 8). Their pages are registered in a PtrHashMap, so free finds
//    the slab by looking up the object's page.
//  (The reference implementation required small slabs of at least two pages
//  while both of its backings only supplied one, so its small slabs were dead
//  code. Here both kinds are used; stats().kind says which, and
//  Kind(SlabKind::kSmall / kLarge) forces one.)
//
// Slab lists. Partially used slabs are at the front of one doubly linked list
// and completely free ("empty") slabs at its back; allocation always uses the
// front slab; full slabs sit on a separate list (so destruction can find
// them). A slab that gains a free object while full moves to the front; one
// that becomes empty moves to the back.
//
// Cache colouring (on by default; Colouring(false) turns it off): the unused
// tail of a slab lets successive slabs start their object array at different
// offsets, 0, step, 2*step, ... up to the unused space, with step =
// max(align, 64 bytes), so objects at the same index of different slabs do
// not all compete for the same cache sets.
//
// Working-set reclamation: over each period (default 15 s) the allocator
// tracks the minimum number of empty slabs it held. Those slabs were not
// needed at any moment of the period, so when the period ends that many empty
// slabs are released to the backing (destroying their cached objects), and a
// new period begins. The clock is read only when a slab becomes empty, and
// only every ReclaimCheckInterval-th time (default 64) so that an alloc/free
// pattern that flips one slab between empty and non-empty does not pay for a
// clock read each time. MaybeReclaim() runs the same check on demand and
// ReleaseEmptySlabs() releases every empty slab now. The clock is injectable
// (Clock(fn), monotonic nanoseconds) for tests.
//
// Destruction releases every slab without live objects (destroying cached
// objects). Live objects remaining are a caller bug: the allocator writes one
// allocation-free line to stderr (object size, count, bytes) and, by default,
// deliberately leaks the slabs that hold them so no live pointer dangles
// (LeakPolicy::kReportAndLeak); OnLeak(LeakPolicy::kAbort) aborts instead.
//
// Errors. Allocate returns nullptr when the backing (or the hash map) is out
// of memory. Builder misuse (an alignment that is not a power of two or
// exceeds the page size, an invalid layout, a forced small slab for an object
// that cannot fit one) is a programming error and aborts with a message.
// Deallocating a pointer that no large slab of this allocator owns aborts with
// a message; for small slabs that check would cost the fast path a lookup, so
// it is made only in debug builds (!NDEBUG), which also catch frees of a slab
// with no live object (double free) and misaligned pointers.
//
// Not thread-safe: one allocator per thread (or external locking). Allocators
// are movable (not copyable); moving leaves the source empty.
//
// Constructors and the functions given to Func/InPlace/WithInit must not
// throw: Allocate is noexcept, so an exception terminates the program.
#ifndef SLAB_ALLOC_SLAB_ALLOC_H_
#define SLAB_ALLOC_SLAB_ALLOC_H_

#include <chrono>
#include <concepts>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <new>
#include <type_traits>
#include <utility>

#include "absl/base/attributes.h"
#include "absl/base/optimization.h"
#include "absl/numeric/bits.h"
#include "object_alloc/object_alloc.h"
#include "slab_alloc/backing.h"
#include "slab_alloc/ptr_hash_map.h"

namespace slab_alloc {

// How slabs are found from an object pointer (see the top of this file).
enum class SlabKind {
  kAuto,   // Builder only: choose by object size.
  kSmall,  // Power-of-two slabs aligned to their size; found by masking.
  kLarge,  // Page-multiple slabs; found through the pointer hash map.
};

// What the destructor does when objects are still live.
enum class LeakPolicy {
  kReportAndLeak,  // Log to stderr, keep the slabs holding live objects.
  kAbort,          // Log to stderr and abort.
};

// A monotonic clock in nanoseconds. Must not allocate.
using ClockFn = std::int64_t (*)() noexcept;

// The default clock: clock_gettime(CLOCK_MONOTONIC).
std::int64_t MonotonicNanos() noexcept;

inline constexpr std::size_t kMinObjectsPerSlab = 8;
inline constexpr std::size_t kMaxSmallSlabBytes = std::size_t{32} << 10;
inline constexpr std::size_t kColourStepBytes = 64;
inline constexpr std::chrono::nanoseconds kDefaultReclaimPeriod =
    std::chrono::seconds(15);
inline constexpr std::chrono::nanoseconds kNeverReclaim =
    std::chrono::nanoseconds::max();
inline constexpr std::uint32_t kDefaultReclaimCheckInterval = 64;

// A snapshot of an allocator's state, for tests, debugging and monitoring.
// Counting live and cached objects walks the slab lists (O(slabs)).
struct SlabStats {
  SlabKind kind = SlabKind::kSmall;  // kSmall or kLarge, never kAuto.
  std::size_t object_size = 0;       // Stride; layout().size.
  std::size_t object_align = 0;
  std::size_t slab_size = 0;
  std::size_t objects_per_slab = 0;
  std::size_t max_colour = 0;        // Largest colour offset (0: none).
  std::size_t slabs = 0;             // Slabs held.
  std::size_t empty_slabs = 0;       // Slabs with no live object.
  std::size_t full_slabs = 0;        // Slabs with no free object.
  std::size_t live_objects = 0;      // Handed out, not returned.
  std::size_t cached_objects = 0;    // Returned, still constructed.
  std::size_t metadata_bytes = 0;    // Hash map memory from the backing.
  std::size_t bytes_mapped = 0;      // slabs * slab_size + metadata_bytes.
  std::size_t slabs_released = 0;    // Total released by reclamation so far.
};

// ---------------------------------------------------------------------------
// Initialisation policies. Each has Construct(void*) / Destroy(void*) and
// says whether they do anything, so that no-op policies cost nothing.

// T() (value-initialisation) on first use; ~T() when released.
template <class T>
struct DefaultInit {
  static constexpr bool kConstructs = true;
  static constexpr bool kDestroys = !std::is_trivially_destructible_v<T>;
  void Construct(void* p) noexcept { ::new (p) T(); }
  void Destroy(void* p) noexcept { std::destroy_at(static_cast<T*>(p)); }
};

// T(f()) on first use (the result is constructed in place: C++17 guaranteed
// copy elision); ~T() when released.
template <class T, class F>
struct FuncInit {
  [[no_unique_address]] F f;
  static constexpr bool kConstructs = true;
  static constexpr bool kDestroys = !std::is_trivially_destructible_v<T>;
  void Construct(void* p) noexcept { ::new (p) T(f()); }
  void Destroy(void* p) noexcept { std::destroy_at(static_cast<T*>(p)); }
};

// f(void* raw) must construct a T at raw (e.g. by placement new); ~T() when
// released.
template <class T, class F>
struct InPlaceInit {
  [[no_unique_address]] F f;
  static constexpr bool kConstructs = true;
  static constexpr bool kDestroys = !std::is_trivially_destructible_v<T>;
  void Construct(void* p) noexcept { f(p); }
  void Destroy(void* p) noexcept { std::destroy_at(static_cast<T*>(p)); }
};

// Untyped: f(void* raw) initialises the bytes on first use; nothing on
// release (there is no type to destroy).
template <class F>
struct UntypedInit {
  [[no_unique_address]] F f;
  static constexpr bool kConstructs = true;
  static constexpr bool kDestroys = false;
  void Construct(void* p) noexcept { f(p); }
  void Destroy(void*) noexcept {}
};

// No initialisation at all: objects are raw memory, and no destructor ever
// runs. For typed allocators this is the reference's `unsafe no_initialize`:
// the caller is responsible for the objects' lifetime.
struct NoInit {
  static constexpr bool kConstructs = false;
  static constexpr bool kDestroys = false;
  void Construct(void*) noexcept {}
  void Destroy(void*) noexcept {}
};

template <class I>
concept InitPolicy = requires(I& i, void* p) {
  { I::kConstructs } -> std::convertible_to<bool>;
  { I::kDestroys } -> std::convertible_to<bool>;
  { i.Construct(p) } noexcept;
  { i.Destroy(p) } noexcept;
};

namespace internal {

// Everything a builder configures apart from the init policy and backing.
struct Config {
  std::size_t size = 0;   // Object size (before rounding to align).
  std::size_t align = 1;  // Largest alignment requested (incl. the type's).
  bool colouring = true;
  SlabKind kind = SlabKind::kAuto;
  std::chrono::nanoseconds reclaim_period = kDefaultReclaimPeriod;
  ClockFn clock = &MonotonicNanos;
  std::uint32_t reclaim_check_interval = kDefaultReclaimCheckInterval;
  LeakPolicy leak_policy = LeakPolicy::kReportAndLeak;
};

// The shape of every slab of one allocator. Computed once, at build time.
struct Geometry {
  SlabKind kind = SlabKind::kSmall;  // kSmall or kLarge.
  std::size_t size = 0;              // Object stride, a multiple of align.
  std::size_t align = 0;
  std::size_t slab_size = 0;
  std::size_t capacity = 0;          // Objects per slab (>= 1).
  std::size_t objects_offset = 0;    // First object, before colouring.
  std::size_t colour_step = 0;       // 0 when colouring is off or no room.
  std::size_t max_colour = 0;
};

// Computes the geometry for objects of `size` bytes aligned to `align`
// (already validated: power of two, <= page size) with the given slab kind.
// Aborts with a message if `kind` is kSmall and no small slab can hold one
// object, or if the object is too large for any slab (> 1 GiB).
Geometry ComputeGeometry(std::size_t size, std::size_t align, SlabKind kind,
                         bool colouring) noexcept;

// The number of objects of `size` bytes, aligned to `align`, that a slab of
// slab_size bytes holds after the header and free stack, and the offset of
// the first object. {0, 0} if none fits.
struct Fit {
  std::size_t capacity = 0;
  std::size_t objects_offset = 0;
};
Fit FitObjects(std::size_t slab_size, std::size_t size,
               std::size_t align) noexcept;

// Aborts with a message for an invalid alignment request.
void CheckAlign(std::size_t align) noexcept;
// Aborts with a message for an invalid layout.
void CheckLayout(object_alloc::Layout layout) noexcept;

// Writes the leak message; aborts if policy is kAbort.
void ReportLiveObjects(std::size_t live_objects, std::size_t slabs,
                       std::size_t object_size, std::size_t slab_size,
                       LeakPolicy policy) noexcept;

// Aborts: p is not an object of this allocator.
[[noreturn]] void DieForeignPointer(const void* p) noexcept;
// Aborts: p cannot be a live object of its slab (debug builds only).
[[noreturn]] void DieBadDeallocate(const void* p, const char* why) noexcept;

// The header at the start of every slab. The free stack (capacity uint32
// offsets of returned objects from the slab start) follows it directly.
//
// Invariants, with C = capacity:
//   live + top + fresh == C;
//   every stack entry [0, top) is a constructed object that is not live;
//   the fresh objects are the last `fresh` object slots, never handed out and
//   never constructed; next_fresh is the offset of the first of them;
//   a slab with live == C is on the full list, every other slab on the main
//   list (empty ones, live == 0, at its back).
//
// `live` and `top` are deliberately not adjacent: when they were, GCC packed
// their updates into one SSE register (movq/pshufd/paddd), which lengthened
// the store-forwarding chain of an alloc/free pair by several cycles.
struct SlabHeader {
  SlabHeader* next;
  SlabHeader* prev;
  std::uint32_t live;
  std::uint32_t fresh;
  std::uint32_t top;
  std::uint32_t next_fresh;

  std::uint32_t* Stack() noexcept {
    return reinterpret_cast<std::uint32_t*>(this + 1);
  }
  const std::uint32_t* Stack() const noexcept {
    return reinterpret_cast<const std::uint32_t*>(this + 1);
  }
};
static_assert(sizeof(SlabHeader) == 32);
// The free stack starts right after the header.
static_assert(sizeof(SlabHeader) % alignof(std::uint32_t) == 0);

// ---------------------------------------------------------------------------
// How the engine reaches an init policy without being a template over it:
// a static table per policy type plus the policy object's address, passed to
// every call that may construct or destroy. Only the slow paths use it
// (construction of never-used objects, destruction of cached objects when a
// slab is released), so the indirect call costs the fast path nothing, and
// the engine's code is instantiated once per backing instead of once per
// (type, policy, backing): that keeps build times and code size in check
// when a program (or the conformance suite) uses many object types.
struct InitHooks {
  void (*construct)(void* init, void* p) noexcept;  // null: no-op
  void (*destroy)(void* init, void* p) noexcept;    // null: no-op
};

template <class Init>
inline constexpr InitHooks kInitHooks = {
    Init::kConstructs ? +[](void* init, void* p) noexcept {
      static_cast<Init*>(init)->Construct(p);
    }
                      : nullptr,
    Init::kDestroys ? +[](void* init, void* p) noexcept {
      static_cast<Init*>(init)->Destroy(p);
    }
                    : nullptr,
};

// The slab allocator proper, shared by UntypedSlabAlloc and SlabAlloc. Every
// member that may construct or destroy objects takes the init policy's
// address (`init`), which its owner passes along.
template <Backing B>
class SlabEngine {
 public:
  SlabEngine(const Config& config, const InitHooks* hooks, B backing) noexcept
      : geometry_(internal::ComputeGeometry(config.size, config.align,
                                            config.kind, config.colouring)),
        hooks_(hooks),
        backing_(backing),
        map_(backing, PageShift()),
        clock_(config.clock),
        reclaim_period_ns_(config.reclaim_period.count()),
        reclaim_check_interval_(config.reclaim_check_interval == 0
                                    ? 1
                                    : config.reclaim_check_interval),
        leak_policy_(config.leak_policy) {
    small_ = geometry_.kind == SlabKind::kSmall;
    slab_mask_ = ~(static_cast<std::uintptr_t>(geometry_.slab_size) - 1);
    capacity_ = static_cast<std::uint32_t>(geometry_.capacity);
    fast_live_limit_ = capacity_ >= 2 ? capacity_ - 2 : 0;
    check_countdown_ = reclaim_check_interval_;
    period_start_ = clock_();
  }

  SlabEngine(const SlabEngine&) = delete;
  SlabEngine& operator=(const SlabEngine&) = delete;
  SlabEngine& operator=(SlabEngine&&) = delete;

  SlabEngine(SlabEngine&& other) noexcept
      : geometry_(other.geometry_),
        hooks_(other.hooks_),
        backing_(other.backing_),
        map_(std::move(other.map_)),
        head_(std::exchange(other.head_, nullptr)),
        tail_(std::exchange(other.tail_, nullptr)),
        full_(std::exchange(other.full_, nullptr)),
        small_(other.small_),
        slab_mask_(other.slab_mask_),
        capacity_(other.capacity_),
        fast_live_limit_(other.fast_live_limit_),
        next_colour_(other.next_colour_),
        num_slabs_(std::exchange(other.num_slabs_, 0)),
        num_empty_(std::exchange(other.num_empty_, 0)),
        min_empty_(std::exchange(other.min_empty_, 0)),
        slabs_released_(other.slabs_released_),
        clock_(other.clock_),
        reclaim_period_ns_(other.reclaim_period_ns_),
        period_start_(other.period_start_),
        reclaim_check_interval_(other.reclaim_check_interval_),
        check_countdown_(other.check_countdown_),
        leak_policy_(other.leak_policy_) {}

  // The owner must have called DestroyAll(init) (the hash map's memory is
  // released here).
  ~SlabEngine() = default;

  // The layout actually served: size rounded up to a multiple of the
  // alignment (the largest of the type's and every Align() request).
  object_alloc::Layout layout() const noexcept {
    return object_alloc::Layout{geometry_.size, geometry_.align};
  }

  // An object (constructed by the init policy, possibly a cached one), or
  // nullptr when out of memory.
  ABSL_ATTRIBUTE_ALWAYS_INLINE void* Allocate(void* init) noexcept {
    internal::SlabHeader* s = head_;
    if (ABSL_PREDICT_TRUE(s != nullptr)) {
      const std::uint32_t top = s->top;
      const std::uint32_t live = s->live;
      // Fast path: pop a cached object from a slab that is neither becoming
      // full nor leaving the empty state: 1 <= live <= capacity - 2.
      if (ABSL_PREDICT_TRUE(top != 0 && live - 1 < fast_live_limit_)) {
        s->top = top - 1;
        s->live = live + 1;
        return reinterpret_cast<char*>(s) + s->Stack()[top - 1];
      }
    }
    return AllocateSlow(init);
  }

  // Takes back an object from Allocate() (still constructed, for typed
  // policies). REQUIRES: p came from this allocator and is live.
  ABSL_ATTRIBUTE_ALWAYS_INLINE void Deallocate(void* p, void* init) noexcept {
    internal::SlabHeader* s = SlabOf(p);
#ifndef NDEBUG
    DebugCheckDeallocate(s, p);
#endif
    const std::uint32_t top = s->top;
    const std::uint32_t live = s->live;
    s->Stack()[top] = static_cast<std::uint32_t>(static_cast<char*>(p) -
                                                 reinterpret_cast<char*>(s));
    s->top = top + 1;
    s->live = live - 1;
    // Fast path unless the slab was full (live == capacity) or is now empty
    // (live == 1): i.e. stay fast for 2 <= live <= capacity - 1.
    if (ABSL_PREDICT_FALSE(live - 2 >= fast_live_limit_)) {
      DeallocateSlow(s, live, init);
    }
  }

  // Which slab kind this allocator uses (kSmall or kLarge).
  SlabKind kind() const noexcept { return geometry_.kind; }

  SlabStats stats() const noexcept {
    SlabStats st;
    st.kind = geometry_.kind;
    st.object_size = geometry_.size;
    st.object_align = geometry_.align;
    st.slab_size = geometry_.slab_size;
    st.objects_per_slab = geometry_.capacity;
    st.max_colour = geometry_.max_colour;
    st.slabs = num_slabs_;
    st.empty_slabs = num_empty_;
    st.slabs_released = slabs_released_;
    for (const internal::SlabHeader* s = FirstSlab(); s != nullptr;
         s = s->next) {
      st.live_objects += s->live;
      st.cached_objects += s->top;
    }
    for (const internal::SlabHeader* s = full_; s != nullptr; s = s->next) {
      ++st.full_slabs;
      st.live_objects += s->live;
    }
    st.metadata_bytes = map_.GetStats().bytes_allocated;
    st.bytes_mapped = num_slabs_ * geometry_.slab_size + st.metadata_bytes;
    return st;
  }

  // The start of the slab holding p, or nullptr if no large slab of this
  // allocator owns p. For small slabs this is just p masked (no check).
  // For tests and debugging.
  const void* SlabBaseOf(const void* p) const noexcept {
    const auto addr = reinterpret_cast<std::uintptr_t>(p);
    if (small_) return reinterpret_cast<const void*>(addr & slab_mask_);
    return map_.Get(addr & PageMask());
  }

  // Ends the current reclamation period if it is over (releasing the minimum
  // number of empty slabs seen during it). Returns the number released.
  // Called automatically when slabs become empty; call it yourself if the
  // allocator may sit idle.
  ABSL_ATTRIBUTE_NOINLINE std::size_t MaybeReclaim(void* init) noexcept {
    const std::int64_t now = clock_();
    if (now - period_start_ < reclaim_period_ns_) return 0;
    const std::size_t n = ReleaseFromBack(min_empty_, init);
    min_empty_ = num_empty_;
    period_start_ = now;
    return n;
  }

  // Releases every empty slab now. Returns the number released.
  std::size_t ReleaseEmptySlabs(void* init) noexcept {
    const std::size_t n = ReleaseFromBack(num_empty_, init);
    min_empty_ = 0;
    return n;
  }

  // The pointer hash map (large slabs only); for tests.
  const PtrHashMap<B>& ptr_map() const noexcept { return map_; }

 private:
  using Header = internal::SlabHeader;

  static unsigned PageShift() noexcept {
    return static_cast<unsigned>(absl::countr_zero(mmap_alloc::PageSize()));
  }
  static std::uintptr_t PageMask() noexcept {
    return ~(static_cast<std::uintptr_t>(mmap_alloc::PageSize()) - 1);
  }

  ABSL_ATTRIBUTE_ALWAYS_INLINE Header* SlabOf(void* p) const noexcept {
    const auto addr = reinterpret_cast<std::uintptr_t>(p);
    if (ABSL_PREDICT_TRUE(small_)) {
      return reinterpret_cast<Header*>(addr & slab_mask_);
    }
    void* s = map_.Get(addr & PageMask());
    if (ABSL_PREDICT_FALSE(s == nullptr)) internal::DieForeignPointer(p);
    return static_cast<Header*>(s);
  }

  // Debug builds: p must be an object slot of s and s must have live objects.
  void DebugCheckDeallocate(const Header* s, const void* p) const noexcept {
    if (s->live == 0) {
      internal::DieBadDeallocate(p, "its slab has no live object (double "
                                    "free or foreign pointer)");
    }
    const std::size_t size = geometry_.size;
    const std::size_t used_fresh = capacity_ - s->fresh;
    const std::size_t first = s->next_fresh - used_fresh * size;
    const std::size_t off = static_cast<std::size_t>(
        static_cast<const char*>(p) - reinterpret_cast<const char*>(s));
    if (off < first || off >= first + capacity_ * size ||
        (off - first) % size != 0) {
      internal::DieBadDeallocate(p, "not an object slot of its slab");
    }
  }

  Header* FirstSlab() const noexcept { return head_; }

  // --- list operations (main list: head_/tail_, full list: full_) ---
  void PushFront(Header* s) noexcept {
    s->prev = nullptr;
    s->next = FirstSlab();
    if (s->next != nullptr) {
      s->next->prev = s;
    } else {
      tail_ = s;
    }
    head_ = s;
  }
  void PushBack(Header* s) noexcept {
    s->next = nullptr;
    s->prev = tail_;
    if (tail_ != nullptr) {
      tail_->next = s;
    } else {
      head_ = s;
    }
    tail_ = s;
  }
  void Unlink(Header* s) noexcept {
    if (s->prev != nullptr) {
      s->prev->next = s->next;
    } else {
      head_ = s->next;
    }
    if (s->next != nullptr) {
      s->next->prev = s->prev;
    } else {
      tail_ = s->prev;
    }
  }
  void PushFull(Header* s) noexcept {
    s->prev = nullptr;
    s->next = full_;
    if (full_ != nullptr) full_->prev = s;
    full_ = s;
  }
  void UnlinkFull(Header* s) noexcept {
    if (s->prev != nullptr) {
      s->prev->next = s->next;
    } else {
      full_ = s->next;
    }
    if (s->next != nullptr) s->next->prev = s->prev;
  }

  ABSL_ATTRIBUTE_NOINLINE void* AllocateSlow(void* init) noexcept {
    Header* s = head_;
    if (s == nullptr) {
      s = NewSlab();
      if (s == nullptr) return nullptr;
      PushBack(s);
      ++num_empty_;
    }
    if (s->live == 0) {
      // Taking an empty slab: the working set needs one more slab.
      --num_empty_;
      if (num_empty_ < min_empty_) min_empty_ = num_empty_;
    }
    void* p;
    if (s->top != 0) {
      p = reinterpret_cast<char*>(s) + s->Stack()[--s->top];
    } else {
      // Not full and nothing cached: a fresh object remains.
      p = reinterpret_cast<char*>(s) + s->next_fresh;
      s->next_fresh += static_cast<std::uint32_t>(geometry_.size);
      --s->fresh;
      if (hooks_->construct != nullptr) hooks_->construct(init, p);
    }
    if (++s->live == capacity_) {
      Unlink(s);
      PushFull(s);
    }
    return p;
  }

  // Called after the push, with the live count from before it: either the
  // slab was full (old_live == capacity) or it is now empty (old_live == 1).
  ABSL_ATTRIBUTE_NOINLINE void DeallocateSlow(Header* s, std::uint32_t old_live,
                                              void* init) noexcept {
    if (old_live == capacity_) {
      UnlinkFull(s);
      if (s->live == 0) {
        PushBack(s);
        OnSlabEmptied(init);
      } else {
        PushFront(s);
      }
    } else if (s->live == 0) {
      if (s != tail_) {  // Already last (e.g. the only slab): nothing to move.
        Unlink(s);
        PushBack(s);
      }
      OnSlabEmptied(init);
    }
  }

  void OnSlabEmptied(void* init) noexcept {
    ++num_empty_;
    if (--check_countdown_ == 0) {
      check_countdown_ = reclaim_check_interval_;
      MaybeReclaim(init);
    }
  }

  ABSL_ATTRIBUTE_NOINLINE Header* NewSlab() noexcept {
    const std::size_t slab_size = geometry_.slab_size;
    void* mem = backing_.Allocate(
        slab_size, small_ ? slab_size : mmap_alloc::PageSize());
    if (mem == nullptr) return nullptr;
    const std::uint32_t colour = static_cast<std::uint32_t>(next_colour_);
    if (geometry_.colour_step != 0) {
      next_colour_ += geometry_.colour_step;
      if (next_colour_ > geometry_.max_colour) next_colour_ = 0;
    }
    Header* s = ::new (mem) Header{
        /*next=*/nullptr,
        /*prev=*/nullptr,
        /*live=*/0,
        /*fresh=*/capacity_,
        /*top=*/0,
        /*next_fresh=*/static_cast<std::uint32_t>(geometry_.objects_offset) +
            colour};
    if (!small_) {
      const std::size_t page = mmap_alloc::PageSize();
      const auto base = reinterpret_cast<std::uintptr_t>(mem);
      for (std::size_t off = 0; off < slab_size; off += page) {
        if (map_.Insert(base + off, s) != InsertResult::kInserted) {
          for (std::size_t undo = 0; undo < off; undo += page) {
            map_.Remove(base + undo);
          }
          backing_.Deallocate(mem, slab_size, page);
          return nullptr;
        }
      }
    }
    ++num_slabs_;
    return s;
  }

  // Destroys the cached objects of s and returns its memory to the backing.
  void FreeSlab(Header* s, void* init) noexcept {
    DestroyCached(s, init);
    const std::size_t slab_size = geometry_.slab_size;
    const auto base = reinterpret_cast<std::uintptr_t>(s);
    if (!small_) {
      const std::size_t page = mmap_alloc::PageSize();
      for (std::size_t off = 0; off < slab_size; off += page) {
        map_.Remove(base + off);
      }
    }
    backing_.Deallocate(s, slab_size,
                        small_ ? slab_size : mmap_alloc::PageSize());
    --num_slabs_;
  }

  void DestroyCached(Header* s, void* init) noexcept {
    if (hooks_->destroy != nullptr) {
      std::uint32_t* stack = s->Stack();
      for (std::uint32_t i = 0; i < s->top; ++i) {
        hooks_->destroy(init, reinterpret_cast<char*>(s) + stack[i]);
      }
    }
    s->top = 0;
  }

  // Releases up to n empty slabs from the back of the main list.
  std::size_t ReleaseFromBack(std::size_t n, void* init) noexcept {
    std::size_t released = 0;
    while (released < n && tail_ != nullptr && tail_->live == 0) {
      Header* s = tail_;
      Unlink(s);
      FreeSlab(s, init);
      --num_empty_;
      ++released;
    }
    slabs_released_ += released;
    return released;
  }

 public:
  // Releases every slab without live objects (destroying cached objects);
  // reports live objects and keeps the slabs holding them (see top of file).
  void DestroyAll(void* init) noexcept {
    std::size_t live_objects = 0;
    std::size_t live_slabs = 0;
    for (Header* s = FirstSlab(); s != nullptr; s = s->next) {
      if (s->live != 0) {
        live_objects += s->live;
        ++live_slabs;
      }
    }
    for (Header* s = full_; s != nullptr; s = s->next) {
      live_objects += s->live;
      ++live_slabs;
    }
    if (live_objects != 0) {
      internal::ReportLiveObjects(live_objects, live_slabs, geometry_.size,
                                  geometry_.slab_size, leak_policy_);
    }
    // Release slabs without live objects; in the others destroy only the
    // cached objects and leave the memory (and the live objects) alone.
    Header* s = FirstSlab();
    while (s != nullptr) {
      Header* next = s->next;
      if (s->live == 0) {
        FreeSlab(s, init);
      } else {
        DestroyCached(s, init);
      }
      s = next;
    }
    head_ = nullptr;
    tail_ = nullptr;
    full_ = nullptr;
    num_empty_ = 0;
    // map_ releases its own memory in its destructor.
  }

 private:
  internal::Geometry geometry_;
  const InitHooks* hooks_;
  [[no_unique_address]] B backing_;
  PtrHashMap<B> map_;

  // Hot fields.
  Header* head_ = nullptr;
  Header* tail_ = nullptr;
  Header* full_ = nullptr;
  bool small_ = true;
  std::uintptr_t slab_mask_ = 0;
  std::uint32_t capacity_ = 0;
  std::uint32_t fast_live_limit_ = 0;

  std::size_t next_colour_ = 0;
  std::size_t num_slabs_ = 0;
  std::size_t num_empty_ = 0;
  std::size_t min_empty_ = 0;  // Minimum of num_empty_ in this period.
  std::size_t slabs_released_ = 0;
  ClockFn clock_;
  std::int64_t reclaim_period_ns_;
  std::int64_t period_start_ = 0;
  std::uint32_t reclaim_check_interval_;
  std::uint32_t check_countdown_ = 1;
  LeakPolicy leak_policy_;
};

}  // namespace internal

// ---------------------------------------------------------------------------
// The untyped slab allocator: objects of one Layout (constructed by Init on
// first use, if Init does anything).
template <InitPolicy Init = NoInit, Backing B = HeapBacking>
class UntypedSlabAlloc {
 public:
  using InitType = Init;
  using BackingType = B;

  // Use the builders; this constructor is public for them and for tests.
  UntypedSlabAlloc(const internal::Config& config, Init init,
                   B backing) noexcept
      : init_(std::move(init)),
        engine_(config, &internal::kInitHooks<Init>, std::move(backing)) {}
  UntypedSlabAlloc(UntypedSlabAlloc&&) noexcept = default;
  UntypedSlabAlloc(const UntypedSlabAlloc&) = delete;
  UntypedSlabAlloc& operator=(const UntypedSlabAlloc&) = delete;
  UntypedSlabAlloc& operator=(UntypedSlabAlloc&&) = delete;

  ~UntypedSlabAlloc() { engine_.DestroyAll(&init_); }

  // The layout actually served: size rounded up to a multiple of the
  // alignment (the largest of the type's and every Align() request).
  object_alloc::Layout layout() const noexcept { return engine_.layout(); }

  // An object (constructed by the init policy, possibly a cached one), or
  // nullptr when out of memory.
  ABSL_ATTRIBUTE_ALWAYS_INLINE void* Allocate() noexcept {
    return engine_.Allocate(&init_);
  }
  // Takes back an object from Allocate(). REQUIRES: p came from this
  // allocator and is live.
  ABSL_ATTRIBUTE_ALWAYS_INLINE void Deallocate(void* p) noexcept {
    engine_.Deallocate(p, &init_);
  }

  // Which slab kind this allocator uses (kSmall or kLarge).
  SlabKind kind() const noexcept { return engine_.kind(); }
  SlabStats stats() const noexcept { return engine_.stats(); }
  // The start of the slab holding p, or nullptr if no large slab of this
  // allocator owns p. For small slabs this is just p masked (no check).
  const void* SlabBaseOf(const void* p) const noexcept {
    return engine_.SlabBaseOf(p);
  }
  // Ends the current reclamation period if it is over (releasing the minimum
  // number of empty slabs seen during it). Returns the number released.
  // Called automatically when slabs become empty; call it yourself if the
  // allocator may sit idle.
  std::size_t MaybeReclaim() noexcept { return engine_.MaybeReclaim(&init_); }
  // Releases every empty slab now. Returns the number released.
  std::size_t ReleaseEmptySlabs() noexcept {
    return engine_.ReleaseEmptySlabs(&init_);
  }
  // The pointer hash map (large slabs only); for tests.
  const PtrHashMap<B>& ptr_map() const noexcept { return engine_.ptr_map(); }

 private:
  // Declared before engine_, so it outlives the destructor body's use.
  [[no_unique_address]] Init init_;
  internal::SlabEngine<B> engine_;
};

// ---------------------------------------------------------------------------
// The typed slab allocator: hands out constructed T's.
template <class T, InitPolicy Init = DefaultInit<T>, Backing B = HeapBacking>
class SlabAlloc {
 public:
  using value_type = T;

  SlabAlloc(const internal::Config& config, Init init, B backing) noexcept
      : core_(config, std::move(init), std::move(backing)) {}
  SlabAlloc(SlabAlloc&&) noexcept = default;

  // A constructed T (fresh or cached), or nullptr when out of memory.
  ABSL_ATTRIBUTE_ALWAYS_INLINE T* Allocate() noexcept {
    return static_cast<T*>(core_.Allocate());
  }
  // Takes back a constructed T from Allocate(); it is cached constructed.
  ABSL_ATTRIBUTE_ALWAYS_INLINE void Deallocate(T* p) noexcept {
    core_.Deallocate(p);
  }

  object_alloc::Layout layout() const noexcept { return core_.layout(); }
  SlabKind kind() const noexcept { return core_.kind(); }
  SlabStats stats() const noexcept { return core_.stats(); }
  const void* SlabBaseOf(const void* p) const noexcept {
    return core_.SlabBaseOf(p);
  }
  std::size_t MaybeReclaim() noexcept { return core_.MaybeReclaim(); }
  std::size_t ReleaseEmptySlabs() noexcept { return core_.ReleaseEmptySlabs(); }
  const PtrHashMap<B>& ptr_map() const noexcept { return core_.ptr_map(); }

 private:
  UntypedSlabAlloc<Init, B> core_;
};

// ---------------------------------------------------------------------------
// Builders.
namespace internal {

// The options shared by both builders (CRTP so setters chain).
template <class Derived>
class BuilderOptions {
 public:
  // Requests alignment a (a power of two, at most the page size; aborts
  // otherwise). The largest request wins; the object size is rounded up to
  // a multiple of it.
  Derived& Align(std::size_t a) noexcept {
    CheckAlign(a);
    if (a > config_.align) config_.align = a;
    return self();
  }
  // Cache colouring on (default) or off.
  Derived& Colouring(bool on) noexcept {
    config_.colouring = on;
    return self();
  }
  // Forces a slab kind (kAuto: choose by size, the default).
  Derived& Kind(SlabKind kind) noexcept {
    config_.kind = kind;
    return self();
  }
  // Working-set period (default 15 s; kNeverReclaim disables reclamation).
  Derived& ReclaimPeriod(std::chrono::nanoseconds period) noexcept {
    config_.reclaim_period = period;
    return self();
  }
  // The monotonic clock (nanoseconds) reclamation reads; for tests.
  Derived& Clock(ClockFn clock) noexcept {
    config_.clock = clock;
    return self();
  }
  // Read the clock every n-th time a slab becomes empty (default 64; 0 = 1).
  Derived& ReclaimCheckInterval(std::uint32_t n) noexcept {
    config_.reclaim_check_interval = n;
    return self();
  }
  // What the destructor does about live objects.
  Derived& OnLeak(LeakPolicy policy) noexcept {
    config_.leak_policy = policy;
    return self();
  }

  const Config& config() const noexcept { return config_; }

 protected:
  Config config_;

 private:
  Derived& self() noexcept { return static_cast<Derived&>(*this); }
};

}  // namespace internal

template <class T, InitPolicy Init = DefaultInit<T>>
class SlabAllocBuilder
    : public internal::BuilderOptions<SlabAllocBuilder<T, Init>> {
 public:
  static_assert(!std::is_reference_v<T> && !std::is_void_v<T> &&
                    std::is_object_v<T>,
                "SlabAllocBuilder<T>: T must be an object type");

  explicit SlabAllocBuilder(Init init) noexcept : init_(std::move(init)) {
    this->config_.size = sizeof(T);
    this->config_.align = alignof(T);
  }

  // T() on first use of each object.
  static SlabAllocBuilder<T, DefaultInit<T>> Default() noexcept
    requires std::default_initializable<T>
  {
    return SlabAllocBuilder<T, DefaultInit<T>>(DefaultInit<T>{});
  }
  // T(f()) on first use of each object; f: () -> T.
  template <class F>
    requires std::invocable<F&> &&
             (std::same_as<std::invoke_result_t<F&>, T> ||  // Elided copy.
              std::constructible_from<T, std::invoke_result_t<F&>>)
  static SlabAllocBuilder<T, FuncInit<T, F>> Func(F f) noexcept {
    return SlabAllocBuilder<T, FuncInit<T, F>>(FuncInit<T, F>{std::move(f)});
  }
  // f(void* raw) constructs a T at raw on first use of each object.
  template <class F>
    requires std::invocable<F&, void*>
  static SlabAllocBuilder<T, InPlaceInit<T, F>> InPlace(F f) noexcept {
    return SlabAllocBuilder<T, InPlaceInit<T, F>>(
        InPlaceInit<T, F>{std::move(f)});
  }
  // Raw memory of T's size and alignment; no constructor or destructor runs.
  static SlabAllocBuilder<T, NoInit> NoInitialize() noexcept {
    return SlabAllocBuilder<T, NoInit>(NoInit{});
  }

  SlabAlloc<T, Init, HeapBacking> Build() const noexcept {
    return SlabAlloc<T, Init, HeapBacking>(this->config_, init_,
                                           HeapBacking{});
  }
  SlabAlloc<T, Init, MmapBacking> BuildMmap() const noexcept {
    return SlabAlloc<T, Init, MmapBacking>(this->config_, init_,
                                           MmapBacking{});
  }
  template <Backing B>
  SlabAlloc<T, Init, B> BuildWithBacking(B backing) const noexcept {
    return SlabAlloc<T, Init, B>(this->config_, init_, std::move(backing));
  }
  // Untyped allocators over T's layout (still running Init).
  UntypedSlabAlloc<Init, HeapBacking> BuildUntyped() const noexcept {
    return UntypedSlabAlloc<Init, HeapBacking>(this->config_, init_,
                                               HeapBacking{});
  }
  UntypedSlabAlloc<Init, MmapBacking> BuildUntypedMmap() const noexcept {
    return UntypedSlabAlloc<Init, MmapBacking>(this->config_, init_,
                                               MmapBacking{});
  }
  template <Backing B>
  UntypedSlabAlloc<Init, B> BuildUntypedWithBacking(B backing) const noexcept {
    return UntypedSlabAlloc<Init, B>(this->config_, init_, std::move(backing));
  }

 private:
  Init init_;
};

template <InitPolicy Init = NoInit>
class UntypedSlabAllocBuilder
    : public internal::BuilderOptions<UntypedSlabAllocBuilder<Init>> {
 public:
  // Raw objects of `layout` (aborts if !layout.IsValid()).
  explicit UntypedSlabAllocBuilder(object_alloc::Layout layout,
                                   Init init = Init{}) noexcept
      : init_(std::move(init)) {
    internal::CheckLayout(layout);
    this->config_.size = layout.size;
    this->config_.align = layout.align;
  }

  // f(void* raw) initialises each object's bytes on first use.
  template <class F>
    requires std::invocable<F&, void*>
  static UntypedSlabAllocBuilder<UntypedInit<F>> WithInit(
      object_alloc::Layout layout, F f) noexcept {
    return UntypedSlabAllocBuilder<UntypedInit<F>>(
        layout, UntypedInit<F>{std::move(f)});
  }

  UntypedSlabAlloc<Init, HeapBacking> Build() const noexcept {
    return UntypedSlabAlloc<Init, HeapBacking>(this->config_, init_,
                                               HeapBacking{});
  }
  UntypedSlabAlloc<Init, MmapBacking> BuildMmap() const noexcept {
    return UntypedSlabAlloc<Init, MmapBacking>(this->config_, init_,
                                               MmapBacking{});
  }
  template <Backing B>
  UntypedSlabAlloc<Init, B> BuildWithBacking(B backing) const noexcept {
    return UntypedSlabAlloc<Init, B>(this->config_, init_, std::move(backing));
  }

 private:
  Init init_;
};

// The interfaces this package promises.
struct ConceptCheckType {
  int x = 0;
};
static_assert(object_alloc::ObjectAlloc<SlabAlloc<ConceptCheckType>>);
static_assert(object_alloc::ObjectAlloc<
              SlabAlloc<ConceptCheckType, NoInit, MmapBacking>>);
static_assert(object_alloc::UntypedObjectAlloc<UntypedSlabAlloc<>>);
static_assert(
    object_alloc::UntypedObjectAlloc<UntypedSlabAlloc<NoInit, MmapBacking>>);
static_assert(!object_alloc::IsThreadSafe<SlabAlloc<ConceptCheckType>>());

}  // namespace slab_alloc

#endif  // SLAB_ALLOC_SLAB_ALLOC_H_
