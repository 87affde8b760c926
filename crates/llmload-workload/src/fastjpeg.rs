//! Fast unique JPEGs: a baseline JPEG of the base picture is encoded once with a restart
//! marker after every row of 8x8 blocks, so each row's entropy-coded bytes stand alone. An
//! image differing from the base only in its first rows (the stamped sequence number) is then
//! those few rows Huffman-coded again from cached DCT coefficients, followed by the cached
//! bytes of all other rows: well under a millisecond for 1024x1024, against tens of
//! milliseconds for a full encode.
//!
//! The quantization and Huffman tables are the `image` crate's (read from a tiny JPEG it
//! encodes at the same quality), so the output matches what a full encode at that quality
//! would look like. Colour is YCbCr 4:4:4 (JFIF), 8-bit baseline: every decoder reads it.

use image::{ImageEncoder, RgbImage};

use crate::error::{Result, WorkloadError};

/// Natural (row-major) index of each zig-zag position.
fn zigzag() -> [usize; 64] {
    let mut out = [0usize; 64];
    let mut k = 0;
    for s in 0..15usize {
        let range: Vec<usize> = (0..=s).filter(|&i| i < 8 && s - i < 8).collect();
        // Even diagonals run bottom-left to top-right (row decreasing).
        let rows: Vec<usize> = if s % 2 == 0 {
            range.iter().rev().copied().collect()
        } else {
            range
        };
        for r in rows {
            out[k] = r * 8 + (s - r);
            k += 1;
        }
    }
    out
}

/// A Huffman table as (code, length) per symbol.
#[derive(Clone)]
struct Huff {
    code: [u16; 256],
    len: [u8; 256],
}

impl Huff {
    fn from_spec(counts: &[u8; 16], symbols: &[u8]) -> Self {
        let mut h = Huff {
            code: [0; 256],
            len: [0; 256],
        };
        let mut code: u32 = 0;
        let mut k = 0;
        for (i, &n) in counts.iter().enumerate() {
            for _ in 0..n {
                if let Some(&s) = symbols.get(k) {
                    h.code[s as usize] = code as u16;
                    h.len[s as usize] = (i + 1) as u8;
                }
                k += 1;
                code += 1;
            }
            code <<= 1;
        }
        h
    }
}

struct BitWriter {
    out: Vec<u8>,
    acc: u64,
    nbits: u32,
}

impl BitWriter {
    fn new(cap: usize) -> Self {
        Self {
            out: Vec::with_capacity(cap),
            acc: 0,
            nbits: 0,
        }
    }

    #[inline]
    fn put(&mut self, bits: u32, n: u32) {
        if n == 0 {
            return;
        }
        self.acc = (self.acc << n) | (bits as u64 & ((1u64 << n) - 1));
        self.nbits += n;
        while self.nbits >= 8 {
            self.nbits -= 8;
            let b = (self.acc >> self.nbits) as u8;
            self.out.push(b);
            if b == 0xFF {
                self.out.push(0x00);
            }
        }
    }

    /// Pad to a byte boundary with 1-bits (end of a restart interval).
    fn align(&mut self) {
        let pad = (8 - self.nbits % 8) % 8;
        self.put((1 << pad) - 1, pad);
    }
}

type Block = [i16; 64];

/// Quantized coefficients (zig-zag order) of one MCU: Y, Cb, Cr.
type Mcu = [Block; 3];

/// A base picture ready to be re-emitted with its first rows changed.
pub struct PatchJpeg {
    width: u32,
    height: u32,
    mcus_x: usize,
    header: Vec<u8>,
    /// Entropy-coded bytes of each MCU row, with its trailing restart marker (none after the
    /// last row).
    rows: Vec<Vec<u8>>,
    /// Coefficients of the first `patch_rows` MCU rows.
    patch: Vec<Vec<Mcu>>,
    dc: [Huff; 2],
    ac: [Huff; 2],
    qt: [[f32; 64]; 2],
}

impl std::fmt::Debug for PatchJpeg {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PatchJpeg")
            .field("width", &self.width)
            .field("height", &self.height)
            .finish()
    }
}

/// Tables read from a JPEG's DQT and DHT segments.
struct Tables {
    dqt: Vec<u8>,
    dht: Vec<u8>,
    /// Quantizers in zig-zag order, table 0 (luma) and 1 (chroma).
    q: [[u16; 64]; 2],
    dc: [Option<Huff>; 2],
    ac: [Option<Huff>; 2],
}

