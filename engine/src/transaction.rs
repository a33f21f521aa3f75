//! A transaction: one request's run from head to response, driven by the runtime.
//!
//! The protocol logic is written as ordinary sequential Rust (`async fn`s in the handler
//! modules) and compiled by rustc into a state machine. Nothing here is a runtime: there is no
//! executor, no task, no waker that does anything. An effect "future" only records the effect
//! in the transaction's queue and becomes ready when the runtime hands the matching outcome to
//! [`Transaction::handle`]. Polling happens only inside [`Transaction::poll`], so the engine
//! advances exactly when its driver says so, and the same outcomes always give the same steps.

use std::collections::{BTreeMap, VecDeque};
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll, Waker};

use crate::effect::{Effect, EffectId, Outcome};
use crate::response::Response;

/// What the runtime must do next for a transaction.
#[derive(Debug)]
#[must_use]
#[non_exhaustive]
pub enum Next {
    /// Execute this effect and report its outcome with [`Transaction::handle`]. Several
    /// effects may be handed out before any outcome is reported; the runtime MAY execute them
    /// concurrently and report their outcomes in any order.
    Effect(EffectId, Effect),
    /// Every effect handed out so far awaits its outcome: report one, then poll again.
    AwaitOutcome,
    /// Send this response. Exactly one is produced per transaction; after it, `poll` returns
    /// [`Next::Done`].
    Respond(Response),
    /// The transaction is over.
    Done,
}

/// [`Transaction::handle`] was given an id the transaction is not waiting on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UnexpectedOutcome(pub EffectId);

impl core::fmt::Display for UnexpectedOutcome {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "no effect {} is awaiting an outcome", self.0.0)
    }
}

type ResponseFuture = Pin<Box<dyn Future<Output = Response> + Send>>;

/// One request (or one maintenance run) in flight. See the crate docs for the driver loop.
pub struct Transaction {
    queue: Arc<Mutex<EffectQueue>>,
    future: Option<ResponseFuture>,
    /// Set when an outcome arrived since the future was last polled.
    progress: bool,
}

impl core::fmt::Debug for Transaction {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Transaction")
            .field("finished", &self.future.is_none())
            .finish()
    }
}

impl Transaction {
    pub(crate) fn new<F>(io: &Io, logic: F) -> Transaction
    where
        F: Future<Output = Response> + Send + 'static,
    {
        Transaction {
            queue: io.queue.clone(),
            future: Some(Box::pin(logic)),
            progress: true,
        }
    }

    /// The next thing the runtime must do. Call it after `begin` and after every `handle`,
    /// until it returns [`Next::Done`].
    pub fn poll(&mut self) -> Next {
        loop {
            if let Some((id, effect)) = lock(&self.queue).issued.pop_front() {
                return Next::Effect(id, effect);
            }
            let Some(future) = self.future.as_mut() else {
                return Next::Done;
            };
            if !self.progress {
                return Next::AwaitOutcome;
            }
            self.progress = false;
            let mut context = Context::from_waker(Waker::noop());
            if let Poll::Ready(response) = future.as_mut().poll(&mut context) {
                self.future = None;
                return Next::Respond(response);
            }
        }
    }

    /// Reports the outcome of the effect handed out as `id`.
    pub fn handle(&mut self, id: EffectId, outcome: Outcome) -> Result<(), UnexpectedOutcome> {
        let waker = {
            let mut queue = lock(&self.queue);
            if !queue.awaiting.contains_key(&id) {
                return Err(UnexpectedOutcome(id));
            }
            queue.awaiting.insert(id, Some(outcome));
            queue.wakers.remove(&id)
        };
        // Combinators such as `FuturesOrdered` (which `try_join_all` uses for more than 30
        // futures) re-poll only the futures whose waker fired.
        if let Some(waker) = waker {
            waker.wake();
        }
        self.progress = true;
        Ok(())
    }

    /// Effects handed out whose outcomes have not been reported yet.
    pub fn awaiting(&self) -> usize {
        lock(&self.queue)
            .awaiting
            .values()
            .filter(|o| o.is_none())
            .count()
    }
}

#[derive(Default)]
struct EffectQueue {
    next_id: u64,
    issued: VecDeque<(EffectId, Effect)>,
    /// Effects handed out, with their outcome once reported.
    awaiting: BTreeMap<EffectId, Option<Outcome>>,
    /// The waker of the future awaiting each effect's outcome, woken when it is reported.
    wakers: BTreeMap<EffectId, Waker>,
}

fn lock(queue: &Mutex<EffectQueue>) -> MutexGuard<'_, EffectQueue> {
    // The lock is only ever taken for a few lines that cannot panic; a poisoned lock still
    // holds a consistent queue.
    queue
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// The handlers' side of the transaction: issue effects, await outcomes.
#[derive(Clone, Default)]
pub(crate) struct Io {
    queue: Arc<Mutex<EffectQueue>>,
}

impl Io {
    /// Issues `effect` now; the returned future resolves to its outcome.
    pub(crate) fn perform(&self, effect: Effect) -> PendingOutcome {
        let mut queue = lock(&self.queue);
        let id = EffectId(queue.next_id);
        queue.next_id += 1;
        queue.issued.push_back((id, effect));
        queue.awaiting.insert(id, None);
        PendingOutcome {
            id,
            queue: self.queue.clone(),
        }
    }
}

/// Resolves to the outcome of one issued effect.
pub(crate) struct PendingOutcome {
    id: EffectId,
    queue: Arc<Mutex<EffectQueue>>,
}

impl Future for PendingOutcome {
    type Output = Outcome;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Outcome> {
        let mut queue = lock(&self.queue);
        match queue.awaiting.get(&self.id) {
            Some(Some(_)) => match queue.awaiting.remove(&self.id) {
                Some(Some(outcome)) => Poll::Ready(outcome),
                _ => Poll::Pending,
            },
            _ => {
                queue.wakers.insert(self.id, cx.waker().clone());
                Poll::Pending
            }
        }
    }
}
