//! `health graph`: renders a ConnectGraph as the graphviz dot file upstream's go-dot writer
//! produces, byte for byte, including the missing final newline.

use std::collections::BTreeMap;

use serde_json::Value;

fn short(id: &str) -> String {
    let chars: Vec<char> = id.chars().collect();
    if chars.len() <= 8 {
        return id.to_string();
    }
    let head: String = chars[..2].iter().collect();
    let tail: String = chars[chars.len() - 6..].iter().collect();
    format!("{head}*{tail}")
}

struct Node<'a> {
    id: String,
    top: &'a str,
    bottom: String,
    group: &'a str,
    color: &'a str,
    shape: &'a str,
    peripheries: u32,
}

impl Node<'_> {
    fn line(&self) -> String {
        let mut s = format!(
            "{} [label=< <B> {} </B> <BR/> <B> {} </B> > group=\"{}\" color=\"{}\" style=\"filled\" colorscheme=\"x11\" \
fontcolor=\"black\" fontname=\"Arial\" shape=\"{}\" ",
            self.id, self.top, self.bottom, self.group, self.color, self.shape
        );
        if self.peripheries > 0 {
            s.push_str(&format!("peripheries=\"{}\" ", self.peripheries));
        }
        s.push(']');
        s
    }
}

fn str_map(v: &Value, key: &str) -> BTreeMap<String, String> {
    v.get(key)
        .and_then(Value::as_object)
        .map(|m| {
            m.iter()
                .map(|(k, v)| (k.clone(), v.as_str().unwrap_or("").to_string()))
                .collect()
        })
        .unwrap_or_default()
}

fn list_map(v: &Value, key: &str) -> BTreeMap<String, Vec<String>> {
    v.get(key)
        .and_then(Value::as_object)
        .map(|m| {
            m.iter()
                .map(|(k, v)| {
                    let l = v.as_array().map(|a| {
                        a.iter()
                            .filter_map(|x| x.as_str().map(String::from))
                            .collect()
                    });
                    (k.clone(), l.unwrap_or_default())
                })
                .collect()
        })
        .unwrap_or_default()
}

