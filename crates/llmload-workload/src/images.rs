//! Images for multimodal requests (OpenAI `image_url` content parts).
//!
//! Three sources: a list file of URLs (passed through as they are), local files (sent as base64
//! data URLs with the MIME type read from the file's magic bytes), and synthetic images
//! generated in-process (PNG or JPEG at a given size). Synthetic images are unique per request
//! unless asked otherwise, so a server's multimodal cache is not hit by accident: each is a
//! cached base picture with a 64x64 block of 8x8-pixel cells stamped in its top-left corner that
//! spells the image's sequence number in binary.
//!
//! Encoding a large JPEG costs milliseconds, so synthetic images are made ahead of time by
//! background threads ([`ImageFeed`]) into a bounded queue; the engine in turn pulls requests on
//! a producer task ahead of dispatch. Neither happens on the dispatch path.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, SyncSender, sync_channel};
use std::sync::{Arc, Mutex};

use base64::Engine as _;
use image::{ImageEncoder, RgbImage};
use llmload_core::ImageMeta;
use rand::{Rng, SeedableRng};
use serde::Serialize;

use crate::error::{Result, WorkloadError};
use crate::fastjpeg::PatchJpeg;

/// Encoded format of synthetic images.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, serde::Deserialize, clap::ValueEnum)]
#[serde(rename_all = "snake_case")]
pub enum ImageFormat {
    Jpeg,
    Png,
}

impl ImageFormat {
    pub fn mime(self) -> &'static str {
        match self {
            Self::Jpeg => "image/jpeg",
            Self::Png => "image/png",
        }
    }
}

/// Parse `WIDTHxHEIGHT` (e.g. `448x448`).
pub fn parse_size(s: &str) -> Result<(u32, u32)> {
    let bad = || {
        WorkloadError::flag(
            "--image-size",
            s,
            "expected WIDTHxHEIGHT with both between 1 and 16384, e.g. 448x448",
        )
    };
    let (w, h) = s.trim().split_once(['x', 'X']).ok_or_else(bad)?;
    let w: u32 = w.trim().parse().map_err(|_| bad())?;
    let h: u32 = h.trim().parse().map_err(|_| bad())?;
    if !(1..=16384).contains(&w) || !(1..=16384).contains(&h) {
        return Err(bad());
    }
    Ok((w, h))
}

/// One image ready to send.
#[derive(Debug, Clone)]
pub struct EncodedImage {
    /// `https://...` or `data:<mime>;base64,...`; shared by every request that sends this
    /// image (cloning copies a pointer, not the ~250 KB of a 1024x1024 JPEG's data URL).
    pub url: Arc<str>,
    pub meta: ImageMeta,
}

/// A `data:` URL, built in one allocation of its exact size: base64 goes into a per-thread
/// scratch buffer (whose pages stay mapped between images) and is copied once into the shared
/// string, instead of growing a fresh large buffer and then copying it into an `Arc`.
fn data_url(mime: &str, bytes: &[u8]) -> Arc<str> {
    thread_local! {
        static SCRATCH: std::cell::RefCell<String> = const { std::cell::RefCell::new(String::new()) };
    }
    /// Scratch kept between calls at most (larger inputs, e.g. big local files, are rare).
    const KEEP: usize = 4 << 20;
    let b64 = base64::engine::general_purpose::STANDARD;
    SCRATCH.with(|s| {
        let mut s = s.borrow_mut();
        s.clear();
        s.reserve(bytes.len().div_ceil(3) * 4 + mime.len() + 13);
        s.push_str("data:");
        s.push_str(mime);
        s.push_str(";base64,");
        b64.encode_string(bytes, &mut s);
        let url = Arc::from(s.as_str());
        if s.capacity() > KEEP {
            *s = String::new();
        }
        url
    })
}

/// Generator of synthetic images: a seeded base picture plus a per-image unique block.
#[derive(Debug, Clone)]
pub struct SyntheticImages {
    pub width: u32,
    pub height: u32,
    pub format: ImageFormat,
    /// JPEG quality (1-100).
    pub quality: u8,
    base: Arc<RgbImage>,
    /// JPEG fast path: the base encoded once, stamped rows re-coded per image.
    jpeg: Option<Arc<PatchJpeg>>,
}

/// Side of the stamped block in pixels (8x8 cells of 8 pixels: 64 bits).
const STAMP_CELL: u32 = 8;

