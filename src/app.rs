//! The application: opens the store and the keys once, starts the subsystems,
//! and owns the one shutdown.
//!
//! Every subsystem (the intake consumer, the outbox relay, the job runner and
//! the HTTP listener) is a task given a [`CancellationToken`] and
//! tracked by a [`TaskTracker`]. SIGTERM cancels the token; each subsystem stops
//! taking work, drains within its own deadline, and returns; the process exits 0
//! once all have. A subsystem that fails (a fatal error, a panic, or returning
//! while not asked to) is logged, the token is cancelled so the others drain, and
//! the process exits non-zero: transient trouble is each subsystem's to ride out
//! (reconnects, the store gate), so what reaches here is a bug or a configuration
//! that cannot work, and a supervisor restarting the whole process is the honest
//! answer, not a loop inside it.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use thiserror::Error;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{error, info, warn};

use crate::amqp::{AmqpError, Broker};
use crate::backoff::endless_backoff;
use crate::check::{self, CheckError};
use crate::datamap::DataMap;
use crate::endpoints::{self, Observed};
use crate::fulfil::{Exports, FulfilSettings, Runner};
use crate::handlers::Handlers;
use crate::health::{DatamapState, Health};
use crate::intake::consumer::{self, Consumer};
use crate::keyring::{self, Creation, KeyringError};
use crate::metrics::Session;
use crate::relay::{self, Relay};
use crate::settings::{BrokerSettings, WorkerSettings};
use crate::store::{Store, StoreError};
use crate::store_gate::StoreGate;
use crate::targets::{TableColumns, Targets};

/// A failure that stops the worker.
#[derive(Debug, Error)]
pub enum FatalError {
    /// The keys for personal data are missing, unusable, or not the ones the
    /// store was written with.
    #[error(transparent)]
    Keys(KeyringError),
    /// The store cannot be used as configured.
    #[error(transparent)]
    Store(StoreError),
    /// The broker refuses us as configured.
    #[error(transparent)]
    Broker(AmqpError),
    /// The data map is wrong, or does not fit its databases.
    #[error(transparent)]
    DataMap(CheckError),
    /// The export storage cannot be used as configured.
    #[error("{0}")]
    Exports(String),
    /// The HTTP listener's address cannot be bound (in use, not ours).
    #[error("{0}")]
    Listen(String),
    /// A subsystem panicked or stopped while nobody asked it to.
    #[error("subsystem {name} {how}")]
    Subsystem {
        /// Which.
        name: &'static str,
        /// What happened.
        how: String,
    },
}

/// Runs the worker until `shutdown` resolves. Returns an error only for what
/// cannot work (configuration, a failed subsystem); unreachable services are
/// waited for.
pub async fn run(
    settings: WorkerSettings,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), FatalError> {
    Broker::check_url(&settings.broker.amqp_url).map_err(FatalError::Broker)?;
    let stop = CancellationToken::new();
    let on_signal = stop.clone();
    let signal = tokio::spawn(async move {
        shutdown.await;
        on_signal.cancel();
    });
    let result = start_and_run(settings, &stop).await;
    signal.abort();
    info!("worker stopped");
    result
}

