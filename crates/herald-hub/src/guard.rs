//! What the hub checks of every request before a route sees it: on an open hub (no
//! admin token), that the request was sent to a loopback name (`Host`) by a program or
//! by a page the hub allows (`Origin`); on every hub, that a body says it is JSON.
//!
//! An open hub trusts whoever can reach it, which on loopback means the programs of
//! this machine. A web page the user visits is not one of them, but its browser is:
//! the page could post to `http://127.0.0.1:7311` (a request with a `text/plain` or
//! form body needs no CORS preflight), or rebind its own host name to 127.0.0.1 and
//! then read the hub as if it were its own origin. The `Host` check defeats the second
//! (a rebound name is still the page's name in `Host`), the `Origin` check the first
//! (browsers send `Origin` on every cross-origin request and on every `POST`, so a
//! bodiless cancel is caught too), for reads and writes alike, WebSocket handshakes
//! included. Jupyter, Vite's dev server and Docker's API check the same. On a hub with
//! an admin token neither applies: a page has no token. The media type check applies
//! everywhere: a JSON body must say so, which a browser cannot do across origins
//! without a preflight that CORS answers.

use axum::body::HttpBody;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, Method, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use crate::error::ApiError;
use crate::hub::Hub;

/// Media types of a JSON body.
const JSON: &[&str] = &["application/json"];
/// Media types of a batch of events, one per line, which appends also take.
const JSON_OR_NDJSON: &[&str] = &[
    "application/json",
    "application/x-ndjson",
    "application/jsonl",
    "application/x-jsonlines",
];

/// The middleware: `Host`, then `Origin` (open hubs only), then the media type.
pub(crate) async fn guard(State(hub): State<Hub>, req: Request, next: Next) -> Response {
    match check(&hub, &req) {
        Ok(()) => next.run(req).await,
        Err(e) => e.into_response(),
    }
}

fn check(hub: &Hub, req: &Request) -> Result<(), ApiError> {
    let config = hub.config();
    if config.admin_token.is_none() {
        let host = host_of(req);
        if let Some(host) = host
            && !loopback_host(host)
            && !public_host(config.public_url.as_deref(), host)
        {
            return Err(ApiError::host_not_allowed(host));
        }
        if let Some(origin) = req.headers().get(header::ORIGIN) {
            let origin = origin.to_str().unwrap_or("(not text)");
            if !origin_allowed(
                origin,
                host,
                &config.cors_origins,
                config.public_url.as_deref(),
            ) {
                return Err(ApiError::origin_not_allowed(origin));
            }
        }
    }
    // A request that certainly has no body needs no media type: a bare cancel, say.
    if req.body().size_hint().exact() != Some(0) {
        let accepted = if req.method() == Method::POST && req.uri().path().ends_with("/events") {
            JSON_OR_NDJSON
        } else {
            JSON
        };
        check_media_type(req.headers(), accepted)?;
    }
    Ok(())
}

/// The host a request was sent to: `Host`, or the URI's authority (HTTP/2). `None`
/// without either, which no browser sends.
fn host_of(req: &Request) -> Option<&str> {
    req.headers()
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .or_else(|| req.uri().authority().map(|a| a.as_str()))
}

/// `host` (`name[:port]`) without its port, in lower case, without a final dot.
fn host_name(host: &str) -> String {
    let host = host.trim();
    let name = if let Some(rest) = host.strip_prefix('[') {
        // `[v6]` or `[v6]:port`: the brackets stay, as in URLs.
        rest.split_once(']')
            .map_or(host, |(inside, _)| &host[..inside.len() + 2])
    } else {
        match host.rsplit_once(':') {
            Some((name, port)) if port.bytes().all(|b| b.is_ascii_digit()) => name,
            _ => host,
        }
    };
    name.trim_end_matches('.').to_ascii_lowercase()
}

/// Whether `host` names this machine's loopback interface whatever DNS says:
/// `localhost`, an address in 127.0.0.0/8, or `[::1]`.
fn loopback_host(host: &str) -> bool {
    let name = host_name(host);
    if name == "localhost" {
        return true;
    }
    if let Some(v6) = name.strip_prefix('[').and_then(|n| n.strip_suffix(']')) {
        return v6.parse::<std::net::Ipv6Addr>().is_ok_and(|ip| {
            ip.is_loopback() || ip.to_ipv4_mapped().is_some_and(|v4| v4.is_loopback())
        });
    }
    name.parse::<std::net::Ipv4Addr>()
        .is_ok_and(|ip| ip.is_loopback())
}

/// Whether `host` is the host of the hub's configured public URL: the operator said
/// that is how the hub is reached.
fn public_host(public_url: Option<&str>, host: &str) -> bool {
    public_url
        .and_then(origin_of_url)
        .and_then(|origin| origin.split_once("://").map(|(_, h)| h.to_owned()))
        .is_some_and(|h| host_name(&h) == host_name(host))
}

