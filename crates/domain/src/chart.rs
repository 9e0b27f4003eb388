//! Charts drawn as inline SVG on the server: stacked bars (counts by day or month, one colour
//! per series) and a percentage line with a threshold. No script and no chart library from a
//! CDN: the pages work on a clinic PC without the internet, and a screenshot or a print shows
//! what the table beside it says.

use std::fmt::Write as _;

use crate::markup::escape;

/// Colours of the series, in order (distinguishable when printed in grey, too).
const COLOURS: [&str; 8] = ["#1f6fb2", "#59a14f", "#e8a33d", "#b07aa1", "#76b7b2", "#e15759", "#9c755f", "#7f7f7f"];

const WIDTH: f64 = 760.0;
const HEIGHT: f64 = 220.0;
const LEFT: f64 = 48.0;
const BOTTOM: f64 = 28.0;
const TOP: f64 = 12.0;

/// Stacked bars: one bar per label, one segment per series (`values[bar][series]`), with a
/// legend of `series` and the largest total on the axis. `id` names the `<svg>` element.
pub fn stacked_bars(id: &str, title: &str, labels: &[String], series: &[&str], values: &[Vec<u64>]) -> String {
    let max = values.iter().map(|bar| bar.iter().sum::<u64>()).max().unwrap_or(0).max(1);
    let plot_height = HEIGHT - TOP - BOTTOM;
    let slot = (WIDTH - LEFT) / labels.len().max(1) as f64;
    let bar_width = (slot * 0.7).max(1.0);
    let legend_height = 18.0 * series.len().div_ceil(4) as f64;
    let mut svg = String::new();
    let _ = write!(
        svg,
        "<svg id=\"{}\" xmlns=\"http://www.w3.org/2000/svg\" width=\"{WIDTH}\" height=\"{}\" viewBox=\"0 0 {WIDTH} {}\" role=\"img\" aria-label=\"{}\" font-size=\"11\">\
         <title>{}</title>",
        escape(id),
        HEIGHT + legend_height,
        HEIGHT + legend_height,
        escape(title),
        escape(title)
    );
    axis(&mut svg, max, plot_height);
    for (index, (label, bar)) in labels.iter().zip(values).enumerate() {
        let x = LEFT + slot * index as f64 + (slot - bar_width) / 2.0;
        let mut y = HEIGHT - BOTTOM;
        for (series_index, value) in bar.iter().enumerate() {
            if *value == 0 {
                continue;
            }
            let h = *value as f64 / max as f64 * plot_height;
            y -= h;
            let _ = write!(
                svg,
                "<rect x=\"{x:.1}\" y=\"{y:.1}\" width=\"{bar_width:.1}\" height=\"{h:.1}\" fill=\"{}\"><title>{} {}: {value}</title></rect>",
                COLOURS[series_index % COLOURS.len()],
                escape(label),
                escape(series.get(series_index).copied().unwrap_or(""))
            );
        }
        // Every label when they fit, else every few.
        let every = (labels.len() / 16).max(1);
        if index % every == 0 {
            let _ = write!(
                svg,
                "<text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"middle\">{}</text>",
                x + bar_width / 2.0,
                HEIGHT - BOTTOM + 14.0,
                escape(label)
            );
        }
    }
    legend(&mut svg, series);
    svg.push_str("</svg>");
    svg
}

