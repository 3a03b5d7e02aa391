//! Container image → local binary. There are no images here: each image names a binary that
//! `cargo build` put in `target/`.
//!
//! Explicit rules (`--image-map PREFIX=PATH`, longest matching prefix of the image reference wins)
//! come first; then the built-in rules on the image repository's last path segment:
//!
//! | last segment | binary |
//! | --- | --- |
//! | `controller`, `kubevigil-controller` | `<target>/controller` |
//! | `scan-job`, `kubevigil-scan-job` | `<target>/scan-job` |
//! | `probe`, `kubevigil-probe`, `kind-tests-probe` | `<target>/probe` (kind-tests' test binary) |
//!
//! where `<target>` is the directory of the running `local-cluster` binary (`target/debug` or
//! `target/release`) unless `--target-dir` says otherwise. Tags and digests are ignored.

use std::path::{Path, PathBuf};

/// Built-in rules: accepted last repository segments → binary name.
const BUILTIN: &[(&[&str], &str)] = &[
    (&["controller", "kubevigil-controller"], "controller"),
    (&["scan-job", "kubevigil-scan-job"], "scan-job"),
    (&["probe", "kubevigil-probe", "kind-tests-probe"], "probe"),
];

/// The image → binary mapping of the kubelet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageMap {
    rules: Vec<(String, PathBuf)>,
    target_dir: PathBuf,
}

impl ImageMap {
    /// Only the built-in rules, resolving into `target_dir`.
    pub fn new(target_dir: impl Into<PathBuf>) -> Self {
        Self {
            rules: Vec::new(),
            target_dir: target_dir.into(),
        }
    }

    /// Adds an explicit rule: images starting with `prefix` run `path`.
    pub fn with_rule(mut self, prefix: impl Into<String>, path: impl Into<PathBuf>) -> Self {
        self.rules.push((prefix.into(), path.into()));
        self
    }

    /// Parses `PREFIX=PATH` and adds it.
    pub fn with_rule_str(self, rule: &str) -> Result<Self, String> {
        match rule.split_once('=') {
            Some((prefix, path)) if !prefix.is_empty() && !path.is_empty() => {
                Ok(self.with_rule(prefix, path))
            }
            _ => Err(format!(
                "image map rule {rule:?} is not PREFIX=PATH (e.g. ghcr.io/me/tool=/usr/bin/tool)"
            )),
        }
    }

    /// The directory the built-in rules resolve into.
    pub fn target_dir(&self) -> &Path {
        &self.target_dir
    }

    /// The binary for `image`, without checking that it exists.
    pub fn lookup(&self, image: &str) -> Option<PathBuf> {
        if let Some((_, path)) = self
            .rules
            .iter()
            .filter(|(prefix, _)| image.starts_with(prefix.as_str()))
            .max_by_key(|(prefix, _)| prefix.len())
        {
            return Some(path.clone());
        }
        let repo = repository(image);
        let last = repo.rsplit('/').next().unwrap_or(repo);
        BUILTIN
            .iter()
            .find(|(names, _)| names.contains(&last))
            .map(|(_, bin)| self.target_dir.join(bin))
    }

    /// The binary for `image`; an error message fit for the pod's status when there is none or it
    /// is not built.
    pub fn resolve(&self, image: &str) -> Result<PathBuf, String> {
        let Some(path) = self.lookup(image) else {
            return Err(format!(
                "image {image:?} is not mapped to a local binary: the local kubelet runs only \
                 images whose repository ends in controller, scan-job or probe (binaries in {}), \
                 or those given with --image-map PREFIX=PATH",
                self.target_dir.display()
            ));
        };
        if path.is_file() {
            Ok(path)
        } else {
            Err(format!(
                "image {image:?} maps to {}, which does not exist (run `cargo build --bins`)",
                path.display()
            ))
        }
    }
}

/// The repository part of an image reference: without `@digest` and `:tag`.
pub fn repository(image: &str) -> &str {
    let no_digest = image.split_once('@').map_or(image, |(repo, _)| repo);
    match no_digest.rfind(':') {
        // A ':' after the last '/' starts the tag; before it, it is a registry port.
        Some(colon) if !no_digest[colon..].contains('/') => &no_digest[..colon],
        _ => no_digest,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rstest::rstest;

    #[rstest]
    #[case::plain("controller", "controller")]
    #[case::tagged("ghcr.io/kubevigil/controller:v1", "ghcr.io/kubevigil/controller")]
    #[case::registry_port("localhost:5000/scan-job", "localhost:5000/scan-job")]
    #[case::port_and_tag("localhost:5000/scan-job:dev", "localhost:5000/scan-job")]
    #[case::digest("x/probe@sha256:abc", "x/probe")]
    #[case::tag_and_digest("x/probe:1@sha256:abc", "x/probe")]
    fn repository_strips_tag_and_digest(#[case] image: &str, #[case] repo: &str) {
        assert_eq!(repository(image), repo);
    }

    #[rstest]
    #[case::controller("ghcr.io/kubevigil/kubevigil-controller:0.1.0", Some("/t/controller"))]
    #[case::bare_controller("controller:dev", Some("/t/controller"))]
    #[case::scan_job("kubevigil/scan-job", Some("/t/scan-job"))]
    #[case::probe("kubevigil.local/probe:dev", Some("/t/probe"))]
    #[case::other_controller("registry.k8s.io/ingress-nginx/nginx-controller", None)]
    #[case::busybox("busybox:1.36", None)]
    fn builtin_rules(#[case] image: &str, #[case] expected: Option<&str>) {
        let map = ImageMap::new("/t");
        assert_eq!(map.lookup(image), expected.map(PathBuf::from));
    }

    #[test]
    fn explicit_rules_win_and_longest_prefix_wins() {
        let map = ImageMap::new("/t")
            .with_rule_str("busybox=/bin/busybox")
            .unwrap()
            .with_rule_str("busybox:1.36=/opt/busybox-1.36")
            .unwrap()
            .with_rule_str("kubevigil/scan-job=/opt/scan-job")
            .unwrap();
        assert_eq!(map.lookup("busybox:1.35"), Some("/bin/busybox".into()));
        assert_eq!(map.lookup("busybox:1.36"), Some("/opt/busybox-1.36".into()));
        assert_eq!(
            map.lookup("kubevigil/scan-job:x"),
            Some("/opt/scan-job".into())
        );
        assert!(ImageMap::new("/t").with_rule_str("no-equals").is_err());
    }

    #[test]
    fn resolve_explains_unknown_and_missing() {
        let map = ImageMap::new("/nonexistent-target");
        let unknown = map.resolve("nginx").unwrap_err();
        assert!(unknown.contains("not mapped"), "{unknown}");
        let missing = map.resolve("probe").unwrap_err();
        assert!(missing.contains("does not exist"), "{missing}");
    }
}
