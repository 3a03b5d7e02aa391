//! Pod volumes, materialised as plain directories under the pod's directory, and the bind mounts
//! that put them at each container's `mountPath`.
//!
//! Supported: `configMap`, `secret`, `projected` (`serviceAccountToken` from the TokenRequest API
//! with the pod as bound object, `configMap`, `secret`, `downwardAPI`), `downwardAPI`, `emptyDir`
//! and `hostPath`. Files are written once when the pod starts; ConfigMap and Secret updates and
//! token rotation are not propagated (the token is requested for the volume's
//! `expirationSeconds`, which the API server extends to a year for the default 3607 s).

use std::collections::HashMap;
use std::os::unix::fs::PermissionsExt as _;
use std::path::{Component, Path, PathBuf};

use k8s_openapi::api::authentication::v1::{BoundObjectReference, TokenRequest, TokenRequestSpec};
use k8s_openapi::api::core::v1::{
    Container, DownwardAPIVolumeFile, KeyToPath, Pod, ServiceAccount, Volume,
};
use kube::Api;
use kube::api::PostParams;
use serde::{Deserialize, Serialize};

use super::env::{ObjectCache, field_ref, resource_field_ref};

/// One bind mount inside a container's mount namespace.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Mount {
    /// The host path (a volume directory, a file in it, or a hostPath).
    pub src: PathBuf,
    /// Where the container sees it.
    pub dst: PathBuf,
    /// Remounted read-only after binding.
    pub read_only: bool,
}

/// The default file mode of ConfigMap, Secret, projected and downward-API volumes (0644).
const DEFAULT_MODE: u32 = 0o644;

/// Rejects absolute paths and `..` in a volume item path.
fn relative(path: &str) -> Result<&Path, String> {
    let p = Path::new(path);
    if p.components().all(|c| matches!(c, Component::Normal(_))) && !path.is_empty() {
        Ok(p)
    } else {
        Err(format!(
            "volume item path {path:?} must be relative without '..'"
        ))
    }
}

fn mode_of(mode: Option<i32>, default: Option<i32>) -> u32 {
    mode.or(default)
        .and_then(|m| u32::try_from(m).ok())
        .unwrap_or(DEFAULT_MODE)
}

fn write_file(dir: &Path, path: &str, contents: &[u8], mode: u32) -> Result<(), String> {
    let target = dir.join(relative(path)?);
    if let Some(parent) = target.parent() {
        std::fs::create_dir_all(parent)
            .map_err(|e| format!("creating {}: {e}", parent.display()))?;
    }
    std::fs::write(&target, contents).map_err(|e| format!("writing {}: {e}", target.display()))?;
    std::fs::set_permissions(&target, std::fs::Permissions::from_mode(mode))
        .map_err(|e| format!("chmod {}: {e}", target.display()))
}

/// Writes `entries` (key → bytes) into `dir`, all keys or only `items` (key → path).
fn write_entries(
    dir: &Path,
    what: &str,
    entries: &[(String, Vec<u8>)],
    items: Option<&Vec<KeyToPath>>,
    default_mode: Option<i32>,
) -> Result<(), String> {
    match items {
        Some(items) if !items.is_empty() => {
            for item in items {
                let Some((_, value)) = entries.iter().find(|(k, _)| *k == item.key) else {
                    return Err(format!("{what} has no key {:?}", item.key));
                };
                write_file(dir, &item.path, value, mode_of(item.mode, default_mode))?;
            }
        }
        _ => {
            for (key, value) in entries {
                write_file(dir, key, value, mode_of(None, default_mode))?;
            }
        }
    }
    Ok(())
}

fn write_downward(
    dir: &Path,
    pod: &Pod,
    items: &[DownwardAPIVolumeFile],
    default_mode: Option<i32>,
) -> Result<(), String> {
    for item in items {
        let value = if let Some(field) = &item.field_ref {
            field_ref(pod, &field.field_path)?
        } else if let Some(res) = &item.resource_field_ref {
            let name = res.container_name.as_deref().unwrap_or_default();
            let container = pod
                .spec
                .iter()
                .flat_map(|s| s.containers.iter())
                .find(|c| c.name == name)
                .cloned()
                .unwrap_or_default();
            resource_field_ref(
                &container,
                &res.resource,
                res.divisor.as_ref().map(|d| d.0.as_str()),
            )?
        } else {
            return Err(format!("downwardAPI item {:?} has no source", item.path));
        };
        write_file(
            dir,
            &item.path,
            value.as_bytes(),
            mode_of(item.mode, default_mode),
        )?;
    }
    Ok(())
}

