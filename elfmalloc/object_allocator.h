// elfmalloc's object-specific allocators: a slab allocator for one object
// size, shared by any number of threads (the reference's LocalAllocator<T>
// and MagazineAllocator<T>, allocators-rs elfmalloc frontends.rs).
//
//   elfmalloc::MagazineAllocator<Node> alloc;            // reference defaults
//   auto h = alloc.NewHandle();                          // one per thread
//   Node* n = h.Allocate();                              // constructed Node
//   h.Deallocate(n);                                     // any thread's handle
//
// Each allocator owns a PageAlloc (pages of DefaultObjectPageSize(size):
// max(32 KiB, 4 * size) rounded up to a power of two) and one SlabClass. Each
// Handle is one thread's front end on it: a MagazineCache (MagazineAllocator,
// the default) or a LocalCache (LocalAllocator). A Handle is not thread-safe;
// an object allocated through one handle may be freed through any other
// handle of the same allocator, on any thread. Handles must be destroyed
// before their allocator; destroying a handle returns the objects it caches.
//
// The allocator object itself also satisfies the object_alloc concepts with
// kThreadSafe = true: its Allocate/Deallocate use the calling thread's own
// handle, created on first use and kept (in a registry guarded by a spin lock,
// looked up through a small thread-local cache) until the allocator is
// destroyed. A thread that exits leaves its handle (and the objects it caches)
// in the registry; a later thread whose thread-local storage lands at the
// same address reuses it (the old thread is gone, so the handle is never used
// by two live threads). This is a convenience for code that cannot keep a
// handle per thread (e.g. the object_alloc_test suites); the per-thread
// handle is the fast path. Thread-exit clean-up proper is not provided.
//
// Typed allocators (MagazineAllocator<T>, LocalAllocator<T>) do NOT keep
// objects constructed between uses: Allocate() value-constructs a T in the
// slab storage every time and Deallocate() destroys it before the storage
// goes back. That meets object_alloc::ObjectAlloc's contract (an object is
// "freshly constructed or a cached constructed one") without a constructed
// object cache, whose objects would need destroying at teardown while the
// slabs are spread over every thread's cache. T must be nothrow
// default-constructible. The untyped variants (MagazineUntypedAllocator,
// LocalUntypedAllocator) hand out raw storage of a Layout.
//
// Destroying the allocator (after every handle) unmaps all its pages. Objects
// still live at that point are a caller bug: their memory disappears.
// Memory: internal state from bsalloc, pages and caches from mmap_alloc;
// nothing calls malloc or throws. Out of memory: Allocate returns nullptr
// (and an allocator whose construction ran out is !valid() and returns
// nullptr always).
#ifndef ELFMALLOC_OBJECT_ALLOCATOR_H_
#define ELFMALLOC_OBJECT_ALLOCATOR_H_

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <new>
#include <type_traits>
#include <utility>

#include "absl/base/internal/spinlock.h"
#include "bsalloc/bsalloc.h"
#include "elfmalloc/local_cache.h"
#include "elfmalloc/magazine_cache.h"
#include "elfmalloc/page_alloc.h"
#include "elfmalloc/slab_allocator.h"
#include "object_alloc/object_alloc.h"

namespace elfmalloc {

// The reference's AllocBuilder defaults.
struct ObjectAllocatorOptions {
  double cutoff = 0.6;
  // 0: DefaultObjectPageSize(object size). Otherwise a power of two >= the
  // OS page.
  std::size_t page_size = 0;
  // Dirty pages kept committed by the page allocator (target_overhead).
  std::size_t max_dirty_bytes = std::size_t{1} << 20;
  // Slabs with at least this many usable bytes go back uncommitted.
  std::size_t eager_uncommit_threshold = std::size_t{128} << 10;
  // Bytes of each page objects may use; 0: the whole page (the reference's
  // max_objects = 1 << 30, passed as usable_size, meant the same).
  std::size_t usable_size = 0;
  std::size_t available_queues = 8;  // the reference's standalone pipe size
  std::size_t dirty_queues = 8;
};

// max(32 KiB, 4 * object_size), rounded up to a power of two.
std::size_t DefaultObjectPageSize(std::size_t object_size) noexcept;

namespace internal {

// The per-thread handle cache behind the allocators' thread-safe entry
// points: a few (allocator serial -> handle) entries per thread. Serials are
// never reused, so an entry of a destroyed allocator never matches.
void* CachedThreadHandle(std::uint64_t serial) noexcept;
void CacheThreadHandle(std::uint64_t serial, void* handle) noexcept;
// A value unique among live threads (the address of a thread_local).
const void* ThreadKey() noexcept;
std::uint64_t NextAllocatorSerial() noexcept;
// PageAlloc options for an object allocator.
PageAlloc::Options ObjectPageOptions(std::size_t object_size,
                                     const ObjectAllocatorOptions& o) noexcept;

}  // namespace internal

// Frontend: MagazineCache or LocalCache.
template <class Frontend>
class BasicUntypedAllocator {
 public:
  static constexpr bool kThreadSafe = true;

