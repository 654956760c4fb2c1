//! Every call the host makes into a plugin's store goes through [`open`] and the [`Backend`] it
//! returns: each call runs on a worker thread with a time limit, and every record stream the
//! plugin returns is checked (schema, then each batch) before the host or another plugin reads it.
//!
//! A call that does not return in time cannot be stopped: a thread cannot be killed, and the
//! plugin may hold locks or half-written files. So the store is marked hung (later calls fail at
//! once), the call fails with an error naming the plugin, the operation and the limit, and
//! [`hung_call`] tells `cli::run` to exit with an error whatever the command made of it.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use arrow_array::ffi_stream::ArrowArrayStreamReader;
use arrow_array::{RecordBatch, RecordBatchReader};
use arrow_schema::{ArrowError, SchemaRef};
use ragged_plugin_api::arrow::ValidatedReader;
use ragged_plugin_api::host::LoadedPlugin;
use ragged_plugin_api::{
    Backend, BatchStream, CollectionInfo, ErrorCode, ExtractRequest, Hit, LoadRequest, LoadSummary, OpenRequest,
    PluginError, StorageReport,
};

use crate::context::Context;
use crate::records::{arrow_message, check_batch, check_stream_schema};

/// The first call that hung in this process, with its store.
static HUNG: OnceLock<String> = OnceLock::new();

/// The first plugin call of this process that did not return in time, if one did.
pub fn hung_call() -> Option<&'static str> {
    HUNG.get().map(String::as_str)
}

/// How long a plugin call may take.
#[derive(Debug, Clone)]
pub struct Limits {
    /// How long a call may go without returning (a load: without asking for its next batch);
    /// `None` waits forever.
    pub timeout: Option<Duration>,
    /// Where the timeout is set, for the error message.
    pub setting: String,
}

impl Limits {
    /// The limits the configuration sets.
    pub fn from_context(ctx: &Context) -> Limits {
        let seconds = ctx.config.plugins.call_timeout_secs;
        Limits {
            timeout: (seconds > 0).then(|| Duration::from_secs(seconds)),
            setting: format!("plugins.call_timeout_secs in {}", ctx.config_path().display()),
        }
    }
}

/// Opens a store through `plugin` (called `name`) within the limits; `store` names it in errors.
pub fn open(
    plugin: &LoadedPlugin,
    name: &str,
    store: &str,
    request: &OpenRequest,
    limits: &Limits,
) -> Result<Box<dyn Backend>, PluginError> {
    let shared = Arc::new(Shared {
        plugin: name.to_owned(),
        store: store.to_owned(),
        limits: limits.clone(),
        hung: OnceLock::new(),
    });
    if let Some(earlier) = hung_call() {
        return Err(shared.refusal(earlier));
    }
    let (plugin, request) = (plugin.clone(), request.clone());
    let inner = shared.call("open", &Activity::new(), move || plugin.open(&request))?;
    Ok(Box::new(Guarded {
        inner: Arc::from(inner),
        shared,
    }))
}

/// What a store and its streams share.
struct Shared {
    plugin: String,
    store: String,
    limits: Limits,
    /// Why this store is not called any more.
    hung: OnceLock<String>,
}

