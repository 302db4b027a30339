//! What readiness depends on, as one worker instance sees it: whether each
//! subsystem's broker session is up, and whether the data map is loaded. The
//! store's part is the store gate's (`http` asks it); these are the parts no
//! other type holds.
//!
//! It is per instance, not per process (unlike [`crate::metrics`]): the tests
//! run several workers in one process, and one's broker outage must not make
//! another unready. Cheap to clone; plain atomics, set where the state changes.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU8, Ordering};

use crate::metrics::Session;

/// The data map's state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DatamapState {
    /// No data map: nothing to load (the worker fulfils nothing, and says so).
    None,
    /// Configured, not loaded yet: its databases did not answer the check.
    Waiting,
    /// Checked against its databases; fulfilment runs.
    Loaded,
}

impl DatamapState {
    /// A configured map's state: loaded when its check passed.
    pub fn checked(loaded: bool) -> Self {
        if loaded { Self::Loaded } else { Self::Waiting }
    }
}

/// Shared by the subsystems of one worker and its HTTP listener.
#[derive(Debug, Clone, Default)]
pub struct Health {
    inner: Arc<Inner>,
}

#[derive(Debug, Default)]
struct Inner {
    intake_session: AtomicBool,
    relay_session: AtomicBool,
    datamap: AtomicU8,
}

impl Health {
    /// A worker starting: no session up, no data map.
    pub fn new() -> Self {
        Self::default()
    }

    fn session_flag(&self, session: Session) -> &AtomicBool {
        match session {
            Session::Intake => &self.inner.intake_session,
            Session::Relay => &self.inner.relay_session,
        }
    }

    /// A subsystem's broker session opened (`true`) or ended (`false`).
    pub fn set_session(&self, session: Session, up: bool) {
        self.session_flag(session).store(up, Ordering::Release);
    }

    /// Whether a subsystem's broker session is up.
    pub fn session_up(&self, session: Session) -> bool {
        self.session_flag(session).load(Ordering::Acquire)
    }

    /// The data map's state changed.
    pub fn set_datamap(&self, state: DatamapState) {
        let code = match state {
            DatamapState::None => 0,
            DatamapState::Waiting => 1,
            DatamapState::Loaded => 2,
        };
        self.inner.datamap.store(code, Ordering::Release);
    }

    /// The data map's state.
    pub fn datamap(&self) -> DatamapState {
        match self.inner.datamap.load(Ordering::Acquire) {
            1 => DatamapState::Waiting,
            2 => DatamapState::Loaded,
            _ => DatamapState::None,
        }
    }
}

/// One subsystem's broker session, as readiness and the metrics see it.
#[derive(Debug, Clone)]
pub struct SessionHealth {
    health: Health,
    session: Session,
}

impl Health {
    /// The handle a subsystem's session reports through.
    pub fn session(&self, session: Session) -> SessionHealth {
        SessionHealth {
            health: self.clone(),
            session,
        }
    }
}

impl SessionHealth {
    /// Whose session.
    pub fn which(&self) -> Session {
        self.session
    }

    /// The session opened (`true`) or ended (`false`).
    pub fn set_up(&self, up: bool) {
        self.health.set_session(self.session, up);
    }
}
