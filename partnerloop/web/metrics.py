"""Prometheus metrics, exposed at /metrics."""

from __future__ import annotations

from prometheus_client import Counter, Histogram

REDIRECTS = Counter("partnerloop_redirects_total", "Answers of /r/{code}", ["outcome"])
CLICKS_WRITTEN = Counter(
    "partnerloop_clicks_written_total", "Clicks of this server process committed to the database"
)
CLICK_WRITE_FAILURES = Counter(
    "partnerloop_click_write_failures_total",
    "Click batches this server process sent that were not committed (shoppers still "
    "redirected, without a click id)",
)
CLICK_BATCH_SIZE = Histogram(
    "partnerloop_click_batch_size",
    "Clicks per batch this server process sent to the click store (the store may "
    "commit several batches together)",
    buckets=(1, 2, 5, 10, 25, 50, 100, 250, 500, 1000),
)
CLICK_COMMIT_SECONDS = Histogram(
    "partnerloop_click_commit_seconds",
    "From sending a batch of clicks to the click store to its commit",
    buckets=(0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0),
)
POSTBACKS = Counter("partnerloop_postbacks_total", "S2S postbacks received", ["outcome"])
WEBHOOKS = Counter(
    "partnerloop_shop_webhooks_total",
    "Shop webhooks received (accepted, duplicate, answered, unauthorized)",
    ["outcome"],
)
WEBHOOK_BATCH_SIZE = Histogram(
    "partnerloop_webhook_batch_size",
    "Webhooks per group commit (verified and stored in one transaction)",
    buckets=(1, 2, 5, 10, 25, 50, 100, 250, 500, 1000),
)
WEBHOOK_COMMIT_SECONDS = Histogram(
    "partnerloop_webhook_commit_seconds",
    "Time to verify, store and commit one batch of webhooks",
    buckets=(0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0),
)
