//! A small log-log line plot rendered to PNG without any font or image library:
//! a 3x5 bitmap font for labels and a minimal PNG encoder (stored deflate blocks).

/// RGB canvas.
pub struct Canvas {
    pub width: usize,
    pub height: usize,
    pixels: Vec<[u8; 3]>,
}

const WHITE: [u8; 3] = [255, 255, 255];
const BLACK: [u8; 3] = [0, 0, 0];
const GRID: [u8; 3] = [225, 225, 225];
const GUIDE: [u8; 3] = [160, 160, 160];
const DATA: [u8; 3] = [31, 119, 180];

impl Canvas {
    pub fn new(width: usize, height: usize) -> Canvas {
        Canvas {
            width,
            height,
            pixels: vec![WHITE; width * height],
        }
    }

    fn set(&mut self, x: i64, y: i64, color: [u8; 3]) {
        if x >= 0 && y >= 0 && (x as usize) < self.width && (y as usize) < self.height {
            self.pixels[y as usize * self.width + x as usize] = color;
        }
    }

    fn fill_rect(&mut self, x0: i64, y0: i64, w: i64, h: i64, color: [u8; 3]) {
        for y in y0..y0 + h {
            for x in x0..x0 + w {
                self.set(x, y, color);
            }
        }
    }

    /// A line `thickness` pixels wide; `dash` > 0 draws dashes of that many pixels.
    fn line(
        &mut self,
        (x0, y0): (f64, f64),
        (x1, y1): (f64, f64),
        thickness: i64,
        dash: usize,
        color: [u8; 3],
    ) {
        let steps = ((x1 - x0).abs().max((y1 - y0).abs()).ceil() as usize).max(1);
        for s in 0..=steps {
            if dash > 0 && (s / dash) % 2 == 1 {
                continue;
            }
            let t = s as f64 / steps as f64;
            let (x, y) = (
                (x0 + t * (x1 - x0)).round() as i64,
                (y0 + t * (y1 - y0)).round() as i64,
            );
            let r = thickness / 2;
            self.fill_rect(x - r, y - r, thickness, thickness, color);
        }
    }

    fn disc(&mut self, (cx, cy): (f64, f64), radius: f64, color: [u8; 3]) {
        let r = radius.ceil() as i64;
        for dy in -r..=r {
            for dx in -r..=r {
                if ((dx * dx + dy * dy) as f64) <= radius * radius {
                    self.set(cx.round() as i64 + dx, cy.round() as i64 + dy, color);
                }
            }
        }
    }

    /// Text in the 3x5 font, each font pixel `scale` x `scale`; returns the width drawn.
    fn text(&mut self, x: i64, y: i64, text: &str, scale: i64, color: [u8; 3]) -> i64 {
        let mut pen = x;
        for c in text.chars() {
            if let Some(rows) = glyph(c) {
                for (r, bits) in rows.iter().enumerate() {
                    for col in 0..3 {
                        if bits & (0b100 >> col) != 0 {
                            self.fill_rect(
                                pen + col * scale,
                                y + r as i64 * scale,
                                scale,
                                scale,
                                color,
                            );
                        }
                    }
                }
            }
            pen += 4 * scale;
        }
        pen - x
    }

    /// Text rotated 90° counter-clockwise (reads bottom to top), starting at (x, y) going up.
    fn text_vertical(&mut self, x: i64, y: i64, text: &str, scale: i64, color: [u8; 3]) {
        let mut pen = y;
        for c in text.chars() {
            if let Some(rows) = glyph(c) {
                for (r, bits) in rows.iter().enumerate() {
                    for col in 0..3 {
                        if bits & (0b100 >> col) != 0 {
                            self.fill_rect(
                                x + r as i64 * scale,
                                pen - (col + 1) * scale,
                                scale,
                                scale,
                                color,
                            );
                        }
                    }
                }
            }
            pen -= 4 * scale;
        }
    }

