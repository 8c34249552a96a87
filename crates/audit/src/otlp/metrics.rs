//! The MCP operation histograms, aggregated in process and exported as
//! OTLP metrics.
//!
//! `mcp.server.operation.duration`: from Warden reading a request to
//! Warden answering it. `mcp.client.operation.duration`: Warden's own
//! request to the upstream, sent to answered. Both in seconds, with the
//! conventions' bucket boundaries ([`BOUNDS`]) and attributes
//! (`mcp.method.name`, `gen_ai.tool.name`, `error.type`,
//! `gen_ai.operation.name`, `mcp.protocol.version`, `network.transport`),
//! cumulative, so a failed export loses nothing the next one does not
//! carry. Series are bounded ([`MAX_SERIES`] per histogram): past it, an
//! observation joins the one series marked `otel.metric.overflow=true`.

use std::collections::HashMap;
use std::hash::{DefaultHasher, Hash, Hasher};
use std::sync::Mutex;
use std::time::{Duration, SystemTime};

use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use opentelemetry_proto::tonic::common::v1::KeyValue;
use opentelemetry_proto::tonic::metrics::v1::{
    AggregationTemporality, Histogram as HistogramData, HistogramDataPoint, Metric,
    ResourceMetrics, ScopeMetrics, metric,
};

use super::{kv, unix_nanos};

/// The conventions' explicit bucket boundaries, seconds.
pub const BOUNDS: [f64; 14] = [
    0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0,
];

/// Attribute sets kept per histogram, at most.
pub const MAX_SERIES: usize = 2000;

/// What an observation is about (the metric's attributes).
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Labels<'a> {
    pub method: &'a str,
    pub tool: Option<&'a str>,
    pub error_type: Option<&'a str>,
    pub protocol_version: Option<&'a str>,
    pub transport: &'a str,
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Key {
    method: String,
    tool: Option<String>,
    error_type: Option<String>,
    protocol_version: Option<String>,
    transport: String,
    overflow: bool,
}

#[derive(Debug, Clone)]
struct Counts {
    buckets: [u64; BOUNDS.len() + 1],
    count: u64,
    sum: f64,
    min: f64,
    max: f64,
}

#[derive(Debug, Default)]
struct Series {
    /// By the hash of the labels (collisions share a bucket).
    by_hash: HashMap<u64, Vec<(Key, Counts)>>,
    len: usize,
}

/// One histogram of durations.
#[derive(Debug, Default)]
pub(crate) struct Histogram {
    series: Mutex<Series>,
}

/// The two MCP histograms and when they started counting.
#[derive(Debug)]
pub(crate) struct Histograms {
    pub server: Histogram,
    pub client: Histogram,
    start: SystemTime,
}

// === impl Histogram ===

impl Histogram {
    /// Count one operation of `duration`.
    pub(crate) fn record(&self, labels: &Labels<'_>, duration: Duration) {
        let seconds = duration.as_secs_f64();
        let hash = labels.hash_value();
        let Ok(mut series) = self.series.lock() else {
            return;
        };
        if let Some((_, counts)) = series
            .by_hash
            .get_mut(&hash)
            .and_then(|entries| entries.iter_mut().find(|(key, _)| labels.is(key)))
        {
            counts.add(seconds);
            return;
        }
        let (hash, key) = if series.len < MAX_SERIES {
            (hash, labels.key())
        } else {
            (Key::OVERFLOW_HASH, Key::overflow())
        };
        let entries = series.by_hash.entry(hash).or_default();
        if let Some((_, counts)) = entries.iter_mut().find(|(k, _)| *k == key) {
            counts.add(seconds);
            return;
        }
        entries.push((key, Counts::first(seconds)));
        series.len += 1;
    }

    fn points(&self, start: u64, now: u64) -> Vec<HistogramDataPoint> {
        let Ok(series) = self.series.lock() else {
            return Vec::new();
        };
        series
            .by_hash
            .values()
            .flatten()
            .map(|(key, counts)| HistogramDataPoint {
                attributes: key.attributes(),
                start_time_unix_nano: start,
                time_unix_nano: now,
                count: counts.count,
                sum: Some(counts.sum),
                bucket_counts: counts.buckets.to_vec(),
                explicit_bounds: BOUNDS.to_vec(),
                min: Some(counts.min),
                max: Some(counts.max),
                ..HistogramDataPoint::default()
            })
            .collect()
    }
}

// === impl Histograms ===

impl Histograms {
    pub(crate) fn new() -> Histograms {
        Histograms {
            server: Histogram::default(),
            client: Histogram::default(),
            start: SystemTime::now(),
        }
    }

    /// Both histograms as one export request (`None`: nothing counted yet).
    pub(crate) fn request(
        &self,
        resource: &opentelemetry_proto::tonic::resource::v1::Resource,
    ) -> Option<ExportMetricsServiceRequest> {
        let start = unix_nanos(self.start);
        let now = unix_nanos(SystemTime::now());
        let metrics: Vec<Metric> = [
            (
                "mcp.server.operation.duration",
                "The duration of the MCP request or notification as observed on the receiver from the time it was received until the result or ack is sent.",
                &self.server,
            ),
            (
                "mcp.client.operation.duration",
                "The duration of the MCP request or notification as observed on the sender from the time it was sent until the response or ack is received.",
                &self.client,
            ),
        ]
        .into_iter()
        .filter_map(|(name, description, histogram)| {
            let points = histogram.points(start, now);
            (!points.is_empty()).then(|| Metric {
                name: name.into(),
                description: description.into(),
                unit: "s".into(),
                data: Some(metric::Data::Histogram(HistogramData {
                    data_points: points,
                    aggregation_temporality: AggregationTemporality::Cumulative as i32,
                })),
                ..Metric::default()
            })
        })
        .collect();
        if metrics.is_empty() {
            return None;
        }
        Some(ExportMetricsServiceRequest {
            resource_metrics: vec![ResourceMetrics {
                resource: Some(resource.clone()),
                scope_metrics: vec![ScopeMetrics {
                    scope: Some(super::scope("warden.mcp")),
                    metrics,
                    schema_url: String::new(),
                }],
                schema_url: String::new(),
            }],
        })
    }
}

