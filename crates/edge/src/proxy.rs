//! The Pingora glue: gathers a request's facts, asks `routing::route`, and
//! proxies to a healthy node of the chosen region over h2c (gRPC) with
//! trailers intact. Also answers what the edge serves itself (federation
//! JWKS, discovery document) and the one place its errors become responses.

use crate::{
    EdgeState, Live,
    client_ip::client_ip,
    extract::{self, BodyError, MAX_BODY, Rpc},
    routing::{self, Facts, Reason, Route},
};
use async_trait::async_trait;
use bytes::Bytes;
use domicile_core::{
    RegionCode,
    index::IdentifierKey,
    region::{
        CLIENT_ADDRESS_HEADER, CLIENT_COUNTRY_HEADER, CLIENT_LOCATION_HEADER, HOME_REGION_HEADER,
        REGION_HEADER, ROUTE_HEADER, TRACE_ID_HEADER,
    },
};
use pingora_core::{protocols::http::HttpTask, upstreams::peer::HttpPeer};
use pingora_error::{Error, ErrorType, Result};
use pingora_http::{RequestHeader, ResponseHeader};
use pingora_proxy::{FailToProxy, ProxyHttp, Session};
use std::{
    sync::Arc,
    time::{Duration, Instant},
};
use tonic::Code;

/// Per-request state.
#[derive(Default)]
pub struct Ctx {
    /// The configuration this request is routed by, start to end.
    live: Option<Arc<Live>>,
    /// The request's server span (`edge.request`), ended when `Ctx` drops.
    span: Option<tracing::Span>,
    /// Its trace id (32 hex digits).
    trace_id: Option<String>,
    grpc: bool,
    rpc: Option<Rpc>,
    /// The OpenID Connect endpoint, for those requests.
    web: Option<extract::Web>,
    route: Option<Route>,
    /// The region the request was last sent to.
    upstream_region: Option<RegionCode>,
    /// Key of the request's identifier, to invalidate on redirect.
    identifier_key: Option<IdentifierKey>,
    /// A node named another home region; the edge follows it once.
    follow: Option<RegionCode>,
    followed: bool,
    upstream_started: Option<Instant>,
    /// gRPC status or HTTP status, for metrics.
    status: Option<String>,
    /// The request must answer alike whether or not its address has an
    /// account (the one-time code journeys): no `domicile-region` or
    /// `domicile-route`, which would say whether the index knew it.
    conceal_route: bool,
    /// An RPC that may send the user a message (and so is limited per
    /// client address by the node).
    may_send: bool,
}

pub struct EdgeProxy {
    pub state: Arc<EdgeState>,
}

/// An error the edge answers itself.
struct Refusal {
    grpc_code: Code,
    http_status: u16,
    message: String,
    retry_after: Option<u64>,
}

impl Refusal {
    fn new(grpc_code: Code, http_status: u16, message: impl Into<String>) -> Self {
        Self {
            grpc_code,
            http_status,
            message: message.into(),
            retry_after: None,
        }
    }

    fn unavailable(region: &RegionCode, retry_after: u64) -> Self {
        Self {
            retry_after: Some(retry_after),
            ..Self::new(
                Code::Unavailable,
                503,
                format!("region {region} has no healthy node; retry later"),
            )
        }
    }
}

impl From<BodyError> for Refusal {
    fn from(e: BodyError) -> Self {
        match e {
            BodyError::TooLarge => Refusal::new(Code::ResourceExhausted, 413, e.to_string()),
            BodyError::Compressed => Refusal::new(Code::Unimplemented, 415, e.to_string()),
            BodyError::Frame(_) | BodyError::Message => {
                Refusal::new(Code::InvalidArgument, 400, e.to_string())
            }
        }
    }
}

fn header_str<'a>(session: &'a Session, name: &str) -> Option<&'a str> {
    session
        .req_header()
        .headers
        .get(name)
        .and_then(|v| v.to_str().ok())
}

/// Text safe inside HTML (the five characters that matter escaped).
fn html_escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

impl Ctx {
    /// The request's configuration snapshot (taken when it arrived).
    fn live(&mut self, state: &EdgeState) -> Arc<Live> {
        self.live.get_or_insert_with(|| state.live()).clone()
    }
}

