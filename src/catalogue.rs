//! The model catalogue (docs/API.md §8): the chat and image models a user may pick, where each
//! one runs (the built-in echo assistant or drawing generator, or an OpenAI-compatible upstream),
//! what it costs and who may use it. Read once at start from `SWITCHBOARD_MODELS` (a TOML file),
//! or built from the older settings (`PRICE_CHAT_MESSAGE`, `PRICE_IMAGE`, `ASSISTANT_*`, `IMAGE_*`)
//! when there is no file, so a server started without one charges as before. A bad file stops
//! start-up with one line naming the file, the entry and the problem.

use std::collections::BTreeMap;
use std::fmt;
use std::path::Path;

use serde::Deserialize;

use crate::config::Config;
use crate::store::Role;

/// The smallest width or height the built-in generator draws.
pub const MIN_SIZE: u32 = 256;
/// The largest width or height the built-in generator draws.
pub const MAX_SIZE: u32 = 1024;
/// The largest width or height an upstream image model may be priced for.
const MAX_UPSTREAM_SIZE: u32 = 4096;
/// Highest price of anything, credits: far from any overflow of the cost arithmetic.
const MAX_PRICE: i64 = 1_000_000_000_000;
/// Most output tokens a chat model may be allowed.
const MAX_OUTPUT_TOKENS: u32 = 1_000_000;
/// `max_output_tokens` of a chat model priced per turn that names none.
const DEFAULT_MAX_OUTPUT_TOKENS: u32 = 1024;

/// Where a model runs.
#[derive(Clone, PartialEq, Eq)]
pub enum Upstream {
    /// The built-in echo assistant, or the built-in drawing generator.
    BuiltIn,
    /// An OpenAI-compatible server.
    OpenAi {
        /// Its base URL (`/v1/...` is appended).
        url: String,
        /// Its API key, read from the environment variable the catalogue names.
        api_key: Option<String>,
    },
}

impl fmt::Debug for Upstream {
    // By hand, so that logging a model can never print its key.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Upstream::BuiltIn => f.write_str("BuiltIn"),
            Upstream::OpenAi { url, api_key } => f
                .debug_struct("OpenAi")
                .field("url", url)
                .field("api_key", &api_key.as_ref().map(|_| "<redacted>"))
                .finish(),
        }
    }
}

/// How a chat turn is priced.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChatPricing {
    /// Credits per 1,000,000 input tokens and per 1,000,000 output tokens.
    PerToken {
        /// Per million input tokens.
        input: i64,
        /// Per million output tokens.
        output: i64,
    },
    /// Credits per turn, whatever its length (0 when it fails or is interrupted).
    PerTurn(i64),
}

/// A chat model.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChatModel {
    /// What clients send as `model`, and what is sent upstream.
    pub id: String,
    /// What the pages show.
    pub name: String,
    /// Where it runs.
    pub upstream: Upstream,
    /// What a turn costs.
    pub pricing: ChatPricing,
    /// The most output tokens a turn may produce (sent upstream as `max_tokens`).
    pub max_output_tokens: u32,
    /// Who may use it.
    pub roles: Vec<Role>,
}

/// How an image is priced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ImagePricing {
    /// One price per accepted size; other sizes are refused.
    BySize(BTreeMap<(u32, u32), i64>),
    /// One price for every width and height within a range.
    Flat {
        /// Credits per image.
        price: i64,
        /// Smallest width or height.
        min: u32,
        /// Largest width or height.
        max: u32,
    },
}

/// An image model.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageModel {
    /// What clients send as `model`, and what is sent upstream.
    pub id: String,
    /// What the pages show.
    pub name: String,
    /// Where it runs.
    pub upstream: Upstream,
    /// What an image costs.
    pub pricing: ImagePricing,
    /// Who may use it.
    pub roles: Vec<Role>,
}

/// Every model, the defaults first of their kind.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Catalogue {
    chat: Vec<ChatModel>,
    image: Vec<ImageModel>,
}