// === impl Labels ===

impl Labels<'_> {
    fn hash_value(&self) -> u64 {
        let mut hasher = DefaultHasher::new();
        self.method.hash(&mut hasher);
        self.tool.hash(&mut hasher);
        self.error_type.hash(&mut hasher);
        self.protocol_version.hash(&mut hasher);
        self.transport.hash(&mut hasher);
        hasher.finish()
    }

    fn is(&self, key: &Key) -> bool {
        !key.overflow
            && key.method == self.method
            && key.tool.as_deref() == self.tool
            && key.error_type.as_deref() == self.error_type
            && key.protocol_version.as_deref() == self.protocol_version
            && key.transport == self.transport
    }

    fn key(&self) -> Key {
        Key {
            method: self.method.to_owned(),
            tool: self.tool.map(str::to_owned),
            error_type: self.error_type.map(str::to_owned),
            protocol_version: self.protocol_version.map(str::to_owned),
            transport: self.transport.to_owned(),
            overflow: false,
        }
    }
}

// === impl Key ===

impl Key {
    /// Not a hash of any labels in practice; collisions are still handled.
    const OVERFLOW_HASH: u64 = 0x6f76_6572_666c_6f77;

    fn overflow() -> Key {
        Key {
            method: String::new(),
            tool: None,
            error_type: None,
            protocol_version: None,
            transport: String::new(),
            overflow: true,
        }
    }

    fn attributes(&self) -> Vec<KeyValue> {
        if self.overflow {
            return vec![KeyValue {
                key: "otel.metric.overflow".into(),
                key_strindex: 0,
                value: Some(opentelemetry_proto::tonic::common::v1::AnyValue {
                    value: Some(
                        opentelemetry_proto::tonic::common::v1::any_value::Value::BoolValue(true),
                    ),
                }),
            }];
        }
        let mut attributes = vec![
            kv("mcp.method.name", &*self.method),
            kv("network.transport", &*self.transport),
        ];
        if let Some(tool) = &self.tool {
            attributes.push(kv("gen_ai.tool.name", &**tool));
        }
        if self.method == "tools/call" {
            attributes.push(kv("gen_ai.operation.name", "execute_tool"));
        }
        if let Some(error) = &self.error_type {
            attributes.push(kv("error.type", &**error));
        }
        if let Some(version) = &self.protocol_version {
            attributes.push(kv("mcp.protocol.version", &**version));
        }
        attributes
    }
}

// === impl Counts ===

impl Counts {
    fn first(seconds: f64) -> Counts {
        let mut counts = Counts {
            buckets: [0; BOUNDS.len() + 1],
            count: 0,
            sum: 0.0,
            min: seconds,
            max: seconds,
        };
        counts.add(seconds);
        counts
    }

    fn add(&mut self, seconds: f64) {
        // Buckets are (previous bound, bound]; the last is (300, +inf).
        let bucket = BOUNDS.partition_point(|bound| *bound < seconds);
        self.buckets[bucket] += 1;
        self.count += 1;
        self.sum += seconds;
        self.min = self.min.min(seconds);
        self.max = self.max.max(seconds);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels(tool: &str) -> Labels<'_> {
        Labels {
            method: "tools/call",
            tool: Some(tool),
            error_type: None,
            protocol_version: Some("2025-06-18"),
            transport: "tcp",
        }
    }

    #[test]
    fn observations_fall_in_the_conventions_buckets() {
        let histogram = Histogram::default();
        histogram.record(&labels("a"), Duration::from_millis(10));
        histogram.record(&labels("a"), Duration::from_millis(15));
        histogram.record(&labels("a"), Duration::from_secs(400));
        histogram.record(&labels("b"), Duration::from_millis(1));
        let points = histogram.points(1, 2);
        assert_eq!(points.len(), 2);
        let a = points
            .iter()
            .find(|p| p.count == 3)
            .expect("the series of a");
        assert_eq!(a.bucket_counts[0], 1, "10 ms is in (.., 0.01]");
        assert_eq!(a.bucket_counts[1], 1, "15 ms is in (0.01, 0.02]");
        assert_eq!(a.bucket_counts[14], 1, "400 s is past the last bound");
        assert_eq!(a.min, Some(0.01));
        assert_eq!(a.max, Some(400.0));
        assert!(
            a.attributes
                .iter()
                .any(|kv| kv.key == "gen_ai.operation.name")
        );
    }

    #[test]
    fn series_past_the_bound_share_the_overflow_series() {
        let histogram = Histogram::default();
        let names: Vec<String> = (0..MAX_SERIES + 5).map(|i| format!("tool-{i}")).collect();
        for name in &names {
            histogram.record(&labels(name), Duration::from_millis(1));
        }
        let points = histogram.points(1, 2);
        assert_eq!(points.len(), MAX_SERIES + 1);
        let overflow = points
            .iter()
            .find(|p| {
                p.attributes
                    .iter()
                    .any(|kv| kv.key == "otel.metric.overflow")
            })
            .expect("overflow series");
        assert_eq!(overflow.count, 5);
    }
}
