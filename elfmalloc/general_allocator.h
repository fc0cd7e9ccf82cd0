// elfmalloc's general (malloc-style) allocator: one process-wide heap of
// size-classed slabs with a per-thread front end per class, plus large
// allocations (the reference's general.rs global instance, allocators-rs
// section 11.6).
//
//   void* p = elfmalloc::Allocate(100);          // >= 100 bytes, 16-aligned
//   void* q = elfmalloc::Allocate(100, 4096);    // 4 KiB-aligned
//   p = elfmalloc::Reallocate(p, 300);           // keeps contents
//   elfmalloc::Deallocate(p);                    // any thread
//   elfmalloc::Deallocate(q);
//
// Routing. n <= 256 KiB goes to SizeToClass(n) (size_classes.h): 16..256
// by 16; then 4 classes per doubling up to 256 KiB. Bigger requests are
// large allocations (large_alloc.h: mapped, and cached for reuse when
// freed). Every block is aligned to at least 16 and to
// ClassAlignment(class) in general.
// Allocate(n, align) with a larger alignment uses the class of
// bit_ceil(max(n, align)) (a power-of-two class, aligned to its size) while
// that is <= 256 KiB, and a large allocation aligned to `align` otherwise.
// (QUIRK fixed: the reference rounded only the size, so (16, 64) got 16-byte
// alignment.)
//
// Freeing classifies the pointer with one cache line, the header at
// round_down(p - 1, 2 MiB): its AllocType stamp (slab or large) and, for a
// slab, its region's tag table, whose byte for p's 64 KiB granule is p's
// class + 1 (slab.h, "Tags") -> this thread's front end for that class;
// large -> its units back to the large-block heap (or unmap: direct blocks).
//
// Reallocate(p, n): grows by moving (slab) or mremap (large), shrinks a slab
// block to a smaller class when the new class is at most half the old one, a
// large block by mremap or, if n fits a class, by moving to a slab. QUIRK
// fixed: the reference never shrank. Reallocate keeps only the default
// alignment guarantee, like C realloc.
//
// Global state: constinit pointers and a constinit SpinLock; the heap itself
// (page allocators, size classes, fallback allocators) is built on first use
// in mmap_alloc memory (double-checked under the lock) and lives until the
// process exits.
//
// Threads: see thread_cache.h for the per-thread state machine. A thread with
// no usable heap (while it builds one, during its exit, or when memory for
// one ran out) uses the FALLBACK path: one spin-locked SlabAllocator per
// class, shared by all such threads, for allocations and frees. (The
// reference mmap'd every such allocation and sent such frees to a background
// thread; a locked allocator is simpler, needs no thread, and keeps small
// allocations small.)
//
// Never calls malloc (memory comes from mmap_alloc and bsalloc), never
// throws. Failure: nullptr with errno = ENOMEM (EINVAL for a non-power-of-two
// alignment).
#ifndef ELFMALLOC_GENERAL_ALLOCATOR_H_
#define ELFMALLOC_GENERAL_ALLOCATOR_H_

#include <cstddef>

#include "elfmalloc/size_classes.h"

