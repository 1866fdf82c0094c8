//! The image generator behind `image.generate`: a built-in one that draws a PNG from the prompt,
//! or an image model of an OpenAI-compatible upstream (`crate::openai`). Both return PNG bytes,
//! which the caller stores with the image record.

use std::sync::Arc;

use async_trait::async_trait;
use sha2::{Digest, Sha256};

use crate::catalogue::{ImageModel, MAX_SIZE, MIN_SIZE, Upstream};
use crate::openai::{OpenAiClient, OpenAiError};

/// The width and height used when a client names none.
pub const DEFAULT_SIZE: u32 = 512;

/// Why an image could not be produced; messages never contain the API key.
#[derive(Debug, thiserror::Error)]
pub enum ImageError {
    /// The width or height is outside what the built-in generator draws.
    #[error("image size {width}x{height} is outside {MIN_SIZE}..={MAX_SIZE}")]
    InvalidSize {
        /// The width asked for.
        width: u32,
        /// The height asked for.
        height: u32,
    },
    /// The upstream failed.
    #[error(transparent)]
    Upstream(#[from] OpenAiError),
    /// The built-in generator failed to draw or encode the picture.
    #[error("drawing the image failed: {0}")]
    Draw(String),
}

/// Something that turns a prompt into a PNG.
#[async_trait]
pub trait ImageGenerator: Send + Sync + 'static {
    /// Produces a PNG of `width`×`height` pixels for `prompt`.
    async fn generate(&self, prompt: &str, width: u32, height: u32) -> Result<Vec<u8>, ImageError>;
}

/// The generator of a catalogue's image model.
pub fn for_model(model: &ImageModel) -> Arc<dyn ImageGenerator> {
    match &model.upstream {
        Upstream::BuiltIn => Arc::new(BuiltinGenerator),
        Upstream::OpenAi { url, api_key } => Arc::new(OpenAiImageGenerator {
            client: OpenAiClient::new(url, api_key.clone()),
            model: model.id.clone(),
        }),
    }
}

fn check_size(width: u32, height: u32) -> Result<(), ImageError> {
    let allowed = MIN_SIZE..=MAX_SIZE;
    if allowed.contains(&width) && allowed.contains(&height) {
        Ok(())
    } else {
        Err(ImageError::InvalidSize { width, height })
    }
}

/// The default generator: a gradient with translucent circles and rectangles, all chosen by the
/// SHA-256 of the prompt, so the same prompt always gives the same picture and others a different one.
#[derive(Debug, Clone, Copy, Default)]
pub struct BuiltinGenerator;

#[async_trait]
impl ImageGenerator for BuiltinGenerator {
    async fn generate(&self, prompt: &str, width: u32, height: u32) -> Result<Vec<u8>, ImageError> {
        check_size(width, height)?;
        let seed: [u8; 32] = Sha256::digest(prompt.as_bytes()).into();
        // Drawing and deflating take milliseconds of CPU, which must not stall the async workers.
        tokio::task::spawn_blocking(move || draw_png(seed, width, height))
            .await
            .map_err(|e| ImageError::Draw(format!("the drawing task stopped: {e}")))?
    }
}

/// SplitMix64: tiny and fully specified, so pictures stay the same across dependency upgrades.
struct SplitMix64(u64);

impl SplitMix64 {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// A number in `low..high` (`high > low`); the slight modulo bias does not matter for pictures.
    fn range(&mut self, low: u32, high: u32) -> u32 {
        low + (self.next() % u64::from(high - low)) as u32
    }

    fn colour(&mut self) -> [u8; 3] {
        let [r, g, b, ..] = self.next().to_le_bytes();
        [r, g, b]
    }
}

/// An RGB8 picture in row-major order.
struct Canvas {
    width: usize,
    height: usize,
    pixels: Vec<u8>,
}

impl Canvas {
    /// A diagonal gradient from `from` (top left) to `to` (bottom right).
    fn gradient(width: usize, height: usize, from: [u8; 3], to: [u8; 3]) -> Canvas {
        let mut pixels = Vec::with_capacity(width * height * 3);
        let span = (width + height).saturating_sub(2).max(1) as i32;
        for y in 0..height {
            for x in 0..width {
                let t = (x + y) as i32;
                for channel in 0..3 {
                    let (a, b) = (i32::from(from[channel]), i32::from(to[channel]));
                    pixels.push((a + (b - a) * t / span) as u8);
                }
            }
        }
        Canvas { width, height, pixels }
    }

    /// Blends `colour` at `alpha`/255 over the pixels `x0..x1` of row `y`, clipped to the canvas.
    fn blend_span(&mut self, y: i64, x0: i64, x1: i64, colour: [u8; 3], alpha: u8) {
        if y < 0 || y >= self.height as i64 {
            return;
        }
        let (x0, x1) = (x0.clamp(0, self.width as i64) as usize, x1.clamp(0, self.width as i64) as usize);
        let row = y as usize * self.width * 3;
        let (alpha, keep) = (u32::from(alpha), 255 - u32::from(alpha));
        for pixel in self.pixels[row + x0 * 3..row + x1.max(x0) * 3].chunks_exact_mut(3) {
            for (channel, &paint) in pixel.iter_mut().zip(&colour) {
                *channel = ((u32::from(paint) * alpha + u32::from(*channel) * keep + 127) / 255) as u8;
            }
        }
    }

