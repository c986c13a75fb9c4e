//! Parses request paths into the API server's URL scheme.
//!
//! See <https://kubernetes.io/docs/reference/using-api/api-concepts/#resource-uris>.

/// A parsed request path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Route {
    /// `/version`.
    Version,
    /// `/healthz`, `/livez`, `/readyz`.
    Health,
    /// `/api`.
    CoreVersions,
    /// `/apis`.
    Groups,
    /// `/apis/{group}`.
    Group(String),
    /// `/api/v1` or `/apis/{group}/{version}`.
    ResourceList {
        /// Group.
        group: String,
        /// Version.
        version: String,
    },
    /// `/openapi/v2`.
    OpenApiV2,
    /// `/openapi/v3`.
    OpenApiV3Index,
    /// `/openapi/v3/api/v1` or `/openapi/v3/apis/{g}/{v}`.
    OpenApiV3 {
        /// Group.
        group: String,
        /// Version.
        version: String,
    },
    /// A resource URL.
    Resource(ResourcePath),
    /// `/kubesim/...` admin endpoints.
    Admin(Vec<String>),
    /// Anything else.
    Unknown,
}

/// A resource URL, split into its parts.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ResourcePath {
    /// Group.
    pub group: String,
    /// Version.
    pub version: String,
    /// Namespace from the URL, if any.
    pub namespace: Option<String>,
    /// Plural resource.
    pub resource: String,
    /// Object name, if any.
    pub name: Option<String>,
    /// Subresource, if any.
    pub subresource: Option<String>,
    /// The legacy `/watch/` path prefix was used.
    pub legacy_watch: bool,
}

fn decode(seg: &str) -> String {
    percent_decode(seg)
}

/// Minimal %XX decoding (names cannot contain most escapes, but `:` in RBAC names may be encoded).
pub fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' && i + 2 < bytes.len() {
            let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).ok();
            if let Some(v) = hex.and_then(|h| u8::from_str_radix(h, 16).ok()) {
                out.push(v);
                i += 3;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Parses a path (without query string).
pub fn parse(path: &str) -> Route {
    let segs: Vec<String> = path
        .split('/')
        .filter(|s| !s.is_empty())
        .map(decode)
        .collect();
    let s: Vec<&str> = segs.iter().map(String::as_str).collect();
    match s.as_slice() {
        ["version"] => Route::Version,
        ["healthz" | "livez" | "readyz", ..] => Route::Health,
        ["api"] => Route::CoreVersions,
        ["apis"] => Route::Groups,
        ["apis", g] => Route::Group(g.to_string()),
        ["api", v] => Route::ResourceList {
            group: String::new(),
            version: v.to_string(),
        },
        ["apis", g, v] => Route::ResourceList {
            group: g.to_string(),
            version: v.to_string(),
        },
        ["openapi", "v2"] => Route::OpenApiV2,
        ["openapi", "v3"] => Route::OpenApiV3Index,
        ["openapi", "v3", "api", v] => Route::OpenApiV3 {
            group: String::new(),
            version: v.to_string(),
        },
        ["openapi", "v3", "apis", g, v] => Route::OpenApiV3 {
            group: g.to_string(),
            version: v.to_string(),
        },
        ["kubesim", rest @ ..] => Route::Admin(rest.iter().map(|x| x.to_string()).collect()),
        ["api", v, rest @ ..] => resource(String::new(), v, rest),
        ["apis", g, v, rest @ ..] => resource(g.to_string(), v, rest),
        _ => Route::Unknown,
    }
}

fn resource(group: String, version: &str, rest: &[&str]) -> Route {
    let (legacy_watch, rest) = match rest.split_first() {
        Some((&"watch", tail)) if !tail.is_empty() => (true, tail),
        _ => (false, rest),
    };
    let mk = |namespace: Option<&str>, resource: &str, name: Option<&str>, sub: Option<&str>| {
        Route::Resource(ResourcePath {
            group: group.clone(),
            version: version.to_string(),
            namespace: namespace.map(str::to_string),
            resource: resource.to_string(),
            name: name.map(str::to_string),
            subresource: sub.map(str::to_string),
            legacy_watch,
        })
    };
    match rest {
        ["namespaces", ns, sub @ ("status" | "finalize")] => {
            mk(None, "namespaces", Some(ns), Some(sub))
        }
        ["namespaces", ns, res] => mk(Some(ns), res, None, None),
        ["namespaces", ns, res, name] => mk(Some(ns), res, Some(name), None),
        ["namespaces", ns, res, name, sub] => mk(Some(ns), res, Some(name), Some(sub)),
        [res] => mk(None, res, None, None),
        [res, name] => mk(None, res, Some(name), None),
        [res, name, sub] => mk(None, res, Some(name), Some(sub)),
        _ => Route::Unknown,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // https://kubernetes.io/docs/reference/using-api/api-concepts/#resource-uris
    #[test]
    fn paths_matrix() {
        let cases: Vec<(&str, Route)> = vec![
            ("/version", Route::Version),
            ("/api", Route::CoreVersions),
            (
                "/apis/apps/v1",
                Route::ResourceList {
                    group: "apps".into(),
                    version: "v1".into(),
                },
            ),
            (
                "/api/v1/namespaces/default/pods/p/status",
                Route::Resource(ResourcePath {
                    version: "v1".into(),
                    namespace: Some("default".into()),
                    resource: "pods".into(),
                    name: Some("p".into()),
                    subresource: Some("status".into()),
                    ..Default::default()
                }),
            ),
            (
                "/api/v1/namespaces/team",
                Route::Resource(ResourcePath {
                    version: "v1".into(),
                    resource: "namespaces".into(),
                    name: Some("team".into()),
                    ..Default::default()
                }),
            ),
            (
                "/api/v1/namespaces/team/finalize",
                Route::Resource(ResourcePath {
                    version: "v1".into(),
                    resource: "namespaces".into(),
                    name: Some("team".into()),
                    subresource: Some("finalize".into()),
                    ..Default::default()
                }),
            ),
            (
                "/apis/medplat.io/v1alpha1/watch/namespaces/x/pipelines",
                Route::Resource(ResourcePath {
                    group: "medplat.io".into(),
                    version: "v1alpha1".into(),
                    namespace: Some("x".into()),
                    resource: "pipelines".into(),
                    legacy_watch: true,
                    ..Default::default()
                }),
            ),
            ("/apis/a/b/c/d/e/f/g", Route::Unknown),
            ("/nope", Route::Unknown),
            ("/kubesim/requests", Route::Admin(vec!["requests".into()])),
        ];
        for (path, want) in cases {
            assert_eq!(parse(path), want, "{path}");
        }
        assert_eq!(percent_decode("system%3Aauth%zz%4"), "system:auth%zz%4");
    }
}
