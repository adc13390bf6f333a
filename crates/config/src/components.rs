//! The smaller component sections: ipfs_connector.ipfshttp, pin_tracker.stateless,
//! monitor.pubsubmon, allocator.balanced, informer.{disk,pinqueue,tags} and observations.

use std::collections::BTreeMap;

use libp2p::Multiaddr;
use serde_json::Value;

use crate::{
    json::{ma1, Obj, Out, Result},
    ConfigError, GoDuration,
};

fn bad<T>(key: &str, msg: impl Into<String>) -> Result<T> {
    Err(ConfigError::invalid(key, msg))
}

/// `ipfs_connector.ipfshttp`.
#[derive(Debug, Clone, PartialEq)]
pub struct IpfsHttpConfig {
    /// `/ip4|ip6|dns*/…/tcp/N` or `/unix/<path>` (see `addr::unix_path`).
    pub node_multiaddress: Multiaddr,
    pub connect_swarms_delay: GoDuration,
    pub ipfs_request_timeout: GoDuration,
    pub pin_timeout: GoDuration,
    pub unpin_timeout: GoDuration,
    pub repogc_timeout: GoDuration,
    pub informer_trigger_interval: i64,
    pub unpin_disable: bool,
}

impl Default for IpfsHttpConfig {
    fn default() -> Self {
        IpfsHttpConfig {
            node_multiaddress: ma1("/ip4/127.0.0.1/tcp/5001"),
            connect_swarms_delay: GoDuration::from_secs(30),
            ipfs_request_timeout: GoDuration::from_secs(300),
            pin_timeout: GoDuration::from_secs(120),
            unpin_timeout: GoDuration::from_secs(3 * 3600),
            repogc_timeout: GoDuration::from_secs(24 * 3600),
            informer_trigger_interval: 0,
            unpin_disable: false,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Default)]
pub struct IpfsConnectorConfig {
    pub ipfshttp: IpfsHttpConfig,
}

impl IpfsConnectorConfig {
    pub(crate) fn from_obj(mut o: Obj) -> Result<Self> {
        let d = IpfsHttpConfig::default();
        let ipfshttp = match o.obj("ipfshttp")? {
            None => d,
            Some(mut c) => {
                let v = IpfsHttpConfig {
                    node_multiaddress: c
                        .maddr_or("node_multiaddress", "/ip4/127.0.0.1/tcp/5001")?,
                    connect_swarms_delay: c
                        .dur_or("connect_swarms_delay", d.connect_swarms_delay)?,
                    ipfs_request_timeout: c
                        .dur_or("ipfs_request_timeout", d.ipfs_request_timeout)?,
                    pin_timeout: c.dur_or("pin_timeout", d.pin_timeout)?,
                    unpin_timeout: c.dur_or("unpin_timeout", d.unpin_timeout)?,
                    repogc_timeout: c.dur_or("repogc_timeout", d.repogc_timeout)?,
                    informer_trigger_interval: c.int_or("informer_trigger_interval", 0)?,
                    unpin_disable: c.bool("unpin_disable")?,
                };
                c.finish();
                v
            }
        };
        o.finish();
        Ok(IpfsConnectorConfig { ipfshttp })
    }

    pub(crate) fn to_value(&self) -> Value {
        let c = &self.ipfshttp;
        let mut h = Out::default();
        h.maddr("node_multiaddress", &c.node_multiaddress)
            .dur("connect_swarms_delay", c.connect_swarms_delay)
            .dur("ipfs_request_timeout", c.ipfs_request_timeout)
            .dur("pin_timeout", c.pin_timeout)
            .dur("unpin_timeout", c.unpin_timeout)
            .dur("repogc_timeout", c.repogc_timeout)
            .put("informer_trigger_interval", c.informer_trigger_interval);
        if c.unpin_disable {
            h.put("unpin_disable", true);
        }
        let mut o = Out::default();
        o.put("ipfshttp", h.done());
        o.done()
    }