  class Handle {
   public:
    Handle() noexcept = default;  // invalid: Allocate returns nullptr
    Handle(Handle&&) noexcept = default;
    Handle& operator=(Handle&&) noexcept = default;

    object_alloc::Layout layout() const noexcept { return layout_; }
    void* Allocate() noexcept {
      return cache_.valid() ? cache_.Alloc() : nullptr;
    }
    // p from any handle of the same allocator.
    void Deallocate(void* p) noexcept { cache_.Free(p); }
    const Frontend& cache() const noexcept { return cache_; }

   private:
    friend class BasicUntypedAllocator;
    Handle(SlabClass* cls, object_alloc::Layout layout) noexcept
        : cache_(cls), layout_(layout) {}
    Frontend cache_;
    object_alloc::Layout layout_;
  };

  // layout must be IsValid(); options as documented above.
  explicit BasicUntypedAllocator(object_alloc::Layout layout,
                                 const ObjectAllocatorOptions& options = {})
      noexcept {
    if (!layout.IsValid()) return;
    void* mem = bsalloc::Allocate(sizeof(Shared));
    if (mem == nullptr) return;
    s_ = ::new (mem) Shared(layout, options);
    if (!s_->cls.valid()) {
      Destroy();
    }
  }
  ~BasicUntypedAllocator() { Destroy(); }
  BasicUntypedAllocator(BasicUntypedAllocator&& o) noexcept
      : s_(std::exchange(o.s_, nullptr)) {}
  BasicUntypedAllocator& operator=(BasicUntypedAllocator&& o) noexcept {
    if (this != &o) {
      Destroy();
      s_ = std::exchange(o.s_, nullptr);
    }
    return *this;
  }

  bool valid() const noexcept { return s_ != nullptr; }
  object_alloc::Layout layout() const noexcept {
    return s_ != nullptr ? s_->layout : object_alloc::Layout{};
  }

  // A new per-thread handle (invalid if the allocator is).
  Handle NewHandle() noexcept {
    return s_ != nullptr ? Handle(&s_->cls, s_->layout) : Handle();
  }

  // Thread-safe: through the calling thread's registered handle.
  void* Allocate() noexcept {
    Handle* h = ThreadHandle();
    return h != nullptr ? h->Allocate() : nullptr;
  }
  void Deallocate(void* p) noexcept {
    if (s_ == nullptr) return;  // nothing can have come from it
    Handle* h = ThreadHandle();
    if (h != nullptr) {
      h->Deallocate(p);
    } else {
      // No handle (out of memory for the registry): free it directly.
      SlabAllocator direct(&s_->cls);
      direct.Free(p);
    }
  }

  // Introspection for tests and statistics.
  const SlabMetadata& metadata() const noexcept { return s_->cls.metadata(); }
  std::size_t pages_in_use() const noexcept { return s_->cls.pages_in_use(); }
  PageAlloc::Stats page_stats() const noexcept {
    return s_->pages.GetStats();
  }

 private:
  struct Node {
    const void* key;
    Node* next;
    Handle handle;
  };
  struct Shared {
    Shared(object_alloc::Layout l, const ObjectAllocatorOptions& o) noexcept
        : pages(internal::ObjectPageOptions(l.size, o)),
          cls(&pages, ClassOptions(l, o)),
          layout(l),
          serial(internal::NextAllocatorSerial()) {}
    static SlabClass::Options ClassOptions(
        object_alloc::Layout l, const ObjectAllocatorOptions& o) noexcept {
      SlabClass::Options c;
      c.object_size = l.size;
      c.cutoff = o.cutoff;
      c.usable_size = o.usable_size;
      c.eager_uncommit_threshold = o.eager_uncommit_threshold;
      c.available_queues = o.available_queues;
      return c;
    }
    PageAlloc pages;  // declared first: destroyed after cls
    SlabClass cls;
    object_alloc::Layout layout;
    std::uint64_t serial;
    absl::base_internal::SpinLock lock;
    Node* nodes = nullptr;  // guarded by lock
  };

  Handle* ThreadHandle() noexcept {
    if (s_ == nullptr) return nullptr;
    if (void* h = internal::CachedThreadHandle(s_->serial)) {
      return static_cast<Handle*>(h);
    }
    return ThreadHandleSlow();
  }

