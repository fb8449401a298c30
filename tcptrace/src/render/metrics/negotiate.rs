//! Which exposition format a scraper gets, from its `Accept` header: the protobuf format (the
//! only one that carries native histograms) when it asks for it, OpenMetrics text, or the
//! Prometheus text format 0.0.4, which every scraper understands and is the default.

/// An exposition format.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    /// `application/vnd.google.protobuf; proto=io.prometheus.client.MetricFamily;
    /// encoding=delimited`, with native histograms.
    Protobuf,
    /// OpenMetrics 1.0.0 text.
    OpenMetrics,
    /// Prometheus text 0.0.4.
    Text,
}

impl Format {
    pub const ALL: [Format; 3] = [Self::Protobuf, Self::OpenMetrics, Self::Text];

    pub fn content_type(self) -> &'static str {
        match self {
            Self::Protobuf => {
                "application/vnd.google.protobuf; proto=io.prometheus.client.MetricFamily; encoding=delimited"
            }
            Self::OpenMetrics => "application/openmetrics-text; version=1.0.0; charset=utf-8",
            Self::Text => "text/plain; version=0.0.4; charset=utf-8",
        }
    }

    /// The format one media range of an `Accept` header names, if one of ours.
    fn of_media_range(range: &str) -> Option<(Format, f32)> {
        let mut parts = range.split(';').map(str::trim);
        let media = parts.next()?.to_ascii_lowercase();
        let mut q = 1.0f32;
        let mut proto = None;
        let mut encoding = None;
        let mut version = None;
        for param in parts {
            let Some((key, value)) = param.split_once('=') else {
                continue;
            };
            let value = value.trim().trim_matches('"');
            match key.trim().to_ascii_lowercase().as_str() {
                "q" => {
                    q = value
                        .parse()
                        .ok()
                        .filter(|q: &f32| (0.0..=1.0).contains(q))?
                }
                "proto" => proto = Some(value.to_owned()),
                "encoding" => encoding = Some(value.to_owned()),
                "version" => version = Some(value.to_owned()),
                _ => {}
            }
        }
        let format = match media.as_str() {
            "application/vnd.google.protobuf"
                if proto.as_deref() == Some("io.prometheus.client.MetricFamily")
                    && encoding.as_deref() == Some("delimited") =>
            {
                Format::Protobuf
            }
            // 0.0.1 was the draft's version; the format is the same text.
            "application/openmetrics-text"
                if version
                    .as_deref()
                    .is_none_or(|v| v == "1.0.0" || v == "0.0.1") =>
            {
                Format::OpenMetrics
            }
            "text/plain" if version.as_deref().is_none_or(|v| v == "0.0.4") => Format::Text,
            "*/*" | "text/*" => Format::Text,
            _ => return None,
        };
        Some((format, q))
    }
}

/// The format for an `Accept` header: the acceptable one of highest quality, the first listed
/// on a tie; text 0.0.4 when there is no header or nothing in it is ours.
pub fn negotiate(accept: Option<&str>) -> Format {
    let Some(accept) = accept else {
        return Format::Text;
    };
    let mut best: Option<(Format, f32)> = None;
    for range in accept.split(',') {
        if let Some((format, q)) = Format::of_media_range(range)
            && q > 0.0
            && best.is_none_or(|(_, best_q)| q > best_q)
        {
            best = Some((format, q));
        }
    }
    best.map_or(Format::Text, |(format, _)| format)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prometheus_with_native_histograms_gets_protobuf() {
        // What Prometheus 2.42 sends with --enable-feature=native-histograms.
        let accept = "application/vnd.google.protobuf;proto=io.prometheus.client.MetricFamily;encoding=delimited,application/openmetrics-text;version=1.0.0;q=0.8,application/openmetrics-text;version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1";
        assert_eq!(negotiate(Some(accept)), Format::Protobuf);
    }

    #[test]
    fn prometheus_without_them_gets_openmetrics() {
        let accept = "application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1";
        assert_eq!(negotiate(Some(accept)), Format::OpenMetrics);
    }

    #[test]
    fn text_by_default() {
        assert_eq!(negotiate(None), Format::Text);
        assert_eq!(negotiate(Some("*/*")), Format::Text);
        assert_eq!(negotiate(Some("text/html")), Format::Text);
        assert_eq!(negotiate(Some("")), Format::Text);
        assert_eq!(negotiate(Some(";;;,=,q=")), Format::Text);
    }

    #[test]
    fn quality_decides_and_zero_refuses() {
        assert_eq!(
            negotiate(Some(
                "text/plain;version=0.0.4;q=0.9, application/openmetrics-text;q=0.2"
            )),
            Format::Text
        );
        assert_eq!(
            negotiate(Some(
                "application/openmetrics-text;version=1.0.0;q=0, text/plain"
            )),
            Format::Text
        );
        // Protobuf of another message, or not delimited, is not ours.
        assert_eq!(
            negotiate(Some(
                "application/vnd.google.protobuf;proto=other;encoding=delimited"
            )),
            Format::Text
        );
        assert_eq!(
            negotiate(Some("application/openmetrics-text;version=9.9.9")),
            Format::Text
        );
        assert_eq!(negotiate(Some("text/plain;q=2")), Format::Text);
    }
}