impl EdgeProxy {
    /// Writes a response the edge decided itself: a trailers-only gRPC reply
    /// for gRPC requests, a small JSON error otherwise.
    ///
    /// Trailers-only means one HEADERS frame with END_STREAM. Pingora 0.9's
    /// `Session::write_response_header(resp, true)` cannot send that: the
    /// end flag reaches only the response modules, the h2 writer is always
    /// called with `end = false`, and `finish()` later ends the stream with
    /// an empty DATA frame, which gRPC C-core clients (grpcio, C++, Ruby,
    /// PHP, C#) reject ("Stream removed"). `write_response_tasks` passes the
    /// flag through; see docs/routing.md, "The edge's own replies".
    async fn refuse(&self, session: &mut Session, ctx: &mut Ctx, r: Refusal) -> Result<bool> {
        // A hosted page's refusal is a page (the browser shows it).
        let page = !ctx.grpc && ctx.web.is_some_and(extract::Web::is_page);
        let mut resp = if ctx.grpc {
            let mut h = ResponseHeader::build(200, Some(6))?;
            h.insert_header("content-type", "application/grpc")?;
            h.insert_header("grpc-status", (r.grpc_code as i32).to_string())?;
            h.insert_header("grpc-message", percent_encode(&r.message))?;
            h
        } else if page {
            let mut h = ResponseHeader::build(r.http_status, Some(10))?;
            h.insert_header("content-type", "text/html; charset=utf-8")?;
            h.insert_header(
                "content-security-policy",
                "default-src 'none'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'",
            )?;
            h.insert_header("x-frame-options", "DENY")?;
            h.insert_header("cache-control", "no-store")?;
            h.insert_header("x-content-type-options", "nosniff")?;
            h
        } else {
            let mut h = ResponseHeader::build(r.http_status, Some(6))?;
            h.insert_header("content-type", "application/json")?;
            h
        };
        if let Some(s) = r.retry_after {
            resp.insert_header("retry-after", s.to_string())?;
        }
        self.stamp(&mut resp, ctx)?;
        ctx.status = Some(if ctx.grpc {
            status_label(r.grpc_code)
        } else {
            r.http_status.to_string()
        });
        if ctx.grpc {
            session
                .write_response_tasks(vec![HttpTask::Header(Box::new(resp), true)])
                .await?;
        } else {
            let body = if page {
                format!(
                    "<!doctype html>\n<html lang=\"en\"><meta charset=\"utf-8\"><title>This request cannot continue</title>\n<h1>This request cannot continue</h1>\n<p role=\"alert\">{}</p>\n<p>Go back to the app and start again.</p></html>\n",
                    html_escape(&r.message)
                )
            } else {
                serde_json::json!({ "error": r.message }).to_string()
            };
            resp.insert_header("content-length", body.len().to_string())?;
            session.write_response_header(Box::new(resp), false).await?;
            session
                .write_response_body(Some(Bytes::from(body)), true)
                .await?;
        }
        Ok(true)
    }

    /// Serves a JSON document from the edge itself.
    async fn serve_json(
        &self,
        session: &mut Session,
        ctx: &mut Ctx,
        doc: serde_json::Value,
    ) -> Result<bool> {
        let body = doc.to_string();
        let mut resp = ResponseHeader::build(200, Some(4))?;
        resp.insert_header("content-type", "application/json")?;
        resp.insert_header("cache-control", "public, max-age=60")?;
        resp.insert_header("content-length", body.len().to_string())?;
        ctx.status = Some("200".into());
        session.write_response_header(Box::new(resp), false).await?;
        session
            .write_response_body(Some(Bytes::from(body)), true)
            .await?;
        Ok(true)
    }

