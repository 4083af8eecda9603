//! Latency CDF chart as hand-written SVG.
//!
//! Plotting crates need a font stack to measure and rasterise text; an SVG with
//! `<text>` elements leaves that to the viewer (GitHub renders it in README.md),
//! so this stays std-only and the output is byte-for-byte reproducible.

use std::fmt::Write as _;

/// One line of the chart: a label and its latency samples in microseconds (any order, may be empty -> skipped).
#[derive(Debug, Clone, Copy)]
pub struct Series<'a> {
    pub label: &'a str,
    pub samples_us: &'a [f64],
}

const WIDTH: f64 = 900.0;
/// Height without the legend, which grows one row per series below the plot.
const BASE_HEIGHT: f64 = 520.0;
const LEGEND_ROW: f64 = 22.0;
const PLOT_LEFT: f64 = 70.0;
const PLOT_RIGHT: f64 = 870.0;
const PLOT_TOP: f64 = 75.0;
const PLOT_BOTTOM: f64 = 445.0;
/// Keeps the file small (a few KB per series) while a 800 px wide curve stays smooth.
const MAX_POINTS: usize = 400;

/// Okabe–Ito, reordered so the low-contrast yellow comes last: distinguishable
/// under the common colour-vision deficiencies.
const PALETTE: [&str; 8] = [
    "#0072B2", "#D55E00", "#009E73", "#CC79A7", "#E69F00", "#56B4E9", "#000000", "#F0E442",
];

/// Percentile gridlines with the label's baseline offset. 90 and 99 make the
/// tail readable; on a linear axis 99 sits ~4 px below 100, so those two labels
/// are pushed apart (100 above its line, 99 below) instead of overprinting.
const Y_GRID: [(f64, f64); 7] = [
    (0.0, 4.0),
    (25.0, 4.0),
    (50.0, 4.0),
    (75.0, 4.0),
    (90.0, 4.0),
    (99.0, 10.0),
    (100.0, -1.0),
];

/// Human-readable latency for the legend and the report, so both print the same strings.
///
/// Unit thresholds sit at the rounding boundary, so 999.96 µs reads "1.00 ms", not "1000.0 µs".
pub fn format_us(us: f64) -> String {
    if us < 9.995 {
        format!("{us:.2} µs")
    } else if us < 999.95 {
        format!("{us:.1} µs")
    } else if us < 999_995.0 {
        format!("{:.2} ms", us / 1e3)
    } else {
        format!("{:.2} s", us / 1e6)
    }
}