/// The cost of a chat turn: `ceil((input × input_price + output × output_price) / 1,000,000)`.
pub fn token_cost(pricing: ChatPricing, input_tokens: u64, output_tokens: u64) -> i64 {
    match pricing {
        ChatPricing::PerTurn(price) => price,
        ChatPricing::PerToken { input, output } => {
            let micro = u128::from(input_tokens) * input as u128 + u128::from(output_tokens) * output as u128;
            i64::try_from(micro.div_ceil(1_000_000)).unwrap_or(i64::MAX)
        }
    }
}

impl ChatModel {
    /// What a turn with `input_tokens` of input holds: its cost if it writes every output token
    /// it may.
    pub fn hold(&self, input_tokens: u64) -> i64 {
        token_cost(self.pricing, input_tokens, u64::from(self.max_output_tokens))
    }

    /// What a turn that read `input_tokens` and wrote `output_tokens` is charged, never more than
    /// it held.
    pub fn charge(&self, held: i64, input_tokens: u64, output_tokens: u64) -> i64 {
        token_cost(self.pricing, input_tokens, output_tokens).min(held)
    }

    /// Whether `role` may use it.
    pub fn allows(&self, role: Role) -> bool {
        self.roles.contains(&role)
    }
}

impl ImageModel {
    /// The price of a `width`×`height` image, or `None` for a size the model does not make.
    pub fn price(&self, width: u32, height: u32) -> Option<i64> {
        match &self.pricing {
            ImagePricing::BySize(prices) => prices.get(&(width, height)).copied(),
            ImagePricing::Flat { price, min, max } => {
                let fits = |side: u32| (*min..=*max).contains(&side);
                (fits(width) && fits(height)).then_some(*price)
            }
        }
    }

    /// The size an image request without one gets: 512×512 when the model makes it, else its
    /// smallest priced size.
    pub fn default_size(&self) -> (u32, u32) {
        match &self.pricing {
            ImagePricing::Flat { min, max, .. } => {
                let side = 512.clamp(*min, *max);
                (side, side)
            }
            ImagePricing::BySize(prices) => {
                if prices.contains_key(&(512, 512)) {
                    (512, 512)
                } else {
                    prices.keys().next().copied().unwrap_or((512, 512))
                }
            }
        }
    }

    /// Whether `role` may use it.
    pub fn allows(&self, role: Role) -> bool {
        self.roles.contains(&role)
    }
}

/// Why a model could not be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ModelRefused {
    /// No model with that id.
    #[error("there is no {kind} model {id:?}")]
    Unknown {
        /// `chat` or `image`.
        kind: &'static str,
        /// The id asked for.
        id: String,
    },
    /// The user's role may not use it.
    #[error("the {kind} model {id:?} is not available to you")]
    Forbidden {
        /// `chat` or `image`.
        kind: &'static str,
        /// The id asked for.
        id: String,
    },
}

impl Catalogue {
    /// The catalogue the settings describe: the models file when there is one, else the
    /// built-in models priced by the older settings. `Err` is the one line start-up prints.
    pub fn from_config(config: &Config) -> Result<Catalogue, String> {
        match &config.models {
            Some(path) => Catalogue::from_file(path, |name| std::env::var(name).ok()),
            None => Ok(Catalogue::built_in(config)),
        }
    }

    /// The built-in catalogue: chat model `echo` (or `ASSISTANT_MODEL` at `ASSISTANT_URL`) at
    /// `PRICE_CHAT_MESSAGE` per turn, image model `draw` (or `IMAGE_MODEL` at `IMAGE_URL`) at
    /// `PRICE_IMAGE` for every size the built-in generator draws.
    pub fn built_in(config: &Config) -> Catalogue {
        let everyone = vec![Role::User, Role::Admin];
        let (chat_id, chat_upstream) = match &config.assistant_url {
            Some(url) => (
                config.assistant_model.clone(),
                Upstream::OpenAi { url: url.clone(), api_key: config.assistant_api_key.clone() },
            ),
            None => ("echo".to_owned(), Upstream::BuiltIn),
        };
        let (image_id, image_upstream) = match &config.image_url {
            Some(url) => (
                config.image_model.clone(),
                Upstream::OpenAi { url: url.clone(), api_key: config.image_api_key.clone() },
            ),
            None => ("draw".to_owned(), Upstream::BuiltIn),
        };
        Catalogue {
            chat: vec![ChatModel {
                name: if chat_upstream == Upstream::BuiltIn { "Echo".into() } else { chat_id.clone() },
                id: chat_id,
                upstream: chat_upstream,
                pricing: ChatPricing::PerTurn(config.price_chat_message),
                max_output_tokens: DEFAULT_MAX_OUTPUT_TOKENS,
                roles: everyone.clone(),
            }],
            image: vec![ImageModel {
                name: if image_upstream == Upstream::BuiltIn { "Sketch".into() } else { image_id.clone() },
                id: image_id,
                upstream: image_upstream,
                pricing: ImagePricing::Flat { price: config.price_image, min: MIN_SIZE, max: MAX_SIZE },
                roles: everyone,
            }],
        }
    }

