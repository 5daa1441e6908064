//! What an actor receives, and how it takes events out of its inbox: one
//! event, plus every event already waiting behind it, to run as a batch
//! under one commit.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use tokio::sync::{mpsc, oneshot};

use super::error::ObjectError;
use super::hibernation::SocketId;
use super::id::ObjectKey;
use crate::bindings::verge::platform::websocket::Message as WsMessage;
use crate::bindings::{Request, Response};
use crate::runtime::RequestId;

/// The objects on the current call path, outermost first.
pub type Chain = Arc<[ObjectKey]>;

/// Where an event comes from: the objects waiting on it (the calling object
/// last), how many Verge hosts the request that led to it had passed
/// through (its outbound requests carry one more, see `LOOP_HEADER`), and
/// that request's id, which the event's log lines carry too. Events the
/// host starts itself (alarms, WebSocket messages) have no request.
#[derive(Debug, Clone, Default)]
pub struct CallPath {
    pub objects: Chain,
    pub hops: u32,
    pub request_id: Option<RequestId>,
}

/// An event for an object.
#[derive(Debug)]
pub enum Event {
    Fetch(Request),
    Rpc {
        method: String,
        args: Vec<u8>,
    },
    WebSocketMessage {
        socket: SocketId,
        message: WsMessage,
    },
    WebSocketClose {
        socket: SocketId,
        code: u16,
        reason: String,
        was_clean: bool,
    },
    WebSocketError {
        socket: SocketId,
        error: String,
    },
    Alarm {
        name: String,
    },
}

impl Event {
    /// What the event is, for its tail line: `alarm daily`, `rpc add`.
    pub(crate) fn describe(&self) -> String {
        match self {
            Self::Fetch(request) => format!("fetch {}", request.url),
            Self::Rpc { method, .. } => format!("rpc {method}"),
            Self::WebSocketMessage { .. } => "websocket message".into(),
            Self::WebSocketClose { code, .. } => format!("websocket close {code}"),
            Self::WebSocketError { .. } => "websocket error".into(),
            Self::Alarm { name } => format!("alarm {name}"),
        }
    }
}

/// The answer an event produced.
#[derive(Debug)]
pub enum Reply {
    Fetch(Response),
    Rpc(Vec<u8>),
    /// A WebSocket or alarm event ran.
    Done,
}

/// Where an event's reply goes.
pub(crate) type ReplyTo = oneshot::Sender<Result<Reply, ObjectError>>;

/// Where an event's reply arrives.
pub(crate) type PendingReply = oneshot::Receiver<Result<Reply, ObjectError>>;

/// Waits up to `timeout` for an event's reply.
pub(crate) async fn await_reply(
    answer: Result<PendingReply, ObjectError>,
    timeout: Duration,
) -> Result<Reply, ObjectError> {
    match tokio::time::timeout(timeout, answer?).await {
        Err(_) => Err(ObjectError::Timeout),
        Ok(Err(_)) => Err(ObjectError::Internal(
            "the object stopped before answering".into(),
        )),
        Ok(Ok(result)) => result,
    }
}

/// One queued event and where its answer goes.
pub(crate) struct Pending {
    pub(crate) event: Event,
    /// The object's name, when the caller reached it by name.
    pub(crate) name: Option<String>,
    pub(crate) path: CallPath,
    pub(crate) reply: ReplyTo,
}

impl Pending {
    /// Answers with `result` (nobody may be waiting any more).
    pub(crate) fn answer(self, result: Result<Reply, ObjectError>) {
        let _ = self.reply.send(result);
    }
}

/// What actors receive.
pub(crate) enum Message {
    Event(Pending),
    /// A consistent copy of the database, as SQLite file bytes.
    Export(oneshot::Sender<Result<Vec<u8>, ObjectError>>),
    /// Replace the database with these SQLite file bytes.
    Import(Vec<u8>, oneshot::Sender<Result<(), ObjectError>>),
    /// Remove the object and its data.
    Delete(oneshot::Sender<Result<(), ObjectError>>),
    /// Drop the instance and close the database now.
    Evict(oneshot::Sender<()>),
}