/// `scheme://host[:port]` of a URL, in lower case.
fn origin_of_url(url: &str) -> Option<String> {
    let (scheme, rest) = url.split_once("://")?;
    let authority = rest.split(['/', '?', '#']).next().unwrap_or(rest);
    Some(format!("{scheme}://{authority}").to_ascii_lowercase())
}

/// Whether a page of `origin` may call an open hub: one of the hub's own pages (the
/// origin is the address the request was sent to, or the public URL's), or an origin
/// named for CORS.
fn origin_allowed(
    origin: &str,
    host: Option<&str>,
    cors_origins: &[String],
    public_url: Option<&str>,
) -> bool {
    let origin = origin.trim().to_ascii_lowercase();
    let same_origin = host.is_some_and(|h| origin == format!("http://{}", h.to_ascii_lowercase()));
    same_origin
        || public_url.and_then(origin_of_url).as_deref() == Some(origin.as_str())
        // `*` is no origin: an open hub refuses to let every page in (see `api::cors`).
        || cors_origins
            .iter()
            .any(|o| o.trim().eq_ignore_ascii_case(&origin))
}

/// Checks that `Content-Type` is one of `accepted` (parameters aside, though a
/// `charset` must be UTF-8, as JSON is).
fn check_media_type(headers: &HeaderMap, accepted: &[&str]) -> Result<(), ApiError> {
    let list = accepted.join(" or ");
    let refuse = |given: Option<&str>| ApiError::unsupported_media_type(given, &list);
    let Some(value) = headers.get(header::CONTENT_TYPE) else {
        return Err(refuse(None));
    };
    let Ok(value) = value.to_str() else {
        return Err(refuse(Some("(not text)")));
    };
    let mut parts = value.split(';');
    let essence = parts.next().unwrap_or("").trim();
    if !accepted.iter().any(|a| a.eq_ignore_ascii_case(essence)) {
        return Err(refuse(Some(value)));
    }
    for param in parts {
        let Some((name, v)) = param.split_once('=') else {
            continue;
        };
        let v = v.trim().trim_matches('"');
        if name.trim().eq_ignore_ascii_case("charset")
            && !v.eq_ignore_ascii_case("utf-8")
            && !v.eq_ignore_ascii_case("utf8")
        {
            return Err(refuse(Some(value)));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_names_with_any_port() {
        for host in [
            "localhost",
            "LocalHost:7311",
            "localhost.:80",
            "127.0.0.1",
            "127.0.0.1:0",
            "127.1.2.3:9",
            "[::1]",
            "[::1]:7311",
            "[::ffff:127.0.0.1]:1",
        ] {
            assert!(loopback_host(host), "{host}");
        }
        for host in [
            "evil.test",
            "evil.test:7311",
            "localhost.evil.test",
            "evil.localhost",
            "127.0.0.1.nip.io",
            "10.0.0.1:7311",
            "0.0.0.0:7311",
            "[::]:7311",
            "[::1",
            "",
        ] {
            assert!(!loopback_host(host), "{host}");
        }
    }

    #[test]
    fn origins_of_the_hub_itself_and_of_cors() {
        let cors = ["http://front.test:3000".to_owned()];
        let host = Some("127.0.0.1:7311");
        for (origin, allowed) in [
            ("http://127.0.0.1:7311", true),
            ("HTTP://127.0.0.1:7311", true),
            ("http://front.test:3000", true),
            ("http://127.0.0.1:7312", false),
            ("https://127.0.0.1:7311", false),
            ("http://localhost:7311", false),
            ("http://front.test", false),
            ("null", false),
        ] {
            assert_eq!(
                origin_allowed(origin, host, &cors, None),
                allowed,
                "{origin}"
            );
        }
        assert!(origin_allowed(
            "https://hub.example",
            host,
            &[],
            Some("https://hub.example/base/")
        ));
    }

    #[test]
    fn media_types_with_parameters() {
        let check = |value: &str| {
            let mut headers = HeaderMap::new();
            headers.insert(header::CONTENT_TYPE, value.parse().expect("a header value"));
            check_media_type(&headers, JSON).is_ok()
        };
        assert!(check("application/json"));
        assert!(check("Application/JSON; charset=UTF-8"));
        assert!(check("application/json;charset=\"utf-8\""));
        assert!(!check("application/json; charset=iso-8859-1"));
        assert!(!check("text/plain"));
        assert!(!check("text/plain; charset=utf-8"));
        assert!(!check("application/x-www-form-urlencoded"));
        assert!(!check("multipart/form-data; boundary=x"));
        assert!(!check("application/jsonx"));
        assert!(check_media_type(&HeaderMap::new(), JSON).is_err());
    }
}
