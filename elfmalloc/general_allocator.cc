// The global general allocator: lazily built shared heap, routing by size and
// by stamp, realloc policy, fallback path. See general_allocator.h.
#include "elfmalloc/general_allocator.h"

#include <atomic>
#include <cerrno>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <new>

#include "absl/base/attributes.h"
#include "absl/base/internal/spinlock.h"
#include "absl/base/internal/raw_logging.h"
#include "absl/base/optimization.h"
#include "absl/numeric/bits.h"
#include "elfmalloc/alloc_type.h"
#include "elfmalloc/large_alloc.h"
#include "elfmalloc/magazine_cache.h"
#include "elfmalloc/page_alloc.h"
#include "elfmalloc/slab.h"
#include "elfmalloc/slab_allocator.h"
#include "elfmalloc/thread_cache.h"
#include "mmap_alloc/mmap_alloc.h"

namespace elfmalloc {
namespace {

using absl::base_internal::SpinLock;
using absl::base_internal::SpinLockHolder;

// The reference's general allocator parameters (general.rs): cutoff 0.6,
// whole page usable, 1 MiB of dirty pages per page size, eager uncommit of
// slabs of at least 1 MiB (only 2 MiB slabs), 16 available queues.
constexpr double kCutoff = 0.6;
constexpr std::size_t kEagerUncommit = std::size_t{1} << 20;
constexpr std::size_t kAvailableQueues = 16;

// One spin-locked slab allocator per class, for threads without a heap.
struct Fallback {
  SpinLock lock{absl::kConstInit, absl::base_internal::SCHEDULE_KERNEL_ONLY};
  SlabAllocator slabs;
};

// The shared heap. Built once in mmap_alloc memory and never destroyed:
// objects may be freed by any thread until the process ends.
class Heap {
 public:
  Heap() noexcept
      : small_(PageAlloc::SmallPages()), medium_(PageAlloc::MediumPages()) {}

  bool Init() noexcept {
    if (!small_.valid() || !medium_.valid()) return false;
    for (std::size_t i = 0; i < kNumSizeClasses; ++i) {
      const SizeClass c(static_cast<std::uint8_t>(i));
      SlabClass::Options o;
      o.object_size = ClassSize(c);
      o.cutoff = kCutoff;
      o.eager_uncommit_threshold = kEagerUncommit;
      o.available_queues = kAvailableQueues;
      PageAlloc* pa = ClassPageSize(c) == kSmallPageSize ? &small_ : &medium_;
      SlabClass* cls = ::new (&classes_[i]) SlabClass(pa, o);
      if (!cls->valid()) return false;  // leaked: the heap is unusable anyway
      ::new (&fallback_[i]) Fallback();
      fallback(c).slabs = SlabAllocator(cls);
    }
    return true;
  }

  SlabClass* classes() noexcept {
    return std::launder(reinterpret_cast<SlabClass*>(&classes_[0]));
  }
  SlabClass& cls(SizeClass c) noexcept { return classes()[c.index()]; }
  Fallback& fallback(SizeClass c) noexcept {
    return *std::launder(reinterpret_cast<Fallback*>(&fallback_[c.index()]));
  }

  // The class whose slab header points to meta (every class's metadata lives
  // in its SlabClass, so the index follows from the address).
  // O(1): the metadata sits at the same offset in each array element.
  SizeClass ClassOf(const SlabMetadata* meta) noexcept {
    const std::uintptr_t first =
        reinterpret_cast<std::uintptr_t>(&classes()[0].metadata());
    const std::uintptr_t m = reinterpret_cast<std::uintptr_t>(meta);
    const std::size_t i = (m - first) / sizeof(SlabClass);
    if (ABSL_PREDICT_FALSE(m < first || i >= kNumSizeClasses ||
                           &classes()[i].metadata() != meta)) {
      ABSL_RAW_LOG(FATAL, "elfmalloc: freeing a pointer of an unknown slab");
    }
    return SizeClass(static_cast<std::uint8_t>(i));
  }

