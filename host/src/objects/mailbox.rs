//! What an actor receives, and how it takes events out of its inbox: one
//! event, plus every event already waiting behind it, to run as a batch
//! under one commit.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, oneshot};

use super::error::ObjectError;
use super::hibernation::SocketId;
use super::id::ObjectKey;
use crate::bindings::verge::platform::websocket::Message as WsMessage;
use crate::bindings::{Request, Response};

/// The objects on the current call path, outermost first.
pub type Chain = Arc<[ObjectKey]>;

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
    pub(crate) callers: Chain,
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

/// The batch that starts with `first`: it and every event already waiting
/// behind it, up to `max` in all. Stops early at a message that is not an
/// event, which is returned to be handled after the batch.
pub(crate) fn take_batch(
    first: Pending,
    inbox: &mut Inbox,
    max: usize,
) -> (Vec<Pending>, Option<Message>) {
    let mut batch = vec![first];
    while batch.len() < max {
        match inbox.try_recv() {
            Ok(Message::Event(pending)) => batch.push(pending),
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
            callers: Chain::default(),
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

    #[test]
    fn a_batch_takes_what_is_waiting_up_to_its_size() {
        let (outbox, mut inbox) = mpsc::unbounded_channel();
        for n in 1..=4 {
            let _ = outbox.send(Message::Event(rpc(&n.to_string()).0));
        }
        let (batch, held) = take_batch(rpc("0").0, &mut inbox, 3);
        assert_eq!(
            batch.iter().map(method).collect::<Vec<_>>(),
            ["0", "1", "2"]
        );
        assert!(held.is_none());
        let (batch, _) = take_batch(rpc("x").0, &mut inbox, 3);
        assert_eq!(
            batch.iter().map(method).collect::<Vec<_>>(),
            ["x", "3", "4"]
        );
    }

    #[test]
    fn a_batch_stops_at_an_administrative_message_and_keeps_it() {
        let (outbox, mut inbox) = mpsc::unbounded_channel();
        let _ = outbox.send(Message::Event(rpc("1").0));
        let (done, _) = oneshot::channel();
        let _ = outbox.send(Message::Evict(done));
        let _ = outbox.send(Message::Event(rpc("2").0));
        let (batch, held) = take_batch(rpc("0").0, &mut inbox, 256);
        assert_eq!(batch.iter().map(method).collect::<Vec<_>>(), ["0", "1"]);
        assert!(matches!(held, Some(Message::Evict(_))));
        // What came after the held message waits for the next batch.
        assert!(matches!(inbox.try_recv(), Ok(Message::Event(_))));
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
