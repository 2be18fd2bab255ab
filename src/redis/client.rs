//! `RedisClient`: one Redis server's settings, and per process image its
//! connection pool and write-behind queue (`Process`); what Python sees of
//! them (commands, pipelines, health, figures).

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use pyo3::exceptions::PyTypeError;
use pyo3::prelude::*;
use pyo3::types::{PyBool, PyBytes, PyDict, PyFloat, PyInt, PyList, PyString};
use redis::Value;

use super::budget;
use super::config::RedisConfig;
use super::conn::Conn;
use super::link::Endpoint;
use super::pool::{CallError, Pool};
use super::reply_guard::ReplyLimits;
use super::sentinel::Question;
use super::tls::TlsFiles;
use super::url::Topology;
use super::writer::{self, Command};
use super::{call_error_to_py, Process};
use crate::errors::{ConfigError, RedisReplyError};
use crate::fork::ProcessLocal;
use crate::settings::options;

/// A command argument as Redis bytes.
fn to_arg(obj: &Bound<'_, PyAny>) -> PyResult<Vec<u8>> {
    if let Ok(bytes) = obj.cast::<PyBytes>() {
        return Ok(bytes.as_bytes().to_vec());
    }
    if let Ok(text) = obj.cast::<PyString>() {
        return Ok(text.to_str()?.as_bytes().to_vec());
    }
    if obj.is_instance_of::<PyBool>() {
        return Err(PyTypeError::new_err(
            "Redis arguments must be bytes, str, int or float, not bool",
        ));
    }
    if obj.is_instance_of::<PyInt>() || obj.is_instance_of::<PyFloat>() {
        return Ok(obj.str()?.to_str()?.as_bytes().to_vec());
    }
    Err(PyTypeError::new_err(format!(
        "Redis arguments must be bytes, str, int or float, not {}",
        obj.get_type().name()?
    )))
}

fn to_command(args: &Bound<'_, PyAny>) -> PyResult<Command> {
    let command = args
        .try_iter()?
        .map(|arg| to_arg(&arg?))
        .collect::<PyResult<Command>>()?;
    if command.is_empty() {
        return Err(PyTypeError::new_err(
            "a Redis command needs at least a name",
        ));
    }
    Ok(command)
}

fn build_cmd(command: &Command) -> redis::Cmd {
    let mut cmd = redis::Cmd::new();
    for arg in command {
        cmd.arg(arg.as_slice());
    }
    cmd
}

/// A Redis reply as a Python value.
pub fn reply_to_py(py: Python<'_>, value: Value) -> PyResult<Py<PyAny>> {
    Ok(match value {
        Value::Nil => py.None(),
        Value::Int(i) => i.into_pyobject(py)?.into_any().unbind(),
        Value::BulkString(bytes) => PyBytes::new(py, &bytes).into_any().unbind(),
        Value::Array(items) | Value::Set(items) | Value::Push { data: items, .. } => {
            let converted = items
                .into_iter()
                .map(|item| reply_to_py(py, item))
                .collect::<PyResult<Vec<_>>>()?;
            PyList::new(py, converted)?.into_any().unbind()
        }
        Value::SimpleString(text) => PyString::new(py, &text).into_any().unbind(),
        Value::Okay => PyString::new(py, "OK").into_any().unbind(),
        Value::Map(pairs) => {
            let dict = PyDict::new(py);
            for (key, value) in pairs {
                dict.set_item(reply_to_py(py, key)?, reply_to_py(py, value)?)?;
            }
            dict.into_any().unbind()
        }
        Value::Attribute { data, .. } => reply_to_py(py, *data)?,
        Value::Double(f) => PyFloat::new(py, f).into_any().unbind(),
        Value::Boolean(b) => PyBool::new(py, b).to_owned().into_any().unbind(),
        Value::VerbatimString { text, .. } => PyString::new(py, &text).into_any().unbind(),
        // RESP3 big numbers arrive as decimal digits.
        Value::BigNumber(digits) => py
            .import("builtins")?
            .getattr("int")?
            .call1((String::from_utf8_lossy(&digits).into_owned(),))?
            .unbind(),
        Value::ServerError(err) => return Err(RedisReplyError::new_err(format!("{err:?}"))),
        _ => py.None(),
    })
}