fn read_tables(jpeg: &[u8]) -> Option<Tables> {
    let mut t = Tables {
        dqt: Vec::new(),
        dht: Vec::new(),
        q: [[0; 64]; 2],
        dc: [None, None],
        ac: [None, None],
    };
    let mut i = 2;
    while i + 4 <= jpeg.len() {
        if jpeg[i] != 0xFF {
            return None;
        }
        let marker = jpeg[i + 1];
        if marker == 0xDA {
            break;
        }
        let len = u16::from_be_bytes([jpeg[i + 2], jpeg[i + 3]]) as usize;
        let seg = jpeg.get(i + 4..i + 2 + len)?;
        match marker {
            0xDB => {
                t.dqt.extend_from_slice(&jpeg[i..i + 2 + len]);
                let mut p = 0;
                while p < seg.len() {
                    let (pq, tq) = (seg[p] >> 4, (seg[p] & 15) as usize);
                    if pq != 0 || tq > 1 {
                        return None;
                    }
                    for k in 0..64 {
                        t.q[tq][k] = *seg.get(p + 1 + k)? as u16;
                    }
                    p += 65;
                }
            }
            0xC4 => {
                t.dht.extend_from_slice(&jpeg[i..i + 2 + len]);
                let mut p = 0;
                while p < seg.len() {
                    let (tc, th) = (seg[p] >> 4, (seg[p] & 15) as usize);
                    let mut counts = [0u8; 16];
                    counts.copy_from_slice(seg.get(p + 1..p + 17)?);
                    let n: usize = counts.iter().map(|&c| c as usize).sum();
                    let syms = seg.get(p + 17..p + 17 + n)?;
                    let h = Huff::from_spec(&counts, syms);
                    match (tc, th) {
                        (0, 0 | 1) => t.dc[th] = Some(h),
                        (1, 0 | 1) => t.ac[th] = Some(h),
                        _ => return None,
                    }
                    p += 17 + n;
                }
            }
            _ => {}
        }
        i += 2 + len;
    }
    Some(t)
}

fn bit_len(v: i32) -> u32 {
    32 - v.unsigned_abs().leading_zeros()
}

impl PatchJpeg {
    /// Encode `base` once at `quality`; `patch_rows` MCU rows (of 8 pixels) can be replaced
    /// per image.
    pub fn new(base: &RgbImage, quality: u8, patch_rows: usize) -> Result<Self> {
        let (width, height) = base.dimensions();
        if width == 0 || height == 0 || width > 65_535 || height > 65_535 {
            return Err(WorkloadError::Image(format!(
                "JPEG size {width}x{height} out of range (1..65535)"
            )));
        }
        // Borrow the image crate's tables at this quality from a tiny image.
        let mut tiny = Vec::new();
        image::codecs::jpeg::JpegEncoder::new_with_quality(&mut tiny, quality)
            .write_image(&[128u8; 8 * 8 * 3], 8, 8, image::ExtendedColorType::Rgb8)
            .map_err(|e| WorkloadError::Image(format!("cannot encode a JPEG: {e}")))?;
        let bad = || WorkloadError::Image("unexpected JPEG tables from the encoder".into());
        let t = read_tables(&tiny).ok_or_else(bad)?;
        let dc = [
            t.dc[0].clone().ok_or_else(bad)?,
            t.dc[1].clone().ok_or_else(bad)?,
        ];
        let ac = [
            t.ac[0].clone().ok_or_else(bad)?,
            t.ac[1].clone().ok_or_else(bad)?,
        ];
        let zz = zigzag();
        // Quantizer per natural index, pre-divided into the DCT's 1/4 C(u) C(v) factor.
        let mut qt = [[0f32; 64]; 2];
        for (tab, q) in qt.iter_mut().zip(t.q.iter()) {
            for k in 0..64 {
                tab[zz[k]] = q[k].max(1) as f32;
            }
        }
        let mcus_x = width.div_ceil(8) as usize;
        let mcus_y = height.div_ceil(8) as usize;

        let mut header = Vec::with_capacity(1024);
        header.extend_from_slice(&[0xFF, 0xD8]);
        header.extend_from_slice(&[
            0xFF, 0xE0, 0x00, 0x10, b'J', b'F', b'I', b'F', 0x00, 0x01, 0x01, 0x00, 0x00, 0x01,
            0x00, 0x01, 0x00, 0x00,
        ]);
        header.extend_from_slice(&t.dqt);
        let (w, h) = (width as u16, height as u16);
        header.extend_from_slice(&[0xFF, 0xC0, 0x00, 0x11, 0x08]);
        header.extend_from_slice(&h.to_be_bytes());
        header.extend_from_slice(&w.to_be_bytes());
        header.extend_from_slice(&[0x03, 0x01, 0x11, 0x00, 0x02, 0x11, 0x01, 0x03, 0x11, 0x01]);
        header.extend_from_slice(&t.dht);
        header.extend_from_slice(&[0xFF, 0xDD, 0x00, 0x04]);
        header.extend_from_slice(&(mcus_x as u16).to_be_bytes());
        header.extend_from_slice(&[
            0xFF, 0xDA, 0x00, 0x0C, 0x03, 0x01, 0x00, 0x02, 0x11, 0x03, 0x11, 0x00, 0x3F, 0x00,
        ]);

        let mut me = Self {
            width,
            height,
            mcus_x,
            header,
            rows: Vec::with_capacity(mcus_y),
            patch: Vec::new(),
            dc,
            ac,
            qt,
        };
        let cos = cos_table();
        let mut row_mcus = vec![[[0i16; 64]; 3]; mcus_x];
        for my in 0..mcus_y {
            for (mx, mcu) in row_mcus.iter_mut().enumerate() {
                *mcu = me.mcu(base, mx, my, &cos, &zz);
            }
            let coded = me.entropy_row(&row_mcus, my, mcus_y);
            me.rows.push(coded);
            if my < patch_rows {
                me.patch.push(row_mcus.clone());
            }
        }
        Ok(me)
    }

