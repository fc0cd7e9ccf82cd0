// Tests for slab_alloc: builders and initialisation policies, constructor
// elision (constructor/destructor counts), slab geometry and the small/large
// rule (both kinds really used: the reference's aligned slabs were dead
// code), colouring, backings (heap, mmap, user-provided, out of memory),
// working-set reclamation with a fake clock, destruction with live objects
// (report and leak, or abort), argument checks, and a randomised stress run
// per slab kind and backing. The object_alloc_test conformance suite runs in
// slab_alloc_suite_test.cc.
#include "slab_alloc/slab_alloc.h"

#include <chrono>
#include <cstdint>
#include <cstring>
#include <map>
#include <random>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "gtest/gtest.h"
#include "mmap_alloc/mmap_alloc.h"
#include "object_alloc/object_alloc.h"
#include "slab_alloc/backing.h"
#include "slab_alloc/version.h"

namespace slab_alloc {
namespace {

using object_alloc::Layout;

std::size_t Page() { return mmap_alloc::PageSize(); }

// ---------------------------------------------------------------------------
// Test helpers.

// A backing that records every block, checks the Backing contract, and can be
// told to fail. Memory comes from the heap.
struct Ledger {
  std::map<void*, std::pair<std::size_t, std::size_t>> blocks;
  std::size_t allocations = 0;
  std::size_t fail_from = ~std::size_t{0};  // Allocation index to fail from.
  std::string violation;                    // First contract violation.
};

struct TrackingBacking {
  Ledger* ledger;
  void* Allocate(std::size_t size, std::size_t align) noexcept {
    if (size == 0 || size % Page() != 0) ledger->violation = "size";
    if (align < Page() || (align & (align - 1)) != 0) {
      ledger->violation = "align";
    }
    if (ledger->allocations++ >= ledger->fail_from) return nullptr;
    void* p = HeapBacking{}.Allocate(size, align);
    if (p != nullptr) ledger->blocks[p] = {size, align};
    return p;
  }
  void Deallocate(void* p, std::size_t size, std::size_t align) noexcept {
    auto it = ledger->blocks.find(p);
    if (it == ledger->blocks.end()) {
      ledger->violation = "unknown block freed";
      return;
    }
    if (it->second != std::make_pair(size, align)) {
      ledger->violation = "size/align mismatch on free";
    }
    ledger->blocks.erase(it);
    HeapBacking{}.Deallocate(p, size, align);
  }
  // Frees what is left (deliberately leaked slabs), for the leak tests.
  static void FreeAll(Ledger& ledger) {
    for (auto& [p, sa] : ledger.blocks) HeapBacking{}.Deallocate(p, 0, 0);
    ledger.blocks.clear();
  }
};
static_assert(Backing<TrackingBacking>);

// Counts constructions and destructions.
struct Counted {
  static inline int constructed = 0;
  static inline int destroyed = 0;
  static void Reset() { constructed = destroyed = 0; }
  static int Alive() { return constructed - destroyed; }

  Counted() : value(7) { ++constructed; }
  explicit Counted(int v) : value(v) { ++constructed; }
  Counted(const Counted&) = delete;
  Counted& operator=(const Counted&) = delete;
  ~Counted() { ++destroyed; }