/// Per-process Redis connections with a deadline per call, a circuit
/// breaker with a background probe, fork safety and a background writer.
#[pyclass(module = "ormcache_redis._native", frozen)]
pub struct RedisClient {
    config: RedisConfig,
    endpoint: Endpoint,
    sentinel: Option<Question>,
    cluster: Option<redis::cluster::ClusterClient>,
    process: ProcessLocal<Process>,
}

impl RedisClient {
    pub fn process(&self) -> &Process {
        self.process.get(|| {
            Process::start(
                &self.config,
                &self.endpoint,
                self.sentinel.as_ref(),
                self.cluster.as_ref(),
            )
        })
    }

    pub fn pool(&self) -> &Pool {
        &self.process().pool
    }

    /// Runs `f` on a connection with the GIL released, within the call
    /// deadline (`socket_timeout`). `f` may run twice: once more on a fresh
    /// connection when a pooled one turned out closed by the server before
    /// it answered (see `Pool::attempt`).
    pub fn call<T: Send>(
        &self,
        py: Python<'_>,
        f: impl FnMut(&mut Conn) -> redis::RedisResult<T> + Send,
    ) -> Result<T, CallError> {
        let pool = self.pool();
        py.detach(|| pool.call(f))
    }

    /// `call` with other bounds on what the replies may be.
    pub fn call_limited<T: Send>(
        &self,
        py: Python<'_>,
        limits: ReplyLimits,
        f: impl FnMut(&mut Conn) -> redis::RedisResult<T> + Send,
    ) -> Result<T, CallError> {
        let pool = self.pool();
        py.detach(|| pool.call_limited(limits, f))
    }

    /// Opens this thread's lookup budget on this client (see `budget`):
    /// the lookup's calls together take at most `socket_timeout`.
    pub fn lookup_budget(&self) -> budget::LookupBudget {
        let pool = self.pool();
        budget::begin_lookup(pool.budget_id(), self.config.io_timeout)
    }

    /// What a call may receive unless it says otherwise.
    pub fn reply_limits(&self) -> ReplyLimits {
        self.config.reply_limits()
    }

    /// The largest value a reply may carry.
    pub fn max_value_bytes(&self) -> u64 {
        self.config.max_value_bytes
    }

    pub fn enqueue_command(&self, command: Command) -> bool {
        self.process().enqueue(command)
    }
}

