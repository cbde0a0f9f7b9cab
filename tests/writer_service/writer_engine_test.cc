// Unit tests of the writer engine (queue + batching + retry + ack-after-commit) against a fake
// RecordSink that keeps its "database" in memory.
#include <gtest/gtest.h>

#include <deque>
#include <map>
#include <memory>
#include <string>
#include <tuple>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "absl/synchronization/notification.h"
#include "writer_service/writer.h"

namespace etl {
namespace {

constexpr absl::Duration kLong = absl::Minutes(1);

// A scripted failure of the next CommitPages call.
struct Fault {
  absl::Status status;
  bool apply_first =
      false;  // The transaction committed, then the connection was lost (unknown outcome).
};

// The in-memory database shared by every sink of one writer.
struct FakeDb {
  absl::Mutex mu;
  // (job, page) -> batch id of the transaction that committed it.
  std::map<std::pair<std::string, int64_t>, std::string> ledger ABSL_GUARDED_BY(mu);
  std::map<std::string, int> rows ABSL_GUARDED_BY(mu);             // record -> times written
  std::vector<std::vector<int64_t>> attempts ABSL_GUARDED_BY(mu);  // page numbers per call
  std::vector<std::string> attempt_batch_ids ABSL_GUARDED_BY(mu);
  std::deque<Fault> faults ABSL_GUARDED_BY(mu);
  int connects ABSL_GUARDED_BY(mu) = 0;
  int pings ABSL_GUARDED_BY(mu) = 0;
  absl::Status ping_status ABSL_GUARDED_BY(mu);  // What Ping() answers.
  int calls_while_disconnected ABSL_GUARDED_BY(mu) = 0;
  // When set, CommitPages announces itself and waits for `release` before committing.
  absl::Notification* entered = nullptr;
  absl::Notification* release = nullptr;

  bool Committed(const std::string& job, int64_t page) {
    absl::MutexLock l(&mu);
    return ledger.count({job, page}) > 0;
  }
};

class FakeSink : public RecordSink {
 public:
  explicit FakeSink(FakeDb* db) : db_(db) {}

  absl::Status Connect() override {
    absl::MutexLock l(&db_->mu);
    ++db_->connects;
    connected_ = true;
    return absl::OkStatus();
  }

  absl::Status Ping(absl::Duration) override {
    absl::MutexLock l(&db_->mu);
    ++db_->pings;
    return db_->ping_status;
  }

  absl::StatusOr<std::vector<PageResult>> CommitPages(const std::vector<const QueuedPage*>& pages,
                                                      const std::string& batch_id) override {
    if (db_->entered != nullptr) {
      db_->entered->Notify();
      db_->release->WaitForNotification();
    }
    absl::MutexLock l(&db_->mu);
    std::vector<int64_t> numbers;
    for (const QueuedPage* p : pages) numbers.push_back(p->page_number);
    db_->attempts.push_back(numbers);
    db_->attempt_batch_ids.push_back(batch_id);
    if (!connected_) {
      ++db_->calls_while_disconnected;
      return absl::UnavailableError("not connected");
    }
    Fault fault;
    bool faulty = !db_->faults.empty();
    if (faulty) {
      fault = db_->faults.front();
      db_->faults.pop_front();
      if (!fault.apply_first) {
        if (absl::IsUnavailable(fault.status)) connected_ = false;
        return fault.status;
      }
    }
    // One transaction: pages committed before by another batch are skipped; a page committed by
    // this very batch (an earlier attempt whose COMMIT outcome was lost) is reported committed.
    std::vector<PageResult> results;
    for (const QueuedPage* p : pages) {
      PageResult r;
      auto key = std::make_pair(p->job_id, p->page_number);
      auto it = db_->ledger.find(key);
      if (it != db_->ledger.end() && it->second != batch_id) {
        r.kind = PageResult::Kind::kSkipped;
        r.records_skipped = p->records;
      } else {
        r.kind = PageResult::Kind::kCommitted;
        r.records_committed = p->records;
        r.bytes_committed = p->bytes;
        if (it == db_->ledger.end()) {
          db_->ledger[key] = batch_id;
          p->ForEachRecord(
              [&](absl::string_view rec, const std::string*) { ++db_->rows[std::string(rec)]; });
        }
      }
      results.push_back(r);
    }
    if (faulty) {  // Committed, but the client never heard.
      connected_ = false;
      return fault.status;
    }
    return results;
  }

