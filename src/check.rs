//! Runs one check's SQL on one target and streams its rows as text, or returns a classified
//! error.
//!
//! Owns the per-run deadline: the pool wait, the session's `statement_timeout` and the client
//! side deadline all derive from the check's `timeout`. The query runs inside a `READ ONLY`
//! transaction, rolled back afterwards, so a check cannot write. On a missed deadline (or a shutdown
//! cancel) it sends a PostgreSQL CancelRequest so the server stops working, and takes the
//! session out of the pool so a late result can never leak into the next run.
//!
//! Rows are never collected here: they are sent down a bounded channel in small batches
//! ([`Rows`]: one text buffer and field offsets per batch, no allocation per field) as they
//! arrive, and the channel's backpressure reaches the server (tokio-postgres stops reading the socket
//! while the consumer is busy), so a million-row result costs no more memory than a few rows.
//!
//! Knows tokio-postgres (with `db`); knows nothing about metrics, snapshots or CSV.

use std::time::Duration;

use futures_util::{FutureExt, StreamExt};
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_postgres::SimpleQueryMessage;
use tokio_util::sync::CancellationToken;

use crate::config::CheckConfig;
use crate::db::{self, CheckError, ErrorKind, Target};
use crate::rows::Rows;

/// What a run streams to its consumer: the column names once, then the rows in batches.
#[derive(Debug, Clone, PartialEq)]
pub enum Message {
    /// Column names in result order; sent once, before any row.
    Columns(Vec<String>),
    /// Consecutive rows of nullable text values, one per column, in one buffer.
    Rows(Rows),
}

/// A batch is sent when it holds this many rows… (1,024 rows of a typical archive result are
/// 40–60 kB: fewer channel hops per row than 256, and still one allocation under malloc's
/// mmap threshold.)
const BATCH_ROWS: usize = 1024;
/// …or this much text, whichever comes first (and at the end of the result).
const BATCH_BYTES: usize = 64 * 1024;

const REPLACEMENT: &str = "\u{FFFD}";

fn batch_take(batch: &mut Option<Rows>) -> Rows {
    batch.take().expect("a batch was being filled")
}

/// Margin between the client deadline and the server's `statement_timeout`: the client
/// cancels first; the server-side timeout only matters if the cancel request is lost.
const SERVER_TIMEOUT_MARGIN: Duration = Duration::from_secs(1);

/// Runs `check` on `target`, sending the result down `out` as it arrives; returns the number
/// of rows. `cancel` aborts the run (server-side too) at shutdown. If the consumer drops its
/// end, the rest of the result is discarded and the run ends without an error (the consumer
/// knows why it stopped).
pub async fn execute(
    target: &Target,
    check: &CheckConfig,
    cancel: &CancellationToken,
    out: mpsc::Sender<Message>,
) -> Result<u64, CheckError> {
    let deadline = Instant::now() + check.timeout;
    let obj = tokio::select! {
        r = target.client(check.timeout) => r?,
        _ = cancel.cancelled() => return Err(CheckError::new(ErrorKind::Canceled, "shutting down")),
    };
    let token = obj.cancel_token();
    let statement_timeout = (check.timeout + SERVER_TIMEOUT_MARGIN).as_millis();
    let work = async {
        // One round trip: the session's server-side deadline, then a read-only transaction
        // so a check can never write, whatever its SQL says.
        if let Err(e) = obj
            .simple_query(&format!(
                "SET statement_timeout = {statement_timeout}; BEGIN READ ONLY"
            ))
            .await
        {
            return (Err(db::classify_query_error(&e)), Stop::Discard);
        }
        let result = match stream(&obj, &check.query, out).await {
            Ok(Streamed::All(rows)) => Ok(rows),
            // The consumer stopped reading (a column mismatch): the statement may still be
            // running; a ROLLBACK would queue behind it until the deadline.
            Ok(Streamed::Stopped(rows)) => return (Ok(rows), Stop::Cancel),
            Err(e) => Err(e),
        };
        // End the transaction whether the query failed or not; a session that cannot do
        // that is broken and must not go back to the pool.
        let ended = obj.simple_query("ROLLBACK").await;
        (
            result,
            if ended.is_ok() {
                Stop::Keep
            } else {
                Stop::Discard
            },
        )
    };
    let outcome = tokio::select! {
        r = tokio::time::timeout_at(deadline, work) => match r {
            Ok((result, Stop::Keep)) => return result,
            Ok((result, Stop::Discard)) => {
                drop(deadpool_postgres::Object::take(obj));
                return result;
            }
            Ok((result, Stop::Cancel)) => {
                if let Err(e) = target.cancel(&token).await {
                    tracing::warn!(check = %check.name, target = %target.config.name, error = %e, "cancel request failed");
                }
                drop(deadpool_postgres::Object::take(obj));
                return result;
            }
            Err(_) => CheckError::new(
                ErrorKind::Timeout,
                format!("no result within {}; query cancelled", humantime::format_duration(check.timeout)),
            ),
        },
        _ = cancel.cancelled() => CheckError::new(ErrorKind::Canceled, "shutting down; query cancelled"),
    };
    // The query may still be running on the server: cancel it, and never reuse the session.
    if let Err(e) = target.cancel(&token).await {
        tracing::warn!(check = %check.name, target = %target.config.name, error = %e, "cancel request failed");
    }
    drop(deadpool_postgres::Object::take(obj));
    Err(outcome)
}