/// Renders the dot text for a ConnectGraph JSON value.
pub fn make_dot(g: &Value, all_ipfs_peers: bool) -> String {
    let self_id = g.get("cluster_id").and_then(Value::as_str).unwrap_or("");
    let names = str_map(g, "id_to_peername");
    let cluster_links = list_map(g, "cluster_links");
    let ipfs_links = list_map(g, "ipfs_links");
    let c2i = str_map(g, "cluster_to_ipfs");
    let trust: BTreeMap<String, bool> = g
        .get("cluster_trust_links")
        .and_then(Value::as_object)
        .map(|m| {
            m.iter()
                .map(|(k, v)| (k.clone(), v.as_bool().unwrap_or(false)))
                .collect()
        })
        .unwrap_or_default();

    // The IPFS edge map: only targets that are keys, unless all peers are wanted.
    let mut ipfs_edges: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for (k, targets) in &ipfs_links {
        let kept: Vec<String> = targets
            .iter()
            .filter(|t| all_ipfs_peers || ipfs_links.contains_key(*t))
            .cloned()
            .collect();
        ipfs_edges.insert(k.clone(), kept);
    }
    if all_ipfs_peers {
        let extra: Vec<String> = ipfs_edges.values().flatten().cloned().collect();
        for t in extra {
            ipfs_edges.entry(t).or_default();
        }
    }

    let mut cluster_ids: BTreeMap<&str, String> = BTreeMap::new();
    let mut cluster_nodes = Vec::new();
    for (n, k) in cluster_links.keys().enumerate() {
        let (prefix, color, peripheries) = if k == self_id {
            ("C", "orange", 2)
        } else if trust.get(k).copied().unwrap_or(false) {
            ("T", "orange", 0)
        } else {
            ("C", "darkorange3", 0)
        };
        let id = format!("{prefix}{n}");
        cluster_ids.insert(k.as_str(), id.clone());
        cluster_nodes.push(
            Node {
                id,
                top: names.get(k).map(String::as_str).unwrap_or(""),
                bottom: short(k),
                group: k,
                color,
                shape: "box3d",
                peripheries,
            }
            .line(),
        );
    }

    let mut ipfs_ids: BTreeMap<&str, String> = BTreeMap::new();
    let mut errored_ids: BTreeMap<&str, String> = BTreeMap::new();
    let mut ipfs_nodes = Vec::new();
    for k in ipfs_edges.keys() {
        let id = format!("I{}", ipfs_nodes.len());
        ipfs_ids.insert(k.as_str(), id.clone());
        ipfs_nodes.push(
            Node {
                id,
                top: "IPFS",
                bottom: short(k),
                group: k,
                color: "turquoise3",
                shape: "cylinder",
                peripheries: 0,
            }
            .line(),
        );
    }
    for k in cluster_links.keys() {
        if c2i.contains_key(k) {
            continue;
        }
        let id = format!("I{}", ipfs_nodes.len());
        errored_ids.insert(k.as_str(), id.clone());
        ipfs_nodes.push(
            Node {
                id,
                top: "IPFS",
                bottom: "Errored".into(),
                group: k,
                color: "firebrick1",
                shape: "cylinder",
                peripheries: 0,
            }
            .line(),
        );
    }

    let mut cluster_edges = Vec::new();
    for (k, targets) in &cluster_links {
        let Some(from) = cluster_ids.get(k.as_str()) else {
            continue;
        };
        for t in targets {
            if let Some(to) = cluster_ids.get(t.as_str()) {
                cluster_edges.push(format!("{from} -> {to}"));
            }
        }
    }
    let mut c2i_edges = Vec::new();
    for k in cluster_links.keys() {
        let from = &cluster_ids[k.as_str()];
        match c2i.get(k) {
            Some(ipfs) => {
                if let Some(to) = ipfs_ids.get(ipfs.as_str()) {
                    c2i_edges.push(format!("{from} -> {to}"));
                }
            }
            None => {
                if let Some(to) = errored_ids.get(k.as_str()) {
                    c2i_edges.push(format!("{from} -> {to} [ style=\"dotted\" ]"));
                }
            }
        }
    }
    let mut i_edges = Vec::new();
    for (k, targets) in &ipfs_edges {
        let from = &ipfs_ids[k.as_str()];
        for t in targets {
            if let Some(to) = ipfs_ids.get(t.as_str()) {
                i_edges.push(format!("{from} -> {to}"));
            }
        }
    }

    let block = |lines: &[String]| lines.iter().map(|l| format!("{l}\n")).collect::<String>();
    let mut out = String::from("digraph cluster {\n");
    out.push_str("/* The nodes of the connectivity graph */\n/* The cluster-service peers */\nsubgraph  {\nrank=\"min\"\n");
    out.push_str(&block(&cluster_nodes));
    out.push_str("}\n\n/* The ipfs peers */\nsubgraph  {\nrank=\"max\"\n");
    out.push_str(&block(&ipfs_nodes));
    out.push_str("}\n\n/* Edges representing active connections in the cluster */\n");
    out.push_str("/* The connections among cluster-service peers */\n");
    out.push_str(&block(&cluster_edges));
    out.push_str("\n/* The connections between cluster peers and their ipfs daemons */\n");
    out.push_str(&block(&c2i_edges));
    out.push_str("\n/* The swarm peer connections among ipfs daemons in the cluster */\n");
    out.push_str(&block(&i_edges));
    out.push('}');
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const C: &str = "QmUBuxVHoNNjfmNpTad36UeaFQv3gXAtCv9r6KhmeqhEhD";
    const I: &str = "QmXbiVZd93SLiu9TAm21F2y9JwGiFLydbEVkPBaMR3DZDV";

    #[test]
    fn single_peer_graph() {
        let g = json!({"cluster_id":C,"id_to_peername":{C:"p1"},"ipfs_links":{I:[]},"cluster_links":{C:[]},
            "cluster_trust_links":{C:false},"cluster_to_ipfs":{C:I}});
        let want = format!(
            "digraph cluster {{\n/* The nodes of the connectivity graph */\n/* The cluster-service peers */\nsubgraph  {{\nrank=\"min\"\n\
C0 [label=< <B> p1 </B> <BR/> <B> Qm*eqhEhD </B> > group=\"{C}\" color=\"orange\" style=\"filled\" colorscheme=\"x11\" fontcolor=\"black\" fontname=\"Arial\" shape=\"box3d\" peripheries=\"2\" ]\n\
}}\n\n/* The ipfs peers */\nsubgraph  {{\nrank=\"max\"\n\
I0 [label=< <B> IPFS </B> <BR/> <B> Qm*R3DZDV </B> > group=\"{I}\" color=\"turquoise3\" style=\"filled\" colorscheme=\"x11\" fontcolor=\"black\" fontname=\"Arial\" shape=\"cylinder\" ]\n\
}}\n\n/* Edges representing active connections in the cluster */\n/* The connections among cluster-service peers */\n\n\
/* The connections between cluster peers and their ipfs daemons */\nC0 -> I0\n\n\
/* The swarm peer connections among ipfs daemons in the cluster */\n}}"
        );
        assert_eq!(make_dot(&g, false), want);
    }

    #[test]
    fn errored_trusted_and_all_peers() {
        let c2 = "QmV35LjbEGPfN7KfMAJp43VV2enwXqqQf5esx4vUcgHDQJ";
        let outside = "QmPFKAGZbUjdzt8BBx8VTWCe9UeUQVcoqHFehSPzN5LSsq";
        let g = json!({"cluster_id":C,"id_to_peername":{C:"p1",c2:"p2"},"ipfs_links":{I:[outside]},
            "cluster_links":{C:[c2],c2:[C]},"cluster_trust_links":{C:false,c2:true},"cluster_to_ipfs":{C:I}});
        let dot = make_dot(&g, false);
        assert!(dot.contains("\nT1 [label=< <B> p2 </B>"), "{dot}");
        assert!(
            dot.contains("\nI1 [label=< <B> IPFS </B> <BR/> <B> Errored </B> > group=\"QmV35"),
            "{dot}"
        );
        assert!(dot.contains("\nC0 -> T1\nT1 -> C0\n"), "{dot}");
        assert!(dot.contains("\nT1 -> I1 [ style=\"dotted\" ]\n"), "{dot}");
        assert!(!dot.contains("Qm*N5LSsq"));
        let all = make_dot(&g, true);
        assert!(all.contains("<B> Qm*N5LSsq </B>"), "{all}");
        assert!(
            all.contains("\nI1 -> I0\n") || all.contains("\nI0 -> I1\n"),
            "{all}"
        );
        assert!(!all.ends_with('\n'));
    }
}
