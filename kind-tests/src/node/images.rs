//! kubevigil's images on the node: built by `scripts/images.sh` (the same Containerfile as
//! `make images`) and imported into the node's containerd under the chart's default references,
//! so the chart's `IfNotPresent` pull policy finds them and nothing is ever pulled.

use std::path::{Path, PathBuf};
use std::process::Stdio;

use serde::{Deserialize, Serialize};
use tracing::info;

use super::NodeDirs;

/// The images the local node imports: the product's two and the test images (the pod sandbox
/// and kind-tests' probe).
pub const NODE_IMAGES: &[&str] = &["controller", "scan-job", "probe", "pause"];

/// One image archive that `scripts/images.sh` built.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct ImageArchive {
    /// The image's short name (`controller`).
    pub name: String,
    /// Its full reference (`ghcr.io/kubevigil/controller:0.1.0`).
    pub reference: String,
    /// The OCI archive.
    pub archive: PathBuf,
    /// The manifest digest.
    pub digest: String,
}

/// Errors of building or importing images.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The build script failed or printed nothing usable.
    #[error("building images with `{command}`: {detail}")]
    Build {
        /// The command.
        command: String,
        /// Why.
        detail: String,
    },
    /// `ctr images import` failed.
    #[error("importing {archive} into the node's containerd: {source}")]
    Import {
        /// The archive.
        archive: PathBuf,
        /// The ctr error.
        source: super::host::CommandError,
    },
    /// The import did not register the expected reference.
    #[error("after importing {archive}, containerd has no image {reference} (it lists: {listed})")]
    Missing {
        /// The archive.
        archive: PathBuf,
        /// The expected reference.
        reference: String,
        /// What it has.
        listed: String,
    },
}

/// Parses the `image <name> <ref> <archive> <digest> <size>` lines of `scripts/images.sh`.
pub fn parse_build_output(stdout: &str) -> Vec<ImageArchive> {
    stdout
        .lines()
        .filter_map(|l| {
            let mut f = l.split_whitespace();
            if f.next()? != "image" {
                return None;
            }
            Some(ImageArchive {
                name: f.next()?.to_owned(),
                reference: f.next()?.to_owned(),
                archive: PathBuf::from(f.next()?),
                digest: f.next()?.to_owned(),
            })
        })
        .collect()
}

/// Runs `scripts/images.sh` for `names` (it builds the static binaries and the image archives;
/// both are cached) and returns the archives.
pub async fn build(repo: &Path, names: &[&str]) -> Result<Vec<ImageArchive>, Error> {
    let script = repo.join("scripts/images.sh");
    let command = format!("bash {} --no-sbom {}", script.display(), names.join(" "));
    info!(%command, "building kubevigil's images (cached)");
    let output = tokio::process::Command::new("bash")
        .arg(&script)
        .arg("--no-sbom")
        .args(names)
        .current_dir(repo)
        .stdin(Stdio::null())
        .stderr(Stdio::inherit())
        .output()
        .await
        .map_err(|e| Error::Build {
            command: command.clone(),
            detail: e.to_string(),
        })?;
    if !output.status.success() {
        return Err(Error::Build {
            command,
            detail: format!("{} (its stderr is above)", output.status),
        });
    }
    let stdout = String::from_utf8_lossy(&output.stdout);
    let archives = parse_build_output(&stdout);
    let missing: Vec<&&str> = names
        .iter()
        .filter(|n| !archives.iter().any(|a| a.name == **n))
        .collect();
    if !missing.is_empty() {
        return Err(Error::Build {
            command,
            detail: format!("it printed no image line for {missing:?} (stdout: {stdout:?})"),
        });
    }
    Ok(archives)
}

/// Imports each archive into the node's containerd (namespace `k8s.io`, which the CRI uses) and
/// checks that its reference is there.
pub fn import(dirs: &NodeDirs, archives: &[ImageArchive]) -> Result<(), Error> {
    for a in archives {
        let archive = a.archive.display().to_string();
        super::ctr(dirs, &["images", "import", &archive]).map_err(|source| Error::Import {
            archive: a.archive.clone(),
            source,
        })?;
        let listed = super::ctr(dirs, &["images", "ls", "-q"]).map_err(|source| Error::Import {
            archive: a.archive.clone(),
            source,
        })?;
        if !listed.lines().any(|l| l.trim() == a.reference) {
            return Err(Error::Missing {
                archive: a.archive.clone(),
                reference: a.reference.clone(),
                listed: listed.split_whitespace().collect::<Vec<_>>().join(", "),
            });
        }
        info!(image = %a.reference, digest = %a.digest, "imported");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_image_lines_and_ignores_the_rest() {
        let out = "building...\nimage controller ghcr.io/kubevigil/controller:0.1.0 /t/images/controller.oci.tar sha256:ab 1234\n";
        let parsed = parse_build_output(out);
        assert_eq!(parsed.len(), 1);
        assert_eq!(parsed[0].reference, "ghcr.io/kubevigil/controller:0.1.0");
        assert_eq!(parsed[0].digest, "sha256:ab");
    }
}
