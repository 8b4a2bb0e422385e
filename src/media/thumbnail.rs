//! Thumbnails: a JPEG, PNG, GIF or WebP picture made smaller, at the size a client asks
//! (`scale`: fitting inside the box, aspect ratio kept; `crop`: filling the box exactly), never
//! larger than the original, with its EXIF orientation applied. Animated GIF and WebP files stay
//! animated when the client asks for `animated`. Decoding is bounded: the picture's declared
//! dimensions are checked against a pixel budget before a byte of it is decoded, so a small
//! file that claims to be 20000×20000 is refused, not expanded.

use std::io::Cursor;

use image::codecs::gif::{GifDecoder, GifEncoder, Repeat};
use image::codecs::jpeg::JpegEncoder;
use image::codecs::webp::WebPDecoder;
use image::{AnimationDecoder, DynamicImage, Frame, ImageDecoder, ImageFormat, ImageReader};

use crate::error::{Error, Result};

/// How the picture fits the asked size.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Method {
    Scale,
    Crop,
}

impl Method {
    pub fn as_str(self) -> &'static str {
        match self {
            Method::Scale => "scale",
            Method::Crop => "crop",
        }
    }
}

/// A thumbnail a client asks for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Wanted {
    pub width: u32,
    pub height: u32,
    pub method: Method,
    pub animated: bool,
}

/// A made thumbnail: its bytes and type.
pub struct Thumbnail {
    pub bytes: Vec<u8>,
    pub content_type: &'static str,
}

/// Most frames an animated thumbnail keeps.
const MAX_FRAMES: usize = 200;

fn not_an_image() -> Error {
    Error::new(
        http::StatusCode::BAD_REQUEST,
        ruma::api::error::ErrorKind::Unknown,
        "This file is not a picture a thumbnail can be made of",
    )
}

fn too_big() -> Error {
    Error::too_large("The picture is too large to make a thumbnail of")
}

/// The size of the thumbnail of a `width`×`height` picture.
pub fn target_size(width: u32, height: u32, wanted: &Wanted) -> (u32, u32) {
    let (w, h) = (f64::from(width), f64::from(height));
    let (bw, bh) = (f64::from(wanted.width), f64::from(wanted.height));
    let (tw, th) = match wanted.method {
        // Fits inside the box; a picture already inside it keeps its size.
        Method::Scale => {
            let ratio = (bw / w).min(bh / h).min(1.0);
            (w * ratio, h * ratio)
        }
        // The box's shape, as large as the box but no larger than the picture allows.
        Method::Crop => {
            let ratio = (w / bw).min(h / bh).min(1.0);
            (bw * ratio, bh * ratio)
        }
    };
    (
        (tw.round() as u32).clamp(1, width.max(1)),
        (th.round() as u32).clamp(1, height.max(1)),
    )
}

fn resize(image: &DynamicImage, wanted: &Wanted) -> DynamicImage {
    let (width, height) = target_size(image.width(), image.height(), wanted);
    if (width, height) == (image.width(), image.height()) {
        return image.clone();
    }
    match wanted.method {
        Method::Scale => image.thumbnail(width, height),
        Method::Crop => image.resize_to_fill(width, height, image::imageops::FilterType::Triangle),
    }
}

/// Makes the thumbnail of `source`; pictures of more than `max_pixels` are refused (413).
pub fn make(source: &[u8], wanted: &Wanted, max_pixels: u64) -> Result<Thumbnail> {
    let reader = || {
        ImageReader::new(Cursor::new(source))
            .with_guessed_format()
            .map_err(|_| not_an_image())
    };
    let format = reader()?.format().ok_or_else(not_an_image)?;
    if !matches!(
        format,
        ImageFormat::Jpeg | ImageFormat::Png | ImageFormat::Gif | ImageFormat::WebP
    ) {
        return Err(not_an_image());
    }
    let (width, height) = reader()?.into_dimensions().map_err(|_| not_an_image())?;
    if width == 0 || height == 0 {
        return Err(not_an_image());
    }
    if u64::from(width) * u64::from(height) > max_pixels {
        return Err(too_big());
    }
    let mut limits = image::Limits::default();
    limits.max_image_width = Some(width);
    limits.max_image_height = Some(height);
    // The decoded picture (at most 8 bytes a pixel) and the decoder's own buffers.
    limits.max_alloc = Some(max_pixels * 8 + 64 * 1024 * 1024);

    if wanted.animated
        && let Some(thumbnail) = animated(source, format, wanted, limits.clone(), max_pixels)?
    {
        return Ok(thumbnail);
    }
    let mut reader = reader()?;
    reader.limits(limits);
    let mut decoder = reader.into_decoder().map_err(|_| not_an_image())?;
    let orientation = decoder.orientation().ok();
    let mut image = DynamicImage::from_decoder(decoder).map_err(|e| match e {
        image::ImageError::Limits(_) => too_big(),
        _ => not_an_image(),
    })?;
    if let Some(orientation) = orientation {
        image.apply_orientation(orientation);
    }
    encode_still(&resize(&image, wanted))
}