    /// DCT and quantize the MCU at (mx, my) of `img` (edge pixels replicated past the border).
    fn mcu(
        &self,
        img: &RgbImage,
        mx: usize,
        my: usize,
        cos: &[[f32; 8]; 8],
        zz: &[usize; 64],
    ) -> Mcu {
        let mut planes = [[0f32; 64]; 3];
        for y in 0..8 {
            let py = ((my * 8 + y) as u32).min(self.height - 1);
            for x in 0..8 {
                let px = ((mx * 8 + x) as u32).min(self.width - 1);
                let [r, g, b] = img.get_pixel(px, py).0;
                let (r, g, b) = (r as f32, g as f32, b as f32);
                planes[0][y * 8 + x] = 0.299 * r + 0.587 * g + 0.114 * b - 128.0;
                planes[1][y * 8 + x] = -0.168_736 * r - 0.331_264 * g + 0.5 * b;
                planes[2][y * 8 + x] = 0.5 * r - 0.418_688 * g - 0.081_312 * b;
            }
        }
        let mut out = [[0i16; 64]; 3];
        for c in 0..3 {
            let q = &self.qt[usize::from(c > 0)];
            let f = fdct(&planes[c], cos);
            for k in 0..64 {
                out[c][k] = (f[zz[k]] / q[zz[k]]).round() as i16;
            }
        }
        out
    }

    /// Huffman-code one MCU row as one restart interval.
    fn entropy_row(&self, mcus: &[Mcu], my: usize, mcus_y: usize) -> Vec<u8> {
        let mut bw = BitWriter::new(mcus.len() * 3 * 16);
        let mut pred = [0i32; 3];
        for mcu in mcus {
            for c in 0..3 {
                let t = usize::from(c > 0);
                self.block(&mut bw, &mcu[c], &mut pred[c], &self.dc[t], &self.ac[t]);
            }
        }
        bw.align();
        if my + 1 < mcus_y {
            bw.out.extend_from_slice(&[0xFF, 0xD0 + (my % 8) as u8]);
        }
        bw.out
    }

    #[inline]
    fn block(&self, bw: &mut BitWriter, zz: &Block, pred: &mut i32, dc: &Huff, ac: &Huff) {
        let v = zz[0] as i32;
        let diff = v - *pred;
        *pred = v;
        let s = bit_len(diff);
        bw.put(dc.code[s as usize] as u32, dc.len[s as usize] as u32);
        if s > 0 {
            let bits = if diff < 0 { diff - 1 } else { diff };
            bw.put(bits as u32, s);
        }
        let mut run = 0u32;
        for &c in &zz[1..] {
            if c == 0 {
                run += 1;
                continue;
            }
            while run > 15 {
                bw.put(ac.code[0xF0] as u32, ac.len[0xF0] as u32);
                run -= 16;
            }
            let v = c as i32;
            let s = bit_len(v);
            let sym = ((run << 4) | s) as usize;
            bw.put(ac.code[sym] as u32, ac.len[sym] as u32);
            let bits = if v < 0 { v - 1 } else { v };
            bw.put(bits as u32, s);
            run = 0;
        }
        if run > 0 {
            bw.put(ac.code[0] as u32, ac.len[0] as u32);
        }
    }

    /// Number of MCU rows that can be patched.
    pub fn patch_rows(&self) -> usize {
        self.patch.len()
    }

