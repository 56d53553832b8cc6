//! `Vcpu::with_state`, the backend contract and the request handle.
//!
//! Owns: the stop/resume protocol of `with_state`, the synthetic startup
//! exit, the discharge after each run and the cross-thread request flag.
//! Must not touch: how a backend enters the guest.

use alloc::boxed::Box;
use alloc::sync::Arc;
use core::fmt;
use core::sync::atomic::{AtomicBool, Ordering};

use crate::exit::{Exit, ExitReason, RawExit};
use crate::state::{Field, VcpuState};

/// What a backend could not do. Every variant says what went wrong where.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BackendError {
    /// The host (kernel or hypervisor) refused operation `op` with error
    /// number `code` (errno on Linux, the hypercall status on Tern).
    Host { op: &'static str, code: i64 },
    /// The backend cannot write `field` with the charged value.
    Unsupported { field: Field },
    /// The vCPU is gone (destroyed, or an earlier error left it unusable).
    Dead,
}

impl fmt::Display for BackendError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BackendError::Host { op, code } => {
                write!(f, "the host refused {op} (error {code})")
            }
            BackendError::Unsupported { field } => write!(
                f,
                "this backend cannot set vCPU field `{}`; leave it uncharged",
                field.name()
            ),
            BackendError::Dead => f.write_str("the vCPU is no longer usable; create a new one"),
        }
    }
}

/// Why `with_state` did nothing.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum VcpuError {
    /// Called from a thread other than the vCPU's handler thread. The state
    /// was not touched; call it from the handler (use a [`Requester`] to get
    /// the handler's attention from other threads).
    NotHandlerThread,
    /// The backend failed to resume or run the vCPU. The closure's charges
    /// are kept, so a retry writes them again.
    Backend(BackendError),
}

impl fmt::Display for VcpuError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            VcpuError::NotHandlerThread => f.write_str(
                "with_state called outside the vCPU's handler thread; use a Requester from other threads",
            ),
            VcpuError::Backend(e) => write!(f, "vCPU backend: {e}"),
        }
    }
}

impl core::error::Error for BackendError {}
impl core::error::Error for VcpuError {}

impl From<BackendError> for VcpuError {
    fn from(e: BackendError) -> Self {
        VcpuError::Backend(e)
    }
}

/// Forces a running vCPU out of the guest; callable from any thread.
pub trait Recall {
    /// Makes the current run (or, if the vCPU is not running, the next run)
    /// of the vCPU return an [`ExitReason::Recall`] exit.
    fn recall(&self);
}

/// A way to run a vCPU: the Tern microhypervisor, Linux KVM, or a test
/// double.
pub trait Backend {
    /// The cross-thread recall handle.
    type Recaller: Recall + Clone + Send + Sync + 'static;

    /// Writes the fields charged in `state` (`state.charged()`) to the vCPU,
    /// runs the guest until the next exit the VMM must see and loads that
    /// exit into `state` (`state.exit` and at least the GPRs, `ip`,
    /// `ip_len`, `flags`, `qual`, `inj_info`, `intr_state`, `actv_state`;
    /// each backend documents what else) without charging. A pending recall
    /// makes it return a [`ExitReason::Recall`] exit without running guest
    /// code. It must not report [`ExitReason::Startup`] (the [`Vcpu`] makes
    /// that one up) and must block only the calling thread.
    fn run(&mut self, state: &mut VcpuState) -> Result<(), BackendError>;

    /// A handle other threads use to recall this vCPU.
    fn recaller(&self) -> Self::Recaller;

    /// Whether the calling thread is this vCPU's handler thread (the only
    /// one allowed to run it).
    fn on_handler_thread(&self) -> bool;
}

struct Shared<R> {
    requested: AtomicBool,
    recaller: R,
}

/// A cloneable handle device-model threads use to get the vCPU handler's
/// attention: [`request`](Self::request) marks a request and recalls the
/// vCPU; the handler sees a [`ExitReason::Recall`] exit, calls
/// [`Vcpu::take_request`] and injects through `with_state`.
pub struct Requester<R> {
    shared: Arc<Shared<R>>,
}

impl<R> Clone for Requester<R> {
    fn clone(&self) -> Self {
        Self {
            shared: self.shared.clone(),
        }
    }
}

impl<R: Recall> Requester<R> {
    /// Asks the handler to look at the vCPU soon. Never blocks.
    pub fn request(&self) {
        self.shared.requested.store(true, Ordering::Release);
        self.shared.recaller.recall();
    }
}

/// One virtual CPU and its state, driven through [`with_state`](Self::with_state).
pub struct Vcpu<B: Backend> {
    backend: B,
    state: Box<VcpuState>,
    shared: Arc<Shared<B::Recaller>>,
}

impl<B: Backend> Vcpu<B> {
    /// Wraps a backend vCPU. The first `with_state` sees a synthetic
    /// [`ExitReason::Startup`] exit and the backend's reset state; nothing
    /// has run yet.
    pub fn new(backend: B) -> Self {
        let shared = Arc::new(Shared {
            requested: AtomicBool::new(false),
            recaller: backend.recaller(),
        });
        let mut state = Box::<VcpuState>::default();
        state.exit = Exit {
            reason: ExitReason::Startup,
            raw: RawExit::Synthetic,
        };
        Self {
            backend,
            state,
            shared,
        }
    }

    /// Gives `handle` the stopped vCPU's state, with the reason of the last
    /// exit in `state.exit`. If `handle` returns `true`, the fields it
    /// charged are written back and the vCPU runs until its next exit before
    /// this returns (all charges are then dropped); `false` keeps the vCPU
    /// stopped with the charges pending for a later resume.
    ///
    /// Only the handler thread may call it; any other thread gets
    /// [`VcpuError::NotHandlerThread`] and the closure is not called.
    pub fn with_state(
        &mut self,
        handle: impl FnOnce(&mut VcpuState) -> bool,
    ) -> Result<(), VcpuError> {
        if !self.backend.on_handler_thread() {
            return Err(VcpuError::NotHandlerThread);
        }
        if !handle(&mut self.state) {
            return Ok(());
        }
        self.backend.run(&mut self.state)?;
        self.state.discharge();
        Ok(())
    }

    /// A request handle for other threads.
    pub fn requester(&self) -> Requester<B::Recaller> {
        Requester {
            shared: self.shared.clone(),
        }
    }

    /// Whether a [`Requester`] asked for the handler since the last call;
    /// clears the request.
    pub fn take_request(&self) -> bool {
        self.shared.requested.swap(false, Ordering::Acquire)
    }

    pub fn backend(&self) -> &B {
        &self.backend
    }

    pub fn backend_mut(&mut self) -> &mut B {
        &mut self.backend
    }
}