namespace elfmalloc {

// At least n bytes (a unique non-null block for n == 0), or nullptr.
void* Allocate(std::size_t n) noexcept;
// What AllocateOr does where Allocate would return nullptr: it returns
// what the caller gets instead, or throws.
using AllocFailureHandler = void* (*)(std::size_t n);
// Allocate(n), except that where that fails the result is on_failure(n),
// reached by a tail call. For operator new: its entry point is then a
// jump to this function with its handler loop as on_failure, where a call
// of Allocate and a test of the result kept a stack frame (4 instructions
// more per new, callgrind, and a call and return). Not noexcept:
// on_failure may throw (std::bad_alloc) through it; no frame on the way
// needs a cleanup.
void* AllocateOr(std::size_t n, AllocFailureHandler on_failure);
// At least n bytes aligned to align (0 and 1 mean no requirement beyond the
// default), or nullptr (EINVAL if align is not a power of two).
void* Allocate(std::size_t n, std::size_t align) noexcept;
// As Allocate(n) with the first n bytes zero (calloc). A large block from a
// fresh mapping is not written: its pages stay untouched until used.
void* AllocateZeroed(std::size_t n) noexcept;
// Frees a block from this allocator; nullptr is a no-op. Any thread. A
// pointer this allocator never returned is undefined behaviour (typically
// an abort with a message when its stamp is unrecognisable).
void Deallocate(void* p) noexcept;
// The bytes usable at p (>= the size asked for); 0 for nullptr.
std::size_t UsableSize(const void* p) noexcept;
// Resizes p to n bytes, keeping the first min(UsableSize(p), n) bytes. p ==
// nullptr: Allocate(n). n == 0 is an ordinary size (the result is the
// smallest block). Returns nullptr on failure, leaving p valid.
void* Reallocate(void* p, std::size_t n) noexcept;

// Returns the calling thread's cached objects and slabs to the shared heap
// and frees its front ends (tcmalloc's MarkThreadIdle). The thread may keep
// allocating; a new front end is built on its next call.
void MarkThreadIdle() noexcept;

// Returns every cached dirty slab page to the OS now (malloc_trim); the
// bytes uncommitted. Normally the decay rule does this over time (see
// "Memory return" in page_alloc.h; ELFMALLOC_DECAY_MS,
// ELFMALLOC_MAX_DIRTY_MB). The calling thread's cached objects and claimed
// slabs go back first; other threads give back theirs at their next slow
// path (thread_cache.h, "Draining"). Slabs that still hold live objects
// are not affected.
std::size_t ReleaseFreeMemory() noexcept;

// Background decay. The decay rule (page_alloc.h, "Memory return"; the
// large-block heap's likewise) is checked on the allocator's own slow
// events: page traffic and slab claims and releases (the large-block
// cache's also magazine refills). A program that stops allocating, or whose remaining calls are
// all served by its threads' magazines (the fast path, which reads no
// clock), never reaches one, and keeps the dirty pages and cached large
// blocks of its last burst. With the option background_decay
// (ELFMALLOC_BACKGROUND_DECAY=1) a detached thread, all signals blocked,
// checks both every quarter decay period (10 ms .. 1 s): it holds its own
// page-allocator handles, takes no lock the program's threads take, and
// never allocates through malloc. Measured: 400 MiB of small blocks
// freed, then a few calls every 50 ms: 70 MiB resident stays 70 MiB
// without it, and drops to a few MiB within two periods with it
// (//elfc:quiet_memory_process_test). Threads' own caches (magazines,
// claimed slabs) are theirs alone: a sleeping thread keeps them.
//   Life cycle: started by StartBackgroundDecay() (elfc calls it from its
//   load-time constructor), at most once per process. A fork child does
//   not have the thread (fork copies only the calling thread); its memory
//   decays on its own slow events, as with the option off. At exit the
//   thread simply stops with the process: everything it touches (the heap,
//   the page allocators, the large-block heap) is never destroyed, and a
//   purge cut short leaves pages that are merely still cached. The thread
//   must never keep the process alive (glibc ends a process when its last
//   thread exits, and this thread counts): it returns as soon as it sees
//   that the main thread left by pthread_exit (platform.h,
//   MainThreadExited, checked every tick), so the program's other threads
//   end the process as they would without it; if it is the last thread by
//   then, glibc runs exit(0) on it. Without /proc that cannot be seen, and
//   a program whose main thread leaves by pthread_exit would not end.
// Returns true if the thread runs (started now or before); false when the
// option is off or the thread could not be started. Call it where a program
// could start a thread itself (a constructor, main), not inside malloc.
bool StartBackgroundDecay() noexcept;

// The general allocator as a malloc_bind backend (malloc_bind/malloc_bind.h,
// concept Backend): what libelfc.so, the malloc fuzzer and malloc_bind's
// tests bind. Every block is aligned to at least 16 (the smallest class is
// 16 bytes), so memalign(16, n) is malloc(n).
struct MallocBackend {
  static constexpr std::size_t kDefaultAlignment = 16;
  static_assert(ClassAlignment(SizeClass(0)) >= kDefaultAlignment);
  // Deallocate(nullptr) is a no-op, and a request above PTRDIFF_MAX fails
  // in the large allocator (its size arithmetic refuses it): malloc and free
  // need no tests of their own.
  static constexpr bool kDeallocatesNull = true;
  static constexpr bool kAllocatesAnySize = true;
  static void* Allocate(std::size_t n) noexcept {
    return elfmalloc::Allocate(n);
  }
  static void* AllocateOr(std::size_t n, AllocFailureHandler on_failure) {
    return elfmalloc::AllocateOr(n, on_failure);
  }
  static void* AllocateAligned(std::size_t n, std::size_t a) noexcept {
    return elfmalloc::Allocate(n, a);
  }
  static void* AllocateZeroed(std::size_t n) noexcept {
    return elfmalloc::AllocateZeroed(n);
  }
  static void Deallocate(void* p) noexcept { elfmalloc::Deallocate(p); }
  static std::size_t UsableSize(const void* p) noexcept {
    return elfmalloc::UsableSize(p);
  }
  static void* Reallocate(void* p, std::size_t n) noexcept {
    return elfmalloc::Reallocate(p, n);
  }
  static std::size_t ReleaseFreeMemory() noexcept {
    return elfmalloc::ReleaseFreeMemory();
  }
};

// Statistics, read without allocating (relaxed counters: a consistent
// snapshot is not guaranteed while other threads allocate). Takes the
// thread-heap registry's spin lock briefly.
struct Stats {
  // Bytes held by the program: every live slab block at its class size,
  // plus live large mappings. Exact when no other thread is allocating
  // (per-thread counters of objects taken from and given back to the slabs,
  // minus what the magazines cache, summed here).
  std::size_t allocated_bytes = 0;
  // Bytes mapped from the OS: slab regions carved by the page allocators and
  // not yet given back (page_alloc.h, "Unmapping"), live large blocks and
  // the resident bytes of free large units.
  std::size_t mapped_bytes = 0;
  // Bytes of slab pages currently holding a slab (claimed, listed or
  // floating) plus live large mappings: the "active" footprint.
  std::size_t active_bytes = 0;
  // Slab pages cached committed by the page allocators (reused first;
  // uncommitted by the decay rule).
  std::size_t dirty_bytes = 0;
  // Slab pages cached without memory behind them (uncommitted, or never
  // touched): mapped address space that costs no RSS.
  std::size_t returned_bytes = 0;
  std::size_t large_bytes = 0;         // mapped for live large allocations
  std::size_t large_allocations = 0;   // live large allocations
  // Freed large blocks kept mapped for reuse (large_alloc.h, "Reuse");
  // counted in mapped_bytes, not in large_bytes.
  std::size_t large_cached_bytes = 0;
  std::size_t thread_heaps = 0;        // live per-thread front-end sets
  // Slab pages in use per class.
  std::size_t class_pages_in_use[kNumSizeClasses] = {};
  // Blocks held by the program per class.
  std::size_t class_allocated_objects[kNumSizeClasses] = {};
  // Free blocks cached in thread heaps' magazines per class (live and
  // pooled heaps): taken from the slabs, not held by the program.
  std::size_t class_cached_objects[kNumSizeClasses] = {};
  // The allocator's own bookkeeping: the heap's structure, thread heaps and
  // bagpipe segments (bsalloc's mapped bytes). Not counted: the magazines'
  // stacks, mapped per thread and class and committed as they fill.
  std::size_t metadata_bytes = 0;
  // An upper estimate of the resident memory the allocator is responsible
  // for: active + dirty + metadata bytes (active slab pages may not be
  // touched throughout).
  std::size_t resident_bytes = 0;
  // The process's peak resident set (getrusage's ru_maxrss): what the
  // operating system measured, allocator and everything else included.
  std::size_t peak_resident_bytes = 0;
  // Retired thread heaps kept for reuse (thread_cache.h).
  std::size_t pooled_thread_heaps = 0;
};
Stats GetStats() noexcept;

}  // namespace elfmalloc

#endif  // ELFMALLOC_GENERAL_ALLOCATOR_H_