async fn start_and_run(
    settings: WorkerSettings,
    stop: &CancellationToken,
) -> Result<(), FatalError> {
    let Some(store) = open_store(&settings, stop).await? else {
        return Ok(());
    };
    let keys = keyring::open(settings.key_file.as_deref(), &store, Creation::ForNewStore).await;
    let keys = match keys {
        Ok(keys) => Arc::new(keys),
        Err(e) => {
            store.close().await;
            return Err(FatalError::Keys(e));
        }
    };
    let checked = match check_datamap(&settings).await {
        Ok(checked) => checked,
        Err(e) => {
            store.close().await;
            return Err(e);
        }
    };
    let exports = match settings.datamap {
        Some(_) => match Exports::open(&settings.export_url, settings.export_link_ttl) {
            Ok(exports) => Some(exports),
            Err(reason) => {
                store.close().await;
                return Err(FatalError::Exports(reason));
            }
        },
        None => None,
    };
    let deadline = settings.observability.response_deadline;
    let handlers = Handlers::new(
        store.clone(),
        keys.clone(),
        settings.tenant.clone(),
        deadline,
    );
    let gate = StoreGate::new(store.clone());
    let health = Health::new();
    let listener = match endpoints::bind(settings.observability.http_addr).await {
        Ok(listener) => listener,
        Err(reason) => {
            store.close().await;
            return Err(FatalError::Listen(reason));
        }
    };
    let intake = Consumer {
        broker: settings.broker.clone(),
        intake: Arc::new(settings.intake.clone()),
        prefetch: settings.prefetch,
        batch_max: settings.batch_max,
        batches_in_flight: settings.batches_in_flight,
        drain_timeout: settings.drain_timeout,
        session: health.session(Session::Intake),
    };

    let relay = Relay {
        broker: BrokerSettings {
            connection_name: format!("{} relay", settings.broker.connection_name),
            ..settings.broker.clone()
        },
        topology: settings.intake.topology.clone(),
        source: settings.intake.reply_source.clone(),
        session: health.session(Session::Relay),
        keys: keys.clone(),
    };

    let subsystems = Subsystems::new(stop.clone());
    if let Some(listener) = listener {
        let observed = Observed::new(&store, &gate, &health, deadline);
        let token = subsystems.token();
        subsystems.spawn("http", async move {
            endpoints::serve(listener, observed, &token).await;
            Ok(())
        });
    }
    let token = subsystems.token();
    subsystems.spawn("intake", async move {
        consumer::run(&intake, &handlers, &gate, &token)
            .await
            .map_err(FatalError::Broker)
    });
    let (token, relay_store) = (subsystems.token(), store.clone());
    subsystems.spawn("relay", async move {
        relay::run(&relay, &relay_store, &token)
            .await
            .map_err(FatalError::Broker)
    });
    if let (Some(path), Some(exports)) = (settings.datamap.clone(), exports) {
        health.set_datamap(DatamapState::checked(checked.is_some()));
        let fulfilment = Fulfilment {
            health: health.clone(),
            path,
            checked,
            store: store.clone(),
            keys,
            exports,
            owner: format!(
                "{}-{}",
                settings.broker.connection_name,
                &uuid::Uuid::new_v4().simple().to_string()[..8]
            ),
            settings: settings.fulfil.clone(),
        };
        let token = subsystems.token();
        subsystems.spawn("fulfilment", async move { fulfilment.run(&token).await });
    }
    // Every subsystem drains within its own deadline; this one is the backstop.
    let result = subsystems
        .run(settings.drain_timeout + Duration::from_secs(5))
        .await;
    store.close().await;
    result
}

/// A data map checked against its databases, connected.
type Checked = (DataMap, Targets, Vec<TableColumns>);

/// Checks the data map at start: a map that is wrong, or that names a table or
/// column its database does not have, stops the worker with the reason. A
/// customer database that does not answer is not the map's fault: the worker
/// takes requests all the same, and fulfilment checks again until it answers.
async fn check_datamap(settings: &WorkerSettings) -> Result<Option<Checked>, FatalError> {
    let Some(path) = &settings.datamap else {
        info!("no data map (PRIVACY_DATAMAP): requests are taken and answered, none is fulfilled");
        return Ok(None);
    };
    if settings.intake.tenants.is_empty() {
        // Any tenant_hash is then accepted, and a forget shreds the customer's
        // copies in every tenant sharing the customer databases.
        warn!(
            "a data map is loaded and PRIVACY_TENANTS is unset: RCDP requests of any tenant_hash \
             reach the customer databases; list the tenants to refuse the others"
        );
    }
    match check::connect_and_check(path).await {
        Ok(checked) => {
            let map = &checked.0;
            info!(
                tables = map.tables.len(),
                databases = map.databases.len(),
                "data map checked"
            );
            Ok(Some(checked))
        }
        Err(e) if e.is_transient() => {
            warn!(error = %e, "a customer database does not answer; the data map is checked again later");
            Ok(None)
        }
        Err(e) => Err(FatalError::DataMap(e)),
    }
}

/// Connects to the store, waiting out an unreachable database; `None` when
/// stopped first.
async fn open_store(
    settings: &WorkerSettings,
    stop: &CancellationToken,
) -> Result<Option<Store>, FatalError> {
    let mut delays = endless_backoff(Duration::from_secs(10));
    loop {
        match Store::connect(&settings.store).await {
            Ok(store) => {
                info!(backend = store.backend().as_str(), "store ready");
                return Ok(Some(store));
            }
            Err(e) if e.is_transient() => {
                let delay = delays.next().unwrap_or(Duration::from_secs(30));
                warn!(error = %e, ?delay, "database unreachable, retrying");
                tokio::select! {
                    () = tokio::time::sleep(delay) => {}
                    () = stop.cancelled() => return Ok(None),
                }
            }
            Err(e) => return Err(FatalError::Store(e)),
        }
    }
}