pub(crate) type Inbox = mpsc::UnboundedReceiver<Message>;
pub(crate) type Outbox = mpsc::UnboundedSender<Message>;

/// Fetch and RPC events one object may have waiting, and the bytes they
/// carry: past either, callers are told the object is overloaded rather
/// than queued without end. (WebSocket messages have their own window per
/// socket, and alarms one per alarm.)
const MAX_WAITING_EVENTS: usize = 1024;
const MAX_WAITING_BYTES: usize = 64 << 20;

/// What waits in one object's inbox from callers.
#[derive(Debug, Default)]
pub(crate) struct Backlog {
    events: AtomicUsize,
    bytes: AtomicUsize,
}

impl Backlog {
    /// Counts `pending` in, unless the object already has too much waiting.
    pub(crate) fn admit(&self, pending: &Pending) -> Result<(), ObjectError> {
        let Some(bytes) = pending.weight() else {
            return Ok(());
        };
        let events = self.events.fetch_add(1, Ordering::AcqRel);
        let waiting = self.bytes.fetch_add(bytes, Ordering::AcqRel);
        if events >= MAX_WAITING_EVENTS || waiting + bytes > MAX_WAITING_BYTES {
            self.release(pending);
            return Err(ObjectError::Overloaded(format!(
                "the object is overloaded: {events} requests ({} MiB) are waiting for it",
                waiting >> 20
            )));
        }
        Ok(())
    }

    /// Counts `pending` out, as the actor takes it.
    fn release(&self, pending: &Pending) {
        if let Some(bytes) = pending.weight() {
            self.events.fetch_sub(1, Ordering::AcqRel);
            self.bytes.fetch_sub(bytes, Ordering::AcqRel);
        }
    }
}

impl Pending {
    /// What a fetch or RPC event weighs in its object's backlog.
    fn weight(&self) -> Option<usize> {
        match &self.event {
            Event::Fetch(request) => Some(request.body.len() + request.url.len()),
            Event::Rpc { method, args } => Some(method.len() + args.len()),
            _ => None,
        }
    }

    /// Whether the caller stopped waiting (a client that went away): the
    /// event is dropped unrun.
    fn abandoned(&self) -> bool {
        self.reply.is_closed()
    }
}