/// What happens to the session after a run.
enum Stop {
    /// Back to the pool.
    Keep,
    /// Out of the pool (it could not end its transaction).
    Discard,
    /// Cancel the statement on the server, then out of the pool.
    Cancel,
}

/// How a stream ended: every row sent, or the consumer stopped after so many.
enum Streamed {
    All(u64),
    Stopped(u64),
}

/// Streams a simple-protocol result to `out` as text; returns the number of rows sent.
async fn stream(
    client: &tokio_postgres::Client,
    sql: &str,
    out: mpsc::Sender<Message>,
) -> Result<Streamed, CheckError> {
    let stream = client
        .simple_query_raw(sql)
        .await
        .map_err(|e| db::classify_query_error(&e))?;
    // Box::pin, not pin_mut!: the stream must be owned here so an early return drops it;
    // dropping only a pinned reference would keep a half-read stream alive and stall the
    // connection for the next query.
    let mut stream = Box::pin(stream);
    let mut rows = 0u64;
    let mut descriptions = 0;
    let mut batch: Option<Rows> = None;
    loop {
        // A consumer that stopped (a column mismatch) is noticed at once, not at the next
        // row, which a slow statement may only produce at its deadline. While rows are
        // already buffered (most of a large result) the stream is read without a select,
        // whose `closed()` registers a waiter on the channel every time.
        let message = match stream.next().now_or_never() {
            Some(m) => {
                if out.is_closed() {
                    return Ok(Streamed::Stopped(rows));
                }
                m
            }
            None => tokio::select! {
                m = stream.next() => m,
                _ = out.closed() => return Ok(Streamed::Stopped(rows)),
            },
        };
        let Some(message) = message else { break };
        let message = match message.map_err(|e| db::classify_query_error(&e))? {
            SimpleQueryMessage::RowDescription(columns) => {
                descriptions += 1;
                if descriptions > 1 {
                    return Err(CheckError::new(
                        ErrorKind::Query,
                        "the query returned more than one result set; a check is one statement",
                    ));
                }
                Message::Columns(columns.iter().map(|c| c.name().to_string()).collect())
            }
            SimpleQueryMessage::Row(row) => {
                rows += 1;
                let filling = batch.get_or_insert_with(|| {
                    Rows::with_capacity(row.len(), BATCH_ROWS, BATCH_BYTES + BATCH_BYTES / 4)
                });
                // `get` panics on text that is not UTF-8 (a SQL_ASCII database passes raw
                // bytes through); such a value becomes U+FFFD, which maps as "not a number".
                for i in 0..row.len() {
                    let v = row.try_get(i).unwrap_or(Some(REPLACEMENT));
                    if !filling.has_room(v.map_or(0, str::len)) {
                        return Err(CheckError::new(ErrorKind::Query, "a row of 2 GiB or more"));
                    }
                    filling.push_field(v);
                }
                if filling.len() < BATCH_ROWS && filling.text_len() < BATCH_BYTES {
                    continue;
                }
                Message::Rows(batch_take(&mut batch))
            }
            _ => continue,
        };
        if out.send(message).await.is_err() {
            // The consumer stopped (e.g. the columns do not match the check); dropping the
            // stream discards the rest of the result, and the caller cancels the statement.
            return Ok(Streamed::Stopped(rows));
        }
    }
    if let Some(b) = batch.take() {
        if out.send(Message::Rows(b)).await.is_err() {
            return Ok(Streamed::Stopped(rows));
        }
    }
    if descriptions == 0 {
        return Err(CheckError::new(
            ErrorKind::Columns,
            "the statement returned no result set (is it a SELECT?)",
        ));
    }
    Ok(Streamed::All(rows))
}
