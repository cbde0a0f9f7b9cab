#include "writer_service/write_queue.h"

#include <gtest/gtest.h>

#include <atomic>
#include <future>
#include <memory>
#include <thread>

#include "absl/synchronization/notification.h"

namespace etl {
namespace {

std::unique_ptr<QueuedPage> Page(int64_t records, int64_t bytes, int64_t number = 0) {
  auto p = std::make_unique<QueuedPage>();
  p->records = records;
  p->bytes = bytes;
  p->page_number = number;
  return p;
}

constexpr absl::Duration kLong = absl::Hours(1);

TEST(WriteQueueTest, BlocksProducerWhenFullUntilConsumerTakes) {
  WriteQueue q({/*max_records=*/10, /*max_bytes=*/1 << 20});
  ASSERT_TRUE(q.Push(Page(10, 100, 0)));
  std::promise<bool> pushed;
  std::thread producer([&] { pushed.set_value(q.Push(Page(1, 10, 1))); });
  std::future<bool> f = pushed.get_future();
  // The second page does not fit: the producer is still blocked.
  EXPECT_EQ(f.wait_for(std::chrono::milliseconds(100)), std::future_status::timeout);
  EXPECT_EQ(q.depth().records, 10);
  auto batch = q.PopBatch(100, 1 << 20, absl::ZeroDuration());
  ASSERT_EQ(batch.size(), 1u);
  EXPECT_TRUE(f.get());
  producer.join();
  EXPECT_EQ(q.depth().records, 1);
}

TEST(WriteQueueTest, BoundsBytesIndependentlyOfRecords) {
  WriteQueue q({/*max_records=*/1000, /*max_bytes=*/1000});
  std::unique_ptr<QueuedPage> a = Page(1, 600), b = Page(1, 600);
  EXPECT_EQ(q.PushOrPark(&a, [] {}), WriteQueue::Admission::kAdmitted);
  bool woken = false;
  EXPECT_EQ(q.PushOrPark(&b, [&] { woken = true; }), WriteQueue::Admission::kParked);
  ASSERT_NE(b, nullptr);  // Still with the caller.
  EXPECT_EQ(q.depth().bytes, 600);
  EXPECT_EQ(q.depth().parked, 1);
  q.PopBatch(10, 10000, absl::ZeroDuration());
  EXPECT_TRUE(woken);
  EXPECT_EQ(q.PushOrPark(&b, [] {}), WriteQueue::Admission::kAdmitted);
}

TEST(WriteQueueTest, AdmitsPageLargerThanTheBoundWhenEmpty) {
  WriteQueue q({/*max_records=*/10, /*max_bytes=*/100});
  std::unique_ptr<QueuedPage> big = Page(50, 5000);
  EXPECT_EQ(q.PushOrPark(&big, [] {}), WriteQueue::Admission::kAdmitted);
  std::unique_ptr<QueuedPage> small = Page(1, 1);
  EXPECT_EQ(q.PushOrPark(&small, [] {}), WriteQueue::Admission::kParked);
}

TEST(WriteQueueTest, CloseWakesBlockedProducerAndConsumer) {
  WriteQueue q({/*max_records=*/1, /*max_bytes=*/100});
  ASSERT_TRUE(q.Push(Page(1, 1)));
  auto producer = std::async(std::launch::async, [&] { return q.Push(Page(1, 1)); });
  WriteQueue empty({1, 100});
  auto consumer =
      std::async(std::launch::async, [&] { return empty.PopBatch(10, 10, kLong).size(); });
  EXPECT_EQ(producer.wait_for(std::chrono::milliseconds(50)), std::future_status::timeout);
  q.Close();
  empty.Close();
  EXPECT_FALSE(producer.get());
  EXPECT_EQ(consumer.get(), 0u);
}

TEST(WriteQueueTest, CloseCallsParkedCallbacksWhichThenSeeClosed) {
  WriteQueue q({1, 100});
  std::unique_ptr<QueuedPage> a = Page(1, 1), b = Page(1, 1);
  ASSERT_EQ(q.PushOrPark(&a, [] {}), WriteQueue::Admission::kAdmitted);
  bool called = false;
  ASSERT_EQ(q.PushOrPark(&b, [&] { called = true; }), WriteQueue::Admission::kParked);
  q.Close();
  EXPECT_TRUE(called);
  EXPECT_EQ(q.PushOrPark(&b, [] {}), WriteQueue::Admission::kClosed);
  // What was queued before Close is still handed out.
  EXPECT_EQ(q.PopBatch(10, 10, kLong).size(), 1u);
  EXPECT_TRUE(q.PopBatch(10, 10, kLong).empty());
}

TEST(WriteQueueTest, BatchHoldsWholePagesUpToTheLimits) {
  WriteQueue q({1000, 1 << 20});
  for (int i = 0; i < 5; ++i) ASSERT_TRUE(q.Push(Page(30, 300, i)));
  auto batch = q.PopBatch(/*max_records=*/100, /*max_bytes=*/1 << 20, kLong);
  ASSERT_EQ(batch.size(), 3u);  // 90 records; a 4th page would exceed 100.
  EXPECT_EQ(batch[0]->page_number, 0);
  EXPECT_EQ(batch[2]->page_number, 2);
  batch = q.PopBatch(1000, /*max_bytes=*/350, absl::ZeroDuration());
  ASSERT_EQ(batch.size(), 1u);  // Bytes bound: 300 + 300 > 350.
}

TEST(WriteQueueTest, PartialBatchIsReleasedAfterFlushInterval) {
  WriteQueue q({1000, 1 << 20});
  ASSERT_TRUE(q.Push(Page(1, 10)));
  absl::Time start = absl::Now();
  auto batch = q.PopBatch(100, 1 << 20, absl::Milliseconds(100));
  EXPECT_EQ(batch.size(), 1u);
  EXPECT_GE(absl::Now() - start, absl::Milliseconds(90));
}

TEST(WriteQueueTest, RequestFlushReleasesPartialBatchAtOnce) {
  WriteQueue q({1000, 1 << 20});
  auto consumer =
      std::async(std::launch::async, [&] { return q.PopBatch(100, 1 << 20, kLong).size(); });
  ASSERT_TRUE(q.Push(Page(1, 10)));
  EXPECT_EQ(consumer.wait_for(std::chrono::milliseconds(50)), std::future_status::timeout);
  q.RequestFlush();
  EXPECT_EQ(consumer.get(), 1u);
}

TEST(WriteQueueTest, DrainAdmitsEverythingAndWakesParkedProducers) {
  WriteQueue q({1, 10});
  std::unique_ptr<QueuedPage> a = Page(1, 1), b = Page(5, 50);
  ASSERT_EQ(q.PushOrPark(&a, [] {}), WriteQueue::Admission::kAdmitted);
  bool woken = false;
  ASSERT_EQ(q.PushOrPark(&b, [&] { woken = true; }), WriteQueue::Admission::kParked);
  q.BeginDrain();
  EXPECT_TRUE(woken);
  EXPECT_EQ(q.PushOrPark(&b, [] {}), WriteQueue::Admission::kAdmitted);
  EXPECT_EQ(q.PopBatch(100, 1000, kLong).size(), 2u);
}

TEST(WriteQueueTest, PartialPagesCountAgainstTheByteBound) {
  WriteQueue q({/*max_records=*/1000, /*max_bytes=*/1000});
  int a = 0, b = 0, c = 0;
  std::atomic<int> woken{0};
  // Stream a holds 600 bytes of an unfinished page, stream b 500: together over the bound.
  q.AddPartial(600);
  EXPECT_EQ(q.ReadRoomOrPark(&a, 600, [] {}), WriteQueue::Admission::kAdmitted);
  q.AddPartial(500);
  EXPECT_EQ(q.depth().partial_bytes, 1100);
  // Nothing is queued, so one of them (the first to ask) may finish its page past the bound ...
  EXPECT_EQ(q.ReadRoomOrPark(&a, 600, [&] { ++woken; }), WriteQueue::Admission::kAdmitted);
  // ... but no other stream, whether it holds a partial page or starts a new one.
  EXPECT_EQ(q.ReadRoomOrPark(&b, 500, [&] { ++woken; }), WriteQueue::Admission::kParked);
  EXPECT_EQ(q.ReadRoomOrPark(&c, 0, [&] { ++woken; }), WriteQueue::Admission::kParked);
  // a abandons its page: its bytes leave the bound and the parked streams are woken.
  q.ReleasePartial(&a, 600);
  EXPECT_EQ(woken.load(), 2);
  EXPECT_EQ(q.depth().partial_bytes, 500);
  EXPECT_EQ(q.ReadRoomOrPark(&c, 0, [] {}), WriteQueue::Admission::kAdmitted);
  // b completes its page: the bytes move from partial into the queue.
  auto page = Page(5, 500);
  EXPECT_EQ(q.PushAssembledOrPark(&b, &page, [] {}), WriteQueue::Admission::kAdmitted);
  EXPECT_EQ(q.depth().partial_bytes, 0);
  EXPECT_EQ(q.depth().bytes, 500);
}

TEST(WriteQueueTest, CompletedPageWaitsWhileQueuedAndPartialBytesAreOverTheBound) {
  WriteQueue q({/*max_records=*/1000, /*max_bytes=*/1000});
  int a = 0, b = 0;
  ASSERT_TRUE(q.PushForce(Page(1, 800)));
  q.AddPartial(400);  // a's page, complete now
  auto page = Page(4, 400);
  std::atomic<int> woken{0};
  EXPECT_EQ(q.PushAssembledOrPark(&a, &page, [&] { ++woken; }), WriteQueue::Admission::kParked);
  ASSERT_NE(page, nullptr);  // Still the stream's.
  // While a complete page is queued nobody gets past the bound: committing it frees room.
  q.AddPartial(100);
  EXPECT_EQ(q.ReadRoomOrPark(&b, 100, [&] { ++woken; }), WriteQueue::Admission::kParked);
  auto batch = q.PopBatch(1000, 1 << 20, absl::ZeroDuration());
  ASSERT_EQ(batch.size(), 1u);
  EXPECT_EQ(woken.load(), 2);
  EXPECT_EQ(q.PushAssembledOrPark(&a, &page, [] {}), WriteQueue::Admission::kAdmitted);
  EXPECT_EQ(q.depth().bytes, 400);
  EXPECT_EQ(q.depth().partial_bytes, 100);
}

}  // namespace
}  // namespace etl