    /// The canvas as PNG bytes (8-bit RGB, no compression).
    pub fn to_png(&self) -> Vec<u8> {
        let mut raw = Vec::with_capacity(self.height * (1 + 3 * self.width));
        for row in self.pixels.chunks(self.width) {
            raw.push(0); // filter: none
            for p in row {
                raw.extend_from_slice(p);
            }
        }
        let mut png = b"\x89PNG\r\n\x1a\n".to_vec();
        let mut ihdr = Vec::new();
        ihdr.extend_from_slice(&(self.width as u32).to_be_bytes());
        ihdr.extend_from_slice(&(self.height as u32).to_be_bytes());
        ihdr.extend_from_slice(&[8, 2, 0, 0, 0]); // depth 8, RGB, deflate, filter 0, no interlace
        chunk(&mut png, b"IHDR", &ihdr);
        chunk(&mut png, b"IDAT", &zlib_stored(&raw));
        chunk(&mut png, b"IEND", &[]);
        png
    }
}

fn chunk(png: &mut Vec<u8>, kind: &[u8; 4], data: &[u8]) {
    png.extend_from_slice(&(data.len() as u32).to_be_bytes());
    let start = png.len();
    png.extend_from_slice(kind);
    png.extend_from_slice(data);
    let crc = crc32(&png[start..]);
    png.extend_from_slice(&crc.to_be_bytes());
}

fn crc32(bytes: &[u8]) -> u32 {
    let mut crc = 0xFFFF_FFFFu32;
    for &b in bytes {
        crc ^= b as u32;
        for _ in 0..8 {
            crc = if crc & 1 != 0 {
                (crc >> 1) ^ 0xEDB8_8320
            } else {
                crc >> 1
            };
        }
    }
    !crc
}

/// A zlib stream of stored (uncompressed) deflate blocks.
fn zlib_stored(data: &[u8]) -> Vec<u8> {
    let mut out = vec![0x78, 0x01];
    let blocks: Vec<&[u8]> = if data.is_empty() {
        vec![&[][..]]
    } else {
        data.chunks(65_535).collect()
    };
    for (k, block) in blocks.iter().enumerate() {
        out.push(u8::from(k + 1 == blocks.len()));
        let len = block.len() as u16;
        out.extend_from_slice(&len.to_le_bytes());
        out.extend_from_slice(&(!len).to_le_bytes());
        out.extend_from_slice(block);
    }
    let (mut a, mut b) = (1u32, 0u32);
    for &x in data {
        a = (a + x as u32) % 65_521;
        b = (b + a) % 65_521;
    }
    out.extend_from_slice(&((b << 16) | a).to_be_bytes());
    out
}

