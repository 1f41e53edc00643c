//! The app API's bearer token (`RAFTORAL_APP_TOKEN`): checked on every app
//! stream and client call before the call runs, so a refused call starts
//! nothing.

use std::sync::Arc;

use tonic::{Request, Status};

/// The token a call must carry as `authorization: Bearer <token>`. Its
/// `Debug` hides the value, so settings can be logged.
#[derive(Clone)]
pub struct AppToken(Arc<str>);

impl std::fmt::Debug for AppToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("AppToken(<redacted>)")
    }
}

impl std::str::FromStr for AppToken {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if s.is_empty() {
            return Err("the app token is empty: set a token, or unset RAFTORAL_APP_TOKEN".into());
        }
        if !s.bytes().all(|b| b.is_ascii_graphic()) {
            return Err("the app token must be printable ASCII without spaces (it travels in an HTTP header)".into());
        }
        Ok(AppToken(s.into()))
    }
}

impl AppToken {
    /// The `authorization` header value carrying this token, for the CLI.
    pub fn header(&self) -> tonic::metadata::AsciiMetadataValue {
        let mut value: tonic::metadata::AsciiMetadataValue = format!("Bearer {}", self.0)
            .parse()
            .expect("a token of printable ASCII is a valid header");
        value.set_sensitive(true);
        value
    }
}

/// The interceptor in front of the app and client services.
#[derive(Clone)]
pub struct TokenCheck {
    /// `Bearer <token>`, as the header must read; `None` lets every call in.
    expected: Option<Arc<[u8]>>,
}

impl TokenCheck {
    /// Checks `token` when set; lets everything through otherwise.
    pub fn new(token: Option<&AppToken>) -> Self {
        Self {
            expected: token.map(|t| format!("Bearer {}", t.0).into_bytes().into()),
        }
    }
}

impl tonic::service::Interceptor for TokenCheck {
    fn call(&mut self, request: Request<()>) -> Result<Request<()>, Status> {
        let Some(expected) = &self.expected else {
            return Ok(request);
        };
        let given = request
            .metadata()
            .get("authorization")
            .map(|v| v.as_bytes())
            .unwrap_or_default();
        if constant_time_eq(given, expected) {
            return Ok(request);
        }
        let peer = request.remote_addr();
        let reason = if given.is_empty() {
            "no app token"
        } else {
            "wrong app token"
        };
        tracing::warn!(?peer, reason, "app API call refused");
        Err(Status::unauthenticated(format!(
            "{reason}: this sidecar requires `authorization: Bearer <token>` with the token of RAFTORAL_APP_TOKEN; pass it to the SDK (token option)"
        )))
    }
}

/// Equality whose time does not depend on where the inputs differ, so a
/// caller cannot find the token byte by byte from response times. Only the
/// length may leak, which says little about a random token.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    let diff = a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y));
    // Keeps the compiler from turning the fold into an early exit.
    std::hint::black_box(diff) == 0
}

#[cfg(test)]
mod tests {
    use super::*;
    use tonic::service::Interceptor as _;

    fn call(check: &mut TokenCheck, header: Option<&str>) -> Result<(), tonic::Code> {
        let mut request = Request::new(());
        if let Some(h) = header {
            request
                .metadata_mut()
                .insert("authorization", h.parse().expect("header"));
        }
        check.call(request).map(|_| ()).map_err(|s| s.code())
    }

    #[test]
    fn only_the_right_bearer_token_passes() {
        let token: AppToken = "s3cret".parse().expect("token");
        let mut check = TokenCheck::new(Some(&token));
        assert_eq!(call(&mut check, Some("Bearer s3cret")), Ok(()));
        for bad in [
            None,
            Some("Bearer s3cre"),
            Some("Bearer s3cret2"),
            Some("s3cret"),
            Some("Bearer S3cret"),
        ] {
            assert_eq!(
                call(&mut check, bad),
                Err(tonic::Code::Unauthenticated),
                "{bad:?}"
            );
        }
        let mut open = TokenCheck::new(None);
        assert_eq!(call(&mut open, None), Ok(()));
    }

    #[test]
    fn tokens_are_checked_when_parsed_and_never_printed() {
        assert!("".parse::<AppToken>().is_err());
        assert!("two words".parse::<AppToken>().is_err());
        let token: AppToken = "s3cret".parse().expect("token");
        assert!(!format!("{token:?}").contains("s3cret"));
        assert!(constant_time_eq(b"abc", b"abc"));
        assert!(!constant_time_eq(b"abc", b"abd"));
        assert!(!constant_time_eq(b"abc", b"abcd"));
    }
}