#[pymethods]
impl RedisClient {
    #[new]
    #[pyo3(signature = (
        url, *, connect_timeout = options::CONNECT_TIMEOUT.default,
        socket_timeout = options::SOCKET_TIMEOUT.default, max_idle = 8,
        write_queue = options::WRITE_QUEUE.default as usize,
        write_queue_bytes = options::WRITE_QUEUE_BYTES as usize, failure_threshold = 2,
        retry_initial = 0.25, retry_max = 30.0,
        tls_ca_file = None, tls_cert_file = None, tls_key_file = None,
        max_value_bytes = options::MAX_VALUE_BYTES
    ))]
    #[allow(clippy::too_many_arguments)]
    fn py_new(
        url: &str,
        connect_timeout: f64,
        socket_timeout: f64,
        max_idle: usize,
        write_queue: usize,
        write_queue_bytes: usize,
        failure_threshold: u32,
        retry_initial: f64,
        retry_max: f64,
        tls_ca_file: Option<std::path::PathBuf>,
        tls_cert_file: Option<std::path::PathBuf>,
        tls_key_file: Option<std::path::PathBuf>,
        max_value_bytes: u64,
    ) -> PyResult<Self> {
        let config = RedisConfig::new(
            url,
            connect_timeout,
            socket_timeout,
            max_idle,
            write_queue,
            write_queue_bytes,
            failure_threshold,
            retry_initial,
            retry_max,
        )
        .and_then(|config| config.with_max_value_bytes(max_value_bytes))
        .map_err(ConfigError::new_err)?;
        let files = TlsFiles {
            ca_file: tls_ca_file.as_deref(),
            cert_file: tls_cert_file.as_deref(),
            key_file: tls_key_file.as_deref(),
        };
        let endpoint = config.endpoint(&files).map_err(ConfigError::new_err)?;
        let sentinel = match &config.topology {
            Topology::Sentinel { sentinels, service } => Some(
                Question::new(
                    sentinels.clone(),
                    service.clone(),
                    config.info.clone(),
                    &files,
                )
                .map_err(ConfigError::new_err)?,
            ),
            _ => None,
        };
        let cluster = match &config.topology {
            Topology::Cluster { nodes } => {
                Some(super::cluster::client(nodes).map_err(ConfigError::new_err)?)
            }
            _ => None,
        };
        let process = ProcessLocal::new(Process::start(
            &config,
            &endpoint,
            sentinel.as_ref(),
            cluster.as_ref(),
        ));
        Ok(RedisClient {
            config,
            endpoint,
            sentinel,
            cluster,
            process,
        })
    }

    /// Server address without credentials.
    #[getter]
    fn address(&self) -> String {
        self.config.display_address()
    }

    /// "single", "sentinel" or "cluster".
    #[getter]
    fn topology(&self) -> &'static str {
        match self.config.topology {
            Topology::Single => "single",
            Topology::Sentinel { .. } => "sentinel",
            Topology::Cluster { .. } => "cluster",
        }
    }

    /// False while the circuit breaker is open.
    #[getter]
    fn healthy(&self) -> bool {
        self.pool().looks_healthy()
    }

    /// Breaker state: 'closed' or 'open'.
    #[getter]
    fn state(&self) -> &'static str {
        self.pool().breaker_state().name()
    }

    /// Runs one command within the call deadline (GIL released); raises
    /// RedisUnavailable or RedisReplyError.
    #[pyo3(signature = (*args))]
    fn execute(
        &self,
        py: Python<'_>,
        args: &Bound<'_, pyo3::types::PyTuple>,
    ) -> PyResult<Py<PyAny>> {
        let cmd = build_cmd(&to_command(args.as_any())?);
        let value = self
            .call(py, move |con| cmd.query::<Value>(con))
            .map_err(call_error_to_py)?;
        reply_to_py(py, value)
    }

    /// Runs several commands in one round trip (MULTI/EXEC when
    /// `transaction`); an error reply raises for the whole batch.
    #[pyo3(signature = (commands, *, transaction = false))]
    fn pipeline(
        &self,
        py: Python<'_>,
        commands: &Bound<'_, PyAny>,
        transaction: bool,
    ) -> PyResult<Py<PyAny>> {
        let mut pipe = redis::pipe();
        if transaction {
            pipe.atomic();
        }
        for command in commands.try_iter()? {
            pipe.add_command(build_cmd(&to_command(&command?)?));
        }
        let values = self
            .call(py, move |con| pipe.query::<Vec<Value>>(con))
            .map_err(call_error_to_py)?;
        let converted = values
            .into_iter()
            .map(|value| reply_to_py(py, value))
            .collect::<PyResult<Vec<_>>>()?;
        Ok(PyList::new(py, converted)?.into_any().unbind())
    }

    /// A unit of work (a request, a job) starts on this thread: its calls on
    /// this client may spend `seconds` together (default: `socket_timeout`);
    /// once spent, they raise RedisUnavailable at once, without contacting
    /// Redis, until `end_unit_budget`. Replaces a unit that never ended.
    #[pyo3(signature = (seconds = None))]
    fn begin_unit_budget(&self, seconds: Option<f64>) -> PyResult<()> {
        let limit = match seconds {
            None => self.config.io_timeout,
            Some(s) if (0.0..=3600.0).contains(&s) => Duration::from_secs_f64(s),
            Some(s) => {
                return Err(pyo3::exceptions::PyValueError::new_err(format!(
                    "seconds must be between 0 and 3600, got {s}"
                )))
            }
        };
        budget::begin_work(self.pool().budget_id(), limit);
        Ok(())
    }

    /// Ends this thread's unit of work: (seconds spent on Redis, calls not
    /// made because the budget was spent), or None when none was open.
    fn end_unit_budget(&self) -> Option<(f64, u64)> {
        budget::end_work().map(|spent| (spent.spent.as_secs_f64(), spent.skipped))
    }

    /// Queues a write for the background writer; False when dropped.
    #[pyo3(signature = (*args))]
    fn enqueue(&self, args: &Bound<'_, pyo3::types::PyTuple>) -> PyResult<bool> {
        Ok(self.enqueue_command(to_command(args.as_any())?))
    }

    /// Waits until every queued write was sent or dropped; False on timeout.
    #[pyo3(signature = (timeout = 5.0))]
    fn flush(&self, py: Python<'_>, timeout: f64) -> bool {
        let timeout = Duration::from_secs_f64(timeout.clamp(0.0, 3600.0));
        let process = self.process();
        match process.started_writer() {
            Some(writer) => py.detach(|| writer.flush(timeout)),
            None => true,
        }
    }

    /// Closes this process's idle connections; later calls open new ones.
    fn close(&self) {
        self.pool().discard_idle();
    }

    /// Round-trip time of a PING, in seconds.
    fn ping(&self, py: Python<'_>) -> PyResult<f64> {
        let started = Instant::now();
        self.call(py, |con| redis::cmd("PING").query::<()>(con))
            .map_err(call_error_to_py)?;
        Ok(started.elapsed().as_secs_f64())
    }

    /// This process's counters: calls, errors, breaker, latency, writer.
    fn stats<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let process = self.process();
        let pool = &process.pool;
        let dict = PyDict::new(py);
        dict.set_item("address", self.config.display_address())?;
        dict.set_item("node", pool.node())?;
        dict.set_item("failovers", pool.failovers())?;
        if let Some(replies) = pool.node_replies() {
            dict.set_item("node_replies", replies)?;
        }
        dict.set_item("state", pool.breaker_state().name())?;
        dict.set_item("outages", pool.breaker_opened_count())?;
        let c = &pool.counters;
        dict.set_item("calls", c.calls.load(Ordering::Relaxed))?;
        dict.set_item("errors", c.errors.load(Ordering::Relaxed))?;
        dict.set_item("skipped_open", c.skipped_open.load(Ordering::Relaxed))?;
        dict.set_item("connects", c.connects.load(Ordering::Relaxed))?;
        dict.set_item("retries", c.retries.load(Ordering::Relaxed))?;
        dict.set_item("discarded_idle", c.discarded_idle.load(Ordering::Relaxed))?;
        dict.set_item("probes", c.probes.load(Ordering::Relaxed))?;
        dict.set_item("budget_skips", c.budget_skips.load(Ordering::Relaxed))?;
        dict.set_item(
            "oversized_replies",
            c.oversized_replies.load(Ordering::Relaxed),
        )?;
        dict.set_item("max_value_bytes", self.config.max_value_bytes)?;
        dict.set_item("latency_p50_us", pool.latency.quantile_micros(0.5))?;
        dict.set_item("latency_p99_us", pool.latency.quantile_micros(0.99))?;
        let idle = writer::WriterCounters::default();
        let w = process
            .started_writer()
            .map_or(&idle, |writer| &*writer.counters);
        dict.set_item("writes_queued", w.queued.load(Ordering::Relaxed))?;
        dict.set_item("writes_sent", w.written.load(Ordering::Relaxed))?;
        dict.set_item(
            "writes_dropped_full",
            w.dropped_full.load(Ordering::Relaxed),
        )?;
        dict.set_item(
            "writes_dropped_unavailable",
            w.dropped_unavailable.load(Ordering::Relaxed),
        )?;
        dict.set_item("writes_failed", w.failed.load(Ordering::Relaxed))?;
        dict.set_item("write_batches", w.batches.load(Ordering::Relaxed))?;
        dict.set_item("write_queue_bytes", w.queued_bytes.load(Ordering::Relaxed))?;
        Ok(dict)
    }

    fn __repr__(&self) -> String {
        format!("<RedisClient {}>", self.config.display_address())
    }
}
