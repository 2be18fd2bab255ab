//! Redis for the caches: `client` is `RedisClient`, what Python sees;
//! `pool` the connections of one process with their deadlines, breaker
//! and probe; `writer` the write-behind queue. Here: what one process image
//! owns (`Process`), and the flush of every writer at interpreter exit.

pub mod breaker;
pub mod budget;
pub mod client;
pub mod cluster;
pub mod config;
pub mod conn;
pub mod link;
pub mod pool;
pub mod reply_guard;
pub mod sentinel;
pub mod tls;
pub mod url;
pub mod writer;

use std::sync::{Arc, OnceLock, Weak};
use std::time::{Duration, Instant};

use pyo3::prelude::*;

use crate::errors::{RedisReplyError, RedisUnavailable};
use crate::fork;
use breaker::Transition;
pub use client::RedisClient;
use config::RedisConfig;
use link::Endpoint;
use parking_lot::Mutex;
use pool::{CallError, Pool};
use writer::{Command, Writer};

/// Everything that belongs to one process image.
pub struct Process {
    pub pool: Arc<Pool>,
    write_queue: usize,
    write_queue_bytes: usize,
    /// Started on the first write: Odoo's master process builds clients
    /// before forking workers, and a thread there would only be abandoned
    /// at the fork (Python 3.12+ also warns when a threaded process forks).
    writer: OnceLock<Option<Arc<Writer>>>,
}

impl Process {
    fn start(
        config: &RedisConfig,
        endpoint: &Endpoint,
        sentinel: Option<&sentinel::Question>,
        cluster: Option<&redis::cluster::ClusterClient>,
    ) -> Process {
        // A lookup the OS has not finished after a few connection timeouts
        // is abandoned for a new one (see `sentinel`).
        let master = sentinel.map(|question| {
            sentinel::MasterResolver::new(
                question.clone(),
                endpoint.clone(),
                config.connect_timeout,
                config.connect_timeout * 4,
            )
        });
        Process {
            pool: Pool::new(
                config.clone(),
                endpoint.clone(),
                master,
                cluster.cloned(),
                log_transition,
            ),
            write_queue: config.write_queue,
            write_queue_bytes: config.write_queue_bytes,
            writer: OnceLock::new(),
        }
    }

    /// The writer, once started.
    fn started_writer(&self) -> Option<&Arc<Writer>> {
        self.writer.get().and_then(Option::as_ref)
    }

    fn writer(&self) -> Option<&Arc<Writer>> {
        self.writer
            .get_or_init(|| {
                // Without a writer thread (the OS refused one), writes are
                // dropped and counted: reads keep working.
                let writer = Writer::spawn(
                    Arc::clone(&self.pool),
                    self.write_queue,
                    self.write_queue_bytes,
                )
                .ok()
                .map(Arc::new)?;
                LIVE_WRITERS
                    .lock()
                    .push((fork::epoch(), Arc::downgrade(&writer)));
                Some(writer)
            })
            .as_ref()
    }

    pub fn enqueue(&self, command: Command) -> bool {
        self.writer().is_some_and(|writer| writer.enqueue(command))
    }
}

/// Writers of this process image, flushed once at interpreter exit so that a
/// clean shutdown loses no queued write. Entries of a parent image (after a
/// fork) are skipped: their threads do not exist here.
static LIVE_WRITERS: Mutex<Vec<(u64, Weak<Writer>)>> = Mutex::new(Vec::new());

/// Flushes every live writer of this process, sharing one time budget, and
/// logs one warning with how many queued writes were not sent.
#[pyfunction]
#[pyo3(signature = (timeout = 2.0))]
fn flush_all_writers(py: Python<'_>, timeout: f64) -> PyResult<bool> {
    let epoch = fork::epoch();
    let writers: Vec<Arc<Writer>> = {
        let mut live = LIVE_WRITERS.lock();
        live.retain(|(owner, writer)| *owner == epoch && writer.strong_count() > 0);
        live.iter()
            .filter_map(|(_, writer)| writer.upgrade())
            .collect()
    };
    let timeout = timeout.clamp(0.0, 60.0);
    let unsent_before = writer::unsent();
    let deadline = Instant::now() + Duration::from_secs_f64(timeout);
    let flushed = py.detach(|| {
        let flushed = writers
            .iter()
            .all(|writer| writer.flush(deadline.saturating_duration_since(Instant::now())));
        // Writers of dropped clients still drain their queues.
        flushed && writer::wait_until_drained(deadline)
    });
    let left = writer::in_flight();
    let dropped = writer::unsent().saturating_sub(unsent_before);
    if left + dropped > 0 {
        py.import("logging")?
            .call_method1("getLogger", ("ormcache_redis.redis",))?
            .call_method1(
                "warning",
                (
                    "%d queued Redis writes were not sent: %d dropped (Redis unavailable \
                     or refusing them), %d still queued after %.1f s",
                    left + dropped,
                    dropped,
                    left,
                    timeout,
                ),
            )?;
    }
    Ok(flushed)
}

fn log_transition(address: &str, transition: Transition, reason: &str) {
    // A writer thread may notice an outage while the interpreter shuts down.
    if unsafe { pyo3::ffi::Py_IsInitialized() } == 0 {
        return;
    }
    Python::attach(|py| {
        let log = || -> PyResult<()> {
            let logger = py
                .import("logging")?
                .call_method1("getLogger", ("ormcache_redis.redis",))?;
            match transition {
                Transition::Opened { retry_in } => logger.call_method1(
                    "warning",
                    (
                        "Redis %s is unreachable (%s): serving from the local cache and \
                         recomputing; probing again in %.2f s",
                        address,
                        reason,
                        retry_in.as_secs_f64(),
                    ),
                )?,
                Transition::Recovered => {
                    logger.call_method1("warning", ("Redis %s is reachable again", address))?
                }
            };
            Ok(())
        };
        if let Err(err) = log() {
            err.write_unraisable(py, None);
        }
    });
}

/// Maps a failed call to the Python exception callers see.
pub fn call_error_to_py(err: CallError) -> PyErr {
    match err {
        // The server answered; a reply too large to read is its content.
        CallError::Server(msg) => RedisReplyError::new_err(msg),
        err @ CallError::TooLarge(_) => RedisReplyError::new_err(err.to_string()),
        other => RedisUnavailable::new_err(other.to_string()),
    }
}

pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<RedisClient>()?;
    url::register(m)?;
    let flush = wrap_pyfunction!(flush_all_writers, m)?;
    m.add_function(flush.clone())?;
    m.py()
        .import("atexit")?
        .call_method1("register", (flush,))?;
    Ok(())
}
