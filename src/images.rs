//! The image generator behind `image.generate`: a built-in one that draws a PNG from the prompt, and an
//! OpenAI-compatible client.
//!
//! Both return PNG bytes, which the caller stores with the image record.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use base64::Engine as _;
use futures_util::StreamExt;
use serde::Deserialize;
use sha2::{Digest, Sha256};

use crate::config::Config;

/// The smallest width or height a client may ask for.
pub const MIN_SIZE: u32 = 256;
/// The largest width or height a client may ask for.
pub const MAX_SIZE: u32 = 1024;
/// The width and height used when a client names none.
pub const DEFAULT_SIZE: u32 = 512;

/// Every PNG file starts with these bytes.
const PNG_SIGNATURE: &[u8] = b"\x89PNG\r\n\x1a\n";
/// How long connecting to the image service may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// How long one whole generation may take, answer included; image models are slow.
const TOTAL_TIMEOUT: Duration = Duration::from_secs(120);
/// A 1024×1024 PNG in base64 inside JSON stays well below this; more means a broken or hostile server.
const MAX_RESPONSE_BYTES: usize = 32 * 1024 * 1024;

/// Why an image could not be produced; messages never contain the API key.
#[derive(Debug, thiserror::Error)]
pub enum ImageError {
    /// The width or height is outside `MIN_SIZE..=MAX_SIZE`.
    #[error("image size {width}x{height} is outside {MIN_SIZE}..={MAX_SIZE}")]
    InvalidSize {
        /// The width asked for.
        width: u32,
        /// The height asked for.
        height: u32,
    },
    /// The request could not be sent or its answer not read.
    #[error("could not reach the image generator")]
    Request(#[source] reqwest::Error),
    /// The image service answered with a non-2xx status.
    #[error("the image generator answered with HTTP status {0}")]
    Status(reqwest::StatusCode),
    /// The image service took longer than its time limit.
    #[error("the image generator did not answer within {0:?}")]
    Timeout(Duration),
    /// The answer was larger than any real image answer.
    #[error("the image generator's answer is larger than {MAX_RESPONSE_BYTES} bytes")]
    TooLarge,
    /// The answer was not JSON with a base64 PNG in `data[0].b64_json`.
    #[error("the image generator's answer was malformed: {0}")]
    Protocol(String),
    /// The built-in generator failed to draw or encode the picture.
    #[error("drawing the image failed: {0}")]
    Draw(String),
}

/// Something that turns a prompt into a PNG.
#[async_trait]
pub trait ImageGenerator: Send + Sync + 'static {
    /// Produces a PNG of `width`×`height` pixels (each within `MIN_SIZE..=MAX_SIZE`) for `prompt`.
    async fn generate(&self, prompt: &str, width: u32, height: u32) -> Result<Vec<u8>, ImageError>;
}

