//! Who may talk to a coordinator: provers present a token at `Register` (the fleet's shared
//! secret, or a token of their own bound to their name); admin clients present a bearer token
//! whose role (read-only or operator) decides which calls they may make.
//!
//! Secrets are held only as SHA-256 hashes ([`TokenHash`]), compared in constant time, and
//! never logged or echoed: errors name a token by its configured name, never by its value.
//! A token must be random and long (`proofmill token new` makes 256-bit ones), which is why
//! a plain hash (not a password hash) is enough.

use sha2::{Digest, Sha256};
use std::fmt;

/// Prefix of a hash as configured: `sha256:` and 64 hex digits.
pub const HASH_PREFIX: &str = "sha256:";

/// The SHA-256 hash of a token, the only form in which a coordinator keeps it.
#[derive(Clone, PartialEq, Eq)]
pub struct TokenHash([u8; 32]);

impl TokenHash {
    pub fn of(secret: &str) -> TokenHash {
        TokenHash(Sha256::digest(secret.as_bytes()).into())
    }

    /// `sha256:` followed by 64 hex digits (what [`TokenHash`]'s `Display` prints).
    pub fn parse(s: &str) -> Result<TokenHash, String> {
        let digits = s.strip_prefix(HASH_PREFIX).ok_or_else(|| {
            format!("a token hash starts with `{HASH_PREFIX}` (see `proofmill token hash`)")
        })?;
        let mut out = [0u8; 32];
        hex::decode_to_slice(digits, &mut out)
            .map_err(|_| format!("a token hash is `{HASH_PREFIX}` and 64 hex digits"))?;
        Ok(TokenHash(out))
    }

    /// Whether `secret` hashes to this, in time independent of where they differ.
    pub fn matches(&self, secret: &str) -> bool {
        let other = TokenHash::of(secret);
        let diff = self
            .0
            .iter()
            .zip(other.0.iter())
            .fold(0u8, |acc, (a, b)| acc | (a ^ b));
        std::hint::black_box(diff) == 0
    }
}

impl fmt::Display for TokenHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{HASH_PREFIX}{}", hex::encode(self.0))
    }
}

impl fmt::Debug for TokenHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "TokenHash({self})")
    }
}

/// What an admin token may do. `Operator` may do everything `ReadOnly` may.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Role {
    /// Status, job and prover listings.
    ReadOnly,
    /// Also every call that changes state (launch, retry, cancel, cordon, replace...).
    Operator,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::ReadOnly => "read-only",
            Role::Operator => "operator",
        }
    }

    pub fn parse(s: &str) -> Result<Role, String> {
        match s {
            "read-only" => Ok(Role::ReadOnly),
            "operator" => Ok(Role::Operator),
            other => Err(format!(
                "unknown role `{other}`; roles: read-only, operator"
            )),
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Who made an authorized admin call: the configured name of its token and its role.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Caller {
    pub name: String,
    pub role: Role,
}

/// Why an admin call was refused. [`AuthError::Forbidden`] is a known caller without the
/// role (gRPC `PERMISSION_DENIED`, HTTP 403); the others are no known caller at all
/// (`UNAUTHENTICATED`, HTTP 401).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    #[error("missing admin token: send `authorization: Bearer <token>` (CLI: --admin-token)")]
    Missing,
    #[error("malformed authorization header: expected `Bearer <token>`")]
    Malformed,
    #[error("admin token not recognised")]
    Unknown,
    #[error("admin token `{caller}` has role {role}; this call needs {needed}")]
    Forbidden {
        caller: String,
        role: Role,
        needed: Role,
    },
}

impl AuthError {
    /// HTTP status of the refusal: 401 without a known caller, 403 with one.
    pub fn http_status(&self) -> u16 {
        match self {
            AuthError::Forbidden { .. } => 403,
            _ => 401,
        }
    }

    pub fn to_status(&self) -> tonic::Status {
        match self {
            AuthError::Forbidden { .. } => tonic::Status::permission_denied(self.to_string()),
            _ => tonic::Status::unauthenticated(self.to_string()),
        }
    }
}

#[derive(Clone)]
struct AdminToken {
    name: String,
    role: Role,
    hash: TokenHash,
}

/// The admin tokens a coordinator accepts; none configured ([`AdminAuth::open`]) lets every
/// call through as an operator. Cheap to share behind an `Arc`; usable by any server (gRPC,
/// HTTP) through [`AdminAuth::authorize`].
#[derive(Clone, Default)]
pub struct AdminAuth {
    tokens: Vec<AdminToken>,
}

impl fmt::Debug for AdminAuth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let names: Vec<String> = self
            .tokens
            .iter()
            .map(|t| format!("{} ({})", t.name, t.role))
            .collect();
        f.debug_struct("AdminAuth").field("tokens", &names).finish()
    }
}