    pub(crate) fn validate(&self) -> Result<()> {
        if self.ipfshttp.informer_trigger_interval < 0 {
            return bad(
                "ipfs_connector.ipfshttp.informer_trigger_interval",
                "must be 0 or more",
            );
        }
        Ok(())
    }
}

/// `pin_tracker.stateless`.
#[derive(Debug, Clone, PartialEq)]
pub struct StatelessConfig {
    pub max_pin_queue_size: i64,
    pub concurrent_pins: i64,
    pub priority_pin_max_age: GoDuration,
    pub priority_pin_max_retries: i64,
    /// Ours (upstream has no such key): after this many failed attempts the periodic
    /// recovery leaves an item in `pin_error` until it is recovered by hand; 0 = retry
    /// forever (upstream's behaviour). Omitted from JSON when default.
    pub max_pin_attempts: i64,
}

pub const DEFAULT_MAX_PIN_ATTEMPTS: i64 = 10;

const DEFAULT_MAX_PIN_QUEUE: i64 = 1_000_000;

impl Default for StatelessConfig {
    fn default() -> Self {
        StatelessConfig {
            max_pin_queue_size: DEFAULT_MAX_PIN_QUEUE,
            concurrent_pins: 10,
            priority_pin_max_age: GoDuration::from_secs(24 * 3600),
            priority_pin_max_retries: 5,
            max_pin_attempts: DEFAULT_MAX_PIN_ATTEMPTS,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Default)]
pub struct PinTrackerConfig {
    pub stateless: StatelessConfig,
}

impl PinTrackerConfig {
    pub(crate) fn from_obj(mut o: Obj) -> Result<Self> {
        let d = StatelessConfig::default();
        let stateless = match o.obj("stateless")? {
            None => d,
            Some(mut c) => {
                let v = StatelessConfig {
                    max_pin_queue_size: match c.int_or("max_pin_queue_size", 0)? {
                        0 => DEFAULT_MAX_PIN_QUEUE,
                        n => n,
                    },
                    // As upstream (SetIfNotDefault): missing or 0 takes the default.
                    concurrent_pins: match c.int_or("concurrent_pins", 0)? {
                        0 => d.concurrent_pins,
                        n => n,
                    },
                    priority_pin_max_age: c
                        .dur_or("priority_pin_max_age", d.priority_pin_max_age)?,
                    priority_pin_max_retries: match c.int_or("priority_pin_max_retries", 0)? {
                        0 => d.priority_pin_max_retries,
                        n => n,
                    },
                    max_pin_attempts: c.int_or("max_pin_attempts", DEFAULT_MAX_PIN_ATTEMPTS)?,
                };
                c.finish();
                v
            }
        };
        o.finish();
        Ok(PinTrackerConfig { stateless })
    }

    pub(crate) fn to_value(&self) -> Value {
        let s = &self.stateless;
        let mut h = Out::default();
        if s.max_pin_queue_size != DEFAULT_MAX_PIN_QUEUE {
            h.put("max_pin_queue_size", s.max_pin_queue_size);
        }
        h.put("concurrent_pins", s.concurrent_pins)
            .dur("priority_pin_max_age", s.priority_pin_max_age)
            .put("priority_pin_max_retries", s.priority_pin_max_retries);
        if s.max_pin_attempts != DEFAULT_MAX_PIN_ATTEMPTS {
            h.put("max_pin_attempts", s.max_pin_attempts);
        }
        let mut o = Out::default();
        o.put("stateless", h.done());
        o.done()
    }

