// WriteQueue: the bounded in-memory queue between Write streams and the writer threads.
//
// Bounded in records AND bytes. Producers never block a gRPC thread: PushOrPark() either admits the
// page or keeps it with the caller and registers a callback that runs (on a consumer thread, with
// no lock held) once room may have freed, so a stream simply stops reading until then and HTTP/2
// flow control stalls its sender. A page is admitted when it fits, or when the queue is empty (a
// page bigger than the whole bound must still get through). Push() is the blocking form for
// ordinary threads.
//
// Pages still being assembled from chunks by Write streams count against the byte bound too
// (AddPartial / PushAssembledOrPark / ReleasePartial), and a stream reads its next message only
// when ReadRoomOrPark() says the queue plus all partial pages are under the bound. So that streams
// holding partial pages never wait for each other forever, one stream at a time (the "oversize
// holder") may go past the bound when no complete page is queued, until its page is queued or
// abandoned.
// Record bytes held are thus at most max_bytes + one page (bounded by the service's max_page_bytes)
// + one message per open stream.
//
// Consumers take whole pages with PopBatch(), which waits until a batch is full, the queue is full
// (a producer waits for room), the oldest page has waited `flush_interval`, a flush was requested,
// or the queue is draining/closed.
//
// Drain: after BeginDrain() pages are admitted regardless of the bound (they are already in memory)
// and PopBatch() stops waiting for a full batch. Close(): no more pages; blocked producers get
// false; PopBatch() returns what is left, then empty batches.
//
// Thread-safe.
#ifndef ETL_WRITER_SERVICE_WRITE_QUEUE_H_
#define ETL_WRITER_SERVICE_WRITE_QUEUE_H_

#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "writer_service/page.h"

namespace etl {

class WriteQueue {
 public:
  struct Options {
    int64_t max_records = 100000;  // Records held at most (a lone bigger page is still admitted).
    int64_t max_bytes = 6 << 20;   // Record bytes held at most (same exception).
  };
  struct Depth {
    int64_t records = 0;
    int64_t bytes = 0;
    int64_t pages = 0;
    int64_t parked = 0;         // Producers waiting for room.
    int64_t partial_bytes = 0;  // Of pages still being assembled.
  };

  explicit WriteQueue(Options options);
  WriteQueue(const WriteQueue&) = delete;
  WriteQueue& operator=(const WriteQueue&) = delete;

  enum class Admission { kAdmitted, kParked, kClosed };

  // Admits *page (moving it in: kAdmitted) or leaves it with the caller and registers `on_room`
  // (kParked); `on_room` runs once, later, from a consumer thread (or BeginDrain/Close) with no
  // lock held, and the caller then tries again. kClosed: the queue takes nothing more; on_room is
  // dropped.
  Admission PushOrPark(std::unique_ptr<QueuedPage>* page, std::function<void()> on_room);

  // kAdmitted when `records`/`bytes` more would be admitted now; otherwise as above. Used by a
  // stream still assembling a page from several chunks, before it reads the next chunk.
  Admission HasRoomOrPark(int64_t records, int64_t bytes, std::function<void()> on_room);

  // Chunk-wise assembly by a stream (`holder` identifies it). AddPartial counts bytes just read.
  // PushAssembledOrPark is PushOrPark for a completed page whose bytes were added: admitted when
  // the queue's records and queued + partial bytes stay within the bound, or the queue holds no
  // page, or it drains. ReleasePartial returns the bytes of an abandoned page (or of a completed
  // page the closed queue refused). Admission and release end `holder`'s oversize allowance.
  void AddPartial(int64_t bytes);
  Admission PushAssembledOrPark(const void* holder, std::unique_ptr<QueuedPage>* page,
                                std::function<void()> on_room);
  void ReleasePartial(const void* holder, int64_t bytes);
  // kAdmitted when the stream may read its next message: queued records and queued + partial bytes
  // are under the bound, or the queue is draining, or `holder` is or (no complete page queued, and
  // it holds `own_partial` > 0 bytes of a page) becomes the one oversize holder. Otherwise
  // kParked (on_room runs once room may have freed) or kClosed.
  Admission ReadRoomOrPark(const void* holder, int64_t own_partial, std::function<void()> on_room);

  // Blocking push for ordinary threads. Returns false (page dropped) when the queue is closed.
  bool Push(std::unique_ptr<QueuedPage> page);

  // Admits regardless of the bound. For pages already in memory when the service drains.
  // Returns false when closed.
  bool PushForce(std::unique_ptr<QueuedPage> page);

  // Takes whole pages, oldest first, up to max_records/max_bytes (at least one page). Waits as
  // described above. Returns an empty vector only when the queue is closed and empty.
  std::vector<std::unique_ptr<QueuedPage>> PopBatch(int64_t max_records, int64_t max_bytes,
                                                    absl::Duration flush_interval);

  // The next PopBatch() returns at once with what is queued (a stream waits for its
  // acknowledgement).
  void RequestFlush();
  void BeginDrain();
  void Close();

  Depth depth() const;
  const Options& options() const { return options_; }

 private:
  bool FitsLocked(int64_t records, int64_t bytes) const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void AddLocked(std::unique_ptr<QueuedPage> page) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  std::vector<std::function<void()>> TakeWaitersLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  static void RunAll(std::vector<std::function<void()>> callbacks);

  const Options options_;
  mutable absl::Mutex mu_;
  std::deque<std::unique_ptr<QueuedPage>> pages_ ABSL_GUARDED_BY(mu_);
  int64_t records_ ABSL_GUARDED_BY(mu_) = 0;
  int64_t bytes_ ABSL_GUARDED_BY(mu_) = 0;
  int64_t partial_bytes_ ABSL_GUARDED_BY(mu_) = 0;
  const void* oversize_holder_ ABSL_GUARDED_BY(mu_) = nullptr;
  std::vector<std::function<void()>> waiters_ ABSL_GUARDED_BY(mu_);
  int blocked_pushers_ ABSL_GUARDED_BY(mu_) = 0;  // Threads blocked in Push().
  bool flush_requested_ ABSL_GUARDED_BY(mu_) = false;
  bool draining_ ABSL_GUARDED_BY(mu_) = false;
  bool closed_ ABSL_GUARDED_BY(mu_) = false;
};

}  // namespace etl

#endif  // ETL_WRITER_SERVICE_WRITE_QUEUE_H_
