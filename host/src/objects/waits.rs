//! Which objects wait on which. An object's event that calls another
//! object waits for it; if that object (or one it waits on) is itself
//! waiting for the first, neither can ever go on. The call chain catches a
//! call back into an object on the same path; this catches two paths
//! crossing (A calls B while B calls A), failing the call that would close
//! the cycle at once instead of both waiting out their wall-clock limits.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};

use super::error::ObjectError;
use super::id::ObjectKey;

/// Edges `waiter -> awaited`, with how many calls make each.
type Graph = HashMap<ObjectKey, HashMap<ObjectKey, usize>>;

#[derive(Default)]
pub(crate) struct WaitsFor {
    graph: Arc<Mutex<Graph>>,
}

/// A call in flight from one object to another; the edge goes when it
/// is dropped.
pub(crate) struct Waiting {
    graph: Arc<Mutex<Graph>>,
    waiter: ObjectKey,
    awaited: ObjectKey,
}

impl WaitsFor {
    /// Records that `waiter` now waits on `awaited`, unless `awaited`
    /// already waits (directly or not) on `waiter`.
    pub(crate) fn begin(
        &self,
        waiter: &ObjectKey,
        awaited: &ObjectKey,
    ) -> Result<Waiting, ObjectError> {
        let mut graph = lock(&self.graph);
        if reaches(&graph, awaited, waiter) {
            return Err(ObjectError::Cycle(format!(
                "{awaited} (it is waiting, directly or through other objects, on {waiter}: a deadlock)"
            )));
        }
        *graph
            .entry(waiter.clone())
            .or_default()
            .entry(awaited.clone())
            .or_default() += 1;
        Ok(Waiting {
            graph: self.graph.clone(),
            waiter: waiter.clone(),
            awaited: awaited.clone(),
        })
    }
}

impl Drop for Waiting {
    fn drop(&mut self) {
        let mut graph = lock(&self.graph);
        if let Some(edges) = graph.get_mut(&self.waiter) {
            if let Some(count) = edges.get_mut(&self.awaited) {
                *count -= 1;
                if *count == 0 {
                    edges.remove(&self.awaited);
                }
            }
            if edges.is_empty() {
                graph.remove(&self.waiter);
            }
        }
    }
}

/// Whether `from` waits, through any path, on `to`.
fn reaches(graph: &Graph, from: &ObjectKey, to: &ObjectKey) -> bool {
    let mut stack = vec![from];
    let mut seen = std::collections::HashSet::new();
    while let Some(node) = stack.pop() {
        if node == to {
            return true;
        }
        if seen.insert(node)
            && let Some(edges) = graph.get(node)
        {
            stack.extend(edges.keys());
        }
    }
    false
}

fn lock(graph: &Mutex<Graph>) -> MutexGuard<'_, Graph> {
    graph.lock().unwrap_or_else(|p| p.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(n: u8) -> ObjectKey {
        ObjectKey::numbered(n)
    }

    #[test]
    fn crossing_calls_fail_at_once_and_edges_go_with_their_calls() {
        let waits = WaitsFor::default();
        let a_on_b = waits.begin(&key(1), &key(2)).unwrap();
        let b_on_c = waits.begin(&key(2), &key(3)).unwrap();
        // C calling A would close A -> B -> C -> A.
        assert!(matches!(
            waits.begin(&key(3), &key(1)),
            Err(ObjectError::Cycle(_))
        ));
        // Unrelated calls go through.
        let _d_on_a = waits.begin(&key(4), &key(1)).unwrap();
        drop(b_on_c);
        let c_on_a = waits.begin(&key(3), &key(1)).unwrap();
        drop(a_on_b);
        drop(c_on_a);
        let _b_on_a = waits.begin(&key(2), &key(1)).unwrap();
    }
}