impl Shared {
    /// Runs `f` on a worker thread and waits for it while `activity` is recent enough.
    fn call<T: Send + 'static>(
        &self,
        operation: &str,
        activity: &Activity,
        f: impl FnOnce() -> Result<T, PluginError> + Send + 'static,
    ) -> Result<T, PluginError> {
        if let Some(earlier) = self.hung.get() {
            return Err(self.refusal(earlier));
        }
        let (replies, answer) = mpsc::channel();
        run_on_worker(Box::new(move || {
            // The caller may have given up; then nobody needs the answer.
            let _ = replies.send(f());
        }))
        .map_err(|error| PluginError::new(ErrorCode::Internal, format!("cannot start a thread: {error}")))?;
        self.wait(operation, &answer, activity)?
    }

    /// Waits for the answer to `operation`, giving up when `activity` has been quiet too long.
    fn wait<T>(&self, operation: &str, answer: &Receiver<T>, activity: &Activity) -> Result<T, PluginError> {
        let lost = || {
            PluginError::new(
                ErrorCode::Internal,
                format!(
                    "the thread running {operation} of the {} plugin ended without an answer",
                    self.plugin
                ),
            )
        };
        let Some(timeout) = self.limits.timeout else {
            return answer.recv().map_err(|_| lost());
        };
        loop {
            let left = timeout.saturating_sub(activity.idle());
            if left.is_zero() {
                return Err(self.give_up(operation, timeout));
            }
            match answer.recv_timeout(left) {
                Ok(reply) => return Ok(reply),
                Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => return Err(lost()),
            }
        }
    }

    fn give_up(&self, operation: &str, timeout: Duration) -> PluginError {
        let message = format!(
            "the {} plugin did not return from {operation} within {} s; a hung plugin cannot be stopped, \
             so ragged gives up on it (if the store is only slow, raise {})",
            self.plugin,
            timeout.as_secs_f64(),
            self.limits.setting
        );
        let _ = self.hung.set(message.clone());
        let _ = HUNG.set(format!("{}: {message}", self.store));
        PluginError::new(ErrorCode::Internal, message)
    }

    fn refusal(&self, earlier: &str) -> PluginError {
        PluginError::new(
            ErrorCode::Internal,
            format!(
                "not calling the {} plugin after a call that hung: {earlier}",
                self.plugin
            ),
        )
    }

    fn bad_stream(&self, problem: String) -> PluginError {
        PluginError::new(
            ErrorCode::Internal,
            format!(
                "the {} plugin returned a stream that is not canonical: {problem}",
                self.plugin
            ),
        )
    }
}

type Job = Box<dyn FnOnce() + Send>;

/// Worker threads waiting for a job. Starting a thread per call costs tens of microseconds, which
/// query latencies would show; handing a job to an idle worker costs a few. A worker whose job
/// hangs never comes back.
static IDLE: Mutex<Vec<Sender<Job>>> = Mutex::new(Vec::new());

/// Runs `job` on an idle worker thread, or a new one.
fn run_on_worker(mut job: Job) -> std::io::Result<()> {
    // An idle worker waits on its channel, so a send fails only if its thread is gone.
    while let Some(worker) = IDLE.lock().ok().and_then(|mut idle| idle.pop()) {
        match worker.send(job) {
            Ok(()) => return Ok(()),
            Err(mpsc::SendError(returned)) => job = returned,
        }
    }
    let (worker, jobs) = mpsc::channel::<Job>();
    let _ = worker.send(job);
    std::thread::Builder::new()
        .name("ragged plugin call".to_owned())
        // A main thread's stack (Linux's default), not a spawned thread's 2 MiB: plugins may run
        // large futures or deep recursions on the calling thread.
        .stack_size(8 << 20)
        .spawn(move || {
            while let Ok(job) = jobs.recv() {
                job();
                match IDLE.lock() {
                    Ok(mut idle) => idle.push(worker.clone()),
                    Err(_) => return,
                }
            }
        })
        .map(drop)
}

/// When a call last showed life. Plain calls never do, so their time limit counts from the start;
/// a load shows life each time it asks for a batch, and while the host is producing that batch
/// (reading another plugin, with its own limit) it is not idle at all.
struct Activity {
    started: Instant,
    last_millis: AtomicU64,
    in_host: AtomicBool,
}

impl Activity {
    fn new() -> Activity {
        Activity {
            started: Instant::now(),
            last_millis: AtomicU64::new(0),
            in_host: AtomicBool::new(false),
        }
    }

    fn touch(&self) {
        self.last_millis
            .store(self.started.elapsed().as_millis() as u64, Ordering::SeqCst);
    }

    fn idle(&self) -> Duration {
        if self.in_host.load(Ordering::SeqCst) {
            return Duration::ZERO;
        }
        self.started
            .elapsed()
            .saturating_sub(Duration::from_millis(self.last_millis.load(Ordering::SeqCst)))
    }
}