    /// Reads and checks the models file at `path`; `env` looks up the variables that hold the
    /// upstream keys.
    pub fn from_file(path: &Path, env: impl Fn(&str) -> Option<String>) -> Result<Catalogue, String> {
        let at = |problem: String| format!("SWITCHBOARD_MODELS: {}: {problem}", path.display());
        let text = std::fs::read_to_string(path).map_err(|e| at(format!("cannot be read ({e})")))?;
        Catalogue::parse(&text, env).map_err(at)
    }

    /// Parses and checks a models file's text; `Err` names the entry and the problem.
    pub fn parse(text: &str, env: impl Fn(&str) -> Option<String>) -> Result<Catalogue, String> {
        let file: File = toml::from_str(text).map_err(|e| {
            let line = e.span().map(|span| text[..span.start].lines().count().max(1));
            let message = e.message().trim().replace('\n', " ");
            match line {
                Some(line) => format!("line {line}: {message}"),
                None => message,
            }
        })?;
        let mut chat = Vec::new();
        let mut chat_default = Vec::new();
        for (n, entry) in file.chat.into_iter().enumerate() {
            let label = format!("chat model {} ({:?})", n + 1, entry.id);
            if entry.default {
                chat_default.push(chat.len());
            }
            chat.push(entry.check(&env).map_err(|problem| format!("{label}: {problem}"))?);
        }
        let mut image = Vec::new();
        let mut image_default = Vec::new();
        for (n, entry) in file.image.into_iter().enumerate() {
            let label = format!("image model {} ({:?})", n + 1, entry.id);
            if entry.default {
                image_default.push(image.len());
            }
            image.push(entry.check(&env).map_err(|problem| format!("{label}: {problem}"))?);
        }
        let chat = with_default_first(chat, &chat_default, "chat", |m| &m.id)?;
        let image = with_default_first(image, &image_default, "image", |m| &m.id)?;
        Ok(Catalogue { chat, image })
    }

    /// Every chat model, the default first.
    pub fn chat_models(&self) -> &[ChatModel] {
        &self.chat
    }

    /// Every image model, the default first.
    pub fn image_models(&self) -> &[ImageModel] {
        &self.image
    }

    /// The chat model `id` (the default without one) if `role` may use it.
    pub fn chat_model(&self, id: Option<&str>, role: Role) -> Result<&ChatModel, ModelRefused> {
        pick(&self.chat, id, "chat", |m| (&m.id, m.allows(role)))
    }

    /// The image model `id` (the default without one) if `role` may use it.
    pub fn image_model(&self, id: Option<&str>, role: Role) -> Result<&ImageModel, ModelRefused> {
        pick(&self.image, id, "image", |m| (&m.id, m.allows(role)))
    }
}

/// The model `id` (the first, the default, without one), if `describe` says it is allowed.
fn pick<'a, M>(
    models: &'a [M],
    id: Option<&str>,
    kind: &'static str,
    describe: impl Fn(&M) -> (&String, bool),
) -> Result<&'a M, ModelRefused> {
    let found = match id {
        None => models.first(),
        Some(id) => models.iter().find(|m| describe(m).0 == id),
    };
    let Some(model) = found else {
        return Err(ModelRefused::Unknown { kind, id: id.unwrap_or_default().to_owned() });
    };
    let (model_id, allowed) = describe(model);
    if !allowed {
        return Err(ModelRefused::Forbidden { kind, id: model_id.clone() });
    }
    Ok(model)
}