 private:
  FakeDb* const db_;
  bool connected_ = false;
};

// The owner of one page: records what it hears and whether the page was committed by then.
class PageRecorder : public PageOwner {
 public:
  PageRecorder(FakeDb* db, std::string job, int64_t page)
      : db_(db), job_(std::move(job)), page_(page) {}

  void OnPageDone(const PageResult& r) override {
    bool in_db = db_->Committed(job_, page_);
    absl::MutexLock l(&mu_);
    results_.push_back(r);
    committed_at_ack_.push_back(in_db);
  }

  // Waits until the page's outcome arrived; returns every outcome heard.
  std::vector<PageResult> Wait() {
    absl::MutexLock l(&mu_);
    auto done = [this]() ABSL_NO_THREAD_SAFETY_ANALYSIS { return !results_.empty(); };
    mu_.Await(absl::Condition(&done));
    return results_;
  }
  size_t heard() {
    absl::MutexLock l(&mu_);
    return results_.size();
  }
  bool committed_at_ack() {
    absl::MutexLock l(&mu_);
    return !committed_at_ack_.empty() && committed_at_ack_.front();
  }

 private:
  FakeDb* const db_;
  const std::string job_;
  const int64_t page_;
  absl::Mutex mu_;
  std::vector<PageResult> results_ ABSL_GUARDED_BY(mu_);
  std::vector<bool> committed_at_ack_ ABSL_GUARDED_BY(mu_);
};

std::unique_ptr<QueuedPage> MakePage(const std::string& job, int64_t number, int records,
                                     PageOwner* owner) {
  auto p = std::make_unique<QueuedPage>();
  p->table = "dados_raw_cliente_c_r";
  p->job_id = job;
  p->page_number = number;
  p->owner = owner;
  v1::RecordBatch chunk;
  for (int i = 0; i < records; ++i) {
    std::string rec = absl::StrCat("{\"job\":\"", job, "\",\"page\":", number, ",\"i\":", i, "}");
    p->bytes += static_cast<int64_t>(rec.size());
    chunk.add_records(std::move(rec));
  }
  p->records = records;
  p->chunks.push_back(std::move(chunk));
  return p;
}

class WriterEngineTest : public ::testing::Test {
 protected:
  WriterOptions Options() {
    WriterOptions o;
    o.flush_interval = kLong;  // Batches close only when full, flushed or draining.
    o.initial_backoff = absl::Milliseconds(1);
    o.max_backoff = absl::Milliseconds(5);
    o.writer_threads = 1;
    o.health_check_interval = absl::ZeroDuration();  // Tests of the check turn it on.
    return o;
  }
  RecordSinkFactory Factory() {
    return [this] { return std::make_unique<FakeSink>(&db_); };
  }
  // Queues pages 0..n-1 of `job`, `records` records each, with one recorder per page.
  void Queue(Writer& w, const std::string& job, int n, int records) {
    for (int i = 0; i < n; ++i) {
      owners_.push_back(std::make_unique<PageRecorder>(&db_, job, i));
      ASSERT_TRUE(w.queue().Push(MakePage(job, i, records, owners_.back().get())));
    }
  }