impl SyntheticImages {
    /// A generator for `width x height` images; `seed` picks the base picture. For JPEG the
    /// base is encoded here once (tens of milliseconds for 1024x1024 in a release build).
    pub fn new(
        width: u32,
        height: u32,
        format: ImageFormat,
        quality: u8,
        seed: u64,
    ) -> Result<Self> {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed ^ 0x1A6E_5EED);
        // A smooth picture with mild noise: compresses like a photo, not like white noise.
        let waves: Vec<[f32; 4]> = (0..6)
            .map(|_| {
                [
                    rng.random_range(0.002..0.03f32),
                    rng.random_range(0.002..0.03f32),
                    rng.random_range(0.0..std::f32::consts::TAU),
                    rng.random_range(20.0..60.0f32),
                ]
            })
            .collect();
        let mut base = RgbImage::new(width, height);
        for (x, y, px) in base.enumerate_pixels_mut() {
            let mut c = [0f32; 3];
            for (i, w) in waves.iter().enumerate() {
                let v = (w[0] * x as f32 + w[1] * y as f32 + w[2]).sin() * w[3];
                c[i % 3] += v;
            }
            let noise: i32 = rng.random_range(-6..=6);
            for (k, ch) in px.0.iter_mut().enumerate() {
                *ch = (128.0 + c[k] + noise as f32).clamp(0.0, 255.0) as u8;
            }
        }
        let quality = quality.clamp(1, 100);
        let jpeg = match format {
            ImageFormat::Jpeg => Some(Arc::new(PatchJpeg::new(
                &base,
                quality,
                (64 / STAMP_CELL) as usize,
            )?)),
            ImageFormat::Png => None,
        };
        Ok(Self {
            width,
            height,
            format,
            quality,
            base: Arc::new(base),
            jpeg,
        })
    }

    /// The raw pixels of image `seq` (the base with `seq`'s block stamped).
    pub fn raw(&self, seq: u64) -> RgbImage {
        let mut img = (*self.base).clone();
        for bit in 0..64u32 {
            let on = (seq >> bit) & 1 == 1;
            let (cx, cy) = ((bit % 8) * STAMP_CELL, (bit / 8) * STAMP_CELL);
            let v = if on { 255 } else { 0 };
            for y in cy..(cy + STAMP_CELL).min(self.height) {
                for x in cx..(cx + STAMP_CELL).min(self.width) {
                    img.put_pixel(x, y, image::Rgb([v, v, v]));
                }
            }
        }
        img
    }

    /// Encode image `seq`.
    pub fn generate(&self, seq: u64) -> Result<EncodedImage> {
        thread_local! {
            // The JPEG bytes only live until base64-encoded: reuse one buffer per thread.
            static BUF: std::cell::RefCell<Vec<u8>> = const { std::cell::RefCell::new(Vec::new()) };
        }
        let mime = self.format.mime();
        let (url, len) = match &self.jpeg {
            Some(pj) => BUF.with(|b| {
                let mut buf = b.borrow_mut();
                pj.encode_into(&mut buf, |row, col| {
                    (row < 8 && col < 8).then(|| {
                        let on = (seq >> (row * 8 + col)) & 1 == 1;
                        if on { [255; 3] } else { [0; 3] }
                    })
                });
                (data_url(mime, &buf), buf.len())
            }),
            None => {
                let bytes = self.encode_full(seq)?;
                (data_url(mime, &bytes), bytes.len())
            }
        };
        Ok(EncodedImage {
            url,
            meta: ImageMeta {
                width: Some(self.width),
                height: Some(self.height),
                bytes: Some(len as u64),
                mime: Some(mime.to_string()),
            },
        })
    }

    /// Encode image `seq` with the `image` crate's encoder (PNG; JPEG for comparison).
    pub fn encode_full(&self, seq: u64) -> Result<Vec<u8>> {
        let img = self.raw(seq);
        let mut bytes = Vec::with_capacity((self.width * self.height) as usize / 4);
        let r = match self.format {
            ImageFormat::Jpeg => {
                image::codecs::jpeg::JpegEncoder::new_with_quality(&mut bytes, self.quality)
                    .write_image(
                        &img,
                        self.width,
                        self.height,
                        image::ExtendedColorType::Rgb8,
                    )
            }
            ImageFormat::Png => image::codecs::png::PngEncoder::new_with_quality(
                &mut bytes,
                image::codecs::png::CompressionType::Fast,
                image::codecs::png::FilterType::Sub,
            )
            .write_image(
                &img,
                self.width,
                self.height,
                image::ExtendedColorType::Rgb8,
            ),
        };
        r.map_err(|e| WorkloadError::Image(format!("cannot encode a synthetic image: {e}")))?;
        Ok(bytes)
    }
}

/// Synthetic images made ahead by background threads into a bounded queue.
pub struct ImageFeed {
    rx: Mutex<Receiver<Result<EncodedImage>>>,
    workers: usize,
}

