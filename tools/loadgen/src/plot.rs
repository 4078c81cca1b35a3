//! Line charts as PNG files, with no system dependency: an RGB canvas, Bresenham
//! lines, the public-domain 8x8 bitmap font of `font8x8` for text, and a PNG encoder
//! (zlib from `miniz_oxide`, CRC-32 from `crc32fast`).
//!
//! A [`Chart`] has a linear x axis from 0 and a linear or log10 y axis; each
//! [`Series`] is a polyline through its points (sorted by x) with square markers,
//! solid or dashed. Stateless functions; safe from any thread.

use std::fmt::Write as _;

/// An RGB colour.
pub type Rgb = [u8; 3];

/// One line of a chart.
#[derive(Debug, Clone, PartialEq)]
pub struct Series {
    /// Legend text.
    pub label: String,
    /// Colour.
    pub color: Rgb,
    /// Dashed instead of solid.
    pub dashed: bool,
    /// (x, y) points; drawn in x order.
    pub points: Vec<(f64, f64)>,
}

/// A chart to render.
#[derive(Debug, Clone, PartialEq)]
pub struct Chart {
    /// Title, drawn at the top.
    pub title: String,
    /// X axis label.
    pub x_label: String,
    /// Y axis label.
    pub y_label: String,
    /// Log10 y axis (values must be > 0; others are dropped).
    pub log_y: bool,
    /// The lines.
    pub series: Vec<Series>,
}

/// An RGB image.
#[derive(Debug, Clone)]
pub struct Canvas {
    width: usize,
    height: usize,
    pixels: Vec<u8>,
}

impl Canvas {
    /// A white canvas.
    pub fn new(width: usize, height: usize) -> Canvas {
        Canvas {
            width,
            height,
            pixels: vec![255; width * height * 3],
        }
    }

    /// Width in pixels.
    pub fn width(&self) -> usize {
        self.width
    }

    /// Height in pixels.
    pub fn height(&self) -> usize {
        self.height
    }

    /// The colour at (x, y), if inside.
    pub fn get(&self, x: usize, y: usize) -> Option<Rgb> {
        if x >= self.width || y >= self.height {
            return None;
        }
        let i = (y * self.width + x) * 3;
        Some([self.pixels[i], self.pixels[i + 1], self.pixels[i + 2]])
    }

    /// Sets (x, y); outside points are ignored.
    pub fn set(&mut self, x: i64, y: i64, color: Rgb) {
        if x < 0 || y < 0 || x as usize >= self.width || y as usize >= self.height {
            return;
        }
        let i = (y as usize * self.width + x as usize) * 3;
        self.pixels[i..i + 3].copy_from_slice(&color);
    }

    fn rect(&mut self, x0: i64, y0: i64, x1: i64, y1: i64, color: Rgb) {
        for y in y0..=y1 {
            for x in x0..=x1 {
                self.set(x, y, color);
            }
        }
    }

    /// A line from (x0, y0) to (x1, y1), `thick` pixels wide; dashed lines draw 6
    /// pixels of every 10.
    pub fn line(
        &mut self,
        (x0, y0): (i64, i64),
        (x1, y1): (i64, i64),
        color: Rgb,
        thick: i64,
        dashed: bool,
    ) {
        let (dx, dy) = ((x1 - x0).abs(), -(y1 - y0).abs());
        let (sx, sy) = (if x0 < x1 { 1 } else { -1 }, if y0 < y1 { 1 } else { -1 });
        let (mut x, mut y, mut err) = (x0, y0, dx + dy);
        let mut step = 0u64;
        loop {
            if !dashed || step % 10 < 6 {
                let r = thick / 2;
                self.rect(x - r, y - r, x - r + thick - 1, y - r + thick - 1, color);
            }
            step += 1;
            if x == x1 && y == y1 {
                break;
            }
            let e2 = 2 * err;
            if e2 >= dy {
                err += dy;
                x += sx;
            }
            if e2 <= dx {
                err += dx;
                y += sy;
            }
        }
    }