/// Checks that exactly one model of a kind is the default and that ids are unique; the models
/// with the default moved first.
fn with_default_first<M>(
    mut models: Vec<M>,
    defaults: &[usize],
    kind: &str,
    id: impl Fn(&M) -> &String,
) -> Result<Vec<M>, String> {
    if models.is_empty() {
        return Err(format!("there must be at least one {kind} model"));
    }
    let mut seen = std::collections::HashSet::new();
    for model in &models {
        if !seen.insert(id(model).clone()) {
            return Err(format!("{kind} model {:?}: the id is used twice", id(model)));
        }
    }
    match defaults {
        [one] => {
            let default = models.remove(*one);
            models.insert(0, default);
            Ok(models)
        }
        [] => Err(format!("exactly one {kind} model must have default = true, and none has")),
        _ => Err(format!("exactly one {kind} model must have default = true, and {} have", defaults.len())),
    }
}

/// A models file as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    #[serde(default)]
    chat: Vec<ChatEntry>,
    #[serde(default)]
    image: Vec<ImageEntry>,
}

/// A `[[chat]]` entry as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ChatEntry {
    id: String,
    name: Option<String>,
    url: Option<String>,
    api_key_env: Option<String>,
    input_price: Option<i64>,
    output_price: Option<i64>,
    message_price: Option<i64>,
    max_output_tokens: Option<i64>,
    roles: Option<Vec<String>>,
    #[serde(default)]
    default: bool,
}

/// An `[[image]]` entry as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ImageEntry {
    id: String,
    name: Option<String>,
    url: Option<String>,
    api_key_env: Option<String>,
    prices: BTreeMap<String, i64>,
    roles: Option<Vec<String>>,
    #[serde(default)]
    default: bool,
}

impl ChatEntry {
    fn check(self, env: &impl Fn(&str) -> Option<String>) -> Result<ChatModel, String> {
        check_id(&self.id)?;
        let upstream = upstream(self.url, self.api_key_env, env)?;
        let pricing = match (self.input_price, self.output_price, self.message_price) {
            (Some(input), Some(output), None) => ChatPricing::PerToken {
                input: price("input_price", input)?,
                output: price("output_price", output)?,
            },
            (None, None, Some(turn)) => ChatPricing::PerTurn(price("message_price", turn)?),
            (_, _, Some(_)) => {
                return Err("give either input_price and output_price, or message_price, not both".into());
            }
            _ => {
                return Err(
                    "give input_price and output_price (per 1,000,000 tokens), or message_price".into()
                );
            }
        };
        let max_output_tokens = match (self.max_output_tokens, pricing) {
            (Some(max), _) => u32::try_from(max)
                .ok()
                .filter(|max| (1..=MAX_OUTPUT_TOKENS).contains(max))
                .ok_or_else(|| format!("max_output_tokens must be 1 to {MAX_OUTPUT_TOKENS}"))?,
            (None, ChatPricing::PerTurn(_)) => DEFAULT_MAX_OUTPUT_TOKENS,
            (None, ChatPricing::PerToken { .. }) => {
                return Err("max_output_tokens is needed to price a turn per token".into());
            }
        };
        Ok(ChatModel {
            name: name(self.name, &self.id)?,
            roles: roles(self.roles)?,
            id: self.id,
            upstream,
            pricing,
            max_output_tokens,
        })
    }
}

impl ImageEntry {
    fn check(self, env: &impl Fn(&str) -> Option<String>) -> Result<ImageModel, String> {
        check_id(&self.id)?;
        let upstream = upstream(self.url, self.api_key_env, env)?;
        let (min, max) = match upstream {
            Upstream::BuiltIn => (MIN_SIZE, MAX_SIZE),
            Upstream::OpenAi { .. } => (1, MAX_UPSTREAM_SIZE),
        };
        if self.prices.is_empty() {
            return Err("prices must name at least one size, e.g. prices = { \"512x512\" = 10 }".into());
        }
        let mut prices = BTreeMap::new();
        for (size, credits) in self.prices {
            let parsed = size
                .split_once('x')
                .and_then(|(w, h)| Some((w.parse::<u32>().ok()?, h.parse::<u32>().ok()?)))
                .filter(|(w, h)| (min..=max).contains(w) && (min..=max).contains(h))
                .ok_or_else(|| format!("the size {size:?} must be WIDTHxHEIGHT, each {min} to {max}"))?;
            prices.insert(parsed, price(&format!("the price of {size}"), credits)?);
        }
        Ok(ImageModel {
            name: name(self.name, &self.id)?,
            roles: roles(self.roles)?,
            id: self.id,
            upstream,
            pricing: ImagePricing::BySize(prices),
        })
    }
}