impl AdminAuth {
    /// No authentication: every call is made as an operator.
    pub fn open() -> AdminAuth {
        AdminAuth::default()
    }

    pub fn is_open(&self) -> bool {
        self.tokens.is_empty()
    }

    /// Adds a token; names and hashes must be unique.
    pub fn add(&mut self, name: &str, role: Role, hash: TokenHash) -> Result<(), String> {
        check_name(name)?;
        if self.tokens.iter().any(|t| t.name == name) {
            return Err(format!("admin token name `{name}` appears twice"));
        }
        if self.tokens.iter().any(|t| t.hash == hash) {
            return Err(format!(
                "admin token `{name}` has the same hash as another token"
            ));
        }
        self.tokens.push(AdminToken {
            name: name.to_string(),
            role,
            hash,
        });
        Ok(())
    }

    /// The text of an admin tokens file: one token a line, `NAME ROLE sha256:HEX` (role
    /// `read-only` or `operator`); blank lines and lines starting with `#` are skipped.
    pub fn parse_file(text: &str) -> Result<AdminAuth, String> {
        let mut auth = AdminAuth::default();
        for (n, line) in content_lines(text) {
            let fields: Vec<&str> = line.split_whitespace().collect();
            let [name, role, hash] = fields[..] else {
                return Err(format!(
                    "line {n}: expected `NAME ROLE sha256:HEX`, got {} fields",
                    fields.len()
                ));
            };
            let role = Role::parse(role).map_err(|e| format!("line {n}: {e}"))?;
            let hash = TokenHash::parse(hash).map_err(|e| format!("line {n}: {e}"))?;
            auth.add(name, role, hash)
                .map_err(|e| format!("line {n}: {e}"))?;
        }
        if auth.is_open() {
            return Err("no tokens in the file".into());
        }
        Ok(auth)
    }

    /// Checks an `authorization` header value (`Bearer <token>`) for a call that needs
    /// `needed`. With no tokens configured, every call passes as an operator.
    pub fn authorize(&self, header: Option<&str>, needed: Role) -> Result<Caller, AuthError> {
        if self.is_open() {
            return Ok(Caller {
                name: "anonymous".into(),
                role: Role::Operator,
            });
        }
        let header = header.ok_or(AuthError::Missing)?;
        let (scheme, token) = header.trim().split_once(' ').ok_or(AuthError::Malformed)?;
        if !scheme.eq_ignore_ascii_case("bearer") {
            return Err(AuthError::Malformed);
        }
        let token = token.trim();
        if token.is_empty() {
            return Err(AuthError::Malformed);
        }
        let hash = TokenHash::of(token);
        // Every entry is compared, so the time taken does not say which one matched.
        let mut found = None;
        for t in &self.tokens {
            if ct_eq(&t.hash, &hash) {
                found = Some(t);
            }
        }
        let t = found.ok_or(AuthError::Unknown)?;
        if t.role < needed {
            return Err(AuthError::Forbidden {
                caller: t.name.clone(),
                role: t.role,
                needed,
            });
        }
        Ok(Caller {
            name: t.name.clone(),
            role: t.role,
        })
    }
}

/// How a prover was let in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ProverGrant {
    /// No prover authentication is configured.
    Open,
    /// The fleet's shared secret.
    Fleet,
    /// A token of its own, bound to the name it registered under.
    OwnToken,
}

/// Why a prover's `Register` was refused (`UNAUTHENTICATED`).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ProverAuthError {
    #[error("missing prover token (prover: --prover-token)")]
    Missing,
    #[error("wrong prover token")]
    Wrong,
    #[error("this prover token is bound to the name `{bound}`, not `{name}`")]
    OtherName { bound: String, name: String },
    #[error("the name `{name}` has a token of its own; the fleet token cannot register it")]
    NameReserved { name: String },
}

/// The credentials provers may register with: the fleet's shared secret and tokens of their
/// own, each bound to one prover name. With neither, any prover may register.
#[derive(Clone, Default)]
pub struct ProverAuth {
    fleet: Option<TokenHash>,
    /// Name → hash of the token that name registers with.
    own: Vec<(String, TokenHash)>,
}