    /// Draws `text` with its top-left corner at (x, y), each font pixel `scale`
    /// pixels square. Characters outside ASCII are drawn as `?`.
    pub fn text(&mut self, x: i64, y: i64, text: &str, scale: i64, color: Rgb) {
        for (n, c) in text.chars().enumerate() {
            let glyph = glyph(c);
            for (row, bits) in glyph.iter().enumerate() {
                for col in 0..8 {
                    if bits & (1 << col) != 0 {
                        let px = x + (n as i64 * 8 + col) * scale;
                        let py = y + row as i64 * scale;
                        self.rect(px, py, px + scale - 1, py + scale - 1, color);
                    }
                }
            }
        }
    }

    /// Draws `text` rotated a quarter turn counter-clockwise (reading bottom to top),
    /// its glyphs' top edge at column `x`, ending at row `y_bottom`.
    pub fn text_vertical(&mut self, x: i64, y_bottom: i64, text: &str, color: Rgb) {
        for (n, c) in text.chars().enumerate() {
            let glyph = glyph(c);
            for (row, bits) in glyph.iter().enumerate() {
                for col in 0..8i64 {
                    if bits & (1 << col) != 0 {
                        self.set(x + row as i64, y_bottom - (n as i64 * 8 + col), color);
                    }
                }
            }
        }
    }

    /// The image as a PNG file (8-bit RGB, no interlace).
    pub fn to_png(&self) -> Vec<u8> {
        let mut raw = Vec::with_capacity((self.width * 3 + 1) * self.height);
        for row in self.pixels.chunks(self.width * 3) {
            raw.push(0); // filter: none
            raw.extend_from_slice(row);
        }
        let mut png = b"\x89PNG\r\n\x1a\n".to_vec();
        let mut ihdr = Vec::with_capacity(13);
        ihdr.extend_from_slice(&(self.width as u32).to_be_bytes());
        ihdr.extend_from_slice(&(self.height as u32).to_be_bytes());
        ihdr.extend_from_slice(&[8, 2, 0, 0, 0]);
        chunk(&mut png, b"IHDR", &ihdr);
        chunk(
            &mut png,
            b"IDAT",
            &miniz_oxide::deflate::compress_to_vec_zlib(&raw, 6),
        );
        chunk(&mut png, b"IEND", &[]);
        png
    }
}

fn chunk(out: &mut Vec<u8>, kind: &[u8; 4], data: &[u8]) {
    out.extend_from_slice(&(data.len() as u32).to_be_bytes());
    out.extend_from_slice(kind);
    out.extend_from_slice(data);
    let mut crc = crc32fast::Hasher::new();
    crc.update(kind);
    crc.update(data);
    out.extend_from_slice(&crc.finalize().to_be_bytes());
}

const BLACK: Rgb = [0, 0, 0];
const GRID: Rgb = [225, 225, 225];
const WIDTH: usize = 960;
const HEIGHT: usize = 540;
const LEFT: i64 = 90;
/// Room right of the plot area for the legend.
const RIGHT: i64 = 225;
const TOP: i64 = 44;
const BOTTOM: i64 = 64;

/// A "nice" tick step (1, 2 or 5 times a power of ten) giving about `target` ticks.
pub fn nice_step(max: f64, target: f64) -> f64 {
    if max.is_nan() || max <= 0.0 || !max.is_finite() {
        return 1.0;
    }
    let raw = max / target;
    let magnitude = 10f64.powf(raw.log10().floor());
    let fraction = raw / magnitude;
    let nice = if fraction <= 1.0 {
        1.0
    } else if fraction <= 2.0 {
        2.0
    } else if fraction <= 5.0 {
        5.0
    } else {
        10.0
    };
    nice * magnitude
}

/// A count with a k/M suffix: `1500` -> `1.5k`, `2000000` -> `2M`.
pub fn short_count(v: f64) -> String {
    let (value, suffix) = if v.abs() >= 1e6 {
        (v / 1e6, "M")
    } else if v.abs() >= 1e3 {
        (v / 1e3, "k")
    } else {
        (v, "")
    };
    let mut s = String::new();
    if (value - value.round()).abs() < 1e-9 {
        let _ = write!(s, "{}{suffix}", value.round() as i64);
    } else {
        let _ = write!(s, "{value:.1}{suffix}");
    }
    s
}

/// A latency in µs as text with a unit: `10us`, `1ms`, `2.5s`.
pub fn short_latency_us(us: f64) -> String {
    if us >= 1e6 {
        format!("{}s", short_count(us / 1e6))
    } else if us >= 1e3 {
        format!("{}ms", short_count(us / 1e3))
    } else {
        format!("{}us", short_count(us))
    }
}