/// Requests a token for the pod's ServiceAccount, bound to the pod.
async fn token(
    cache: &ObjectCache,
    pod: &Pod,
    audience: Option<&str>,
    expiration: Option<i64>,
) -> Result<String, String> {
    let ns = pod.metadata.namespace.clone().unwrap_or_default();
    let sa = pod
        .spec
        .as_ref()
        .and_then(|s| s.service_account_name.clone())
        .unwrap_or_else(|| "default".to_owned());
    let request = TokenRequest {
        spec: TokenRequestSpec {
            audiences: audience
                .filter(|a| !a.is_empty())
                .map(|a| vec![a.to_owned()])
                .unwrap_or_default(),
            expiration_seconds: Some(expiration.unwrap_or(3600)),
            bound_object_ref: Some(BoundObjectReference {
                api_version: Some("v1".to_owned()),
                kind: Some("Pod".to_owned()),
                name: pod.metadata.name.clone(),
                uid: pod.metadata.uid.clone(),
            }),
        },
        ..Default::default()
    };
    let api: Api<ServiceAccount> = Api::namespaced(cache.client().clone(), &ns);
    let answer: TokenRequest = api
        .create_subresource("token", &sa, &PostParams::default(), &request)
        .await
        .map_err(|e| format!("TokenRequest for serviceaccount {ns}/{sa}: {e}"))?;
    answer
        .status
        .map(|s| s.token)
        .ok_or_else(|| format!("TokenRequest for serviceaccount {ns}/{sa} returned no token"))
}

/// Materialises one volume into `dir` (or returns the host path for `hostPath`).
async fn materialise_one(
    cache: &mut ObjectCache,
    pod: &Pod,
    volume: &Volume,
    dir: &Path,
) -> Result<PathBuf, String> {
    if let Some(host) = &volume.host_path {
        let path = PathBuf::from(&host.path);
        match host.type_.as_deref() {
            Some("DirectoryOrCreate") => std::fs::create_dir_all(&path)
                .map_err(|e| format!("creating hostPath {}: {e}", path.display()))?,
            Some("FileOrCreate") if !path.exists() => std::fs::write(&path, b"")
                .map_err(|e| format!("creating hostPath {}: {e}", path.display()))?,
            _ if !path.exists() => {
                return Err(format!("hostPath {} does not exist", path.display()));
            }
            _ => {}
        }
        return Ok(path);
    }
    std::fs::create_dir_all(dir).map_err(|e| format!("creating {}: {e}", dir.display()))?;
    if volume.empty_dir.is_some() {
        // Medium: Memory is not honoured; it is a plain directory.
    } else if let Some(cm) = &volume.config_map {
        let entries = cache
            .configmap_entries(&cm.name, cm.optional.unwrap_or(false))
            .await?;
        let what = format!("configmap {}", cm.name);
        write_entries(dir, &what, &entries, cm.items.as_ref(), cm.default_mode)?;
    } else if let Some(secret) = &volume.secret {
        let name = secret.secret_name.clone().unwrap_or_default();
        let entries = cache
            .secret_entries(&name, secret.optional.unwrap_or(false))
            .await?;
        let what = format!("secret {name}");
        write_entries(
            dir,
            &what,
            &entries,
            secret.items.as_ref(),
            secret.default_mode,
        )?;
    } else if let Some(dapi) = &volume.downward_api {
        write_downward(
            dir,
            pod,
            dapi.items.as_deref().unwrap_or_default(),
            dapi.default_mode,
        )?;
    } else if let Some(projected) = &volume.projected {
        let default_mode = projected.default_mode;
        for source in projected.sources.iter().flatten() {
            if let Some(sat) = &source.service_account_token {
                let token =
                    token(cache, pod, sat.audience.as_deref(), sat.expiration_seconds).await?;
                write_file(
                    dir,
                    &sat.path,
                    token.as_bytes(),
                    mode_of(None, default_mode),
                )?;
            } else if let Some(cm) = &source.config_map {
                let entries = cache
                    .configmap_entries(&cm.name, cm.optional.unwrap_or(false))
                    .await?;
                let what = format!("configmap {}", cm.name);
                write_entries(dir, &what, &entries, cm.items.as_ref(), default_mode)?;
            } else if let Some(secret) = &source.secret {
                let entries = cache
                    .secret_entries(&secret.name, secret.optional.unwrap_or(false))
                    .await?;
                let what = format!("secret {}", secret.name);
                write_entries(dir, &what, &entries, secret.items.as_ref(), default_mode)?;
            } else if let Some(dapi) = &source.downward_api {
                write_downward(
                    dir,
                    pod,
                    dapi.items.as_deref().unwrap_or_default(),
                    default_mode,
                )?;
            } else {
                return Err(format!(
                    "volume {}: projected source {source:?} is not supported by the local kubelet",
                    volume.name
                ));
            }
        }
    } else {
        return Err(format!(
            "volume {}: only configMap, secret, projected, downwardAPI, emptyDir and hostPath \
             volumes are supported by the local kubelet",
            volume.name
        ));
    }
    Ok(dir.to_path_buf())
}