    fn fill_rectangle(&mut self, x: i64, y: i64, width: i64, height: i64, colour: [u8; 3], alpha: u8) {
        for row in y..y + height {
            self.blend_span(row, x, x + width, colour, alpha);
        }
    }

    /// Fills a disc row by row, one square root per row rather than a test per pixel.
    fn fill_circle(&mut self, cx: i64, cy: i64, radius: i64, colour: [u8; 3], alpha: u8) {
        for dy in -radius..=radius {
            let half = ((radius * radius - dy * dy) as f64).sqrt() as i64;
            self.blend_span(cy + dy, cx - half, cx + half + 1, colour, alpha);
        }
    }
}

/// Draws the picture for `seed` and encodes it as PNG.
fn draw_png(seed: [u8; 32], width: u32, height: u32) -> Result<Vec<u8>, ImageError> {
    // Every byte of the digest feeds the generator, so prompts differing anywhere differ in the picture.
    let mut state = 0u64;
    for chunk in seed.chunks_exact(8) {
        let word = u64::from_le_bytes(chunk.try_into().expect("chunks_exact gives 8 bytes"));
        state = SplitMix64(state ^ word).next();
    }
    let mut random = SplitMix64(state);

    let mut canvas = Canvas::gradient(width as usize, height as usize, random.colour(), random.colour());
    let shortest = width.min(height);
    for _ in 0..random.range(5, 10) {
        let colour = random.colour();
        let alpha = random.range(120, 231) as u8;
        let x = i64::from(random.range(0, width));
        let y = i64::from(random.range(0, height));
        if random.next().is_multiple_of(2) {
            let radius = i64::from(random.range(shortest / 16, shortest / 4));
            canvas.fill_circle(x, y, radius, colour, alpha);
        } else {
            let w = i64::from(random.range(shortest / 10, shortest / 2));
            let h = i64::from(random.range(shortest / 10, shortest / 2));
            canvas.fill_rectangle(x - w / 2, y - h / 2, w, h, colour, alpha);
        }
    }

    let mut png = Vec::new();
    let mut encoder = png::Encoder::new(&mut png, width, height);
    encoder.set_color(png::ColorType::Rgb);
    encoder.set_depth(png::BitDepth::Eight);
    // Fast deflate keeps a 512×512 picture at a few milliseconds; the files are still small.
    encoder.set_compression(png::Compression::Fast);
    let encode_error = |e: png::EncodingError| ImageError::Draw(e.to_string());
    let mut writer = encoder.write_header().map_err(encode_error)?;
    writer.write_image_data(&canvas.pixels).map_err(encode_error)?;
    writer.finish().map_err(encode_error)?;
    Ok(png)
}

/// An image model of an OpenAI-compatible upstream.
#[derive(Debug)]
pub struct OpenAiImageGenerator {
    client: OpenAiClient,
    model: String,
}

#[async_trait]
impl ImageGenerator for OpenAiImageGenerator {
    async fn generate(&self, prompt: &str, width: u32, height: u32) -> Result<Vec<u8>, ImageError> {
        Ok(self.client.generate_image(&self.model, prompt, width, height).await?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Decodes a PNG and returns its width, height and colour type.
    fn png_info(bytes: &[u8]) -> (u32, u32, png::ColorType) {
        let mut reader = png::Decoder::new(std::io::Cursor::new(bytes)).read_info().unwrap();
        let mut pixels = vec![0; reader.output_buffer_size().unwrap()];
        let frame = reader.next_frame(&mut pixels).unwrap();
        (frame.width, frame.height, frame.color_type)
    }

    #[tokio::test]
    async fn the_builtin_generator_draws_a_png_of_the_asked_size() {
        for (width, height) in [(DEFAULT_SIZE, DEFAULT_SIZE), (MIN_SIZE, MAX_SIZE), (1000, 300)] {
            let png = BuiltinGenerator.generate("a red fox in the snow", width, height).await.unwrap();
            assert_eq!(png_info(&png), (width, height, png::ColorType::Rgb), "{width}x{height}");
        }
    }

    #[tokio::test]
    async fn the_builtin_generator_gives_the_same_bytes_for_the_same_prompt_and_different_ones_otherwise() {
        let fox = BuiltinGenerator.generate("a red fox", 256, 256).await.unwrap();
        let fox_again = BuiltinGenerator.generate("a red fox", 256, 256).await.unwrap();
        let owl = BuiltinGenerator.generate("a grey owl", 256, 256).await.unwrap();
        assert_eq!(fox, fox_again);
        assert_ne!(fox, owl);
    }

    #[tokio::test]
    async fn the_builtin_generator_refuses_sizes_outside_the_limits() {
        for (width, height) in [(MIN_SIZE - 1, 512), (512, MAX_SIZE + 1), (0, 0), (u32::MAX, 512)] {
            let result = BuiltinGenerator.generate("x", width, height).await;
            assert!(matches!(result, Err(ImageError::InvalidSize { .. })), "{width}x{height}: {result:?}");
        }
    }
}