/// The fulfilment subsystem before its databases answer: the data map is
/// checked (again) until they do, then the runner runs.
struct Fulfilment {
    path: std::path::PathBuf,
    /// The map as checked at start, when its databases answered then.
    checked: Option<Checked>,
    store: Store,
    keys: Arc<crate::crypto::Keys>,
    exports: Exports,
    owner: String,
    settings: FulfilSettings,
    health: Health,
}

impl Fulfilment {
    async fn run(self, token: &CancellationToken) -> Result<(), FatalError> {
        let mut delays = endless_backoff(Duration::from_secs(30));
        let mut checked = self.checked;
        let (map, targets, columns) = loop {
            if let Some(checked) = checked.take() {
                break checked;
            }
            match check::connect_and_check(&self.path).await {
                Ok(checked) => break checked,
                Err(e) if e.is_transient() => {
                    let delay = delays.next().unwrap_or(Duration::from_secs(30));
                    warn!(error = %e, ?delay, "fulfilment waits for the customer databases");
                    tokio::select! {
                        () = tokio::time::sleep(delay) => {}
                        () = token.cancelled() => return Ok(()),
                    }
                }
                Err(e) => return Err(FatalError::DataMap(e)),
            }
        };
        self.health.set_datamap(DatamapState::Loaded);
        let runner = Runner {
            store: self.store,
            keys: self.keys,
            map: Arc::new(map),
            targets: targets.clone(),
            columns: Arc::new(columns),
            exports: self.exports,
            owner: self.owner,
            settings: self.settings,
        };
        runner.run(token).await;
        targets.close().await;
        Ok(())
    }
}

/// The long-running parts of the worker, sharing one cancellation.
pub struct Subsystems {
    token: CancellationToken,
    tracker: TaskTracker,
    failed: mpsc::UnboundedSender<FatalError>,
    failures: mpsc::UnboundedReceiver<FatalError>,
}

impl Subsystems {
    /// Subsystems that stop when `token` is cancelled.
    pub fn new(token: CancellationToken) -> Self {
        let (failed, failures) = mpsc::unbounded_channel();
        Self {
            token,
            tracker: TaskTracker::new(),
            failed,
            failures,
        }
    }

    /// The token every subsystem watches.
    pub fn token(&self) -> CancellationToken {
        self.token.clone()
    }

    /// Starts a subsystem. It must return once the token is cancelled, after
    /// draining; returning before, failing or panicking stops the application.
    pub fn spawn(
        &self,
        name: &'static str,
        run: impl Future<Output = Result<(), FatalError>> + Send + 'static,
    ) {
        let (failed, token) = (self.failed.clone(), self.token.clone());
        let task = tokio::spawn(run);
        self.tracker.spawn(async move {
            let failure = match task.await {
                Ok(Ok(())) if token.is_cancelled() => return,
                Ok(Ok(())) => FatalError::Subsystem {
                    name,
                    how: "stopped on its own".into(),
                },
                Ok(Err(fatal)) => fatal,
                Err(e) if e.is_panic() => FatalError::Subsystem {
                    name,
                    how: "panicked".into(),
                },
                Err(e) => FatalError::Subsystem {
                    name,
                    how: format!("was aborted: {e}"),
                },
            };
            error!(subsystem = name, error = %failure, "subsystem failed; stopping the worker");
            let _ = failed.send(failure);
        });
    }

    /// Waits until the token is cancelled (shutdown) or a subsystem fails, then
    /// cancels the token and waits, at most `deadline`, for every subsystem to
    /// return. The first failure, if any, is the result.
    pub async fn run(mut self, deadline: Duration) -> Result<(), FatalError> {
        let failure = tokio::select! {
            () = self.token.cancelled() => None,
            failure = self.failures.recv() => failure,
        };
        self.token.cancel();
        self.tracker.close();
        if tokio::time::timeout(deadline, self.tracker.wait())
            .await
            .is_err()
        {
            warn!(?deadline, "subsystems did not all stop in time");
        }
        match failure {
            Some(failure) => Err(failure),
            None => Ok(()),
        }
    }
}

/// Resolves on SIGTERM or SIGINT. The handlers are installed when this is called,
/// not when the future is first polled: a SIGTERM that arrives while the worker
/// is still connecting must start a clean shutdown, not kill the process.
pub fn shutdown_signal() -> impl Future<Output = ()> + Send + 'static {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate()).expect("SIGTERM handler can be installed");
    let mut int = signal(SignalKind::interrupt()).expect("SIGINT handler can be installed");
    async move {
        tokio::select! {
            _ = term.recv() => {}
            _ = int.recv() => {}
        }
        tracing::info!("shutdown signal received");
    }
}