/// A store whose calls are guarded.
struct Guarded {
    inner: Arc<dyn Backend>,
    shared: Arc<Shared>,
}

impl Guarded {
    fn call<T: Send + 'static>(
        &self,
        operation: &str,
        f: impl FnOnce(&dyn Backend) -> Result<T, PluginError> + Send + 'static,
    ) -> Result<T, PluginError> {
        let inner = self.inner.clone();
        self.shared.call(operation, &Activity::new(), move || f(&*inner))
    }

    /// A call that returns a record stream: the stream's schema must be canonical, and its
    /// batches are checked as they are read (see [`CheckedReader`]).
    /// A guarded call that returns a stream, whose schema and batches are checked: canonical,
    /// or the id column alone when `ids_allowed` (an ids-only extraction).
    fn stream(
        &self,
        operation: String,
        ids_allowed: bool,
        f: impl FnOnce(&dyn Backend) -> Result<BatchStream, PluginError> + Send + 'static,
    ) -> Result<BatchStream, PluginError> {
        let shared = self.shared.clone();
        let reader = self.call(&operation, move |backend| {
            // Importing asks the plugin for the schema, so it is part of the guarded call.
            f(backend)?
                .into_validated_reader()
                .map_err(|error| shared.bad_stream(arrow_message(&error)))
        })?;
        check_stream_schema(&reader.schema(), ids_allowed).map_err(|problem| self.shared.bad_stream(problem))?;
        Ok(BatchStream::from_reader(CheckedReader::new(
            reader,
            operation,
            self.shared.clone(),
        )))
    }
}

impl Backend for Guarded {
    fn list_collections(&self) -> Result<Vec<String>, PluginError> {
        self.call("list_collections", |backend| backend.list_collections())
    }

    fn describe(&self, collection: &str) -> Result<CollectionInfo, PluginError> {
        let collection = collection.to_owned();
        self.call(&format!("describe '{collection}'"), move |backend| {
            backend.describe(&collection)
        })
    }

    fn count(&self, collection: &str) -> Result<u64, PluginError> {
        let collection = collection.to_owned();
        self.call(&format!("count '{collection}'"), move |backend| {
            backend.count(&collection)
        })
    }

    fn extract(&self, collection: &str, request: &ExtractRequest) -> Result<BatchStream, PluginError> {
        let (collection, request) = (collection.to_owned(), *request);
        self.stream(format!("extract '{collection}'"), request.ids_only, move |backend| {
            backend.extract(&collection, &request)
        })
    }

    fn load(&self, request: &LoadRequest, batches: BatchStream) -> Result<LoadSummary, PluginError> {
        let activity = Arc::new(Activity::new());
        let batches = batches.into_reader().map_err(|error| {
            PluginError::new(ErrorCode::Internal, format!("cannot read the records to load: {error}"))
        })?;
        let batches = BatchStream::from_reader(ActivityReader {
            inner: batches,
            activity: activity.clone(),
        });
        let (inner, request) = (self.inner.clone(), request.clone());
        let operation = format!("load '{}'", request.collection.name);
        self.shared
            .call(&operation, &activity, move || inner.load(&request, batches))
    }

    fn sample(&self, collection: &str, n: u64, seed: u64) -> Result<BatchStream, PluginError> {
        let collection = collection.to_owned();
        self.stream(format!("sample '{collection}'"), false, move |backend| {
            backend.sample(&collection, n, seed)
        })
    }

    fn fetch(&self, collection: &str, ids: &[String]) -> Result<BatchStream, PluginError> {
        let (collection, ids) = (collection.to_owned(), ids.to_vec());
        self.stream(format!("fetch from '{collection}'"), false, move |backend| {
            backend.fetch(&collection, &ids)
        })
    }

    fn query(&self, collection: &str, vector: &[f32], k: u32) -> Result<Vec<Hit>, PluginError> {
        let (collection, vector) = (collection.to_owned(), vector.to_vec());
        self.call(&format!("query '{collection}'"), move |backend| {
            backend.query(&collection, &vector, k)
        })
    }