fn check_id(id: &str) -> Result<(), String> {
    let fine = (1..=128).contains(&id.len())
        && id.bytes().all(|b| b.is_ascii_alphanumeric() || b"._:/@+-".contains(&b));
    if fine { Ok(()) } else { Err("id must be 1 to 128 of A-Z a-z 0-9 . _ : / @ + -".into()) }
}

fn name(name: Option<String>, id: &str) -> Result<String, String> {
    let name = name.unwrap_or_else(|| id.to_owned());
    if name.trim().is_empty() || name.chars().count() > 100 || name.chars().any(char::is_control) {
        return Err("name must be 1 to 100 characters without control characters".into());
    }
    Ok(name.trim().to_owned())
}

fn price(what: &str, credits: i64) -> Result<i64, String> {
    if (0..=MAX_PRICE).contains(&credits) {
        Ok(credits)
    } else {
        Err(format!("{what} must be a whole number from 0 to {MAX_PRICE}"))
    }
}

fn roles(roles: Option<Vec<String>>) -> Result<Vec<Role>, String> {
    let Some(roles) = roles else { return Ok(vec![Role::User, Role::Admin]) };
    let mut parsed = Vec::new();
    for role in &roles {
        match role.as_str() {
            "user" => parsed.push(Role::User),
            "admin" => parsed.push(Role::Admin),
            other => return Err(format!("roles may hold \"user\" and \"admin\", not {other:?}")),
        }
    }
    if parsed.is_empty() {
        return Err("roles must name at least one role".into());
    }
    Ok(parsed)
}

