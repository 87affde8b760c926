//! A small inline-SVG line chart: linear axes with "nice" ticks, several series (NaN breaks a
//! line), horizontal bands (SLA tiers) and vertical markers (the breaking point). No script, no
//! external resource: the SVG is plain markup inside the HTML page.

use std::fmt::Write as _;

/// Series colours (colour-blind friendly, Okabe-Ito order).
pub const PALETTE: [&str; 8] = [
    "#0072B2", "#D55E00", "#009E73", "#CC79A7", "#E69F00", "#56B4E9", "#000000", "#F0E442",
];

/// Tier band colours: excellent, acceptable, degraded, breaking.
pub const TIER_COLORS: [&str; 4] = ["#2e7d32", "#9e9d24", "#ef6c00", "#c62828"];

#[derive(Debug, Clone)]
pub struct Line {
    pub name: String,
    pub points: Vec<(f64, f64)>,
    pub color: String,
    pub dashed: bool,
    /// Draw a dot at each point (load charts with few points).
    pub markers: bool,
}

#[derive(Debug, Clone)]
pub struct Band {
    pub y0: f64,
    pub y1: f64,
    pub color: String,
    pub label: String,
}

#[derive(Debug, Clone)]
pub struct Marker {
    pub x: f64,
    pub label: String,
}

#[derive(Debug, Clone)]
pub struct Chart {
    pub id: String,
    pub title: String,
    pub x_label: String,
    pub y_label: String,
    pub lines: Vec<Line>,
    pub bands: Vec<Band>,
    pub markers: Vec<Marker>,
    pub width: f64,
    pub height: f64,
}

const ML: f64 = 64.0;
const MR: f64 = 16.0;
const MT: f64 = 44.0;
const MB: f64 = 44.0;

impl Chart {
    pub fn new(id: &str, title: &str, x_label: &str, y_label: &str) -> Chart {
        Chart {
            id: id.to_string(),
            title: title.to_string(),
            x_label: x_label.to_string(),
            y_label: y_label.to_string(),
            lines: Vec::new(),
            bands: Vec::new(),
            markers: Vec::new(),
            width: 640.0,
            height: 300.0,
        }
    }

    /// Adds a series; colour picked from the palette by position.
    pub fn line(&mut self, name: &str, points: Vec<(f64, f64)>, markers: bool) -> &mut Line {
        let color = PALETTE[self.lines.len() % PALETTE.len()].to_string();
        self.lines.push(Line {
            name: name.to_string(),
            points,
            color,
            dashed: false,
            markers,
        });
        let last = self.lines.len() - 1;
        &mut self.lines[last]
    }

    /// Whether any series has at least one finite point.
    pub fn has_data(&self) -> bool {
        self.lines
            .iter()
            .any(|l| l.points.iter().any(|p| p.0.is_finite() && p.1.is_finite()))
    }

    fn ranges(&self) -> ((f64, f64), (f64, f64)) {
        let mut x = (f64::INFINITY, f64::NEG_INFINITY);
        let mut y = (0.0f64, f64::NEG_INFINITY);
        for l in &self.lines {
            for &(px, py) in &l.points {
                if px.is_finite() && py.is_finite() {
                    x = (x.0.min(px), x.1.max(px));
                    y = (y.0.min(py), y.1.max(py));
                }
            }
        }
        for m in &self.markers {
            if m.x.is_finite() {
                x = (x.0.min(m.x), x.1.max(m.x));
            }
        }
        if !x.0.is_finite() {
            x = (0.0, 1.0);
        }
        if !y.1.is_finite() {
            y = (0.0, 1.0);
        }
        if x.1 - x.0 <= 0.0 {
            x = (x.0 - 0.5, x.1 + 0.5);
        }
        if y.1 - y.0 <= 0.0 {
            y.1 = y.0 + if y.0 == 0.0 { 1.0 } else { y.0.abs() };
        }
        (x, y)
    }