    /// `domicile-region`, `domicile-route` and `domicile-trace-id` on every
    /// proxied or refused response.
    fn stamp(&self, resp: &mut ResponseHeader, ctx: &Ctx) -> Result<()> {
        if let Some(id) = &ctx.trace_id {
            // What a support ticket quotes to find the request's trace.
            resp.insert_header(TRACE_ID_HEADER, id.as_str())?;
        }
        if let Some(route) = ctx.route.as_ref().filter(|_| !ctx.conceal_route) {
            let region = ctx.upstream_region.as_ref().unwrap_or(&route.region);
            resp.insert_header(REGION_HEADER, region.as_str())?;
            let reason = if ctx.followed {
                Reason::Redirect
            } else {
                route.reason
            };
            resp.insert_header(ROUTE_HEADER, reason.as_str())?;
        }
        Ok(())
    }

    /// Reads the whole request body, refusing it past `MAX_BODY` without
    /// reading on. The body stays in Pingora's retry buffer for the upstream.
    async fn read_body(&self, session: &mut Session) -> Result<Vec<u8>, BodyError> {
        if let Some(len) =
            header_str(session, "content-length").and_then(|v| v.parse::<usize>().ok())
            && len > MAX_BODY
        {
            return Err(BodyError::TooLarge);
        }
        session.enable_retry_buffering();
        let mut body = Vec::new();
        loop {
            match session.read_request_body().await {
                Ok(Some(chunk)) => {
                    if body.len() + chunk.len() > MAX_BODY {
                        return Err(BodyError::TooLarge);
                    }
                    body.extend_from_slice(&chunk);
                }
                Ok(None) => break,
                Err(_) => return Err(BodyError::Frame("request body could not be read")),
            }
        }
        if session.retry_buffer_truncated() {
            return Err(BodyError::TooLarge);
        }
        Ok(body)
    }

    /// Collects the facts of an Identity RPC.
    async fn identity_facts(
        &self,
        session: &mut Session,
        ctx: &mut Ctx,
        rpc: Rpc,
        facts: &mut Facts,
    ) -> Result<(), Refusal> {
        let body = self.read_body(session).await?;
        let message = extract::unary_message(&body)?;
        let identity = extract::read(rpc, message)?;
        self.add_facts(ctx, identity, facts).await;
        Ok(())
    }

    /// What a request's body or query revealed, as routing facts: its
    /// artifact's region (unless a bearer token named one), its preference,
    /// its email's domain and, without an artifact, the index's answer for
    /// its email or phone number.
    async fn add_facts(&self, ctx: &mut Ctx, identity: extract::Identity, facts: &mut Facts) {
        if facts.artifact.is_none() {
            facts.artifact = identity.artifact.or_else(|| {
                let tag = identity.passkey_tag?;
                domicile_core::passkey::tag_region(&ctx.live(&self.state).topology, tag)
            });
        }
        facts.preference = identity.preference;
        let key = match (identity.email, identity.phone) {
            (Some(email), _) => {
                facts.email_domain = Some(email.domain().to_owned());
                Some(self.state.secret.email_key(&email))
            }
            (None, Some(phone)) => Some(self.state.secret.phone_key(&phone)),
            (None, None) => None,
        };
        if let Some(key) = key
            && facts.artifact.is_none()
        {
            ctx.identifier_key = Some(key);
            facts.indexed = self.state.index.lookup(&key).await;
        }
    }

    /// Collects the facts of an OpenID Connect request: from the query of
    /// the sign-in page, from the (bounded) form body of the others.
    async fn web_facts(
        &self,
        session: &mut Session,
        ctx: &mut Ctx,
        web: extract::Web,
        facts: &mut Facts,
    ) -> Result<(), Refusal> {
        let in_query = web == extract::Web::AuthorizePage
            || (matches!(web, extract::Web::Logout | extract::Web::Link)
                && session.req_header().method == "GET");
        let mut identity = match web {
            _ if in_query => {
                let query = session.req_header().uri.query().unwrap_or_default();
                if query.len() > MAX_BODY {
                    return Err(BodyError::TooLarge.into());
                }
                extract::read_web(web, query.as_bytes())
            }
            extract::Web::UserInfo
            | extract::Web::Page
            | extract::Web::Account
            | extract::Web::PasskeyOptions => extract::Identity::default(),
            extract::Web::AuthorizePage
            | extract::Web::SignInForm
            | extract::Web::CodeForm
            | extract::Web::SignUpForm
            | extract::Web::Token
            | extract::Web::TokenAbout
            | extract::Web::Logout
            | extract::Web::Link
            | extract::Web::SecondFactor
            | extract::Web::PasskeyForm => {
                let body = self.read_body(session).await?;
                extract::read_web(web, &body)
            }
        };
        // The sign-in page without a `login_hint`, a logout without an
        // `id_token_hint`, and the account page go where the browser's
        // session lives.
        if matches!(
            web,
            extract::Web::AuthorizePage
                | extract::Web::Logout
                | extract::Web::Account
                | extract::Web::PasskeyOptions
        ) && identity.email.is_none()
            && identity.artifact.is_none()
        {
            identity.artifact = extract::browser_region(
                session
                    .req_header()
                    .headers
                    .get_all("cookie")
                    .iter()
                    .filter_map(|v| v.to_str().ok()),
            );
        }
        self.add_facts(ctx, identity, facts).await;
        Ok(())
    }