/// The batch that starts with `first`: it and every event already waiting
/// behind it, up to `max` in all, each counted out of `backlog`. Events
/// whose caller has gone are dropped. Stops early at a message that is not
/// an event, which is returned to be handled after the batch.
pub(crate) fn take_batch(
    first: Pending,
    inbox: &mut Inbox,
    backlog: &Backlog,
    max: usize,
) -> (Vec<Pending>, Option<Message>) {
    let mut batch = Vec::new();
    let take = |pending: Pending, batch: &mut Vec<Pending>| {
        backlog.release(&pending);
        if !pending.abandoned() {
            batch.push(pending);
        }
    };
    take(first, &mut batch);
    while batch.len() < max {
        match inbox.try_recv() {
            Ok(Message::Event(pending)) => take(pending, &mut batch),
            Ok(other) => return (batch, Some(other)),
            Err(_) => break,
        }
    }
    (batch, None)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// An RPC event with `method` and no arguments, and its reply channel.
    pub(crate) fn rpc(method: &str) -> (Pending, PendingReply) {
        let (reply, answer) = oneshot::channel();
        let pending = Pending {
            event: Event::Rpc {
                method: method.into(),
                args: Vec::new(),
            },
            name: None,
            path: CallPath::default(),
            reply,
        };
        (pending, answer)
    }

    fn method(pending: &Pending) -> &str {
        match &pending.event {
            Event::Rpc { method, .. } => method,
            other => panic!("not an RPC: {other:?}"),
        }
    }

    /// Queues RPCs named `methods`; their answers stay alive (nobody
    /// stopped waiting) as long as the returned vector does.
    fn queue(outbox: &Outbox, methods: &[&str]) -> Vec<PendingReply> {
        methods
            .iter()
            .map(|m| {
                let (pending, answer) = rpc(m);
                let _ = outbox.send(Message::Event(pending));
                answer
            })
            .collect()
    }

    #[test]
    fn a_batch_takes_what_is_waiting_up_to_its_size() {
        let (outbox, mut inbox) = mpsc::unbounded_channel();
        let _answers = queue(&outbox, &["1", "2", "3", "4"]);
        let backlog = Backlog::default();
        let (first, _a) = rpc("0");
        let (batch, held) = take_batch(first, &mut inbox, &backlog, 3);
        assert_eq!(
            batch.iter().map(method).collect::<Vec<_>>(),
            ["0", "1", "2"]
        );
        assert!(held.is_none());
        let (first, _b) = rpc("x");
        let (batch, _) = take_batch(first, &mut inbox, &backlog, 3);
        assert_eq!(
            batch.iter().map(method).collect::<Vec<_>>(),
            ["x", "3", "4"]
        );
    }

    #[test]
    fn a_batch_stops_at_an_administrative_message_and_keeps_it() {
        let (outbox, mut inbox) = mpsc::unbounded_channel();
        let _one = queue(&outbox, &["1"]);
        let (done, _) = oneshot::channel();
        let _ = outbox.send(Message::Evict(done));
        let _two = queue(&outbox, &["2"]);
        let (first, _a) = rpc("0");
        let (batch, held) = take_batch(first, &mut inbox, &Backlog::default(), 256);
        assert_eq!(batch.iter().map(method).collect::<Vec<_>>(), ["0", "1"]);
        assert!(matches!(held, Some(Message::Evict(_))));
        // What came after the held message waits for the next batch.
        assert!(matches!(inbox.try_recv(), Ok(Message::Event(_))));
    }

    #[test]
    fn events_whose_caller_left_are_dropped_unrun() {
        let (outbox, mut inbox) = mpsc::unbounded_channel();
        let (waited, _answer) = rpc("waited");
        let (left, gone) = rpc("left");
        drop(gone);
        let _ = outbox.send(Message::Event(left));
        let (batch, _) = take_batch(waited, &mut inbox, &Backlog::default(), 256);
        assert_eq!(batch.iter().map(method).collect::<Vec<_>>(), ["waited"]);
    }

    #[test]
    fn a_backlog_refuses_past_its_limit_and_frees_as_events_are_taken() {
        let backlog = Backlog::default();
        let mut admitted = Vec::new();
        for _ in 0..MAX_WAITING_EVENTS {
            let (pending, answer) = rpc("m");
            backlog.admit(&pending).unwrap();
            admitted.push((pending, answer));
        }
        let (one_more, _answer) = rpc("m");
        assert!(matches!(
            backlog.admit(&one_more),
            Err(ObjectError::Overloaded(_))
        ));
        let (first, _answer) = admitted.pop().unwrap();
        let (_, mut inbox) = mpsc::unbounded_channel();
        let _ = take_batch(first, &mut inbox, &backlog, 1);
        backlog.admit(&one_more).unwrap();
    }

    #[tokio::test]
    async fn a_reply_that_never_comes_is_a_timeout_or_a_stop() {
        let (reply, answer) = oneshot::channel::<Result<Reply, ObjectError>>();
        let waited = await_reply(Ok(answer), Duration::from_millis(10)).await;
        assert!(matches!(waited, Err(ObjectError::Timeout)));
        drop(reply);
        let (reply, answer) = oneshot::channel::<Result<Reply, ObjectError>>();
        drop(reply);
        let stopped = await_reply(Ok(answer), Duration::from_secs(10)).await;
        assert!(matches!(stopped, Err(ObjectError::Internal(_))));
    }
}
