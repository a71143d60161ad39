"""Prometheus metrics, served at `GET /metrics`: what an operator watches besides /health.

Two kinds, each from where it is true:

* Events, counted by the process that saw them: API requests by operation and status, with
  their latency; the contact feeds' requests by status, and the records `POST /contact-records`
  took in; dead letters sent to (or refused by) SQS queues. prometheus_client counters and
  histograms.
  Under `openprofiles serve --workers N` each worker counts into files of its own in a
  directory the workers share (prometheus_client's multiprocess mode: `serve` sets
  PROMETHEUS_MULTIPROC_DIR to a new directory before the workers start: endpoint
  `multiprocess_dir`),
  and the worker that answers a scrape adds them all up, so a scrape sees the server, not
  one worker. A worker that died and was restarted keeps its counts there.
* State, read from the database when scraped: dead letters kept (by domain and reason
  category), those whose send to the domain's queue failed and wait for a resend, and the
  contact records kept for want of a domain or waiting for the contact they continue. The
  database is the truth for every process and server, so no worker's view can disagree, and
  nothing on a request's path counts them. Each is a grouped count over a whole table, so a
  process reads them at most every OPENPROFILES_METRICS_STATE_SECONDS (state).

No label carries personal data or anything from a record: operations, HTTP statuses, AWS error
names, reason categories and domain names (chosen by administrators) only. A scraper signs
nothing, so /metrics takes no SigV4; with OPENPROFILES_METRICS_TOKEN set, a scrape must carry it
as a bearer token (access). Without one, like the server itself it listens on 127.0.0.1 unless
told otherwise, `serve` warns when it does not, and a proxy that exposes the server should keep
/metrics to the monitoring network (docs/operations.md).

`events` counts, `state` reads the database, `access` says who may scrape, `endpoint` answers
the scrape.
"""