  Handle* ThreadHandleSlow() noexcept {
    const void* key = internal::ThreadKey();
    Handle* found = nullptr;
    {
      absl::base_internal::SpinLockHolder l(&s_->lock);
      for (Node* n = s_->nodes; n != nullptr; n = n->next) {
        if (n->key == key) {
          found = &n->handle;
          break;
        }
      }
      if (found == nullptr) {
        void* mem = bsalloc::Allocate(sizeof(Node));
        if (mem == nullptr) return nullptr;
        Node* n = ::new (mem) Node{key, s_->nodes, NewHandle()};
        s_->nodes = n;
        found = &n->handle;
      }
    }
    internal::CacheThreadHandle(s_->serial, found);
    return found;
  }

  void Destroy() noexcept {
    if (s_ == nullptr) return;
    // Every handle goes before the class it caches objects of.
    for (Node* n = s_->nodes; n != nullptr;) {
      Node* next = n->next;
      n->~Node();
      bsalloc::Deallocate(n, sizeof(Node));
      n = next;
    }
    s_->~Shared();
    bsalloc::Deallocate(s_, sizeof(Shared));
    s_ = nullptr;
  }

  Shared* s_ = nullptr;
};

using MagazineUntypedAllocator = BasicUntypedAllocator<MagazineCache>;
using LocalUntypedAllocator = BasicUntypedAllocator<LocalCache>;

template <class T, class Frontend>
class BasicObjectAllocator {
  static_assert(std::is_nothrow_default_constructible_v<T> &&
                    std::is_nothrow_destructible_v<T>,
                "T must be nothrow default-constructible and destructible");

 public:
  using value_type = T;
  static constexpr bool kThreadSafe = true;

  class Handle {
   public:
    using value_type = T;
    Handle() noexcept = default;
    Handle(Handle&&) noexcept = default;
    Handle& operator=(Handle&&) noexcept = default;

    // A freshly value-constructed T, or nullptr.
    T* Allocate() noexcept { return Construct(h_.Allocate()); }
    // Destroys *p and frees its storage; p from any handle of the allocator.
    void Deallocate(T* p) noexcept {
      p->~T();
      h_.Deallocate(p);
    }
    const Frontend& cache() const noexcept { return h_.cache(); }

   private:
    friend class BasicObjectAllocator;
    explicit Handle(typename BasicUntypedAllocator<Frontend>::Handle h) noexcept
        : h_(std::move(h)) {}
    typename BasicUntypedAllocator<Frontend>::Handle h_;
  };

  explicit BasicObjectAllocator(const ObjectAllocatorOptions& options = {})
      noexcept
      : u_(object_alloc::LayoutOf<T>(), options) {}

  bool valid() const noexcept { return u_.valid(); }
  Handle NewHandle() noexcept { return Handle(u_.NewHandle()); }

  // Thread-safe (see the file comment).
  T* Allocate() noexcept { return Construct(u_.Allocate()); }
  void Deallocate(T* p) noexcept {
    p->~T();
    u_.Deallocate(p);
  }

  const SlabMetadata& metadata() const noexcept { return u_.metadata(); }
  std::size_t pages_in_use() const noexcept { return u_.pages_in_use(); }
  PageAlloc::Stats page_stats() const noexcept { return u_.page_stats(); }

 private:
  static T* Construct(void* p) noexcept {
    return p != nullptr ? ::new (p) T() : nullptr;
  }
  BasicUntypedAllocator<Frontend> u_;
};

template <class T>
using MagazineAllocator = BasicObjectAllocator<T, MagazineCache>;
template <class T>
using LocalAllocator = BasicObjectAllocator<T, LocalCache>;

// The reference's AllocBuilder: options with its defaults and setters.
template <class T>
class ObjectAllocatorBuilder {
 public:
  ObjectAllocatorBuilder& cutoff(double v) noexcept {
    o_.cutoff = v;
    return *this;
  }
  ObjectAllocatorBuilder& page_size(std::size_t v) noexcept {
    o_.page_size = v;
    return *this;
  }
  ObjectAllocatorBuilder& max_dirty_bytes(std::size_t v) noexcept {
    o_.max_dirty_bytes = v;
    return *this;
  }
  ObjectAllocatorBuilder& eager_uncommit_threshold(std::size_t v) noexcept {
    o_.eager_uncommit_threshold = v;
    return *this;
  }
  ObjectAllocatorBuilder& usable_size(std::size_t v) noexcept {
    o_.usable_size = v;
    return *this;
  }
  const ObjectAllocatorOptions& options() const noexcept { return o_; }

  MagazineAllocator<T> BuildMagazine() const noexcept {
    return MagazineAllocator<T>(o_);
  }
  LocalAllocator<T> BuildLocal() const noexcept { return LocalAllocator<T>(o_); }

 private:
  ObjectAllocatorOptions o_;
};

}  // namespace elfmalloc

#endif  // ELFMALLOC_OBJECT_ALLOCATOR_H_
