//! The DAG as a DOT graph, as go-ds-crdt's `DotDAG` writes it (upstream's
//! `ipfs-cluster-service state crdt dot`): a debugging view of how much the DAG branches.
//! Nodes are walked depth first from each head, in the order go-ds-crdt walks them, each
//! printed once; only the local store is read (a node that is not here is an error).

use std::collections::HashSet;
use std::io::Write;

use cid::Cid;

use crate::error::CrdtError;
use crate::node::decode_node;
use crate::store::CrdtStore;

impl CrdtStore {
    /// Writes the DAG reachable from the current heads as DOT text to `w`.
    pub fn write_dot(&self, w: &mut impl Write) -> Result<(), CrdtError> {
        let io = |e: std::io::Error| CrdtError::Io(e.to_string());
        let heads: Vec<Cid> = self.heads()?.into_iter().map(|(c, _)| c).collect();
        writeln!(w, "digraph CRDTDAG {{").map_err(io)?;
        writeln!(w, "subgraph heads {{").map_err(io)?;
        for h in &heads {
            writeln!(w, "{h}").map_err(io)?;
        }
        writeln!(w, "}}").map_err(io)?;
        let mut seen = HashSet::new();
        // An explicit stack (a DAG can be thousands of nodes deep): links pushed in reverse
        // so they are visited in order, as go-ds-crdt's recursion does.
        let mut stack: Vec<Cid> = heads.iter().rev().copied().collect();
        while let Some(c) = stack.pop() {
            if !seen.insert(c) {
                continue;
            }
            let bytes = self
                .get_block(&c)?
                .ok_or_else(|| CrdtError::MissingNode { cid: c.to_string() })?;
            let node = decode_node(&c, &bytes)?;
            let long = c.to_string();
            let short = &long[long.len().saturating_sub(4)..];
            writeln!(
                w,
                "{long} [label=\"{} | {short}: +{} -{}\"]",
                node.delta.priority,
                node.delta.elements.len(),
                node.delta.tombstones.len()
            )
            .map_err(io)?;
            write!(w, "{long} -> {{").map_err(io)?;
            for l in &node.links {
                write!(w, "{l} ").map_err(io)?;
            }
            writeln!(w, "}}").map_err(io)?;
            writeln!(w, "subgraph sg_{long} {{").map_err(io)?;
            for l in &node.links {
                writeln!(w, "{l}").map_err(io)?;
            }
            writeln!(w, "}}").map_err(io)?;
            stack.extend(node.links.iter().rev().copied());
        }
        writeln!(w, "}}").map_err(io)?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use crate::{CrdtConfig, CrdtStore};

    #[tokio::test]
    async fn dot_lists_heads_then_each_node_once_with_its_links() {
        let dir = tempfile::tempdir().unwrap();
        let s = CrdtStore::open(&dir.path().join("crdt.redb"), CrdtConfig::default()).unwrap();
        let a = s.put("/a", b"1".to_vec()).await.unwrap();
        let b = s.put("/b", b"2".to_vec()).await.unwrap();
        let mut out = Vec::new();
        s.write_dot(&mut out).unwrap();
        let text = String::from_utf8(out).unwrap();
        let (ca, cb) = (a.cid.to_string(), b.cid.to_string());
        let want = format!(
            "digraph CRDTDAG {{\nsubgraph heads {{\n{cb}\n}}\n\
             {cb} [label=\"2 | {}: +1 -0\"]\n{cb} -> {{{ca} }}\nsubgraph sg_{cb} {{\n{ca}\n}}\n\
             {ca} [label=\"1 | {}: +1 -0\"]\n{ca} -> {{}}\nsubgraph sg_{ca} {{\n}}\n}}\n",
            &cb[cb.len() - 4..],
            &ca[ca.len() - 4..],
        );
        assert_eq!(text, want);
    }
}