    pub(crate) fn validate(&self) -> Result<()> {
        let s = &self.stateless;
        if s.max_pin_queue_size <= 0 {
            return bad(
                "pin_tracker.stateless.max_pin_queue_size",
                "must be greater than 0",
            );
        }
        if s.concurrent_pins <= 0 {
            return bad(
                "pin_tracker.stateless.concurrent_pins",
                "must be greater than 0 (default 10)",
            );
        }
        if s.priority_pin_max_age.is_zero() {
            return bad(
                "pin_tracker.stateless.priority_pin_max_age",
                "must be greater than 0 (default \"24h0m0s\")",
            );
        }
        if s.priority_pin_max_retries <= 0 {
            return bad(
                "pin_tracker.stateless.priority_pin_max_retries",
                "must be greater than 0 (default 5)",
            );
        }
        if s.max_pin_attempts < 0 {
            return bad(
                "pin_tracker.stateless.max_pin_attempts",
                "must be 0 (retry forever) or more (default 10)",
            );
        }
        Ok(())
    }
}

/// `monitor.pubsubmon`.
#[derive(Debug, Clone, PartialEq)]
pub struct PubsubmonConfig {
    pub check_interval: GoDuration,
}

impl Default for PubsubmonConfig {
    fn default() -> Self {
        PubsubmonConfig {
            check_interval: GoDuration::from_secs(15),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Default)]
pub struct MonitorConfig {
    pub pubsubmon: PubsubmonConfig,
}

impl MonitorConfig {
    pub(crate) fn from_obj(mut o: Obj) -> Result<Self> {
        let d = PubsubmonConfig::default();
        let pubsubmon = match o.obj("pubsubmon")? {
            None => d,
            Some(mut c) => {
                let v = PubsubmonConfig {
                    check_interval: c.dur_or("check_interval", d.check_interval)?,
                };
                // Old upstream key, ignored by upstream too.
                c.get("failure_threshold");
                c.finish();
                v
            }
        };
        o.finish();
        Ok(MonitorConfig { pubsubmon })
    }

    pub(crate) fn to_value(&self) -> Value {
        let mut h = Out::default();
        h.dur("check_interval", self.pubsubmon.check_interval);
        let mut o = Out::default();
        o.put("pubsubmon", h.done());
        o.done()
    }

    pub(crate) fn validate(&self) -> Result<()> {
        if self.pubsubmon.check_interval.is_zero() {
            return bad(
                "monitor.pubsubmon.check_interval",
                "must be greater than 0 (default \"15s\")",
            );
        }
        Ok(())
    }
}

/// `allocator.balanced`.
#[derive(Debug, Clone, PartialEq)]
pub struct BalancedConfig {
    pub allocate_by: Vec<String>,
}

impl Default for BalancedConfig {
    fn default() -> Self {
        BalancedConfig {
            allocate_by: vec!["tag:group".into(), "freespace".into()],
        }
    }
}

#[derive(Debug, Clone, PartialEq, Default)]
pub struct AllocatorConfig {
    pub balanced: BalancedConfig,
}

impl AllocatorConfig {
    pub(crate) fn from_obj(mut o: Obj) -> Result<Self> {
        let balanced = match o.obj("balanced")? {
            None => BalancedConfig::default(),
            Some(mut c) => {
                let v = BalancedConfig {
                    allocate_by: c.strings("allocate_by")?.unwrap_or_default(),
                };
                c.finish();
                v
            }
        };
        o.finish();
        Ok(AllocatorConfig { balanced })
    }