    async fn decide(&self, session: &mut Session, ctx: &mut Ctx) -> Result<Route, Refusal> {
        let path = session.req_header().uri.path().to_owned();
        let mut facts = Facts {
            artifact: header_str(session, "authorization").and_then(extract::bearer_region),
            ..Facts::default()
        };
        if let Some(rpc) = extract::identity_rpc(&path) {
            ctx.rpc = Some(rpc);
            if !ctx.grpc {
                return Err(Refusal::new(
                    Code::Unimplemented,
                    415,
                    "Identity RPCs need content-type application/grpc",
                ));
            }
            ctx.conceal_route = matches!(rpc, Rpc::RequestCode | Rpc::CodeProof);
            ctx.may_send = ctx.conceal_route || extract::sends_message(&path);
            self.identity_facts(session, ctx, rpc, &mut facts).await?;
        } else if let Some(web) = extract::web_endpoint(session.req_header().method.as_str(), &path)
        {
            ctx.web = Some(web);
            ctx.conceal_route = extract::conceals_route(&path);
            self.web_facts(session, ctx, web, &mut facts).await?;
        } else if !extract::PASSTHROUGH_PREFIXES
            .iter()
            .any(|p| path.starts_with(p))
        {
            return Err(Refusal::new(
                Code::Unimplemented,
                404,
                format!("{path} is not served on the public hostname"),
            ));
        }
        if facts.artifact.is_none()
            && facts.indexed.is_none()
            && let (Some(geo), Some(peer)) = (
                &self.state.geoip,
                session
                    .client_addr()
                    .and_then(|a| a.as_inet())
                    .map(|a| a.ip()),
            )
        {
            let ip = client_ip(
                peer,
                &session.req_header().headers,
                &ctx.live(&self.state).topology.federation.trusted_proxies,
            );
            facts.country = geo.country(ip);
        }
        // A preference the residency rule refuses is refused here, exactly as
        // the node would, so the registration goes to no region at all.
        routing::route(&ctx.live(&self.state).topology, &facts).map_err(|e| {
            Refusal::new(
                Code::InvalidArgument,
                400,
                format!("region_preference: {e}"),
            )
        })
    }
}

#[async_trait]
impl ProxyHttp for EdgeProxy {
    type CTX = Ctx;

    fn new_ctx(&self) -> Ctx {
        Ctx::default()
    }

