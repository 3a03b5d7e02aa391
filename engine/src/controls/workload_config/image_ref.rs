//! Docker image references normalised as `distribution/reference.ParseNormalizedNamed(..).String()`
//! does (Kubescape's `image.parse_normalized_name` builtin): `nginx` is
//! `docker.io/library/nginx`, `user/img` is `docker.io/user/img`, `index.docker.io/...` is
//! `docker.io/...`; a first component containing `.` or `:`, equal to `localhost` or holding an
//! uppercase letter is a registry and is kept as written.

use std::fmt;
use std::sync::LazyLock;

use regex::Regex;

const DEFAULT_DOMAIN: &str = "docker.io";
const LEGACY_DEFAULT_DOMAIN: &str = "index.docker.io";
const OFFICIAL_REPO_PREFIX: &str = "library/";
const NAME_TOTAL_LENGTH_MAX: usize = 255;

/// A registry host with an optional port (`example.com`, `10.0.0.1:5000`, `[::1]:5000`).
static DOMAIN: LazyLock<Option<Regex>> = LazyLock::new(|| {
    let component = "(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])";
    Regex::new(&format!(
        r"^(?:{component}(?:\.{component})*|\[[a-fA-F0-9:]+\])(?::[0-9]+)?$"
    ))
    .ok()
});

/// The repository path, then an optional tag and an optional digest.
static REMAINDER: LazyLock<Option<Regex>> = LazyLock::new(|| {
    let component = "[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*";
    Regex::new(&format!(
        r"^({component}(?:/{component})*)(?::[0-9A-Za-z_][0-9A-Za-z_.-]{{0,127}})?(?:@([A-Za-z][A-Za-z0-9]*(?:[-_+.][A-Za-z][A-Za-z0-9]*)*:[0-9a-fA-F]{{32,}}))?$"
    ))
    .ok()
});

/// A normalised image reference, borrowed from the image string: `domain/[library/]remainder`,
/// where the remainder keeps the tag and digest as written.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct ImageName<'a> {
    domain: &'a str,
    library: bool,
    remainder: &'a str,
}

impl ImageName<'_> {
    fn parts(&self) -> [&str; 4] {
        [
            self.domain,
            "/",
            if self.library {
                OFFICIAL_REPO_PREFIX
            } else {
                ""
            },
            self.remainder,
        ]
    }

    /// Whether the normalised string starts with `prefix` (no allocation).
    pub(super) fn starts_with(&self, prefix: &str) -> bool {
        let mut rest = prefix;
        for part in self.parts() {
            if rest.len() <= part.len() {
                return part.starts_with(rest);
            }
            match rest.strip_prefix(part) {
                Some(r) => rest = r,
                None => return false,
            }
        }
        rest.is_empty()
    }
}

impl fmt::Display for ImageName<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for part in self.parts() {
            f.write_str(part)?;
        }
        Ok(())
    }
}

/// Normalises an image reference; `None` when it is not a valid reference (the builtin then
/// errors and the Rego rule body is undefined).
pub(super) fn normalize(image: &str) -> Option<ImageName<'_>> {
    if image.len() == 64
        && image
            .bytes()
            .all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
    {
        return None;
    }
    let (domain, remainder) = split_domain(image);
    let library = domain == DEFAULT_DOMAIN && !remainder.contains('/');
    let remote_name = remainder.split(':').next().unwrap_or(remainder);
    if remote_name.bytes().any(|b| b.is_ascii_uppercase()) {
        return None;
    }
    if domain != DEFAULT_DOMAIN && !DOMAIN.as_ref()?.is_match(domain) {
        return None;
    }
    let caps = REMAINDER.as_ref()?.captures(remainder)?;
    let path_len = caps.get(1).map_or(0, |m| m.len());
    let library_len = if library {
        OFFICIAL_REPO_PREFIX.len()
    } else {
        0
    };
    if domain.len() + 1 + library_len + path_len > NAME_TOTAL_LENGTH_MAX {
        return None;
    }
    if caps.get(2).is_some_and(|d| !digest_is_valid(d.as_str())) {
        return None;
    }
    Some(ImageName {
        domain,
        library,
        remainder,
    })
}

/// `splitDockerDomain`: the registry and the rest of the reference.
fn split_domain(name: &str) -> (&str, &str) {
    let Some((first, rest)) = name.split_once('/') else {
        return (DEFAULT_DOMAIN, name);
    };
    if first == "localhost"
        || first.contains(['.', ':'])
        || first.bytes().any(|b| b.is_ascii_uppercase())
    {
        if first == LEGACY_DEFAULT_DOMAIN {
            return (DEFAULT_DOMAIN, rest);
        }
        (first, rest)
    } else {
        (DEFAULT_DOMAIN, name)
    }
}

