//! [`Operations`]: long-running operations as Google APIs run them.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Mutex;

use serde_json::{json, Value};

use super::*;

/// One long-running operation.
#[derive(Debug)]
struct Op<A> {
    polls_left: usize,
    action: Option<A>,
    done: bool,
    response: Value,
    error: Option<(i64, String)>,
}

/// Where an operation stands after a poll.
#[derive(Debug)]
pub enum Step<A> {
    /// Its JSON, done or not: answer it.
    Answer(Value),
    /// Its work is due: do `A`, then [`Operations::finish`] it.
    Run(A),
}

/// Long-running operations as Google APIs run them: `{name, done, response | error}`,
/// pending for a number of polls, then done once the fake did its work (`A`).
#[derive(Debug)]
pub struct Operations<A> {
    parent: String,
    pending_polls: AtomicUsize,
    counter: AtomicU64,
    ops: Mutex<HashMap<String, Op<A>>>,
}

impl<A> Operations<A> {
    /// Operations named `<parent>/operations/op-NNNN`, pending for 2 polls.
    pub fn new(parent: &str) -> Self {
        Operations {
            parent: parent.to_string(),
            pending_polls: AtomicUsize::new(2),
            counter: AtomicU64::new(0),
            ops: Mutex::default(),
        }
    }

    /// How many polls a new operation stays pending.
    pub fn set_pending_polls(&self, n: usize) {
        self.pending_polls.store(n, Ordering::SeqCst);
    }

    /// How many polls a new operation stays pending.
    pub fn pending_polls(&self) -> usize {
        self.pending_polls.load(Ordering::SeqCst)
    }

    /// Starts an operation doing `action` and answering `response`: its name and JSON.
    pub fn start(&self, action: A, response: Value) -> (String, Value) {
        let n = self.counter.fetch_add(1, Ordering::SeqCst) + 1;
        let name = format!("{}/operations/op-{n:04}", self.parent);
        let op = Op {
            polls_left: self.pending_polls(),
            action: Some(action),
            done: false,
            response,
            error: None,
        };
        let body = json!({"name": name, "done": false});
        lock(&self.ops).insert(name.clone(), op);
        (name, body)
    }

    /// A poll of `name`: its JSON, or its work when it is due; `None` for no such operation.
    pub fn poll(&self, name: &str) -> Option<Step<A>> {
        let mut ops = lock(&self.ops);
        let op = ops.get_mut(name)?;
        if !op.done {
            op.polls_left = op.polls_left.saturating_sub(1);
            if op.polls_left == 0 {
                if let Some(a) = op.action.take() {
                    return Some(Step::Run(a));
                }
            }
        }
        Some(Step::Answer(Self::body(name, op)))
    }

    /// Ends `name` (its work done) with `error` (a `google.rpc.Code` and message) or its
    /// response: its JSON.
    pub fn finish(&self, name: &str, error: Option<(i64, String)>) -> Value {
        let mut ops = lock(&self.ops);
        match ops.get_mut(name) {
            Some(op) => {
                (op.done, op.error) = (true, error);
                Self::body(name, op)
            }
            None => json!({"name": name, "done": true}),
        }
    }

    fn body(name: &str, op: &Op<A>) -> Value {
        let mut v = json!({"name": name, "done": op.done});
        match (&op.error, op.done) {
            (Some((code, message)), true) => v["error"] = json!({"code": code, "message": message}),
            (None, true) => v["response"] = op.response.clone(),
            _ => {}
        }
        v
    }
}