    async fn request_filter(&self, session: &mut Session, ctx: &mut Ctx) -> Result<bool> {
        let live = ctx.live(&self.state);
        ctx.grpc =
            header_str(session, "content-type").is_some_and(|c| c.starts_with("application/grpc"));
        // The path names the RPC or document; the query string (which could
        // carry anything) is left out.
        let span = tracing::info_span!(
            "edge.request",
            otel.name = %format_args!("edge {}", session.req_header().uri.path()),
            otel.kind = "server",
            http.request.method = %session.req_header().method,
            url.path = session.req_header().uri.path(),
            region = tracing::field::Empty,
            domicile.route = tracing::field::Empty,
            domicile.status = tracing::field::Empty,
            otel.status_code = tracing::field::Empty,
            trace_id = tracing::field::Empty,
        );
        ctx.trace_id = Some(domicile_telemetry::propagation::continue_trace(
            &span,
            &session.req_header().headers,
        ));
        ctx.span = Some(span);
        match session.req_header().uri.path() {
            "/.well-known/jwks.json" => {
                return self
                    .serve_json(session, ctx, self.state.keys.document())
                    .await;
            }
            "/.well-known/openid-configuration" => {
                let doc = domicile_oidc::discovery::document(&live.topology.federation.issuer);
                return self.serve_json(session, ctx, doc).await;
            }
            _ => {}
        }
        let route = match self.decide(session, ctx).await {
            Ok(r) => r,
            Err(refusal) => return self.refuse(session, ctx, refusal).await,
        };
        ctx.route = Some(route.clone());
        if let Some(span) = &ctx.span {
            span.record("region", route.region.as_str());
            span.record("domicile.route", route.reason.as_str());
        }
        if live.pools.select(&route.region).is_none() {
            let retry_after = live.topology.edge.retry_after_seconds;
            return self
                .refuse(
                    session,
                    ctx,
                    Refusal::unavailable(&route.region, retry_after),
                )
                .await;
        }
        Ok(false)
    }

    async fn upstream_peer(&self, _session: &mut Session, ctx: &mut Ctx) -> Result<Box<HttpPeer>> {
        let region = match (&ctx.follow, &ctx.route) {
            (Some(home), _) => home.clone(),
            (None, Some(route)) => route.region.clone(),
            (None, None) => {
                return Err(Error::explain(ErrorType::InternalError, "no route decided"));
            }
        };
        let addr = ctx.live(&self.state).pools.select(&region).ok_or_else(|| {
            Error::explain(
                ErrorType::HTTPStatus(503),
                format!("region {region} has no healthy node"),
            )
        })?;
        ctx.upstream_region = Some(region);
        ctx.upstream_started = Some(Instant::now());
        let mut peer = HttpPeer::new(addr, false, String::new());
        if ctx.grpc {
            // h2c with prior knowledge; many calls share a connection.
            peer.options.set_http_version(2, 2);
            peer.options.max_h2_streams = 256;
        }
        peer.options.connection_timeout = Some(Duration::from_secs(1));
        peer.options.read_timeout = Some(Duration::from_secs(30));
        Ok(Box::new(peer))
    }

    async fn upstream_request_filter(
        &self,
        session: &mut Session,
        upstream: &mut RequestHeader,
        ctx: &mut Ctx,
    ) -> Result<()> {
        // The node's per-address limits count the client's address as the
        // edge saw it (after trusted proxies), and its sign-in risk the
        // address's GeoIP country and place; whatever the client sent in
        // these headers is replaced, or removed. Only the requests that
        // may ask for a message or sign in carry them (the hosted pages,
        // the code RPCs, Login and PasskeySignIn), not the hot RPCs (refresh, profile
        // reads).
        let peer = session
            .client_addr()
            .and_then(|a| a.as_inet())
            .map(|a| a.ip())
            .filter(|_| {
                ctx.web.is_some()
                    || ctx.may_send
                    || matches!(ctx.rpc, Some(Rpc::Login | Rpc::PasskeySignIn))
            });
        let ip = peer.map(|peer| {
            client_ip(
                peer,
                &session.req_header().headers,
                &ctx.live(&self.state).topology.federation.trusted_proxies,
            )
        });
        let geo = self.state.geoip.as_ref();
        let country = ip.zip(geo).and_then(|(ip, g)| g.country(ip));
        let location = ip.zip(geo).and_then(|(ip, g)| g.location(ip));
        for (name, value) in [
            (CLIENT_ADDRESS_HEADER, ip.map(|ip| ip.to_string())),
            (CLIENT_COUNTRY_HEADER, country),
            (CLIENT_LOCATION_HEADER, location.map(|l| l.header_value())),
        ] {
            match value {
                Some(v) => upstream.insert_header(name, v)?,
                None => {
                    upstream.remove_header(name);
                }
            }
        }
        // The node continues this request's trace (any traceparent the
        // client sent is replaced by the edge's own span).
        if let Some(span) = &ctx.span {
            for (name, value) in domicile_telemetry::propagation::headers_for(span) {
                upstream.insert_header(name, value)?;
            }
        }
        Ok(())
    }