/// An SVG document (UTF-8 text): the empirical CDF of each series' latency,
/// x axis logarithmic in microseconds (decade ticks labelled "1 µs", "10 µs", "100 µs", "1 ms", "10 ms", "100 ms", "1 s", with faint gridlines; range = decades covering all samples of all series), y axis percentile 0–100 % (gridlines at 0, 25, 50, 75, 90, 99, 100 — note 90 and 99 are there so tails are readable),
/// one polyline per series in a distinct colour from a fixed colour-blind-safe palette (e.g. Okabe–Ito), a legend listing label + median (formatted like "12.3 µs" or "1.23 ms"), the title at the top and `subtitle` (e.g. machine description) below it in smaller grey text.
///
/// A CDF rather than a histogram so that several series and their tails stay
/// comparable on one chart without choosing bin widths.
pub fn latency_cdf_svg(title: &str, subtitle: &str, series: &[Series<'_>]) -> String {
    // Non-positive and non-finite samples have no place on a log axis.
    let drawn: Vec<(&str, Vec<f64>)> = series
        .iter()
        .filter_map(|s| {
            let mut v: Vec<f64> = s
                .samples_us
                .iter()
                .copied()
                .filter(|x| x.is_finite() && *x > 0.0)
                .collect();
            if v.is_empty() {
                return None;
            }
            v.sort_by(f64::total_cmp);
            Some((s.label, v))
        })
        .collect();

    let height =
        BASE_HEIGHT + LEGEND_ROW * drawn.len() as f64 + if drawn.is_empty() { 0.0 } else { 12.0 };
    let mut svg = String::with_capacity(4096 + drawn.len() * MAX_POINTS * 14);
    // `write!` into a String cannot fail; the results are ignored throughout.
    let _ = write!(
        svg,
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{w}\" height=\"{h}\" viewBox=\"0 0 {w} {h}\" font-family=\"sans-serif\">\n\
         <rect x=\"0\" y=\"0\" width=\"{w}\" height=\"{h}\" fill=\"#ffffff\"/>\n\
         <text x=\"{cx}\" y=\"30\" text-anchor=\"middle\" font-size=\"20\" font-weight=\"bold\" fill=\"#222222\">{t}</text>\n\
         <text x=\"{cx}\" y=\"52\" text-anchor=\"middle\" font-size=\"13\" fill=\"#666666\">{s}</text>\n",
        w = WIDTH,
        h = height,
        cx = c(WIDTH / 2.0),
        t = escape(title),
        s = escape(subtitle),
    );

    let (Some(min), Some(max)) = (
        drawn.iter().map(|(_, v)| v[0]).min_by(f64::total_cmp),
        drawn
            .iter()
            .map(|(_, v)| v[v.len() - 1])
            .max_by(f64::total_cmp),
    ) else {
        let _ = writeln!(
            svg,
            "<text x=\"{}\" y=\"{}\" text-anchor=\"middle\" font-size=\"16\" fill=\"#666666\">no data</text>",
            c(WIDTH / 2.0),
            c((PLOT_TOP + PLOT_BOTTOM) / 2.0),
        );
        svg.push_str("</svg>\n");
        return svg;
    };

    let lo = decade_floor(min);
    let hi = decade_ceil(max).max(lo + 1);
    let x_of = |us: f64| {
        PLOT_LEFT + (us.log10() - f64::from(lo)) / f64::from(hi - lo) * (PLOT_RIGHT - PLOT_LEFT)
    };
    let y_of = |pct: f64| PLOT_BOTTOM - pct / 100.0 * (PLOT_BOTTOM - PLOT_TOP);

    // Gridlines first so the curves paint over them.
    for e in lo..=hi {
        let x = c(PLOT_LEFT + f64::from(e - lo) / f64::from(hi - lo) * (PLOT_RIGHT - PLOT_LEFT));
        let _ = writeln!(
            svg,
            "<line x1=\"{x}\" y1=\"{t}\" x2=\"{x}\" y2=\"{b}\" stroke=\"#e6e6e6\" stroke-width=\"1\"/>\n\
             <text x=\"{x}\" y=\"{ly}\" text-anchor=\"middle\" font-size=\"12\" fill=\"#444444\">{l}</text>",
            t = c(PLOT_TOP),
            b = c(PLOT_BOTTOM),
            ly = c(PLOT_BOTTOM + 18.0),
            l = decade_label(e),
        );
    }
    for (pct, dy) in Y_GRID {
        let y = y_of(pct);
        let _ = writeln!(
            svg,
            "<line x1=\"{l}\" y1=\"{yc}\" x2=\"{r}\" y2=\"{yc}\" stroke=\"#e6e6e6\" stroke-width=\"1\"/>\n\
             <text x=\"{lx}\" y=\"{ty}\" text-anchor=\"end\" font-size=\"11\" fill=\"#444444\">{pct} %</text>",
            l = c(PLOT_LEFT),
            r = c(PLOT_RIGHT),
            yc = c(y),
            lx = c(PLOT_LEFT - 8.0),
            ty = c(y + dy),
        );
    }
    let _ = writeln!(
        svg,
        "<rect x=\"{}\" y=\"{}\" width=\"{}\" height=\"{}\" fill=\"none\" stroke=\"#999999\" stroke-width=\"1\"/>\n\
         <text x=\"{}\" y=\"{}\" text-anchor=\"middle\" font-size=\"13\" fill=\"#444444\">latency (log scale)</text>\n\
         <text x=\"18\" y=\"{}\" text-anchor=\"middle\" font-size=\"13\" fill=\"#444444\" transform=\"rotate(-90 18 {})\">percentile</text>",
        c(PLOT_LEFT),
        c(PLOT_TOP),
        c(PLOT_RIGHT - PLOT_LEFT),
        c(PLOT_BOTTOM - PLOT_TOP),
        c((PLOT_LEFT + PLOT_RIGHT) / 2.0),
        c(PLOT_BOTTOM + 42.0),
        c((PLOT_TOP + PLOT_BOTTOM) / 2.0),
        c((PLOT_TOP + PLOT_BOTTOM) / 2.0),
    );

    for (i, (label, v)) in drawn.iter().enumerate() {
        let colour = PALETTE[i % PALETTE.len()];
        // Past eight series colours repeat; dashing keeps repeated colours apart.
        let dash = if i >= PALETTE.len() {
            " stroke-dasharray=\"6 3\""
        } else {
            ""
        };
        let n = v.len();
        // Start at 0 % on the fastest sample so the curve rises from the axis like
        // the step ECDF it approximates.
        let mut points = format!("{},{}", c(x_of(v[0])), c(y_of(0.0)));
        for k in sample_indices(n, MAX_POINTS - 1) {
            let _ = write!(
                points,
                " {},{}",
                c(x_of(v[k])),
                c(y_of((k + 1) as f64 / n as f64 * 100.0))
            );
        }
        let _ = writeln!(
            svg,
            "<polyline fill=\"none\" stroke=\"{colour}\" stroke-width=\"2\" stroke-linejoin=\"round\"{dash} points=\"{points}\"/>"
        );

        let ly = BASE_HEIGHT + LEGEND_ROW * i as f64 + LEGEND_ROW / 2.0;
        let _ = writeln!(
            svg,
            "<line x1=\"{x1}\" y1=\"{y}\" x2=\"{x2}\" y2=\"{y}\" stroke=\"{colour}\" stroke-width=\"3\"{dash}/>\n\
             <text x=\"{tx}\" y=\"{ty}\" font-size=\"13\" fill=\"#222222\">{l} — median {m}</text>",
            x1 = c(PLOT_LEFT),
            x2 = c(PLOT_LEFT + 28.0),
            y = c(ly),
            tx = c(PLOT_LEFT + 38.0),
            ty = c(ly + 4.5),
            l = escape(label),
            m = format_us(median(v)),
        );
    }

    svg.push_str("</svg>\n");
    svg
}

/// Indices of evenly spaced quantiles, always including the first and last
/// sample; integer arithmetic keeps the choice exact and reproducible.
fn sample_indices(n: usize, max: usize) -> impl Iterator<Item = usize> {
    let m = n.min(max).max(1);
    (0..m).map(move |j| {
        if m == 1 {
            n - 1
        } else {
            (j * (n - 1) + (m - 1) / 2) / (m - 1)
        }
    })
}

/// `v` must be sorted and non-empty.
fn median(v: &[f64]) -> f64 {
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

/// Largest decade exponent `e` with `10^e <= v`; `log10` alone can land a hair
/// off at exact powers of ten.
fn decade_floor(v: f64) -> i32 {
    let mut e = v.log10().floor() as i32;
    if 10f64.powi(e) > v {
        e -= 1;
    } else if 10f64.powi(e + 1) <= v {
        e += 1;
    }
    e
}

/// Smallest decade exponent `e` with `10^e >= v`.
fn decade_ceil(v: f64) -> i32 {
    let mut e = v.log10().ceil() as i32;
    if 10f64.powi(e) < v {
        e += 1;
    } else if 10f64.powi(e - 1) >= v {
        e -= 1;
    }
    e
}

/// Label for the tick at `10^e` µs, in the unit a reader would say out loud.
fn decade_label(e: i32) -> String {
    let (unit, base) = match e {
        6.. => ("s", 6),
        3..=5 => ("ms", 3),
        0..=2 => ("µs", 0),
        -3..=-1 => ("ns", -3),
        _ => return format!("1e{e} µs"),
    };
    match 10u64.checked_pow((e - base).unsigned_abs()) {
        Some(p) => format!("{p} {unit}"),
        None => format!("1e{} {unit}", e - base),
    }
}

/// One decimal keeps coordinates sub-pixel accurate without bloating the file.
fn c(v: f64) -> String {
    format!("{v:.1}")
}

/// Labels and titles come from the harness (machine names, config strings) and
/// must not break the markup.
fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for ch in s.chars() {
        match ch {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            _ => out.push(ch),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ser<'a>(label: &'a str, samples_us: &'a [f64]) -> Series<'a> {
        Series { label, samples_us }
    }

    fn polylines(svg: &str) -> Vec<Vec<(f64, f64)>> {
        svg.lines()
            .filter(|l| l.starts_with("<polyline"))
            .map(|l| {
                let start = l.find("points=\"").expect("points attribute") + "points=\"".len();
                let end = start + l[start..].find('"').expect("closing quote");
                l[start..end]
                    .split(' ')
                    .map(|p| {
                        let (x, y) = p.split_once(',').expect("x,y pair");
                        (x.parse().expect("x"), y.parse().expect("y"))
                    })
                    .collect()
            })
            .collect()
    }

    fn spread(n: usize, lo: f64, hi: f64) -> Vec<f64> {
        // Deterministic, unsorted, log-spaced samples.
        (0..n)
            .map(|i| {
                let j = (i * 7919) % n;
                lo * (hi / lo).powf(j as f64 / (n - 1) as f64)
            })
            .collect()
    }

    #[test]
    fn format_us_units_and_boundaries() {
        assert_eq!(format_us(5.0), "5.00 µs");
        assert_eq!(format_us(12.34), "12.3 µs");
        assert_eq!(format_us(1234.0), "1.23 ms");
        assert_eq!(format_us(2_500_000.0), "2.50 s");
        assert_eq!(format_us(9.999), "10.0 µs");
        assert_eq!(format_us(999.96), "1.00 ms");
        assert_eq!(format_us(999_999.0), "1.00 s");
    }

    #[test]
    fn one_polyline_per_non_empty_series() {
        let a = [10.0, 20.0, 30.0];
        let b: [f64; 0] = [];
        let junk = [f64::NAN, -1.0, 0.0, f64::INFINITY];
        let d = [100.0];
        let svg = latency_cdf_svg(
            "t",
            "s",
            &[
                ser("a", &a),
                ser("empty", &b),
                ser("junk", &junk),
                ser("d", &d),
            ],
        );
        assert_eq!(polylines(&svg).len(), 2);
        assert!(!svg.contains("empty"));
        assert!(!svg.contains("junk"));
        assert!(svg.contains(PALETTE[0]) && svg.contains(PALETTE[1]));
    }

    #[test]
    fn legend_has_labels_and_medians() {
        let a = [30.0, 10.0, 20.0];
        let b = [1000.0, 2000.0, 1500.0, 1400.0];
        let svg = latency_cdf_svg("t", "s", &[ser("alpha", &a), ser("beta", &b)]);
        assert!(svg.contains("alpha — median 20.0 µs"), "{svg}");
        assert!(svg.contains("beta — median 1.45 ms"), "{svg}");
    }

    #[test]
    fn text_is_escaped() {
        let a = [1.0, 2.0];
        let svg = latency_cdf_svg("T<&>\"'", "S & co", &[ser("x<&>y", &a)]);
        assert!(svg.contains("x&lt;&amp;&gt;y"));
        assert!(svg.contains("T&lt;&amp;&gt;&quot;&apos;"));
        assert!(svg.contains("S &amp; co"));
        assert!(!svg.contains("x<&>y"));
        assert!(!svg.contains("T<"));
    }

    #[test]
    fn decade_ticks_cover_sample_range() {
        let a = spread(50, 5.0, 3000.0);
        let svg = latency_cdf_svg("t", "s", &[ser("a", &a)]);
        for tick in ["1 µs", "10 µs", "100 µs", "1 ms", "10 ms"] {
            assert!(
                svg.contains(&format!(">{tick}</text>")),
                "missing tick {tick}"
            );
        }
        assert!(!svg.contains(">100 ms</text>"));
        assert!(!svg.contains(">100 ns</text>"));
        assert_eq!(decade_floor(1000.0), 3);
        assert_eq!(decade_ceil(1000.0), 3);
        assert_eq!(decade_label(6), "1 s");
        assert_eq!(decade_label(-1), "100 ns");
    }

    #[test]
    fn every_cdf_spans_zero_to_hundred_percent_and_is_downsampled() {
        let a = spread(10_000, 3.0, 90_000.0);
        let b = [42.0];
        let svg = latency_cdf_svg("t", "s", &[ser("a", &a), ser("b", &b)]);
        let lines = polylines(&svg);
        assert_eq!(lines.len(), 2);
        for pts in &lines {
            // SVG y grows downwards: the top of the plot is 100 %.
            let top = pts.iter().map(|p| p.1).fold(f64::INFINITY, f64::min);
            let bottom = pts.iter().map(|p| p.1).fold(f64::NEG_INFINITY, f64::max);
            assert_eq!(top, PLOT_TOP);
            assert_eq!(bottom, PLOT_BOTTOM);
            assert!(pts.len() <= MAX_POINTS);
            assert!(pts.windows(2).all(|w| w[0].0 <= w[1].0 && w[0].1 >= w[1].1));
            assert!(pts.iter().all(|p| (PLOT_LEFT..=PLOT_RIGHT).contains(&p.0)));
        }
        assert_eq!(lines[0].len(), MAX_POINTS);
    }

    #[test]
    fn output_is_deterministic() {
        let a = spread(1000, 1.5, 2e6);
        let b = spread(333, 40.0, 700.0);
        let s = [ser("a", &a), ser("b", &b)];
        assert_eq!(latency_cdf_svg("t", "s", &s), latency_cdf_svg("t", "s", &s));
    }

    #[test]
    fn no_data_is_still_a_valid_svg() {
        let empty: [f64; 0] = [];
        let svg = latency_cdf_svg("Title", "sub", &[ser("e", &empty)]);
        assert!(svg.starts_with("<svg ") && svg.trim_end().ends_with("</svg>"));
        assert!(svg.contains(">Title</text>") && svg.contains(">no data</text>"));
        assert!(svg.contains("viewBox=\"0 0 900 520\""));
        assert!(!svg.contains("<polyline"));
    }

    #[test]
    fn structure_is_balanced() {
        let a = spread(20, 1.0, 10.0);
        let svg = latency_cdf_svg("t", "s", &[ser("a", &a)]);
        assert_eq!(svg.matches("<text").count(), svg.matches("</text>").count());
        assert!(svg.contains("font-family=\"sans-serif\""));
        assert!(svg.contains("fill=\"#ffffff\""));
        assert_eq!(svg.matches("<svg").count(), 1);
    }
}