fn upstream(
    url: Option<String>,
    api_key_env: Option<String>,
    env: &impl Fn(&str) -> Option<String>,
) -> Result<Upstream, String> {
    let Some(url) = url else {
        if api_key_env.is_some() {
            return Err("api_key_env needs a url: the built-in models take no key".into());
        }
        return Ok(Upstream::BuiltIn);
    };
    let parsed = url::Url::parse(&url).map_err(|_| format!("url {url:?} is not a URL"))?;
    if !matches!(parsed.scheme(), "http" | "https") || parsed.host_str().is_none() {
        return Err(format!("url {url:?} must be an http:// or https:// URL"));
    }
    let api_key = match api_key_env {
        None => None,
        Some(variable) => match env(&variable).filter(|key| !key.is_empty()) {
            Some(key) => Some(key),
            None => return Err(format!("api_key_env names {variable}, which is not set")),
        },
    };
    Ok(Upstream::OpenAi { url, api_key })
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = r#"
[[chat]]
id = "gpt-4o-mini"
name = "GPT-4o mini"
url = "http://127.0.0.1:9000"
api_key_env = "OPENAI_KEY"
input_price = 150
output_price = 600
max_output_tokens = 1024
default = true

[[chat]]
id = "echo"
message_price = 2
roles = ["admin"]

[[image]]
id = "draw"
name = "Sketch"
prices = { "256x256" = 5, "512x512" = 10 }
default = true
"#;

    fn env(name: &str) -> Option<String> {
        (name == "OPENAI_KEY").then(|| "sk-secret".to_owned())
    }

    #[test]
    fn a_good_file_reads_with_its_prices_upstreams_roles_and_defaults() {
        let catalogue = Catalogue::parse(GOOD, env).expect("a good file");
        let mini = catalogue.chat_model(None, Role::User).expect("the default");
        assert_eq!(mini.id, "gpt-4o-mini");
        assert_eq!(mini.pricing, ChatPricing::PerToken { input: 150, output: 600 });
        assert_eq!(
            mini.upstream,
            Upstream::OpenAi { url: "http://127.0.0.1:9000".into(), api_key: Some("sk-secret".into()) }
        );
        assert!(!format!("{:?}", mini.upstream).contains("sk-secret"), "keys never reach a log");
        assert_eq!(
            catalogue.chat_model(Some("echo"), Role::User),
            Err(ModelRefused::Forbidden { kind: "chat", id: "echo".into() })
        );
        assert_eq!(catalogue.chat_model(Some("echo"), Role::Admin).unwrap().pricing, ChatPricing::PerTurn(2));
        assert!(matches!(catalogue.chat_model(Some("nope"), Role::Admin), Err(ModelRefused::Unknown { .. })));
        let draw = catalogue.image_model(None, Role::User).unwrap();
        assert_eq!(
            (draw.price(256, 256), draw.price(512, 512), draw.price(300, 300)),
            (Some(5), Some(10), None)
        );
    }

    #[test]
    fn a_turn_costs_its_tokens_rounded_up_and_holds_its_worst_case() {
        let model = Catalogue::parse(GOOD, env).unwrap().chat_models()[0].clone();
        // 1,000 in at 150/M and 1,024 out at 600/M: 0.15 + 0.6144 = 0.7644, rounded up to 1.
        assert_eq!(model.hold(1_000), 1);
        assert_eq!(token_cost(model.pricing, 1_000_000, 0), 150);
        assert_eq!(token_cost(model.pricing, 1_000_001, 0), 151, "a part of a credit is a credit");
        assert_eq!(token_cost(model.pricing, 0, 0), 0);
        assert_eq!(model.charge(1, 10_000_000, 10_000_000), 1, "never more than held");
        assert_eq!(token_cost(ChatPricing::PerTurn(3), 10, 10), 3);
    }

    #[test]
    fn each_bad_file_is_one_line_naming_the_entry_and_the_problem() {
        let cases = [
            (
                "no default",
                "[[chat]]\nid = \"a\"\nmessage_price = 1\n[[image]]\nid = \"d\"\nprices = { \"512x512\" = 1 }\ndefault = true\n",
                "exactly one chat model must have default = true",
            ),
            (
                "two prices",
                "[[chat]]\nid = \"a\"\nmessage_price = 1\ninput_price = 1\noutput_price = 1\nmax_output_tokens = 5\ndefault = true\n",
                "chat model 1 (\"a\"): give either",
            ),
            (
                "negative price",
                "[[chat]]\nid = \"a\"\nmessage_price = -1\ndefault = true\n",
                "message_price must be a whole number",
            ),
            (
                "per token without a cap",
                "[[chat]]\nid = \"a\"\ninput_price = 1\noutput_price = 1\ndefault = true\n",
                "max_output_tokens is needed",
            ),
            (
                "missing key variable",
                "[[chat]]\nid = \"a\"\nurl = \"http://h\"\napi_key_env = \"NOPE\"\nmessage_price = 1\ndefault = true\n",
                "api_key_env names NOPE, which is not set",
            ),
            (
                "unknown field",
                "[[chat]]\nid = \"a\"\nmessage_price = 1\ndefault = true\ncolour = \"red\"\n",
                "line",
            ),
            (
                "bad role",
                "[[chat]]\nid = \"a\"\nmessage_price = 1\nroles = [\"root\"]\ndefault = true\n",
                "not \"root\"",
            ),
            (
                "bad size",
                "[[chat]]\nid = \"a\"\nmessage_price = 1\ndefault = true\n[[image]]\nid = \"d\"\nprices = { \"big\" = 1 }\ndefault = true\n",
                "image model 1 (\"d\"): the size \"big\"",
            ),
            (
                "twice the id",
                "[[chat]]\nid = \"a\"\nmessage_price = 1\ndefault = true\n[[chat]]\nid = \"a\"\nmessage_price = 1\n",
                "the id is used twice",
            ),
            ("not TOML", "[[chat]\n", "line 1"),
        ];
        for (case, text, expected) in cases {
            let error = Catalogue::parse(text, env).expect_err(case);
            assert!(error.contains(expected), "{case}: {error}");
            assert!(!error.contains('\n'), "{case}: one line: {error}");
        }
    }
}
