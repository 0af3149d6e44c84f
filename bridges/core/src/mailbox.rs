//! An unbounded queue from many senders to one task, for the queues every
//! user has: the router's commands to a user's task, a user's commands to
//! each of their IRC connections, and the lines to each connection's
//! writer.
//!
//! Written by hand rather than taken from tokio: an idle tokio channel
//! keeps a block of 32 slots plus its cache-padded state, 0.4 to 1.3 KB
//! per queue in heaptrack of the IRC load tool's fan-out, and every joined
//! user holds several. This keeps an empty `VecDeque`, two counts and a
//! `Notify`.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, MutexGuard};

use tokio::sync::Notify;

struct Shared<T> {
    state: Mutex<State<T>>,
    ready: Notify,
}

struct State<T> {
    items: VecDeque<T>,
    senders: usize,
    receiving: bool,
}

/// A burst leaves the queue this long at most once it empties.
const KEPT_CAPACITY: usize = 64;

/// Queues items; cloned for each sender.
pub struct MailboxSender<T>(Arc<Shared<T>>);

/// The receiving task's end.
pub struct MailboxReceiver<T>(Arc<Shared<T>>);

pub fn mailbox<T>() -> (MailboxSender<T>, MailboxReceiver<T>) {
    let shared = Arc::new(Shared {
        state: Mutex::new(State {
            items: VecDeque::new(),
            senders: 1,
            receiving: true,
        }),
        ready: Notify::new(),
    });
    (MailboxSender(shared.clone()), MailboxReceiver(shared))
}

impl<T> Shared<T> {
    fn state(&self) -> MutexGuard<'_, State<T>> {
        // A panic while holding the lock leaves nothing half-done: every
        // critical section is one push, pop or count.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl<T> MailboxSender<T> {
    /// Queue `item`; given back once the receiver is gone.
    pub fn send(&self, item: T) -> Result<(), T> {
        {
            let mut state = self.0.state();
            if !state.receiving {
                return Err(item);
            }
            state.items.push_back(item);
        }
        self.0.ready.notify_one();
        Ok(())
    }

    /// Whether the receiver is gone.
    pub fn is_closed(&self) -> bool {
        !self.0.state().receiving
    }
}

impl<T> Clone for MailboxSender<T> {
    fn clone(&self) -> Self {
        self.0.state().senders += 1;
        MailboxSender(self.0.clone())
    }
}

impl<T> Drop for MailboxSender<T> {
    fn drop(&mut self) {
        let last = {
            let mut state = self.0.state();
            state.senders -= 1;
            state.senders == 0
        };
        if last {
            self.0.ready.notify_one();
        }
    }
}

impl<T> MailboxReceiver<T> {
    /// The next item, waiting for one; `None` once every sender is gone
    /// and the queue is empty. Cancel-safe: an item is taken only when it
    /// is returned, and a wake-up given to a dropped wait goes on to the
    /// next one (tokio's `Notify`).
    pub async fn recv(&mut self) -> Option<T> {
        loop {
            {
                let mut state = self.0.state();
                if let Some(item) = pop(&mut state) {
                    return Some(item);
                }
                if state.senders == 0 {
                    return None;
                }
            }
            // A notification sent between the check and here is kept as a
            // permit, so none is lost.
            self.0.ready.notified().await;
        }
    }

    /// The next item, if one is queued now.
    pub fn try_recv(&mut self) -> Option<T> {
        pop(&mut self.0.state())
    }

    pub fn is_empty(&self) -> bool {
        self.0.state().items.is_empty()
    }
}

fn pop<T>(state: &mut State<T>) -> Option<T> {
    let item = state.items.pop_front()?;
    if state.items.is_empty() && state.items.capacity() > KEPT_CAPACITY {
        state.items = VecDeque::new();
    }
    Some(item)
}

impl<T> Drop for MailboxReceiver<T> {
    fn drop(&mut self) {
        let items = {
            let mut state = self.0.state();
            state.receiving = false;
            std::mem::take(&mut state.items)
        };
        // Dropped outside the lock: an item's own drop may send.
        drop(items);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn items_arrive_in_order_and_the_end_is_told() {
        let (tx, mut rx) = mailbox::<&str>();
        let other = tx.clone();
        assert!(tx.send("one").is_ok());
        assert!(other.send("two").is_ok());
        assert!(!rx.is_empty());
        assert_eq!(rx.recv().await, Some("one"));
        assert_eq!(rx.try_recv(), Some("two"));
        assert!(rx.try_recv().is_none());
        drop(tx);
        assert!(other.send("three").is_ok());
        drop(other);
        assert_eq!(rx.recv().await, Some("three"));
        assert_eq!(rx.recv().await, None);
    }

    #[tokio::test]
    async fn a_waiting_receiver_is_woken() {
        let (tx, mut rx) = mailbox();
        let waiting = tokio::spawn(async move { rx.recv().await });
        tokio::task::yield_now().await;
        assert!(tx.send("late").is_ok());
        assert_eq!(waiting.await.unwrap(), Some("late"));
    }

    #[tokio::test]
    async fn a_wait_given_up_loses_no_wake_up() {
        let (tx, mut rx) = mailbox();
        // A wait raced and dropped, as `select!` drops the branch that lost.
        tokio::select! {
            biased;
            _ = rx.recv() => unreachable!("nothing was sent"),
            _ = tokio::task::yield_now() => {}
        }
        assert!(tx.send(1).is_ok());
        let got = tokio::time::timeout(std::time::Duration::from_secs(1), rx.recv()).await;
        assert_eq!(got.unwrap(), Some(1));
    }

    #[test]
    fn a_gone_receiver_takes_no_more() {
        let (tx, rx) = mailbox();
        assert!(!tx.is_closed());
        drop(rx);
        assert!(tx.is_closed());
        assert_eq!(tx.send("lost"), Err("lost"));
    }

    #[test]
    fn a_burst_gives_its_room_back() {
        let (tx, mut rx) = mailbox();
        for i in 0..1000 {
            let _ = tx.send(i);
        }
        while rx.try_recv().is_some() {}
        assert!(rx.0.state().items.capacity() <= KEPT_CAPACITY);
    }
}