/// Materialises every volume of `pod` under `root` and returns volume name → host path.
pub(crate) async fn materialise(
    cache: &mut ObjectCache,
    pod: &Pod,
    root: &Path,
) -> Result<HashMap<String, PathBuf>, String> {
    let mut out = HashMap::new();
    for volume in pod.spec.iter().flat_map(|s| s.volumes.iter().flatten()) {
        let dir = root.join(&volume.name);
        let path = materialise_one(cache, pod, volume, &dir)
            .await
            .map_err(|e| format!("volume {:?}: {e}", volume.name))?;
        out.insert(volume.name.clone(), path);
    }
    Ok(out)
}

/// The bind mounts of `container`, parents before children.
pub fn container_mounts(
    container: &Container,
    volumes: &HashMap<String, PathBuf>,
) -> Result<Vec<Mount>, String> {
    let mut mounts = Vec::new();
    for vm in container.volume_mounts.iter().flatten() {
        let Some(src) = volumes.get(&vm.name) else {
            return Err(format!(
                "container {}: volumeMount {:?} names no volume of the pod",
                container.name, vm.name
            ));
        };
        if vm.sub_path_expr.as_deref().is_some_and(|e| !e.is_empty()) {
            return Err(format!(
                "container {}: subPathExpr is not supported by the local kubelet",
                container.name
            ));
        }
        let src = match vm.sub_path.as_deref().filter(|s| !s.is_empty()) {
            Some(sub) => src.join(relative(sub)?),
            None => src.clone(),
        };
        if !Path::new(&vm.mount_path).is_absolute() {
            return Err(format!(
                "container {}: mountPath {:?} is not absolute",
                container.name, vm.mount_path
            ));
        }
        mounts.push(Mount {
            src,
            dst: PathBuf::from(&vm.mount_path),
            read_only: vm.read_only.unwrap_or(false),
        });
    }
    mounts.sort_by_key(|m| m.dst.components().count());
    Ok(mounts)
}

/// Where the mount point of `mounts[i]` lives before any mount: inside the source of the deepest
/// earlier mount whose destination contains it (as a runtime creates a nested mount point inside
/// the parent volume), else at the destination on the host.
fn mount_point_location(mounts: &[Mount], i: usize) -> Option<PathBuf> {
    let m = mounts.get(i)?;
    let parent = mounts[..i]
        .iter()
        .filter(|p| m.dst.starts_with(&p.dst) && m.dst != p.dst)
        .max_by_key(|p| p.dst.components().count());
    Some(match parent {
        Some(p) => match m.dst.strip_prefix(&p.dst) {
            Ok(rest) => p.src.join(rest),
            Err(_) => m.dst.clone(),
        },
        None => m.dst.clone(),
    })
}