    fn storage(&self, collection: &str) -> Result<StorageReport, PluginError> {
        let collection = collection.to_owned();
        self.call(&format!("storage '{collection}'"), move |backend| {
            backend.storage(&collection)
        })
    }

    fn files(&self, collection: &str) -> Result<Vec<String>, PluginError> {
        let collection = collection.to_owned();
        self.call(&format!("files '{collection}'"), move |backend| {
            backend.files(&collection)
        })
    }

    fn drop_collection(&self, collection: &str) -> Result<(), PluginError> {
        let collection = collection.to_owned();
        self.call(&format!("drop_collection '{collection}'"), move |backend| {
            backend.drop_collection(&collection)
        })
    }

    fn delete(&self, collection: &str, ids: &[String]) -> Result<u64, PluginError> {
        let (collection, ids) = (collection.to_owned(), ids.to_vec());
        self.call(&format!("delete from '{collection}'"), move |backend| {
            backend.delete(&collection, &ids)
        })
    }
}

/// The records handed to a plugin's `load`, marking the load's activity as it asks for them.
struct ActivityReader {
    inner: ArrowArrayStreamReader,
    activity: Arc<Activity>,
}

impl Iterator for ActivityReader {
    type Item = Result<RecordBatch, ArrowError>;

    fn next(&mut self) -> Option<Self::Item> {
        self.activity.in_host.store(true, Ordering::SeqCst);
        let item = self.inner.next();
        self.activity.touch();
        self.activity.in_host.store(false, Ordering::SeqCst);
        item
    }
}

impl RecordBatchReader for ActivityReader {
    fn schema(&self) -> SchemaRef {
        self.inner.schema()
    }
}

/// A plugin's record stream, each batch read on a worker thread within the time limit, its buffers
/// validated as it is imported and then checked. It ends at the first error, which names the store
/// and the operation.
struct CheckedReader {
    schema: SchemaRef,
    reader: Arc<Mutex<ValidatedReader>>,
    /// The call that returned the stream.
    operation: String,
    shared: Arc<Shared>,
    records: u64,
    done: bool,
}

impl CheckedReader {
    fn new(reader: ValidatedReader, operation: String, shared: Arc<Shared>) -> CheckedReader {
        CheckedReader {
            schema: reader.schema(),
            reader: Arc::new(Mutex::new(reader)),
            operation,
            shared,
            records: 0,
            done: false,
        }
    }
}

impl Iterator for CheckedReader {
    type Item = Result<RecordBatch, ArrowError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.done {
            return None;
        }
        let reader = self.reader.clone();
        let operation = format!("reading the next batch of {}", self.operation);
        let read = self
            .shared
            .call(&operation, &Activity::new(), move || match reader.lock() {
                Ok(mut reader) => Ok(reader.next()),
                Err(_) => Err(PluginError::new(ErrorCode::Internal, "the stream was poisoned")),
            });
        let label = format!("{}: {}", self.shared.store, self.operation);
        let failure = |problem: String| Some(Err(ArrowError::ExternalError(problem.into())));
        let item = match read {
            // The error names the operation already.
            Err(error) => failure(format!("{}: {error}", self.shared.store)),
            Ok(None) => None,
            Ok(Some(Err(error))) => failure(format!(
                "{label} failed after {} records: {}",
                self.records,
                arrow_message(&error)
            )),
            Ok(Some(Ok(batch))) => match check_batch(&batch) {
                Ok(()) => {
                    self.records += batch.num_rows() as u64;
                    Some(Ok(batch))
                }
                Err(problem) => failure(format!(
                    "{label} returned a bad batch after {} records: {problem}",
                    self.records
                )),
            },
        };
        self.done = !matches!(item, Some(Ok(_)));
        item
    }
}

impl RecordBatchReader for CheckedReader {
    fn schema(&self) -> SchemaRef {
        self.schema.clone()
    }
}

#[cfg(test)]
mod tests {
    use std::collections::VecDeque;
    use std::sync::Mutex;

