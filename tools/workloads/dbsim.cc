// dbsim: a database-like heap: a page cache of ~4.3 KiB blocks, small row
// objects and an index of mixed small nodes, under inserts, deletes, updates
// and page loads (the allocation profile of an embedded SQL engine such as
// sqlite, whose page-cache entries are a page plus a few hundred bytes of
// header).
//
// Each thread runs its own database. The page cache holds --pages blocks of
// --page_size bytes; a page load (one op in eight) evicts a random page and
// allocates its replacement, writing every 512th byte (a page is filled when
// read). The table holds up to --rows rows; each row is a block of
// log-uniform size in [min_size, max_size] plus an index entry of
// log-uniform size in [32, 512]. Inserts (three ops in eight) add a row and
// its entry, deletes (three in eight) free a random row and its entry,
// updates (one in eight) realloc a random row to a new size. The table
// starts half full (filled before the timed section).
//
// One iteration = one operation per thread.
// Reports ops = operations, ops_per_sec = operations/s.
//
//   dbsim --threads=1 --pages=2000 --page_size=4360 --rows=100000

#include <cstdint>
#include <cstdlib>
#include <string>
#include <vector>

#include "tools/workloads/workload_util.h"

namespace {

struct Block {
  char* p = nullptr;
  uint32_t size = 0;
};

struct Row {
  Block data;
  Block index;
};

Block Alloc(size_t size, uint64_t salt) {
  auto* p = static_cast<char*>(std::malloc(size));
  if (p == nullptr) workloads::Fail("malloc(%zu) failed", size);
  workloads::SetTag(p, size, workloads::TagFor(size + salt));
  return {p, static_cast<uint32_t>(size)};
}

void Free(const Block& b, uint64_t salt) {
  workloads::CheckTag(b.p, b.size, workloads::TagFor(b.size + salt));
  std::free(b.p);
}

constexpr uint64_t kRowSalt = 0, kIndexSalt = 1, kPageSalt = 2;

struct Database {
  std::vector<Block> pages;
  std::vector<Row> rows;  // rows[0..count) are live
  size_t count = 0;
};

}  // namespace

int main(int argc, char** argv) {
  workloads::Flags flags(
      argc, argv,
      "Database-like: page-cache blocks, small rows and index entries under "
      "inserts, deletes, updates and page loads.");
  const int threads =
      workloads::ReadThreads(flags, 1, "worker threads (one database each)");
  const workloads::SizeRange sizes = workloads::ReadSizes(flags, 24, 256);
  const int64_t npages = flags.Int("pages", 2000, "page-cache blocks");
  const int64_t page_size =
      flags.Int("page_size", 4360, "page-cache block size, bytes");
  const int64_t max_rows = flags.Int("rows", 100000, "table capacity, rows");
  const uint64_t seed = workloads::ReadSeed(flags);
  workloads::Budget budget =
      workloads::ReadBudget(flags, 1000000, "operations per thread");
  flags.Done();
  if (npages < 1 || page_size < 2 || max_rows < 2 || sizes.min < 2) {
    workloads::Usage("need --pages >= 1, --page_size >= 2, --rows >= 2, "
                     "--min_size >= 2");
  }

  std::vector<Database> dbs(static_cast<size_t>(threads));
  for (int t = 0; t < threads; ++t) {
    Database& db = dbs[t];
    workloads::Rng rng(seed, static_cast<uint64_t>(threads + t));
    db.pages.resize(static_cast<size_t>(npages));
    for (auto& page : db.pages) {
      page = Alloc(static_cast<size_t>(page_size), kPageSalt);
    }
    db.rows.resize(static_cast<size_t>(max_rows));
    for (; db.count < db.rows.size() / 2; ++db.count) {
      db.rows[db.count] = {Alloc(rng.LogUniform(sizes.min, sizes.max), kRowSalt),
                           Alloc(rng.LogUniform(32, 512), kIndexSalt)};
    }
  }
  std::vector<workloads::Counter> done(static_cast<size_t>(threads));

  double seconds = workloads::RunThreads(threads, budget, [&](int t) {
    workloads::Rng rng(seed, static_cast<uint64_t>(t));
    Database& db = dbs[t];
    uint64_t ops = 0;
    for (; budget.Continue(ops); ++ops) {
      uint64_t r = rng.Next();
      unsigned kind = static_cast<unsigned>(r & 7);
      if (kind == 0) {  // page load
        Block& page = db.pages[(r >> 8) % db.pages.size()];
        Free(page, kPageSalt);
        page = Alloc(page.size, kPageSalt);
        for (size_t i = 512; i + 1 < page.size; i += 512) page.p[i] = 1;
      } else if (kind == 1 && db.count > 0) {  // update
        Row& row = db.rows[(r >> 8) % db.count];
        size_t size = rng.LogUniform(sizes.min, sizes.max);
        workloads::CheckTag(row.data.p, row.data.size,
                            workloads::TagFor(row.data.size + kRowSalt));
        auto* p = static_cast<char*>(std::realloc(row.data.p, size));
        if (p == nullptr) workloads::Fail("realloc(%zu) failed", size);
        workloads::SetTag(p, size, workloads::TagFor(size + kRowSalt));
        row.data = {p, static_cast<uint32_t>(size)};
      } else if ((kind <= 4 && db.count < db.rows.size()) || db.count == 0) {
        db.rows[db.count++] = {
            Alloc(rng.LogUniform(sizes.min, sizes.max), kRowSalt),
            Alloc(rng.LogUniform(32, 512), kIndexSalt)};
      } else {  // delete (swap with the last live row)
        size_t i = static_cast<size_t>((r >> 8) % db.count);
        Free(db.rows[i].data, kRowSalt);
        Free(db.rows[i].index, kIndexSalt);
        db.rows[i] = db.rows[--db.count];
      }
    }
    done[t].value = ops;
  });

  for (Database& db : dbs) {
    for (const Block& page : db.pages) Free(page, kPageSalt);
    for (size_t i = 0; i < db.count; ++i) {
      Free(db.rows[i].data, kRowSalt);
      Free(db.rows[i].index, kIndexSalt);
    }
  }
  workloads::PrintResult("dbsim", threads, workloads::Sum(done), seconds,
                         "min_size=" + std::to_string(sizes.min) +
                             " max_size=" + std::to_string(sizes.max) +
                             " pages=" + std::to_string(npages) +
                             " page_size=" + std::to_string(page_size) +
                             " rows=" + std::to_string(max_rows));
  return 0;
}