  const PageAlloc& small() const noexcept { return small_; }
  const PageAlloc& medium() const noexcept { return medium_; }

 private:
  PageAlloc small_;
  PageAlloc medium_;
  alignas(SlabClass) unsigned char classes_[kNumSizeClasses][sizeof(SlabClass)];
  alignas(Fallback) unsigned char fallback_[kNumSizeClasses][sizeof(Fallback)];
};

ABSL_CONST_INIT SpinLock g_init_lock(absl::kConstInit,
                                     absl::base_internal::SCHEDULE_KERNEL_ONLY);
// Published with release after the heap is fully built.
ABSL_CONST_INIT std::atomic<Heap*> g_heap{nullptr};
ABSL_CONST_INIT bool g_init_failed = false;  // guarded by g_init_lock

ABSL_ATTRIBUTE_NOINLINE Heap* InitHeapSlow() {
  SpinLockHolder l(&g_init_lock);
  Heap* h = g_heap.load(std::memory_order_acquire);
  if (h != nullptr || g_init_failed) return h;
  void* mem = mmap_alloc::Map(sizeof(Heap));
  if (mem != nullptr) {
    h = ::new (mem) Heap();
    if (!h->Init()) {
      h = nullptr;  // its memory is leaked; the process is out of memory
    }
  }
  if (h == nullptr) {
    g_init_failed = true;  // do not retry on every call
    errno = ENOMEM;
    return nullptr;
  }
  g_heap.store(h, std::memory_order_release);
  return h;
}

ABSL_ATTRIBUTE_ALWAYS_INLINE inline Heap* GetHeap() {
  Heap* h = g_heap.load(std::memory_order_acquire);
  return ABSL_PREDICT_TRUE(h != nullptr) ? h : InitHeapSlow();
}

void* FallbackAlloc(Heap* heap, SizeClass c) {
  Fallback& f = heap->fallback(c);
  SpinLockHolder l(&f.lock);
  return f.slabs.Alloc();
}

ABSL_ATTRIBUTE_NOINLINE void* AllocClassSlow(SizeClass c) {
  Heap* heap = GetHeap();
  if (heap == nullptr) return nullptr;
  void* p;
  if (ThreadHeap* th = InitThreadHeap(heap->classes())) {
    p = th->Cache(c).Alloc();
  } else {
    p = FallbackAlloc(heap, c);
  }
  if (p == nullptr) errno = ENOMEM;
  return p;
}

ABSL_ATTRIBUTE_ALWAYS_INLINE inline void* AllocClass(SizeClass c) {
  if (ThreadHeap* th = CurrentThreadHeap(); ABSL_PREDICT_TRUE(th != nullptr)) {
    void* p = th->Cache(c).Alloc();
    if (ABSL_PREDICT_TRUE(p != nullptr)) return p;
    errno = ENOMEM;
    return nullptr;
  }
  return AllocClassSlow(c);
}

// The slab page size for a slab stamp, 0 for large, aborts otherwise.
std::size_t SlabPageSize(AllocType t, const void* p) {
  switch (t) {
    case AllocType::kSmallSlab:
      return kSmallPageSize;
    case AllocType::kMediumSlab:
      return kMediumPageSize;
    case AllocType::kLarge:
      return 0;
    default:
      ABSL_RAW_LOG(FATAL, "elfmalloc: %p was not allocated by elfmalloc", p);
      return 0;
  }
}

struct SlabRef {
  Heap* heap;
  SizeClass cls;
};

// The class of a slab pointer p with stamp page size `page`.
SlabRef ClassOfSlabPointer(const void* p, std::size_t page) {
  Heap* heap = g_heap.load(std::memory_order_acquire);
  if (heap == nullptr) {
    ABSL_RAW_LOG(FATAL, "elfmalloc: %p freed before any allocation", p);
  }
  const Slab* s = Slab::Find(p, page);
  return {heap, heap->ClassOf(s->metadata())};
}

ABSL_ATTRIBUTE_NOINLINE void FreeSlow(Heap* heap, SizeClass c, void* p) {
  if (ThreadHeap* th = InitThreadHeap(heap->classes())) {
    th->Cache(c).Free(p);
    return;
  }
  Fallback& f = heap->fallback(c);
  SpinLockHolder l(&f.lock);
  f.slabs.Free(p);
}

bool IsPow2(std::size_t x) { return x != 0 && (x & (x - 1)) == 0; }

}  // namespace

void* Allocate(std::size_t n) noexcept {
  if (ABSL_PREDICT_TRUE(IsSlabSize(n))) return AllocClass(SizeToClass(n));
  return LargeAlloc(n);
}

void* Allocate(std::size_t n, std::size_t align) noexcept {
  if (align <= 8) return Allocate(n);
  if (!IsPow2(align)) {
    errno = EINVAL;
    return nullptr;
  }
  if (IsSlabSize(n)) {
    const SizeClass c = SizeToClass(n);
    if (ClassAlignment(c) >= align) return AllocClass(c);
    const std::size_t m = absl::bit_ceil(n > align ? n : align);
    // Every power of two from 16 to 1 MiB is a class aligned to its size.
    if (IsSlabSize(m)) return AllocClass(SizeToClass(m));
  }
  return LargeAlloc(n, align);
}

void Deallocate(void* p) noexcept {
  if (p == nullptr) return;
  const std::size_t page = SlabPageSize(ReadAllocType(p), p);
  if (page == 0) {
    LargeFree(p);
    return;
  }
  const SlabRef r = ClassOfSlabPointer(p, page);
  if (ThreadHeap* th = CurrentThreadHeap(); ABSL_PREDICT_TRUE(th != nullptr)) {
    th->Cache(r.cls).Free(p);
    return;
  }
  FreeSlow(r.heap, r.cls, p);
}

std::size_t UsableSize(const void* p) noexcept {
  if (p == nullptr) return 0;
  const std::size_t page = SlabPageSize(ReadAllocType(p), p);
  if (page == 0) return LargeUsableSize(p);
  return ClassSize(ClassOfSlabPointer(p, page).cls);
}

void* Reallocate(void* p, std::size_t n) noexcept {
  if (p == nullptr) return Allocate(n);
  const std::size_t page = SlabPageSize(ReadAllocType(p), p);
  if (page == 0) {
    // Large: a size that fits a class moves to a slab (a whole mapping for
    // <= 1 MiB is wasteful); otherwise mremap, which grows or shrinks.
    if (!IsSlabSize(n)) return LargeRealloc(p, n);
  } else {
    const std::size_t old = ClassSize(ClassOfSlabPointer(p, page).cls);
    if (n <= old) {
      // Shrink only when it saves at least half the block.
      const std::size_t now = ClassSize(SizeToClass(n));
      if (now > old / 2) return p;
    }
  }
  void* q = Allocate(n);
  if (q == nullptr) return nullptr;
  const std::size_t old_usable = UsableSize(p);
  std::memcpy(q, p, old_usable < n ? old_usable : n);
  Deallocate(p);
  return q;
}

void MarkThreadIdle() noexcept { ReleaseThreadHeap(); }

Stats GetStats() noexcept {
  Stats s;
  const LargeStats large = GetLargeStats();
  s.large_bytes = large.mapped_bytes;
  s.large_allocations = large.allocations;
  s.thread_heaps = LiveThreadHeaps();
  s.mapped_bytes = large.mapped_bytes;
  s.active_bytes = large.mapped_bytes;
  Heap* heap = g_heap.load(std::memory_order_acquire);
  if (heap == nullptr) return s;
  s.mapped_bytes += heap->small().GetStats().mapped_bytes +
                    heap->medium().GetStats().mapped_bytes;
  for (std::size_t i = 0; i < kNumSizeClasses; ++i) {
    const SizeClass c(static_cast<std::uint8_t>(i));
    const std::size_t pages = heap->cls(c).pages_in_use();
    s.class_pages_in_use[i] = pages;
    s.active_bytes += pages * ClassPageSize(c);
  }
  return s;
}

}  // namespace elfmalloc