  FakeDb db_;
  std::vector<std::unique_ptr<PageRecorder>> owners_;
};

TEST_F(WriterEngineTest, BatchesHoldWholePagesUpToTheBatchBound) {
  WriterOptions o = Options();
  o.batch_records = 25;
  Writer w(o, Factory());
  Queue(w, "job", 6, 10);  // Queued before the threads start: batching is deterministic.
  owners_.push_back(std::make_unique<PageRecorder>(&db_, "job", 6));
  ASSERT_TRUE(w.queue().Push(MakePage("job", 6, 40, owners_.back().get())));  // > one batch
  w.Start();
  w.Stop(kLong);
  for (auto& owner : owners_) {
    auto r = owner->Wait();
    ASSERT_EQ(r.size(), 1u);
    EXPECT_EQ(r[0].kind, PageResult::Kind::kCommitted);
  }
  absl::MutexLock l(&db_.mu);
  EXPECT_EQ(db_.attempts, (std::vector<std::vector<int64_t>>{{0, 1}, {2, 3}, {4, 5}, {6}}));
  EXPECT_EQ(db_.rows.size(), 6u * 10 + 40);
  EXPECT_EQ(w.counters().batches_committed.load(), 4);
  EXPECT_EQ(w.counters().records_committed.load(), 100);
}

TEST_F(WriterEngineTest, PageAlreadyCommittedIsSkippedAndCountedAsSkipped) {
  {
    absl::MutexLock l(&db_.mu);
    db_.ledger[{"job", 1}] = "an earlier run";
  }
  Writer w(Options(), Factory());
  Queue(w, "job", 3, 10);
  w.Start();
  w.Stop(kLong);
  EXPECT_EQ(owners_[0]->Wait()[0].kind, PageResult::Kind::kCommitted);
  PageResult skipped = owners_[1]->Wait()[0];
  EXPECT_EQ(skipped.kind, PageResult::Kind::kSkipped);
  EXPECT_EQ(skipped.records_skipped, 10);
  EXPECT_EQ(owners_[2]->Wait()[0].kind, PageResult::Kind::kCommitted);
  EXPECT_EQ(w.counters().pages_skipped.load(), 1);
  EXPECT_EQ(w.counters().records_skipped.load(), 10);
  EXPECT_EQ(w.counters().pages_committed.load(), 2);
  EXPECT_EQ(w.counters().records_committed.load(), 20);
  absl::MutexLock l(&db_.mu);
  EXPECT_EQ(db_.rows.size(), 20u);
}

TEST_F(WriterEngineTest, LostConnectionIsRetriedWithTheSameBatchWithoutLossOrDuplicates) {
  {
    absl::MutexLock l(&db_.mu);
    db_.faults.push_back({absl::UnavailableError("connection reset"), /*apply_first=*/false});
    // The COMMIT went through but its answer was lost: the retry must not write the pages again.
    db_.faults.push_back(
        {absl::UnavailableError("server closed the connection"), /*apply_first=*/true});
  }
  WriterOptions o = Options();
  o.max_commit_attempts = 1;  // Lost connections are retried regardless.
  Writer w(o, Factory());
  Queue(w, "job", 4, 10);
  w.Start();
  w.Stop(kLong);
  for (auto& owner : owners_) {
    auto r = owner->Wait();
    ASSERT_EQ(r.size(), 1u);  // Exactly one outcome per page.
    EXPECT_EQ(r[0].kind, PageResult::Kind::kCommitted);
    EXPECT_EQ(r[0].records_committed, 10);
  }
  absl::MutexLock l(&db_.mu);
  ASSERT_EQ(db_.attempts.size(), 3u);
  EXPECT_EQ(db_.attempts[0], db_.attempts[2]);
  EXPECT_EQ(db_.attempt_batch_ids[0], db_.attempt_batch_ids[1]);
  EXPECT_EQ(db_.attempt_batch_ids[1], db_.attempt_batch_ids[2]);
  EXPECT_EQ(db_.calls_while_disconnected, 0);  // Reconnected before every retry.
  EXPECT_EQ(db_.connects, 3);
  EXPECT_EQ(db_.rows.size(), 40u);
  for (const auto& [rec, times] : db_.rows) EXPECT_EQ(times, 1) << rec;
  EXPECT_EQ(w.counters().commit_retries.load(), 2);
  EXPECT_EQ(w.counters().reconnects.load(), 2);
  EXPECT_EQ(w.counters().records_committed.load(), 40);
  EXPECT_EQ(w.counters().pages_failed.load(), 0);
}

TEST_F(WriterEngineTest, PermanentErrorFailsThePagesAtOnceWithoutRetry) {
  {
    absl::MutexLock l(&db_.mu);
    db_.faults.push_back({absl::InternalError("permission denied for table"), false});
  }
  Writer w(Options(), Factory());
  Queue(w, "job", 2, 10);
  w.Start();
  w.Stop(kLong);
  for (auto& owner : owners_) {
    auto r = owner->Wait();
    ASSERT_EQ(r.size(), 1u);
    EXPECT_EQ(r[0].kind, PageResult::Kind::kFailed);
    EXPECT_TRUE(absl::IsInternal(r[0].error)) << r[0].error;
  }
  EXPECT_EQ(w.counters().commit_retries.load(), 0);
  EXPECT_EQ(w.counters().pages_failed.load(), 2);
  absl::MutexLock l(&db_.mu);
  EXPECT_EQ(db_.attempts.size(), 1u);
}

TEST_F(WriterEngineTest, UnavailableIsRetriedOnlyForMaxUnavailableThenThePagesFail) {
  {
    absl::MutexLock l(&db_.mu);
    for (int i = 0; i < 1000; ++i) db_.faults.push_back({absl::UnavailableError("down"), false});
  }
  WriterOptions o = Options();
  o.max_unavailable = absl::Milliseconds(50);
  Writer w(o, Factory());
  Queue(w, "job", 1, 10);
  w.queue().RequestFlush();
  w.Start();
  auto r = owners_[0]->Wait();  // Returns only because the retries are bounded.
  ASSERT_EQ(r.size(), 1u);
  EXPECT_EQ(r[0].kind, PageResult::Kind::kFailed);
  EXPECT_TRUE(absl::IsUnavailable(r[0].error)) << r[0].error;
  w.Stop(kLong);
  EXPECT_FALSE(db_.Committed("job", 0));
}

TEST_F(WriterEngineTest, IdleWriterReportsNotServingWhileTheDatabaseDoesNotAnswer) {
  WriterOptions o = Options();
  o.health_check_interval = absl::Milliseconds(10);
  Writer w(o, Factory());
  w.Start();
  auto wait_for = [&](bool serving) {
    absl::Time deadline = absl::Now() + absl::Seconds(10);
    while (w.serving() != serving && absl::Now() < deadline) absl::SleepFor(absl::Milliseconds(1));
    return w.serving() == serving;
  };
  ASSERT_TRUE(wait_for(true));  // Connected.
  {
    absl::MutexLock l(&db_.mu);
    db_.ping_status = absl::UnavailableError("connection refused");
  }
  EXPECT_TRUE(wait_for(false));  // No traffic at all: only the check can notice.
  EXPECT_GT(w.counters().health_checks_failed.load(), 0);
  {
    absl::MutexLock l(&db_.mu);
    db_.ping_status = absl::OkStatus();
  }
  EXPECT_TRUE(wait_for(true));
  w.Stop(kLong);
}

TEST_F(WriterEngineTest, PageRefusedAloneFailsAndItsNeighboursCommit) {
  // A sink that refuses every page of job "bad" on its own (permanent error for that page only).
  class RefusingSink : public FakeSink {
   public:
    using FakeSink::FakeSink;
    absl::StatusOr<std::vector<PageResult>> CommitPages(const std::vector<const QueuedPage*>& pages,
                                                        const std::string& batch_id) override {
      std::vector<const QueuedPage*> good;
      for (const QueuedPage* p : pages) {
        if (p->job_id != "bad") good.push_back(p);
      }
      auto r = FakeSink::CommitPages(good, batch_id);
      if (!r.ok()) return r;
      std::vector<PageResult> out;
      size_t k = 0;
      for (const QueuedPage* p : pages) {
        if (p->job_id != "bad") {
          out.push_back((*r)[k++]);
        } else {
          PageResult f;
          f.kind = PageResult::Kind::kFailed;
          f.error = absl::InternalError("trigger raised");
          out.push_back(f);
        }
      }
      return out;
    }
  };
  Writer w(Options(), [this] { return std::make_unique<RefusingSink>(&db_); });
  Queue(w, "good", 1, 10);
  Queue(w, "bad", 1, 10);
  w.Start();
  w.Stop(kLong);
  EXPECT_EQ(owners_[0]->Wait()[0].kind, PageResult::Kind::kCommitted);
  EXPECT_EQ(owners_[1]->Wait()[0].kind, PageResult::Kind::kFailed);
  EXPECT_EQ(w.counters().pages_failed.load(), 1);
  EXPECT_EQ(w.counters().pages_committed.load(), 1);
  EXPECT_EQ(w.counters().batches_committed.load(), 1);
}

TEST_F(WriterEngineTest, TransientErrorsAreRetriedUpToTheLimitThenThePagesFail) {
  {
    absl::MutexLock l(&db_.mu);
    for (int i = 0; i < 3; ++i) {
      db_.faults.push_back({absl::AbortedError("deadlock detected"), false});
    }
  }
  WriterOptions o = Options();
  o.max_commit_attempts = 3;
  Writer w(o, Factory());
  Queue(w, "job", 2, 10);
  w.Start();
  w.Stop(kLong);
  for (auto& owner : owners_) {
    auto r = owner->Wait();
    ASSERT_EQ(r.size(), 1u);
    EXPECT_EQ(r[0].kind, PageResult::Kind::kFailed);
    EXPECT_TRUE(absl::IsAborted(r[0].error)) << r[0].error;
  }
  EXPECT_EQ(w.counters().pages_failed.load(), 2);
  EXPECT_EQ(w.counters().batches_committed.load(), 0);
  absl::MutexLock l(&db_.mu);
  EXPECT_EQ(db_.attempts.size(), 3u);
  EXPECT_TRUE(db_.rows.empty());
}

TEST_F(WriterEngineTest, OwnerHearsOnlyAfterTheCommit) {
  absl::Notification entered, release;
  db_.entered = &entered;
  db_.release = &release;
  Writer w(Options(), Factory());
  w.Start();
  Queue(w, "job", 2, 10);
  w.queue().RequestFlush();  // flush_interval is long: the stream's end asks for its acks.
  entered.WaitForNotification();
  // The writer thread is inside CommitPages: nothing is acknowledged yet.
  EXPECT_EQ(owners_[0]->heard(), 0u);
  EXPECT_EQ(owners_[1]->heard(), 0u);
  EXPECT_FALSE(db_.Committed("job", 0));
  release.Notify();
  for (auto& owner : owners_) {
    auto r = owner->Wait();
    ASSERT_EQ(r.size(), 1u);
    EXPECT_EQ(r[0].kind, PageResult::Kind::kCommitted);
    EXPECT_TRUE(owner->committed_at_ack());
  }
  w.Stop(kLong);
}

// One stream owning several pages: counts how many of its outcomes open a transaction.
class StreamRecorder : public PageOwner {
 public:
  void OnPageDone(const PageResult& r) override {
    absl::MutexLock l(&mu_);
    ++pages_;
    if (r.first_in_batch_for_owner) ++batches_;
  }
  int WaitBatches(int pages) {
    absl::MutexLock l(&mu_);
    auto done = [&]() ABSL_NO_THREAD_SAFETY_ANALYSIS { return pages_ >= pages; };
    mu_.Await(absl::Condition(&done));
    return batches_;
  }

