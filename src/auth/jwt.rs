//! JSON Web Tokens: HS256 only. Each purpose has its own claims type and audience, so a
//! ws ticket can never pass as an access token (refresh tokens are opaque, not JWTs).

use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation, decode, encode};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::store::Role;

/// Lifetime of an access token, seconds.
pub const ACCESS_TOKEN_SECONDS: i64 = 15 * 60;
/// Lifetime of a WebSocket ticket, seconds.
pub const WS_TICKET_SECONDS: i64 = 30;

const ACCESS_AUDIENCE: &str = "switchboard:access";
const WS_TICKET_AUDIENCE: &str = "switchboard:ws-ticket";

/// Claims of an access token.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct AccessClaims {
    /// User id.
    pub sub: String,
    /// Role when issued (the stored role is what counts).
    pub role: Role,
    /// Issued at, Unix seconds.
    pub iat: i64,
    /// Expiry, Unix seconds.
    pub exp: i64,
    /// Token id.
    pub jti: String,
    /// Session id: revoking the session revokes the token.
    pub sid: String,
    /// Audience: always the access audience.
    pub aud: String,
}

/// Claims of a single-use WebSocket ticket.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct WsTicketClaims {
    /// User id.
    pub sub: String,
    /// Session the ticket was issued from.
    pub sid: String,
    /// Issued at, Unix seconds.
    pub iat: i64,
    /// Expiry, Unix seconds.
    pub exp: i64,
    /// Ticket id, recorded on use so it works once.
    pub jti: String,
    /// Audience: always the ticket audience.
    pub aud: String,
    /// For a ticket bought with an API key: a fingerprint of that key, so the ticket dies with it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
}

/// Signing and verification keys derived from the JWT secret.
#[derive(Clone)]
pub struct JwtKeys {
    encoding: EncodingKey,
    decoding: DecodingKey,
    /// The key that derives a refresh token's successor (see [`JwtKeys::refresh_successor`]).
    successor_key: Vec<u8>,
}

impl JwtKeys {
    /// Keys for an HS256 secret.
    pub fn new(secret: &[u8]) -> JwtKeys {
        JwtKeys {
            encoding: EncodingKey::from_secret(secret),
            decoding: DecodingKey::from_secret(secret),
            successor_key: crate::auth::tokens::hmac_token(secret, "refresh-successor").into_bytes(),
        }
    }

    /// The secret part of the refresh token that `refresh_token` rotates into: derived from it
    /// with a server key, so a retry of a rotation whose answer was lost gets the same new token
    /// again, and nobody without the server's secret can compute it.
    pub fn refresh_successor(&self, refresh_token: &str) -> String {
        crate::auth::tokens::hmac_token(&self.successor_key, refresh_token)
    }

    /// A new access token for `user_id` in session `sid`.
    pub fn issue_access(&self, user_id: &str, role: Role, sid: &str) -> String {
        let iat = crate::store::now().unix_timestamp();
        let claims = AccessClaims {
            sub: user_id.to_owned(),
            role,
            iat,
            exp: iat + ACCESS_TOKEN_SECONDS,
            jti: uuid::Uuid::new_v4().to_string(),
            sid: sid.to_owned(),
            aud: ACCESS_AUDIENCE.to_owned(),
        };
        self.sign(&claims)
    }

    /// A new ws ticket for `user_id` in session `sid` (empty for an API key, whose fingerprint is `key`).
    pub fn issue_ws_ticket(&self, user_id: &str, sid: &str, key: Option<String>) -> String {
        let iat = crate::store::now().unix_timestamp();
        let claims = WsTicketClaims {
            sub: user_id.to_owned(),
            sid: sid.to_owned(),
            iat,
            exp: iat + WS_TICKET_SECONDS,
            jti: uuid::Uuid::new_v4().to_string(),
            aud: WS_TICKET_AUDIENCE.to_owned(),
            key,
        };
        self.sign(&claims)
    }

    /// The claims of a valid, unexpired access token.
    pub fn verify_access(&self, token: &str) -> Option<AccessClaims> {
        self.verify(token, ACCESS_AUDIENCE)
    }

    /// The claims of a valid, unexpired ws ticket.
    pub fn verify_ws_ticket(&self, token: &str) -> Option<WsTicketClaims> {
        self.verify(token, WS_TICKET_AUDIENCE)
    }

    fn sign<T: Serialize>(&self, claims: &T) -> String {
        // Serialising plain structs with an HMAC key cannot fail.
        encode(&Header::new(Algorithm::HS256), claims, &self.encoding).expect("HS256 signing cannot fail")
    }

    fn verify<T: DeserializeOwned>(&self, token: &str, audience: &str) -> Option<T> {
        // `Validation::new(HS256)` accepts HS256 only: `none`, RS256 and friends are refused.
        let mut validation = Validation::new(Algorithm::HS256);
        validation.leeway = 0;
        validation.set_audience(&[audience]);
        validation.set_required_spec_claims(&["exp", "sub", "aud", "iat"]);
        decode::<T>(token, &self.decoding, &validation).ok().map(|data| data.claims)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use base64::Engine;
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;

    #[test]
    fn an_access_token_signs_and_verifies_with_the_rust_crypto_backend() {
        let keys = JwtKeys::new(b"a test secret of reasonable length!!");
        let token = keys.issue_access("u1", Role::Admin, "s1");
        let claims = keys.verify_access(&token).expect("valid token");
        assert_eq!((claims.sub.as_str(), claims.role, claims.sid.as_str()), ("u1", Role::Admin, "s1"));
        assert_eq!(claims.exp - claims.iat, ACCESS_TOKEN_SECONDS);
    }

    #[test]
    fn tokens_of_another_purpose_secret_or_algorithm_are_refused() {
        let keys = JwtKeys::new(b"secret one, long enough for HS256");
        let other = JwtKeys::new(b"secret two, long enough for HS256");
        let ticket = keys.issue_ws_ticket("u1", "s1", None);
        assert!(keys.verify_access(&ticket).is_none(), "a ws ticket is not an access token");
        assert!(keys.verify_ws_ticket(&ticket).is_some());
        assert!(other.verify_access(&keys.issue_access("u1", Role::User, "s1")).is_none(), "other secret");

        // alg: none with the same claims.
        let access = keys.issue_access("u1", Role::User, "s1");
        let payload = access.split('.').nth(1).unwrap();
        let none_header = URL_SAFE_NO_PAD.encode(br#"{"alg":"none","typ":"JWT"}"#);
        assert!(keys.verify_access(&format!("{none_header}.{payload}.")).is_none(), "alg none");
        let hs512 = URL_SAFE_NO_PAD.encode(br#"{"alg":"HS512","typ":"JWT"}"#);
        let sig = access.split('.').nth(2).unwrap();
        assert!(keys.verify_access(&format!("{hs512}.{payload}.{sig}")).is_none(), "HS512");
    }
}
