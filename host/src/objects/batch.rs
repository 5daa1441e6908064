//! The gates: what makes one object's events safe to run back to back, and
//! fast to run in bulk.
//!
//! - **Input gate.** The actor hands this module one batch at a time and
//!   the events of a batch run one after another, in arrival order: an
//!   event never sees another's half-done work.
//! - **Atomic events.** Each event runs inside a savepoint. If it fails,
//!   its writes roll back and the batch goes on without them.
//! - **Output gate.** Replies, and what events sent on WebSockets, leave
//!   only after the transaction holding the batch's writes has committed
//!   with `synchronous=FULL`: a client never sees success for writes a
//!   crash could lose. If the commit fails, every event of the batch fails
//!   and nothing it sent leaves.
//! - **Group commit.** The whole batch shares one commit (one fsync), and
//!   under load batches grow by themselves (see `mailbox::take_batch`):
//!   that is how one object goes past the one-commit-per-request ceiling.
//!
//! What an event *is* (a guest call, an alarm) is the actor's business,
//! behind [`Events`]; this module only orders transactions and replies.

use std::sync::{Arc, Mutex};

use super::error::ObjectError;
use super::hibernation::Outgoing;
use super::mailbox::{CallPath, Event, Pending, Reply};
use super::storage::{ObjectDb, lock};

/// What the gates need from the object whose batch they run.
pub(crate) trait Events {
    /// Before the event's savepoint opens: writes that stay even if the
    /// event fails (the object's name, learned from the caller).
    fn prepare(&mut self, db: &Mutex<ObjectDb>, pending: &Pending) -> Result<(), ObjectError>;

    /// Runs one event inside its savepoint: its answer, and what it sent
    /// on WebSockets (kept only if it succeeded).
    fn run(
        &mut self,
        db: &Arc<Mutex<ObjectDb>>,
        event: Event,
        path: CallPath,
    ) -> impl Future<Output = (Result<Reply, ObjectError>, Vec<Outgoing>)> + Send;

    /// After a failed event's writes were undone: the error to answer, or
    /// a reply when the failure is handled here (a failed alarm
    /// rescheduled).
    fn recover(&mut self, db: &Mutex<ObjectDb>, error: ObjectError) -> Result<Reply, ObjectError>;

    /// Makes the batch's writes, of `events` events, durable.
    fn commit(
        &mut self,
        db: &Arc<Mutex<ObjectDb>>,
        events: usize,
    ) -> impl Future<Output = Result<(), ObjectError>> + Send;

    /// The batch is over, before any reply leaves: committed, with what
    /// its events sent, or rolled back after the commit failed.
    fn settle(&mut self, db: &Mutex<ObjectDb>, committed: Result<Vec<Outgoing>, &ObjectError>);
}

/// Runs `batch` in one transaction of `db` and answers every event once
/// the transaction has committed, or failed.
pub(crate) async fn run(db: &Arc<Mutex<ObjectDb>>, batch: Vec<Pending>, events: &mut impl Events) {
    if let Err(e) = lock(db).begin_batch() {
        let error = ObjectError::storage(format!("cannot start a transaction: {e}"));
        for pending in batch {
            pending.answer(Err(error.clone()));
        }
        return;
    }
    let mut answers = Vec::with_capacity(batch.len());
    let mut outbox = Vec::new();
    for pending in batch {
        if let Err(e) = events.prepare(db, &pending) {
            answers.push((pending.reply, Err(e)));
            continue;
        }
        let Pending {
            event, path, reply, ..
        } = pending;
        let began = lock(db).begin_event();
        let result = match began {
            Ok(()) => {
                let (result, sent) = events.run(db, event, path).await;
                if result.is_ok() {
                    outbox.extend(sent);
                }
                result
            }
            Err(e) => Err(ObjectError::storage(e)),
        };
        let ended = lock(db).end_event(result.is_ok());
        if let Err(e) = ended {
            tracing::error!("closing an event's savepoint failed: {e}");
        }
        answers.push((reply, result.or_else(|e| events.recover(db, e))));
    }
    match events.commit(db, answers.len()).await {
        Ok(()) => {
            events.settle(db, Ok(outbox));
            for (reply, result) in answers {
                let _ = reply.send(result);
            }
        }
        Err(error) => {
            lock(db).rollback_batch();
            events.settle(db, Err(&error));
            let error = match error {
                ObjectError::StorageFull(why) => ObjectError::StorageFull(not_saved(&why)),
                // Says itself what became of the writes (a cluster's
                // database that did not answer).
                ObjectError::Overloaded(why) => ObjectError::Overloaded(why),
                other => ObjectError::Internal(not_saved(&other.to_string())),
            };
            for (reply, _) in answers {
                let _ = reply.send(Err(error.clone()));
            }
        }
    }
}

