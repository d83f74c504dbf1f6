//! A minimal client of the daemons' admin server (HTTP/1.0 `GET` over loopback), for the demo and
//! the system tests: status and body, and the sum of a metric's samples in `/metrics`.
//!
//! Must never: be used against anything but a loopback admin server (no TLS, no redirects).

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

/// One answer: status code and body.
pub struct Answer {
    pub status: u16,
    pub body: String,
}

/// `GET path` on `addr` (`host:port`); `None` when nothing answers.
pub fn get(addr: &str, path: &str) -> Option<Answer> {
    let mut s = TcpStream::connect(addr).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(10))).ok()?;
    write!(s, "GET {path} HTTP/1.0\r\nHost: {addr}\r\n\r\n").ok()?;
    let mut raw = String::new();
    s.read_to_string(&mut raw).ok()?;
    let (head, body) = raw.split_once("\r\n\r\n")?;
    let status = head.split_whitespace().nth(1)?.parse().ok()?;
    Some(Answer {
        status,
        body: body.to_owned(),
    })
}

/// The sum of every sample of `name` whose labels contain `label` (`""`: all of them) in a
/// Prometheus/OpenMetrics text.
pub fn metric_sum(text: &str, name: &str, label: &str) -> f64 {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| {
            let (series, value) = l.rsplit_once(' ')?;
            let (n, labels) = match series.split_once('{') {
                Some((n, rest)) => (n, rest),
                None => (series, ""),
            };
            (n == name && labels.contains(label)).then(|| value.parse::<f64>().ok())?
        })
        // An empty float sum is -0.0: add 0.0 so that none prints as "0".
        .sum::<f64>()
        + 0.0
}

#[cfg(test)]
mod tests {
    use super::metric_sum;

    #[test]
    fn sums_the_samples_of_one_metric_and_label() {
        let text = "# TYPE x counter\nx_total{outcome=\"acked\"} 5\nx_total{outcome=\"spooled\"} 2\nx_totalish 9\ny 1\n# EOF";
        assert_eq!(metric_sum(text, "x_total", ""), 7.0);
        assert_eq!(metric_sum(text, "x_total", "outcome=\"acked\""), 5.0);
        assert_eq!(metric_sum(text, "y", ""), 1.0);
        assert_eq!(metric_sum(text, "z", ""), 0.0);
    }
}