/// JPEG for opaque pictures, PNG for those with transparency.
fn encode_still(image: &DynamicImage) -> Result<Thumbnail> {
    let mut bytes = Vec::new();
    let failed = |e: image::ImageError| Error::internal(format!("encoding a thumbnail: {e}"));
    if image.color().has_alpha() {
        image
            .write_to(&mut Cursor::new(&mut bytes), ImageFormat::Png)
            .map_err(failed)?;
        Ok(Thumbnail {
            bytes,
            content_type: "image/png",
        })
    } else {
        JpegEncoder::new_with_quality(&mut bytes, 80)
            .encode_image(&image.to_rgb8())
            .map_err(failed)?;
        Ok(Thumbnail {
            bytes,
            content_type: "image/jpeg",
        })
    }
}

/// An animated GIF thumbnail of an animated GIF or WebP; `None` when the picture has a single
/// frame (a still thumbnail is made then).
fn animated(
    source: &[u8],
    format: ImageFormat,
    wanted: &Wanted,
    limits: image::Limits,
    max_pixels: u64,
) -> Result<Option<Thumbnail>> {
    let frames = match format {
        ImageFormat::Gif => {
            let mut decoder = GifDecoder::new(Cursor::new(source)).map_err(|_| not_an_image())?;
            decoder.set_limits(limits).map_err(|_| too_big())?;
            decoder.into_frames()
        }
        ImageFormat::WebP => {
            let mut decoder = WebPDecoder::new(Cursor::new(source)).map_err(|_| not_an_image())?;
            if !decoder.has_animation() {
                return Ok(None);
            }
            decoder.set_limits(limits).map_err(|_| too_big())?;
            decoder.into_frames()
        }
        _ => return Ok(None),
    };
    let mut resized = Vec::new();
    let mut decoded_pixels: u64 = 0;
    for frame in frames.take(MAX_FRAMES) {
        let frame = frame.map_err(|_| not_an_image())?;
        let buffer = frame.buffer();
        // Every frame is a whole picture: all of them together stay within the budget.
        decoded_pixels += u64::from(buffer.width()) * u64::from(buffer.height());
        if decoded_pixels > max_pixels * 4 {
            return Err(too_big());
        }
        let small = resize(&DynamicImage::ImageRgba8(buffer.clone()), wanted).to_rgba8();
        resized.push(Frame::from_parts(small, 0, 0, frame.delay()));
    }
    if resized.len() < 2 {
        return Ok(None);
    }
    let mut bytes = Vec::new();
    {
        let failed = |e: image::ImageError| Error::internal(format!("encoding a thumbnail: {e}"));
        let mut encoder = GifEncoder::new_with_speed(&mut bytes, 10);
        encoder.set_repeat(Repeat::Infinite).map_err(failed)?;
        encoder.encode_frames(resized).map_err(failed)?;
    }
    Ok(Some(Thumbnail {
        bytes,
        content_type: "image/gif",
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use image::{Rgb, RgbImage, Rgba, RgbaImage};

    fn wanted(width: u32, height: u32, method: Method) -> Wanted {
        Wanted {
            width,
            height,
            method,
            animated: false,
        }
    }

    fn png(width: u32, height: u32) -> Vec<u8> {
        let image = RgbImage::from_fn(width, height, |x, y| Rgb([x as u8, y as u8, 128]));
        let mut bytes = Vec::new();
        DynamicImage::ImageRgb8(image)
            .write_to(&mut Cursor::new(&mut bytes), ImageFormat::Png)
            .unwrap();
        bytes
    }

    fn dimensions(thumbnail: &Thumbnail) -> (u32, u32) {
        ImageReader::new(Cursor::new(&thumbnail.bytes))
            .with_guessed_format()
            .unwrap()
            .into_dimensions()
            .unwrap()
    }

    #[test]
    fn sizes_fit_the_box_and_never_grow() {
        assert_eq!(
            target_size(800, 600, &wanted(320, 240, Method::Scale)),
            (320, 240)
        );
        assert_eq!(
            target_size(800, 400, &wanted(320, 240, Method::Scale)),
            (320, 160)
        );
        assert_eq!(
            target_size(100, 50, &wanted(320, 240, Method::Scale)),
            (100, 50)
        );
        assert_eq!(
            target_size(800, 600, &wanted(96, 96, Method::Crop)),
            (96, 96)
        );
        assert_eq!(target_size(50, 80, &wanted(96, 96, Method::Crop)), (50, 50));
        assert_eq!(
            target_size(1, 10000, &wanted(32, 32, Method::Scale)),
            (1, 32)
        );
    }

    #[test]
    fn pictures_become_thumbnails_of_the_asked_size() {
        let source = png(400, 200);
        let scaled = make(&source, &wanted(100, 100, Method::Scale), 1 << 24).unwrap();
        assert_eq!(scaled.content_type, "image/jpeg");
        assert_eq!(dimensions(&scaled), (100, 50));
        let cropped = make(&source, &wanted(64, 64, Method::Crop), 1 << 24).unwrap();
        assert_eq!(dimensions(&cropped), (64, 64));
        // Transparency is kept, in a PNG.
        let clear = RgbaImage::from_pixel(40, 40, Rgba([0, 0, 0, 0]));
        let mut bytes = Vec::new();
        DynamicImage::ImageRgba8(clear)
            .write_to(&mut Cursor::new(&mut bytes), ImageFormat::Png)
            .unwrap();
        let thumbnail = make(&bytes, &wanted(20, 20, Method::Scale), 1 << 24).unwrap();
        assert_eq!(thumbnail.content_type, "image/png");
    }

    #[test]
    fn exif_orientation_is_applied() {
        use image::ImageEncoder;
        // A big-endian TIFF header with one IFD entry: Orientation (0x0112) = 6, "rotate 90°".
        let exif = vec![
            b'M', b'M', 0, 42, 0, 0, 0, 8, 0, 1, 0x01, 0x12, 0, 3, 0, 0, 0, 1, 0, 6, 0, 0, 0, 0, 0,
            0,
        ];
        let wide = RgbImage::from_pixel(40, 20, Rgb([200, 10, 10]));
        let mut bytes = Vec::new();
        let mut encoder = JpegEncoder::new_with_quality(&mut bytes, 90);
        encoder.set_exif_metadata(exif).unwrap();
        encoder
            .write_image(&wide, 40, 20, image::ExtendedColorType::Rgb8)
            .unwrap();
        let thumbnail = make(&bytes, &wanted(100, 100, Method::Scale), 1 << 24).unwrap();
        assert_eq!(dimensions(&thumbnail), (20, 40), "turned upright");
    }

    #[test]
    fn what_is_no_picture_or_too_big_is_refused_without_decoding() {
        let err = |r: Result<Thumbnail>| r.err().unwrap().errcode();
        let w = wanted(32, 32, Method::Scale);
        assert_eq!(
            err(make(b"%PDF-1.7 not a picture", &w, 1 << 24)),
            "M_UNKNOWN"
        );
        assert_eq!(
            err(make(b"\x89PNG\r\n\x1a\ntruncated", &w, 1 << 24)),
            "M_UNKNOWN"
        );
        assert_eq!(err(make(&png(100, 100), &w, 100 * 99)), "M_TOO_LARGE");
    }

    #[test]
    fn animations_stay_animated_only_when_asked() {
        let mut bytes = Vec::new();
        {
            let mut encoder = GifEncoder::new(&mut bytes);
            encoder.set_repeat(Repeat::Infinite).unwrap();
            let frames = (0..3)
                .map(|i| Frame::new(RgbaImage::from_pixel(60, 30, Rgba([i * 80, 0, 0, 255]))));
            encoder.encode_frames(frames).unwrap();
        }
        let still = make(&bytes, &wanted(20, 20, Method::Scale), 1 << 24).unwrap();
        assert_ne!(still.content_type, "image/gif");
        let moving = Wanted {
            animated: true,
            ..wanted(20, 20, Method::Scale)
        };
        let animated = make(&bytes, &moving, 1 << 24).unwrap();
        assert_eq!(animated.content_type, "image/gif");
        assert_eq!(dimensions(&animated), (20, 10));
        let frames = GifDecoder::new(Cursor::new(&animated.bytes))
            .unwrap()
            .into_frames()
            .count();
        assert_eq!(frames, 3);
    }
}
