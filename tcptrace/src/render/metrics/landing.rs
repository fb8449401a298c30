//! The page at `/`: what this is and where the metrics are, as Prometheus exporters show it.

/// The landing page's HTML.
pub fn page(version: &str) -> String {
    format!(
        "<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"><title>tcptrace exporter</title></head>\n\
         <body><h1>tcptrace exporter</h1>\n\
         <p>Every TCP state transition of this host, aggregated, with the sockets per state: \
         tcptrace {version}.</p>\n\
         <ul><li><a href=\"/metrics\">Metrics</a></li>\n<li><a href=\"/healthz\">Health</a></li></ul>\n\
         </body></html>\n"
    )
}