impl std::fmt::Debug for ImageFeed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ImageFeed")
            .field("workers", &self.workers)
            .finish()
    }
}

impl ImageFeed {
    /// Start `workers` threads keeping up to `ahead` images ready. Threads stop when the feed
    /// is dropped.
    pub fn start(generator: SyntheticImages, workers: usize, ahead: usize) -> Result<Self> {
        let (tx, rx) = sync_channel(ahead.max(1));
        let next = Arc::new(AtomicU64::new(0));
        let workers = workers.max(1);
        for i in 0..workers {
            let tx: SyncSender<Result<EncodedImage>> = tx.clone();
            let next = Arc::clone(&next);
            let generator = generator.clone();
            std::thread::Builder::new()
                .name(format!("llmload-img-{i}"))
                .spawn(move || {
                    lower_priority();
                    loop {
                        let seq = next.fetch_add(1, Ordering::Relaxed);
                        if tx.send(generator.generate(seq)).is_err() {
                            break;
                        }
                    }
                })
                .map_err(|e| WorkloadError::Image(format!("cannot start an image thread: {e}")))?;
        }
        Ok(Self {
            rx: Mutex::new(rx),
            workers,
        })
    }

    /// The next image (blocks only if the threads fall behind).
    pub fn next(&self) -> Result<EncodedImage> {
        let rx = self
            .rx
            .lock()
            .map_err(|_| WorkloadError::Image("image queue poisoned".into()))?;
        rx.recv()
            .map_err(|_| WorkloadError::Image("image threads stopped".into()))?
    }
}

/// Lower the calling thread's scheduling priority (Linux: nice +10 for this thread only), so
/// that image encoding yields the CPU at once to the engine's dispatch and I/O threads. The
/// threads still get CPU on a busy machine (not SCHED_IDLE), just with a lower weight.
fn lower_priority() {
    #[cfg(target_os = "linux")]
    {
        // SAFETY: gettid and setpriority take plain integers and touch no memory of ours; on
        // Linux PRIO_PROCESS with a thread id changes that thread's nice value only. Failure
        // (e.g. a restrictive seccomp profile) leaves the priority as it was, which is fine.
        unsafe {
            let tid = libc::syscall(libc::SYS_gettid) as libc::id_t;
            libc::setpriority(libc::PRIO_PROCESS, tid, 10);
        }
    }
}

/// Read a URL list file: one URL per line (`http://`, `https://` or `data:image/...`); empty
/// lines and lines starting with `#` are skipped.
pub fn read_url_list(path: &Path) -> Result<Vec<EncodedImage>> {
    let text = std::fs::read_to_string(path).map_err(|e| WorkloadError::io(path, e))?;
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let l = line.trim();
        if l.is_empty() || l.starts_with('#') {
            continue;
        }
        let ok_scheme =
            l.starts_with("http://") || l.starts_with("https://") || l.starts_with("data:image/");
        let host_ok = l
            .strip_prefix("http://")
            .or_else(|| l.strip_prefix("https://"))
            .map(|rest| !rest.is_empty() && !rest.starts_with('/'))
            .unwrap_or(true);
        if !ok_scheme || !host_ok || l.chars().any(char::is_whitespace) {
            return Err(WorkloadError::Parse {
                path: path.to_path_buf(),
                line: i + 1,
                msg: format!(
                    "`{}` is not an image URL: each line must be one http://, https:// or data:image/ URL without spaces (for local files use --image-dir or --image-file)",
                    truncate(l, 80)
                ),
            });
        }
        out.push(EncodedImage {
            url: Arc::from(l),
            meta: ImageMeta {
                width: None,
                height: None,
                bytes: None,
                mime: None,
            },
        });
    }
    if out.is_empty() {
        return Err(WorkloadError::Invalid {
            path: path.to_path_buf(),
            msg: "no image URL in the file (one URL per line)".into(),
        });
    }
    Ok(out)
}

fn truncate(s: &str, n: usize) -> String {
    if s.chars().count() <= n {
        s.to_string()
    } else {
        format!("{}...", s.chars().take(n).collect::<String>())
    }
}

/// MIME type from a file's first bytes.
pub fn sniff_mime(bytes: &[u8]) -> Option<&'static str> {
    match bytes {
        [0x89, b'P', b'N', b'G', ..] => Some("image/png"),
        [0xFF, 0xD8, 0xFF, ..] => Some("image/jpeg"),
        [b'G', b'I', b'F', b'8', ..] => Some("image/gif"),
        [
            b'R',
            b'I',
            b'F',
            b'F',
            _,
            _,
            _,
            _,
            b'W',
            b'E',
            b'B',
            b'P',
            ..,
        ] => Some("image/webp"),
        [b'B', b'M', ..] => Some("image/bmp"),
        _ => None,
    }
}

