#include "collector_service/pagination.h"

#include <algorithm>
#include <thread>
#include <utility>

#include "absl/container/flat_hash_map.h"
#include "absl/hash/hash.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "collector_service/job_spec.h"
#include "common/logging.h"

namespace etl {

PageProducer::PageProducer(std::string job_id, const v1::JobSpec* spec, PageFetcher* fetcher,
                           JobProgressTracker* progress, PaginationOptions options,
                           const std::atomic<bool>* stop, Hooks hooks)
    : job_id_(std::move(job_id)),
      spec_(spec),
      fetcher_(fetcher),
      progress_(progress),
      options_(options),
      stop_(stop),
      hooks_(std::move(hooks)) {}

bool PageProducer::IsChainStyle(const v1::JobSpec& spec) {
  switch (spec.pagination().style()) {
    case v1::PAGE:
      return false;
    case v1::OFFSET:
      return spec.pagination().page_size() <= 0;
    default:
      return true;
  }
}

void PageProducer::Fatal(const std::string& error) {
  fatal_.store(true);
  hooks_.fatal(error);
}

void PageProducer::Produce(PageWindow* window, const std::vector<v1::CommittedPage>& committed) {
  if (IsChainStyle(*spec_)) {
    ProduceChain(window, committed);
  } else {
    ProduceIndexed(window, committed);
  }
}

std::string PageProducer::IndexedToken(int64_t n) const {
  const v1::Pagination& p = spec_->pagination();
  if (p.style() == v1::PAGE) return absl::StrCat(p.start_page() + n);
  const int64_t size = effective_page_size_ > 0 ? effective_page_size_ : p.page_size();
  return absl::StrCat(p.start_page() + n * size);
}

void PageProducer::ProduceIndexed(PageWindow* window,
                                  const std::vector<v1::CommittedPage>& committed_pages) {
  const v1::Pagination& p = spec_->pagination();
  absl::flat_hash_map<int64_t, const v1::CommittedPage*> committed;
  for (const auto& c : committed_pages) committed[c.page_number()] = &c;
  auto parser = JsonPageParser::Create(
      {p.records_path(), spec_->id_path(), "", "", p.total_pages_path(), p.total_count_path()});
  if (!parser.ok()) {
    Fatal(std::string(parser.status().message()));
    window->FinishProducing(0);
    return;
  }
  int64_t slot = 0;
  int64_t n = 0;
  int consecutive_failures = 0;
  bool finished = false;

  auto learn_totals = [&](const ParsedPage& parsed) {
    int64_t total = 0;
    if (auto tp = JsonScalarToInt(parsed.total_pages);
        tp.has_value() && !p.total_pages_path().empty()) {
      total = *tp;
    }
    if (auto tc = JsonScalarToInt(parsed.total_count);
        tc.has_value() && !p.total_count_path().empty()) {
      progress_->RaiseRecordsTotal(*tc);
      const int64_t size = effective_page_size_ > 0 ? effective_page_size_ : p.page_size();
      if (size > 0 && total == 0) {
        int64_t remaining =
            p.style() == v1::OFFSET ? std::max<int64_t>(0, *tc - p.start_page()) : *tc;
        total = (remaining + size - 1) / size;
        if (total == 0) total = 1;  // The (empty) first page itself.
      }
    }
    if (total > 0 && total != progress_->pages_total()) {
      progress_->SetPagesTotal(total);
      if (hooks_.totals_changed) hooks_.totals_changed(total, progress_->records_total());
    }
  };

  // An API that caps the page size below the requested one: when the first page is short but a
  // record total says more follows, the page size is what the API really returns.
  auto adapt_page_size = [&](const FetchedPage& first) {
    const int64_t records = first.records;
    if (records <= 0 || p.page_size() <= 0 || records >= p.page_size() ||
        p.total_count_path().empty()) {
      return;
    }
    auto tc = JsonScalarToInt(first.parsed.total_count);
    if (!tc.has_value()) return;
    const int64_t remaining =
        p.style() == v1::OFFSET ? std::max<int64_t>(0, *tc - p.start_page()) : *tc;
    if (remaining <= records || effective_page_size_ == records) return;
    effective_page_size_ = records;
    if (hooks_.message) {
      hooks_.message(absl::StrCat("the API returns ", records, " records per page (", p.page_size(),
                                  " requested); following its total of ", *tc, " records"));
    }
  };

  // Resuming (a broken stream or a restart) with page 0 committed: the page size the API really
  // serves was learned from page 0, which is not sent again. Fetch it once more, only to learn, so
  // the remaining pages are indexed exactly as before; otherwise they would be requested with the
  // configured size and miss or repeat records.
  if (committed.count(0) && p.page_size() > 0 && !p.total_count_path().empty()) {
    FetchedPage first = fetcher_->Fetch(0, IndexedToken(0), parser->get());
    if (first.cancelled) {
      window->FinishProducing(0);
      return;
    }
    if (first.auth_failed) {
      Fatal(first.error);
      window->FinishProducing(0);
      return;
    }
    if (first.ok) {
      adapt_page_size(first);
      learn_totals(first.parsed);
    } else {
      // Without page 0 the page size cannot be confirmed: indexing with a guess could skip
      // records, so this attempt stops and the job's retry logic tries again.
      Fatal(
          absl::StrCat("resuming: page 0 could not be fetched again to confirm the API's page "
                       "size: ",
                       first.error));
      window->FinishProducing(0);
      return;
    }
  }

  // Phase 1: one page at a time until the total is known (or the end is found).
  while (!stopping() && progress_->pages_total() <= 0) {
    if (n >= p.max_pages()) {
      Fatal(absl::StrCat("loop guard: more than max_pages=", p.max_pages(), " pages; stopping"));
      finished = true;
      break;
    }
    if (auto it = committed.find(n); it != committed.end()) {
      if (it->second->next_page_token().empty()) {
        finished = true;
        break;
      }
      ++n;
      continue;
    }
    if (!window->WaitForRoom(slot)) break;
    FetchedPage page = fetcher_->Fetch(n, IndexedToken(n), parser->get());
    if (page.cancelled) break;
    if (page.auth_failed) {
      Fatal(page.error);
      finished = true;
      break;
    }
    bool last = false;
    if (page.ok) {
      consecutive_failures = 0;
      int64_t records = page.records;
      if (n == 0) adapt_page_size(page);
      learn_totals(page.parsed);
      const int64_t size = effective_page_size_ > 0 ? effective_page_size_ : p.page_size();
      int64_t total = progress_->pages_total();
      if (total > 0) {
        // A known total decides the end; a short page alone does not.
        last = n + 1 >= total;
        if (!last && records == 0) {
          page.ok = false;
          page.error = absl::StrCat("the API returned an empty page ", n,
                                    " before its reported total of ", total, " pages");
          if (hooks_.stop_note) hooks_.stop_note(page.error);
          last = true;
        }
      } else {
        last = records == 0 || (size > 0 && records < size);
      }
      if (p.style() == v1::OFFSET && progress_->records_total() > 0 &&
          p.start_page() + n * size + records >= progress_->records_total()) {
        last = true;
      }
      page.next_token = last ? "" : IndexedToken(n + 1);
    } else {
      ++consecutive_failures;
      page.next_token = IndexedToken(n + 1);
    }
    bool failed = !page.ok;
    std::string error = page.error;
    window->Put(slot++, std::move(page));
    if (failed && n == 0) {
      Fatal(absl::StrCat("the first page failed: ", error));
      finished = true;
      break;
    }
    if (failed && consecutive_failures >= options_.max_consecutive_failed_pages) {
      Fatal(absl::StrCat(consecutive_failures, " consecutive pages failed (last: ", error,
                         "); the end of the data cannot be found"));
      finished = true;
      break;
    }
    ++n;
    if (last) {
      finished = true;
      break;
    }
  }

  // Phase 2: the page count is known: fetch the rest in parallel, send in order.
  if (!finished && !stopping() && progress_->pages_total() > 0) {
    const int64_t total = progress_->pages_total();
    if (total > p.max_pages()) {
      Fatal(absl::StrCat("loop guard: the API reports ", total,
                         " pages, more than max_pages=", p.max_pages()));
    } else {
      std::vector<int64_t> todo;
      for (int64_t i = n; i < total; ++i) {
        if (!committed.count(i)) todo.push_back(i);
      }
      absl::Mutex claim_mu;
      size_t next_index = 0;
      bool fatal = false;
      const int64_t first_slot = slot;
      const LogContext log_context = CurrentLogContext();
      AdaptiveConcurrency concurrency(AdaptiveConcurrencyOptions{
          spec_->fetch_concurrency(),
          options_.adaptive_fetch_concurrency && !spec_->fixed_fetch_concurrency()});
      auto worker = [&] {
        SetThreadComponent("collector/fetch");
        ScopedLogContext log_scope(log_context);
        auto worker_parser =
            JsonPageParser::Create({p.records_path(), spec_->id_path(), "", "", "", ""});
        while (!stopping()) {
          if (!concurrency.Acquire(stop_)) return;
          struct Permit {
            AdaptiveConcurrency* c;
            ~Permit() { c->Release(); }
          } permit{&concurrency};
          size_t index;
          {
            absl::MutexLock l(&claim_mu);
            if (fatal || next_index >= todo.size()) return;
            index = next_index++;
          }
          int64_t my_slot = first_slot + int64_t(index);
          bool window_full = false;
          if (!window->WaitForRoom(my_slot, &window_full)) return;
          if (window_full) concurrency.OnWriterFull();
          int64_t page_number = todo[index];
          FetchedPage page = fetcher_->Fetch(page_number, IndexedToken(page_number),
                                             worker_parser->get(), &concurrency);
          if (page.auth_failed) {
            Fatal(page.error);
            absl::MutexLock l(&claim_mu);
            fatal = true;
          }
          page.next_token = page_number + 1 >= total ? "" : IndexedToken(page_number + 1);
          if (page.ok && page.records == 0 && page_number + 1 < total) {
            // The API's answers contradict its own total: the page is missing data (PARTIAL).
            page.ok = false;
            page.error = absl::StrCat("the API returned an empty page ", page_number,
                                      " before its reported total of ", total, " pages");
          }
          window->Put(my_slot, std::move(page));
        }
      };
      int workers = int(std::min<int64_t>(spec_->fetch_concurrency(), int64_t(todo.size())));
      std::vector<std::thread> threads;
      for (int i = 0; i < workers; ++i) threads.emplace_back(worker);
      for (auto& t : threads) t.join();
      absl::MutexLock l(&claim_mu);
      slot = first_slot + int64_t(next_index);
    }
  }
  window->FinishProducing(slot);
}

void PageProducer::ProduceChain(PageWindow* window,
                                const std::vector<v1::CommittedPage>& committed) {
  const v1::Pagination& p = spec_->pagination();
  const v1::PaginationStyle style = p.style();
  auto parser = JsonPageParser::Create(
      {p.records_path(), spec_->id_path(), style == v1::CURSOR ? p.cursor_path() : "",
       style == v1::NEXT_URL ? p.next_url_path() : "", "", p.total_count_path()});
  if (!parser.ok()) {
    Fatal(std::string(parser.status().message()));
    window->FinishProducing(0);
    return;
  }
  // Tokens already requested: a next token equal to one of them means the API loops.
  absl::flat_hash_map<size_t, int64_t> seen;
  int64_t n = 0;
  std::string token;
  if (style == v1::LINK || style == v1::NEXT_URL) {
    auto first = fetcher_->RequestUrl("");
    token = first.ok() ? *first : spec_->url();
  } else if (style == v1::OFFSET) {
    token = absl::StrCat(p.start_page());
  }
  // Sequential: continue after the contiguous prefix of committed pages (ascending), from the last
  // one's stored next-page token. Writer threads commit concurrently, so after a crash a later
  // page may be committed while an earlier one is not: resuming after the highest page would skip
  // the gap. Pages past the gap are fetched again and skipped by the writer's ledger; only the
  // prefix's tokens count for the loop guard, since those later tokens will legitimately be
  // requested again.
  bool all_fetched = false;
  for (const auto& c : committed) {
    if (c.page_number() != n) break;
    seen[absl::HashOf(c.page_token())] = c.page_number();
    n = c.page_number() + 1;
    token = c.next_page_token();
    all_fetched = token.empty();
  }
  int64_t slot = 0;
  if (all_fetched) {
    window->FinishProducing(0);  // The last page is committed: nothing left to fetch.
    return;
  }
  while (!stopping()) {
    if (n >= p.max_pages()) {
      Fatal(absl::StrCat("loop guard: more than max_pages=", p.max_pages(), " pages; stopping"));
      break;
    }
    if (!window->WaitForRoom(slot)) break;
    FetchedPage page = fetcher_->Fetch(n, token, parser->get());
    if (page.cancelled) break;
    if (page.auth_failed) {
      Fatal(page.error);
      break;
    }
    if (!page.ok) {
      std::string error = page.error;
      window->Put(slot++, std::move(page));
      if (n == 0) {
        Fatal(absl::StrCat("the first page failed: ", error));
      } else if (hooks_.stop_note) {
        hooks_.stop_note(absl::StrCat("stopped at page ", n, ": ", StyleName(style),
                                      " pagination cannot continue past a failed page"));
      }
      break;
    }
    std::string next;
    const ParsedPage& parsed = page.parsed;
    switch (style) {
      case v1::CURSOR:
        if (parsed.cursor.present()) next = parsed.cursor.text;
        break;
      case v1::LINK:
      case v1::NEXT_URL: {
        std::string ref = style == v1::LINK                                   ? page.link_next
                          : parsed.next_url.kind == JsonScalar::Kind::kString ? parsed.next_url.text
                                                                              : "";
        if (!ref.empty()) {
          auto resolved = ResolveUrl(page.request_url, ref);
          if (!resolved.ok()) {
            Fatal(
                absl::StrCat("page ", n, ": ",
                             Redact(std::string(resolved.status().message()), fetcher_->redact())));
            break;
          }
          next = fetcher_->credential_query_param().empty()
                     ? *resolved
                     : RemoveQueryParam(*resolved, fetcher_->credential_query_param());
        }
        break;
      }
      case v1::OFFSET: {
        int64_t offset = 0;
        if (!absl::SimpleAtoi(token, &offset)) offset = 0;
        int64_t records = page.records;
        auto total = JsonScalarToInt(parsed.total_count);
        if (total.has_value()) progress_->RaiseRecordsTotal(*total);
        bool last = records == 0 || (total.has_value() && offset + records >= *total);
        if (!last) next = absl::StrCat(offset + records);
        break;
      }
      default:
        break;
    }
    if (fatal_.load()) break;
    bool loop = false;
    if (!next.empty()) {
      if (next == token && page.records == 0) {
        // An empty page naming itself as the next one: the end of the data, said awkwardly.
        LogWarning("page ", n,
                   ": an empty page named itself as the next page; treating it as the last");
        next.clear();
      } else if (next == token) {
        // Requesting it again would serve the same records forever: the API loops, and whatever
        // follows this page cannot be reached.
        loop = true;
        Fatal(absl::StrCat("loop guard: page ", n, " names itself as the next page (same ",
                           style == v1::CURSOR ? "cursor" : "next URL",
                           " again); the pages after it cannot be reached; stopping"));
        next.clear();
      } else if (auto it = seen.find(absl::HashOf(next)); it != seen.end()) {
        loop = true;
        Fatal(absl::StrCat("loop guard: page ", n, " points back to page ", it->second,
                           " (repeated ", style == v1::CURSOR ? "cursor" : "next URL",
                           "); stopping"));
        next.clear();
      }
    }
    seen[absl::HashOf(token)] = n;
    page.next_token = next;
    window->Put(slot++, std::move(page));
    if (next.empty() || loop) break;
    ++n;
    token = std::move(next);
  }
  window->FinishProducing(slot);
}

}  // namespace etl
