//! Image inputs: width and height from a PNG or JPEG header (base64 data URLs), and the number
//! of image tokens by the profile's rule (Qwen-VL "smart resize": sides rounded to multiples of
//! the token size, area kept within the model's min/max pixels).

use base64::Engine as _;

use crate::profile::VisionSpec;

/// Why an image could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ImageError {
    #[error("image_url is not a base64 data URL (data:image/...;base64,...)")]
    NotDataUrl,
    #[error("image data is not valid base64: {0}")]
    Base64(String),
    #[error("image is neither PNG nor JPEG, or its header is truncated")]
    UnknownFormat,
}

/// Decoded facts about one image.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ImageInfo {
    pub width: u32,
    pub height: u32,
    /// Hash of the encoded bytes (same image, same hash).
    pub hash: u64,
}

/// Reads width/height from a `data:image/...;base64,` URL.
pub fn probe_data_url(url: &str) -> Result<ImageInfo, ImageError> {
    let rest = url.strip_prefix("data:").ok_or(ImageError::NotDataUrl)?;
    let (_, b64) = rest.split_once(";base64,").ok_or(ImageError::NotDataUrl)?;
    // the header is within the first few KB for PNG; JPEG SOF can follow large EXIF blocks, so
    // decode everything (cheap compared with the front-end cost being simulated)
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(b64.trim())
        .map_err(|e| ImageError::Base64(e.to_string()))?;
    let (width, height) = probe(&bytes).ok_or(ImageError::UnknownFormat)?;
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in bytes.iter().take(65536) {
        h ^= b as u64;
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h ^= bytes.len() as u64;
    Ok(ImageInfo {
        width,
        height,
        hash: h,
    })
}

/// Width and height from PNG or JPEG bytes.
pub fn probe(b: &[u8]) -> Option<(u32, u32)> {
    if b.len() >= 24
        && b.starts_with(&[0x89, b'P', b'N', b'G', 0x0D, 0x0A, 0x1A, 0x0A])
        && &b[12..16] == b"IHDR"
    {
        let w = u32::from_be_bytes([b[16], b[17], b[18], b[19]]);
        let h = u32::from_be_bytes([b[20], b[21], b[22], b[23]]);
        return Some((w, h));
    }
    if b.len() >= 4 && b[0] == 0xFF && b[1] == 0xD8 {
        let mut i = 2;
        while i + 4 <= b.len() {
            if b[i] != 0xFF {
                i += 1;
                continue;
            }
            let marker = b[i + 1];
            if marker == 0xFF {
                i += 1;
                continue;
            }
            if marker == 0xD8 || marker == 0x01 || (0xD0..=0xD7).contains(&marker) {
                i += 2;
                continue;
            }
            let len = u16::from_be_bytes([b[i + 2], b[i + 3]]) as usize;
            let is_sof = (0xC0..=0xCF).contains(&marker) && ![0xC4, 0xC8, 0xCC].contains(&marker);
            if is_sof {
                if i + 9 > b.len() {
                    return None;
                }
                let h = u16::from_be_bytes([b[i + 5], b[i + 6]]) as u32;
                let w = u16::from_be_bytes([b[i + 7], b[i + 8]]) as u32;
                return Some((w, h));
            }
            i += 2 + len;
        }
    }
    None
}

/// Tokens and vision-encoder patches for an image of `w` x `h` under the profile's rule.
pub fn image_tokens(v: &VisionSpec, w: u32, h: u32) -> (u32, u64) {
    let f = v.pixels_per_token_side.max(1) as f64;
    let (wf, hf) = (w.max(1) as f64, h.max(1) as f64);
    let mut hb = ((hf / f).round() * f).max(f);
    let mut wb = ((wf / f).round() * f).max(f);
    if hb * wb > v.max_pixels as f64 {
        let beta = (hf * wf / v.max_pixels as f64).sqrt();
        hb = ((hf / beta / f).floor() * f).max(f);
        wb = ((wf / beta / f).floor() * f).max(f);
    } else if hb * wb < v.min_pixels as f64 {
        let beta = (v.min_pixels as f64 / (hf * wf)).sqrt();
        hb = (hf * beta / f).ceil() * f;
        wb = (wf * beta / f).ceil() * f;
    }
    let tokens = ((hb / f) * (wb / f)) as u32;
    let p = v.patch_size.max(1) as f64;
    let patches = ((hb / p) * (wb / p)) as u64;
    (tokens, patches)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::profile::Profile;

    fn png(w: u32, h: u32) -> Vec<u8> {
        let mut v = vec![0x89, b'P', b'N', b'G', 0x0D, 0x0A, 0x1A, 0x0A, 0, 0, 0, 13];
        v.extend_from_slice(b"IHDR");
        v.extend_from_slice(&w.to_be_bytes());
        v.extend_from_slice(&h.to_be_bytes());
        v.extend_from_slice(&[8, 2, 0, 0, 0]);
        v
    }

    fn jpeg(w: u16, h: u16) -> Vec<u8> {
        let mut v = vec![0xFF, 0xD8, 0xFF, 0xE0, 0x00, 0x04, 0x4A, 0x46];
        v.extend_from_slice(&[0xFF, 0xC0, 0x00, 0x11, 0x08]);
        v.extend_from_slice(&h.to_be_bytes());
        v.extend_from_slice(&w.to_be_bytes());
        v.extend_from_slice(&[3, 1, 0x22, 0]);
        v
    }

    #[test]
    fn probes_png_and_jpeg_headers() {
        assert_eq!(probe(&png(640, 480)), Some((640, 480)));
        assert_eq!(probe(&jpeg(896, 448)), Some((896, 448)));
        assert_eq!(probe(b"GIF89a"), None);
        let url = format!(
            "data:image/png;base64,{}",
            base64::engine::general_purpose::STANDARD.encode(png(448, 448))
        );
        assert_eq!(probe_data_url(&url).unwrap().width, 448);
        assert_eq!(
            probe_data_url("http://x/y.png"),
            Err(ImageError::NotDataUrl)
        );
    }

    #[test]
    fn qwen3_vl_tokens_match_the_real_server() {
        let p = Profile::builtin("qwen3-vl-4b-bf16-h100").unwrap();
        let v = p.vision.unwrap();
        // real vLLM: 448x448 -> ~196 image tokens, 896x896 -> ~784
        assert_eq!(image_tokens(&v, 448, 448).0, 196);
        assert_eq!(image_tokens(&v, 896, 896).0, 784);
        // tiny images are scaled up to min_pixels, huge ones down to max_pixels
        assert!(image_tokens(&v, 10, 10).0 >= (v.min_pixels / 1024) as u32);
        assert!(image_tokens(&v, 20000, 20000).0 as u64 <= v.max_pixels / 1024);
    }
}