/// Load local image files as data URLs. Every file is read now, so a missing or unreadable
/// file is an error before any load starts.
pub fn load_files(paths: &[PathBuf]) -> Result<Vec<EncodedImage>> {
    let mut out = Vec::with_capacity(paths.len());
    for p in paths {
        let bytes = std::fs::read(p).map_err(|e| WorkloadError::io(p, e))?;
        let mime = sniff_mime(&bytes).ok_or_else(|| WorkloadError::Invalid {
            path: p.clone(),
            msg: "not a PNG, JPEG, GIF, WebP or BMP image (checked its first bytes)".into(),
        })?;
        let dims = image::ImageReader::new(std::io::Cursor::new(&bytes))
            .with_guessed_format()
            .ok()
            .and_then(|r| r.into_dimensions().ok());
        out.push(EncodedImage {
            url: data_url(mime, &bytes),
            meta: ImageMeta {
                width: dims.map(|d| d.0),
                height: dims.map(|d| d.1),
                bytes: Some(bytes.len() as u64),
                mime: Some(mime.to_string()),
            },
        });
    }
    Ok(out)
}

/// Image files of a directory (by extension: png, jpg, jpeg, gif, webp, bmp), sorted by name.
pub fn list_dir(dir: &Path) -> Result<Vec<PathBuf>> {
    let rd = std::fs::read_dir(dir).map_err(|e| WorkloadError::io(dir, e))?;
    let mut files = Vec::new();
    for entry in rd {
        let entry = entry.map_err(|e| WorkloadError::io(dir, e))?;
        let p = entry.path();
        let ext = p
            .extension()
            .and_then(|e| e.to_str())
            .unwrap_or("")
            .to_ascii_lowercase();
        if p.is_file()
            && matches!(
                ext.as_str(),
                "png" | "jpg" | "jpeg" | "gif" | "webp" | "bmp"
            )
        {
            files.push(p);
        }
    }
    files.sort();
    if files.is_empty() {
        return Err(WorkloadError::Invalid {
            path: dir.to_path_buf(),
            msg: "no image files (.png, .jpg, .jpeg, .gif, .webp, .bmp) in the directory".into(),
        });
    }
    Ok(files)
}

/// Where a request's images come from.
#[derive(Debug)]
pub enum ImageSource {
    /// A fixed pool (URL list or local files), taken in order and cycled.
    Pool {
        images: Vec<EncodedImage>,
        next: usize,
        kind: &'static str,
    },
    /// Synthetic images, unique per image.
    Unique(ImageFeed, SyntheticImages),
    /// One synthetic image reused for every request (`--same-images`).
    Same(EncodedImage, SyntheticImages),
}

impl ImageSource {
    /// The next `n` images.
    pub fn take(&mut self, n: usize) -> Result<Vec<EncodedImage>> {
        match self {
            Self::Pool { images, next, .. } => Ok((0..n)
                .map(|_| {
                    let img = images[*next % images.len()].clone();
                    *next = (*next + 1) % images.len();
                    img
                })
                .collect()),
            Self::Unique(feed, _) => (0..n).map(|_| feed.next()).collect(),
            Self::Same(img, _) => Ok(vec![img.clone(); n]),
        }
    }

