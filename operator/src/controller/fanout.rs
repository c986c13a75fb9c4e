//! Fan-out of one shared watch to any number of subscribers, added at any time.
//!
//! kube's shared reflector applies back-pressure: its writer waits until every active
//! `ReflectHandle` has taken each event. A handle kept for later subscriptions but never
//! polled would therefore stall the watch after a buffer's worth of events. Here one handle is
//! always drained by a task that forwards each event to per-subscriber unbounded channels, so
//! a watch never waits on a subscriber that does not exist yet.

use std::sync::{Arc, Mutex};

use futures::channel::mpsc::{UnboundedReceiver, UnboundedSender, unbounded};
use futures::{Stream, StreamExt};

/// How often the drain re-polls its source in case a wake-up was lost.
const REPOLL: std::time::Duration = std::time::Duration::from_millis(250);

/// Subscriptions to one shared stream.
pub struct Fanout<T> {
    subscribers: Arc<Mutex<Vec<UnboundedSender<Arc<T>>>>>,
}

impl<T> Clone for Fanout<T> {
    fn clone(&self) -> Self {
        Fanout {
            subscribers: self.subscribers.clone(),
        }
    }
}

impl<T: Send + Sync + 'static> Fanout<T> {
    /// Wraps `source` and returns the fan-out with the future that drains it (spawn or join it
    /// with the watch that feeds `source`).
    pub fn new<S>(
        source: S,
    ) -> (
        Fanout<T>,
        impl std::future::Future<Output = ()> + Send + use<S, T>,
    )
    where
        S: Stream<Item = Arc<T>> + Send + 'static,
    {
        let subscribers: Arc<Mutex<Vec<UnboundedSender<Arc<T>>>>> =
            Arc::new(Mutex::new(Vec::new()));
        let targets = subscribers.clone();
        // kube's `ReflectHandle` can swallow a wake-up: when an object is deleted between its
        // broadcast and this read, the read returns `Pending` without waiting on anything. Left
        // alone the drain would sleep until the writer's buffer is full and the watch stalls,
        // so it also re-polls on a short timer.
        let drain = async move {
            let mut source = std::pin::pin!(source);
            let mut tick = tokio::time::interval(REPOLL);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
            loop {
                tokio::select! {
                    item = source.next() => match item {
                        Some(item) => {
                            if let Ok(mut subs) = targets.lock() {
                                subs.retain(|tx| tx.unbounded_send(item.clone()).is_ok());
                            }
                        }
                        None => return,
                    },
                    _ = tick.tick() => {}
                }
            }
        };
        (Fanout { subscribers }, drain)
    }

    /// A new subscription: every event from now on.
    pub fn subscribe(&self) -> UnboundedReceiver<Arc<T>> {
        let (tx, rx) = unbounded();
        if let Ok(mut subs) = self.subscribers.lock() {
            subs.push(tx);
        }
        rx
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn unpolled_and_late_subscribers_never_block_the_source() {
        let (tx, rx) = unbounded::<Arc<u32>>();
        let (fanout, drain) = Fanout::new(rx);
        let drain = tokio::spawn(drain);
        let early = fanout.subscribe();
        for i in 0..5000 {
            tx.unbounded_send(Arc::new(i)).unwrap();
        }
        tokio::task::yield_now().await;
        let late = fanout.subscribe();
        tx.unbounded_send(Arc::new(9999)).unwrap();
        drop(tx);
        drain.await.unwrap();
        // The subscriptions end when the fan-out (their senders) goes away.
        drop(fanout);
        assert_eq!(early.collect::<Vec<_>>().await.len(), 5001);
        let late: Vec<_> = late.collect().await;
        assert_eq!(late.last().map(|v| **v), Some(9999));
    }
}