    async fn upstream_response_filter(
        &self,
        _session: &mut Session,
        resp: &mut ResponseHeader,
        ctx: &mut Ctx,
    ) -> Result<()> {
        if let (Some(start), Some(region)) = (ctx.upstream_started, &ctx.upstream_region) {
            self.state
                .metrics
                .upstream_seconds
                .with_label_values(&[region.as_str()])
                .observe(start.elapsed().as_secs_f64());
        }
        let grpc_status = grpc_code(resp.headers.get("grpc-status"));
        let home = resp
            .headers
            .get(HOME_REGION_HEADER)
            .and_then(|v| v.to_str().ok())
            .and_then(|r| ctx.live(&self.state).topology.known_region(r).cloned());
        // A node that does not home the user says where they live: an RPC
        // with FAILED_PRECONDITION, a hosted form with 421.
        let misdirected = grpc_status == Some(Code::FailedPrecondition)
            || (ctx.web.is_some() && resp.status == http::StatusCode::MISDIRECTED_REQUEST);
        if ctx.web == Some(extract::Web::SignUpForm)
            && resp.status == http::StatusCode::SEE_OTHER
            && let (Some(key), Some(region)) = (&ctx.identifier_key, &ctx.upstream_region)
        {
            // A sign-up succeeded (its only 303): its lookup left "unknown"
            // in the cache; the user now lives where the form went.
            self.state.index.remember(key, region.clone()).await;
        }
        if let (true, Some(home)) = (misdirected, home)
            && !ctx.followed
            && ctx.upstream_region.as_ref() != Some(&home)
        {
            // The node knows better than our cache: follow it once.
            ctx.followed = true;
            ctx.follow = Some(home);
            if let Some(key) = &ctx.identifier_key {
                self.state.index.invalidate(key).await;
            }
            let mut e = Error::explain(
                ErrorType::Custom("follow home region"),
                "node named another home region",
            );
            e.set_retry(true);
            return Err(e);
        }
        Ok(())
    }

    fn error_while_proxy(
        &self,
        peer: &HttpPeer,
        session: &mut Session,
        e: Box<Error>,
        ctx: &mut Ctx,
        client_reused: bool,
    ) -> Box<Error> {
        let mut e = e.more_context(format!("peer: {peer}"));
        let following =
            ctx.follow.is_some() && matches!(e.etype(), ErrorType::Custom("follow home region"));
        if following && !session.retry_buffer_truncated() {
            e.set_retry(true);
        } else if !session.req_header().method.is_idempotent() || session.retry_buffer_truncated() {
            e.set_retry(false);
        } else {
            e.retry.decide_reuse(client_reused);
        }
        e
    }

    async fn response_filter(
        &self,
        _session: &mut Session,
        resp: &mut ResponseHeader,
        ctx: &mut Ctx,
    ) -> Result<()> {
        self.stamp(resp, ctx)?;
        if let Some(s) = resp
            .headers
            .get("grpc-status")
            .and_then(|v| v.to_str().ok())
        {
            ctx.status = Some(format!("grpc_{s}"));
        } else if !ctx.grpc {
            ctx.status = Some(resp.status.as_u16().to_string());
        }
        Ok(())
    }

    async fn response_trailer_filter(
        &self,
        _session: &mut Session,
        trailers: &mut http::HeaderMap,
        ctx: &mut Ctx,
    ) -> Result<Option<Bytes>> {
        if let Some(s) = trailers.get("grpc-status").and_then(|v| v.to_str().ok()) {
            ctx.status = Some(format!("grpc_{s}"));
            // A registration succeeded: its lookup left "unknown" in the
            // cache; the user now lives where the request went.
            if let (Some(Rpc::Register), Some(Code::Ok), Some(key), Some(region)) = (
                ctx.rpc,
                grpc_code(trailers.get("grpc-status")),
                &ctx.identifier_key,
                &ctx.upstream_region,
            ) {
                self.state.index.remember(key, region.clone()).await;
            }
        }
        Ok(None)
    }