    pub(crate) fn to_value(&self) -> Value {
        let mut h = Out::default();
        h.strings("allocate_by", &self.balanced.allocate_by);
        let mut o = Out::default();
        o.put("balanced", h.done());
        o.done()
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct DiskInformerConfig {
    pub metric_ttl: GoDuration,
    /// "freespace" or "reposize".
    pub metric_type: String,
}

impl Default for DiskInformerConfig {
    fn default() -> Self {
        DiskInformerConfig {
            metric_ttl: GoDuration::from_secs(30),
            metric_type: "freespace".into(),
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct PinQueueInformerConfig {
    pub metric_ttl: GoDuration,
    pub weight_bucket_size: i64,
}

impl Default for PinQueueInformerConfig {
    fn default() -> Self {
        PinQueueInformerConfig {
            metric_ttl: GoDuration::from_secs(30),
            weight_bucket_size: 100_000,
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct TagsInformerConfig {
    pub metric_ttl: GoDuration,
    pub tags: BTreeMap<String, String>,
}

impl Default for TagsInformerConfig {
    fn default() -> Self {
        TagsInformerConfig {
            metric_ttl: GoDuration::from_secs(30),
            tags: BTreeMap::from([("group".to_string(), "default".to_string())]),
        }
    }
}

/// Informers are enabled by presence, as upstream.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct InformerConfig {
    pub disk: Option<DiskInformerConfig>,
    pub pinqueue: Option<PinQueueInformerConfig>,
    pub tags: Option<TagsInformerConfig>,
}

impl InformerConfig {
    pub fn default_for_init() -> Self {
        InformerConfig {
            disk: Some(DiskInformerConfig::default()),
            pinqueue: Some(PinQueueInformerConfig::default()),
            tags: Some(TagsInformerConfig::default()),
        }
    }

    pub(crate) fn from_obj(mut o: Obj) -> Result<Self> {
        let disk = match o.obj("disk")? {
            None => None,
            Some(mut c) => {
                let d = DiskInformerConfig::default();
                let v = DiskInformerConfig {
                    metric_ttl: c.dur_or("metric_ttl", d.metric_ttl)?,
                    metric_type: c.string_or("metric_type", &d.metric_type)?,
                };
                c.finish();
                Some(v)
            }
        };
        let pinqueue = match o.obj("pinqueue")? {
            None => None,
            Some(mut c) => {
                let d = PinQueueInformerConfig::default();
                let v = PinQueueInformerConfig {
                    metric_ttl: c.dur_or("metric_ttl", d.metric_ttl)?,
                    weight_bucket_size: match c.int_or("weight_bucket_size", 0)? {
                        0 => d.weight_bucket_size,
                        n => n,
                    },
                };
                c.finish();
                Some(v)
            }
        };
        let tags = match o.obj("tags")? {
            None => None,
            Some(mut c) => {
                let d = TagsInformerConfig::default();
                let v = TagsInformerConfig {
                    metric_ttl: c.dur_or("metric_ttl", d.metric_ttl)?,
                    tags: c.str_map("tags")?.unwrap_or_default(),
                };
                c.finish();
                Some(v)
            }
        };
        o.finish();
        Ok(InformerConfig {
            disk,
            pinqueue,
            tags,
        })
    }

    pub(crate) fn to_value(&self) -> Value {
        let mut o = Out::default();
        if let Some(d) = &self.disk {
            let mut h = Out::default();
            h.dur("metric_ttl", d.metric_ttl)
                .put("metric_type", d.metric_type.clone());
            o.put("disk", h.done());
        }
        if let Some(p) = &self.pinqueue {
            let mut h = Out::default();
            h.dur("metric_ttl", p.metric_ttl)
                .put("weight_bucket_size", p.weight_bucket_size);
            o.put("pinqueue", h.done());
        }
        if let Some(t) = &self.tags {
            let mut h = Out::default();
            let tags: serde_json::Map<String, Value> = t
                .tags
                .iter()
                .map(|(k, v)| (k.clone(), Value::String(v.clone())))
                .collect();
            h.dur("metric_ttl", t.metric_ttl)
                .put("tags", Value::Object(tags));
            o.put("tags", h.done());
        }
        o.done()
    }

    pub(crate) fn validate(&self) -> Result<()> {
        if let Some(d) = &self.disk {
            if d.metric_ttl.is_zero() {
                return bad(
                    "informer.disk.metric_ttl",
                    "must be greater than 0 (default \"30s\")",
                );
            }
            if d.metric_type != "freespace" && d.metric_type != "reposize" {
                return bad(
                    "informer.disk.metric_type",
                    format!(
                        "must be \"freespace\" or \"reposize\", got {:?}",
                        d.metric_type
                    ),
                );
            }
        }
        if let Some(p) = &self.pinqueue {
            if p.metric_ttl.is_zero() {
                return bad(
                    "informer.pinqueue.metric_ttl",
                    "must be greater than 0 (default \"30s\")",
                );
            }
            if p.weight_bucket_size <= 0 {
                return bad(
                    "informer.pinqueue.weight_bucket_size",
                    "must be greater than 0 (default 100000)",
                );
            }
        }
        if let Some(t) = &self.tags {
            if t.metric_ttl.is_zero() {
                return bad(
                    "informer.tags.metric_ttl",
                    "must be greater than 0 (default \"30s\")",
                );
            }
        }
        Ok(())
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct MetricsConfig {
    pub enable_stats: bool,
    pub prometheus_endpoint: Multiaddr,
    pub reporting_interval: GoDuration,
}

impl Default for MetricsConfig {
    fn default() -> Self {
        MetricsConfig {
            enable_stats: false,
            prometheus_endpoint: ma1("/ip4/127.0.0.1/tcp/8888"),
            reporting_interval: GoDuration::from_secs(30),
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct TracingConfig {
    pub enable_tracing: bool,
    pub jaeger_agent_endpoint: Multiaddr,
    pub sampling_prob: f64,
    pub service_name: String,
}

impl Default for TracingConfig {
    fn default() -> Self {
        TracingConfig {
            enable_tracing: false,
            jaeger_agent_endpoint: ma1("/ip4/0.0.0.0/udp/6831"),
            sampling_prob: 0.3,
            service_name: "cluster-daemon".into(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Default)]
pub struct ObservationsConfig {
    pub metrics: MetricsConfig,
    pub tracing: TracingConfig,
}

impl ObservationsConfig {
    pub(crate) fn from_obj(mut o: Obj) -> Result<Self> {
        let dm = MetricsConfig::default();
        let metrics = match o.obj("metrics")? {
            None => dm,
            Some(mut c) => {
                let v = MetricsConfig {
                    enable_stats: c.bool("enable_stats")?,
                    prometheus_endpoint: c
                        .maddr_or("prometheus_endpoint", "/ip4/127.0.0.1/tcp/8888")?,
                    reporting_interval: c.dur_or("reporting_interval", dm.reporting_interval)?,
                };
                c.finish();
                v
            }
        };
        let dt = TracingConfig::default();
        let tracing = match o.obj("tracing")? {
            None => dt,
            Some(mut c) => {
                let v = TracingConfig {
                    enable_tracing: c.bool("enable_tracing")?,
                    jaeger_agent_endpoint: c
                        .maddr_or("jaeger_agent_endpoint", "/ip4/0.0.0.0/udp/6831")?,
                    sampling_prob: c.float_or("sampling_prob", dt.sampling_prob)?,
                    service_name: c.string_or("service_name", &dt.service_name)?,
                };
                c.finish();
                v
            }
        };
        o.finish();
        Ok(ObservationsConfig { metrics, tracing })
    }

    pub(crate) fn to_value(&self) -> Value {
        let m = &self.metrics;
        let mut mo = Out::default();
        mo.put("enable_stats", m.enable_stats)
            .maddr("prometheus_endpoint", &m.prometheus_endpoint)
            .dur("reporting_interval", m.reporting_interval);
        let t = &self.tracing;
        let mut to = Out::default();
        to.put("enable_tracing", t.enable_tracing)
            .maddr("jaeger_agent_endpoint", &t.jaeger_agent_endpoint)
            .put("sampling_prob", t.sampling_prob)
            .put("service_name", t.service_name.clone());
        let mut o = Out::default();
        o.put("metrics", mo.done()).put("tracing", to.done());
        o.done()
    }

    pub(crate) fn validate(&self) -> Result<()> {
        if self.metrics.enable_stats && self.metrics.reporting_interval.is_zero() {
            return bad(
                "observations.metrics.reporting_interval",
                "must be greater than 0 when enable_stats is true",
            );
        }
        if !(0.0..=1.0).contains(&self.tracing.sampling_prob) {
            return bad(
                "observations.tracing.sampling_prob",
                format!(
                    "must be between 0 and 1, got {}",
                    self.tracing.sampling_prob
                ),
            );
        }
        Ok(())
    }
}