impl fmt::Debug for ProverAuth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ProverAuth")
            .field("fleet_token", &self.fleet.is_some())
            .field(
                "own_tokens",
                &self.own.iter().map(|(n, _)| n.as_str()).collect::<Vec<_>>(),
            )
            .finish()
    }
}

impl ProverAuth {
    pub fn open() -> ProverAuth {
        ProverAuth::default()
    }

    pub fn is_open(&self) -> bool {
        self.fleet.is_none() && self.own.is_empty()
    }

    /// Accepts `secret`, the fleet's shared token (kept only as its hash).
    pub fn with_fleet_token(mut self, secret: &str) -> ProverAuth {
        self.fleet = Some(TokenHash::of(secret));
        self
    }

    /// Accepts the token hashing to `hash` from the prover named `name` only.
    pub fn add_own(&mut self, name: &str, hash: TokenHash) -> Result<(), String> {
        check_name(name)?;
        if self.own.iter().any(|(n, _)| n == name) {
            return Err(format!("prover name `{name}` appears twice"));
        }
        if self.own.iter().any(|(_, h)| *h == hash) {
            return Err(format!(
                "the token of prover `{name}` has the same hash as another prover's"
            ));
        }
        self.own.push((name.to_string(), hash));
        Ok(())
    }

    /// Adds the tokens of a prover tokens file: one a line, `NAME sha256:HEX`; blank lines
    /// and lines starting with `#` are skipped.
    pub fn with_file(mut self, text: &str) -> Result<ProverAuth, String> {
        let before = self.own.len();
        for (n, line) in content_lines(text) {
            let fields: Vec<&str> = line.split_whitespace().collect();
            let [name, hash] = fields[..] else {
                return Err(format!(
                    "line {n}: expected `NAME sha256:HEX`, got {} fields",
                    fields.len()
                ));
            };
            let hash = TokenHash::parse(hash).map_err(|e| format!("line {n}: {e}"))?;
            self.add_own(name, hash)
                .map_err(|e| format!("line {n}: {e}"))?;
        }
        if self.own.len() == before {
            return Err("no tokens in the file".into());
        }
        Ok(self)
    }

    /// Whether a prover registering as `name` with `token` may.
    pub fn check(&self, token: Option<&str>, name: &str) -> Result<ProverGrant, ProverAuthError> {
        if self.is_open() {
            return Ok(ProverGrant::Open);
        }
        let token = token
            .filter(|t| !t.is_empty())
            .ok_or(ProverAuthError::Missing)?;
        let hash = TokenHash::of(token);
        let mut own = None;
        for (n, h) in &self.own {
            if ct_eq(h, &hash) {
                own = Some(n);
            }
        }
        if let Some(bound) = own {
            return if bound == name {
                Ok(ProverGrant::OwnToken)
            } else {
                Err(ProverAuthError::OtherName {
                    bound: bound.clone(),
                    name: name.to_string(),
                })
            };
        }
        match &self.fleet {
            Some(fleet) if ct_eq(fleet, &hash) => {
                // A name with its own token is that prover's alone.
                if self.own.iter().any(|(n, _)| n == name) {
                    Err(ProverAuthError::NameReserved {
                        name: name.to_string(),
                    })
                } else {
                    Ok(ProverGrant::Fleet)
                }
            }
            _ => Err(ProverAuthError::Wrong),
        }
    }
}

fn ct_eq(a: &TokenHash, b: &TokenHash) -> bool {
    let diff =
        a.0.iter()
            .zip(b.0.iter())
            .fold(0u8, |acc, (x, y)| acc | (x ^ y));
    std::hint::black_box(diff) == 0
}

fn check_name(name: &str) -> Result<(), String> {
    if name.is_empty() || name.len() > 128 || name.chars().any(|c| c.is_control()) {
        return Err(format!(
            "invalid token name {name:?}: 1-128 characters, no control characters"
        ));
    }
    Ok(())
}

/// Numbered (from 1) lines that are not blank or comments.
fn content_lines(text: &str) -> impl Iterator<Item = (usize, &str)> {
    text.lines()
        .enumerate()
        .map(|(i, l)| (i + 1, l.trim()))
        .filter(|(_, l)| !l.is_empty() && !l.starts_with('#'))
}