/// The OpenAI-compatible client when `IMAGE_URL` is set, else the built-in generator.
pub fn from_config(config: &Config) -> Arc<dyn ImageGenerator> {
    match &config.image_url {
        Some(url) => {
            Arc::new(OpenAiImageGenerator::new(url, config.image_model.clone(), config.image_api_key.clone()))
        }
        None => Arc::new(BuiltinGenerator),
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

/// A client of an OpenAI-compatible `/v1/images/generations` endpoint.
pub struct OpenAiImageGenerator {
    client: reqwest::Client,
    url: String,
    model: String,
    api_key: Option<String>,
}

impl fmt::Debug for OpenAiImageGenerator {
    // Written by hand so that logging the generator can never print its API key.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OpenAiImageGenerator")
            .field("url", &self.url)
            .field("model", &self.model)
            .field("api_key", &self.api_key.as_ref().map(|_| "<redacted>"))
            .finish()
    }
}

impl OpenAiImageGenerator {
    /// A client of `<base_url>/v1/images/generations`, or `<base_url>/images/generations` when the base
    /// already ends in `/v1`.
    pub fn new(base_url: &str, model: impl Into<String>, api_key: Option<String>) -> Self {
        let client = reqwest::Client::builder()
            .connect_timeout(CONNECT_TIMEOUT)
            .timeout(TOTAL_TIMEOUT)
            .build()
            .expect("a reqwest client with only timeouts set always builds");
        let base = base_url.trim_end_matches('/');
        let url = if base.ends_with("/v1") {
            format!("{base}/images/generations")
        } else {
            format!("{base}/v1/images/generations")
        };
        OpenAiImageGenerator { client, url, model: model.into(), api_key }
    }

    fn request_body(&self, prompt: &str, width: u32, height: u32) -> serde_json::Value {
        let mut body = serde_json::json!({
            "model": self.model,
            "prompt": prompt,
            "n": 1,
            "size": format!("{width}x{height}"),
        });
        // OpenAI's gpt-image models always answer in base64 and refuse `response_format` as unknown;
        // DALL·E and most compatible servers need it to answer in base64 rather than with a URL.
        if !self.model.starts_with("gpt-image") {
            body["response_format"] = "b64_json".into();
        }
        body
    }

    /// Reads the answer body, refusing to hold more than `MAX_RESPONSE_BYTES`.
    async fn read_limited(response: reqwest::Response) -> Result<Vec<u8>, ImageError> {
        if response.content_length().is_some_and(|length| length > MAX_RESPONSE_BYTES as u64) {
            return Err(ImageError::TooLarge);
        }
        let mut body = Vec::new();
        let mut chunks = response.bytes_stream();
        while let Some(chunk) = chunks.next().await {
            let chunk = chunk.map_err(request_error)?;
            if body.len() + chunk.len() > MAX_RESPONSE_BYTES {
                return Err(ImageError::TooLarge);
            }
            body.extend_from_slice(&chunk);
        }
        Ok(body)
    }
}

/// Classifies a reqwest failure; the URL is dropped because an operator may have put credentials in it.
fn request_error(error: reqwest::Error) -> ImageError {
    if error.is_timeout() {
        // Connect timeouts also land here; the total limit is the one worth reporting.
        ImageError::Timeout(TOTAL_TIMEOUT)
    } else {
        ImageError::Request(error.without_url())
    }
}

/// The parts of an images answer that we read.
#[derive(Deserialize)]
struct ImagesAnswer {
    data: Vec<ImageDatum>,
}

#[derive(Deserialize)]
struct ImageDatum {
    b64_json: Option<String>,
}

#[async_trait]
impl ImageGenerator for OpenAiImageGenerator {
    async fn generate(&self, prompt: &str, width: u32, height: u32) -> Result<Vec<u8>, ImageError> {
        check_size(width, height)?;
        let mut request = self.client.post(&self.url).json(&self.request_body(prompt, width, height));
        if let Some(key) = &self.api_key {
            request = request.bearer_auth(key);
        }
        tracing::debug!(url = %self.url, model = %self.model, width, height, "asking the image generator");
        let response = request.send().await.map_err(request_error)?;
        // The body of an error answer is not quoted: some servers echo part of the key back in it.
        if !response.status().is_success() {
            return Err(ImageError::Status(response.status()));
        }
        let body = Self::read_limited(response).await?;
        let answer: ImagesAnswer = serde_json::from_slice(&body)
            .map_err(|e| ImageError::Protocol(format!("the answer is not the expected JSON ({e})")))?;
        let encoded = answer
            .data
            .into_iter()
            .next()
            .and_then(|datum| datum.b64_json)
            .ok_or_else(|| ImageError::Protocol("the answer has no data[0].b64_json".into()))?;
        let png = base64::engine::general_purpose::STANDARD
            .decode(encoded.trim())
            .map_err(|e| ImageError::Protocol(format!("b64_json is not base64 ({e})")))?;
        if !png.starts_with(PNG_SIGNATURE) {
            return Err(ImageError::Protocol("the image is not a PNG".into()));
        }
        Ok(png)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncWriteExt;

    use crate::test_support::{Recorded, read_request};
    use tokio::net::TcpListener;
    use tokio::sync::oneshot;

    /// Starts an HTTP/1.1 server on a free port that answers one request with `answer` and closes.
    async fn serve_once(answer: Vec<u8>) -> (String, oneshot::Receiver<Recorded>) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let (sender, receiver) = oneshot::channel();
        tokio::spawn(async move {
            let (mut socket, _) = listener.accept().await.unwrap();
            let _ = sender.send(read_request(&mut socket).await);
            // The client may hang up early (an oversized answer), so write errors are expected.
            let _ = socket.write_all(&answer).await;
            let _ = socket.shutdown().await;
        });
        (base, receiver)
    }

    fn json_answer(status: &str, body: &str) -> Vec<u8> {
        format!(
            "HTTP/1.1 {status}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        )
        .into_bytes()
    }

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

    #[tokio::test]
    async fn the_openai_client_sends_the_request_and_decodes_the_b64_json_png() {
        let png = BuiltinGenerator.generate("served", 256, 256).await.unwrap();
        let encoded = base64::engine::general_purpose::STANDARD.encode(&png);
        let answer =
            json_answer("200 OK", &format!(r#"{{"created":1,"data":[{{"b64_json":"{encoded}"}}]}}"#));
        let (base, request) = serve_once(answer).await;
        let generator =
            OpenAiImageGenerator::new(&format!("{base}/v1"), "dall-e-2", Some("sk-image-key".into()));

        assert_eq!(generator.generate("a lighthouse", 512, 256).await.unwrap(), png);

        let request = request.await.unwrap();
        assert!(request.head.starts_with("POST /v1/images/generations HTTP/1.1\r\n"), "{}", request.head);
        assert!(request.head.to_ascii_lowercase().contains("authorization: bearer sk-image-key\r\n"));
        let body: serde_json::Value = serde_json::from_slice(&request.body).unwrap();
        assert_eq!(
            body,
            serde_json::json!({
                "model": "dall-e-2", "prompt": "a lighthouse", "n": 1, "size": "512x256",
                "response_format": "b64_json",
            })
        );
        assert!(!format!("{generator:?}").contains("sk-image-key"));
    }

    #[tokio::test]
    async fn the_openai_client_leaves_out_response_format_for_gpt_image_models() {
        let png = BuiltinGenerator.generate("served", 256, 256).await.unwrap();
        let encoded = base64::engine::general_purpose::STANDARD.encode(&png);
        let (base, request) =
            serve_once(json_answer("200 OK", &format!(r#"{{"data":[{{"b64_json":"{encoded}"}}]}}"#))).await;
        OpenAiImageGenerator::new(&base, "gpt-image-1", None).generate("p", 1024, 1024).await.unwrap();
        let request = request.await.unwrap();
        assert!(request.head.starts_with("POST /v1/images/generations "), "{}", request.head);
        assert!(!request.head.to_ascii_lowercase().contains("authorization"), "{}", request.head);
        let body: serde_json::Value = serde_json::from_slice(&request.body).unwrap();
        assert_eq!(body.get("response_format"), None, "{body}");
    }

    #[tokio::test]
    async fn the_openai_client_refuses_a_payload_that_is_not_a_png() {
        let encoded = base64::engine::general_purpose::STANDARD.encode(b"GIF89a not a png at all");
        for (payload, description) in [
            (format!(r#"{{"data":[{{"b64_json":"{encoded}"}}]}}"#), "a GIF"),
            (r#"{"data":[{"b64_json":"@@@ not base64"}]}"#.to_owned(), "not base64"),
            (r#"{"data":[{"url":"http://example.com/a.png"}]}"#.to_owned(), "a URL instead"),
            (r#"{"data":[]}"#.to_owned(), "no images"),
            ("<html>oops</html>".to_owned(), "not JSON"),
        ] {
            let (base, _request) = serve_once(json_answer("200 OK", &payload)).await;
            let result = OpenAiImageGenerator::new(&base, "m", None).generate("p", 512, 512).await;
            assert!(matches!(result, Err(ImageError::Protocol(_))), "{description}: {result:?}");
        }
    }

    #[tokio::test]
    async fn a_server_error_status_is_an_error_that_names_the_status() {
        let answer = json_answer("500 Internal Server Error", r#"{"error":{"message":"bad key sk-secret"}}"#);
        let (base, _request) = serve_once(answer).await;
        let error = OpenAiImageGenerator::new(&base, "m", Some("sk-secret".into()))
            .generate("p", 512, 512)
            .await
            .unwrap_err();
        assert!(matches!(error, ImageError::Status(status) if status.as_u16() == 500), "{error:?}");
        assert!(error.to_string().contains("500") && !error.to_string().contains("sk-secret"), "{error}");
    }

    #[tokio::test]
    async fn an_answer_over_32_mib_is_refused() {
        let answer = format!(
            "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{{\"data\":",
            MAX_RESPONSE_BYTES + 1
        );
        let (base, _request) = serve_once(answer.into_bytes()).await;
        let result = OpenAiImageGenerator::new(&base, "m", None).generate("p", 512, 512).await;
        assert!(matches!(result, Err(ImageError::TooLarge)), "{result:?}");
    }
}