/// 3x5 glyphs, one 3-bit row each (most significant bit on the left).
fn glyph(c: char) -> Option<[u8; 5]> {
    Some(match c {
        '0' => [0b111, 0b101, 0b101, 0b101, 0b111],
        '1' => [0b010, 0b110, 0b010, 0b010, 0b111],
        '2' => [0b111, 0b001, 0b111, 0b100, 0b111],
        '3' => [0b111, 0b001, 0b111, 0b001, 0b111],
        '4' => [0b101, 0b101, 0b111, 0b001, 0b001],
        '5' => [0b111, 0b100, 0b111, 0b001, 0b111],
        '6' => [0b111, 0b100, 0b111, 0b101, 0b111],
        '7' => [0b111, 0b001, 0b001, 0b001, 0b001],
        '8' => [0b111, 0b101, 0b111, 0b101, 0b111],
        '9' => [0b111, 0b101, 0b111, 0b001, 0b111],
        '.' => [0b000, 0b000, 0b000, 0b000, 0b010],
        '-' => [0b000, 0b000, 0b111, 0b000, 0b000],
        '/' => [0b001, 0b001, 0b010, 0b100, 0b100],
        '(' => [0b010, 0b100, 0b100, 0b100, 0b010],
        ')' => [0b010, 0b001, 0b001, 0b001, 0b010],
        ',' => [0b000, 0b000, 0b000, 0b010, 0b100],
        'a' => [0b000, 0b011, 0b101, 0b101, 0b011],
        'c' => [0b000, 0b011, 0b100, 0b100, 0b011],
        'd' => [0b001, 0b011, 0b101, 0b101, 0b011],
        'e' => [0b000, 0b010, 0b111, 0b100, 0b011],
        'f' => [0b011, 0b100, 0b110, 0b100, 0b100],
        'i' => [0b010, 0b000, 0b010, 0b010, 0b010],
        'l' => [0b110, 0b010, 0b010, 0b010, 0b111],
        'm' => [0b000, 0b110, 0b111, 0b101, 0b101],
        'n' => [0b000, 0b110, 0b101, 0b101, 0b101],
        'o' => [0b000, 0b010, 0b101, 0b101, 0b010],
        'p' => [0b000, 0b110, 0b101, 0b110, 0b100],
        'r' => [0b000, 0b101, 0b110, 0b100, 0b100],
        's' => [0b000, 0b011, 0b110, 0b011, 0b110],
        't' => [0b010, 0b111, 0b010, 0b010, 0b011],
        'u' => [0b000, 0b101, 0b101, 0b101, 0b011],
        'v' => [0b000, 0b101, 0b101, 0b101, 0b010],
        'x' => [0b000, 0b101, 0b010, 0b010, 0b101],
        'b' => [0b100, 0b110, 0b101, 0b101, 0b110],
        'g' => [0b000, 0b011, 0b101, 0b011, 0b110],
        'h' => [0b100, 0b110, 0b101, 0b101, 0b101],
        'j' => [0b001, 0b000, 0b001, 0b001, 0b110],
        'k' => [0b100, 0b101, 0b110, 0b110, 0b101],
        'q' => [0b000, 0b011, 0b101, 0b011, 0b001],
        'w' => [0b000, 0b101, 0b101, 0b111, 0b101],
        'y' => [0b000, 0b101, 0b011, 0b001, 0b110],
        'z' => [0b000, 0b111, 0b010, 0b100, 0b111],
        ':' => [0b000, 0b010, 0b000, 0b010, 0b000],
        '_' => [0b000, 0b000, 0b000, 0b000, 0b111],
        '+' => [0b000, 0b010, 0b111, 0b010, 0b000],
        '=' => [0b000, 0b111, 0b000, 0b111, 0b000],
        ' ' => [0; 5],
        _ => return None,
    })
}

/// A label for the decade 10^k.
fn decade_label(k: i32) -> String {
    if (-3..=6).contains(&k) {
        let value = 10f64.powi(k);
        if k >= 0 {
            format!("{}", value as u64)
        } else {
            format!("{value:.prec$}", prec = (-k) as usize)
        }
    } else {
        format!("1e{k}")
    }
}