/// A new random token: 32 bytes from the OS's generator, in hex.
pub fn new_token() -> String {
    let bytes: [u8; 32] = rand::random();
    hex::encode(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn admin() -> AdminAuth {
        AdminAuth::parse_file(&format!(
            "# comment\n\nviewer read-only {}\nops operator {}\n",
            TokenHash::of("r-secret"),
            TokenHash::of("o-secret")
        ))
        .unwrap()
    }

    #[test]
    fn hash_round_trips_and_rejects_bad_forms() {
        let h = TokenHash::of("x");
        assert_eq!(TokenHash::parse(&h.to_string()).unwrap(), h);
        assert!(TokenHash::parse(&hex::encode([0u8; 32])).is_err());
        assert!(TokenHash::parse("sha256:abcd").is_err());
        assert!(h.matches("x") && !h.matches("y"));
    }

    #[test]
    fn admin_roles() {
        let a = admin();
        let ok = |h: &str, r| a.authorize(Some(h), r);
        assert_eq!(
            ok("Bearer r-secret", Role::ReadOnly).unwrap().name,
            "viewer"
        );
        assert_eq!(
            ok("Bearer r-secret", Role::Operator),
            Err(AuthError::Forbidden {
                caller: "viewer".into(),
                role: Role::ReadOnly,
                needed: Role::Operator
            })
        );
        assert_eq!(
            ok("bearer o-secret", Role::Operator).unwrap().role,
            Role::Operator
        );
        assert_eq!(ok("Bearer o-secret", Role::ReadOnly).unwrap().name, "ops");
        assert_eq!(ok("Bearer nope", Role::ReadOnly), Err(AuthError::Unknown));
        assert_eq!(
            ok("Basic r-secret", Role::ReadOnly),
            Err(AuthError::Malformed)
        );
        assert_eq!(ok("Bearer ", Role::ReadOnly), Err(AuthError::Malformed));
        assert_eq!(a.authorize(None, Role::ReadOnly), Err(AuthError::Missing));
        assert_eq!(AuthError::Unknown.http_status(), 401);
        assert_eq!(
            ok("Bearer r-secret", Role::Operator)
                .unwrap_err()
                .to_status()
                .code(),
            tonic::Code::PermissionDenied
        );
        // No secret in any message.
        let e = ok("Bearer r-secret", Role::Operator)
            .unwrap_err()
            .to_string();
        assert!(!e.contains("r-secret"), "{e}");
        assert!(format!("{a:?}").contains("viewer") && !format!("{a:?}").contains("sha256"));
        assert_eq!(
            AdminAuth::open()
                .authorize(None, Role::Operator)
                .unwrap()
                .role,
            Role::Operator
        );
    }

    #[test]
    fn admin_file_errors_name_the_line() {
        let h = TokenHash::of("a");
        for (text, want) in [
            (format!("x admin {h}"), "line 1: unknown role `admin`"),
            (format!("x operator {h}\ny read-only {h}"), "line 2:"),
            ("x operator".to_string(), "line 1: expected"),
            ("# nothing\n".to_string(), "no tokens"),
            (
                format!("x operator {h}\nx read-only {}", TokenHash::of("b")),
                "twice",
            ),
        ] {
            let e = AdminAuth::parse_file(&text).unwrap_err();
            assert!(e.contains(want), "{text:?}: {e}");
        }
    }

    #[test]
    fn prover_tokens() {
        let file = format!(
            "gpu-1 {}\ngpu-2 {}\n",
            TokenHash::of("t1"),
            TokenHash::of("t2")
        );
        let auth = ProverAuth::open()
            .with_fleet_token("fleet")
            .with_file(&file)
            .unwrap();
        assert_eq!(auth.check(Some("t1"), "gpu-1"), Ok(ProverGrant::OwnToken));
        assert_eq!(
            auth.check(Some("t1"), "gpu-2"),
            Err(ProverAuthError::OtherName {
                bound: "gpu-1".into(),
                name: "gpu-2".into()
            })
        );
        assert_eq!(auth.check(Some("fleet"), "cpu-9"), Ok(ProverGrant::Fleet));
        assert_eq!(
            auth.check(Some("fleet"), "gpu-1"),
            Err(ProverAuthError::NameReserved {
                name: "gpu-1".into()
            })
        );
        assert_eq!(auth.check(Some("t3"), "gpu-1"), Err(ProverAuthError::Wrong));
        assert_eq!(auth.check(None, "gpu-1"), Err(ProverAuthError::Missing));
        assert_eq!(auth.check(Some(""), "gpu-1"), Err(ProverAuthError::Missing));
        let own_only = ProverAuth::open().with_file(&file).unwrap();
        assert_eq!(
            own_only.check(Some("fleet"), "x"),
            Err(ProverAuthError::Wrong)
        );
        assert_eq!(ProverAuth::open().check(None, "x"), Ok(ProverGrant::Open));
        assert!(!format!("{auth:?}").contains("sha256"));
    }
}
