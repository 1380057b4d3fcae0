// Package logship ships a task's console lines to the ClearML server
// (events.add_batch) in order, without losing, duplicating or reordering a
// line, also across server outages.
//
// Pipeline: Write -> bounded in-memory queue -> (when memory is full) an
// append-only spool file -> one sender goroutine that builds batches (at most
// 1 MiB, messages at most 64 KiB) and retries a failed batch, unchanged, with
// capped exponential backoff and jitter until it is accepted.
//
// Guarantees and choices:
//   - Order: one queue, one sender, one batch in flight. Event timestamps
//     (epoch ms) strictly increase per Shipper, so the server, which sorts
//     by timestamp, shows lines in the order they were written.
//   - No loss: a failed batch is retried until it succeeds, Close's context
//     ends, or the Sender marks the error Permanent (the server rejected the
//     batch for good: it is dropped and counted in Stats.LinesDropped).
//   - Duplicates: the server does not deduplicate. Every non-permanent error
//     is retried, including ambiguous ones (a timeout after the request was
//     written, a 5xx after the server may have stored part of it). We chose
//     at-least-once: after such an error a batch may appear twice, with the
//     same timestamps, rather than be lost. Clear failures (connection
//     refused, 429, most 5xx) never duplicate.
//   - Back-pressure: Write only appends to memory. When memory is full it
//     appends to the spool file (its directory is created on first use). A
//     task is never held up by a server outage: when the spool is full too
//     (SpoolMaxBytes, default 1 GiB) or cannot be written, later lines are
//     dropped, counted (Stats.LinesSpoolDropped), warned about once, and a
//     line "[clearml-agent] N log lines were dropped here" marks the gap in
//     the log as soon as there is room again (or when the shipper closes).
//     Without a SpoolDir, Write blocks until the sender makes room.
//
// It must not: run processes, decide task status, or read the config file.
// Unlike the reference agent (which drops lines of a failed send) it retries.
package logship
