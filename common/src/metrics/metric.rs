//! The histograms recorded per endpoint ([`Metric`]) and their names, as they appear
//! on the wire, in saved files, thresholds and reports.

/// Histograms recorded per endpoint, all in microseconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Metric {
    /// Request start to the full response (for SSE: the end of the stream).
    ResponseTime = 0,
    /// Request start to the response headers.
    TimeToHeaders = 1,
    /// Request start to the first event that is not a ping.
    Ttfe = 2,
    /// Request start to the first text chunk (`text_chunk`, `message`, `agent_message`).
    Ttft = 3,
    /// Response headers to the end of the stream.
    StreamDuration = 4,
    /// Between consecutive events of a stream (pings included).
    EventGap = 5,
    /// Between consecutive text chunks of a stream.
    ChunkGap = 6,
    /// The server's own `elapsed_time` of `workflow_finished` (Dify), for comparison
    /// with what the client saw.
    ServerElapsed = 7,
    /// Like `ResponseTime`, for successful requests only; recorded where requests are
    /// split by replica, so a dead replica's instant failures do not make it look fast.
    ResponseTimeOk = 8,
    /// Dify: the response headers to `workflow_started`, the wait in dify-api and its
    /// Celery queue before the workflow runs (not part of any node's `elapsed_time`).
    Queueing = 9,
    /// Dify: `workflow_finished` to the end of the response body, the server's relay
    /// closing the stream (about 1 s on dify-api 1.14.1); after the verdict, so not in
    /// `response_time`.
    StreamTail = 10,
}

/// How many metrics there are: the length of every per-metric array.
pub const METRIC_COUNT: usize = 11;

impl Metric {
    /// Every metric, in index order (`metric as usize`).
    pub const ALL: [Metric; METRIC_COUNT] = [
        Metric::ResponseTime,
        Metric::TimeToHeaders,
        Metric::Ttfe,
        Metric::Ttft,
        Metric::StreamDuration,
        Metric::EventGap,
        Metric::ChunkGap,
        Metric::ServerElapsed,
        Metric::ResponseTimeOk,
        Metric::Queueing,
        Metric::StreamTail,
    ];

    /// The metric's name on the wire, in saved files and in thresholds (`ttfe`).
    pub fn as_str(self) -> &'static str {
        match self {
            Metric::ResponseTime => "response_time",
            Metric::TimeToHeaders => "time_to_headers",
            Metric::Ttfe => "ttfe",
            Metric::Ttft => "ttft",
            Metric::StreamDuration => "stream_duration",
            Metric::EventGap => "event_gap",
            Metric::ChunkGap => "chunk_gap",
            Metric::ServerElapsed => "server_elapsed",
            Metric::ResponseTimeOk => "response_time_ok",
            Metric::Queueing => "queueing",
            Metric::StreamTail => "stream_tail",
        }
    }

    /// The metric of that name, or `None` for a name Barrage does not record.
    pub fn parse(name: &str) -> Option<Metric> {
        Metric::ALL.into_iter().find(|m| m.as_str() == name)
    }
}