  int value;
  char payload[60];
};

// A fake monotonic clock for reclamation tests.
std::int64_t g_fake_now = 0;
std::int64_t FakeClock() noexcept { return g_fake_now; }
constexpr std::chrono::nanoseconds kPeriod = std::chrono::seconds(10);
void Advance(std::chrono::nanoseconds d) { g_fake_now += d.count(); }

bool AlignedTo(const void* p, std::size_t a) {
  return reinterpret_cast<std::uintptr_t>(p) % a == 0;
}

// ---------------------------------------------------------------------------
// Builders and policies.

TEST(SlabAllocTest, VersionIsExposed) {
  EXPECT_STREQ(kVersion, "0.1.0");
}

TEST(SlabAllocTest, DefaultBuilderValueInitialises) {
  struct Pod {
    int a[10];
  };
  auto alloc = SlabAllocBuilder<Pod>::Default().Build();
  static_assert(std::is_same_v<decltype(alloc)::value_type, Pod>);
  Pod* p = alloc.Allocate();
  ASSERT_NE(p, nullptr);
  for (int v : p->a) EXPECT_EQ(v, 0);
  EXPECT_TRUE(AlignedTo(p, alignof(Pod)));
  alloc.Deallocate(p);
}

TEST(SlabAllocTest, FuncBuilderConstructsFromTheFunction) {
  Counted::Reset();
  int calls = 0;
  {
    auto alloc = SlabAllocBuilder<Counted>::Func([&calls] {
                   ++calls;
                   return Counted(41 + calls);  // Guaranteed elision.
                 }).Build();
    Counted* a = alloc.Allocate();
    Counted* b = alloc.Allocate();
    ASSERT_NE(a, nullptr);
    ASSERT_NE(b, nullptr);
    EXPECT_EQ(a->value, 42);
    EXPECT_EQ(b->value, 43);
    EXPECT_EQ(calls, 2);
    alloc.Deallocate(a);
    alloc.Deallocate(b);
  }
  EXPECT_EQ(Counted::constructed, 2);
  EXPECT_EQ(Counted::destroyed, 2);
}

TEST(SlabAllocTest, InPlaceBuilderRunsTheInitialiserOnRawMemory) {
  Counted::Reset();
  {
    auto alloc = SlabAllocBuilder<Counted>::InPlace([](void* raw) {
                   ::new (raw) Counted(99);
                 }).BuildMmap();
    Counted* a = alloc.Allocate();
    ASSERT_NE(a, nullptr);
    EXPECT_EQ(a->value, 99);
    alloc.Deallocate(a);
  }
  EXPECT_EQ(Counted::Alive(), 0);
  EXPECT_EQ(Counted::constructed, 1);
}

TEST(SlabAllocTest, NoInitializeNeverConstructsOrDestroys) {
  Counted::Reset();
  {
    auto alloc = SlabAllocBuilder<Counted>::NoInitialize().Build();
    std::vector<Counted*> v;
    for (int i = 0; i < 100; ++i) v.push_back(alloc.Allocate());
    for (Counted* p : v) alloc.Deallocate(p);
  }
  EXPECT_EQ(Counted::constructed, 0);
  EXPECT_EQ(Counted::destroyed, 0);
}

TEST(SlabAllocTest, AlignRequestsTheLargestAndRoundsTheSize) {
  struct Obj {
    char c[24];
  };
  auto alloc = SlabAllocBuilder<Obj>::Default().Align(16).Align(8).Build();
  EXPECT_EQ(alloc.layout(), (Layout{32, 16}));  // 24 rounded up to 16.
  auto big = SlabAllocBuilder<Obj>::Default().Align(Page()).Build();
  EXPECT_EQ(big.layout(), (Layout{Page(), Page()}));
  std::vector<Obj*> v;
  for (int i = 0; i < 50; ++i) {
    v.push_back(alloc.Allocate());
    ASSERT_TRUE(AlignedTo(v.back(), 16));
    Obj* b = big.Allocate();
    ASSERT_TRUE(AlignedTo(b, Page()));
    big.Deallocate(b);
  }
  for (Obj* p : v) alloc.Deallocate(p);
}

TEST(SlabAllocTest, UntypedBuilders) {
  auto raw = UntypedSlabAllocBuilder<>(Layout{48, 16}).Build();
  static_assert(object_alloc::UntypedObjectAlloc<decltype(raw)>);
  EXPECT_EQ(raw.layout(), (Layout{48, 16}));
  void* p = raw.Allocate();
  ASSERT_NE(p, nullptr);
  EXPECT_TRUE(AlignedTo(p, 16));
  std::memset(p, 0xab, 48);
  raw.Deallocate(p);

  int inits = 0;
  auto init = UntypedSlabAllocBuilder<>::WithInit(Layout{64, 8}, [&](void* q) {
                ++inits;
                std::memset(q, 0x5a, 64);
              }).BuildMmap();
  unsigned char* q = static_cast<unsigned char*>(init.Allocate());
  ASSERT_NE(q, nullptr);
  EXPECT_EQ(q[0], 0x5a);
  EXPECT_EQ(q[63], 0x5a);
  q[0] = 1;  // Untyped objects keep whatever they held when freed.
  init.Deallocate(q);
  unsigned char* again = static_cast<unsigned char*>(init.Allocate());
  EXPECT_EQ(again, q);
  EXPECT_EQ(again[0], 1);
  EXPECT_EQ(inits, 1);
  init.Deallocate(again);

  // BuildUntyped from a typed builder still constructs and destroys T.
  Counted::Reset();
  {
    auto typed_raw = SlabAllocBuilder<Counted>::Default().BuildUntyped();
    static_assert(object_alloc::UntypedObjectAlloc<decltype(typed_raw)>);
    void* c = typed_raw.Allocate();
    EXPECT_EQ(static_cast<Counted*>(c)->value, 7);
    typed_raw.Deallocate(c);
  }
  EXPECT_EQ(Counted::constructed, 1);
  EXPECT_EQ(Counted::destroyed, 1);
}

// ---------------------------------------------------------------------------
// Constructor elision.

TEST(SlabAllocTest, ConstructorsAreElidedForCachedObjects) {
  Counted::Reset();
  {
    auto alloc = SlabAllocBuilder<Counted>::Default().Build();
    std::vector<Counted*> v;
    for (int i = 0; i < 100; ++i) v.push_back(alloc.Allocate());
    EXPECT_EQ(Counted::constructed, 100);
    for (Counted* p : v) {
      p->value = 1234;  // Objects are returned in a valid, modified state.
      alloc.Deallocate(p);
    }
    EXPECT_EQ(Counted::destroyed, 0);  // Cached, still constructed.
    EXPECT_EQ(alloc.stats().cached_objects, 100u);

    v.clear();
    for (int i = 0; i < 100; ++i) v.push_back(alloc.Allocate());
    EXPECT_EQ(Counted::constructed, 100);  // All 100 reused: no constructor.
    for (Counted* p : v) EXPECT_EQ(p->value, 1234);
    for (int i = 0; i < 50; ++i) v.push_back(alloc.Allocate());
    EXPECT_EQ(Counted::constructed, 150);  // Only the 50 new slots.

    for (int cycle = 0; cycle < 10; ++cycle) {
      for (Counted* p : v) alloc.Deallocate(p);
      for (Counted*& p : v) p = alloc.Allocate();
    }
    EXPECT_EQ(Counted::constructed, 150);
    EXPECT_EQ(Counted::destroyed, 0);
    for (Counted* p : v) alloc.Deallocate(p);
  }
  // Destroying the allocator destroys every cached object exactly once.
  EXPECT_EQ(Counted::constructed, 150);
  EXPECT_EQ(Counted::destroyed, 150);
}

// ---------------------------------------------------------------------------
// Geometry and the small/large rule.

TEST(SlabAllocTest, GeometryFitsAndRespectsAlignment) {
  for (std::size_t size : {1, 8, 16, 24, 48, 64, 100, 1000, 3000, 4096, 5000,
                           8192, 20000, 100000}) {
    for (std::size_t align : {1, 8, 64, 512, 4096}) {
      if (align > Page()) continue;
      for (SlabKind kind : {SlabKind::kAuto, SlabKind::kLarge}) {
        const std::size_t stride = (size + align - 1) / align * align;
        const internal::Geometry g =
            internal::ComputeGeometry(size, align, kind, true);
        SCOPED_TRACE(testing::Message() << "size " << size << " align "
                                        << align << " kind "
                                        << static_cast<int>(kind));
        EXPECT_EQ(g.size, stride);
        EXPECT_GE(g.capacity, 1u);
        EXPECT_EQ(g.objects_offset % align, 0u);
        EXPECT_GE(g.objects_offset,
                  sizeof(internal::SlabHeader) + 4 * g.capacity);
        EXPECT_LE(g.objects_offset + g.max_colour + g.capacity * g.size,
                  g.slab_size);
        EXPECT_EQ(g.slab_size % Page(), 0u);
        if (g.kind == SlabKind::kSmall) {
          EXPECT_EQ(g.slab_size & (g.slab_size - 1), 0u);
          EXPECT_LE(g.slab_size, std::max(kMaxSmallSlabBytes, Page()));
          EXPECT_GE(g.capacity, kMinObjectsPerSlab);
        }
        if (kind == SlabKind::kLarge) {
          EXPECT_EQ(g.kind, SlabKind::kLarge);
        }
        if (g.colour_step != 0) {
          EXPECT_EQ(g.colour_step % align, 0u);
          EXPECT_EQ(g.max_colour % g.colour_step, 0u);
        }
      }
    }
  }
}

// The documented rule: small slabs iff a power-of-two slab of at most
// kMaxSmallSlabBytes holds kMinObjectsPerSlab objects.
bool RuleSaysSmall(std::size_t stride, std::size_t align) {
  for (std::size_t slab = Page(); slab <= std::max(kMaxSmallSlabBytes, Page());
       slab *= 2) {
    if (internal::FitObjects(slab, stride, align).capacity >=
        kMinObjectsPerSlab) {
      return true;
    }
  }
  return false;
}

// The 47 object sizes of object_alloc_test.
constexpr std::size_t kSuiteSizes[] = {
    1,    2,    3,    4,    5,    6,    7,    8,    11,   12,   13,   16,
    19,   24,   29,   32,   41,   48,   59,   64,   73,   96,   113,  128,
    157,  192,  229,  256,  317,  384,  457,  512,  617,  768,  1024, 1277,
    1536, 1777, 2048, 2557, 3072, 3539, 4096, 5119, 6144, 7151, 8192};

TEST(SlabAllocTest, BothSlabKindsAreUsedAcrossTheSuiteSizes) {
  int small = 0;
  int large = 0;
  for (std::size_t size : kSuiteSizes) {
    auto alloc = UntypedSlabAllocBuilder<>(Layout{size, 1}).Build();
    const SlabKind expected =
        RuleSaysSmall(size, 1) ? SlabKind::kSmall : SlabKind::kLarge;
    EXPECT_EQ(alloc.kind(), expected) << size;
    (alloc.kind() == SlabKind::kSmall ? small : large)++;
    // Use it, and check how the slab is found.
    void* p = alloc.Allocate();
    ASSERT_NE(p, nullptr);
    const SlabStats st = alloc.stats();
    if (alloc.kind() == SlabKind::kSmall) {
      EXPECT_EQ(alloc.SlabBaseOf(p),
                reinterpret_cast<void*>(reinterpret_cast<std::uintptr_t>(p) &
                                        ~(st.slab_size - 1)));
      EXPECT_EQ(alloc.ptr_map().size(), 0u);  // No lookup structure at all.
      EXPECT_EQ(st.metadata_bytes, 0u);
    } else {
      EXPECT_EQ(alloc.ptr_map().size(), st.slab_size / Page());
      EXPECT_NE(alloc.SlabBaseOf(p), nullptr);
      EXPECT_GT(st.metadata_bytes, 0u);
    }
    alloc.Deallocate(p);
  }
  EXPECT_GT(small, 30);
  EXPECT_GE(large, 3);
}

TEST(SlabAllocTest, BoundaryBetweenSmallAndLargeWith4KiBPages) {
  if (Page() != 4096) GTEST_SKIP() << "figures assume 4 KiB pages";
  // Last suite size below the boundary: 3539 bytes, 9 to a 32 KiB slab.
  const internal::Geometry below =
      internal::ComputeGeometry(3539, 1, SlabKind::kAuto, true);
  EXPECT_EQ(below.kind, SlabKind::kSmall);
  EXPECT_EQ(below.slab_size, 32768u);
  EXPECT_EQ(below.capacity, 9u);
  // 4096 bytes: 7 to a 32 KiB slab, so large slabs (8 pages + 1: 8 objects).
  const internal::Geometry above =
      internal::ComputeGeometry(4096, 1, SlabKind::kAuto, true);
  EXPECT_EQ(above.kind, SlabKind::kLarge);
  EXPECT_EQ(above.capacity, 8u);
  EXPECT_EQ(above.slab_size, 9 * 4096u);
  // The exact boundary: the largest small stride is (32768-32)/8 - 4 = 4088.
  EXPECT_EQ(internal::ComputeGeometry(4088, 8, SlabKind::kAuto, true).kind,
            SlabKind::kSmall);
  EXPECT_EQ(internal::ComputeGeometry(4096, 8, SlabKind::kAuto, true).kind,
            SlabKind::kLarge);
  // Small objects use one-page slabs: 64-byte objects, 59 per page.
  const internal::Geometry tiny =
      internal::ComputeGeometry(64, 64, SlabKind::kAuto, true);
  EXPECT_EQ(tiny.kind, SlabKind::kSmall);
  EXPECT_EQ(tiny.slab_size, 4096u);
  EXPECT_EQ(tiny.capacity, 59u);
}

TEST(SlabAllocTest, ForcedKindsWork) {
  auto large = UntypedSlabAllocBuilder<>(Layout{64, 8})
                   .Kind(SlabKind::kLarge)
                   .Build();
  EXPECT_EQ(large.kind(), SlabKind::kLarge);
  auto small = UntypedSlabAllocBuilder<>(Layout{8192, 8})
                   .Kind(SlabKind::kSmall)
                   .BuildMmap();
  EXPECT_EQ(small.kind(), SlabKind::kSmall);
  EXPECT_GE(small.stats().objects_per_slab, kMinObjectsPerSlab);
  std::vector<void*> v;
  for (int i = 0; i < 200; ++i) v.push_back(large.Allocate());
  EXPECT_GT(large.stats().slabs, 1u);
  for (void* p : v) large.Deallocate(p);
  v.clear();
  for (int i = 0; i < 20; ++i) v.push_back(small.Allocate());
  for (void* p : v) small.Deallocate(p);
}

// ---------------------------------------------------------------------------
// Colouring.

// The offsets (from the slab base) of the first object of each slab.
template <class A>
std::vector<std::size_t> FirstObjectOffsets(A& alloc, std::size_t slabs) {
  const std::size_t n = slabs * alloc.stats().objects_per_slab;
  std::vector<void*> v;
  std::map<const void*, std::size_t> min_offset;
  for (std::size_t i = 0; i < n; ++i) {
    void* p = alloc.Allocate();
    v.push_back(p);
    const void* base = alloc.SlabBaseOf(p);
    const std::size_t off = static_cast<std::size_t>(
        static_cast<char*>(p) - static_cast<const char*>(base));
    auto [it, fresh] = min_offset.emplace(base, off);
    if (!fresh && off < it->second) it->second = off;
  }
  for (void* p : v) alloc.Deallocate(p);
  std::vector<std::size_t> out;
  for (auto& [base, off] : min_offset) out.push_back(off);
  return out;
}

TEST(SlabAllocTest, ColouringStaggersObjectArraysAndCanBeTurnedOff) {
  for (SlabKind kind : {SlabKind::kSmall, SlabKind::kLarge}) {
    // 3000-byte objects leave room for several 64-byte colours (kSmall: 10
    // to a 32 KiB slab, 43 colours; kLarge: 4 to 3 pages, 4 colours).
    auto on = UntypedSlabAllocBuilder<>(Layout{3000, 8}).Kind(kind).Build();
    const SlabStats st = on.stats();
    ASSERT_GE(st.max_colour, 128u) << static_cast<int>(kind);
    const std::size_t colours = st.max_colour / 64 + 1;
    std::vector<std::size_t> offsets = FirstObjectOffsets(on, colours);
    ASSERT_EQ(offsets.size(), colours);
    std::set<std::size_t> distinct(offsets.begin(), offsets.end());
    EXPECT_EQ(distinct.size(), colours);
    EXPECT_EQ(*distinct.rbegin() - *distinct.begin(), st.max_colour);
    for (std::size_t off : distinct) EXPECT_EQ(off % 8, 0u);

    auto off = UntypedSlabAllocBuilder<>(Layout{3000, 8})
                   .Kind(kind)
                   .Colouring(false)
                   .Build();
    EXPECT_EQ(off.stats().max_colour, 0u);
    offsets = FirstObjectOffsets(off, colours);
    distinct = std::set<std::size_t>(offsets.begin(), offsets.end());
    EXPECT_EQ(distinct.size(), 1u);
  }
}

// ---------------------------------------------------------------------------
// Backings.

TEST(SlabAllocTest, UserBackingSeesContractConformingRequests) {
  for (SlabKind kind : {SlabKind::kSmall, SlabKind::kLarge}) {
    Ledger ledger;
    {
      auto alloc = SlabAllocBuilder<Counted>::Default()
                       .Kind(kind)
                       .BuildWithBacking(TrackingBacking{&ledger});
      const SlabStats st0 = alloc.stats();
      std::vector<Counted*> v;
      for (int i = 0; i < 2000; ++i) v.push_back(alloc.Allocate());
      const SlabStats st = alloc.stats();
      EXPECT_EQ(st.live_objects, 2000u);
      EXPECT_EQ(st.slabs,
                (2000 + st0.objects_per_slab - 1) / st0.objects_per_slab);
      // Every slab (and for large slabs, the map's memory) came from us.
      std::size_t slab_blocks = 0;
      for (auto& [p, sa] : ledger.blocks) {
        if (sa.first == st.slab_size &&
            (kind == SlabKind::kLarge || sa.second == st.slab_size)) {
          ++slab_blocks;
        }
      }
      EXPECT_EQ(slab_blocks, st.slabs);
      if (kind == SlabKind::kLarge) {
        EXPECT_GT(ledger.blocks.size(), st.slabs);  // Map metadata.
      } else {
        EXPECT_EQ(ledger.blocks.size(), st.slabs);
      }
      for (Counted* p : v) alloc.Deallocate(p);
    }
    EXPECT_TRUE(ledger.blocks.empty());
    EXPECT_EQ(ledger.violation, "");
  }
}

TEST(SlabAllocTest, OutOfMemoryReturnsNullAndRecovers) {
  for (SlabKind kind : {SlabKind::kSmall, SlabKind::kLarge}) {
    Ledger ledger;
    {
      auto alloc = UntypedSlabAllocBuilder<>(Layout{256, 8})
                       .Kind(kind)
                       .BuildWithBacking(TrackingBacking{&ledger});
      ledger.fail_from = 0;
      EXPECT_EQ(alloc.Allocate(), nullptr);
      EXPECT_EQ(alloc.stats().slabs, 0u);
      if (kind == SlabKind::kLarge) {
        // The slab succeeds but the hash map cannot get its table: the slab
        // must be given back, not leaked.
        ledger.fail_from = 1;
        ledger.allocations = 0;
        EXPECT_EQ(alloc.Allocate(), nullptr);
        EXPECT_EQ(alloc.stats().slabs, 0u);
        EXPECT_TRUE(ledger.blocks.empty());
      }
      ledger.fail_from = ~std::size_t{0};
      void* p = alloc.Allocate();
      ASSERT_NE(p, nullptr);
      alloc.Deallocate(p);
    }
    EXPECT_TRUE(ledger.blocks.empty());
    EXPECT_EQ(ledger.violation, "");
  }
}

// ---------------------------------------------------------------------------
// Reclamation of empty slabs.

struct ReclaimFixture {
  Ledger ledger;
  SlabAlloc<Counted, DefaultInit<Counted>, TrackingBacking> alloc;
  std::size_t per_slab;