/// Makes sure each mount point exists (a directory, or an empty file when the source is a file)
/// and returns the paths that had to be created, outermost first. `mounts` must be sorted
/// parents first ([`container_mounts`] does that).
pub fn prepare_mount_points(mounts: &[Mount]) -> Result<Vec<PathBuf>, String> {
    let mut created = Vec::new();
    for (i, m) in mounts.iter().enumerate() {
        let Some(point) = mount_point_location(mounts, i) else {
            continue;
        };
        if std::fs::symlink_metadata(&point).is_ok() {
            continue;
        }
        let mut missing = Vec::new();
        let mut cur = point.as_path();
        while std::fs::symlink_metadata(cur).is_err() {
            missing.push(cur.to_path_buf());
            match cur.parent() {
                Some(parent) => cur = parent,
                None => break,
            }
        }
        missing.reverse();
        let src_is_file = m.src.is_file();
        for (j, path) in missing.iter().enumerate() {
            let last = j + 1 == missing.len();
            let made = if last && src_is_file {
                std::fs::write(path, b"")
            } else {
                std::fs::create_dir(path)
            };
            made.map_err(|e| format!("creating mount point {}: {e}", path.display()))?;
            created.push(path.clone());
        }
    }
    Ok(created)
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::VolumeMount;

    #[test]
    fn mounts_resolve_sub_paths_and_sort_parents_first() {
        let volumes: HashMap<String, PathBuf> = [
            ("a".to_owned(), PathBuf::from("/v/a")),
            ("b".to_owned(), PathBuf::from("/v/b")),
        ]
        .into();
        let c = Container {
            name: "c".into(),
            volume_mounts: Some(vec![
                VolumeMount {
                    name: "b".into(),
                    mount_path: "/etc/x/y".into(),
                    sub_path: Some("f.yaml".into()),
                    read_only: Some(true),
                    ..Default::default()
                },
                VolumeMount {
                    name: "a".into(),
                    mount_path: "/etc/x".into(),
                    ..Default::default()
                },
            ]),
            ..Default::default()
        };
        let mounts = container_mounts(&c, &volumes).unwrap();
        assert_eq!(
            mounts,
            vec![
                Mount {
                    src: "/v/a".into(),
                    dst: "/etc/x".into(),
                    read_only: false
                },
                Mount {
                    src: "/v/b/f.yaml".into(),
                    dst: "/etc/x/y".into(),
                    read_only: true
                },
            ]
        );
    }

    #[test]
    fn unknown_volume_and_escaping_sub_path_are_errors() {
        let volumes: HashMap<String, PathBuf> = [("a".to_owned(), PathBuf::from("/v/a"))].into();
        let mount = |name: &str, sub: Option<&str>| Container {
            name: "c".into(),
            volume_mounts: Some(vec![VolumeMount {
                name: name.into(),
                mount_path: "/m".into(),
                sub_path: sub.map(Into::into),
                ..Default::default()
            }]),
            ..Default::default()
        };
        assert!(container_mounts(&mount("nope", None), &volumes).is_err());
        assert!(container_mounts(&mount("a", Some("../x")), &volumes).is_err());
    }

    #[test]
    fn writes_items_with_modes_and_creates_mount_points() {
        let dir = std::env::temp_dir().join(format!("kv-vol-test-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let entries = vec![("k".to_owned(), b"v".to_vec())];
        let items = vec![KeyToPath {
            key: "k".into(),
            path: "sub/file".into(),
            mode: Some(0o600),
        }];
        write_entries(&dir, "cm", &entries, Some(&items), None).unwrap();
        let file = dir.join("sub/file");
        assert_eq!(std::fs::read(&file).unwrap(), b"v");
        let mode = std::fs::metadata(&file).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        let missing = vec![KeyToPath {
            key: "nope".into(),
            path: "x".into(),
            mode: None,
        }];
        assert!(write_entries(&dir, "cm", &entries, Some(&missing), None).is_err());

        let created = prepare_mount_points(&[Mount {
            src: file.clone(),
            dst: dir.join("m/n/file"),
            read_only: true,
        }])
        .unwrap();
        assert_eq!(
            created,
            vec![dir.join("m"), dir.join("m/n"), dir.join("m/n/file")]
        );
        assert!(dir.join("m/n/file").is_file());

        // A mount point nested in another mount is created inside that mount's source.
        let vol = dir.join("vol");
        std::fs::create_dir_all(&vol).unwrap();
        let created = prepare_mount_points(&[
            Mount {
                src: vol.clone(),
                dst: dir.join("etc/app"),
                read_only: true,
            },
            Mount {
                src: file.clone(),
                dst: dir.join("etc/app/sub/f"),
                read_only: false,
            },
        ])
        .unwrap();
        assert_eq!(
            created,
            vec![
                dir.join("etc"),
                dir.join("etc/app"),
                vol.join("sub"),
                vol.join("sub/f")
            ]
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