    use arrow_array::RecordBatchIterator;
    use ragged_plugin_api::arrow::{canonical_schema, ids_schema, records_to_batch};
    use ragged_plugin_api::{DistanceMetric, LoadMode, Record};

    use super::*;
    use crate::records::read_id_stream;

    /// What the fake store does in each call: sleep this long per batch it reads (`None`: never
    /// return); its streams sleep before each batch likewise.
    struct Fake {
        pauses: Mutex<VecDeque<Option<Duration>>>,
        /// Its streams hold the id column alone, whatever was asked.
        ids_only_streams: bool,
    }

    impl Fake {
        fn pause(&self) {
            match self.pauses.lock().expect("lock").pop_front() {
                Some(Some(pause)) => std::thread::sleep(pause),
                Some(None) => loop {
                    std::thread::park();
                },
                None => {}
            }
        }
    }

    impl Backend for Fake {
        fn list_collections(&self) -> Result<Vec<String>, PluginError> {
            self.pause();
            Ok(vec!["c".into()])
        }

        fn describe(&self, _: &str) -> Result<CollectionInfo, PluginError> {
            Err(PluginError::unsupported("describe"))
        }

        fn extract(&self, _: &str, _: &ExtractRequest) -> Result<BatchStream, PluginError> {
            let pauses: Vec<Option<Duration>> = self.pauses.lock().expect("lock").drain(..).collect();
            let batches = pauses.into_iter().map(|pause| {
                match pause {
                    Some(pause) => std::thread::sleep(pause),
                    None => loop {
                        std::thread::park();
                    },
                }
                Ok(batch())
            });
            if self.ids_only_streams {
                let ids =
                    batches.map(|b| b.and_then(|b| RecordBatch::try_new(ids_schema(), vec![b.column(0).clone()])));
                return Ok(BatchStream::from_reader(RecordBatchIterator::new(ids, ids_schema())));
            }
            Ok(BatchStream::from_reader(RecordBatchIterator::new(
                batches,
                canonical_schema(2),
            )))
        }

        fn load(&self, _: &LoadRequest, batches: BatchStream) -> Result<LoadSummary, PluginError> {
            let mut records = 0;
            for batch in batches
                .into_reader()
                .map_err(|e| PluginError::invalid_input(e.to_string()))?
            {
                records += batch.map_err(|e| PluginError::invalid_input(e.to_string()))?.num_rows() as u64;
                self.pause();
            }
            Ok(LoadSummary {
                records_written: records,
            })
        }
    }

    fn batch() -> RecordBatch {
        let record = Record {
            id: "r".into(),
            document: None,
            metadata: None,
            embedding: vec![1.0, 2.0],
        };
        records_to_batch(&[record], 2).expect("batch")
    }

    fn guarded(timeout_millis: u64, pauses: &[Option<u64>]) -> Guarded {
        guarded_fake(timeout_millis, pauses, false)
    }

    fn guarded_fake(timeout_millis: u64, pauses: &[Option<u64>], ids_only_streams: bool) -> Guarded {
        let pauses = pauses.iter().map(|p| p.map(Duration::from_millis)).collect();
        Guarded {
            inner: Arc::new(Fake {
                pauses: Mutex::new(pauses),
                ids_only_streams,
            }),
            shared: Arc::new(Shared {
                plugin: "fake".into(),
                store: "fake:/here".into(),
                limits: Limits {
                    timeout: Some(Duration::from_millis(timeout_millis)),
                    setting: "the setting".into(),
                },
                hung: OnceLock::new(),
            }),
        }
    }

    /// A load of `batches` batches that the host produces after `host_pause` each.
    fn load(store: &Guarded, batches: usize, host_pause: Duration) -> Result<LoadSummary, PluginError> {
        let slow = (0..batches).map(move |_| {
            std::thread::sleep(host_pause);
            Ok(batch())
        });
        let request = LoadRequest {
            collection: CollectionInfo {
                name: "c".into(),
                dimension: 2,
                metric: DistanceMetric::L2,
                count: 0,
                embedding_model: None,
                index_params: None,
                metadata: Default::default(),
                extras: Default::default(),
            },
            mode: LoadMode::Create,
        };
        store.load(
            &request,
            BatchStream::from_reader(RecordBatchIterator::new(slow, canonical_schema(2))),
        )
    }