/// Log-log plot of `points` (x = atoms, y = ms per step) with a dashed O(N) guide
/// through the last point.
pub fn plot_time_per_step(points: &[(f64, f64)], title: &str) -> Canvas {
    let (width, height) = (800usize, 560usize);
    let (left, right, top, bottom) = (90.0, 30.0, 50.0, 70.0);
    let mut canvas = Canvas::new(width, height);
    let finite: Vec<(f64, f64)> = points
        .iter()
        .copied()
        .filter(|p| p.0 > 0.0 && p.1 > 0.0 && p.0.is_finite() && p.1.is_finite())
        .collect();
    let range = |values: Vec<f64>| -> (i32, i32) {
        let lo = values
            .iter()
            .copied()
            .fold(f64::INFINITY, f64::min)
            .log10()
            .floor() as i32;
        let hi = values
            .iter()
            .copied()
            .fold(f64::NEG_INFINITY, f64::max)
            .log10()
            .ceil() as i32;
        if finite.is_empty() {
            (0, 1)
        } else {
            (lo, hi.max(lo + 1))
        }
    };
    let (x_lo, x_hi) = range(finite.iter().map(|p| p.0).collect());
    let (y_lo, y_hi) = range(finite.iter().map(|p| p.1).collect());
    let plot_w = width as f64 - left - right;
    let plot_h = height as f64 - top - bottom;
    let to_px = |x: f64, y: f64| -> (f64, f64) {
        let fx = (x.log10() - x_lo as f64) / (x_hi - x_lo) as f64;
        let fy = (y.log10() - y_lo as f64) / (y_hi - y_lo) as f64;
        (left + fx * plot_w, top + (1.0 - fy) * plot_h)
    };
    // Grid and ticks at decades, minor ticks at 2..9.
    for k in x_lo..=x_hi {
        let (px, _) = to_px(10f64.powi(k), 10f64.powi(y_lo));
        canvas.line((px, top), (px, top + plot_h), 1, 0, GRID);
        canvas.line((px, top + plot_h), (px, top + plot_h + 6.0), 1, 0, BLACK);
        let label = decade_label(k);
        let w = (label.chars().count() * 8) as f64;
        canvas.text(
            (px - w / 2.0) as i64,
            (top + plot_h + 12.0) as i64,
            &label,
            2,
            BLACK,
        );
        if k < x_hi {
            for m in 2..10 {
                let (px, _) = to_px(m as f64 * 10f64.powi(k), 10f64.powi(y_lo));
                canvas.line((px, top + plot_h), (px, top + plot_h + 3.0), 1, 0, BLACK);
            }
        }
    }
    for k in y_lo..=y_hi {
        let (_, py) = to_px(10f64.powi(x_lo), 10f64.powi(k));
        canvas.line((left, py), (left + plot_w, py), 1, 0, GRID);
        canvas.line((left - 6.0, py), (left, py), 1, 0, BLACK);
        let label = decade_label(k);
        let w = (label.chars().count() * 8) as f64;
        canvas.text(
            (left - 10.0 - w) as i64,
            (py - 5.0) as i64,
            &label,
            2,
            BLACK,
        );
        if k < y_hi {
            for m in 2..10 {
                let (_, py) = to_px(10f64.powi(x_lo), m as f64 * 10f64.powi(k));
                canvas.line((left - 3.0, py), (left, py), 1, 0, BLACK);
            }
        }
    }
    // Axes.
    canvas.line((left, top), (left, top + plot_h), 2, 0, BLACK);
    canvas.line(
        (left, top + plot_h),
        (left + plot_w, top + plot_h),
        2,
        0,
        BLACK,
    );
    // O(N) guide through the last point, clipped to the plot box.
    if let Some(&(xn, yn)) = finite.last() {
        let samples = 200;
        let mut previous: Option<(f64, f64)> = None;
        for s in 0..=samples {
            let lx = x_lo as f64 + (x_hi - x_lo) as f64 * s as f64 / samples as f64;
            let x = 10f64.powf(lx);
            let y = yn * x / xn;
            let inside = y >= 10f64.powi(y_lo) && y <= 10f64.powi(y_hi);
            let p = to_px(x, y);
            if let (Some(q), true) = (previous, inside) {
                if s % 4 < 2 {
                    canvas.line(q, p, 1, 0, GUIDE);
                }
            }
            previous = inside.then_some(p);
        }
    }
    // Data.
    for pair in finite.windows(2) {
        canvas.line(
            to_px(pair[0].0, pair[0].1),
            to_px(pair[1].0, pair[1].1),
            3,
            0,
            DATA,
        );
    }
    for &(x, y) in &finite {
        canvas.disc(to_px(x, y), 5.0, DATA);
    }
    // Labels.
    let x_label = "atoms";
    canvas.text(
        (left + plot_w / 2.0 - (x_label.len() * 12) as f64 / 2.0) as i64,
        (height as f64 - 28.0) as i64,
        x_label,
        3,
        BLACK,
    );
    canvas.text_vertical(12, (top + plot_h / 2.0 + 60.0) as i64, "ms/step", 3, BLACK);
    canvas.text(left as i64, 15, title, 2, BLACK);
    canvas
}

#[cfg(test)]
mod tests {
    #[test]
    fn crc_and_adler_known_values() {
        // CRC-32 of "123456789" is 0xCBF43926; Adler-32 of "Wikipedia" is 0x11E60398.
        assert_eq!(super::crc32(b"123456789"), 0xCBF4_3926);
        let z = super::zlib_stored(b"Wikipedia");
        assert_eq!(&z[z.len() - 4..], &0x11E6_0398u32.to_be_bytes());
    }
}