/// A percentage per label as a line with dots, and a dashed threshold line (the 加算's 30 %).
pub fn percent_line(id: &str, title: &str, labels: &[String], percents: &[Option<f64>], threshold: f64) -> String {
    let plot_height = HEIGHT - TOP - BOTTOM;
    let slot = (WIDTH - LEFT) / labels.len().max(1) as f64;
    let y_of = |p: f64| HEIGHT - BOTTOM - p.clamp(0.0, 100.0) / 100.0 * plot_height;
    let mut svg = String::new();
    let _ = write!(
        svg,
        "<svg id=\"{}\" xmlns=\"http://www.w3.org/2000/svg\" width=\"{WIDTH}\" height=\"{HEIGHT}\" role=\"img\" aria-label=\"{}\" font-size=\"11\"><title>{}</title>",
        escape(id),
        escape(title),
        escape(title)
    );
    for p in [0, 25, 50, 75, 100] {
        let y = y_of(f64::from(p));
        let _ = write!(
            svg,
            "<line x1=\"{LEFT}\" x2=\"{WIDTH}\" y1=\"{y:.1}\" y2=\"{y:.1}\" stroke=\"#ddd\"/><text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"end\">{p}%</text>",
            LEFT - 4.0,
            y + 4.0
        );
    }
    let ty = y_of(threshold);
    let _ = write!(
        svg,
        "<line x1=\"{LEFT}\" x2=\"{WIDTH}\" y1=\"{ty:.1}\" y2=\"{ty:.1}\" stroke=\"#a40000\" stroke-dasharray=\"6 4\"/>\
         <text x=\"{WIDTH}\" y=\"{:.1}\" text-anchor=\"end\" fill=\"#a40000\">基準 {threshold:.0}%</text>",
        ty - 4.0
    );
    let points: Vec<(f64, f64, f64)> =
        percents.iter().enumerate().filter_map(|(i, p)| p.map(|p| (LEFT + slot * i as f64 + slot / 2.0, y_of(p), p))).collect();
    if points.len() > 1 {
        let path: Vec<String> = points.iter().map(|(x, y, _)| format!("{x:.1},{y:.1}")).collect();
        let _ = write!(svg, "<polyline fill=\"none\" stroke=\"{}\" stroke-width=\"2\" points=\"{}\"/>", COLOURS[0], path.join(" "));
    }
    for (x, y, p) in &points {
        let _ = write!(svg, "<circle cx=\"{x:.1}\" cy=\"{y:.1}\" r=\"3.5\" fill=\"{}\"><title>{p:.1}%</title></circle>", COLOURS[0]);
    }
    let every = (labels.len() / 16).max(1);
    for (i, label) in labels.iter().enumerate().filter(|(i, _)| i % every == 0) {
        let _ = write!(
            svg,
            "<text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"middle\">{}</text>",
            LEFT + slot * i as f64 + slot / 2.0,
            HEIGHT - BOTTOM + 14.0,
            escape(label)
        );
    }
    svg.push_str("</svg>");
    svg
}

fn axis(svg: &mut String, max: u64, plot_height: f64) {
    for step in 0..=4u64 {
        let value = max * step / 4;
        let y = HEIGHT - BOTTOM - value as f64 / max as f64 * plot_height;
        let _ = write!(
            svg,
            "<line x1=\"{LEFT}\" x2=\"{WIDTH}\" y1=\"{y:.1}\" y2=\"{y:.1}\" stroke=\"#ddd\"/><text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"end\">{value}</text>",
            LEFT - 4.0,
            y + 4.0
        );
    }
}

fn legend(svg: &mut String, series: &[&str]) {
    for (i, name) in series.iter().enumerate() {
        let x = LEFT + 180.0 * (i % 4) as f64;
        let y = HEIGHT + 4.0 + 18.0 * (i / 4) as f64;
        let _ = write!(
            svg,
            "<rect x=\"{x:.1}\" y=\"{y:.1}\" width=\"10\" height=\"10\" fill=\"{}\"/><text x=\"{:.1}\" y=\"{:.1}\">{}</text>",
            COLOURS[i % COLOURS.len()],
            x + 14.0,
            y + 9.0,
            escape(name)
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bar_is_as_tall_as_its_share_of_the_tallest_and_text_is_escaped() {
        let labels = vec!["1".to_string(), "2<".to_string()];
        let svg = stacked_bars("c", "件数 & 経路", &labels, &["a", "b"], &[vec![10, 10], vec![5, 0]]);
        // The tallest bar (20) fills the plot (220 - 12 - 28 = 180); 10 of it is 90, 5 is 45.
        assert!(svg.contains("height=\"90.0\""), "{svg}");
        assert!(svg.contains("height=\"45.0\""), "{svg}");
        assert_eq!(svg.matches("<rect x").count() - 2, 3, "three segments (a zero is not drawn) and two legend keys");
        assert!(svg.contains("件数 &amp; 経路") && svg.contains("2&lt;") && !svg.contains("2<<"), "{svg}");
    }

    #[test]
    fn the_line_places_percentages_on_the_scale_and_skips_months_without_checks() {
        let labels = vec!["11月".to_string(), "12月".to_string(), "1月".to_string()];
        let svg = percent_line("u", "利用率", &labels, &[Some(50.0), None, Some(100.0)], 30.0);
        // The plot runs from 192 (0 %) up 180 to 12 (100 %): 50 % is at 192 - 90 = 102.
        assert!(svg.contains("cy=\"102.0\""), "{svg}");
        assert!(svg.contains("cy=\"12.0\""), "{svg}");
        assert_eq!(svg.matches("<circle").count(), 2, "no dot for a month without checks");
        assert!(svg.contains("基準 30%"));
    }
}