/// go-digest validation: only the registered algorithms, with their exact lowercase hex lengths.
fn digest_is_valid(digest: &str) -> bool {
    let Some((algorithm, encoded)) = digest.split_once(':') else {
        return false;
    };
    let len = match algorithm {
        "sha256" => 64,
        "sha384" => 96,
        "sha512" => 128,
        _ => return false,
    };
    encoded.len() == len
        && encoded
            .bytes()
            .all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn norm(image: &str) -> Option<String> {
        normalize(image).map(|n| n.to_string())
    }

    #[test]
    fn docker_hub_names() {
        assert_eq!(norm("nginx").as_deref(), Some("docker.io/library/nginx"));
        assert_eq!(
            norm("nginx:1.25").as_deref(),
            Some("docker.io/library/nginx:1.25")
        );
        assert_eq!(norm("user/img").as_deref(), Some("docker.io/user/img"));
        assert_eq!(
            norm("user/img:v1").as_deref(),
            Some("docker.io/user/img:v1")
        );
        assert_eq!(
            norm("docker.io/nginx").as_deref(),
            Some("docker.io/library/nginx")
        );
        assert_eq!(
            norm("docker.io/user/img").as_deref(),
            Some("docker.io/user/img")
        );
        assert_eq!(
            norm("index.docker.io/nginx").as_deref(),
            Some("docker.io/library/nginx")
        );
        assert_eq!(norm("a/b/c").as_deref(), Some("docker.io/a/b/c"));
    }

    #[test]
    fn registries() {
        assert_eq!(
            norm("quay.io/org/img:v1").as_deref(),
            Some("quay.io/org/img:v1")
        );
        assert_eq!(norm("localhost/img").as_deref(), Some("localhost/img"));
        assert_eq!(
            norm("localhost:5000/img:t").as_deref(),
            Some("localhost:5000/img:t")
        );
        assert_eq!(
            norm("registry:5000/img").as_deref(),
            Some("registry:5000/img")
        );
        assert_eq!(
            norm("10.0.0.1:5000/a/b").as_deref(),
            Some("10.0.0.1:5000/a/b")
        );
        assert_eq!(norm("[::1]:5000/img").as_deref(), Some("[::1]:5000/img"));
        assert_eq!(norm("myRegistry/img").as_deref(), Some("myRegistry/img"));
        assert_eq!(norm("gcr.io/img").as_deref(), Some("gcr.io/img"));
    }

    #[test]
    fn digests() {
        let hex = "a".repeat(64);
        assert_eq!(
            norm(&format!("nginx@sha256:{hex}")),
            Some(format!("docker.io/library/nginx@sha256:{hex}"))
        );
        assert_eq!(
            norm(&format!("nginx:1.2@sha256:{hex}")),
            Some(format!("docker.io/library/nginx:1.2@sha256:{hex}"))
        );
        assert_eq!(norm(&format!("nginx@sha256:{}", "A".repeat(64))), None);
        assert_eq!(norm("nginx@sha256:abc"), None);
        assert_eq!(norm(&format!("nginx@blake3:{hex}")), None);
        assert_eq!(norm(&hex), None);
    }

    #[test]
    fn invalid() {
        assert_eq!(norm(""), None);
        assert_eq!(norm("Nginx"), None);
        assert_eq!(norm("user/Img"), None);
        assert_eq!(norm("nginx:"), None);
        assert_eq!(norm("nginx:-bad"), None);
        assert_eq!(norm("quay.io/"), None);
        assert_eq!(norm("bad_-domain.io/img"), None);
        assert_eq!(norm(&format!("quay.io/{}", "a".repeat(300))), None);
    }

    #[test]
    fn prefix_without_allocation() {
        let n = normalize("nginx:1.25");
        assert!(n.is_some_and(|n| n.starts_with("docker.io")));
        assert!(n.is_some_and(|n| n.starts_with("docker.io/")));
        assert!(n.is_some_and(|n| n.starts_with("docker.io/library/ng")));
        assert!(n.is_some_and(|n| n.starts_with("docker.io/library/nginx:1.25")));
        assert!(n.is_some_and(|n| n.starts_with("")));
        assert!(!n.is_some_and(|n| n.starts_with("docker.io/library/nginx:1.25x")));
        assert!(!n.is_some_and(|n| n.starts_with("quay.io")));
        assert!(!n.is_some_and(|n| n.starts_with("docker.io/user")));
        let q = normalize("quay.io/org/img");
        assert!(q.is_some_and(|n| n.starts_with("quay.io/org")));
        assert!(!q.is_some_and(|n| n.starts_with("quay.io/org/img/x")));
    }
}