    /// The JPEG with blocks replaced: `replace(row, col)` returns `Some(rgb)` to paint the
    /// 8x8 block at MCU (col, row) of the patchable rows one flat colour.
    pub fn encode_with(&self, replace: impl Fn(usize, usize) -> Option<[u8; 3]>) -> Vec<u8> {
        let total: usize = self.header.len() + self.rows.iter().map(Vec::len).sum::<usize>() + 2;
        let mut out = Vec::with_capacity(total + 1024);
        out.extend_from_slice(&self.header);
        let mcus_y = self.rows.len();
        let mut row = Vec::with_capacity(self.mcus_x);
        for (my, cached) in self.rows.iter().enumerate() {
            match self.patch.get(my) {
                Some(base) => {
                    row.clear();
                    row.extend(
                        base.iter()
                            .enumerate()
                            .map(|(mx, m)| match replace(my, mx) {
                                Some(rgb) => self.flat(rgb),
                                None => *m,
                            }),
                    );
                    out.extend_from_slice(&self.entropy_row(&row, my, mcus_y));
                }
                None => out.extend_from_slice(cached),
            }
        }
        out.extend_from_slice(&[0xFF, 0xD9]);
        out
    }

    /// Coefficients of a flat 8x8 block of colour `rgb` (DC only).
    fn flat(&self, [r, g, b]: [u8; 3]) -> Mcu {
        let (r, g, b) = (r as f32, g as f32, b as f32);
        let ycc = [
            0.299 * r + 0.587 * g + 0.114 * b - 128.0,
            -0.168_736 * r - 0.331_264 * g + 0.5 * b,
            0.5 * r - 0.418_688 * g - 0.081_312 * b,
        ];
        let mut out = [[0i16; 64]; 3];
        for c in 0..3 {
            // DC of the DCT = 8 * mean value (with the 1/4 C(0)^2 = 1/8 scaling on 64 samples).
            out[c][0] = (ycc[c] * 8.0 / self.qt[usize::from(c > 0)][0]).round() as i16;
        }
        out
    }
}

fn cos_table() -> [[f32; 8]; 8] {
    let mut t = [[0f32; 8]; 8];
    for (u, row) in t.iter_mut().enumerate() {
        let cu = if u == 0 {
            std::f32::consts::FRAC_1_SQRT_2
        } else {
            1.0
        };
        for (x, v) in row.iter_mut().enumerate() {
            *v = 0.5 * cu * (((2 * x + 1) as f32 * u as f32 * std::f32::consts::PI) / 16.0).cos();
        }
    }
    t
}

/// 2-D DCT-II with JPEG's normalisation: F(u,v) = 1/4 C(u) C(v) sum f(x,y) cos.. cos..
fn fdct(block: &[f32; 64], cos: &[[f32; 8]; 8]) -> [f32; 64] {
    let mut tmp = [0f32; 64];
    for y in 0..8 {
        for u in 0..8 {
            let mut s = 0.0;
            for x in 0..8 {
                s += block[y * 8 + x] * cos[u][x];
            }
            tmp[y * 8 + u] = s;
        }
    }
    let mut out = [0f32; 64];
    for u in 0..8 {
        for v in 0..8 {
            let mut s = 0.0;
            for y in 0..8 {
                s += tmp[y * 8 + u] * cos[v][y];
            }
            out[v * 8 + u] = s;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zigzag_is_the_jpeg_order() {
        let z = zigzag();
        assert_eq!(z[..10], [0, 1, 8, 16, 9, 2, 3, 10, 17, 24]);
        assert_eq!(z[60..], [47, 55, 62, 63]);
        let mut s = z.to_vec();
        s.sort_unstable();
        assert_eq!(s, (0..64).collect::<Vec<_>>());
    }

    fn mad(a: &RgbImage, b: &RgbImage) -> f64 {
        a.as_raw()
            .iter()
            .zip(b.as_raw())
            .map(|(&x, &y)| (x as f64 - y as f64).abs())
            .sum::<f64>()
            / a.as_raw().len() as f64
    }

    #[test]
    fn decodes_to_the_picture_with_patched_blocks() {
        // A size that is not a multiple of 8, to cover edge blocks.
        let (w, h) = (75u32, 43u32);
        let base = RgbImage::from_fn(w, h, |x, y| {
            image::Rgb([(x * 3) as u8, (y * 5) as u8, ((x + y) * 2) as u8])
        });
        let pj = PatchJpeg::new(&base, 90, 2).expect("encode");
        let plain = pj.encode_with(|_, _| None);
        let dec = image::load_from_memory(&plain).expect("decodes").to_rgb8();
        assert_eq!(dec.dimensions(), (w, h));
        assert!(mad(&dec, &base) < 3.0, "mad {}", mad(&dec, &base));

        let patched = pj.encode_with(|row, col| (row == 1 && col == 2).then_some([255, 255, 255]));
        let dec = image::load_from_memory(&patched)
            .expect("decodes")
            .to_rgb8();
        let mut expect = base.clone();
        for y in 8..16 {
            for x in 16..24 {
                expect.put_pixel(x, y, image::Rgb([255, 255, 255]));
            }
        }
        assert!(mad(&dec, &expect) < 3.0, "mad {}", mad(&dec, &expect));
        assert!(dec.get_pixel(19, 11).0.iter().all(|&c| c > 245));
        assert_ne!(plain, patched);
    }
}
