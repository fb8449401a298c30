//! The Prometheus exposition of `tcptrace export`: what a scrape shows ([`Exposition`]: the
//! aggregation's latest snapshot, handed over by the event loop, and the census taken at the
//! scrape), encoded by the Prometheus project's own client library in the format the scraper
//! asked for ([`negotiate`]). Pure: typed data in, bytes out.

pub mod collector;
pub mod exposition;
pub mod landing;
pub mod namespaces;
pub mod negotiate;

use std::sync::Arc;

use prometheus_client::{
    encoding::{prometheus_protobuf, prometheus_text, text},
    registry::Registry,
};

pub use self::exposition::{CensusFacts, Exposition, ListenerQueue, Published};
use self::{collector::ExpositionCollector, negotiate::Format};

/// Encodes the exposition in `format`.
pub fn encode(format: Format, exposition: Arc<Exposition>) -> Result<Vec<u8>, EncodeError> {
    let mut registry = Registry::default();
    registry.register_collector(Box::new(ExpositionCollector(exposition)));
    match format {
        Format::Protobuf => prometheus_protobuf::encode_to_vec(&registry)
            .map_err(|err| EncodeError(err.to_string())),
        Format::OpenMetrics => {
            let mut out = String::new();
            text::encode(&mut out, &registry).map_err(|err| EncodeError(err.to_string()))?;
            Ok(out.into_bytes())
        }
        Format::Text => {
            let mut out = String::new();
            prometheus_text::encode(&mut out, &registry)
                .map_err(|err| EncodeError(err.to_string()))?;
            Ok(out.into_bytes())
        }
    }
}

#[derive(Debug, thiserror::Error)]
#[error("encoding the metrics failed: {0}")]
pub struct EncodeError(String);

#[cfg(test)]
mod tests;