 private:
  absl::Mutex mu_;
  int pages_ ABSL_GUARDED_BY(mu_) = 0;
  int batches_ ABSL_GUARDED_BY(mu_) = 0;
};

TEST_F(WriterEngineTest, EachOwnerCountsEveryTransactionThatCommittedItsPagesOnce) {
  WriterOptions o = Options();
  o.batch_records = 30;
  Writer w(o, Factory());
  {
    absl::MutexLock l(&db_.mu);
    db_.ledger[{"a", 4}] = "an earlier run";  // A skipped page opens no transaction of its own.
  }
  StreamRecorder a, b;
  // Batches of 30 records: {a0, a1, b0}, {a2, b1, b2}, {b3, a4}; a4 is skipped, so the third
  // transaction committed nothing of a's.
  for (auto [owner, job, page] :
       std::vector<std::tuple<StreamRecorder*, std::string, int>>{{&a, "a", 0},
                                                                  {&a, "a", 1},
                                                                  {&b, "b", 0},
                                                                  {&a, "a", 2},
                                                                  {&b, "b", 1},
                                                                  {&b, "b", 2},
                                                                  {&b, "b", 3},
                                                                  {&a, "a", 4}}) {
    ASSERT_TRUE(w.queue().Push(MakePage(job, page, 10, owner)));
  }
  w.Start();
  w.Stop(kLong);
  EXPECT_EQ(a.WaitBatches(4), 2);
  EXPECT_EQ(b.WaitBatches(4), 3);
  EXPECT_EQ(w.counters().batches_committed.load(), 3);
}

TEST_F(WriterEngineTest, StopReportsPagesNeverCommittedAsFailed) {
  absl::Notification entered, release;
  db_.entered = &entered;
  db_.release = &release;
  {
    absl::MutexLock l(&db_.mu);
    db_.faults.push_back({absl::UnavailableError("connection reset"), false});
  }
  WriterOptions o = Options();
  o.initial_backoff = kLong;  // The retry waits longer than Stop's timeout.
  o.max_backoff = kLong;
  Writer w(o, Factory());
  Queue(w, "job", 1, 10);
  w.queue().RequestFlush();
  w.Start();
  entered.WaitForNotification();
  release.Notify();
  w.Stop(absl::ZeroDuration());
  auto r = owners_[0]->Wait();
  ASSERT_EQ(r.size(), 1u);
  EXPECT_EQ(r[0].kind, PageResult::Kind::kFailed);
  EXPECT_TRUE(absl::IsUnavailable(r[0].error));
  EXPECT_FALSE(db_.Committed("job", 0));
}

}  // namespace
}  // namespace etl
