//! The dashboard (docs/http-api.md#the-dashboard, `GET /` and `GET /runs/{id}`): one static HTML shell
//! and the ES modules and stylesheet it loads, embedded in the binary.
//!
//! The pages carry no data and need no token: the browser reads everything through the
//! same routes as any other client (`GET /v1/runs/stream`, `view=state`, the events
//! stream, cancel), sending the token the user gave it. So the dashboard cannot show
//! what its token would not let a `curl` see, and there is no second code path to
//! authorize. The JavaScript routes on `location.pathname`; there is no build step,
//! no CDN and nothing fetched from elsewhere, so it works offline.

use std::sync::LazyLock;

use axum::extract::Path;
use axum::extract::rejection::PathRejection;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use sha2::{Digest, Sha256};

use crate::error::ApiError;

/// The page's security policy: everything from the hub itself, nothing inline, no
/// framing. `connect-src 'self'` is what the data calls need.
const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; \
                   connect-src 'self'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'";

/// An embedded file: its name under `/assets/`, media type and contents.
struct Asset {
    name: &'static str,
    content_type: &'static str,
    body: &'static str,
}

const SHELL: Asset = Asset {
    name: "index.html",
    content_type: "text/html; charset=utf-8",
    body: include_str!("../assets/index.html"),
};

/// What `GET /assets/{file}` serves.
const ASSETS: &[Asset] = &[
    Asset {
        name: "app.js",
        content_type: "text/javascript; charset=utf-8",
        body: include_str!("../assets/app.js"),
    },
    Asset {
        name: "list.js",
        content_type: "text/javascript; charset=utf-8",
        body: include_str!("../assets/list.js"),
    },
    Asset {
        name: "run.js",
        content_type: "text/javascript; charset=utf-8",
        body: include_str!("../assets/run.js"),
    },
    Asset {
        name: "sse.js",
        content_type: "text/javascript; charset=utf-8",
        body: include_str!("../assets/sse.js"),
    },
    Asset {
        name: "dom.js",
        content_type: "text/javascript; charset=utf-8",
        body: include_str!("../assets/dom.js"),
    },
    Asset {
        name: "style.css",
        content_type: "text/css; charset=utf-8",
        body: include_str!("../assets/style.css"),
    },
    Asset {
        name: "icon.svg",
        content_type: "image/svg+xml",
        body: include_str!("../assets/icon.svg"),
    },
];

/// Each asset's entity tag, a hash of its contents: a browser revalidates with it and
/// gets a `304` until a new hub binary brings new files. (Revalidating, rather than
/// caching for a year, keeps the module imports free of version strings.)
static ETAGS: LazyLock<Vec<HeaderValue>> = LazyLock::new(|| {
    std::iter::once(&SHELL)
        .chain(ASSETS)
        .map(|asset| {
            let digest = Sha256::digest(asset.body.as_bytes());
            let tag = format!("\"{}\"", hex::encode(&digest[..12]));
            HeaderValue::from_str(&tag).expect("hex is a valid header value")
        })
        .collect()
});

/// `GET /` and `GET /runs/{id}`: the shell; the script reads the path.
pub(crate) async fn page(headers: HeaderMap) -> Response {
    respond(&SHELL, &ETAGS[0], &headers)
}

/// `GET /assets/{file}`: an embedded script, stylesheet or icon.
pub(crate) async fn asset(
    file: Result<Path<String>, PathRejection>,
    headers: HeaderMap,
) -> Response {
    let Path(file) = match file {
        Ok(file) => file,
        Err(e) => return ApiError::from(e).into_response(),
    };
    match ASSETS.iter().position(|a| a.name == file) {
        Some(i) => respond(&ASSETS[i], &ETAGS[i + 1], &headers),
        None => ApiError::route_not_found(&format!("/assets/{file}")).into_response(),
    }
}

fn respond(asset: &Asset, etag: &HeaderValue, headers: &HeaderMap) -> Response {
    let fresh = headers
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|tags| {
            let etag = etag.to_str().unwrap_or_default();
            tags.split(',').any(|t| {
                let t = t.trim();
                t == "*" || t.trim_start_matches("W/") == etag
            })
        });
    let mut response = if fresh {
        StatusCode::NOT_MODIFIED.into_response()
    } else {
        asset.body.into_response()
    };
    let h = response.headers_mut();
    if !fresh {
        h.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static(asset.content_type),
        );
    }
    h.insert(header::ETAG, etag.clone());
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    if asset.name == SHELL.name {
        h.insert(
            header::CONTENT_SECURITY_POLICY,
            HeaderValue::from_static(CSP),
        );
        // A run's link carries its read token in the query: no page it links to, and
        // no request it makes, is told the address.
        h.insert(
            header::REFERRER_POLICY,
            HeaderValue::from_static("no-referrer"),
        );
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_module_the_scripts_import_is_served() {
        for asset in ASSETS.iter().chain(std::iter::once(&SHELL)) {
            for (i, _) in asset.body.match_indices("./") {
                let rest = &asset.body[i + 2..];
                let Some(end) = rest.find(['"', '\'']) else {
                    continue;
                };
                let name = &rest[..end];
                if name.ends_with(".js") {
                    assert!(
                        ASSETS.iter().any(|a| a.name == name),
                        "{} imports {name}, which is not embedded",
                        asset.name
                    );
                }
            }
        }
    }

    #[test]
    fn etags_differ_between_assets() {
        let mut tags: Vec<_> = ETAGS.iter().collect();
        tags.sort_by_key(|t| t.as_bytes());
        tags.dedup();
        assert_eq!(tags.len(), ASSETS.len() + 1);
    }
}
