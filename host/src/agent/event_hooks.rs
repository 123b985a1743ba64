//! The `event` hook point: every event of the log, from the moment the runtime starts, is
//! offered to the hooks that want its type, one event after the other, on a task of its
//! own. Nothing in the agent's flow waits for it; a slow hook only delays later deliveries,
//! and a follower that falls behind replays what it missed from the store.

use std::sync::Weak;

use futures::StreamExt;
use tokio::sync::watch;

use crate::runtime::PluginHost;
use crate::runtime::bindings::hook_types::Event as HookEvent;
use crate::store::SessionStore;

/// Delivers every event from now on to the `event` hooks in force when it arrives, on a
/// task of its own, until the host is dropped or the store closes. The receiver follows the
/// sequence number of the last event handled (so a one-off command can wait for its own
/// events to reach the hooks before it exits).
pub fn deliver_events(store: &SessionStore, host: Weak<PluginHost>) -> watch::Receiver<i64> {
    let events = store.tail(None);
    let (handled, receiver) = watch::channel(0);
    tokio::spawn(deliver(events, host, handled));
    receiver
}

async fn deliver(
    events: impl futures::Stream<Item = std::sync::Arc<crate::store::events::Event>>,
    host: Weak<PluginHost>,
    handled: watch::Sender<i64>,
) {
    futures::pin_mut!(events);
    while let Some(event) = events.next().await {
        let seq = event.seq;
        let Some(host) = host.upgrade() else { return };
        let chain = host.hooks();
        if chain.wants_event(&event.kind) {
            let record = HookEvent {
                seq: event.seq.max(0) as u64,
                event_type: event.kind.clone(),
                timestamp: event.timestamp,
                data: event.data.to_string(),
            };
            chain.event(event.session_id.as_deref(), record).await;
        }
        handled.send_replace(seq);
    }
}
