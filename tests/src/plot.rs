//! The latency distribution of a load run as an SVG: latency (ms, log scale) against the
//! percentile, from 0 to 99.99 % on a "nines" axis, so that the tail is as readable as the median.
//!
//! Must never: draw anything but figures (no request content reaches this file).

use std::path::Path;

use hdrhistogram::Histogram;
use plotters::prelude::*;

/// x of a quantile on the "nines" axis: -log10(1 - q), so 90 % is 1, 99 % 2, 99.9 % 3.
fn nines(q: f64) -> f64 {
    -(1.0 - q).max(1e-6).log10()
}

/// Writes `latency_us` (microseconds) to `path` as an SVG with `title`.
pub fn latency_svg(path: &Path, title: &str, latency_us: &Histogram<u64>) -> Result<(), String> {
    if latency_us.is_empty() {
        return Err("no latency recorded".into());
    }
    let max_nines = 4.0;
    let points: Vec<(f64, f64)> = (0..=400)
        .map(|i| {
            let x = f64::from(i) / 100.0;
            let q = 1.0 - 10f64.powf(-x);
            (x, latency_us.value_at_quantile(q).max(1) as f64 / 1000.0)
        })
        .collect();
    let y_min = points
        .iter()
        .map(|p| p.1)
        .fold(f64::MAX, f64::min)
        .max(0.001)
        / 1.5;
    let y_max = (latency_us.max() as f64 / 1000.0).max(y_min * 2.0) * 1.5;
    let root = SVGBackend::new(path, (900, 540)).into_drawing_area();
    let err = |e: DrawingAreaErrorKind<_>| e.to_string();
    root.fill(&WHITE).map_err(err)?;
    let mut chart = ChartBuilder::on(&root)
        .caption(title, ("sans-serif", 20))
        .margin(16)
        .x_label_area_size(40)
        .y_label_area_size(64)
        .build_cartesian_2d(0f64..max_nines, (y_min..y_max).log_scale())
        .map_err(err)?;
    chart
        .configure_mesh()
        .x_desc("percentile")
        .y_desc("latency, send to answer (ms)")
        .x_labels(5)
        .x_label_formatter(&|x| match x.round() as i64 {
            0 => "0".into(),
            1 => "90".into(),
            2 => "99".into(),
            3 => "99.9".into(),
            4 => "99.99".into(),
            _ => String::new(),
        })
        .draw()
        .map_err(err)?;
    chart
        .draw_series(LineSeries::new(points, &BLUE))
        .map_err(err)?;
    for q in [0.5, 0.99, 0.999] {
        let x = nines(q);
        let y = latency_us.value_at_quantile(q).max(1) as f64 / 1000.0;
        chart
            .draw_series(std::iter::once(Circle::new((x, y), 4, RED.filled())))
            .map_err(err)?;
    }
    root.present().map_err(err)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nines_axis() {
        assert!((nines(0.9) - 1.0).abs() < 1e-9);
        assert!((nines(0.999) - 3.0).abs() < 1e-9);
    }

    #[test]
    fn writes_an_svg_with_the_curve() {
        let mut h = Histogram::<u64>::new_with_bounds(1, 60_000_000, 3).unwrap();
        for v in 1..10_000u64 {
            h.record(100 + v).unwrap();
        }
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("lat.svg");
        latency_svg(&path, "test", &h).unwrap();
        let svg = std::fs::read_to_string(&path).unwrap();
        assert!(svg.starts_with("<svg"), "an SVG document");
        assert!(svg.contains("<polyline"), "the latency curve is drawn");
        assert!(svg.contains("99.9"), "the percentile axis is labelled");
    }
}