fn not_saved(why: &str) -> String {
    format!("the object's writes could not be committed ({why}); nothing was saved")
}

#[cfg(test)]
mod tests {
    use rusqlite::types::Value;
    use tokio::sync::oneshot;

    use super::super::mailbox::PendingReply;
    use super::super::mailbox::tests::rpc;
    use super::super::storage::tests::db;
    use super::*;

    /// Events that run the SQL named by their RPC method; `fail` fails
    /// after writing, `note` records what was answered when.
    #[derive(Default)]
    struct Script {
        fail_commit: bool,
        settled: Vec<Option<usize>>,
        /// Whether a reply had left before the batch settled.
        replied_early: Vec<bool>,
        answers: Vec<PendingReply>,
    }

    impl Events for Script {
        fn prepare(&mut self, _: &Mutex<ObjectDb>, _: &Pending) -> Result<(), ObjectError> {
            Ok(())
        }

        async fn run(
            &mut self,
            db: &Arc<Mutex<ObjectDb>>,
            event: Event,
            _: CallPath,
        ) -> (Result<Reply, ObjectError>, Vec<Outgoing>) {
            let Event::Rpc { method, .. } = event else {
                unreachable!()
            };
            let value = method.trim_start_matches("fail:");
            lock(db)
                .exec("INSERT INTO t VALUES (?)", &[Value::Text(value.into())])
                .unwrap();
            let sent = vec![(1, axum::extract::ws::Message::Text(value.into()))];
            if method.starts_with("fail:") {
                (Err(ObjectError::Handler("failed".into())), sent)
            } else {
                (Ok(Reply::Done), sent)
            }
        }

        fn recover(&mut self, _: &Mutex<ObjectDb>, e: ObjectError) -> Result<Reply, ObjectError> {
            Err(e)
        }

        async fn commit(&mut self, db: &Arc<Mutex<ObjectDb>>, _: usize) -> Result<(), ObjectError> {
            if self.fail_commit {
                return Err(ObjectError::Internal("the disk went away".into()));
            }
            lock(db).commit_batch().map_err(ObjectError::storage)
        }

        fn settle(&mut self, _: &Mutex<ObjectDb>, committed: Result<Vec<Outgoing>, &ObjectError>) {
            self.settled.push(committed.ok().map(|sent| sent.len()));
            for answer in &mut self.answers {
                self.replied_early.push(!matches!(
                    answer.try_recv(),
                    Err(oneshot::error::TryRecvError::Empty)
                ));
            }
        }
    }

    fn values(db: &Mutex<ObjectDb>) -> Vec<Vec<Value>> {
        lock(db).exec("SELECT v FROM t", &[]).unwrap().rows
    }

    async fn run_batch(
        db: &Arc<Mutex<ObjectDb>>,
        methods: &[&str],
        script: &mut Script,
    ) -> Vec<Result<Reply, ObjectError>> {
        let (batch, answers): (Vec<_>, Vec<_>) = methods.iter().map(|m| rpc(m)).unzip();
        script.answers = answers;
        run(db, batch, script).await;
        std::mem::take(&mut script.answers)
            .into_iter()
            .map(|mut answer| answer.try_recv().unwrap())
            .collect()
    }

    fn shared_db() -> (tempfile::TempDir, Arc<Mutex<ObjectDb>>) {
        let (dir, mut db) = db();
        db.exec("CREATE TABLE t (v TEXT)", &[]).unwrap();
        (dir, Arc::new(Mutex::new(db)))
    }

    #[tokio::test]
    async fn a_failed_event_rolls_back_alone_and_replies_wait_for_the_commit() {
        let (_dir, db) = shared_db();
        let mut script = Script::default();
        let answers = run_batch(&db, &["a", "fail:b", "c"], &mut script).await;
        assert!(matches!(answers[0], Ok(Reply::Done)));
        assert!(matches!(answers[1], Err(ObjectError::Handler(_))));
        assert!(matches!(answers[2], Ok(Reply::Done)));
        assert_eq!(
            values(&db),
            [[Value::Text("a".into())], [Value::Text("c".into())]]
        );
        // Only the successful events' sends leave, and no reply left
        // before the batch was settled.
        assert_eq!(script.settled, [Some(2)]);
        assert_eq!(script.replied_early, [false, false, false]);
    }

    #[tokio::test]
    async fn a_failed_commit_fails_every_event_and_keeps_nothing() {
        let (_dir, db) = shared_db();
        let mut script = Script {
            fail_commit: true,
            ..Script::default()
        };
        let answers = run_batch(&db, &["a", "b"], &mut script).await;
        for answer in answers {
            let Err(ObjectError::Internal(why)) = answer else {
                panic!("{answer:?}")
            };
            assert!(why.contains("could not be committed"), "{why}");
        }
        assert_eq!(script.settled, [None]);
        assert!(values(&db).is_empty());
    }
}
