//! `ServiceConfig`: the whole service.json. Sections are read with upstream's rules (see
//! json.rs), written back in upstream's order and layout, and validated with upstream-like
//! messages.

use serde_json::Value;

use crate::{
    api::ApiConfig,
    cluster::ClusterConfig,
    components::{
        AllocatorConfig, InformerConfig, IpfsConnectorConfig, MonitorConfig, ObservationsConfig,
        PinTrackerConfig,
    },
    consensus::{ConsensusConfig, RaftConfig},
    internal::InternalConfig,
    json::{Obj, Out, Result},
    ClusterSecret, ConfigError,
};

#[derive(Debug, Clone, PartialEq)]
pub struct ServiceConfig {
    pub cluster: ClusterConfig,
    pub consensus: ConsensusConfig,
    pub api: ApiConfig,
    pub ipfs_connector: IpfsConnectorConfig,
    pub pin_tracker: PinTrackerConfig,
    pub monitor: MonitorConfig,
    pub allocator: AllocatorConfig,
    pub informer: InformerConfig,
    pub observations: ObservationsConfig,
    pub internal: InternalConfig,
}

impl ServiceConfig {
    /// What `init` writes: every section with upstream's defaults, raft consensus, all
    /// three APIs and the three default informers.
    pub fn default_for_init(peername: &str, secret: ClusterSecret) -> Self {
        ServiceConfig {
            cluster: ClusterConfig {
                peername: peername.to_string(),
                secret,
                ..ClusterConfig::default()
            },
            consensus: ConsensusConfig {
                raft: Some(RaftConfig::default()),
                crdt: None,
            },
            api: ApiConfig::default_for_init(),
            ipfs_connector: IpfsConnectorConfig::default(),
            pin_tracker: PinTrackerConfig::default(),
            monitor: MonitorConfig::default(),
            allocator: AllocatorConfig::default(),
            informer: InformerConfig::default_for_init(),
            observations: ObservationsConfig::default(),
            internal: InternalConfig::default(),
        }
    }

    /// Parses service.json text. Unknown sections and keys are logged (one warning each)
    /// and ignored; sections missing from the file get their defaults, except the optional
    /// ones (APIs, informers, consensus components) whose presence means "enabled".
    pub fn from_json(text: &str) -> Result<Self> {
        let v: Value = serde_json::from_str(text).map_err(|source| ConfigError::Json {
            path: "service.json".into(),
            source,
        })?;
        Self::from_value(&v)
    }

    pub(crate) fn from_value(v: &Value) -> Result<Self> {
        let mut top = Obj::new("", v)?;
        // Sections are read in this order; a missing section gets defaults.
        let cluster = match top.obj("cluster")? {
            Some(o) => ClusterConfig::from_obj(o)?,
            None => {
                // Upstream: a missing cluster section still needs listen addresses, so
                // validation will say so; keep everything else at defaults.
                ClusterConfig {
                    listen_multiaddress: Vec::new(),
                    ..ClusterConfig::default()
                }
            }
        };
        let consensus = match top.obj("consensus")? {
            Some(o) => ConsensusConfig::from_obj(o)?,
            None => ConsensusConfig::default(),
        };
        let api = match top.obj("api")? {
            Some(o) => ApiConfig::from_obj(o)?,
            None => ApiConfig::default(),
        };
        let ipfs_connector = match top.obj("ipfs_connector")? {
            Some(o) => IpfsConnectorConfig::from_obj(o)?,
            None => IpfsConnectorConfig::default(),
        };
        let pin_tracker = match top.obj("pin_tracker")? {
            Some(o) => PinTrackerConfig::from_obj(o)?,
            None => PinTrackerConfig::default(),
        };
        let monitor = match top.obj("monitor")? {
            Some(o) => MonitorConfig::from_obj(o)?,
            None => MonitorConfig::default(),
        };
        let allocator = match top.obj("allocator")? {
            Some(o) => AllocatorConfig::from_obj(o)?,
            None => AllocatorConfig::default(),
        };
        let informer = match top.obj("informer")? {
            Some(o) => InformerConfig::from_obj(o)?,
            None => InformerConfig::default(),
        };
        let observations = match top.obj("observations")? {
            Some(o) => ObservationsConfig::from_obj(o)?,
            None => ObservationsConfig::default(),
        };
        let internal = match top.obj("internal")? {
            Some(o) => InternalConfig::from_obj(o)?,
            None => InternalConfig::default(),
        };
        // Upstream's remote-configuration pointer (`{"source": "<url>"}`, written by
        // ipfs-cluster-follow init). ipfs-cluster-follow fetches it at start and writes the
        // fetched sections beside it; the services read those sections.
        let _ = top.string("source")?;
        top.finish();
        Ok(ServiceConfig {
            cluster,
            consensus,
            api,
            ipfs_connector,
            pin_tracker,
            monitor,
            allocator,
            informer,
            observations,
            internal,
        })
    }

    pub(crate) fn to_value(&self) -> Value {
        let mut o = Out::default();
        o.put("cluster", self.cluster.to_value())
            .put("consensus", self.consensus.to_value())
            .put("api", self.api.to_value())
            .put("ipfs_connector", self.ipfs_connector.to_value())
            .put("pin_tracker", self.pin_tracker.to_value())
            .put("monitor", self.monitor.to_value())
            .put("allocator", self.allocator.to_value())
            .put("informer", self.informer.to_value())
            .put("observations", self.observations.to_value())
            .put("internal", self.internal.to_value());
        o.done()
    }

    /// service.json text in upstream's key order, two-space indented.
    pub fn to_json_pretty(&self) -> String {
        let mut s = serde_json::to_string_pretty(&self.to_value()).expect("JSON values serialize");
        s.push('\n');
        s
    }

    /// Upstream's validation rules; the first failure is returned.
    pub fn validate(&self) -> Result<()> {
        self.cluster.validate()?;
        self.consensus.validate()?;
        self.api.validate()?;
        self.ipfs_connector.validate()?;
        self.pin_tracker.validate()?;
        self.monitor.validate()?;
        self.informer.validate()?;
        self.observations.validate()?;
        self.internal.validate()?;
        if self.observations.metrics.enable_stats {
            for k in crate::ServiceKind::ALL {
                self.metrics_addr(k)?;
            }
        }
        Ok(())
    }

    /// Where `service` serves Prometheus `/metrics` (see `InternalConfig::metrics_addr`).
    pub fn metrics_addr(&self, service: crate::ServiceKind) -> Result<std::net::SocketAddr> {
        self.internal
            .metrics_addr(service, &self.observations.metrics.prometheus_endpoint)
    }

    /// The raft section (validate() guarantees it exists on a loaded Peer).
    pub fn raft(&self) -> Result<&RaftConfig> {
        self.consensus.raft.as_ref().ok_or_else(|| {
            ConfigError::invalid("consensus", "no raft section; add \"raft\" under \"consensus\" (see `ipfs-cluster-service init`)")
        })
    }
}