    async fn fail_to_proxy(&self, session: &mut Session, e: &Error, ctx: &mut Ctx) -> FailToProxy {
        // Upstream trouble: the region is (for now) unavailable. Never another region.
        let region = ctx
            .upstream_region
            .clone()
            .or_else(|| ctx.route.as_ref().map(|r| r.region.clone()));
        if e.esource() == &pingora_error::ErrorSource::Downstream {
            // The client went away or sent garbage; there is no one to answer.
            return FailToProxy {
                error_code: 0,
                can_reuse_downstream: false,
            };
        }
        let upstream_trouble = e.esource() == &pingora_error::ErrorSource::Upstream
            || matches!(e.etype(), ErrorType::HTTPStatus(503));
        let refusal = match region {
            Some(region) if upstream_trouble => Refusal::unavailable(
                &region,
                ctx.live(&self.state).topology.edge.retry_after_seconds,
            ),
            _ => Refusal::new(
                Code::Internal,
                502,
                "the edge could not complete the request",
            ),
        };
        let code = refusal.http_status;
        if let Err(write) = self.refuse(session, ctx, refusal).await {
            tracing::debug!(error = %write, "could not write the error response");
        }
        FailToProxy {
            error_code: code,
            can_reuse_downstream: false,
        }
    }

    /// A client that hangs up is not an edge error: keep the error log for
    /// what an operator can act on (upstream and internal failures).
    fn suppress_error_log(&self, _session: &Session, _ctx: &Ctx, error: &Error) -> bool {
        error.esource() == &pingora_error::ErrorSource::Downstream
    }

    async fn logging(&self, _session: &mut Session, _e: Option<&Error>, ctx: &mut Ctx) {
        let (region, route) = match &ctx.route {
            Some(r) => (
                ctx.upstream_region
                    .as_ref()
                    .unwrap_or(&r.region)
                    .to_string(),
                if ctx.followed {
                    Reason::Redirect
                } else {
                    r.reason
                }
                .as_str(),
            ),
            None => ("none".to_owned(), "edge"),
        };
        let status = ctx.status.as_deref().unwrap_or("unknown");
        if let Some(span) = &ctx.span {
            span.record("region", region.as_str());
            span.record("domicile.route", route);
            span.record("domicile.status", status);
            if status == status_label(Code::Unavailable)
                || status == status_label(Code::Internal)
                || status.starts_with('5')
            {
                span.record("otel.status_code", "error");
            }
            // The access log: inside the span, so it carries the trace id.
            span.in_scope(|| tracing::debug!(status, "request served"));
        }
        self.state
            .metrics
            .requests
            .with_label_values(&[region.as_str(), route, status])
            .inc();
    }
}

/// A gRPC status as the `status` metric label: `grpc_<number>`.
fn status_label(code: Code) -> String {
    format!("grpc_{}", code as i32)
}

/// A `grpc-status` header value, read as a code.
fn grpc_code(value: Option<&http::HeaderValue>) -> Option<Code> {
    let n = value?.to_str().ok()?.parse::<i32>().ok()?;
    Some(Code::from_i32(n))
}

/// grpc-message is percent-encoded (gRPC over HTTP/2 spec).
fn percent_encode(s: &str) -> String {
    s.bytes()
        .map(|b| {
            if (0x20..0x7f).contains(&b) && b != b'%' {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn page_refusals_escape_their_message() {
        assert_eq!(
            html_escape("region_preference: \"<b>x</b>\" & 'y'"),
            "region_preference: &quot;&lt;b&gt;x&lt;/b&gt;&quot; &amp; &#39;y&#39;"
        );
    }

    fn check(message: &str, expected: &str) {
        assert_eq!(percent_encode(message), expected, "{message:?}");
    }

    #[test]
    fn grpc_message_is_percent_encoded() {
        check(
            "region ap has no healthy node; retry later",
            "region ap has no healthy node; retry later",
        );
        check("100% sure", "100%25 sure");
        check("~ and space stay", "~ and space stay");
        check("tab\there", "tab%09here");
        check("line\nbreak", "line%0Abreak");
        check("\u{7f}", "%7F");
        check("café", "caf%C3%A9");
    }
}