/// Renders `chart` to a 960 x 540 PNG.
pub fn render(chart: &Chart) -> Vec<u8> {
    let mut c = Canvas::new(WIDTH, HEIGHT);
    let (w, h) = (WIDTH as i64, HEIGHT as i64);
    let (x0, x1, y0, y1) = (LEFT, w - RIGHT, h - BOTTOM, TOP);
    let points = |s: &Series| -> Vec<(f64, f64)> {
        let mut p: Vec<(f64, f64)> = s
            .points
            .iter()
            .copied()
            .filter(|(x, y)| x.is_finite() && y.is_finite() && (!chart.log_y || *y > 0.0))
            .collect();
        p.sort_by(|a, b| a.0.total_cmp(&b.0));
        p
    };
    let all: Vec<(f64, f64)> = chart.series.iter().flat_map(points).collect();
    let max_x = all.iter().map(|p| p.0).fold(0.0, f64::max).max(1.0) * 1.05;
    let x_step = nice_step(max_x, 8.0);
    let max_x = (max_x / x_step).ceil() * x_step;
    let (min_y, max_y) = if chart.log_y {
        let lo = all.iter().map(|p| p.1).fold(f64::INFINITY, f64::min);
        let hi = all.iter().map(|p| p.1).fold(0.0, f64::max);
        let lo = if lo.is_finite() {
            lo.log10().floor()
        } else {
            0.0
        };
        let hi = if hi > 0.0 { hi.log10().ceil() } else { 1.0 };
        (lo, hi.max(lo + 1.0))
    } else {
        let hi = all.iter().map(|p| p.1).fold(0.0, f64::max).max(1.0) * 1.05;
        (0.0, hi)
    };
    let px = |x: f64| x0 + ((x / max_x) * (x1 - x0) as f64).round() as i64;
    let py = |y: f64| {
        let v = if chart.log_y { y.log10() } else { y };
        y0 - (((v - min_y) / (max_y - min_y)) * (y0 - y1) as f64).round() as i64
    };

    // Grid and tick labels.
    let mut x = 0.0;
    while x <= max_x + x_step / 2.0 {
        let p = px(x);
        c.line((p, y0), (p, y1), GRID, 1, false);
        let label = short_count(x);
        c.text(p - label.len() as i64 * 4, y0 + 8, &label, 1, BLACK);
        x += x_step;
    }
    if chart.log_y {
        let mut d = min_y;
        while d <= max_y + 0.5 {
            let v = 10f64.powf(d);
            let p = py(v);
            c.line((x0, p), (x1, p), GRID, 1, false);
            for k in 2..10 {
                let minor = py(v * k as f64);
                if d < max_y {
                    c.line((x0, minor), (x0 + 4, minor), BLACK, 1, false);
                }
            }
            let label = short_latency_us(v);
            c.text(x0 - 8 - label.len() as i64 * 8, p - 4, &label, 1, BLACK);
            d += 1.0;
        }
    } else {
        let step = nice_step(max_y, 6.0);
        let mut v = 0.0;
        while v <= max_y {
            let p = py(v);
            c.line((x0, p), (x1, p), GRID, 1, false);
            let label = short_count(v);
            c.text(x0 - 8 - label.len() as i64 * 8, p - 4, &label, 1, BLACK);
            v += step;
        }
    }
    c.line((x0, y0), (x1, y0), BLACK, 1, false);
    c.line((x0, y0), (x0, y1), BLACK, 1, false);
    c.text(x0, 12, &chart.title, 2, BLACK);
    let xl = &chart.x_label;
    c.text((x0 + x1) / 2 - xl.len() as i64 * 4, h - 24, xl, 1, BLACK);
    let yl = &chart.y_label;
    c.text_vertical(12, (y0 + y1) / 2 + yl.len() as i64 * 4, yl, BLACK);

    // Lines, markers, legend.
    for s in &chart.series {
        let p = points(s);
        for pair in p.windows(2) {
            let (a, b) = (pair[0], pair[1]);
            c.line((px(a.0), py(a.1)), (px(b.0), py(b.1)), s.color, 2, s.dashed);
        }
        for (x, y) in &p {
            let (cx, cy) = (px(*x), py(*y));
            c.rect(cx - 3, cy - 3, cx + 3, cy + 3, s.color);
        }
    }
    // Legend right of the plot area, so it never hides a point.
    let (lx, mut ly) = (x1 + 14, y1 + 8);
    for s in &chart.series {
        c.line((lx, ly + 4), (lx + 26, ly + 4), s.color, 2, s.dashed);
        c.text(lx + 34, ly, &s.label, 1, BLACK);
        ly += 14;
    }
    c.to_png()
}