  explicit ReclaimFixture(std::uint32_t check_interval = 1)
      : alloc(SlabAllocBuilder<Counted>::Default()
                  .ReclaimPeriod(kPeriod)
                  .Clock(&FakeClock)
                  .ReclaimCheckInterval(check_interval)
                  .BuildWithBacking(TrackingBacking{&ledger})),
        per_slab(alloc.stats().objects_per_slab) {}

  std::vector<Counted*> Take(std::size_t n) {
    std::vector<Counted*> v;
    for (std::size_t i = 0; i < n; ++i) v.push_back(alloc.Allocate());
    return v;
  }
  void Give(std::vector<Counted*>& v) {
    for (Counted* p : v) alloc.Deallocate(p);
    v.clear();
  }
  // Make one slab go empty -> non-empty -> empty: the GC check point.
  void Poke() {
    Counted* p = alloc.Allocate();
    alloc.Deallocate(p);
  }
};

TEST(SlabAllocTest, ReclaimsExactlyTheMinimumNumberOfEmptySlabsPerPeriod) {
  Counted::Reset();
  ReclaimFixture f;
  const std::size_t slab_size = f.alloc.stats().slab_size;
  std::vector<Counted*> v = f.Take(5 * f.per_slab);
  EXPECT_EQ(f.alloc.stats().slabs, 5u);
  f.Give(v);
  EXPECT_EQ(f.alloc.stats().empty_slabs, 5u);
  // First period: the allocator started with 0 empty slabs, so the minimum
  // over the period is 0 and nothing may be released.
  Advance(kPeriod);
  f.Poke();
  EXPECT_EQ(f.alloc.stats().slabs, 5u);
  EXPECT_EQ(f.alloc.stats().slabs_released, 0u);

  // Second period: the working set dips to 5 - 2 = 3 empty slabs at most.
  v = f.Take(2 * f.per_slab);
  EXPECT_EQ(f.alloc.stats().empty_slabs, 3u);
  f.Give(v);
  v = f.Take(f.per_slab);  // 4 empty: not a new minimum.
  f.Give(v);
  Advance(kPeriod - std::chrono::nanoseconds(1));
  f.Poke();
  EXPECT_EQ(f.alloc.stats().slabs, 5u);  // Period not over yet.
  const int destroyed_before = Counted::destroyed;
  Advance(std::chrono::nanoseconds(1));
  f.Poke();
  SlabStats st = f.alloc.stats();
  EXPECT_EQ(st.slabs_released, 3u);  // Exactly the minimum, 3.
  EXPECT_EQ(st.slabs, 2u);
  EXPECT_EQ(st.empty_slabs, 2u);
  EXPECT_EQ(st.bytes_mapped, 2 * slab_size);
  EXPECT_EQ(f.ledger.blocks.size(), 2u);
  // Releasing a slab destroys the constructed objects it cached.
  EXPECT_EQ(Counted::destroyed - destroyed_before,
            static_cast<int>(3 * f.per_slab));

  // Third period: it starts with 2 empty slabs; the Poke's allocation dips
  // the count to 1 before its free ends the period, so 1 is released.
  Advance(kPeriod);
  f.Poke();
  EXPECT_EQ(f.alloc.stats().slabs, 1u);
  EXPECT_EQ(f.alloc.stats().slabs_released, 4u);
  // Fourth period: idle, the last empty slab was never needed.
  Advance(kPeriod);
  EXPECT_EQ(f.alloc.MaybeReclaim(), 1u);  // Idle: nothing dipped.
  EXPECT_EQ(f.alloc.stats().slabs, 0u);
  EXPECT_EQ(f.alloc.stats().bytes_mapped, 0u);
  EXPECT_TRUE(f.ledger.blocks.empty());
}

TEST(SlabAllocTest, ReclaimNeverReleasesPartialOrFullSlabs) {
  ReclaimFixture f;
  std::vector<Counted*> full = f.Take(2 * f.per_slab);  // 2 full slabs.
  std::vector<Counted*> partial = f.Take(f.per_slab / 2);
  std::vector<Counted*> spare = f.Take(f.per_slab);
  f.Give(spare);  // 1 empty slab.
  EXPECT_EQ(f.alloc.ReleaseEmptySlabs(), 1u);
  EXPECT_EQ(f.alloc.stats().slabs, 3u);
  Advance(kPeriod);
  EXPECT_EQ(f.alloc.MaybeReclaim(), 0u);
  Advance(kPeriod);
  EXPECT_EQ(f.alloc.MaybeReclaim(), 0u);
  EXPECT_EQ(f.alloc.stats().slabs, 3u);
  for (Counted* p : full) EXPECT_EQ(p->value, 7);
  f.Give(full);
  f.Give(partial);
}

TEST(SlabAllocTest, ReclaimCheckIntervalAndNever) {
  {
    ReclaimFixture f(/*check_interval=*/4);
    std::vector<Counted*> v = f.Take(3 * f.per_slab);
    f.Give(v);  // 3 emptyings: countdown 4 -> 1.
    Advance(kPeriod);
    f.Poke();  // 4th: the clock is read, period 1 (min 0) ends.
    Advance(kPeriod);
    f.Poke();
    f.Poke();
    f.Poke();
    EXPECT_EQ(f.alloc.stats().slabs, 3u);  // Not checked yet.
    f.Poke();                              // 8th emptying: checked.
    EXPECT_EQ(f.alloc.stats().slabs, 1u);  // min over period was 2.
  }
  {
    Ledger ledger;
    auto alloc = SlabAllocBuilder<Counted>::Default()
                     .ReclaimPeriod(kNeverReclaim)
                     .Clock(&FakeClock)
                     .ReclaimCheckInterval(1)
                     .BuildWithBacking(TrackingBacking{&ledger});
    std::vector<Counted*> v;
    for (int i = 0; i < 500; ++i) v.push_back(alloc.Allocate());
    for (Counted* p : v) alloc.Deallocate(p);
    for (int i = 0; i < 5; ++i) {
      Advance(std::chrono::hours(24 * 365));
      alloc.Deallocate(alloc.Allocate());
      EXPECT_EQ(alloc.MaybeReclaim(), 0u);
    }
    EXPECT_EQ(alloc.stats().empty_slabs, alloc.stats().slabs);
    EXPECT_GT(alloc.stats().slabs, 1u);
  }
}

// ---------------------------------------------------------------------------
// Destruction with live objects.

TEST(SlabAllocTest, DestructionReportsAndLeaksSlabsWithLiveObjects) {
  Counted::Reset();
  Ledger ledger;
  std::vector<Counted*> leaked;
  std::size_t per_slab = 0;
  testing::internal::CaptureStderr();
  {
    auto alloc = SlabAllocBuilder<Counted>::Default().BuildWithBacking(
        TrackingBacking{&ledger});
    per_slab = alloc.stats().objects_per_slab;
    std::vector<Counted*> v;
    for (std::size_t i = 0; i < 3 * per_slab; ++i) {
      v.push_back(alloc.Allocate());
    }
    // Keep 3 objects of the first slab and everything of the third (full);
    // return the rest, so the second slab is empty.
    for (std::size_t i = 0; i < 3 * per_slab; ++i) {
      if (i < 3 || i >= 2 * per_slab) {
        leaked.push_back(v[i]);
        v[i]->value = static_cast<int>(i);
      } else {
        alloc.Deallocate(v[i]);
      }
    }
    EXPECT_EQ(ledger.blocks.size(), 3u);
  }
  const std::string err = testing::internal::GetCapturedStderr();
  const std::size_t live = 3 + per_slab;
  EXPECT_NE(err.find("allocator destroyed with " + std::to_string(live) +
                     " live objects of " + std::to_string(sizeof(Counted)) +
                     " bytes"),
            std::string::npos)
      << err;
  EXPECT_NE(err.find("leaking the 2 slabs"), std::string::npos) << err;
  // The empty slab went back; the two holding live objects did not.
  EXPECT_EQ(ledger.blocks.size(), 2u);
  EXPECT_EQ(ledger.violation, "");
  // Live objects are untouched and still constructed; the cached ones of the
  // first slab were destroyed (per_slab - 3 of them), as were the empty
  // slab's (per_slab).
  for (std::size_t i = 0; i < leaked.size(); ++i) {
    const std::size_t index = i < 3 ? i : 2 * per_slab + (i - 3);
    EXPECT_EQ(leaked[i]->value, static_cast<int>(index));
  }
  EXPECT_EQ(Counted::Alive(), static_cast<int>(live));
  EXPECT_EQ(Counted::destroyed, static_cast<int>(2 * per_slab - 3));
  for (Counted* p : leaked) p->~Counted();
  TrackingBacking::FreeAll(ledger);
}

TEST(SlabAllocDeathTest, DestructionAbortsWithLiveObjectsWhenAsked) {
  EXPECT_DEATH(
      {
        auto alloc = SlabAllocBuilder<Counted>::Default()
                         .OnLeak(LeakPolicy::kAbort)
                         .Build();
        Counted* p = alloc.Allocate();
        (void)p;
      },
      "allocator destroyed with 1 live objects of 64 bytes in 1 slabs");
}

TEST(SlabAllocTest, CleanDestructionPrintsNothing) {
  testing::internal::CaptureStderr();
  {
    auto alloc = SlabAllocBuilder<Counted>::Default()
                     .OnLeak(LeakPolicy::kAbort)
                     .Build();
    Counted* p = alloc.Allocate();
    alloc.Deallocate(p);
  }
  EXPECT_EQ(testing::internal::GetCapturedStderr(), "");
}

// ---------------------------------------------------------------------------
// Argument checks.

TEST(SlabAllocDeathTest, BadArgumentsAbortWithAMessage) {
  EXPECT_DEATH(SlabAllocBuilder<Counted>::Default().Align(3),
               "Align\\(3\\): not a power of two");
  EXPECT_DEATH(SlabAllocBuilder<Counted>::Default().Align(0),
               "not a power of two");
  EXPECT_DEATH(SlabAllocBuilder<Counted>::Default().Align(2 * Page()),
               "larger than the page size");
  EXPECT_DEATH(UntypedSlabAllocBuilder<>(Layout{10, 4}), "invalid layout");
  EXPECT_DEATH(UntypedSlabAllocBuilder<>(Layout{0, 1}), "invalid layout");
  EXPECT_DEATH(UntypedSlabAllocBuilder<>(Layout{std::size_t{8} << 20, 8})
                   .Kind(SlabKind::kSmall)
                   .Build(),
               "kSmall requested");
  EXPECT_DEATH(
      UntypedSlabAllocBuilder<>(Layout{std::size_t{1} << 40, 8}).Build(),
      "is not supported");
}

TEST(SlabAllocDeathTest, ForeignPointerToALargeSlabAllocatorAborts) {
  auto alloc = UntypedSlabAllocBuilder<>(Layout{64, 8})
                   .Kind(SlabKind::kLarge)
                   .Build();
  void* mine = alloc.Allocate();
  alignas(64) static char foreign[64];
  EXPECT_DEATH(alloc.Deallocate(foreign), "not allocated by this allocator");
  alloc.Deallocate(mine);
}

#ifndef NDEBUG
TEST(SlabAllocDeathTest, DebugBuildsCatchBadFreesToSmallSlabs) {
  auto alloc = UntypedSlabAllocBuilder<>(Layout{64, 8}).Build();
  void* a = alloc.Allocate();
  void* b = alloc.Allocate();
  EXPECT_DEATH(alloc.Deallocate(static_cast<char*>(a) + 8),
               "not an object slot");
  alloc.Deallocate(a);
  alloc.Deallocate(b);
  EXPECT_DEATH(alloc.Deallocate(b), "double free");
}
#endif

// ---------------------------------------------------------------------------
// Edge capacities, moves, and a randomised run per kind and backing.

TEST(SlabAllocTest, SlabsOfOneAndTwoObjects) {
  for (std::size_t size : {std::size_t{1536} << 10, std::size_t{900} << 10}) {
    auto alloc = UntypedSlabAllocBuilder<>(Layout{size, 64})
                     .Kind(SlabKind::kSmall)
                     .BuildMmap();
    const std::size_t cap = alloc.stats().objects_per_slab;
    ASSERT_EQ(cap, size > (std::size_t{1} << 20) ? 1u : 2u);
    std::vector<void*> v;
    for (int round = 0; round < 3; ++round) {
      for (int i = 0; i < 5; ++i) v.push_back(alloc.Allocate());
      EXPECT_EQ(alloc.stats().full_slabs, 5 / cap);
      for (void* p : v) {
        ASSERT_NE(p, nullptr);
        std::memset(p, round, 4096);
      }
      for (void* p : v) alloc.Deallocate(p);
      v.clear();
      const SlabStats st = alloc.stats();
      EXPECT_EQ(st.live_objects, 0u);
      EXPECT_EQ(st.empty_slabs, st.slabs);
      EXPECT_EQ(st.full_slabs, 0u);
    }
    EXPECT_EQ(alloc.ReleaseEmptySlabs(), (5 + cap - 1) / cap);
  }
}

TEST(SlabAllocTest, MoveKeepsLiveObjectsUsable) {
  Counted::Reset();
  {
    auto a = SlabAllocBuilder<Counted>::Default()
                 .Kind(SlabKind::kLarge)
                 .Build();
    std::vector<Counted*> v;
    for (int i = 0; i < 300; ++i) v.push_back(a.Allocate());
    auto b = std::move(a);
    for (Counted* p : v) b.Deallocate(p);
    EXPECT_EQ(b.stats().live_objects, 0u);
    EXPECT_EQ(a.stats().slabs, 0u);  // NOLINT(bugprone-use-after-move)
    Counted* p = b.Allocate();
    b.Deallocate(p);
  }
  EXPECT_EQ(Counted::Alive(), 0);
}

template <class Alloc>
void RandomRun(Alloc& alloc, std::size_t ops, std::uint64_t seed) {
  const std::size_t size = alloc.layout().size;
  std::mt19937_64 rng(seed);
  std::vector<unsigned char*> live;
  std::set<unsigned char*> live_set;
  for (std::size_t op = 0; op < ops; ++op) {
    // Drift between growing and shrinking phases so slabs fill and empty.
    const bool grow = (op / 3000) % 2 == 0;
    if (live.empty() || rng() % 100 < (grow ? 65u : 35u)) {
      unsigned char* p = static_cast<unsigned char*>(alloc.Allocate());
      ASSERT_NE(p, nullptr);
      ASSERT_TRUE(AlignedTo(p, alloc.layout().align));
      ASSERT_TRUE(live_set.insert(p).second) << "handed out twice";
      // Stamp the object with its address so overlap would be noticed.
      const auto tag = static_cast<unsigned char>(
          reinterpret_cast<std::uintptr_t>(p) / alloc.layout().align);
      std::memset(p, tag, size);
      live.push_back(p);
    } else {
      const std::size_t i = rng() % live.size();
      unsigned char* p = live[i];
      const auto tag = static_cast<unsigned char>(
          reinterpret_cast<std::uintptr_t>(p) / alloc.layout().align);
      for (std::size_t b = 0; b < size; ++b) ASSERT_EQ(p[b], tag);
      live[i] = live.back();
      live.pop_back();
      live_set.erase(p);
      alloc.Deallocate(p);
    }
  }
  const SlabStats st = alloc.stats();
  EXPECT_EQ(st.live_objects, live.size());
  EXPECT_LE(st.empty_slabs + st.full_slabs, st.slabs);
  for (unsigned char* p : live) alloc.Deallocate(p);
  EXPECT_EQ(alloc.stats().live_objects, 0u);
  EXPECT_EQ(alloc.stats().empty_slabs, alloc.stats().slabs);
}

TEST(SlabAllocTest, RandomOperationsEveryKindAndBacking) {
  for (std::size_t size : {8, 24, 200, 1000, 4096, 10000}) {
    for (SlabKind kind : {SlabKind::kAuto, SlabKind::kLarge}) {
      SCOPED_TRACE(testing::Message() << "size " << size << " kind "
                                      << static_cast<int>(kind));
      const Layout layout{size, 8};
      auto heap = UntypedSlabAllocBuilder<>(layout)
                      .Kind(kind)
                      .ReclaimPeriod(std::chrono::nanoseconds(0))
                      .Build();
      RandomRun(heap, 10000, size);
      auto mmap = UntypedSlabAllocBuilder<>(layout).Kind(kind).BuildMmap();
      RandomRun(mmap, 10000, size + 1);
    }
  }
}

}  // namespace
}  // namespace slab_alloc
