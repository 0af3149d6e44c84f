//! The queue between the users of an IRC connection and its writer task.
//!
//! Written by hand rather than taken from tokio: every user of the gateway
//! has one of these per server, and an idle tokio channel keeps a block of
//! 32 slots plus its state (1.3 KB per joined user in heaptrack of the load
//! tool's fan-out), where this keeps an empty `VecDeque` and a little state.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

use tokio::sync::Notify;

struct Shared {
    state: Mutex<State>,
    ready: Notify,
}

struct State {
    lines: VecDeque<String>,
    senders: usize,
    receiving: bool,
}

/// A burst leaves the queue this long at most once it empties.
const KEPT_CAPACITY: usize = 64;

/// Queues lines; cloned for each user of the connection.
pub struct LineSender(Arc<Shared>);

/// The writer task's end.
pub struct LineReceiver(Arc<Shared>);

pub fn line_queue() -> (LineSender, LineReceiver) {
    let shared = Arc::new(Shared {
        state: Mutex::new(State {
            lines: VecDeque::new(),
            senders: 1,
            receiving: true,
        }),
        ready: Notify::new(),
    });
    (LineSender(shared.clone()), LineReceiver(shared))
}

impl Shared {
    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        // A panic while holding the lock leaves nothing half-done: every
        // critical section is one push, pop or count.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl LineSender {
    /// Queue `line`; false once the writer has stopped.
    pub fn send(&self, line: String) -> bool {
        {
            let mut state = self.0.state();
            if !state.receiving {
                return false;
            }
            state.lines.push_back(line);
        }
        self.0.ready.notify_one();
        true
    }
}

impl Clone for LineSender {
    fn clone(&self) -> Self {
        self.0.state().senders += 1;
        LineSender(self.0.clone())
    }
}

impl Drop for LineSender {
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

impl LineReceiver {
    /// The next line, waiting for one; `None` once every sender is gone
    /// and the queue is empty.
    pub async fn recv(&mut self) -> Option<String> {
        loop {
            {
                let mut state = self.0.state();
                if let Some(line) = pop(&mut state) {
                    return Some(line);
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

    /// The next line, if one is queued now.
    pub fn try_recv(&mut self) -> Option<String> {
        pop(&mut self.0.state())
    }

    pub fn is_empty(&self) -> bool {
        self.0.state().lines.is_empty()
    }
}

fn pop(state: &mut State) -> Option<String> {
    let line = state.lines.pop_front()?;
    if state.lines.is_empty() && state.lines.capacity() > KEPT_CAPACITY {
        state.lines = VecDeque::new();
    }
    Some(line)
}

impl Drop for LineReceiver {
    fn drop(&mut self) {
        let mut state = self.0.state();
        state.receiving = false;
        state.lines = VecDeque::new();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn lines_arrive_in_order_and_the_end_is_told() {
        let (tx, mut rx) = line_queue();
        let other = tx.clone();
        assert!(tx.send("one".into()));
        assert!(other.send("two".into()));
        assert!(!rx.is_empty());
        assert_eq!(rx.recv().await.as_deref(), Some("one"));
        assert_eq!(rx.try_recv().as_deref(), Some("two"));
        assert!(rx.try_recv().is_none());
        drop(tx);
        assert!(other.send("three".into()));
        drop(other);
        assert_eq!(rx.recv().await.as_deref(), Some("three"));
        assert_eq!(rx.recv().await, None);
    }

    #[tokio::test]
    async fn a_waiting_receiver_is_woken() {
        let (tx, mut rx) = line_queue();
        let waiting = tokio::spawn(async move { rx.recv().await });
        tokio::task::yield_now().await;
        assert!(tx.send("late".into()));
        assert_eq!(waiting.await.unwrap().as_deref(), Some("late"));
    }

    #[test]
    fn a_stopped_writer_takes_no_more() {
        let (tx, rx) = line_queue();
        drop(rx);
        assert!(!tx.send("lost".into()));
    }

    #[test]
    fn a_burst_gives_its_room_back() {
        let (tx, mut rx) = line_queue();
        for i in 0..1000 {
            tx.send(i.to_string());
        }
        while rx.try_recv().is_some() {}
        assert!(rx.0.state().lines.capacity() <= KEPT_CAPACITY);
    }
}