/// The 8x8 bitmap of `c`: its rows top to bottom, bit `col` set for a lit pixel;
/// characters outside ASCII are drawn as `?`.
fn glyph(c: char) -> [u8; 8] {
    let code = if c.is_ascii() {
        c as usize
    } else {
        '?' as usize
    };
    font8x8::legacy::BASIC_LEGACY[code]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn png_has_valid_chunks_and_decompresses_to_the_pixels() {
        let mut c = Canvas::new(3, 2);
        c.set(1, 0, [1, 2, 3]);
        let png = c.to_png();
        assert_eq!(&png[..8], b"\x89PNG\r\n\x1a\n");
        let mut at = 8;
        let mut kinds = Vec::new();
        let mut idat = Vec::new();
        while at < png.len() {
            let len = u32::from_be_bytes(png[at..at + 4].try_into().expect("4")) as usize;
            let kind = &png[at + 4..at + 8];
            let data = &png[at + 8..at + 8 + len];
            let crc = u32::from_be_bytes(png[at + 8 + len..at + 12 + len].try_into().expect("4"));
            let mut h = crc32fast::Hasher::new();
            h.update(kind);
            h.update(data);
            assert_eq!(h.finalize(), crc, "{}", String::from_utf8_lossy(kind));
            if kind == b"IDAT" {
                idat.extend_from_slice(data);
            }
            kinds.push(String::from_utf8_lossy(kind).into_owned());
            at += 12 + len;
        }
        assert_eq!(kinds, ["IHDR", "IDAT", "IEND"]);
        let raw = miniz_oxide::inflate::decompress_to_vec_zlib(&idat).expect("zlib");
        assert_eq!(raw.len(), 2 * (1 + 9));
        assert_eq!(&raw[..10], &[0, 255, 255, 255, 1, 2, 3, 255, 255, 255]);
    }

    #[test]
    fn lines_and_text_touch_the_expected_pixels() {
        let mut c = Canvas::new(20, 20);
        c.line((0, 0), (19, 19), [9, 9, 9], 1, false);
        assert!((0..20).all(|i| c.get(i, i) == Some([9, 9, 9])));
        assert_eq!(c.get(5, 6), Some([255, 255, 255]));
        let mut t = Canvas::new(8, 8);
        t.text(0, 0, "I", 1, BLACK);
        let ink = (0..8)
            .flat_map(|y| (0..8).map(move |x| (x, y)))
            .filter(|(x, y)| t.get(*x, *y) == Some(BLACK))
            .count();
        assert!(ink > 8, "the glyph of I has ink: {ink}");
    }

    #[test]
    fn ticks_and_labels_are_readable() {
        assert_eq!(nice_step(100.0, 10.0), 10.0);
        assert_eq!(nice_step(130_000.0, 8.0), 20_000.0);
        assert_eq!(nice_step(7.0, 8.0), 1.0);
        assert_eq!(short_count(20_000.0), "20k");
        assert_eq!(short_count(1_500.0), "1.5k");
        assert_eq!(short_count(2_000_000.0), "2M");
        assert_eq!(short_latency_us(10.0), "10us");
        assert_eq!(short_latency_us(1000.0), "1ms");
        assert_eq!(short_latency_us(100_000.0), "100ms");
        assert_eq!(short_latency_us(1e6), "1s");
    }

    #[test]
    fn a_chart_renders_to_a_png_of_the_right_size() {
        let chart = Chart {
            title: "get".into(),
            x_label: "requests/s".into(),
            y_label: "latency".into(),
            log_y: true,
            series: vec![Series {
                label: "featstore p99".into(),
                color: [200, 0, 0],
                dashed: false,
                points: vec![(1000.0, 50.0), (20_000.0, 400.0), (5.0, -1.0)],
            }],
        };
        let png = render(&chart);
        assert_eq!(&png[16..24], &[0, 0, 3, 192, 0, 0, 2, 28]);
    }
}