    /// For the results description.
    pub fn describe(&self) -> serde_json::Value {
        match self {
            Self::Pool { images, kind, .. } => {
                serde_json::json!({"source": kind, "count": images.len()})
            }
            Self::Unique(_, g) | Self::Same(_, g) => serde_json::json!({
                "source": "synthetic",
                "width": g.width,
                "height": g.height,
                "format": g.format,
                "quality": g.quality,
                "unique_per_request": matches!(self, Self::Unique(..)),
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decode_data_url(url: &str) -> (String, Vec<u8>) {
        let rest = url.strip_prefix("data:").expect("data url");
        let (mime, b64) = rest.split_once(";base64,").expect("base64");
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(b64)
            .expect("valid base64");
        (mime.to_string(), bytes)
    }

    #[test]
    fn png_decodes_back_to_the_generated_pixels() {
        let g = SyntheticImages::new(96, 80, ImageFormat::Png, 90, 1).expect("gen");
        let img = g.generate(12345).expect("png");
        let (mime, bytes) = decode_data_url(&img.url);
        assert_eq!(mime, "image/png");
        assert_eq!(img.meta.bytes, Some(bytes.len() as u64));
        let decoded = image::load_from_memory(&bytes).expect("decode").to_rgb8();
        assert_eq!(decoded, g.raw(12345));
        assert_ne!(g.raw(12345), g.raw(12346));
    }

    #[test]
    fn jpeg_decodes_close_to_the_generated_pixels_and_is_unique() {
        let g = SyntheticImages::new(256, 128, ImageFormat::Jpeg, 90, 2).expect("gen");
        let a = g.generate(1).expect("jpeg");
        let b = g.generate(2).expect("jpeg");
        assert_ne!(a.url, b.url);
        let (mime, bytes) = decode_data_url(&a.url);
        assert_eq!(mime, "image/jpeg");
        assert_eq!(sniff_mime(&bytes), Some("image/jpeg"));
        let decoded = image::load_from_memory(&bytes).expect("decode").to_rgb8();
        assert_eq!(decoded.dimensions(), (256, 128));
        let raw = g.raw(1);
        let mad: f64 = decoded
            .as_raw()
            .iter()
            .zip(raw.as_raw())
            .map(|(&x, &y)| (x as f64 - y as f64).abs())
            .sum::<f64>()
            / raw.as_raw().len() as f64;
        assert!(mad < 6.0, "mean abs difference {mad}");
        // The stamped bits survive compression: cell 0 is on for seq 1, off for seq 2.
        let da = image::load_from_memory(&decode_data_url(&a.url).1)
            .expect("a")
            .to_rgb8();
        let db = image::load_from_memory(&decode_data_url(&b.url).1)
            .expect("b")
            .to_rgb8();
        assert!(da.get_pixel(3, 3).0[0] > 200 && db.get_pixel(3, 3).0[0] < 55);
    }

    #[test]
    fn feed_delivers_distinct_images() {
        let g = SyntheticImages::new(64, 64, ImageFormat::Png, 90, 3).expect("gen");
        let feed = ImageFeed::start(g, 2, 4).expect("feed");
        let urls: std::collections::HashSet<Arc<str>> =
            (0..20).map(|_| feed.next().expect("img").url).collect();
        assert_eq!(urls.len(), 20);
    }

    #[test]
    fn url_list_bad_line_names_the_line() {
        let dir = tempfile::tempdir().expect("tmp");
        let p = dir.path().join("images.txt");
        std::fs::write(
            &p,
            "# my images\nhttps://example.com/a.jpg\n\nhttp://h/b.png\nnot a url\n",
        )
        .expect("write");
        let err = read_url_list(&p).expect_err("bad line").to_string();
        assert!(
            err.contains("images.txt:5:") && err.contains("not a url"),
            "{err}"
        );
        std::fs::write(&p, "https://example.com/a.jpg\nhttps://example.com/b.jpg\n").expect("w");
        let urls = read_url_list(&p).expect("ok");
        assert_eq!(urls.len(), 2);
        assert_eq!(&*urls[1].url, "https://example.com/b.jpg");
        std::fs::write(&p, "\n# nothing\n").expect("w");
        assert!(read_url_list(&p).is_err());
    }

    #[test]
    fn local_files_become_data_urls_and_missing_files_fail() {
        let dir = tempfile::tempdir().expect("tmp");
        let g = SyntheticImages::new(40, 30, ImageFormat::Png, 90, 4).expect("gen");
        let img = g.raw(7);
        let p = dir.path().join("x.png");
        img.save(&p).expect("save png");
        std::fs::write(dir.path().join("notes.txt"), "x").expect("w");
        let files = list_dir(dir.path()).expect("dir");
        assert_eq!(files, vec![p.clone()]);
        let loaded = load_files(&files).expect("load");
        assert_eq!(loaded[0].meta.width, Some(40));
        assert_eq!(loaded[0].meta.mime.as_deref(), Some("image/png"));
        let (mime, bytes) = decode_data_url(&loaded[0].url);
        assert_eq!(mime, "image/png");
        assert_eq!(image::load_from_memory(&bytes).expect("png").to_rgb8(), img);
        let missing = dir.path().join("missing.jpg");
        let err = load_files(&[missing]).expect_err("missing").to_string();
        assert!(err.contains("missing.jpg"), "{err}");
        let empty = tempfile::tempdir().expect("tmp");
        assert!(list_dir(empty.path()).is_err());
    }

    #[test]
    fn size_parsing() {
        assert_eq!(parse_size("448x448").expect("size"), (448, 448));
        assert_eq!(parse_size("1024X768").expect("size"), (1024, 768));
        for bad in ["448", "0x10", "axb", "99999x1"] {
            assert!(parse_size(bad).is_err(), "{bad}");
        }
    }
}
