//! The application's one shutdown: a cancellation stops every subsystem and
//! waits for each to drain; a subsystem that panics, fails or stops on its own
//! brings the others down and the application fails (the process exits non-zero).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use privacy_worker::app::{FatalError, Subsystems};
use tokio_util::sync::CancellationToken;

/// A subsystem that runs until cancelled, then takes `drain` to finish and
/// marks `drained`.
async fn steady(
    token: CancellationToken,
    drain: Duration,
    drained: Arc<AtomicBool>,
) -> Result<(), FatalError> {
    token.cancelled().await;
    tokio::time::sleep(drain).await;
    drained.store(true, Ordering::SeqCst);
    Ok(())
}

#[tokio::test]
async fn a_shutdown_stops_every_subsystem_and_waits_for_each_to_drain() {
    let stop = CancellationToken::new();
    let subsystems = Subsystems::new(stop.clone());
    let drained: Vec<Arc<AtomicBool>> = (0..3).map(|_| Arc::default()).collect();
    for (i, flag) in drained.iter().enumerate() {
        let drain = Duration::from_millis(100 * i as u64);
        subsystems.spawn("steady", steady(subsystems.token(), drain, flag.clone()));
    }
    let stopper = stop.clone();
    tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(50)).await;
        stopper.cancel();
    });
    subsystems
        .run(Duration::from_secs(5))
        .await
        .expect("a clean stop");
    assert!(
        drained.iter().all(|d| d.load(Ordering::SeqCst)),
        "every subsystem drained"
    );
}

#[tokio::test]
async fn a_subsystem_that_panics_stops_the_others_and_the_application_fails() {
    let subsystems = Subsystems::new(CancellationToken::new());
    let drained = Arc::new(AtomicBool::new(false));
    subsystems.spawn(
        "steady",
        steady(subsystems.token(), Duration::ZERO, drained.clone()),
    );
    subsystems.spawn("boom", async {
        tokio::time::sleep(Duration::from_millis(50)).await;
        panic!("a bug");
    });
    let failure = subsystems.run(Duration::from_secs(5)).await.unwrap_err();
    assert!(
        matches!(&failure, FatalError::Subsystem { name: "boom", how } if how == "panicked"),
        "{failure}"
    );
    assert!(
        drained.load(Ordering::SeqCst),
        "the other subsystem drained"
    );
}

#[tokio::test]
async fn a_subsystem_that_stops_on_its_own_fails_the_application() {
    let subsystems = Subsystems::new(CancellationToken::new());
    subsystems.spawn("quitter", async { Ok(()) });
    let failure = subsystems.run(Duration::from_secs(5)).await.unwrap_err();
    assert_eq!(failure.to_string(), "subsystem quitter stopped on its own");
}