    /// The chart as an `<svg>` element.
    pub fn render(&self) -> String {
        let (w, h) = (self.width, self.height);
        let (pw, ph) = (w - ML - MR, h - MT - MB);
        let ((x0, x1), (y0, y1)) = self.ranges();
        let xt = nice_ticks(x0, x1, 6);
        let yt = nice_ticks(y0, y1, 5);
        let (x0, x1) = (x0.min(xt[0]), x1.max(xt[xt.len() - 1]));
        let (y0, y1) = (y0.min(yt[0]), y1.max(yt[yt.len() - 1]));
        let sx = |x: f64| ML + (x - x0) / (x1 - x0) * pw;
        let sy = |y: f64| MT + ph - (y - y0) / (y1 - y0) * ph;
        let mut s = String::with_capacity(4096);
        let _ = write!(
            s,
            r#"<svg class="chart" id="{id}" role="img" aria-label="{t}" viewBox="0 0 {w} {h}" width="{w}" height="{h}">"#,
            id = esc(&self.id),
            t = esc(&self.title),
        );
        let _ = write!(
            s,
            r#"<text class="ctitle" x="{ML}" y="16">{}</text>"#,
            esc(&self.title)
        );
        // Legend.
        let mut lx = ML;
        for l in &self.lines {
            let _ = write!(
                s,
                r#"<rect x="{lx:.1}" y="26" width="10" height="10" fill="{c}"/><text class="legend" x="{tx:.1}" y="35">{n}</text>"#,
                c = l.color,
                tx = lx + 13.0,
                n = esc(&l.name)
            );
            lx += 22.0 + 6.2 * l.name.chars().count() as f64;
        }
        let _ = write!(
            s,
            r##"<defs><clipPath id="clip-{id}"><rect x="{ML}" y="{MT}" width="{pw}" height="{ph}"/></clipPath></defs>"##,
            id = esc(&self.id)
        );
        let _ = write!(s, r#"<g clip-path="url(#clip-{})">"#, esc(&self.id));
        for b in &self.bands {
            let (a, c) = (b.y0.max(y0), b.y1.min(y1));
            if c <= a {
                continue;
            }
            let _ = write!(
                s,
                r#"<rect class="band" x="{ML}" y="{ya:.1}" width="{pw}" height="{hh:.1}" fill="{col}" fill-opacity="0.10"><title>{lab}</title></rect><text class="bandlabel" x="{bx:.1}" y="{by:.1}" fill="{col}">{lab}</text>"#,
                ya = sy(c),
                hh = sy(a) - sy(c),
                col = b.color,
                lab = esc(&b.label),
                bx = ML + pw - 4.0,
                by = sy(c) + 11.0,
            );
        }
        s.push_str("</g>");
        // Grid and ticks.
        for &t in &yt {
            let y = sy(t);
            let _ = write!(
                s,
                r#"<line class="grid" x1="{ML}" y1="{y:.1}" x2="{x2:.1}" y2="{y:.1}"/><text class="tick" x="{tx:.1}" y="{ty:.1}" text-anchor="end">{l}</text>"#,
                x2 = ML + pw,
                tx = ML - 6.0,
                ty = y + 4.0,
                l = tick_label(t)
            );
        }
        for &t in &xt {
            let x = sx(t);
            let _ = write!(
                s,
                r#"<line class="grid" x1="{x:.1}" y1="{MT}" x2="{x:.1}" y2="{y2:.1}"/><text class="tick" x="{x:.1}" y="{ty:.1}" text-anchor="middle">{l}</text>"#,
                y2 = MT + ph,
                ty = MT + ph + 16.0,
                l = tick_label(t)
            );
        }
        let _ = write!(
            s,
            r#"<rect class="frame" x="{ML}" y="{MT}" width="{pw}" height="{ph}" fill="none"/>"#
        );
        let _ = write!(
            s,
            r#"<text class="axis" x="{x:.1}" y="{y:.1}" text-anchor="middle">{l}</text>"#,
            x = ML + pw / 2.0,
            y = h - 6.0,
            l = esc(&self.x_label)
        );
        let _ = write!(
            s,
            r#"<text class="axis" transform="translate(14 {y:.1}) rotate(-90)" text-anchor="middle">{l}</text>"#,
            y = MT + ph / 2.0,
            l = esc(&self.y_label)
        );
        for m in &self.markers {
            if !m.x.is_finite() {
                continue;
            }
            let x = sx(m.x);
            let _ = write!(
                s,
                r#"<line class="marker" x1="{x:.1}" y1="{MT}" x2="{x:.1}" y2="{y2:.1}"/><text class="markerlabel" x="{tx:.1}" y="{ty:.1}">{l}</text>"#,
                y2 = MT + ph,
                tx = x + 3.0,
                ty = MT + 12.0,
                l = esc(&m.label)
            );
        }
        for l in &self.lines {
            let mut d = String::new();
            let mut pen_down = false;
            for &(px, py) in &l.points {
                if px.is_finite() && py.is_finite() {
                    let _ = write!(
                        d,
                        "{}{:.1} {:.1}",
                        if pen_down { "L" } else { "M" },
                        sx(px),
                        sy(py)
                    );
                    pen_down = true;
                } else {
                    pen_down = false;
                }
            }
            if d.is_empty() {
                continue;
            }
            let _ = write!(
                s,
                r#"<path class="series" data-name="{n}" d="{d}" fill="none" stroke="{c}" stroke-width="2"{dash}/>"#,
                n = esc(&l.name),
                c = l.color,
                dash = if l.dashed {
                    r#" stroke-dasharray="6 4""#
                } else {
                    ""
                }
            );
            if l.markers {
                for &(px, py) in &l.points {
                    if px.is_finite() && py.is_finite() {
                        let _ = write!(
                            s,
                            r#"<circle cx="{:.1}" cy="{:.1}" r="3" fill="{}"><title>{}: {} at {}</title></circle>"#,
                            sx(px),
                            sy(py),
                            l.color,
                            esc(&l.name),
                            tick_label(py),
                            tick_label(px)
                        );
                    }
                }
            }
        }
        s.push_str("</svg>");
        s
    }
}

/// "Nice" tick values covering `[lo, hi]` (1, 2, 5 × 10^k steps).
pub fn nice_ticks(lo: f64, hi: f64, target: usize) -> Vec<f64> {
    let span = hi - lo;
    if !(span.is_finite()) || span <= 0.0 {
        return vec![lo, lo + 1.0];
    }
    let raw = span / target.max(1) as f64;
    let mag = 10f64.powf(raw.log10().floor());
    let step = [1.0, 2.0, 5.0, 10.0]
        .iter()
        .map(|m| m * mag)
        .find(|s| span / s <= target as f64)
        .unwrap_or(10.0 * mag);
    let start = (lo / step).floor() * step;
    let mut v = Vec::new();
    let mut i = 0;
    loop {
        let t = start + i as f64 * step;
        v.push(if t.abs() < step * 1e-9 { 0.0 } else { t });
        if t >= hi - step * 1e-9 || i > 1000 {
            break;
        }
        i += 1;
    }
    v
}

fn tick_label(v: f64) -> String {
    let a = v.abs();
    if a >= 1e6 {
        format!("{:.1}M", v / 1e6)
    } else if a >= 1e4 {
        format!("{:.0}k", v / 1e3)
    } else {
        crate::view::num(v)
    }
}

/// Escapes text for HTML/SVG content and attributes. `://` is written `&#58;//` so that no URL
/// (a target address shown as text) can ever read as a resource reference.
pub fn esc(s: &str) -> String {
    let mut o = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => o.push_str("&amp;"),
            '<' => o.push_str("&lt;"),
            '>' => o.push_str("&gt;"),
            '"' => o.push_str("&quot;"),
            '\'' => o.push_str("&#39;"),
            _ => o.push(c),
        }
    }
    o.replace("://", "&#58;//")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ticks_are_nice() {
        assert_eq!(
            nice_ticks(0.0, 10.0, 5),
            vec![0.0, 2.0, 4.0, 6.0, 8.0, 10.0]
        );
        let t = nice_ticks(0.0, 0.9, 5);
        assert_eq!(t.len(), 6);
        assert!((t[5] - 1.0).abs() < 1e-12 && (t[1] - 0.2).abs() < 1e-12);
        let t = nice_ticks(3.0, 47.0, 6);
        assert!(t[0] <= 3.0 && *t.last().unwrap() >= 47.0);
    }

    #[test]
    fn nan_breaks_the_line_and_paths_are_non_empty() {
        let mut c = Chart::new("c1", "T", "x", "y");
        c.line(
            "a",
            vec![(0.0, 1.0), (1.0, f64::NAN), (2.0, 3.0), (3.0, 4.0)],
            true,
        );
        let svg = c.render();
        assert!(svg.contains(r#"class="series""#));
        let d = svg
            .split(r#"class="series""#)
            .nth(1)
            .unwrap()
            .split(r#" d=""#)
            .nth(1)
            .unwrap()
            .split('"')
            .next()
            .unwrap();
        assert_eq!(d.matches('M').count(), 2, "{d}");
        assert!(c.has_data());
    }

    #[test]
    fn escape_neutralises_urls_and_markup() {
        assert_eq!(esc("<a href=\"x\">"), "&lt;a href=&quot;x&quot;&gt;");
        assert_eq!(esc("http://h:8000/v1"), "http&#58;//h:8000/v1");
    }
}