    /// The ids of an ids-only extraction, read as the verifier reads them.
    fn listed_ids(store: &Guarded, request: &ExtractRequest) -> Result<Vec<String>, String> {
        let stream = store.extract("c", request).map_err(|e| e.message)?;
        let mut ids = Vec::new();
        for batch in read_id_stream(stream).map_err(|e| format!("{e:#}"))? {
            ids.extend(batch.map_err(|e| format!("{e:#}"))?.iter().flatten().map(str::to_owned));
        }
        Ok(ids)
    }

    #[test]
    fn only_an_ids_only_extraction_may_send_the_id_column_alone() {
        let pauses = [Some(0), Some(0)];
        let ids = ExtractRequest::ids(10);
        assert_eq!(
            listed_ids(&guarded_fake(5000, &pauses, true), &ids),
            Ok(vec!["r".into(), "r".into()])
        );
        // A plugin that ignores the flag sends whole records, read the same way.
        assert_eq!(
            listed_ids(&guarded_fake(5000, &pauses, false), &ids),
            Ok(vec!["r".into(), "r".into()])
        );
        let Err(error) = guarded_fake(5000, &pauses, true).extract("c", &ExtractRequest::records(10, 0)) else {
            panic!("records asked, ids sent, and the stream was accepted");
        };
        assert!(
            error
                .message
                .contains("the fake plugin returned a stream that is not canonical: batch columns are [id]"),
            "{error}"
        );
    }

    #[test]
    fn a_call_that_does_not_return_in_time_fails_and_the_store_is_not_called_again() {
        let store = guarded(200, &[None]);
        let started = Instant::now();
        let error = store.list_collections().expect_err("hung");
        assert!(started.elapsed() < Duration::from_secs(5), "{:?}", started.elapsed());
        assert!(
            error
                .message
                .contains("the fake plugin did not return from list_collections within 0.2 s"),
            "{error}"
        );
        assert!(error.message.contains("raise the setting"), "{error}");
        let again = store.list_collections().expect_err("not called again");
        assert!(
            again
                .message
                .starts_with("not calling the fake plugin after a call that hung"),
            "{again}"
        );
        assert!(hung_call().is_some_and(|hung| hung.starts_with("fake:/here: ")));
    }

    #[test]
    fn a_load_is_hung_only_when_it_stops_asking_for_batches() {
        // 5 × 150 ms in the plugin, but never 400 ms without asking for a batch.
        let slow = guarded(400, &[Some(150); 5]);
        assert_eq!(load(&slow, 5, Duration::ZERO).expect("alive").records_written, 5);
        // The host taking its time to produce batches is not the plugin's silence.
        let waiting = guarded(200, &[]);
        assert_eq!(
            load(&waiting, 2, Duration::from_millis(500))
                .expect("alive")
                .records_written,
            2
        );
        let silent = guarded(200, &[Some(0), None]);
        let error = load(&silent, 5, Duration::ZERO).expect_err("silent");
        assert!(
            error.message.contains("did not return from load 'c' within 0.2 s"),
            "{error}"
        );
    }

    #[test]
    fn a_stream_that_stops_is_an_error_naming_the_store_and_the_call() {
        let store = guarded(200, &[Some(0), None]);
        let request = ExtractRequest::records(1, 0);
        let mut reader = store
            .extract("c", &request)
            .expect("stream")
            .into_reader()
            .expect("schema");
        assert_eq!(reader.next().expect("a batch").expect("good").num_rows(), 1);
        let error = arrow_message(&reader.next().expect("an item").expect_err("hung"));
        assert!(
            error.starts_with(
                "fake:/here: the fake plugin did not return from reading the next batch of extract 'c' within 0.2 s"
            ),
            "{error}"
        );
        assert!(reader.next().is_none(), "the stream ends at its first error");
    }
}
